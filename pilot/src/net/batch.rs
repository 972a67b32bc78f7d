//! Buffers for moving many datagrams per call through a [`super::UdpSocket`].
//!
//! A [`RecvBatch`] is a row of slots, each big enough for the largest UDP datagram; a socket
//! with receive offload (UDP GRO) may put several datagrams of one sender, all of one length
//! (the stride) but the last, into one slot. [`RecvBatch::iter`] hands them out one by one
//! either way. Sending takes any slice of [`Outgoing`] datagrams.

use std::net::SocketAddr;

/// Bytes per receive slot: the largest UDP payload, or one offloaded run of datagrams.
pub const SLOT_LEN: usize = 65_536;

/// A datagram to send: where to, and its bytes.
pub trait Outgoing {
    /// The destination.
    fn destination(&self) -> SocketAddr;
    /// The datagram.
    fn payload(&self) -> &[u8];
}

impl Outgoing for (SocketAddr, Vec<u8>) {
    fn destination(&self) -> SocketAddr {
        self.0
    }

    fn payload(&self) -> &[u8] {
        &self.1
    }
}

/// What arrived in one slot.
#[derive(Clone, Copy, Debug)]
pub(super) struct Filled {
    /// Bytes in the slot.
    pub(super) len: usize,
    /// Length of each datagram in it (the last may be shorter); equal to `len` for one.
    pub(super) stride: usize,
    /// The sender.
    pub(super) from: SocketAddr,
}

/// Reusable receive buffers for [`super::UdpSocket::recv_batch`].
pub struct RecvBatch {
    buf: Vec<u8>,
    slots: usize,
    filled: Vec<Filled>,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.slots)
            .field("filled", &self.filled)
            .finish()
    }
}

impl RecvBatch {
    /// Buffers for `slots` receives (at least one), allocated once.
    pub fn new(slots: usize) -> Self {
        let slots = slots.max(1);
        RecvBatch {
            buf: vec![0u8; slots * SLOT_LEN],
            slots,
            filled: Vec::with_capacity(slots),
        }
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Forgets what was received.
    pub fn clear(&mut self) {
        self.filled.clear();
    }

    /// Datagrams received (each offloaded run counted datagram by datagram).
    pub fn len(&self) -> usize {
        self.filled.iter().map(Filled::datagrams).sum()
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.filled.is_empty()
    }

    /// The next free slot, or `None` when all are filled.
    pub(super) fn free_slot(&mut self) -> Option<&mut [u8]> {
        let i = self.filled.len();
        (i < self.slots).then(|| &mut self.buf[i * SLOT_LEN..(i + 1) * SLOT_LEN])
    }

    /// The whole buffer, slot `i` at `i * SLOT_LEN`, for a system call filling many at once.
    #[cfg(target_os = "linux")]
    pub(super) fn raw_slots(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Records that the next free slot received `len` bytes from `from` in datagrams of
    /// `stride` bytes (a zero stride means one datagram).
    pub(super) fn push(&mut self, len: usize, stride: usize, from: SocketAddr) {
        debug_assert!(self.filled.len() < self.slots && len <= SLOT_LEN);
        let stride = if stride == 0 { len } else { stride };
        self.filled.push(Filled { len, stride, from });
    }

    /// The datagrams received, in arrival order, with their senders.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
        self.filled.iter().enumerate().flat_map(move |(i, f)| {
            let slot = &self.buf[i * SLOT_LEN..i * SLOT_LEN + f.len];
            let stride = f.stride.max(1);
            (0..f.datagrams()).map(move |k| {
                let end = ((k + 1) * stride).min(f.len);
                (&slot[k * stride..end], f.from)
            })
        })
    }
}

impl Filled {
    /// Datagrams in the slot; an empty datagram is still one.
    fn datagrams(&self) -> usize {
        self.len.div_ceil(self.stride.max(1)).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn offloaded_runs_split_by_stride() {
        let mut batch = RecvBatch::new(2);
        batch.free_slot().unwrap()[..10].copy_from_slice(b"aaaabbbbcc");
        batch.push(10, 4, addr(1));
        batch.free_slot().unwrap()[..3].copy_from_slice(b"xyz");
        batch.push(3, 0, addr(2));
        assert!(batch.free_slot().is_none());
        let got: Vec<(&[u8], SocketAddr)> = batch.iter().collect();
        assert_eq!(
            got,
            vec![
                (&b"aaaa"[..], addr(1)),
                (&b"bbbb"[..], addr(1)),
                (&b"cc"[..], addr(1)),
                (&b"xyz"[..], addr(2)),
            ]
        );
        assert_eq!(batch.len(), 4);
        batch.clear();
        assert!(batch.is_empty());
        assert!(batch.free_slot().is_some());
    }

    #[test]
    fn an_empty_datagram_counts() {
        let mut batch = RecvBatch::new(1);
        batch.push(0, 0, addr(3));
        assert_eq!(batch.iter().collect::<Vec<_>>(), vec![(&b""[..], addr(3))]);
    }
}
