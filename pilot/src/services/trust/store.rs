//! The trust file, `trust.json` beside the identity file (`spec/services.md` §6.8).
//!
//! ```json
//! {
//!   "trusted": [{"node_id": 7, "public_key": "<b64>", "approved_at": "2026-01-15T12:34:56Z",
//!                "mutual": true, "network": 3}],
//!   "pending": [{"node_id": 9, "public_key": "<b64>", "justification": "…",
//!                "received_at": "2026-01-15T12:35:00Z"}],
//!   "outgoing": [{"node_id": 11, "sent_at": "2026-01-15T12:36:00Z"}]
//! }
//! ```
//!
//! The reference's readers ignore `outgoing`; ours keeps it so a restart does not forget which
//! approvals it is waiting for. The file goes through the [`Storage`] seam (atomic replace,
//! mode 0600). A file that cannot be read is an error, never silently replaced.

use super::book::{PendingRequest, TrustBook, TrustedPeer};
use crate::crypto::{from_base64, to_base64};
use crate::net::{Storage, StorageError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The blob name in the storage.
pub const TRUST_FILE: &str = "trust.json";

/// Why the trust file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustStoreError {
    /// Reading or writing failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The file is not a trust file; it is left untouched.
    #[error("trust file is corrupt ({0}); fix or move it away, it was not modified")]
    Corrupt(String),
}

#[derive(Serialize, Deserialize)]
struct File {
    trusted: Option<Vec<TrustedRecord>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pending: Vec<PendingRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    outgoing: Vec<OutgoingRecord>,
}

#[derive(Serialize, Deserialize)]
struct TrustedRecord {
    node_id: u32,
    #[serde(default)]
    public_key: String,
    approved_at: String,
    #[serde(default)]
    mutual: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    network: u16,
}

#[derive(Serialize, Deserialize)]
struct PendingRecord {
    node_id: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    public_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    justification: String,
    received_at: String,
}

#[derive(Serialize, Deserialize)]
struct OutgoingRecord {
    node_id: u32,
    sent_at: String,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

/// RFC 3339 text of Unix seconds, in UTC.
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Unix seconds of RFC 3339 text (any offset).
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| format!("bad time {text:?}: {e}"))
}

fn key_text(key: &Option<[u8; 32]>) -> String {
    key.map(|k| to_base64(&k)).unwrap_or_default()
}

fn parse_key(node: u32, text: &str) -> Result<Option<[u8; 32]>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    from_base64::<32>(text, "public_key")
        .map(Some)
        .map_err(|e| format!("node {node}: bad public_key: {e}"))
}

/// Renders the book as the trust file's bytes.
pub fn encode(book: &TrustBook) -> Vec<u8> {
    let trusted: Vec<_> = book
        .trusted()
        .iter()
        .map(|(&node_id, t)| TrustedRecord {
            node_id,
            public_key: key_text(&t.public_key),
            approved_at: rfc3339(t.approved_at),
            mutual: t.mutual,
            network: t.network,
        })
        .collect();
    let file = File {
        trusted: (!trusted.is_empty()).then_some(trusted),
        pending: book
            .pending()
            .iter()
            .map(|(&node_id, p)| PendingRecord {
                node_id,
                public_key: key_text(&p.public_key),
                justification: p.justification.clone(),
                received_at: rfc3339(p.received_at),
            })
            .collect(),
        outgoing: book
            .outgoing()
            .iter()
            .map(|(&node_id, &at)| OutgoingRecord {
                node_id,
                sent_at: rfc3339(at),
            })
            .collect(),
    };
    serde_json::to_vec_pretty(&file).expect("the trust file always serializes")
}

/// Reads a book for node `own_node` from the trust file's bytes.
pub fn decode(own_node: u32, bytes: &[u8]) -> Result<TrustBook, TrustStoreError> {
    let corrupt = TrustStoreError::Corrupt;
    let file: File = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut trusted = BTreeMap::new();
    for t in file.trusted.unwrap_or_default() {
        let record = TrustedPeer {
            public_key: parse_key(t.node_id, &t.public_key).map_err(corrupt)?,
            approved_at: parse_rfc3339(&t.approved_at).map_err(corrupt)?,
            mutual: t.mutual,
            network: t.network,
        };
        trusted.insert(t.node_id, record);
    }
    let mut pending = BTreeMap::new();
    for p in file.pending {
        let record = PendingRequest {
            public_key: parse_key(p.node_id, &p.public_key).map_err(corrupt)?,
            justification: p.justification,
            received_at: parse_rfc3339(&p.received_at).map_err(corrupt)?,
        };
        pending.insert(p.node_id, record);
    }
    let mut outgoing = BTreeMap::new();
    for o in file.outgoing {
        outgoing.insert(o.node_id, parse_rfc3339(&o.sent_at).map_err(corrupt)?);
    }
    Ok(TrustBook::from_parts(own_node, trusted, pending, outgoing))
}

/// Loads the book from `storage`; an absent file is an empty book.
pub fn load(storage: &dyn Storage, own_node: u32) -> Result<TrustBook, TrustStoreError> {
    match storage.read(TRUST_FILE)? {
        Some(bytes) => decode(own_node, &bytes),
        None => Ok(TrustBook::new(own_node)),
    }
}

/// Writes the book to `storage`, atomically.
pub fn save(storage: &dyn Storage, book: &TrustBook) -> Result<(), TrustStoreError> {
    Ok(storage.replace(TRUST_FILE, &encode(book))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::MemStorage;

    const NOW: i64 = 1_768_480_496;

    #[test]
    fn round_trip_through_storage() {
        let storage = MemStorage::new();
        let mut book = TrustBook::new(1);
        book.request(7, "hi", NOW).unwrap();
        book.on_accept(7, Some([3; 32]), NOW + 1);
        book.on_request(9, None, "please", NOW + 2);
        book.request(11, "", NOW + 3).unwrap();
        save(&storage, &book).unwrap();
        let loaded = load(&storage, 1).unwrap();
        assert_eq!(loaded, book);
        assert_eq!(load(&MemStorage::new(), 1).unwrap(), TrustBook::new(1));
    }

    #[test]
    fn reads_the_reference_format() {
        let text = r#"{
  "trusted": [{"node_id": 7, "public_key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
               "approved_at": "2026-01-15T12:34:56+01:00", "mutual": true, "network": 3}],
  "pending": [{"node_id": 9, "justification": "…", "received_at": "2026-01-15T12:35:00+01:00"}]
}"#;
        let book = decode(1, text.as_bytes()).unwrap();
        assert!(book.is_trusted(7));
        assert_eq!(book.trusted()[&7].network, 3);
        assert_eq!(
            book.trusted()[&7].approved_at,
            parse_rfc3339("2026-01-15T11:34:56Z").unwrap()
        );
        assert_eq!(book.pending()[&9].public_key, None);
        let empty = decode(1, br#"{"trusted": null}"#).unwrap();
        assert!(empty.trusted().is_empty());
    }

    #[test]
    fn a_corrupt_file_is_an_error_and_is_left_alone() {
        let storage = MemStorage::new();
        storage.replace(TRUST_FILE, b"{not json").unwrap();
        assert!(matches!(
            load(&storage, 1),
            Err(TrustStoreError::Corrupt(_))
        ));
        assert_eq!(storage.read(TRUST_FILE).unwrap().unwrap(), b"{not json");
        for bad in [
            r#"{"trusted":[{"node_id":7,"public_key":"AAAA","approved_at":"2026-01-15T12:34:56Z"}]}"#,
            r#"{"trusted":[{"node_id":7,"approved_at":"yesterday"}]}"#,
            r#"{"trusted":[{"node_id":-7,"approved_at":"2026-01-15T12:34:56Z"}]}"#,
            r#"[]"#,
        ] {
            assert!(
                matches!(decode(1, bad.as_bytes()), Err(TrustStoreError::Corrupt(_))),
                "{bad}"
            );
        }
    }
}
