//! The receive side of a stream: in-order bytes for the application plus out-of-order ranges,
//! all inside one ring whose free space is the receive window.
//!
//! Out-of-order bytes are written straight to their place in the ring and remembered as a sorted
//! list of ranges, so a segment that fills a hole makes everything behind it readable without
//! another copy. Memory is bounded by the ring (the reference kept up to 128 segments of any
//! size, Q22), and a full ring only refuses data for this connection (Q7).

use super::ring::ByteRing;
use super::seq::Seq;
use crate::wire::{SackBlock, SackList};

/// Most separate out-of-order ranges remembered; more fragmentation than this is refused.
const MAX_RANGES: usize = 64;

/// What one arriving segment did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Everything in it had been received before.
    Duplicate,
    /// New in-order bytes became readable; `filled_hole` when buffered data joined them.
    InOrder {
        /// Bytes that became readable.
        readable: usize,
        /// Whether out-of-order data was joined (a hole was filled).
        filled_hole: bool,
    },
    /// Stored beyond a gap.
    OutOfOrder,
    /// No room in the window (or too fragmented): dropped, nothing acknowledged.
    Dropped,
}

/// Reassembly buffer and application queue of one connection.
#[derive(Debug)]
pub struct RecvBuffer {
    ring: ByteRing,
    /// Next sequence number expected (RecvAck); the ring's tail.
    nxt: Seq,
    /// Received ranges beyond `nxt`, sorted and disjoint, `[start, end)`.
    ooo: Vec<(Seq, Seq)>,
    /// First byte of the latest out-of-order arrival: its range goes into the next SACK list.
    latest: Option<Seq>,
}

impl RecvBuffer {
    /// An empty buffer of `cap` bytes expecting `nxt` next.
    pub fn new(cap: usize, nxt: Seq) -> Self {
        RecvBuffer {
            ring: ByteRing::new(cap),
            nxt,
            ooo: Vec::new(),
            latest: None,
        }
    }

    /// The next sequence number expected.
    pub fn nxt(&self) -> Seq {
        self.nxt
    }

    /// Resets the expected sequence number (handshake); only valid while empty.
    pub fn set_nxt(&mut self, nxt: Seq) {
        debug_assert!(self.ring.is_empty() && self.ooo.is_empty());
        self.nxt = nxt;
    }

    /// Bytes the application can read.
    pub fn readable(&self) -> usize {
        self.ring.len()
    }

    /// Free bytes from `nxt` on: the receive window.
    pub fn window(&self) -> usize {
        self.ring.free()
    }

    /// Capacity of the buffer.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Whether data is held beyond a gap.
    pub fn has_gaps(&self) -> bool {
        !self.ooo.is_empty()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.ring.heap_bytes() + self.ooo.capacity() * std::mem::size_of::<(Seq, Seq)>()
    }

    /// Frees storage when nothing is buffered.
    pub fn release(&mut self) {
        if self.ooo.is_empty() {
            self.ring.release();
            self.ooo = Vec::new();
        }
    }

    /// Takes in the segment `data` starting at `seq`.
    pub fn insert(&mut self, seq: Seq, data: &[u8]) -> Arrival {
        let mut seq = seq;
        let mut data = data;
        let end = seq.plus(data.len() as u32);
        if data.is_empty() || end.le(self.nxt) {
            return Arrival::Duplicate;
        }
        if seq.lt(self.nxt) {
            // Overlaps what we have: keep only the new tail (the reference dropped all of it).
            let skip = self.nxt.since(seq) as usize;
            data = &data[skip..];
            seq = self.nxt;
        }
        let off = seq.since(self.nxt) as usize;
        let room = self.ring.free();
        if off >= room {
            return Arrival::Dropped;
        }
        if off + data.len() > room {
            data = &data[..room - off];
        }
        let len = data.len();
        let tail = self.ring.len();
        if off == 0 {
            self.ring.write_at(tail, data);
            let mut new_nxt = seq.plus(len as u32);
            let mut filled_hole = false;
            // Join every buffered range the new bytes reach.
            let mut joined = 0;
            for &(start, stop) in &self.ooo {
                if start.gt(new_nxt) {
                    break;
                }
                new_nxt = new_nxt.max_seq(stop);
                joined += 1;
                filled_hole = true;
            }
            self.ooo.drain(..joined);
            let readable = new_nxt.since(self.nxt) as usize;
            self.ring.commit(readable);
            self.nxt = new_nxt;
            return Arrival::InOrder {
                readable,
                filled_hole,
            };
        }
        let seg_end = seq.plus(len as u32);
        // Find where the range goes and whether it is already covered.
        let base = self.nxt;
        let idx = self
            .ooo
            .partition_point(|&(s, _)| s.since(base) < off as u32);
        let covered_before = idx > 0 && self.ooo[idx - 1].1.ge(seg_end);
        if covered_before {
            return Arrival::Duplicate;
        }
        if idx < self.ooo.len() && self.ooo[idx].0 == seq && self.ooo[idx].1.ge(seg_end) {
            return Arrival::Duplicate;
        }
        let touches_prev = idx > 0 && self.ooo[idx - 1].1.ge(seq);
        let touches_next = idx < self.ooo.len() && self.ooo[idx].0.le(seg_end);
        if !touches_prev && !touches_next && self.ooo.len() >= MAX_RANGES {
            return Arrival::Dropped;
        }
        self.ring.write_at(tail + off, data);
        // Merge [seq, seg_end) into the sorted range list.
        let mut start = seq;
        let mut stop = seg_end;
        let mut lo = idx;
        if touches_prev {
            lo = idx - 1;
            start = self.ooo[lo].0;
            stop = stop.max_seq(self.ooo[lo].1);
        }
        let mut hi = idx;
        while hi < self.ooo.len() && self.ooo[hi].0.le(stop) {
            stop = stop.max_seq(self.ooo[hi].1);
            hi += 1;
        }
        self.ooo.splice(lo..hi, std::iter::once((start, stop)));
        self.latest = Some(seq);
        Arrival::OutOfOrder
    }

    /// Copies readable bytes into `buf`; returns how many.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = self.ring.copy_to_slice(0, buf);
        self.ring.consume(n);
        n
    }

    /// Appends up to `max` readable bytes to `out`; returns how many.
    pub fn read_to_vec(&mut self, out: &mut Vec<u8>, max: usize) -> usize {
        let n = self.readable().min(max);
        self.ring.copy_to_vec(0, n, out);
        self.ring.consume(n);
        n
    }

    /// The SACK list, ascending like the reference's: the lowest four out-of-order ranges,
    /// except that the range holding the latest arrival always takes the fourth place (RFC
    /// 2018's first block). The reference sends only the lowest four; with more holes than that
    /// its sender never hears of data above them, so a tail segment or probe that did arrive
    /// looks lost until the RTO. Any peer reads the blocks alike (each marks what lies inside
    /// it), so the wire form is unchanged.
    pub fn sack_list(&self) -> SackList {
        let max = crate::wire::sack::MAX_BLOCKS;
        let latest = self
            .latest
            .and_then(|seq| self.ooo.iter().position(|r| r.0.le(seq) && seq.lt(r.1)))
            .filter(|&i| i >= max);
        let lowest = if latest.is_some() { max - 1 } else { max };
        let mut list = SackList::new();
        for &(left, right) in self
            .ooo
            .iter()
            .take(lowest)
            .chain(latest.map(|i| &self.ooo[i]))
        {
            list.push(SackBlock {
                left: left.0,
                right: right.0,
            });
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(r: &mut RecvBuffer) -> Vec<u8> {
        let mut out = vec![0; r.readable()];
        let n = r.read(&mut out);
        out.truncate(n);
        out
    }

    #[test]
    fn reassembles_out_of_order_and_overlaps() {
        let mut r = RecvBuffer::new(64, Seq(u32::MAX - 3));
        let base = Seq(u32::MAX - 3);
        assert_eq!(r.insert(base.plus(8), b"ijkl"), Arrival::OutOfOrder);
        assert_eq!(r.insert(base.plus(4), b"efgh"), Arrival::OutOfOrder);
        assert_eq!(r.insert(base.plus(6), b"gh"), Arrival::Duplicate);
        assert_eq!(r.sack_list().len(), 1);
        assert_eq!(
            r.insert(base, b"abcdef"),
            Arrival::InOrder {
                readable: 12,
                filled_hole: true
            }
        );
        assert!(!r.has_gaps());
        assert_eq!(read_all(&mut r), b"abcdefghijkl");
        // A segment straddling the expected point contributes its new tail.
        assert_eq!(
            r.insert(base.plus(10), b"klmn"),
            Arrival::InOrder {
                readable: 2,
                filled_hole: false
            }
        );
        assert_eq!(read_all(&mut r), b"mn");
        assert_eq!(r.insert(base, b"old"), Arrival::Duplicate);
    }

    #[test]
    fn read_to_vec_appends_across_the_wrap_and_stops_at_max() {
        let mut r = RecvBuffer::new(8, Seq(0));
        r.insert(Seq(0), b"abcdef");
        let mut out = b">".to_vec();
        assert_eq!(r.read_to_vec(&mut out, 4), 4);
        // The next bytes wrap around the end of the ring.
        r.insert(Seq(6), b"ghij");
        assert_eq!(r.read_to_vec(&mut out, 100), 6);
        assert_eq!(out, b">abcdefghij");
        assert_eq!(r.read_to_vec(&mut out, 100), 0);
        assert_eq!(r.window(), 8);
    }

    #[test]
    fn full_window_drops_and_trims() {
        let mut r = RecvBuffer::new(8, Seq(100));
        assert_eq!(r.insert(Seq(108), b"x"), Arrival::Dropped);
        assert_eq!(
            r.insert(Seq(100), b"0123456789"),
            Arrival::InOrder {
                readable: 8,
                filled_hole: false
            }
        );
        assert_eq!(r.window(), 0);
        assert_eq!(r.insert(Seq(108), b"89"), Arrival::Dropped);
        let mut two = [0u8; 2];
        assert_eq!(r.read(&mut two), 2);
        assert_eq!(r.window(), 2);
    }

    #[test]
    fn sack_lists_lowest_ranges_and_the_latest_arrival() {
        let mut r = RecvBuffer::new(1000, Seq(0));
        for i in 0..6u32 {
            r.insert(Seq(10 + 20 * i), b"0123456789");
        }
        let blocks: Vec<_> = r.sack_list().iter().collect();
        assert_eq!(blocks.len(), 4);
        assert_eq!(
            blocks[0],
            SackBlock {
                left: 10,
                right: 20
            }
        );
        // Six ranges: 10, 30, 50 and the one the latest segment went to, 110.
        assert_eq!(
            blocks[2],
            SackBlock {
                left: 50,
                right: 60
            }
        );
        assert_eq!(
            blocks[3],
            SackBlock {
                left: 110,
                right: 120
            }
        );
        // Bridging two ranges merges them.
        r.insert(Seq(20), b"0123456789");
        assert_eq!(
            r.sack_list().iter().next().unwrap(),
            SackBlock {
                left: 10,
                right: 40
            }
        );
    }
}
