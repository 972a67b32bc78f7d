//! Per-connection settings, with the reference's constants as defaults (`spec/transport.md` §14).

use super::congestion::{Algorithm, SharedFactory};
use std::sync::Arc;
use std::time::Duration;

/// Maximum segment size: payload bytes per data segment, and the unit of the window field.
pub const MSS: usize = 4096;

/// Settings of one stream connection.
#[derive(Clone, Debug)]
pub struct Config {
    /// Largest payload per segment (4096 on the wire for compatibility).
    pub mss: usize,
    /// Bytes the application may queue before `write` reports back-pressure.
    pub send_buffer: usize,
    /// Receive buffer in bytes; its free part is the advertised window.
    pub recv_buffer: usize,
    /// Disable Nagle's algorithm: send small segments at once.
    pub nodelay: bool,
    /// Delayed-ACK timer (reference 40 ms).
    pub delayed_ack: Duration,
    /// RTO before the first RTT sample.
    pub initial_rto: Duration,
    /// RTO floor.
    pub min_rto: Duration,
    /// RTO ceiling, also the cap of backoff.
    pub max_rto: Duration,
    /// Transmissions of one segment (or FIN) without any answer from the peer before the
    /// connection is reset (reference 8).
    pub max_transmissions: u32,
    /// First SYN retransmission timeout (reference 1 s, doubling).
    pub syn_initial_rto: Duration,
    /// SYN retransmission timeout cap (reference 8 s).
    pub syn_max_rto: Duration,
    /// SYN retransmissions before the dial fails (reference 6, so 7 SYNs).
    pub syn_retries: u32,
    /// Probe the peer after this much silence (reference 30 s); `None` disables keepalive.
    pub keepalive_interval: Option<Duration>,
    /// Give up after this much silence from the peer (reference 120 s); `None` disables it.
    pub idle_timeout: Option<Duration>,
    /// How long a closed connection keeps its tuple (reference 10 s).
    pub time_wait: Duration,
    /// How long a graceful close may go without any of its data being acknowledged before it
    /// gives up and resets the connection.
    pub linger: Duration,
    /// How long a FIN that arrived ahead of missing data waits for the gap to fill.
    pub fin_gap_timeout: Duration,
    /// First zero-window probe interval (reference 500 ms, doubling).
    pub persist_initial: Duration,
    /// Zero-window probe interval cap (reference 30 s).
    pub persist_max: Duration,
    /// Accept the reference's RST form (seq 0, ack 0), which cannot be validated. Needed to
    /// hear resets from Go peers; turn off when every peer is a Rust peer.
    pub accept_unvalidated_rst: bool,
    /// Spread each window over the round trip instead of bursting it (Q1).
    pub pacing: bool,
    /// The congestion controller.
    pub congestion: SharedFactory,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mss: MSS,
            send_buffer: 1 << 20,
            recv_buffer: 1 << 20,
            nodelay: false,
            delayed_ack: Duration::from_millis(40),
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(10),
            max_transmissions: 8,
            syn_initial_rto: Duration::from_secs(1),
            syn_max_rto: Duration::from_secs(8),
            syn_retries: 6,
            keepalive_interval: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(120)),
            time_wait: Duration::from_secs(10),
            linger: Duration::from_secs(60),
            fin_gap_timeout: Duration::from_secs(10),
            persist_initial: Duration::from_millis(500),
            persist_max: Duration::from_secs(30),
            accept_unvalidated_rst: true,
            pacing: true,
            congestion: Arc::new(Algorithm::Cubic),
        }
    }
}

impl Config {
    /// The window field value for `free` bytes: whole segments, never 0 (a Go peer reads 0 as
    /// "no limit", `spec/transport.md` §9.4), at most 65 535.
    pub fn window_field(&self, free: usize) -> u16 {
        (free / self.mss).clamp(1, usize::from(u16::MAX)) as u16
    }
}
