//! Identities, key agreement, sealing and opening of tunnel frames, replay windows
//! (`spec/wire.md` §4.5–§4.12 and §5). See `docs/CRYPTO.md` for the whole picture.
//!
//! - [`identity`]: the node's Ed25519 identity and its JSON identity file.
//! - [`keytext`]: keys and signatures as standard padded base64.
//! - [`agreement`]: X25519 key agreement and the tunnel key schedule.
//! - [`aead`]: AES-256-GCM sealing and opening of `PILS` payloads, in caller buffers.
//! - [`replay`]: the receive-side replay windows, moved only by authenticated frames.
//! - [`session`]: the sans-IO per-peer state: key exchange acceptance, seal, open.
//!
//! All randomness comes from the [`Rng`](crate::net::Rng) passed in; nothing here reads a
//! clock or the operating system's entropy.

pub mod aead;
pub mod agreement;
pub mod identity;
pub mod keytext;
pub mod replay;
pub mod session;

pub use aead::{AeadError, TunnelKey};
pub use agreement::{AgreementKeyPair, LowOrderKey};
pub use identity::{verify, BadSignature, Identity, IdentityError};
pub use keytext::{from_base64, to_base64, KeyTextError};
pub use replay::{PrefixReplay, ReplayError, ReplayWindow};
pub use session::{
    KeyChange, KeyExchangeError, LocalKeys, OpenError, PeerCrypto, RegistryKey, SealError,
    UnauthenticatedPeers,
};

#[cfg(test)]
mod tests;
