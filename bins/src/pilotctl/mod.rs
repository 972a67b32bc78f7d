//! `pilotctl`: drive the local pilot daemon from a shell or a script.
//!
//! Commands, flags and the `--json` envelope follow the reference CLI (`spec/services.md` §9-§12)
//! so scripts written for it keep working; `docs/PILOTCTL.md` lists what is implemented.

pub mod args;
pub mod commands;
pub mod config;
pub mod directory;
pub mod output;
pub mod parser;
pub mod progress;
pub mod target;

use output::{print_error, print_success, CliError, Code};
use pilot::driver::Driver;
use std::path::PathBuf;
use std::time::Duration;

/// How long connecting may take before the daemon counts as hung (the driver bounds the Hello
/// exchange itself; this also bounds a connect that never completes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The registry when neither `PILOT_REGISTRY` nor the config names one (the reference's).
pub const DEFAULT_REGISTRY: &str = "34.71.57.205:9000";
/// The beacon `init` and `daemon start` default to (as the reference's pilotctl).
pub const DEFAULT_BEACON: &str = "127.0.0.1:9001";

/// What every command gets: output mode and the environment's paths.
pub struct Ctx {
    /// `--json` was given.
    pub json: bool,
    home: Option<PathBuf>,
}

impl Ctx {
    /// The environment of this process.
    pub fn from_env(json: bool) -> Self {
        Ctx {
            json,
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
        }
    }

    /// `$HOME/.pilot`.
    pub fn pilot_dir(&self) -> Result<PathBuf, CliError> {
        self.home.as_ref().map(|h| h.join(".pilot")).ok_or_else(|| {
            CliError::new(Code::Internal, "HOME is not set").hint("set HOME to your home directory")
        })
    }

    /// The daemon socket: `PILOT_SOCKET` > config `socket` > the SDK's default.
    pub fn socket(&self) -> PathBuf {
        if let Some(env) = std::env::var_os("PILOT_SOCKET").filter(|v| !v.is_empty()) {
            return PathBuf::from(env);
        }
        if let Some(socket) = self.config_string("socket") {
            return PathBuf::from(socket);
        }
        pilot::driver::default_socket_path()
    }

    /// The registry for direct registry commands: `PILOT_REGISTRY` > config `registry` >
    /// [`DEFAULT_REGISTRY`].
    pub fn registry(&self) -> String {
        std::env::var("PILOT_REGISTRY")
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| self.config_string("registry"))
            .unwrap_or_else(|| DEFAULT_REGISTRY.into())
    }

    /// A string value of the config file, if set and non-empty.
    pub fn config_string(&self, key: &str) -> Option<String> {
        let dir = self.pilot_dir().ok()?;
        config::load(&dir)
            .get(key)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// Connects to the daemon.
    pub async fn driver(&self) -> Result<Driver, CliError> {
        let socket = self.socket();
        match tokio::time::timeout(CONNECT_TIMEOUT, Driver::connect(&socket)).await {
            Ok(result) => result.map_err(CliError::from),
            Err(_) => Err(CliError::new(
                Code::Timeout,
                format!("the daemon on {} does not answer", socket.display()),
            )
            .hint("check the daemon's log, or restart it: pilotctl daemon stop; pilotctl daemon start")),
        }
    }

    /// Prints a line of a command's running output on stdout (human mode only), at once, as
    /// ping(8) prints each probe as it comes back.
    pub fn say(&self, text: &str) {
        use std::io::Write;
        if !self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }

    /// Prints a progress note on stderr (human mode only).
    pub fn note(&self, text: &str) {
        if !self.json {
            eprintln!("{text}");
        }
    }
}

/// Prints the top-level help on stderr (no arguments: `spec/services.md` §9 rule 4).
fn print_usage() {
    use std::io::Write;
    let help = parser::command().render_help().to_string();
    let _ = writeln!(
        std::io::stderr().lock(),
        "usage: {}\n\n{}",
        parser::USAGE,
        help.trim_end()
    );
}

/// Runs pilotctl with `args` (without the program name); returns the exit status.
pub fn run(args: Vec<String>) -> i32 {
    if args.is_empty() {
        print_usage();
        return 2;
    }
    let normalized = parser::normalize(&args);
    let json = normalized.json;
    let (spec, args) = match parser::parse(&normalized) {
        Ok(parser::Parsed::Run { spec, args }) => (spec, args),
        Ok(parser::Parsed::Print(text)) => {
            print_success(false, &output::Success::raw(text));
            return 0;
        }
        Err(err) => {
            print_error(json, &err);
            return err.exit_status(json);
        }
    };
    let ctx = Ctx::from_env(json);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            print_error(
                json,
                &CliError::new(Code::Internal, format!("cannot start the runtime: {e}")),
            );
            return 1;
        }
    };
    match runtime.block_on(commands::dispatch(&ctx, spec, &args)) {
        Ok(success) => {
            print_success(json, &success);
            0
        }
        Err(err) => {
            print_error(json, &err);
            err.exit_status(json)
        }
    }
}
