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

use super::config::Config;
use super::congestion::Controller;
use super::recv_buf::{Arrival, RecvBuffer};
use super::rtt::RttEstimator;
use super::send_buf::SendBuffer;
use super::seq::Seq;
use crate::wire::{Addr, Flags, Header, Packet, Protocol, SackList, SocketAddr, HEADER_LEN};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Duplicate ACKs (or SACKed segments' worth of bytes) that signal a loss.
const DUP_THRESH: u32 = 3;

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
    /// Loss-recovery episodes started by duplicate ACKs or SACK.
    pub fast_retransmits: u64,
    /// Retransmission timeouts.
    pub timeouts: u64,
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

    /// Peer's receive window in bytes (`u64::MAX` = no limit known).
    peer_window: u64,
    /// Window field we last advertised.
    last_adv: u16,

    dup_acks: u32,
    in_recovery: bool,
    /// Send one retransmission now regardless of the congestion window.
    retransmit_now: bool,
    recovery_point: Seq,
    epoch: u32,
    /// Timeouts in a row with no answer from the peer in between.
    silent_timeouts: u32,

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

    pending: Pending,
    rto_at: Option<Instant>,
    delayed_ack_at: Option<Instant>,
    persist_at: Option<Instant>,
    persist_backoff: Duration,
    syn_rto: Duration,
    syn_retries: u32,
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
            peer_window: u64::MAX,
            last_adv: 0,
            dup_acks: 0,
            in_recovery: false,
            retransmit_now: false,
            recovery_point: iss,
            epoch: 0,
            silent_timeouts: 0,
            fin_seq: None,
            fin_acked: false,
            peer_fin: None,
            peer_finished: false,
            pending_fin_needs_reply: false,
            close_requested: false,
            write_blocked: false,
            readable_signalled: false,
            unacked_segments: 0,
            pending: Pending::default(),
            rto_at: None,
            delayed_ack_at: None,
            persist_at: None,
            persist_backoff,
            syn_rto,
            syn_retries: 0,
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
        let before = self.recv.window();
        let n = self.recv.read(buf);
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

    // ---- packets in ------------------------------------------------------------------------

    /// Takes in a stream packet for this connection's tuple (the endpoint has routed it).
    pub fn handle_packet(&mut self, now: Instant, packet: &Packet<'_>) {
        let h = &packet.header;
        if h.protocol != Protocol::STREAM || self.state == State::Closed {
            return;
        }
        self.stats.packets_received += 1;
        let f = h.flags;
        let syn = f.contains(Flags::SYN);
        let ack = f.contains(Flags::ACK);
        if syn && !ack {
            if self.is_syn_retransmission(h.seq) {
                self.pending.syn_ack = true;
            }
            return;
        }
        if syn {
            self.on_syn_ack(now, h);
            return;
        }
        if self.state == State::SynSent {
            if f.contains(Flags::RST) && self.rst_acceptable(h) {
                self.finish(CloseReason::Refused, now);
            }
            return;
        }
        if f.contains(Flags::FIN) {
            self.on_fin(now, h, ack);
            return;
        }
        if f.contains(Flags::RST) {
            if self.state != State::TimeWait && self.rst_acceptable(h) {
                self.finish(CloseReason::Reset, now);
            }
            return;
        }
        if !ack || self.state == State::TimeWait {
            // TIME_WAIT takes no data and its clock is not refreshed (Q6).
            return;
        }
        self.last_recv = now;
        self.arm_keepalive(now);
        let sack = SackList::decode(packet.payload);
        self.on_ack(now, h, packet.payload.is_empty(), sack.as_ref());
        if sack.is_none() && !packet.payload.is_empty() {
            self.on_data(now, Seq(h.seq), packet.payload);
        }
    }

    fn set_peer_window_from_syn(&mut self, window: u16) {
        // A SYN's window of 0 would be the reference's "no limit"; keep the default then.
        if window != 0 {
            self.peer_window = u64::from(window) * self.config.mss as u64;
        }
    }

    fn on_syn_ack(&mut self, now: Instant, h: &Header) {
        match self.state {
            State::SynSent => {
                // Validate that it acknowledges our SYN (the reference does not, T-9).
                if Seq(h.ack) != self.iss.plus(1) {
                    return;
                }
                self.irs = Seq(h.seq);
                self.recv.set_nxt(self.irs.plus(1));
                self.set_peer_window_from_syn(h.window);
                // A close requested during the dial starts now.
                if self.close_requested {
                    self.state = State::Closing;
                    self.linger_until = Some(now + self.config.linger);
                } else {
                    self.state = State::Established;
                }
                self.confirmed = true;
                self.rto_at = None;
                self.last_recv = now;
                self.arm_keepalive(now);
                self.pending.ack = true;
                self.events.push_back(Event::Connected);
            }
            State::Established | State::Closing if Seq(h.seq) == self.irs => {
                // Our handshake ACK was lost and the peer resent the SYN-ACK.
                self.pending.ack = true;
            }
            _ => {}
        }
    }

    /// RSTs are taken only for this tuple (the endpoint's routing) and only with a sequence
    /// number inside the receive window (RFC 793): our RSTs carry SendSeq, which a peer's
    /// RecvAck can trail by at most what is in flight, and a blind attacker has to hit a
    /// window-sized range of 2^32. The reference accepted any RST (Q12); its own RSTs carry
    /// seq 0 / ack 0 and cannot be validated, so that form is accepted only when configured.
    fn rst_acceptable(&self, h: &Header) -> bool {
        if h.seq == 0 && h.ack == 0 {
            return self.config.accept_unvalidated_rst;
        }
        match self.state {
            State::SynSent => Seq(h.ack) == self.iss.plus(1),
            _ => {
                let start = self.recv.nxt();
                Seq(h.seq).in_range(start, start.plus(self.recv.capacity() as u32 + 1))
            }
        }
    }

    fn on_fin(&mut self, now: Instant, h: &Header, has_ack: bool) {
        let seq = Seq(h.seq);
        if self.state == State::TimeWait {
            // A FIN resent because our FIN-ACK was lost: answer once per FIN, never a FIN-ACK,
            // and do not restart the TIME_WAIT clock (Q6).
            if !has_ack && self.peer_finished && seq == self.recv.nxt() {
                self.pending.fin_ack = Some(seq.plus(1));
            }
            return;
        }
        self.last_recv = now;
        // Our FINs carry RecvAck (the reference's carry 0): take it, so data the peer did
        // receive is not reported undelivered.
        let ack = Seq(h.ack);
        if ack.gt(self.send.una()) && ack.le(self.send.nxt()) {
            self.send.ack(ack);
        }
        if has_ack {
            if let Some(fin) = self.fin_seq {
                if Seq(h.ack) == fin.plus(1) {
                    self.fin_acked = true;
                }
            }
        }
        // Check the FIN's sequence number (the reference does not, Q10).
        if seq.lt(self.recv.nxt()) || seq.gt(self.recv.nxt().plus(self.recv.capacity() as u32)) {
            if self.fin_acked {
                self.enter_time_wait(now, CloseReason::Graceful);
            }
            return;
        }
        self.peer_fin = Some(seq);
        // Remember whether it needs an answer: a bare FIN does; a FIN-ACK never does.
        self.pending_fin_needs_reply = !has_ack;
        self.try_complete_peer_fin(now);
        if self.peer_fin.is_some() && self.fin_gap_until.is_none() {
            self.fin_gap_until = Some(now + self.config.fin_gap_timeout);
        }
    }

    fn try_complete_peer_fin(&mut self, now: Instant) {
        let Some(fin) = self.peer_fin else { return };
        if fin != self.recv.nxt() {
            return;
        }
        self.peer_fin = None;
        self.fin_gap_until = None;
        self.peer_finished = true;
        self.events.push_back(Event::Finished);
        if self.pending_fin_needs_reply {
            self.pending.fin_ack = Some(fin.plus(1));
        }
        // No half-close (the reference has none): whatever we still had to send is dropped.
        let undelivered = self.send.flight() > 0 || self.send.unsent() > 0;
        self.send.clear();
        let reason = if undelivered {
            CloseReason::PeerClosedEarly
        } else {
            CloseReason::Graceful
        };
        self.enter_time_wait(now, reason);
    }

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

    fn on_ack(&mut self, now: Instant, h: &Header, payload_empty: bool, sack: Option<&SackList>) {
        let ack = Seq(h.ack);
        let una = self.send.una();
        let nxt = self.send.nxt();
        // An ACK for data never sent is ignored (the reference took it and then ignored every
        // real ACK, Q12); an old ACK carries neither a current ack nor a current window.
        if ack.gt(nxt) || ack.lt(una) {
            return;
        }
        self.silent_timeouts = 0;
        self.confirmed = true;
        let mss = self.config.mss as u64;
        let old_window = self.peer_window;
        let window = u64::from(h.window) * mss;
        if ack.gt(una) {
            let pipe_before = self.send.pipe();
            let acked = self.send.ack(ack);
            if let Some(sent) = acked.rtt_sent_at {
                self.rtt.sample(now.saturating_duration_since(sent));
            }
            self.rtt.reset_backoff();
            self.dup_acks = 0;
            if self.linger_until.is_some() {
                // A close waits as long as the data keeps moving; `linger` bounds a stall.
                self.linger_until = Some(now + self.config.linger);
            }
            if self.in_recovery {
                if ack.ge(self.recovery_point) {
                    self.in_recovery = false;
                } else {
                    // Partial ACK: the next hole is lost too (RFC 6582).
                    self.send.mark_head_lost(self.epoch);
                }
            } else {
                let app_limited =
                    self.send.unsent() == 0 && pipe_before + mss < self.cc.window() / 2;
                self.cc
                    .on_ack(now, acked.bytes, self.rtt.srtt(), app_limited);
            }
            // Windows come only from packets that advance the ACK or repeat it (below); a
            // 0 here is a full receiver and means stop (the reference read "no limit", Q8).
            self.peer_window = window;
            self.rto_at = if self.send.flight() > 0 {
                Some(now + self.rtt.rto())
            } else {
                None
            };
            if self.write_blocked && self.send.free() > 0 {
                self.write_blocked = false;
                self.events.push_back(Event::Writable);
            }
        } else {
            // A bare ACK with window 0 that acknowledges nothing new is a reference keepalive or
            // probe, whose 0 means nothing (T-41); it must not open or shut the window (Q15).
            if !(payload_empty && h.window == 0) {
                self.peer_window = window;
            }
            // Duplicate ACK: nothing new acknowledged, data outstanding, no data carried (a
            // SACK list is not data: the reference never counted those, Q2), window unchanged.
            let no_data = payload_empty || sack.is_some();
            if self.send.flight() > 0 && no_data && self.peer_window == old_window {
                self.dup_acks += 1;
                self.stats.dup_acks += 1;
            }
            // The receiver made room after refusing data: resend the refused head now.
            if old_window <= mss && self.peer_window > mss && self.send.flight() > 0 {
                self.send.mark_head_lost(self.epoch.wrapping_add(1));
            }
        }
        if self.peer_window > 0 {
            self.persist_backoff = self.config.persist_initial;
            self.persist_at = None;
        }
        if let Some(list) = sack {
            self.stats.sacks_received += 1;
            for block in list.iter() {
                self.send.sack(Seq(block.left), Seq(block.right));
            }
        }
        if self.send.flight() > 0 {
            let threshold = u64::from(DUP_THRESH) * mss;
            if !self.in_recovery
                && (self.dup_acks >= DUP_THRESH || self.send.head_lost_by_sack(threshold))
            {
                self.epoch = self.epoch.wrapping_add(1);
                self.in_recovery = true;
                self.recovery_point = self.send.nxt();
                self.cc.on_congestion_event(now, self.send.flight());
                self.stats.fast_retransmits += 1;
                self.send.mark_head_lost(self.epoch);
                // The first retransmission of an episode goes out whatever the window says
                // (RFC 6675 §5 step 4.3).
                self.retransmit_now = true;
            }
            if self.in_recovery {
                // Every hole the SACK blocks reveal, not one per tick (Q3).
                self.send.mark_lost_by_sack(threshold, self.epoch);
            }
        }
    }

    fn on_data(&mut self, now: Instant, seq: Seq, payload: &[u8]) {
        if !self.accepts_data() {
            // TIME_WAIT and closed connections take no data, without ACK (T-28).
            return;
        }
        match self.recv.insert(seq, payload) {
            Arrival::Duplicate | Arrival::OutOfOrder => self.pending.ack = true,
            Arrival::Dropped => {
                // Full: refuse without acknowledging it; the ACK we send repeats RecvAck and
                // shows the window, so the sender learns it was refused (§9.4).
                self.stats.recv_dropped += 1;
                self.pending.ack = true;
            }
            Arrival::InOrder {
                readable,
                filled_hole,
            } => {
                self.received_data = true;
                self.stats.bytes_received += readable as u64;
                if !self.readable_signalled {
                    self.readable_signalled = true;
                    self.events.push_back(Event::Readable);
                }
                // ACK at once on filled holes and gaps (the reference delayed those, D14) and on
                // short segments (avoids the Nagle / delayed-ACK stall with Go senders).
                if filled_hole || self.recv.has_gaps() || payload.len() < self.config.mss {
                    self.pending.ack = true;
                } else {
                    self.unacked_segments += 1;
                    if self.unacked_segments >= 2 {
                        self.pending.ack = true;
                    } else if self.delayed_ack_at.is_none() {
                        self.delayed_ack_at = Some(now + self.config.delayed_ack);
                    }
                }
                self.try_complete_peer_fin(now);
            }
        }
    }

    // ---- time ------------------------------------------------------------------------------

    /// The earliest instant at which [`Connection::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let live = matches!(self.state, State::Established | State::Closing);
        let idle = if live {
            self.config.idle_timeout.map(|d| self.last_recv + d)
        } else {
            None
        };
        [
            self.rto_at,
            self.delayed_ack_at,
            self.persist_at,
            if live { self.keepalive_at } else { None },
            idle,
            self.time_wait_until,
            self.linger_until,
            self.fin_gap_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.time_wait_until.is_some_and(|t| t <= now) {
            // TIME_WAIT ends, whatever arrives meanwhile (Q6).
            self.time_wait_until = None;
            self.state = State::Closed;
            return;
        }
        if self.linger_until.is_some_and(|t| t <= now) {
            self.pending.rst = true;
            self.finish(CloseReason::LingerTimeout, now);
            return;
        }
        if self.fin_gap_until.is_some_and(|t| t <= now) {
            self.finish(CloseReason::Incomplete, now);
            return;
        }
        let live = matches!(self.state, State::Established | State::Closing);
        if live {
            if let Some(idle) = self.config.idle_timeout {
                if self.last_recv + idle <= now {
                    self.pending.rst = true;
                    self.finish(CloseReason::IdleTimeout, now);
                    return;
                }
            }
        }
        if self.rto_at.is_some_and(|t| t <= now) {
            self.rto_at = None;
            self.on_rto(now);
            if self.state == State::Closed {
                return;
            }
        }
        if self.delayed_ack_at.is_some_and(|t| t <= now) {
            self.delayed_ack_at = None;
            self.pending.ack = true;
        }
        if self.persist_at.is_some_and(|t| t <= now) {
            self.persist_at = None;
            self.pending.probe = true;
            self.persist_backoff = (self.persist_backoff * 2).min(self.config.persist_max);
        }
        if live && self.keepalive_at.is_some_and(|t| t <= now) {
            self.keepalive_at = self.config.keepalive_interval.map(|d| now + d);
            if self.send.flight() == 0 {
                self.pending.keepalive = true;
            }
            // Nothing moving: give the buffers back (idle connections stay small).
            if self.send.is_empty() {
                self.send.release();
            }
            if self.recv.readable() == 0 {
                self.recv.release();
            }
        }
    }

    fn on_rto(&mut self, now: Instant) {
        if self.state == State::SynSent {
            self.syn_retries += 1;
            if self.syn_retries > self.config.syn_retries {
                self.finish(CloseReason::DialTimeout, now);
                return;
            }
            self.pending.syn = true;
            self.syn_rto = (self.syn_rto * 2).min(self.config.syn_max_rto);
            self.rto_at = Some(now + self.syn_rto);
            return;
        }
        let fin_outstanding = self.fin_seq.is_some() && !self.fin_acked;
        if self.send.flight() == 0 && !fin_outstanding {
            return;
        }
        self.silent_timeouts += 1;
        self.stats.timeouts += 1;
        if self.silent_timeouts >= self.config.max_transmissions {
            self.pending.rst = true;
            self.finish(CloseReason::TimedOut, now);
            return;
        }
        self.rtt.back_off();
        if self.send.flight() > 0 {
            if self.silent_timeouts == 1 {
                self.cc.on_timeout(now, self.send.flight());
            }
            // Everything unSACKed is resent, in order, as the window allows; this connection's
            // data is retransmitted in every state until acknowledged (Q10).
            self.send.mark_all_lost();
            self.epoch = self.epoch.wrapping_add(1);
            self.in_recovery = true;
            self.recovery_point = self.send.nxt();
            self.dup_acks = 0;
        } else {
            self.pending.fin = true;
        }
        self.rto_at = Some(now + self.rtt.rto());
    }

    // ---- packets out -----------------------------------------------------------------------

    fn has_pending_output(&self) -> bool {
        self.pending.rst
    }

    fn header(&self, flags: Flags, seq: Seq, ack: Seq, window: u16) -> Header {
        Header {
            flags,
            protocol: Protocol::STREAM,
            src: self.local.addr,
            dst: self.remote.addr,
            src_port: self.local.port,
            dst_port: self.remote.port,
            seq: seq.0,
            ack: ack.0,
            window,
            ..Header::default()
        }
    }

    /// Fills in the header in front of the payload written after `base + HEADER_LEN`.
    fn seal(&mut self, out: &mut [u8], base: usize, header: Header) -> Transmit {
        let encoded = header
            .encode(&out[base + HEADER_LEN..])
            .expect("segments are far below the 64 KiB payload limit");
        out[base..base + HEADER_LEN].copy_from_slice(&encoded);
        self.stats.packets_sent += 1;
        Transmit {
            dst: self.remote.addr,
            size: out.len() - base,
        }
    }

    fn adv_window(&mut self) -> u16 {
        let w = self.config.window_field(self.recv.window());
        self.last_adv = w;
        w
    }

    fn acked_by_us(&mut self) {
        if !self.recv.has_gaps() {
            self.pending.ack = false;
        }
        self.delayed_ack_at = None;
        self.unacked_segments = 0;
    }

    /// Appends the next packet to send to `out`, or returns `None` when there is nothing to send
    /// now (then wait for a packet, a write or [`Connection::poll_timeout`]).
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<Transmit> {
        let base = out.len();
        out.resize(base + HEADER_LEN, 0);
        let header = self.next_packet(now, out);
        match header {
            Some(h) => Some(self.seal(out, base, h)),
            None => {
                out.truncate(base);
                None
            }
        }
    }

    /// Decides the next packet, appends its payload to `out` and returns its header.
    fn next_packet(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<Header> {
        if self.pending.rst {
            self.pending.rst = false;
            return Some(self.header(Flags::RST, self.send.nxt(), self.recv.nxt(), 0));
        }
        if self.state == State::Closed {
            return None;
        }
        if self.pending.syn {
            self.pending.syn = false;
            let w = self.adv_window();
            return Some(self.header(Flags::SYN, self.iss, Seq(0), w));
        }
        if self.pending.syn_ack {
            self.pending.syn_ack = false;
            let w = self.adv_window();
            return Some(self.header(Flags::SYN | Flags::ACK, self.iss, self.irs.plus(1), w));
        }
        if let Some(ack) = self.pending.fin_ack.take() {
            let w = self.adv_window();
            let seq = self.fin_seq.unwrap_or(self.send.nxt());
            return Some(self.header(Flags::FIN | Flags::ACK, seq, ack, w));
        }
        if !matches!(self.state, State::Established | State::Closing) {
            return None;
        }
        if let Some(h) = self.next_data(now, out) {
            return Some(h);
        }
        if self.state == State::Closing
            && self.send.unsent() == 0
            && self.send.flight() == 0
            && (self.fin_seq.is_none() || self.pending.fin)
        {
            // FIN only once everything is acknowledged: a Go receiver drops whatever arrives
            // after a FIN (§11.2).
            self.pending.fin = false;
            let seq = *self.fin_seq.get_or_insert(self.send.nxt());
            if self.rto_at.is_none() {
                self.rto_at = Some(now + self.rtt.rto());
            }
            let w = self.adv_window();
            return Some(self.header(Flags::FIN, seq, self.recv.nxt(), w));
        }
        if self.pending.keepalive {
            // One byte the peer already has: every receiver, Go or Rust, answers a duplicate
            // with an ACK, so the probe proves the peer alive (a bare ACK draws no answer).
            self.pending.keepalive = false;
            self.stats.keepalives += 1;
            out.push(0);
            self.acked_by_us();
            let w = self.adv_window();
            return Some(self.header(Flags::ACK, self.send.una().minus(1), self.recv.nxt(), w));
        }
        if self.pending.ack {
            self.pending.ack = false;
            self.delayed_ack_at = None;
            self.unacked_segments = 0;
            self.recv.sack_list().encode(out);
            let w = self.adv_window();
            return Some(self.header(Flags::ACK, self.send.nxt(), self.recv.nxt(), w));
        }
        None
    }

    /// A retransmission, new data or a zero-window probe, if the windows allow one.
    fn next_data(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<Header> {
        let mss = self.config.mss;
        let cwnd = self.cc.window();
        let pipe = self.send.pipe();
        if let Some(seg) = self.send.peek_lost() {
            if pipe == 0 || pipe + u64::from(seg.len) <= cwnd || self.retransmit_now {
                self.retransmit_now = false;
                self.send.resend(now, seg.start, self.epoch, out);
                self.stats.retransmits += 1;
                if self.rto_at.is_none() {
                    self.rto_at = Some(now + self.rtt.rto());
                }
                return Some(self.data_header(seg.start));
            }
            return None;
        }
        let unsent = self.send.unsent();
        if unsent == 0 {
            return None;
        }
        let flight = self.send.flight();
        let wnd_room = self.peer_window.saturating_sub(flight);
        if self.pending.probe {
            self.pending.probe = false;
            if wnd_room == 0 && flight == 0 {
                // Zero-window probe: one new byte beyond the window; a receiver with room
                // takes it and its ACK reports the window (the reference's bare-ACK probes went
                // unanswered, Q8).
                self.stats.window_probes += 1;
                return Some(self.send_new(now, 1, out));
            }
        }
        let mut len = mss
            .min(unsent)
            .min(wnd_room.min(usize::MAX as u64) as usize);
        if len == 0 {
            if flight == 0 && self.persist_at.is_none() {
                self.persist_at = Some(now + self.persist_backoff);
            }
            return None;
        }
        if pipe > 0 && pipe + len as u64 > cwnd {
            return None;
        }
        // Nagle: hold back a short tail while data is unacknowledged, unless closing.
        if len < mss
            && len == unsent
            && !self.config.nodelay
            && flight > 0
            && self.state != State::Closing
        {
            return None;
        }
        len = self.send.next_len(len);
        Some(self.send_new(now, len, out))
    }

    fn send_new(&mut self, now: Instant, len: usize, out: &mut Vec<u8>) -> Header {
        let seq = self.send.send_new(now, len, self.epoch, out);
        self.stats.bytes_sent += len as u64;
        if self.rto_at.is_none() {
            self.rto_at = Some(now + self.rtt.rto());
        }
        self.data_header(seq)
    }

    fn data_header(&mut self, seq: Seq) -> Header {
        self.acked_by_us();
        let w = self.adv_window();
        self.header(Flags::ACK, seq, self.recv.nxt(), w)
    }
}
