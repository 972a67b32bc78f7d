//! A command's parsed arguments, as the handlers read them, and the flag declarations of the
//! command table. The command line itself is parsed by clap (`parser.rs`); this is the
//! typed view with the checks every command shares (counts, durations, integers).

use super::output::CliError;
use std::collections::BTreeMap;
use std::time::Duration;

/// A flag a command accepts.
#[derive(Clone, Copy, Debug)]
pub struct Flag {
    /// Name without dashes.
    pub name: &'static str,
    /// Whether it is a boolean switch.
    pub boolean: bool,
}

/// A value flag.
pub const fn value(name: &'static str) -> Flag {
    Flag {
        name,
        boolean: false,
    }
}

/// A boolean flag.
pub const fn switch(name: &'static str) -> Flag {
    Flag {
        name,
        boolean: true,
    }
}

/// A command's parsed arguments.
#[derive(Debug)]
pub struct Args {
    command: String,
    /// Arguments that are not flags, in order.
    pub positional: Vec<String>,
    flags: BTreeMap<String, String>,
}

impl Args {
    /// The arguments of `command`: its positionals in order and the flags given (by name,
    /// without dashes; a switch given bare is `"true"`).
    pub fn new(command: &str, positional: Vec<String>, flags: BTreeMap<String, String>) -> Self {
        Args {
            command: command.to_string(),
            positional,
            flags,
        }
    }

    /// Checks the number of positional arguments.
    pub fn expect_positional(&self, min: usize, max: usize) -> Result<(), CliError> {
        let n = self.positional.len();
        if n < min {
            return Err(CliError::usage(
                &self.command,
                format!("'{}' needs more arguments", self.command),
            ));
        }
        if n > max {
            return Err(CliError::usage(
                &self.command,
                format!(
                    "unexpected argument {:?} for '{}'",
                    self.positional[max], self.command
                ),
            ));
        }
        Ok(())
    }

    /// Positional argument `i`, if given.
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.positional.get(i).map(String::as_str)
    }

    /// A string flag.
    pub fn string(&self, name: &str) -> Option<&str> {
        self.flags.get(name).map(String::as_str)
    }

    /// A boolean flag: true for `true`, `1` or an empty value.
    pub fn bool(&self, name: &str) -> bool {
        matches!(self.string(name), Some("true" | "1" | ""))
    }

    /// A duration flag (Go syntax or seconds).
    pub fn duration(&self, name: &str, default: Duration) -> Result<Duration, CliError> {
        match self.string(name) {
            None => Ok(default),
            Some(text) => crate::cli::parse_duration(text).map_err(|e| {
                CliError::usage(&self.command, format!("--{name}: {e}"))
                    .hint("durations look like 30s, 1m30s, 500ms, or a number of seconds")
            }),
        }
    }

    /// A non-negative integer flag.
    pub fn u64(&self, name: &str, default: u64) -> Result<u64, CliError> {
        match self.string(name) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| {
                CliError::usage(
                    &self.command,
                    format!("--{name} must be a whole number, got {text:?}"),
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(positional: &[&str], flags: &[(&str, &str)]) -> Args {
        Args::new(
            "test",
            positional.iter().map(|s| s.to_string()).collect(),
            flags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn typed_values() {
        let a = args(
            &["x"],
            &[("timeout", "5s"), ("check", "true"), ("off", "0")],
        );
        assert_eq!(
            a.duration("timeout", Duration::ZERO).unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(
            a.duration("absent", Duration::from_secs(7)).unwrap(),
            Duration::from_secs(7)
        );
        assert!(a.bool("check"));
        assert!(!a.bool("off"));
        assert!(!a.bool("absent"));
        assert_eq!(a.arg(0), Some("x"));
        assert!(a.expect_positional(1, 1).is_ok());
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let a = args(&[], &[("timeout", "soon"), ("count", "x")]);
        let err = a.duration("timeout", Duration::ZERO).unwrap_err();
        assert!(err.message.contains("--timeout"), "{err}");
        assert!(err.hint.is_some());
        let err = a.u64("count", 1).unwrap_err();
        assert!(err.message.contains("whole number"), "{err}");
        assert!(a.expect_positional(1, 1).is_err());
        assert!(args(&["a", "b"], &[]).expect_positional(0, 1).is_err());
    }
}
