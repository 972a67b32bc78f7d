//! The Pilot packet (`spec/wire.md` §3): a 34-byte header with a CRC-32, then the payload.
//!
//! ```text
//!  0       1       2       4          10         16    18    20    24    28    30       34
//!  ver|flg proto   len     src addr   dst addr   sport dport seq   ack   win   crc32    payload
//! ```

use super::{be16, be32, check_len, Addr, DecodeError, EncodeError};
use std::fmt;

/// Length of the header.
pub const HEADER_LEN: usize = 34;
/// Largest payload the 16-bit length field can describe.
pub const MAX_PAYLOAD: usize = u16::MAX as usize;
/// The protocol version this implementation sends.
pub const VERSION: u8 = 1;

mod field {
    use std::ops::Range;
    pub const VERSION_FLAGS: usize = 0;
    pub const PROTOCOL: usize = 1;
    pub const LENGTH: usize = 2;
    pub const SRC: Range<usize> = 4..10;
    pub const DST: Range<usize> = 10..16;
    pub const SRC_PORT: usize = 16;
    pub const DST_PORT: usize = 18;
    pub const SEQ: usize = 20;
    pub const ACK: usize = 24;
    pub const WINDOW: usize = 28;
    pub const CHECKSUM: Range<usize> = 30..34;
}

/// The four header flags (low nibble of byte 0).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    /// No flags (datagrams, control pings).
    pub const NONE: Flags = Flags(0);
    /// Synchronise: opens a stream.
    pub const SYN: Flags = Flags(0x1);
    /// The ack field is meaningful.
    pub const ACK: Flags = Flags(0x2);
    /// The sender has finished sending.
    pub const FIN: Flags = Flags(0x4);
    /// Reset: abort the connection.
    pub const RST: Flags = Flags(0x8);

    /// Flags from the low nibble of `bits`.
    pub const fn from_bits(bits: u8) -> Self {
        Flags(bits & 0x0F)
    }

    /// The flag bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Flags {
    /// `SYN|ACK`, or `-` when no flag is set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Flags::SYN, "SYN"),
            (Flags::ACK, "ACK"),
            (Flags::FIN, "FIN"),
            (Flags::RST, "RST"),
        ];
        let mut first = true;
        for (flag, name) in names {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// The protocol byte. Not validated on decode: unknown values are the router's business.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Protocol(pub u8);

impl Protocol {
    /// Reliable stream.
    pub const STREAM: Protocol = Protocol(0x01);
    /// Unreliable datagram.
    pub const DATAGRAM: Protocol = Protocol(0x02);
    /// Control (ping/pong on port 0).
    pub const CONTROL: Protocol = Protocol(0x03);
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Protocol::STREAM => f.write_str("stream"),
            Protocol::DATAGRAM => f.write_str("dgram"),
            Protocol::CONTROL => f.write_str("control"),
            Protocol(other) => write!(f, "proto{other}"),
        }
    }
}

/// Every header field except the payload length and checksum, which follow from the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Version nibble; [`VERSION`] when sending, anything accepted on receipt.
    pub version: u8,
    /// Flags nibble.
    pub flags: Flags,
    /// Protocol byte.
    pub protocol: Protocol,
    /// Source virtual address.
    pub src: Addr,
    /// Destination virtual address.
    pub dst: Addr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number (streams: byte offset).
    pub seq: u32,
    /// Acknowledgement number (streams: next byte expected).
    pub ack: u32,
    /// Receive window in 4096-byte segments.
    pub window: u16,
}

impl Default for Header {
    fn default() -> Self {
        Header {
            version: VERSION,
            flags: Flags::NONE,
            protocol: Protocol::STREAM,
            src: Addr::ZERO,
            dst: Addr::ZERO,
            src_port: 0,
            dst_port: 0,
            seq: 0,
            ack: 0,
            window: 0,
        }
    }
}

/// A decoded packet: its header and a view of its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The header fields.
    pub header: Header,
    /// The payload (exactly the declared length; trailing bytes are not part of it).
    pub payload: &'a [u8],
}

/// CRC-32/IEEE over the header with the checksum field zeroed, then the payload.
fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[..field::CHECKSUM.start]);
    crc.update(&[0; 4]);
    crc.update(payload);
    crc.finalize()
}

impl Header {
    /// Writes the 34 header bytes for a payload of `payload`, checksum included.
    pub fn encode(&self, payload: &[u8]) -> Result<[u8; HEADER_LEN], EncodeError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(EncodeError::PayloadTooLarge {
                len: payload.len(),
                max: MAX_PAYLOAD,
            });
        }
        let mut h = [0u8; HEADER_LEN];
        h[field::VERSION_FLAGS] = (self.version << 4) | self.flags.bits();
        h[field::PROTOCOL] = self.protocol.0;
        h[field::LENGTH..field::LENGTH + 2].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        h[field::SRC].copy_from_slice(&self.src.to_bytes());
        h[field::DST].copy_from_slice(&self.dst.to_bytes());
        h[field::SRC_PORT..field::SRC_PORT + 2].copy_from_slice(&self.src_port.to_be_bytes());
        h[field::DST_PORT..field::DST_PORT + 2].copy_from_slice(&self.dst_port.to_be_bytes());
        h[field::SEQ..field::SEQ + 4].copy_from_slice(&self.seq.to_be_bytes());
        h[field::ACK..field::ACK + 4].copy_from_slice(&self.ack.to_be_bytes());
        h[field::WINDOW..field::WINDOW + 2].copy_from_slice(&self.window.to_be_bytes());
        let crc = checksum(&h, payload);
        h[field::CHECKSUM].copy_from_slice(&crc.to_be_bytes());
        Ok(h)
    }

    /// Appends the encoded packet (header, then payload) to `out`.
    pub fn encode_packet(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let header = self.encode(payload)?;
        out.reserve(HEADER_LEN + payload.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(payload);
        Ok(())
    }
}

impl<'a> Packet<'a> {
    /// Decodes a packet per `spec/wire.md` §3.5: length and CRC are checked, the version and
    /// protocol are not, and bytes after the declared payload are ignored.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        check_len("packet header", bytes, HEADER_LEN)?;
        let len = usize::from(be16(bytes, field::LENGTH));
        let end = HEADER_LEN + len;
        if bytes.len() < end {
            return Err(DecodeError::Truncated {
                what: "packet",
                declared: len,
                available: bytes.len() - HEADER_LEN,
            });
        }
        let payload = &bytes[HEADER_LEN..end];
        let stored = be32(bytes, field::CHECKSUM.start);
        let computed = checksum(&bytes[..HEADER_LEN], payload);
        if stored != computed {
            return Err(DecodeError::BadChecksum { stored, computed });
        }
        let b0 = bytes[field::VERSION_FLAGS];
        let header = Header {
            version: b0 >> 4,
            flags: Flags::from_bits(b0),
            protocol: Protocol(bytes[field::PROTOCOL]),
            src: Addr::decode(&bytes[field::SRC])?,
            dst: Addr::decode(&bytes[field::DST])?,
            src_port: be16(bytes, field::SRC_PORT),
            dst_port: be16(bytes, field::DST_PORT),
            seq: be32(bytes, field::SEQ),
            ack: be32(bytes, field::ACK),
            window: be16(bytes, field::WINDOW),
        };
        Ok(Packet { header, payload })
    }

    /// Length of the encoded packet (header plus payload).
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }
}

impl fmt::Display for Packet<'_> {
    /// One-line summary for traces: `stream 0:0000.0000.0001:49152>0:0000.0000.0002:1000 SYN seq=0 ack=0 win=512 len=0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.header;
        write!(
            f,
            "{} {}:{}>{}:{} {} seq={} ack={} win={} len={}",
            h.protocol,
            h.src,
            h.src_port,
            h.dst,
            h.dst_port,
            h.flags,
            h.seq,
            h.ack,
            h.window,
            self.payload.len()
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hex_literal::hex;

    fn endpoints() -> Header {
        Header {
            src: Addr::new(0, 1),
            dst: Addr::new(0, 2),
            src_port: 49152,
            dst_port: 1000,
            ..Header::default()
        }
    }

    /// Vector V1 of `spec/wire.md` §3.8: a SYN from node 1 to node 2.
    pub(crate) const V1: [u8; 34] = hex!(
        "11 01 00 00 00 00 00 00 00 01 00 00 00 00 00 02"
        "C0 00 03 E8 00 00 00 00 00 00 00 00 02 00 14 5E"
        "D8 74"
    );
    const V2: [u8; 39] = hex!(
        "12 01 00 05 00 00 00 00 00 01 00 00 00 00 00 02"
        "C0 00 03 E8 00 00 00 01 00 00 00 01 01 F6 5E E8"
        "72 C8 68 65 6C 6C 6F"
    );
    const V3: [u8; 38] = hex!(
        "10 03 00 04 00 00 00 00 00 2A 00 01 F2 91 00 04"
        "C0 01 00 00 00 00 00 07 00 00 00 00 00 00 5C DE"
        "50 53 70 69 6E 67"
    );

    /// The header of [`V1`].
    pub(crate) fn v1_header() -> Header {
        Header {
            flags: Flags::SYN,
            window: 512,
            ..endpoints()
        }
    }

    fn v2_header() -> Header {
        Header {
            flags: Flags::ACK,
            seq: 1,
            ack: 1,
            window: 502,
            ..endpoints()
        }
    }

    fn v3_header() -> Header {
        Header {
            protocol: Protocol::CONTROL,
            src: Addr::new(0, 42),
            dst: Addr::new(1, 0xF291_0004),
            src_port: 49153,
            dst_port: 0,
            seq: 7,
            ..Header::default()
        }
    }

    #[test]
    fn vector_v1_syn() {
        let mut out = Vec::new();
        v1_header().encode_packet(&[], &mut out).unwrap();
        assert_eq!(out, V1);
        let p = Packet::decode(&V1).unwrap();
        assert_eq!(p.header, v1_header());
        assert!(p.payload.is_empty());
    }

    #[test]
    fn vector_v2_data() {
        let mut out = Vec::new();
        v2_header().encode_packet(b"hello", &mut out).unwrap();
        assert_eq!(out, V2);
        let p = Packet::decode(&V2).unwrap();
        assert_eq!(p.header, v2_header());
        assert_eq!(p.payload, b"hello");
    }

    #[test]
    fn vector_v3_control_ping() {
        let mut out = Vec::new();
        v3_header().encode_packet(b"ping", &mut out).unwrap();
        assert_eq!(out, V3);
        assert_eq!(Packet::decode(&V3).unwrap().header, v3_header());
    }

    #[test]
    fn crc_is_the_ieee_crc32() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(be32(&V1, 30), 0x145E_D874);
        assert_eq!(be32(&V2, 30), 0x5EE8_72C8);
        assert_eq!(be32(&V3, 30), 0x5CDE_5053);
    }

    #[test]
    fn decode_failures() {
        assert!(matches!(
            Packet::decode(&V1[..33]),
            Err(DecodeError::TooShort { .. })
        ));
        assert!(matches!(
            Packet::decode(&V2[..38]),
            Err(DecodeError::Truncated { .. })
        ));
        let mut corrupt = V2;
        corrupt[36] ^= 1;
        assert!(matches!(
            Packet::decode(&corrupt),
            Err(DecodeError::BadChecksum { .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_ignored_and_version_is_not_checked() {
        let mut long = V2.to_vec();
        long.extend_from_slice(b"junk");
        assert_eq!(Packet::decode(&long).unwrap().payload, b"hello");

        let h = Header {
            version: 7,
            ..v2_header()
        };
        let mut out = Vec::new();
        h.encode_packet(b"x", &mut out).unwrap();
        assert_eq!(Packet::decode(&out).unwrap().header.version, 7);
    }

    #[test]
    fn oversized_payload_is_refused() {
        let payload = vec![0u8; MAX_PAYLOAD + 1];
        assert!(matches!(
            v2_header().encode(&payload),
            Err(EncodeError::PayloadTooLarge { .. })
        ));
        assert!(v2_header().encode(&payload[..MAX_PAYLOAD]).is_ok());
    }

    #[test]
    fn flags_display() {
        assert_eq!((Flags::SYN | Flags::ACK).to_string(), "SYN|ACK");
        assert_eq!(Flags::NONE.to_string(), "-");
        assert_eq!(Flags::from_bits(0xFF).bits(), 0x0F);
    }
}
