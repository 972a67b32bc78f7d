//! `publish`, `subscribe`: the event stream (port 1002, `spec/services.md` §7.3).

use crate::pilotctl::args::Args;
use crate::pilotctl::output::{CliError, Code, Success};
use crate::pilotctl::{target, Ctx};
use pilot::driver::Stream;
use pilot::services::eventstream::frame::MAX_TOPIC;
use pilot::services::eventstream::{self, ClientError, Event, EventClient, EVENT_STREAM_PORT};
use pilot::wire::Addr;
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

/// How long a publish may take before it is given up.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

fn topic_arg(command: &str, args: &Args) -> Result<String, CliError> {
    let topic = args.arg(1).unwrap_or_default();
    if topic.len() > MAX_TOPIC {
        return Err(CliError::usage(
            command,
            format!(
                "the topic is {} bytes; at most {MAX_TOPIC} are allowed",
                topic.len()
            ),
        ));
    }
    Ok(topic.to_string())
}

async fn connect(
    ctx: &Ctx,
    text: &str,
    topic: &str,
) -> Result<(Addr, EventClient<Stream>), CliError> {
    let driver = ctx.driver().await?;
    let addr = target::resolve(ctx, &driver, text).await?;
    let client = eventstream::subscribe(&driver, addr, topic)
        .await
        .map_err(|e| {
            CliError::new(Code::ConnectionFailed, e.to_string()).hint(format!(
                "cannot reach the event stream (port {EVENT_STREAM_PORT}) on {addr}: check with \
                 pilotctl ping {addr}; the peer may run with -no-eventstream"
            ))
        })?;
    Ok((addr, client))
}

fn broken(err: ClientError) -> CliError {
    CliError::new(Code::ConnectionFailed, format!("event stream: {err}"))
        .hint("the connection broke: check the peer with pilotctl ping <target>")
}

/// `publish <target> <topic> --data d`: subscribes to the topic, publishes once, closes.
pub async fn publish(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(2, 2)?;
    let topic = topic_arg("publish", args)?;
    let data = args
        .string("data")
        .filter(|d| !d.is_empty())
        .ok_or_else(|| CliError::usage("publish", "--data is required"))?;
    let work = async {
        let (addr, mut client) = connect(ctx, args.arg(0).unwrap_or_default(), &topic).await?;
        client
            .publish(&topic, data.as_bytes())
            .await
            .map_err(broken)?;
        client.close().await.map_err(broken)?;
        Ok::<_, CliError>(addr)
    };
    let addr = tokio::time::timeout(PUBLISH_TIMEOUT, work)
        .await
        .map_err(|_| {
            CliError::new(Code::Timeout, "publish: no answer in time")
                .hint("the peer may be unreachable: check with pilotctl ping <target>")
        })??;
    Ok(Success::new(
        json!({"target": addr.to_string(), "topic": topic, "bytes": data.len()}),
        format!("published {} bytes to [{topic}] on {addr}", data.len()),
    ))
}

fn event_json(event: &Event) -> Value {
    json!({
        "topic": event.topic_str(),
        "data": String::from_utf8_lossy(&event.payload),
        "bytes": event.payload.len(),
    })
}

fn event_line(event: &Event) -> String {
    format!(
        "[{}] {}",
        event.topic_str(),
        String::from_utf8_lossy(&event.payload)
    )
}

/// `subscribe <target> <topic> [--count N] [--timeout D]`: `--count 0` (the default) streams
/// events until the timeout (0: none) or the end of the connection.
pub async fn subscribe(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(2, 2)?;
    let topic = topic_arg("subscribe", args)?;
    let count = args.u64("count", 0)?;
    let timeout = args.duration("timeout", Duration::ZERO)?;
    let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
    let connecting = connect(ctx, args.arg(0).unwrap_or_default(), &topic);
    let (addr, mut client) = match deadline {
        Some(at) => tokio::time::timeout_at(at, connecting)
            .await
            .map_err(|_| CliError::new(Code::Timeout, "subscribe: could not connect in time"))??,
        None => connecting.await?,
    };
    ctx.note(&format!(
        "subscribed to [{topic}] on {addr}; waiting for events..."
    ));
    if count == 0 {
        return stream_events(ctx, &mut client, deadline).await;
    }

    let mut events = Vec::new();
    let mut human = String::new();
    let mut timed_out = false;
    let mut error = None;
    while (events.len() as u64) < count {
        match next_event(&mut client, deadline).await {
            None => {
                timed_out = true;
                break;
            }
            Some(Ok(Some(event))) => {
                human.push_str(&event_line(&event));
                human.push('\n');
                events.push(event_json(&event));
            }
            Some(Ok(None)) => {
                error = Some(format!(
                    "the event stream on {addr} closed the connection after {} event(s)",
                    events.len()
                ));
                break;
            }
            Some(Err(e)) => {
                error = Some(format!("event stream: {e}"));
                break;
            }
        }
    }
    let _ = client.close().await;
    if let Some(message) = &error {
        if events.is_empty() {
            return Err(CliError::new(Code::ConnectionFailed, message.clone())
                .hint("the peer's daemon may have stopped: check it with pilotctl ping <target>"));
        }
        human.push_str(&format!("error: {message}\n"));
    }
    if timed_out {
        human.push_str(&format!("(timed out after {timeout:?})\n"));
    }
    let mut data = json!({"events": events, "timeout": timed_out});
    if let Some(message) = error {
        data["error"] = Value::String(message);
    }
    Ok(Success::new(data, human))
}

/// The next event; `None` once `deadline` passed.
async fn next_event(
    client: &mut EventClient<Stream>,
    deadline: Option<tokio::time::Instant>,
) -> Option<Result<Option<Event>, ClientError>> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at, client.recv()).await.ok(),
        None => Some(client.recv().await),
    }
}

/// Prints each event as it arrives: one bare JSON object per line (`--json`), else
/// `[topic] payload`; flushed per event so a pipe sees it at once. Ends at the deadline
/// (success), when stdout is closed (success), or when the connection ends (an error).
async fn stream_events(
    ctx: &Ctx,
    client: &mut EventClient<Stream>,
    deadline: Option<tokio::time::Instant>,
) -> Result<Success, CliError> {
    let mut seen = 0u64;
    loop {
        let event = match next_event(client, deadline).await {
            None => return Ok(Success::silent()),
            Some(Ok(Some(event))) => event,
            Some(Ok(None)) => {
                return Err(CliError::new(
                    Code::ConnectionFailed,
                    format!("the event stream closed the connection after {seen} event(s)"),
                )
                .hint("the peer's daemon may have stopped: check it with pilotctl ping <target>"))
            }
            Some(Err(e)) => return Err(broken(e)),
        };
        seen += 1;
        let line = if ctx.json {
            event_json(&event).to_string()
        } else {
            event_line(&event)
        };
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return Ok(Success::silent()); // the reader went away
        }
    }
}
