//! What pilotctl prints: the `--json` envelope or human text, and errors with a code and hint
//! (`spec/services.md` §9 rules 2-3).

use pilot::driver::DriverError;
use serde_json::{json, Value};
use std::fmt;
use std::io::Write;

/// The machine-readable error codes (the reference's, which scripts match on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Usage or parse errors.
    InvalidArgument,
    /// Resolution failures, missing files.
    NotFound,
    /// The daemon is already running.
    AlreadyExists,
    /// The daemon is not running.
    NotRunning,
    /// IPC or dial failures.
    ConnectionFailed,
    /// No answer in time.
    Timeout,
    /// Unexpected local errors.
    Internal,
    /// Task file I/O failures (task commands).
    InternalError,
    /// A task in the wrong status.
    InvalidState,
    /// `task accept` after the 60 s window.
    Expired,
}

impl Code {
    /// The code as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidArgument => "invalid_argument",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::NotRunning => "not_running",
            Code::ConnectionFailed => "connection_failed",
            Code::Timeout => "timeout",
            Code::Internal => "internal",
            Code::InternalError => "internal_error",
            Code::InvalidState => "invalid_state",
            Code::Expired => "expired",
        }
    }
}

/// A failed command: exit status 1 (2 for `invalid_argument` without `--json`), message and
/// hint on stderr.
#[derive(Debug)]
pub struct CliError {
    /// The error code.
    pub code: Code,
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// Print nothing (`daemon status --check`); only the exit status tells.
    pub silent: bool,
}

impl CliError {
    /// An error with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
            hint: None,
            silent: false,
        }
    }

    /// The same error, printed as nothing.
    pub fn silenced(mut self) -> Self {
        self.silent = true;
        self
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The exit status: 2 for a wrong command line in human mode (as the reference's usage
    /// errors), else 1; with `--json` every failure exits 1 (`spec/services.md` §9 rule 3).
    pub fn exit_status(&self, json_mode: bool) -> i32 {
        if self.code == Code::InvalidArgument && !json_mode {
            2
        } else {
            1
        }
    }

    /// An `invalid_argument` error with a hint to the command's usage.
    pub fn usage(command: &str, message: impl Into<String>) -> Self {
        let hint = match super::commands::find(command) {
            Some(spec) => format!("usage: pilotctl {} {}", spec.name, spec.args.join(" ")),
            None => "run 'pilotctl context' for the full command list".to_string(),
        };
        CliError::new(Code::InvalidArgument, message).hint(hint.trim_end().to_string())
    }

    /// A daemon error from `op`, classified.
    pub fn driver(err: DriverError) -> Self {
        let message = err.to_string();
        match err {
            DriverError::Connect { path, .. } => CliError::new(
                Code::NotRunning,
                format!("daemon is not running (no answer on {})", path.display()),
            )
            .hint("start the daemon with: pilotctl daemon start"),
            DriverError::NoAnswer { .. } => CliError::new(Code::Timeout, message).hint(
                "check the daemon's log, or restart it: pilotctl daemon stop; pilotctl daemon start",
            ),
            DriverError::Disconnected(_) => CliError::new(Code::ConnectionFailed, message)
                .hint("the daemon stopped or restarted; check it with: pilotctl daemon status"),
            DriverError::Daemon { .. } => CliError::new(Code::ConnectionFailed, message),
            DriverError::Malformed { .. } => CliError::new(Code::Internal, message)
                .hint("pilotctl and the daemon may be different versions"),
            DriverError::TooLarge { .. } => CliError::new(Code::InvalidArgument, message),
            DriverError::ListenerClosed(_) => CliError::new(Code::Internal, message),
        }
    }
}

impl From<DriverError> for CliError {
    fn from(err: DriverError) -> Self {
        CliError::driver(err)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// A command's result: the JSON payload and its human rendering.
pub struct Success {
    /// The `data` of the envelope.
    pub data: Value,
    /// What a person sees (`None`: the payload as indented JSON).
    pub human: Option<String>,
    /// Printed as it is in both modes, without an envelope (completion scripts).
    pub raw: bool,
}

impl Success {
    /// A result printed as `human` for people.
    pub fn new(data: Value, human: impl Into<String>) -> Self {
        Success {
            data,
            human: Some(human.into()),
            raw: false,
        }
    }

    /// A result printed as indented JSON for people too.
    pub fn json(data: Value) -> Self {
        Success {
            data,
            human: None,
            raw: false,
        }
    }

    /// A result that prints nothing (e.g. `daemon status --check`).
    pub fn silent() -> Self {
        Success {
            data: Value::Null,
            human: Some(String::new()),
            raw: false,
        }
    }

    /// A result printed as `text` in both modes (no envelope).
    pub fn raw(text: String) -> Self {
        Success {
            data: Value::Null,
            human: Some(text),
            raw: true,
        }
    }
}

/// Writes `text` and a newline, ignoring a closed pipe (`pilotctl context | head` must not
/// panic).
fn emit(mut out: impl Write, text: &str) {
    let _ = writeln!(out, "{text}");
}

/// Prints a success to stdout.
pub fn print_success(json_mode: bool, success: &Success) {
    if success.data.is_null() && success.human.as_deref() == Some("") {
        return;
    }
    let out = std::io::stdout().lock();
    if json_mode && !success.raw {
        emit(
            out,
            &json!({"data": success.data, "status": "ok"}).to_string(),
        );
    } else {
        match &success.human {
            Some(text) => emit(out, text.trim_end_matches('\n')),
            None => emit(
                out,
                &serde_json::to_string_pretty(&success.data).unwrap_or_default(),
            ),
        }
    }
}

/// Prints an error to stderr.
pub fn print_error(json_mode: bool, err: &CliError) {
    if err.silent {
        return;
    }
    let out = std::io::stderr().lock();
    if json_mode {
        let mut body = json!({
            "code": err.code.as_str(),
            "message": err.message,
            "status": "error",
        });
        if let Some(hint) = &err.hint {
            body["hint"] = Value::String(hint.clone());
        }
        emit(out, &body.to_string());
    } else {
        let mut text = format!("error: {}", err.message);
        if let Some(hint) = &err.hint {
            text.push_str(&format!("\nhint:  {hint}"));
        }
        emit(out, &text);
    }
}

/// Renders rows as an aligned table with a header; at most `limit` rows, then a note.
pub fn table(header: &[&str], rows: &[Vec<String>], limit: usize) -> String {
    let shown = &rows[..rows.len().min(limit)];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in shown {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in shown {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    if rows.len() > shown.len() {
        out.push_str(&format!(
            "... {} more (use --json for all)\n",
            rows.len() - shown.len()
        ));
    }
    out
}

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_unix_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(format_unix_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_unix_utc(1_768_480_496), "2026-01-15 12:34:56 UTC");
        assert_eq!(format_unix_utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn tables_align_and_truncate() {
        let rows = vec![
            vec!["1".to_string(), "alpha".to_string()],
            vec!["22".to_string(), "b".to_string()],
            vec!["3".to_string(), "c".to_string()],
        ];
        assert_eq!(
            table(&["ID", "NAME"], &rows, 2),
            "ID  NAME\n1   alpha\n22  b\n... 1 more (use --json for all)\n"
        );
    }
}
