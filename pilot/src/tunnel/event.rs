//! What the tunnel tells the daemon: events, received packets, errors.

use super::path::PeerRoute;
use crate::crypto::SealError;
use crate::wire::Packet;
use std::net::SocketAddr;
use std::time::Duration;

/// Something the daemon should know or do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelEvent {
    /// A `PILA` from this node waits for its Ed25519 key: look it up in the registry (off the
    /// receive loop) and call [`Tunnel::on_registry_key`].
    NeedRegistryKey(u32),
    /// A sealed frame came from a node we hold no state for (we may have restarted): resolve
    /// it and call [`Tunnel::add_peer`] so a key exchange starts.
    NeedResolve(u32),
    /// The route to a peer changed.
    PeerPathChanged {
        /// The peer.
        node: u32,
        /// Its new route.
        path: PeerRoute,
    },
    /// The beacon told us our public endpoint (first time, or it changed).
    PublicEndpoint(SocketAddr),
    /// A key is agreed with a peer for the first time; it may have been added by this.
    PeerKeyed {
        /// The peer.
        node: u32,
    },
    /// A round trip to a peer was measured (its key exchange answered ours): the daemon
    /// times new connections to it from this instead of the flat initial timeout.
    PeerRtt {
        /// The peer.
        node: u32,
        /// The round-trip time along the route the key exchange took.
        rtt: Duration,
    },
    /// A peer presented a new X25519 key (it restarted) and we re-derived.
    PeerRekeyed {
        /// The peer.
        node: u32,
    },
    /// A peer idle for `peer_idle_expiry` was forgotten; sending to it needs a resolve again.
    PeerExpired {
        /// The peer.
        node: u32,
    },
    /// A peer that went silent is no longer registered (its registration lapsed, or it
    /// deregistered): it was forgotten. Connections to it cannot complete; fail them.
    PeerGone {
        /// The peer.
        node: u32,
    },
}

/// A packet from a peer, for the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received<'a> {
    /// The peer node it came from (the inner source node equals it, checked).
    pub peer: u32,
    /// The decoded packet.
    pub packet: Packet<'a>,
    /// The encoded packet (header and payload, trailing bytes cut).
    pub bytes: &'a [u8],
    /// Whether it came through the beacon's relay.
    pub relayed: bool,
    /// Whether it came as plaintext `PILT` (only if the configuration allows it).
    pub plaintext: bool,
}

/// Why a packet was not sent or queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The peer is unknown: resolve it with the registry, then [`Tunnel::add_peer`].
    #[error("node {0} is not a known peer; resolve it first")]
    NeedResolve(u32),
    /// No address and no relay: nothing can reach the peer.
    #[error("no route to node {0}: no address known and no beacon")]
    NoRoute(u32),
    /// The pending queues of too many peers are in use.
    #[error("too many peers waiting for keys; packet to node {0} dropped")]
    PendingFull(u32),
    /// Sealing failed.
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// Why a peer was not added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddPeerError {
    /// The peer table is full.
    #[error("peer table full ({0} peers)")]
    TooManyPeers(usize),
    /// That is our own node ID.
    #[error("node {0} is this node")]
    OwnNode(u32),
}
