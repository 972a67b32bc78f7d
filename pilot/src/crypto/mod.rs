//! Identities, key agreement, sealing and opening of tunnel frames, replay windows
//! (`spec/wire.md` §4.5–§4.10 and §5).
//!
//! - [`identity`]: the node's Ed25519 identity and its JSON identity file.
//! - [`keytext`]: keys and signatures as standard padded base64.

pub mod identity;
pub mod keytext;

pub use identity::{verify, BadSignature, Identity, IdentityError};
pub use keytext::{from_base64, to_base64, KeyTextError};
