//! The data-exchange frame (`spec/services.md` §7.2): `[u32 type][u32 length][payload]`, big
//! endian, `length` at most [`MAX_FRAME`]; a FILE payload is `[u16 name_len][name][bytes]`.
//!
//! One extension, [`FrameType::FileStream`], carries files larger than a frame: its payload is
//! only `[u64 size][u16 name_len][name]`, the receiver answers `READY` (a reference daemon
//! answers `ACK UNKNOWN(16) ..` instead, which tells the sender to stop), then `size` raw bytes
//! follow and one ACK covers them. See `docs/SERVICES.md`.

use thiserror::Error;

/// Largest payload of one frame.
pub const MAX_FRAME: usize = 16 << 20;
/// Size of the frame header.
pub const HEADER_LEN: usize = 8;
/// Longest file name a sender can put in a FILE payload.
pub const MAX_NAME: usize = u16::MAX as usize;
/// The text the receiver of a [`FrameType::FileStream`] header answers before the bytes.
pub const READY: &str = "READY";

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FrameType {
    /// UTF-8 text (type 1).
    Text,
    /// Bytes (type 2).
    Binary,
    /// JSON text, not validated (type 3).
    Json,
    /// A named file in one frame (type 4).
    File,
    /// Extension: a named file of any size streamed after the frame (type 16).
    FileStream,
    /// Any other type.
    Other(u32),
}

impl FrameType {
    /// The type of wire value `code`.
    pub fn from_code(code: u32) -> Self {
        match code {
            1 => FrameType::Text,
            2 => FrameType::Binary,
            3 => FrameType::Json,
            4 => FrameType::File,
            16 => FrameType::FileStream,
            n => FrameType::Other(n),
        }
    }

    /// The wire value.
    pub fn code(self) -> u32 {
        match self {
            FrameType::Text => 1,
            FrameType::Binary => 2,
            FrameType::Json => 3,
            FrameType::File => 4,
            FrameType::FileStream => 16,
            FrameType::Other(n) => n,
        }
    }

    /// The name used in replies and inbox entries (`UNKNOWN(<n>)` for the rest). The stream
    /// extension reports as FILE: it stores a file.
    pub fn name(self) -> String {
        match self {
            FrameType::Text => "TEXT".into(),
            FrameType::Binary => "BINARY".into(),
            FrameType::Json => "JSON".into(),
            FrameType::File | FrameType::FileStream => "FILE".into(),
            FrameType::Other(n) => format!("UNKNOWN({n})"),
        }
    }
}

/// Why a frame cannot be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// The length field exceeds [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(u64),
    /// A FILE_STREAM header is malformed.
    #[error("malformed file-stream header: {0}")]
    BadStreamHeader(&'static str),
}

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The type.
    pub kind: FrameType,
    /// Payload length.
    pub len: u32,
}

impl Header {
    /// Parses the 8 header bytes; fails when the length exceeds [`MAX_FRAME`].
    pub fn parse(bytes: [u8; HEADER_LEN]) -> Result<Self, FrameError> {
        let code = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if len as usize > MAX_FRAME {
            return Err(FrameError::TooLarge(u64::from(len)));
        }
        Ok(Header {
            kind: FrameType::from_code(code),
            len,
        })
    }

    /// The 8 header bytes.
    pub fn encode(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&self.kind.code().to_be_bytes());
        out[4..].copy_from_slice(&self.len.to_be_bytes());
        out
    }
}

/// A whole frame: header and payload in one buffer. Fails when the payload is too large.
pub fn encode(kind: FrameType, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    if payload.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(payload.len() as u64));
    }
    let header = Header {
        kind,
        len: payload.len() as u32,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    Ok(out)
}

/// The name prefix of a FILE payload: `[u16 name_len][name]` (names longer than
/// [`MAX_NAME`] bytes are cut at a character boundary).
pub fn file_prefix(name: &str) -> Vec<u8> {
    let mut end = name.len().min(MAX_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(2 + end);
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&name.as_bytes()[..end]);
    out
}

/// Splits a FILE payload into name and data. When the name length does not fit, the name
/// is empty and the whole payload is data (as the reference reads it).
pub fn split_file(payload: &[u8]) -> (&[u8], &[u8]) {
    if payload.len() < 2 {
        return (&[], payload);
    }
    let name_len = usize::from(u16::from_be_bytes([payload[0], payload[1]]));
    if name_len + 2 > payload.len() {
        return (&[], payload);
    }
    (&payload[2..2 + name_len], &payload[2 + name_len..])
}

/// The payload of a FILE_STREAM frame.
pub fn stream_header(name: &str, size: u64) -> Vec<u8> {
    let mut out = size.to_be_bytes().to_vec();
    out.extend_from_slice(&file_prefix(name));
    out
}

/// Parses a FILE_STREAM payload into name bytes and size.
pub fn parse_stream_header(payload: &[u8]) -> Result<(&[u8], u64), FrameError> {
    if payload.len() < 10 {
        return Err(FrameError::BadStreamHeader("shorter than 10 bytes"));
    }
    let size = u64::from_be_bytes(payload[..8].try_into().unwrap_or([0; 8]));
    let name_len = usize::from(u16::from_be_bytes([payload[8], payload[9]]));
    if 10 + name_len != payload.len() {
        return Err(FrameError::BadStreamHeader("name length does not match"));
    }
    Ok((&payload[10..], size))
}

/// What the receiver answered about one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `ACK <TYPE> <n> bytes`: stored (or, for types nobody stores, read).
    Ack {
        /// The type name.
        kind: String,
        /// Data bytes acknowledged.
        bytes: u64,
    },
    /// `ERR <TYPE> <message>`: not stored.
    Err {
        /// The type name.
        kind: String,
        /// Why.
        message: String,
    },
    /// [`READY`]: send the streamed bytes.
    Ready,
    /// Anything else.
    Other(String),
}

impl Reply {
    /// The ACK text for `bytes` of a frame of `kind`.
    pub fn ack(kind: FrameType, bytes: u64) -> String {
        format!("ACK {} {bytes} bytes", kind.name())
    }

    /// The ERR text for a failed save.
    pub fn save_failed(kind: FrameType, error: &str) -> String {
        format!("ERR {} save failed: {error}", kind.name())
    }

    /// Reads a reply text.
    pub fn parse(text: &str) -> Reply {
        if text == READY {
            return Reply::Ready;
        }
        let mut words = text.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("ACK"), Some(kind), Some(rest)) => {
                match rest.strip_suffix(" bytes").and_then(|n| n.parse().ok()) {
                    Some(bytes) => Reply::Ack {
                        kind: kind.to_string(),
                        bytes,
                    },
                    None => Reply::Other(text.to_string()),
                }
            }
            (Some("ERR"), Some(kind), Some(rest)) => Reply::Err {
                kind: kind.to_string(),
                message: rest.to_string(),
            },
            _ => Reply::Other(text.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_limit() {
        let h = Header {
            kind: FrameType::Json,
            len: 5,
        };
        assert_eq!(h.encode(), [0, 0, 0, 3, 0, 0, 0, 5]);
        assert_eq!(Header::parse(h.encode()), Ok(h));
        let max = Header::parse([0, 0, 0, 1, 0x01, 0, 0, 0]).unwrap();
        assert_eq!(max.len as usize, MAX_FRAME);
        assert_eq!(
            Header::parse([0, 0, 0, 1, 0x01, 0, 0, 1]),
            Err(FrameError::TooLarge(MAX_FRAME as u64 + 1))
        );
        assert_eq!(
            Header::parse([0, 0, 0, 9, 0, 0, 0, 0]).unwrap().kind.name(),
            "UNKNOWN(9)"
        );
    }

    #[test]
    fn file_payload_splits_as_the_reference_does() {
        let mut payload = file_prefix("a.txt");
        payload.extend_from_slice(b"data");
        assert_eq!(split_file(&payload), (&b"a.txt"[..], &b"data"[..]));
        // A name length past the end: no name, everything is data.
        assert_eq!(split_file(&[0, 9, b'x']), (&b""[..], &[0, 9, b'x'][..]));
        assert_eq!(split_file(&[7]), (&b""[..], &[7][..]));
        assert_eq!(split_file(&[0, 0]), (&b""[..], &b""[..]));
    }

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        let name = "é".repeat(40_000);
        let prefix = file_prefix(&name);
        let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
        assert!(len <= MAX_NAME);
        assert!(std::str::from_utf8(&prefix[2..]).is_ok());
    }

    #[test]
    fn stream_header_round_trip_and_bad_input() {
        let h = stream_header("big.bin", 1 << 40);
        assert_eq!(parse_stream_header(&h), Ok((&b"big.bin"[..], 1 << 40)));
        assert!(parse_stream_header(&h[..9]).is_err());
        assert!(parse_stream_header(&h[..h.len() - 1]).is_err());
    }

    #[test]
    fn replies_parse() {
        assert_eq!(
            Reply::parse(&Reply::ack(FrameType::File, 12)),
            Reply::Ack {
                kind: "FILE".into(),
                bytes: 12
            }
        );
        assert_eq!(
            Reply::parse(&Reply::save_failed(FrameType::Text, "disk full")),
            Reply::Err {
                kind: "TEXT".into(),
                message: "save failed: disk full".into()
            }
        );
        assert_eq!(Reply::parse("READY"), Reply::Ready);
        assert_eq!(Reply::parse("ACK X y"), Reply::Other("ACK X y".into()));
        assert_eq!(
            Reply::parse("ACK UNKNOWN(16) 17 bytes"),
            Reply::Ack {
                kind: "UNKNOWN(16)".into(),
                bytes: 17
            }
        );
    }

    #[test]
    fn encode_refuses_oversized_payloads() {
        assert!(encode(FrameType::Binary, &vec![0; MAX_FRAME + 1]).is_err());
        assert_eq!(
            encode(FrameType::Text, b"hi").unwrap(),
            [0, 0, 0, 1, 0, 0, 0, 2, b'h', b'i']
        );
    }
}
