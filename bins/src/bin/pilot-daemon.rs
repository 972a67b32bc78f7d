//! `pilot-daemon`: the pilot node daemon.
//!
//! ```text
//! pilot-daemon -registry host:port [-beacon host:port] [-listen :0] [-socket PATH]
//!              [-identity PATH] [-hostname NAME] [-public] [-encrypt=false] [-config FILE] ...
//! ```
//!
//! Flags are the reference daemon's (`spec/services.md` §2.1), with one or two dashes; a
//! `-config` JSON file fills in every flag the command line does not give. SIGINT or SIGTERM
//! stops the daemon gracefully (FIN to peers, deregistration, socket removed).

use clap::{ArgAction, Parser};
use pilot::daemon::{self, DaemonConfig};
use pilot::net::{os_seeded_rng, DiskStorage, SystemClock, TokioNet};
use pilot::services::dataexchange::DiskMailbox;
use pilot_bins::cli::{parse_duration, prepare_args};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Every long flag (for the single-dash spelling and the config file).
const FLAGS: &[&str] = &[
    "config",
    "registry",
    "standby-registry",
    "beacon",
    "listen",
    "socket",
    "endpoint",
    "encrypt",
    "registry-tls",
    "registry-fingerprint",
    "identity",
    "owner",
    "keepalive",
    "idle-timeout",
    "peer-idle-expiry",
    "syn-rate-limit",
    "max-conns-per-port",
    "max-conns-total",
    "time-wait",
    "public",
    "hostname",
    "no-echo",
    "no-dataexchange",
    "no-eventstream",
    "no-tasksubmit",
    "webhook",
    "log-level",
    "log-format",
    "accept-plaintext",
];

#[derive(Parser, Debug)]
#[command(name = "pilot-daemon", version, about = "The pilot node daemon")]
struct Args {
    /// JSON config file; its keys fill in flags not given on the command line.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Registry address (host:port).
    #[arg(long, default_value = "34.71.57.205:9000")]
    registry: String,
    /// Standby registry to fail over to (host:port).
    #[arg(long, default_value = "")]
    standby_registry: String,
    /// Beacon address (host:port); "" disables hole punching and relay.
    #[arg(long, default_value = "34.71.57.205:9001")]
    beacon: String,
    /// UDP tunnel listen address.
    #[arg(long, default_value = ":0")]
    listen: String,
    /// IPC socket path (default: a per-user directory, see docs/SDK.md).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Fixed public endpoint (host:port); skips discovery.
    #[arg(long, default_value = "")]
    endpoint: String,
    /// Tunnel encryption.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = true, default_missing_value = "true")]
    encrypt: bool,
    /// Accept plaintext from peers without a key (Go peers run with -encrypt=false).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    accept_plaintext: bool,
    /// TLS to the registry (requires -registry-fingerprint).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    registry_tls: bool,
    /// SHA-256 pin of the registry certificate (hex).
    #[arg(long, default_value = "")]
    registry_fingerprint: String,
    /// Identity file (default ~/.pilot/identity.json; "" = a fresh identity every start).
    #[arg(long)]
    identity: Option<String>,
    /// Owner e-mail.
    #[arg(long, default_value = "")]
    owner: String,
    /// Heartbeat interval.
    #[arg(long, default_value = "30s")]
    keepalive: String,
    /// Idle connection timeout.
    #[arg(long, default_value = "120s")]
    idle_timeout: String,
    /// Forget a tunnel peer after this long without data (set up again on demand).
    #[arg(long, default_value = "10m")]
    peer_idle_expiry: String,
    /// SYNs per second in all.
    #[arg(long, default_value_t = 100)]
    syn_rate_limit: u32,
    /// Live inbound connections per port.
    #[arg(long, default_value_t = 1024)]
    max_conns_per_port: usize,
    /// Live inbound connections in all.
    #[arg(long, default_value_t = 4096)]
    max_conns_total: usize,
    /// TIME_WAIT duration.
    #[arg(long, default_value = "10s")]
    time_wait: String,
    /// Make this node resolvable by anyone.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    public: bool,
    /// Hostname to register.
    #[arg(long, default_value = "")]
    hostname: String,
    /// Disable the echo service (port 7).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    no_echo: bool,
    /// Disable data exchange (port 1001): messages and files into $HOME/.pilot.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    no_dataexchange: bool,
    /// Disable the event stream (port 1002): topic publish/subscribe.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    no_eventstream: bool,
    /// Disable task submit (port 1003). Our addition: the reference has no such flag.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    no_tasksubmit: bool,
    /// POST every event as JSON to this http:// or https:// URL.
    #[arg(long, default_value = "")]
    webhook: String,
    /// debug, info, warn or error.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// text or json.
    #[arg(long, default_value = "text")]
    log_format: String,
}

/// Resolves `host:port` (Go style: an empty host means every interface).
async fn address(flag: &str, text: &str) -> Result<SocketAddr, String> {
    let text = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_string()
    };
    let mut found = tokio::net::lookup_host(text.as_str())
        .await
        .map_err(|e| format!("-{flag} {text:?}: {e}"))?;
    found
        .next()
        .ok_or_else(|| format!("-{flag} {text:?}: no address"))
}

async fn optional_address(flag: &str, text: &str) -> Result<Option<SocketAddr>, String> {
    if text.is_empty() {
        Ok(None)
    } else {
        address(flag, text).await.map(Some)
    }
}

fn duration(flag: &str, text: &str, default: Duration) -> Result<Duration, String> {
    let d = parse_duration(text).map_err(|e| format!("-{flag}: {e}"))?;
    // The reference treats 0 as "use the default".
    Ok(if d.is_zero() { default } else { d })
}

/// `$HOME/.pilot`: identity, inbox, received files.
fn pilot_home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".pilot"))
}

fn default_identity() -> Option<PathBuf> {
    pilot_home().map(|home| home.join("identity.json"))
}

async fn run(args: Args) -> Result<(), String> {
    let registry = address("registry", &args.registry).await?;
    let mut config = DaemonConfig::new(registry);
    config.standby_registry = optional_address("standby-registry", &args.standby_registry).await?;
    config.beacon = optional_address("beacon", &args.beacon).await?;
    config.listen = address("listen", &args.listen).await?;
    config.endpoint = optional_address("endpoint", &args.endpoint).await?;
    config.encrypt = args.encrypt;
    config.accept_plaintext = args.accept_plaintext;
    config.public = args.public;
    config.hostname = args.hostname.clone();
    config.owner = args.owner.clone();
    config.keepalive = duration("keepalive", &args.keepalive, Duration::from_secs(30))?;
    config.idle_timeout = duration("idle-timeout", &args.idle_timeout, Duration::from_secs(120))?;
    config.peer_idle_expiry = duration(
        "peer-idle-expiry",
        &args.peer_idle_expiry,
        Duration::from_secs(600),
    )?;
    config.time_wait = duration("time-wait", &args.time_wait, Duration::from_secs(10))?;
    config.syn_rate_limit = if args.syn_rate_limit == 0 {
        100
    } else {
        args.syn_rate_limit
    };
    config.max_conns_per_port = if args.max_conns_per_port == 0 {
        1024
    } else {
        args.max_conns_per_port
    };
    config.max_conns_total = if args.max_conns_total == 0 {
        4096
    } else {
        args.max_conns_total
    };
    config.echo = !args.no_echo;
    config.eventstream = !args.no_eventstream;
    if !args.no_dataexchange {
        match pilot_home() {
            Some(home) => config.mailbox = Some(Arc::new(DiskMailbox::new(home))),
            None => tracing::warn!("HOME is not set: data exchange (port 1001) not started"),
        }
    }
    if !args.no_tasksubmit {
        match pilot_home() {
            Some(home) => {
                let dirs = pilot::services::tasks::TaskDirs::new(home.join("tasks"));
                config.tasks = Some(pilot::services::tasks::TaskConfig::new(dirs));
            }
            None => tracing::warn!("HOME is not set: task submit (port 1003) not started"),
        }
    }
    if args.registry_tls {
        if args.registry_fingerprint.is_empty() {
            return Err("-registry-tls needs -registry-fingerprint (the SHA-256 pin of the registry certificate)".into());
        }
        config.registry_tls_pin = Some(args.registry_fingerprint.to_ascii_lowercase());
    }
    pilot::services::webhook::check_url(&args.webhook).map_err(|e| format!("-webhook: {e}"))?;
    config.webhook = args.webhook.clone();

    let identity = match &args.identity {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => default_identity(),
    };
    let (storage_dir, name) = match &identity {
        Some(path) => {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| format!("-identity {}: not a file path", path.display()))?
                .to_string();
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), PathBuf::from);
            (dir, Some(name))
        }
        None => (std::env::temp_dir(), None),
    };
    config.identity = name;
    let storage = DiskStorage::open(&storage_dir)
        .map_err(|e| format!("identity directory {}: {e}", storage_dir.display()))?;

    let socket = args
        .socket
        .clone()
        .unwrap_or_else(pilot::driver::default_socket_path);
    // Fail before registering if another daemon already serves this socket.
    if tokio::net::UnixStream::connect(&socket).await.is_ok() {
        return Err(daemon::ipc::SocketError::InUse(socket).to_string());
    }

    let rng = os_seeded_rng().map_err(|e| format!("no OS randomness: {e}"))?;
    let running = daemon::start(TokioNet, storage, SystemClock, rng, config)
        .await
        .map_err(|e| e.to_string())?;
    let listener = daemon::ipc::bind(&socket)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(socket = %socket.display(), node_id = running.handle.node_id(),
        address = %running.handle.address(), tunnel = %running.tunnel_addr, "daemon running");
    let server = tokio::spawn(daemon::ipc::serve(listener, running.handle.clone()));

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("signal handler: {e}"))?;
    let mut task = running.task;
    tokio::select! {
        biased;
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
        _ = &mut task => {
            server.abort();
            let _ = std::fs::remove_file(&socket);
            return Err("the daemon stopped unexpectedly".into());
        }
    }
    tracing::info!("signal received; shutting down");
    server.abort();
    let _ = std::fs::remove_file(&socket);
    running.handle.shutdown().await;
    let _ = task.await;
    Ok(())
}

fn main() -> ExitCode {
    // Every flag is long, so `-anything` is `--anything`: an unknown one is then reported by
    // its name instead of as a cluster of short flags.
    let argv: Vec<std::ffi::OsString> = std::env::args_os()
        .enumerate()
        .map(|(i, a)| match a.to_str() {
            Some(t) if i > 0 && t.len() > 2 && t.starts_with('-') && !t.starts_with("--") => {
                format!("-{t}").into()
            }
            _ => a,
        })
        .collect();
    let argv = match prepare_args(argv, FLAGS, &[]) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let args = match Args::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    pilot_bins::logging::init(&args.log_level, &args.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
