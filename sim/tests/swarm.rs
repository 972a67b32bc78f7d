//! The swarm search on a fixed sample of seeds (what CI runs), the planted bug it must find,
//! and the shrinker reducing that failure.
//!
//! `docs/SCENARIOS.md` tells how to run thousands of seeds with `pilot-sim swarm`.

use pilot_sim::scenario::{PlantedBug, Scenario};
use pilot_sim::swarm::{self, shrink, Options};
use std::time::Duration;

/// Small worlds, so the sample runs in CI time: up to four daemons, ten seconds of faults.
fn small() -> Options {
    Options {
        time: Duration::from_secs(10),
        max_daemons: 4,
        planted_bug: None,
    }
}

/// The seeds CI runs on every change.
const SAMPLE: std::ops::Range<u64> = 0..6;

#[test]
fn a_fixed_sample_of_seeds_keeps_every_invariant_and_replays_identically() {
    let report = swarm::swarm(&small(), SAMPLE, 2, |_, _| {}).unwrap();
    if let Some(f) = &report.failure {
        panic!(
            "seed {} broke an invariant:\n{}replay: pilot-sim swarm --seeds 1 --from-seed {} --time 10s --max-daemons 4",
            f.generated.seed,
            f.verdict.report(),
            f.generated.seed
        );
    }
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
    assert_eq!(report.passed, SAMPLE.end - SAMPLE.start);
    assert_eq!(report.rechecked.len(), 2);
}

#[test]
fn a_seed_draws_the_same_scenario_every_time_and_other_seeds_draw_others() {
    let options = Options::default();
    let a = swarm::generate(7, &options).unwrap();
    assert_eq!(a.text, swarm::generate(7, &options).unwrap().text);
    assert_ne!(a.text, swarm::generate(8, &options).unwrap().text);
    // The file is an ordinary scenario: it parses back to the same script.
    let parsed = Scenario::parse(&a.text).unwrap();
    assert_eq!(parsed.seed, 7);
    assert_eq!(parsed.actions.len(), a.scenario.actions.len());
    // Topologies span the range the search promises.
    let daemons: Vec<usize> = (0..40)
        .map(|s| {
            let g = swarm::generate(s, &options).unwrap();
            g.scenario
                .hosts
                .iter()
                .filter(|h| h.registry.is_some())
                .count()
        })
        .collect();
    assert!(daemons.iter().all(|n| (2..=20).contains(n)), "{daemons:?}");
    assert!(daemons.iter().any(|n| *n >= 10), "{daemons:?}");
}

#[test]
fn swarm_finds_the_planted_bug_and_shrink_reduces_it() {
    let planted = Options {
        planted_bug: Some(PlantedBug::EchoReorder),
        ..small()
    };
    let report = swarm::swarm(&planted, 0..20, 0, |_, _| {}).unwrap();
    let failure = report
        .failure
        .expect("the planted bug is found within 20 seeds");
    // The held-back chunk comes back out of order, or, when it was the stream's last, never.
    let found = failure.verdict.first().unwrap().to_string();
    assert!(
        ["stream-bytes-intact", "stream-ends"].contains(&found.as_str()),
        "{}",
        failure.verdict.report()
    );
    let seed = failure.generated.seed;
    // The same seed without the bug keeps every invariant: the bug is what the search found.
    let clean = swarm::generate(seed, &small()).unwrap();
    let verdict = swarm::judge(&clean.scenario).unwrap();
    assert!(verdict.passed(), "{}", verdict.report());

    // Six runs show the reduction (5 hosts and 55 actions to 3 and 43). The failure is a
    // stream that never ends, so every run simulates the two-minute hang bound: eighty of
    // them were most of CI's time; with twelve this test took 68 s in a debug build, with
    // six 40 s.
    let shrunk = shrink::shrink(&failure.generated.text, None, 6).unwrap();
    assert_eq!(shrunk.invariant, found);
    assert!(shrunk.verdict.broke(&found));
    assert!(
        shrunk.after.actions < shrunk.before.actions && shrunk.after.hosts <= shrunk.before.hosts,
        "before: {}, after: {}",
        shrunk.before,
        shrunk.after
    );
    // The written file replays the failure with the ordinary runner.
    let small = Scenario::parse(&shrunk.text).unwrap();
    let outcome = pilot_sim::scenario::run(&small, None).unwrap();
    assert!(!outcome.passed());
}

/// A relayed pair (a symmetric NAT on one side) after that NAT reboots: its daemon comes back
/// on a new public port, which the beacon refuses to move its live entry to for
/// `takeover_after`. Seed 201 of the first generator waited 40 s and reported the pair
/// unreachable (its echo's dial timed out); the heal act now waits `rebind_bound()` after a
/// NAT reboot, and the pair echoes by then.
fn relayed_pair_after_a_nat_reboot(heal: Duration) -> String {
    format!(
        r#"
name = "relayed-pair-nat-reboot"
seed = 201
tolerate_errors = true

[[nat]]
name = "nat-a"
preset = "cgnat"

[[nat]]
name = "nat-b"
preset = "symmetric"

[[host]]
name = "rdv"
kind = "rendezvous"

[[host]]
name = "a"
kind = "daemon"
behind = "nat-a"
registry = "rdv"
keepalive = "4s"

[[host]]
name = "b"
kind = "daemon"
behind = "nat-b"
registry = "rdv"
public = true
keepalive = "4s"

[[action]]
do = "wait"
for = "500ms"

[[action]]
do = "handshake"
host = "a"
peer = "b"

[[action]]
do = "approve"
host = "b"
peer = "a"

[[action]]
do = "wait"
for = "3s"

[[action]]
do = "echo"
host = "a"
peer = "b"
tag = "before"

[[action]]
do = "wait"
for = "5s"

[[action]]
do = "crash"
host = "nat-b"

[[action]]
do = "wait"
for = "1s"

[[action]]
do = "restart"
host = "nat-b"

[[action]]
do = "wait"
for = "{}ms"

[[action]]
do = "echo"
host = "a"
peer = "b"
tag = "after"

[[action]]
do = "wait"
for = "130s"
echo = "after"

[[expect]]
check = "echoed"
tag = "before"

[[expect]]
check = "echoed"
tag = "after"
"#,
        heal.as_millis()
    )
}

#[test]
fn a_relayed_pair_is_reachable_within_the_rebind_bound_after_a_nat_reboot() {
    let run = |heal| {
        let scenario = Scenario::parse(&relayed_pair_after_a_nat_reboot(heal)).unwrap();
        pilot_sim::scenario::run(&scenario, None).unwrap()
    };
    let healed = run(swarm::rebind_bound());
    assert!(healed.passed(), "{:#?}", healed.results);

    // Every generated story with a NAT reboot gives its heal act that long.
    let rebooting: Vec<u64> = (0..60)
        .filter(|&seed| {
            let g = swarm::generate(seed, &Options::default()).unwrap();
            g.text.contains("host = \"nat-")
        })
        .collect();
    assert!(!rebooting.is_empty());
    for seed in rebooting {
        let g = swarm::generate(seed, &Options::default()).unwrap();
        let wait = format!("for = \"{}ms\"", swarm::rebind_bound().as_millis());
        assert!(g.text.contains(&wait), "seed {seed} heals for less");
    }
}

/// A peer that crashes after registering: an echo to it times out. Dropping the first wait
/// fails the echo too, but for another cause (the peer has no node ID yet), which shrinking
/// must not take for the same failure.
const CRASHED_PEER: &str = r#"
name = "crashed-peer"
seed = 3
settle = "100ms"
tolerate_errors = true

[[host]]
name = "rdv"
kind = "rendezvous"

[[host]]
name = "a"
kind = "daemon"
public = true
registry = "rdv"

[[host]]
name = "b"
kind = "daemon"
public = true
registry = "rdv"

[[action]]
do = "wait"
for = "2s"

[[action]]
do = "crash"
host = "b"

[[action]]
do = "echo"
host = "a"
peer = "b"
bytes = 100
tag = "e1"

[[expect]]
check = "echoed"
tag = "e1"
"#;

#[test]
fn shrink_keeps_the_cause_of_the_failure_not_only_its_invariant() {
    let before = swarm::judge(&Scenario::parse(CRASHED_PEER).unwrap()).unwrap();
    let target = before.violations.first().expect("the echo fails").clone();
    let shrunk = shrink::shrink(CRASHED_PEER, None, 60).unwrap();
    assert!(
        shrunk.verdict.broke_like(&target),
        "{}",
        shrunk.verdict.report()
    );
    // The wait for the registrations stays, shortened at most.
    let small = Scenario::parse(&shrunk.text).unwrap();
    assert!(
        small.actions.iter().any(|a| a.kind() == "wait"),
        "{}",
        shrunk.text
    );
}
