//! Datagrams the sans-IO beacon wants sent, packed into one reusable buffer so the data path does
//! not allocate per packet once the buffers have grown.

use std::net::SocketAddr;
use std::ops::Range;

/// A batch of datagrams to send, in order.
#[derive(Debug, Default)]
pub struct Outbox {
    bytes: Vec<u8>,
    items: Vec<(SocketAddr, Range<usize>)>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one datagram to `to`, written by `write`.
    pub(crate) fn push_with(&mut self, to: SocketAddr, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        write(&mut self.bytes);
        self.items.push((to, start..self.bytes.len()));
    }

    /// The datagrams, in the order they were produced.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (SocketAddr, &[u8])> + '_ {
        self.items
            .iter()
            .map(|(to, range)| (*to, &self.bytes[range.clone()]))
    }

    /// Number of datagrams.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Forgets every datagram and keeps the buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_boundaries() {
        let a: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:2".parse().unwrap();
        let mut out = Outbox::new();
        out.push_with(a, |buf| buf.extend_from_slice(b"one"));
        out.push_with(b, |_| {});
        out.push_with(a, |buf| buf.extend_from_slice(b"three"));
        let got: Vec<_> = out.iter().collect();
        assert_eq!(got, [(a, &b"one"[..]), (b, &b""[..]), (a, &b"three"[..])]);
        out.clear();
        assert!(out.is_empty());
    }
}
