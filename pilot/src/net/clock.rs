//! Wall-clock time behind a seam.
//!
//! Monotonic time comes from `tokio::time::Instant` (turmoil drives it in simulation). Wall-clock
//! time (timestamps written to disk or sent in messages) comes from a [`WallClock`], so a
//! simulated run sees simulated dates.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Monotonic time for sans-IO state machines, which take `std::time::Instant` values: read from
/// tokio's clock, so under turmoil (or `tokio::time::pause`) it is simulated time.
pub fn monotonic_now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// A source of wall-clock time.
pub trait WallClock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;

    /// Whole seconds since the Unix epoch (0 for times before it).
    fn unix_secs(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

impl<C: WallClock + ?Sized> WallClock for Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that reads a fixed epoch plus the time elapsed on tokio's clock since it was made.
///
/// Under turmoil (or `tokio::time::pause`) this is simulated time; tests get reproducible dates.
#[derive(Clone, Debug)]
pub struct FixedClock {
    epoch: SystemTime,
    start: tokio::time::Instant,
}

impl FixedClock {
    /// A clock that reads `unix_secs` now and advances with tokio's clock.
    pub fn starting_at(unix_secs: u64) -> Self {
        FixedClock {
            epoch: UNIX_EPOCH + Duration::from_secs(unix_secs),
            start: tokio::time::Instant::now(),
        }
    }
}

impl WallClock for FixedClock {
    fn now(&self) -> SystemTime {
        self.epoch + self.start.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fixed_clock_follows_tokio_time() {
        let clock = FixedClock::starting_at(1_700_000_000);
        assert_eq!(clock.unix_secs(), 1_700_000_000);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.unix_secs(), 1_700_000_090);
    }
}
