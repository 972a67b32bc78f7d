//! Datagrams, protocol 0x02 (`spec/transport.md` §12): unreliable, unordered messages between
//! ports, with size limits and typed errors.
//!
//! Unlike the reference, which allocated a fresh ephemeral port per datagram and broadcast every
//! received datagram to every IPC client (Q23), datagrams are delivered to the port they are
//! addressed to when it is bound, and a sender keeps one source port.

use super::connection::Transmit;
use crate::wire::{Flags, Header, Protocol, SocketAddr, HEADER_LEN};
use std::collections::VecDeque;

/// Largest datagram payload through a plaintext (PILT) tunnel frame over IPv4 (T-44).
pub const MAX_PAYLOAD_PLAINTEXT: usize = 65_469;
/// Largest datagram payload through an encrypted (PILS) tunnel frame over IPv4 (T-44).
pub const MAX_PAYLOAD_ENCRYPTED: usize = 65_437;
/// Bytes the beacon relay adds, to subtract from the limits above on relayed paths.
pub const RELAY_OVERHEAD: usize = 9;

/// Why a datagram was not sent or not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// Empty datagrams are dropped by every receiver, so they are refused up front.
    #[error("empty datagram")]
    Empty,
    /// Larger than the path allows.
    #[error("datagram of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Payload length offered.
        len: usize,
        /// Largest allowed.
        max: usize,
    },
    /// Broadcast destinations are refused, as in the reference ("custom networks are WIP").
    #[error("broadcast datagrams are not supported")]
    Broadcast,
    /// The port is already bound for datagrams.
    #[error("datagram port {0} already bound")]
    PortInUse(u16),
    /// The port is not bound for datagrams.
    #[error("datagram port {0} not bound")]
    NotBound(u16),
    /// No ephemeral port is free to send from.
    #[error("no free ephemeral port")]
    NoFreePort,
}

/// A received datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Sender's address and port.
    pub src: SocketAddr,
    /// Port it was addressed to.
    pub dst_port: u16,
    /// The payload.
    pub data: Vec<u8>,
}

/// A bounded receive queue: when full, new datagrams are dropped (and counted), so a reader
/// that stops reading costs bounded memory and slows nobody else.
#[derive(Debug)]
pub struct DatagramQueue {
    queue: VecDeque<Datagram>,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
    dropped: u64,
}

impl DatagramQueue {
    /// A queue holding at most `max_count` datagrams and `max_bytes` payload bytes.
    pub fn new(max_count: usize, max_bytes: usize) -> Self {
        DatagramQueue {
            queue: VecDeque::new(),
            bytes: 0,
            max_count,
            max_bytes,
            dropped: 0,
        }
    }

    /// Queues a datagram; returns false (and counts a drop) when full.
    pub fn push(&mut self, datagram: Datagram) -> bool {
        if self.queue.len() >= self.max_count || self.bytes + datagram.data.len() > self.max_bytes {
            self.dropped += 1;
            return false;
        }
        self.bytes += datagram.data.len();
        self.queue.push_back(datagram);
        true
    }

    /// The oldest datagram.
    pub fn pop(&mut self) -> Option<Datagram> {
        let d = self.queue.pop_front()?;
        self.bytes -= d.data.len();
        Some(d)
    }

    /// Datagrams waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether none are waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Datagrams dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Checks a datagram against the limits: not empty, not broadcast, at most `max` bytes.
pub fn check(dst: SocketAddr, payload: &[u8], max: usize) -> Result<(), DatagramError> {
    if payload.is_empty() {
        return Err(DatagramError::Empty);
    }
    if dst.addr.is_broadcast() {
        return Err(DatagramError::Broadcast);
    }
    if payload.len() > max {
        return Err(DatagramError::TooLarge {
            len: payload.len(),
            max,
        });
    }
    Ok(())
}

/// Appends a datagram packet (flags 0, seq/ack/window 0, T-43) to `out`.
pub fn encode(
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<Transmit, DatagramError> {
    check(dst, payload, max)?;
    let header = Header {
        flags: Flags::NONE,
        protocol: Protocol::DATAGRAM,
        src: src.addr,
        dst: dst.addr,
        src_port: src.port,
        dst_port: dst.port,
        ..Header::default()
    };
    let max_wire = crate::wire::MAX_PAYLOAD;
    header
        .encode_packet(payload, out)
        .map_err(|_| DatagramError::TooLarge {
            len: payload.len(),
            max: max_wire,
        })?;
    Ok(Transmit {
        dst: dst.addr,
        size: HEADER_LEN + payload.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Addr, Packet};

    fn sock(node: u32, port: u16) -> SocketAddr {
        SocketAddr::new(Addr::new(0, node), port)
    }

    #[test]
    fn encodes_the_reference_datagram_form() {
        let mut out = Vec::new();
        let t = encode(
            sock(1, 5000),
            sock(2, 6000),
            b"hi",
            MAX_PAYLOAD_ENCRYPTED,
            &mut out,
        )
        .unwrap();
        assert_eq!(t.size, out.len());
        let p = Packet::decode(&out).unwrap();
        assert_eq!(p.header.protocol, Protocol::DATAGRAM);
        assert_eq!(p.header.flags, Flags::NONE);
        assert_eq!((p.header.seq, p.header.ack, p.header.window), (0, 0, 0));
        assert_eq!(out[0], 0x10);
        assert_eq!(p.payload, b"hi");
    }

    #[test]
    fn limits_and_errors() {
        let mut out = Vec::new();
        let big = vec![0u8; MAX_PAYLOAD_ENCRYPTED + 1];
        assert_eq!(
            encode(
                sock(1, 1),
                sock(2, 2),
                &big,
                MAX_PAYLOAD_ENCRYPTED,
                &mut out
            ),
            Err(DatagramError::TooLarge {
                len: MAX_PAYLOAD_ENCRYPTED + 1,
                max: MAX_PAYLOAD_ENCRYPTED
            })
        );
        assert_eq!(
            encode(sock(1, 1), sock(2, 2), &[], 100, &mut out),
            Err(DatagramError::Empty)
        );
        let bcast = SocketAddr::new(Addr::new(1, Addr::BROADCAST_NODE), 9);
        assert_eq!(
            encode(sock(1, 1), bcast, b"x", 100, &mut out),
            Err(DatagramError::Broadcast)
        );
        assert!(out.is_empty());
        // The largest plaintext payload still fits the header's length field.
        assert!(encode(
            sock(1, 1),
            sock(2, 2),
            &vec![1u8; MAX_PAYLOAD_PLAINTEXT],
            MAX_PAYLOAD_PLAINTEXT,
            &mut out
        )
        .is_ok());
    }

    #[test]
    fn queue_is_bounded() {
        let mut q = DatagramQueue::new(2, 10);
        let d = |n: usize| Datagram {
            src: sock(1, 1),
            dst_port: 2,
            data: vec![0; n],
        };
        assert!(q.push(d(4)));
        assert!(!q.push(d(7)));
        assert!(q.push(d(6)));
        assert!(!q.push(d(1)));
        assert_eq!((q.len(), q.dropped()), (2, 2));
        assert_eq!(q.pop().unwrap().data.len(), 4);
        assert!(q.push(d(1)));
    }
}
