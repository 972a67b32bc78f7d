//! The daemon's transport demultiplexer as a sans-IO state machine (`spec/transport.md` §2, §4.3,
//! §12, §13): connection table, listeners with bounded accept queues, ephemeral ports,
//! connection limits, datagram ports and control pings.
//!
//! Lookups go through a hash map on the (local port, remote address, remote port) tuple (the
//! reference scanned every connection per packet, Q17); anything whose order can reach the
//! output (transmit order, timers) is kept in ordered or FIFO structures, so a run is
//! reproducible. Every connection has its own buffers: one that nobody reads only shrinks its
//! own window, and the endpoint never waits on it (Q7).

use super::config::Config;
use super::connection::{Connection, Event, Transmit};
use super::datagram::{self, Datagram, DatagramError, DatagramQueue};
use super::syn_limit::{SynLimiter, SynLimits};
use crate::net::Rng;
use crate::wire::{Addr, Flags, Header, Packet, Protocol, SocketAddr, HEADER_LEN};
use rand_core::Rng as _;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// First ephemeral port.
pub const EPHEMERAL_MIN: u16 = 49152;
/// Last ephemeral port.
pub const EPHEMERAL_MAX: u16 = 65535;

/// Most endpoint-generated packets (RSTs, pongs) waiting to be sent; more are dropped, so a
/// flood of SYNs or pings cannot grow memory.
const MAX_OUTBOX: usize = 256;

/// Peers whose round-trip time the endpoint remembers; past this the lowest node ID is
/// forgotten (an ordered map, so which one is deterministic).
const MAX_PEER_RTTS: usize = 4096;

/// A connection's daemon-local id: sequential from 1, never reused (T-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u32);

/// Endpoint settings; defaults are the reference's (§14).
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// This daemon's virtual address.
    pub local_addr: Addr,
    /// Settings for every connection.
    pub connection: Config,
    /// Connections a listener holds before the application accepts them (reference 64).
    pub accept_queue: usize,
    /// Live inbound connections per local port (reference 1024).
    pub max_connections_per_port: usize,
    /// Live inbound connections in total (reference 4096).
    pub max_connections: usize,
    /// Largest datagram payload sent.
    pub max_datagram: usize,
    /// Datagrams queued per bound port.
    pub datagram_queue: usize,
    /// Datagram payload bytes queued per bound port.
    pub datagram_queue_bytes: usize,
    /// Deliver datagrams for unbound ports to a catch-all queue (the reference's
    /// "every client gets every datagram" behaviour, for clients that expect it).
    pub datagram_receive_all: bool,
    /// SYN rate limits (T-11); `None` disables them.
    pub syn_limits: Option<SynLimits>,
}

impl EndpointConfig {
    /// Reference defaults for the daemon at `local_addr`.
    pub fn new(local_addr: Addr) -> Self {
        EndpointConfig {
            local_addr,
            connection: Config::default(),
            accept_queue: 64,
            max_connections_per_port: 1024,
            max_connections: 4096,
            max_datagram: datagram::MAX_PAYLOAD_ENCRYPTED,
            datagram_queue: 256,
            datagram_queue_bytes: 1 << 20,
            datagram_receive_all: false,
            syn_limits: Some(SynLimits::default()),
        }
    }
}

/// Why an endpoint operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// A listener already owns the port.
    #[error("port {0} already has a listener")]
    PortInUse(u16),
    /// Every ephemeral port is taken.
    #[error("no free ephemeral port")]
    NoFreePort,
    /// No such connection (never existed, or finished and released).
    #[error("unknown connection")]
    UnknownConnection,
    /// No listener on the port.
    #[error("no listener on port {0}")]
    NotListening(u16),
}

/// Counters for the endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// RSTs sent in answer to SYNs (no listener, limits, full accept queue).
    pub syn_refused: u64,
    /// Stream packets for no known connection, ignored.
    pub unknown_tuple: u64,
    /// Old entries replaced by a new connection on the same tuple.
    pub replaced: u64,
    /// Datagrams received and queued.
    pub datagrams_received: u64,
    /// Datagrams dropped (empty, no port, queue full).
    pub datagrams_dropped: u64,
    /// SYNs dropped silently by the rate limits.
    pub syn_rate_limited: u64,
    /// Pongs sent.
    pub pongs: u64,
    /// Endpoint packets dropped because the outbox was full.
    pub outbox_dropped: u64,
}

type Tuple = (u16, Addr, u16);

#[derive(Debug)]
struct Slot {
    conn: Connection,
    tuple: Tuple,
    /// Counted against the limits (not TIME_WAIT, not closed).
    live: bool,
    /// Registered timer deadline.
    timer: Option<Instant>,
    queued_tx: bool,
    queued_ev: bool,
}

#[derive(Debug)]
struct Listener {
    queue: VecDeque<ConnectionId>,
}

/// An endpoint-generated packet (no connection state behind it).
#[derive(Debug)]
struct OutPacket {
    header: Header,
    payload: Vec<u8>,
}

/// The connection table and everything addressed to this daemon's ports.
#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    rng: Rng,
    slots: HashMap<ConnectionId, Slot>,
    index: HashMap<Tuple, ConnectionId>,
    listeners: HashMap<u16, Listener>,
    /// Entries (any state) per local port: the ephemeral allocator skips these.
    ports_in_use: HashMap<u16, usize>,
    live_per_port: HashMap<u16, usize>,
    live_total: usize,
    next_id: u32,
    next_ephemeral: u16,
    timers: BTreeSet<(Instant, ConnectionId)>,
    tx_queue: VecDeque<ConnectionId>,
    ev_queue: VecDeque<ConnectionId>,
    outbox: VecDeque<OutPacket>,
    datagram_ports: HashMap<u16, DatagramQueue>,
    datagram_all: DatagramQueue,
    /// The source port for datagrams sent without a bound port (allocated once, Q23).
    datagram_ephemeral: Option<u16>,
    /// Created on the first SYN (the endpoint has no `now` before that).
    syn_limiter: Option<SynLimiter>,
    /// Reused list of connections whose timers are due.
    due_scratch: Vec<ConnectionId>,
    /// Round-trip time per peer, from finished handshakes and connections or from the
    /// daemon (the tunnel's probes): new connections to the peer start from it.
    peer_rtt: BTreeMap<u32, Duration>,
    stats: EndpointStats,
}

impl Endpoint {
    /// An endpoint drawing ISNs and the ephemeral-port start from `rng` (Q12, Q16).
    pub fn new(config: EndpointConfig, mut rng: Rng) -> Self {
        let span = u32::from(EPHEMERAL_MAX - EPHEMERAL_MIN) + 1;
        let next_ephemeral = EPHEMERAL_MIN + (rng.next_u32() % span) as u16;
        let datagram_all = DatagramQueue::new(config.datagram_queue, config.datagram_queue_bytes);
        Endpoint {
            config,
            rng,
            slots: HashMap::new(),
            index: HashMap::new(),
            listeners: HashMap::new(),
            ports_in_use: HashMap::new(),
            live_per_port: HashMap::new(),
            live_total: 0,
            next_id: 1,
            next_ephemeral,
            timers: BTreeSet::new(),
            tx_queue: VecDeque::new(),
            ev_queue: VecDeque::new(),
            outbox: VecDeque::new(),
            datagram_ports: HashMap::new(),
            datagram_all,
            datagram_ephemeral: None,
            syn_limiter: None,
            due_scratch: Vec::new(),
            peer_rtt: BTreeMap::new(),
            stats: EndpointStats::default(),
        }
    }

    /// Tells the endpoint the round-trip time to `peer` (for example the tunnel's measurement):
    /// connections dialled to or accepted from it afterwards time their SYN, SYN-ACK and first
    /// segments from it instead of the flat initial RTO.
    pub fn set_peer_rtt(&mut self, peer: Addr, rtt: Duration) {
        self.set_node_rtt(peer.node, rtt);
    }

    /// [`Endpoint::set_peer_rtt`] for every address of node `node`: one tunnel path carries
    /// all of a node's traffic, whatever network its addresses are in.
    pub fn set_node_rtt(&mut self, node: u32, rtt: Duration) {
        if rtt.is_zero() {
            return;
        }
        if self.peer_rtt.len() >= MAX_PEER_RTTS && !self.peer_rtt.contains_key(&node) {
            self.peer_rtt.pop_first();
        }
        self.peer_rtt.insert(node, rtt);
    }

    /// The round-trip time remembered for `peer` (its node).
    pub fn peer_rtt(&self, peer: Addr) -> Option<Duration> {
        self.peer_rtt.get(&peer.node).copied()
    }

    /// Remembers what a connection measured for its peer.
    fn learn_rtt(&mut self, id: ConnectionId) {
        let measured = self
            .slots
            .get(&id)
            .and_then(|s| s.conn.measured_rtt().map(|rtt| (s.conn.remote().addr, rtt)));
        if let Some((peer, rtt)) = measured {
            self.set_peer_rtt(peer, rtt);
        }
    }

    /// This daemon's address.
    pub fn local_addr(&self) -> Addr {
        self.config.local_addr
    }

    /// Counters.
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// Connections in the table (any state).
    pub fn connection_count(&self) -> usize {
        self.slots.len()
    }

    /// Live connections (counted against the limits).
    pub fn live_connections(&self) -> usize {
        self.live_total
    }

    // ---- listeners and dials ---------------------------------------------------------------

    /// Starts accepting connections on `port` (any port, T-3).
    pub fn listen(&mut self, port: u16) -> Result<(), EndpointError> {
        if self.listeners.contains_key(&port) {
            return Err(EndpointError::PortInUse(port));
        }
        self.listeners.insert(
            port,
            Listener {
                queue: VecDeque::new(),
            },
        );
        Ok(())
    }

    /// Stops listening; connections not yet accepted are reset (nobody would own them, Q14).
    pub fn unlisten(&mut self, now: Instant, port: u16) -> Result<(), EndpointError> {
        let listener = self
            .listeners
            .remove(&port)
            .ok_or(EndpointError::NotListening(port))?;
        for id in listener.queue {
            self.with_connection(id, now, |c| c.abort(now));
        }
        Ok(())
    }

    /// The next connection waiting on `port`'s listener.
    pub fn accept(&mut self, port: u16) -> Result<Option<ConnectionId>, EndpointError> {
        let listener = self
            .listeners
            .get_mut(&port)
            .ok_or(EndpointError::NotListening(port))?;
        while let Some(id) = listener.queue.pop_front() {
            if self.slots.contains_key(&id) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Dials `remote` from a fresh ephemeral port. The dial completes with
    /// [`Event::Connected`] (from the packet handler, not a polling loop, Q4).
    pub fn connect(
        &mut self,
        now: Instant,
        remote: SocketAddr,
    ) -> Result<ConnectionId, EndpointError> {
        let port = self.allocate_port()?;
        let local = SocketAddr::new(self.config.local_addr, port);
        let isn = self.rng.next_u32();
        let mut conn = Connection::connect(self.config.connection.clone(), local, remote, isn, now);
        if let Some(rtt) = self.peer_rtt(remote.addr) {
            conn.set_rtt_hint(now, rtt);
        }
        let id = self.insert(conn, (port, remote.addr, remote.port), now);
        Ok(id)
    }

    /// A free ephemeral port: random start, then sequential; skips ports with any connection
    /// entry (TIME_WAIT included), listeners and datagram bindings (T-4 and its Rust guidance).
    fn allocate_port(&mut self) -> Result<u16, EndpointError> {
        let span = u32::from(EPHEMERAL_MAX - EPHEMERAL_MIN) + 1;
        for _ in 0..span {
            let candidate = self.next_ephemeral;
            self.next_ephemeral = if candidate == EPHEMERAL_MAX {
                EPHEMERAL_MIN
            } else {
                candidate + 1
            };
            let taken = self.ports_in_use.contains_key(&candidate)
                || self.listeners.contains_key(&candidate)
                || self.datagram_ports.contains_key(&candidate)
                || self.datagram_ephemeral == Some(candidate);
            if !taken {
                return Ok(candidate);
            }
        }
        Err(EndpointError::NoFreePort)
    }

    fn insert(&mut self, conn: Connection, tuple: Tuple, now: Instant) -> ConnectionId {
        let id = ConnectionId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1).max(1);
        *self.ports_in_use.entry(tuple.0).or_insert(0) += 1;
        *self.live_per_port.entry(tuple.0).or_insert(0) += 1;
        self.live_total += 1;
        self.index.insert(tuple, id);
        self.slots.insert(
            id,
            Slot {
                conn,
                tuple,
                live: true,
                timer: None,
                queued_tx: false,
                queued_ev: false,
            },
        );
        self.touch(id, now);
        id
    }

    fn remove(&mut self, id: ConnectionId) {
        self.learn_rtt(id);
        let Some(slot) = self.slots.remove(&id) else {
            return;
        };
        if self.index.get(&slot.tuple) == Some(&id) {
            self.index.remove(&slot.tuple);
        }
        if let Some(t) = slot.timer {
            self.timers.remove(&(t, id));
        }
        if slot.live {
            self.unlive(slot.tuple.0);
        }
        if let Some(n) = self.ports_in_use.get_mut(&slot.tuple.0) {
            *n -= 1;
            if *n == 0 {
                self.ports_in_use.remove(&slot.tuple.0);
            }
        }
    }

    fn unlive(&mut self, port: u16) {
        self.live_total -= 1;
        if let Some(n) = self.live_per_port.get_mut(&port) {
            *n -= 1;
            if *n == 0 {
                self.live_per_port.remove(&port);
            }
        }
    }

    /// Re-files a connection after anything happened to it: limits, timer, transmit and event
    /// queues, and removal once it is finished and holds nothing for the application.
    fn touch(&mut self, id: ConnectionId, _now: Instant) {
        self.refile(id, true);
    }

    /// The work of `touch`; `may_send` queues the connection for transmission.
    fn refile(&mut self, id: ConnectionId, may_send: bool) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let live_now = !(slot.conn.is_time_wait() || slot.conn.is_closed());
        let was_live = slot.live;
        slot.live = live_now;
        let port = slot.tuple.0;
        // Timers are registered lazily: a deadline that moved later keeps its earlier entry,
        // which then fires early, finds nothing due and registers the real one. The RTO moves
        // later on every ACK, so this keeps the ordered set out of the per-packet path.
        let deadline = slot.conn.poll_timeout();
        let old = slot.timer;
        let register = match (old, deadline) {
            (Some(o), Some(d)) => d < o,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if register {
            slot.timer = deadline;
        }
        if may_send && !slot.queued_tx {
            slot.queued_tx = true;
            self.tx_queue.push_back(id);
        }
        if slot.conn.has_events() && !slot.queued_ev {
            slot.queued_ev = true;
            self.ev_queue.push_back(id);
        }
        let finished =
            slot.conn.is_drained() && slot.conn.readable() == 0 && !slot.conn.has_events();
        if was_live && !live_now {
            let s = slot.conn.stats();
            tracing::debug!(
                id = id.0,
                sent = s.bytes_sent,
                received = s.bytes_received,
                retransmits = s.retransmits,
                episodes = s.fast_retransmits,
                rack_losses = s.rack_losses,
                tail_probes = s.tail_probes,
                timeouts = s.timeouts,
                dup_acks = s.dup_acks,
                recv_dropped = s.recv_dropped,
                cwnd = s.cwnd,
                srtt_us = s.srtt_us,
                "connection finished"
            );
            self.unlive(port);
        }
        if register {
            if let Some(t) = old {
                self.timers.remove(&(t, id));
            }
            if let Some(t) = deadline {
                self.timers.insert((t, id));
            }
        }
        if finished {
            self.remove(id);
        }
    }

    /// Runs `f` on a connection, then re-files it. `None` if there is no such connection.
    pub fn with_connection<R>(
        &mut self,
        id: ConnectionId,
        now: Instant,
        f: impl FnOnce(&mut Connection) -> R,
    ) -> Option<R> {
        let r = f(&mut self.slots.get_mut(&id)?.conn);
        self.touch(id, now);
        Some(r)
    }

    /// Read-only view of a connection.
    pub fn connection(&self, id: ConnectionId) -> Option<&Connection> {
        self.slots.get(&id).map(|s| &s.conn)
    }

    /// The next connection event, in the order connections produced them. Connections created
    /// by a listener report `Connected` when they are created, before `accept` hands them out.
    pub fn poll_event(&mut self, now: Instant) -> Option<(ConnectionId, Event)> {
        while let Some(&id) = self.ev_queue.front() {
            let Some(slot) = self.slots.get_mut(&id) else {
                self.ev_queue.pop_front();
                continue;
            };
            match slot.conn.poll_event() {
                Some(ev) => {
                    if !slot.conn.has_events() {
                        slot.queued_ev = false;
                        self.ev_queue.pop_front();
                        self.touch(id, now);
                    }
                    if matches!(ev, Event::Connected | Event::Closed(_)) {
                        self.learn_rtt(id);
                    }
                    return Some((id, ev));
                }
                None => {
                    slot.queued_ev = false;
                    self.ev_queue.pop_front();
                }
            }
        }
        None
    }

    // ---- packets in ------------------------------------------------------------------------

    /// Takes in one decoded packet addressed to this daemon.
    pub fn handle_packet(&mut self, now: Instant, packet: &Packet<'_>) {
        match packet.header.protocol {
            Protocol::STREAM => self.handle_stream(now, packet),
            Protocol::DATAGRAM => self.handle_datagram(packet),
            Protocol::CONTROL => self.handle_control(packet),
            _ => {}
        }
    }

    fn handle_stream(&mut self, now: Instant, packet: &Packet<'_>) {
        let h = &packet.header;
        let tuple = (h.dst_port, h.src, h.src_port);
        let existing = self.index.get(&tuple).copied();
        let is_syn = h.flags.contains(Flags::SYN) && !h.flags.contains(Flags::ACK);
        if is_syn {
            self.handle_syn(now, h, existing);
            return;
        }
        match existing {
            Some(id) => {
                self.with_connection(id, now, |c| c.handle_packet(now, packet));
            }
            // No RST except in answer to a SYN (T-6).
            None => self.stats.unknown_tuple += 1,
        }
    }

    /// T-10 with the Rust guidance: strict retransmission check, limits, accept queue checked
    /// before the SYN-ACK.
    fn handle_syn(&mut self, now: Instant, h: &Header, existing: Option<ConnectionId>) {
        if !self.listeners.contains_key(&h.dst_port) {
            self.refuse(h);
            return;
        }
        if let Some(id) = existing {
            let retransmission = self
                .slots
                .get(&id)
                .is_some_and(|s| s.conn.is_syn_retransmission(h.seq));
            if retransmission {
                self.with_connection(id, now, |c| {
                    c.handle_packet(
                        now,
                        &Packet {
                            header: *h,
                            payload: &[],
                        },
                    )
                });
                return;
            }
            // A new connection on an old tuple (a restarted peer): the old entry goes (Q11).
            self.stats.replaced += 1;
            // Silently: an RST on this tuple would reach the new dial.
            self.with_connection(id, now, |c| c.discard(now));
            if let Some(slot) = self.slots.get(&id) {
                let tuple = slot.tuple;
                if self.index.get(&tuple) == Some(&id) {
                    self.index.remove(&tuple);
                }
            }
        }
        if let Some(limits) = self.config.syn_limits {
            let limiter = self
                .syn_limiter
                .get_or_insert_with(|| SynLimiter::new(limits, now));
            if !limiter.allow(h.src, now) {
                // Dropped without an answer, as the reference does (T-10 steps 3 and 4).
                self.stats.syn_rate_limited += 1;
                return;
            }
        }
        let per_port = self.live_per_port.get(&h.dst_port).copied().unwrap_or(0);
        let full = self
            .listeners
            .get(&h.dst_port)
            .is_some_and(|l| l.queue.len() >= self.config.accept_queue);
        if per_port >= self.config.max_connections_per_port
            || self.live_total >= self.config.max_connections
            || full
        {
            self.refuse(h);
            return;
        }
        let local = SocketAddr::new(self.config.local_addr, h.dst_port);
        let isn = self.rng.next_u32();
        let mut conn = Connection::accept(self.config.connection.clone(), local, h, isn, now);
        if let Some(rtt) = self.peer_rtt(h.src) {
            conn.set_rtt_hint(now, rtt);
        }
        let id = self.insert(conn, (h.dst_port, h.src, h.src_port), now);
        if let Some(l) = self.listeners.get_mut(&h.dst_port) {
            l.queue.push_back(id);
        }
    }

    /// RST in answer to a SYN: ports swapped, ack = SYN.seq + 1 so the dialer can validate it.
    fn refuse(&mut self, syn: &Header) {
        self.stats.syn_refused += 1;
        let header = Header {
            flags: Flags::RST,
            protocol: Protocol::STREAM,
            src: self.config.local_addr,
            dst: syn.src,
            src_port: syn.dst_port,
            dst_port: syn.src_port,
            seq: 0,
            ack: syn.seq.wrapping_add(1),
            window: 0,
            ..Header::default()
        };
        self.push_out(header, Vec::new());
    }

    fn push_out(&mut self, header: Header, payload: Vec<u8>) {
        if self.outbox.len() >= MAX_OUTBOX {
            self.stats.outbox_dropped += 1;
            return;
        }
        self.outbox.push_back(OutPacket { header, payload });
    }

    fn handle_datagram(&mut self, packet: &Packet<'_>) {
        let h = &packet.header;
        if packet.payload.is_empty() {
            // Empty datagrams are dropped (T-45).
            self.stats.datagrams_dropped += 1;
            return;
        }
        let datagram = Datagram {
            src: SocketAddr::new(h.src, h.src_port),
            dst_port: h.dst_port,
            data: packet.payload.to_vec(),
        };
        let queued = match self.datagram_ports.get_mut(&h.dst_port) {
            Some(q) => q.push(datagram),
            None if self.config.datagram_receive_all => self.datagram_all.push(datagram),
            None => false,
        };
        if queued {
            self.stats.datagrams_received += 1;
        } else {
            self.stats.datagrams_dropped += 1;
        }
    }

    /// T-46 with the Rust guidance: a ping (to port 0, without ACK) gets a pong; a pong never
    /// does, so two daemons cannot reflect packets at each other forever (Q13).
    fn handle_control(&mut self, packet: &Packet<'_>) {
        let h = &packet.header;
        if h.dst_port != 0 || h.flags.contains(Flags::ACK) {
            return;
        }
        self.stats.pongs += 1;
        let header = Header {
            flags: Flags::ACK,
            protocol: Protocol::CONTROL,
            src: self.config.local_addr,
            dst: h.src,
            src_port: 0,
            dst_port: h.src_port,
            seq: h.seq,
            ack: h.seq.wrapping_add(1),
            window: 0,
            ..Header::default()
        };
        self.push_out(header, packet.payload.to_vec());
    }

    // ---- datagrams -------------------------------------------------------------------------

    /// Binds `port` for receiving datagrams.
    pub fn bind_datagram(&mut self, port: u16) -> Result<(), DatagramError> {
        if self.datagram_ports.contains_key(&port) {
            return Err(DatagramError::PortInUse(port));
        }
        self.datagram_ports.insert(
            port,
            DatagramQueue::new(self.config.datagram_queue, self.config.datagram_queue_bytes),
        );
        Ok(())
    }

    /// Releases a datagram port and drops what it held.
    pub fn unbind_datagram(&mut self, port: u16) -> Result<(), DatagramError> {
        self.datagram_ports
            .remove(&port)
            .map(|_| ())
            .ok_or(DatagramError::NotBound(port))
    }

    /// The next datagram received on `port`.
    pub fn recv_datagram(&mut self, port: u16) -> Result<Option<Datagram>, DatagramError> {
        self.datagram_ports
            .get_mut(&port)
            .map(DatagramQueue::pop)
            .ok_or(DatagramError::NotBound(port))
    }

    /// The next datagram for a port nobody bound (with `datagram_receive_all`).
    pub fn recv_datagram_any(&mut self) -> Option<Datagram> {
        self.datagram_all.pop()
    }

    /// Encodes a datagram to `dst` into `out`, ready for the tunnel. From `src_port` if given
    /// (it must be bound), else from this endpoint's one ephemeral datagram port.
    pub fn send_datagram(
        &mut self,
        src_port: Option<u16>,
        dst: SocketAddr,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Transmit, DatagramError> {
        datagram::check(dst, payload, self.config.max_datagram)?;
        let port = match src_port {
            Some(p) if self.datagram_ports.contains_key(&p) => p,
            Some(p) => return Err(DatagramError::NotBound(p)),
            None => match self.datagram_ephemeral {
                Some(p) => p,
                None => {
                    let p = self
                        .allocate_port()
                        .map_err(|_| DatagramError::NoFreePort)?;
                    self.datagram_ephemeral = Some(p);
                    p
                }
            },
        };
        let src = SocketAddr::new(self.config.local_addr, port);
        datagram::encode(src, dst, payload, self.config.max_datagram, out)
    }

    // ---- packets out and time --------------------------------------------------------------

    /// Appends the next packet to send to `out`. Endpoint packets first, then connections in
    /// round-robin order, one packet each, so a bulk transfer cannot starve the others.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<Transmit> {
        if let Some(p) = self.outbox.pop_front() {
            p.header
                .encode_packet(&p.payload, out)
                .expect("pong payloads come from packets, RSTs are empty");
            return Some(Transmit {
                dst: p.header.dst,
                size: HEADER_LEN + p.payload.len(),
            });
        }
        while let Some(id) = self.tx_queue.pop_front() {
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            match slot.conn.poll_transmit(now, out) {
                Some(t) => {
                    self.tx_queue.push_back(id);
                    self.touch(id, now);
                    return Some(t);
                }
                None => {
                    slot.queued_tx = false;
                    self.refile(id, false);
                }
            }
        }
        None
    }

    /// The earliest deadline of any connection (possibly a little early: a connection whose
    /// deadline moved later is woken at the old one and finds nothing to do).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(t, _)| t)
    }

    /// Runs every connection timer due at `now`. Each connection runs at most once per call,
    /// so a deadline it re-arms at `now` waits for the next call instead of spinning here.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due_scratch);
        while let Some(&(t, id)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.timer = None;
            }
            due.push(id);
        }
        for &id in &due {
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.conn.handle_timeout(now);
                self.touch(id, now);
            }
        }
        due.clear();
        self.due_scratch = due;
    }
}
