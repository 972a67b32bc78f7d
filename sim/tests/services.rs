//! Services in scenarios (data exchange, event stream, task submit): the shipped service
//! scenarios replay byte for byte and match their reviewed snapshots, their expectations can
//! fail, refusals and missing services are judged as such, and bad scenario input is refused
//! with a hint.

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
    run_edits(name, &[(from, to)])
}

/// [`run_edited`] with several replacements, in order.
fn run_edits(name: &str, edits: &[(&str, &str)]) -> Outcome {
    let mut text = text_of(name);
    for (from, to) in edits {
        assert!(text.contains(from), "{name} does not contain {from:?}");
        text = text.replacen(from, to, 1);
    }
    run(&Scenario::parse(&text).unwrap(), None).unwrap()
}

fn failed(o: &Outcome) -> Vec<String> {
    o.results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.description.clone())
        .collect()
}

const SERVICES: [&str; 4] = [
    "services-exchange",
    "services-crash-before-ack",
    "services-pubsub",
    "services-tasks",
];

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
    // Loss is drawn from the seed: another seed loses other datagrams.
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

#[test]
fn wrong_event_and_task_expectations_fail() {
    // A subscription gets every event of its filter: one missing is a failure ...
    let o = run_edited(
        "services-pubsub",
        "texts = [\"one\", \"two\", \"three\"]",
        "texts = [\"one\", \"three\"]",
    );
    assert_eq!(failed(&o).len(), 1, "{}", o.summary());
    assert!(failed(&o)[0].starts_with("subscription \"news\""));
    // ... and so is the event published before anyone subscribed, were it expected.
    let o = run_edited(
        "services-pubsub",
        "texts = [\"one\", \"two\", \"sunny\", \"three\"]",
        "texts = [\"before anyone listened\", \"one\", \"two\", \"sunny\", \"three\"]",
    );
    assert_eq!(failed(&o).len(), 1, "{}", o.summary());
    let name = "services-tasks";
    let o = run_edited(name, "status = \"COMPLETED\"", "status = \"SUCCEEDED\"");
    assert_eq!(
        failed(&o),
        ["boss's copy of task \"primes\" is SUCCEEDED"],
        "{}",
        o.summary()
    );
    let o = run_edited(
        name,
        "text = \"168\"\n\n[[expect]]",
        "text = \"169\"\n\n[[expect]]",
    );
    assert_eq!(failed(&o).len(), 1, "{}", o.summary());
}

#[test]
fn a_subscription_with_a_count_stops_after_it() {
    let o = run_edits(
        "services-pubsub",
        &[
            (
                "topic = \"news\"\ntag = \"news\"",
                "topic = \"news\"\ncount = 2\ntag = \"news\"",
            ),
            (
                "texts = [\"one\", \"two\", \"three\"]",
                "texts = [\"one\", \"two\"]",
            ),
        ],
    );
    assert!(o.passed(), "{}", o.summary());
}

#[test]
fn a_task_step_out_of_order_is_reported_and_changes_nothing() {
    // The declined task is not in the queue: executing it names the real head and fails.
    let o = run_edited(
        "services-tasks",
        "do = \"execute-task\"\nhost = \"worker\"\ntag = \"primes\"",
        "do = \"execute-task\"\nhost = \"worker\"\ntag = \"cobol\"",
    );
    let f = failed(&o);
    assert!(
        f.iter().any(|d| d == "host software did what it was told"),
        "{}",
        o.summary()
    );
    assert!(
        o.summary().contains("the head of the queue is task"),
        "{}",
        o.summary()
    );
    // Results for a task still ACCEPTED... were sent (execute-task moved the head), so the
    // one that cannot change is the declined task: it stays DECLINED on both sides.
    assert!(
        !f.iter().any(|d| d.contains("\"cobol\" is DECLINED")),
        "{}",
        o.summary()
    );
    // Accepting a declined task is refused: it is no longer NEW.
    let o = run_edited(
        "services-tasks",
        "do = \"send-results\"",
        "do = \"accept-task\"\nhost = \"worker\"\ntag = \"cobol\"\n\n[[action]]\ndo = \"send-results\"",
    );
    assert!(o.summary().contains("not NEW"), "{}", o.summary());
}

#[test]
fn bad_event_and_task_scenarios_are_refused_with_a_hint() {
    let sub = |fields: &str| {
        format!("[[action]]\ndo = \"subscribe\"\nhost = \"a\"\nat = \"b\"\ntag = \"s\"\n{fields}")
    };
    let publish =
        |fields: &str| format!("[[action]]\ndo = \"publish\"\nhost = \"a\"\nat = \"b\"\n{fields}");
    let submit = |fields: &str| {
        format!("[[action]]\ndo = \"submit-task\"\nfrom = \"a\"\ntag = \"t\"\n{fields}")
    };
    let submitted = submit("to = \"b\"\ntask = \"x\"\n");
    let cases = [
        (sub("topic = \"\"\n"), "`topic` is empty"),
        (sub("topic = \"n\"\ncount = 0\n"), "count = 0"),
        (
            "[[action]]\ndo = \"subscribe\"\nhost = \"a\"\nat = \"a\"\ntopic = \"n\"\ntag = \"s\"\n".to_string(),
            "would talk to itself",
        ),
        (format!("{}{}", sub("topic = \"n\"\n"), sub("topic = \"m\"\n")), "subscription tag \"s\" is used twice"),
        (publish("topic = \"*\"\ntexts = [\"x\"]\n"), "not \"*\""),
        (publish("topic = \"n\"\ntexts = []\n"), "`texts` is empty"),
        (publish("topic = \"n\"\ntext = \"x\"\n"), "unknown field `text`"),
        (submit("to = \"a\"\ntask = \"x\"\n"), "would talk to itself"),
        (submit("to = \"b\"\ntask = \"\"\n"), "`task` is empty"),
        (submit("to = \"rdv\"\ntask = \"x\"\n"), "\"rdv\", which runs no daemon"),
        (format!("{submitted}{submitted}"), "task tag \"t\" is used twice"),
        (
            "[[action]]\ndo = \"accept-task\"\nhost = \"b\"\ntag = \"t\"\n".to_string(),
            "task \"t\" is not submitted by an earlier action",
        ),
        (
            format!("{submitted}[[action]]\ndo = \"execute-task\"\nhost = \"a\"\ntag = \"t\"\n"),
            "submitted to \"b\", not \"a\"",
        ),
        (
            format!("{submitted}[[action]]\ndo = \"decline-task\"\nhost = \"b\"\ntag = \"t\"\njustification = \"\"\n"),
            "`justification` is empty",
        ),
        (
            "[[action]]\ndo = \"wait\"\nfor = \"1s\"\nsubscribed = \"s\"\n".to_string(),
            "subscription \"s\" is not started by an earlier action",
        ),
        (
            "[[expect]]\ncheck = \"events\"\ntag = \"s\"\ntexts = []\n".to_string(),
            "no subscribe action has tag \"s\"",
        ),
        (
            "[[expect]]\ncheck = \"task-results\"\ntag = \"t\"\ntext = \"x\"\n".to_string(),
            "no submit-task action has tag \"t\"",
        ),
        (
            format!("{submitted}[[expect]]\ncheck = \"task-status\"\nhost = \"b\"\ntag = \"t\"\nstatus = \"DONE\"\n"),
            "\"DONE\" is not a task status",
        ),
    ];
    for (extra, expected) in cases {
        let text = format!("{BASE}{extra}");
        match Scenario::parse(&text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(expected), "{msg}\nwanted {expected:?}");
                assert!(
                    msg.contains("hint:") || expected.starts_with("unknown field"),
                    "{msg}"
                );
            }
        }
    }
}
