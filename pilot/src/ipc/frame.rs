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
/// Read straight into [`FrameDecoder::spare`] and [`FrameDecoder::commit`] what arrived (or
/// feed bytes from elsewhere with [`FrameDecoder::extend`]), then take complete messages with
/// [`FrameDecoder::next_message`]. Zero-length messages are skipped, as the protocol says.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    /// Initialised storage; bytes `start..end` are received and not yet taken.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for at least `min` more bytes, to read the socket into; then [`commit`](Self::commit)
    /// what was read.
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        // Reclaim consumed space before growing, so a long-lived stream stays small.
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && (self.start > MAX_MESSAGE || self.buf.len() - self.end < min) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < min {
            self.buf.resize(self.end + min, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Records that the first `n` bytes of [`spare`](Self::spare) were filled.
    pub fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Appends bytes received elsewhere.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.spare(bytes.len())[..bytes.len()].copy_from_slice(bytes);
        self.commit(bytes.len());
    }

    /// The next complete message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<&[u8]>, FrameError> {
        loop {
            let pending = &self.buf[self.start..self.end];
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
    fn reads_into_spare_room_across_message_boundaries() {
        let mut wire = Vec::new();
        for i in 0..50u8 {
            encode_message(0x06, &[&[i; 3000]], &mut wire).unwrap();
        }
        let mut decoder = FrameDecoder::new();
        let mut seen = Vec::new();
        // Odd read sizes: messages straddle reads, and the space is reclaimed as it goes.
        for piece in wire.chunks(7001) {
            let room = decoder.spare(4096);
            assert!(room.len() >= 4096);
            let n = piece.len().min(room.len());
            room[..n].copy_from_slice(&piece[..n]);
            decoder.commit(n);
            decoder.extend(&piece[n..]);
            while let Some(message) = decoder.next_message().unwrap() {
                seen.push(message.to_vec());
            }
        }
        assert_eq!(seen.len(), 50);
        for (i, message) in seen.iter().enumerate() {
            assert_eq!(message.len(), 3001);
            assert_eq!(message[0], 0x06);
            assert!(message[1..].iter().all(|b| *b == i as u8));
        }
        assert!(decoder.buf.len() < 64 << 10, "consumed space is reused");
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
