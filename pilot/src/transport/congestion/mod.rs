//! Congestion control behind a trait, in the style of quinn-proto's `congestion` module.
//!
//! The connection tells the controller what happened (bytes acknowledged, a loss detected by
//! duplicate ACKs or SACK, a retransmission timeout) and asks it for the window. Loss recovery
//! itself (what to retransmit) stays in the connection: the controller only sizes the window.
//! Two algorithms ship: [`NewReno`] (RFC 5681/6582 with RFC 3465 byte counting) and [`Cubic`]
//! (RFC 9438). Both fix the reference's Q19 details: slow start grows by at most 2 MSS per ACK,
//! `ssthresh` comes from the flight size, a timeout drops to one segment, and fast recovery
//! leaves the window at `ssthresh` rather than inflated.

mod cubic;
mod newreno;

pub use cubic::{Cubic, CubicConfig};
pub use newreno::{NewReno, NewRenoConfig};

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Instant;

/// A congestion controller for one connection.
pub trait Controller: Debug + Send {
    /// `bytes` newly acknowledged (cumulatively or by SACK) at `now`; `app_limited` when the
    /// sender had less data than the window allowed, so growth would not be earned.
    fn on_ack(
        &mut self,
        now: Instant,
        bytes: u64,
        rtt: Option<std::time::Duration>,
        app_limited: bool,
    );

    /// A loss detected by duplicate ACKs or SACK: entering fast recovery with `in_flight` bytes
    /// outstanding. Called once per recovery episode.
    fn on_congestion_event(&mut self, now: Instant, in_flight: u64);

    /// Right after [`Controller::on_congestion_event`]: the path was delivering `window` bytes
    /// per minimum round trip, so the reduction need not go below that (and never above the
    /// window before the loss). A random loss then costs no throughput, while a loss from a
    /// full queue still drains it (TCP Westwood+). The default ignores it.
    fn limit_reduction(&mut self, window: u64) {
        let _ = window;
    }

    /// The retransmission timer fired with `in_flight` bytes outstanding.
    fn on_timeout(&mut self, now: Instant, in_flight: u64);

    /// The congestion window in bytes.
    fn window(&self) -> u64;

    /// The slow-start threshold in bytes (for statistics).
    fn ssthresh(&self) -> u64;

    /// A fresh copy for another connection.
    fn clone_box(&self) -> Box<dyn Controller>;
}

/// Builds a controller per connection.
pub trait ControllerFactory: Debug + Send + Sync {
    /// A controller for a new connection with maximum segment size `mss`.
    fn build(&self, mss: u64) -> Box<dyn Controller>;
}

/// Configuration naming one of the built-in algorithms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Algorithm {
    /// RFC 5681 NewReno.
    NewReno,
    /// RFC 9438 CUBIC.
    #[default]
    Cubic,
}

impl ControllerFactory for Algorithm {
    fn build(&self, mss: u64) -> Box<dyn Controller> {
        match self {
            Algorithm::NewReno => Box::new(NewReno::new(NewRenoConfig::with_mss(mss))),
            Algorithm::Cubic => Box::new(Cubic::new(CubicConfig::with_mss(mss))),
        }
    }
}

/// A shared factory, as stored in the connection configuration.
pub type SharedFactory = Arc<dyn ControllerFactory>;

/// Slow-start growth shared by both algorithms: RFC 3465 byte counting with L = 2 MSS.
pub(crate) fn slow_start_increase(bytes: u64, mss: u64) -> u64 {
    bytes.min(2 * mss)
}
