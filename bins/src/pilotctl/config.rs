//! `$HOME/.pilot/config.json`: a flat JSON object of settings (`spec/services.md` §9 rule 8).
//! An unreadable or invalid file reads as empty, as in the reference.

use super::output::{CliError, Code};
use serde_json::{Map, Value};
use std::path::Path;

/// The config object in `dir` (empty if missing or invalid).
pub fn load(dir: &Path) -> Map<String, Value> {
    std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// Sets (or, with `None`, removes) `key` and writes the file back (dir 0700).
pub fn update(dir: &Path, key: &str, value: Option<&str>) -> Result<(), CliError> {
    let mut config = load(dir);
    match value {
        Some(v) => config.insert(key.to_string(), Value::String(v.to_string())),
        None => config.remove(key),
    };
    let text = serde_json::to_string_pretty(&config).unwrap_or_else(|_| "{}".into());
    create_private_dir(dir)?;
    let path = dir.join("config.json");
    let tmp = dir.join("config.json.tmp");
    std::fs::write(&tmp, text + "\n")
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            CliError::new(
                Code::Internal,
                format!("cannot write {}: {e}", path.display()),
            )
        })
}

/// Creates `dir` (and parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            CliError::new(
                Code::Internal,
                format!("cannot create {}: {e}", dir.display()),
            )
        })
}
