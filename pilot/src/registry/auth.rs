//! Request signatures (`spec/registry.md` §4.3): Ed25519 over the ASCII challenge, carried in
//! standard base64. Kept in one small module so it can later move onto `crate::crypto`.
//!
//! Verification is the registry's most expensive step, and the reference's challenges carry no
//! nonce, so a daemon sends the very same signature with every heartbeat. [`Verifier`] remembers
//! recently verified (key, challenge, signature) triples and skips the curve arithmetic when one
//! repeats. This accepts nothing the full check would refuse: the cache key is the signature
//! itself and the value a SHA-256 of key and challenge.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Why a signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No signature was given.
    #[error("signature required")]
    Missing,
    /// The signature is not base64 of 64 bytes.
    #[error("malformed signature")]
    Malformed,
    /// The signature does not verify with the node's key.
    #[error("invalid signature")]
    Invalid,
}

/// Decodes a standard-base64 Ed25519 public key of exactly 32 bytes.
pub fn decode_key(b64: &str) -> Option<[u8; 32]> {
    if b64.len() > 64 {
        return None;
    }
    STANDARD.decode(b64).ok()?.try_into().ok()
}

/// Encodes a public key as standard base64 with padding.
pub fn encode_key(key: &[u8; 32]) -> String {
    STANDARD.encode(key)
}

/// Most remembered verifications; the cache is cleared when full (cheap and bounded).
const CACHE_CAP: usize = 1 << 16;

/// Checks signatures, remembering recent successes.
#[derive(Default)]
pub struct Verifier {
    verified: HashMap<[u8; 64], [u8; 32]>,
}

impl Verifier {
    /// A verifier with an empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Verifies `sig_b64` over `challenge` with `key`.
    pub fn verify(
        &mut self,
        key: &[u8; 32],
        challenge: &str,
        sig_b64: &str,
    ) -> Result<(), AuthError> {
        if sig_b64.is_empty() {
            return Err(AuthError::Missing);
        }
        if sig_b64.len() > 128 {
            return Err(AuthError::Malformed);
        }
        let sig: [u8; 64] = STANDARD
            .decode(sig_b64)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(AuthError::Malformed)?;
        let binding: [u8; 32] = {
            let mut h = Sha256::new();
            h.update(key);
            h.update(challenge.as_bytes());
            h.finalize().into()
        };
        if self.verified.get(&sig) == Some(&binding) {
            return Ok(());
        }
        // A key that is not a curve point cannot verify anything (the reference stores any 32
        // bytes and fails at verification too).
        let vk = VerifyingKey::from_bytes(key).map_err(|_| AuthError::Invalid)?;
        vk.verify(challenge.as_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| AuthError::Invalid)?;
        if self.verified.len() >= CACHE_CAP {
            self.verified.clear();
        }
        self.verified.insert(sig, binding);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod test_keys {
    //! Deterministic signing keys for tests.
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    /// A signing key derived from `n`.
    pub fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    /// The base64 public key of [`key`]`(n)`.
    pub fn public(n: u8) -> String {
        encode_key(&key(n).verifying_key().to_bytes())
    }

    /// A base64 signature by [`key`]`(n)` over `msg`.
    pub fn sign(n: u8, msg: &str) -> String {
        STANDARD.encode(key(n).sign(msg.as_bytes()).to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::test_keys::*;
    use super::*;

    #[test]
    fn verifies_and_refuses() {
        let mut v = Verifier::new();
        let pk = decode_key(&public(1)).unwrap();
        assert_eq!(
            v.verify(&pk, "heartbeat:1", &sign(1, "heartbeat:1")),
            Ok(())
        );
        // Cached success must still bind the challenge and the key.
        assert_eq!(
            v.verify(&pk, "heartbeat:2", &sign(1, "heartbeat:1")),
            Err(AuthError::Invalid)
        );
        let other = decode_key(&public(2)).unwrap();
        assert_eq!(
            v.verify(&other, "heartbeat:1", &sign(1, "heartbeat:1")),
            Err(AuthError::Invalid)
        );
        assert_eq!(v.verify(&pk, "heartbeat:1", ""), Err(AuthError::Missing));
        assert_eq!(
            v.verify(&pk, "heartbeat:1", "!!"),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            v.verify(&[0xff; 32], "x", &sign(1, "x")),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn keys_decode_only_at_32_bytes() {
        assert!(decode_key(&public(1)).is_some());
        assert!(decode_key("AAAA").is_none());
        assert!(decode_key("not base64").is_none());
    }
}
