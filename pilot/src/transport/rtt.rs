//! Round-trip time estimation and the retransmission timeout (RFC 6298, `spec/transport.md`
//! §7.1), with the reference's constants: initial RTO 1 s, G = 10 ms, clamp [200 ms, max].

use std::time::{Duration, Instant};

/// Clock granularity term `G` of RFC 6298.
const GRANULARITY: Duration = Duration::from_millis(10);

/// Smoothed RTT, its variation and the resulting RTO, with exponential backoff.
#[derive(Clone, Debug)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    latest: Duration,
    min_rtt: Option<Duration>,
    initial_rto: Duration,
    min_rto: Duration,
    max_rto: Duration,
    /// Consecutive timeouts; the RTO doubles for each (RFC 6298 §5.5).
    backoff: u32,
    /// `srtt` is a hint from elsewhere (an earlier connection, the tunnel), not a sample of
    /// this connection: the first real sample replaces it.
    seeded: bool,
}

impl RttEstimator {
    /// An estimator with no samples.
    pub fn new(initial_rto: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            latest: Duration::ZERO,
            min_rtt: None,
            initial_rto,
            min_rto,
            max_rto,
            backoff: 0,
            seeded: false,
        }
    }

    /// Takes `rtt`, measured on the same path by someone else, as the first estimate (as if it
    /// were a sample, RFC 6298 §2.2) until this connection measures its own. No effect once a
    /// real sample exists.
    pub fn seed(&mut self, rtt: Duration) {
        if self.srtt.is_none() || self.seeded {
            self.srtt = Some(rtt);
            self.rttvar = rtt / 2;
            self.seeded = true;
        }
    }

    /// Whether the estimate still comes from a hint only.
    pub fn is_seeded(&self) -> bool {
        self.seeded
    }

    /// Feeds one sample (Karn's rule is the caller's: only segments sent once).
    pub fn sample(&mut self, r: Duration) {
        self.latest = r;
        self.min_rtt = Some(self.min_rtt.map_or(r, |m| m.min(r)));
        if self.seeded {
            self.seeded = false;
            self.srtt = None;
        }
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
    }

    /// Smoothed RTT, if any sample was taken.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Smoothed RTT, or the initial RTO when there is none yet.
    pub fn srtt_or_initial(&self) -> Duration {
        self.srtt.unwrap_or(self.initial_rto)
    }

    /// The most recent sample.
    pub fn latest(&self) -> Duration {
        self.latest
    }

    /// Smallest sample seen.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// RTO without backoff.
    pub fn base_rto(&self) -> Duration {
        let rto = match self.srtt {
            None => self.initial_rto,
            Some(srtt) => srtt + GRANULARITY.max(self.rttvar * 4),
        };
        rto.clamp(self.min_rto, self.max_rto)
    }

    /// Current RTO including backoff.
    pub fn rto(&self) -> Duration {
        let factor = 1u32 << self.backoff.min(16);
        self.base_rto().saturating_mul(factor).min(self.max_rto)
    }

    /// Doubles the RTO after a timeout.
    pub fn back_off(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// Clears the backoff after an ACK of new data.
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }
}

/// The smallest round trip of the current and the previous round, as HyStart++ (RFC 9406)
/// watches it: a queue raises every sample of a round, a delayed ACK only some.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoundMin {
    start: Option<Instant>,
    current: Option<Duration>,
    previous: Option<Duration>,
}

impl RoundMin {
    /// A sample `rtt` at `now`; a round lasts `round` (the smoothed RTT).
    pub fn on_sample(&mut self, now: Instant, rtt: Duration, round: Duration) {
        match self.start {
            Some(start) if now.saturating_duration_since(start) < round => {}
            _ => {
                self.previous = self.current.take();
                self.start = Some(now);
            }
        }
        self.current = Some(self.current.map_or(rtt, |c| c.min(rtt)));
    }

    /// The smallest sample of the last two rounds.
    pub fn recent(&self) -> Option<Duration> {
        match (self.current, self.previous) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est() -> RttEstimator {
        RttEstimator::new(
            Duration::from_secs(1),
            Duration::from_millis(200),
            Duration::from_secs(10),
        )
    }

    #[test]
    fn rfc6298_arithmetic() {
        let mut e = est();
        assert_eq!(e.rto(), Duration::from_secs(1));
        e.sample(Duration::from_millis(400));
        // SRTT 400, RTTVAR 200 -> RTO 400 + 800.
        assert_eq!(e.rto(), Duration::from_millis(1200));
        e.sample(Duration::from_millis(800));
        // RTTVAR = (600 + 400) / 4 = 250; SRTT = (2800 + 800) / 8 = 450.
        assert_eq!(e.srtt(), Some(Duration::from_millis(450)));
        assert_eq!(e.rto(), Duration::from_millis(1450));
    }

    #[test]
    fn a_seed_sets_the_rto_until_the_first_sample_replaces_it() {
        let mut e = est();
        e.seed(Duration::from_millis(100));
        // 100 + 4 * 50.
        assert_eq!(e.rto(), Duration::from_millis(300));
        assert!(e.is_seeded());
        e.sample(Duration::from_millis(20));
        assert_eq!(e.srtt(), Some(Duration::from_millis(20)));
        assert!(!e.is_seeded());
        e.seed(Duration::from_secs(1));
        assert_eq!(e.srtt(), Some(Duration::from_millis(20)));
    }

    #[test]
    fn clamps_and_backs_off() {
        let mut e = est();
        e.sample(Duration::from_micros(50));
        assert_eq!(e.rto(), Duration::from_millis(200));
        e.back_off();
        assert_eq!(e.rto(), Duration::from_millis(400));
        for _ in 0..40 {
            e.back_off();
        }
        assert_eq!(e.rto(), Duration::from_secs(10));
        e.reset_backoff();
        assert_eq!(e.rto(), Duration::from_millis(200));
    }
}
