//! Counters of what the beacon did and why it dropped things; cheap to keep, and the way tests
//! and operators see a silent drop.

/// Event counters since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BeaconStats {
    /// Datagrams received.
    pub received: u64,
    /// Dropped: not a valid beacon message.
    pub malformed: u64,
    /// Dropped: valid, but a type the beacon does not handle (0x02, 0x04, 0x06).
    pub ignored: u64,
    /// Dropped: the source's rate limit was exhausted.
    pub rate_limited: u64,
    /// Discover Replies sent.
    pub discover_replies: u64,
    /// Discover or Punch Request for a node whose fresh entry has another address.
    pub claims_refused: u64,
    /// Discover Replies that carried a move proof (a refused claim from another port of the
    /// entry's IP).
    pub move_proofs_issued: u64,
    /// Entries moved at once by a Discover carrying a valid move proof.
    pub moves_proven: u64,
    /// Punch Requests that led to Punch Commands.
    pub punches: u64,
    /// Punch Requests dropped: the requester's entry is not the source.
    pub punch_unverified: u64,
    /// Punch Requests dropped: no fresh entry for the target.
    pub punch_unknown_target: u64,
    /// Relays delivered to a local node.
    pub relays_delivered: u64,
    /// Relays forwarded to a peer beacon.
    pub relays_forwarded: u64,
    /// Relays dropped: the sender's entry is not the source (or, from a peer beacon, the peer
    /// does not list the sender).
    pub relay_unverified: u64,
    /// Relays dropped: larger than `max_relay_len`.
    pub relay_too_large: u64,
    /// Relays dropped: destination unknown here, or known only to a peer while the Relay itself
    /// came from a peer (one beacon-to-beacon hop at most).
    pub relay_no_route: u64,
    /// Syncs applied.
    pub syncs_applied: u64,
    /// Syncs dropped: not from a known peer beacon.
    pub sync_unknown_peer: u64,
    /// Sync datagrams sent.
    pub syncs_sent: u64,
}

/// A snapshot of a running beacon, published by the server after every gossip tick and when it
/// stops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BeaconStatus {
    /// Counters since start.
    pub stats: BeaconStats,
    /// Node entries held.
    pub nodes: usize,
    /// Gossip entries held over all peers.
    pub gossip: usize,
    /// The peer beacons, in address order.
    pub peers: Vec<std::net::SocketAddr>,
    /// Gossip ticks run.
    pub ticks: u64,
}
