//! Delivery rate: bytes the peer got per unit of time, measured once per round trip, with the
//! largest of the last few rounds kept (in the manner of BBR's bandwidth filter).
//!
//! It sets how far a loss may shrink the window: multiplied by the minimum RTT it is the
//! window the path was really carrying (TCP Westwood+). A random loss on an uncongested path
//! then costs a retransmission but no throughput; a loss from a full queue still drains the
//! queue, because the rate cannot exceed the bottleneck's.

use std::time::{Duration, Instant};

/// Rounds the maximum is taken over.
const ROUNDS: usize = 4;

/// Rounds without a quarter's growth after which the pipe is full.
const FLAT_ROUNDS: u32 = 3;

/// The delivery-rate estimator of one connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeliveryRate {
    delivered: u64,
    round_start: Option<(Instant, u64)>,
    samples: [u64; ROUNDS],
    next: usize,
    /// The best rate that grew by a quarter over the one before it (BBR's `full_bw`).
    full_rate: u64,
    /// Rounds in a row since without such growth.
    flat_rounds: u32,
}

impl DeliveryRate {
    /// `bytes` newly acknowledged or SACKed at `now`; a round ends after `round` (the RTT).
    pub fn on_delivered(&mut self, now: Instant, bytes: u64, round: Duration) {
        self.delivered += bytes;
        let Some((start, at)) = self.round_start else {
            self.round_start = Some((now, self.delivered));
            return;
        };
        let elapsed = now.saturating_duration_since(start);
        if elapsed < round || elapsed.is_zero() {
            return;
        }
        let rate = u128::from(self.delivered - at) * 1_000_000_000 / elapsed.as_nanos();
        self.samples[self.next] = rate.min(u128::from(u64::MAX)) as u64;
        self.next = (self.next + 1) % ROUNDS;
        let rate = self.samples[(self.next + ROUNDS - 1) % ROUNDS];
        if u128::from(rate) * 4 >= u128::from(self.full_rate) * 5 {
            self.full_rate = rate;
            self.flat_rounds = 0;
        } else {
            self.flat_rounds = self.flat_rounds.saturating_add(1);
        }
        self.round_start = Some((now, self.delivered));
    }

    /// Whether the rate still climbs: fewer than three rounds in a row failed to deliver a
    /// quarter more than the best before them (BBR's test for a full pipe; one round says
    /// little on a short path, where a round is a few timer ticks).
    pub fn climbing(&self) -> bool {
        self.flat_rounds < FLAT_ROUNDS
    }

    /// The largest rate of the last rounds, bytes per second (0 before a round completed).
    pub fn max_rate(&self) -> u64 {
        self.samples.iter().copied().max().unwrap_or(0)
    }

    /// The bytes that rate keeps in flight over `rtt`.
    pub fn window(&self, rtt: Duration) -> u64 {
        (u128::from(self.max_rate()) * rtt.as_nanos() / 1_000_000_000).min(u128::from(u64::MAX))
            as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_recent_round() {
        let t0 = Instant::now();
        let rtt = Duration::from_millis(100);
        let mut d = DeliveryRate::default();
        d.on_delivered(t0, 0, rtt);
        // 1 MB in the first round, then four slow rounds push it out of the filter.
        d.on_delivered(t0 + rtt, 1_000_000, rtt);
        assert_eq!(d.max_rate(), 10_000_000);
        assert_eq!(d.window(Duration::from_millis(20)), 200_000);
        for i in 2..6 {
            d.on_delivered(t0 + rtt * i, 10_000, rtt);
        }
        assert_eq!(d.max_rate(), 100_000);
    }

    #[test]
    fn climbing_until_three_rounds_add_less_than_a_quarter() {
        let t0 = Instant::now();
        let rtt = Duration::from_millis(10);
        let mut d = DeliveryRate::default();
        d.on_delivered(t0, 0, rtt);
        assert!(d.climbing(), "nothing measured yet");
        // Doubling per round (slow start), with a tenth lost: climbing.
        let mut round = 1;
        for bytes in [10_000, 18_000, 36_000, 72_000] {
            d.on_delivered(t0 + rtt * round, bytes, rtt);
            round += 1;
            assert!(d.climbing());
        }
        // The pipe is full: the rate stays put for three rounds (one dip says nothing).
        for (i, bytes) in [74_000, 80_000, 75_000].into_iter().enumerate() {
            assert!(d.climbing(), "round {i}");
            d.on_delivered(t0 + rtt * round, bytes, rtt);
            round += 1;
        }
        assert!(!d.climbing());
    }
}
