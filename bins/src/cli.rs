//! Command lines that accept what the reference binaries accept.
//!
//! The reference binaries take single-dash long flags (`-registry host:port`) and a `-config`
//! JSON file whose keys fill in every flag not given on the command line (the flag's name, or
//! the name with `-` replaced by `_`). [`prepare_args`] rewrites such a command line into the
//! double-dash form clap parses, with config values appended, so scripts and config files
//! written for the reference keep working with ours.

use serde_json::Value;
use std::ffi::OsString;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// A config file that cannot be used.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read(std::path::PathBuf, std::io::Error),
    /// The file is not a JSON object.
    Parse(std::path::PathBuf, String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read(path, e) => {
                write!(f, "cannot read config file {}: {e}", path.display())
            }
            ConfigError::Parse(path, e) => write!(
                f,
                "config file {} is not a JSON object of flag values: {e}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Rewrites `-flag` to `--flag` for every known long flag, so both spellings work.
pub fn normalize_flags(args: Vec<OsString>, known: &[&str]) -> Vec<OsString> {
    args.into_iter()
        .enumerate()
        .map(|(i, arg)| {
            let Some(text) = arg.to_str() else { return arg };
            if i == 0 || text.starts_with("--") || !text.starts_with('-') {
                return arg;
            }
            let name = text[1..].split('=').next().unwrap_or_default();
            if known.contains(&name) {
                OsString::from(format!("-{text}"))
            } else {
                arg
            }
        })
        .collect()
}

/// The flag names given on a (normalized) command line.
fn given_flags(args: &[OsString]) -> Vec<String> {
    args.iter()
        .filter_map(|a| a.to_str())
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or_default().to_string())
        .collect()
}

/// The value of `--config` on a normalized command line, if any.
fn config_path(args: &[OsString]) -> Option<String> {
    let mut iter = args.iter().filter_map(|a| a.to_str());
    while let Some(arg) = iter.next() {
        if let Some(value) = arg.strip_prefix("--config=") {
            return Some(value.to_string());
        }
        if arg == "--config" {
            return iter.next().map(str::to_string);
        }
    }
    None
}

/// Renders a JSON value as a flag value: strings as they are, numbers and booleans in their
/// text form; other types are not flag values.
fn flag_value(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Normalizes the flags, then appends values from the `--config` file (if one is named) for
/// every known flag the command line does not give. `bool_flags` are appended as `--name` when
/// true and omitted when false.
pub fn prepare_args(
    args: Vec<OsString>,
    known: &[&str],
    bool_flags: &[&str],
) -> Result<Vec<OsString>, ConfigError> {
    let mut args = normalize_flags(args, known);
    let Some(path) = config_path(&args) else {
        return Ok(args);
    };
    let path = Path::new(&path).to_path_buf();
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read(path.clone(), e))?;
    let config: serde_json::Map<String, Value> =
        serde_json::from_str(&text).map_err(|e| ConfigError::Parse(path.clone(), e.to_string()))?;
    let given = given_flags(&args);
    for flag in known {
        if *flag == "config" || given.iter().any(|g| g == flag) {
            continue;
        }
        let value = config
            .get(*flag)
            .or_else(|| config.get(&flag.replace('-', "_")));
        let Some(value) = value.and_then(flag_value) else {
            continue;
        };
        if bool_flags.contains(flag) {
            if value == "true" {
                args.push(format!("--{flag}").into());
            }
        } else {
            args.push(format!("--{flag}={value}").into());
        }
    }
    Ok(args)
}

/// Parses a duration: Go syntax (`1m30s`, `500ms`, `2h`) or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return if secs.is_finite() && secs >= 0.0 {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(format!("invalid duration {text:?}"))
        };
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("invalid duration {text:?}: missing unit (e.g. 30s)"))?;
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => return Err(format!("invalid duration {text:?}: unknown unit {unit:?}")),
        };
        total += Duration::from_secs_f64(number * scale);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn single_dash_long_flags_are_accepted() {
        let out = normalize_flags(
            os(&[
                "prog",
                "-registry",
                "h:1",
                "-log-level=debug",
                "-x",
                "--beacon",
                "b",
                "-",
            ]),
            &["registry", "log-level", "beacon"],
        );
        assert_eq!(
            out,
            os(&[
                "prog",
                "--registry",
                "h:1",
                "--log-level=debug",
                "-x",
                "--beacon",
                "b",
                "-"
            ])
        );
    }

    #[test]
    fn config_fills_flags_not_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"registry":"r:9000","log_level":"debug","public":true,"encrypt":false,
                "listen":":4000","tags":["x"],"syn-rate-limit":50}"#,
        )
        .unwrap();
        let known = [
            "config",
            "registry",
            "log-level",
            "public",
            "encrypt",
            "listen",
            "tags",
            "syn-rate-limit",
        ];
        let args = os(&[
            "prog",
            "-config",
            path.to_str().unwrap(),
            "--listen",
            ":5000",
        ]);
        let out = prepare_args(args, &known, &["public", "encrypt"]).unwrap();
        let text: Vec<_> = out.iter().map(|a| a.to_str().unwrap()).collect();
        assert!(text.contains(&"--registry=r:9000"));
        assert!(text.contains(&"--log-level=debug"));
        assert!(text.contains(&"--public"));
        assert!(!text.iter().any(|a| a.starts_with("--encrypt")));
        assert!(text.contains(&"--syn-rate-limit=50"));
        assert!(
            !text.iter().any(|a| a.starts_with("--tags")),
            "arrays are not flag values"
        );
        assert!(!text.contains(&"--listen=:4000"), "the command line wins");
    }

    #[test]
    fn bad_config_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let err = prepare_args(
            os(&["p", "--config", missing.to_str().unwrap()]),
            &["config"],
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("cannot read config file"));
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "[1,2]").unwrap();
        let err = prepare_args(
            os(&["p", "--config", bad.to_str().unwrap()]),
            &["config"],
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a JSON object"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        for bad in ["", "s", "10x", "-1", "abc", "1m-"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
