//! Receive processing: what each datagram from the tunnel socket does to the tunnel's state
//! (`docs/TUNNEL.md`, "Receive processing").

use super::{
    is_tunnel_control, lan, note_route, Tunnel, DEFERRED_PER_NODE, DEFERRED_TOTAL, PUNCH_ENDPOINTS,
    PUNCH_MEMORY, PUNCH_PROBES, UNSOLICITED_PUNCH_PILAS,
};
use crate::crypto::{KeyChange, KeyExchangeError, OpenError, RegistryKey, UnauthenticatedPeers};
use crate::tunnel::event::{Received, TunnelEvent};
use crate::tunnel::keycache::Stashed;
use crate::tunnel::path::PeerPath;
use crate::tunnel::peer::Peer;
use crate::wire::tunnel::{PILP, PILT};
use crate::wire::{AuthKeyExchange, BeaconMessage, KeyExchange, Packet, SealedFrame, TunnelFrame};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

impl Tunnel {
    /// A tunnel frame, direct (`relay_sender` is `None`) or from a Relay Deliver.
    pub(super) fn handle_frame<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        relay_sender: Option<u32>,
        frame: TunnelFrame<'a>,
        raw: &'a [u8],
        plain: &'a mut [u8],
    ) -> Option<Received<'a>> {
        let relayed = relay_sender.is_some();
        if let Some(node) = frame_sender(&frame) {
            self.schedule.touch(node);
        }
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

    pub(super) fn handle_plain<'a>(
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

    pub(super) fn handle_sealed<'a>(
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
        self.schedule.touch(node);
        if !self.peers.contains_key(&node) && self.keycache.is_stashed(node) {
            // Right behind its PILA, which waits for the registry: hold the frame (bounded).
            let total: usize = self.deferred.values().map(Vec::len).sum();
            let held = self.deferred.entry(node).or_default();
            if held.len() < DEFERRED_PER_NODE && total < DEFERRED_TOTAL {
                let mut copy = self.outbox.buffer();
                SealedFrame::encode_prefix(node, &sealed.nonce, &mut copy);
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
        peer.checking_registration = false;
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
        let established = peer
            .path
            .on_authenticated(now, origin, true, relay, timing, limit);
        note_route(&mut self.events, node, before, peer.path.route());
        if established {
            // Tell the peer the path works from our side too (our port may be new to it).
            self.send_path_proof(now, node, None);
        }
        if is_tunnel_control(&packet) {
            if let Some(addrs) = lan::decode(packet.payload) {
                self.on_lan_candidates(now, node, &addrs);
            }
            return None;
        }
        Some(Received {
            peer: node,
            packet,
            bytes,
            relayed,
            plaintext: false,
        })
    }

    pub(super) fn handle_pila(
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
                self.ask_registry_key(now, node);
            }
        }
    }

    /// A `PILA` whose registry key is known.
    pub(super) fn accept_pila(&mut self, now: Instant, stashed: Stashed, key: RegistryKey) {
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
                if matches!(e, KeyExchangeError::IdentityMismatch(_)) {
                    // The node may have rotated its identity: ask the registry again next time
                    // (Q10); lookups stay deduplicated, so forged frames cost little.
                    self.keycache.invalidate(node);
                }
            }
        }
    }

    pub(super) fn handle_pilk(
        &mut self,
        now: Instant,
        from: SocketAddr,
        relayed: bool,
        frame: &KeyExchange,
    ) {
        let node = frame.sender;
        if !self.config.encryption || node == self.own {
            return;
        }
        let key = match self.keycache.get(now, node) {
            Some(key) => key,
            None => {
                self.ask_registry_key(now, node);
                RegistryKey::Unavailable
            }
        };
        let origin = (!relayed).then_some(from);
        let created = key == RegistryKey::NotRegistered
            && self.config.unauthenticated_peers == UnauthenticatedPeers::AcceptUnregistered
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
    pub(super) fn ensure_inbound_peer(
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
        self.schedule.touch(node);
        true
    }

    /// Bookkeeping after an accepted key exchange from `node`.
    pub(super) fn after_key_exchange(
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
        if let Some(rtt) = peer.rtt.answered(now) {
            self.events.push_back(TunnelEvent::PeerRtt { node, rtt });
        }
        let before = peer.path.route();
        // A new or changed key is fresh (the crypto layer refuses retired keys). A repeated
        // one may be a replay, so it moves the path only to an address we are probing (Q3).
        let confirms = change != KeyChange::Unchanged || probed;
        let mut established = false;
        if relayed {
            peer.path
                .on_authenticated(now, None, false, relay, timing, limit);
        } else if confirms {
            established = peer
                .path
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
            peer.lan_announced = false;
        }
        if change.needs_reply() {
            // Required for the handshake to complete; not rate-limited, and bounded anyway:
            // only the peer's identity can make a new key.
            peer.key_exchange_sent(now);
            self.send_key_exchange(now, node);
            self.flush_pending(now, node);
        } else if !peer.key_proven && peer.key_exchange_allowed(now, timing.key_exchange_interval) {
            // The peer repeats a key we already hold but has never sealed anything to us: our
            // reply to its first key exchange may have been lost, so it may still lack our key.
            // Answer the way it came, at most once per `key_exchange_interval` (as we offer our
            // key to a peer whose frames we cannot open): once per `silence_rekey` left the
            // peer's next repeat unanswered too, and the pair without a tunnel for seconds.
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
            peer.rtt.asked(now);
        } else if peer.key_exchange_allowed(now, timing.silence_rekey) {
            // A peer probing us (a punch, a silence check, a roam) learns the path works from
            // our answer: a path proof, sealed and fresh, so it may confirm the address it
            // arrives from even if it never probed it (our port behind a symmetric NAT, or
            // after our NAT rebound). Nothing answers a proof, so this cannot ping-pong; at
            // most one per `silence_rekey`.
            // A relayed probe (a liveness check over the relay) is answered along our route.
            self.send_path_proof(now, node, (!relayed).then_some(from));
        }
        if established {
            self.send_path_proof(now, node, None);
        }
        self.announce_lan(now, node, false);
    }

    /// `node` announced its LAN candidates (it thinks it sits behind our NAT): probe them, and
    /// answer with ours if it has not had them.
    pub(super) fn on_lan_candidates(&mut self, now: Instant, node: u32, addrs: &[SocketAddr]) {
        let usable: Vec<SocketAddr> = addrs.iter().copied().filter(lan::usable).collect();
        let timing = &self.config.timing;
        if let Some(peer) = self.peers.get_mut(&node) {
            tracing::debug!(node, ?usable, "LAN candidates announced");
            peer.path.set_lan_candidates(now, &usable, timing);
        }
        self.announce_lan(now, node, true);
        self.run_peer_timers(now, node);
    }

    /// Whether `from` is an address we probe for `node`, or a recent Punch Command endpoint.
    pub(super) fn was_probed(&self, now: Instant, node: u32, from: SocketAddr) -> bool {
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
    pub(super) fn on_punch_command(&mut self, now: Instant, endpoint: SocketAddr) {
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

    pub(super) fn unsolicited_punch_allowed(&mut self, now: Instant) -> bool {
        let (start, count) = &mut self.punch_budget;
        if start.is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(1)) {
            *start = Some(now);
            *count = 0;
        }
        *count += 1;
        *count <= UNSOLICITED_PUNCH_PILAS
    }
}

/// The node a tunnel frame claims to come from.
fn frame_sender(frame: &TunnelFrame<'_>) -> Option<u32> {
    match frame {
        TunnelFrame::Punch => None,
        TunnelFrame::Plain(packet) => Some(packet.header.src.node),
        TunnelFrame::Sealed(sealed) => Some(sealed.sender),
        TunnelFrame::AuthKeyExchange(frame) => Some(frame.sender),
        TunnelFrame::KeyExchange(frame) => Some(frame.sender),
    }
}
