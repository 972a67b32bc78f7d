//! Scale: one rendezvous, a public hub daemon and N daemons behind NAT boxes of mixed presets
//! (four per box); each registers, gets trust with the hub (handshake, approval) and echoes
//! data through it. The hub's tunnel holds N peers, which is where per-peer timer scans used to
//! cost N on every timer.
//!
//! `cargo test --release -p pilot-sim --test scale` runs 10 daemons; the 100 and 1,000 runs are
//! `#[ignore]`d: `cargo test --release -p pilot-sim --test scale -- --ignored --nocapture`
//! prints, per size, simulated time, wall time, their ratio and peak memory per daemon.

use pilot_sim::scenario::{run, Scenario};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Simulated time every run covers.
const SIMULATED: Duration = Duration::from_secs(60);
const PRESETS: [&str; 4] = [
    "full-cone",
    "restricted-cone",
    "port-restricted-cone",
    "symmetric",
];
const PER_NAT: usize = 4;

/// The scenario text for `n` daemons besides the hub.
fn scale_scenario(n: usize) -> String {
    let mut s = format!(
        "name = \"scale-{n}\"\nseed = 7\nsettle = \"100ms\"\n\n\
         [[host]]\nname = \"rdv\"\nkind = \"rendezvous\"\n\n\
         [[host]]\nname = \"hub\"\nkind = \"daemon\"\nregistry = \"rdv\"\npublic = true\n\n"
    );
    let nats = n.div_ceil(PER_NAT);
    for k in 0..nats {
        let preset = PRESETS[k % PRESETS.len()];
        let _ = write!(s, "[[nat]]\nname = \"nat-{k}\"\npreset = \"{preset}\"\n\n");
    }
    for i in 0..n {
        let _ = write!(
            s,
            "[[host]]\nname = \"d-{i}\"\nbehind = \"nat-{}\"\nkind = \"daemon\"\nregistry = \"rdv\"\n\n",
            i / PER_NAT
        );
    }
    s.push_str("[[action]]\ndo = \"wait\"\nfor = \"500ms\"\n\n");
    for i in 0..n {
        let _ = write!(
            s,
            "[[action]]\ndo = \"handshake\"\nhost = \"d-{i}\"\npeer = \"hub\"\n\n\
             [[action]]\ndo = \"approve\"\nhost = \"hub\"\npeer = \"d-{i}\"\n\n"
        );
    }
    s.push_str("[[action]]\ndo = \"wait\"\nfor = \"10s\"\n\n");
    for i in 0..n {
        let _ = write!(
            s,
            "[[action]]\ndo = \"echo\"\nhost = \"d-{i}\"\npeer = \"hub\"\nbytes = 2000\ntag = \"e-{i}\"\n\n"
        );
    }
    let _ = write!(
        s,
        "[[action]]\ndo = \"wait\"\nuntil = \"{}s\"\n\n",
        SIMULATED.as_secs()
    );
    for i in 0..n {
        let _ = write!(s, "[[expect]]\ncheck = \"echoed\"\ntag = \"e-{i}\"\n\n");
    }
    s
}

/// Peak resident memory of this process, from `/proc/self/status` (Linux), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `n` daemons, checks every echo completed, and prints the figures.
fn run_scale(n: usize) {
    let scenario = Scenario::parse(&scale_scenario(n)).unwrap();
    let before = peak_rss_kib();
    let started = Instant::now();
    let outcome = run(&scenario, None).unwrap();
    let wall = started.elapsed();
    assert!(outcome.passed(), "{}", outcome.summary());
    let ratio = SIMULATED.as_secs_f64() / wall.as_secs_f64();
    let memory = match (before, peak_rss_kib()) {
        (Some(b), Some(a)) => format!(
            "peak RSS {a} KiB (+{} KiB, {:.0} KiB per daemon)",
            a.saturating_sub(b),
            a.saturating_sub(b) as f64 / (n + 1) as f64
        ),
        _ => "peak RSS unknown".to_string(),
    };
    println!(
        "scale {n:>5} daemons (+hub): {:.0} s simulated in {:.2} s wall, {ratio:.1}:1, {} datagrams, {memory}",
        SIMULATED.as_secs_f64(),
        wall.as_secs_f64(),
        outcome.datagrams
    );
}

#[test]
fn ten_daemons_register_trust_and_echo_through_a_hub() {
    run_scale(10);
}

#[test]
fn a_scale_run_replays_byte_for_byte() {
    let scenario = Scenario::parse(&scale_scenario(8)).unwrap();
    let first = run(&scenario, None).unwrap();
    assert!(first.passed(), "{}", first.summary());
    assert_eq!(first.trace, run(&scenario, None).unwrap().trace);
}

#[test]
#[ignore = "about a minute in release; run with --ignored"]
fn a_hundred_daemons() {
    run_scale(100);
}

#[test]
#[ignore = "long; run with --ignored --nocapture"]
fn a_thousand_daemons() {
    run_scale(1000);
}
