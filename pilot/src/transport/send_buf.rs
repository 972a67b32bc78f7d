//! The send side of a stream: application bytes not yet acknowledged, and the segments that
//! carried them, with SACK and loss marks.
//!
//! Bytes live once, in a ring starting at `una`; a segment is only `(start, len)` plus
//! bookkeeping, so retransmission copies straight from the ring. Segments are kept in sequence
//! order in a deque: a cumulative ACK pops from the front (amortised O(1) per segment, where the
//! reference rebuilt its list per ACK, Q17), SACK blocks find their segments by binary search,
//! and lost segments wait in a queue so every hole is repaired as soon as the window allows (Q3).

use super::ring::ByteRing;
use super::seq::Seq;
use crate::wire::sack::MAGIC as SACK_MAGIC;
use std::collections::VecDeque;
use std::time::Instant;

/// One transmitted segment.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    /// Sequence number of its first byte.
    pub start: Seq,
    /// Payload length.
    pub len: u32,
    /// Time of the latest transmission.
    pub sent_at: Instant,
    /// Number of transmissions.
    pub transmissions: u32,
    /// Reported received by SACK.
    pub sacked: bool,
    /// Marked lost and waiting for retransmission.
    pub lost: bool,
    /// Loss-recovery episode of the latest transmission.
    pub epoch: u32,
}

impl Segment {
    /// Sequence number after its last byte.
    pub fn end(&self) -> Seq {
        self.start.plus(self.len)
    }
}

/// What a cumulative ACK released.
#[derive(Clone, Copy, Debug, Default)]
pub struct Acked {
    /// Bytes newly acknowledged.
    pub bytes: u64,
    /// Send time of the newest fully acknowledged segment sent only once (Karn's rule).
    pub rtt_sent_at: Option<Instant>,
}

/// Keeps in `delivered` whichever of it and `seg` was sent last (ties: the higher end).
fn note_delivered(delivered: &mut Option<Delivered>, seg: &Segment) {
    let newer = match delivered {
        None => true,
        Some(d) => seg.sent_at > d.sent_at || (seg.sent_at == d.sent_at && seg.end().gt(d.end)),
    };
    if newer {
        *delivered = Some(Delivered {
            sent_at: seg.sent_at,
            end: seg.end(),
            retransmitted: seg.transmissions > 1,
        });
    }
}

/// Unacknowledged and unsent bytes of one connection.
#[derive(Debug)]
pub struct SendBuffer {
    ring: ByteRing,
    una: Seq,
    nxt: Seq,
    segs: VecDeque<Segment>,
    sacked_bytes: u64,
    lost_bytes: u64,
    /// Whether the last [`SendBuffer::mark_lost_by_time`] found a segment (re)sent in the
    /// episode it was given lost.
    lost_in_epoch: bool,
    lost_queue: VecDeque<Seq>,
    high_sacked: Seq,
    /// The most recently sent segment delivered (acknowledged or SACKed) since the last
    /// [`SendBuffer::take_delivered`]: RACK's input.
    delivered: Option<Delivered>,
}

/// The newest transmission that reached the peer, as RACK (RFC 8985 §6.1) tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// When it was (last) sent.
    pub sent_at: Instant,
    /// Sequence number after its last byte.
    pub end: Seq,
    /// Whether that was a retransmission (the delivery may be of the original).
    pub retransmitted: bool,
}

impl SendBuffer {
    /// An empty buffer of `cap` bytes whose first byte will have sequence number `start`.
    pub fn new(cap: usize, start: Seq) -> Self {
        SendBuffer {
            ring: ByteRing::new(cap),
            una: start,
            nxt: start,
            segs: VecDeque::new(),
            sacked_bytes: 0,
            lost_bytes: 0,
            lost_in_epoch: false,
            lost_queue: VecDeque::new(),
            high_sacked: start,
            delivered: None,
        }
    }

    /// The newest transmission delivered by the ACKs and SACKs applied since the last call.
    pub fn take_delivered(&mut self) -> Option<Delivered> {
        self.delivered.take()
    }

    /// RACK's loss rule (RFC 8985 §6.2): every segment neither SACKed nor already marked that
    /// was sent before the newest delivered transmission (`rack`, its sent time and end) is
    /// lost once `now` passes its send time plus `rtt + reo_wnd`. Returns the segments marked and
    /// the earliest time a remaining candidate would be (the reordering timer).
    pub fn mark_lost_by_time(
        &mut self,
        now: Instant,
        rack: Delivered,
        wait: std::time::Duration,
        epoch: u32,
    ) -> (usize, Option<Instant>) {
        self.lost_in_epoch = false;
        let mut marked = 0;
        let mut timer: Option<Instant> = None;
        for seg in self.segs.iter_mut() {
            if !seg.start.lt(rack.end) {
                break;
            }
            if seg.sacked || seg.lost {
                continue;
            }
            let before = seg.sent_at < rack.sent_at
                || (seg.sent_at == rack.sent_at && seg.end().le(rack.end));
            if !before {
                continue;
            }
            let due = seg.sent_at + wait;
            if due <= now {
                self.lost_in_epoch |= seg.epoch == epoch;
                seg.lost = true;
                self.lost_bytes += u64::from(seg.len);
                self.lost_queue.push_back(seg.start);
                marked += 1;
            } else {
                timer = Some(timer.map_or(due, |t| t.min(due)));
            }
        }
        (marked, timer)
    }

    /// Whether the last [`SendBuffer::mark_lost_by_time`] found lost a segment sent (or
    /// resent) in the episode it was given: the loss is news after the episode began.
    pub fn lost_in_epoch(&self) -> bool {
        self.lost_in_epoch
    }

    /// Tail loss probe without new data (RFC 8985 §7.3): marks the last segment that is
    /// neither SACKed nor already lost for retransmission, first in line.
    pub fn mark_tail_lost(&mut self) -> bool {
        match self.segs.iter_mut().rev().find(|s| !s.sacked) {
            Some(seg) if !seg.lost => {
                seg.lost = true;
                self.lost_bytes += u64::from(seg.len);
                self.lost_queue.push_front(seg.start);
                true
            }
            _ => false,
        }
    }

    /// Oldest unacknowledged sequence number.
    pub fn una(&self) -> Seq {
        self.una
    }

    /// Next new sequence number to send.
    pub fn nxt(&self) -> Seq {
        self.nxt
    }

    /// Whether any byte was ever sent (written and transmitted).
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Room for more application bytes.
    pub fn free(&self) -> usize {
        self.ring.free()
    }

    /// Bytes written but never transmitted.
    pub fn unsent(&self) -> usize {
        self.ring.len() - self.flight() as usize
    }

    /// Bytes between `una` and `nxt`.
    pub fn flight(&self) -> u64 {
        u64::from(self.nxt.since(self.una))
    }

    /// Bytes SACKed and not yet cumulatively acknowledged.
    pub fn sacked(&self) -> u64 {
        self.sacked_bytes
    }

    /// Bytes believed to be in the network: in flight, minus SACKed, minus lost and not yet
    /// resent (RFC 6675 "pipe", simplified).
    pub fn pipe(&self) -> u64 {
        self.flight() - self.sacked_bytes - self.lost_bytes
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.ring.heap_bytes()
            + self.segs.capacity() * std::mem::size_of::<Segment>()
            + self.lost_queue.capacity() * std::mem::size_of::<Seq>()
    }

    /// Frees storage when nothing is buffered.
    pub fn release(&mut self) {
        if self.ring.is_empty() {
            self.ring.release();
            self.segs = VecDeque::new();
            self.lost_queue = VecDeque::new();
        }
    }

    /// Appends application bytes; returns how many fit.
    pub fn write(&mut self, data: &[u8]) -> usize {
        self.ring.push(data)
    }

    /// Drops everything unsent and unacknowledged (the stream is over).
    pub fn clear(&mut self) {
        let n = self.ring.len();
        self.ring.consume(n);
        self.una = self.nxt;
        self.segs.clear();
        self.lost_queue.clear();
        self.sacked_bytes = 0;
        self.lost_bytes = 0;
        self.delivered = None;
    }

    /// Length of the next new segment, at most `max`: normally `min(max, unsent)`, but one byte
    /// when the segment would otherwise parse as a SACK list at the receiver (Q9: the reference
    /// swallowed such data).
    pub fn next_len(&self, max: usize) -> usize {
        let len = max.min(self.unsent());
        if len >= 5 {
            let off = self.flight() as usize;
            let magic = (0..4).all(|i| self.ring.byte(off + i) == SACK_MAGIC[i]);
            if magic {
                let count = usize::from(self.ring.byte(off + 4));
                if (1..=4).contains(&count) && len >= 5 + 8 * count {
                    return 1;
                }
            }
        }
        len
    }

    /// Records `len` new bytes as sent at `now` and appends their payload to `out`.
    pub fn send_new(&mut self, now: Instant, len: usize, epoch: u32, out: &mut Vec<u8>) -> Seq {
        let start = self.nxt;
        self.ring.copy_to_vec(self.flight() as usize, len, out);
        self.segs.push_back(Segment {
            start,
            len: len as u32,
            sent_at: now,
            transmissions: 1,
            sacked: false,
            lost: false,
            epoch,
        });
        self.nxt = start.plus(len as u32);
        start
    }

    /// Appends the payload of the byte range `[start, start + len)` (already sent) to `out`.
    pub fn copy_range(&self, start: Seq, len: u32, out: &mut Vec<u8>) {
        self.ring
            .copy_to_vec(start.since(self.una) as usize, len as usize, out);
    }

    /// Index of the segment starting at or after `seq`.
    fn index_at(&self, seq: Seq) -> usize {
        let una = self.una;
        let target = seq.since(una);
        self.segs.partition_point(|s| s.start.since(una) < target)
    }

    /// Applies a cumulative ACK `ack` (caller has checked `una < ack <= nxt`).
    pub fn ack(&mut self, ack: Seq) -> Acked {
        let mut out = Acked::default();
        let mut resent = false;
        while let Some(front) = self.segs.front_mut() {
            if front.end().le(ack) {
                let seg = *front;
                self.segs.pop_front();
                if !seg.sacked {
                    note_delivered(&mut self.delivered, &seg);
                }
                resent |= seg.transmissions > 1;
                if seg.sacked {
                    self.sacked_bytes -= u64::from(seg.len);
                } else if seg.transmissions == 1 && !seg.lost {
                    out.rtt_sent_at = Some(seg.sent_at);
                }
                if seg.lost {
                    self.lost_bytes -= u64::from(seg.len);
                }
            } else {
                if front.start.lt(ack) {
                    // Partly acknowledged (the receiver trimmed to its window): keep the rest.
                    let cut = ack.since(front.start);
                    front.start = ack;
                    front.len -= cut;
                    if front.sacked {
                        self.sacked_bytes -= u64::from(cut);
                    }
                    if front.lost {
                        self.lost_bytes -= u64::from(cut);
                        // Its queue entry names the old start; file the remainder again.
                        self.lost_queue.push_front(ack);
                    }
                }
                break;
            }
        }
        if resent {
            // The ACK waited for a retransmission: every segment it covers would give an
            // inflated sample (Karn's rule, applied to the whole ACK; Q18).
            out.rtt_sent_at = None;
        }
        let released = ack.since(self.una);
        out.bytes = u64::from(released);
        self.ring.consume(released as usize);
        self.una = ack;
        if self.high_sacked.lt(ack) {
            self.high_sacked = ack;
        }
        out
    }

    /// Marks segments lying entirely inside `[left, right)` as SACKed; returns newly SACKed
    /// bytes, and the send time of the newest newly SACKed segment sent only once (an RTT
    /// sample). Blocks outside `[una, nxt]` are clipped, so a forged block cannot mark unsent
    /// data.
    pub fn sack(&mut self, left: Seq, right: Seq) -> (u64, Option<Instant>) {
        let left = left.max_seq(self.una);
        let right = if right.gt(self.nxt) { self.nxt } else { right };
        if !left.lt(right) {
            return (0, None);
        }
        let mut sample = None;
        let mut newly = 0;
        let mut i = self.index_at(left);
        while i < self.segs.len() {
            let seg = &mut self.segs[i];
            if seg.end().gt(right) {
                break;
            }
            if !seg.sacked {
                seg.sacked = true;
                newly += u64::from(seg.len);
                note_delivered(&mut self.delivered, seg);
                // A segment already given up as lost has waited through a timeout or a
                // recovery: its age is not a round trip.
                if seg.transmissions == 1 && !seg.lost {
                    sample = Some(seg.sent_at);
                }
                if seg.lost {
                    seg.lost = false;
                    self.lost_bytes -= u64::from(seg.len);
                }
            }
            i += 1;
        }
        self.sacked_bytes += newly;
        if right.gt(self.high_sacked) && newly > 0 {
            self.high_sacked = right;
        }
        (newly, sample)
    }

    /// Whether the first unacknowledged segment is a hole with at least `threshold` bytes SACKed
    /// above it (RFC 6675 `IsLost`, by distance to the highest SACKed byte).
    pub fn head_lost_by_sack(&self, threshold: u64) -> bool {
        match self.segs.front() {
            Some(seg) if !seg.sacked => {
                u64::from(self.high_sacked.since(seg.end())) >= threshold
                    && self.high_sacked.gt(seg.end())
            }
            _ => false,
        }
    }

    /// Marks every hole below `high_sacked - threshold` that was not already resent in `epoch`
    /// as lost; returns how many segments were marked.
    pub fn mark_lost_by_sack(&mut self, threshold: u64, epoch: u32) -> usize {
        if self.sacked_bytes == 0 {
            return 0;
        }
        let limit = self
            .high_sacked
            .minus(threshold.min(u64::from(u32::MAX)) as u32);
        let mut marked = 0;
        for seg in self.segs.iter_mut() {
            if seg.end().gt(limit) || !seg.end().lt(self.high_sacked) {
                break;
            }
            if !seg.sacked && !seg.lost && seg.epoch != epoch {
                seg.lost = true;
                self.lost_bytes += u64::from(seg.len);
                self.lost_queue.push_back(seg.start);
                marked += 1;
            }
        }
        marked
    }

    /// Marks the first unacknowledged segment lost unless SACKed or already resent in `epoch`.
    pub fn mark_head_lost(&mut self, epoch: u32) -> bool {
        match self.segs.front_mut() {
            Some(seg) if !seg.sacked && !seg.lost && seg.epoch != epoch => {
                seg.lost = true;
                self.lost_bytes += u64::from(seg.len);
                self.lost_queue.push_front(seg.start);
                true
            }
            _ => false,
        }
    }

    /// After a retransmission timeout: everything not SACKed is lost.
    pub fn mark_all_lost(&mut self) {
        self.lost_queue.clear();
        self.lost_bytes = 0;
        for seg in self.segs.iter_mut() {
            if !seg.sacked {
                seg.lost = true;
                self.lost_bytes += u64::from(seg.len);
                self.lost_queue.push_back(seg.start);
            }
        }
    }

    /// The next lost segment to resend, without taking it.
    pub fn peek_lost(&mut self) -> Option<Segment> {
        while let Some(&start) = self.lost_queue.front() {
            if start.ge(self.una) {
                let i = self.index_at(start);
                if let Some(seg) = self.segs.get(i) {
                    if seg.start == start && seg.lost {
                        return Some(*seg);
                    }
                }
            }
            self.lost_queue.pop_front();
        }
        None
    }

    /// Resends the lost segment starting at `start`: clears its loss mark and appends its bytes.
    pub fn resend(&mut self, now: Instant, start: Seq, epoch: u32, out: &mut Vec<u8>) -> u32 {
        self.lost_queue.pop_front();
        let i = self.index_at(start);
        let seg = &mut self.segs[i];
        seg.lost = false;
        seg.transmissions += 1;
        seg.sent_at = now;
        seg.epoch = epoch;
        let len = seg.len;
        self.lost_bytes -= u64::from(len);
        self.copy_range(start, len, out);
        len
    }

    /// The first unacknowledged segment.
    #[cfg(test)]
    pub fn front(&self) -> Option<&Segment> {
        self.segs.front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(buf: &mut SendBuffer, now: Instant, n: usize, seg: usize) {
        for _ in 0..n {
            let len = buf.next_len(seg);
            let mut out = Vec::new();
            buf.send_new(now, len, 0, &mut out);
        }
    }

    #[test]
    fn ack_sack_and_loss_marks() {
        let now = Instant::now();
        let mut b = SendBuffer::new(1 << 16, Seq(u32::MAX - 100));
        let base = b.una();
        assert_eq!(b.write(&[7u8; 10 * 100]), 1000);
        sent(&mut b, now, 10, 100);
        assert_eq!(b.flight(), 1000);
        // Segment 0 lost; 1..=4 SACKed.
        assert_eq!(b.sack(base.plus(100), base.plus(500)), (400, Some(now)));
        assert_eq!(b.pipe(), 600);
        assert!(b.head_lost_by_sack(300));
        assert!(!b.head_lost_by_sack(401));
        assert_eq!(b.mark_lost_by_sack(300, 1), 1);
        let lost = b.peek_lost().unwrap();
        assert_eq!(lost.start, base);
        let mut out = Vec::new();
        assert_eq!(b.resend(now, lost.start, 1, &mut out), 100);
        assert_eq!(out, vec![7u8; 100]);
        assert!(b.peek_lost().is_none());
        let acked = b.ack(base.plus(500));
        assert_eq!(acked.bytes, 500);
        assert_eq!(b.pipe(), 500);
        // A partial ACK inside a segment keeps the rest.
        let acked = b.ack(base.plus(550));
        assert_eq!(acked.bytes, 50);
        assert_eq!(b.front().unwrap().len, 50);
        b.mark_all_lost();
        assert_eq!(b.pipe(), 0);
        assert_eq!(b.peek_lost().unwrap().start, base.plus(550));
        // A partial ACK of a lost segment keeps the rest queued for retransmission.
        b.ack(base.plus(560));
        assert_eq!(b.peek_lost().unwrap().start, base.plus(560));
    }

    #[test]
    fn no_rtt_sample_from_an_ack_that_waited_for_a_retransmission() {
        let t0 = Instant::now();
        let mut b = SendBuffer::new(1 << 16, Seq(1));
        b.write(&[0u8; 300]);
        sent(&mut b, t0, 3, 100);
        // Segment 1 is SACKed: a sample from it.
        assert_eq!(b.sack(Seq(101), Seq(201)), (100, Some(t0)));
        // Segment 0 is lost and resent; the ACK covering 0..2 then reflects the wait.
        b.mark_all_lost();
        let mut out = Vec::new();
        let later = t0 + std::time::Duration::from_secs(3);
        let lost = b.peek_lost().unwrap();
        b.resend(later, lost.start, 1, &mut out);
        assert_eq!(b.ack(Seq(301)).rtt_sent_at, None);
        // A plain ACK of a segment sent once samples it.
        b.write(&[0u8; 100]);
        sent(&mut b, later, 1, 100);
        assert_eq!(b.ack(Seq(401)).rtt_sent_at, Some(later));
    }

    #[test]
    fn forged_sack_beyond_nxt_is_clipped() {
        let now = Instant::now();
        let mut b = SendBuffer::new(1024, Seq(1));
        b.write(&[1u8; 300]);
        sent(&mut b, now, 1, 100);
        assert_eq!(b.sack(Seq(0), Seq(1_000_000)).0, 100);
        assert_eq!(b.sack(Seq(500), Seq(900)), (0, None));
    }

    #[test]
    fn data_that_looks_like_sack_is_split() {
        let mut b = SendBuffer::new(1024, Seq(1));
        let mut data = b"SACK\x01".to_vec();
        data.extend_from_slice(&[0u8; 20]);
        b.write(&data);
        assert_eq!(b.next_len(4096), 1);
        let mut out = Vec::new();
        b.send_new(Instant::now(), 1, 0, &mut out);
        assert_eq!(b.next_len(4096), data.len() - 1);
        // Too short to parse as SACK: sent whole.
        let mut short = SendBuffer::new(1024, Seq(1));
        short.write(b"SACK\x01abc");
        assert_eq!(short.next_len(4096), 8);
    }
}
