//! What a `send-message` or `send-file` carries: given text, or bytes drawn from the scenario
//! seed and the send's tag, so a run replays them and the judge can draw them again to compare
//! with what the receiver stored. Files are generated as they are read, never held whole.

use crate::world::host_seed;
use pilot::net::{seeded_rng, Rng};
use rand_core::Rng as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Characters of generated text: no quote, no backslash, so it is also a JSON string's body.
const ALPHABET: &[u8; 64] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .";

/// The generator of the send tagged `tag`.
fn generator(seed: u64, tag: &str) -> Rng {
    seeded_rng(host_seed(seed, &format!("payload/{tag}"), 0))
}

/// `size` bytes of printable text for the send tagged `tag`.
pub(crate) fn text(seed: u64, tag: &str, size: usize) -> Vec<u8> {
    let mut rng = generator(seed, tag);
    let mut bytes = vec![0u8; size];
    rng.fill_bytes(&mut bytes);
    for b in &mut bytes {
        *b = ALPHABET[usize::from(*b) % ALPHABET.len()];
    }
    bytes
}

/// A JSON document of exactly `size` bytes (at least 2): one string of generated text.
pub(crate) fn json(seed: u64, tag: &str, size: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(size);
    bytes.push(b'"');
    bytes.extend(text(seed, tag, size.saturating_sub(2)));
    bytes.push(b'"');
    bytes
}

/// The bytes of the file sent by the send tagged `tag`, generated as they are read.
pub(crate) struct FileBytes {
    rng: Rng,
    left: u64,
}

impl FileBytes {
    /// The `size` bytes of the file of send `tag`.
    pub fn new(seed: u64, tag: &str, size: u64) -> Self {
        FileBytes {
            rng: generator(seed, tag),
            left: size,
        }
    }

    /// Fills `buf` with the next bytes; returns how many (0 at the end).
    pub fn fill(&mut self, buf: &mut [u8]) -> usize {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        self.rng.fill_bytes(&mut buf[..n]);
        self.left -= n as u64;
        n
    }

    /// Where `stored` first differs from these bytes (`None`: identical, same length).
    pub fn first_difference(mut self, stored: &[u8]) -> Option<u64> {
        let mut buf = vec![0u8; 64 << 10];
        let mut offset = 0usize;
        loop {
            let n = self.fill(&mut buf);
            if n == 0 {
                return (offset != stored.len()).then_some(offset as u64);
            }
            let theirs = stored.get(offset..).unwrap_or_default();
            let theirs = &theirs[..n.min(theirs.len())];
            if let Some(i) = buf[..theirs.len()]
                .iter()
                .zip(theirs)
                .position(|(a, b)| a != b)
            {
                return Some((offset + i) as u64);
            }
            if theirs.len() < n {
                return Some((offset + theirs.len()) as u64);
            }
            offset += n;
        }
    }
}

impl AsyncRead for FileBytes {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let n = this.fill(buf.initialize_unfilled());
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_replay_from_seed_and_tag_and_differ_otherwise() {
        assert_eq!(text(1, "m", 100), text(1, "m", 100));
        assert_ne!(text(1, "m", 100), text(2, "m", 100));
        assert_ne!(text(1, "m", 100), text(1, "n", 100));
        let doc = json(1, "m", 50);
        assert_eq!(doc.len(), 50);
        assert!(serde_json::from_slice::<serde_json::Value>(&doc).is_ok());
    }

    #[test]
    fn file_bytes_compare_exactly() {
        let mut all = vec![0u8; 200_000];
        assert_eq!(FileBytes::new(3, "f", 200_000).fill(&mut all), 200_000);
        assert_eq!(FileBytes::new(3, "f", 200_000).first_difference(&all), None);
        let mut changed = all.clone();
        changed[150_001] ^= 1;
        assert_eq!(
            FileBytes::new(3, "f", 200_000).first_difference(&changed),
            Some(150_001)
        );
        assert_eq!(
            FileBytes::new(3, "f", 200_000).first_difference(&all[..1000]),
            Some(1000)
        );
        all.push(0);
        assert_eq!(
            FileBytes::new(3, "f", 200_000).first_difference(&all),
            Some(200_000)
        );
    }
}
