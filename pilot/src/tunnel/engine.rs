//! The sans-IO tunnel of one daemon: peers, keys, paths, and the datagrams between them.

use super::config::TunnelConfig;
use super::keycache::{KeyCache, Outstanding, Stashed};
use super::path::{PathAction, PeerPath, PeerRoute};
use super::peer::Peer;
use super::transmit::{Outbox, Transmit};
use crate::crypto::{KeyChange, LocalKeys, OpenError, RegistryKey, SealError};
use crate::net::Rng;
use crate::wire::beacon::kind;
use crate::wire::tunnel::{AUTH_KEY_EXCHANGE_LEN, PILP, PILT};
use crate::wire::{
    AuthKeyExchange, BeaconMessage, Datagram, KeyExchange, Packet, SealedFrame, TunnelFrame,
};
use std::collections::{BTreeMap, VecDeque};
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
    /// A peer presented a new X25519 key (it restarted) and we re-derived.
    PeerRekeyed {
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
            punched: VecDeque::new(),
            deferred: BTreeMap::new(),
            ready: VecDeque::new(),
            punch_budget: (None, 0),
            actions: Vec::new(),
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
        let nodes: Vec<u32> = self.peers.keys().copied().collect();
        for peer_node in nodes {
            if let Some(peer) = self.peers.get_mut(&peer_node) {
                peer.key_exchange_sent(now);
                peer.path.expect_answer(now);
            }
            self.send_key_exchange(now, peer_node);
        }
        if self.config.beacon.is_some() {
            self.discover_request(now);
        }
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
    }

    /// Queues a Discover to the beacon (from the tunnel socket, so the endpoint it observes is
    /// the tunnel socket's, Q13) and arms its periodic refresh. The reply surfaces as
    /// [`TunnelEvent::PublicEndpoint`]. Nothing happens without a beacon.
    pub fn discover_request(&mut self, now: Instant) {
        let Some(beacon) = self.config.beacon else {
            return;
        };
        let mut buffer = self.outbox.buffer();
        BeaconMessage::Discover { node: self.own }.encode(&mut buffer);
        self.outbox.push(beacon, buffer);
        self.next_discover = Some(now + self.config.timing.beacon_refresh);
    }

    /// Sends an encoded Pilot packet to `node`: sealed along its route, or queued until a key
    /// is agreed (never as plaintext when encryption is on, Q5/Q23).
    pub fn send(&mut self, now: Instant, node: u32, packet: &[u8]) -> Result<(), SendError> {
        let beacon = self.config.beacon;
        let own = self.own;
        let peer = self
            .peers
            .get_mut(&node)
            .ok_or(SendError::NeedResolve(node))?;
        let dest = route_dest(&peer.path, beacon.is_some());
        if !self.config.encryption || peer.crypto.is_keyed() {
            let dest = dest.ok_or(SendError::NoRoute(node))?;
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
            peer.path.on_data_sent(now, &self.config.timing);
            if matches!(dest, Dest::Direct(_)) {
                peer.path.on_direct_sent(now);
            }
            return Ok(());
        }
        // No key yet: queue, and (rate-limited) make sure our key exchange is under way.
        if peer.pending.is_empty() {
            let waiting = self
                .peers
                .values()
                .filter(|p| !p.pending.is_empty())
                .count();
            if waiting >= self.config.limits.pending_peers {
                return Err(SendError::PendingFull(node));
            }
        }
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
        match Datagram::decode(bytes).ok()? {
            Datagram::Beacon(message) => {
                // Only the configured beacon speaks for the beacon (Q12, Q13).
                if self.config.beacon != Some(from) {
                    return None;
                }
                match message {
                    BeaconMessage::DiscoverReply { endpoint } => {
                        if self.public_endpoint != Some(endpoint) {
                            self.public_endpoint = Some(endpoint);
                            self.events.push_back(TunnelEvent::PublicEndpoint(endpoint));
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
        let timing = &self.config.timing;
        let due: Vec<u32> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.path.poll_timeout(timing).is_some_and(|t| t <= now)
                    || p.pending
                        .next_expiry(timing.pending_ttl)
                        .is_some_and(|t| t <= now)
            })
            .map(|(n, _)| *n)
            .collect();
        for node in due {
            self.run_peer_timers(now, node);
        }
    }

    /// The next instant [`Tunnel::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timing = &self.config.timing;
        let peers = self.peers.values().flat_map(|p| {
            [
                p.path.poll_timeout(timing),
                p.pending.next_expiry(timing.pending_ttl),
            ]
        });
        let punched = self.punched.front().map(|(t, _)| *t + PUNCH_MEMORY);
        peers.chain([self.next_discover, punched]).flatten().min()
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

    // ---- receive processing ----

    /// A tunnel frame, direct (`relay_sender` is `None`) or from a Relay Deliver.
    fn handle_frame<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        relay_sender: Option<u32>,
        frame: TunnelFrame<'a>,
        raw: &'a [u8],
        plain: &'a mut [u8],
    ) -> Option<Received<'a>> {
        let relayed = relay_sender.is_some();
        // A relayed frame must come from the node the relay names.
        let sender_matches = |sender: u32| relay_sender.is_none_or(|s| s == sender);
        match frame {
            TunnelFrame::Punch => None,
            TunnelFrame::Plain(packet) => {
                if !sender_matches(packet.header.src.node) {
                    return None;
                }
                let bytes = raw.get(PILT.len()..PILT.len() + packet.encoded_len())?;
                self.handle_plain(now, from, relayed, packet, bytes)
            }
            TunnelFrame::Sealed(sealed) => {
                if !sender_matches(sealed.sender) {
                    return None;
                }
                self.handle_sealed(now, from, relayed, &sealed, plain)
            }
            TunnelFrame::AuthKeyExchange(frame) => {
                if sender_matches(frame.sender) {
                    self.handle_pila(now, from, relayed, frame);
                }
                None
            }
            TunnelFrame::KeyExchange(frame) => {
                if sender_matches(frame.sender) {
                    self.handle_pilk(now, from, relayed, &frame);
                }
                None
            }
        }
    }

    fn handle_plain<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        relayed: bool,
        packet: Packet<'a>,
        bytes: &'a [u8],
    ) -> Option<Received<'a>> {
        let node = packet.header.src.node;
        if packet.header.dst.node != self.own || node == self.own {
            return None;
        }
        let peer = self.peers.get_mut(&node);
        if self.config.encryption {
            // Plaintext from a keyed peer is a downgrade or an injection (Q5).
            if !self.config.accept_plaintext_before_key
                || peer.as_ref().is_some_and(|p| p.crypto.is_keyed())
            {
                tracing::trace!(node, %from, "PILT refused");
                return None;
            }
        } else if let Some(peer) = peer {
            // Without encryption nothing authenticates; a direct frame from an address we
            // probe is the best confirmation there is (never a new address: that would let
            // anyone redirect the peer).
            let confirms = !relayed && peer.path.is_candidate(from);
            let before = peer.path.route();
            let origin = (!relayed).then_some(from);
            let timing = &self.config.timing;
            let limit = self.config.limits.candidates_per_peer;
            let relay = self.config.beacon.is_some();
            peer.path
                .on_authenticated(now, origin, confirms, relay, timing, limit);
            note_route(&mut self.events, node, before, peer.path.route());
        }
        Some(Received {
            peer: node,
            packet,
            bytes,
            relayed,
            plaintext: true,
        })
    }

    fn handle_sealed<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        relayed: bool,
        sealed: &SealedFrame<'_>,
        plain: &'a mut [u8],
    ) -> Option<Received<'a>> {
        if !self.config.encryption {
            return None;
        }
        let node = sealed.sender;
        if !self.peers.contains_key(&node) && self.keycache.is_stashed(node) {
            // Right behind its PILA, which waits for the registry: hold the frame (bounded).
            let total: usize = self.deferred.values().map(Vec::len).sum();
            let held = self.deferred.entry(node).or_default();
            if held.len() < DEFERRED_PER_NODE && total < DEFERRED_TOTAL {
                let mut copy = self.outbox.buffer();
                crate::wire::tunnel::SealedFrame::encode_prefix(node, &sealed.nonce, &mut copy);
                copy.extend_from_slice(sealed.ciphertext);
                held.push((from, relayed, copy));
            }
            return None;
        }
        let Some(peer) = self.peers.get_mut(&node) else {
            // We hold nothing for this node: we may have restarted. Ask the daemon to resolve
            // it so a key exchange starts (bounded and deduplicated: the sender is unverified).
            let timing = &self.config.timing;
            let limit = self.config.limits.outstanding_lookups;
            if node != self.own
                && self
                    .resolves
                    .should_ask(now, node, timing.lookup_retry, limit)
            {
                self.events.push_back(TunnelEvent::NeedResolve(node));
            }
            return None;
        };
        let opened = match peer.crypto.open(sealed, plain) {
            Ok(opened) => opened,
            Err(OpenError::NoKey(_)) => {
                // The peer holds a key we lost or never had: offer ours (rate-limited).
                if peer.key_exchange_allowed(now, self.config.timing.key_exchange_interval) {
                    self.send_key_exchange(now, node);
                }
                return None;
            }
            Err(_) => return None,
        };
        peer.key_proven = true;
        let packet = Packet::decode(opened).ok()?;
        // The inner header must agree with the tunnel: a keyed peer cannot speak for another
        // node, nor hand us packets for someone else (Q6).
        if packet.header.src.node != node || packet.header.dst.node != self.own {
            tracing::debug!(node, src = %packet.header.src, dst = %packet.header.dst,
                "sealed packet with a foreign inner header dropped (Q6)");
            return None;
        }
        let bytes = opened.get(..packet.encoded_len())?;
        // Fresh and authenticated (the replay window passed): the source is the peer's
        // current address, so roaming and NAT rebinding move the path.
        let before = peer.path.route();
        let origin = (!relayed).then_some(from);
        let timing = &self.config.timing;
        let limit = self.config.limits.candidates_per_peer;
        let relay = self.config.beacon.is_some();
        peer.path
            .on_authenticated(now, origin, true, relay, timing, limit);
        note_route(&mut self.events, node, before, peer.path.route());
        Some(Received {
            peer: node,
            packet,
            bytes,
            relayed,
            plaintext: false,
        })
    }

    fn handle_pila(
        &mut self,
        now: Instant,
        from: SocketAddr,
        relayed: bool,
        frame: AuthKeyExchange,
    ) {
        let node = frame.sender;
        if !self.config.encryption || node == self.own {
            return;
        }
        let stashed = Stashed {
            at: now,
            frame,
            from,
            relayed,
        };
        match self.keycache.get(now, node) {
            Some(key) => self.accept_pila(now, stashed, key),
            None => {
                // Never ask the registry here (Q8): hold the frame, let the daemon ask.
                let limits = &self.config.limits;
                let retry = self.config.timing.lookup_retry;
                let room = limits.stashed_key_exchanges;
                if !self.keycache.stash(node, stashed, room, retry) {
                    return;
                }
                if self
                    .keycache
                    .should_ask(now, node, retry, limits.outstanding_lookups)
                {
                    self.events.push_back(TunnelEvent::NeedRegistryKey(node));
                }
            }
        }
    }

    /// A `PILA` whose registry key is known.
    fn accept_pila(&mut self, now: Instant, stashed: Stashed, key: RegistryKey) {
        let Stashed {
            frame,
            from,
            relayed,
            ..
        } = stashed;
        let node = frame.sender;
        let origin = (!relayed).then_some(from);
        let created = self.ensure_inbound_peer(now, node, origin, key);
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        let result = peer
            .crypto
            .accept_auth_key_exchange(&self.keys, &frame, key, &mut self.rng);
        match result {
            Ok(change) => self.after_key_exchange(now, node, change, from, relayed),
            Err(e) => {
                tracing::debug!(node, %from, relayed, error = %e, "PILA refused");
                if created {
                    self.peers.remove(&node);
                }
                if matches!(e, crate::crypto::KeyExchangeError::IdentityMismatch(_)) {
                    // The node may have rotated its identity: ask the registry again next time
                    // (Q10); lookups stay deduplicated, so forged frames cost little.
                    self.keycache.invalidate(node);
                }
            }
        }
    }

    fn handle_pilk(&mut self, now: Instant, from: SocketAddr, relayed: bool, frame: &KeyExchange) {
        let node = frame.sender;
        if !self.config.encryption || node == self.own {
            return;
        }
        let key = match self.keycache.get(now, node) {
            Some(key) => key,
            None => {
                let limits = &self.config.limits;
                let retry = self.config.timing.lookup_retry;
                if self
                    .keycache
                    .should_ask(now, node, retry, limits.outstanding_lookups)
                {
                    self.events.push_back(TunnelEvent::NeedRegistryKey(node));
                }
                RegistryKey::Unavailable
            }
        };
        let origin = (!relayed).then_some(from);
        let created = key == RegistryKey::NotRegistered
            && self.config.unauthenticated_peers
                == crate::crypto::UnauthenticatedPeers::AcceptUnregistered
            && self.ensure_inbound_peer(now, node, origin, RegistryKey::Known([0; 32]));
        let policy = self.config.unauthenticated_peers;
        let interval = self.config.timing.key_exchange_interval;
        // Unknown nodes get no answer: replying to unverified frames would make us a reflector.
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        match peer
            .crypto
            .accept_key_exchange(&self.keys, frame, key, policy, &mut self.rng)
        {
            Ok(change) => self.after_key_exchange(now, node, change, from, relayed),
            Err(e) => {
                if created {
                    self.peers.remove(&node);
                } else if e.reply_with_pila() && peer.key_exchange_allowed(now, interval) {
                    self.send_key_exchange(now, node);
                }
            }
        }
    }

    /// Adds a peer that contacted us, if allowed; returns whether it was added.
    fn ensure_inbound_peer(
        &mut self,
        now: Instant,
        node: u32,
        origin: Option<SocketAddr>,
        key: RegistryKey,
    ) -> bool {
        if self.peers.contains_key(&node)
            || !matches!(key, RegistryKey::Known(_))
            || self.peers.len() >= self.config.limits.max_peers
        {
            return false;
        }
        let path = PeerPath::inbound(now, origin, &self.config.timing);
        self.peers.insert(node, Peer::new(node, path));
        true
    }

    /// Bookkeeping after an accepted key exchange from `node`.
    fn after_key_exchange(
        &mut self,
        now: Instant,
        node: u32,
        change: KeyChange,
        from: SocketAddr,
        relayed: bool,
    ) {
        let probed = self.was_probed(now, node, from);
        let relay = self.config.beacon.is_some();
        let timing = &self.config.timing;
        let limit = self.config.limits.candidates_per_peer;
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        let before = peer.path.route();
        // A new or changed key is fresh (the crypto layer refuses retired keys). A repeated
        // one may be a replay, so it moves the path only to an address we are probing (Q3).
        let confirms = change != KeyChange::Unchanged || probed;
        if relayed {
            peer.path
                .on_authenticated(now, None, false, relay, timing, limit);
        } else if confirms {
            peer.path
                .on_authenticated(now, Some(from), true, relay, timing, limit);
        }
        // An unchanged key from an address we do not probe moves nothing, not even into the
        // candidates: a replayed PILA could otherwise make its sender's address "probed" and
        // then confirm it on the next replay (Q3). The peer's first PILS from there will.
        note_route(&mut self.events, node, before, peer.path.route());
        tracing::debug!(node, %from, relayed, ?change, "key exchange accepted");
        match change {
            KeyChange::New => self.events.push_back(TunnelEvent::PeerKeyed { node }),
            KeyChange::Changed => self.events.push_back(TunnelEvent::PeerRekeyed { node }),
            KeyChange::Unchanged => {}
        }
        if change != KeyChange::Unchanged {
            peer.key_proven = false;
        }
        if change.needs_reply() {
            // Required for the handshake to complete; not rate-limited, and bounded anyway:
            // only the peer's identity can make a new key.
            peer.key_exchange_sent(now);
            self.send_key_exchange(now, node);
            self.flush_pending(now, node);
        } else if !peer.key_proven && peer.key_exchange_allowed(now, timing.silence_rekey) {
            // The peer repeats a key we already hold but has never sealed anything to us: our
            // reply to its first key exchange may have been lost, so it may still lack our key.
            // Answer the way it came, at most once per `silence_rekey`.
            let pila = self.pila;
            if relayed {
                if let Some(beacon) = self.config.beacon {
                    let mut buffer = self.outbox.buffer();
                    BeaconMessage::encode_relay_prefix(self.own, node, &mut buffer);
                    buffer.extend_from_slice(&pila);
                    self.outbox.push(beacon, buffer);
                }
            } else {
                self.outbox.push_copy(from, &pila);
            }
        } else if !relayed
            && !peer.path.awaiting_answer()
            && peer.key_exchange_allowed(now, timing.silence_rekey)
        {
            // A peer probing us (a punch, a silence check, a roam) learns the path works from
            // our answer. We never answer while waiting for an answer ourselves, and at most
            // once per `silence_rekey`, so two tunnels never keep a ping-pong going.
            let pila = self.pila;
            self.outbox.push_copy(from, &pila);
        }
    }

    /// Whether `from` is an address we probe for `node`, or a recent Punch Command endpoint.
    fn was_probed(&self, now: Instant, node: u32, from: SocketAddr) -> bool {
        self.peers
            .get(&node)
            .is_some_and(|p| p.path.is_candidate(from))
            || self
                .punched
                .iter()
                .any(|(t, a)| *a == from && now.saturating_duration_since(*t) < PUNCH_MEMORY)
    }

    /// A Punch Command from the beacon: probe the endpoint and send our `PILA` there. The
    /// command does not say which peer it is about. If one of ours is looking for a path, the
    /// endpoint becomes its candidate. If none is, a peer is punching towards us: our `PILA`
    /// lets it in where our `PILP`s alone cannot (its NAT filters what we send to its
    /// registered address, ours admits its answer). Those unsolicited `PILA`s are budgeted,
    /// since anyone can make the beacon send us Punch Commands (Q15).
    fn on_punch_command(&mut self, now: Instant, endpoint: SocketAddr) {
        for _ in 0..PUNCH_PROBES {
            self.outbox.push_copy(endpoint, &PILP);
        }
        if self.punched.len() >= PUNCH_ENDPOINTS {
            self.punched.pop_front();
        }
        self.punched.push_back((now, endpoint));
        let limit = self.config.limits.candidates_per_peer;
        let mut probing = false;
        for peer in self.peers.values_mut() {
            if peer.path.is_probing() {
                peer.path.add_candidate(endpoint, limit);
                probing = true;
            }
        }
        if self.config.encryption && (probing || self.unsolicited_punch_allowed(now)) {
            let pila = self.pila;
            self.outbox.push_copy(endpoint, &pila);
        }
    }

    fn unsolicited_punch_allowed(&mut self, now: Instant) -> bool {
        let (start, count) = &mut self.punch_budget;
        if start.is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(1)) {
            *start = Some(now);
            *count = 0;
        }
        *count += 1;
        *count <= UNSOLICITED_PUNCH_PILAS
    }

    // ---- sending ----

    /// Runs `node`'s path timers and pending-queue expiry, and carries out what they ask.
    fn run_peer_timers(&mut self, now: Instant, node: u32) {
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
                        self.outbox.push_copy(addr, &self.pila);
                    } else {
                        self.outbox.push_copy(addr, &PILP);
                    }
                }
                PathAction::KeyExchange => {
                    if let Some(peer) = self.peers.get_mut(&node) {
                        peer.key_exchange_sent(now);
                    }
                    self.send_key_exchange(now, node);
                }
                PathAction::PunchRequest => {
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
        if after == PeerRoute::Relay && before != PeerRoute::Relay && !keyed {
            // Falling back to the relay before any key: the key exchange goes that way too.
            if let Some(peer) = self.peers.get_mut(&node) {
                peer.key_exchange_sent(now);
            }
            self.send_key_exchange(now, node);
        }
    }

    /// Sends our key-exchange frame to `node` along its route (callers apply rate limits).
    fn send_key_exchange(&mut self, _now: Instant, node: u32) {
        if !self.config.encryption {
            return;
        }
        let beacon = self.config.beacon;
        let Some(peer) = self.peers.get(&node) else {
            return;
        };
        let Some(dest) = route_dest(&peer.path, beacon.is_some()) else {
            return;
        };
        let mut buffer = self.outbox.buffer();
        let to = open_frame(&mut buffer, dest, beacon, self.own, node);
        buffer.extend_from_slice(&self.pila);
        self.outbox.push(to, buffer);
    }

    /// Seals and sends everything queued for `node`.
    fn flush_pending(&mut self, now: Instant, node: u32) {
        while let Some(packet) = self.peers.get_mut(&node).and_then(|p| p.pending.pop()) {
            let result = self.send(now, node, &packet);
            self.outbox.recycle(packet);
            if result.is_err() {
                break;
            }
        }
    }
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

// Keep the relay type code in sight: a relayed datagram starts with it.
const _: () = assert!(kind::RELAY == 0x05);
