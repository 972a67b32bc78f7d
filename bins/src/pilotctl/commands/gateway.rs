//! `gateway start|stop|map|unmap|list`: the IP gateway (`pilot::gateway`). `start` runs it in
//! the foreground with a PID file (`$HOME/.pilot/gateway.pid`) and a control socket
//! (`$HOME/.pilot/gateway.sock`) through which the other sub-commands change the running
//! gateway.

use super::daemon::{alive, read_pid, write_pid_file};
use crate::pilotctl::args::Args;
use crate::pilotctl::config::create_private_dir;
use crate::pilotctl::output::{print_success, CliError, Code, Success};
use crate::pilotctl::target::parse_literal;
use crate::pilotctl::Ctx;
use pilot::gateway::control::{self, ControlError, Failure, Reply, Request};
use pilot::gateway::{Gateway, Subnet, DEFAULT_PORTS, DEFAULT_SUBNET};
use rustix::process::{kill_process, Pid, Signal};
use serde_json::{json, Value};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// How long `stop` waits for the gateway to exit after SIGTERM, and how often it looks.
const STOP_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

struct Paths {
    dir: PathBuf,
    pid_file: PathBuf,
    socket: PathBuf,
}

fn paths(ctx: &Ctx) -> Result<Paths, CliError> {
    let dir = ctx.pilot_dir()?;
    Ok(Paths {
        pid_file: dir.join("gateway.pid"),
        socket: dir.join("gateway.sock"),
        dir,
    })
}

fn not_running() -> CliError {
    CliError::new(Code::NotRunning, "the gateway is not running").hint(
        "start it with: pilotctl gateway start [--subnet cidr] [--ports list] [<pilot-addr>...]",
    )
}

/// A pilot address argument: an address or a node ID.
fn pilot_addr(command: &str, text: &str) -> Result<pilot::wire::Addr, CliError> {
    parse_literal(text).ok_or_else(|| {
        CliError::usage(command, format!("invalid pilot address {text:?}"))
            .hint("a pilot address looks like 0:0000.0000.002A (or give a node ID: 42)")
    })
}

/// `--ports 80,8080`: a comma-separated list of ports 1-65535.
fn parse_ports(text: &str) -> Result<Vec<u16>, CliError> {
    text.split(',')
        .map(str::trim)
        .map(|p| match p.parse::<u16>() {
            Ok(port) if port > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
            _ => Err(CliError::usage(
                "gateway start",
                format!("invalid port {p:?} in --ports {text:?}"),
            )
            .hint("ports are 1-65535, separated by commas: --ports 80,8080")),
        })
        .collect()
}

fn failure(failure: Failure) -> CliError {
    let code = match failure.code.as_str() {
        "not_found" => Code::NotFound,
        "already_exists" => Code::AlreadyExists,
        "invalid_argument" => Code::InvalidArgument,
        _ => Code::Internal,
    };
    let err = CliError::new(code, failure.message);
    match failure.hint {
        Some(hint) => err.hint(hint),
        None => err,
    }
}

/// Sends a request to the running gateway.
async fn ask(ctx: &Ctx, request: Request) -> Result<Value, CliError> {
    let paths = paths(ctx)?;
    if !read_pid(&paths.pid_file).is_some_and(alive) {
        return Err(not_running());
    }
    match control::request(&paths.socket, &request).await {
        Ok(Reply::Ok(data)) => Ok(data),
        Ok(Reply::Error(f)) => Err(failure(f)),
        Err(ControlError::NotRunning { .. }) => Err(not_running()),
        Err(e) => Err(CliError::new(Code::ConnectionFailed, e.to_string())),
    }
}

fn mapping_line(m: &Value) -> String {
    let mut line = format!(
        "{} → {}",
        m["local_ip"].as_str().unwrap_or_default(),
        m["pilot_addr"].as_str().unwrap_or_default()
    );
    if let Some(ports) = m["ports"].as_array() {
        let ports: Vec<String> = ports.iter().map(Value::to_string).collect();
        line.push_str(&format!("  (ports {})", ports.join(",")));
    }
    if let Some(skipped) = m["skipped"].as_array() {
        for s in skipped {
            line.push_str(&format!(
                "\n  port {} not served: {}",
                s["port"],
                s["error"].as_str().unwrap_or_default()
            ));
        }
    }
    line
}

/// Binds the control socket, replacing a stale one (never another kind of file).
fn bind_control(socket: &Path) -> Result<tokio::net::UnixListener, CliError> {
    if std::fs::symlink_metadata(socket).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(socket);
    }
    let listener = tokio::net::UnixListener::bind(socket).map_err(|e| {
        CliError::new(
            Code::Internal,
            format!("cannot listen on {}: {e}", socket.display()),
        )
    })?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
        CliError::new(
            Code::Internal,
            format!("cannot restrict {}: {e}", socket.display()),
        )
    })?;
    Ok(listener)
}

/// `gateway start [--subnet cidr] [--ports list] [<pilot-addr>...]`: maps the addresses,
/// prints the result, then proxies until SIGINT or SIGTERM.
pub async fn start(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    let paths = paths(ctx)?;
    if let Some(pid) = read_pid(&paths.pid_file).filter(|p| alive(*p)) {
        return Err(CliError::new(
            Code::AlreadyExists,
            format!("the gateway is already running (pid {pid})"),
        )
        .hint("stop it first with: pilotctl gateway stop"));
    }
    let subnet_text = args.string("subnet").unwrap_or(DEFAULT_SUBNET);
    let subnet: Subnet = subnet_text
        .parse()
        .map_err(|e: pilot::gateway::MappingError| {
            CliError::usage("gateway start", e.to_string())
        })?;
    let ports = match args.string("ports") {
        Some(text) => parse_ports(text)?,
        None => DEFAULT_PORTS.to_vec(),
    };
    let addrs = args
        .positional
        .iter()
        .map(|a| pilot_addr("gateway start", a))
        .collect::<Result<Vec<_>, _>>()?;

    let driver = ctx.driver().await?;
    let gateway = Gateway::new(driver, subnet, &ports);
    let mut mappings = Vec::new();
    for addr in addrs {
        let mapped = gateway.map(addr, None).await.map_err(|e| {
            let mut f = Failure::from(e);
            f.message = format!("map {addr}: {}", f.message);
            failure(f)
        })?;
        mappings.push(control::mapped_json(&mapped));
    }

    create_private_dir(&paths.dir)?;
    let listener = bind_control(&paths.socket)?;
    let pid = std::process::id();
    write_pid_file(&paths.pid_file, pid)?;
    let serving = tokio::spawn(control::serve(listener, gateway.clone()));

    let mut human: Vec<String> = mappings.iter().map(mapping_line).collect();
    human.push(format!(
        "gateway running (pid {pid}, subnet {subnet}); stop it with: pilotctl gateway stop"
    ));
    print_success(
        ctx.json,
        &Success::new(
            json!({"pid": pid, "subnet": subnet.to_string(), "ports": gateway.ports(),
                   "mappings": mappings}),
            human.join("\n"),
        ),
    );

    wait_for_signal().await;
    serving.abort();
    // Only our own files: a second gateway may have replaced them meanwhile.
    if read_pid(&paths.pid_file) == Some(pid as i32) {
        let _ = std::fs::remove_file(&paths.pid_file);
        let _ = std::fs::remove_file(&paths.socket);
    }
    drop(gateway);
    Ok(Success::silent())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                biased;
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `gateway stop`: SIGTERM to the running gateway, then wait for it to exit.
pub async fn stop(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let paths = paths(ctx)?;
    let Some(pid) = read_pid(&paths.pid_file).filter(|p| alive(*p)) else {
        let _ = std::fs::remove_file(&paths.pid_file);
        return Err(not_running());
    };
    let process = Pid::from_raw(pid).ok_or_else(|| CliError::new(Code::Internal, "invalid pid"))?;
    kill_process(process, Signal::TERM).map_err(|e| {
        CliError::new(Code::Internal, format!("cannot signal pid {pid}: {e}"))
            .hint("is it another user's process? check $HOME/.pilot/gateway.pid")
    })?;
    let deadline = Instant::now() + STOP_WAIT;
    while alive(pid) {
        if Instant::now() >= deadline {
            let _ = kill_process(process, Signal::KILL);
            let _ = std::fs::remove_file(&paths.pid_file);
            return Ok(Success::new(
                json!({"pid": pid, "forced": true}),
                format!("Gateway did not stop within {STOP_WAIT:?}; killed (pid {pid})"),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    let _ = std::fs::remove_file(&paths.pid_file);
    Ok(Success::new(
        json!({"pid": pid}),
        format!("Gateway stopped (pid {pid})"),
    ))
}

/// `gateway map <pilot-addr> [local-ip]`.
pub async fn map(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 2)?;
    let addr = pilot_addr("gateway map", args.arg(0).unwrap_or_default())?;
    if let Some(ip) = args.arg(1) {
        pilot::gateway::mapping::parse_ip(ip)
            .map_err(|e| CliError::usage("gateway map", e.to_string()))?;
    }
    let data = ask(
        ctx,
        Request::Map {
            pilot_addr: addr.to_string(),
            local_ip: args.arg(1).map(str::to_string),
        },
    )
    .await?;
    let human = format!("mapped {}", mapping_line(&data));
    Ok(Success::new(data, human))
}

/// `gateway unmap <local-ip>`.
pub async fn unmap(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 1)?;
    let ip = args.arg(0).unwrap_or_default();
    pilot::gateway::mapping::parse_ip(ip)
        .map_err(|e| CliError::usage("gateway unmap", e.to_string()))?;
    let data = ask(
        ctx,
        Request::Unmap {
            local_ip: ip.to_string(),
        },
    )
    .await?;
    Ok(Success::new(data, format!("unmapped {ip}")))
}

/// `gateway list`.
pub async fn list(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let data = ask(ctx, Request::List).await?;
    let rows: Vec<String> = data["mappings"]
        .as_array()
        .map(|all| all.iter().map(mapping_line).collect())
        .unwrap_or_default();
    let human = if rows.is_empty() {
        "no mappings".to_string()
    } else {
        format!("{}\ntotal: {}", rows.join("\n"), rows.len())
    };
    Ok(Success::new(data, human))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists() {
        assert_eq!(parse_ports("80, 8080,1").unwrap(), vec![80, 8080, 1]);
        for bad in ["", "0", "65536", "80,,81", "+80", "http", "80;81"] {
            let err = parse_ports(bad).unwrap_err();
            assert_eq!(err.code, Code::InvalidArgument, "{bad}");
        }
    }
}
