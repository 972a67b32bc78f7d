//! The tunnel's knobs: policy, timings and bounds. Defaults are what a daemon should run.

use crate::crypto::UnauthenticatedPeers;
use std::net::SocketAddr;
use std::time::Duration;

/// How the tunnel behaves. Every field has a sensible default ([`TunnelConfig::default`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelConfig {
    /// The beacon's UDP address. Beacon messages are honoured from this address only, and
    /// relayed frames go to it. `None`: no hole punching, no relay.
    pub beacon: Option<SocketAddr>,
    /// Seal every packet (`PILS`) and set up keys with `PILA`. When `false`, packets travel as
    /// `PILT` and key exchanges are ignored, like a Go daemon run with `-encrypt=false`.
    pub encryption: bool,
    /// With encryption on: accept `PILT` from a peer with which no key is agreed (Go peers
    /// running without encryption can then reach us). Off by default: plaintext from anyone
    /// can be forged. Plaintext from a keyed peer is refused whatever this says (Q5).
    pub accept_plaintext_before_key: bool,
    /// Whether an unauthenticated `PILK` may ever set up a key (see `docs/CRYPTO.md`).
    pub unauthenticated_peers: UnauthenticatedPeers,
    /// Timers of path selection and key exchange.
    pub timing: Timing,
    /// Bounds on state that peers can make us hold.
    pub limits: Limits,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        TunnelConfig {
            beacon: None,
            encryption: true,
            accept_plaintext_before_key: false,
            unauthenticated_peers: UnauthenticatedPeers::Refuse,
            timing: Timing::default(),
            limits: Limits::default(),
        }
    }
}

/// Timers. See `docs/TUNNEL.md` for the timeline they make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Between two rounds of probes (our `PILA` to every candidate address).
    pub probe_interval: Duration,
    /// How long a probe window lasts; without a direct answer by then, relay.
    pub probe_window: Duration,
    /// First wait before a relayed (or unconfirmed) peer is punched again.
    pub punch_retry: Duration,
    /// Longest wait between background punch attempts (the wait doubles up to this).
    pub punch_retry_max: Duration,
    /// A direct path idle this long gets a `PILP` to hold the NAT mapping open.
    pub keepalive_interval: Duration,
    /// Keepalives are sent only while the peer saw traffic within this window.
    pub active_window: Duration,
    /// Data sent on a direct path without any authenticated direct answer for this long: the
    /// path is dead; fall back to relay and probe again.
    pub dead_after: Duration,
    /// Data sent without any authenticated answer for this long: re-send our `PILA` (the peer
    /// may have restarted and be dropping our `PILS`, Q11). Doubles on each unanswered resend.
    pub silence_rekey: Duration,
    /// Least time between two key-exchange frames sent to one peer outside probe rounds (Q21).
    pub key_exchange_interval: Duration,
    /// Between two Discovers to the beacon, which hold our beacon mapping open.
    pub beacon_refresh: Duration,
    /// How long a registry key is trusted before it is asked again (Q10).
    pub registry_key_ttl: Duration,
    /// How long a negative registry answer (`NotRegistered`, `Unavailable`) is kept.
    pub registry_negative_ttl: Duration,
    /// An unanswered registry lookup or resolve request is asked again after this.
    pub lookup_retry: Duration,
    /// Packets waiting for a key are dropped after this.
    pub pending_ttl: Duration,
    /// A peer with no data sent or received for this long is forgotten (keys, path, its NAT
    /// mapping long gone); the next packet either way sets it up again.
    pub peer_idle_expiry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            probe_interval: Duration::from_millis(250),
            probe_window: Duration::from_millis(1500),
            punch_retry: Duration::from_secs(15),
            punch_retry_max: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(15),
            active_window: Duration::from_secs(120),
            dead_after: Duration::from_secs(45),
            silence_rekey: Duration::from_secs(3),
            key_exchange_interval: Duration::from_secs(1),
            beacon_refresh: Duration::from_secs(25),
            registry_key_ttl: Duration::from_secs(600),
            registry_negative_ttl: Duration::from_secs(30),
            lookup_retry: Duration::from_secs(5),
            pending_ttl: Duration::from_secs(30),
            peer_idle_expiry: Duration::from_secs(600),
        }
    }
}

/// Bounds on what the network can make the tunnel hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Peers in the table (added by the daemon or by an authenticated key exchange).
    pub max_peers: usize,
    /// Packets queued per peer while no key is agreed; the oldest is dropped beyond.
    pub pending_per_peer: usize,
    /// Peers that may have packets queued at once.
    pub pending_peers: usize,
    /// `PILA`s from nodes whose registry key is not known yet, held until it is.
    pub stashed_key_exchanges: usize,
    /// Registry keys cached.
    pub cached_keys: usize,
    /// Registry lookups and resolve requests outstanding at once.
    pub outstanding_lookups: usize,
    /// Candidate addresses remembered per peer.
    pub candidates_per_peer: usize,
    /// Free transmit buffers kept for reuse.
    pub buffer_pool: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_peers: 4096,
            pending_per_peer: 64,
            pending_peers: 256,
            stashed_key_exchanges: 64,
            cached_keys: 4096,
            outstanding_lookups: 256,
            candidates_per_peer: 8,
            buffer_pool: 256,
        }
    }
}
