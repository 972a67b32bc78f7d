//! Packets in: handshake replies, FIN, RST, ACK processing with loss detection, and data.

use super::{CloseReason, Connection, Event, State, DUP_THRESH};
use crate::transport::recv_buf::Arrival;
use crate::transport::seq::Seq;
use crate::wire::{Flags, Header, Packet, Protocol, SackList};
use std::time::{Duration, Instant};

/// Smallest RACK reordering window.
const REO_WND_FLOOR: Duration = Duration::from_millis(1);

/// Bounds of the round-trip growth over the minimum that counts as a queue: an eighth of the
/// minimum within these (HyStart++'s `MIN_RTT_THRESH` and `MAX_RTT_THRESH`, RFC 9406).
const QUEUE_THRESH_MIN: Duration = Duration::from_millis(4);
const QUEUE_THRESH_MAX: Duration = Duration::from_millis(16);
/// During a random-loss episode the window may grow to at least this many segments (two
/// initial windows) before the delivery rate has a say.
const GROWTH_FLOOR_SEGMENTS: u64 = 20;

impl Connection {
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
        let sack = SackList::decode(packet.payload);
        self.on_ack(now, h, packet.payload.is_empty(), sack.as_ref());
        if sack.is_none() && !packet.payload.is_empty() {
            self.on_data(now, Seq(h.seq), packet.payload);
        }
    }

    pub(super) fn set_peer_window_from_syn(&mut self, window: u16) {
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
                self.window_seq = self.irs;
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
                // The handshake's round trip, when the SYN went out once (Karn): the first
                // RTO of the data follows the path, and the endpoint remembers it per peer.
                if let (1, Some(sent)) = (self.handshake_sends, self.handshake_sent) {
                    self.rtt.sample(now.saturating_duration_since(sent));
                }
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

    fn on_ack(&mut self, now: Instant, h: &Header, payload_empty: bool, sack: Option<&SackList>) {
        let ack = Seq(h.ack);
        let una = self.send.una();
        let nxt = self.send.nxt();
        // An ACK for data never sent is ignored (the reference took it and then ignored every
        // real ACK, Q12); an old ACK carries neither a current ack nor a current window.
        if ack.gt(nxt) || ack.lt(una) {
            return;
        }
        // Only packets that acknowledge something plausible prove the peer alive, so garbage
        // on the tuple cannot keep a dead connection from its idle timeout.
        self.last_recv = now;
        self.arm_keepalive(now);
        self.silent_timeouts = 0;
        if !self.confirmed {
            // The first ACK of our SYN-ACK, sent once: the listener's handshake sample.
            if let (1, Some(sent)) = (self.handshake_sends, self.handshake_sent) {
                self.rtt.sample(now.saturating_duration_since(sent));
            }
        }
        self.confirmed = true;
        let mss = self.config.mss as u64;
        let old_window = self.peer_window;
        let window = u64::from(h.window) * mss;
        let mut rtt_sent = None;
        let sacked_before = self.send.sacked();
        let mut delivered_bytes = 0;
        let pipe_before = self.send.pipe();
        // Decided before this ACK can end the episode: the ACK that ends a congested episode
        // does not grow the window it cut.
        let cut = self.in_recovery && self.recovery_congested;
        if ack.gt(una) {
            let acked = self.send.ack(ack);
            // Bytes SACKed earlier were counted as delivered then.
            delivered_bytes += acked.bytes - (sacked_before - self.send.sacked());
            rtt_sent = acked.rtt_sent_at;
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
            }
            // Windows come only from packets that advance the ACK or repeat it (below); a
            // 0 here is a full receiver and means stop (the reference read "no limit", Q8).
            self.peer_window = window;
            self.window_seq = Seq(h.seq);
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
            // A packet older than the one that set the window (reordered) carries a stale
            // window (RFC 793's SND.WL1; the reference took windows from any packet, Q8).
            let keepalive = payload_empty && h.window == 0;
            if !keepalive && Seq(h.seq).ge(self.window_seq) {
                self.peer_window = window;
                self.window_seq = Seq(h.seq);
            }
            // Duplicate ACK: nothing new acknowledged, data outstanding, no data carried (a
            // SACK list is not data: the reference never counted those, Q2), window unchanged.
            // A keepalive-shaped ACK is not a duplicate: three Go keepalives halved the
            // reference's window (Q19).
            let no_data = payload_empty || sack.is_some();
            if self.send.flight() > 0 && no_data && !keepalive && self.peer_window == old_window {
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
                let (newly, sampled) = self.send.sack(Seq(block.left), Seq(block.right));
                delivered_bytes += newly;
                rtt_sent = rtt_sent.or(sampled);
            }
        }
        if delivered_bytes > 0 {
            let round = self.rtt.srtt().unwrap_or(self.config.initial_rto);
            self.delivery.on_delivered(now, delivered_bytes, round);
            if !cut && self.may_grow() {
                // Outside recovery, or repairing a random loss: the window grows by what got
                // through, SACKed bytes included (as Linux counts them). Counting only the
                // cumulative ACK starved it: behind a hole nothing grew it, and the ACK that
                // filled the hole grew it by 2 MSS (byte counting's limit) for a whole
                // window of data, so at a few percent of loss slow start crawled.
                let app_limited =
                    self.send.unsent() == 0 && pipe_before + mss < self.cc.window() / 2;
                self.cc
                    .on_ack(now, delivered_bytes, self.rtt.srtt(), app_limited);
            }
        }
        // One RTT sample per ACK: the newest segment it covers that was sent once (the
        // reference took one per segment, all inflated by the delayed ACK, Q18).
        if let Some(sent) = rtt_sent {
            let rtt = now.saturating_duration_since(sent);
            self.rtt.sample(rtt);
            let round = self.rtt.srtt().unwrap_or(rtt);
            self.round_min.on_sample(now, rtt, round);
            self.recheck_recovery(now);
        }
        let delivered = self.update_rack(now);
        if delivered || ack.gt(una) {
            // The peer is getting data: no probe is outstanding any more.
            self.tlp_probes = 0;
        }
        if self.send.flight() > 0 {
            let threshold = u64::from(DUP_THRESH) * mss;
            let by_time = self.detect_lost_by_time(now);
            if !self.in_recovery
                && (by_time > 0
                    || self.dup_acks >= DUP_THRESH
                    || self.send.head_lost_by_sack(threshold))
            {
                self.enter_recovery(now);
            } else if self.in_recovery
                && by_time > 0
                && self.send.lost_in_epoch()
                && self.queue_building()
            {
                // Data sent during this episode (a retransmission or new data) was lost while
                // a queue shows: a new congestion event (as QUIC counts them), not part of the
                // old one. With one reduction per episode, a queue kept full by the window
                // dropped every retransmission of the head while recovery never ended. On a
                // path without a queue a lost retransmission is random loss: no new cut.
                self.enter_recovery(now);
            }
            if self.in_recovery {
                // Every hole the SACK blocks reveal, not one per tick (Q3).
                self.send.mark_lost_by_sack(threshold, self.epoch);
            }
        }
        if delivered || ack.gt(una) {
            self.arm_tlp(now);
        }
    }

    /// One loss-recovery episode begins: one window reduction, the head resent at once.
    pub(super) fn enter_recovery(&mut self, now: Instant) {
        self.epoch = self.epoch.wrapping_add(1);
        self.in_recovery = true;
        self.recovery_point = self.send.nxt();
        self.recovery_congested = self.loss_is_congestion();
        if self.recovery_congested {
            self.cut_window(now);
        }
        self.stats.fast_retransmits += 1;
        self.send.mark_head_lost(self.epoch);
        // The first retransmission of an episode goes out whatever the window says
        // (RFC 6675 §5 step 4.3).
        self.retransmit_now = true;
    }

    /// Whether a loss episode starting now is a sign of congestion: a queue shows (the
    /// latest round trip well above the minimum, see [`Self::queue_building`]), or the path
    /// shows no queue but stopped taking more. In slow start that is a delivery rate no longer
    /// climbing; after it, a window in use above what the path delivers (a policer, or a full
    /// pipe with no buffer, drops what exceeds its rate while the round trip stays flat).
    /// Any other loss is random: repaired without a cut. At a few percent of random loss every
    /// window has one, and cutting for each held the window to its initial size in slow start
    /// and, after it, to a fraction of the path (cut, held for the episode, cut again).
    fn loss_is_congestion(&self) -> bool {
        if self.queue_building() {
            return true;
        }
        if self.cc.window() < self.cc.ssthresh() {
            return !self.delivery.climbing();
        }
        let Some(delivered) = self.delivered_window() else {
            return true;
        };
        let in_use = self.send.flight().min(self.cc.window());
        in_use > delivered / 4 * 5
    }

    /// What the path delivers in flight: the delivery rate times the minimum RTT; none before
    /// an RTT sample.
    fn delivered_window(&self) -> Option<u64> {
        self.rtt.min_rtt().map(|rtt| self.delivery.window(rtt))
    }

    /// The episode's one window reduction, applied to min(flight, cwnd) (a flight swollen by
    /// SACKed data is not the window), and no lower than what the path was delivering:
    /// random loss is not congestion (see `delivery_rate`).
    fn cut_window(&mut self, now: Instant) {
        self.cc
            .on_congestion_event(now, self.send.flight().min(self.cc.window()));
        if let Some(delivered) = self.delivered_window() {
            self.cc.limit_reduction(delivered);
        }
    }

    /// Whether an ACK may grow the window. During a random-loss episode only while the
    /// window stays within three times what the path delivers (slow start under random loss
    /// keeps it near twice), or two initial windows while little is measured: a policer's
    /// loss, taken as random at first, would otherwise let the window double into it for
    /// round after round.
    fn may_grow(&self) -> bool {
        if !self.in_recovery {
            return true;
        }
        let delivered = self.delivered_window().unwrap_or(0);
        let floor = GROWTH_FLOOR_SEGMENTS * self.config.mss as u64;
        self.cc.window() <= (delivered * 3).max(floor)
    }

    /// Whether the recent round trips show a queue: the smallest of the last two rounds more
    /// than an eighth (4 to 16 ms) above the minimum, as HyStart++ tests it. The smallest,
    /// because a delayed ACK stretches single samples.
    pub(super) fn queue_building(&self) -> bool {
        let Some(min_rtt) = self.rtt.min_rtt() else {
            return true;
        };
        let recent = self.round_min.recent().unwrap_or(self.rtt.latest());
        recent > min_rtt + (min_rtt / 8).clamp(QUEUE_THRESH_MIN, QUEUE_THRESH_MAX)
    }

    /// A loss taken as random was congestion after all: the round trips that followed it
    /// (the ones that were under way when it was detected) show a queue. The window is cut
    /// now, once for the episode, as if it had been at the start.
    fn recheck_recovery(&mut self, now: Instant) {
        if self.in_recovery && !self.recovery_congested && self.queue_building() {
            self.recovery_congested = true;
            self.cut_window(now);
        }
    }

    /// Takes the newest delivered transmission from this ACK into RACK's state; returns
    /// whether anything was delivered.
    fn update_rack(&mut self, now: Instant) -> bool {
        let Some(d) = self.send.take_delivered() else {
            return false;
        };
        let rtt = now.saturating_duration_since(d.sent_at);
        // A retransmission acknowledged faster than the path's minimum round trip was the
        // original arriving late: its send time says nothing (RFC 8985 §6.2 step 2).
        let ambiguous = d.retransmitted && self.rtt.min_rtt().is_some_and(|m| rtt < m);
        let newer = self
            .rack
            .is_none_or(|r| d.sent_at > r.sent_at || (d.sent_at == r.sent_at && d.end.gt(r.end)));
        if !ambiguous && newer {
            self.rack = Some(d);
            self.rack_rtt = rtt;
        }
        true
    }

    /// RACK's time rule: a segment sent more than the reordering window before one that was
    /// delivered is lost, whether it is an original or a retransmission (a lost retransmission
    /// no longer waits for the RTO). Arms the reordering timer for the ones not yet due.
    pub(super) fn detect_lost_by_time(&mut self, now: Instant) -> u64 {
        self.rack_at = None;
        let Some(rack) = self.rack else { return 0 };
        if self.send.flight() == 0 {
            return 0;
        }
        // RFC 8985 §6.2: a quarter of the minimum RTT, never more than the smoothed RTT; at
        // least a millisecond, so segments sent in one burst are never lost the instant a
        // later one of the burst is reported.
        let min_rtt = self.rtt.min_rtt().unwrap_or(self.rack_rtt);
        let reo_wnd = (min_rtt / 4)
            .min(self.rtt.srtt().unwrap_or(min_rtt))
            .max(REO_WND_FLOOR);
        let (marked, timer) =
            self.send
                .mark_lost_by_time(now, rack, self.rack_rtt + reo_wnd, self.epoch);
        self.rack_at = timer;
        self.stats.rack_losses += marked as u64;
        marked as u64
    }

    /// Arms the tail loss probe (RFC 8985 §7.2): two smoothed RTTs after the latest send or
    /// delivery (plus the delayed-ACK time when one segment is out), and never after the RTO,
    /// which the probe then stands in for. Unlike RFC 8985, and like QUIC's PTO, it is armed
    /// in recovery too: a lost retransmission at the end of an episode, with nothing sent
    /// after it, is then probed instead of waiting for the RTO and a window of one segment.
    pub(super) fn arm_tlp(&mut self, now: Instant) {
        if self.tlp_probes > 0 {
            // A probe is out: keep its backed-off successor (a probe of new data sends
            // through here, and clearing the timer left a lost probe to the RTO).
            return;
        }
        self.tlp_at = self.probe_time().map(|pto| now + pto);
        if let (Some(at), Some(rto)) = (self.tlp_at, self.rto_at) {
            self.tlp_at = Some(at.min(rto));
        }
    }

    /// The probe time: two smoothed RTTs (plus the delayed-ACK time when one segment is
    /// out), at least 1 ms; none with nothing in flight or no RTT yet.
    pub(super) fn probe_time(&self) -> Option<Duration> {
        let flight = self.send.flight();
        if flight == 0 {
            return None;
        }
        let mut pto = self.rtt.srtt()? * 2;
        if flight <= self.config.mss as u64 {
            pto += self.config.delayed_ack;
        }
        Some(pto.max(Duration::from_millis(1)))
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
                        // Every second full segment is acknowledged with its own ACK, even
                        // when many arrive before the next transmit.
                        self.ack_points.push(self.recv.nxt());
                        self.unacked_segments = 0;
                        self.delayed_ack_at = None;
                        self.pending.ack = true;
                    } else if self.delayed_ack_at.is_none() {
                        self.delayed_ack_at = Some(now + self.config.delayed_ack);
                    }
                }
                self.try_complete_peer_fin(now);
            }
        }
    }
}
