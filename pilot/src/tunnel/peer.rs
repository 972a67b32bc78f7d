//! What the tunnel holds per peer node.

use super::path::PeerPath;
use super::pending::PendingQueue;
use super::rtt::RttProbe;
use crate::crypto::PeerCrypto;
use std::time::{Duration, Instant};

/// One peer: its keys, how we reach it, and what waits for a key.
#[derive(Debug)]
pub struct Peer {
    /// Key state and replay windows.
    pub crypto: PeerCrypto,
    /// Route and NAT-traversal state.
    pub path: PeerPath,
    /// Encoded packets waiting for a key.
    pub pending: PendingQueue,
    /// When we last sent a key exchange outside probe rounds (rate limit, Q21).
    last_key_exchange: Option<Instant>,
    /// Whether the peer proved it holds the agreed key (we opened a `PILS` from it since the
    /// key was agreed). Until then its key exchanges are answered: our reply may have been lost.
    pub key_proven: bool,
    /// Whether our LAN candidates went to the peer under the current key.
    pub lan_announced: bool,
    /// Whether the peer went silent and the registry was asked whether it is still registered.
    pub checking_registration: bool,
    /// Round trips of our key exchanges to the peer.
    pub rtt: RttProbe,
}

impl Peer {
    /// A peer with no key yet.
    pub fn new(node: u32, path: PeerPath) -> Self {
        Peer {
            crypto: PeerCrypto::new(node),
            path,
            pending: PendingQueue::default(),
            last_key_exchange: None,
            key_proven: false,
            lan_announced: false,
            checking_registration: false,
            rtt: RttProbe::default(),
        }
    }

    /// Whether a rate-limited key exchange may go out now; records it if so.
    pub fn key_exchange_allowed(&mut self, now: Instant, interval: Duration) -> bool {
        if self
            .last_key_exchange
            .is_some_and(|t| now.saturating_duration_since(t) < interval)
        {
            return false;
        }
        self.last_key_exchange = Some(now);
        true
    }

    /// Records a key exchange sent regardless of the limit (a required reply).
    pub fn key_exchange_sent(&mut self, now: Instant) {
        self.last_key_exchange = Some(now);
    }
}
