//! `DaemonCore`: the whole daemon as a sans-IO state machine.
//!
//! It owns the tunnel, the transport endpoint, the trust book and who owns which port and
//! connection. Inputs carry `now`; outputs are polled ([`DaemonCore::poll_transmit`],
//! [`DaemonCore::poll_output`], [`DaemonCore::poll_timeout`]). Call [`DaemonCore::flush`] after
//! a batch of inputs: it moves packets from the transport into the tunnel, pushes data to
//! clients and collects events.

use super::conns::{Owned, PendingWrites};
use super::types::{ClientEvent, ClientId, ClientOptions, Output, Relay, TrustJob};
use crate::crypto::RegistryKey;
use crate::registry::client::HandshakeEvent;
use crate::services::trust::{
    self, book::TrustEvent, Action, MessageKind, TrustBook, HANDSHAKE_PORT,
};
use crate::transport::{
    CloseReason, ConnectionId, Endpoint, EndpointConfig, Event as ConnEvent, ReadError,
};
use crate::tunnel::{SendError, Tunnel, TunnelEvent};
use crate::wire::{self, Addr, Flags, Header, Packet, Protocol};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

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
        if addr.node == self.node_id() {
            return Err("dial: cannot dial this node's own address".into());
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
                for packet in held {
                    self.send_packet(now, node, &packet);
                }
            }
            Err(error) => {
                tracing::info!(node, %error, "resolve failed");
                let failed: Vec<ConnectionId> = self
                    .dials
                    .keys()
                    .copied()
                    .filter(|id| {
                        self.conns
                            .get(id)
                            .is_some_and(|o| o.remote.addr.node == node)
                    })
                    .collect();
                for id in failed {
                    if let Some(token) = self.dials.remove(&id) {
                        self.outputs.push_back(Output::DialDone {
                            token,
                            result: Err(format!("dial: {error}")),
                        });
                    }
                    self.forget(id);
                    self.endpoint.with_connection(id, now, |c| c.discard(now));
                }
            }
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
        // Spec §6.6 rule 19: the registry may have lost the pairs.
        let peers: Vec<u32> = self.trust.trusted().keys().copied().collect();
        for peer in peers {
            self.outputs
                .push_back(Output::Trust(TrustJob::ReportTrust { peer }));
        }
    }

    // ---- trust -------------------------------------------------------------------------------

    /// An IPC handshake command.
    pub fn handshake(
        &mut self,
        now: Instant,
        now_unix: i64,
        cmd: crate::ipc::HandshakeCommand,
    ) -> Result<serde_json::Value, String> {
        use crate::ipc::HandshakeCommand as H;
        use serde_json::json;
        match cmd {
            H::Send {
                node,
                justification,
            } => {
                let (_, actions) = self
                    .trust
                    .request(node, &justification, now_unix)
                    .map_err(|e| format!("handshake request: {e}"))?;
                self.apply(now, actions);
                Ok(json!({"node_id": node, "status": "sent"}))
            }
            H::Approve { node } => {
                // Approving nothing is a success, as in the reference.
                if let Ok(actions) = self.trust.approve(node, now_unix) {
                    self.apply(now, actions);
                }
                Ok(json!({"node_id": node, "status": "approved"}))
            }
            H::Reject { node, reason } => {
                if let Ok(actions) = self.trust.reject(node, &reason) {
                    self.apply(now, actions);
                }
                Ok(json!({"node_id": node, "status": "rejected"}))
            }
            H::Revoke { node } => {
                let actions = self
                    .trust
                    .revoke(node)
                    .map_err(|e| format!("handshake revoke: {e}"))?;
                self.apply(now, actions);
                Ok(json!({"node_id": node, "status": "revoked"}))
            }
            H::Pending => Ok(super::info::pending_json(&self.trust)),
            H::Trusted => Ok(super::info::trusted_json(&self.trust)),
        }
    }

    /// A handshake message from `peer` over port 444, already verified against the registry's
    /// key. Replays are dropped here.
    pub fn on_handshake_message(
        &mut self,
        now: Instant,
        now_unix: i64,
        peer: u32,
        message: &trust::HandshakeMessage,
        key: [u8; 32],
    ) {
        let Ok(kind) = message.kind() else { return };
        if !self.replay.insert(message.digest(), now_unix) {
            tracing::info!(peer, "replayed handshake message dropped");
            return;
        }
        let actions = match kind {
            MessageKind::Request => {
                self.trust
                    .on_request(peer, Some(key), &message.justification, now_unix)
            }
            MessageKind::Accept => self.trust.on_accept(peer, Some(key), now_unix),
            MessageKind::Reject => self.trust.on_reject(peer),
            MessageKind::Revoke => self.trust.on_revoke(peer),
        };
        self.apply(now, actions);
    }

    /// A handshake relayed by the registry (pushed or polled).
    pub fn on_relayed(&mut self, now: Instant, now_unix: i64, event: HandshakeEvent) {
        let actions = match event {
            HandshakeEvent::Request(r) => {
                self.trust
                    .on_request(r.from_node_id, None, &r.justification, now_unix)
            }
            HandshakeEvent::Response(r) if r.accept => {
                self.trust.on_accept(r.from_node_id, None, now_unix)
            }
            HandshakeEvent::Response(r) => self.trust.on_reject(r.from_node_id),
        };
        self.apply(now, actions);
    }

    fn apply(&mut self, now: Instant, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendRequest {
                    peer,
                    justification,
                } => self.trust_job(TrustJob::Send {
                    peer,
                    kind: MessageKind::Request,
                    text: justification,
                    relay: Relay::Request,
                }),
                Action::SendAccept { peer } => self.trust_job(TrustJob::Send {
                    peer,
                    kind: MessageKind::Accept,
                    text: String::new(),
                    relay: Relay::Accept,
                }),
                Action::SendReject { peer, reason } => {
                    self.trust_job(TrustJob::Respond {
                        peer,
                        accept: false,
                    });
                    self.trust_job(TrustJob::Send {
                        peer,
                        kind: MessageKind::Reject,
                        text: reason,
                        relay: Relay::None,
                    });
                }
                Action::SendRevoke { peer } => {
                    self.trust_job(TrustJob::RevokeTrust { peer });
                    self.trust_job(TrustJob::Send {
                        peer,
                        kind: MessageKind::Revoke,
                        text: "trust revoked".into(),
                        relay: Relay::None,
                    });
                }
                Action::ReportTrust { peer } => self.trust_job(TrustJob::ReportTrust { peer }),
                Action::DropPeer { peer } => self.drop_peer(now, peer),
                Action::Persist => self
                    .outputs
                    .push_back(Output::PersistTrust(trust::store::encode(&self.trust))),
                Action::Notify(event) => log_trust_event(&event),
            }
        }
    }

    fn trust_job(&mut self, job: TrustJob) {
        self.outputs.push_back(Output::Trust(job));
    }

    /// Trust in `peer` ended: its connections are reset. The tunnel state stays until the
    /// revoke notice (queued just before) is on its way; the peer can no longer open anything
    /// but the handshake port.
    fn drop_peer(&mut self, now: Instant, peer: u32) {
        let ids: Vec<ConnectionId> = self
            .conns
            .iter()
            .filter(|(_, o)| o.remote.addr.node == peer && o.remote.port != HANDSHAKE_PORT)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.endpoint.with_connection(id, now, |c| c.abort(now));
        }
    }

    // ---- the data path -----------------------------------------------------------------------

    /// Hands an encoded packet to the tunnel; an unknown peer is resolved first.
    fn send_packet(&mut self, now: Instant, node: u32, packet: &[u8]) {
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

    fn flush_writes(&mut self, now: Instant, id: ConnectionId) {
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
    fn deliver(&mut self, now: Instant, id: ConnectionId, all: bool) {
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
            let mut chunk = vec![0u8; want.max(1)];
            let result = if want == 0 && readable > 0 {
                return; // no credit
            } else if want == 0 {
                // Nothing buffered: learn whether the stream ended.
                self.endpoint
                    .with_connection(id, now, |c| c.read(&mut []))
                    .unwrap_or(Err(ReadError::Closed(CloseReason::Reset)))
            } else {
                self.endpoint
                    .with_connection(id, now, |c| c.read(&mut chunk))
                    .unwrap_or(Err(ReadError::Closed(CloseReason::Reset)))
            };
            let owner = owned.owner;
            match result {
                Ok(0) if want > 0 => return,
                Ok(0) | Err(ReadError::Closed(_)) => {
                    owned.end_sent = true;
                    self.push_event(owner, ClientEvent::Closed { conn: id.0 });
                    return;
                }
                Ok(n) => {
                    chunk.truncate(n);
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

    fn forget(&mut self, id: ConnectionId) {
        if let Some(owned) = self.conns.remove(&id) {
            if let Some(c) = self.clients.get_mut(&owned.owner) {
                c.conns.remove(&id);
            }
        }
    }

    fn connection_event(&mut self, now: Instant, id: ConnectionId, event: ConnEvent) {
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

    fn accept_all(&mut self) {
        let ports: Vec<(u16, ClientId)> = self.listeners.iter().map(|(p, c)| (*p, *c)).collect();
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

    fn datagrams(&mut self) {
        while let Some(d) = self.endpoint.recv_datagram_any() {
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
                self.tunnel_event(event);
            }
            if !progressed {
                break;
            }
        }
    }

    fn tunnel_event(&mut self, event: TunnelEvent) {
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
            TunnelEvent::PeerRekeyed { node } => tracing::info!(node, "peer restarted; rekeyed"),
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

    /// Starts the tunnel's endpoint discovery through the beacon.
    pub fn discover(&mut self, now: Instant) {
        self.tunnel.discover_request(now);
    }

    /// Graceful shutdown: every connection gets a FIN (after its queued data).
    pub fn shutdown(&mut self, now: Instant) {
        let ids: Vec<ConnectionId> = self.conns.keys().copied().collect();
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

fn log_trust_event(event: &TrustEvent) {
    tracing::info!(?event, "trust");
}
