//! `send-file` against `bench` between two real daemons on loopback, and the daemons' peak
//! resident memory, in one run:
//!
//! ```text
//! cargo bench -p pilot-bins --bench services            # 1 GiB
//! PILOT_BENCH_MB=64 cargo bench -p pilot-bins --bench services
//! cargo bench -p pilot-bins --bench services -- --quick # 64 MiB
//! ```
//!
//! Targets (issue: built-in services): send-file at least 80% of bench throughput for the
//! same size; each daemon's peak resident set (VmHWM, the kernel's own high-water mark, so no
//! sample can miss a peak) under 64 MiB. Rounds alternate so machine noise hits both alike.

#[path = "../tests/process_support/mod.rs"]
mod process_support;
#[path = "../tests/rendezvous_support/mod.rs"]
mod rendezvous_support;

use process_support::{ctl, trusted_pair, Node};
use std::hash::Hasher;
use std::io::{Read, Write};
use std::path::Path;

const ROUNDS: usize = 2;
const TARGET_RATIO: f64 = 0.80;
const TARGET_RSS_MIB: f64 = 64.0;

fn size_mb() -> u64 {
    if std::env::args().any(|a| a == "--quick") {
        return 64;
    }
    std::env::var("PILOT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(1024)
}

/// A file of `mb` MiB of varied bytes (not all zeros, so nothing can shortcut it).
fn make_file(path: &Path, mb: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mb {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        out.write_all(&block).unwrap();
    }
    out.flush().unwrap();
}

fn digest(path: &Path) -> (u64, u64) {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0;
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            return (size, hasher.finish());
        }
        hasher.write(&buf[..n]);
        size += n as u64;
    }
}

/// The kernel's peak resident set of `node`'s process, in MiB.
fn peak_rss_mib(node: &Node) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.proc.child.id())).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (values[(n - 1) / 2] + values[n / 2]) / 2.0
}

fn main() {
    let mb = size_mb();
    let servers = rendezvous_support::start(None);
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _, b_id) = trusted_pair(dir.path(), servers.registry, servers.beacon);

    let source = dir.path().join("payload.bin");
    make_file(&source, mb);
    let sent = digest(&source);
    let path = source.display().to_string();
    let (mut bench, mut file) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let b_run = ctl(&a, &["bench", &b_id, &mb.to_string(), "--timeout", "1800s"]);
        assert_eq!(b_run["recv_bytes"], b_run["sent_bytes"], "{b_run}");
        let f_run = ctl(&a, &["send-file", &b_id, &path]);
        bench.push(b_run["send_mbps"].as_f64().unwrap());
        file.push(f_run["mbps"].as_f64().unwrap());
        println!(
            "round {round}: bench {:.1} MiB/s, send-file {:.1} MiB/s",
            bench[round - 1],
            file[round - 1]
        );
    }
    // Every copy that arrived is whole and identical.
    let received = b.home.join(".pilot/received");
    let copies: Vec<_> = std::fs::read_dir(&received)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .collect();
    assert_eq!(copies.len(), ROUNDS, "received: {copies:?}");
    for copy in &copies {
        assert_eq!(digest(&copy.path()), sent, "{:?} differs", copy.path());
    }

    let (best_bench, best_file) = (
        bench.iter().cloned().fold(0.0, f64::max),
        file.iter().cloned().fold(0.0, f64::max),
    );
    let ratio = median(&mut file.clone()) / median(&mut bench.clone());
    let (rss_a, rss_b) = (peak_rss_mib(&a), peak_rss_mib(&b));
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!("\nsend-file against bench, {mb} MiB, {ROUNDS} rounds each, two daemons on loopback");
    println!(
        "  bench (send)   median {:8.1} MiB/s   best {best_bench:.1}",
        median(&mut bench)
    );
    println!(
        "  send-file      median {:8.1} MiB/s   best {best_file:.1}",
        median(&mut file)
    );
    println!(
        "  ratio          {:8.1} %   (target >= {:.0} %) {}",
        ratio * 100.0,
        TARGET_RATIO * 100.0,
        verdict(ratio >= TARGET_RATIO)
    );
    println!(
        "  peak RSS       sender {rss_a:.1} MiB, receiver {rss_b:.1} MiB   (target < {TARGET_RSS_MIB:.0} MiB) {}",
        verdict(rss_a < TARGET_RSS_MIB && rss_b < TARGET_RSS_MIB)
    );
}
