//! The loss-and-latency table: goodput per (RTT, loss) cell for our transport and for the
//! quinn-proto anchor over the same seeded paths, and their ratio.

use super::{anchor, ours, Outcome};
use pilot::transport::link_model::{GilbertElliott, LinkConfig, Loss};
use std::time::Duration;

/// Bottleneck: 50 Mbit/s, so at 100 ms the bandwidth-delay product (625 KB) fits the 1 MiB
/// windows of both transports and the window is not what limits them.
const RATE: u64 = 50_000_000 / 8;
/// Bytes per transfer.
const TOTAL: usize = 16 << 20;
/// Seeds per cell; the cell reports the mean goodput.
const SEEDS: u64 = 3;
/// Simulated-time cap of one transfer.
const LIMIT: Duration = Duration::from_secs(600);

fn path(rtt_ms: u64, loss: Loss) -> LinkConfig {
    let rtt = Duration::from_millis(rtt_ms);
    let mut link = LinkConfig {
        rtt,
        jitter: rtt / 10,
        loss,
        rate: RATE,
        queue: 0,
    };
    link.queue = link.bdp().max(64 << 10);
    link
}

fn label(loss: Loss) -> String {
    match loss {
        Loss::None => "0".into(),
        Loss::Random(p) => format!("{:.1}%", p * 100.0),
        Loss::Bursty(ge) => {
            let mean = ge.good_to_bad / (ge.good_to_bad + ge.bad_to_good);
            format!("{:.0}% GE/{:.0}", mean * 100.0, 1.0 / ge.bad_to_good)
        }
    }
}

struct Mean {
    goodput: f64,
    first_byte: Duration,
    repairs: u64,
    timeouts: u64,
    complete: bool,
}

fn mean(runs: &[Outcome]) -> Mean {
    let n = runs.len() as f64;
    Mean {
        goodput: runs.iter().map(|r| r.goodput).sum::<f64>() / n,
        first_byte: runs
            .iter()
            .filter_map(|r| r.first_byte)
            .max()
            .unwrap_or_default(),
        repairs: runs.iter().map(|r| r.repairs).sum::<u64>() / runs.len() as u64,
        timeouts: runs.iter().filter_map(|r| r.timeouts).sum::<u64>(),
        complete: runs.iter().all(|r| r.complete),
    }
}

/// Runs every cell and prints the table.
pub fn print() {
    let losses = [
        Loss::None,
        Loss::Random(0.005),
        Loss::Random(0.01),
        Loss::Random(0.02),
        Loss::Random(0.05),
        Loss::Bursty(GilbertElliott::with_mean(0.02, 3.0)),
    ];
    println!(
        "loss and latency ({} MiB per transfer, mean of {SEEDS} seeds, 50 Mbit/s bottleneck, \
         queue max(BDP, 64 KiB), jitter RTT/10, simulated time):",
        TOTAL >> 20
    );
    println!(
        "  {:>6} {:>10} | {:>10} {:>7} {:>5} {:>7} | {:>10} {:>7} | {:>6}",
        "RTT", "loss", "ours MB/s", "retx", "RTOs", "1st B", "quinn MB/s", "lost", "ratio"
    );
    let mut worst: Option<(f64, String)> = None;
    for rtt in [2u64, 20, 100] {
        for loss in losses {
            let link = path(rtt, loss);
            let run = |f: fn(LinkConfig, u64, usize, Duration) -> Outcome| {
                (0..SEEDS)
                    .map(|s| f(link, 100 + s, TOTAL, LIMIT))
                    .collect::<Vec<_>>()
            };
            let o = mean(&run(ours::run));
            let q = mean(&run(anchor::run));
            let ratio = o.goodput / q.goodput;
            let mark = if !o.complete || !q.complete {
                " (incomplete)"
            } else {
                ""
            };
            println!(
                "  {:>4}ms {:>10} | {:>10.2} {:>7} {:>5} {:>5}ms | {:>10.2} {:>7} | {:>6.2}{mark}",
                rtt,
                label(loss),
                o.goodput / 1e6,
                o.repairs,
                o.timeouts,
                o.first_byte.as_millis(),
                q.goodput / 1e6,
                q.repairs,
                ratio,
            );
            if rtt >= 20 && worst.as_ref().is_none_or(|w| ratio < w.0) {
                worst = Some((ratio, format!("{rtt} ms, {}", label(loss))));
            }
        }
    }
    if let Some((ratio, cell)) = worst {
        println!("  lowest ours/quinn at 20 and 100 ms: {ratio:.2} ({cell})");
    }
}
