//! AES-256-GCM as `PILS` uses it (`spec/wire.md` §4.6): 12-byte nonce (4-byte prefix ‖
//! big-endian 64-bit counter), 16-byte tag, no additional authenticated data.
//!
//! Both operations work on caller-owned buffers and allocate nothing: the data path seals and
//! opens every packet through here. The AES key schedule and GHASH key are computed once per
//! [`TunnelKey`], when the key is agreed, not per frame.
//!
//! The backend is `ring` (BoringSSL's AES-NI/VAES + CLMUL assembly, picked at run time): about
//! three times the throughput of RustCrypto's `aes-gcm` on the machines we measured, see
//! `docs/CRYPTO.md` and `cargo bench -p pilot --bench crypto`.

use crate::wire::tunnel::{Nonce, TAG_LEN};
use ring::aead::{Aad, LessSafeKey, Tag, UnboundKey, AES_256_GCM};
use std::fmt;

/// Why a sealed packet could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AeadError {
    /// The ciphertext is shorter than a tag.
    #[error("ciphertext of {0} bytes is shorter than the {TAG_LEN}-byte tag")]
    TooShort(usize),
    /// The output buffer cannot hold the plaintext.
    #[error("output buffer of {got} bytes cannot hold {need} bytes of plaintext")]
    BufferTooSmall {
        /// Plaintext length.
        need: usize,
        /// Buffer length.
        got: usize,
    },
    /// The plaintext exceeds GCM's per-message limit.
    #[error("plaintext of {0} bytes exceeds the AES-GCM message limit")]
    TooLong(usize),
    /// The tag does not match: wrong key, or the frame was forged or corrupted.
    #[error("authentication failed: wrong key or forged frame")]
    Authentication,
}

/// An agreed tunnel key, ready to seal and open `PILS` payloads.
pub struct TunnelKey {
    key: LessSafeKey,
}

impl fmt::Debug for TunnelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TunnelKey(..)")
    }
}

/// ring's nonce type for a `PILS` nonce. ring calls the key "less safe" because the caller
/// supplies nonces; ours never repeat under one key: a random prefix per derived state and a
/// send counter that only increases and never wraps (`session`).
fn ring_nonce(nonce: &Nonce) -> ring::aead::Nonce {
    ring::aead::Nonce::assume_unique_for_key(nonce.to_bytes())
}

impl TunnelKey {
    /// The key with these 32 AES-256 key bytes.
    pub fn from_bytes(key: &[u8; 32]) -> Self {
        // ring refuses only a key of the wrong length, which the type rules out.
        let unbound = UnboundKey::new(&AES_256_GCM, key).unwrap_or_else(|_| {
            unreachable!("AES-256-GCM takes a 32-byte key");
        });
        TunnelKey {
            key: LessSafeKey::new(unbound),
        }
    }

    /// Encrypts `buf` in place under `nonce` and returns the tag to append.
    ///
    /// Fails only beyond GCM's message limit (about 64 GiB), far above any datagram.
    pub fn seal_in_place(&self, nonce: &Nonce, buf: &mut [u8]) -> Result<[u8; TAG_LEN], AeadError> {
        let len = buf.len();
        let tag = self
            .key
            .seal_in_place_separate_tag(ring_nonce(nonce), Aad::empty(), buf)
            .map_err(|_| AeadError::TooLong(len))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts `sealed` (ciphertext ‖ tag) into the front of `out` and returns the plaintext.
    ///
    /// On error the front of `out` may hold unauthenticated bytes; never use them.
    pub fn open_into<'o>(
        &self,
        nonce: &Nonce,
        sealed: &[u8],
        out: &'o mut [u8],
    ) -> Result<&'o mut [u8], AeadError> {
        let ciphertext_len = sealed
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(AeadError::TooShort(sealed.len()))?;
        let (ciphertext, tag) = sealed.split_at(ciphertext_len);
        let got = out.len();
        let plain = out
            .get_mut(..ciphertext_len)
            .ok_or(AeadError::BufferTooSmall {
                need: ciphertext_len,
                got,
            })?;
        // ring decrypts in place; one copy of a datagram costs a few percent of the cipher.
        plain.copy_from_slice(ciphertext);
        let tag = Tag::try_from(tag).map_err(|_| AeadError::Authentication)?;
        self.key
            .open_in_place_separate_tag(ring_nonce(nonce), Aad::empty(), tag, plain, 0..)
            .map_err(|_| AeadError::Authentication)
    }

    /// Decrypts `buf` (ciphertext ‖ tag) in place and returns the plaintext part of it.
    pub fn open_in_place<'b>(
        &self,
        nonce: &Nonce,
        buf: &'b mut [u8],
    ) -> Result<&'b mut [u8], AeadError> {
        if buf.len() < TAG_LEN {
            return Err(AeadError::TooShort(buf.len()));
        }
        self.key
            .open_in_place(ring_nonce(nonce), Aad::empty(), buf)
            .map_err(|_| AeadError::Authentication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonce(counter: u64) -> Nonce {
        Nonce {
            prefix: [1, 2, 3, 4],
            counter,
        }
    }

    #[test]
    fn seal_then_open_both_ways() {
        let key = TunnelKey::from_bytes(&[9u8; 32]);
        let message = b"a pilot packet, more or less".to_vec();
        let mut sealed = message.clone();
        let tag = key.seal_in_place(&nonce(1), &mut sealed).unwrap();
        assert_ne!(sealed, message);
        sealed.extend_from_slice(&tag);

        let mut out = [0u8; 64];
        let plain = key.open_into(&nonce(1), &sealed, &mut out).unwrap();
        assert_eq!(plain, &message[..]);

        let mut in_place = sealed.clone();
        assert_eq!(
            key.open_in_place(&nonce(1), &mut in_place).unwrap(),
            &message[..]
        );
    }

    #[test]
    fn wrong_nonce_key_or_bytes_fail() {
        let key = TunnelKey::from_bytes(&[9u8; 32]);
        let mut sealed = b"payload".to_vec();
        let tag = key.seal_in_place(&nonce(5), &mut sealed).unwrap();
        sealed.extend_from_slice(&tag);
        let mut out = [0u8; 64];
        assert_eq!(
            key.open_into(&nonce(6), &sealed, &mut out),
            Err(AeadError::Authentication)
        );
        let other = TunnelKey::from_bytes(&[8u8; 32]);
        assert_eq!(
            other.open_into(&nonce(5), &sealed, &mut out),
            Err(AeadError::Authentication)
        );
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x80;
            assert_eq!(
                key.open_in_place(&nonce(5), &mut bad),
                Err(AeadError::Authentication)
            );
        }
    }

    #[test]
    fn short_input_and_small_buffer_are_errors() {
        let key = TunnelKey::from_bytes(&[9u8; 32]);
        let mut out = [0u8; 4];
        assert_eq!(
            key.open_into(&nonce(1), &[0u8; 15], &mut out),
            Err(AeadError::TooShort(15))
        );
        assert_eq!(
            key.open_into(&nonce(1), &[0u8; 21], &mut out),
            Err(AeadError::BufferTooSmall { need: 5, got: 4 })
        );
        assert_eq!(
            key.open_in_place(&nonce(1), &mut [0u8; 3]),
            Err(AeadError::TooShort(3))
        );
        // An empty plaintext is legal: the frame is just a tag.
        let tag = key.seal_in_place(&nonce(2), &mut []).unwrap();
        assert_eq!(
            key.open_into(&nonce(2), &tag, &mut out).unwrap(),
            &[] as &[u8]
        );
    }
}
