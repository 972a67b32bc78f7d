//! Task submit (port 1003) in scenarios: one daemon submits a task, the other accepts or
//! declines it, executes it and sends results, each step the CLI's step on the task files
//! (`pilot::services::tasks::local`) followed by the message to the other side. Each daemon
//! host keeps its task folders in a temporary directory that outlives its crashes; at the end
//! both sides' task files are read back for the expectations.

use super::agent::Reports;
use super::daemon::{peer_id, DAEMON_TIMEOUT};
use crate::topology::SimClock;
use pilot::daemon::DaemonHandle;
use pilot::net::WallClock;
use pilot::services::tasks::client::dial_local;
use pilot::services::tasks::dirs::Side;
use pilot::services::tasks::frame::{StatusUpdate, SubmitRequest};
use pilot::services::tasks::local::{self, ResultBody};
use pilot::services::tasks::{id, TaskDirs, TaskFile};
use pilot::wire::Addr;
use rand_core::Rng as _;
use std::time::Duration;

/// How often an accepting daemon looks for the task it waits for.
const ARRIVAL_POLL: Duration = Duration::from_millis(100);

/// One step of a task's life, run by the daemon whose side it is.
#[derive(Clone, Debug)]
pub(crate) enum TaskStep {
    /// Submit the task to `to` (the submitter's step).
    Submit { to: String, description: String },
    /// Accept it once it has arrived.
    Accept,
    /// Decline it once it has arrived.
    Decline { justification: String },
    /// Start the head of the queue, which must be this task.
    Execute,
    /// Send `text` as its results.
    Results { text: String },
}

/// A step with the task it concerns.
#[derive(Clone, Debug)]
pub(crate) struct TaskOp {
    /// The task's tag in the script.
    pub tag: String,
    /// Its id, drawn from the seed and the tag.
    pub id: String,
    pub step: TaskStep,
}

/// The id of the task tagged `tag` in a run of `seed`.
pub(crate) fn task_id(seed: u64, tag: &str) -> String {
    let mut rng = pilot::net::seeded_rng(crate::world::host_seed(seed, &format!("task/{tag}"), 0));
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    id::format(bytes)
}

/// Runs `op` on the daemon behind `handle`, whose task folders are `dirs`.
pub(crate) async fn perform(
    handle: &DaemonHandle,
    dirs: &TaskDirs,
    reports: &Reports,
    op: &TaskOp,
) -> Result<String, String> {
    let now = || SimClock.now();
    let failed = |e: local::StepError| e.to_string();
    match &op.step {
        TaskStep::Submit { to, description } => {
            let target = Addr::backbone(peer_id(reports, to)?);
            let request = SubmitRequest {
                task_id: op.id.clone(),
                task_description: description.clone(),
                from_addr: handle.address().to_string(),
                to_addr: target.to_string(),
            };
            local::record_submission(dirs, &request, now()).map_err(failed)?;
            let client = match dial_local(handle, target).await {
                Ok(c) => c,
                Err(e) => {
                    // Nothing was sent: no copy to keep.
                    local::forget_submission(dirs, &op.id).map_err(failed)?;
                    return Err(format!("dial {to}: {e}"));
                }
            };
            let reply = client
                .submit(request)
                .await
                .map_err(|e| format!("submit to {to}: {e}"))?;
            if reply.status != 200 {
                local::forget_submission(dirs, &op.id).map_err(failed)?;
            }
            Ok(format!(
                "task {} submitted to {to}: {} {}",
                op.tag, reply.status, reply.message
            ))
        }
        TaskStep::Accept => {
            arrived(dirs, &op.id).await?;
            let (task, update) = local::accept(dirs, &op.id, now()).map_err(failed)?;
            Ok(format!(
                "task {} accepted{}",
                op.tag,
                tell(handle, &task, update).await
            ))
        }
        TaskStep::Decline { justification } => {
            arrived(dirs, &op.id).await?;
            let (task, update) =
                local::decline(dirs, &op.id, justification, now()).map_err(failed)?;
            Ok(format!(
                "task {} declined{}",
                op.tag,
                tell(handle, &task, update).await
            ))
        }
        TaskStep::Execute => {
            let (task, update) = local::execute(dirs, now()).map_err(failed)?;
            if task.task_id != op.id {
                return Err(format!(
                    "the head of the queue is task {}, not {}",
                    task.task_id, op.tag
                ));
            }
            Ok(format!(
                "task {} executing{}",
                op.tag,
                tell(handle, &task, update).await
            ))
        }
        TaskStep::Results { text } => {
            let body = ResultBody::Text(text.clone());
            let (task, message) =
                local::send_results(dirs, &op.id, &body, now()).map_err(failed)?;
            let client = dial_local(handle, submitter(&task)?)
                .await
                .map_err(|e| format!("dial the submitter: {e}"))?;
            client
                .send_results(message)
                .await
                .map_err(|e| format!("send results: {e}"))?;
            Ok(format!("task {} results sent", op.tag))
        }
    }
}

fn submitter(task: &TaskFile) -> Result<Addr, String> {
    task.from
        .parse()
        .map_err(|_| format!("the task names no submitter address ({:?})", task.from))
}

/// Tells the submitter of `task` about `update`; the words a note adds about it. As with the
/// CLI, a submitter that cannot be told does not undo the step.
async fn tell(handle: &DaemonHandle, task: &TaskFile, update: StatusUpdate) -> String {
    let sent = async {
        let client = dial_local(handle, submitter(task)?).await?;
        client
            .status_update(update)
            .await
            .map_err(|e| e.to_string())
    };
    match sent.await {
        Ok(()) => String::new(),
        Err(e) => format!(" (submitter not told: {e})"),
    }
}

/// Waits (in simulated time) until the task `id` has arrived in `dirs`.
async fn arrived(dirs: &TaskDirs, id: &str) -> Result<(), String> {
    let wait = async {
        loop {
            match dirs.load(Side::Received, id) {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => tokio::time::sleep(ARRIVAL_POLL).await,
                Err(e) => return Err(format!("task file: {e}")),
            }
        }
    };
    tokio::time::timeout(DAEMON_TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| Err(format!("task {id} never arrived")))
}

/// What a daemon host's task folders hold for one task when the run ends.
#[derive(Clone, Debug, Default)]
pub struct TaskView {
    /// The status in the submitter's copy (`submitted/`).
    pub submitted: Option<String>,
    /// The status in the receiver's copy (`received/`).
    pub received: Option<String>,
    /// The text results the submitter stored.
    pub results: Option<String>,
}

/// Reads task `id` from `dirs`.
pub(crate) fn view(dirs: &TaskDirs, id: &str) -> TaskView {
    let status = |side| {
        dirs.load(side, id)
            .ok()
            .flatten()
            .map(|t: TaskFile| t.status)
    };
    TaskView {
        submitted: status(Side::Submitted),
        received: status(Side::Received),
        results: dirs
            .result_path(id, "result.txt")
            .ok()
            .and_then(|p| std::fs::read_to_string(p).ok()),
    }
}
