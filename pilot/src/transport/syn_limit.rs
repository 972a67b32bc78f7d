//! SYN rate limits (`spec/transport.md` T-11): a daemon-wide token bucket and one per source.
//!
//! The reference took the global token before the per-source check, so one source sending
//! 100 SYN/s (of which it may use 10) starved everyone else (Q24). Here the per-source bucket
//! is checked first and only an admitted SYN costs a global token.

use crate::wire::Addr;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Fixed-point scale: tokens are counted in millionths.
const SCALE: u64 = 1_000_000;

/// Limits; defaults are the reference's.
#[derive(Clone, Copy, Debug)]
pub struct SynLimits {
    /// Daemon-wide SYNs per second (also the bucket capacity).
    pub global_per_sec: u32,
    /// SYNs per second per source (also its capacity).
    pub per_source_per_sec: u32,
    /// Sources tracked at most; SYNs from new sources are dropped while the table is full.
    pub max_sources: usize,
    /// A source bucket unused this long is forgotten.
    pub source_idle: Duration,
}

impl Default for SynLimits {
    fn default() -> Self {
        SynLimits {
            global_per_sec: 100,
            per_source_per_sec: 10,
            max_sources: 4096,
            source_idle: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u64,
    last: Instant,
}

impl Bucket {
    fn full(rate: u32, now: Instant) -> Self {
        Bucket {
            tokens: u64::from(rate) * SCALE,
            last: now,
        }
    }

    fn refill(&mut self, rate: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        let add = elapsed.as_micros().min(u128::from(u64::MAX)) as u64 * u64::from(rate);
        self.tokens = (self.tokens + add).min(u64::from(rate) * SCALE);
        self.last = now;
    }

    fn take(&mut self) -> bool {
        if self.tokens >= SCALE {
            self.tokens -= SCALE;
            true
        } else {
            false
        }
    }
}

/// The two buckets and the per-source table.
#[derive(Debug)]
pub struct SynLimiter {
    limits: SynLimits,
    global: Bucket,
    sources: HashMap<Addr, Bucket>,
    last_sweep: Instant,
}

impl SynLimiter {
    /// Full buckets at `now`.
    pub fn new(limits: SynLimits, now: Instant) -> Self {
        SynLimiter {
            limits,
            global: Bucket::full(limits.global_per_sec, now),
            sources: HashMap::new(),
            last_sweep: now,
        }
    }

    /// Whether a SYN from `source` may proceed at `now`.
    pub fn allow(&mut self, source: Addr, now: Instant) -> bool {
        self.sweep(now);
        let per = self.limits.per_source_per_sec;
        if !self.sources.contains_key(&source) && self.sources.len() >= self.limits.max_sources {
            return false;
        }
        let bucket = self
            .sources
            .entry(source)
            .or_insert_with(|| Bucket::full(per, now));
        bucket.refill(per, now);
        if bucket.tokens < SCALE {
            return false;
        }
        self.global.refill(self.limits.global_per_sec, now);
        if !self.global.take() {
            return false;
        }
        bucket.take()
    }

    /// Forgets idle sources, at most once per second (the table is only looked up otherwise).
    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) < Duration::from_secs(1) {
            return;
        }
        self.last_sweep = now;
        let idle = self.limits.source_idle;
        self.sources
            .retain(|_, b| now.saturating_duration_since(b.last) < idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_source_does_not_starve_others() {
        let t0 = Instant::now();
        let mut lim = SynLimiter::new(SynLimits::default(), t0);
        let flooder = Addr::new(0, 1);
        let admitted = (0..150).filter(|_| lim.allow(flooder, t0)).count();
        assert_eq!(admitted, 10);
        // The reference would have drained the global bucket: 90 of its 100 tokens are left.
        let others = (0..9)
            .map(|i| {
                (0..10)
                    .filter(|_| lim.allow(Addr::new(0, 100 + i), t0))
                    .count()
            })
            .sum::<usize>();
        assert_eq!(others, 90);
        assert!(!lim.allow(Addr::new(0, 999), t0));
        // Refill: a tenth of a second later the flooder has one token again.
        let t1 = t0 + Duration::from_millis(100);
        assert!(lim.allow(flooder, t1));
        assert!(!lim.allow(flooder, t1));
    }

    #[test]
    fn source_table_is_bounded_and_swept() {
        let t0 = Instant::now();
        let limits = SynLimits {
            max_sources: 2,
            global_per_sec: 1000,
            ..SynLimits::default()
        };
        let mut lim = SynLimiter::new(limits, t0);
        assert!(lim.allow(Addr::new(0, 1), t0));
        assert!(lim.allow(Addr::new(0, 2), t0));
        assert!(!lim.allow(Addr::new(0, 3), t0));
        let later = t0 + Duration::from_secs(11);
        assert!(lim.allow(Addr::new(0, 3), later));
    }
}
