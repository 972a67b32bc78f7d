//! NAT behaviours the presets of `scenarios/nat-probe.toml` do not cover, each shown with raw
//! UDP probes in a small scenario: individual behaviours, the default lifetime, replay.

use pilot_sim::scenario::{run, Scenario};

/// A scenario with public hosts `server` and `other` (sockets s1 on 7000, s2 on 7001, o1 on
/// 7000), a NAT box `nat` described by `nat`, and `in` behind it with socket x on 4000.
fn probe(nat: &str, script: &str) -> Scenario {
    let text = format!(
        r#"
seed = 11
[[nat]]
name = "nat"
{nat}
[[host]]
name = "server"
[[host]]
name = "other"
[[host]]
name = "in"
behind = "nat"
[[action]]
do = "bind"
host = "server"
socket = "s1"
port = 7000
[[action]]
do = "bind"
host = "server"
socket = "s2"
port = 7001
[[action]]
do = "bind"
host = "other"
socket = "o1"
port = 7000
[[action]]
do = "bind"
host = "in"
socket = "x"
port = 4000
{script}
"#
    );
    Scenario::parse(&text).unwrap()
}

fn assert_passes(scenario: &Scenario) {
    let outcome = run(scenario, None).unwrap();
    assert!(outcome.passed(), "{}", outcome.summary());
}

const TO_THREE_DESTINATIONS: &str = r#"
[[action]]
do = "send"
socket = "x"
to = "server:7000"
tag = "p1"
[[action]]
do = "send"
socket = "x"
to = "server:7001"
tag = "p2"
[[action]]
do = "send"
socket = "x"
to = "other:7000"
tag = "p3"
"#;

#[test]
fn address_dependent_mapping_keeps_the_port_per_destination_ip() {
    let s = probe(
        "mapping = \"address-dependent\"\nfiltering = \"endpoint-independent\"\nports = \"sequential\"",
        &format!(
            "{TO_THREE_DESTINATIONS}
[[expect]]
check = \"same-source\"
tags = [\"p1\", \"p2\"]
[[expect]]
check = \"different-source\"
tags = [\"p1\", \"p3\"]
[[expect]]
check = \"source\"
tag = \"p1\"
port = 20000
"
        ),
    );
    assert_passes(&s);
}

#[test]
fn symmetric_mapping_with_preserved_ports_still_splits_destinations() {
    let s = probe(
        "preset = \"symmetric\"\nports = \"preserving\"",
        &format!(
            "{TO_THREE_DESTINATIONS}
[[expect]]
check = \"source\"
tag = \"p1\"
port = 4000
[[expect]]
check = \"different-source\"
tags = [\"p1\", \"p2\", \"p3\"]
"
        ),
    );
    assert_passes(&s);
}

/// With the default 30 s lifetime: a mapping idle for 31 s is gone; one refreshed by an
/// outbound packet at 20 s still works at 45 s; inbound packets at 10 s and 25 s do not
/// keep an idle mapping alive.
#[test]
fn default_lifetime_is_thirty_seconds_of_outbound_silence() {
    let refreshed = probe(
        "preset = \"full-cone\"",
        r#"
[[action]]
do = "send"
socket = "x"
to = "server:7000"
tag = "open"
[[action]]
do = "wait"
until = "10s"
[[action]]
do = "send"
socket = "s1"
reply_to = "open"
tag = "in-10s"
[[action]]
do = "wait"
until = "20s"
[[action]]
do = "send"
socket = "x"
to = "server:7000"
tag = "keep"
[[action]]
do = "wait"
until = "25s"
[[action]]
do = "send"
socket = "s1"
reply_to = "open"
tag = "in-25s"
[[action]]
do = "wait"
until = "45s"
[[action]]
do = "send"
socket = "s1"
reply_to = "open"
tag = "in-45s"
[[action]]
do = "wait"
until = "51s"
[[action]]
do = "send"
socket = "s1"
reply_to = "open"
tag = "in-51s"
[[expect]]
check = "received"
socket = "x"
tag = "in-10s"
[[expect]]
check = "received"
socket = "x"
tag = "in-25s"
[[expect]]
check = "received"
socket = "x"
tag = "in-45s"
[[expect]]
check = "not-received"
socket = "x"
tag = "in-51s"
[[expect]]
check = "trace-contains"
text = "\"in-51s\" no mapping"
"#,
    );
    assert_passes(&refreshed);
}

#[test]
fn a_scenario_replays_byte_for_byte_and_the_seed_matters() {
    let s = probe(
        "preset = \"symmetric\"",
        &format!("{TO_THREE_DESTINATIONS}\n[[expect]]\ncheck = \"received\"\nsocket = \"s1\"\ntag = \"p1\"\n"),
    );
    let first = run(&s, None).unwrap();
    let again = run(&s, None).unwrap();
    assert!(first.passed(), "{}", first.summary());
    assert_eq!(first.trace_text(), again.trace_text());
    assert_eq!(first.results, again.results);
    let other = run(&s, Some(12)).unwrap();
    assert_ne!(first.trace_text(), other.trace_text());
}

#[test]
fn a_broken_expectation_is_reported_not_hidden() {
    let s = probe(
        "preset = \"port-restricted-cone\"",
        r#"
[[action]]
do = "send"
socket = "x"
to = "server:7000"
tag = "p1"
[[action]]
do = "wait"
for = "20ms"
[[action]]
do = "send"
socket = "o1"
reply_to = "p1"
tag = "stranger"
[[expect]]
check = "received"
socket = "x"
tag = "stranger"
"#,
    );
    let outcome = run(&s, None).unwrap();
    assert!(!outcome.passed());
    assert_eq!(outcome.failures(), 1);
    assert!(outcome.summary().contains("FAIL  x received \"stranger\""));
}
