//! The beacon as a sans-IO state machine: datagrams and `now` in, datagrams out.
//!
//! Message handling follows `spec/wire.md` §6, with the reference's beacon quirks fixed where an
//! honest Go daemon keeps working (see `docs/BEACON.md`):
//! - every source is rate limited per IP (or IPv6 /64), by message kind and by relay bytes;
//! - node entries expire, the tables are bounded, node IDs 0 and 0xFFFFFFFF are never recorded;
//! - a fresh entry is not moved to another address (no endpoint hijack while its node is alive),
//!   except to another port of its own IP by a node that proves it receives there (`proof`);
//! - Punch Requests are honoured, and Relays accepted, only from the address the sender's own
//!   entry holds (a daemon relays and punches from the tunnel socket it Discovers from);
//! - Syncs, and Relays that arrive from a beacon, are accepted only from known peer beacons, and a
//!   Relay from a peer beacon is delivered locally or dropped, never forwarded again.

use super::config::BeaconConfig;
use super::gossip::{canonical, GossipTable, SyncPart};
use super::limits::{Budget, SourceLimiter};
use super::nodes::{same_ip, Claim, NodeTable};
use super::outbox::Outbox;
use super::proof::{MoveKey, MoveProofs};
use super::stats::BeaconStats;
use crate::wire::beacon::{kind, BeaconMessage, MoveProof};
use std::net::SocketAddr;
use std::time::Instant;

/// A received Relay: its fields and the whole datagram (forwarded unchanged to a peer beacon).
struct RelayIn<'a> {
    sender: u32,
    destination: u32,
    inner: &'a [u8],
    datagram: &'a [u8],
}

/// A beacon's whole state.
#[derive(Debug)]
pub struct Beacon {
    config: BeaconConfig,
    nodes: NodeTable,
    gossip: GossipTable,
    limiter: SourceLimiter,
    proofs: MoveProofs,
    stats: BeaconStats,
    next_tick: Instant,
    /// Reused for the node list of each gossip tick.
    ids: Vec<u32>,
}

impl Beacon {
    /// A beacon with no nodes and no peers; its first gossip tick is one interval after `now`.
    /// `key` signs its move proofs.
    pub fn new(config: BeaconConfig, now: Instant, key: MoveKey) -> Self {
        let config = config.sanitized();
        Beacon {
            nodes: NodeTable::new(config.node_ttl, config.takeover_after, config.max_nodes),
            gossip: GossipTable::new(config.gossip_ttl, config.max_gossip_per_peer),
            limiter: SourceLimiter::new(config.limits, now),
            proofs: MoveProofs::new(key, now),
            stats: BeaconStats::default(),
            next_tick: now + config.gossip_interval,
            ids: Vec::new(),
            config,
        }
    }

    /// The configuration in force (after sanitising).
    pub fn config(&self) -> &BeaconConfig {
        &self.config
    }

    /// Replaces the peer beacon list (sorted, de-duplicated, capped at `max_peers`).
    pub fn set_peers(&mut self, peers: &[SocketAddr]) {
        let mut list: Vec<SocketAddr> = peers.iter().map(|&p| canonical(p)).collect();
        list.sort_unstable();
        list.dedup();
        list.truncate(self.config.max_peers);
        self.gossip.set_peers(&list);
    }

    /// The peer beacons, in address order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.gossip.peers().collect()
    }

    /// Handles one datagram from `from`; replies and forwards are appended to `out`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut Outbox,
    ) {
        self.stats.received += 1;
        let from_peer = self.gossip.is_peer(from);
        let budget = match bytes.first() {
            Some(&kind::RELAY) => Budget::Relay(bytes.len()),
            Some(&kind::SYNC) if from_peer => Budget::Sync,
            _ => Budget::Control,
        };
        if !self.limiter.allow(now, from.ip(), budget, from_peer) {
            self.stats.rate_limited += 1;
            return;
        }
        let Ok(message) = BeaconMessage::decode(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        match message {
            BeaconMessage::Discover { node, proof } => {
                self.on_discover(now, from, node, proof, out)
            }
            BeaconMessage::PunchRequest { requester, target } => {
                self.on_punch_request(now, from, requester, target, out)
            }
            BeaconMessage::Relay {
                sender,
                destination,
                inner,
            } => {
                let relay = RelayIn {
                    sender,
                    destination,
                    inner,
                    datagram: bytes,
                };
                self.on_relay(now, from, from_peer, relay, out)
            }
            BeaconMessage::Sync { nodes, .. } => {
                // The node list ends at 7 + 4·count; what follows may be our trailer.
                let rest = &bytes[7 + 4 * nodes.len()..];
                let part = SyncPart::decode(rest);
                match self.gossip.apply_sync(now, from, nodes.iter(), part) {
                    Some(_) => self.stats.syncs_applied += 1,
                    None => self.stats.sync_unknown_peer += 1,
                }
            }
            BeaconMessage::DiscoverReply { .. }
            | BeaconMessage::PunchCommand { .. }
            | BeaconMessage::RelayDeliver { .. } => self.stats.ignored += 1,
        }
    }

    fn claim(&mut self, now: Instant, node: u32, from: SocketAddr) -> Claim {
        let claim = self.nodes.claim(now, node, from);
        if claim == Claim::Refused {
            self.stats.claims_refused += 1;
            tracing::debug!(node, %from, "refused to move a fresh beacon entry");
        }
        claim
    }

    fn on_discover(
        &mut self,
        now: Instant,
        from: SocketAddr,
        node: u32,
        proof: Option<MoveProof>,
        out: &mut Outbox,
    ) {
        // Node 0 is a daemon's start-up discovery (§7.1): answer, but record nothing.
        let claim = match proof {
            Some(p) if self.proofs.verify(now, node, from, &p) => {
                let claim = self.nodes.rebind(now, node, from);
                if claim == Claim::Moved {
                    self.stats.moves_proven += 1;
                }
                claim
            }
            _ => self.claim(now, node, from),
        };
        // Refused from another port of the entry's own IP: the node's NAT may have restarted
        // or rebound it. Offer a proof that only a receiver at `from` sees.
        let offer = (claim == Claim::Refused
            && self
                .nodes
                .endpoint(now, node)
                .is_some_and(|e| same_ip(e, from)))
        .then(|| self.proofs.issue(now, node, from));
        if offer.is_some() {
            self.stats.move_proofs_issued += 1;
        }
        out.push_with(from, |buf| {
            BeaconMessage::DiscoverReply {
                endpoint: from,
                proof: offer,
            }
            .encode(buf)
        });
        self.stats.discover_replies += 1;
    }

    fn on_punch_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        requester: u32,
        target: u32,
        out: &mut Outbox,
    ) {
        self.claim(now, requester, from);
        if self.nodes.endpoint(now, requester) != Some(from) {
            self.stats.punch_unverified += 1;
            return;
        }
        let Some(target_endpoint) = self.nodes.endpoint(now, target) else {
            self.stats.punch_unknown_target += 1;
            return;
        };
        out.push_with(from, |buf| {
            BeaconMessage::PunchCommand {
                endpoint: target_endpoint,
            }
            .encode(buf)
        });
        out.push_with(target_endpoint, |buf| {
            BeaconMessage::PunchCommand { endpoint: from }.encode(buf)
        });
        self.stats.punches += 1;
    }

    fn on_relay(
        &mut self,
        now: Instant,
        from: SocketAddr,
        from_peer: bool,
        relay: RelayIn<'_>,
        out: &mut Outbox,
    ) {
        let RelayIn {
            sender,
            destination,
            inner,
            datagram,
        } = relay;
        if datagram.len() > self.config.max_relay_len {
            self.stats.relay_too_large += 1;
            return;
        }
        let verified = if from_peer {
            self.gossip.listed_by(now, from, sender)
        } else {
            self.nodes.touch(now, sender, from)
        };
        if !verified {
            self.stats.relay_unverified += 1;
            return;
        }
        if let Some(to) = self.nodes.endpoint(now, destination) {
            out.push_with(to, |buf| {
                BeaconMessage::encode_relay_deliver_prefix(sender, buf);
                buf.extend_from_slice(inner);
            });
            self.stats.relays_delivered += 1;
            return;
        }
        // One beacon-to-beacon hop at most: a Relay that came from a peer is never forwarded.
        match self.gossip.owner(now, destination) {
            Some(peer) if !from_peer => {
                out.push_with(peer, |buf| buf.extend_from_slice(datagram));
                self.stats.relays_forwarded += 1;
            }
            _ => self.stats.relay_no_route += 1,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    pub fn poll_timeout(&self) -> Instant {
        self.next_tick
    }

    /// Runs the gossip and housekeeping tick if it is due: expires nodes, gossip and idle rate
    /// limit sources, then sends a Sync round to every peer beacon.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Outbox) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + self.config.gossip_interval;
        self.nodes.expire(now);
        self.gossip.expire(now);
        self.limiter.sweep(now);
        self.send_gossip(now, out);
    }

    /// One Sync round. A list longer than one datagram is split into parts, but only for peers
    /// that have shown (by our trailer) that they merge parts; any other peer may be a Go beacon,
    /// which replaces its view with each Sync, so it gets only the first part (ascending node IDs):
    /// a stable subset rather than a view that flips every datagram.
    fn send_gossip(&mut self, now: Instant, out: &mut Outbox) {
        let peers: Vec<SocketAddr> = self.gossip.peers().collect();
        if peers.is_empty() {
            return;
        }
        self.ids.clear();
        self.ids.extend(self.nodes.live_ids(now));
        let chunk = self.config.max_sync_nodes;
        let parts = self
            .ids
            .len()
            .div_ceil(chunk)
            .clamp(1, usize::from(u16::MAX));
        let beacon_id = self.config.beacon_id;
        for peer in peers {
            let sent_parts = if self.gossip.peer_splits(peer) {
                parts
            } else {
                1
            };
            for index in 0..sent_parts {
                let start = (index * chunk).min(self.ids.len());
                let end = (start + chunk).min(self.ids.len());
                let part = if sent_parts == 1 {
                    SyncPart::WHOLE
                } else {
                    SyncPart {
                        index: index as u16,
                        count: sent_parts as u16,
                    }
                };
                let list = &self.ids[start..end];
                out.push_with(peer, |buf| {
                    // Cannot fail: a part never exceeds MAX_SYNC_NODES_PER_DATAGRAM IDs.
                    let encoded = BeaconMessage::encode_sync(beacon_id, list, buf);
                    debug_assert!(encoded.is_ok());
                    part.encode(buf);
                });
                self.stats.syncs_sent += 1;
            }
        }
    }

    /// The observed endpoint of `node`, if fresh.
    pub fn endpoint(&self, now: Instant, node: u32) -> Option<SocketAddr> {
        self.nodes.endpoint(now, node)
    }

    /// The peer beacon that announces `node`, if any.
    pub fn gossip_owner(&self, now: Instant, node: u32) -> Option<SocketAddr> {
        self.gossip.owner(now, node)
    }

    /// Counters since start.
    pub fn stats(&self) -> &BeaconStats {
        &self.stats
    }

    /// Node entries held.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Gossip entries held over all peers.
    pub fn gossip_count(&self) -> usize {
        self.gossip.len()
    }

    /// Sources tracked by the rate limiter.
    pub fn source_count(&self) -> usize {
        self.limiter.len()
    }
}
