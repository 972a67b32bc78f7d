//! Framing (`spec/registry.md` §3.1): a 4-byte big-endian length, then that many bytes of UTF-8
//! JSON holding one object.
//!
//! [`decode`] is total over bytes: any input yields a frame, "need more bytes", or a typed error,
//! and the length is checked against [`MAX_FRAME`] before anything is buffered. The async helpers
//! at the bottom move frames over any `AsyncRead`/`AsyncWrite` (a seam stream, a TLS stream).

use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest body a peer may send: 1 MiB, as the reference enforces on reads.
pub const MAX_FRAME: usize = 1 << 20;

/// One decoded frame body: a JSON object.
pub type Object = Map<String, Value>;

/// Why a frame was refused. The connection is dropped without a reply (§3.1 rule 2).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix exceeds the limit.
    #[error("frame of {0} bytes exceeds the limit of {limit} bytes", limit = MAX_FRAME)]
    TooLarge(u64),
    /// The body is not valid JSON.
    #[error("frame body is not JSON: {0}")]
    Json(String),
    /// The body is JSON but not an object (or `null`).
    #[error("frame body is not a JSON object")]
    NotObject,
    /// The stream ended inside a frame.
    #[error("connection closed inside a frame")]
    Truncated,
    /// The stream failed.
    #[error("connection error: {0}")]
    Io(String),
}

/// Decodes the first frame in `buf` with the default limit.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame, else the object and the number of
/// bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(Object, usize)>, FrameError> {
    decode_limited(buf, MAX_FRAME)
}

/// Like [`decode`] with an explicit body limit (the replication link accepts larger frames).
pub fn decode_limited(buf: &[u8], limit: usize) -> Result<Option<(Object, usize)>, FrameError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > limit {
        return Err(FrameError::TooLarge(len as u64));
    }
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    Ok(Some((parse_body(body)?, 4 + len)))
}

/// Parses a frame body. A literal `null` is an empty object, as in the reference.
pub fn parse_body(body: &[u8]) -> Result<Object, FrameError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(FrameError::NotObject),
        Err(e) => Err(FrameError::Json(e.to_string())),
    }
}

/// Encodes an object as one frame. Keys come out sorted (like Go's encoder).
pub fn encode(object: &Object) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    // Serialising a map of JSON values cannot fail.
    serde_json::to_writer(&mut out, object).expect("JSON values always serialise");
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// A byte stream in both directions (plain TCP or TLS), boxed so callers need not name it.
pub trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

/// A boxed [`Duplex`].
pub type BoxStream = Box<dyn Duplex>;

/// Connects over `net` to `addr`, wrapping the stream in TLS when `pin` is set.
pub async fn connect<N: crate::net::Network>(
    net: &N,
    addr: std::net::SocketAddr,
    pin: Option<&str>,
) -> std::io::Result<BoxStream> {
    let stream = net.connect_tcp(addr).await?;
    match pin {
        None => Ok(Box::new(stream)),
        Some(pin) => {
            let connector = super::tls::pinned_connector(pin).map_err(std::io::Error::other)?;
            let tls = connector.connect(super::tls::server_name(), stream).await?;
            Ok(Box::new(tls))
        }
    }
}

/// Reads one frame body (raw bytes) of at most `limit` bytes; `Ok(None)` on a clean EOF before
/// the first byte of a frame.
pub async fn read_raw<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader
            .read(&mut prefix[got..])
            .await
            .map_err(|e| FrameError::Io(e.to_string()))?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > limit {
        return Err(FrameError::TooLarge(len as u64));
    }
    // Grow the buffer as bytes arrive: a peer that announces 1 MiB and sends nothing holds
    // no memory for it.
    let mut body = Vec::with_capacity(len.min(64 << 10));
    (&mut *reader)
        .take(len as u64)
        .read_to_end(&mut body)
        .await
        .map_err(|e| FrameError::Io(e.to_string()))?;
    if body.len() < len {
        return Err(FrameError::Truncated);
    }
    Ok(Some(body))
}

/// Reads one frame as an object; `Ok(None)` on a clean EOF between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Object>, FrameError> {
    match read_raw(reader, limit).await? {
        Some(body) => parse_body(&body).map(Some),
        None => Ok(None),
    }
}

/// Writes one already-encoded frame and flushes it.
pub async fn write_encoded<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &[u8],
) -> std::io::Result<()> {
    writer.write_all(frame).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn round_trip_and_partial_input() {
        let mut object = Object::new();
        object.insert("type".into(), json!("lookup"));
        object.insert("node_id".into(), json!(7));
        let bytes = encode(&object);
        assert_eq!(&bytes[4..], br#"{"node_id":7,"type":"lookup"}"#);
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        let (decoded, used) = decode(&two).unwrap().unwrap();
        assert_eq!((decoded, used), (object, bytes.len()));
    }

    #[test]
    fn refuses_oversized_lengths_before_buffering() {
        let huge = (MAX_FRAME as u32 + 1).to_be_bytes();
        assert_eq!(
            decode(&huge),
            Err(FrameError::TooLarge(MAX_FRAME as u64 + 1))
        );
        // Exactly the limit is accepted as a length (the body is then judged as JSON).
        assert!(matches!(
            decode(&frame(&vec![b' '; MAX_FRAME])),
            Err(FrameError::Json(_))
        ));
    }

    #[test]
    fn bodies_that_are_not_objects() {
        assert_eq!(decode(&frame(b"[1]")), Err(FrameError::NotObject));
        assert_eq!(decode(&frame(b"\"x\"")), Err(FrameError::NotObject));
        assert!(matches!(decode(&frame(b"{")), Err(FrameError::Json(_))));
        assert!(matches!(decode(&frame(b"\xff")), Err(FrameError::Json(_))));
        let (null, _) = decode(&frame(b"null")).unwrap().unwrap();
        assert!(null.is_empty());
    }

    #[tokio::test]
    async fn async_reader_reports_eof_and_truncation() {
        let bytes = frame(br#"{"type":"x"}"#);
        let mut whole = &bytes[..];
        assert!(read_frame(&mut whole, MAX_FRAME).await.unwrap().is_some());
        assert_eq!(read_frame(&mut whole, MAX_FRAME).await, Ok(None));
        let mut cut = &bytes[..bytes.len() - 1];
        assert_eq!(
            read_frame(&mut cut, MAX_FRAME).await,
            Err(FrameError::Truncated)
        );
        // A large announced length with little behind it: truncated, not a 1 MiB buffer.
        let short = [&(MAX_FRAME as u32).to_be_bytes()[..], b"{}"].concat();
        assert_eq!(
            read_frame(&mut &short[..], MAX_FRAME).await,
            Err(FrameError::Truncated)
        );
        let mut cut_prefix = &bytes[..2];
        assert_eq!(
            read_frame(&mut cut_prefix, MAX_FRAME).await,
            Err(FrameError::Truncated)
        );
    }
}
