//! Per-command flag parsing (`spec/services.md` §9 rule 5): `--key=value`, `--key value` when
//! the next argument does not start with `--`, bare `--key` meaning `true`; everything else is
//! positional. Unlike the reference, a boolean flag only takes the next argument if it is a
//! boolean literal, so `--clear foo` does not swallow `foo`, and unknown flags are errors.

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

fn is_bool_literal(text: &str) -> bool {
    matches!(text, "true" | "false" | "1" | "0")
}

impl Args {
    /// Parses `args` for `command`, which accepts `known` flags.
    pub fn parse(command: &str, args: &[String], known: &[Flag]) -> Result<Args, CliError> {
        let mut positional = Vec::new();
        let mut flags = BTreeMap::new();
        let mut iter = args.iter().peekable();
        while let Some(arg) = iter.next() {
            if arg == "--" {
                positional.extend(iter.by_ref().cloned());
                break;
            }
            let Some(body) = arg.strip_prefix("--") else {
                positional.push(arg.clone());
                continue;
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let flag = known.iter().find(|f| f.name == name).ok_or_else(|| {
                CliError::usage(command, format!("unknown flag --{name} for '{command}'"))
            })?;
            let value = match inline {
                Some(v) => v,
                None => match iter.peek() {
                    Some(next)
                        if !next.starts_with("--") && (!flag.boolean || is_bool_literal(next)) =>
                    {
                        iter.next().cloned().unwrap_or_default()
                    }
                    _ => "true".to_string(),
                },
            };
            flags.insert(name.to_string(), value);
        }
        Ok(Args {
            command: command.to_string(),
            positional,
            flags,
        })
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

    fn parse(args: &[&str], known: &[Flag]) -> Result<Args, CliError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Args::parse("test", &args, known)
    }

    #[test]
    fn the_three_flag_forms() {
        let known = [value("timeout"), value("data"), switch("check")];
        let a = parse(
            &["x", "--timeout=5s", "--data", "hi there", "y", "--check"],
            &known,
        )
        .unwrap();
        assert_eq!(a.positional, vec!["x", "y"]);
        assert_eq!(a.string("data"), Some("hi there"));
        assert_eq!(
            a.duration("timeout", Duration::ZERO).unwrap(),
            Duration::from_secs(5)
        );
        assert!(a.bool("check"));
    }

    #[test]
    fn value_flag_before_another_flag_is_true_and_booleans_do_not_swallow_positionals() {
        let known = [value("data"), switch("check")];
        let a = parse(&["--data", "--check", "pos"], &known).unwrap();
        assert_eq!(a.string("data"), Some("true"));
        assert!(a.bool("check"));
        assert_eq!(a.positional, vec!["pos"]);
        let a = parse(&["--check", "false"], &known).unwrap();
        assert!(!a.bool("check"));
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let err = parse(&["--nope"], &[]).unwrap_err();
        assert!(err.message.contains("unknown flag --nope"));
        let a = parse(
            &["--timeout", "soon", "--count", "x"],
            &[value("timeout"), value("count")],
        )
        .unwrap();
        assert!(a.duration("timeout", Duration::ZERO).is_err());
        assert!(a.u64("count", 1).is_err());
        assert!(a.expect_positional(1, 1).is_err());
    }
}
