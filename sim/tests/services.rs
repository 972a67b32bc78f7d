//! Data exchange in scenarios: the shipped service scenarios replay byte for byte and match
//! their reviewed snapshots, their expectations can fail, refusals and missing services are
//! judged as such, and bad scenario input is refused with a hint.

use pilot_sim::scenario::{run, run_detailed, Outcome, Scenario};
use std::path::Path;

fn text_of(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.toml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn trace(name: &str, seed: Option<u64>) -> String {
    let outcome = run(&Scenario::parse(&text_of(name)).unwrap(), seed).unwrap();
    assert!(outcome.passed(), "{}", outcome.summary());
    outcome.trace_text()
}

/// Replaces `from` with `to` in the scenario's text (which must contain it) and runs it.
fn run_edited(name: &str, from: &str, to: &str) -> Outcome {
    let text = text_of(name);
    assert!(text.contains(from), "{name} does not contain {from:?}");
    let scenario = Scenario::parse(&text.replacen(from, to, 1)).unwrap();
    run(&scenario, None).unwrap()
}

fn failed(o: &Outcome) -> Vec<String> {
    o.results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.description.clone())
        .collect()
}

const SERVICES: [&str; 2] = ["services-exchange", "services-crash-before-ack"];

#[test]
fn service_scenarios_replay_byte_for_byte_and_match_the_snapshots() {
    for name in SERVICES {
        // Twice in one process: nothing may leak between runs.
        let first = trace(name, None);
        assert_eq!(first, trace(name, None), "{name} did not replay");
        insta::with_settings!({
            snapshot_path => "../../snapshots",
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name, first);
        });
    }
    // Loss is drawn from the seed: another seed loses other datagrams (and need not pass:
    // with seed 7 a dial through the lossy NATs times out).
    let other = run(
        &Scenario::parse(&text_of("services-exchange")).unwrap(),
        Some(7),
    )
    .unwrap();
    assert_ne!(trace("services-exchange", None), other.trace_text());
}

#[test]
fn the_crash_keeps_the_stored_message_and_drops_its_ack() {
    let t = trace("services-crash-before-ack", None);
    let fired = t
        .lines()
        .position(|l| l.contains("crash-when fired (after 1 stored entry)"))
        .expect("the trigger fired");
    let crash = fired
        + t.lines()
            .skip(fired)
            .position(|l| l.ends_with("note crash"))
            .expect("the host crashed");
    // Between the trigger and the crash, whatever the receiver sent was dropped.
    let between: Vec<&str> = t.lines().take(crash).skip(fired).collect();
    assert!(
        between.iter().any(|l| l.contains("sender crashing")),
        "{between:#?}"
    );
    // ... and nothing of it reached the sender: b's datagrams after the trigger are drops.
    let escaped: Vec<&&str> = between
        .iter()
        .filter(|l| l.split_whitespace().nth(1) == Some("b"))
        .filter(|l| l.split_whitespace().nth(2) == Some("send"))
        .filter(|l| {
            let key = l.split_whitespace().skip(3).collect::<Vec<_>>().join(" ");
            !between
                .iter()
                .any(|d| d.contains(" drop ") && d.contains(&key))
        })
        .collect();
    assert!(escaped.is_empty(), "{escaped:#?}");
}

#[test]
fn wrong_service_expectations_fail() {
    let name = "services-crash-before-ack";
    // The message stored before the crash is in the store, so it is not "not delivered".
    let o = run_edited(
        name,
        "check = \"delivered\"\ntag = \"unacked\"",
        "check = \"not-delivered\"\ntag = \"unacked\"",
    );
    assert_eq!(
        failed(&o),
        ["\"unacked\" was not delivered"],
        "{}",
        o.summary()
    );
    // The half file is not in the store.
    let o = run_edited(
        name,
        "check = \"not-delivered\"\ntag = \"half\"",
        "check = \"delivered\"\ntag = \"half\"",
    );
    assert_eq!(failed(&o).len(), 1, "{}", o.summary());
    // The message sent before any trouble was ACKed.
    let o = run_edited(
        name,
        "check = \"acked\"\ntag = \"before\"",
        "check = \"not-acked\"\ntag = \"before\"",
    );
    assert_eq!(failed(&o).len(), 1, "{}", o.summary());
    // Without the first trigger, the message is ACKed after all.
    let o = run_edited(name, "stored = 1", "stored = 5");
    let f = failed(&o);
    assert!(
        f.iter().any(|d| d.contains("\"unacked\" was not told")),
        "{}",
        o.summary()
    );
}

const BASE: &str = r#"
seed = 3
settle = "100ms"
[[host]]
name = "rdv"
kind = "rendezvous"
[[host]]
name = "a"
kind = "daemon"
registry = "rdv"
[[host]]
name = "b"
kind = "daemon"
registry = "rdv"
"#;

const TRUST: &str = r#"
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
do = "wait"
for = "1s"
[[action]]
do = "send-message"
from = "a"
to = "b"
text = "hi"
timeout = "5s"
tag = "m"
[[action]]
do = "wait"
for = "10s"
send = "m"
"#;

fn run_text(text: &str) -> (Outcome, pilot_sim::scenario::Details) {
    run_detailed(&Scenario::parse(text).unwrap(), None).unwrap()
}

#[test]
fn a_full_mailbox_refuses_and_nothing_is_claimed() {
    let base = BASE.replacen("name = \"b\"\n", "name = \"b\"\nmailbox_capacity = 10\n", 1);
    let expect = "[[expect]]\ncheck = \"not-acked\"\ntag = \"m\"\n\
        [[expect]]\ncheck = \"not-delivered\"\ntag = \"m\"\n\
        [[expect]]\ncheck = \"acked-kept\"\n";
    let (o, d) = run_text(&format!("{base}{TRUST}{expect}"));
    let reply = d
        .send("m")
        .and_then(|s| s.reply.clone())
        .unwrap_or_default();
    assert!(reply.starts_with("ERR TEXT save failed"), "{reply}");
    // Nothing was ACKed: acked-kept has nothing to vouch for and says so.
    assert_eq!(failed(&o).len(), 1, "{}", o.summary());
    assert!(failed(&o)[0].starts_with("every ACKed send"));
}

#[test]
fn a_receiver_without_data_exchange_stores_nothing() {
    let base = BASE.replacen("name = \"b\"\n", "name = \"b\"\ndataexchange = false\n", 1);
    let expect = "[[expect]]\ncheck = \"not-acked\"\ntag = \"m\"\n\
        [[expect]]\ncheck = \"not-delivered\"\ntag = \"m\"\n";
    let (o, d) = run_text(&format!("{base}{TRUST}{expect}"));
    assert!(o.passed(), "{}", o.summary());
    assert!(d.send("m").is_some_and(|s| s.error.is_some() && !s.claimed));
    // With the service on, the same message arrives.
    let expect = "[[expect]]\ncheck = \"delivered\"\ntag = \"m\"\n\
        [[expect]]\ncheck = \"acked\"\ntag = \"m\"\n[[expect]]\ncheck = \"acked-kept\"\nto = \"b\"\n";
    let (o, _) = run_text(&format!("{BASE}{TRUST}{expect}"));
    assert!(o.passed(), "{}", o.summary());
}

#[test]
fn bad_service_scenarios_are_refused_with_a_hint() {
    let msg = |fields: &str| {
        format!(
            "[[action]]\ndo = \"send-message\"\nfrom = \"a\"\nto = \"b\"\ntag = \"m\"\n{fields}"
        )
    };
    let file = |fields: &str| {
        format!("[[action]]\ndo = \"send-file\"\nfrom = \"a\"\nto = \"b\"\ntag = \"f\"\n{fields}")
    };
    let cases = [
        (
            "[[action]]\ndo = \"send-message\"\nfrom = \"a\"\nto = \"c\"\ntext = \"x\"\ntag = \"m\"\n".to_string(),
            "\"c\", which runs no daemon",
        ),
        (
            "[[action]]\ndo = \"send-message\"\nfrom = \"a\"\nto = \"a\"\ntext = \"x\"\ntag = \"m\"\n".to_string(),
            "sending to itself",
        ),
        (msg("size = 16777217\n"), "exceeds the 16777216-byte frame limit"),
        (msg("text = \"x\"\nsize = 3\n"), "exactly one of `text`, `json` and `size`"),
        (msg(""), "exactly one of `text`, `json` and `size`"),
        (msg("text = \"x\"\nformat = \"json\"\n"), "there is no `size`"),
        (msg("size = 1\nformat = \"json\"\n"), "no JSON document has 1 bytes"),
        (msg("text = \"x\"\ntimeout = \"0s\"\n"), "a timeout of 0"),
        (format!("{}{}", msg("text = \"x\"\n"), msg("text = \"y\"\n")), "send tag \"m\" is used twice"),
        (file("name = \"x.bin\"\nsize = 67108865\n"), "too large for the simulator"),
        (file("name = \"../etc/x\"\nsize = 1\n"), "would store \"../etc/x\" as \"x\""),
        (file("name = \"..\"\nsize = 1\n"), "not a usable file name"),
        (
            "[[action]]\ndo = \"crash-when\"\nhost = \"b\"\n".to_string(),
            "exactly one of `stored` and `received_bytes`",
        ),
        (
            "[[action]]\ndo = \"crash-when\"\nhost = \"b\"\nstored = 1\nreceived_bytes = 5\n".to_string(),
            "exactly one of `stored` and `received_bytes`",
        ),
        (
            "[[action]]\ndo = \"crash-when\"\nhost = \"b\"\nstored = 0\n".to_string(),
            "would fire at once",
        ),
        (
            "[[action]]\ndo = \"crash-when\"\nhost = \"rdv\"\nstored = 1\n".to_string(),
            "\"rdv\", which runs no daemon",
        ),
        (
            "[[action]]\ndo = \"wait\"\nfor = \"1s\"\nsend = \"m\"\n".to_string(),
            "send \"m\" is not started by an earlier action",
        ),
        (
            "[[expect]]\ncheck = \"delivered\"\ntag = \"m\"\n".to_string(),
            "send \"m\", which no send-message or send-file tags",
        ),
        (
            "[[expect]]\ncheck = \"acked-kept\"\n".to_string(),
            "no action sends anything",
        ),
        (
            format!("{}[[expect]]\ncheck = \"acked-kept\"\nto = \"rdv\"\n", msg("text = \"x\"\n")),
            "\"rdv\", which runs no daemon",
        ),
        (
            "[[host]]\nname = \"p\"\ndataexchange = true\n".to_string(),
            "`dataexchange` is only for daemon hosts",
        ),
    ];
    for (extra, expected) in cases {
        let text = format!("{BASE}{extra}");
        match Scenario::parse(&text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(expected), "{msg}\nwanted {expected:?}");
                assert!(msg.contains("hint:"), "{msg}");
            }
        }
    }
    // A crash trigger needs a store to fire in.
    let off = BASE.replacen("name = \"b\"\n", "name = \"b\"\ndataexchange = false\n", 1);
    let text = format!("{off}[[action]]\ndo = \"crash-when\"\nhost = \"b\"\nstored = 1\n");
    let e = Scenario::parse(&text).unwrap_err().to_string();
    assert!(e.contains("runs no data exchange"), "{e}");
    let both = BASE.replacen(
        "name = \"b\"\n",
        "name = \"b\"\ndataexchange = false\nmailbox_capacity = 5\n",
        1,
    );
    let e = Scenario::parse(&both).unwrap_err().to_string();
    assert!(
        e.contains("`mailbox_capacity` with data exchange off"),
        "{e}"
    );
}
