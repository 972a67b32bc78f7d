//! The event (`spec/services.md` §7.3): `[u16 topic_len][topic][u32 payload_len][payload]`,
//! big endian, topic at most [`MAX_TOPIC`] bytes and payload at most [`MAX_PAYLOAD`] bytes.
//!
//! Topics are kept as bytes: matching is byte equality, as the reference compares strings,
//! so a topic that is not UTF-8 still routes exactly.

use std::io;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest topic a reader accepts.
pub const MAX_TOPIC: usize = 1024;
/// Largest payload a reader accepts.
pub const MAX_PAYLOAD: usize = 16 << 20;
/// Topic that matches every event.
pub const WILDCARD: &[u8] = b"*";

/// One event: a topic and its payload.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Event {
    /// The topic (exact-match key; `*` is the wildcard).
    pub topic: Vec<u8>,
    /// The payload (opaque bytes).
    pub payload: Vec<u8>,
}

impl Event {
    /// An event on `topic` carrying `payload`.
    pub fn new(topic: impl Into<Vec<u8>>, payload: impl Into<Vec<u8>>) -> Self {
        Event {
            topic: topic.into(),
            payload: payload.into(),
        }
    }

    /// The topic as text (invalid UTF-8 shown as U+FFFD).
    pub fn topic_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.topic)
    }
}

/// Why an event cannot be read or written.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The topic length exceeds [`MAX_TOPIC`].
    #[error("event topic of {0} bytes exceeds the {MAX_TOPIC}-byte limit")]
    TopicTooLong(usize),
    /// The payload length exceeds [`MAX_PAYLOAD`].
    #[error("event payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    PayloadTooLarge(u64),
    /// The stream ended inside an event.
    #[error("stream ended inside an event ({0})")]
    Truncated(&'static str),
    /// The stream failed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
}

/// The whole event in one buffer, ready for a single write. Fails when a part exceeds its
/// limit (a reader would close the connection on it).
pub fn encode(topic: &[u8], payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    if topic.len() > MAX_TOPIC {
        return Err(FrameError::TopicTooLong(topic.len()));
    }
    if payload.len() > MAX_PAYLOAD {
        return Err(FrameError::PayloadTooLarge(payload.len() as u64));
    }
    let mut out = Vec::with_capacity(6 + topic.len() + payload.len());
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    out.extend_from_slice(topic);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Reads the next event; `None` when the stream ends cleanly between events. The payload
/// buffer grows only as bytes arrive, so an announced 16 MiB costs nothing until sent.
pub async fn read_event<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<Event>, FrameError> {
    let mut len = [0u8; 2];
    if !read_full(reader, &mut len, "topic length").await? {
        return Ok(None);
    }
    let topic_len = usize::from(u16::from_be_bytes(len));
    if topic_len > MAX_TOPIC {
        return Err(FrameError::TopicTooLong(topic_len));
    }
    let mut topic = vec![0u8; topic_len];
    if !read_full(reader, &mut topic, "topic").await? {
        return Err(FrameError::Truncated("topic"));
    }
    let mut len = [0u8; 4];
    if !read_full(reader, &mut len, "payload length").await? {
        return Err(FrameError::Truncated("payload length"));
    }
    let payload_len = u32::from_be_bytes(len);
    if payload_len as usize > MAX_PAYLOAD {
        return Err(FrameError::PayloadTooLarge(u64::from(payload_len)));
    }
    let mut payload = Vec::new();
    (&mut *reader)
        .take(u64::from(payload_len))
        .read_to_end(&mut payload)
        .await?;
    if payload.len() != payload_len as usize {
        return Err(FrameError::Truncated("payload"));
    }
    Ok(Some(Event { topic, payload }))
}

/// Fills `buf`. `Ok(false)`: the stream ended before the first byte; ending later is
/// [`FrameError::Truncated`].
async fn read_full<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
    what: &'static str,
) -> Result<bool, FrameError> {
    let mut got = 0;
    while got < buf.len() {
        let n = reader.read(&mut buf[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(false)
            } else {
                Err(FrameError::Truncated(what))
            };
        }
        got += n;
    }
    Ok(true)
}

/// Writes one event with a single write call, then flushes.
pub async fn write_event<W: AsyncWrite + Unpin>(
    writer: &mut W,
    topic: &[u8],
    payload: &[u8],
) -> Result<(), FrameError> {
    let bytes = encode(topic, payload)?;
    writer.write_all(&bytes).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<Option<Event>, FrameError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(read_event(&mut &bytes[..]))
    }

    #[test]
    fn spec_byte_layout() {
        assert_eq!(
            encode(b"chat", b"hi").unwrap(),
            [0, 4, b'c', b'h', b'a', b't', 0, 0, 0, 2, b'h', b'i']
        );
        // The subscription event: a topic and an empty payload.
        assert_eq!(encode(b"*", b"").unwrap(), [0, 1, b'*', 0, 0, 0, 0]);
        assert_eq!(encode(b"", b"").unwrap(), [0, 0, 0, 0, 0, 0]);
        let long = encode(&[b'a'; 300], &[7; 70_000]).unwrap();
        assert_eq!(&long[..2], &[0x01, 0x2c]);
        assert_eq!(&long[302..306], &[0x00, 0x01, 0x11, 0x70]);
    }

    #[test]
    fn round_trip_and_clean_end() {
        let mut bytes = encode(b"t", b"one").unwrap();
        bytes.extend(encode(b"", b"").unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut r = &bytes[..];
            assert_eq!(
                read_event(&mut r).await.unwrap(),
                Some(Event::new("t", "one"))
            );
            assert_eq!(read_event(&mut r).await.unwrap(), Some(Event::default()));
            assert_eq!(read_event(&mut r).await.unwrap(), None);
        });
    }

    #[test]
    fn limits_are_enforced_both_ways() {
        assert!(encode(&[b'x'; MAX_TOPIC], b"").is_ok());
        assert!(matches!(
            encode(&[b'x'; MAX_TOPIC + 1], b""),
            Err(FrameError::TopicTooLong(1025))
        ));
        assert!(matches!(
            encode(b"t", &vec![0; MAX_PAYLOAD + 1]),
            Err(FrameError::PayloadTooLarge(_))
        ));
        // topic_len 1025 is refused before any topic byte is read.
        assert!(matches!(
            decode(&[0x04, 0x01]),
            Err(FrameError::TopicTooLong(1025))
        ));
        // payload_len 16 MiB + 1 is refused before any payload byte is read.
        let over = [0, 1, b't', 0x01, 0, 0, 1];
        let err = decode(&over).unwrap_err();
        assert!(matches!(err, FrameError::PayloadTooLarge(n) if n == MAX_PAYLOAD as u64 + 1));
        assert!(err.to_string().contains("16777216"), "{err}");
        // Exactly 16 MiB announced is allowed (and then truncated here).
        assert!(matches!(
            decode(&[0, 1, b't', 0x01, 0, 0, 0]),
            Err(FrameError::Truncated("payload"))
        ));
    }

    #[test]
    fn truncated_input_is_an_error_at_every_cut() {
        let bytes = encode(b"topic", b"payload").unwrap();
        assert_eq!(decode(&[]).unwrap(), None);
        for cut in 1..bytes.len() {
            assert!(
                matches!(decode(&bytes[..cut]), Err(FrameError::Truncated(_))),
                "cut at {cut}"
            );
        }
        assert_eq!(
            decode(&bytes).unwrap(),
            Some(Event::new("topic", "payload"))
        );
    }
}
