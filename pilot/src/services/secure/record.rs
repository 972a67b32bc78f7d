//! Secure-channel records (`spec/services.md` §7.6), sans-IO: `[u32 L][12-byte nonce]
//! [ciphertext ‖ 16-byte tag]` with `L = 12 + len(ciphertext ‖ tag)`, AES-256-GCM under
//! `SHA-256("pilot-secure-v1:" ‖ X25519 shared secret)`, no associated data.
//!
//! Nonces are the sender's role prefix (server `00 00 00 01`, client `00 00 00 02`) and a
//! counter that starts at 1 and goes up by one per record. Unlike the reference reader
//! (`spec/services.md` §14 Q25), the [`Opener`] insists on both: a record with our own prefix
//! (reflected back at us) or a counter out of sequence (replayed, reordered, dropped) is
//! refused. A reference sender produces exactly this sequence, so nothing it sends is lost.

use crate::crypto::aead::{AeadError, TunnelKey};
use crate::wire::tunnel::{Nonce, NONCE_LEN, TAG_LEN};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The label hashed in front of the shared secret.
pub const KEY_LABEL: &[u8; 16] = b"pilot-secure-v1:";
/// Largest `L` a reader accepts.
pub const MAX_RECORD: usize = 16 << 20;
/// Plaintext per record this side writes (a reader accepts up to `MAX_RECORD - 28`).
pub const MAX_PLAINTEXT: usize = 256 << 10;

/// Which end of the channel a side is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The side that accepted the connection.
    Server,
    /// The side that dialled.
    Client,
}

impl Role {
    /// The nonce prefix of records this role sends.
    pub fn prefix(self) -> [u8; 4] {
        match self {
            Role::Server => [0, 0, 0, 1],
            Role::Client => [0, 0, 0, 2],
        }
    }

    fn peer(self) -> Role {
        match self {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        }
    }
}

/// Why a record was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    /// `L` is below 12 or above [`MAX_RECORD`].
    #[error("record length {0} outside 12..={MAX_RECORD}")]
    BadLength(u32),
    /// The nonce prefix is not the peer's role.
    #[error("record nonce prefix {0:02x?} is not the peer's (reflected or forged)")]
    WrongPrefix([u8; 4]),
    /// The counter is not the next one.
    #[error("record counter {got}, expected {want} (replayed, reordered or dropped)")]
    OutOfSequence {
        /// What came.
        got: u64,
        /// What was due.
        want: u64,
    },
    /// Decryption failed.
    #[error(transparent)]
    Aead(#[from] AeadError),
    /// This side sent 2^64 - 1 records; the key is used up.
    #[error("send counter exhausted")]
    Exhausted,
}

/// The channel key from the X25519 shared secret.
pub fn channel_key(shared: &[u8; 32]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(KEY_LABEL);
    hash.update(shared);
    hash.finalize().into()
}

/// Seals outgoing records.
pub struct Sealer {
    key: TunnelKey,
    prefix: [u8; 4],
    counter: u64,
}

impl Sealer {
    /// A sealer for `role` under `key`.
    pub fn new(key: &[u8; 32], role: Role) -> Self {
        Sealer {
            key: TunnelKey::from_bytes(key),
            prefix: role.prefix(),
            counter: 0,
        }
    }

    /// Appends the record of `plaintext` to `out`.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
        self.counter = self.counter.checked_add(1).ok_or(RecordError::Exhausted)?;
        let nonce = Nonce {
            prefix: self.prefix,
            counter: self.counter,
        };
        let len = NONCE_LEN + plaintext.len() + TAG_LEN;
        out.reserve(4 + len);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend_from_slice(&nonce.to_bytes());
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self.key.seal_in_place(&nonce, &mut out[start..])?;
        out.extend_from_slice(&tag);
        Ok(())
    }
}

/// Opens incoming records.
pub struct Opener {
    key: TunnelKey,
    prefix: [u8; 4],
    next: u64,
}

impl Opener {
    /// An opener for records sent to `role` (so by its peer) under `key`.
    pub fn new(key: &[u8; 32], role: Role) -> Self {
        Opener {
            key: TunnelKey::from_bytes(key),
            prefix: role.peer().prefix(),
            next: 1,
        }
    }

    /// The total size of the record at the front of `buf` once its length is readable:
    /// `Ok(None)` while fewer than 4 bytes are there.
    pub fn record_len(buf: &[u8]) -> Result<Option<usize>, RecordError> {
        let Some(head) = buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if (len as usize) < NONCE_LEN || len as usize > MAX_RECORD {
            return Err(RecordError::BadLength(len));
        }
        Ok(Some(4 + len as usize))
    }

    /// Opens one whole record (as sized by [`Opener::record_len`]) in place; returns the
    /// plaintext.
    pub fn open<'b>(&mut self, record: &'b mut [u8]) -> Result<&'b mut [u8], RecordError> {
        if record.len() < 4 + NONCE_LEN {
            return Err(RecordError::BadLength(record.len() as u32));
        }
        let (head, body) = record.split_at_mut(4 + NONCE_LEN);
        let mut nonce_bytes = [0u8; NONCE_LEN];
        nonce_bytes.copy_from_slice(&head[4..]);
        let nonce = Nonce::from_bytes(&nonce_bytes);
        if nonce.prefix != self.prefix {
            return Err(RecordError::WrongPrefix(nonce.prefix));
        }
        if nonce.counter != self.next {
            return Err(RecordError::OutOfSequence {
                got: nonce.counter,
                want: self.next,
            });
        }
        let plain = self.key.open_in_place(&nonce, body)?;
        self.next += 1;
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Sealer, Opener) {
        let key = channel_key(&[7; 32]);
        (
            Sealer::new(&key, Role::Client),
            Opener::new(&key, Role::Server),
        )
    }

    #[test]
    fn records_round_trip_in_sequence() {
        let (mut sealer, mut opener) = pair();
        for text in [&b"hello"[..], b"", b"again"] {
            let mut out = Vec::new();
            sealer.seal(text, &mut out).unwrap();
            assert_eq!(Opener::record_len(&out).unwrap(), Some(out.len()));
            assert_eq!(&out[4..8], &[0, 0, 0, 2]);
            assert_eq!(opener.open(&mut out).unwrap(), text);
        }
    }

    #[test]
    fn replayed_reflected_forged_and_oversized_records_are_refused() {
        let (mut sealer, mut opener) = pair();
        let mut first = Vec::new();
        sealer.seal(b"one", &mut first).unwrap();
        let replay = first.clone();
        opener.open(&mut first).unwrap();
        let mut again = replay;
        assert_eq!(
            opener.open(&mut again),
            Err(RecordError::OutOfSequence { got: 1, want: 2 })
        );
        // Our own record sent back to us.
        let key = channel_key(&[7; 32]);
        let mut ours = Vec::new();
        Sealer::new(&key, Role::Server)
            .seal(b"x", &mut ours)
            .unwrap();
        assert_eq!(
            opener.open(&mut ours),
            Err(RecordError::WrongPrefix([0, 0, 0, 1]))
        );
        let mut second = Vec::new();
        sealer.seal(b"two", &mut second).unwrap();
        let last = second.len() - 1;
        second[last] ^= 1;
        assert!(matches!(
            opener.open(&mut second),
            Err(RecordError::Aead(_))
        ));
        assert_eq!(
            Opener::record_len(&[0, 0, 0, 11]),
            Err(RecordError::BadLength(11))
        );
        assert_eq!(
            Opener::record_len(&[1, 0, 0, 1]),
            Err(RecordError::BadLength((16 << 20) + 1))
        );
        assert_eq!(Opener::record_len(&[0, 0]), Ok(None));
    }
}
