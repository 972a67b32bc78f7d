//! Task submit between real processes: `pilot-rendezvous`, two `pilot-daemon`s and `pilotctl`
//! through submit, accept, execute, send-results and decline, with the task files checked on
//! both sides; bad ids and file types; `-no-tasksubmit`.

mod process_support;
mod rendezvous_support;

use process_support::{ctl, ctl_fails, trusted_pair, trusted_pair_with, Node};
use serde_json::Value;

fn task_file(node: &Node, side: &str, id: &str) -> Value {
    let path = node
        .home
        .join(".pilot/tasks")
        .join(side)
        .join(format!("{id}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn a_task_from_submit_to_results() {
    let servers = rendezvous_support::start(None);
    let dir = tempfile::tempdir().unwrap();
    let (a, b, a_id, b_id) = trusted_pair(dir.path(), servers.registry, servers.beacon);

    let exec = ctl(&b, &["enable-tasks"]);
    assert_eq!(exec["task_exec"], true, "{exec}");

    let submitted = ctl(&a, &["task", "submit", &b_id, "--task", "count the words"]);
    assert_eq!(submitted["accepted"], true, "{submitted}");
    assert_eq!(submitted["status"], 200);
    let id = submitted["task_id"].as_str().unwrap().to_string();
    assert_eq!(task_file(&a, "submitted", &id)["status"], "NEW");
    assert_eq!(task_file(&b, "received", &id)["status"], "NEW");
    let listed = ctl(&b, &["task", "list", "--type", "received"]);
    assert_eq!(listed["tasks"][0]["task_id"], id.as_str(), "{listed}");
    assert_eq!(listed["tasks"][0]["category"], "received");

    let accepted = ctl(&b, &["task", "accept", "--id", &id]);
    assert_eq!(accepted["status"], "ACCEPTED");
    assert!(
        !accepted["message"].as_str().unwrap().contains("failed"),
        "{accepted}"
    );
    assert_eq!(task_file(&a, "submitted", &id)["status"], "ACCEPTED");
    let queue = ctl(&b, &["task", "queue"]);
    assert_eq!(queue["count"], 1, "{queue}");

    let executing = ctl(&b, &["task", "execute"]);
    assert_eq!(executing["task_id"], id.as_str());
    assert_eq!(executing["task_description"], "count the words");
    assert_eq!(task_file(&a, "submitted", &id)["status"], "EXECUTING");
    assert_eq!(ctl(&b, &["task", "queue"])["queue"], serde_json::json!([]));

    // A source file is refused before anything is sent; the report goes.
    let code = dir.path().join("solve.py");
    std::fs::write(&code, "print(1)").unwrap();
    let err = ctl_fails(
        &b,
        &[
            "task",
            "send-results",
            "--id",
            &id,
            "--file",
            code.to_str().unwrap(),
        ],
    );
    assert!(err.contains("invalid_argument"), "{err}");
    let report = dir.path().join("report.md");
    std::fs::write(&report, "42 words\n").unwrap();
    let sent = ctl(
        &b,
        &[
            "task",
            "send-results",
            "--id",
            &id,
            "--file",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(sent["status"], "SUCCEEDED", "{sent}");
    assert_eq!(sent["filename"], "report.md");
    assert_eq!(sent["file_size"], 9);
    let stored = a
        .home
        .join(".pilot/tasks/results")
        .join(format!("{id}_report.md"));
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), "42 words\n");
    let mine = task_file(&a, "submitted", &id);
    assert_eq!(mine["status"], "COMPLETED", "{mine}");
    let theirs = task_file(&b, "received", &id);
    assert_eq!(theirs["status"], "SUCCEEDED");
    assert!(theirs.get("staged_at").is_some() && theirs.get("completed_at").is_some());

    // A paid one point for the results, so its score is now below B's: B refuses more work.
    let refused = ctl(&a, &["task", "submit", &b_id, "--task", "another"]);
    assert_eq!(refused["status"], 400, "{refused}");
    assert_eq!(refused["accepted"], false);
    assert!(refused["message"]
        .as_str()
        .unwrap()
        .starts_with("Polo score too low: submitter=-1"));

    // The other way round B may submit; A declines and B's copy says why.
    let second = ctl(&b, &["task", "submit", &a_id, "--task", "mine bitcoin"]);
    assert_eq!(second["accepted"], true, "{second}");
    let id2 = second["task_id"].as_str().unwrap().to_string();
    let declined = ctl(
        &a,
        &[
            "task",
            "decline",
            "--id",
            &id2,
            "--justification",
            "no thanks",
        ],
    );
    assert_eq!(declined["status"], "DECLINED");
    let copy = task_file(&b, "submitted", &id2);
    assert_eq!(copy["status"], "DECLINED");
    assert_eq!(copy["status_justification"], "no thanks");
    let err = ctl_fails(&a, &["task", "accept", "--id", &id2]);
    assert!(err.contains("invalid_state"), "{err}");

    // Bad ids never reach the file system.
    let err = ctl_fails(&b, &["task", "accept", "--id", "../../x"]);
    assert!(err.contains("invalid_argument"), "{err}");
    let err = ctl_fails(
        &b,
        &[
            "task",
            "accept",
            "--id",
            "00000000-0000-0000-0000-000000000000",
        ],
    );
    assert!(err.contains("not_found"), "{err}");
    let all = ctl(&b, &["task", "list"]);
    assert_eq!(all["tasks"].as_array().unwrap().len(), 2, "{all}");
}

#[test]
fn no_tasksubmit_leaves_the_port_closed() {
    let servers = rendezvous_support::start(None);
    let dir = tempfile::tempdir().unwrap();
    let (a, _b, _, b_id) = trusted_pair_with(
        dir.path(),
        servers.registry,
        servers.beacon,
        &["-no-tasksubmit"],
    );
    let err = ctl_fails(&a, &["task", "submit", &b_id, "--task", "x"]);
    assert!(
        err.contains("connection_failed") || err.contains("refused"),
        "{err}"
    );
    // The copy written before the dial is gone again: nothing was submitted.
    let submitted = std::fs::read_dir(a.home.join(".pilot/tasks/submitted"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(submitted, 0);
}

#[test]
fn results_that_cannot_be_delivered_can_be_sent_again() {
    let servers = rendezvous_support::start(None);
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _, b_id) = trusted_pair(dir.path(), servers.registry, servers.beacon);
    let submitted = ctl(&a, &["task", "submit", &b_id, "--task", "t"]);
    let id = submitted["task_id"].as_str().unwrap().to_string();
    ctl(&b, &["task", "accept", "--id", &id]);
    ctl(&b, &["task", "execute"]);
    // The submitter goes away: the send fails and the task is still EXECUTING.
    drop(a);
    let err = ctl_fails(
        &b,
        &["task", "send-results", "--id", &id, "--results", "done"],
    );
    assert!(
        err.contains("connection_failed") || err.contains("timeout"),
        "{err}"
    );
    assert_eq!(task_file(&b, "received", &id)["status"], "EXECUTING");
}
