//! Persistence through the storage seam: an append-only change log plus snapshot compaction.
//!
//! A commit appends one checksummed record with the commit's changes (cost: the size of the
//! change, never of the state). When the log outgrows the snapshot, [`Store::compact`] writes
//! a fresh snapshot with [`Storage::replace`] and removes the log, so the amortised cost stays
//! proportional to the change. The snapshot records the last sequence number it includes, so a
//! crash between writing it and removing the log replays nothing twice.
//!
//! Loading is loud: a snapshot that does not parse, or a log damaged anywhere but its torn
//! tail, is an error, and the files are left exactly as they were for the operator.

pub mod log;
pub mod snapshot;

use crate::net::{Storage, StorageError};
use crate::registry::model::{Change, Data};
use log::{LogError, Record};
use snapshot::{Snapshot, SnapshotError};

/// Blob name of the snapshot.
pub const SNAPSHOT: &str = "registry.json";
/// Blob name of the change log.
pub const LOG: &str = "registry.log";
/// The log is compacted once it is larger than the snapshot and at least this big.
pub const MIN_COMPACT_BYTES: u64 = 256 << 10;

/// Why the store cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The snapshot is damaged.
    #[error("{SNAPSHOT} cannot be loaded (left untouched): {0}")]
    Snapshot(#[from] SnapshotError),
    /// The change log is damaged before its tail.
    #[error("{LOG} cannot be loaded (left untouched): {0}")]
    Log(#[from] LogError),
}

/// The durable side of a registry.
pub struct Store<S: Storage> {
    storage: S,
    seq: u64,
    log_bytes: u64,
    snapshot_bytes: u64,
    min_compact: u64,
    written: u64,
}

/// What [`Store::open`] found.
#[derive(Debug)]
pub struct Loaded {
    /// The state.
    pub data: Data,
    /// Log records replayed on top of the snapshot.
    pub replayed: usize,
    /// Bytes of a torn log tail that were dropped (an unacknowledged commit).
    pub torn_bytes: usize,
}

impl<S: Storage> Store<S> {
    /// Loads the state from `storage`, or an empty state if there is none. On success the log
    /// has been folded into a fresh snapshot, so later appends never follow a torn tail.
    pub fn open(storage: S, now_ms: u64) -> Result<(Store<S>, Loaded), PersistError> {
        let snap = match storage.read(SNAPSHOT)? {
            Some(bytes) => Some(Snapshot::parse(&bytes)?),
            None => None,
        };
        let base_seq = snap.as_ref().map_or(0, |s| s.seq);
        let mut data = match &snap {
            Some(s) => s.to_data(now_ms)?,
            None => Data::new(now_ms),
        };
        let decoded = match storage.read(LOG)? {
            Some(bytes) => log::decode(&bytes)?,
            None => log::Decoded::default(),
        };
        let mut seq = base_seq;
        let mut replayed = 0;
        for record in &decoded.records {
            if record.seq <= base_seq {
                continue;
            }
            for change in &record.changes {
                if let Change::Node(n) = change {
                    // Q-28 for the log: a bad record refuses the load instead of vanishing.
                    n.to_node(now_ms).map_err(SnapshotError::from)?;
                }
                data.apply(change);
            }
            seq = record.seq;
            replayed += 1;
        }
        let mut store = Store {
            storage,
            seq,
            log_bytes: 0,
            snapshot_bytes: 0,
            min_compact: MIN_COMPACT_BYTES,
            written: 0,
        };
        if snap.is_none() || !decoded.records.is_empty() || decoded.torn_bytes > 0 {
            store.compact(&data)?;
        } else if let Some(s) = &snap {
            store.snapshot_bytes = s.to_bytes().len() as u64;
        }
        Ok((
            store,
            Loaded {
                data,
                replayed,
                torn_bytes: decoded.torn_bytes,
            },
        ))
    }

    /// Sets the smallest log size that triggers compaction (tests use tiny values).
    pub fn set_min_compact_bytes(&mut self, bytes: u64) {
        self.min_compact = bytes;
    }

    /// Appends one commit durably. Empty batches cost nothing.
    pub fn commit(&mut self, changes: &[Change]) -> Result<(), PersistError> {
        if changes.is_empty() {
            return Ok(());
        }
        let record = Record {
            seq: self.seq + 1,
            changes: changes.to_vec(),
        };
        let bytes = log::encode(&record);
        self.storage.append(LOG, &bytes)?;
        self.seq += 1;
        self.log_bytes += bytes.len() as u64;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Whether the log has grown enough to fold into a snapshot.
    pub fn needs_compaction(&self) -> bool {
        self.log_bytes >= self.min_compact.max(self.snapshot_bytes)
    }

    /// Writes a snapshot of `data` (which must include every committed change) and drops the
    /// log.
    pub fn compact(&mut self, data: &Data) -> Result<(), PersistError> {
        self.compact_bytes(Snapshot::from_data(data, self.seq).to_bytes())
    }

    /// Like [`Store::compact`] with a snapshot already serialised (so the caller can build it
    /// while holding its lock and write it after releasing it). The snapshot must have been
    /// taken at the current sequence number ([`Store::seq`]).
    pub fn compact_bytes(&mut self, bytes: Vec<u8>) -> Result<(), PersistError> {
        self.storage.replace(SNAPSHOT, &bytes)?;
        self.storage.remove(LOG)?;
        self.snapshot_bytes = bytes.len() as u64;
        self.written += bytes.len() as u64;
        self.log_bytes = 0;
        Ok(())
    }

    /// The sequence number of the last commit.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Bytes written since opening (log records and snapshots).
    pub fn bytes_written(&self) -> u64 {
        self.written
    }
}
