//! The data path of the core: packets from the transport into the tunnel (resolving unknown
//! peers first), client writes into the streams, stream data to clients within their credit,
//! accepts, datagrams and connection events.

use super::*;

impl DaemonCore {
    /// Hands an encoded packet to the tunnel; an unknown peer is resolved first. A packet to
    /// this node's own address loops back into the endpoint, as the reference daemon answers
    /// its own address too (an agent publishing on its own broker, pinging itself).
    pub(super) fn send_packet(&mut self, now: Instant, node: u32, packet: &[u8]) {
        if node == self.node_id() {
            match wire::Packet::decode(packet) {
                Ok(p) => self.endpoint.handle_packet(now, &p),
                Err(e) => tracing::debug!(error = %e, "loopback packet not decoded"),
            }
            return;
        }
        match self.tunnel.send(now, node, packet) {
            Ok(()) => {}
            Err(SendError::NeedResolve(node)) => {
                let first = !self.awaiting_resolve.contains_key(&node);
                if first && self.awaiting_resolve.len() >= AWAIT_RESOLVE_NODES {
                    return;
                }
                let held = self.awaiting_resolve.entry(node).or_default();
                if held.len() < AWAIT_RESOLVE_PER_NODE {
                    held.push(packet.to_vec());
                }
                if first {
                    self.outputs.push_back(Output::Resolve(node));
                }
            }
            Err(e) => tracing::debug!(node, error = %e, "packet not sent"),
        }
    }

    pub(super) fn flush_writes(&mut self, now: Instant, id: ConnectionId) {
        let Some(owned) = self.conns.get_mut(&id) else {
            return;
        };
        let writes: &mut PendingWrites = &mut owned.writes;
        let result = self
            .endpoint
            .with_connection(id, now, |c| writes.drain_into(c));
        let owner = owned.owner;
        let close_now = owned.close_requested && owned.writes.queued() == 0;
        let (accepted, closed) = result.unwrap_or((0, true));
        let mut credited = accepted;
        if closed {
            credited += owned.writes.clear();
        }
        if credited > 0 {
            self.push_event(
                owner,
                ClientEvent::SendCredit {
                    conn: id.0,
                    bytes: credited.min(u32::MAX as usize) as u32,
                },
            );
        }
        if close_now {
            self.endpoint.with_connection(id, now, |c| c.close(now));
        }
    }

    /// Pushes readable data to the owner, within its credit; `all` ignores the credit (the
    /// connection is going away and the endpoint will forget its buffer).
    pub(super) fn deliver(&mut self, now: Instant, id: ConnectionId, all: bool) {
        loop {
            let Some(owned) = self.conns.get_mut(&id) else {
                return;
            };
            if owned.end_sent {
                return;
            }
            let readable = self.endpoint.connection(id).map_or(0, |c| c.readable());
            let budget = if all {
                usize::MAX
            } else {
                owned.credit.min(usize::MAX as u64) as usize
            };
            let want = readable.min(budget).min(MAX_RECV_CHUNK);
            if want == 0 && readable > 0 {
                return; // no credit
            }
            // With nothing buffered (want 0) the read tells whether the stream ended.
            let mut chunk = Vec::with_capacity(want);
            let result = self
                .endpoint
                .with_connection(id, now, |c| c.read_to_vec(&mut chunk, want))
                .unwrap_or(Err(ReadError::Closed(CloseReason::Reset)));
            let owner = owned.owner;
            match result {
                Ok(0) if want > 0 => return,
                Ok(0) | Err(ReadError::Closed(_)) => {
                    owned.end_sent = true;
                    self.push_event(owner, ClientEvent::Closed { conn: id.0 });
                    return;
                }
                Ok(n) => {
                    owned.credit = owned.credit.saturating_sub(n as u64);
                    self.push_event(
                        owner,
                        ClientEvent::Recv {
                            conn: id.0,
                            data: chunk,
                        },
                    );
                }
                Err(ReadError::WouldBlock) => return,
            }
        }
    }

    pub(super) fn forget(&mut self, id: ConnectionId) {
        if let Some(owned) = self.conns.remove(&id) {
            if let Some(c) = self.clients.get_mut(&owned.owner) {
                c.conns.remove(&id);
            }
        }
    }

    pub(super) fn connection_event(&mut self, now: Instant, id: ConnectionId, event: ConnEvent) {
        match event {
            ConnEvent::Connected => {
                if let Some(token) = self.dials.remove(&id) {
                    self.outputs.push_back(Output::DialDone {
                        token,
                        result: Ok(id.0),
                    });
                }
            }
            ConnEvent::Readable | ConnEvent::Finished => self.deliver(now, id, false),
            ConnEvent::Writable => self.flush_writes(now, id),
            ConnEvent::Closed(reason) => {
                if let Some(token) = self.dials.remove(&id) {
                    self.outputs.push_back(Output::DialDone {
                        token,
                        result: Err(format!("dial: {reason}")),
                    });
                    self.forget(id);
                    return;
                }
                self.deliver(now, id, true);
                self.notify_closed(id, reason);
                if let Some(owned) = self.conns.get_mut(&id) {
                    let owner = owned.owner;
                    let dropped = owned.writes.clear();
                    let end = !owned.end_sent;
                    owned.end_sent = true;
                    if dropped > 0 {
                        self.push_event(
                            owner,
                            ClientEvent::SendCredit {
                                conn: id.0,
                                bytes: dropped.min(u32::MAX as usize) as u32,
                            },
                        );
                    }
                    if end {
                        self.push_event(owner, ClientEvent::Closed { conn: id.0 });
                    }
                }
                self.forget(id);
            }
        }
    }

    pub(super) fn accept_all(&mut self) {
        let mut ports: Vec<(u16, ClientId)> =
            self.listeners.iter().map(|(p, c)| (*p, *c)).collect();
        // Hash-map order differs between runs; accepts are announced in port order.
        ports.sort_unstable_by_key(|(port, _)| *port);
        for (port, client) in ports {
            while let Ok(Some(id)) = self.endpoint.accept(port) {
                let Some(conn) = self.endpoint.connection(id) else {
                    continue;
                };
                let remote = conn.remote();
                let credit = self
                    .clients
                    .get(&client)
                    .map_or(0, |c| c.options.recv_credit);
                self.conns
                    .insert(id, Owned::new(client, credit, remote, port));
                if let Some(c) = self.clients.get_mut(&client) {
                    c.conns.insert(id);
                }
                self.notify_established(id, remote, port);
                self.push_event(
                    client,
                    ClientEvent::Accept {
                        port,
                        conn: id.0,
                        remote,
                    },
                );
            }
        }
    }

    pub(super) fn datagrams(&mut self) {
        while let Some(d) = self.endpoint.recv_datagram_any() {
            self.notify_datagram(d.src, d.dst_port, d.data.len());
            let owner = self.listeners.get(&d.dst_port).copied();
            let targets: Vec<ClientId> = self
                .clients
                .iter()
                .filter(|(id, c)| !c.options.bound_datagrams || Some(**id) == owner)
                .map(|(id, _)| *id)
                .collect();
            for client in targets {
                self.push_event(
                    client,
                    ClientEvent::Datagram {
                        src: d.src,
                        dst_port: d.dst_port,
                        data: d.data.clone(),
                    },
                );
            }
        }
    }

    /// Moves everything along after a batch of inputs: connection events, accepts, datagrams,
    /// transport packets into the tunnel, tunnel events.
    pub fn flush(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some((id, event)) = self.endpoint.poll_event(now) {
                progressed = true;
                self.connection_event(now, id, event);
            }
            self.accept_all();
            self.datagrams();
            while let Some((node, packet)) = self.own_packets.pop_front() {
                self.send_packet(now, node, &packet);
            }
            let mut out = std::mem::take(&mut self.scratch);
            loop {
                out.clear();
                let Some(t) = self.endpoint.poll_transmit(now, &mut out) else {
                    break;
                };
                progressed = true;
                self.send_packet(now, t.dst.node, &out);
            }
            self.scratch = out;
            while let Some(event) = self.tunnel.poll_event() {
                self.tunnel_event(now, event);
            }
            if !progressed {
                break;
            }
        }
    }

    pub(super) fn tunnel_event(&mut self, now: Instant, event: TunnelEvent) {
        self.notify_tunnel(&event);
        match event {
            TunnelEvent::NeedRegistryKey(node) => self.outputs.push_back(Output::LookupKey(node)),
            TunnelEvent::NeedResolve(node) => {
                if let std::collections::btree_map::Entry::Vacant(e) =
                    self.awaiting_resolve.entry(node)
                {
                    e.insert(Vec::new());
                    self.outputs.push_back(Output::Resolve(node));
                }
            }
            TunnelEvent::PublicEndpoint(addr) => {
                self.outputs.push_back(Output::PublicEndpoint(addr))
            }
            TunnelEvent::PeerPathChanged { node, path } => {
                tracing::info!(node, ?path, "peer path changed")
            }
            TunnelEvent::PeerKeyed { node } => tracing::debug!(node, "peer keyed"),
            // The tunnel's round trip times the first SYN to the peer: lost, it is resent
            // on this basis instead of after the flat initial second.
            TunnelEvent::PeerRtt { node, rtt } => self.endpoint.set_node_rtt(node, rtt),
            TunnelEvent::PeerRekeyed { node } => tracing::info!(node, "peer restarted; rekeyed"),
            TunnelEvent::PeerExpired { node } => {
                tracing::info!(
                    node,
                    "idle peer forgotten; the next packet sets it up again"
                )
            }
            TunnelEvent::PeerGone { node } => {
                tracing::info!(node, "peer gone: no longer registered");
                let error = format!("peer node {node} is gone: its registration lapsed");
                self.fail_connections_to(now, node, &error);
            }
        }
    }
}
