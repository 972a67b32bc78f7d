//! What the core keeps per connection: its owner, the owner's receive credit, and the writes
//! waiting for room in the stream's send buffer.

use super::types::ClientId;
use crate::transport::{Connection, WriteError};
use crate::wire;
use std::collections::VecDeque;

/// A connection and the client that owns it.
#[derive(Debug)]
pub struct Owned {
    /// The client that dialled or accepted it; only it may send on or close it.
    pub owner: ClientId,
    /// Receive bytes the owner still accepts.
    pub credit: u64,
    /// Writes not yet in the stream.
    pub writes: PendingWrites,
    /// The peer.
    pub remote: wire::SocketAddr,
    /// Our port.
    pub local_port: u16,
    /// The owner asked to close; the FIN goes once the queue is empty.
    pub close_requested: bool,
    /// The owner was told the receive side ended (no more Recv, no second Closed).
    pub end_sent: bool,
}

impl Owned {
    /// A connection owned by `owner`, with `credit` bytes of receive credit.
    pub fn new(owner: ClientId, credit: u32, remote: wire::SocketAddr, local_port: u16) -> Self {
        Owned {
            owner,
            credit: u64::from(credit),
            writes: PendingWrites::default(),
            remote,
            local_port,
            close_requested: false,
            end_sent: false,
        }
    }
}

/// Client writes waiting for the stream's send buffer, in order.
#[derive(Debug, Default)]
pub struct PendingWrites {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the front chunk already written.
    offset: usize,
    queued: usize,
}

impl PendingWrites {
    /// Bytes waiting.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Queues a write.
    pub fn push(&mut self, data: Vec<u8>) {
        self.queued += data.len();
        if !data.is_empty() {
            self.chunks.push_back(data);
        }
    }

    /// Writes as much as the stream takes. Returns the bytes it took and whether the stream no
    /// longer accepts writes.
    pub fn drain_into(&mut self, conn: &mut Connection) -> (usize, bool) {
        let mut taken = 0;
        while let Some(front) = self.chunks.front() {
            match conn.write(&front[self.offset..]) {
                Ok(n) => {
                    taken += n;
                    self.queued -= n;
                    self.offset += n;
                    if self.offset == front.len() {
                        self.chunks.pop_front();
                        self.offset = 0;
                    }
                    if n == 0 {
                        break;
                    }
                }
                Err(WriteError::WouldBlock) => break,
                Err(WriteError::Closed) => return (taken, true),
            }
        }
        (taken, false)
    }

    /// Drops everything; returns how many bytes that was.
    pub fn clear(&mut self) -> usize {
        let dropped = self.queued;
        self.chunks.clear();
        self.offset = 0;
        self.queued = 0;
        dropped
    }
}
