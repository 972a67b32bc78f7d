//! What peer beacons told us: node ID → the peer beacon that observed it (`spec/wire.md` §6.7).
//!
//! Differences from Go, all deliberate (Q15, Q16):
//! - only Syncs from known peer beacons count (static list or registry discovery);
//! - a peer's entries expire when it stops listing them, and removed peers lose theirs;
//! - each peer is held to a cap;
//! - a node list too long for one datagram is split into parts marked by a trailer that Go
//!   decoders ignore (they tolerate trailing bytes). A Sync without our trailer, or marked as a
//!   single part, *replaces* the peer's list, exactly as Go does; a Sync marked as one of several
//!   parts *adds* to it, and the entries age out after `gossip_ttl`.
//!
//! Trailer, after the node list: `"PBS1"`, part index u16, part count u16 (8 bytes).

use super::config::SYNC_TRAILER_LEN;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Magic that opens our Sync trailer.
pub const SYNC_TRAILER_MAGIC: [u8; 4] = *b"PBS1";

/// Which part of a split node list a Sync carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncPart {
    /// Zero-based index of this part.
    pub index: u16,
    /// Number of parts in this round.
    pub count: u16,
}

impl SyncPart {
    /// The one part of an unsplit list.
    pub const WHOLE: SyncPart = SyncPart { index: 0, count: 1 };

    /// Appends the trailer.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&SYNC_TRAILER_MAGIC);
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
    }

    /// Reads the trailer from the bytes that follow a Sync's node list; `None` if they are not
    /// exactly one well-formed trailer (a Go beacon sends nothing there).
    pub fn decode(rest: &[u8]) -> Option<SyncPart> {
        if rest.len() != SYNC_TRAILER_LEN || rest[..4] != SYNC_TRAILER_MAGIC {
            return None;
        }
        let index = u16::from_be_bytes([rest[4], rest[5]]);
        let count = u16::from_be_bytes([rest[6], rest[7]]);
        (count >= 1 && index < count).then_some(SyncPart { index, count })
    }

    /// Whether this Sync carries the peer's whole list (so it replaces what we had).
    pub fn is_whole(&self) -> bool {
        self.count == 1
    }
}

/// What one peer beacon listed, with when it last listed each node.
#[derive(Debug, Default)]
struct PeerNodes {
    nodes: HashMap<u32, Instant>,
    /// It sent our trailer, so it understands split Syncs.
    splits: bool,
}

/// Gossip from peer beacons, bounded per peer.
#[derive(Debug)]
pub struct GossipTable {
    peers: BTreeMap<SocketAddr, PeerNodes>,
    /// Node → the peer that listed it last.
    owner: HashMap<u32, SocketAddr>,
    ttl: Duration,
    per_peer_cap: usize,
}

/// A socket address with IPv4-mapped IPv6 written as IPv4, so that a peer listed as
/// `1.2.3.4:9001` matches datagrams a dual-stack socket reports as `[::ffff:1.2.3.4]:9001`.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl GossipTable {
    /// An empty table with no peers.
    pub fn new(ttl: Duration, per_peer_cap: usize) -> Self {
        GossipTable {
            peers: BTreeMap::new(),
            owner: HashMap::new(),
            ttl,
            per_peer_cap: per_peer_cap.max(1),
        }
    }

    /// Replaces the peer list; peers no longer listed lose their gossip.
    pub fn set_peers(&mut self, peers: &[SocketAddr]) {
        let wanted: BTreeMap<SocketAddr, ()> = peers.iter().map(|&p| (canonical(p), ())).collect();
        self.peers.retain(|p, _| wanted.contains_key(p));
        for &p in wanted.keys() {
            self.peers.entry(p).or_default();
        }
        let peers = &self.peers;
        self.owner.retain(|_, p| peers.contains_key(p));
    }

    /// The peer beacons, in address order.
    pub fn peers(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.peers.keys().copied()
    }

    /// Whether `addr` is a known peer beacon.
    pub fn is_peer(&self, addr: SocketAddr) -> bool {
        self.peers.contains_key(&canonical(addr))
    }

    /// Whether `peer` has sent our trailer (and so accepts split Syncs).
    pub fn peer_splits(&self, peer: SocketAddr) -> bool {
        self.peers.get(&canonical(peer)).is_some_and(|p| p.splits)
    }

    /// Applies a Sync from `peer`. Returns how many IDs were recorded, or `None` if `peer` is
    /// not a known peer beacon.
    pub fn apply_sync(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        ids: impl Iterator<Item = u32>,
        part: Option<SyncPart>,
    ) -> Option<usize> {
        let peer = canonical(peer);
        let cap = self.per_peer_cap;
        let state = self.peers.get_mut(&peer)?;
        state.splits |= part.is_some();
        if part.is_none_or(|p| p.is_whole()) {
            // Go semantics: the peer's whole list replaces what it told us before.
            for node in state.nodes.drain().map(|(n, _)| n) {
                if self.owner.get(&node) == Some(&peer) {
                    self.owner.remove(&node);
                }
            }
        }
        let mut recorded = 0;
        for node in ids {
            if node == 0 || node == u32::MAX {
                continue;
            }
            if state.nodes.len() >= cap && !state.nodes.contains_key(&node) {
                break;
            }
            state.nodes.insert(node, now);
            self.owner.insert(node, peer);
            recorded += 1;
        }
        Some(recorded)
    }

    /// The peer beacon that currently announces `node`.
    pub fn owner(&self, now: Instant, node: u32) -> Option<SocketAddr> {
        let peer = *self.owner.get(&node)?;
        self.listed_by(now, peer, node).then_some(peer)
    }

    /// Whether `peer` has listed `node` within the gossip TTL.
    pub fn listed_by(&self, now: Instant, peer: SocketAddr, node: u32) -> bool {
        self.peers
            .get(&canonical(peer))
            .and_then(|p| p.nodes.get(&node))
            .is_some_and(|&at| now.saturating_duration_since(at) < self.ttl)
    }

    /// Forgets entries not listed within the TTL. Order-independent.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        for state in self.peers.values_mut() {
            state
                .nodes
                .retain(|_, &mut at| now.saturating_duration_since(at) < ttl);
        }
        let peers = &self.peers;
        self.owner
            .retain(|node, p| peers.get(p).is_some_and(|s| s.nodes.contains_key(node)));
    }

    /// Total entries over all peers.
    pub fn len(&self) -> usize {
        self.peers.values().map(|p| p.nodes.len()).sum()
    }

    /// Whether no peer has listed anything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of entries in the node → owner index.
    pub fn owner_len(&self) -> usize {
        self.owner.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(35);

    fn peer(n: u8) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, n], 9001))
    }

    #[test]
    fn trailer_round_trip_and_rejects() {
        let mut out = Vec::new();
        SyncPart { index: 2, count: 5 }.encode(&mut out);
        assert_eq!(out, b"PBS1\x00\x02\x00\x05");
        assert_eq!(
            SyncPart::decode(&out),
            Some(SyncPart { index: 2, count: 5 })
        );
        assert_eq!(SyncPart::decode(b""), None);
        assert_eq!(SyncPart::decode(b"PBS1\x00\x05\x00\x05"), None);
        assert_eq!(SyncPart::decode(b"PBS1\x00\x00\x00\x00"), None);
        assert_eq!(SyncPart::decode(b"XBS1\x00\x00\x00\x01"), None);
        assert_eq!(SyncPart::decode(b"PBS1\x00\x00\x00\x01\x00"), None);
    }

    #[test]
    fn unknown_sources_are_ignored() {
        let t0 = Instant::now();
        let mut g = GossipTable::new(TTL, 100);
        g.set_peers(&[peer(1)]);
        assert_eq!(g.apply_sync(t0, peer(2), [5].into_iter(), None), None);
        assert_eq!(g.owner(t0, 5), None);
        // A mapped address is the same peer.
        let mapped: SocketAddr = "[::ffff:198.51.100.1]:9001".parse().unwrap();
        assert_eq!(g.apply_sync(t0, mapped, [5].into_iter(), None), Some(1));
        assert_eq!(g.owner(t0, 5), Some(peer(1)));
    }

    #[test]
    fn whole_lists_replace_and_parts_add() {
        let t0 = Instant::now();
        let mut g = GossipTable::new(TTL, 100);
        g.set_peers(&[peer(1)]);
        g.apply_sync(t0, peer(1), [1, 2].into_iter(), None);
        g.apply_sync(t0, peer(1), [3].into_iter(), None);
        assert_eq!(g.owner(t0, 1), None);
        assert_eq!(g.owner(t0, 3), Some(peer(1)));
        let part = |index| Some(SyncPart { index, count: 2 });
        g.apply_sync(t0, peer(1), [4].into_iter(), part(0));
        g.apply_sync(t0, peer(1), [5].into_iter(), part(1));
        assert!([3, 4, 5].iter().all(|&n| g.owner(t0, n) == Some(peer(1))));
        assert!(g.peer_splits(peer(1)));
        // Whole list with a trailer replaces too.
        g.apply_sync(t0, peer(1), [6].into_iter(), Some(SyncPart::WHOLE));
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn entries_expire_and_removed_peers_forget() {
        let t0 = Instant::now();
        let mut g = GossipTable::new(TTL, 100);
        g.set_peers(&[peer(1), peer(2)]);
        g.apply_sync(t0, peer(1), [1].into_iter(), None);
        g.apply_sync(t0, peer(2), [2].into_iter(), None);
        assert_eq!(g.owner(t0 + TTL, 1), None, "stale gossip is not used");
        g.expire(t0 + TTL);
        assert!(g.is_empty());
        assert_eq!(g.owner_len(), 0);
        g.apply_sync(t0, peer(1), [1].into_iter(), None);
        g.set_peers(&[peer(2)]);
        assert_eq!(g.owner(t0, 1), None);
        assert!(!g.is_peer(peer(1)));
    }

    #[test]
    fn per_peer_cap_holds() {
        let t0 = Instant::now();
        let mut g = GossipTable::new(TTL, 3);
        g.set_peers(&[peer(1)]);
        assert_eq!(g.apply_sync(t0, peer(1), 1..=10, None), Some(3));
        let part = Some(SyncPart { index: 1, count: 2 });
        assert_eq!(g.apply_sync(t0, peer(1), 11..=20, part), Some(0));
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn last_listing_peer_owns_a_node() {
        let t0 = Instant::now();
        let mut g = GossipTable::new(TTL, 10);
        g.set_peers(&[peer(1), peer(2)]);
        g.apply_sync(t0, peer(1), [7].into_iter(), None);
        g.apply_sync(t0, peer(2), [7].into_iter(), None);
        assert_eq!(g.owner(t0, 7), Some(peer(2)));
        // Peer 1 replacing its list does not remove peer 2's claim.
        g.apply_sync(t0, peer(1), [8].into_iter(), None);
        assert_eq!(g.owner(t0, 7), Some(peer(2)));
    }
}
