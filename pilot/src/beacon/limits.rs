//! Per-source token buckets, so that no single address (or IPv6 /64) can make the beacon do more
//! than a fixed amount of work or traffic per second (Go: no limits at all, `spec/wire.md` Q15).

use super::config::{Rate, RateLimits};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// A token bucket; it starts full.
#[derive(Clone, Copy, Debug)]
struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn full(rate: Rate, now: Instant) -> Self {
        TokenBucket {
            tokens: rate.burst,
            last: now,
        }
    }

    /// Takes `cost` tokens if there are enough; `scale` multiplies the rate and the burst.
    fn take(&mut self, rate: Rate, scale: f64, now: Instant, cost: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_sec * scale).min(rate.burst * scale);
        self.last = self.last.max(now);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// What a datagram spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// A control message (Discover, Punch Request, ignored types).
    Control,
    /// A Sync.
    Sync,
    /// A Relay of this many bytes.
    Relay(usize),
}

/// The buckets of one source.
#[derive(Clone, Copy, Debug)]
struct Buckets {
    control: TokenBucket,
    sync: TokenBucket,
    relay_packets: TokenBucket,
    relay_bytes: TokenBucket,
    last_used: Instant,
}

impl Buckets {
    fn new(limits: &RateLimits, now: Instant) -> Self {
        Buckets {
            control: TokenBucket::full(limits.control, now),
            sync: TokenBucket::full(limits.sync, now),
            relay_packets: TokenBucket::full(limits.relay_packets, now),
            relay_bytes: TokenBucket::full(limits.relay_bytes, now),
            last_used: now,
        }
    }

    fn take(&mut self, limits: &RateLimits, now: Instant, budget: Budget, scale: f64) -> bool {
        self.last_used = self.last_used.max(now);
        match budget {
            Budget::Control => self.control.take(limits.control, scale, now, 1.0),
            Budget::Sync => self.sync.take(limits.sync, scale, now, 1.0),
            Budget::Relay(len) => {
                self.relay_packets
                    .take(limits.relay_packets, scale, now, 1.0)
                    && self
                        .relay_bytes
                        .take(limits.relay_bytes, scale, now, len as f64)
            }
        }
    }
}

/// The key a source is limited under: an IPv4 address, or the /64 prefix of an IPv6 address
/// (a subscriber usually holds a whole /64 and could rotate through it).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
    }
}

/// Token buckets per source, bounded: beyond `max_sources`, new sources share one overflow
/// budget until idle sources are swept.
#[derive(Debug)]
pub struct SourceLimiter {
    limits: RateLimits,
    sources: HashMap<IpAddr, Buckets>,
    overflow: Buckets,
}

impl SourceLimiter {
    /// A limiter with every bucket full.
    pub fn new(limits: RateLimits, now: Instant) -> Self {
        SourceLimiter {
            limits,
            sources: HashMap::new(),
            overflow: Buckets::new(&limits, now),
        }
    }

    /// Charges `budget` to the source `ip`; false if its bucket is empty. A known peer beacon
    /// carries many daemons' traffic, so its rates are scaled by `peer_scale`.
    pub fn allow(&mut self, now: Instant, ip: IpAddr, budget: Budget, peer: bool) -> bool {
        let key = source_key(ip);
        let limits = &self.limits;
        let scale = if peer { limits.peer_scale } else { 1.0 };
        if let Some(buckets) = self.sources.get_mut(&key) {
            return buckets.take(limits, now, budget, scale);
        }
        if self.sources.len() >= limits.max_sources {
            return self.overflow.take(limits, now, budget, scale);
        }
        let mut buckets = Buckets::new(limits, now);
        let allowed = buckets.take(limits, now, budget, scale);
        self.sources.insert(key, buckets);
        allowed
    }

    /// Forgets sources idle for longer than `source_idle`. The result does not depend on the
    /// map's iteration order.
    pub fn sweep(&mut self, now: Instant) {
        let idle = self.limits.source_idle;
        self.sources
            .retain(|_, b| now.saturating_duration_since(b.last_used) < idle);
    }

    /// Number of sources tracked individually.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> RateLimits {
        RateLimits {
            control: Rate::new(2.0, 3.0),
            max_sources: 2,
            source_idle: Duration::from_secs(10),
            ..RateLimits::default()
        }
    }

    #[test]
    fn bucket_empties_and_refills_with_time() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(limits(), t0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..3).all(|_| l.allow(t0, ip, Budget::Control, false)));
        assert!(!l.allow(t0, ip, Budget::Control, false));
        // 2 tokens per second: after half a second exactly one is back.
        let t1 = t0 + Duration::from_millis(500);
        assert!(l.allow(t1, ip, Budget::Control, false));
        assert!(!l.allow(t1, ip, Budget::Control, false));
    }

    #[test]
    fn sources_are_independent_and_ipv6_groups_by_prefix() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(limits(), t0);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let a2: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!((0..3).all(|_| l.allow(t0, a, Budget::Control, false)));
        assert!(
            !l.allow(t0, a2, Budget::Control, false),
            "same /64 shares a bucket"
        );
        assert!(l.allow(t0, b, Budget::Control, false));
        // Mapped IPv4 is the same source as plain IPv4.
        let mapped: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        assert!(l.allow(t0, mapped, Budget::Control, false));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn table_is_bounded_and_overflow_is_shared() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(limits(), t0);
        for i in 1..=2u8 {
            assert!(l.allow(t0, IpAddr::from([192, 0, 2, i]), Budget::Control, false));
        }
        // Sources 3.. share one bucket of 3.
        let allowed = (3..=10u8)
            .filter(|&i| l.allow(t0, IpAddr::from([192, 0, 2, i]), Budget::Control, false))
            .count();
        assert_eq!(allowed, 3);
        assert_eq!(l.len(), 2);
        l.sweep(t0 + Duration::from_secs(10));
        assert!(l.is_empty());
    }

    #[test]
    fn peers_get_scaled_rates() {
        let t0 = Instant::now();
        let lim = RateLimits {
            peer_scale: 4.0,
            ..limits()
        };
        let mut l = SourceLimiter::new(lim, t0);
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            (0..20)
                .filter(|_| l.allow(t0, ip, Budget::Control, true))
                .count(),
            3
        );
        // The burst is scaled once the bucket refills: 4 × 3 tokens after 6 s at 4 × 2/s.
        let t1 = t0 + Duration::from_secs(6);
        assert_eq!(
            (0..20)
                .filter(|_| l.allow(t1, ip, Budget::Control, true))
                .count(),
            12
        );
    }

    #[test]
    fn relay_charges_packets_and_bytes() {
        let t0 = Instant::now();
        let lim = RateLimits {
            relay_bytes: Rate::new(0.0, 1000.0),
            ..limits()
        };
        let mut l = SourceLimiter::new(lim, t0);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(l.allow(t0, ip, Budget::Relay(600), false));
        assert!(!l.allow(t0, ip, Budget::Relay(600), false));
        assert!(l.allow(t0, ip, Budget::Relay(400), false));
    }
}
