//! Pacing: spreads a window's worth of segments over the round trip instead of sending them in
//! one burst (the reference's bursts overflowed the kernel's UDP buffer, Q1).
//!
//! A token bucket in the style of quinn-proto's pacer: it refills at 5/4 of `cwnd / srtt` and
//! holds up to 2 ms worth of sending (at least 10 and at most 256 segments), so short bursts
//! still go out at once. Before the first RTT sample nothing is paced (the initial window is
//! already capped at 10 segments).

use std::time::{Duration, Instant};

/// Sending the bucket may hold, as time at the pacing rate.
const BURST_INTERVAL: Duration = Duration::from_millis(2);
/// Smallest bucket, in segments.
const MIN_BURST: u64 = 10;
/// Largest bucket, in segments.
const MAX_BURST: u64 = 256;

/// The pacing token bucket of one connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pacer {
    tokens: u64,
    capacity: u64,
    last_window: u64,
    prev: Option<Instant>,
}

impl Pacer {
    fn capacity(window: u64, rtt: Duration, mss: u64) -> u64 {
        let rtt_ns = rtt.as_nanos().max(1);
        let cap = u128::from(window) * BURST_INTERVAL.as_nanos() / rtt_ns;
        (cap.min(u128::from(u64::MAX)) as u64).clamp(MIN_BURST * mss, MAX_BURST * mss)
    }

    /// When `bytes` may be sent, if not now. `window` is the congestion window, `rtt` the
    /// smoothed RTT (`None` before the first sample: no pacing).
    pub fn delay(
        &mut self,
        now: Instant,
        bytes: u64,
        window: u64,
        rtt: Option<Duration>,
        mss: u64,
    ) -> Option<Instant> {
        let rtt = rtt?;
        if window != self.last_window || self.prev.is_none() {
            self.capacity = Self::capacity(window, rtt, mss);
            if self.prev.is_none() {
                self.tokens = self.capacity;
                self.prev = Some(now);
            }
            self.tokens = self.tokens.min(self.capacity);
            self.last_window = window;
        }
        if self.tokens >= bytes {
            return None;
        }
        let prev = self.prev.unwrap_or(now);
        let elapsed = now.saturating_duration_since(prev);
        let rate_window = u128::from(window) * 5 / 4;
        let refill = rate_window * elapsed.as_nanos() / rtt.as_nanos().max(1);
        if refill > 0 {
            // Time only counts once it has bought a whole token, so rounding cannot stall.
            self.tokens = (u128::from(self.tokens) + refill).min(u128::from(self.capacity)) as u64;
            self.prev = Some(now);
        }
        if self.tokens >= bytes {
            return None;
        }
        let missing = u128::from(bytes - self.tokens);
        let wait_ns = (missing * rtt.as_nanos()).div_ceil(rate_window.max(1));
        let wait = Duration::from_nanos(wait_ns.min(u128::from(u64::MAX)) as u64);
        Some(now + wait.max(Duration::from_nanos(1)))
    }

    /// Takes the tokens for `bytes` just sent.
    pub fn on_send(&mut self, bytes: u64) {
        self.tokens = self.tokens.saturating_sub(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u64 = 4096;

    #[test]
    fn bursts_up_to_capacity_then_paces_at_the_window_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        let rtt = Some(Duration::from_millis(100));
        let window = 100 * MSS;
        // No RTT yet: no pacing.
        assert_eq!(p.delay(t0, MSS, window, None, MSS), None);
        // 2 ms of 1 MB / 100 ms is 8 KB, below the 10-segment floor: 10 segments at once.
        for _ in 0..10 {
            assert_eq!(p.delay(t0, MSS, window, rtt, MSS), None);
            p.on_send(MSS);
        }
        let next = p.delay(t0, MSS, window, rtt, MSS).unwrap();
        // One segment at 5/4 * 100 segments per 100 ms: 0.8 ms.
        assert_eq!(next - t0, Duration::from_micros(800));
        assert_eq!(p.delay(next, MSS, window, rtt, MSS), None);
    }

    #[test]
    fn fast_paths_are_not_limited() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        let rtt = Some(Duration::from_micros(20));
        // A tiny RTT allows the largest burst.
        for _ in 0..256 {
            assert_eq!(p.delay(t0, MSS, 1 << 20, rtt, MSS), None);
            p.on_send(MSS);
        }
        assert!(p.delay(t0, MSS, 1 << 20, rtt, MSS).is_some());
    }
}
