//! Packets waiting for a key with their peer: bounded per peer, expiring, oldest dropped first.
//!
//! The reference queues 64 packets per peer and never frees the queue of a peer that never
//! answers (Q21). Here entries also expire, and the daemon-wide count of peers with queued
//! packets is bounded by the caller ([`super::Limits::pending_peers`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Encoded Pilot packets waiting for a key, oldest first.
#[derive(Debug, Default)]
pub struct PendingQueue {
    packets: VecDeque<(Instant, Vec<u8>)>,
}

impl PendingQueue {
    /// Number of queued packets.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Queues `packet`, keeping at most `limit` packets. Returns the dropped oldest packet, if
    /// any, so its buffer can be reused.
    pub fn push(&mut self, now: Instant, packet: Vec<u8>, limit: usize) -> Option<Vec<u8>> {
        if limit == 0 {
            return Some(packet);
        }
        let dropped = if self.packets.len() >= limit {
            self.packets.pop_front().map(|(_, p)| p)
        } else {
            None
        };
        self.packets.push_back((now, packet));
        dropped
    }

    /// Takes the oldest packet.
    pub fn pop(&mut self) -> Option<Vec<u8>> {
        self.packets.pop_front().map(|(_, p)| p)
    }

    /// Removes packets queued more than `ttl` before `now`, handing each to `dropped`.
    pub fn expire(&mut self, now: Instant, ttl: Duration, mut dropped: impl FnMut(Vec<u8>)) {
        while let Some((at, _)) = self.packets.front() {
            if now.saturating_duration_since(*at) < ttl {
                break;
            }
            if let Some((_, p)) = self.packets.pop_front() {
                dropped(p);
            }
        }
    }

    /// When the oldest packet expires.
    pub fn next_expiry(&self, ttl: Duration) -> Option<Instant> {
        self.packets.front().map(|(at, _)| *at + ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_oldest_dropped_first() {
        let now = Instant::now();
        let mut q = PendingQueue::default();
        for i in 0..5u8 {
            let dropped = q.push(now, vec![i], 3);
            assert_eq!(dropped, if i < 3 { None } else { Some(vec![i - 3]) });
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(), Some(vec![2]));
    }

    #[test]
    fn entries_expire() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(30);
        let mut q = PendingQueue::default();
        q.push(t0, vec![1], 8);
        q.push(t0 + Duration::from_secs(10), vec![2], 8);
        assert_eq!(q.next_expiry(ttl), Some(t0 + ttl));
        let mut gone = Vec::new();
        q.expire(t0 + ttl, ttl, |p| gone.push(p));
        assert_eq!(gone, vec![vec![1]]);
        assert_eq!(q.len(), 1);
    }
}
