//! Task submit (port 1003) between two daemons on loopback with a real registry: the whole
//! lifecycle with files checked on both sides and polo scores moved, raw spec-layout frames,
//! hostile input, and the disabled service.

mod daemon_support;

use daemon_support::{make_trust, within, Rendezvous};
use pilot::daemon::{ipc, Daemon, RegistryOp};
use pilot::driver::{Driver, Stream};
use pilot::net::{MemStorage, SystemClock, WallClock};
use pilot::services::tasks::dirs::Side;
use pilot::services::tasks::frame::{encode_raw, SubmitRequest};
use pilot::services::tasks::local::{self, ResultBody};
use pilot::services::tasks::service::credit_finished;
use pilot::services::tasks::{client, id, TaskConfig, TaskDirs, TaskFile, TaskService, TASK_PORT};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Pair {
    a: Daemon,
    b: Daemon,
    a_dirs: TaskDirs,
    b_dirs: TaskDirs,
    driver: Driver,
}

/// A submitter `a` (with an IPC socket) and a receiver `b`, each with its own task folders.
async fn pair(rv: &Rendezvous, dir: &Path, b_tasks: bool) -> Pair {
    pair_with(rv, dir, b_tasks, |_| {}).await
}

/// As [`pair`], with `b`'s task settings changed by `tune`.
async fn pair_with(
    rv: &Rendezvous,
    dir: &Path,
    b_tasks: bool,
    tune: impl FnOnce(&mut TaskConfig),
) -> Pair {
    let a_dirs = TaskDirs::new(dir.join("a"));
    let b_dirs = TaskDirs::new(dir.join("b"));
    let mut config = rv.config();
    config.public = true;
    config.tasks = Some(TaskConfig::new(a_dirs.clone()));
    let a = rv.daemon_with(31, config, MemStorage::new()).await;
    let mut config = rv.config();
    config.public = true;
    let mut b_config = TaskConfig::new(b_dirs.clone());
    tune(&mut b_config);
    config.tasks = b_tasks.then_some(b_config);
    let b = rv.daemon_with(32, config, MemStorage::new()).await;
    let path = dir.join("a.sock");
    let listener = ipc::bind(&path).await.unwrap();
    tokio::spawn(ipc::serve(listener, a.handle.clone()));
    make_trust(&a.handle, &b.handle).await;
    let driver = within(Driver::connect(&path)).await.unwrap();
    Pair {
        a,
        b,
        a_dirs,
        b_dirs,
        driver,
    }
}

async fn score(d: &Daemon) -> i64 {
    let reply = d
        .handle
        .registry(RegistryOp::GetPoloScore(d.handle.node_id()))
        .await
        .unwrap();
    reply["polo_score"].as_i64().unwrap()
}

fn request(p: &Pair, task_id: &str) -> SubmitRequest {
    SubmitRequest {
        task_id: task_id.into(),
        task_description: "summarise the logs".into(),
        from_addr: p.a.handle.address().to_string(),
        to_addr: p.b.handle.address().to_string(),
    }
}

/// Writes raw bytes to `b`'s port 1003 and returns everything it answered before closing.
async fn raw(p: &Pair, bytes: &[u8]) -> Vec<u8> {
    raw_then(p, bytes, false).await
}

/// As [`raw`]; with `close`, ends the stream after writing (for frames cut short).
async fn raw_then(p: &Pair, bytes: &[u8], close: bool) -> Vec<u8> {
    let mut stream: Stream = within(p.driver.dial(p.b.handle.address(), TASK_PORT))
        .await
        .unwrap();
    stream.write_all(bytes).await.unwrap();
    if close {
        stream.shutdown().await.unwrap();
    }
    let mut reply = Vec::new();
    let _ = within(stream.read_to_end(&mut reply)).await;
    reply
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_moves_files_and_polo() {
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let p = pair(&rv, dir.path(), true).await;
    let (a0, b0) = (score(&p.a).await, score(&p.b).await);
    let now = || SystemClock.now();

    // Submit (SDK over the driver), then record the submitted copy as the CLI does.
    let task_id = id::generate();
    let c = within(client::dial(&p.driver, p.b.handle.address()))
        .await
        .unwrap();
    let reply = within(c.submit(request(&p, &task_id))).await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.message, "Task received with status NEW");
    let received = p.b_dirs.load(Side::Received, &task_id).unwrap().unwrap();
    assert_eq!(received.status, "NEW");
    assert_eq!(received.from, p.a.handle.address().to_string());
    assert_eq!(received.to, p.b.handle.address().to_string());
    let submitted = TaskFile::new(
        &task_id,
        "summarise the logs",
        &received.from,
        &received.to,
        now(),
    );
    p.a_dirs.save(Side::Submitted, &submitted).unwrap();

    // Accept, execute, send results: each step notifies the submitter in-process.
    let (_, update) = local::accept(&p.b_dirs, &task_id, now()).unwrap();
    let c = within(client::dial_local(&p.b.handle, p.a.handle.address()))
        .await
        .unwrap();
    within(c.status_update(update)).await.unwrap();
    assert_eq!(
        p.a_dirs
            .load(Side::Submitted, &task_id)
            .unwrap()
            .unwrap()
            .status,
        "ACCEPTED"
    );
    let (executing, update) = local::execute(&p.b_dirs, now()).unwrap();
    assert_eq!(executing.task_id, task_id);
    assert!(!executing.staged_at.is_empty(), "staged_at is known (Q13)");
    let c = within(client::dial_local(&p.b.handle, p.a.handle.address()))
        .await
        .unwrap();
    within(c.status_update(update)).await.unwrap();
    assert_eq!(
        p.a_dirs
            .load(Side::Submitted, &task_id)
            .unwrap()
            .unwrap()
            .status,
        "EXECUTING"
    );
    let body = ResultBody::File("out/report.md".into(), b"# done\n".to_vec());
    let (done, results) = local::send_results(&p.b_dirs, &task_id, &body, now()).unwrap();
    assert_eq!(done.status, "SUCCEEDED");
    let c = within(client::dial_local(&p.b.handle, p.a.handle.address()))
        .await
        .unwrap();
    within(c.send_results(results)).await.unwrap();

    let result = p.a_dirs.results_dir().join(format!("{task_id}_report.md"));
    assert_eq!(std::fs::read(&result).unwrap(), b"# done\n");
    let final_copy = p.a_dirs.load(Side::Submitted, &task_id).unwrap().unwrap();
    assert_eq!(final_copy.status, "COMPLETED");
    assert_eq!(
        final_copy.status_justification,
        "Task completed with results"
    );
    // The submitter paid one point when the results arrived.
    assert_eq!(score(&p.a).await, a0 - 1);

    // The executor's timer credits its reward once (driven here by hand, through its registry).
    let book = TaskService::new(
        TaskConfig::new(p.b_dirs.clone()),
        Arc::new(SystemClock),
        Some(Arc::new(p.b.handle.clone())),
        p.b.handle.address(),
        None,
    );
    credit_finished(&book).await;
    credit_finished(&book).await;
    assert_eq!(score(&p.b).await, b0 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_frames_and_hostile_input() {
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let p = pair(&rv, dir.path(), true).await;

    // A SUBMIT written byte by byte from the spec's layout; the reply is a type-1 frame.
    let task_id = id::generate();
    let payload = serde_json::to_vec(&request(&p, &task_id)).unwrap();
    let mut bytes = 1u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&payload);
    let reply = raw(&p, &bytes).await;
    assert_eq!(&reply[..4], &[0, 0, 0, 1]);
    let len = u32::from_be_bytes(reply[4..8].try_into().unwrap()) as usize;
    let json: serde_json::Value = serde_json::from_slice(&reply[8..8 + len]).unwrap();
    assert_eq!(json["status"], 200);
    assert_eq!(json["task_id"], task_id.as_str());
    // The same id again is refused.
    let reply = raw(&p, &bytes).await;
    assert!(String::from_utf8_lossy(&reply).contains("already exists"));

    let before = names(&p.b_dirs.dir(Side::Received));
    // Oversized, unknown type, truncated: the connection closes, no reply, nothing written.
    let mut oversized = 1u32.to_be_bytes().to_vec();
    oversized.extend_from_slice(&((16u32 << 20) + 1).to_be_bytes());
    assert!(raw(&p, &oversized).await.is_empty());
    assert!(raw(&p, &encode_raw(9, b"{}").unwrap()).await.is_empty());
    let mut truncated = encode_raw(1, &payload).unwrap();
    truncated.truncate(20);
    assert!(raw_then(&p, &truncated, true).await.is_empty());
    assert!(raw(&p, &encode_raw(1, b"{not json").unwrap())
        .await
        .is_empty());

    // Hostile ids get a 400 and no file anywhere.
    let long = "a".repeat(10_000);
    for bad in [
        "../x",
        "/etc/passwd",
        "",
        long.as_str(),
        "0123abcd-4567-89ef-0123-456789abcd\0f",
    ] {
        let frame = encode_raw(1, &serde_json::to_vec(&request(&p, bad)).unwrap()).unwrap();
        let reply = raw(&p, &frame).await;
        let json: serde_json::Value = serde_json::from_slice(&reply[8..]).unwrap();
        assert_eq!(json["status"], 400, "{bad:?}");
        assert!(json["message"]
            .as_str()
            .unwrap()
            .contains("invalid task id"));
    }
    // A forged from_addr (Q11) is refused.
    let mut forged = request(&p, &id::generate());
    forged.from_addr = "0:0000.0000.0999".into();
    let reply = raw(
        &p,
        &encode_raw(1, &serde_json::to_vec(&forged).unwrap()).unwrap(),
    )
    .await;
    assert!(String::from_utf8_lossy(&reply).contains("is not the sender"));
    assert_eq!(names(&p.b_dirs.dir(Side::Received)), before);
    assert!(!dir.path().join("x").exists() && !dir.path().join("x.json").exists());

    // Results and status updates for a task b never submitted: refused, nothing written.
    let ghost = id::generate();
    let results = serde_json::json!({"task_id": ghost, "result_type": "file",
        "filename": "../../../../.bashrc", "file_data": "ZXZpbA==",
        "completed_at": "2026-01-01T00:00:00Z"});
    raw(&p, &encode_raw(4, results.to_string().as_bytes()).unwrap()).await;
    let update = serde_json::json!({"task_id": ghost, "status": "SUCCEEDED", "justification": "x"});
    raw(&p, &encode_raw(3, update.to_string().as_bytes()).unwrap()).await;
    assert!(names(&p.b_dirs.results_dir()).is_empty());
    assert!(names(&p.b_dirs.dir(Side::Submitted)).is_empty());
    assert!(!dir.path().join(".bashrc").exists());

    // A task b did submit to a: hostile result names stay in results/ as base names.
    let mine = id::generate();
    let task = TaskFile::new(
        &mine,
        "d",
        &p.b.handle.address().to_string(),
        &p.a.handle.address().to_string(),
        SystemClock.now(),
    );
    p.b_dirs.save(Side::Submitted, &task).unwrap();
    let mut stream = within(p.driver.dial(p.b.handle.address(), TASK_PORT))
        .await
        .unwrap();
    let results = serde_json::json!({"task_id": mine, "result_type": "file",
        "filename": "/../../../../notes.txt", "file_data": "b2s=",
        "completed_at": "2026-01-01T00:00:00Z"});
    stream
        .write_all(&encode_raw(4, results.to_string().as_bytes()).unwrap())
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = within(stream.read_to_end(&mut rest)).await;
    assert_eq!(
        names(&p.b_dirs.results_dir()),
        vec![format!("{mine}_notes.txt")]
    );
    assert_eq!(
        p.b_dirs
            .load(Side::Submitted, &mine)
            .unwrap()
            .unwrap()
            .status,
        "COMPLETED"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_polo_score_is_rejected() {
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let p = pair(&rv, dir.path(), true).await;
    p.b.handle
        .registry(RegistryOp::UpdatePoloScore(5))
        .await
        .unwrap();
    let (a, b) = (score(&p.a).await, score(&p.b).await);
    let task_id = id::generate();
    let c = within(client::dial(&p.driver, p.b.handle.address()))
        .await
        .unwrap();
    let reply = within(c.submit(request(&p, &task_id))).await.unwrap();
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.message,
        format!("Polo score too low: submitter={a}, receiver={b}")
    );
    assert!(names(&p.b_dirs.dir(Side::Received)).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_service_refuses_connections() {
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let p = pair(&rv, dir.path(), false).await;
    let err = within(client::dial(&p.driver, p.b.handle.address()))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_cannot_pile_up_unanswered_tasks() {
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let p = pair_with(&rv, dir.path(), true, |c| c.max_pending_per_peer = 2).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let c = within(client::dial(&p.driver, p.b.handle.address()))
            .await
            .unwrap();
        let reply = within(c.submit(request(&p, &id::generate())))
            .await
            .unwrap();
        statuses.push(reply.status);
        if reply.status == 400 {
            assert!(
                reply.message.starts_with("Too many unanswered tasks"),
                "{reply:?}"
            );
        }
    }
    assert_eq!(statuses, vec![200, 200, 400]);
    assert_eq!(names(&p.b_dirs.dir(Side::Received)).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_task_is_reported_to_its_submitter() {
    use pilot::services::tasks::service::cancel_unanswered;
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let p = pair(&rv, dir.path(), true).await;
    let task_id = id::generate();
    let c = within(client::dial(&p.driver, p.b.handle.address()))
        .await
        .unwrap();
    assert_eq!(
        within(c.submit(request(&p, &task_id)))
            .await
            .unwrap()
            .status,
        200
    );
    let mut received = p.b_dirs.load(Side::Received, &task_id).unwrap().unwrap();
    p.a_dirs.save(Side::Submitted, &received).unwrap();
    // Two minutes old: past the accept window.
    let old = SystemClock.now() - std::time::Duration::from_secs(120);
    received.created_at = pilot::services::tasks::file::rfc3339(old);
    p.b_dirs.save(Side::Received, &received).unwrap();
    // b's 10 s sweep, run once by hand through b's daemon (§14 Q15).
    let sweeper = TaskService::new(
        TaskConfig::new(p.b_dirs.clone()),
        Arc::new(SystemClock),
        None,
        p.b.handle.address(),
        Some(p.b.handle.clone()),
    );
    within(cancel_unanswered(&sweeper)).await;
    let theirs = p.b_dirs.load(Side::Received, &task_id).unwrap().unwrap();
    assert_eq!(theirs.status, "CANCELLED");
    let mine = p.a_dirs.load(Side::Submitted, &task_id).unwrap().unwrap();
    assert_eq!(mine.status, "CANCELLED");
    assert_eq!(
        mine.status_justification,
        "Task cancelled: no response within 1 minute"
    );
}
