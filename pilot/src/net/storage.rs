//! Persistent state behind a seam.
//!
//! A [`Storage`] holds named blobs. Two operations change them, each durable when it returns:
//! [`Storage::replace`] (the whole blob, atomically: write a temporary file, fsync it, rename it
//! over the old one, fsync the directory) and [`Storage::append`] (bytes at the end, fsynced).
//! Appending lets a component log each change instead of rewriting all of its state.
//!
//! [`DiskStorage`] is the real thing. [`MemStorage`] keeps blobs in memory and models a crash:
//! [`MemStorage::crash`] keeps only what was made durable, and [`MemStorage::crash_after_steps`]
//! stops the machine between two low-level steps (write, fsync, rename) so tests can prove that
//! no acknowledged change is lost whatever the crash point.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Errors of a [`Storage`].
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The name is not a plain file name (empty, a path, `.` or `..`).
    #[error("invalid storage name {0:?}: use a plain file name")]
    InvalidName(String),
    /// The operating system refused an operation.
    #[error("storage I/O on {name:?}: {source}")]
    Io {
        /// The blob the operation was on.
        name: String,
        /// What the operating system said.
        source: io::Error,
    },
    /// A simulated crash stopped the operation part-way.
    #[error("simulated crash during {op} of {name:?}")]
    Crashed {
        /// The operation that was interrupted.
        op: &'static str,
        /// The blob it was on.
        name: String,
    },
}

/// Named blobs that survive restarts.
pub trait Storage: Send + Sync + 'static {
    /// The whole content of `name`, or `None` if there is no such blob.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Replaces `name` with `bytes`, atomically and durably.
    fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Appends `bytes` to `name` (creating it) and makes them durable.
    fn append(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Removes `name`, durably; removing a missing blob is not an error.
    fn remove(&self, name: &str) -> Result<(), StorageError>;
}

impl<S: Storage + ?Sized> Storage for Arc<S> {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        (**self).read(name)
    }
    fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        (**self).replace(name, bytes)
    }
    fn append(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        (**self).append(name, bytes)
    }
    fn remove(&self, name: &str) -> Result<(), StorageError> {
        (**self).remove(name)
    }
}

fn check_name(name: &str) -> Result<(), StorageError> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.ends_with(".tmp");
    if plain {
        Ok(())
    } else {
        Err(StorageError::InvalidName(name.to_string()))
    }
}

/// Blobs as files in one directory, created with mode 0700; files are written with mode 0600.
#[derive(Clone, Debug)]
pub struct DiskStorage {
    dir: PathBuf,
}

impl DiskStorage {
    /// Opens (creating if needed) the directory `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let dir = dir.into();
        let io_err = |source| StorageError::Io {
            name: dir.display().to_string(),
            source,
        };
        create_private_dir(&dir).map_err(io_err)?;
        Ok(DiskStorage { dir })
    }

    /// The directory the blobs live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(name: &str) -> impl FnOnce(io::Error) -> StorageError + '_ {
        move |source| StorageError::Io {
            name: name.to_string(),
            source,
        }
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

/// Creates `dir` and its parents; the last component gets mode 0700 on Unix.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

impl Storage for DiskStorage {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_name(name)?;
        match fs::read(self.dir.join(name)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::io(name)(e)),
        }
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        check_name(name)?;
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let result = (|| {
            let mut file = private_file_options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            self.sync_dir()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(Self::io(name))
    }

    fn append(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        check_name(name)?;
        let path = self.dir.join(name);
        let existed = path.exists();
        (|| {
            let mut file = private_file_options()
                .append(true)
                .create(true)
                .open(&path)?;
            file.write_all(bytes)?;
            file.sync_data()?;
            if !existed {
                self.sync_dir()?;
            }
            Ok(())
        })()
        .map_err(Self::io(name))
    }

    fn remove(&self, name: &str) -> Result<(), StorageError> {
        check_name(name)?;
        match fs::remove_file(self.dir.join(name)) {
            Ok(()) => self.sync_dir().map_err(Self::io(name)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::io(name)(e)),
        }
    }
}

/// Blobs in memory, with the durability of a disk that can crash.
///
/// Clones share the same blobs, so a component restarted after [`MemStorage::crash`] with a
/// clone of the same storage finds exactly what a real disk would have kept.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    inner: Arc<Mutex<MemDisk>>,
}

#[derive(Debug, Default)]
struct MemDisk {
    /// What survives a crash.
    durable: BTreeMap<String, Vec<u8>>,
    /// Low-level steps left before a simulated crash; `None` = no crash planned.
    steps_left: Option<u64>,
    /// Set once the planned crash happened: every later operation fails until `restart`.
    crashed: bool,
    /// Low-level steps taken so far.
    steps: u64,
}

impl MemDisk {
    /// Takes one low-level step; false when the machine crashes before it completes.
    fn step(&mut self) -> bool {
        if self.crashed {
            return false;
        }
        if let Some(left) = self.steps_left.as_mut() {
            if *left == 0 {
                self.crashed = true;
                return false;
            }
            *left -= 1;
        }
        self.steps += 1;
        true
    }
}

impl MemStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Plans a crash: the operation that would take low-level step number `steps + 1` from now
    /// stops before that step, leaving the blobs as a real disk would after power loss there.
    pub fn crash_after_steps(&self, steps: u64) {
        let mut disk = self.lock();
        disk.steps_left = Some(steps);
    }

    /// Low-level steps taken so far (to size a sweep of crash points).
    pub fn steps_taken(&self) -> u64 {
        self.lock().steps
    }

    /// Whether a planned crash has happened.
    pub fn has_crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Simulates power loss now: every later operation fails until [`MemStorage::restart`].
    pub fn crash(&self) {
        self.lock().crashed = true;
    }

    /// Brings the machine back after a crash; blobs are what was durable.
    pub fn restart(&self) {
        let mut disk = self.lock();
        disk.crashed = false;
        disk.steps_left = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemDisk> {
        // A panic while holding this lock cannot leave the map half-updated: every mutation
        // below is a single insert or remove. Recover the guard rather than poison callers.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn crashed(op: &'static str, name: &str) -> StorageError {
        StorageError::Crashed {
            op,
            name: name.to_string(),
        }
    }
}

impl Storage for MemStorage {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_name(name)?;
        let disk = self.lock();
        if disk.crashed {
            return Err(Self::crashed("read", name));
        }
        Ok(disk.durable.get(name).cloned())
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        check_name(name)?;
        let mut disk = self.lock();
        // Steps: write the temporary file, fsync it, rename it over the old one. The temporary
        // file never becomes visible under `name`, so a crash before the rename keeps the old
        // content whole, and a crash after it keeps the new content whole.
        for _ in 0..3 {
            if !disk.step() {
                return Err(Self::crashed("replace", name));
            }
        }
        disk.durable.insert(name.to_string(), bytes.to_vec());
        Ok(())
    }

    fn append(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        check_name(name)?;
        let mut disk = self.lock();
        // Steps: write the first half, write the rest, fsync. A crash after a partial write
        // leaves a torn tail on disk, as a real one may; readers must detect and drop it.
        let half = bytes.len() / 2;
        if !disk.step() {
            return Err(Self::crashed("append", name));
        }
        disk.durable
            .entry(name.to_string())
            .or_default()
            .extend_from_slice(&bytes[..half]);
        if !disk.step() {
            return Err(Self::crashed("append", name));
        }
        disk.durable
            .entry(name.to_string())
            .or_default()
            .extend_from_slice(&bytes[half..]);
        if !disk.step() {
            return Err(Self::crashed("append", name));
        }
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<(), StorageError> {
        check_name(name)?;
        let mut disk = self.lock();
        if !disk.step() {
            return Err(Self::crashed("remove", name));
        }
        disk.durable.remove(name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(storage: &dyn Storage) {
        assert_eq!(storage.read("state").unwrap(), None);
        storage.replace("state", b"one").unwrap();
        assert_eq!(storage.read("state").unwrap().unwrap(), b"one");
        storage.replace("state", b"two").unwrap();
        assert_eq!(storage.read("state").unwrap().unwrap(), b"two");
        storage.append("log", b"ab").unwrap();
        storage.append("log", b"cd").unwrap();
        assert_eq!(storage.read("log").unwrap().unwrap(), b"abcd");
        storage.remove("log").unwrap();
        storage.remove("log").unwrap();
        assert_eq!(storage.read("log").unwrap(), None);
        for bad in ["", ".", "..", "a/b", "x.tmp"] {
            assert!(matches!(
                storage.replace(bad, b""),
                Err(StorageError::InvalidName(_))
            ));
        }
    }

    #[test]
    fn disk_storage_behaves() {
        let dir = tempfile::tempdir().unwrap();
        let storage = DiskStorage::open(dir.path().join("store")).unwrap();
        exercise(&storage);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            storage.replace("secret", b"x").unwrap();
            let mode = fs::metadata(storage.dir().join("secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = fs::metadata(storage.dir()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }

    #[test]
    fn mem_storage_behaves() {
        exercise(&MemStorage::new());
    }

    #[test]
    fn replace_is_all_or_nothing_at_every_crash_point() {
        for crash_at in 0..3 {
            let storage = MemStorage::new();
            storage.replace("state", b"old").unwrap();
            storage.crash_after_steps(crash_at);
            assert!(storage.replace("state", b"new").is_err());
            storage.restart();
            assert_eq!(storage.read("state").unwrap().unwrap(), b"old");
        }
        let storage = MemStorage::new();
        storage.crash_after_steps(3);
        storage.replace("state", b"new").unwrap();
        assert_eq!(storage.read("state").unwrap().unwrap(), b"new");
    }

    #[test]
    fn append_crash_can_tear_the_tail_but_never_the_head() {
        let storage = MemStorage::new();
        storage.append("log", b"head").unwrap();
        storage.crash_after_steps(1);
        assert!(storage.append("log", b"tail").is_err());
        assert!(storage.has_crashed());
        assert!(
            storage.read("log").is_err(),
            "a crashed machine reads nothing"
        );
        storage.restart();
        assert_eq!(storage.read("log").unwrap().unwrap(), b"headta");
    }
}
