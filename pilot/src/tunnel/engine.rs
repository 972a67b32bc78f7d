//! The sans-IO tunnel of one daemon: peers, keys, paths, and the datagrams between them.
//! This file holds the state, the daemon's inputs, sending and timers; [`receive`] holds what
//! each received datagram does.

mod receive;

use super::config::TunnelConfig;
use super::event::{AddPeerError, Received, SendError, TunnelEvent};
use super::keycache::{KeyCache, Outstanding};
use super::lan;
use super::path::{PathAction, PeerPath, PeerRoute};
use super::peer::Peer;
use super::schedule::Schedule;
use super::transmit::{Outbox, Transmit};
use crate::crypto::{LocalKeys, RegistryKey};
use crate::net::Rng;
use crate::wire::beacon::MoveProof;
use crate::wire::tunnel::{AUTH_KEY_EXCHANGE_LEN, PILP, PILT};
use crate::wire::{BeaconMessage, Datagram, Packet, TunnelFrame};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a Punch Command's endpoint counts as one we probed, for confirming a path.
const PUNCH_MEMORY: Duration = Duration::from_secs(10);
/// Punch Command endpoints remembered.
const PUNCH_ENDPOINTS: usize = 16;
/// Probes per Punch Command (`spec/wire.md` §4.7).
const PUNCH_PROBES: usize = 3;
/// `PILA`s sent per second in answer to Punch Commands while no peer of ours is probing.
const UNSOLICITED_PUNCH_PILAS: u32 = 8;
/// Sealed frames held per node while its `PILA` waits for the registry key.
const DEFERRED_PER_NODE: usize = 4;
/// Sealed frames held in all.
const DEFERRED_TOTAL: usize = 64;
/// Least time between Discovers sent early (on path trouble) or to return a move proof.
const REDISCOVER_GAP: Duration = Duration::from_secs(1);

/// Whether `last` was less than [`REDISCOVER_GAP`] before `now`.
fn within_gap(last: Option<Instant>, now: Instant) -> bool {
    last.is_some_and(|t| now.saturating_duration_since(t) < REDISCOVER_GAP)
}

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dest {
    Direct(SocketAddr),
    Relay,
}

/// The tunnel of one daemon. See the module documentation and `docs/TUNNEL.md`.
#[derive(Debug)]
pub struct Tunnel {
    own: u32,
    keys: LocalKeys,
    config: TunnelConfig,
    rng: Rng,
    /// Our `PILA`, signed once per node ID.
    pila: [u8; AUTH_KEY_EXCHANGE_LEN],
    peers: BTreeMap<u32, Peer>,
    keycache: KeyCache,
    resolves: Outstanding,
    outbox: Outbox,
    events: VecDeque<TunnelEvent>,
    public_endpoint: Option<SocketAddr>,
    next_discover: Option<Instant>,
    /// When the last Discover went out (an early one on path trouble waits at least
    /// [`REDISCOVER_GAP`] after it).
    last_discover: Option<Instant>,
    /// When we last sent a beacon's move proof back.
    last_proof_answer: Option<Instant>,
    /// Endpoints Punch Commands told us about, and when.
    punched: VecDeque<(Instant, SocketAddr)>,
    /// Sealed frames that arrived right behind a `PILA` still waiting for its key, per node:
    /// (source, relayed, frame). Opened once the key exchange is accepted.
    deferred: BTreeMap<u32, Vec<(SocketAddr, bool, Vec<u8>)>>,
    /// Deferred frames whose key is now agreed, for [`Tunnel::poll_received`].
    ready: VecDeque<(SocketAddr, bool, Vec<u8>)>,
    /// Unsolicited punch `PILA`s: the second they count in, and how many went out in it.
    punch_budget: (Option<Instant>, u32),
    /// Scratch for path actions.
    actions: Vec<PathAction>,
    /// Our tunnel socket's private addresses, announced to peers behind our NAT.
    local_candidates: Vec<SocketAddr>,
    /// Each peer's next deadline.
    schedule: Schedule,
    /// Peers with packets waiting for a key.
    waiting: BTreeSet<u32>,
}

fn encode_pila(keys: &LocalKeys, own: u32) -> [u8; AUTH_KEY_EXCHANGE_LEN] {
    let mut bytes = Vec::with_capacity(AUTH_KEY_EXCHANGE_LEN);
    keys.auth_key_exchange(own).encode(&mut bytes);
    let mut out = [0u8; AUTH_KEY_EXCHANGE_LEN];
    out.copy_from_slice(&bytes);
    out
}

impl Tunnel {
    /// A tunnel for node `own` (0 before registration) with `keys`, drawing randomness from
    /// `rng`.
    pub fn new(own: u32, keys: LocalKeys, config: TunnelConfig, rng: Rng) -> Self {
        let pila = encode_pila(&keys, own);
        let outbox = Outbox::new(config.limits.buffer_pool);
        Tunnel {
            own,
            keys,
            config,
            rng,
            pila,
            peers: BTreeMap::new(),
            keycache: KeyCache::default(),
            resolves: Outstanding::default(),
            outbox,
            events: VecDeque::new(),
            public_endpoint: None,
            next_discover: None,
            last_discover: None,
            last_proof_answer: None,
            punched: VecDeque::new(),
            deferred: BTreeMap::new(),
            ready: VecDeque::new(),
            punch_budget: (None, 0),
            actions: Vec::new(),
            local_candidates: Vec::new(),
            schedule: Schedule::default(),
            waiting: BTreeSet::new(),
        }
    }

    /// Our node ID.
    pub fn own_node(&self) -> u32 {
        self.own
    }

    /// The configuration.
    pub fn config(&self) -> &TunnelConfig {
        &self.config
    }

    /// The public endpoint the beacon last reported.
    pub fn public_endpoint(&self) -> Option<SocketAddr> {
        self.public_endpoint
    }

    /// The route to `node`, if it is a peer.
    pub fn peer_route(&self, node: u32) -> Option<PeerRoute> {
        self.peers.get(&node).map(|p| p.path.route())
    }

    /// The latest round-trip time measured to `node` (its key exchange answering ours).
    pub fn peer_rtt(&self, node: u32) -> Option<Duration> {
        self.peers.get(&node).and_then(|p| p.rtt.latest())
    }

    /// Whether a key is agreed with `node`.
    pub fn is_keyed(&self, node: u32) -> bool {
        self.peers.get(&node).is_some_and(|p| p.crypto.is_keyed())
    }

    /// Packets waiting for a key with `node`.
    pub fn pending_len(&self, node: u32) -> usize {
        self.peers.get(&node).map_or(0, |p| p.pending.len())
    }

    /// The peers, in node order.
    pub fn peers(&self) -> impl Iterator<Item = u32> + '_ {
        self.peers.keys().copied()
    }

    // ---- inputs from the daemon ----

    /// Adds `node`, which the registry resolved to `endpoint`, and starts reaching it: our
    /// `PILA` to the endpoint, a Punch Request to the beacon. Adding a known peer adds the
    /// endpoint as a candidate and, unless the path is direct, punches again.
    pub fn add_peer(
        &mut self,
        now: Instant,
        node: u32,
        endpoint: Option<SocketAddr>,
    ) -> Result<(), AddPeerError> {
        if node == self.own {
            return Err(AddPeerError::OwnNode(node));
        }
        self.resolves.answered(node);
        let limit = self.config.limits.candidates_per_peer;
        if let Some(peer) = self.peers.get_mut(&node) {
            if let Some(addr) = endpoint {
                peer.path.add_candidate(addr, limit);
            }
            peer.path.punch_now(now);
        } else {
            if self.peers.len() >= self.config.limits.max_peers {
                return Err(AddPeerError::TooManyPeers(self.peers.len()));
            }
            let path = PeerPath::new(now, endpoint, &self.config.timing);
            self.peers.insert(node, Peer::new(node, path));
        }
        self.run_peer_timers(now, node);
        self.settle();
        Ok(())
    }

    /// The registry's answer about `node`'s Ed25519 key, after [`TunnelEvent::NeedRegistryKey`].
    /// A `PILA` waiting for it is processed now.
    pub fn on_registry_key(&mut self, now: Instant, node: u32, key: RegistryKey) {
        let timing = &self.config.timing;
        let ttl = match key {
            RegistryKey::Known(_) => timing.registry_key_ttl,
            _ => timing.registry_negative_ttl,
        };
        let limit = self.config.limits.cached_keys;
        self.keycache.insert(now, node, key, ttl, limit);
        if let Some(stashed) = self.keycache.take_stashed(node) {
            self.accept_pila(now, stashed, key);
        }
        self.registration_checked(node, key);
        self.schedule.touch(node);
        self.settle();
        // Frames that came right behind the PILA can be opened now if it was accepted.
        for frame in self.deferred.remove(&node).unwrap_or_default() {
            if self.peers.contains_key(&node) {
                self.ready.push_back(frame);
            } else {
                self.outbox.recycle(frame.2);
            }
        }
    }

    /// Extra addresses for `node` (e.g. from the daemon's own knowledge); probed at the next
    /// punch attempt, which starts now unless the path is direct.
    pub fn on_punch_candidates(&mut self, now: Instant, node: u32, candidates: &[SocketAddr]) {
        let limit = self.config.limits.candidates_per_peer;
        if let Some(peer) = self.peers.get_mut(&node) {
            for &addr in candidates {
                peer.path.add_candidate(addr, limit);
            }
            peer.path.punch_now(now);
            self.run_peer_timers(now, node);
        }
        self.settle();
    }

    /// Our tunnel socket's private addresses (its LAN candidates): announced, sealed, to every
    /// keyed peer that seems to sit behind our NAT (its registry endpoint has our public IP), so
    /// it can reach us without the NAT hairpinning. Unusable addresses (unspecified, port 0) are
    /// skipped; at most [`super::path::MAX_LAN_CANDIDATES`] are kept.
    pub fn set_local_candidates(&mut self, now: Instant, addrs: &[SocketAddr]) {
        let mut kept: Vec<SocketAddr> = Vec::new();
        for addr in addrs.iter().filter(|a| lan::usable(a)) {
            if !kept.contains(addr) && kept.len() < super::path::MAX_LAN_CANDIDATES {
                kept.push(*addr);
            }
        }
        if kept == self.local_candidates {
            return;
        }
        self.local_candidates = kept;
        let nodes: Vec<u32> = self.peers.keys().copied().collect();
        for node in nodes {
            if let Some(peer) = self.peers.get_mut(&node) {
                peer.lan_announced = false;
            }
            self.announce_lan(now, node, false);
        }
        self.settle();
    }

    /// Our LAN candidates.
    pub fn local_candidates(&self) -> &[SocketAddr] {
        &self.local_candidates
    }

    /// Our node ID changed (re-registration, `spec/wire.md` §7.9): peers know us under the old
    /// ID only, so send every peer our `PILA` under the new one (and keep re-sending on
    /// silence), and tell the beacon.
    pub fn set_own_node(&mut self, now: Instant, node: u32) {
        if node == self.own {
            return;
        }
        self.own = node;
        self.pila = encode_pila(&self.keys, node);
        self.peers.remove(&node);
        self.schedule.touch(node);
        let nodes: Vec<u32> = self.peers.keys().copied().collect();
        for peer_node in nodes {
            if let Some(peer) = self.peers.get_mut(&peer_node) {
                peer.key_exchange_sent(now);
                peer.path.expect_answer(now);
            }
            self.schedule.touch(peer_node);
            self.send_key_exchange(now, peer_node);
        }
        if self.config.beacon.is_some() {
            self.discover_request(now);
        }
        self.settle();
    }

    /// Forgets `node` (trust revoked): keys, path, queued packets, cached registry key.
    pub fn remove_peer(&mut self, node: u32) {
        if let Some(mut peer) = self.peers.remove(&node) {
            while let Some(packet) = peer.pending.pop() {
                self.outbox.recycle(packet);
            }
        }
        self.keycache.remove(node);
        self.resolves.answered(node);
        for (_, _, frame) in self.deferred.remove(&node).unwrap_or_default() {
            self.outbox.recycle(frame);
        }
        self.schedule.touch(node);
        self.settle();
    }

    /// Queues a Discover to the beacon (from the tunnel socket, so the endpoint it observes is
    /// the tunnel socket's, Q13) and arms its periodic refresh. The reply surfaces as
    /// [`TunnelEvent::PublicEndpoint`]. Nothing happens without a beacon.
    pub fn discover_request(&mut self, now: Instant) {
        self.send_discover(now, None);
    }

    fn send_discover(&mut self, now: Instant, proof: Option<MoveProof>) {
        let Some(beacon) = self.config.beacon else {
            return;
        };
        let mut buffer = self.outbox.buffer();
        BeaconMessage::Discover {
            node: self.own,
            proof,
        }
        .encode(&mut buffer);
        self.outbox.push(beacon, buffer);
        self.last_discover = Some(now);
        self.next_discover = Some(now + self.config.timing.beacon_refresh);
    }

    /// A Discover now, unless one went out less than [`REDISCOVER_GAP`] ago: a path that
    /// fails may mean our NAT mapping changed, and the beacon must learn the new one before it
    /// can punch or relay for us (a proof may come back, see `docs/BEACON.md`).
    fn rediscover(&mut self, now: Instant) {
        if !within_gap(self.last_discover, now) {
            self.discover_request(now);
        }
    }

    /// Sends an encoded Pilot packet to `node`: sealed along its route, or queued until a key
    /// is agreed (never as plaintext when encryption is on, Q5/Q23).
    pub fn send(&mut self, now: Instant, node: u32, packet: &[u8]) -> Result<(), SendError> {
        let sent = self.send_inner(now, node, packet);
        self.settle();
        sent
    }

    fn send_inner(&mut self, now: Instant, node: u32, packet: &[u8]) -> Result<(), SendError> {
        let beacon = self.config.beacon;
        let peer = self
            .peers
            .get_mut(&node)
            .ok_or(SendError::NeedResolve(node))?;
        let dest = route_dest(&peer.path, beacon.is_some());
        if !self.config.encryption || peer.crypto.is_keyed() {
            return self.transmit_packet(now, node, packet, true, None);
        }
        // No key yet: queue, and (rate-limited) make sure our key exchange is under way.
        if peer.pending.is_empty() && self.waiting.len() >= self.config.limits.pending_peers {
            return Err(SendError::PendingFull(node));
        }
        self.schedule.touch(node);
        let peer = self
            .peers
            .get_mut(&node)
            .ok_or(SendError::NeedResolve(node))?;
        let mut buffer = self.outbox.buffer();
        buffer.extend_from_slice(packet);
        let limit = self.config.limits.pending_per_peer;
        if let Some(dropped) = peer.pending.push(now, buffer, limit) {
            self.outbox.recycle(dropped);
        }
        // Until the peer answers, the silence timers re-send our key exchange along the route.
        peer.path.expect_answer(now);
        let probing = peer.path.is_probing();
        if !probing && peer.key_exchange_allowed(now, self.config.timing.key_exchange_interval) {
            self.send_key_exchange(now, node);
        }
        if dest.is_none() {
            return Err(SendError::NoRoute(node));
        }
        Ok(())
    }

    /// Handles one datagram received on the tunnel socket from `from`. A packet for the router
    /// is returned; a sealed one is opened into `plain`, which should hold 65,535 bytes.
    pub fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &'a [u8],
        plain: &'a mut [u8],
    ) -> Option<Received<'a>> {
        let received = self.handle_datagram_inner(now, from, bytes, plain);
        self.settle();
        received
    }

    fn handle_datagram_inner<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &'a [u8],
        plain: &'a mut [u8],
    ) -> Option<Received<'a>> {
        match Datagram::decode(bytes).ok()? {
            Datagram::Beacon(message) => {
                // Only the configured beacon speaks for the beacon (Q12, Q13).
                if self.config.beacon != Some(from) {
                    return None;
                }
                match message {
                    BeaconMessage::DiscoverReply { endpoint, proof } => {
                        // The beacon kept our entry at an old port of this IP and will move it
                        // here if we show we receive here. Answer once per gap, so a forged
                        // stream of replies costs one Discover a second at most.
                        let answered_lately = within_gap(self.last_proof_answer, now);
                        if let (Some(proof), false) = (proof, answered_lately) {
                            self.last_proof_answer = Some(now);
                            self.send_discover(now, Some(proof));
                        }
                        if self.public_endpoint != Some(endpoint) {
                            self.public_endpoint = Some(endpoint);
                            self.events.push_back(TunnelEvent::PublicEndpoint(endpoint));
                            // Peers behind the same NAT may only now be recognised as such.
                            let nodes: Vec<u32> = self.peers.keys().copied().collect();
                            for node in nodes {
                                self.schedule.touch(node);
                                self.announce_lan(now, node, false);
                            }
                        }
                        None
                    }
                    BeaconMessage::PunchCommand { endpoint } => {
                        self.on_punch_command(now, endpoint);
                        None
                    }
                    BeaconMessage::RelayDeliver { sender, inner } => {
                        let frame = TunnelFrame::decode(inner).ok()?;
                        self.handle_frame(now, from, Some(sender), frame, inner, plain)
                    }
                    _ => None,
                }
            }
            Datagram::Tunnel(frame) => self.handle_frame(now, from, None, frame, bytes, plain),
        }
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_discover.is_some_and(|t| t <= now) {
            self.discover_request(now);
        }
        while self
            .punched
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= PUNCH_MEMORY)
        {
            self.punched.pop_front();
        }
        // Frames deferred behind a PILA whose lookup was given up.
        let keycache = &self.keycache;
        let outbox = &mut self.outbox;
        self.deferred.retain(|node, frames| {
            let keep = keycache.is_stashed(*node);
            if !keep {
                frames.drain(..).for_each(|(_, _, f)| outbox.recycle(f));
            }
            keep
        });
        // Only the peers whose deadline came: timers cost what they do, not the table size.
        // In node order, timers first and then idle expiry, so runs replay as before.
        let mut due = self.schedule.due(now);
        due.sort_unstable();
        for &node in &due {
            self.run_peer_timers(now, node);
        }
        for node in due {
            self.expire_if_idle(now, node);
        }
        self.settle();
    }

    /// Forgets `node` if idle for `peer_idle_expiry` with nothing queued for it.
    fn expire_if_idle(&mut self, now: Instant, node: u32) {
        let timing = &self.config.timing;
        let idle = self
            .peers
            .get(&node)
            .is_some_and(|p| p.pending.is_empty() && p.path.idle_deadline(timing) <= now);
        if idle {
            self.peers.remove(&node);
            self.schedule.touch(node);
            self.events.push_back(TunnelEvent::PeerExpired { node });
        }
    }

    /// Recomputes the deadlines (and the waiting set) of the peers touched by this input.
    fn settle(&mut self) {
        let timing = &self.config.timing;
        for node in self.schedule.take_touched() {
            let peer = self.peers.get(&node);
            self.schedule
                .set(node, peer.and_then(|p| peer_deadline(p, timing)));
            if peer.is_some_and(|p| !p.pending.is_empty()) {
                self.waiting.insert(node);
            } else {
                self.waiting.remove(&node);
            }
        }
    }

    /// The next instant [`Tunnel::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        #[cfg(test)]
        self.check_schedule();
        let punched = self.punched.front().map(|(t, _)| *t + PUNCH_MEMORY);
        [self.schedule.next(), self.next_discover, punched]
            .into_iter()
            .flatten()
            .min()
    }

    /// Tests: the schedule and the waiting set agree with a scan of every peer.
    #[cfg(test)]
    fn check_schedule(&self) {
        let timing = &self.config.timing;
        for (node, peer) in &self.peers {
            assert_eq!(
                self.schedule.get(*node),
                peer_deadline(peer, timing),
                "deadline of peer {node} is stale"
            );
            assert_eq!(self.waiting.contains(node), !peer.pending.is_empty());
        }
        assert_eq!(
            self.schedule.len(),
            self.peers
                .values()
                .filter(|p| peer_deadline(p, timing).is_some())
                .count(),
            "deadlines of forgotten peers remain"
        );
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop()
    }

    /// Gives a sent datagram's buffer back for reuse.
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        self.outbox.recycle(buffer);
    }

    /// The next event for the daemon.
    pub fn poll_event(&mut self) -> Option<TunnelEvent> {
        self.events.pop_front()
    }

    /// The next packet that arrived before its sender's key was agreed and can be opened now
    /// (sealed frames right behind a `PILA` that waited for [`Tunnel::on_registry_key`]).
    /// Call after `on_registry_key` until `None`.
    pub fn poll_received<'a>(&mut self, now: Instant, plain: &'a mut [u8]) -> Option<Received<'a>> {
        let received = self.poll_received_inner(now, plain);
        self.settle();
        received
    }

    fn poll_received_inner<'a>(
        &mut self,
        now: Instant,
        plain: &'a mut [u8],
    ) -> Option<Received<'a>> {
        while let Some((from, relayed, frame)) = self.ready.pop_front() {
            let got = match TunnelFrame::decode(&frame) {
                Ok(TunnelFrame::Sealed(sealed)) => {
                    self.handle_sealed(now, from, relayed, &sealed, &mut *plain)
                }
                _ => None,
            };
            self.outbox.recycle(frame);
            if let Some(got) = got {
                // Reborrow for the caller's lifetime: `got` only borrows `plain`.
                let (peer, relayed) = (got.peer, got.relayed);
                let len = got.bytes.len();
                let bytes = &plain[..len];
                let packet = Packet::decode(bytes).ok()?;
                return Some(Received {
                    peer,
                    packet,
                    bytes,
                    relayed,
                    plaintext: false,
                });
            }
        }
        None
    }

    // ---- sending ----

    /// Runs `node`'s path timers and pending-queue expiry, and carries out what they ask.
    fn run_peer_timers(&mut self, now: Instant, node: u32) {
        self.schedule.touch(node);
        let relay = self.config.beacon.is_some();
        let timing = &self.config.timing;
        let mut actions = std::mem::take(&mut self.actions);
        actions.clear();
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        let before = peer.path.route();
        peer.path.handle_timeout(now, relay, timing, &mut actions);
        let after = peer.path.route();
        let outbox = &mut self.outbox;
        peer.pending
            .expire(now, timing.pending_ttl, |p| outbox.recycle(p));
        note_route(&mut self.events, node, before, after);
        let keyed = peer.crypto.is_keyed();
        for action in actions.drain(..) {
            match action {
                PathAction::Probe(addr) => {
                    if self.config.encryption {
                        if let Some(peer) = self.peers.get_mut(&node) {
                            peer.rtt.asked(now);
                        }
                        self.outbox.push_copy(addr, &self.pila);
                    } else {
                        self.outbox.push_copy(addr, &PILP);
                    }
                }
                PathAction::KeyExchange { repeat } => {
                    if let Some(peer) = self.peers.get_mut(&node) {
                        peer.key_exchange_sent(now);
                    }
                    self.send_key_exchange(now, node);
                    // Still silent after a re-send: it may be gone for good, so ask the
                    // registry too (one lost answer is not worth a lookup).
                    if repeat {
                        self.check_registration(now, node);
                    }
                }
                PathAction::PunchRequest => {
                    // The beacon punches with the endpoint it holds for us: refresh it first.
                    self.rediscover(now);
                    // A punch attempt retries our LAN announcement too (it may have been lost,
                    // or the path to the peer's LAN changed).
                    if let Some(peer) = self.peers.get_mut(&node) {
                        peer.lan_announced = false;
                    }
                    self.announce_lan(now, node, false);
                    if let Some(beacon) = self.config.beacon {
                        let mut buffer = self.outbox.buffer();
                        BeaconMessage::PunchRequest {
                            requester: self.own,
                            target: node,
                        }
                        .encode(&mut buffer);
                        self.outbox.push(beacon, buffer);
                    }
                }
                PathAction::Keepalive(addr) => self.outbox.push_copy(addr, &PILP),
            }
        }
        self.actions = actions;
        if after == PeerRoute::Relay && before != PeerRoute::Relay {
            // The beacon delivers to the endpoint it holds for us: refresh it.
            self.rediscover(now);
        }
        if after == PeerRoute::Relay && before != PeerRoute::Relay && !keyed {
            // Falling back to the relay before any key: the key exchange goes that way too.
            if let Some(peer) = self.peers.get_mut(&node) {
                peer.key_exchange_sent(now);
            }
            self.send_key_exchange(now, node);
        }
    }

    /// Seals (or, without encryption, frames) `packet` and sends it along `node`'s route.
    /// `data` says whether it is the daemon's traffic, which the peer's answers are expected to.
    /// `to` overrides the route with a direct address.
    fn transmit_packet(
        &mut self,
        now: Instant,
        node: u32,
        packet: &[u8],
        data: bool,
        to: Option<SocketAddr>,
    ) -> Result<(), SendError> {
        let (beacon, own) = (self.config.beacon, self.own);
        self.schedule.touch(node);
        let peer = self
            .peers
            .get_mut(&node)
            .ok_or(SendError::NeedResolve(node))?;
        let dest = match to {
            Some(addr) => Dest::Direct(addr),
            None => route_dest(&peer.path, beacon.is_some()).ok_or(SendError::NoRoute(node))?,
        };
        let mut buffer = self.outbox.buffer();
        let to = open_frame(&mut buffer, dest, beacon, own, node);
        let sealed = if self.config.encryption {
            peer.crypto.seal(own, packet, &mut buffer)
        } else {
            buffer.extend_from_slice(&PILT);
            buffer.extend_from_slice(packet);
            Ok(())
        };
        if let Err(e) = sealed {
            self.outbox.recycle(buffer);
            return Err(e.into());
        }
        self.outbox.push(to, buffer);
        if data {
            peer.path.on_data_sent(now, &self.config.timing);
        }
        if matches!(dest, Dest::Direct(_)) {
            peer.path.on_direct_sent(now);
        }
        Ok(())
    }

    /// A sealed path proof to `node`, along its route or to `to`: the peer can confirm the
    /// path it arrives along (a `PILS` is fresh; an `Unchanged` `PILA` may be a replay). Sent
    /// when our path becomes direct, and in answer to a direct probe. Never answered.
    fn send_path_proof(&mut self, now: Instant, node: u32, to: Option<SocketAddr>) {
        let keyed = self.peers.get(&node).is_some_and(|p| p.crypto.is_keyed());
        if !self.config.encryption || !keyed {
            return;
        }
        let proof = path_proof(self.own, node);
        // A failure (no route, counter exhausted) only loses the hint.
        let _ = self.transmit_packet(now, node, &proof, false, to);
    }

    /// Asks the daemon to look `node` up in the registry (deduplicated, like key lookups): if
    /// its registration lapsed, [`Tunnel::on_registry_key`] with `NotRegistered` forgets it.
    fn check_registration(&mut self, now: Instant, node: u32) {
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        peer.checking_registration = true;
        self.ask_registry_key(now, node);
    }

    /// Asks the daemon for `node`'s registry record, unless a lookup is already outstanding or
    /// too many are (bounded: the node may be named by an unverified sender).
    fn ask_registry_key(&mut self, now: Instant, node: u32) {
        let retry = self.config.timing.lookup_retry;
        let limit = self.config.limits.outstanding_lookups;
        if self.keycache.should_ask(now, node, retry, limit) {
            self.events.push_back(TunnelEvent::NeedRegistryKey(node));
        }
    }

    /// The registry answered about `node`: a silent peer it no longer knows is gone.
    fn registration_checked(&mut self, node: u32, key: RegistryKey) {
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        match key {
            RegistryKey::NotRegistered if peer.checking_registration => {
                tracing::info!(node, "silent peer no longer registered: forgotten");
                self.remove_peer(node);
                self.events.push_back(TunnelEvent::PeerGone { node });
            }
            RegistryKey::Known(_) => peer.checking_registration = false,
            _ => {}
        }
    }

    /// Announces our LAN candidates to `node` along its route, once per key, if it is keyed
    /// and seems to be behind our NAT (or `answer`: it announced its own to us).
    fn announce_lan(&mut self, now: Instant, node: u32, answer: bool) {
        let public = self.public_endpoint;
        let Some(peer) = self.peers.get(&node) else {
            return;
        };
        if !self.config.encryption
            || self.local_candidates.is_empty()
            || peer.lan_announced
            || !peer.crypto.is_keyed()
            || !(answer || public.is_some_and(|p| same_public_ip(&peer.path, p)))
        {
            return;
        }
        let mut payload = Vec::new();
        lan::encode(&self.local_candidates, &mut payload);
        let header = control_header(self.own, node);
        let mut packet = Vec::with_capacity(crate::wire::HEADER_LEN + payload.len());
        if header.encode_packet(&payload, &mut packet).is_err() {
            return;
        }
        if self
            .transmit_packet(now, node, &packet, false, None)
            .is_ok()
        {
            if let Some(peer) = self.peers.get_mut(&node) {
                peer.lan_announced = true;
            }
        }
    }

    /// Sends our key-exchange frame to `node` along its route (callers apply rate limits).
    fn send_key_exchange(&mut self, now: Instant, node: u32) {
        if !self.config.encryption {
            return;
        }
        let beacon = self.config.beacon;
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        let Some(dest) = route_dest(&peer.path, beacon.is_some()) else {
            return;
        };
        peer.rtt.asked(now);
        let mut buffer = self.outbox.buffer();
        let to = open_frame(&mut buffer, dest, beacon, self.own, node);
        buffer.extend_from_slice(&self.pila);
        self.outbox.push(to, buffer);
    }

    /// Seals and sends everything queued for `node`.
    fn flush_pending(&mut self, now: Instant, node: u32) {
        while let Some(packet) = self.peers.get_mut(&node).and_then(|p| p.pending.pop()) {
            let result = self.send_inner(now, node, &packet);
            self.outbox.recycle(packet);
            if result.is_err() {
                break;
            }
        }
    }
}

/// The port a path proof is sent from and to. Go daemons answer control packets on port 0
/// only and drop the rest (`spec/wire.md` §4.10 R2); port 1 is the reference's unused
/// "control" port.
const PATH_PROOF_PORT: u16 = 1;

/// The header of the tunnel's own control packets from `own` to `peer`: control, between the
/// path-proof ports.
fn control_header(own: u32, peer: u32) -> crate::wire::Header {
    crate::wire::Header {
        protocol: crate::wire::Protocol::CONTROL,
        src: crate::wire::Addr::backbone(own),
        dst: crate::wire::Addr::backbone(peer),
        src_port: PATH_PROOF_PORT,
        dst_port: PATH_PROOF_PORT,
        ..crate::wire::Header::default()
    }
}

/// A path proof from `own` to `peer`: an empty control packet between the path-proof ports.
/// Sealed, it is fresh and authenticated, so the peer may confirm the path it came along.
fn path_proof(own: u32, peer: u32) -> [u8; crate::wire::HEADER_LEN] {
    // An empty payload always fits.
    control_header(own, peer)
        .encode(&[])
        .unwrap_or([0; crate::wire::HEADER_LEN])
}

/// Whether `packet` is one of the tunnel's own control packets (a path proof when empty, a LAN
/// announcement otherwise), consumed by the tunnel rather than routed.
fn is_tunnel_control(packet: &Packet<'_>) -> bool {
    let h = &packet.header;
    h.protocol == crate::wire::Protocol::CONTROL
        && h.src_port == PATH_PROOF_PORT
        && h.dst_port == PATH_PROOF_PORT
}

/// Whether the peer on `path` seems to sit behind the NAT whose public endpoint is `public`:
/// an address we know it by has that IP.
fn same_public_ip(path: &PeerPath, public: SocketAddr) -> bool {
    let direct = match path.route() {
        PeerRoute::Direct(addr) => Some(addr),
        _ => None,
    };
    path.candidates()
        .iter()
        .copied()
        .chain(direct)
        .any(|a| a.ip() == public.ip())
}

/// The next instant `peer` has timer work: its path's timers, its oldest queued packet's
/// expiry, or (nothing queued) its idle expiry.
fn peer_deadline(peer: &Peer, timing: &super::config::Timing) -> Option<Instant> {
    let idle = peer
        .pending
        .is_empty()
        .then(|| peer.path.idle_deadline(timing));
    [
        peer.path.poll_timeout(timing),
        peer.pending.next_expiry(timing.pending_ttl),
        idle,
    ]
    .into_iter()
    .flatten()
    .min()
}

/// Where frames to a peer on `path` go now.
fn route_dest(path: &PeerPath, relay: bool) -> Option<Dest> {
    match path.route() {
        PeerRoute::Relay if relay => Some(Dest::Relay),
        _ => path.direct_destination().map(Dest::Direct),
    }
}

/// Starts a datagram to `dest` in `buffer` (the Relay prefix if relayed) and returns the
/// address it goes to.
fn open_frame(
    buffer: &mut Vec<u8>,
    dest: Dest,
    beacon: Option<SocketAddr>,
    own: u32,
    peer: u32,
) -> SocketAddr {
    match (dest, beacon) {
        (Dest::Relay, Some(beacon)) => {
            BeaconMessage::encode_relay_prefix(own, peer, buffer);
            beacon
        }
        (Dest::Direct(addr), _) => addr,
        // `route_dest` never picks the relay without a beacon.
        (Dest::Relay, None) => SocketAddr::from(([0, 0, 0, 0], 0)),
    }
}

fn note_route(events: &mut VecDeque<TunnelEvent>, node: u32, before: PeerRoute, after: PeerRoute) {
    if before != after {
        tracing::debug!(node, ?before, ?after, "tunnel path changed");
        events.push_back(TunnelEvent::PeerPathChanged { node, path: after });
    }
}
