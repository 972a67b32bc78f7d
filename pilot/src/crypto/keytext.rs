//! Keys and signatures as text (`spec/wire.md` §5.1): standard base64 with padding.
//!
//! The identity file and the registry's JSON carry Ed25519 public keys (44 characters),
//! private keys (88) and signatures (88) this way. Like Go's `base64.StdEncoding`, decoding
//! skips `\r` and `\n` and otherwise accepts only the canonical padded form.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Why a text key or signature could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyTextError {
    /// Not valid standard padded base64.
    #[error("{what} is not valid base64 (standard alphabet, '=' padding): {reason}")]
    Base64 {
        /// What was being decoded.
        what: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// Valid base64, but of the wrong length.
    #[error("{what} must decode to {expected} bytes, got {got}")]
    Length {
        /// What was being decoded.
        what: &'static str,
        /// Bytes required.
        expected: usize,
        /// Bytes decoded.
        got: usize,
    },
}

/// Encodes bytes as standard padded base64.
pub fn to_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard padded base64 that must hold exactly `N` bytes.
///
/// `what` names the value in the error ("public_key", "signature", ...).
pub fn from_base64<const N: usize>(
    text: &str,
    what: &'static str,
) -> Result<[u8; N], KeyTextError> {
    // Go's decoder silently drops CR and LF; other whitespace is an error there too.
    let decoded = if text.contains(['\r', '\n']) {
        let cleaned: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
        STANDARD.decode(cleaned)
    } else {
        STANDARD.decode(text)
    }
    .map_err(|e| KeyTextError::Base64 {
        what,
        reason: e.to_string(),
    })?;
    decoded
        .as_slice()
        .try_into()
        .map_err(|_| KeyTextError::Length {
            what,
            expected: N,
            got: decoded.len(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lengths() {
        let key = [0xABu8; 32];
        let text = to_base64(&key);
        assert_eq!(text.len(), 44);
        assert_eq!(from_base64::<32>(&text, "key"), Ok(key));
        assert_eq!(to_base64(&[1u8; 64]).len(), 88);
        assert_eq!(
            from_base64::<64>(&text, "key"),
            Err(KeyTextError::Length {
                what: "key",
                expected: 64,
                got: 32
            })
        );
    }

    #[test]
    fn go_decoder_rules() {
        let text = to_base64(&[7u8; 32]);
        let wrapped = format!("{}\r\n{}\n", &text[..20], &text[20..]);
        assert_eq!(from_base64::<32>(&wrapped, "key"), Ok([7u8; 32]));
        // Unpadded, URL-safe alphabet and spaces are all refused, as in Go's StdEncoding.
        assert!(from_base64::<32>(text.trim_end_matches('='), "key").is_err());
        assert!(from_base64::<3>("-_-_", "key").is_err());
        assert!(from_base64::<32>(&format!(" {text}"), "key").is_err());
    }
}
