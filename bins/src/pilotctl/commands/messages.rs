//! `send-message`, `send-file`, `inbox`, `received`: data exchange (port 1001) and the
//! folders the daemon stores into (`$HOME/.pilot/inbox`, `$HOME/.pilot/received`).

use crate::pilotctl::args::Args;
use crate::pilotctl::output::{table, CliError, Code, Success};
use crate::pilotctl::progress::Progress;
use crate::pilotctl::{target, Ctx};
use pilot::driver::Stream;
use pilot::services::dataexchange::{self, ClientError, DataClient, FrameType, Reply};
use pilot::wire::Addr;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use time::format_description::well_known::Rfc3339;

/// How long a send may take before it is given up (files: per MiB on top).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Human-readable sizes.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

async fn connect(ctx: &Ctx, text: &str) -> Result<(Addr, DataClient<Stream>), CliError> {
    let driver = ctx.driver().await?;
    let addr = target::resolve(ctx, &driver, text).await?;
    let client = dataexchange::dial(&driver, addr).await.map_err(|e| {
        CliError::from(e).hint(format!(
            "cannot reach data exchange (port {}) on {addr}: check with pilotctl ping {addr}; \
             the peer may run with -no-dataexchange",
            dataexchange::DATA_EXCHANGE_PORT
        ))
    })?;
    Ok((addr, client))
}

fn send_failed(err: ClientError) -> CliError {
    let hint = match &err {
        ClientError::Unsupported(_) => "the peer's daemon takes files up to 16 MiB: split the file",
        ClientError::Refused(_) => "the peer's daemon could not store it (quota or disk space)",
        _ => "the connection broke: check the peer with pilotctl ping <target>",
    };
    CliError::new(Code::ConnectionFailed, format!("send failed: {err}")).hint(hint)
}

pub(super) fn ack_text(reply: &Reply) -> String {
    match reply {
        Reply::Ack { kind, bytes } => format!("ACK {kind} {bytes} bytes"),
        Reply::Err { kind, message } => format!("ERR {kind} {message}"),
        Reply::Ready => "READY".into(),
        Reply::Other(text) => text.clone(),
    }
}

/// `send-message <target> --data d [--type text|json|binary]`.
pub async fn send_message(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 1)?;
    let data = args
        .string("data")
        .filter(|d| !d.is_empty())
        .ok_or_else(|| CliError::usage("send-message", "--data is required"))?;
    let kind_text = args.string("type").unwrap_or("text");
    let kind = match kind_text {
        "text" => FrameType::Text,
        "json" => FrameType::Json,
        "binary" => FrameType::Binary,
        other => {
            return Err(CliError::usage(
                "send-message",
                format!("unknown type {other:?} (use text, json, or binary)"),
            ))
        }
    };
    let work = async {
        let (addr, mut client) = connect(ctx, args.arg(0).unwrap_or_default()).await?;
        let reply = client
            .send(kind, data.as_bytes())
            .await
            .map_err(send_failed)?;
        let _ = client.close().await;
        Ok::<_, CliError>((addr, reply))
    };
    let (addr, reply) = tokio::time::timeout(SEND_TIMEOUT, work)
        .await
        .map_err(|_| timed_out("send-message"))??;
    if let Reply::Err { message, .. } = &reply {
        return Err(refused(message));
    }
    let ack = ack_text(&reply);
    Ok(Success::new(
        json!({"target": addr.to_string(), "type": kind_text, "bytes": data.len(), "ack": ack}),
        format!("sent {} bytes to {addr}: {ack}", data.len()),
    ))
}

fn timed_out(command: &str) -> CliError {
    CliError::new(Code::Timeout, format!("{command}: no answer in time"))
        .hint("the peer may be unreachable: check with pilotctl ping <target>")
}

fn refused(message: &str) -> CliError {
    CliError::new(
        Code::ConnectionFailed,
        format!("the peer did not store it: {message}"),
    )
    .hint("the peer's daemon is out of space or over its quota for this node")
}

/// `send-file <target> <path>`: the file is read in chunks as it is sent.
pub async fn send_file(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(2, 2)?;
    let path = PathBuf::from(args.arg(1).unwrap_or_default());
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| open_error(&path, e))?;
    let meta = file.metadata().await.map_err(|e| open_error(&path, e))?;
    if !meta.is_file() {
        return Err(CliError::usage(
            "send-file",
            format!("{} is not a regular file", path.display()),
        ));
    }
    let size = meta.len();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (addr, mut client) = connect(ctx, args.arg(0).unwrap_or_default()).await?;
    let progress = Progress::bytes(ctx, &format!("send-file {name}"), size, 4 << 20);
    let started = Instant::now();
    // No overall deadline: a large file takes as long as it takes; a dead peer ends the
    // connection through the transport's own timeouts.
    let reply = client
        .send_file_from(&name, tokio::io::BufReader::new(file), size, |n| {
            progress.set(n)
        })
        .await;
    progress.finish();
    let reply = reply.map_err(send_failed)?;
    let _ = client.close().await;
    let secs = started.elapsed().as_secs_f64();
    let ack = ack_text(&reply);
    let rate = size as f64 / secs.max(1e-6) / (1 << 20) as f64;
    Ok(Success::new(
        json!({"filename": name, "bytes": size, "destination": addr.to_string(), "ack": ack,
               "duration_ms": (secs * 1000.0).round() as u64, "mbps": (rate * 100.0).round() / 100.0}),
        format!(
            "sent {name} ({}) to {addr} in {secs:.1}s ({rate:.1} MiB/s): {ack}",
            format_bytes(size)
        ),
    ))
}

fn open_error(path: &Path, e: std::io::Error) -> CliError {
    match e.kind() {
        std::io::ErrorKind::NotFound => CliError::new(
            Code::NotFound,
            format!("file not found: {}", path.display()),
        ),
        std::io::ErrorKind::PermissionDenied => CliError::new(
            Code::Internal,
            format!("permission denied: {}", path.display()),
        ),
        _ => CliError::new(Code::Internal, format!("read {}: {e}", path.display())),
    }
}

/// The regular, visible files of `dir` in name order; `None` when `dir` does not exist.
fn listing(dir: &Path) -> Result<Option<Vec<(String, std::fs::Metadata)>>, CliError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CliError::new(
                Code::Internal,
                format!("read {}: {e}", dir.display()),
            ))
        }
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Dot files are the daemon's files still arriving.
        if name.starts_with('.') {
            continue;
        }
        if let Ok(meta) = entry.metadata() {
            if meta.is_file() {
                files.push((name, meta));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Some(files))
}

/// Removes every listed file; the count removed.
fn clear(dir: &Path, empty: &str) -> Result<Success, CliError> {
    let files = listing(dir)?.ok_or_else(|| CliError::new(Code::NotFound, empty.to_string()))?;
    let mut cleared = 0;
    for (name, _) in &files {
        if std::fs::remove_file(dir.join(name)).is_ok() {
            cleared += 1;
        }
    }
    Ok(Success::new(
        json!({"cleared": cleared}),
        format!("cleared {cleared} file(s) from {}", dir.display()),
    ))
}

/// `inbox [--clear]`.
pub async fn inbox(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let dir = ctx.pilot_dir()?.join("inbox");
    if args.bool("clear") {
        return clear(&dir, "inbox is empty");
    }
    let mut messages: Vec<Value> = Vec::new();
    let mut skipped = 0;
    for (name, _) in listing(&dir)?.unwrap_or_default() {
        match std::fs::read(dir.join(&name))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        {
            Some(entry) => messages.push(entry),
            None => skipped += 1, // never deleted: the user may want to look at it
        }
    }
    let mut human = if messages.is_empty() {
        "inbox is empty\n  messages appear here when someone sends: pilotctl send-message <your-hostname> --data \"hello\"".to_string()
    } else {
        format!("Inbox ({} messages):\n", messages.len())
    };
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            let data = m["data"].as_str().unwrap_or_default();
            let mut preview: String = data.chars().take(60).collect();
            if preview.len() < data.len() {
                preview.push_str("...");
            }
            let text = |key: &str| m[key].as_str().unwrap_or_default().to_string();
            vec![text("received_at"), text("from"), text("type"), preview]
        })
        .collect();
    if !rows.is_empty() {
        human.push_str(&table(&["RECEIVED", "FROM", "TYPE", "DATA"], &rows, 200));
    }
    if skipped > 0 {
        human.push_str(&format!(
            "\n\n{skipped} unreadable entr(ies) left in {}",
            dir.display()
        ));
    }
    let total = messages.len();
    Ok(Success::new(
        json!({"messages": messages, "total": total, "dir": dir.display().to_string()}),
        human,
    ))
}

/// `received [--clear]`.
pub async fn received(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let dir = ctx.pilot_dir()?.join("received");
    if args.bool("clear") {
        return clear(&dir, "no received files");
    }
    let files = listing(&dir)?.unwrap_or_default();
    let rows: Vec<Vec<String>> = files
        .iter()
        .map(|(name, meta)| vec![name.clone(), format_bytes(meta.len()), modified(meta)])
        .collect();
    let json_files: Vec<Value> = files
        .iter()
        .map(|(name, meta)| {
            json!({"name": name, "bytes": meta.len(), "modified": modified(meta),
                   "path": dir.join(name).display().to_string()})
        })
        .collect();
    let human = if files.is_empty() {
        "no received files\n  files appear here when someone sends: pilotctl send-file <your-hostname> <file>".to_string()
    } else {
        format!(
            "Received files ({}):\n\n{}\ntotal: {}",
            dir.display(),
            table(&["NAME", "SIZE", "RECEIVED"], &rows, 200),
            files.len()
        )
    };
    Ok(Success::new(
        json!({"files": json_files, "total": files.len(), "dir": dir.display().to_string()}),
        human,
    ))
}

fn modified(meta: &std::fs::Metadata) -> String {
    meta.modified()
        .ok()
        .and_then(|t| time::OffsetDateTime::from(t).format(&Rfc3339).ok())
        .unwrap_or_default()
}
