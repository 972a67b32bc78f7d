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
