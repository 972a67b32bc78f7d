//! The software of a daemon host: the real `pilot::daemon` over the host's [`SimNet`], driven
//! in process through its `DaemonHandle` (no IPC socket).
//!
//! The daemon's storage (identity and trust file) is a [`MemStorage`] made by the runner,
//! outside the turmoil host, so a restarted daemon comes back with the same identity.

use super::agent::{Command, Commands, Reports};
use super::mailbox::{describe_store, SimMailbox};
use super::{datagram, exchange, pubsub, tasks};
use crate::net::SimNet;
use crate::topology::SimClock;
use crate::trace;
use crate::world::{host_seed, lock};
use pilot::daemon::{start, ClientEvent, ClientOptions, DaemonConfig, DaemonHandle};
use pilot::ipc::HandshakeCommand;
use pilot::net::{seeded_rng, MemStorage};
use pilot::wire::Addr;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a daemon operation (an approval waiting for its request, an echo) may take.
pub const DAEMON_TIMEOUT: Duration = Duration::from_secs(120);

/// The echo service's port.
const ECHO_PORT: u16 = 7;

/// How one daemon host runs; shared by its incarnations.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    /// The registry's public address.
    pub registry: SocketAddr,
    /// The beacon's public address.
    pub beacon: SocketAddr,
    /// A standby registry to fail over to.
    pub standby: Option<SocketAddr>,
    /// Heartbeat interval, if not the default.
    pub keepalive: Option<Duration>,
    /// Tunnel peer idle expiry, if not the default.
    pub peer_idle_expiry: Option<Duration>,
    /// Resolvable by anyone.
    pub public: bool,
    /// Identity and trust, kept across restarts.
    pub storage: MemStorage,
    /// Starts so far (each draws fresh randomness).
    pub starts: Arc<AtomicU64>,
    /// The data-exchange store, kept across crashes (`None`: the service is off).
    pub mailbox: Option<pilot::services::dataexchange::MemMailbox>,
    /// The crash trigger on the store.
    pub tripwire: super::mailbox::Tripwire,
    /// The task folders, kept across crashes (`None`: task submit is off).
    pub tasks: Option<pilot::services::tasks::TaskDirs>,
    /// A bug planted on purpose in this host's application side (tests of the swarm search).
    pub planted_bug: Option<super::PlantedBug>,
}

/// What the runner asks a daemon to do.
#[derive(Debug)]
pub(crate) enum DaemonOp {
    /// Ask `peer` for trust.
    Handshake { peer: String },
    /// Approve `peer`'s request once it has arrived.
    Approve { peer: String },
    /// Revoke trust in `peer`.
    Revoke { peer: String },
    /// Listen on these ports and record datagrams (runs beside later operations).
    ListenDatagrams(Vec<u16>),
    /// Send numbered datagrams (runs beside later operations).
    SendDatagrams(super::datagram::DatagramPlan),
    /// Send `bytes` to `peer`'s echo service and read them back. With `expect_failure` (an
    /// `echo-failed` expectation names it), its error is judged there, not reported as the
    /// host's.
    Echo {
        peer: String,
        bytes: usize,
        expect_failure: bool,
    },
    /// Send a message or a file through data exchange (runs beside later operations).
    Send(super::exchange::SendPlan),
    /// Subscribe to a peer's event stream and record events (runs beside later operations).
    Subscribe(super::pubsub::SubscribePlan),
    /// Publish one event on a peer's event stream.
    Publish {
        at: String,
        topic: String,
        texts: Vec<String>,
    },
    /// One step of a task's life.
    Task(super::tasks::TaskOp),
}

/// One daemon operation with its script position and tag.
#[derive(Debug)]
pub(crate) struct DaemonRequest {
    pub action: usize,
    pub tag: Option<String>,
    pub op: DaemonOp,
}

/// The result of an echo: when it started, when the first byte came back, when the last did.
#[derive(Clone, Debug)]
pub struct EchoResult {
    /// The echo action's tag.
    pub tag: String,
    /// The daemon host that sent.
    pub host: String,
    /// The daemon host that echoed.
    pub peer: String,
    /// Bytes sent (and expected back).
    pub bytes: usize,
    /// When the dial started (simulated time).
    pub started: Duration,
    /// When the first byte came back.
    pub first_byte: Option<Duration>,
    /// When the last byte came back.
    pub done: Option<Duration>,
    /// Why it did not complete.
    pub error: Option<String>,
}

/// Runs one incarnation of a daemon host.
pub(crate) async fn run(
    net: SimNet,
    spec: Spec,
    commands: Commands,
    reports: Arc<Reports>,
) -> turmoil::Result {
    let name = net.world().node(net.node()).name.clone();
    let mut commands = commands.lock().await;
    let start_no = spec.starts.fetch_add(1, Ordering::Relaxed);
    let rng = seeded_rng(host_seed(
        net.world().seed(),
        &format!("daemon/{name}"),
        start_no,
    ));
    let mut config = DaemonConfig::new(spec.registry);
    config.beacon = Some(spec.beacon);
    config.standby_registry = spec.standby;
    if let Some(k) = spec.keepalive {
        config.keepalive = k;
    }
    if let Some(e) = spec.peer_idle_expiry {
        config.peer_idle_expiry = e;
    }
    config.public = spec.public;
    config.identity = Some("identity.json".to_string());
    if let Some(store) = &spec.mailbox {
        let view = SimMailbox::new(store.clone(), spec.tripwire.clone(), net.clone());
        config.mailbox = Some(Arc::new(view));
    }
    config.tasks = spec
        .tasks
        .clone()
        .map(pilot::services::tasks::TaskConfig::new);
    let daemon = match start(net.clone(), spec.storage.clone(), SimClock, rng, config).await {
        Ok(d) => d,
        Err(e) => {
            lock(&reports.errors).push(format!("{name}: the daemon failed to start: {e}"));
            return Ok(());
        }
    };
    let handle = daemon.handle.clone();
    lock(&reports.identities).insert(name.clone(), handle.node_id());
    note(
        &net,
        &name,
        format!(
            "daemon up as node {} (start {})",
            handle.node_id(),
            start_no + 1
        ),
    );
    if let Some(text) = spec.mailbox.as_ref().and_then(describe_store) {
        note(&net, &name, text);
    }
    let (ops, mut queue) = tokio::sync::mpsc::unbounded_channel::<DaemonRequest>();
    // Operations run one after another, in script order, beside the command loop.
    {
        let (net, handle, reports, name, task_dirs, planted) = (
            net.clone(),
            handle.clone(),
            reports.clone(),
            name.clone(),
            spec.tasks.clone(),
            spec.planted_bug,
        );
        tokio::spawn(async move {
            while let Some(r) = queue.recv().await {
                let beside = (net.clone(), handle.clone(), reports.clone());
                match r.op {
                    DaemonOp::Send(plan) => {
                        tokio::spawn(exchange::send(beside.0, beside.1, beside.2, plan));
                    }
                    DaemonOp::Subscribe(plan) => {
                        tokio::spawn(pubsub::subscribe(beside.0, beside.1, beside.2, plan));
                    }
                    DaemonOp::ListenDatagrams(ports) => {
                        let (net, handle, reports) = beside;
                        tokio::spawn(datagram::listen(net, handle, reports, ports, r.action));
                    }
                    DaemonOp::SendDatagrams(plan) => {
                        tokio::spawn(datagram::send(beside.0, beside.1, beside.2, plan, r.action));
                    }
                    _ => {
                        let host = Host {
                            net: &net,
                            handle: &handle,
                            reports: &reports,
                            name: &name,
                            planted,
                        };
                        perform(host, task_dirs.as_ref(), r).await
                    }
                }
            }
        });
    }
    while let Some(command) = commands.recv().await {
        match command {
            Command::Daemon(r) => {
                if let (DaemonOp::Echo { .. }, Some(tag)) = (&r.op, &r.tag) {
                    let issued = (tag.clone(), name.clone(), trace::now());
                    lock(&reports.echoes_issued).push(issued);
                }
                let _ = ops.send(r);
            }
            Command::Inspect => {
                let info = handle.info().await.unwrap_or_default();
                lock(&reports.daemon_info).insert(name.clone(), info);
            }
            _ => lock(&reports.errors).push(format!("{name} runs a daemon, not the probe agent")),
        }
    }
    Ok(())
}

fn note(net: &SimNet, name: &str, text: String) {
    net.world().trace().note_at(trace::now(), name, text);
}

pub(crate) fn peer_id(reports: &Reports, peer: &str) -> Result<u32, String> {
    lock(&reports.identities)
        .get(peer)
        .copied()
        .ok_or_else(|| format!("{peer} has no node ID (is its daemon up?)"))
}

/// What an operation runs on: one daemon host's parts.
#[derive(Clone, Copy)]
struct Host<'a> {
    net: &'a SimNet,
    handle: &'a DaemonHandle,
    reports: &'a Reports,
    name: &'a str,
    planted: Option<super::PlantedBug>,
}

async fn perform(
    host: Host<'_>,
    task_dirs: Option<&pilot::services::tasks::TaskDirs>,
    request: DaemonRequest,
) {
    let Host {
        net,
        handle,
        reports,
        name,
        ..
    } = host;
    let label = request
        .tag
        .clone()
        .unwrap_or_else(|| format!("#{}", request.action));
    let result = match &request.op {
        DaemonOp::Handshake { peer } => match peer_id(reports, peer) {
            Ok(node) => handle
                .handshake(HandshakeCommand::Send {
                    node,
                    justification: format!("scenario {label}"),
                })
                .await
                .map(|_| format!("asked {peer} (node {node})")),
            Err(e) => Err(e),
        },
        DaemonOp::Approve { peer } => match peer_id(reports, peer) {
            Ok(node) => approve(handle, node)
                .await
                .map(|_| format!("approved {peer}")),
            Err(e) => Err(e),
        },
        DaemonOp::Revoke { peer } => match peer_id(reports, peer) {
            Ok(node) => handle
                .handshake(HandshakeCommand::Revoke { node })
                .await
                .map(|_| format!("revoked {peer} (node {node})")),
            Err(e) => Err(e),
        },
        DaemonOp::Echo {
            peer,
            bytes,
            expect_failure,
        } => {
            let r = echo(host, peer, *bytes, &label).await;
            let text = match (&r.error, r.first_byte, r.done) {
                (Some(e), _, _) if *expect_failure => Ok(format!("failed as expected: {e}")),
                (Some(e), _, _) => Err(e.clone()),
                (None, Some(f), Some(d)) => Ok(format!(
                    "{} bytes echoed by {peer}: first byte after {} ms, all after {} ms",
                    r.bytes,
                    (f - r.started).as_millis(),
                    (d - r.started).as_millis()
                )),
                _ => Err("incomplete".to_string()),
            };
            lock(&reports.echoes).push(r);
            text
        }
        DaemonOp::Publish { at, topic, texts } => {
            pubsub::publish(handle, reports, at, topic, texts).await
        }
        DaemonOp::Task(op) => match task_dirs {
            Some(dirs) => tasks::perform(handle, dirs, reports, op).await,
            None => Err(format!("{name} runs no task submit")),
        },
        DaemonOp::Send(_)
        | DaemonOp::Subscribe(_)
        | DaemonOp::ListenDatagrams(_)
        | DaemonOp::SendDatagrams(_) => {
            unreachable!("sends, listeners and subscriptions run in their own tasks")
        }
    };
    let shown = match &result {
        Ok(t) => t.clone(),
        Err(e) => format!("error: {e}"),
    };
    note(net, name, format!("daemon {label} {shown}"));
    if let Err(e) = result {
        lock(&reports.errors).push(format!("action #{} on {name}: {e}", request.action));
    }
}

/// Waits until `node`'s request is pending, then approves it.
async fn approve(handle: &DaemonHandle, node: u32) -> Result<(), String> {
    let mut changes = handle.trust_changes();
    let wait = async {
        loop {
            let pending = handle.handshake(HandshakeCommand::Pending).await?;
            let listed = pending["pending"]
                .as_array()
                .is_some_and(|a| a.iter().any(|e| e["node_id"] == node));
            if listed {
                return handle
                    .handshake(HandshakeCommand::Approve { node })
                    .await
                    .map(drop);
            }
            changes.changed().await.map_err(|e| e.to_string())?;
        }
    };
    tokio::time::timeout(DAEMON_TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| Err(format!("no request from node {node} arrived")))
}

/// Dials `peer`'s echo port, sends `bytes` of a pattern and reads them back.
async fn echo(host: Host<'_>, peer: &str, bytes: usize, tag: &str) -> EchoResult {
    let Host {
        handle,
        reports,
        name,
        planted,
        ..
    } = host;
    let mut reorder = (planted == Some(super::PlantedBug::EchoReorder)
        && bytes > PLANTED_REORDER_ABOVE)
        .then(PlantedReorder::default);
    let started = trace::now();
    let mut result = EchoResult {
        tag: tag.to_string(),
        host: name.to_string(),
        peer: peer.to_string(),
        bytes,
        started,
        first_byte: None,
        done: None,
        error: None,
    };
    let run = async {
        let node = peer_id(reports, peer)?;
        let mut session = handle.session(ClientOptions::default()).await?;
        let conn = match session.dial(Addr::backbone(node), ECHO_PORT).await {
            Ok(conn) => conn,
            // Said, so that a dial refused for want of trust reads as a cause of its own
            // (shrinking tells the two apart).
            Err(e) if trusts(handle, node).await == Some(false) => {
                return Err(format!("{e} ({name} does not trust {peer})"));
            }
            Err(e) => return Err(e),
        };
        let payload: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
        session.send(conn, payload.clone());
        let mut got = 0usize;
        while got < bytes {
            match session.next_event().await {
                Some(ClientEvent::Recv { conn: c, data }) if c == conn => {
                    let data = match reorder.as_mut() {
                        Some(r) => match r.pass(data) {
                            Some(d) => d,
                            None => {
                                // Held back: granted now, so the window keeps moving.
                                session.grant(conn, r.held_len());
                                continue;
                            }
                        },
                        None => data,
                    };
                    if result.first_byte.is_none() {
                        result.first_byte = Some(trace::now());
                    }
                    if data[..] != payload[got..got + data.len().min(bytes - got)] {
                        return Err(ALTERED.to_string());
                    }
                    let held = reorder.as_ref().map_or(0, PlantedReorder::granted_early);
                    session.grant(conn, data.len() as u32 - held);
                    got += data.len();
                }
                Some(ClientEvent::Closed { conn: c }) if c == conn => {
                    return Err(format!("closed after {got} of {bytes} bytes"));
                }
                None => return Err("the daemon stopped".to_string()),
                _ => {}
            }
        }
        result.done = Some(trace::now());
        session.close(conn);
        Ok(())
    };
    let outcome = tokio::time::timeout(DAEMON_TIMEOUT, run).await;
    result.error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(echo_timeout()),
    };
    result
}

/// Whether `handle`'s daemon trusts node `node`; `None` when it cannot say.
async fn trusts(handle: &DaemonHandle, node: u32) -> Option<bool> {
    let list = handle.handshake(HandshakeCommand::Trusted).await.ok()?;
    let trusted = list["trusted"].as_array()?;
    Some(trusted.iter().any(|t| t["node_id"] == node))
}

/// The planted echo reordering touches only streams longer than this.
const PLANTED_REORDER_ABOVE: usize = 48 << 10;

/// The planted bug [`super::PlantedBug::EchoReorder`]: holds the 3rd chunk back and hands it
/// over after the 4th, glued to it.
#[derive(Default)]
struct PlantedReorder {
    seen: usize,
    held: Option<Vec<u8>>,
    /// Bytes of the chunk handed over last that were granted when they arrived.
    early: u32,
}

impl PlantedReorder {
    /// The chunk to hand to the application now, if any.
    fn pass(&mut self, data: Vec<u8>) -> Option<Vec<u8>> {
        self.seen += 1;
        self.early = 0;
        match (self.seen, self.held.take()) {
            (3, _) => {
                self.held = Some(data);
                None
            }
            (_, Some(held)) => {
                self.early = held.len() as u32;
                Some([data, held].concat())
            }
            (_, None) => Some(data),
        }
    }

    /// The length of the chunk held back.
    fn held_len(&self) -> u32 {
        self.held.as_ref().map_or(0, |h| h.len() as u32)
    }

    /// Bytes of the chunk just handed over that were granted already.
    fn granted_early(&self) -> u32 {
        self.early
    }
}

/// The error of an echo whose bytes came back different from those sent.
pub(crate) const ALTERED: &str = "the echo came back altered";

/// The error of an echo the harness gave up on: the stream neither completed nor failed.
fn echo_timeout() -> String {
    format!("not done within {} s", DAEMON_TIMEOUT.as_secs())
}

impl EchoResult {
    /// Whether the harness gave up waiting (the stream hung).
    pub fn timed_out(&self) -> bool {
        self.error.as_deref() == Some(echo_timeout().as_str())
    }

    /// Time from the start to the first byte back.
    pub fn time_to_first_byte(&self) -> Option<Duration> {
        self.first_byte.map(|f| f - self.started)
    }

    /// Bytes per second over the whole exchange (both directions' payload counted once).
    pub fn throughput(&self) -> Option<f64> {
        let d = self.done? - self.started;
        (!d.is_zero()).then(|| self.bytes as f64 / d.as_secs_f64())
    }
}

/// An echo's outcome in words.
pub(crate) fn describe_echo(e: &EchoResult) -> String {
    match (&e.error, e.time_to_first_byte(), e.throughput()) {
        (Some(err), _, _) => format!("{} bytes to {}: {err}", e.bytes, e.peer),
        (None, Some(ttfb), Some(bps)) => format!(
            "{} bytes {} -> {} echo: first byte after {} ms, {:.1} KB/s",
            e.bytes,
            e.host,
            e.peer,
            ttfb.as_millis(),
            bps / 1000.0
        ),
        _ => format!("{} bytes to {}: incomplete", e.bytes, e.peer),
    }
}
