//! The trace tools on real runs: the determinism recheck, the divergence reporter, `diff`'s
//! comparison.

use pilot_sim::scenario::{self, Scenario};
use pilot_sim::trace::diverge::{first_divergence, hash};
use std::path::Path;

fn load(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    Scenario::load(&path).unwrap()
}

#[test]
fn the_current_simulator_replays_every_sampled_seed() {
    let s = load("hole-punch.toml");
    let report = scenario::search_rechecked(&s, 0..3, 3).unwrap();
    assert!(report.divergence.is_none());
    assert!(report.failure.is_none());
    assert_eq!(
        report.rechecked.iter().map(|r| r.0).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    // Other seeds, other traces: the hash tells runs apart.
    assert_ne!(report.rechecked[0].1, report.rechecked[1].1);
}

#[test]
fn the_divergence_reporter_finds_the_first_differing_line_of_two_real_traces() {
    let s = load("hole-punch.toml");
    let trace = scenario::run(&s, Some(0)).unwrap().trace;
    assert!(trace.len() > 20);
    let mut other = trace.clone();
    other[17] = other[17].replace(" > ", " >> ");
    other[25].push_str(" changed too");
    let d = first_divergence(&trace, &other, 3).unwrap();
    assert_eq!(d.line, 18);
    assert_eq!(d.left.as_ref(), Some(&trace[17]));
    assert_eq!(d.right.as_ref(), Some(&other[17]));
    let before: Vec<usize> = d.before.iter().map(|(n, _)| *n).collect();
    assert_eq!(before, [15, 16, 17]);
    assert_eq!(d.before[2].1, trace[16]);
    assert_eq!(d.left_after[0], (19, trace[18].clone()));
    assert_ne!(hash(&trace), hash(&other));
    let report = d.report("first run", "second run");
    assert!(
        report.contains(&format!("    18 > {}", other[17])),
        "{report}"
    );

    // A second run that stops early parts where it ends.
    let d = first_divergence(&trace, &trace[..30], 3).unwrap();
    assert_eq!((d.line, d.right.as_deref()), (31, None));
}

#[test]
fn a_scenario_replayed_gives_no_divergence() {
    let s = load("hole-punch.toml");
    let first = scenario::run(&s, Some(4)).unwrap();
    assert_eq!(scenario::replay_divergence(&s, &first).unwrap(), None);
    // The replay is compared with the first run, not with itself.
    let mut tampered = first.clone();
    tampered.trace.pop();
    let d = scenario::replay_divergence(&s, &tampered).unwrap().unwrap();
    assert_eq!(d.line, first.trace.len());
}

/// Three daemons: `a` and `b` behind port-restricted cones (they punch), `c` behind a
/// symmetric NAT (it cannot be punched from a port-restricted cone: relayed).
const PUNCHED_AND_RELAYED: &str = r#"
name = "punched-and-relayed"
seed = 3
settle = "100ms"

[[host]]
name = "rdv"
kind = "rendezvous"

[[nat]]
name = "nat-a"
preset = "port-restricted-cone"

[[nat]]
name = "nat-b"
preset = "port-restricted-cone"

[[nat]]
name = "nat-c"
preset = "symmetric"

[[host]]
name = "a"
behind = "nat-a"
kind = "daemon"
registry = "rdv"

[[host]]
name = "b"
behind = "nat-b"
kind = "daemon"
registry = "rdv"

[[host]]
name = "c"
behind = "nat-c"
kind = "daemon"
registry = "rdv"

[[action]]
do = "wait"
for = "100ms"

[[action]]
do = "handshake"
host = "a"
peer = "b"

[[action]]
do = "approve"
host = "b"
peer = "a"

[[action]]
do = "handshake"
host = "a"
peer = "c"

[[action]]
do = "approve"
host = "c"
peer = "a"

[[action]]
do = "wait"
for = "1s"

[[action]]
do = "echo"
host = "a"
peer = "b"
bytes = 4096
tag = "ab"

[[action]]
do = "wait"
for = "60s"
echo = "ab"

[[action]]
do = "echo"
host = "a"
peer = "c"
bytes = 4096
tag = "ac"

[[action]]
do = "wait"
for = "60s"
echo = "ac"

[[expect]]
check = "path"
host = "a"
peer = "b"
path = "punched"

[[expect]]
check = "path"
host = "a"
peer = "c"
path = "relayed"
"#;

#[test]
fn the_timeline_shows_a_punched_pair_and_a_relayed_pair_as_the_daemons_end_up() {
    use pilot_sim::scenario::PathKind;
    use pilot_sim::timeline::{timeline, State};
    let s = Scenario::parse(PUNCHED_AND_RELAYED).unwrap();
    let (outcome, details) = scenario::run_detailed(&s, None).unwrap();
    assert!(outcome.passed(), "{}", outcome.summary());
    let pairs = timeline(&outcome.trace, details.behind_filter());
    let pair = |host: &str, peer: &str| {
        pairs
            .iter()
            .find(|p| p.host == host && p.peer == peer)
            .unwrap_or_else(|| panic!("no pair {host} -> {peer} in {pairs:?}"))
    };
    for (host, peer) in [("a", "b"), ("a", "c")] {
        let p = pair(host, peer);
        // The timeline ends where the daemon's own peer list says the pair is.
        let end = match details.path(host, peer).unwrap() {
            PathKind::Direct | PathKind::Lan => State::Direct,
            PathKind::Punched => State::Punched,
            PathKind::Relayed => State::Relayed,
        };
        assert_eq!(p.last(), Some(end), "{p:?}");
        assert_eq!(p.changes[0].state, State::Probing);
        assert!(p.changes.windows(2).all(|w| w[0].at <= w[1].at));
        // Each change points at the trace line that shows it.
        for c in &p.changes {
            let line = &outcome.trace[c.line - 1];
            assert!(line.contains(&pilot_sim::trace::fmt_time(c.at)), "{line}");
        }
    }
    assert_eq!(pair("a", "b").last(), Some(State::Punched));
    assert_eq!(pair("b", "a").last(), Some(State::Punched));
    assert_eq!(pair("a", "c").last(), Some(State::Relayed));
    assert_eq!(pair("c", "a").last(), Some(State::Relayed));
    // b and c never talk to each other.
    assert!(pairs.iter().all(|p| !(p.host == "b" && p.peer == "c")));
    let text = pilot_sim::timeline::report(&pairs);
    assert!(text.contains("a -> c (node 3)"), "{text}");
}

#[test]
fn the_timeline_of_lines_that_are_not_a_trace_is_empty() {
    let junk = [
        "",
        "garbage",
        "0.000001 a note daemon up as node x",
        "1 2 3 4 5 6",
    ];
    let pairs = pilot_sim::timeline::timeline(&junk, &Default::default());
    assert!(pairs.is_empty());
    assert_eq!(
        pilot_sim::timeline::report(&pairs),
        "no daemon reached another\n"
    );
}
