//! `daemon start|stop|status` (`spec/services.md` §10): run `pilot-daemon` in the background
//! with a PID file and a log, and stop or inspect it.

use crate::pilotctl::args::Args;
use crate::pilotctl::config::create_private_dir;
use crate::pilotctl::output::{CliError, Code, Success};
use crate::pilotctl::progress::Waiting;
use crate::pilotctl::Ctx;
use pilot::driver::Driver;
use rustix::process::{kill_process, test_kill_process, Pid, Signal};
use serde_json::json;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::time::Instant;

/// How long `start` waits for the daemon to answer, and how often it asks.
const START_WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(200);
/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// One readiness probe (connect + Info) may take this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

use crate::pilotctl::{DEFAULT_BEACON, DEFAULT_REGISTRY};

struct Paths {
    dir: PathBuf,
    pid_file: PathBuf,
    log_file: PathBuf,
}

fn paths(ctx: &Ctx) -> Result<Paths, CliError> {
    let dir = ctx.pilot_dir()?;
    Ok(Paths {
        pid_file: dir.join("pilot.pid"),
        log_file: dir.join("pilot.log"),
        dir,
    })
}

/// The PID in the PID file, if it holds one.
pub(super) fn read_pid(pid_file: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p: &i32| *p > 0)
}

/// Whether a process runs with this PID (a zombie does not count).
pub(super) fn alive(pid: i32) -> bool {
    let Some(p) = Pid::from_raw(pid) else {
        return false;
    };
    match test_kill_process(p) {
        Ok(()) | Err(rustix::io::Errno::PERM) => !is_zombie(pid),
        Err(_) => false,
    }
}

/// A process that exited but was not reaped still answers signal 0.
fn is_zombie(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .is_some_and(|state| state == 'Z' || state == 'X')
}

fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// Asks the daemon for Info; the reply, or why not.
async fn probe(socket: &Path) -> Result<pilot::driver::Info, String> {
    let work = async {
        let driver = Driver::connect(socket).await.map_err(|e| e.to_string())?;
        driver.info().await.map_err(|e| e.to_string())
    };
    tokio::time::timeout(PROBE_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err("no answer".into()))
}

/// The daemon executable: `PILOT_DAEMON_BIN`, else next to this program, else on PATH.
fn daemon_binary() -> Result<PathBuf, CliError> {
    if let Some(path) = std::env::var_os("PILOT_DAEMON_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("pilot-daemon")));
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("pilot-daemon"))
                .collect()
        })
        .unwrap_or_default();
    beside
        .into_iter()
        .chain(on_path)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CliError::new(Code::NotFound, "cannot find the pilot-daemon executable")
                .hint("install pilot-daemon next to pilotctl or on PATH, or set PILOT_DAEMON_BIN")
        })
}

/// The daemon's command line from the flags, the config file and the environment.
fn daemon_args(ctx: &Ctx, args: &Args, socket: &Path, dir: &Path) -> Vec<String> {
    let pick = |flag: &str, config_key: &str| {
        args.string(flag)
            .map(str::to_string)
            .or_else(|| ctx.config_string(config_key))
    };
    let registry = pick("registry", "registry")
        .or_else(|| {
            std::env::var("PILOT_REGISTRY")
                .ok()
                .filter(|v| !v.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_REGISTRY.into());
    let beacon = pick("beacon", "beacon").unwrap_or_else(|| DEFAULT_BEACON.into());
    let identity = args
        .string("identity")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("identity.key"));
    let mut out = vec![
        format!("--registry={registry}"),
        format!("--beacon={beacon}"),
        format!("--listen={}", args.string("listen").unwrap_or(":0")),
        format!("--socket={}", socket.display()),
        format!("--identity={}", identity.display()),
        format!("--log-level={}", args.string("log-level").unwrap_or("info")),
        format!(
            "--log-format={}",
            args.string("log-format").unwrap_or("text")
        ),
    ];
    for (flag, key) in [
        ("owner", "owner"),
        ("hostname", "hostname"),
        ("webhook", "webhook"),
        ("standby-registry", "standby_registry"),
    ] {
        if let Some(v) = pick(flag, key) {
            out.push(format!("--{flag}={v}"));
        }
    }
    if let Some(config) = args.string("config") {
        out.push(format!("--config={config}"));
    }
    if args.bool("public") {
        out.push("--public".into());
    }
    if args.bool("no-encrypt") {
        out.push("--encrypt=false".into());
    }
    out
}

/// The socket `daemon start` uses: `--socket`, else the usual resolution.
fn start_socket(ctx: &Ctx, args: &Args) -> PathBuf {
    args.string("socket")
        .map(PathBuf::from)
        .unwrap_or_else(|| ctx.socket())
}

/// `daemon start`.
pub async fn start(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let paths = paths(ctx)?;
    if let Some(pid) = read_pid(&paths.pid_file) {
        if alive(pid) {
            return Err(CliError::new(
                Code::AlreadyExists,
                format!("the daemon is already running (pid {pid})"),
            )
            .hint("stop it first with: pilotctl daemon stop"));
        }
    }
    remove(&paths.pid_file);
    let socket = start_socket(ctx, args);
    if socket.exists() {
        if probe(&socket).await.is_ok() {
            return Err(CliError::new(
                Code::AlreadyExists,
                format!("a daemon already answers on {}", socket.display()),
            )
            .hint("use it, or stop it first (pilotctl daemon stop, or kill it if pilotctl did not start it)"));
        }
        // Only ever delete a stale socket, never some other file at that path.
        if std::fs::symlink_metadata(&socket).is_ok_and(|m| m.file_type().is_socket()) {
            remove(&socket);
        }
    }
    let binary = daemon_binary()?;
    create_private_dir(&paths.dir)?;
    let daemon_args = daemon_args(ctx, args, &socket, &paths.dir);
    if args.bool("foreground") {
        return foreground(&binary, &daemon_args, &paths).await;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&paths.log_file)
        .map_err(|e| {
            CliError::new(
                Code::Internal,
                format!("cannot open {}: {e}", paths.log_file.display()),
            )
        })?;
    let log_err = log
        .try_clone()
        .map_err(|e| CliError::new(Code::Internal, e.to_string()))?;
    let mut command = std::process::Command::new(&binary);
    command
        .args(&daemon_args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: a Ctrl-C in this terminal does not reach the daemon.
        .process_group(0);
    let mut child = tokio::process::Command::from(command)
        .spawn()
        .map_err(|e| {
            CliError::new(
                Code::Internal,
                format!("cannot start {}: {e}", binary.display()),
            )
            .hint("check that the file is an executable pilot-daemon")
        })?;
    let pid = child.id().unwrap_or_default();
    write_pid_file(&paths.pid_file, pid)?;

    let log_hint = format!("check logs: tail -n 50 {}", paths.log_file.display());
    let deadline = Instant::now() + START_WAIT;
    let mut waiting = Waiting::new(ctx, "waiting for the daemon to answer");
    let info = loop {
        if let Ok(info) = probe(&socket).await {
            waiting.finish();
            break info;
        }
        if Instant::now() >= deadline {
            waiting.finish();
            return Err(CliError::new(
                Code::Timeout,
                format!(
                    "the daemon (pid {pid}) did not answer on {} within {START_WAIT:?}",
                    socket.display()
                ),
            )
            .hint(log_hint));
        }
        // Wake on the next poll, or at once if the daemon exits.
        tokio::select! {
            biased;
            status = child.wait() => {
                remove(&paths.pid_file);
                waiting.finish();
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                return Err(CliError::new(
                    Code::Internal,
                    format!("the daemon exited during start-up ({status})"),
                )
                .hint(log_hint));
            }
            _ = tokio::time::sleep(POLL) => {}
        }
        waiting.tick();
    };
    let human = format!(
        "Daemon running (pid {pid})\n  address:  {}\n  hostname: {}\n  socket:   {}\n  log:      {}",
        info.address,
        if info.hostname.is_empty() { "(none)" } else { &info.hostname },
        socket.display(),
        paths.log_file.display()
    );
    Ok(Success::new(
        json!({"pid": pid, "node_id": info.node_id, "address": info.address,
               "hostname": info.hostname, "socket": socket.display().to_string(),
               "log_file": paths.log_file.display().to_string()}),
        human,
    ))
}

pub(super) fn write_pid_file(pid_file: &Path, pid: u32) -> Result<(), CliError> {
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(pid_file)
        .and_then(|mut f| writeln!(f, "{pid}"))
        .map_err(|e| {
            CliError::new(
                Code::Internal,
                format!("cannot write {}: {e}", pid_file.display()),
            )
        })
}

/// `daemon start --foreground`: the daemon runs attached to this terminal. Unlike the
/// reference, the PID file is written too, so `daemon stop` works from another shell.
async fn foreground(
    binary: &Path,
    daemon_args: &[String],
    paths: &Paths,
) -> Result<Success, CliError> {
    let mut child = tokio::process::Command::new(binary)
        .args(daemon_args)
        .spawn()
        .map_err(|e| {
            CliError::new(
                Code::Internal,
                format!("cannot start {}: {e}", binary.display()),
            )
        })?;
    write_pid_file(&paths.pid_file, child.id().unwrap_or_default())?;
    let status = child.wait().await;
    remove(&paths.pid_file);
    match status {
        Ok(s) if s.success() => Ok(Success::silent()),
        Ok(s) => Err(CliError::new(
            Code::Internal,
            format!("the daemon exited ({s})"),
        )),
        Err(e) => Err(CliError::new(
            Code::Internal,
            format!("waiting for the daemon: {e}"),
        )),
    }
}

/// `daemon stop`.
pub async fn stop(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let paths = paths(ctx)?;
    let Some(pid) = read_pid(&paths.pid_file) else {
        remove(&paths.pid_file);
        let socket = ctx.socket();
        return Err(if probe(&socket).await.is_ok() {
            CliError::new(
                Code::NotRunning,
                format!(
                    "no daemon started by pilotctl, but one answers on {}",
                    socket.display()
                ),
            )
            .hint("it was started another way; stop it where it runs, or with kill")
        } else {
            CliError::new(Code::NotRunning, "the daemon is not running")
                .hint("start the daemon with: pilotctl daemon start")
        });
    };
    if !alive(pid) {
        remove(&paths.pid_file);
        return Err(CliError::new(
            Code::NotRunning,
            format!("the daemon is not running (cleaned up stale state of pid {pid})"),
        ));
    }
    let process = Pid::from_raw(pid).ok_or_else(|| CliError::new(Code::Internal, "invalid pid"))?;
    kill_process(process, Signal::TERM).map_err(|e| {
        CliError::new(Code::Internal, format!("cannot signal pid {pid}: {e}"))
            .hint("is it another user's process? check the PID file")
    })?;
    let deadline = Instant::now() + STOP_WAIT;
    while Instant::now() < deadline {
        if !alive(pid) {
            remove(&paths.pid_file);
            return Ok(Success::new(
                json!({"pid": pid}),
                format!("Daemon stopped (pid {pid})"),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    let _ = kill_process(process, Signal::KILL);
    remove(&paths.pid_file);
    Ok(Success::new(
        json!({"pid": pid, "forced": true}),
        format!("Daemon did not stop within {STOP_WAIT:?}; killed (pid {pid})"),
    ))
}

/// `daemon status [--check]`.
pub async fn status(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let socket = ctx.socket();
    let reply = probe(&socket).await;
    if args.bool("check") {
        return match reply {
            Ok(_) => Ok(Success::silent()),
            Err(e) => {
                let mut err = CliError::new(Code::NotRunning, e);
                err.hint = None;
                Err(err.silenced())
            }
        };
    }
    let paths = paths(ctx)?;
    let pid = read_pid(&paths.pid_file);
    let running = pid.is_some_and(alive);
    if reply.is_err() && !running {
        remove(&paths.pid_file);
    }
    let mut data = json!({
        "running": running || reply.is_ok(),
        "pid": pid.filter(|_| running),
        "pid_file": paths.pid_file.display().to_string(),
        "socket": socket.display().to_string(),
        "responsive": reply.is_ok(),
    });
    let human = match &reply {
        Ok(info) => {
            data["node_id"] = json!(info.node_id);
            data["address"] = json!(info.address);
            data["hostname"] = json!(info.hostname);
            data["uptime_secs"] = json!(info.uptime_secs);
            data["peers"] = json!(info.peers);
            data["connections"] = json!(info.connections);
            data["registry"] = json!(info.registry);
            data["registry_standby"] = json!(info.registry_standby);
            let registry = match (info.registry.as_str(), info.registry_standby) {
                ("", _) => "not reported".to_string(),
                (r, true) => format!("{r} (standby: the primary did not answer)"),
                (r, false) => r.to_string(),
            };
            format!(
                "Daemon running{} and responsive\n  address:     {}\n  registry:    {registry}\n  uptime:      {}s\n  peers:       {}\n  connections: {}\n  socket:      {}",
                pid.filter(|_| running).map(|p| format!(" (pid {p})")).unwrap_or_default(),
                info.address,
                info.uptime_secs as u64,
                info.peers,
                info.connections,
                socket.display()
            )
        }
        Err(e) if running => format!(
            "Daemon process runs (pid {}) but does not answer on {}: {e}",
            pid.unwrap_or_default(),
            socket.display()
        ),
        Err(_) => "Daemon is not running. Start it with: pilotctl daemon start".to_string(),
    };
    Ok(Success::new(data, human))
}
