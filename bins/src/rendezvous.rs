//! `pilot-rendezvous`: the registry (TCP) and the beacon (UDP) in one process, with the
//! reference binary's flags, plus what operating one needs: replication tokens, one-command
//! promotion of a standby, TLS that survives restarts, and a status line scripts can read.

use crate::addr::parse_host_port;
use crate::cli::prepare_args;
use crate::logging;
use clap::{Args, Parser, Subcommand};
use pilot::beacon::server::{BeaconServer, PeerSource, ServerConfig as BeaconConfig};
use pilot::net::watch;
use pilot::net::{
    os_seeded_rng, DiskStorage, MemStorage, Network, Storage, SystemClock, TokioNet, WallClock,
};
use pilot::registry::client::Client;
use pilot::registry::server::{serve, serve_standby, ServerConfig, ServerHandle};
use pilot::registry::tls::TlsIdentity;
use serde_json::json;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Flags the reference binary takes (and `--config` may fill in).
const KNOWN_FLAGS: &[&str] = &[
    "config",
    "registry-addr",
    "beacon-addr",
    "store",
    "standby",
    "http",
    "tls",
    "tls-cert",
    "tls-key",
    "log-level",
    "log-format",
    "admin-token",
    "replication-token",
    "beacon-peers",
];
const BOOL_FLAGS: &[&str] = &["tls"];

/// The rendezvous server: registry and beacon.
#[derive(Parser, Debug)]
#[command(
    name = "pilot-rendezvous",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Turn a running standby into a primary (it stops following and accepts writes).
    Promote {
        /// The standby's registry address.
        #[arg(long, default_value = "127.0.0.1:9000")]
        registry_addr: String,
        /// The admin token the standby was started with.
        #[arg(long, env = "PILOT_ADMIN_TOKEN")]
        admin_token: String,
    },
}

/// How to serve.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// JSON file whose keys fill in flags not given on the command line.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Registry TCP listen address.
    #[arg(long, default_value = ":9000")]
    registry_addr: String,
    /// Beacon UDP listen address ("" disables the beacon).
    #[arg(long, default_value = ":9001")]
    beacon_addr: String,
    /// Where state is kept: a directory, or the reference's snapshot file path (its directory
    /// is used, and a `registry.json` there is loaded). Empty keeps state in memory only.
    #[arg(long, default_value = "")]
    store: String,
    /// Run as a hot standby of the primary at this address.
    #[arg(long, default_value = "")]
    standby: String,
    /// Serve the status page, /api/stats and /metrics (loopback only) on this address.
    #[arg(long, default_value = "")]
    http: String,
    /// Serve the registry (and the replication link) over TLS.
    #[arg(long)]
    tls: bool,
    /// TLS certificate (PEM); without it a self-signed one is made and kept in the store.
    #[arg(long, default_value = "")]
    tls_cert: String,
    /// TLS private key (PEM).
    #[arg(long, default_value = "")]
    tls_key: String,
    /// debug, info, warn or error.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// text or json.
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Operator token: promotion, polo score administration ("" disables them).
    #[arg(
        long,
        env = "PILOT_ADMIN_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    admin_token: String,
    /// Shared token standbys present to the primary ("" refuses standbys).
    #[arg(
        long,
        env = "PILOT_REPLICATION_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    replication_token: String,
    /// Comma-separated UDP addresses of peer beacons to gossip with.
    #[arg(long, default_value = "")]
    beacon_peers: String,
}

/// Parses the process's command line (Go-style flags and `--config` included).
pub fn parse(args: Vec<OsString>) -> Result<Cli, String> {
    let args = prepare_args(args, KNOWN_FLAGS, BOOL_FLAGS).map_err(|e| e.to_string())?;
    Cli::try_parse_from(args).map_err(|e| e.to_string())
}

/// What went wrong, with a hint where one helps.
#[derive(Debug)]
pub struct Failure {
    /// What happened.
    pub message: String,
    /// What to do about it.
    pub hint: Option<&'static str>,
}

impl Failure {
    fn new(message: impl Into<String>, hint: Option<&'static str>) -> Self {
        Failure {
            message: message.into(),
            hint,
        }
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

/// The directory `--store` names: the directory itself, or the directory of a snapshot file.
fn store_dir(store: &str) -> PathBuf {
    let path = Path::new(store);
    let is_file = path.is_file() || path.extension().is_some_and(|e| e == "json");
    match path.parent() {
        Some(parent) if is_file => {
            if parent.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                parent.to_path_buf()
            }
        }
        _ => path.to_path_buf(),
    }
}

/// Runs the command line.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Some(Command::Promote {
            registry_addr,
            admin_token,
        }) => promote(&registry_addr, &admin_token).await,
        None => {
            logging::init(&cli.serve.log_level, &cli.serve.log_format);
            let args = cli.serve;
            if args.store.is_empty() {
                tracing::warn!("no --store: registry state lives in memory and is lost on exit");
                serve_with(args, MemStorage::new()).await
            } else {
                let dir = store_dir(&args.store);
                let storage = DiskStorage::open(&dir).map_err(|e| {
                    Failure::new(
                        e.to_string(),
                        Some("check that the --store directory is writable"),
                    )
                })?;
                serve_with(args, storage).await
            }
        }
    }
}

async fn promote(registry_addr: &str, admin_token: &str) -> Result<(), Failure> {
    let addr = parse_host_port(registry_addr).map_err(|e| Failure::new(e, None))?;
    let mut client = Client::new(TokioNet, addr);
    let request = json!({"type": "promote", "admin_token": admin_token});
    let request = request.as_object().cloned().unwrap_or_default();
    client.request(&request).await.map_err(|e| {
        Failure::new(
            format!("promote {addr}: {e}"),
            Some("is it a standby, started with the same --admin-token?"),
        )
    })?;
    println!("promoted {addr}: it now accepts writes");
    Ok(())
}

fn tls_identity<S: Storage>(args: &ServeArgs, storage: &S) -> Result<Option<TlsIdentity>, Failure> {
    if !args.tls {
        if !args.tls_cert.is_empty() || !args.tls_key.is_empty() {
            tracing::warn!("--tls-cert/--tls-key are ignored without --tls");
        }
        return Ok(None);
    }
    let identity = if args.tls_cert.is_empty() {
        let mut rng = os_seeded_rng().map_err(|e| Failure::new(e.to_string(), None))?;
        TlsIdentity::load_or_generate(storage, &mut rng, SystemClock.unix_secs())
    } else {
        let read = |path: &str| {
            std::fs::read(path).map_err(|e| {
                Failure::new(
                    format!("cannot read {path}: {e}"),
                    Some("--tls-cert and --tls-key name PEM files"),
                )
            })
        };
        TlsIdentity::from_pem(&read(&args.tls_cert)?, &read(&args.tls_key)?)
    };
    let identity = identity.map_err(|e| Failure::new(e.to_string(), None))?;
    tracing::info!(fingerprint = %identity.fingerprint(), "TLS enabled; daemons pin this fingerprint");
    Ok(Some(identity))
}

async fn serve_with<S: Storage + Clone>(args: ServeArgs, storage: S) -> Result<(), Failure> {
    let bad_flag = |e: String| Failure::new(e, Some("see pilot-rendezvous --help"));
    let registry_addr = parse_host_port(&args.registry_addr).map_err(bad_flag)?;
    let net = TokioNet;
    let mut cfg = ServerConfig::default();
    cfg.registry.admin_token = non_empty(&args.admin_token);
    cfg.registry.replication_token = non_empty(&args.replication_token);
    cfg.tls = tls_identity(&args, &storage)?.map(Arc::new);

    let listener = net.bind_tcp(registry_addr).await.map_err(|e| {
        Failure::new(
            format!("cannot listen on {registry_addr}: {e}"),
            Some("is another registry running there? pick another --registry-addr"),
        )
    })?;
    let started = if args.standby.is_empty() {
        serve(net, listener, storage, SystemClock, cfg).await
    } else {
        let primary = parse_host_port(&args.standby).map_err(bad_flag)?;
        serve_standby(net, listener, storage, SystemClock, cfg, primary).await
    };
    let registry = started.map_err(|e| {
        Failure::new(
            e.to_string(),
            Some("the store was left untouched; repair or move it, then start again"),
        )
    })?;

    let mut http_addr = None;
    if !args.http.is_empty() {
        let addr = parse_host_port(&args.http).map_err(bad_flag)?;
        let listener = net
            .bind_tcp(addr)
            .await
            .map_err(|e| Failure::new(format!("cannot listen on {addr}: {e}"), None))?;
        http_addr = Some(pilot::net::TcpListener::local_addr(&listener).unwrap_or(addr));
        registry.serve_http(listener);
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let beacon = if args.beacon_addr.is_empty() {
        None
    } else {
        let addr = parse_host_port(&args.beacon_addr).map_err(bad_flag)?;
        let mut config = BeaconConfig::new(addr);
        let peers = args
            .beacon_peers
            .split(',')
            .filter(|p| !p.is_empty())
            .map(parse_host_port)
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad_flag)?;
        if !peers.is_empty() {
            config.peers = PeerSource::Static(peers);
        }
        let server = BeaconServer::bind(net, config).await.map_err(|e| {
            Failure::new(
                format!("cannot bind the beacon on {addr}: {e}"),
                Some("pick another --beacon-addr, or \"\" to run without a beacon"),
            )
        })?;
        let local = server.local_addr();
        Some((local, tokio::spawn(server.run(stop_rx))))
    };

    // One line on stdout that scripts (and tests) read to learn the bound addresses.
    println!(
        "pilot-rendezvous ready registry={} beacon={} http={}{}",
        registry.local_addr(),
        beacon.as_ref().map_or("-".into(), |(a, _)| a.to_string()),
        http_addr.map_or("-".into(), |a: SocketAddr| a.to_string()),
        if args.standby.is_empty() {
            ""
        } else {
            " standby"
        },
    );
    tracing::info!(registry = %registry.local_addr(), "rendezvous serving");

    wait_for_signal().await;
    tracing::info!("shutting down: closing sessions and flushing state");
    let _ = stop_tx.send(true);
    shutdown(registry).await;
    if let Some((_, task)) = beacon {
        let _ = task.await;
    }
    Ok(())
}

async fn shutdown<C: WallClock + Clone>(registry: ServerHandle<C>) {
    registry.shutdown().await;
}

/// Waits for SIGTERM or SIGINT (Ctrl-C).
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    biased;
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn reference_flags_parse() {
        let cli = parse(os(&[
            "pilot-rendezvous",
            "-registry-addr",
            ":7000",
            "-beacon-addr=:7001",
            "-store",
            "/tmp/x/registry.json",
            "-tls",
            "-log-level",
            "debug",
        ]))
        .unwrap();
        assert_eq!(cli.serve.registry_addr, ":7000");
        assert_eq!(cli.serve.beacon_addr, ":7001");
        assert!(cli.serve.tls);
        assert_eq!(store_dir(&cli.serve.store), PathBuf::from("/tmp/x"));
        assert_eq!(store_dir("/var/lib/pilot"), PathBuf::from("/var/lib/pilot"));
        assert_eq!(store_dir("registry.json"), PathBuf::from("."));
    }

    #[test]
    fn promote_subcommand_and_bad_flags() {
        let cli = parse(os(&["p", "promote", "--admin-token", "t"])).unwrap();
        assert!(matches!(cli.command, Some(Command::Promote { .. })));
        assert!(parse(os(&["p", "--no-such-flag"])).is_err());
    }
}
