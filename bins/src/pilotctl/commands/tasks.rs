//! `task submit|accept|decline|execute|send-results|list|queue`, `enable-tasks`,
//! `disable-tasks` (`spec/services.md` §7.4, §11). The steps on the task files live in
//! `pilot::services::tasks::local`; this module parses flags, talks to the other side's port
//! 1003 and prints.

use crate::pilotctl::args::Args;
use crate::pilotctl::output::{CliError, Code, Success};
use crate::pilotctl::{target, Ctx};
use pilot::driver::Driver;
use pilot::net::{SystemClock, WallClock};
use pilot::services::tasks::dirs::Side;
use pilot::services::tasks::frame::{StatusUpdate, SubmitRequest};
use pilot::services::tasks::local::{self, ResultBody, StepError};
use pilot::services::tasks::{client, id, queue, TaskDirs, TaskFile};
use pilot::wire::Addr;
use serde_json::{json, Value};
use std::time::Duration;

/// How long one exchange with the other side may take.
const TASK_TIMEOUT: Duration = Duration::from_secs(30);

fn dirs(ctx: &Ctx) -> Result<TaskDirs, CliError> {
    Ok(TaskDirs::new(ctx.pilot_dir()?.join("tasks")))
}

fn step_error(err: StepError) -> CliError {
    match err {
        StepError::NotFound(m) => CliError::new(Code::NotFound, m)
            .hint("list your tasks with: pilotctl task list --type received"),
        StepError::InvalidState(m) => CliError::new(Code::InvalidState, m),
        StepError::Expired(m) => CliError::new(Code::Expired, m),
        StepError::Invalid(m) => CliError::new(Code::InvalidArgument, m),
        StepError::Io(e) => CliError::new(Code::InternalError, format!("task file: {e}")),
    }
}

fn task_id<'a>(command: &str, args: &'a Args) -> Result<&'a str, CliError> {
    let id = args
        .string("id")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CliError::usage(command, "--id is required"))?;
    id::check(id).map_err(|e| CliError::usage(command, e))
}

/// Tells the task's submitter about a status change; whether that worked.
async fn notify(ctx: &Ctx, from: &str, update: StatusUpdate) -> bool {
    let Ok(addr) = from.parse::<Addr>() else {
        return false;
    };
    let work = async {
        let driver = ctx.driver().await.ok()?;
        let c = client::dial(&driver, addr).await.ok()?;
        c.status_update(update).await.ok()
    };
    matches!(tokio::time::timeout(TASK_TIMEOUT, work).await, Ok(Some(())))
}

/// `task submit <target> --task d`.
pub async fn submit(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 1)?;
    let description = args
        .string("task")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CliError::usage("task submit", "--task is required"))?;
    let driver: Driver = ctx.driver().await?;
    let addr = target::resolve(ctx, &driver, args.arg(0).unwrap_or_default()).await?;
    let own = driver.info().await?.address;
    let task_id = id::generate();
    let request = SubmitRequest {
        task_id: task_id.clone(),
        task_description: description.to_string(),
        from_addr: own.clone(),
        to_addr: addr.to_string(),
    };
    let dirs = dirs(ctx)?;
    local::record_submission(&dirs, &request, SystemClock.now()).map_err(step_error)?;
    let work = async {
        let c = client::dial(&driver, addr).await.map_err(|e| {
            // Nothing was sent: no copy to keep.
            let _ = local::forget_submission(&dirs, &task_id);
            CliError::from(e).hint(format!(
                "cannot reach task submit (port 1003) on {addr}; the peer may run with -no-tasksubmit"
            ))
        })?;
        c.submit(request)
            .await
            .map_err(|e| CliError::new(Code::ConnectionFailed, format!("task submit failed: {e}")))
    };
    let reply = tokio::time::timeout(TASK_TIMEOUT, work)
        .await
        .map_err(|_| CliError::new(Code::Timeout, "task submit: no answer in time"))??;
    let accepted = reply.status == 200;
    if !accepted {
        local::forget_submission(&dirs, &task_id).map_err(step_error)?;
    }
    let human = if accepted {
        format!("Task {task_id} submitted to {addr}: {}", reply.message)
    } else {
        format!("Task rejected by {addr}: {}", reply.message)
    };
    Ok(Success::new(
        json!({"target": addr.to_string(), "task_id": task_id, "task": description,
               "status": reply.status, "message": reply.message, "accepted": accepted}),
        human,
    ))
}

/// `task accept --id`.
pub async fn accept(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let id = task_id("task accept", args)?;
    let (task, update) = local::accept(&dirs(ctx)?, id, SystemClock.now()).map_err(step_error)?;
    let mut message = "Task accepted and added to the queue".to_string();
    if !notify(ctx, &task.from, update).await {
        message.push_str(" (submitter notification failed)");
    }
    Ok(Success::new(
        json!({"task_id": task.task_id, "status": task.status, "message": message}),
        format!("{}: {message}", task.task_id),
    ))
}

/// `task decline --id --justification`.
pub async fn decline(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let id = task_id("task decline", args)?;
    let justification = args
        .string("justification")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CliError::usage("task decline", "--justification is required"))?;
    let (task, update) =
        local::decline(&dirs(ctx)?, id, justification, SystemClock.now()).map_err(step_error)?;
    let mut message = "Task declined".to_string();
    if !notify(ctx, &task.from, update).await {
        message.push_str(" (submitter notification failed)");
    }
    Ok(Success::new(
        json!({"task_id": task.task_id, "status": task.status,
               "justification": justification, "message": message}),
        format!("{}: {message}", task.task_id),
    ))
}

/// `task execute`: the head of the queue.
pub async fn execute(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let (task, update) = local::execute(&dirs(ctx)?, SystemClock.now()).map_err(step_error)?;
    let from = task.from.clone();
    notify(ctx, &from, update).await;
    Ok(Success::new(
        json!({"task_id": task.task_id, "task_description": task.task_description,
               "status": task.status, "from": task.from}),
        format!(
            "Executing {} from {}:\n  {}",
            task.task_id, task.from, task.task_description
        ),
    ))
}

/// `task send-results --id (--results t | --file p)`.
pub async fn send_results(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let id = task_id("task send-results", args)?;
    let body = match (args.string("results"), args.string("file")) {
        (Some(text), None) => ResultBody::Text(text.to_string()),
        (None, Some(path)) => {
            let data = std::fs::read(path)
                .map_err(|e| CliError::new(Code::NotFound, format!("cannot read {path}: {e}")))?;
            ResultBody::File(path.to_string(), data)
        }
        _ => {
            return Err(CliError::usage(
                "task send-results",
                "give exactly one of --results or --file",
            ))
        }
    };
    let dirs = dirs(ctx)?;
    let before = dirs
        .load(Side::Received, id)
        .map_err(|e| CliError::new(Code::InternalError, format!("task file: {e}")))?;
    let (task, message) =
        local::send_results(&dirs, id, &body, SystemClock.now()).map_err(step_error)?;
    let addr: Addr = task
        .from
        .parse()
        .map_err(|_| CliError::new(Code::InternalError, format!("bad submitter {}", task.from)))?;
    let work = async {
        let driver = ctx.driver().await?;
        let c = client::dial(&driver, addr).await?;
        c.send_results(message.clone())
            .await
            .map_err(|e| CliError::new(Code::ConnectionFailed, format!("send failed: {e}")))
    };
    if let Err(e) = tokio::time::timeout(TASK_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(CliError::new(
                Code::Timeout,
                "send-results: no answer in time",
            ))
        })
    {
        // Not delivered: the task stays where it was, so the user can send again.
        if let Some(before) = before {
            let _ = dirs.save(Side::Received, &before);
        }
        return Err(e);
    }
    let mut data = json!({"task_id": task.task_id, "status": task.status,
                          "sent_to": task.from, "sent_type": message.result_type});
    if let ResultBody::File(name, bytes) = &body {
        data["filename"] = json!(message.filename.clone().unwrap_or_else(|| name.clone()));
        data["file_size"] = json!(bytes.len());
    }
    Ok(Success::new(
        data,
        format!("Results of {} sent to {}", task.task_id, task.from),
    ))
}

fn row(task: &TaskFile, category: &str) -> Value {
    json!({"task_id": task.task_id, "description": task.task_description,
           "status": task.status, "from": task.from, "to": task.to,
           "created_at": task.created_at, "category": category})
}

/// `task list [--type received|submitted]`.
pub async fn list(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let sides: &[Side] = match args.string("type") {
        None => &[Side::Received, Side::Submitted],
        Some("received") => &[Side::Received],
        Some("submitted") => &[Side::Submitted],
        Some(other) => {
            return Err(CliError::usage(
                "task list",
                format!("unknown type {other:?} (use received or submitted)"),
            ))
        }
    };
    let dirs = dirs(ctx)?;
    let mut tasks = Vec::new();
    let mut human = String::new();
    for side in sides {
        let listed = dirs
            .list(*side)
            .map_err(|e| CliError::new(Code::InternalError, format!("task folder: {e}")))?;
        for t in &listed {
            human.push_str(&format!(
                "[{}] {} {} from {} to {}: {}\n",
                side.dir_name(),
                t.task_id,
                t.status,
                t.from,
                t.to,
                t.task_description
            ));
            tasks.push(row(t, side.dir_name()));
        }
    }
    if tasks.is_empty() {
        human = "no tasks".into();
    }
    Ok(Success::new(
        json!({"tasks": tasks}),
        human.trim_end().to_string(),
    ))
}

/// `task queue`: accepted tasks, first accepted first.
pub async fn queue_cmd(ctx: &Ctx, args: &Args) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let q = queue::load(&dirs(ctx)?)
        .map_err(|e| CliError::new(Code::InternalError, format!("task folder: {e}")))?;
    let rows: Vec<Value> = q
        .iter()
        .map(|t| {
            json!({"task_id": t.task_id, "description": t.task_description,
                   "from": t.from, "created_at": t.created_at})
        })
        .collect();
    if rows.is_empty() {
        return Ok(Success::new(json!({"queue": []}), "the queue is empty"));
    }
    let human = q
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "{}. {} from {}: {}",
                i + 1,
                t.task_id,
                t.from,
                t.task_description
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let count = rows.len();
    Ok(Success::new(json!({"queue": rows, "count": count}), human))
}

/// `enable-tasks` / `disable-tasks`: the registry's task_exec flag.
pub async fn set_task_exec(ctx: &Ctx, args: &Args, enabled: bool) -> Result<Success, CliError> {
    args.expect_positional(0, 0)?;
    let reply = ctx.driver().await?.set_task_exec(enabled).await?;
    let human = if enabled {
        "This node now advertises that it executes tasks."
    } else {
        "This node no longer advertises task execution."
    };
    Ok(Success::new(reply, human))
}
