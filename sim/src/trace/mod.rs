//! The trace: one canonical text line per event on the simulated network.
//!
//! ```text
//!   0.002000 a            send 10.1.0.2:4000 > 192.168.0.1:7000 2B "p1"
//!   0.003000 nat-a        nat  10.1.0.2:4000 > 192.168.0.1:7000 as 192.168.0.2:4000 new 2B "p1"
//!   0.004000 server       recv 192.168.0.2:4000 > 192.168.0.1:7000 2B "p1"
//! ```
//!
//! Columns: simulated time in seconds with microseconds, the node where the event happened, the
//! event, source `>` destination, then details: the translation for `nat` lines, size and a
//! decoded [`summarize`] of the bytes, the reason for drops. Events: `send` and
//! `recv` (a UDP datagram leaves or reaches a socket), `nat` (a translation), `drop`, `dup`,
//! `conn` (a TCP connection opens), `tcp` (bytes written on a TCP stream), and `note` (runner
//! actions such as crashes). Lines depend only on the scenario and its seed.

pub mod compare;
pub mod diverge;
pub mod parse;
mod summary;

pub use diverge::{first_divergence, Divergence};
pub use summary::{json_line, summarize};

use crate::world::lock;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A shared, append-only list of trace lines.
#[derive(Clone, Debug, Default)]
pub struct Trace(Arc<Mutex<Vec<String>>>);

impl Trace {
    /// Appends one event at the current simulated time.
    pub fn event(
        &self,
        node: &str,
        kind: &str,
        from: impl fmt::Display,
        to: impl fmt::Display,
        detail: impl fmt::Display,
    ) {
        self.event_at(now(), node, kind, from, to, detail);
    }

    /// Appends one event at `time`.
    pub fn event_at(
        &self,
        time: Duration,
        node: &str,
        kind: &str,
        from: impl fmt::Display,
        to: impl fmt::Display,
        detail: impl fmt::Display,
    ) {
        let line = format!(
            "{:>11} {node:<12} {kind:<4} {from} > {to} {detail}",
            fmt_time(time)
        );
        lock(&self.0).push(line.trim_end().to_string());
    }

    /// Appends a free-form note (runner actions) at `time`.
    pub fn note_at(&self, time: Duration, node: &str, text: impl fmt::Display) {
        let line = format!("{:>11} {node:<12} note {text}", fmt_time(time));
        lock(&self.0).push(line);
    }

    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        lock(&self.0).clone()
    }

    /// The lines so far, each ending in a newline.
    pub fn text(&self) -> String {
        lock(&self.0).iter().map(|l| format!("{l}\n")).collect()
    }
}

/// Simulated time since the start of the simulation, as the current host sees it.
pub fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// `12.345678`: seconds and microseconds.
pub fn fmt_time(t: Duration) -> String {
    format!("{}.{:06}", t.as_secs(), t.subsec_micros())
}

/// A packet's size and decoded summary, as trace details.
pub fn packet(bytes: &[u8]) -> String {
    format!("{}B {}", bytes.len(), summarize(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_a_fixed_shape() {
        let t = Trace::default();
        t.event_at(
            Duration::from_micros(12_345_678),
            "a",
            "send",
            "10.1.0.2:4000",
            "192.168.0.1:7000",
            packet(b"p1"),
        );
        assert_eq!(
            t.lines(),
            ["  12.345678 a            send 10.1.0.2:4000 > 192.168.0.1:7000 2B \"p1\""]
        );
    }
}
