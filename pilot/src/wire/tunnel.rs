//! Tunnel frames (`spec/wire.md` §4): what travels in one UDP datagram between two daemons.
//!
//! | magic  | frame                                                        |
//! |--------|--------------------------------------------------------------|
//! | `PILT` | plaintext: a Pilot packet                                    |
//! | `PILS` | sealed: sender node, 12-byte nonce, AES-256-GCM ciphertext   |
//! | `PILK` | unauthenticated key exchange: sender node, X25519 key        |
//! | `PILA` | authenticated key exchange: `PILK` plus Ed25519 key and sig  |
//! | `PILP` | hole-punch probe, no body                                    |
//!
//! Frames are decoded without copying: sealed ciphertext and plaintext packets borrow from the
//! datagram. Keys are copied into fixed arrays, so nothing a later datagram writes into a reused
//! receive buffer can change a key already decoded.

use super::{be32, check_len, DecodeError, Header, Packet};
use std::fmt;

/// Magic of a plaintext frame.
pub const PILT: [u8; 4] = *b"PILT";
/// Magic of a sealed frame.
pub const PILS: [u8; 4] = *b"PILS";
/// Magic of an unauthenticated key exchange.
pub const PILK: [u8; 4] = *b"PILK";
/// Magic of an authenticated key exchange.
pub const PILA: [u8; 4] = *b"PILA";
/// Magic (and whole content) of a punch probe.
pub const PILP: [u8; 4] = *b"PILP";

/// Length of a GCM nonce: a 4-byte prefix and a 64-bit counter.
pub const NONCE_LEN: usize = 12;
/// Length of a GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed frame adds before the ciphertext: magic, sender, nonce.
pub const SEALED_PREFIX_LEN: usize = 4 + 4 + NONCE_LEN;
/// Total bytes a sealed frame adds to a packet: prefix and tag.
pub const SEALED_OVERHEAD: usize = SEALED_PREFIX_LEN + TAG_LEN;
/// Length of a `PILK` frame.
pub const KEY_EXCHANGE_LEN: usize = 40;
/// Length of a `PILA` frame.
pub const AUTH_KEY_EXCHANGE_LEN: usize = 136;
/// Length of the message a `PILA` signature covers.
pub const AUTH_SIGNED_LEN: usize = 40;

/// A GCM nonce as carried in `PILS`: a per-state random prefix and a send counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Nonce {
    /// Chosen at random each time a key state is derived.
    pub prefix: [u8; 4],
    /// Incremented before each send; the first frame carries 1.
    pub counter: u64,
}

impl Nonce {
    /// The 12 bytes: prefix then counter, big-endian.
    pub fn to_bytes(&self) -> [u8; NONCE_LEN] {
        let mut out = [0u8; NONCE_LEN];
        out[..4].copy_from_slice(&self.prefix);
        out[4..].copy_from_slice(&self.counter.to_be_bytes());
        out
    }

    /// Reads a nonce from its 12 bytes.
    pub fn from_bytes(bytes: &[u8; NONCE_LEN]) -> Self {
        let mut prefix = [0u8; 4];
        prefix.copy_from_slice(&bytes[..4]);
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&bytes[4..]);
        Nonce {
            prefix,
            counter: u64::from_be_bytes(counter),
        }
    }
}

/// A `PILS` frame: the sender's node ID selects the key; the ciphertext ends with the tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedFrame<'a> {
    /// Node ID the sender claims (not authenticated by itself; the key is).
    pub sender: u32,
    /// The GCM nonce.
    pub nonce: Nonce,
    /// Ciphertext followed by the 16-byte tag; at least [`TAG_LEN`] bytes.
    pub ciphertext: &'a [u8],
}

impl SealedFrame<'_> {
    /// Appends magic, sender and nonce to `out`; the caller appends ciphertext and tag.
    pub fn encode_prefix(sender: u32, nonce: &Nonce, out: &mut Vec<u8>) {
        out.extend_from_slice(&PILS);
        out.extend_from_slice(&sender.to_be_bytes());
        out.extend_from_slice(&nonce.to_bytes());
    }
}

/// A `PILK` frame: an X25519 public key offered without authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyExchange {
    /// The sender's node ID.
    pub sender: u32,
    /// The sender's X25519 public key.
    pub x25519: [u8; 32],
}

impl KeyExchange {
    /// Appends the 40-byte frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&PILK);
        out.extend_from_slice(&self.sender.to_be_bytes());
        out.extend_from_slice(&self.x25519);
    }
}

/// A `PILA` frame: an X25519 key signed by the sender's Ed25519 identity.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuthKeyExchange {
    /// The sender's node ID.
    pub sender: u32,
    /// The sender's X25519 public key.
    pub x25519: [u8; 32],
    /// The sender's Ed25519 public key (to be checked against the registry's).
    pub ed25519: [u8; 32],
    /// Ed25519 signature over [`AuthKeyExchange::signed_message`].
    pub signature: [u8; 64],
}

impl fmt::Debug for AuthKeyExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthKeyExchange")
            .field("sender", &self.sender)
            .field("x25519", &self.x25519)
            .field("ed25519", &self.ed25519)
            .finish_non_exhaustive()
    }
}

impl AuthKeyExchange {
    /// The 40 bytes the signature covers: `"auth"`, the sender's node ID and X25519 key.
    pub fn signed_message(sender: u32, x25519: &[u8; 32]) -> [u8; AUTH_SIGNED_LEN] {
        let mut msg = [0u8; AUTH_SIGNED_LEN];
        msg[..4].copy_from_slice(b"auth");
        msg[4..8].copy_from_slice(&sender.to_be_bytes());
        msg[8..].copy_from_slice(x25519);
        msg
    }

    /// Appends the 136-byte frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&PILA);
        out.extend_from_slice(&self.sender.to_be_bytes());
        out.extend_from_slice(&self.x25519);
        out.extend_from_slice(&self.ed25519);
        out.extend_from_slice(&self.signature);
    }
}

/// One decoded tunnel frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelFrame<'a> {
    /// `PILT`: a plaintext packet.
    Plain(Packet<'a>),
    /// `PILS`: a sealed packet.
    Sealed(SealedFrame<'a>),
    /// `PILK`: unauthenticated key exchange.
    KeyExchange(KeyExchange),
    /// `PILA`: authenticated key exchange.
    AuthKeyExchange(AuthKeyExchange),
    /// `PILP`: punch probe.
    Punch,
}

impl fmt::Display for TunnelFrame<'_> {
    /// One line for traces and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelFrame::Plain(packet) => write!(f, "PILT {packet}"),
            TunnelFrame::Sealed(s) => write!(
                f,
                "PILS from={} nonce={:02x?}/{} sealed={}",
                s.sender,
                s.nonce.prefix,
                s.nonce.counter,
                s.ciphertext.len()
            ),
            TunnelFrame::KeyExchange(k) => write!(f, "PILK from={}", k.sender),
            TunnelFrame::AuthKeyExchange(a) => write!(f, "PILA from={}", a.sender),
            TunnelFrame::Punch => f.write_str("PILP"),
        }
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

impl<'a> TunnelFrame<'a> {
    /// Decodes a tunnel frame. Bytes after a fixed-size frame are ignored, as the reference
    /// does; a plaintext packet follows the packet rules (trailing bytes ignored too).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        check_len("tunnel frame", bytes, 4)?;
        let body = &bytes[4..];
        match array::<4>(bytes) {
            PILT => Ok(TunnelFrame::Plain(Packet::decode(body)?)),
            PILS => {
                check_len("PILS frame", bytes, SEALED_OVERHEAD)?;
                Ok(TunnelFrame::Sealed(SealedFrame {
                    sender: be32(body, 0),
                    nonce: Nonce::from_bytes(&array(&body[4..])),
                    ciphertext: &body[4 + NONCE_LEN..],
                }))
            }
            PILK => {
                check_len("PILK frame", bytes, KEY_EXCHANGE_LEN)?;
                Ok(TunnelFrame::KeyExchange(KeyExchange {
                    sender: be32(body, 0),
                    x25519: array(&body[4..]),
                }))
            }
            PILA => {
                check_len("PILA frame", bytes, AUTH_KEY_EXCHANGE_LEN)?;
                Ok(TunnelFrame::AuthKeyExchange(AuthKeyExchange {
                    sender: be32(body, 0),
                    x25519: array(&body[4..]),
                    ed25519: array(&body[36..]),
                    signature: array(&body[68..]),
                }))
            }
            PILP => Ok(TunnelFrame::Punch),
            _ => Err(DecodeError::UnknownKind {
                what: "tunnel frame",
                found: be32(bytes, 0),
            }),
        }
    }

    /// Appends a `PILT` frame carrying `header` and `payload` to `out`.
    pub fn encode_plain(
        header: &Header,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), super::EncodeError> {
        let encoded = header.encode(payload)?;
        out.reserve(4 + encoded.len() + payload.len());
        out.extend_from_slice(&PILT);
        out.extend_from_slice(&encoded);
        out.extend_from_slice(payload);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hex_literal::hex;

    pub(crate) const PILK_NODE2: [u8; 40] = hex!(
        "50 49 4C 4B 00 00 00 02 DE 9E DB 7D 7B 7D C1 B4"
        "D3 5B 61 C2 EC E4 35 37 3F 83 43 C8 5B 78 67 4D"
        "AD FC 7E 14 6F 88 2B 4F"
    );

    pub(crate) const PILA_NODE1: [u8; 136] = hex!(
        "50 49 4C 41 00 00 00 01 85 20 F0 09 89 30 A7 54"
        "74 8B 7D DC B4 3E F7 5A 0D BF 3A 0D 26 38 1A F4"
        "EB A4 A9 8E AA 9B 4E 6A D7 5A 98 01 82 B1 0A B7"
        "D5 4B FE D3 C9 64 07 3A 0E E1 72 F3 DA A6 23 25"
        "AF 02 1A 68 F7 07 51 1A 88 0A F5 E2 CE 0D 44 FC"
        "98 43 2C 2F F8 C8 67 56 7F 42 F4 42 CD 9E 00 C2"
        "98 19 98 23 84 4F 1E 7D 54 C5 56 0C 7C 74 80 B2"
        "F9 08 55 B7 31 78 C6 65 29 55 38 BD 30 E5 21 F7"
        "94 C4 94 E7 93 E7 61 0D"
    );

    #[test]
    fn vector_v4_plaintext_frame() {
        let header = crate::wire::header::tests::v1_header();
        let mut out = Vec::new();
        TunnelFrame::encode_plain(&header, &[], &mut out).unwrap();
        assert_eq!(&out[..4], b"PILT");
        assert_eq!(
            &out[4..],
            crate::wire::header::tests::V1,
            "V4 is PILT then V1"
        );
        match TunnelFrame::decode(&out).unwrap() {
            TunnelFrame::Plain(p) => assert_eq!(p.header, header),
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn vector_pilk() {
        let TunnelFrame::KeyExchange(kx) = TunnelFrame::decode(&PILK_NODE2).unwrap() else {
            panic!("not PILK");
        };
        assert_eq!(kx.sender, 2);
        assert_eq!(
            kx.x25519,
            hex!("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        );
        let mut out = Vec::new();
        kx.encode(&mut out);
        assert_eq!(out, PILK_NODE2);
    }

    #[test]
    fn vector_pila() {
        let TunnelFrame::AuthKeyExchange(ax) = TunnelFrame::decode(&PILA_NODE1).unwrap() else {
            panic!("not PILA");
        };
        assert_eq!(ax.sender, 1);
        assert_eq!(
            ax.ed25519,
            hex!("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        assert_eq!(
            AuthKeyExchange::signed_message(1, &ax.x25519),
            hex!(
                "61 75 74 68 00 00 00 01 85 20 F0 09 89 30 A7 54"
                "74 8B 7D DC B4 3E F7 5A 0D BF 3A 0D 26 38 1A F4"
                "EB A4 A9 8E AA 9B 4E 6A"
            )
        );
        let mut out = Vec::new();
        ax.encode(&mut out);
        assert_eq!(out, PILA_NODE1);
    }

    #[test]
    fn sealed_frame_layout() {
        let nonce = Nonce {
            prefix: [1, 2, 3, 4],
            counter: 1,
        };
        let mut out = Vec::new();
        SealedFrame::encode_prefix(1, &nonce, &mut out);
        out.extend_from_slice(&[0xAA; TAG_LEN]);
        assert_eq!(out.len(), SEALED_OVERHEAD);
        let TunnelFrame::Sealed(frame) = TunnelFrame::decode(&out).unwrap() else {
            panic!("not PILS");
        };
        assert_eq!(frame.sender, 1);
        assert_eq!(frame.nonce, nonce);
        assert_eq!(frame.ciphertext, &[0xAA; TAG_LEN]);
        assert_eq!(
            &nonce.to_bytes(),
            &hex!("01 02 03 04 00 00 00 00 00 00 00 01")
        );
    }

    #[test]
    fn short_and_unknown_frames_are_errors() {
        assert!(TunnelFrame::decode(b"PIL").is_err());
        assert!(TunnelFrame::decode(&PILK_NODE2[..39]).is_err());
        assert!(TunnelFrame::decode(&PILA_NODE1[..135]).is_err());
        assert!(TunnelFrame::decode(&[b'P', b'I', b'L', b'S'][..]).is_err());
        assert!(TunnelFrame::decode(b"PILT short").is_err());
        assert!(matches!(
            TunnelFrame::decode(b"PILX"),
            Err(DecodeError::UnknownKind { .. })
        ));
        assert_eq!(TunnelFrame::decode(b"PILP").unwrap(), TunnelFrame::Punch);
        assert_eq!(
            TunnelFrame::decode(b"PILPextra").unwrap(),
            TunnelFrame::Punch
        );
    }
}
