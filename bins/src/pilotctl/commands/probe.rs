//! `ping` and `bench`: round trips and throughput against the echo service on port 7.
//!
//! Both measure what the reference measures, so figures are comparable: a ping probe opens a
//! new connection, sends `ping-<i>` and reads one reply, and its RTT includes the dial; bench
//! writes 4096-byte chunks while a concurrent reader takes the echo back.

use crate::pilotctl::args::Args;
use crate::pilotctl::output::{CliError, Code, Success};
use crate::pilotctl::progress::Progress;
use crate::pilotctl::{target, Ctx};
use pilot::driver::Driver;
use pilot::wire::Addr;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// The echo service port.
const ECHO_PORT: u16 = 7;
/// Ping reply buffer.
const PING_BUFFER: usize = 1024;
/// Bench write size.
const BENCH_CHUNK: usize = 4096;

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The least, mean (rounded to µs) and greatest of `samples` in ms, if there are any.
fn min_avg_max(samples: &[f64]) -> Option<(f64, f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let min = samples.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = samples.iter().cloned().fold(0.0, f64::max);
    let avg = (samples.iter().sum::<f64>() / samples.len() as f64 * 1e3).round() / 1e3;
    Some((min, avg, max))
}

/// One probe: dial, write, read one reply; returns the RTT and reply size.
async fn probe(driver: &Driver, addr: Addr, seq: u64) -> Result<(Duration, usize), String> {
    let start = Instant::now();
    let mut stream = driver
        .dial(addr, ECHO_PORT)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("ping-{seq}").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; PING_BUFFER];
    let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
    let rtt = start.elapsed();
    let _ = stream.shutdown().await;
    if n == 0 {
        return Err("connection closed without a reply".into());
    }
    Ok((rtt, n))
}

/// `ping <target> [--count 4] [--interval 1s] [--timeout 30s]`.
pub async fn ping(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 1)?;
    let count = args.u64("count", 4)?.max(1);
    let interval = args.duration("interval", Duration::from_secs(1))?;
    let timeout = args.duration("timeout", Duration::from_secs(30))?;
    let deadline = Instant::now() + timeout;
    let driver = ctx.driver().await?;
    let addr = target::resolve(ctx, &driver, args.arg(0).unwrap_or_default()).await?;
    ctx.say(&format!("PING {addr} (echo port {ECHO_PORT})"));
    let mut results: Vec<Value> = Vec::new();
    let mut rtts: Vec<f64> = Vec::new();
    let mut timed_out = false;
    for seq in 1..=count {
        if seq > 1 && !interval.is_zero() {
            if Instant::now() + interval >= deadline {
                timed_out = true;
                break;
            }
            tokio::time::sleep(interval).await;
        }
        match tokio::time::timeout_at(deadline, probe(&driver, addr, seq)).await {
            Err(_) => {
                timed_out = true;
                results.push(json!({"seq": seq, "error": "timeout"}));
                ctx.say(&format!("seq={seq} timeout"));
                break;
            }
            Ok(Ok((rtt, bytes))) => {
                rtts.push(ms(rtt));
                results.push(json!({"seq": seq, "rtt_ms": ms(rtt), "bytes": bytes}));
                ctx.say(&format!(
                    "{bytes} bytes from {addr}: seq={seq} time={:.3} ms",
                    ms(rtt)
                ));
            }
            Ok(Err(e)) => {
                results.push(json!({"seq": seq, "error": e}));
                ctx.say(&format!("seq={seq} error: {e}"));
            }
        }
    }
    let sent = results.len();
    let received = rtts.len();
    let mut data = json!({"target": addr.to_string(), "results": results, "sent": sent,
                          "received": received, "timeout": timed_out});
    let mut human = format!(
        "\n--- {addr} ping statistics ---\n{sent} probes, {received} replies, {:.0}% loss",
        100.0 * (sent - received) as f64 / sent.max(1) as f64
    );
    if let Some((min, avg, max)) = min_avg_max(&rtts) {
        data["min_ms"] = json!(min);
        data["avg_ms"] = json!(avg);
        data["max_ms"] = json!(max);
        human.push_str(&format!(
            "\nrtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms"
        ));
    }
    if received == 0 {
        return Err(CliError::new(
            if timed_out { Code::Timeout } else { Code::ConnectionFailed },
            format!("no reply from {addr}"),
        )
        .hint("check the peer is online and its echo service enabled; for a private peer, establish trust first: pilotctl handshake <target>"));
    }
    Ok(Success::new(data, human))
}

/// `bench <target> [size_mb=1] [--timeout 120s]`.
pub async fn bench(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 2)?;
    let size_mb: f64 = match args.arg(1) {
        None => 1.0,
        Some(text) => text
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0 && *v <= 65536.0)
            .ok_or_else(|| {
                CliError::usage(
                    "bench",
                    format!("invalid size {text:?}: MiB, e.g. 1 or 0.5"),
                )
            })?,
    };
    let total = ((size_mb * 1048576.0) as usize).max(1);
    let timeout = args.duration("timeout", Duration::from_secs(120))?;
    let driver = ctx.driver().await?;
    let addr = target::resolve(ctx, &driver, args.arg(0).unwrap_or_default()).await?;
    ctx.note(&format!(
        "bench: sending {size_mb} MiB to {addr} port {ECHO_PORT}..."
    ));
    let progress = Progress::bytes(ctx, "bench", total as u64, 1 << 20);
    let run = async {
        let start = Instant::now();
        let stream = driver.dial(addr, ECHO_PORT).await?;
        let (mut rd, mut wr) = tokio::io::split(stream);
        let reader = async {
            let mut buf = vec![0u8; 64 << 10];
            let mut got = 0usize;
            while got < total {
                match rd.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) => return Err(e),
                }
            }
            Ok(got)
        };
        let writer = async {
            let chunk = vec![0xA5u8; BENCH_CHUNK];
            let mut sent = 0usize;
            while sent < total {
                let n = BENCH_CHUNK.min(total - sent);
                wr.write_all(&chunk[..n]).await?;
                sent += n;
                progress.set(sent as u64);
            }
            wr.flush().await?;
            Ok::<_, std::io::Error>(start.elapsed())
        };
        let (send_time, received) = tokio::try_join!(writer, reader)
            .map_err(|e| CliError::new(Code::ConnectionFailed, e.to_string()))?;
        let total_time = start.elapsed();
        let _ = wr.shutdown().await;
        Ok::<_, CliError>((send_time, total_time, received))
    };
    let outcome = tokio::time::timeout(timeout, run).await;
    progress.finish();
    let (send_time, total_time, received) = outcome.map_err(|_| {
        CliError::new(
            Code::Timeout,
            format!("bench did not finish within {timeout:?}"),
        )
        .hint("try a smaller size or a longer --timeout")
    })??;
    let mib = |bytes: usize, d: Duration| {
        let v = bytes as f64 / 1048576.0 / d.as_secs_f64().max(1e-9);
        (v * 100.0).round() / 100.0
    };
    let (send_mbps, total_mbps) = (mib(total, send_time), mib(received, total_time));
    let human = format!(
        "Sent {:.2} MiB in {:.1} ms ({send_mbps} MiB/s); echoed back {:.2} MiB in {:.1} ms ({total_mbps} MiB/s)",
        total as f64 / 1048576.0,
        ms(send_time),
        received as f64 / 1048576.0,
        ms(total_time)
    );
    Ok(Success::new(
        json!({"target": addr.to_string(), "sent_bytes": total, "recv_bytes": received,
               "send_duration_ms": ms(send_time), "total_duration_ms": ms(total_time),
               "send_mbps": send_mbps, "total_mbps": total_mbps}),
        human,
    ))
}

/// Round trips a traceroute measures over its one connection.
const TRACE_SAMPLES: u64 = 3;

/// `traceroute <address> [--timeout 30s]`: one dial to the echo port (its time is the setup),
/// then [`TRACE_SAMPLES`] round trips over that connection. Hostnames are not taken, as in
/// the reference: the setup time would include a registry lookup.
pub async fn traceroute(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 1)?;
    let text = args.arg(0).unwrap_or_default();
    let addr = target::parse_literal(text).ok_or_else(|| {
        CliError::new(Code::InvalidArgument, format!("invalid address {text:?}"))
            .hint("traceroute takes an address (0:0000.0000.002A) or a node ID; find a hostname's with: pilotctl find <hostname>")
    })?;
    let timeout = args.duration("timeout", Duration::from_secs(30))?;
    let deadline = Instant::now() + timeout;
    let driver = ctx.driver().await?;
    let start = Instant::now();
    let dialled = tokio::time::timeout_at(deadline, driver.dial(addr, ECHO_PORT)).await;
    let setup_ms = ms(start.elapsed());
    let failed = |error: String| {
        CliError::new(
            Code::ConnectionFailed,
            format!("traceroute to {addr}: {error} after {setup_ms} ms"),
        )
        .hint("check the peer is online, trusted, and runs its echo service")
    };
    let mut stream = match dialled {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(failed(e.to_string())),
        Err(_) => return Err(failed("timeout".into())),
    };
    ctx.say(&format!(
        "traceroute to {addr}: connected in {setup_ms:.3} ms"
    ));
    let mut samples = Vec::new();
    for seq in 1..=TRACE_SAMPLES {
        let sample = tokio::time::timeout_at(deadline, round_trip(&mut stream, seq)).await;
        let entry = match sample {
            Ok(Ok((rtt, bytes))) => {
                ctx.say(&format!("  {seq}  {:.3} ms  ({bytes} bytes)", ms(rtt)));
                json!({"rtt_ms": ms(rtt), "bytes": bytes})
            }
            Ok(Err(e)) => {
                ctx.say(&format!("  {seq}  error: {e}"));
                json!({"error": e})
            }
            Err(_) => {
                ctx.say(&format!("  {seq}  timeout"));
                json!({"error": "timeout"})
            }
        };
        let failed = entry.get("error").is_some();
        samples.push(entry);
        if failed {
            break;
        }
    }
    let _ = stream.shutdown().await;
    let answered: Vec<f64> = samples
        .iter()
        .filter_map(|s| s["rtt_ms"].as_f64())
        .collect();
    let mut human = format!(
        "--- {addr} traceroute statistics ---\nsetup {setup_ms:.3} ms, {} round trips, {} answered",
        samples.len(),
        answered.len()
    );
    if let Some((min, avg, max)) = min_avg_max(&answered) {
        human.push_str(&format!(
            "\nrtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms"
        ));
    }
    Ok(Success::new(
        json!({"target": addr.to_string(), "setup_ms": setup_ms, "rtt_samples": samples}),
        human,
    ))
}

/// One `trace-<seq>` written and its echo read back whole.
async fn round_trip(
    stream: &mut pilot::driver::Stream,
    seq: u64,
) -> Result<(Duration, usize), String> {
    let payload = format!("trace-{seq}");
    let start = Instant::now();
    stream
        .write_all(payload.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut echo = vec![0u8; payload.len()];
    stream
        .read_exact(&mut echo)
        .await
        .map_err(|e| e.to_string())?;
    Ok((start.elapsed(), echo.len()))
}
