//! Move proofs: how a node whose NAT mapping changed gets its fresh entry moved at once.
//!
//! A fresh entry is not moved to another address (`nodes`), which keeps a live node's entry from
//! being hijacked but strands a node whose NAT restarted or rebound it to a new port: for up to
//! `takeover_after` its punches and relays are refused and its peers' relays go to the old port.
//! So when a Discover is refused from another port of the entry's own IP, the reply carries a
//! proof bound to (node, new endpoint, time); a Discover carrying it back shows the sender
//! receives at that endpoint, which a forged source address cannot, and the entry moves.

use crate::wire::beacon::MoveProof;
use ring::hmac;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long one proof epoch lasts; a proof is accepted in its epoch and the next.
const EPOCH: Duration = Duration::from_secs(10);

/// The beacon's secret for move proofs.
#[derive(Clone)]
pub struct MoveKey(hmac::Key);

impl MoveKey {
    /// A key from 32 secret bytes (the simulator derives them from the scenario seed).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MoveKey(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
    }

    /// A key from the operating system's entropy source.
    pub fn random() -> io::Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Self::from_bytes(bytes))
    }
}

impl fmt::Debug for MoveKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MoveKey(..)")
    }
}

/// Issues and checks proofs under one key, with epochs counted from the beacon's start.
#[derive(Debug)]
pub struct MoveProofs {
    key: MoveKey,
    origin: Instant,
}

impl MoveProofs {
    /// Proofs under `key`, epoch 0 starting at `origin`.
    pub fn new(key: MoveKey, origin: Instant) -> Self {
        MoveProofs { key, origin }
    }

    fn epoch(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs() / EPOCH.as_secs()
    }

    fn tag(&self, epoch: u64, node: u32, endpoint: SocketAddr) -> MoveProof {
        let ip = match endpoint.ip().to_canonical() {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            std::net::IpAddr::V6(v6) => v6,
        };
        let mut input = [0u8; 8 + 4 + 16 + 2];
        input[..8].copy_from_slice(&epoch.to_be_bytes());
        input[8..12].copy_from_slice(&node.to_be_bytes());
        input[12..28].copy_from_slice(&ip.octets());
        input[28..].copy_from_slice(&endpoint.port().to_be_bytes());
        let full = hmac::sign(&self.key.0, &input);
        let mut tag = [0u8; MoveProof::TAG_LEN];
        tag.copy_from_slice(&full.as_ref()[..MoveProof::TAG_LEN]);
        MoveProof(tag)
    }

    /// A proof that `node` is answered at `endpoint`, valid for one to two epochs.
    pub fn issue(&self, now: Instant, node: u32, endpoint: SocketAddr) -> MoveProof {
        self.tag(self.epoch(now), node, endpoint)
    }

    /// Whether `proof` was issued for `node` at `endpoint` in this epoch or the one before.
    pub fn verify(&self, now: Instant, node: u32, endpoint: SocketAddr, proof: &MoveProof) -> bool {
        let epoch = self.epoch(now);
        [Some(epoch), epoch.checked_sub(1)]
            .into_iter()
            .flatten()
            .any(|e| same_bytes(&self.tag(e, node, endpoint).0, &proof.0))
    }
}

/// Compares without an early exit, so the time taken says nothing about where bytes differ.
fn same_bytes(a: &[u8; MoveProof::TAG_LEN], b: &[u8; MoveProof::TAG_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proofs(t0: Instant) -> MoveProofs {
        MoveProofs::new(MoveKey::from_bytes([7; 32]), t0)
    }

    const AT: &str = "198.51.100.9:40000";

    #[test]
    fn a_proof_holds_for_its_node_and_endpoint_only() {
        let t0 = Instant::now();
        let p = proofs(t0);
        let at: SocketAddr = AT.parse().unwrap();
        let proof = p.issue(t0, 7, at);
        assert!(p.verify(t0, 7, at, &proof));
        assert!(!p.verify(t0, 8, at, &proof), "another node");
        assert!(!p.verify(t0, 7, "198.51.100.9:40001".parse().unwrap(), &proof));
        assert!(!p.verify(t0, 7, "198.51.100.8:40000".parse().unwrap(), &proof));
        let mut bent = proof;
        bent.0[15] ^= 1;
        assert!(!p.verify(t0, 7, at, &bent), "one bit changed");
        let other_key = MoveProofs::new(MoveKey::from_bytes([8; 32]), t0);
        assert!(!other_key.verify(t0, 7, at, &proof), "another beacon's key");
    }

    #[test]
    fn a_proof_lasts_its_epoch_and_the_next_then_expires() {
        let t0 = Instant::now();
        let p = proofs(t0);
        let at: SocketAddr = AT.parse().unwrap();
        let proof = p.issue(t0 + Duration::from_secs(9), 7, at);
        assert!(p.verify(t0 + Duration::from_secs(19), 7, at, &proof));
        assert!(!p.verify(t0 + Duration::from_secs(20), 7, at, &proof));
    }

    #[test]
    fn a_mapped_ipv6_source_gets_the_same_proof_as_its_ipv4_form() {
        let t0 = Instant::now();
        let p = proofs(t0);
        let mapped: SocketAddr = "[::ffff:198.51.100.9]:40000".parse().unwrap();
        let proof = p.issue(t0, 7, mapped);
        assert!(p.verify(t0, 7, AT.parse().unwrap(), &proof));
    }
}
