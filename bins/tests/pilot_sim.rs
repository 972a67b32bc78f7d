//! `pilot-sim` as a real process: summaries, exit codes, the replay line, bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pilot_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pilot-sim"))
        .args(args)
        .output()
        .unwrap()
}

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name)
        .display()
        .to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const SMALL: &str = r#"
name = "small"
seed = 5

[[nat]]
name = "nat"
preset = "port-restricted-cone"

[[host]]
name = "server"

[[host]]
name = "a"
behind = "nat"

[[action]]
do = "bind"
host = "server"
socket = "s"
port = 7000

[[action]]
do = "bind"
host = "a"
socket = "x"

[[action]]
do = "send"
socket = "x"
to = "server:7000"
tag = "hi"
"#;

#[test]
fn a_passing_scenario_exits_zero_and_writes_the_trace() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "ok.toml",
        &format!("{SMALL}\n[[expect]]\ncheck = \"received\"\nsocket = \"s\"\ntag = \"hi\"\n"),
    );
    let trace = dir.path().join("trace.txt");
    let out = pilot_sim(&[
        "run",
        file.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("pass  s received \"hi\""), "{stdout}");
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
    assert!(!stdout.contains("replay:"), "{stdout}");
    let trace = std::fs::read_to_string(trace).unwrap();
    assert!(trace.contains(" nat  10.1.0.2:49152 > "), "{trace}");
}

#[test]
fn a_broken_expectation_fails_with_exactly_one_replay_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "broken.toml",
        &format!("{SMALL}\n[[expect]]\ncheck = \"not-received\"\nsocket = \"s\"\ntag = \"hi\"\n"),
    );
    let path = file.to_str().unwrap();
    let out = pilot_sim(&["run", path, "--seed", "99"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  s did not receive \"hi\""),
        "{stdout}"
    );
    let replays: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("replay:"))
        .collect();
    assert_eq!(replays, [format!("replay: pilot-sim run {path} --seed 99")]);
}

#[test]
fn json_summary_has_results_and_totals() {
    let out = pilot_sim(&["run", &scenario("faults.toml"), "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["scenario"], "faults");
    assert_eq!(v["seed"], 7);
    assert_eq!(v["passed"], true);
    assert_eq!(v["totals"]["failed"], 0);
    assert!(v["results"].as_array().unwrap().len() > 10);
}

#[test]
fn bad_scenarios_give_a_clear_error_and_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("syntax.toml", "name = \n", "TOML parse error"),
        (
            "unknown-host.toml",
            &format!("{SMALL}\n[[action]]\ndo = \"crash\"\nhost = \"nobody\"\n"),
            "\"nobody\", which is not a host or NAT box",
        ),
        (
            "not-adjacent.toml",
            &format!("{SMALL}\n[[action]]\ndo = \"partition\"\nbetween = [\"a\", \"server\"]\n"),
            "never exchange traffic directly",
        ),
        (
            "bad-target.toml",
            &format!("{SMALL}\n[[action]]\ndo = \"send\"\nsocket = \"x\"\nto = \"server\"\ntag = \"t\"\n"),
            "is not host:port",
        ),
        (
            "too-long.toml",
            &format!("{SMALL}\n[[action]]\ndo = \"wait\"\nuntil = \"2h\"\n"),
            "unknown unit",
        ),
        (
            "way-too-long.toml",
            &format!("{SMALL}\n[[action]]\ndo = \"wait\"\nfor = \"200m\"\n"),
            "past 3600 s of simulated time",
        ),
        (
            "unknown-action.toml",
            &format!("{SMALL}\n[[action]]\ndo = \"teleport\"\n"),
            "unknown variant `teleport`",
        ),
        (
            "bad-preset.toml",
            "[[nat]]\nname = \"n\"\npreset = \"leaky\"\n",
            "unknown variant `leaky`",
        ),
        (
            "unbound.toml",
            "[[host]]\nname = \"a\"\n[[action]]\ndo = \"send\"\nsocket = \"s\"\nto = \"a:1\"\ntag = \"t\"\n",
            "is not bound by an earlier action",
        ),
    ];
    for (name, text, expected) in cases {
        let file = write(dir.path(), name, text);
        let out = pilot_sim(&["run", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    let out = pilot_sim(&["run", "/nonexistent/scenario.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn wrong_flags_are_refused_by_clap() {
    let out = pilot_sim(&["run", "x.toml", "--seed", "many"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value"));
}

#[test]
fn search_finds_the_seed_that_breaks_a_flaky_scenario() {
    let dir = tempfile::tempdir().unwrap();
    // Half the datagrams are lost: some seeds deliver the probe, some do not.
    let flaky = format!(
        "{SMALL}\n[[link]]\nbetween = [\"nat\", \"server\"]\nloss = 0.5\n\n[[expect]]\ncheck = \"received\"\nsocket = \"s\"\ntag = \"hi\"\n"
    );
    let file = write(dir.path(), "flaky.toml", &flaky);
    let path = file.to_str().unwrap();
    let out = pilot_sim(&["search", path, "--seeds", "40"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let replay = stdout
        .lines()
        .find_map(|l| l.strip_prefix("replay: "))
        .expect("a replay line");
    // The replay command reproduces the failure.
    let args: Vec<&str> = replay.split(' ').skip(1).collect();
    let again = pilot_sim(&args);
    assert_eq!(again.status.code(), Some(1));

    let steady = write(
        dir.path(),
        "steady.toml",
        &format!("{SMALL}\n[[expect]]\ncheck = \"received\"\nsocket = \"s\"\ntag = \"hi\"\n"),
    );
    let out = pilot_sim(&["search", steady.to_str().unwrap(), "--seeds", "5"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("every run passed"));
}

#[test]
fn matrix_writes_one_scenario_per_cell_and_they_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = pilot_sim(&[
        "matrix",
        "--bytes",
        "4096",
        "--write",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files.len(), 42, "{files:?}");
    assert!(files.contains(&"matrix-symmetric-symmetric-loss5.toml".to_string()));
    let cell = dir.path().join("matrix-symmetric-symmetric.toml");
    let out = pilot_sim(&["run", cell.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("a reaches b relayed"), "{stdout}");
    // A directory that does not exist is a clear error.
    let out = pilot_sim(&["matrix", "--write", "/nonexistent/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hint:"));
}

#[test]
fn search_replays_a_sample_of_seeds_and_reports_their_trace_hashes() {
    let file = scenario("hole-punch.toml");
    let out = pilot_sim(&["search", &file, "--seeds", "4", "--recheck", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let replayed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("replayed identically: seeds "))
        .expect("a recheck line");
    // Two seeds spread over 0..4, each with the hash of its trace.
    let seeds: Vec<(&str, &str)> = replayed
        .split(", ")
        .map(|s| s.split_once(' ').unwrap())
        .collect();
    assert_eq!(seeds.iter().map(|s| s.0).collect::<Vec<_>>(), ["0", "2"]);
    // The hash is that of the trace `run` writes for the seed.
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.txt");
    let run = pilot_sim(&[
        "run",
        &file,
        "--seed",
        "2",
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert!(run.status.success());
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let hash = format!("({:016x})", pilot_sim::trace::diverge::hash(&lines));
    assert_eq!(seeds[1].1, hash);

    let out = pilot_sim(&["search", &file, "--seeds", "2", "--recheck", "0"]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("replayed"));
}

/// Runs `scenario` with `seed`, writing its trace into `dir`; returns the trace's path.
fn trace_of(dir: &Path, scenario_file: &str, seed: &str) -> PathBuf {
    let path = dir.join(format!("trace-{seed}.txt"));
    let out = pilot_sim(&[
        "run",
        scenario_file,
        "--seed",
        seed,
        "--trace",
        path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    path
}

/// The node column of each trace line that is not a note.
fn nodes(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .filter_map(|l| {
            let mut cols = l.split_whitespace().skip(1);
            Some((cols.next()?, cols.next()?))
        })
        .filter(|(_, kind)| *kind != "note")
        .collect()
}

#[test]
fn diff_shows_where_two_seeds_part_and_what_each_carried() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario("hole-punch.toml");
    let (a, b) = (
        trace_of(dir.path(), &file, "0"),
        trace_of(dir.path(), &file, "1"),
    );
    let (ta, tb) = (
        std::fs::read_to_string(&a).unwrap(),
        std::fs::read_to_string(&b).unwrap(),
    );
    let first = ta
        .lines()
        .zip(tb.lines())
        .position(|(x, y)| x != y)
        .unwrap();

    let out = pilot_sim(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("first difference at line {}", first + 1)));
    let shown = format!("{:>6} > {}", first + 1, ta.lines().nth(first).unwrap());
    assert!(stdout.contains(&shown), "{stdout}");
    let shown = format!("{:>6} > {}", first + 1, tb.lines().nth(first).unwrap());
    assert!(stdout.contains(&shown), "{stdout}");
    assert!(stdout.contains("connections: ") && stdout.contains("NAT boxes: "));

    let out = pilot_sim(&["diff", a.to_str().unwrap(), b.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["identical"], false);
    let c = &v["comparison"];
    assert_eq!(c["divergence"]["line"], first + 1);
    // Every event of a NAT box counts under it, every other event under its connection.
    for (side, text) in [ta.as_str(), tb.as_str()].into_iter().enumerate() {
        let total = |tallies: &serde_json::Value| -> u64 {
            tallies
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|t| t["counts"].as_object().unwrap().values())
                .map(|pair| pair[side].as_u64().unwrap())
                .sum()
        };
        let names: Vec<&str> = c["nats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        let events = nodes(text);
        let at_nats = events.iter().filter(|(n, _)| names.contains(n)).count();
        let off_nats = events.iter().filter(|(_, k)| *k != "nat").count();
        assert_eq!(total(&c["nats"]), at_nats as u64);
        assert_eq!(total(&c["connections"]), off_nats as u64);
    }
    // The symmetric NAT picks other ports with another seed: the same story, so each NAT
    // box translates as often, on connections of other names.
    let differs = |key: &str| {
        c[key]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["differs"] == true)
            .count()
    };
    assert!(differs("connections") > 0);
    assert_eq!(differs("nats"), 0);
}

#[test]
fn diff_of_a_trace_with_itself_is_identical_and_a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let a = trace_of(dir.path(), &scenario("hole-punch.toml"), "3");
    let a = a.to_str().unwrap();
    let out = pilot_sim(&["diff", a, a]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("identical"));
    assert!(!stdout.contains("* "), "nothing differs: {stdout}");
    let out = pilot_sim(&["diff", a, a, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["identical"], true);
    assert!(v["comparison"]["divergence"].is_null());

    let missing = dir.path().join("none.txt");
    let out = pilot_sim(&["diff", a, missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the trace"));
    // A file that is not a trace is compared, its foreign lines counted, without a panic.
    let junk = write(dir.path(), "junk.txt", "not a trace\n\u{0}\u{1}\n");
    let out = pilot_sim(&["diff", a, junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("B: 2 lines are not trace lines"));
}

/// One pcap record read back: time, the IPv4/UDP addresses, and the UDP payload's length.
struct Record {
    time: std::time::Duration,
    src: String,
    dst: String,
    payload: usize,
}

fn read_pcap(path: &Path) -> Vec<Record> {
    use pcap_file::pcap::PcapReader;
    let mut reader = PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
    assert_eq!(reader.header().datalink, pcap_file::DataLink::RAW);
    let mut out = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let p = packet.unwrap();
        let d = &p.data;
        assert_eq!(d[0], 0x45, "IPv4 without options");
        assert_eq!(d[9], 17, "UDP");
        assert_eq!(usize::from(u16::from_be_bytes([d[2], d[3]])), d.len());
        assert_eq!(
            usize::from(u16::from_be_bytes([d[24], d[25]])),
            d.len() - 20
        );
        assert_eq!(p.orig_len as usize, d.len());
        let port = |at: usize| u16::from_be_bytes([d[at], d[at + 1]]);
        let ip = |at: usize| format!("{}.{}.{}.{}", d[at], d[at + 1], d[at + 2], d[at + 3]);
        out.push(Record {
            time: p.timestamp,
            src: format!("{}:{}", ip(12), port(20)),
            dst: format!("{}:{}", ip(16), port(22)),
            payload: d.len() - 28,
        });
    }
    out
}

#[test]
fn pcap_holds_every_datagram_the_run_carried_in_simulated_time() {
    let dir = tempfile::tempdir().unwrap();
    // Loss, duplication, reordering and jitter: every path through the fabric.
    let file = scenario("faults.toml");
    let (pcap, trace) = (dir.path().join("run.pcap"), dir.path().join("with.txt"));
    let out = pilot_sim(&[
        "run",
        &file,
        "--pcap",
        pcap.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let reported: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pcap: "))
        .and_then(|l| l.split(' ').next())
        .expect("a pcap line")
        .parse()
        .unwrap();
    let records = read_pcap(&pcap);
    assert_eq!(records.len(), reported);
    // The same count from the trace: each datagram sent or forwarded by a NAT box, and each
    // extra copy, goes onto a link unless it dies before it (lost, partitioned, sender
    // crashing, unroutable).
    let with = std::fs::read_to_string(&trace).unwrap();
    let from_trace: i64 = with
        .lines()
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let dies_on_the_way = ["lost", "partitioned", "sender crashing", "unroutable"]
                .iter()
                .any(|why| l.ends_with(why));
            match cols[2] {
                "send" | "dup" => 1,
                "nat" if cols[6] != "tcp" => 1,
                "drop" if dies_on_the_way => -1,
                _ => 0,
            }
        })
        .sum();
    assert_eq!(from_trace, reported as i64);
    assert!(records.windows(2).all(|w| w[0].time <= w[1].time));

    // Capturing changes nothing: the trace is the one of a run without --pcap, and --json
    // reports the same count.
    let plain = trace_of(dir.path(), &file, "7"); // the scenario's own seed
    assert_eq!(with, std::fs::read_to_string(plain).unwrap());
    let json = pilot_sim(&["run", &file, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["datagrams"], reported);

    // Every datagram a socket received crossed the last link in the capture, earlier.
    for line in with.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols[2] != "recv" {
            continue;
        }
        let (time, size) = (cols[0], cols[6].trim_end_matches('B'));
        let (secs, micros) = time.split_once('.').unwrap();
        let at = std::time::Duration::from_secs(secs.parse().unwrap())
            + std::time::Duration::from_micros(micros.parse().unwrap());
        let size: usize = size.parse().unwrap();
        assert!(
            records
                .iter()
                .any(|r| r.src == cols[3] && r.dst == cols[5] && r.payload == size && r.time <= at),
            "{line}"
        );
    }
}

#[test]
fn pcap_to_an_unwritable_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("no/such/dir/x.pcap");
    let out = pilot_sim(&[
        "run",
        &scenario("hole-punch.toml"),
        "--pcap",
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot create") && stderr.contains("hint:"),
        "{stderr}"
    );
}

#[test]
fn timeline_shows_a_pair_moving_from_the_relay_to_a_punched_path() {
    // The path between the NATs is cut, then healed: relayed first, punched at the end.
    let file = scenario("daemon-upgrade.toml");
    let out = pilot_sim(&["timeline", &file, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], true);
    let pair = v["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["host"] == "a" && p["peer"] == "b")
        .expect("a -> b");
    let states: Vec<&str> = pair["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["probing", "relayed", "punched"]);
    assert!(pair["changes"][2]["why"]
        .as_str()
        .unwrap()
        .contains("off the relay"));

    let out = pilot_sim(&["timeline", &file]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("a -> b (node 2)") && stdout.contains("relayed"),
        "{stdout}"
    );

    let out = pilot_sim(&["timeline", "no-such-scenario.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_pilot-sim"))
        .args(["matrix", "--bytes", "4096"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before anything is printed, as `pilot-sim matrix | head -0` does.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !out.status.success(),
        "the output was lost, so it must not claim success"
    );
}

#[test]
fn swarm_runs_drawn_seeds_and_refuses_an_unknown_planted_bug() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let args = [
        "swarm",
        "--seeds",
        "1",
        "--max-daemons",
        "2",
        "--time",
        "2s",
        "--recheck",
        "1",
        "--out",
        out_dir,
    ];
    let out = pilot_sim(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("seeds 0..1: every run kept every invariant"),
        "{stdout}"
    );
    assert!(
        stdout.contains("replayed identically: seeds 0 ("),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no failure, no file"
    );

    let out = pilot_sim(&["swarm", "--seeds", "1", "--plant", "typo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no planted bug is called \"typo\""));
}

#[test]
fn shrink_keeps_the_failure_and_drops_what_does_not_matter() {
    let dir = tempfile::tempdir().unwrap();
    // The probe is lost on its way; the bystanders and their probe have nothing to do with it.
    let failing = format!(
        "{SMALL}\n[[host]]\nname = \"bystander\"\n\n[[action]]\ndo = \"bind\"\nhost = \"bystander\"\nsocket = \"b\"\n\n[[action]]\ndo = \"send\"\nsocket = \"b\"\nto = \"server:7000\"\ntag = \"other\"\n\n[[action]]\ndo = \"wait\"\nfor = \"2s\"\n\n[[link]]\nbetween = [\"nat\", \"server\"]\nloss = 1.0\n\n[[expect]]\ncheck = \"received\"\nsocket = \"s\"\ntag = \"other\"\n\n[[expect]]\ncheck = \"received\"\nsocket = \"s\"\ntag = \"hi\"\n"
    );
    let file = write(dir.path(), "lost.toml", &failing);
    let out = pilot_sim(&["shrink", file.to_str().unwrap(), "--max-runs", "60"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("still breaks expectation"), "{stdout}");
    let small = dir.path().join("lost-small.toml");
    let text = std::fs::read_to_string(&small).unwrap();
    assert!(!text.contains("bystander"), "{text}");
    assert!(!text.contains("\"2s\""), "{text}");
    let again = pilot_sim(&["run", small.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "the small file still fails");

    let passing = write(
        dir.path(),
        "fine.toml",
        &format!("{SMALL}\n[[expect]]\ncheck = \"received\"\nsocket = \"s\"\ntag = \"hi\"\n"),
    );
    let out = pilot_sim(&["shrink", passing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no failure to keep"));
}
