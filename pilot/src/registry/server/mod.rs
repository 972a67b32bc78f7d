//! The registry server: the sans-IO [`Registry`] behind a TCP listener of any [`Network`].
//!
//! One lock guards the state; a handler holds it only while the state machine runs (no I/O
//! under it). Changes go, in order, to a single committer task that appends them to the
//! [`Store`] in batches (group commit: everything that arrived during one fsync shares the
//! next), then releases the waiting replies. A reply, whether to a write or a read, leaves
//! only once every change it could have observed is durable.

use super::frame::{self, Object, MAX_FRAME};
use super::metrics::Durations;
use super::persist::snapshot::Snapshot;
use super::persist::{PersistError, Store};
use super::ratelimit::source_key;
use super::replication::{self, ReplicationHub};
use super::request::Kind;
use super::state::{error_reply, Config, Ctx, Push, Registry};
use super::tls::{TlsAcceptor, TlsError, TlsIdentity};
use crate::net::watch;
use crate::net::{Network, Storage, TcpListener as _, WallClock};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

mod commit;
mod conn;

use commit::committer;
use conn::accept_loop;

/// Settings of the server around the state machine.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The registry's own settings.
    pub registry: Config,
    /// An idle client is disconnected after this long (5 min).
    pub idle_timeout: Duration,
    /// Most open connections from one source (IPv4 address or IPv6 /64).
    pub max_conns_per_source: usize,
    /// Most open connections in total.
    pub max_conns: usize,
    /// Maintenance tick (60 s).
    pub tick: Duration,
    /// A standby reconnects to its primary after this long (3 s).
    pub reconnect_delay: Duration,
    /// Serve TLS with this identity (§3.2); none = plain TCP.
    pub tls: Option<Arc<TlsIdentity>>,
    /// A standby dials its primary over TLS pinned to this fingerprint; none = plain TCP.
    pub primary_tls_pin: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            registry: Config::default(),
            idle_timeout: Duration::from_secs(300),
            max_conns_per_source: 256,
            max_conns: 50_000,
            tick: Duration::from_secs(60),
            reconnect_delay: replication::RECONNECT_DELAY,
            tls: None,
            primary_tls_pin: None,
        }
    }
}

/// A batch of applied changes on its way to disk.
pub(crate) struct Pending {
    pub ticket: u64,
    pub changes: Vec<super::Change>,
    pub pushes: Vec<Push>,
}

/// Progress of the committer: the highest durable ticket, or a storage failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durable {
    Upto(u64),
    Failed,
}

pub(crate) struct Locked {
    pub reg: Registry,
    /// Ticket of the last batch handed to the committer.
    pub ticket: u64,
    /// Last ticket that touched each node, while it may not be durable yet.
    pub node_tickets: HashMap<u32, u64>,
    /// Last ticket that touched state not tied to one node (counters, resets, expiry).
    pub global_ticket: u64,
}

impl Locked {
    /// The ticket a read-only request must wait for: the last change to any node it names or
    /// its reply names. A read never reveals a change that a crash could still lose, yet it
    /// does not wait for unrelated writes in flight.
    fn read_ticket(&self, request: &Object, reply: &Object) -> u64 {
        const ID_FIELDS: [&str; 9] = [
            "node_id",
            "peer_id",
            "requester_id",
            "node_a",
            "node_b",
            "from_node_id",
            "to_node_id",
            "network_id",
            "beacon_id",
        ];
        let mut t = self.global_ticket;
        for o in [request, reply] {
            for f in ID_FIELDS {
                if let Some(id) = o.get(f).and_then(Value::as_u64) {
                    let id = u32::try_from(id).unwrap_or(0);
                    t = t.max(self.node_tickets.get(&id).copied().unwrap_or(0));
                }
            }
        }
        // Replies that summarise many nodes wait for everything.
        if o_has_list(reply) {
            t = self.ticket;
        }
        t
    }
}

fn o_has_list(reply: &Object) -> bool {
    ["networks", "nodes"]
        .iter()
        .any(|k| reply.get(*k).is_some_and(Value::is_array))
        && reply.get("type").and_then(Value::as_str) != Some("lookup_ok")
}

/// The nodes a change touches; `None` when it touches state beyond single nodes.
fn touched(change: &super::Change, out: &mut Vec<u32>) -> bool {
    use super::Change as C;
    match change {
        C::Node(n) => out.push(n.id),
        C::Drop { id } | C::Owner { id, .. } => out.push(*id),
        C::Key { id, .. } => out.extend(*id),
        C::Trust { a, b, .. } => out.extend([*a, *b]),
        C::Intent { from, to, .. } | C::Ask { from, to, .. } => out.extend([*from, *to]),
        C::Request { to, entry } => out.extend([*to, entry.from]),
        C::Response { to, entry } => out.extend([*to, entry.from]),
        C::Drain { node } => out.push(*node),
        // Only `register` reads the counter, and it writes too.
        C::NextNode { .. } => {}
        C::Reset(_) | C::Expire { .. } => return false,
    }
    true
}

type PushTx = mpsc::UnboundedSender<Object>;

pub(crate) struct Shared<C> {
    pub locked: Mutex<Locked>,
    pub commit_tx: mpsc::UnboundedSender<Pending>,
    durable: watch::Receiver<Durable>,
    subscribers: Mutex<BTreeMap<u32, Vec<PushTx>>>,
    conns: Mutex<HashMap<u128, usize>>,
    pub clock: C,
    pub cfg: ServerConfig,
    pub hub: ReplicationHub,
    shutdown: watch::Receiver<bool>,
    durations: Mutex<Durations>,
    /// The last `/api/stats` document and when it was made (Q-27b: at most one walk over all
    /// nodes per second, however often it is requested).
    pub stats_cache: Mutex<Option<(u64, String)>>,
}

impl<C: WallClock> Shared<C> {
    pub fn now_ms(&self) -> u64 {
        self.clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    pub fn lock(&self) -> MutexGuard<'_, Locked> {
        // Handlers never panic while holding the lock (the state machine is total), so a
        // poisoned lock still guards consistent state.
        self.locked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands a batch to the committer; call with the lock held so batches stay in order.
    pub fn submit(&self, locked: &mut Locked, changes: Vec<super::Change>, pushes: Vec<Push>) {
        if changes.is_empty() && pushes.is_empty() {
            return;
        }
        locked.ticket += 1;
        let ticket = locked.ticket;
        let mut nodes = Vec::new();
        for c in &changes {
            if !touched(c, &mut nodes) {
                locked.global_ticket = ticket;
            }
        }
        if locked.node_tickets.len() > 4096 {
            let durable = match *self.durable.borrow() {
                Durable::Upto(t) => t,
                Durable::Failed => 0,
            };
            locked.node_tickets.retain(|_, t| *t > durable);
        }
        for id in nodes {
            locked.node_tickets.insert(id, ticket);
        }
        let _ = self.commit_tx.send(Pending {
            ticket: locked.ticket,
            changes,
            pushes,
        });
    }

    /// Waits until `ticket` is durable; false if storage failed.
    pub async fn durable_upto(&self, ticket: u64) -> bool {
        self.durable(ticket).await
    }

    /// A copy of the request-duration histograms.
    pub fn durations(&self) -> Durations {
        self.durations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A receiver that turns true at shutdown.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    async fn durable(&self, ticket: u64) -> bool {
        let mut rx = self.durable.clone();
        let reached = |d: &Durable| match d {
            Durable::Upto(t) => *t >= ticket,
            Durable::Failed => true,
        };
        if rx.wait_for(reached).await.is_err() {
            return false;
        }
        let state = *rx.borrow();
        matches!(state, Durable::Upto(_))
    }
}

/// Resolves when the shutdown signal is set (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// A running server.
pub struct ServerHandle<C> {
    shared: Arc<Shared<C>>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    done: mpsc::Receiver<()>,
}

impl<C: WallClock> ServerHandle<C> {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs `f` on the state (for tests, metrics and operators).
    pub fn with_registry<R>(&self, f: impl FnOnce(&Registry) -> R) -> R {
        f(&self.shared.lock().reg)
    }

    /// Serves the HTTP status and metrics endpoints (§12) on `listener` until shutdown.
    pub fn serve_http<L: crate::net::TcpListener>(&self, listener: L)
    where
        C: Clone,
    {
        tokio::spawn(super::http::serve(self.shared.clone(), listener));
    }

    /// Waits until `pred` holds for the state, re-checking after each durable commit.
    pub async fn wait_until(&self, pred: impl Fn(&Registry) -> bool) {
        let mut rx = self.shared.durable.clone();
        loop {
            if pred(&self.shared.lock().reg) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Promotes a standby to primary: it stops following and accepts writes (one command).
    pub fn promote(&self) {
        self.shared.hub.stop_following();
        self.shared.lock().reg.set_standby(false);
    }

    /// Stops accepting, closes every connection, writes what is pending and a final
    /// snapshot, then returns.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        drop(self.shared);
        while self.done.recv().await.is_some() {}
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be loaded.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The listener failed.
    #[error("registry listener: {0}")]
    Io(#[from] std::io::Error),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Starts a registry on `listener`, loading state from `storage`.
pub async fn serve<N, S, C>(
    net: N,
    listener: N::Listener,
    storage: S,
    clock: C,
    cfg: ServerConfig,
) -> Result<ServerHandle<C>, ServeError>
where
    N: Network,
    S: Storage,
    C: WallClock + Clone,
{
    let now_ms = clock
        .now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (store, loaded) = Store::open(storage, now_ms)?;
    tracing::info!(
        nodes = loaded.data.nodes.len(),
        replayed = loaded.replayed,
        torn_bytes = loaded.torn_bytes,
        "registry state loaded"
    );
    let reg = Registry::from_data(cfg.registry.clone(), loaded.data, now_ms);
    let local_addr = listener.local_addr()?;
    let acceptor = cfg.tls.as_ref().map(|id| id.acceptor()).transpose()?;
    let (commit_tx, commit_rx) = mpsc::unbounded_channel();
    let (durable_tx, durable_rx) = watch::channel(Durable::Upto(0));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel(1);
    let shared = Arc::new(Shared {
        locked: Mutex::new(Locked {
            reg,
            ticket: 0,
            node_tickets: HashMap::new(),
            global_ticket: 0,
        }),
        commit_tx,
        durable: durable_rx,
        subscribers: Mutex::new(BTreeMap::new()),
        conns: Mutex::new(HashMap::new()),
        clock,
        hub: ReplicationHub::default(),
        durations: Mutex::new(Durations::default()),
        stats_cache: Mutex::new(None),
        cfg,
        shutdown: shutdown_rx,
    });
    tokio::spawn(committer(
        shared.clone(),
        store,
        commit_rx,
        durable_tx,
        done_tx.clone(),
    ));
    tokio::spawn(ticker(shared.clone(), done_tx.clone()));
    tokio::spawn(accept_loop(
        net,
        listener,
        shared.clone(),
        acceptor,
        done_tx,
    ));
    Ok(ServerHandle {
        shared,
        local_addr,
        shutdown: shutdown_tx,
        done: done_rx,
    })
}

/// Starts a registry that follows the primary at `primary` as a hot standby.
pub async fn serve_standby<N, S, C>(
    net: N,
    listener: N::Listener,
    storage: S,
    clock: C,
    mut cfg: ServerConfig,
    primary: SocketAddr,
) -> Result<ServerHandle<C>, ServeError>
where
    N: Network,
    S: Storage,
    C: WallClock + Clone,
{
    cfg.registry.standby = true;
    let token = cfg.registry.replication_token.clone().unwrap_or_default();
    let handle = serve(net.clone(), listener, storage, clock, cfg).await?;
    replication::follow(net, handle.shared.clone(), primary, token);
    Ok(handle)
}

async fn ticker<C: WallClock>(shared: Arc<Shared<C>>, _done: mpsc::Sender<()>) {
    let mut shutdown = shared.shutdown.clone();
    let mut interval = tokio::time::interval(shared.cfg.tick);
    interval.tick().await;
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            _ = interval.tick() => {}
        }
        let now = shared.now_ms();
        let mut locked = shared.lock();
        let changes = locked.reg.tick(now);
        shared.submit(&mut locked, changes, Vec::new());
    }
}

/// A `{"type":"heartbeat"}` frame, as the replication link sends.
pub(crate) fn heartbeat_frame() -> Object {
    let mut o = Object::new();
    o.insert("type".into(), json!("heartbeat"));
    o
}
