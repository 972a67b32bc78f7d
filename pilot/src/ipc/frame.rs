//! IPC framing: a big-endian u32 length, then that many bytes of message (at most 1 MiB).

use super::message::{Command, Event};

/// Largest message either side accepts.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Why a byte stream is no longer a valid IPC stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A length prefix above [`MAX_MESSAGE`].
    #[error("IPC message of {0} bytes exceeds the 1 MiB limit")]
    TooLarge(usize),
}

/// Cuts a byte stream into messages without copying more than once.
///
/// Feed received bytes with [`FrameDecoder::extend`], then take complete messages with
/// [`FrameDecoder::next_message`]. Zero-length messages are skipped, as the protocol says.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the socket.
    pub fn extend(&mut self, bytes: &[u8]) {
        // Reclaim consumed space before growing, so a long-lived stream stays small.
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > MAX_MESSAGE {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<&[u8]>, FrameError> {
        loop {
            let pending = &self.buf[self.start..];
            if pending.len() < 4 {
                return Ok(None);
            }
            let len = u32::from_be_bytes([pending[0], pending[1], pending[2], pending[3]]) as usize;
            if len > MAX_MESSAGE {
                return Err(FrameError::TooLarge(len));
            }
            if pending.len() < 4 + len {
                return Ok(None);
            }
            let from = self.start + 4;
            self.start = from + len;
            if len > 0 {
                return Ok(Some(&self.buf[from..from + len]));
            }
        }
    }
}

/// Appends a framed message with `code` and `payload` to `out`.
pub fn encode_message(code: u8, payload: &[&[u8]], out: &mut Vec<u8>) -> Result<(), FrameError> {
    let len = 1 + payload.iter().map(|p| p.len()).sum::<usize>();
    if len > MAX_MESSAGE {
        return Err(FrameError::TooLarge(len));
    }
    out.reserve(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.push(code);
    for part in payload {
        out.extend_from_slice(part);
    }
    Ok(())
}

impl Command {
    /// Appends this command, framed, to `out`.
    pub fn encode_framed(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let mut body = Vec::new();
        self.encode(&mut body);
        encode_message(body[0], &[&body[1..]], out)
    }
}

impl Event {
    /// Appends this event, framed, to `out`.
    pub fn encode_framed(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let mut body = Vec::new();
        self.encode(&mut body);
        encode_message(body[0], &[&body[1..]], out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_joined_frames() {
        let mut wire = Vec::new();
        encode_message(0x0D, &[], &mut wire).unwrap();
        wire.extend_from_slice(&[0, 0, 0, 0]); // an empty message, skipped
        encode_message(0x01, &[&[0x1F, 0x90]], &mut wire).unwrap();
        let mut decoder = FrameDecoder::new();
        let mut seen = Vec::new();
        for byte in &wire {
            decoder.extend(std::slice::from_ref(byte));
            while let Some(message) = decoder.next_message().unwrap() {
                seen.push(message.to_vec());
            }
        }
        assert_eq!(seen, vec![vec![0x0D], vec![0x01, 0x1F, 0x90]]);
    }

    #[test]
    fn oversized_length_is_an_error() {
        let mut decoder = FrameDecoder::new();
        decoder.extend(&((MAX_MESSAGE as u32) + 1).to_be_bytes());
        assert_eq!(
            decoder.next_message(),
            Err(FrameError::TooLarge(MAX_MESSAGE + 1))
        );
        let big = vec![0u8; MAX_MESSAGE];
        assert!(encode_message(0x06, &[&big], &mut Vec::new()).is_err());
    }
}
