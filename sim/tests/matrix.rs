//! The NAT matrix under `cargo test`: every pair of presets, with and without 5% loss, ends on
//! the path `docs/TUNNEL.md` expects and moves its bytes through echo. Tests move 64 KiB per
//! cell to keep the debug build fast; `pilot-sim matrix` moves the full 1 MiB. Three
//! representative pairs have their traces (with a 4 KiB transfer) as snapshots.

use pilot_sim::matrix::{self, PRESETS};
use pilot_sim::scenario::{run, Scenario};

/// Bytes per cell in tests.
const TEST_TRANSFER: usize = 64 << 10;

/// Runs every cell whose initiator is `a`.
fn row(a: &str) {
    let start = PRESETS.iter().position(|p| *p == a).unwrap();
    for b in &PRESETS[start..] {
        for loss in [0.0, 0.05] {
            let r = matrix::run_cell(a, b, loss, TEST_TRANSFER).unwrap();
            assert!(
                r.outcome.passed(),
                "{}:\n{}",
                matrix::name(a, b, loss),
                r.outcome.summary()
            );
            assert_eq!(r.path, Some(r.expected));
        }
    }
}

#[test]
fn matrix_from_open() {
    row("open");
}

#[test]
fn matrix_from_full_cone() {
    row("full-cone");
}

#[test]
fn matrix_from_restricted_cone() {
    row("restricted-cone");
}

#[test]
fn matrix_from_port_restricted_cone() {
    row("port-restricted-cone");
}

#[test]
fn matrix_from_symmetric() {
    row("symmetric");
}

#[test]
fn matrix_from_cgnat() {
    row("cgnat");
}

#[test]
fn a_wrong_path_fails() {
    // The template with another expected path: the observed one is reported against it.
    let text = matrix::scenario_text("symmetric", "symmetric", 0.0, 4096)
        .replace("path = \"relayed\"", "path = \"punched\"");
    let outcome = run(&Scenario::parse(&text).unwrap(), None).unwrap();
    assert_eq!(outcome.failures(), 1, "{}", outcome.summary());
}

#[test]
fn three_representative_pairs_match_the_snapshots() {
    for (a, b) in [
        ("open", "full-cone"),
        ("port-restricted-cone", "port-restricted-cone"),
        ("symmetric", "symmetric"),
    ] {
        let text = matrix::scenario_text(a, b, 0.0, 4096);
        let outcome = run(&Scenario::parse(&text).unwrap(), None).unwrap();
        assert!(outcome.passed(), "{}", outcome.summary());
        // Twice, same bytes: the daemons' randomness comes from the seed only.
        let again = run(&Scenario::parse(&text).unwrap(), None).unwrap();
        assert_eq!(outcome.trace_text(), again.trace_text());
        insta::with_settings!({
            snapshot_path => "../../snapshots",
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(matrix::name(a, b, 0.0), outcome.trace_text());
        });
    }
}
