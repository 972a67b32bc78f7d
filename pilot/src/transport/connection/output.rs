//! Packets out: control packets first, then retransmissions, new data, FIN, probes and ACKs.

use super::{Connection, State, Transmit};
use crate::transport::seq::Seq;
use crate::wire::{Flags, Header, Protocol, HEADER_LEN};
use std::time::Instant;

impl Connection {
    pub(super) fn has_pending_output(&self) -> bool {
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
        self.ack_points.clear();
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
            self.note_handshake_sent(now);
            let w = self.adv_window();
            return Some(self.header(Flags::SYN, self.iss, Seq(0), w));
        }
        if self.pending.syn_ack {
            self.pending.syn_ack = false;
            self.note_handshake_sent(now);
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
        if let Some(point) = self.ack_points.pop_front() {
            // An ACK owed from earlier in the batch; the current one follows unless this is it.
            if point == self.recv.nxt() && self.ack_points.is_empty() && !self.recv.has_gaps() {
                self.pending.ack = false;
                self.delayed_ack_at = None;
                self.unacked_segments = 0;
            }
            let w = self.adv_window();
            return Some(self.header(Flags::ACK, self.send.nxt(), point, w));
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

    fn note_handshake_sent(&mut self, now: Instant) {
        self.handshake_sends += 1;
        self.handshake_sent.get_or_insert(now);
    }

    /// A retransmission, new data or a zero-window probe, if the windows allow one.
    fn next_data(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<Header> {
        let mss = self.config.mss;
        if self.pending.tlp {
            // Tail loss probe (RFC 8985 §7.3): new data if the peer's window takes some, else
            // the last segment again; either way its ACK or SACK shows what is missing.
            self.pending.tlp = false;
            let unsent = self.send.unsent();
            let room = self.peer_window.saturating_sub(self.send.flight());
            if unsent > 0 && room > 0 {
                let len = self
                    .send
                    .next_len(mss.min(unsent).min(room.min(usize::MAX as u64) as usize));
                self.pacer.on_send(len as u64);
                return Some(self.send_new(now, len, out));
            }
            if self.send.mark_tail_lost() {
                self.retransmit_now = true;
            }
        }
        let cwnd = self.cc.window();
        let pipe = self.send.pipe();
        if let Some(seg) = self.send.peek_lost() {
            if pipe == 0 || pipe + u64::from(seg.len) <= cwnd || self.retransmit_now {
                if !self.retransmit_now && self.paced(now, u64::from(seg.len)) {
                    return None;
                }
                self.retransmit_now = false;
                self.pacer.on_send(u64::from(seg.len));
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
        if self.paced(now, len as u64) {
            return None;
        }
        self.pacer.on_send(len as u64);
        Some(self.send_new(now, len, out))
    }

    /// Whether the pacer holds a segment of `len` bytes back; then `pace_at` says until when.
    fn paced(&mut self, now: Instant, len: u64) -> bool {
        if !self.config.pacing {
            return false;
        }
        if self.pace_at.is_some_and(|t| t > now) {
            return true;
        }
        let window = self.cc.window();
        let mss = self.config.mss as u64;
        match self.pacer.delay(now, len, window, self.rtt.srtt(), mss) {
            Some(at) => {
                self.pace_at = Some(at);
                true
            }
            None => {
                self.pace_at = None;
                false
            }
        }
    }

    fn send_new(&mut self, now: Instant, len: usize, out: &mut Vec<u8>) -> Header {
        let seq = self.send.send_new(now, len, self.epoch, out);
        self.stats.bytes_sent += len as u64;
        if self.rto_at.is_none() {
            self.rto_at = Some(now + self.rtt.rto());
        }
        self.arm_tlp(now);
        self.data_header(seq)
    }

    fn data_header(&mut self, seq: Seq) -> Header {
        self.acked_by_us();
        let w = self.adv_window();
        self.header(Flags::ACK, seq, self.recv.nxt(), w)
    }
}
