//! Where data exchange puts what it receives: the [`Mailbox`] seam.
//!
//! Everything is durable before [`Mailbox::save_message`] or [`Spool::commit`] returns, and the
//! service ACKs only after that, so an ACKed message survives a crash of the daemon. Nothing is
//! ever replaced: a name that exists gets a `-2`, `-3`, .. suffix. [`DiskMailbox`] is the real
//! thing (`$HOME/.pilot/{inbox,received}`); [`MemMailbox`] keeps entries in memory for the
//! simulator and tests, with an optional capacity to play a full disk.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Free space a disk mailbox leaves untouched.
pub const DEFAULT_MIN_FREE: u64 = 256 << 20;
/// Collision suffixes tried before giving up on a name.
const MAX_SUFFIX: u32 = 1000;
/// The folder, inside `received/`, that holds files still arriving.
const INCOMING: &str = ".incoming";

/// Why something could not be stored.
#[derive(Debug, Error)]
pub enum MailboxError {
    /// The file system refused.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// What the operating system said.
        source: io::Error,
    },
    /// Storing would leave less free space than allowed.
    #[error("not enough space: {needed} bytes needed, {available} available")]
    Full {
        /// Bytes asked for (including the reserve).
        needed: u64,
        /// Bytes there are.
        available: u64,
    },
    /// Every candidate name is taken.
    #[error("no free name for {0}")]
    NoName(String),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> MailboxError {
    let what = what.into();
    move |source| MailboxError::Io { what, source }
}

/// Durable storage for inbox entries and received files.
pub trait Mailbox: Send + Sync + std::fmt::Debug + 'static {
    /// Stores the inbox entry `entry` as `<stem>.json` (or a suffixed name); returns where.
    fn save_message(&self, stem: &str, entry: &[u8]) -> Result<String, MailboxError>;
    /// Starts receiving a file of `size` bytes.
    fn begin_file(&self, size: u64) -> Result<Box<dyn Spool>, MailboxError>;
}

/// A file being received. Dropping it without [`Spool::commit`] discards it.
pub trait Spool: Send {
    /// Appends bytes.
    fn write(&mut self, data: &[u8]) -> Result<(), MailboxError>;
    /// Makes the file durable as `<stem><ext>` (or a suffixed name); returns its path.
    fn commit(self: Box<Self>, stem: &str, ext: &str) -> Result<String, MailboxError>;
}

/// Candidate names for `<stem><ext>`: the plain one, then `-2`, `-3`, ...
fn candidates<'a>(stem: &'a str, ext: &'a str) -> impl Iterator<Item = String> + 'a {
    std::iter::once(format!("{stem}{ext}"))
        .chain((2..=MAX_SUFFIX).map(move |n| format!("{stem}-{n}{ext}")))
}

/// The inbox and received folders under one base directory (`$HOME/.pilot`).
#[derive(Debug, Clone)]
pub struct DiskMailbox {
    inbox: PathBuf,
    received: PathBuf,
    min_free: u64,
}

impl DiskMailbox {
    /// A mailbox in `base/inbox` and `base/received`; folders are created (0700) when first
    /// needed. Files left half-received by a crash are removed.
    pub fn new(base: impl AsRef<Path>) -> Self {
        let base = base.as_ref();
        let mailbox = DiskMailbox {
            inbox: base.join("inbox"),
            received: base.join("received"),
            min_free: DEFAULT_MIN_FREE,
        };
        let _ = fs::remove_dir_all(mailbox.received.join(INCOMING));
        mailbox
    }

    /// Keeps at least `bytes` free on the file system (0: fill it).
    pub fn with_min_free(mut self, bytes: u64) -> Self {
        self.min_free = bytes;
        self
    }

    /// The inbox folder.
    pub fn inbox_dir(&self) -> &Path {
        &self.inbox
    }

    /// The received-files folder.
    pub fn received_dir(&self) -> &Path {
        &self.received
    }

    fn ensure_space(&self, dir: &Path, size: u64) -> Result<(), MailboxError> {
        let stat = rustix::fs::statvfs(dir).map_err(|e| MailboxError::Io {
            what: format!("free space of {}", dir.display()),
            source: e.into(),
        })?;
        let available = stat.f_bavail.saturating_mul(stat.f_frsize);
        let needed = size.saturating_add(self.min_free);
        if available < needed {
            return Err(MailboxError::Full { needed, available });
        }
        Ok(())
    }
}

fn make_dir(dir: &Path) -> Result<(), MailboxError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(format!("create {}", dir.display())))
}

fn sync_dir(dir: &Path) -> Result<(), MailboxError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(format!("sync {}", dir.display())))
}

/// Moves a finished temporary file to the first free candidate name, durably.
fn persist(
    mut file: tempfile::NamedTempFile,
    dir: &Path,
    stem: &str,
    ext: &str,
) -> Result<String, MailboxError> {
    file.as_file()
        .sync_all()
        .map_err(io_error(format!("sync {}", file.path().display())))?;
    for name in candidates(stem, ext) {
        let path = dir.join(&name);
        match file.persist_noclobber(&path) {
            Ok(_) => {
                sync_dir(dir)?;
                return Ok(path.display().to_string());
            }
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => file = e.file,
            Err(e) => return Err(io_error(format!("store {}", path.display()))(e.error)),
        }
    }
    Err(MailboxError::NoName(format!("{stem}{ext}")))
}

impl Mailbox for DiskMailbox {
    fn save_message(&self, stem: &str, entry: &[u8]) -> Result<String, MailboxError> {
        make_dir(&self.inbox)?;
        self.ensure_space(&self.inbox, entry.len() as u64)?;
        let mut file = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempfile_in(&self.inbox)
            .map_err(io_error(format!(
                "create a file in {}",
                self.inbox.display()
            )))?;
        file.write_all(entry)
            .map_err(io_error(format!("write {}", file.path().display())))?;
        persist(file, &self.inbox, stem, ".json")
    }

    fn begin_file(&self, size: u64) -> Result<Box<dyn Spool>, MailboxError> {
        let incoming = self.received.join(INCOMING);
        make_dir(&incoming)?;
        self.ensure_space(&incoming, size)?;
        let file = tempfile::Builder::new()
            .prefix("file-")
            .tempfile_in(&incoming)
            .map_err(io_error(format!("create a file in {}", incoming.display())))?;
        Ok(Box::new(DiskSpool {
            file,
            dir: self.received.clone(),
        }))
    }
}

struct DiskSpool {
    file: tempfile::NamedTempFile,
    dir: PathBuf,
}

impl Spool for DiskSpool {
    fn write(&mut self, data: &[u8]) -> Result<(), MailboxError> {
        self.file
            .write_all(data)
            .map_err(io_error(format!("write {}", self.file.path().display())))
    }

    fn commit(self: Box<Self>, stem: &str, ext: &str) -> Result<String, MailboxError> {
        // The temporary file is in received/.incoming: the rename stays on one file system.
        persist(self.file, &self.dir, stem, ext)
    }
}

/// Entries in memory: `inbox/<name>` and `received/<name>` to their bytes.
#[derive(Debug, Clone, Default)]
pub struct MemMailbox {
    inner: Arc<Mutex<MemInner>>,
}

#[derive(Debug, Default)]
struct MemInner {
    entries: BTreeMap<String, Vec<u8>>,
    /// Bytes the mailbox may hold in all; `None` for no limit.
    capacity: Option<u64>,
    used: u64,
}

impl MemMailbox {
    /// An empty mailbox without a size limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty mailbox that holds at most `bytes` (a small disk).
    pub fn with_capacity(bytes: u64) -> Self {
        let mailbox = Self::default();
        mailbox.lock().capacity = Some(bytes);
        mailbox
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every stored entry, in name order.
    pub fn entries(&self) -> Vec<(String, Vec<u8>)> {
        self.lock()
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn store(
        &self,
        folder: &str,
        stem: &str,
        ext: &str,
        bytes: Vec<u8>,
    ) -> Result<String, MailboxError> {
        let mut inner = self.lock();
        inner.reserve(bytes.len() as u64)?;
        let name = candidates(stem, ext)
            .map(|n| format!("{folder}/{n}"))
            .find(|n| !inner.entries.contains_key(n))
            .ok_or_else(|| MailboxError::NoName(format!("{stem}{ext}")))?;
        inner.used += bytes.len() as u64;
        inner.entries.insert(name.clone(), bytes);
        Ok(name)
    }
}

impl MemInner {
    fn reserve(&self, size: u64) -> Result<(), MailboxError> {
        match self.capacity {
            Some(capacity) if self.used.saturating_add(size) > capacity => {
                Err(MailboxError::Full {
                    needed: size,
                    available: capacity.saturating_sub(self.used),
                })
            }
            _ => Ok(()),
        }
    }
}

impl Mailbox for MemMailbox {
    fn save_message(&self, stem: &str, entry: &[u8]) -> Result<String, MailboxError> {
        self.store("inbox", stem, ".json", entry.to_vec())
    }

    fn begin_file(&self, size: u64) -> Result<Box<dyn Spool>, MailboxError> {
        self.lock().reserve(size)?;
        Ok(Box::new(MemSpool {
            mailbox: self.clone(),
            bytes: Vec::new(),
        }))
    }
}

struct MemSpool {
    mailbox: MemMailbox,
    bytes: Vec<u8>,
}

impl Spool for MemSpool {
    fn write(&mut self, data: &[u8]) -> Result<(), MailboxError> {
        self.mailbox
            .lock()
            .reserve((self.bytes.len() + data.len()) as u64)?;
        self.bytes.extend_from_slice(data);
        Ok(())
    }

    fn commit(self: Box<Self>, stem: &str, ext: &str) -> Result<String, MailboxError> {
        self.mailbox.store("received", stem, ext, self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_mailbox_never_overwrites_and_uses_private_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mailbox = DiskMailbox::new(dir.path()).with_min_free(0);
        let first = mailbox.save_message("TEXT-x", b"{}").unwrap();
        let second = mailbox.save_message("TEXT-x", b"{\"a\":1}").unwrap();
        assert!(first.ends_with("inbox/TEXT-x.json"), "{first}");
        assert!(second.ends_with("inbox/TEXT-x-2.json"), "{second}");
        assert_eq!(fs::read(&first).unwrap(), b"{}");
        let mode = fs::metadata(&first).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mode = fs::metadata(mailbox.inbox_dir())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);

        let mut spool = mailbox.begin_file(4).unwrap();
        spool.write(b"da").unwrap();
        spool.write(b"ta").unwrap();
        let path = spool.commit("f-1", ".bin").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"data");
        // An abandoned file leaves nothing behind.
        let mut spool = mailbox.begin_file(4).unwrap();
        spool.write(b"half").unwrap();
        drop(spool);
        let names: Vec<_> = fs::read_dir(mailbox.received_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}"); // the file and the empty .incoming folder
        assert!(fs::read_dir(mailbox.received_dir().join(INCOMING))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn disk_mailbox_refuses_what_would_eat_the_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let mailbox = DiskMailbox::new(dir.path()).with_min_free(u64::MAX / 2);
        assert!(matches!(
            mailbox.save_message("TEXT-x", b"{}"),
            Err(MailboxError::Full { .. })
        ));
        assert!(matches!(
            mailbox.begin_file(1),
            Err(MailboxError::Full { .. })
        ));
    }

    #[test]
    fn mem_mailbox_capacity_plays_a_full_disk() {
        let mailbox = MemMailbox::with_capacity(10);
        mailbox.save_message("a", b"12345").unwrap();
        let mut spool = mailbox.begin_file(5).unwrap();
        assert!(spool.write(b"123456").is_err());
        assert!(mailbox.save_message("b", b"123456").is_err());
        assert_eq!(mailbox.entries().len(), 1);
    }
}
