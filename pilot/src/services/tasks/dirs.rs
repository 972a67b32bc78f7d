//! `$HOME/.pilot/tasks/{received,submitted,results}`: task files by id, result files confined
//! to `results/`. Directories are 0700 and files 0600; every write is a temporary file in the
//! same directory, fsynced, renamed over the target, and the directory fsynced, so a crash
//! leaves either the old or the new file, never a torn one.

use super::file::TaskFile;
use super::id;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Which copy of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Tasks other nodes gave this node.
    Received,
    /// Tasks this node gave others.
    Submitted,
}

impl Side {
    /// The folder name.
    pub fn dir_name(self) -> &'static str {
        match self {
            Side::Received => "received",
            Side::Submitted => "submitted",
        }
    }
}

/// The task folders under one base (`$HOME/.pilot/tasks`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskDirs {
    base: PathBuf,
}

/// Longest stored result file name, in bytes (id, `_` and the base name).
const MAX_RESULT_NAME: usize = 200;

impl TaskDirs {
    /// Folders under `base` (created on first write).
    pub fn new(base: impl Into<PathBuf>) -> Self {
        TaskDirs { base: base.into() }
    }

    /// `<home>/.pilot/tasks`.
    pub fn under_home(home: impl AsRef<Path>) -> Self {
        TaskDirs::new(home.as_ref().join(".pilot").join("tasks"))
    }

    /// The base folder.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The folder of `side`.
    pub fn dir(&self, side: Side) -> PathBuf {
        self.base.join(side.dir_name())
    }

    /// The results folder.
    pub fn results_dir(&self) -> PathBuf {
        self.base.join("results")
    }

    /// The path of task `task_id`'s file on `side`; refuses ids that are not task ids.
    pub fn task_path(&self, side: Side, task_id: &str) -> io::Result<PathBuf> {
        let task_id = id::check(task_id).map_err(invalid)?;
        Ok(self.dir(side).join(format!("{task_id}.json")))
    }

    /// Task `task_id` on `side`; `Ok(None)` when there is none.
    pub fn load(&self, side: Side, task_id: &str) -> io::Result<Option<TaskFile>> {
        let path = self.task_path(side, task_id)?;
        match fs::read(&path) {
            Ok(bytes) => TaskFile::from_json(&bytes).map(Some).map_err(invalid),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `task` on `side`, durably.
    pub fn save(&self, side: Side, task: &TaskFile) -> io::Result<PathBuf> {
        let path = self.task_path(side, &task.task_id)?;
        write_atomic(&self.dir(side), &path, &task.to_json())?;
        Ok(path)
    }

    /// Removes task `task_id` from `side`; nothing to remove is not an error.
    pub fn remove(&self, side: Side, task_id: &str) -> io::Result<()> {
        match fs::remove_file(self.task_path(side, task_id)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every readable task on `side`, in file-name order; unreadable files are skipped.
    pub fn list(&self, side: Side) -> io::Result<Vec<TaskFile>> {
        let dir = self.dir(side);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.strip_suffix(".json").is_some_and(id::is_valid))
            .collect();
        names.sort();
        Ok(names
            .iter()
            .filter_map(|n| fs::read(dir.join(n)).ok())
            .filter_map(|b| TaskFile::from_json(&b).ok())
            .collect())
    }

    /// Where a result called `filename` of task `task_id` goes: `results/<id>_<base name>`,
    /// the base name being the last path element with control characters removed, so no
    /// name can leave `results/` (`spec/services.md` §14 Q10). Empty names are refused.
    pub fn result_path(&self, task_id: &str, filename: &str) -> io::Result<PathBuf> {
        let task_id = id::check(task_id).map_err(invalid)?;
        let base = safe_base_name(filename)
            .ok_or_else(|| invalid(format!("unusable result file name {:?}", short(filename))))?;
        Ok(self.results_dir().join(format!("{task_id}_{base}")))
    }

    /// Writes a result file, durably.
    pub fn save_result(&self, task_id: &str, filename: &str, data: &[u8]) -> io::Result<PathBuf> {
        let path = self.result_path(task_id, filename)?;
        write_atomic(&self.results_dir(), &path, data)?;
        Ok(path)
    }
}

fn short(text: &str) -> String {
    text.chars().take(40).collect()
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.into())
}

/// The last `/`- or `\`-separated element of `name` without control characters, cut to a
/// length the file system takes; `None` when nothing usable is left (empty, `.`, `..`).
pub fn safe_base_name(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut clean: String = last.chars().filter(|c| !c.is_control()).collect();
    if clean.is_empty() || clean == "." || clean == ".." {
        return None;
    }
    let limit = MAX_RESULT_NAME - id::LEN - 1;
    if clean.len() > limit {
        // Keep the extension: it says what the file is.
        let ext = clean
            .rfind('.')
            .map(|i| clean[i..].to_string())
            .filter(|e| e.len() <= 16)
            .unwrap_or_default();
        let mut cut = limit - ext.len();
        while !clean.is_char_boundary(cut) {
            cut -= 1;
        }
        clean = format!("{}{ext}", &clean[..cut]);
    }
    Some(clean)
}

fn make_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Temp file in `dir`, fsync, rename over `path`, fsync `dir`. Files are 0600.
fn write_atomic(dir: &Path, path: &Path, data: &[u8]) -> io::Result<()> {
    make_dir(dir)?;
    // tempfile creates its files 0600.
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const ID: &str = "0123abcd-4567-89ef-0123-456789abcdef";

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn tasks_are_saved_privately_and_listed_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = TaskDirs::under_home(tmp.path());
        let task = TaskFile::new(ID, "d", "a", "b", std::time::UNIX_EPOCH);
        let path = dirs.save(Side::Received, &task).unwrap();
        assert_eq!(
            path,
            tmp.path()
                .join(".pilot/tasks/received")
                .join(format!("{ID}.json"))
        );
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dirs.dir(Side::Received)), 0o700);
        assert_eq!(dirs.load(Side::Received, ID).unwrap(), Some(task.clone()));
        assert_eq!(dirs.load(Side::Submitted, ID).unwrap(), None);
        fs::write(dirs.dir(Side::Received).join("junk.json"), b"{").unwrap();
        assert_eq!(dirs.list(Side::Received).unwrap(), vec![task]);
        let leftovers: Vec<_> = fs::read_dir(dirs.dir(Side::Received))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn hostile_ids_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = TaskDirs::new(tmp.path());
        for bad in ["../x", "/etc/passwd", "", "a\0b"] {
            assert!(dirs.task_path(Side::Received, bad).is_err(), "{bad:?}");
            assert!(dirs.load(Side::Received, bad).is_err());
            assert!(dirs.save_result(bad, "r.txt", b"x").is_err());
        }
    }

    #[test]
    fn result_names_stay_in_results() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = TaskDirs::new(tmp.path());
        let results = dirs.results_dir();
        for (name, stored) in [
            ("report.txt", "report.txt"),
            ("../x", "x"),
            ("/etc/passwd", "passwd"),
            ("/../../../../.bashrc", ".bashrc"),
            ("a\\..\\b.md", "b.md"),
            ("ev\0il.txt", "evil.txt"),
        ] {
            let p = dirs.result_path(ID, name).unwrap();
            assert_eq!(p, results.join(format!("{ID}_{stored}")), "{name:?}");
        }
        for bad in ["", "..", ".", "dir/", "\0"] {
            assert!(dirs.result_path(ID, bad).is_err(), "{bad:?}");
        }
        let long = format!("{}.txt", "x".repeat(10_000));
        let p = dirs.result_path(ID, &long).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.len() <= MAX_RESULT_NAME && name.ends_with(".txt"),
            "{name}"
        );
        let written = dirs.save_result(ID, "../../x.txt", b"data").unwrap();
        assert_eq!(written.parent().unwrap(), results);
        assert_eq!(fs::read(&written).unwrap(), b"data");
        assert_eq!(mode(&written), 0o600);
    }
}
