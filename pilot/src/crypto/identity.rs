//! A node's Ed25519 identity (`spec/wire.md` §5) and its JSON identity file.
//!
//! The file is what the Go daemon writes, so either implementation can load the other's:
//!
//! ```json
//! {
//!   "private_key": "<base64 of seed ‖ public, 64 bytes>",
//!   "public_key": "<base64 of public, 32 bytes>"
//! }
//! ```
//!
//! Two-space indentation, no trailing newline, unknown members ignored on load. Unlike the
//! reference (§11, Q19) loading re-derives the public key from the seed and refuses a file whose
//! keys disagree, and saving replaces the file atomically (temporary file with mode 0600, fsync,
//! rename, directory created with mode 0700), so a crash never leaves a torn identity behind.

use super::keytext::{from_base64, to_base64, KeyTextError};
use crate::net::{DiskStorage, Rng, Storage, StorageError};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::Rng as _;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// A node's Ed25519 key pair.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the seed.
        f.debug_struct("Identity")
            .field("public_key", &to_base64(&self.public_key()))
            .finish_non_exhaustive()
    }
}

/// A signature did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Ed25519 signature does not verify")]
pub struct BadSignature;

/// Why an identity could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing the file failed.
    #[error("identity file: {0}")]
    Storage(#[from] StorageError),
    /// The path has no file name to store the identity under.
    #[error("identity path {0:?} does not name a file")]
    InvalidPath(String),
    /// The file is not the JSON object the format requires.
    #[error("identity file is not valid JSON with string members private_key and public_key: {0}")]
    Json(#[from] serde_json::Error),
    /// A key member is not base64 of the right length.
    #[error("identity file: {0}")]
    KeyText(#[from] KeyTextError),
    /// The keys in the file do not belong together; the file is corrupted or was edited.
    #[error("identity file is corrupted: {0} does not match the public key derived from the seed")]
    Mismatch(&'static str),
}

/// The JSON shape of the identity file; member order is the order Go writes.
#[derive(Serialize, Deserialize)]
struct IdentityFile {
    private_key: String,
    public_key: String,
}

impl Identity {
    /// A new identity from 32 bytes of `rng`.
    pub fn generate(rng: &mut Rng) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self::from_seed(&seed)
    }

    /// The identity whose RFC 8032 private key (seed) is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Identity {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The 32-byte public key, as registered and as carried in `PILA`.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.signing.verifying_key().to_bytes()
    }

    /// Signs `message` (plain Ed25519: no prehash, no context).
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(message).to_bytes()
    }

    /// The identity file's content: pretty JSON, two-space indent, no trailing newline.
    pub fn to_json(&self) -> String {
        let file = IdentityFile {
            private_key: to_base64(&self.signing.to_keypair_bytes()),
            public_key: to_base64(&self.public_key()),
        };
        // Serialising two strings into a String cannot fail.
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// Reads an identity file's content, checking that its keys belong together.
    pub fn from_json(text: &[u8]) -> Result<Self, IdentityError> {
        let file: IdentityFile = serde_json::from_slice(text)?;
        let private: [u8; 64] = from_base64(&file.private_key, "private_key")?;
        let public: [u8; 32] = from_base64(&file.public_key, "public_key")?;
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&private[..32]);
        let identity = Identity::from_seed(&seed);
        let derived = identity.public_key();
        // Go only compares `public_key` with the tail of `private_key` (Q19); compare both
        // with the key the seed actually yields.
        if private[32..] != derived {
            return Err(IdentityError::Mismatch("the public half of private_key"));
        }
        if public != derived {
            return Err(IdentityError::Mismatch("public_key"));
        }
        Ok(identity)
    }

    /// Loads the identity stored as `name`, or `None` if there is none.
    pub fn load(storage: &dyn Storage, name: &str) -> Result<Option<Self>, IdentityError> {
        match storage.read(name)? {
            Some(bytes) => Ok(Some(Self::from_json(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Stores the identity as `name`, atomically replacing any previous one.
    pub fn save(&self, storage: &dyn Storage, name: &str) -> Result<(), IdentityError> {
        Ok(storage.replace(name, self.to_json().as_bytes())?)
    }

    /// Loads the identity stored as `name`; if there is none, generates one from `rng` and
    /// stores it. A file that exists but cannot be read or is invalid is an error, never
    /// silently replaced: losing an identity loses the node's address.
    pub fn load_or_create_in(
        storage: &dyn Storage,
        name: &str,
        rng: &mut Rng,
    ) -> Result<Self, IdentityError> {
        if let Some(identity) = Self::load(storage, name)? {
            return Ok(identity);
        }
        let identity = Self::generate(rng);
        identity.save(storage, name)?;
        Ok(identity)
    }

    /// [`Identity::load_or_create_in`] for a file at `path`: its directory is created with
    /// mode 0700 if missing, the file is written with mode 0600.
    pub fn load_or_create(path: &Path, rng: &mut Rng) -> Result<Self, IdentityError> {
        let (storage, name) = file_storage(path)?;
        Self::load_or_create_in(&storage, &name, rng)
    }
}

/// The directory storage and file name for an identity at `path`.
fn file_storage(path: &Path) -> Result<(DiskStorage, String), IdentityError> {
    let invalid = || IdentityError::InvalidPath(path.display().to_string());
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(invalid)?
        .to_string();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    Ok((DiskStorage::open(dir)?, name))
}

/// Verifies an Ed25519 signature by `public` over `message`.
///
/// Strict: a non-canonical `S` is refused (as Go does), and so are small-order public keys and
/// `R` values, which no honest signer produces.
pub fn verify(
    public: &[u8; PUBLIC_KEY_LEN],
    message: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<(), BadSignature> {
    let key = VerifyingKey::from_bytes(public).map_err(|_| BadSignature)?;
    key.verify_strict(message, &Signature::from_bytes(signature))
        .map_err(|_| BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{seeded_rng, MemStorage};
    use hex_literal::hex;

    const RFC8032_SEED: [u8; 32] =
        hex!("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
    const RFC8032_PUBLIC: [u8; 32] =
        hex!("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    /// The identity file example of `spec/wire.md` §5.2, byte for byte.
    const EXAMPLE_FILE: &str = "{\n  \"private_key\": \"nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2DXWpgBgrEKt9VL/tPJZAc6DuFy89qmIyWvAhpo9wdRGg==\",\n  \"public_key\": \"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"\n}";

    #[test]
    fn rfc8032_test_1() {
        let id = Identity::from_seed(&RFC8032_SEED);
        assert_eq!(id.public_key(), RFC8032_PUBLIC);
        // RFC 8032 §7.1 TEST 1: the empty message.
        let sig = id.sign(b"");
        assert_eq!(
            sig,
            hex!(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            )
        );
        assert_eq!(verify(&RFC8032_PUBLIC, b"", &sig), Ok(()));
        assert_eq!(verify(&RFC8032_PUBLIC, b"x", &sig), Err(BadSignature));
    }

    #[test]
    fn non_canonical_s_is_refused() {
        let id = Identity::from_seed(&RFC8032_SEED);
        let mut sig = id.sign(b"msg");
        // S + L is the same scalar mod L: a lax verifier accepts it, Go and we do not.
        const L: [u8; 32] =
            hex!("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
        let mut carry = 0u16;
        for (s, l) in sig[32..].iter_mut().zip(L) {
            let sum = u16::from(*s) + u16::from(l) + carry;
            *s = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0, "S + L must still fit 256 bits for this test");
        assert_eq!(verify(&id.public_key(), b"msg", &sig), Err(BadSignature));
    }

    #[test]
    fn example_file_round_trips_byte_for_byte() {
        let id = Identity::from_json(EXAMPLE_FILE.as_bytes()).unwrap();
        assert_eq!(id.public_key(), RFC8032_PUBLIC);
        assert_eq!(id.to_json(), EXAMPLE_FILE);
    }

    #[test]
    fn unknown_members_are_ignored() {
        let text = EXAMPLE_FILE.replacen('{', "{\"node_id\": 7, \"comment\": \"x\",", 1);
        let id = Identity::from_json(text.as_bytes()).unwrap();
        assert_eq!(id.public_key(), RFC8032_PUBLIC);
    }

    /// Q19: Go accepts this file (the public key equals the tail of `private_key`), though the
    /// seed belongs to another key. We refuse it.
    #[test]
    fn public_key_not_derived_from_seed_is_refused() {
        let other = Identity::generate(&mut seeded_rng(1)).public_key();
        let mut private = [0u8; 64];
        private[..32].copy_from_slice(&RFC8032_SEED);
        private[32..].copy_from_slice(&other);
        let text = format!(
            "{{\"private_key\": \"{}\", \"public_key\": \"{}\"}}",
            to_base64(&private),
            to_base64(&other)
        );
        assert!(matches!(
            Identity::from_json(text.as_bytes()),
            Err(IdentityError::Mismatch(_))
        ));
        // And a file whose members disagree with each other.
        let text = EXAMPLE_FILE.replace("11qYAYKx", "21qYAYKx");
        assert!(matches!(
            Identity::from_json(text.as_bytes()),
            Err(IdentityError::Mismatch("public_key"))
        ));
    }

    #[test]
    fn bad_files_give_typed_errors() {
        type Check = fn(&IdentityError) -> bool;
        let cases: [(&str, Check); 5] = [
            ("not json", |e| matches!(e, IdentityError::Json(_))),
            ("{\"public_key\": \"AAAA\"}", |e| {
                matches!(e, IdentityError::Json(_))
            }),
            ("{\"private_key\": \"!!\", \"public_key\": \"AAAA\"}", |e| {
                matches!(e, IdentityError::KeyText(KeyTextError::Base64 { .. }))
            }),
            (
                "{\"private_key\": \"AAAA\", \"public_key\": \"AAAA\"}",
                |e| {
                    matches!(
                        e,
                        IdentityError::KeyText(KeyTextError::Length { expected: 64, .. })
                    )
                },
            ),
            ("{\"private_key\": 5, \"public_key\": \"AAAA\"}", |e| {
                matches!(e, IdentityError::Json(_))
            }),
        ];
        for (text, check) in cases {
            let err = Identity::from_json(text.as_bytes()).unwrap_err();
            assert!(check(&err), "{text:?} gave {err:?}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn load_or_create_generates_once_then_loads() {
        let storage = MemStorage::new();
        let first =
            Identity::load_or_create_in(&storage, "identity.key", &mut seeded_rng(3)).unwrap();
        let again =
            Identity::load_or_create_in(&storage, "identity.key", &mut seeded_rng(4)).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        // The seed came from the injected generator, so the same seed gives the same node.
        let replay =
            Identity::load_or_create_in(&MemStorage::new(), "id", &mut seeded_rng(3)).unwrap();
        assert_eq!(first.public_key(), replay.public_key());
    }

    #[test]
    fn an_invalid_file_is_never_overwritten() {
        let storage = MemStorage::new();
        storage.replace("identity.key", b"garbage").unwrap();
        assert!(Identity::load_or_create_in(&storage, "identity.key", &mut seeded_rng(1)).is_err());
        assert_eq!(storage.read("identity.key").unwrap().unwrap(), b"garbage");
    }

    #[test]
    fn file_on_disk_is_private_and_readable_back() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("nested/dir/identity.key");
        let id = Identity::load_or_create(&path, &mut seeded_rng(9)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, id.to_json());
        assert!(!text.ends_with('\n'));
        let loaded = Identity::load_or_create(&path, &mut seeded_rng(10)).unwrap();
        assert_eq!(loaded.public_key(), id.public_key());
        // No temporary file is left next to it.
        let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, ["identity.key"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }
    }

    #[test]
    fn path_without_file_name_is_refused() {
        assert!(matches!(
            Identity::load_or_create(Path::new("/"), &mut seeded_rng(1)),
            Err(IdentityError::InvalidPath(_))
        ));
    }

    #[test]
    fn debug_does_not_print_the_seed() {
        let id = Identity::from_seed(&RFC8032_SEED);
        let shown = format!("{id:?}");
        assert!(shown.contains("11qYAYKx"));
        assert!(!shown.contains("nWGxne"));
    }

    proptest::proptest! {
        #[test]
        fn loading_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = Identity::from_json(&bytes);
        }

        #[test]
        fn loading_arbitrary_members_never_panics(private in ".{0,100}", public in ".{0,60}") {
            let text = serde_json::json!({ "private_key": private, "public_key": public }).to_string();
            let _ = Identity::from_json(text.as_bytes());
        }
    }
}
