//! One reliable stream as a sans-IO state machine (`spec/transport.md` §3–§11).
//!
//! The connection takes packets ([`Connection::handle_packet`]), the passage of time
//! ([`Connection::handle_timeout`]) and the application's writes and reads, and produces
//! packets ([`Connection::poll_transmit`]), the next deadline ([`Connection::poll_timeout`]) and
//! events ([`Connection::poll_event`]). It never reads a clock, draws randomness or touches a
//! socket: `now` is always an argument and the initial sequence number is the caller's.
//!
//! On the wire it speaks the reference's stream protocol (34-byte header, byte sequence numbers
//! with SYN consuming one, windows in 4096-byte segments, the "SACK" payload, FIN and RST), so
//! a Go peer can be on the other side. Where the reference misbehaves (§16) this does better
//! without changing what a Go peer sees; each such place names its quirk.

mod input;
mod output;
mod timers;

use super::config::Config;
use super::congestion::Controller;
use super::delivery_rate::DeliveryRate;
use super::pacing::Pacer;
use super::recv_buf::RecvBuffer;
use super::rtt::{RoundMin, RttEstimator};
use super::send_buf::{Delivered, SendBuffer};
use super::seq::Seq;
use crate::wire::{Addr, Header, SocketAddr};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Duplicate ACKs (or SACKed segments' worth of bytes) that signal a loss.
const DUP_THRESH: u32 = 3;

/// Tail loss probes in a row, each a doubled probe time after the last, before the RTO.
const MAX_TAIL_PROBES: u32 = 2;

/// The shortest first SYN timeout a round-trip hint may give (the clock's resolution).
const MIN_SYN_RTO: Duration = Duration::from_millis(1);

/// Where the connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// SYN sent, waiting for the SYN-ACK.
    SynSent,
    /// Data flows both ways. (The listener enters this when it sends its SYN-ACK, as the
    /// reference does; the handshake counts as confirmed once the peer acknowledges it.)
    Established,
    /// The application closed: remaining data is being delivered, then FIN, then its ACK.
    Closing,
    /// Both FINs exchanged; the tuple is kept for a while so stray packets find it.
    TimeWait,
    /// Finished; the endpoint may forget the connection.
    Closed,
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// Both sides closed cleanly.
    #[error("closed")]
    Graceful,
    /// The peer sent RST.
    #[error("connection reset by peer")]
    Reset,
    /// The peer refused the connection (RST in answer to SYN).
    #[error("connection refused")]
    Refused,
    /// No SYN-ACK after every SYN retransmission.
    #[error("dial timeout")]
    DialTimeout,
    /// Data went unanswered for the maximum number of transmissions.
    #[error("peer stopped answering")]
    TimedOut,
    /// Nothing heard from the peer for the idle timeout.
    #[error("idle timeout")]
    IdleTimeout,
    /// The application aborted.
    #[error("aborted locally")]
    Aborted,
    /// A graceful close could not deliver the data within the linger time.
    #[error("close timed out with data unacknowledged")]
    LingerTimeout,
    /// The peer's FIN arrived but data before it never did.
    #[error("stream ended with data missing")]
    Incomplete,
    /// The peer closed while our data was still undelivered (there is no half-close).
    #[error("peer closed before our data was delivered")]
    PeerClosedEarly,
}

/// Something the application should know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed.
    Connected,
    /// Data became readable (again: after the reader had drained everything).
    Readable,
    /// Room in the send buffer after a write was refused.
    Writable,
    /// The peer finished sending; reads return the rest and then end-of-stream.
    Finished,
    /// The connection is over.
    Closed(CloseReason),
}

/// Why a read returned no data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Nothing to read yet.
    #[error("no data available")]
    WouldBlock,
    /// The stream ended abnormally.
    #[error("{0}")]
    Closed(CloseReason),
}

/// Why a write accepted nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The send buffer is full; wait for [`Event::Writable`].
    #[error("send buffer full")]
    WouldBlock,
    /// The stream no longer accepts data (closed locally, finished by the peer, or over).
    #[error("stream closed for writing")]
    Closed,
}

/// A packet produced by [`Connection::poll_transmit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The node it goes to.
    pub dst: Addr,
    /// Bytes appended to the output buffer (header plus payload).
    pub size: usize,
}

/// Counters for one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets produced.
    pub packets_sent: u64,
    /// Packets taken in.
    pub packets_received: u64,
    /// New payload bytes sent (retransmissions excluded).
    pub bytes_sent: u64,
    /// Payload bytes delivered in order.
    pub bytes_received: u64,
    /// Segments retransmitted, for any reason.
    pub retransmits: u64,
    /// Loss-recovery episodes started by duplicate ACKs, SACK or RACK.
    pub fast_retransmits: u64,
    /// Segments marked lost by RACK's time rule (RFC 8985).
    pub rack_losses: u64,
    /// Tail loss probes sent (RFC 8985 §7).
    pub tail_probes: u64,
    /// Retransmission timeouts.
    pub timeouts: u64,
    /// SYNs sent again during the dial (the daemon switches a peer to the relay after three,
    /// `spec/transport.md` T-8).
    pub syn_retransmits: u64,
    /// Duplicate ACKs counted.
    pub dup_acks: u64,
    /// SACK lists received.
    pub sacks_received: u64,
    /// Zero-window probes sent.
    pub window_probes: u64,
    /// Keepalives sent.
    pub keepalives: u64,
    /// In-order segments dropped because the receive buffer was full.
    pub recv_dropped: u64,
    /// Current congestion window, bytes.
    pub cwnd: u64,
    /// Current smoothed RTT, microseconds (0 before the first sample).
    pub srtt_us: u64,
}

/// ACKs owed for every second full segment of a batch processed before the next transmit.
///
/// Without them a receiver that handles many packets before polling (a batch read from the
/// socket, or the in-memory link) sends one stretch ACK per batch, and the sender's slow start,
/// which grows by at most 2 MSS per ACK, crawls. Bounded: past the capacity the last point
/// moves forward.
#[derive(Clone, Copy, Debug, Default)]
struct AckPoints {
    points: [Seq; 16],
    len: usize,
}

impl AckPoints {
    fn push(&mut self, seq: Seq) {
        if self.len < self.points.len() {
            self.points[self.len] = seq;
            self.len += 1;
        } else {
            self.points[self.len - 1] = seq;
        }
    }

    fn pop_front(&mut self) -> Option<Seq> {
        if self.len == 0 {
            return None;
        }
        let first = self.points[0];
        self.points.copy_within(1..self.len, 0);
        self.len -= 1;
        Some(first)
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Control packets waiting to go out (at most one of each).
#[derive(Clone, Copy, Debug, Default)]
struct Pending {
    syn: bool,
    syn_ack: bool,
    rst: bool,
    /// A FIN-ACK answering the peer's FIN, acknowledging this value.
    fin_ack: Option<Seq>,
    fin: bool,
    /// A pure ACK (with SACK list if there are gaps) is due now.
    ack: bool,
    /// A zero-window probe or keepalive is due.
    probe: bool,
    keepalive: bool,
    /// A tail loss probe is due.
    tlp: bool,
}

/// A reliable stream connection.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    local: SocketAddr,
    remote: SocketAddr,
    state: State,
    reason: Option<CloseReason>,

    /// Our ISN (the SYN's sequence number).
    iss: Seq,
    /// The peer's ISN.
    irs: Seq,
    /// The peer acknowledged our SYN (or SYN-ACK).
    confirmed: bool,
    /// Any payload byte was received.
    received_data: bool,

    send: SendBuffer,
    recv: RecvBuffer,
    cc: Box<dyn Controller>,
    rtt: RttEstimator,
    pacer: Pacer,
    delivery: DeliveryRate,

    /// Peer's receive window in bytes (`u64::MAX` = no limit known).
    peer_window: u64,
    /// Sequence number of the packet that last set `peer_window` (RFC 793 SND.WL1).
    window_seq: Seq,
    /// Window field we last advertised.
    last_adv: u16,

    dup_acks: u32,
    in_recovery: bool,
    /// Whether the current recovery episode was taken as congestion (the window was cut and
    /// does not grow until it ends); a random loss in slow start is not (`loss_is_congestion`).
    recovery_congested: bool,
    /// The smallest round trip of the last rounds: whether a queue is building.
    round_min: RoundMin,
    /// Send one retransmission now regardless of the congestion window.
    retransmit_now: bool,
    recovery_point: Seq,
    epoch: u32,
    /// Timeouts in a row with no answer from the peer in between.
    silent_timeouts: u32,
    /// RACK (RFC 8985): the newest transmission known delivered, and the round trip it took.
    rack: Option<Delivered>,
    rack_rtt: Duration,
    /// RACK's reordering timer: a segment sent before `rack` becomes lost then.
    rack_at: Option<Instant>,
    /// The tail loss probe timer (2 SRTT after the last send or ACK).
    tlp_at: Option<Instant>,
    /// Probes sent since the last ACK of new data (or SACK).
    tlp_probes: u32,

    /// Our FIN's sequence number once sent.
    fin_seq: Option<Seq>,
    fin_acked: bool,
    /// The peer's FIN, held until every byte before it has arrived.
    peer_fin: Option<Seq>,
    peer_finished: bool,
    /// The held peer FIN was a bare FIN and needs a FIN-ACK (a FIN-ACK never gets one, Q6).
    pending_fin_needs_reply: bool,
    /// The application called close.
    close_requested: bool,
    write_blocked: bool,
    readable_signalled: bool,
    /// In-order segments received since the last ACK we sent.
    unacked_segments: u32,
    ack_points: AckPoints,

    pending: Pending,
    rto_at: Option<Instant>,
    delayed_ack_at: Option<Instant>,
    /// The pacer holds the next data segment until then.
    pace_at: Option<Instant>,
    persist_at: Option<Instant>,
    persist_backoff: Duration,
    syn_rto: Duration,
    syn_retries: u32,
    /// When the dial fails if still unanswered (the unseeded schedule's total, so a seeded,
    /// shorter first RTO probes more often but gives up no sooner).
    dial_deadline: Instant,
    /// When our SYN or SYN-ACK went out, while it went out only once (for an RTT sample).
    handshake_sent: Option<Instant>,
    handshake_sends: u32,
    last_recv: Instant,
    keepalive_at: Option<Instant>,
    time_wait_until: Option<Instant>,
    linger_until: Option<Instant>,
    fin_gap_until: Option<Instant>,

    events: VecDeque<Event>,
    stats: Stats,
}

impl Connection {
    fn new(
        config: Config,
        local: SocketAddr,
        remote: SocketAddr,
        iss: Seq,
        irs: Seq,
        state: State,
        now: Instant,
    ) -> Self {
        let cc = config.congestion.build(config.mss as u64);
        let rtt = RttEstimator::new(config.initial_rto, config.min_rto, config.max_rto);
        let send = SendBuffer::new(config.send_buffer, iss.plus(1));
        let recv = RecvBuffer::new(config.recv_buffer, irs.plus(1));
        let syn_rto = config.syn_initial_rto;
        let persist_backoff = config.persist_initial;
        Connection {
            local,
            remote,
            state,
            reason: None,
            iss,
            irs,
            confirmed: false,
            received_data: false,
            send,
            recv,
            cc,
            rtt,
            pacer: Pacer::default(),
            delivery: DeliveryRate::default(),
            peer_window: u64::MAX,
            window_seq: irs,
            last_adv: 0,
            dup_acks: 0,
            in_recovery: false,
            recovery_congested: false,
            round_min: RoundMin::default(),
            retransmit_now: false,
            recovery_point: iss,
            epoch: 0,
            silent_timeouts: 0,
            rack: None,
            rack_rtt: Duration::ZERO,
            rack_at: None,
            tlp_at: None,
            tlp_probes: 0,
            fin_seq: None,
            fin_acked: false,
            peer_fin: None,
            peer_finished: false,
            pending_fin_needs_reply: false,
            close_requested: false,
            write_blocked: false,
            readable_signalled: false,
            unacked_segments: 0,
            ack_points: AckPoints::default(),
            pending: Pending::default(),
            rto_at: None,
            delayed_ack_at: None,
            pace_at: None,
            persist_at: None,
            persist_backoff,
            dial_deadline: now + dial_budget(&config),
            syn_rto,
            syn_retries: 0,
            handshake_sent: None,
            handshake_sends: 0,
            last_recv: now,
            keepalive_at: None,
            time_wait_until: None,
            linger_until: None,
            fin_gap_until: None,
            events: VecDeque::new(),
            stats: Stats::default(),
            config,
        }
    }

    /// Starts a dial: the first [`Connection::poll_transmit`] yields the SYN with sequence
    /// number `isn` (draw it from the injected RNG; the reference's constant 0 is Q12).
    pub fn connect(
        config: Config,
        local: SocketAddr,
        remote: SocketAddr,
        isn: u32,
        now: Instant,
    ) -> Self {
        let mut conn =
            Connection::new(config, local, remote, Seq(isn), Seq(0), State::SynSent, now);
        conn.pending.syn = true;
        conn.rto_at = Some(now + conn.syn_rto);
        conn
    }

    /// Accepts the SYN `syn` (addressed to `local`): the first [`Connection::poll_transmit`]
    /// yields the SYN-ACK. Like the reference, the connection is established at once and may
    /// send; the handshake is confirmed when the peer acknowledges the SYN-ACK.
    pub fn accept(config: Config, local: SocketAddr, syn: &Header, isn: u32, now: Instant) -> Self {
        let remote = SocketAddr::new(syn.src, syn.src_port);
        let mut conn = Connection::new(
            config,
            local,
            remote,
            Seq(isn),
            Seq(syn.seq),
            State::Established,
            now,
        );
        conn.set_peer_window_from_syn(syn.window);
        conn.pending.syn_ack = true;
        conn.events.push_back(Event::Connected);
        conn.arm_keepalive(now);
        conn
    }

    /// Seeds the round-trip estimate with `rtt`, measured to the same peer by an earlier
    /// connection or by the tunnel, so the first timeouts (a lost SYN, SYN-ACK or first
    /// segment) follow the path instead of the flat initial 1 s. Ignored once this connection
    /// has its own sample.
    pub fn set_rtt_hint(&mut self, now: Instant, rtt: Duration) {
        if !(self.rtt.srtt().is_none() || self.rtt.is_seeded()) || rtt.is_zero() {
            return;
        }
        self.rtt.seed(rtt);
        if self.state == State::SynSent && self.syn_retries == 0 {
            // RFC 6298's RTO for one sample, SRTT + 4 · SRTT/2 = 3 RTT, from when the SYN went
            // (or goes) out, capped at the usual first SYN timeout. Not floored at `min_rto`:
            // the floor keeps data timers above delayed ACKs, and a SYN is answered at once.
            self.syn_rto = (rtt * 3).max(MIN_SYN_RTO).min(self.config.syn_initial_rto);
            let sent = self.handshake_sent.unwrap_or(now);
            self.rto_at = Some(sent + self.syn_rto);
        }
    }

    /// The smoothed round-trip time, once measured (or seeded).
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    /// The smoothed round-trip time measured by this connection itself (not a hint).
    pub fn measured_rtt(&self) -> Option<Duration> {
        if self.rtt.is_seeded() {
            None
        } else {
            self.rtt.srtt()
        }
    }

    // ---- accessors -------------------------------------------------------------------------

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Local address and port.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Remote address and port.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.reason
    }

    /// Whether the endpoint may forget this connection.
    pub fn is_drained(&self) -> bool {
        self.state == State::Closed && !self.has_pending_output()
    }

    /// Whether the connection is past its TIME_WAIT or closed (its tuple is free for reuse).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the connection is in TIME_WAIT.
    pub fn is_time_wait(&self) -> bool {
        self.state == State::TimeWait
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.cwnd = self.cc.window();
        s.srtt_us = self.rtt.srtt().map_or(0, |d| d.as_micros() as u64);
        s
    }

    /// Next sequence number this side will send (SendSeq).
    pub fn send_next(&self) -> u32 {
        self.send.nxt().0
    }

    /// Next sequence number this side expects (RecvAck).
    pub fn recv_next(&self) -> u32 {
        self.recv.nxt().0
    }

    /// Current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    /// Bytes the application may still write before back-pressure.
    pub fn send_capacity(&self) -> usize {
        if self.can_write() {
            self.send.free()
        } else {
            0
        }
    }

    /// Bytes ready to read.
    pub fn readable(&self) -> usize {
        self.recv.readable()
    }

    /// Bytes written and not yet acknowledged by the peer.
    pub fn unacknowledged(&self) -> usize {
        self.send.flight() as usize + self.send.unsent()
    }

    /// Enables or disables Nagle's algorithm (the reference could not, Q27).
    pub fn set_nodelay(&mut self, nodelay: bool) {
        self.config.nodelay = nodelay;
    }

    /// Whether a SYN with sequence number `seq` is a retransmission of the one that opened this
    /// connection, to be answered with the SYN-ACK again (`spec/transport.md` T-12, strict):
    /// only while the handshake is unconfirmed and nothing has been received. Anything else is a
    /// new connection from a restarted peer and must not be handed this one (Q11).
    pub fn is_syn_retransmission(&self, seq: u32) -> bool {
        self.state == State::Established
            && !self.confirmed
            && !self.received_data
            && self.irs == Seq(seq)
            && self.recv.nxt() == self.irs.plus(1)
    }

    /// Approximate memory held: the struct plus its heap buffers.
    pub fn memory_usage(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.send.heap_bytes()
            + self.recv.heap_bytes()
            + self.events.capacity() * std::mem::size_of::<Event>()
            + std::mem::size_of_val(&*self.cc)
    }

    fn can_write(&self) -> bool {
        matches!(self.state, State::SynSent | State::Established)
            && !self.peer_finished
            && !self.close_requested
    }

    // ---- application side ------------------------------------------------------------------

    /// Queues bytes to send; returns how many were taken (fewer than offered when the send
    /// buffer fills). Never blocks: a full buffer is [`WriteError::WouldBlock`] for this
    /// connection only.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        if !self.can_write() {
            return Err(WriteError::Closed);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let n = self.send.write(data);
        if n == 0 {
            self.write_blocked = true;
            return Err(WriteError::WouldBlock);
        }
        Ok(n)
    }

    /// Reads in-order bytes. `Ok(0)` is the clean end of the stream (for a non-empty `buf`).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        self.read_with(|recv| recv.read(buf))
    }

    /// Like [`Self::read`], appending up to `max` bytes to `out`: a chunk handed on as a
    /// `Vec` needs no zero-filled buffer first.
    pub fn read_to_vec(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize, ReadError> {
        self.read_with(|recv| recv.read_to_vec(out, max))
    }

    fn read_with(
        &mut self,
        take: impl FnOnce(&mut RecvBuffer) -> usize,
    ) -> Result<usize, ReadError> {
        let before = self.recv.window();
        let n = take(&mut self.recv);
        if n > 0 {
            if self.recv.readable() == 0 {
                self.readable_signalled = false;
            }
            self.maybe_window_update(before);
            return Ok(n);
        }
        self.readable_signalled = false;
        if self.peer_finished {
            // The peer's FIN arrived in order: a clean end, whatever happened to our side.
            return Ok(0);
        }
        match self.reason {
            Some(CloseReason::Graceful) => Ok(0),
            Some(reason) => Err(ReadError::Closed(reason)),
            None => Err(ReadError::WouldBlock),
        }
    }

    /// The reader made room: tell the peer when the window had been nearly shut, so a stalled
    /// sender resumes without waiting for a timeout. (The reference never did, §9.4.)
    fn maybe_window_update(&mut self, before: usize) {
        let cap = self.recv.capacity();
        let now_free = self.recv.window();
        let was_small = usize::from(self.last_adv) * self.config.mss <= cap / 4 || before < cap / 4;
        if was_small && now_free >= cap / 2 && self.accepts_data() {
            self.pending.ack = true;
        }
    }

    /// Graceful close: no more writes; queued data is delivered and acknowledged, then FIN.
    /// If that takes longer than the linger time, the connection is reset.
    pub fn close(&mut self, now: Instant) {
        match self.state {
            // During a dial the close takes effect once connected, after the data.
            State::SynSent => self.close_requested = true,
            State::Established => {
                self.close_requested = true;
                self.state = State::Closing;
                self.linger_until = Some(now + self.config.linger);
            }
            _ => {}
        }
    }

    /// Abort: RST now, discard everything.
    pub fn abort(&mut self, now: Instant) {
        match self.state {
            State::Closed => {}
            State::TimeWait => self.finish(CloseReason::Aborted, now),
            _ => {
                self.pending.rst = true;
                self.finish(CloseReason::Aborted, now);
            }
        }
    }

    /// Ends the connection as reset without sending anything: its tuple was taken over by a
    /// new connection from the same peer (a restart), which an RST would hit.
    pub fn discard(&mut self, now: Instant) {
        self.finish(CloseReason::Reset, now);
    }

    /// Whether events are waiting.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- life cycle ----------------------------------------------------------------------

    fn enter_time_wait(&mut self, now: Instant, reason: CloseReason) {
        if matches!(self.state, State::TimeWait | State::Closed) {
            return;
        }
        self.state = State::TimeWait;
        self.clear_timers();
        self.time_wait_until = Some(now + self.config.time_wait);
        self.set_reason(reason);
    }

    /// Ends the connection for `reason` (pending RST, if any, still goes out).
    fn finish(&mut self, reason: CloseReason, _now: Instant) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.clear_timers();
        self.send.clear();
        self.set_reason(reason);
        let rst = self.pending.rst;
        self.pending = Pending {
            rst,
            ..Pending::default()
        };
    }

    fn set_reason(&mut self, reason: CloseReason) {
        if self.reason.is_none() {
            self.reason = Some(reason);
            self.events.push_back(Event::Closed(reason));
        }
    }

    fn clear_timers(&mut self) {
        self.rto_at = None;
        self.delayed_ack_at = None;
        self.pace_at = None;
        self.rack_at = None;
        self.tlp_at = None;
        self.persist_at = None;
        self.keepalive_at = None;
        self.linger_until = None;
        self.fin_gap_until = None;
        self.time_wait_until = None;
    }

    fn arm_keepalive(&mut self, now: Instant) {
        self.keepalive_at = self.config.keepalive_interval.map(|d| now + d);
    }

    fn accepts_data(&self) -> bool {
        matches!(self.state, State::Established | State::Closing) && !self.peer_finished
    }
}

/// The time an unanswered dial takes with the configured, unseeded schedule: the first SYN
/// timeout doubling up to its cap, once per retry and once more for the last SYN.
fn dial_budget(config: &Config) -> Duration {
    let mut rto = config.syn_initial_rto;
    let mut total = Duration::ZERO;
    for _ in 0..=config.syn_retries {
        total += rto;
        rto = (rto * 2).min(config.syn_max_rto);
    }
    total
}
