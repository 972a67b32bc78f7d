//! The steps a user takes on this node's task files (`spec/services.md` §7.4, "CLI-driven
//! steps"), as library functions so the CLI stays thin. Each checks its precondition, updates
//! the file and returns what must be told to the other side; sending it is the caller's job
//! (see [`client`](super::client)).

use super::dirs::{Side, TaskDirs};
use super::file::{parse_time, rfc3339, Status, TaskFile};
use super::frame::{SendResults, StatusUpdate, SubmitRequest};
use super::{policy, queue};
use crate::crypto::to_base64;
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// How long a NEW task may wait for an answer.
pub const ACCEPT_WINDOW: Duration = Duration::from_secs(60);

/// Why a step was refused.
#[derive(Debug, Error)]
pub enum StepError {
    /// No such task (or the id is not a task id).
    #[error("{0}")]
    NotFound(String),
    /// The task is not in a status that allows the step.
    #[error("{0}")]
    InvalidState(String),
    /// The task was not answered in time.
    #[error("{0}")]
    Expired(String),
    /// The arguments are unusable (e.g. a file type that may not be sent).
    #[error("{0}")]
    Invalid(String),
    /// A task file could not be read or written.
    #[error("task file: {0}")]
    Io(#[from] std::io::Error),
}

fn received(dirs: &TaskDirs, task_id: &str) -> Result<TaskFile, StepError> {
    match dirs.load(Side::Received, task_id) {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(StepError::NotFound(format!("task {task_id} not found"))),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            Err(StepError::NotFound(e.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

fn update(task: &TaskFile) -> StatusUpdate {
    StatusUpdate {
        task_id: task.task_id.clone(),
        status: task.status.clone(),
        justification: task.status_justification.clone(),
    }
}

/// The received task `task_id`, which must still be NEW (neither accepted nor declined).
fn unanswered(dirs: &TaskDirs, task_id: &str) -> Result<TaskFile, StepError> {
    let task = received(dirs, task_id)?;
    if task.status() != Some(Status::New) {
        return Err(StepError::InvalidState(format!(
            "task {task_id} is {}, not NEW",
            task.status
        )));
    }
    Ok(task)
}

/// `task submit`, before the request goes out: the submitter's own copy of the task (NEW),
/// which the peer's status updates and results then change. Written first because the peer
/// may answer the task (decline it, say) before its reply to the submit arrives here.
pub fn record_submission(
    dirs: &TaskDirs,
    request: &SubmitRequest,
    now: SystemTime,
) -> Result<TaskFile, StepError> {
    let task = TaskFile::new(
        &request.task_id,
        &request.task_description,
        &request.from_addr,
        &request.to_addr,
        now,
    );
    dirs.save(Side::Submitted, &task)?;
    Ok(task)
}

/// `task submit`, when the peer refused the task: the copy [`record_submission`] wrote goes.
/// (Without an answer the copy stays: the task may have arrived, and its updates still can.)
pub fn forget_submission(dirs: &TaskDirs, task_id: &str) -> Result<(), StepError> {
    Ok(dirs.remove(Side::Submitted, task_id)?)
}

/// `task accept`: a NEW task answered within the window becomes ACCEPTED and joins the queue.
pub fn accept(
    dirs: &TaskDirs,
    task_id: &str,
    now: SystemTime,
) -> Result<(TaskFile, StatusUpdate), StepError> {
    let mut task = unanswered(dirs, task_id)?;
    let created = parse_time(&task.created_at).unwrap_or(now);
    if now.duration_since(created).unwrap_or_default() > ACCEPT_WINDOW {
        return Err(StepError::Expired(format!(
            "task {task_id} was not accepted within {} s",
            ACCEPT_WINDOW.as_secs()
        )));
    }
    task.set_status(Status::Accepted, "Task accepted");
    task.answered(now);
    dirs.save(Side::Received, &task)?;
    // The first task of an empty queue is staged at once.
    queue::stage_head(dirs, now)?;
    let task = received(dirs, task_id)?;
    let u = update(&task);
    Ok((task, u))
}

/// `task decline`: a NEW task becomes DECLINED with the user's justification.
pub fn decline(
    dirs: &TaskDirs,
    task_id: &str,
    justification: &str,
    now: SystemTime,
) -> Result<(TaskFile, StatusUpdate), StepError> {
    let mut task = unanswered(dirs, task_id)?;
    task.set_status(Status::Declined, justification);
    task.answered(now);
    dirs.save(Side::Received, &task)?;
    let u = update(&task);
    Ok((task, u))
}

/// `task execute`: the head of the queue (FIFO) becomes EXECUTING; the next task is staged.
pub fn execute(dirs: &TaskDirs, now: SystemTime) -> Result<(TaskFile, StatusUpdate), StepError> {
    let Some(mut task) = queue::stage_head(dirs, now)? else {
        return Err(StepError::NotFound("no accepted task in the queue".into()));
    };
    task.set_status(Status::Executing, "Task execution started");
    task.execution_started(now);
    dirs.save(Side::Received, &task)?;
    queue::stage_head(dirs, now)?;
    let u = update(&task);
    Ok((task, u))
}

/// What `task send-results` sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResultBody {
    /// Text.
    Text(String),
    /// A file: its name and bytes.
    File(String, Vec<u8>),
}

/// `task send-results`: an EXECUTING (or ACCEPTED) task becomes SUCCEEDED; the SEND_RESULTS
/// message carries its times.
pub fn send_results(
    dirs: &TaskDirs,
    task_id: &str,
    body: &ResultBody,
    now: SystemTime,
) -> Result<(TaskFile, SendResults), StepError> {
    let mut task = received(dirs, task_id)?;
    if !matches!(task.status(), Some(Status::Executing | Status::Accepted)) {
        return Err(StepError::InvalidState(format!(
            "task {task_id} is {}, not EXECUTING or ACCEPTED",
            task.status
        )));
    }
    if let ResultBody::File(name, _) = body {
        policy::check(name).map_err(StepError::Invalid)?;
    }
    task.set_status(Status::Succeeded, "Results sent successfully");
    task.completed(now);
    let mut message = SendResults {
        task_id: task.task_id.clone(),
        completed_at: rfc3339(now),
        time_idle_ms: Some(task.time_idle_ms).filter(|v| *v != 0),
        time_staged_ms: Some(task.time_staged_ms).filter(|v| *v != 0),
        time_cpu_ms: Some(task.time_cpu_ms).filter(|v| *v != 0),
        ..Default::default()
    };
    match body {
        ResultBody::Text(text) => {
            message.result_type = "text".into();
            message.result_text = Some(text.clone());
        }
        ResultBody::File(name, data) => {
            message.result_type = "file".into();
            message.filename = Some(name.rsplit('/').next().unwrap_or(name).to_string());
            message.file_data = Some(to_base64(data));
        }
    }
    dirs.save(Side::Received, &task)?;
    Ok((task, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const A: &str = "aaaaaaaa-0000-0000-0000-000000000000";
    const B: &str = "bbbbbbbb-0000-0000-0000-000000000000";

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn setup() -> (tempfile::TempDir, TaskDirs) {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = TaskDirs::new(tmp.path());
        for (id, t) in [(B, 1000), (A, 1001)] {
            dirs.save(
                Side::Received,
                &TaskFile::new(id, "d", "0:0000.0000.0001", "0:0000.0000.0002", at(t)),
            )
            .unwrap();
        }
        (tmp, dirs)
    }

    #[test]
    fn lifecycle_keeps_every_time() {
        let (_tmp, dirs) = setup();
        let (t, u) = accept(&dirs, B, at(1010)).unwrap();
        assert_eq!(u.status, "ACCEPTED");
        assert_eq!(t.time_idle_ms, 10_000);
        assert_eq!(
            t.staged_at,
            rfc3339(at(1010)),
            "first in an empty queue is staged"
        );
        accept(&dirs, A, at(1020)).unwrap();
        // FIFO: B was accepted first although A sorts first by name.
        let (t, _) = execute(&dirs, at(1040)).unwrap();
        assert_eq!(t.task_id, B);
        assert_eq!(t.time_staged_ms, 30_000);
        // A is now head, staged when B left.
        assert_eq!(
            dirs.load(Side::Received, A).unwrap().unwrap().staged_at,
            rfc3339(at(1040))
        );
        let (t, m) = send_results(&dirs, B, &ResultBody::Text("42".into()), at(1100)).unwrap();
        assert_eq!(t.status, "SUCCEEDED");
        assert_eq!(t.time_cpu_ms, 60_000);
        assert_eq!(m.time_cpu_ms, Some(60_000));
        assert_eq!(m.time_staged_ms, Some(30_000));
        assert_eq!(m.result_text.as_deref(), Some("42"));
    }

    #[test]
    fn preconditions_are_enforced() {
        let (_tmp, dirs) = setup();
        assert!(matches!(
            execute(&dirs, at(1001)),
            Err(StepError::NotFound(_))
        ));
        assert!(matches!(
            accept(&dirs, B, at(1061)),
            Err(StepError::Expired(_))
        ));
        assert!(matches!(
            accept(&dirs, "cccccccc-0000-0000-0000-000000000000", at(1001)),
            Err(StepError::NotFound(_))
        ));
        assert!(matches!(
            accept(&dirs, "../x", at(1001)),
            Err(StepError::NotFound(_))
        ));
        decline(&dirs, A, "busy", at(1002)).unwrap();
        assert_eq!(
            dirs.load(Side::Received, A)
                .unwrap()
                .unwrap()
                .status_justification,
            "busy"
        );
        assert!(matches!(
            accept(&dirs, A, at(1003)),
            Err(StepError::InvalidState(_))
        ));
        assert!(matches!(
            send_results(&dirs, A, &ResultBody::Text("x".into()), at(1004)),
            Err(StepError::InvalidState(_))
        ));
        accept(&dirs, B, at(1005)).unwrap();
        let before = dirs.load(Side::Received, B).unwrap();
        assert!(matches!(
            send_results(
                &dirs,
                B,
                &ResultBody::File("x.py".into(), vec![1]),
                at(1006)
            ),
            Err(StepError::Invalid(_))
        ));
        assert_eq!(
            dirs.load(Side::Received, B).unwrap(),
            before,
            "nothing changed"
        );
    }
}
