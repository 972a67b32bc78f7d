//! The daemon side of task submit: one frame per connection (SUBMIT answered 200/400,
//! STATUS_UPDATE and SEND_RESULTS applied to `submitted/`), and the timers that cancel
//! unanswered tasks, expire a stuck queue head and credit finished work.
//!
//! Differences from the reference (`spec/services.md` §14 Q10-Q15): ids must be task ids and
//! result names are reduced to a base name inside `results/`; a SUBMIT's `from_addr` must be
//! the connection's real source; status updates and results are taken only for a task this
//! node submitted, and only from the node it was submitted to; results are written only after
//! those checks. Cancellation and expiry are told to the submitter over the network. Each
//! daemon changes only its own polo score (that is all the registry lets it sign): the
//! submitter pays 1 when results arrive, the executor credits itself the reward once its copy
//! is SUCCEEDED.

use super::dirs::{Side, TaskDirs};
use super::file::{parse_time, Status, TaskFile};
use super::frame::{
    Frame, FrameError, FrameType, Header, SendResults, StatusUpdate, SubmitRequest, SubmitResponse,
    HEADER_LEN,
};
use super::{client, id, local, policy, polo, queue};
use crate::daemon::{DaemonHandle, RegistryOp};
use crate::net::WallClock;
use crate::services::conn::ServiceListener;
use crate::wire::{Addr, SocketAddr};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a peer may take to send its one frame.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the files are and how the timers run (the reference's values by default).
#[derive(Clone, Debug)]
pub struct TaskConfig {
    /// The task folders.
    pub dirs: TaskDirs,
    /// A NEW task older than this is cancelled.
    pub accept_window: Duration,
    /// How often NEW tasks are checked.
    pub cancel_scan: Duration,
    /// How often the queue head is checked.
    pub expiry_scan: Duration,
    /// A head staged longer than this expires.
    pub head_timeout: Duration,
    /// Unanswered (NEW) tasks one node may have here at once; more are refused with a 400, so
    /// a peer cannot fill the disk with submissions (§14 Q12).
    pub max_pending_per_peer: usize,
}

impl TaskConfig {
    /// The reference's timers over `dirs`.
    pub fn new(dirs: TaskDirs) -> Self {
        TaskConfig {
            dirs,
            accept_window: local::ACCEPT_WINDOW,
            cancel_scan: Duration::from_secs(10),
            expiry_scan: Duration::from_secs(30),
            head_timeout: Duration::from_secs(3600),
            max_pending_per_peer: 64,
        }
    }
}

/// A boxed future of a registry answer.
pub type PoloFuture = Pin<Box<dyn Future<Output = Result<i64, String>> + Send>>;

/// The polo scores in the registry.
pub trait PoloBook: Send + Sync {
    /// `node`'s score.
    fn score(&self, node: u32) -> PoloFuture;
    /// Adds `delta` to this node's own score; the new score.
    fn add_own(&self, delta: i64) -> PoloFuture;
}

fn score_of(reply: Result<serde_json::Value, String>) -> Result<i64, String> {
    let reply = reply?;
    reply
        .get("polo_score")
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(|| format!("registry reply without polo_score: {reply}"))
}

impl PoloBook for DaemonHandle {
    fn score(&self, node: u32) -> PoloFuture {
        let handle = self.clone();
        Box::pin(async move { score_of(handle.registry(RegistryOp::GetPoloScore(node)).await) })
    }

    fn add_own(&self, delta: i64) -> PoloFuture {
        let handle = self.clone();
        Box::pin(async move { score_of(handle.registry(RegistryOp::UpdatePoloScore(delta)).await) })
    }
}

/// The service's state.
pub struct TaskService {
    config: TaskConfig,
    clock: Arc<dyn WallClock>,
    polo: Option<Arc<dyn PoloBook>>,
    own: Addr,
    /// To tell submitters about cancelled and expired tasks (`None`: nobody is told).
    handle: Option<DaemonHandle>,
}

impl TaskService {
    /// A service for the node at `own`.
    pub fn new(
        config: TaskConfig,
        clock: Arc<dyn WallClock>,
        polo: Option<Arc<dyn PoloBook>>,
        own: Addr,
        handle: Option<DaemonHandle>,
    ) -> Self {
        TaskService {
            config,
            clock,
            polo,
            own,
            handle,
        }
    }

    fn dirs(&self) -> &TaskDirs {
        &self.config.dirs
    }
}

/// Serves a listener bound to port 1003 and runs the timers until the daemon stops.
pub async fn run(mut listener: ServiceListener, service: Arc<TaskService>) {
    let timers = tokio::spawn(sweep(service.clone()));
    while let Some((stream, remote)) = listener.accept().await {
        let service = service.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(stream, remote, &service).await {
                tracing::debug!(%remote, error = %e, "task connection refused");
            }
        });
    }
    timers.abort();
}

/// Why a connection's frame was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The frame was invalid.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream failed or ended early.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The frame was valid but refused.
    #[error("{0}")]
    Refused(String),
}

/// Serves one connection: reads one frame, handles it, closes.
pub async fn serve<S>(
    mut stream: S,
    remote: SocketAddr,
    service: &TaskService,
) -> Result<(), ServeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let result = match tokio::time::timeout(FRAME_TIMEOUT, read_frame(&mut stream)).await {
        Ok(Ok((kind, payload))) => handle_frame(&mut stream, remote, service, kind, &payload).await,
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ServeError::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            "no frame in time",
        ))),
    };
    let _ = stream.shutdown().await;
    result
}

async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(FrameType, Vec<u8>), ServeError> {
    let mut bytes = [0u8; HEADER_LEN];
    stream.read_exact(&mut bytes).await?;
    let header = Header::parse(bytes)?;
    // Grows only as bytes arrive: a peer announcing 16 MiB and sending little holds little.
    let mut payload = Vec::new();
    (&mut *stream)
        .take(u64::from(header.len))
        .read_to_end(&mut payload)
        .await?;
    if payload.len() != header.len as usize {
        return Err(ServeError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame cut short: {} of {} bytes", payload.len(), header.len),
        )));
    }
    Ok((header.kind, payload))
}

async fn handle_frame<S: AsyncWrite + Unpin>(
    stream: &mut S,
    remote: SocketAddr,
    service: &TaskService,
    kind: FrameType,
    payload: &[u8],
) -> Result<(), ServeError> {
    match Frame::decode_request(kind, payload)? {
        Frame::Submit(request) => {
            let task_id = request.task_id.clone();
            let (status, message) = match submit(service, remote, request).await {
                Ok(()) => (200, "Task received with status NEW".to_string()),
                Err(message) => (400, message),
            };
            let reply = Frame::SubmitResponse(SubmitResponse {
                task_id,
                status,
                message,
            });
            stream.write_all(&reply.encode()?).await?;
            stream.flush().await?;
            Ok(())
        }
        Frame::StatusUpdate(update) => {
            status_update(service, remote, update).map_err(ServeError::Refused)
        }
        Frame::SendResults(results) => results_arrived(service, remote, results)
            .await
            .map_err(ServeError::Refused),
        Frame::Result(_) | Frame::SubmitResponse(_) => Ok(()),
    }
}

async fn submit(
    service: &TaskService,
    remote: SocketAddr,
    request: SubmitRequest,
) -> Result<(), String> {
    id::check(&request.task_id)?;
    // The submitter must be who it says (§14 Q11): replies go to `from_addr`.
    let claimed: Addr = request.from_addr.parse().map_err(|_| {
        format!(
            "invalid from_addr {:?}",
            request.from_addr.chars().take(40).collect::<String>()
        )
    })?;
    if claimed.node != remote.addr.node {
        return Err(format!(
            "from_addr {claimed} is not the sender {}",
            remote.addr
        ));
    }
    let dirs = service.dirs();
    if dirs
        .load(Side::Received, &request.task_id)
        .ok()
        .flatten()
        .is_some()
    {
        return Err(format!("task {} already exists", request.task_id));
    }
    let from = claimed.to_string();
    let pending = dirs
        .list(Side::Received)
        .unwrap_or_default()
        .iter()
        .filter(|t| t.status() == Some(Status::New) && t.from == from)
        .count();
    if pending >= service.config.max_pending_per_peer {
        return Err(format!(
            "Too many unanswered tasks from {from} ({pending}); try again later"
        ));
    }
    if let Some(book) = &service.polo {
        let theirs = book.score(remote.addr.node).await;
        let ours = book.score(service.own.node).await;
        let (Ok(theirs), Ok(ours)) = (theirs, ours) else {
            return Err("Failed to verify polo score".into());
        };
        if theirs < ours {
            return Err(format!(
                "Polo score too low: submitter={theirs}, receiver={ours}"
            ));
        }
    }
    let task = TaskFile::new(
        &request.task_id,
        &request.task_description,
        &claimed.to_string(),
        &service.own.to_string(),
        service.clock.now(),
    );
    dirs.save(Side::Received, &task)
        .map_err(|e| format!("task not stored: {e}"))?;
    Ok(())
}

/// The submitted task `task_id`, if `remote` is the node it went to.
fn own_submission(
    service: &TaskService,
    remote: SocketAddr,
    task_id: &str,
) -> Result<TaskFile, String> {
    id::check(task_id)?;
    let task = service
        .dirs()
        .load(Side::Submitted, task_id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no submitted task {task_id}"))?;
    let to: Option<Addr> = task.to.parse().ok();
    if to.map(|a| a.node) != Some(remote.addr.node) {
        return Err(format!(
            "task {task_id} was not submitted to {}",
            remote.addr
        ));
    }
    Ok(task)
}

fn status_update(
    service: &TaskService,
    remote: SocketAddr,
    update: StatusUpdate,
) -> Result<(), String> {
    let mut task = own_submission(service, remote, &update.task_id)?;
    let status = Status::parse(&update.status).ok_or_else(|| {
        format!(
            "unknown status {:?}",
            update.status.chars().take(20).collect::<String>()
        )
    })?;
    task.set_status(status, &update.justification);
    service
        .dirs()
        .save(Side::Submitted, &task)
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn results_arrived(
    service: &TaskService,
    remote: SocketAddr,
    results: SendResults,
) -> Result<(), String> {
    let mut task = own_submission(service, remote, &results.task_id)?;
    // Results arrive once: a resend (the sender missed our close) neither overwrites the
    // stored result nor charges the submitter again.
    if task.status() == Some(Status::Completed) {
        return Err(format!("task {} already has its results", task.task_id));
    }
    let dirs = service.dirs();
    let data = results
        .file_data
        .as_deref()
        .filter(|d| !d.is_empty() && results.result_type == "file");
    match data {
        Some(data) => {
            let name = results.filename.clone().unwrap_or_default();
            policy::check(&name)?;
            let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data)
                .map_err(|e| format!("file_data is not base64: {e}"))?;
            dirs.save_result(&task.task_id, &name, &bytes)
                .map_err(|e| e.to_string())?;
        }
        None => {
            let text = results.result_text.clone().unwrap_or_default();
            dirs.save_result(&task.task_id, "result.txt", text.as_bytes())
                .map_err(|e| e.to_string())?;
        }
    }
    task.set_status(Status::Completed, "Task completed with results");
    task.completed_at = results.completed_at.clone();
    task.time_idle_ms = results.time_idle_ms.unwrap_or(0);
    task.time_staged_ms = results.time_staged_ms.unwrap_or(0);
    task.time_cpu_ms = results.time_cpu_ms.unwrap_or(0);
    dirs.save(Side::Submitted, &task)
        .map_err(|e| e.to_string())?;
    if let Some(book) = &service.polo {
        if let Err(e) = book.add_own(-1).await {
            tracing::warn!(error = %e, "submitter polo cost not recorded");
        }
    }
    Ok(())
}

/// The timers: cancel unanswered tasks and credit finished ones every `cancel_scan`, check the
/// queue head every `expiry_scan`. Driven by tokio time, so tests can pause it.
pub async fn sweep(service: Arc<TaskService>) {
    let start = tokio::time::Instant::now();
    let mut cancel = tokio::time::interval_at(
        start + service.config.cancel_scan,
        service.config.cancel_scan,
    );
    let mut expiry = tokio::time::interval_at(
        start + service.config.expiry_scan,
        service.config.expiry_scan,
    );
    loop {
        // Biased: the same order in every run of a simulation seed (DESIGN rule 3).
        tokio::select! {
            biased;
            _ = cancel.tick() => {
                cancel_unanswered(&service).await;
                credit_finished(&service).await;
            }
            _ = expiry.tick() => expire_head(&service).await,
        }
    }
}

/// Cancels every NEW received task older than the accept window; the submitter is told.
pub async fn cancel_unanswered(service: &TaskService) {
    let now = service.clock.now();
    let dirs = service.dirs();
    for mut task in dirs.list(Side::Received).unwrap_or_default() {
        let old = parse_time(&task.created_at)
            .and_then(|c| now.duration_since(c).ok())
            .is_some_and(|age| age > service.config.accept_window);
        if task.status() != Some(Status::New) || !old {
            continue;
        }
        task.set_status(
            Status::Cancelled,
            "Task cancelled: no response within 1 minute",
        );
        task.answered(now);
        if let Err(e) = dirs.save(Side::Received, &task) {
            tracing::warn!(task = %task.task_id, error = %e, "cancel not stored");
            continue;
        }
        mirror_locally(dirs, &task);
        tell_submitter(service, &task).await;
    }
}

/// Marks the queue head EXPIRED once it was staged longer than the head timeout; this node
/// pays 1 point.
pub async fn expire_head(service: &TaskService) {
    let now = service.clock.now();
    let dirs = service.dirs();
    let Ok(Some(mut head)) = queue::stage_head(dirs, now) else {
        return;
    };
    let staged_for = parse_time(&head.staged_at)
        .and_then(|s| now.duration_since(s).ok())
        .unwrap_or_default();
    if staged_for <= service.config.head_timeout {
        return;
    }
    head.set_status(Status::Expired, "Task expired: not executed within 1 hour");
    head.execution_started(now);
    if let Err(e) = dirs.save(Side::Received, &head) {
        tracing::warn!(task = %head.task_id, error = %e, "expiry not stored");
        return;
    }
    mirror_locally(dirs, &head);
    let _ = queue::stage_head(dirs, now);
    if let Some(book) = &service.polo {
        if let Err(e) = book.add_own(-1).await {
            tracing::warn!(error = %e, "expiry penalty not recorded");
        }
    }
    tell_submitter(service, &head).await;
}

/// Credits this node the reward of every SUCCEEDED received task not yet credited.
pub async fn credit_finished(service: &TaskService) {
    let Some(book) = &service.polo else {
        return;
    };
    let dirs = service.dirs();
    let ledger = dirs.base().join(".credited");
    for task in dirs.list(Side::Received).unwrap_or_default() {
        let mark = ledger.join(&task.task_id);
        if task.status() != Some(Status::Succeeded) || mark.exists() {
            continue;
        }
        let reward = polo::reward(task.time_cpu_ms, task.time_idle_ms, task.time_staged_ms);
        match book.add_own(reward.final_reward).await {
            Ok(_) => {
                let written =
                    std::fs::create_dir_all(&ledger).and_then(|_| std::fs::write(&mark, b""));
                if let Err(e) = written {
                    tracing::warn!(error = %e, "credit ledger not written");
                }
            }
            Err(e) => tracing::warn!(error = %e, "reward not recorded; retried next sweep"),
        }
    }
}

/// Two daemons of one user share the folders: a submitted copy here follows the received one.
fn mirror_locally(dirs: &TaskDirs, task: &TaskFile) {
    if let Ok(Some(mut mine)) = dirs.load(Side::Submitted, &task.task_id) {
        mine.status = task.status.clone();
        mine.status_justification = task.status_justification.clone();
        let _ = dirs.save(Side::Submitted, &mine);
    }
}

/// Sends the task's new status to its submitter (§14 Q15), best effort.
async fn tell_submitter(service: &TaskService, task: &TaskFile) {
    let Some(handle) = &service.handle else {
        return;
    };
    let Ok(addr) = task.from.parse::<Addr>() else {
        return;
    };
    let update = StatusUpdate {
        task_id: task.task_id.clone(),
        status: task.status.clone(),
        justification: task.status_justification.clone(),
    };
    let sent = match client::dial_local(handle, addr).await {
        Ok(c) => c.status_update(update).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        tracing::debug!(task = %task.task_id, error = %e, "submitter not told");
    }
}

/// A wall clock that moves with tokio time from a fixed start (paused-time tests).
pub struct TokioClock {
    start: SystemTime,
    at: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `start` now.
    pub fn new(start: SystemTime) -> Self {
        TokioClock {
            start,
            at: tokio::time::Instant::now(),
        }
    }
}

impl WallClock for TokioClock {
    fn now(&self) -> SystemTime {
        self.start + self.at.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::UNIX_EPOCH;

    const ID: &str = "0123abcd-4567-89ef-0123-456789abcdef";

    #[derive(Default)]
    struct Book {
        deltas: Mutex<Vec<i64>>,
    }

    impl PoloBook for Book {
        fn score(&self, _: u32) -> PoloFuture {
            Box::pin(async { Ok(0) })
        }
        fn add_own(&self, delta: i64) -> PoloFuture {
            self.deltas.lock().unwrap().push(delta);
            Box::pin(async move { Ok(delta) })
        }
    }

    fn service(dir: &std::path::Path, book: Arc<Book>) -> Arc<TaskService> {
        Arc::new(TaskService::new(
            TaskConfig::new(TaskDirs::new(dir)),
            Arc::new(TokioClock::new(UNIX_EPOCH + Duration::from_secs(1_000_000))),
            Some(book),
            Addr::backbone(2),
            None,
        ))
    }

    async fn until(step: Duration, mut done: impl FnMut() -> bool) {
        // Paused time: each sleep auto-advances the clock to the next timer.
        for _ in 0..1000 {
            if done() {
                return;
            }
            tokio::time::sleep(step).await;
        }
        panic!("condition never held");
    }

    #[tokio::test(start_paused = true)]
    async fn unanswered_tasks_are_cancelled_after_a_minute() {
        let tmp = tempfile::tempdir().unwrap();
        let book = Arc::new(Book::default());
        let s = service(tmp.path(), book);
        let created = s.clock.now();
        let task = TaskFile::new(ID, "d", "0:0000.0000.0001", "0:0000.0000.0002", created);
        s.dirs().save(Side::Received, &task).unwrap();
        let started = tokio::time::Instant::now();
        tokio::spawn(sweep(s.clone()));
        let dirs = s.dirs().clone();
        let status = move || dirs.load(Side::Received, ID).unwrap().unwrap().status;
        until(Duration::from_secs(1), || status() == "CANCELLED").await;
        let waited = started.elapsed();
        // Strictly over 60 s, caught by the 10 s scan at 70 s (seen within the 1 s poll).
        assert!(
            waited > Duration::from_secs(69) && waited <= Duration::from_secs(71),
            "{waited:?}"
        );
        let stored = s.dirs().load(Side::Received, ID).unwrap().unwrap();
        assert_eq!(
            stored.status_justification,
            "Task cancelled: no response within 1 minute"
        );
        assert_eq!(stored.time_idle_ms, 70_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_head_expires_and_costs_a_point() {
        let tmp = tempfile::tempdir().unwrap();
        let book = Arc::new(Book::default());
        let s = service(tmp.path(), book.clone());
        let now = s.clock.now();
        let task = TaskFile::new(ID, "d", "0:0000.0000.0001", "0:0000.0000.0002", now);
        s.dirs().save(Side::Received, &task).unwrap();
        local::accept(s.dirs(), ID, now).unwrap();
        tokio::spawn(sweep(s.clone()));
        let dirs = s.dirs().clone();
        until(Duration::from_secs(30), || {
            dirs.load(Side::Received, ID).unwrap().unwrap().status == "EXPIRED"
        })
        .await;
        let stored = s.dirs().load(Side::Received, ID).unwrap().unwrap();
        assert!(stored.time_staged_ms > 3_600_000, "{stored:?}");
        assert_eq!(*book.deltas.lock().unwrap(), vec![-1]);
    }

    #[tokio::test(start_paused = true)]
    async fn finished_work_is_credited_once() {
        let tmp = tempfile::tempdir().unwrap();
        let book = Arc::new(Book::default());
        let s = service(tmp.path(), book.clone());
        let now = s.clock.now();
        s.dirs()
            .save(
                Side::Received,
                &TaskFile::new(ID, "d", "0:0000.0000.0001", "0:0000.0000.0002", now),
            )
            .unwrap();
        local::accept(s.dirs(), ID, now).unwrap();
        local::execute(s.dirs(), now).unwrap();
        local::send_results(
            s.dirs(),
            ID,
            &local::ResultBody::Text("ok".into()),
            now + Duration::from_secs(180),
        )
        .unwrap();
        credit_finished(&s).await;
        credit_finished(&s).await;
        // 3 cpu minutes, no waiting: (1 + 2) · 1 = 3.
        assert_eq!(*book.deltas.lock().unwrap(), vec![3]);
    }
}
