//! Bytes in, typed values out, and back: every format Pilot Protocol puts on the wire.
//!
//! One file per format. Each decoder is total: any byte string yields a value or a typed
//! [`DecodeError`], never a panic, and never allocates from a length it read off the wire.
//! Decoded values borrow their variable-length parts from the input.
//!
//! - [`addr`]: virtual addresses and socket addresses, binary and text (`spec/wire.md` §2).
//! - [`header`]: the 34-byte Pilot packet header with its CRC-32 (§3).
//! - [`sack`]: the selective-acknowledgement payload of stream ACKs (§3.7, transport §10).
//! - [`tunnel`]: the tunnel frames `PILT`, `PILS`, `PILK`, `PILA`, `PILP` (§4).
//! - [`beacon`]: the beacon's UDP messages (§6).
//! - [`datagram`]: what arrives on a tunnel socket, classified by its first bytes (§1, §4.2).

pub mod addr;
pub mod beacon;
pub mod datagram;
pub mod header;
pub mod sack;
pub mod tunnel;

pub use addr::{Addr, AddrParseError, SocketAddr};
pub use beacon::BeaconMessage;
pub use datagram::Datagram;
pub use header::{Flags, Header, Packet, Protocol, HEADER_LEN, MAX_PAYLOAD};
pub use sack::{SackBlock, SackList};
pub use tunnel::{AuthKeyExchange, KeyExchange, Nonce, SealedFrame, TunnelFrame};

/// Why a byte string is not a valid message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the format's fixed part.
    #[error("{what}: need at least {need} bytes, got {got}")]
    TooShort {
        /// The format being decoded.
        what: &'static str,
        /// Minimum length of that format.
        need: usize,
        /// Length received.
        got: usize,
    },
    /// A length field promises more bytes than there are.
    #[error("{what}: length field says {declared} bytes, only {available} present")]
    Truncated {
        /// The format being decoded.
        what: &'static str,
        /// Bytes the length field declares.
        declared: usize,
        /// Bytes actually present.
        available: usize,
    },
    /// The packet's CRC-32 does not match its bytes.
    #[error("checksum mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    BadChecksum {
        /// Checksum carried in the header.
        stored: u32,
        /// Checksum computed over the bytes.
        computed: u32,
    },
    /// The bytes do not start with a known magic or type code.
    #[error("{what}: unknown magic or type {found:#x}")]
    UnknownKind {
        /// The format being decoded.
        what: &'static str,
        /// The leading value found.
        found: u32,
    },
    /// A field holds a value the format does not allow.
    #[error("{what}: invalid {field}")]
    InvalidField {
        /// The format being decoded.
        what: &'static str,
        /// The offending field.
        field: &'static str,
    },
}

/// Why a value cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The payload does not fit the 16-bit length field.
    #[error("payload of {len} bytes exceeds the {max}-byte limit")]
    PayloadTooLarge {
        /// Payload length requested.
        len: usize,
        /// Largest allowed.
        max: usize,
    },
}

/// Reads a big-endian u16 at `at`; the caller has checked the length.
pub(crate) fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// Reads a big-endian u32 at `at`; the caller has checked the length.
pub(crate) fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Returns `Err(TooShort)` unless `bytes` holds at least `need` bytes.
pub(crate) fn check_len(what: &'static str, bytes: &[u8], need: usize) -> Result<(), DecodeError> {
    if bytes.len() < need {
        Err(DecodeError::TooShort {
            what,
            need,
            got: bytes.len(),
        })
    } else {
        Ok(())
    }
}
