//! `context`: a machine-readable description of pilotctl for agents (`spec/services.md` §12).

use super::COMMANDS;
use crate::pilotctl::args::Args;
use crate::pilotctl::output::{CliError, Success};
use serde_json::{json, Map, Value};

/// `context`.
pub fn context(args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let mut commands = Map::new();
    for spec in COMMANDS {
        commands.insert(
            spec.name.to_string(),
            json!({"args": spec.args, "description": spec.description, "returns": spec.returns}),
        );
    }
    let data = json!({
        "version": "1.2",
        "commands": Value::Object(commands),
        "error_codes": {
            "invalid_argument": "bad arguments or flags: fix the command line; do not retry as is",
            "not_found": "a hostname, node or file was not found: check the name",
            "already_exists": "the daemon is already running: use it, or stop it first",
            "not_running": "the daemon is not running: start it with `pilotctl daemon start`",
            "connection_failed": "the daemon or the peer refused or failed: retry later",
            "timeout": "no answer in time: retry with a longer --timeout",
            "internal": "unexpected local error: check the message and logs",
        },
        "global_flags": {"--json": "machine-readable output: {\"data\":…,\"status\":\"ok\"} on stdout, errors as JSON on stderr"},
        "environment": {
            "PILOT_SOCKET": format!("daemon socket (default: {})", pilot::driver::default_socket_path().display()),
            "PILOT_REGISTRY": "registry for `daemon start` (default: 34.71.57.205:9000)",
            "PILOT_DAEMON_BIN": "pilot-daemon executable for `daemon start` (default: next to pilotctl, then PATH)",
        },
        "config_file": "~/.pilot/config.json",
    });
    Ok(Success::json(data))
}
