//! NewReno (RFC 5681, RFC 6582) with byte counting (RFC 3465).

use super::{slow_start_increase, Controller};
use std::time::{Duration, Instant};

/// NewReno parameters.
#[derive(Clone, Copy, Debug)]
pub struct NewRenoConfig {
    /// Maximum segment size in bytes.
    pub mss: u64,
    /// Initial window (reference: IW10 = 40 960 bytes).
    pub initial_window: u64,
    /// Smallest window after a loss.
    pub minimum_window: u64,
}

impl NewRenoConfig {
    /// IW10 and a 2-segment floor for segment size `mss`.
    pub fn with_mss(mss: u64) -> Self {
        NewRenoConfig {
            mss,
            initial_window: 10 * mss,
            minimum_window: 2 * mss,
        }
    }
}

/// The NewReno controller state.
#[derive(Clone, Debug)]
pub struct NewReno {
    config: NewRenoConfig,
    cwnd: u64,
    ssthresh: u64,
    /// Bytes acknowledged since the last one-MSS increase in congestion avoidance.
    acked_in_ca: u64,
    /// The window before the latest reduction.
    prior_cwnd: u64,
}

impl NewReno {
    /// A controller at the initial window.
    pub fn new(config: NewRenoConfig) -> Self {
        NewReno {
            config,
            cwnd: config.initial_window,
            ssthresh: u64::MAX,
            acked_in_ca: 0,
            prior_cwnd: config.initial_window,
        }
    }
}

impl Controller for NewReno {
    fn on_ack(&mut self, _now: Instant, bytes: u64, _rtt: Option<Duration>, app_limited: bool) {
        if app_limited {
            return;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd += slow_start_increase(bytes, self.config.mss);
        } else {
            // One MSS per window's worth of acknowledged bytes (RFC 5681 §3.1, byte counting).
            self.acked_in_ca += bytes;
            if self.acked_in_ca >= self.cwnd {
                self.acked_in_ca -= self.cwnd;
                self.cwnd += self.config.mss;
            }
        }
    }

    fn on_congestion_event(&mut self, _now: Instant, in_flight: u64) {
        self.prior_cwnd = self.cwnd;
        self.ssthresh = (in_flight / 2).max(self.config.minimum_window);
        self.cwnd = self.ssthresh;
        self.acked_in_ca = 0;
    }

    fn limit_reduction(&mut self, window: u64) {
        let floor = window.min(self.prior_cwnd);
        self.cwnd = self.cwnd.max(floor);
        self.ssthresh = self.ssthresh.max(floor);
    }

    fn on_timeout(&mut self, _now: Instant, in_flight: u64) {
        self.ssthresh = (in_flight / 2).max(self.config.minimum_window);
        self.cwnd = self.config.mss;
        self.acked_in_ca = 0;
    }

    fn window(&self) -> u64 {
        self.cwnd
    }

    fn ssthresh(&self) -> u64 {
        self.ssthresh
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u64 = 4096;

    #[test]
    fn slow_start_is_limited_per_ack() {
        let now = Instant::now();
        let mut c = NewReno::new(NewRenoConfig::with_mss(MSS));
        assert_eq!(c.window(), 40_960);
        // The reference would add all 1 MB at once (Q19); byte counting adds at most 2 MSS.
        c.on_ack(now, 1 << 20, None, false);
        assert_eq!(c.window(), 40_960 + 2 * MSS);
        c.on_ack(now, MSS, None, true);
        assert_eq!(c.window(), 40_960 + 2 * MSS);
    }

    #[test]
    fn loss_halves_flight_and_timeout_drops_to_one_segment() {
        let now = Instant::now();
        let mut c = NewReno::new(NewRenoConfig::with_mss(MSS));
        c.on_congestion_event(now, 100 * MSS);
        assert_eq!(c.window(), 50 * MSS);
        assert_eq!(c.ssthresh(), 50 * MSS);
        // Congestion avoidance: one MSS per cwnd of acked bytes.
        c.on_ack(now, 50 * MSS, None, false);
        assert_eq!(c.window(), 51 * MSS);
        c.on_timeout(now, 10 * MSS);
        assert_eq!(c.window(), MSS);
        assert_eq!(c.ssthresh(), 5 * MSS);
    }
}
