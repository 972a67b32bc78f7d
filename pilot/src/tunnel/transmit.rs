//! Outgoing datagrams and the buffers they travel in.
//!
//! Every datagram the tunnel produces is a [`Transmit`] whose buffer comes from a pool; the
//! caller hands it back with [`super::Tunnel::recycle`] once sent, so the data path allocates
//! nothing per packet once the pool is warm.

use std::collections::VecDeque;
use std::net::SocketAddr;

/// Capacity of a fresh buffer: a relayed sealed frame of a full 4096-byte stream segment
/// (9 + 36 + 34 + 4096 = 4175 bytes) fits with room to spare.
const BUFFER_CAPACITY: usize = 4352;

/// One datagram to send from the tunnel socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub to: SocketAddr,
    /// The datagram. Hand the `Vec` back with [`super::Tunnel::recycle`] after sending.
    pub bytes: Vec<u8>,
}

/// The queue of datagrams to send and the pool of free buffers.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Transmit>,
    pool: Vec<Vec<u8>>,
    pool_limit: usize,
}

impl Outbox {
    /// An empty outbox keeping at most `pool_limit` free buffers.
    pub fn new(pool_limit: usize) -> Self {
        Outbox {
            queue: VecDeque::new(),
            pool: Vec::new(),
            pool_limit,
        }
    }

    /// An empty buffer, reused if one is free.
    pub fn buffer(&mut self) -> Vec<u8> {
        self.pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_CAPACITY))
    }

    /// Takes a buffer back for reuse.
    pub fn recycle(&mut self, mut buffer: Vec<u8>) {
        if self.pool.len() < self.pool_limit && buffer.capacity() > 0 {
            buffer.clear();
            self.pool.push(buffer);
        }
    }

    /// Queues `bytes` for `to`.
    pub fn push(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        self.queue.push_back(Transmit { to, bytes });
    }

    /// Queues a copy of `bytes` for `to`.
    pub fn push_copy(&mut self, to: SocketAddr, bytes: &[u8]) {
        let mut buffer = self.buffer();
        buffer.extend_from_slice(bytes);
        self.push(to, buffer);
    }

    /// The next datagram to send.
    pub fn pop(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }

    /// Number of datagrams waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused() {
        let mut outbox = Outbox::new(1);
        let to = SocketAddr::from(([127, 0, 0, 1], 9));
        outbox.push_copy(to, b"one");
        let sent = outbox.pop().unwrap();
        assert_eq!(sent.bytes, b"one");
        let ptr = sent.bytes.as_ptr();
        outbox.recycle(sent.bytes);
        let again = outbox.buffer();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr);
    }
}
