//! The change log: one record per commit, framed as `len u32 BE | crc32 u32 BE | JSON`.
//!
//! A record holds every change of one commit, so a commit is atomic on disk. A crash while
//! appending leaves a torn tail: an incomplete last record, or a complete-length last record
//! whose checksum fails. That tail was never acknowledged and is dropped. Anything wrong
//! *before* the last record is corruption and refuses the load.

use crate::registry::model::Change;
use serde::{Deserialize, Serialize};

/// One committed batch of changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the log; strictly increasing.
    pub seq: u64,
    /// The changes, applied in order.
    pub changes: Vec<Change>,
}

/// Largest record accepted when reading (a replicated whole-state reset can be large).
pub const MAX_RECORD: usize = 1 << 30;

/// Why a log cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogError {
    /// A record before the tail is damaged.
    #[error("change log corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// Where the bad record starts.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Encodes a record.
pub fn encode(record: &Record) -> Vec<u8> {
    let body = serde_json::to_vec(record).expect("change records always serialise");
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The records of a log, and whether a torn tail was dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Whole records, in order.
    pub records: Vec<Record>,
    /// Bytes of a torn tail that were ignored (0 if none).
    pub torn_bytes: usize,
}

/// Decodes a whole log.
pub fn decode(bytes: &[u8]) -> Result<Decoded, LogError> {
    let mut out = Decoded::default();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let torn = |out: &mut Decoded| out.torn_bytes = rest.len();
        if rest.len() < 8 {
            torn(&mut out);
            break;
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_RECORD {
            return Err(LogError::Corrupt {
                offset: at,
                reason: format!("record length {len} exceeds {MAX_RECORD}"),
            });
        }
        let Some(body) = rest.get(8..8 + len) else {
            torn(&mut out);
            break;
        };
        let last = 8 + len == rest.len();
        if crc32fast::hash(body) != crc {
            if last {
                torn(&mut out);
                break;
            }
            return Err(LogError::Corrupt {
                offset: at,
                reason: "checksum mismatch".into(),
            });
        }
        let record: Record = serde_json::from_slice(body).map_err(|e| LogError::Corrupt {
            offset: at,
            reason: format!("record is not a change batch: {e}"),
        })?;
        if out.records.last().is_some_and(|r| r.seq >= record.seq) {
            return Err(LogError::Corrupt {
                offset: at,
                reason: format!("sequence {} does not increase", record.seq),
            });
        }
        out.records.push(record);
        at += 8 + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64) -> Record {
        Record {
            seq,
            changes: vec![Change::NextNode { next: seq as u32 }],
        }
    }

    #[test]
    fn torn_tails_are_dropped_corruption_is_not() {
        let mut log = encode(&rec(1));
        let second = encode(&rec(2));
        log.extend_from_slice(&second);
        let whole = decode(&log).unwrap();
        assert_eq!(whole.records, vec![rec(1), rec(2)]);
        for cut in encode(&rec(1)).len()..log.len() {
            let d = decode(&log[..cut]).unwrap();
            assert_eq!(d.records, vec![rec(1)], "cut at {cut}");
            assert_eq!(d.torn_bytes, cut - encode(&rec(1)).len());
        }
        // Damage inside the first record is corruption.
        let mut bad = log.clone();
        bad[10] ^= 0x55;
        assert!(matches!(
            decode(&bad),
            Err(LogError::Corrupt { offset: 0, .. })
        ));
        // Damage inside the last record is a torn tail.
        let mut tail = log.clone();
        let n = tail.len() - 2;
        tail[n] ^= 0x55;
        assert_eq!(decode(&tail).unwrap().records, vec![rec(1)]);
        // Out-of-order sequence numbers are corruption.
        let mut swapped = second;
        swapped.extend_from_slice(&encode(&rec(1)));
        assert!(decode(&swapped).is_err());
    }
}
