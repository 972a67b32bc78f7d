//! `DaemonCore`: the whole daemon as a sans-IO state machine.
//!
//! It owns the tunnel, the transport endpoint, the trust book and who owns which port and
//! connection. Inputs carry `now`; outputs are polled ([`DaemonCore::poll_transmit`],
//! [`DaemonCore::poll_output`], [`DaemonCore::poll_timeout`]). Call [`DaemonCore::flush`] after
//! a batch of inputs: it moves packets from the transport into the tunnel, pushes data to
//! clients and collects events.

use super::conns::{Owned, PendingWrites};
use super::types::{ClientEvent, ClientId, ClientOptions, Output, TrustJob};
use crate::crypto::RegistryKey;
use crate::services::trust::{self, TrustBook, HANDSHAKE_PORT};
use crate::transport::{
    CloseReason, ConnectionId, Endpoint, EndpointConfig, Event as ConnEvent, ReadError,
};
use crate::tunnel::{SendError, Tunnel, TunnelEvent};
use crate::wire::{self, Addr, Flags, Header, Packet, Protocol};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

mod datapath;
mod events;
mod trust_rules;

/// Largest Recv pushed to a client at once.
const MAX_RECV_CHUNK: usize = 64 << 10;
/// Packets held per node while the registry resolves it.
const AWAIT_RESOLVE_PER_NODE: usize = 32;
/// Nodes with packets held for a resolve.
const AWAIT_RESOLVE_NODES: usize = 256;
/// Bytes a client may queue on one connection beyond what the stream's buffer takes; a client
/// that ignores its send credit past this loses the connection instead of growing memory.
const MAX_QUEUED_WRITE: usize = 16 << 20;

#[derive(Debug)]
struct Client {
    options: ClientOptions,
    ports: BTreeSet<u16>,
    conns: BTreeSet<ConnectionId>,
}

/// Counters for Info.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// Tunnel bytes sent.
    pub bytes_sent: u64,
    /// Tunnel bytes received.
    pub bytes_recv: u64,
    /// Tunnel datagrams sent.
    pub pkts_sent: u64,
    /// Tunnel datagrams received.
    pub pkts_recv: u64,
    /// Inbound SYNs refused because the peer is not trusted.
    pub untrusted_syns: u64,
    /// Inbound datagrams dropped because the peer is not trusted.
    pub untrusted_datagrams: u64,
}

/// The daemon's state machine. See the module documentation.
#[derive(Debug)]
pub struct DaemonCore {
    pub(super) tunnel: Tunnel,
    pub(super) endpoint: Endpoint,
    pub(super) trust: TrustBook,
    replay: trust::ReplayCache,
    clients: BTreeMap<ClientId, Client>,
    next_client: ClientId,
    listeners: HashMap<u16, ClientId>,
    pub(super) conns: HashMap<ConnectionId, Owned>,
    dials: HashMap<ConnectionId, u64>,
    awaiting_resolve: BTreeMap<u32, Vec<Vec<u8>>>,
    outputs: VecDeque<Output>,
    /// Packets built by the core itself (RSTs to untrusted peers), sent at the next flush.
    own_packets: VecDeque<(u32, Vec<u8>)>,
    plain: Vec<u8>,
    scratch: Vec<u8>,
    pub(super) counters: Counters,
}

impl DaemonCore {
    /// A core for node `tunnel.own_node()` with the given endpoint settings and trust book.
    pub fn new(
        tunnel: Tunnel,
        endpoint: EndpointConfig,
        rng: crate::net::Rng,
        trust: TrustBook,
    ) -> Self {
        let mut endpoint = endpoint;
        // The core routes datagrams to clients itself (bound ports, or everybody).
        endpoint.datagram_receive_all = true;
        DaemonCore {
            tunnel,
            endpoint: Endpoint::new(endpoint, rng),
            trust,
            replay: trust::ReplayCache::new(),
            clients: BTreeMap::new(),
            next_client: 1,
            listeners: HashMap::new(),
            conns: HashMap::new(),
            dials: HashMap::new(),
            awaiting_resolve: BTreeMap::new(),
            outputs: VecDeque::new(),
            own_packets: VecDeque::new(),
            plain: vec![0; 65_535],
            scratch: Vec::with_capacity(70_000),
            counters: Counters::default(),
        }
    }

    /// This node's ID.
    pub fn node_id(&self) -> u32 {
        self.tunnel.own_node()
    }

    /// The trust book.
    pub fn trust(&self) -> &TrustBook {
        &self.trust
    }

    /// The tunnel.
    pub fn tunnel(&self) -> &Tunnel {
        &self.tunnel
    }

    /// The transport endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Ports with a listener.
    pub fn bound_ports(&self) -> usize {
        self.listeners.len()
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    // ---- clients -----------------------------------------------------------------------------

    /// A new client.
    pub fn open_client(&mut self, options: ClientOptions) -> ClientId {
        let id = self.next_client;
        self.next_client += 1;
        self.clients.insert(
            id,
            Client {
                options,
                ports: BTreeSet::new(),
                conns: BTreeSet::new(),
            },
        );
        id
    }

    /// Changes how `client` is served (after an IPC Hello). Connections it already owns keep
    /// their credit.
    pub fn set_options(&mut self, client: ClientId, options: ClientOptions) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.options = options;
        }
    }

    /// The client went away: its connections are closed and its ports released.
    pub fn close_client(&mut self, now: Instant, client: ClientId) {
        let Some(c) = self.clients.remove(&client) else {
            return;
        };
        for port in c.ports {
            self.listeners.remove(&port);
            let _ = self.endpoint.unlisten(now, port);
        }
        for id in c.conns {
            self.conns.remove(&id);
            if let Some(token) = self.dials.remove(&id) {
                self.outputs.push_back(Output::DialDone {
                    token,
                    result: Err("dial: client disconnected".into()),
                });
            }
            self.endpoint
                .with_connection(id, now, |conn| conn.close(now));
        }
    }

    fn push_event(&mut self, client: ClientId, event: ClientEvent) {
        self.outputs.push_back(Output::Event(client, event));
    }

    /// Listens on `port` for `client`.
    pub fn bind(&mut self, client: ClientId, port: u16) -> Result<(), String> {
        if !self.clients.contains_key(&client) {
            return Err("unknown client".into());
        }
        if self.listeners.contains_key(&port) {
            return Err(format!("port {port} already bound"));
        }
        self.endpoint
            .listen(port)
            .map_err(|_| format!("port {port} already bound"))?;
        self.listeners.insert(port, client);
        if let Some(c) = self.clients.get_mut(&client) {
            c.ports.insert(port);
        }
        Ok(())
    }

    /// Stops `client`'s listener on `port`.
    pub fn unbind(&mut self, now: Instant, client: ClientId, port: u16) -> Result<(), String> {
        if self.listeners.get(&port) != Some(&client) {
            return Err(format!("port {port} is not bound by this client"));
        }
        self.listeners.remove(&port);
        let _ = self.endpoint.unlisten(now, port);
        if let Some(c) = self.clients.get_mut(&client) {
            c.ports.remove(&port);
        }
        Ok(())
    }

    /// Starts a dial; it ends with [`Output::DialDone`] carrying `token`.
    pub fn dial(
        &mut self,
        now: Instant,
        client: ClientId,
        addr: Addr,
        port: u16,
        token: u64,
    ) -> Result<(), String> {
        if addr.is_broadcast() {
            return Err("dial: broadcast address".into());
        }
        let credit = match self.clients.get(&client) {
            Some(c) => c.options.recv_credit,
            None => return Err("unknown client".into()),
        };
        let remote = wire::SocketAddr::new(addr, port);
        let id = self
            .endpoint
            .connect(now, remote)
            .map_err(|e| format!("dial: {e}"))?;
        let local_port = self.endpoint.connection(id).map_or(0, |c| c.local().port);
        self.conns
            .insert(id, Owned::new(client, credit, remote, local_port));
        if let Some(c) = self.clients.get_mut(&client) {
            c.conns.insert(id);
        }
        self.dials.insert(id, token);
        Ok(())
    }

    fn owned(&self, client: ClientId, conn: u32) -> Option<ConnectionId> {
        let id = ConnectionId(conn);
        (self.conns.get(&id)?.owner == client).then_some(id)
    }

    /// Queues `data` on `client`'s connection `conn`.
    pub fn send(&mut self, now: Instant, client: ClientId, conn: u32, data: Vec<u8>) {
        let len = data.len();
        let Some(id) = self.owned(client, conn) else {
            self.push_event(
                client,
                ClientEvent::SendCredit {
                    conn,
                    bytes: len.min(u32::MAX as usize) as u32,
                },
            );
            self.push_event(
                client,
                ClientEvent::SendFailed {
                    conn,
                    message: format!("connection {conn} not found"),
                },
            );
            return;
        };
        if let Some(owned) = self.conns.get_mut(&id) {
            if owned.writes.queued() + len > MAX_QUEUED_WRITE {
                self.push_event(
                    client,
                    ClientEvent::SendFailed {
                        conn,
                        message: format!(
                            "send: connection {conn} has more than {MAX_QUEUED_WRITE} bytes queued; wait for send credit"
                        ),
                    },
                );
                self.endpoint.with_connection(id, now, |c| c.abort(now));
                return;
            }
            owned.writes.push(data);
        }
        self.flush_writes(now, id);
    }

    /// `client` can take `bytes` more of Recv data on `conn`.
    pub fn grant(&mut self, now: Instant, client: ClientId, conn: u32, bytes: u32) {
        let Some(id) = self.owned(client, conn) else {
            return;
        };
        if let Some(owned) = self.conns.get_mut(&id) {
            owned.credit = owned.credit.saturating_add(u64::from(bytes));
        }
        self.deliver(now, id, false);
    }

    /// Closes `client`'s connection `conn` (gracefully: queued data first, then FIN).
    pub fn close(&mut self, now: Instant, client: ClientId, conn: u32) {
        let Some(id) = self.owned(client, conn) else {
            return;
        };
        if let Some(owned) = self.conns.get_mut(&id) {
            owned.close_requested = true;
            owned.end_sent = true;
        }
        self.finish_close(now, id);
    }

    /// Closes connection `conn` whichever client owns it (an operator's `pilotctl disconnect`;
    /// the socket is the user's own, mode 0600).
    pub fn disconnect(&mut self, now: Instant, conn: u32) -> Result<(), String> {
        let id = ConnectionId(conn);
        let owned = self
            .conns
            .get_mut(&id)
            .ok_or_else(|| format!("connection {conn} not found"))?;
        owned.close_requested = true;
        // The owner did not ask: tell it now that its stream has ended.
        let told = std::mem::replace(&mut owned.end_sent, true);
        let owner = owned.owner;
        if !told {
            self.push_event(owner, ClientEvent::Closed { conn });
        }
        self.finish_close(now, id);
        Ok(())
    }

    fn finish_close(&mut self, now: Instant, id: ConnectionId) {
        let pending = self.conns.get(&id).is_some_and(|o| o.writes.queued() > 0);
        if pending {
            return; // closed once the queue has gone into the stream
        }
        self.endpoint.with_connection(id, now, |c| c.close(now));
    }

    /// Sends a datagram from `client`.
    pub fn send_to(
        &mut self,
        now: Instant,
        client: ClientId,
        addr: Addr,
        port: u16,
        data: &[u8],
    ) -> Result<(), String> {
        if addr.is_broadcast() {
            return Err("sendto: broadcast is not supported".into());
        }
        if !self.clients.contains_key(&client) {
            return Err("unknown client".into());
        }
        // From the endpoint's one ephemeral datagram port, as the reference does (Q23).
        let src_port = None;
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let result = self
            .endpoint
            .send_datagram(src_port, wire::SocketAddr::new(addr, port), data, &mut out)
            .map_err(|e| format!("sendto: {e}"));
        if result.is_ok() {
            self.send_packet(now, addr.node, &out);
        }
        self.scratch = out;
        result.map(drop)
    }

    // ---- network input -----------------------------------------------------------------------

    /// A datagram from the tunnel socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.counters.pkts_recv += 1;
        self.counters.bytes_recv += bytes.len() as u64;
        let mut plain = std::mem::take(&mut self.plain);
        if let Some(received) = self.tunnel.handle_datagram(now, from, bytes, &mut plain) {
            let (peer, packet) = (received.peer, received.packet);
            self.route(now, peer, &packet);
        }
        self.plain = plain;
    }

    /// Trust enforcement, then the endpoint.
    fn route(&mut self, now: Instant, peer: u32, packet: &Packet<'_>) {
        let h = &packet.header;
        if h.dst.node != self.node_id() {
            return;
        }
        let trusted = self.trust.is_trusted(peer);
        match h.protocol {
            Protocol::STREAM => {
                let syn = h.flags.contains(Flags::SYN) && !h.flags.contains(Flags::ACK);
                if syn && !trusted && h.dst_port != HANDSHAKE_PORT {
                    self.counters.untrusted_syns += 1;
                    self.refuse(peer, h);
                    return;
                }
            }
            Protocol::DATAGRAM if !trusted => {
                self.counters.untrusted_datagrams += 1;
                return;
            }
            _ => {}
        }
        self.endpoint.handle_packet(now, packet);
    }

    /// An RST for a SYN from a peer that is not trusted, as the endpoint refuses a closed port.
    fn refuse(&mut self, peer: u32, syn: &Header) {
        let header = Header {
            flags: Flags::RST,
            protocol: Protocol::STREAM,
            src: syn.dst,
            dst: syn.src,
            src_port: syn.dst_port,
            dst_port: syn.src_port,
            seq: 0,
            ack: syn.seq.wrapping_add(1),
            window: 0,
            ..Header::default()
        };
        let mut out = Vec::with_capacity(wire::HEADER_LEN);
        if header.encode_packet(&[], &mut out).is_ok() && self.own_packets.len() < 256 {
            self.own_packets.push_back((peer, out));
        }
    }

    /// The registry resolved `node` (or could not).
    pub fn on_resolved(&mut self, now: Instant, node: u32, result: Result<SocketAddr, String>) {
        let held = self.awaiting_resolve.remove(&node).unwrap_or_default();
        match result {
            Ok(addr) => {
                if let Err(e) = self.tunnel.add_peer(now, node, Some(addr)) {
                    tracing::warn!(node, error = %e, "peer not added");
                    return;
                }
                self.notify_peer_added(node, addr);
                for packet in held {
                    self.send_packet(now, node, &packet);
                }
            }
            Err(error) => {
                tracing::info!(node, %error, "resolve failed");
                let dials: Vec<ConnectionId> = self
                    .dials
                    .keys()
                    .copied()
                    .filter(|id| {
                        self.conns
                            .get(id)
                            .is_some_and(|o| o.remote.addr.node == node)
                    })
                    .collect();
                self.fail_connections(now, dials, &format!("dial: {error}"));
            }
        }
    }

    /// Ends every connection to `node` (it is gone): dials fail with `error`, established
    /// connections close.
    pub(super) fn fail_connections_to(&mut self, now: Instant, node: u32, error: &str) {
        let mut ids: Vec<ConnectionId> = self
            .conns
            .iter()
            .filter(|(_, o)| o.remote.addr.node == node)
            .map(|(id, _)| *id)
            .collect();
        // Hash-map order differs between runs; close in a reproducible one.
        ids.sort_unstable();
        self.fail_connections(now, ids, error);
    }

    fn fail_connections(&mut self, now: Instant, ids: Vec<ConnectionId>, error: &str) {
        for id in ids {
            if let Some(token) = self.dials.remove(&id) {
                self.outputs.push_back(Output::DialDone {
                    token,
                    result: Err(error.to_string()),
                });
            } else if let Some(owner) = self.conns.get(&id).map(|o| o.owner) {
                self.push_event(owner, ClientEvent::Closed { conn: id.0 });
            }
            self.forget(id);
            self.endpoint.with_connection(id, now, |c| c.discard(now));
        }
    }

    /// The registry's answer about `node`'s key, after [`Output::LookupKey`].
    pub fn on_registry_key(&mut self, now: Instant, node: u32, key: RegistryKey) {
        self.tunnel.on_registry_key(now, node, key);
        let mut plain = std::mem::take(&mut self.plain);
        while let Some(received) = self.tunnel.poll_received(now, &mut plain) {
            let (peer, packet) = (received.peer, received.packet);
            self.route(now, peer, &packet);
        }
        self.plain = plain;
    }

    /// Re-registration gave this node `node` (normally the same ID).
    pub fn on_registered(&mut self, now: Instant, node: u32) {
        if node != self.node_id() {
            tracing::warn!(
                old = self.node_id(),
                new = node,
                "the registry assigned a new node ID; existing connections keep the old address"
            );
            self.tunnel.set_own_node(now, node);
            self.trust.set_own_node(node);
        }
        self.notify_reregistered(node);
        // Spec §6.6 rule 19: the registry may have lost the pairs.
        let peers: Vec<u32> = self.trust.trusted().keys().copied().collect();
        for peer in peers {
            self.outputs
                .push_back(Output::Trust(TrustJob::ReportTrust { peer }));
        }
    }

    // ---- time and output ---------------------------------------------------------------------

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tunnel.handle_timeout(now);
        self.endpoint.handle_timeout(now);
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.tunnel.poll_timeout(), self.endpoint.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next datagram for the tunnel socket; give the buffer back with [`Self::recycle`].
    pub fn poll_transmit(&mut self) -> Option<crate::tunnel::Transmit> {
        let t = self.tunnel.poll_transmit()?;
        self.counters.pkts_sent += 1;
        self.counters.bytes_sent += t.bytes.len() as u64;
        Some(t)
    }

    /// Returns a transmitted buffer to the pool.
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        self.tunnel.recycle(buffer);
    }

    /// The next output for the shell.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Tells the tunnel its socket's private addresses (LAN candidates for same-NAT peers).
    pub fn set_local_candidates(&mut self, now: Instant, addrs: &[std::net::SocketAddr]) {
        self.tunnel.set_local_candidates(now, addrs);
    }

    /// Starts the tunnel's endpoint discovery through the beacon.
    pub fn discover(&mut self, now: Instant) {
        self.tunnel.discover_request(now);
    }

    /// Graceful shutdown: every connection gets a FIN (after its queued data).
    pub fn shutdown(&mut self, now: Instant) {
        let mut ids: Vec<ConnectionId> = self.conns.keys().copied().collect();
        // Hash-map order differs between runs; FINs go out in a reproducible one.
        ids.sort_unstable();
        for id in ids {
            if let Some(owned) = self.conns.get_mut(&id) {
                owned.close_requested = true;
            }
            self.finish_close(now, id);
        }
    }

    /// Whether no connection is still closing (after [`Self::shutdown`]).
    pub fn is_quiet(&self) -> bool {
        self.endpoint.live_connections() == 0
    }
}
