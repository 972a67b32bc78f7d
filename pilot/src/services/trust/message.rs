//! The handshake message (`spec/services.md` §6.3): one JSON object per stream.
//!
//! The signature covers `handshake:<sender>:<receiver>`, which is all the reference signs. On its
//! own that string is a static token per pair of nodes, so verification here adds what makes a
//! message trustworthy: the sender must be the node at the other end of the authenticated
//! tunnel, its key must be the one the registry holds for it (never the key inside the message),
//! the timestamp must be fresh, and the exact message must not have been seen before.

use crate::crypto::{from_base64, to_base64, verify, Identity};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};

/// Largest handshake message accepted (the reference fits one in a 4096-byte segment).
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;
/// Largest justification or reason kept.
pub const MAX_TEXT_LEN: usize = 4096;
/// How old a message may be.
pub const MAX_AGE_SECS: i64 = 5 * 60;
/// How far in the future a message may be dated.
pub const MAX_SKEW_SECS: i64 = 30;

/// The kinds of handshake message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// Please trust me.
    Request,
    /// I trust you.
    Accept,
    /// I do not trust you.
    Reject,
    /// I no longer trust you.
    Revoke,
}

impl MessageKind {
    /// The `type` string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Request => "handshake_request",
            MessageKind::Accept => "handshake_accept",
            MessageKind::Reject => "handshake_reject",
            MessageKind::Revoke => "handshake_revoke",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "handshake_request" => MessageKind::Request,
            "handshake_accept" => MessageKind::Accept,
            "handshake_reject" => MessageKind::Reject,
            "handshake_revoke" => MessageKind::Revoke,
            _ => return None,
        })
    }
}

/// The message as it is on the wire; missing fields read as empty, unknown ones are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HandshakeMessage {
    /// `handshake_request`, `handshake_accept`, `handshake_reject` or `handshake_revoke`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The sender's node ID.
    pub node_id: u32,
    /// The sender's Ed25519 public key, base64.
    pub public_key: String,
    /// Why (requests).
    pub justification: String,
    /// Ed25519 signature over `handshake:<sender>:<receiver>`, base64.
    pub signature: String,
    /// Why (rejections), or `trust revoked`.
    pub reason: String,
    /// Unix seconds when sent.
    pub timestamp: i64,
}

/// Why a handshake message was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not a JSON object of the expected shape.
    #[error("malformed handshake message: {0}")]
    Malformed(String),
    /// Larger than [`MAX_MESSAGE_LEN`].
    #[error("handshake message of {0} bytes is too large")]
    TooLarge(usize),
    /// An unknown `type`.
    #[error("unknown handshake message type {0:?}")]
    UnknownKind(String),
    /// The message names another sender than the tunnel peer it came from.
    #[error("message claims node {claimed} but came from node {actual}")]
    WrongSender {
        /// The node the message names.
        claimed: u32,
        /// The node at the other end of the stream.
        actual: u32,
    },
    /// The embedded key is not the registry's key for the sender.
    #[error("node {0} sent a public key the registry does not hold for it")]
    KeyMismatch(u32),
    /// The signature does not verify with the registry's key.
    #[error("bad signature on handshake message from node {0}")]
    BadSignature(u32),
    /// Too old or too far in the future.
    #[error("stale handshake message from node {node} (timestamp {timestamp}, now {now})")]
    Stale {
        /// The sender.
        node: u32,
        /// The message's timestamp.
        timestamp: i64,
        /// Our time.
        now: i64,
    },
    /// Seen before.
    #[error("replayed handshake message from node {0}")]
    Replayed(u32),
}

/// The string both sides sign: `handshake:<sender>:<receiver>`.
pub fn signed_text(sender: u32, receiver: u32) -> String {
    format!("handshake:{sender}:{receiver}")
}

fn clip(mut text: String) -> String {
    if text.len() > MAX_TEXT_LEN {
        let mut end = MAX_TEXT_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl HandshakeMessage {
    /// A signed message of `kind` from `identity` (node `sender`) to node `receiver`.
    pub fn new(
        kind: MessageKind,
        identity: &Identity,
        sender: u32,
        receiver: u32,
        text: &str,
        now_unix: i64,
    ) -> Self {
        let (justification, reason) = match kind {
            MessageKind::Request => (text.to_string(), String::new()),
            MessageKind::Reject | MessageKind::Revoke => (String::new(), text.to_string()),
            MessageKind::Accept => (String::new(), String::new()),
        };
        HandshakeMessage {
            kind: kind.as_str().to_string(),
            node_id: sender,
            public_key: to_base64(&identity.public_key()),
            justification,
            signature: to_base64(&identity.sign(signed_text(sender, receiver).as_bytes())),
            reason,
            timestamp: now_unix,
        }
    }

    /// The JSON bytes sent on the stream.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of strings and integers always serializes")
    }

    /// Parses a message; never panics, whatever the bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, HandshakeError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(HandshakeError::TooLarge(bytes.len()));
        }
        // serde would also read a struct from a JSON array; the protocol only has objects.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(HandshakeError::Malformed("not a JSON object".into()));
        }
        let mut message: HandshakeMessage =
            serde_json::from_slice(bytes).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
        message.justification = clip(std::mem::take(&mut message.justification));
        message.reason = clip(std::mem::take(&mut message.reason));
        Ok(message)
    }

    /// The message kind.
    pub fn kind(&self) -> Result<MessageKind, HandshakeError> {
        MessageKind::parse(&self.kind).ok_or_else(|| HandshakeError::UnknownKind(self.kind.clone()))
    }

    /// Checks that this message, which arrived on a stream from node `source` to us (node
    /// `own_node`), is authentic and fresh. `registry_key` is the key the registry holds for
    /// `source`.
    pub fn verify(
        &self,
        source: u32,
        own_node: u32,
        registry_key: &[u8; 32],
        now_unix: i64,
    ) -> Result<MessageKind, HandshakeError> {
        let kind = self.kind()?;
        if self.node_id != source {
            return Err(HandshakeError::WrongSender {
                claimed: self.node_id,
                actual: source,
            });
        }
        // An empty key field is allowed (the registry's key is what counts), a different key
        // is not.
        if !self.public_key.is_empty() {
            match from_base64::<32>(&self.public_key, "public_key") {
                Ok(key) if &key == registry_key => {}
                _ => return Err(HandshakeError::KeyMismatch(source)),
            }
        }
        let signature = from_base64::<64>(&self.signature, "signature")
            .map_err(|_| HandshakeError::BadSignature(source))?;
        verify(
            registry_key,
            signed_text(source, own_node).as_bytes(),
            &signature,
        )
        .map_err(|_| HandshakeError::BadSignature(source))?;
        let age = now_unix.saturating_sub(self.timestamp);
        if age > MAX_AGE_SECS || -age > MAX_SKEW_SECS {
            return Err(HandshakeError::Stale {
                node: source,
                timestamp: self.timestamp,
                now: now_unix,
            });
        }
        Ok(kind)
    }

    /// A digest identifying this exact message, for the replay cache.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.to_bytes()).into()
    }
}

/// Digests of recently accepted messages, each kept until it is too old to pass the freshness
/// check anyway; bounded so a flood cannot grow it without limit.
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: BTreeMap<[u8; 32], i64>,
    order: VecDeque<([u8; 32], i64)>,
}

/// Most digests the cache holds; the oldest are forgotten first.
pub const REPLAY_CACHE_CAPACITY: usize = 16 * 1024;

impl ReplayCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `digest` seen at `now_unix`; false if it was already there (a replay).
    pub fn insert(&mut self, digest: [u8; 32], now_unix: i64) -> bool {
        self.expire(now_unix);
        if self.seen.contains_key(&digest) {
            return false;
        }
        if self.order.len() == REPLAY_CACHE_CAPACITY {
            if let Some((old, _)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(digest, now_unix);
        self.order.push_back((digest, now_unix));
        true
    }

    /// Number of digests held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn expire(&mut self, now_unix: i64) {
        // A message older than MAX_AGE fails freshness, so its digest is no longer needed.
        let horizon = now_unix - MAX_AGE_SECS - MAX_SKEW_SECS;
        while let Some(&(digest, at)) = self.order.front() {
            if at >= horizon {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn identity(seed: u8) -> Identity {
        Identity::from_seed(&[seed; 32])
    }

    #[test]
    fn signed_message_verifies_against_the_registry_key() {
        let alice = identity(1);
        let msg = HandshakeMessage::new(MessageKind::Request, &alice, 7, 9, "hello", NOW);
        let parsed = HandshakeMessage::parse(&msg.to_bytes()).unwrap();
        assert_eq!(parsed, msg);
        assert_eq!(
            parsed.verify(7, 9, &alice.public_key(), NOW + 10),
            Ok(MessageKind::Request)
        );
        assert_eq!(parsed.justification, "hello");
    }

    #[test]
    fn a_key_inside_the_message_is_not_trusted() {
        // The reference verifies with the key in the message, so anyone can sign as anyone.
        let mallory = identity(2);
        let alice = identity(1);
        let forged = HandshakeMessage::new(MessageKind::Accept, &mallory, 7, 9, "", NOW);
        assert_eq!(
            forged.verify(7, 9, &alice.public_key(), NOW),
            Err(HandshakeError::KeyMismatch(7))
        );
        let mut no_key = forged.clone();
        no_key.public_key.clear();
        assert_eq!(
            no_key.verify(7, 9, &alice.public_key(), NOW),
            Err(HandshakeError::BadSignature(7)),
            "an empty key field does not skip verification"
        );
    }

    #[test]
    fn the_sender_must_be_the_tunnel_peer() {
        let alice = identity(1);
        let msg = HandshakeMessage::new(MessageKind::Revoke, &alice, 7, 9, "trust revoked", NOW);
        assert_eq!(
            msg.verify(8, 9, &alice.public_key(), NOW),
            Err(HandshakeError::WrongSender {
                claimed: 7,
                actual: 8
            })
        );
        assert_eq!(
            msg.verify(7, 10, &alice.public_key(), NOW),
            Err(HandshakeError::BadSignature(7)),
            "signed for another receiver"
        );
    }

    #[test]
    fn freshness_window() {
        let alice = identity(1);
        let key = alice.public_key();
        let old = HandshakeMessage::new(MessageKind::Request, &alice, 7, 9, "", NOW - 301);
        assert!(matches!(
            old.verify(7, 9, &key, NOW),
            Err(HandshakeError::Stale { .. })
        ));
        let future = HandshakeMessage::new(MessageKind::Request, &alice, 7, 9, "", NOW + 31);
        assert!(matches!(
            future.verify(7, 9, &key, NOW),
            Err(HandshakeError::Stale { .. })
        ));
        let edge = HandshakeMessage::new(MessageKind::Request, &alice, 7, 9, "", NOW - 300);
        assert!(edge.verify(7, 9, &key, NOW).is_ok());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"[]",
            b"{\"node_id\":-1}",
            b"{\"type\":5}",
            b"\xff\xfe",
        ] {
            assert!(HandshakeMessage::parse(bad).is_err(), "{bad:?}");
        }
        let unknown = HandshakeMessage::parse(br#"{"type":"handshake_hug"}"#).unwrap();
        assert!(matches!(
            unknown.kind(),
            Err(HandshakeError::UnknownKind(_))
        ));
        // A key of the wrong length (a remote crash in the reference) is just a mismatch.
        let short_key = HandshakeMessage {
            kind: "handshake_accept".into(),
            node_id: 7,
            public_key: "AAAA".into(),
            ..Default::default()
        };
        assert_eq!(
            short_key.verify(7, 9, &identity(1).public_key(), NOW),
            Err(HandshakeError::KeyMismatch(7))
        );
        let huge = vec![b' '; MAX_MESSAGE_LEN + 1];
        assert!(matches!(
            HandshakeMessage::parse(&huge),
            Err(HandshakeError::TooLarge(_))
        ));
    }

    #[test]
    fn long_texts_are_clipped() {
        let mut msg = HandshakeMessage::new(MessageKind::Request, &identity(1), 7, 9, "", NOW);
        msg.justification = "é".repeat(MAX_TEXT_LEN);
        let parsed = HandshakeMessage::parse(&msg.to_bytes()).unwrap();
        assert!(parsed.justification.len() <= MAX_TEXT_LEN);
    }

    #[test]
    fn replay_cache_refuses_repeats_and_forgets_old_digests() {
        let mut cache = ReplayCache::new();
        assert!(cache.insert([1; 32], NOW));
        assert!(!cache.insert([1; 32], NOW + 1));
        assert!(cache.insert([2; 32], NOW + 1));
        assert!(cache.insert([1; 32], NOW + MAX_AGE_SECS + MAX_SKEW_SECS + 1));
        assert_eq!(cache.len(), 2);
    }
}
