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
    assert_eq!(
        failure.verdict.first(),
        Some("stream-bytes-intact"),
        "{}",
        failure.verdict.report()
    );
    let seed = failure.generated.seed;
    // The same seed without the bug keeps every invariant: the bug is what the search found.
    let clean = swarm::generate(seed, &small()).unwrap();
    let verdict = swarm::judge(&clean.scenario).unwrap();
    assert!(verdict.passed(), "{}", verdict.report());

    let shrunk = shrink::shrink(&failure.generated.text, None, 80).unwrap();
    assert_eq!(shrunk.invariant, "stream-bytes-intact");
    assert!(shrunk.verdict.broke("stream-bytes-intact"));
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
