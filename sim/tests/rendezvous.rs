//! The rendezvous scenarios: their traces are reviewed snapshots, a seed replays them byte for
//! byte, and their expectations can fail (a wrong expectation is reported, not waved through).

use pilot_sim::scenario::{run, Scenario};
use std::path::Path;

fn load(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.toml"));
    Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn trace(name: &str, seed: Option<u64>) -> String {
    let outcome = run(&load(name), seed).unwrap();
    assert!(outcome.passed(), "{}", outcome.summary());
    outcome.trace_text()
}

#[test]
fn rendezvous_traces_match_the_snapshots() {
    for name in [
        "rendezvous-register",
        "rendezvous-crash",
        "rendezvous-standby",
        "rendezvous-promote",
        "rendezvous-handshake",
    ] {
        let text = trace(name, None);
        insta::with_settings!({
            snapshot_path => "../../snapshots",
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name, text);
        });
    }
}

#[test]
fn a_rendezvous_seed_replays_byte_for_byte() {
    // Twice in one process: nothing (a global counter, a hash seed) may leak between runs.
    let first = trace("rendezvous-crash", Some(5));
    assert_eq!(first, trace("rendezvous-crash", Some(5)));
    // Keys come from the seed, so another seed shows other keys in the frames.
    assert_ne!(first, trace("rendezvous-crash", Some(6)));
}

/// Replaces `from` with `to` in the scenario's text (which must contain it) and runs it.
fn run_edited(name: &str, from: &str, to: &str) -> pilot_sim::scenario::Outcome {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.toml"));
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{name} does not contain {from:?}");
    let scenario = Scenario::parse(&text.replacen(from, to, 1)).unwrap();
    run(&scenario, None).unwrap()
}

#[test]
fn wrong_expectations_fail() {
    // A node ID that the registry did not give.
    let o = run_edited("rendezvous-register", "node_id = 4", "node_id = 5");
    assert_eq!(o.failures(), 1, "{}", o.summary());
    // Another NAT's address.
    let o = run_edited(
        "rendezvous-register",
        "real_addr = \"home-b:5000\"",
        "real_addr = \"home-a:5000\"",
    );
    assert_eq!(o.failures(), 1, "{}", o.summary());
    // Without the partition's heal, the standby never catches up.
    let o = run_edited("rendezvous-standby", "do = \"heal\"", "do = \"set-link\"");
    assert!(o.failures() >= 2, "{}", o.summary());
    let failed: Vec<_> = o.results.iter().filter(|r| !r.passed).collect();
    assert!(failed
        .iter()
        .any(|r| r.description.contains("same directory")));
}

#[test]
fn bad_rendezvous_scenarios_are_refused_with_a_hint() {
    const BASE: &str = "[[host]]\nname = \"rdv\"\nkind = \"rendezvous\"\n\
        [[nat]]\nname = \"home\"\npreset = \"full-cone\"\n\
        [[host]]\nname = \"a\"\nbehind = \"home\"\n";
    const REG: &str =
        "[[action]]\ndo = \"register\"\nhost = \"a\"\nregistry = \"rdv\"\ntag = \"r\"\n";
    let cases = [
        (
            "[[host]]\nname = \"s\"\nkind = \"standby\"\n".to_string(),
            "a standby needs a primary",
        ),
        (
            "[[host]]\nname = \"s\"\nkind = \"rendezvous\"\nbehind = \"home\"\n".to_string(),
            "must be reachable from the internet",
        ),
        (
            "[[host]]\nname = \"p\"\nregistry_port = 9\n".to_string(),
            "only for rendezvous and standby hosts",
        ),
        (
            "[[action]]\ndo = \"register\"\nhost = \"a\"\nregistry = \"a\"\n".to_string(),
            "\"a\", which runs no registry",
        ),
        (
            "[[action]]\ndo = \"bind\"\nhost = \"rdv\"\nsocket = \"s\"\n".to_string(),
            "runs a registry or a daemon, not the probe agent",
        ),
        (
            format!("{REG}[[action]]\ndo = \"resolve\"\nhost = \"a\"\nregistry = \"rdv\"\ntarget = \"b\"\n"),
            "identity \"b\" is not registered by an earlier action",
        ),
        (
            "[[action]]\ndo = \"promote\"\nhost = \"rdv\"\n".to_string(),
            "is not a standby",
        ),
        (
            format!("{REG}{REG}"),
            "reply tag \"r\" is used twice",
        ),
        (
            format!("{REG}[[expect]]\ncheck = \"reply\"\ntag = \"x\"\nok = true\n"),
            "reply \"x\", which no request action tags",
        ),
        (
            format!("{REG}[[expect]]\ncheck = \"reply\"\ntag = \"r\"\n"),
            "says nothing about the reply",
        ),
        (
            "[[expect]]\ncheck = \"same-state\"\nhosts = [\"rdv\", \"a\"]\n".to_string(),
            "\"a\", which runs no registry",
        ),
    ];
    for (extra, expected) in cases {
        let text = format!("{BASE}{extra}");
        match Scenario::parse(&text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(expected), "{msg}\nwanted {expected:?}");
                assert!(msg.contains("hint:"), "no hint: {msg}");
            }
        }
    }
}
