//! X25519 key agreement and the tunnel key schedule (`spec/wire.md` §4.8).
//!
//! ```text
//! shared = X25519(own_secret, peer_public)          all-zero result refused
//! key    = SHA-256("pilot-tunnel-v1:" ‖ shared)     the AES-256-GCM key, both directions
//! ```
//!
//! No HKDF, no salt, no transcript: this is what Go peers compute, so it is what we compute.

use super::aead::TunnelKey;
use crate::net::Rng;
use rand_core::Rng as _;
use sha2::{Digest, Sha256};
use std::fmt;
use x25519_dalek::{PublicKey, StaticSecret};

/// The 16 bytes prepended to the shared secret before hashing.
pub const KEY_LABEL: &[u8; 16] = b"pilot-tunnel-v1:";

/// The peer's X25519 key gives no usable shared secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("X25519 agreement gives the all-zero secret: the peer key is a low-order point")]
pub struct LowOrderKey;

/// This daemon's X25519 key pair: one per process, used with every peer, never persisted.
#[derive(Clone)]
pub struct AgreementKeyPair {
    secret: StaticSecret,
    public: [u8; 32],
}

impl fmt::Debug for AgreementKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgreementKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl AgreementKeyPair {
    /// A fresh key pair from 32 bytes of `rng`.
    pub fn generate(rng: &mut Rng) -> Self {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        Self::from_secret(secret)
    }

    /// The key pair with private scalar `secret` (clamped by X25519 as usual).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let secret = StaticSecret::from(secret);
        let public = PublicKey::from(&secret).to_bytes();
        AgreementKeyPair { secret, public }
    }

    /// The public key sent in `PILK` and `PILA`.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// The raw X25519 shared secret with `peer_public`, refusing the all-zero result.
    pub fn shared_secret(&self, peer_public: &[u8; 32]) -> Result<[u8; 32], LowOrderKey> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*peer_public));
        if shared.was_contributory() {
            Ok(shared.to_bytes())
        } else {
            Err(LowOrderKey)
        }
    }
}

/// The AES-256 key bytes for a shared secret: `SHA-256("pilot-tunnel-v1:" ‖ shared)`.
pub fn tunnel_key_bytes(shared: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(KEY_LABEL)
        .chain_update(shared)
        .finalize()
        .into()
}

impl TunnelKey {
    /// The tunnel key between `own` and the peer whose X25519 public key is `peer_public`.
    pub fn derive(own: &AgreementKeyPair, peer_public: &[u8; 32]) -> Result<Self, LowOrderKey> {
        let shared = own.shared_secret(peer_public)?;
        Ok(TunnelKey::from_bytes(&tunnel_key_bytes(&shared)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::net::seeded_rng;
    use hex_literal::hex;

    pub(crate) const ALICE_SECRET: [u8; 32] =
        hex!("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    pub(crate) const ALICE_PUBLIC: [u8; 32] =
        hex!("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    pub(crate) const BOB_SECRET: [u8; 32] =
        hex!("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    pub(crate) const BOB_PUBLIC: [u8; 32] =
        hex!("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    const SHARED: [u8; 32] =
        hex!("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    pub(crate) const TUNNEL_KEY: [u8; 32] =
        hex!("7fba3471bc8efe5a218c59651ad860926646b44c842bb2747ad11d976d60c50e");

    #[test]
    fn rfc7748_keys_and_shared_secret() {
        let alice = AgreementKeyPair::from_secret(ALICE_SECRET);
        let bob = AgreementKeyPair::from_secret(BOB_SECRET);
        assert_eq!(alice.public_key(), ALICE_PUBLIC);
        assert_eq!(bob.public_key(), BOB_PUBLIC);
        assert_eq!(alice.shared_secret(&BOB_PUBLIC), Ok(SHARED));
        assert_eq!(bob.shared_secret(&ALICE_PUBLIC), Ok(SHARED));
    }

    #[test]
    fn tunnel_key_vector() {
        assert_eq!(tunnel_key_bytes(&SHARED), TUNNEL_KEY);
        assert_eq!(&KEY_LABEL[..], hex!("70696c6f742d74756e6e656c2d76313a"));
    }

    #[test]
    fn low_order_points_are_refused() {
        let own = AgreementKeyPair::generate(&mut seeded_rng(5));
        // The identity and a point of order 8 (both give an all-zero shared secret).
        let low_order = [
            [0u8; 32],
            hex!("0100000000000000000000000000000000000000000000000000000000000000"),
            hex!("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        ];
        for point in low_order {
            assert_eq!(own.shared_secret(&point), Err(LowOrderKey));
            assert!(TunnelKey::derive(&own, &point).is_err());
        }
    }

    #[test]
    fn generated_pairs_agree() {
        let mut rng = seeded_rng(11);
        let a = AgreementKeyPair::generate(&mut rng);
        let b = AgreementKeyPair::generate(&mut rng);
        assert_ne!(a.public_key(), b.public_key());
        assert_eq!(
            a.shared_secret(&b.public_key()),
            b.shared_secret(&a.public_key())
        );
    }
}
