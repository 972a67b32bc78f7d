//! Scale: one rendezvous, a public hub daemon and N daemons behind NAT boxes of mixed presets
//! (four per box); each registers, gets trust with the hub (handshake, approval) and echoes
//! data through it. The hub's tunnel holds N peers, which is where per-peer timer scans used to
//! cost N on every timer.
//!
//! `cargo test --release -p pilot-sim --test scale` runs 10 daemons; the 100 and 1,000 runs are
//! `#[ignore]`d: `cargo test --release -p pilot-sim --test scale -- --include-ignored
//! --nocapture --test-threads=1` prints, per run, simulated time, wall time, their ratio and
//! peak memory per daemon (one run at a time, so that wall times and peaks are each run's
//! own). The figures are in docs/SCENARIOS.md, "Scale".

use pilot_sim::scenario::{run, Scenario};
use pilot_sim::trace::diverge::CONTEXT;
use pilot_sim::trace::first_divergence;
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
/// Handshakes and echo dials to the hub start in groups, one group per pace: the hub, like
/// any daemon, answers at most `syn_rate_limit` (100) SYNs a second and queues at most 64
/// unaccepted connections, so 1,000 dials in one millisecond would be dropped or refused as
/// a real daemon would.
const DIALS_PER_PACE: usize = 8;
const PACE: &str = "100ms";

/// Before the `i`th dial of a phase: a pause at the start of each group but the first.
fn pace(s: &mut String, i: usize) {
    if i > 0 && i % DIALS_PER_PACE == 0 {
        let _ = write!(s, "[[action]]\ndo = \"wait\"\nfor = \"{PACE}\"\n\n");
    }
}

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
        pace(&mut s, i);
        let _ = write!(
            s,
            "[[action]]\ndo = \"handshake\"\nhost = \"d-{i}\"\npeer = \"hub\"\n\n\
             [[action]]\ndo = \"approve\"\nhost = \"hub\"\npeer = \"d-{i}\"\n\n"
        );
    }
    s.push_str("[[action]]\ndo = \"wait\"\nfor = \"10s\"\n\n");
    for i in 0..n {
        pace(&mut s, i);
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

/// A memory figure of this process from `/proc/self/status` (Linux), in KiB: `VmRSS` (now)
/// or `VmHWM` (peak).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident memory now, after resetting the peak (so that a run's peak is its own even after
/// an earlier run in this process).
fn rss_with_peak_reset() -> Option<u64> {
    // "5" resets VmHWM to the current RSS (Linux 4.0 and later); without it the peak may be
    // an earlier run's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kib("VmRSS:")
}

/// Runs `n` daemons, checks every echo completed, and prints the figures.
fn run_scale(n: usize) {
    let scenario = Scenario::parse(&scale_scenario(n)).unwrap();
    let before = rss_with_peak_reset();
    let started = Instant::now();
    let outcome = run(&scenario, None).unwrap();
    let wall = started.elapsed();
    let ratio = SIMULATED.as_secs_f64() / wall.as_secs_f64();
    let memory = match (before, status_kib("VmHWM:")) {
        (Some(b), Some(a)) => format!(
            "peak RSS {a} KiB (+{} KiB, {:.0} KiB per daemon)",
            a.saturating_sub(b),
            a.saturating_sub(b) as f64 / (n + 1) as f64
        ),
        _ => "peak RSS unknown".to_string(),
    };
    let passed = outcome.results.iter().filter(|r| r.passed).count();
    // The figures first, so that a run at a size where checks fail still measures.
    println!(
        "scale {n:>5} daemons (+hub): {:.0} s simulated in {:.2} s wall, {ratio:.1}:1, {} datagrams, {memory}, {passed}/{} checks passed",
        SIMULATED.as_secs_f64(),
        wall.as_secs_f64(),
        outcome.datagrams,
        outcome.results.len()
    );
    assert!(outcome.passed(), "{}", outcome.summary());
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
    let again = run(&scenario, None).unwrap();
    let parted = first_divergence(&first.trace, &again.trace, CONTEXT);
    assert!(parted.is_none(), "{parted:#?}");
}

#[test]
#[ignore = "about ten seconds in release; run with --ignored --nocapture"]
fn a_hundred_daemons() {
    run_scale(100);
}

#[test]
#[ignore = "minutes in release: docs/SCENARIOS.md, Scale"]
fn a_thousand_daemons() {
    run_scale(1000);
}

/// Any size, for diagnosis: `PILOT_SCALE_DAEMONS=300 cargo test --release -p pilot-sim --test
/// scale -- --ignored --nocapture any_number_of_daemons`.
#[test]
#[ignore = "for diagnosis; the size comes from PILOT_SCALE_DAEMONS (default 300)"]
fn any_number_of_daemons() {
    let n = match std::env::var("PILOT_SCALE_DAEMONS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("PILOT_SCALE_DAEMONS={v:?}: expected a daemon count")),
        Err(_) => 300,
    };
    run_scale(n);
}
