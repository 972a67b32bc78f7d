//! Real processes on loopback: `pilotctl publish` and `pilotctl subscribe` (bounded JSON,
//! NDJSON, human lines, timeout) against a `pilot-daemon`'s event stream, and a daemon
//! started with `-no-eventstream`.
//!
//! Nothing sleeps: a subscriber counts as subscribed once the broker's daemon logs the
//! `pubsub.subscribed` event (it runs at debug level for that), with timeouts only as
//! failure guards.

use serde_json::Value;

mod process_support;
mod rendezvous_support;

use process_support::{ctl, ctl_fails, pilotctl, trusted_pair_with, Node, Proc};

/// Starts `pilotctl <args>` on `node` and waits until `broker` logged its subscription.
fn subscriber(node: &Node, broker: &mut Node, topic: &str, args: &[&str]) -> Proc {
    let mut cmd = pilotctl(node);
    cmd.args(args);
    let proc = Proc::spawn(cmd);
    broker
        .proc
        .wait_for(&["pubsub.subscribed", &format!("\"topic\":\"{topic}\"")]);
    proc
}

#[test]
fn publish_and_subscribe_through_pilotctl() {
    let servers = rendezvous_support::start(None);
    let dir = tempfile::tempdir().unwrap();
    let (a, mut b, _, b_id) = trusted_pair_with(
        dir.path(),
        servers.registry,
        servers.beacon,
        &["-log-level=debug"],
    );

    let mut human = subscriber(&a, &mut b, "news", &["subscribe", &b_id, "news"]);
    let mut bounded = subscriber(
        &a,
        &mut b,
        "news",
        &[
            "--json",
            "subscribe",
            &b_id,
            "news",
            "--count",
            "2",
            "--timeout",
            "30s",
        ],
    );
    let mut ndjson = subscriber(&a, &mut b, "*", &["--json", "subscribe", &b_id, "*"]);

    let sent = ctl(&a, &["publish", &b_id, "news", "--data", "hello"]);
    assert_eq!(sent["topic"], "news", "{sent}");
    assert_eq!(sent["bytes"], 5, "{sent}");
    assert!(sent["target"].as_str().unwrap().ends_with(&format!(
        "{:04X}.{:04X}",
        b_id.parse::<u32>().unwrap() >> 16,
        b_id.parse::<u32>().unwrap() & 0xffff
    )));
    ctl(&a, &["publish", &b_id, "news", "--data", "world"]);
    ctl(&a, &["publish", &b_id, "other", "--data", "elsewhere"]);

    human.wait_for(&["[news] hello"]);
    human.wait_for(&["[news] world"]);

    // NDJSON: one bare object per event, no envelope, as each arrives.
    let mut lines = Vec::new();
    for payload in ["hello", "world", "elsewhere"] {
        let line = ndjson.wait_for(&[&format!("\"data\":\"{payload}\"")]);
        let event: Value = serde_json::from_str(&line).unwrap();
        assert!(event.get("status").is_none(), "{line}");
        lines.push(event);
    }
    assert_eq!(lines[0]["topic"], "news");
    assert_eq!(lines[2]["topic"], "other");
    assert_eq!(lines[2]["bytes"], 9);

    // Bounded: one envelope once both events are in.
    let line = bounded.wait_for(&["\"status\":\"ok\""]);
    let out: Value = serde_json::from_str(&line).unwrap();
    let events = out["data"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{out}");
    assert_eq!(events[0]["data"], "hello");
    assert_eq!(events[1]["data"], "world");
    assert_eq!(events[1]["bytes"], 5);
    assert_eq!(out["data"]["timeout"], false);
    assert!(bounded.child.wait().unwrap().success());

    // A quiet topic: the timeout ends the wait with what arrived (nothing).
    let quiet = ctl(
        &a,
        &[
            "subscribe",
            &b_id,
            "quiet",
            "--count",
            "1",
            "--timeout",
            "1s",
        ],
    );
    assert_eq!(quiet["timeout"], true, "{quiet}");
    assert_eq!(quiet["events"], serde_json::json!([]));

    let missing = ctl_fails(&a, &["publish", &b_id, "news"]);
    assert!(missing.contains("--data is required"), "{missing}");
    let long = "t".repeat(1025);
    let too_long = ctl_fails(&a, &["publish", &b_id, &long, "--data", "x"]);
    assert!(too_long.contains("invalid_argument"), "{too_long}");
    let bad_count = ctl_fails(&a, &["subscribe", &b_id, "news", "--count", "many"]);
    assert!(bad_count.contains("--count"), "{bad_count}");
}

#[test]
fn a_daemon_without_the_event_stream_refuses_subscribers() {
    let servers = rendezvous_support::start(None);
    let dir = tempfile::tempdir().unwrap();
    let (a, _b, _, b_id) = trusted_pair_with(
        dir.path(),
        servers.registry,
        servers.beacon,
        &["-no-eventstream"],
    );
    let err = ctl_fails(&a, &["publish", &b_id, "news", "--data", "x"]);
    assert!(err.contains("connection_failed"), "{err}");
    assert!(err.contains("-no-eventstream"), "{err}");
    let err = ctl_fails(&a, &["subscribe", &b_id, "news", "--count", "1"]);
    assert!(err.contains("connection_failed"), "{err}");
    // The rest of the daemon still serves.
    let ping = ctl(&a, &["ping", &b_id, "--count", "1", "--interval", "0"]);
    assert_eq!(ping["received"], 1, "{ping}");
}
