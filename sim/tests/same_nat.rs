//! Same-NAT peers: daemons behind one NAT end on each other's private address (a LAN candidate
//! announced through the tunnel), whether the box hairpins or not, and under carrier-grade NAT
//! only the pair that shares a home box does. Traces are reviewed snapshots.

use pilot_sim::scenario::{run, Outcome, Scenario};
use std::path::Path;

const SCENARIOS: [&str; 3] = ["same-nat-hairpin", "same-nat-no-hairpin", "cgnat-two-sites"];

fn text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.toml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run_text(text: &str) -> Outcome {
    run(&Scenario::parse(text).unwrap(), None).unwrap()
}

#[test]
fn same_nat_traces_match_the_snapshots() {
    for name in SCENARIOS {
        let outcome = run_text(&text(name));
        assert!(outcome.passed(), "{name}: {}", outcome.summary());
        let trace = outcome.trace_text();
        // The announcement went sealed through the tunnel, never as plaintext.
        assert!(!trace.contains("PILT"), "{name}");
        insta::with_settings!({
            snapshot_path => "../../snapshots",
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name, trace);
        });
    }
}

#[test]
fn a_same_nat_seed_replays_byte_for_byte() {
    let first = run_text(&text("same-nat-no-hairpin")).trace_text();
    assert_eq!(first, run_text(&text("same-nat-no-hairpin")).trace_text());
}

#[test]
fn without_hairpinning_the_first_contact_is_relayed() {
    // The same story with the LAN expectations turned round: a relayed or punched ending would
    // pass them, a LAN one fails both.
    let edited = text("same-nat-no-hairpin").replace("path = \"lan\"", "path = \"relayed\"");
    let outcome = run_text(&edited);
    assert_eq!(outcome.failures(), 2, "{}", outcome.summary());
    let trace = run_text(&text("same-nat-no-hairpin")).trace_text();
    let relayed = trace.lines().any(|l| l.contains("RelayDeliver"));
    assert!(relayed, "the key exchange went through the beacon first");
}

#[test]
fn across_two_home_boxes_the_lan_candidate_is_not_used() {
    let edited = text("cgnat-two-sites").replace(
        "peer = \"b1\"\npath = \"punched\"",
        "peer = \"b1\"\npath = \"lan\"",
    );
    let outcome = run_text(&edited);
    assert_eq!(outcome.failures(), 1, "{}", outcome.summary());
}
