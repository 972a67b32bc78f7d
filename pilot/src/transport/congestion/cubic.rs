//! CUBIC (RFC 9438): window growth as a cubic function of the time since the last loss, with
//! the Reno-friendly region and fast convergence. Floating point is used only for the window
//! function; inputs are the connection's `now` values, so a run is still reproducible.

use super::{slow_start_increase, Controller};
use std::time::{Duration, Instant};

const C: f64 = 0.4;
const BETA: f64 = 0.7;

/// CUBIC parameters.
#[derive(Clone, Copy, Debug)]
pub struct CubicConfig {
    /// Maximum segment size in bytes.
    pub mss: u64,
    /// Initial window (IW10).
    pub initial_window: u64,
    /// Smallest window after a loss.
    pub minimum_window: u64,
}

impl CubicConfig {
    /// IW10 and a 2-segment floor for segment size `mss`.
    pub fn with_mss(mss: u64) -> Self {
        CubicConfig {
            mss,
            initial_window: 10 * mss,
            minimum_window: 2 * mss,
        }
    }
}

/// The CUBIC controller state.
#[derive(Clone, Debug)]
pub struct Cubic {
    config: CubicConfig,
    cwnd: u64,
    ssthresh: u64,
    /// Window before the last reduction, in segments.
    w_max: f64,
    /// Time for the cubic function to climb back to `w_max`, in seconds.
    k: f64,
    /// Start of the current congestion-avoidance epoch.
    epoch_start: Option<Instant>,
    /// The Reno-friendly estimate, in segments.
    w_est: f64,
    /// Fractional window growth carried between ACKs, in bytes.
    carry: f64,
    /// The window before the latest reduction.
    prior_cwnd: u64,
}

impl Cubic {
    /// A controller at the initial window.
    pub fn new(config: CubicConfig) -> Self {
        Cubic {
            config,
            cwnd: config.initial_window,
            ssthresh: u64::MAX,
            w_max: 0.0,
            k: 0.0,
            epoch_start: None,
            w_est: 0.0,
            carry: 0.0,
            prior_cwnd: config.initial_window,
        }
    }

    fn segments(&self, bytes: u64) -> f64 {
        bytes as f64 / self.config.mss as f64
    }

    fn w_cubic(&self, t: f64) -> f64 {
        C * (t - self.k).powi(3) + self.w_max
    }

    fn reduce(&mut self, in_flight: u64) {
        let cwnd_seg = self.segments(self.cwnd.max(in_flight.min(self.cwnd)));
        // Fast convergence: release bandwidth faster when the window keeps shrinking.
        self.w_max = if cwnd_seg < self.w_max {
            cwnd_seg * (1.0 + BETA) / 2.0
        } else {
            cwnd_seg
        };
        let flight = in_flight.max(self.config.minimum_window);
        self.ssthresh = ((flight as f64 * BETA) as u64).max(self.config.minimum_window);
        self.k = (self.w_max * (1.0 - BETA) / C).cbrt();
        self.epoch_start = None;
        self.carry = 0.0;
    }
}

impl Controller for Cubic {
    fn on_ack(&mut self, now: Instant, bytes: u64, rtt: Option<Duration>, app_limited: bool) {
        if app_limited {
            return;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd += slow_start_increase(bytes, self.config.mss);
            return;
        }
        let cwnd_seg = self.segments(self.cwnd);
        let start = match self.epoch_start {
            Some(start) => start,
            None => {
                // A new epoch: the Reno estimate starts from the current window.
                self.epoch_start = Some(now);
                self.w_est = cwnd_seg;
                now
            }
        };
        let t = now.saturating_duration_since(start).as_secs_f64();
        let rtt = rtt.unwrap_or(Duration::from_millis(100)).as_secs_f64();
        let target = self.w_cubic(t + rtt).clamp(cwnd_seg, cwnd_seg * 1.5);
        let acked_seg = self.segments(bytes);
        let alpha = 3.0 * (1.0 - BETA) / (1.0 + BETA);
        self.w_est += alpha * acked_seg / cwnd_seg;
        let increase_seg = if self.w_cubic(t) < self.w_est {
            // Reno-friendly region: grow at least as fast as Reno would.
            (self.w_est - cwnd_seg).max(0.0)
        } else {
            (target - cwnd_seg) / cwnd_seg * acked_seg
        };
        self.carry += increase_seg * self.config.mss as f64;
        if self.carry >= 1.0 {
            let whole = self.carry.floor();
            self.cwnd += whole as u64;
            self.carry -= whole;
        }
    }

    fn on_congestion_event(&mut self, _now: Instant, in_flight: u64) {
        self.prior_cwnd = self.cwnd;
        self.reduce(in_flight);
        self.cwnd = self.ssthresh;
        self.w_est = self.segments(self.cwnd);
    }

    fn limit_reduction(&mut self, window: u64) {
        let floor = window.min(self.prior_cwnd);
        if floor <= self.cwnd {
            return;
        }
        self.cwnd = floor;
        self.ssthresh = self.ssthresh.max(floor);
        self.w_est = self.segments(floor);
        // The cubic curve climbs back to w_max from where the window now is.
        self.k = ((self.w_max - self.w_est).max(0.0) / C).cbrt();
    }

    fn on_timeout(&mut self, _now: Instant, in_flight: u64) {
        self.reduce(in_flight);
        self.cwnd = self.config.mss;
        self.w_est = 0.0;
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
    fn reduces_by_beta_and_regrows_towards_w_max() {
        let t0 = Instant::now();
        let mut c = Cubic::new(CubicConfig::with_mss(MSS));
        c.on_congestion_event(t0, 100 * MSS);
        assert_eq!(c.window(), 70 * MSS);
        let after_loss = c.window();
        let rtt = Some(Duration::from_millis(50));
        let mut now = t0;
        for _ in 0..400 {
            now += Duration::from_millis(50);
            let w = c.window();
            c.on_ack(now, w, rtt, false);
        }
        // Twenty seconds later the window has passed the old maximum (convex region).
        assert!(c.window() > 100 * MSS, "{}", c.window() / MSS);
        assert!(c.window() > after_loss);
    }

    #[test]
    fn a_loss_does_not_shrink_the_window_below_what_the_path_delivered() {
        let t0 = Instant::now();
        let mut c = Cubic::new(CubicConfig::with_mss(MSS));
        c.on_congestion_event(t0, 100 * MSS);
        c.on_congestion_event(t0, 10 * MSS);
        assert!(c.window() < 10 * MSS);
        // The path was carrying 90 segments per min RTT: a random loss, not a full queue.
        let mut c = Cubic::new(CubicConfig::with_mss(MSS));
        for _ in 0..45 {
            c.on_ack(t0, 2 * MSS, None, false);
        }
        assert_eq!(c.window(), 100 * MSS);
        c.on_congestion_event(t0, 100 * MSS);
        c.limit_reduction(90 * MSS);
        assert_eq!(c.window(), 90 * MSS);
        // Never above the window before the loss.
        c.on_congestion_event(t0, 90 * MSS);
        c.limit_reduction(500 * MSS);
        assert_eq!(c.window(), 90 * MSS);
    }

    #[test]
    fn timeout_drops_to_one_segment_and_app_limited_does_not_grow() {
        let t0 = Instant::now();
        let mut c = Cubic::new(CubicConfig::with_mss(MSS));
        c.on_ack(t0, MSS, None, true);
        assert_eq!(c.window(), 10 * MSS);
        c.on_timeout(t0, 20 * MSS);
        assert_eq!(c.window(), MSS);
        assert_eq!(c.ssthresh(), 14 * MSS);
        c.on_ack(t0, MSS, None, false);
        assert_eq!(c.window(), 2 * MSS);
    }
}
