//! What a person sees from `peers`, `ping` and `bench` against real processes
//! (`pilot-rendezvous` and two `pilot-daemon`s on 127.0.0.1), as insta snapshots with the
//! figures that change from run to run (times, rates, addresses, ids, ports) masked; and the
//! bench progress bar, seen under a pseudo-terminal only.

mod process_support;
mod rendezvous_support;

use process_support::{pilotctl, trusted_pair, Node};
use std::process::Stdio;

/// Runs `pilotctl <args>` in human mode; returns stdout, asserting success and that nothing
/// on stderr is a progress bar (stderr is a pipe here, not a terminal).
fn human(node: &Node, args: &[&str]) -> String {
    let out = pilotctl(node)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pilotctl {args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !stderr.contains('\r') && !stderr.contains("=>"),
        "no progress bar off a terminal: {stderr:?}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `pilotctl <line>` under a pseudo-terminal (util-linux `script`); returns what the
/// terminal showed.
fn in_a_terminal(node: &Node, line: &str) -> String {
    let command = format!("{} {line}", env!("CARGO_BIN_EXE_pilotctl"));
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("HOME", &node.home)
        .env("PILOT_SOCKET", &node.socket)
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs pilotctl under a terminal");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "pilotctl {line}: {shown}");
    shown
}

/// Filters for what varies between runs.
fn masks() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"\b\d+:[0-9A-F]{4}\.[0-9A-F]{4}\.[0-9A-F]{4}\b", "[addr]"),
        (r"(?m)^\d+ +127\.0\.0\.1:\d+ +", "[id]  [endpoint]  "),
        (r"127\.0\.0\.1:\d+", "[endpoint]"),
        (r"time=\d+(\.\d+)? ms", "time=[t] ms"),
        (r"= [\d.]+/[\d.]+/[\d.]+ ms", "= [t]/[t]/[t] ms"),
        (r"in \d+(\.\d+)? ms", "in [t] ms"),
        (r"\(\d+(\.\d+)? MiB/s\)", "([rate] MiB/s)"),
    ]
}

#[test]
fn human_output_of_peers_ping_and_bench() {
    let servers = rendezvous_support::start(None);
    let dir = tempfile::tempdir().unwrap();
    let (a, _b, _a_id, b_id) = trusted_pair(dir.path(), servers.registry, servers.beacon);
    let ping = human(&a, &["ping", &b_id, "--count", "3", "--interval", "0"]);
    let peers = human(&a, &["peers"]);
    let bench = human(&a, &["bench", &b_id, "1"]);
    let on_a_terminal = in_a_terminal(&a, &format!("bench {b_id} 4"));
    assert!(
        on_a_terminal.contains("bench [") && on_a_terminal.contains("Sent 4.00 MiB"),
        "a person at a terminal sees a progress bar: {on_a_terminal:?}"
    );
    let scripted = in_a_terminal(&a, &format!("--json bench {b_id} 4"));
    assert!(
        !scripted.contains("bench ["),
        "never with --json: {scripted:?}"
    );
    insta::with_settings!({filters => masks()}, {
        insta::assert_snapshot!("ping", ping);
        insta::assert_snapshot!("peers", peers);
        insta::assert_snapshot!("bench", bench);
    });
}
