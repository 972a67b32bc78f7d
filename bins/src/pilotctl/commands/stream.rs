//! `connect`, `send`, `recv`: one message over a stream.

use crate::pilotctl::args::Args;
use crate::pilotctl::output::{CliError, Code, Success};
use crate::pilotctl::{target, Ctx};
use serde_json::{json, Value};
use std::io::{IsTerminal, Read};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest reply read (the reference's read buffer).
const READ_BUFFER: usize = 65535;
/// Default timeout of these commands.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The reference `connect` port (stdio service).
const DEFAULT_PORT: u16 = 1000;

fn parse_port(command: &str, text: &str) -> Result<u16, CliError> {
    text.parse()
        .map_err(|_| CliError::usage(command, format!("invalid port {text:?}: expected 0-65535")))
}

fn timed_out(what: &str, timeout: Duration) -> CliError {
    CliError::new(
        Code::Timeout,
        format!("{what}: no answer within {timeout:?}"),
    )
    .hint("the peer may be unreachable; try a longer --timeout or check: pilotctl ping <target>")
}

/// Dials, writes `data`, reads one reply (up to 64 KiB), closes.
async fn exchange(
    ctx: &Ctx,
    command: &str,
    target_text: &str,
    port: u16,
    data: &[u8],
    timeout: Duration,
) -> Result<Success, CliError> {
    let work = async {
        let driver = ctx.driver().await?;
        let addr = target::resolve(ctx, &driver, target_text).await?;
        let mut stream = driver.dial(addr, port).await.map_err(|e| {
            CliError::from(e).hint(format!(
                "is anything listening on port {port} of {addr}? check reachability with: pilotctl ping {addr}"
            ))
        })?;
        let io_err = |e: std::io::Error| CliError::new(Code::ConnectionFailed, e.to_string());
        stream.write_all(data).await.map_err(io_err)?;
        stream.flush().await.map_err(io_err)?;
        let mut buf = vec![0u8; READ_BUFFER];
        let n = stream.read(&mut buf).await.map_err(io_err)?;
        let _ = stream.shutdown().await;
        Ok::<_, CliError>((addr, String::from_utf8_lossy(&buf[..n]).into_owned()))
    };
    let (addr, response) = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| timed_out(command, timeout))??;
    let human = response.clone();
    Ok(Success::new(
        json!({"target": addr.to_string(), "port": port, "sent": String::from_utf8_lossy(data),
               "response": response}),
        human,
    ))
}

/// `connect <target> [port] [--message m] [--timeout 30s]`.
pub async fn connect(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 2)?;
    let port = match args.arg(1) {
        Some(p) => parse_port("connect", p)?,
        None => DEFAULT_PORT,
    };
    let timeout = args.duration("timeout", DEFAULT_TIMEOUT)?;
    let message = match args.string("message") {
        Some(m) => m.to_string(),
        None => read_stdin()?,
    };
    if message.is_empty() {
        return Err(CliError::usage(
            "connect",
            "nothing to send: the message is empty",
        ));
    }
    let target = args.arg(0).unwrap_or_default();
    exchange(ctx, "connect", target, port, message.as_bytes(), timeout).await
}

/// The message from standard input: lines joined by `\n`, without the final newline.
fn read_stdin() -> Result<String, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(CliError::usage("connect", "no --message given and stdin is a terminal")
            .hint("pass --message \"text\", or pipe the message in: echo hi | pilotctl connect <target>"));
    }
    let mut text = String::new();
    stdin
        .lock()
        .read_to_string(&mut text)
        .map_err(|e| CliError::new(Code::InvalidArgument, format!("cannot read stdin: {e}")))?;
    let lines: Vec<&str> = text.lines().collect();
    Ok(lines.join("\n"))
}

/// `send <target> <port> --data d [--timeout 30s]`.
pub async fn send(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(2, 2)?;
    let port = parse_port("send", args.arg(1).unwrap_or_default())?;
    let data = args
        .string("data")
        .ok_or_else(|| CliError::usage("send", "--data is required"))?;
    let timeout = args.duration("timeout", DEFAULT_TIMEOUT)?;
    exchange(
        ctx,
        "send",
        args.arg(0).unwrap_or_default(),
        port,
        data.as_bytes(),
        timeout,
    )
    .await
}

/// `recv <port> [--count 1] [--timeout 30s]`: one message from each of `count` connections.
pub async fn recv(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 1)?;
    let port = parse_port("recv", args.arg(0).unwrap_or_default())?;
    let count = args.u64("count", 1)?.max(1);
    let timeout = args.duration("timeout", DEFAULT_TIMEOUT)?;
    let driver = ctx.driver().await?;
    let mut listener = driver.listen(port).await.map_err(|e| {
        CliError::from(e).hint(format!("is port {port} already in use by another program?"))
    })?;
    ctx.note(&format!(
        "listening on port {port} for {count} message(s)..."
    ));
    let mut messages: Vec<Value> = Vec::new();
    let mut human = String::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut timed_out = false;
    for seq in 1..=count {
        let one = async {
            let mut stream = listener.accept().await?;
            let from = stream.peer_addr();
            let mut buf = vec![0u8; READ_BUFFER];
            let read = stream.read(&mut buf).await;
            let _ = stream.shutdown().await;
            Ok::<_, CliError>((from, read.map(|n| buf[..n].to_vec())))
        };
        match tokio::time::timeout_at(deadline, one).await {
            Err(_) => {
                timed_out = true;
                break;
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok((from, Ok(data)))) => {
                let text = String::from_utf8_lossy(&data).into_owned();
                human.push_str(&format!("[{seq}] from {from}: {text}\n"));
                messages.push(json!({"seq": seq, "port": port, "data": text, "bytes": data.len()}));
            }
            Ok(Ok((from, Err(e)))) => {
                human.push_str(&format!("[{seq}] from {from}: error: {e}\n"));
                messages.push(json!({"seq": seq, "port": port, "error": e.to_string()}));
            }
        }
    }
    if timed_out {
        human.push_str(&format!("(timed out after {timeout:?})\n"));
    }
    let _ = listener.close().await;
    Ok(Success::new(
        json!({"messages": messages, "timeout": timed_out}),
        human,
    ))
}

/// `listen <port> [--count 0] [--timeout 0]`: datagrams to `port`. Bounded (`--count N`), one
/// JSON result at the end; unbounded, one line per datagram as it arrives (NDJSON with
/// `--json`). The port is bound for the time of the command, as this daemon delivers
/// datagrams only to the client that bound their port; streams dialled to it meanwhile are
/// closed at once.
pub async fn listen(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 1)?;
    let port = parse_port("listen", args.arg(0).unwrap_or_default())?;
    let count = args.u64("count", 0)?;
    let timeout = args.duration("timeout", Duration::ZERO)?;
    let driver = ctx.driver().await?;
    let mut listener = driver.listen(port).await.map_err(|e| {
        CliError::from(e).hint(format!("is port {port} already in use by another program?"))
    })?;
    ctx.note(&format!("listening for datagrams on port {port}..."));
    let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
    let mut messages: Vec<Value> = Vec::new();
    let mut timed_out = false;
    while count == 0 || (messages.len() as u64) < count {
        let next = async {
            loop {
                tokio::select! {
                    datagram = driver.recv_from() => match datagram {
                        Ok(d) if d.dst_port == port => return Ok(d),
                        Ok(_) => continue,
                        Err(e) => return Err(CliError::from(e)),
                    },
                    stream = listener.accept() => drop(stream),
                }
            }
        };
        let datagram = match deadline {
            Some(at) => match tokio::time::timeout_at(at, next).await {
                Ok(d) => d?,
                Err(_) => {
                    timed_out = true;
                    break;
                }
            },
            None => next.await?,
        };
        let text = String::from_utf8_lossy(&datagram.data).into_owned();
        let entry = json!({"src_addr": datagram.src.addr.to_string(), "src_port": datagram.src.port,
                           "data": text, "bytes": datagram.data.len()});
        if count == 0 {
            print_line(ctx, &entry, &format!("[{}] {text}", datagram.src));
        } else {
            messages.push(entry);
        }
    }
    let _ = listener.close().await;
    if count == 0 {
        return Ok(Success::silent());
    }
    let human = messages
        .iter()
        .map(|m| {
            format!(
                "[{}:{}] {}",
                m["src_addr"].as_str().unwrap_or(""),
                m["src_port"],
                m["data"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Success::new(
        json!({"messages": messages, "timeout": timed_out}),
        human,
    ))
}

/// One line of unbounded output, flushed so a pipe sees it at once.
fn print_line(ctx: &Ctx, entry: &Value, human: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = match ctx.json {
        true => writeln!(out, "{entry}"),
        false => writeln!(out, "{human}"),
    };
    let _ = out.flush();
}
