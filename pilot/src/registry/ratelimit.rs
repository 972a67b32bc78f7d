//! Token buckets per source address (`spec/registry.md` §6.14), for every request class and for
//! connections.
//!
//! IPv4 sources are keyed by address, IPv6 sources by their /64 prefix, so a host cannot escape
//! its bucket by rotating addresses inside its own prefix. The number of buckets is bounded.

use std::collections::HashMap;
use std::net::IpAddr;

/// A bucket's shape: `capacity` tokens, refilled continuously at `capacity` per `window_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Burst size and refill amount per window.
    pub capacity: u32,
    /// The refill window in milliseconds.
    pub window_ms: u64,
}

impl Rate {
    /// `capacity` per `secs` seconds.
    pub const fn per_secs(capacity: u32, secs: u64) -> Rate {
        Rate {
            capacity,
            window_ms: secs * 1000,
        }
    }
}

/// What a bucket limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// `register` with a key the registry has never seen (creates state).
    NewRegistration,
    /// `register` with a known key (a daemon coming back).
    Reregistration,
    /// Every other request.
    Request,
    /// New connections.
    Connection,
}

/// The rates of each class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rates {
    /// New registrations: the reference's 10 per 60 s.
    pub new_registration: Rate,
    /// Re-registrations with a known key: more generous, so a fleet behind one NAT can come back.
    pub reregistration: Rate,
    /// Any other request.
    pub request: Rate,
    /// New connections.
    pub connection: Rate,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            new_registration: Rate::per_secs(10, 60),
            reregistration: Rate::per_secs(120, 60),
            request: Rate::per_secs(2000, 10),
            connection: Rate::per_secs(200, 10),
        }
    }
}

impl Rates {
    fn of(&self, class: Class) -> Rate {
        match class {
            Class::NewRegistration => self.new_registration,
            Class::Reregistration => self.reregistration,
            Class::Request => self.request,
            Class::Connection => self.connection,
        }
    }
}

/// The bucket key of a source address.
pub fn source_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            // Keep the /64 and set a bit no IPv4 key has.
            None => (u128::from(v6) & !((1u128 << 64) - 1)) | 1 << 63,
        },
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last_ms: u64,
}

/// Most buckets kept; beyond that, sources not yet seen are refused until idle ones expire.
pub const MAX_BUCKETS: usize = 1 << 18;

/// Token buckets for every (class, source).
#[derive(Debug, Default)]
pub struct RateLimiter {
    rates: Rates,
    buckets: HashMap<(Class, u128), Bucket>,
}

impl RateLimiter {
    /// A limiter with `rates`.
    pub fn new(rates: Rates) -> Self {
        RateLimiter {
            rates,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `class` from `ip`'s bucket at `now_ms`; false if none is left.
    pub fn allow(&mut self, class: Class, ip: IpAddr, now_ms: u64) -> bool {
        let rate = self.rates.of(class);
        let cap = f64::from(rate.capacity);
        let key = (class, source_key(ip));
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_BUCKETS {
            self.cleanup(now_ms);
            if self.buckets.len() >= MAX_BUCKETS {
                return false;
            }
        }
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: cap,
            last_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(bucket.last_ms) as f64;
        let refill = elapsed * cap / rate.window_ms.max(1) as f64;
        bucket.tokens = (bucket.tokens + refill).min(cap);
        bucket.last_ms = bucket.last_ms.max(now_ms);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops buckets idle for more than two windows (they would be full again anyway).
    pub fn cleanup(&mut self, now_ms: u64) {
        let rates = self.rates;
        self.buckets.retain(|(class, _), b| {
            now_ms.saturating_sub(b.last_ms) <= 2 * rates.of(*class).window_ms
        });
    }

    /// Number of live buckets.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no bucket is live.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_bucket_arithmetic() {
        let mut rl = RateLimiter::new(Rates::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..10 {
            assert!(rl.allow(Class::NewRegistration, ip, 0));
        }
        assert!(!rl.allow(Class::NewRegistration, ip, 0));
        // One token per 6 s.
        assert!(!rl.allow(Class::NewRegistration, ip, 5_999));
        assert!(rl.allow(Class::NewRegistration, ip, 6_000));
        // Another source and another class are independent.
        assert!(rl.allow(Class::NewRegistration, "192.0.2.2".parse().unwrap(), 6_000));
        assert!(rl.allow(Class::Request, ip, 6_000));
        rl.cleanup(6_000 + 120_001);
        assert!(rl.is_empty());
    }

    #[test]
    fn ipv6_sources_share_their_slash_64() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let c: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(source_key(mapped), source_key("192.0.2.1".parse().unwrap()));
    }
}
