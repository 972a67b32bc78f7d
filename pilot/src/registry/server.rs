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
use crate::net::{Network, Storage, TcpListener as _, WallClock};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};

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

async fn committer<S: Storage, C: WallClock>(
    shared: Arc<Shared<C>>,
    mut store: Store<S>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    durable: watch::Sender<Durable>,
    _done: mpsc::Sender<()>,
) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let first = tokio::select! {
            biased;
            p = rx.recv() => match p { Some(p) => p, None => break },
            _ = stopped(&mut shutdown) => break,
        };
        let mut batch = vec![first];
        while let Ok(p) = rx.try_recv() {
            batch.push(p);
        }
        if !commit_batch(&shared, &mut store, &batch, &durable) {
            return;
        }
        // Deliver pushes only now that what they announce is durable; put back what could
        // not be delivered.
        let requeue = deliver(&shared, &batch);
        if !requeue.is_empty() {
            let mut locked = shared.lock();
            let changes = locked.reg.requeue(&requeue);
            shared.submit(&mut locked, changes, Vec::new());
        }
        if store.needs_compaction() && !compact(&shared, &mut store, &mut rx, &durable) {
            return;
        }
    }
    // Shutdown: whatever is still queued, then a final snapshot.
    let mut rest = Vec::new();
    while let Ok(p) = rx.try_recv() {
        rest.push(p);
    }
    if !rest.is_empty() && !commit_batch(&shared, &mut store, &rest, &durable) {
        return;
    }
    compact(&shared, &mut store, &mut rx, &durable);
}

fn commit_batch<S: Storage, C: WallClock>(
    shared: &Shared<C>,
    store: &mut Store<S>,
    batch: &[Pending],
    durable: &watch::Sender<Durable>,
) -> bool {
    let changes: Vec<_> = batch
        .iter()
        .flat_map(|p| p.changes.iter().cloned())
        .collect();
    let last = batch.iter().map(|p| p.ticket).max().unwrap_or(0);
    match store.commit(&changes) {
        Ok(()) => {
            // One publication per ticket: a standby that subscribed at ticket T must skip
            // exactly the batches its snapshot already holds.
            for p in batch {
                shared.hub.publish(p.ticket, &p.changes);
            }
            durable.send_replace(Durable::Upto(last));
            true
        }
        Err(e) => {
            // Nothing acknowledged is lost; nothing more can be acknowledged.
            tracing::error!(error = %e, "registry storage failed; refusing further changes");
            durable.send_replace(Durable::Failed);
            false
        }
    }
}

fn compact<S: Storage, C: WallClock>(
    shared: &Shared<C>,
    store: &mut Store<S>,
    rx: &mut mpsc::UnboundedReceiver<Pending>,
    durable: &watch::Sender<Durable>,
) -> bool {
    // Under the lock every applied change is already in the channel: commit those, then the
    // snapshot matches the log position exactly.
    let bytes = {
        let locked = shared.lock();
        let mut late = Vec::new();
        while let Ok(p) = rx.try_recv() {
            late.push(p);
        }
        if !late.is_empty() {
            if !commit_batch(shared, store, &late, durable) {
                return false;
            }
            // Their pushes go out with the snapshot's release below.
            drop(locked);
            deliver(shared, &late);
            return compact(shared, store, rx, durable);
        }
        Snapshot::from_data(locked.reg.data(), store.seq()).to_bytes()
    };
    if let Err(e) = blocking(|| store.compact_bytes(bytes)) {
        tracing::error!(error = %e, "registry snapshot failed; refusing further changes");
        durable.send_replace(Durable::Failed);
        return false;
    }
    true
}

/// Runs a blocking storage call. On a multi-threaded runtime the worker hands its other tasks
/// away first, so an fsync does not stall request handling; on a current-thread runtime (the
/// simulator) it runs inline, which keeps the run deterministic.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Sends each push to its node's live streams; returns those no stream took.
fn deliver<C>(shared: &Shared<C>, batch: &[Pending]) -> Vec<Push> {
    let mut undelivered = Vec::new();
    let mut subs = shared.subscribers.lock().unwrap_or_else(|e| e.into_inner());
    for push in batch.iter().flat_map(|p| &p.pushes) {
        let streams = subs.entry(push.to).or_default();
        streams.retain(|tx| !tx.is_closed());
        match streams.first() {
            Some(tx) if tx.send(push.event.clone()).is_ok() => {}
            _ => undelivered.push(push.clone()),
        }
    }
    subs.retain(|_, v| !v.is_empty());
    undelivered
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

async fn accept_loop<N: Network, C: WallClock>(
    _net: N,
    listener: N::Listener,
    shared: Arc<Shared<C>>,
    acceptor: Option<TlsAcceptor>,
    done: mpsc::Sender<()>,
) {
    let mut shutdown = shared.shutdown.clone();
    let mut errors = 0u32;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => {
                errors = 0;
                x
            }
            Err(e) => {
                errors += 1;
                tracing::warn!(error = %e, errors, "registry accept failed");
                if errors >= 10 {
                    tracing::error!("registry listener gave up after 10 consecutive errors");
                    return;
                }
                let pause =
                    Duration::from_millis(100 * u64::from(errors)).min(Duration::from_secs(2));
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let Some(guard) = ConnGuard::admit(&shared, peer) else {
            continue;
        };
        let shared = shared.clone();
        let done = done.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => connection(&shared, stream, peer).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls)) => connection(&shared, tls, peer).await,
                        _ => tracing::debug!(%peer, "TLS handshake failed"),
                    }
                }
            }
            drop(guard);
            drop(done);
        });
    }
}

/// Counts a connection against its source's and the global cap while it lives.
struct ConnGuard<C> {
    shared: Arc<Shared<C>>,
    key: u128,
}

impl<C: WallClock> ConnGuard<C> {
    fn admit(shared: &Arc<Shared<C>>, peer: SocketAddr) -> Option<Self> {
        let now = shared.now_ms();
        if !shared.lock().reg.allow_connection(peer.ip(), now) {
            tracing::debug!(%peer, "connection refused: rate limited");
            return None;
        }
        let key = source_key(peer.ip());
        let mut conns = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = conns.values().sum();
        let mine = conns.entry(key).or_default();
        if *mine >= shared.cfg.max_conns_per_source || total >= shared.cfg.max_conns {
            tracing::debug!(%peer, "connection refused: too many open connections");
            return None;
        }
        *mine += 1;
        Some(ConnGuard {
            shared: shared.clone(),
            key,
        })
    }
}

impl<C> Drop for ConnGuard<C> {
    fn drop(&mut self) {
        let mut conns = self.shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = conns.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                conns.remove(&self.key);
            }
        }
    }
}

/// Reads one frame within the idle timeout; `None` ends the connection.
async fn next_frame<R: AsyncRead + Unpin, C>(shared: &Shared<C>, stream: &mut R) -> Option<Object> {
    let mut shutdown = shared.shutdown.clone();
    tokio::select! {
        biased;
        _ = stopped(&mut shutdown) => None,
        r = tokio::time::timeout(shared.cfg.idle_timeout, frame::read_frame(stream, MAX_FRAME)) => match r {
            Ok(Ok(Some(obj))) => Some(obj),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "registry connection dropped: bad frame");
                None
            }
            _ => None,
        },
    }
}

async fn connection<T, C>(shared: &Arc<Shared<C>>, stream: T, peer: SocketAddr)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: WallClock,
{
    // Buffered reads: a frame's prefix and body usually arrive in one system call.
    let mut stream = tokio::io::BufReader::new(stream);
    let mut first = true;
    while let Some(obj) = next_frame(shared, &mut stream).await {
        let kind = Kind::from_type(obj.get("type").and_then(Value::as_str).unwrap_or(""));
        if kind == Kind::SubscribeReplication && first {
            replication::serve_subscriber(shared, stream, &obj).await;
            return;
        }
        first = false;
        let started = tokio::time::Instant::now();
        let ctx = Ctx {
            peer,
            now_ms: shared.now_ms(),
        };
        let (reply, ticket) = {
            let mut locked = shared.lock();
            let out = locked.reg.handle_frame(&obj, &ctx);
            // Register the push stream before the queued events are handed over, so none can
            // slip past it.
            let sub = (kind == Kind::SubscribeHandshakes && out.reply.get("error").is_none()).then(
                || {
                    let node = obj.get("node_id").and_then(Value::as_u64).unwrap_or(0) as u32;
                    let (tx, rx) = mpsc::unbounded_channel();
                    shared
                        .subscribers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(node)
                        .or_default()
                        .insert(0, tx);
                    (node, rx)
                },
            );
            if kind == Kind::Promote && out.reply.get("error").is_none() {
                shared.hub.stop_following();
            }
            let wait = if out.changes.is_empty() && out.pushes.is_empty() {
                locked.read_ticket(&obj, &out.reply)
            } else {
                shared.submit(&mut locked, out.changes, out.pushes);
                locked.ticket
            };
            (out.reply, (wait, sub))
        };
        let (ticket, sub) = ticket;
        let reply = if shared.durable(ticket).await {
            reply
        } else {
            error_reply("storage failure: the change could not be made durable")
        };
        shared
            .durations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(kind, started.elapsed().as_secs_f64());
        let wrote = frame::write_encoded(&mut stream, &frame::encode(&reply))
            .await
            .is_ok();
        if let Some((node, rx)) = sub {
            if wrote {
                push_stream(shared, stream, node, rx).await;
            } else {
                end_subscription(shared, node, rx, Vec::new());
            }
            return;
        }
        if !wrote {
            return;
        }
    }
}

/// A subscribed connection: events flow out; the client only closes it.
async fn push_stream<T, C>(
    shared: &Arc<Shared<C>>,
    stream: T,
    node: u32,
    mut rx: mpsc::UnboundedReceiver<Object>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: WallClock,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut shutdown = shared.shutdown.clone();
    let mut lost = Vec::new();
    let mut probe = [0u8; 1];
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            event = rx.recv() => match event {
                Some(event) => {
                    if frame::write_encoded(&mut writer, &frame::encode(&event)).await.is_err() {
                        lost.push(event);
                        break;
                    }
                }
                None => break,
            },
            // Anything the client sends (or its EOF) ends the stream.
            _ = tokio::io::AsyncReadExt::read(&mut reader, &mut probe) => break,
        }
    }
    end_subscription(shared, node, rx, lost);
}

/// Ends a push stream: events it did not write go back to the node's queues.
fn end_subscription<C: WallClock>(
    shared: &Shared<C>,
    node: u32,
    mut rx: mpsc::UnboundedReceiver<Object>,
    mut lost: Vec<Object>,
) {
    rx.close();
    while let Ok(event) = rx.try_recv() {
        lost.push(event);
    }
    let mut locked = shared.lock();
    locked.reg.unsubscribe(node);
    if !lost.is_empty() {
        let pushes: Vec<Push> = lost
            .into_iter()
            .map(|event| Push { to: node, event })
            .collect();
        let changes = locked.reg.requeue(&pushes);
        shared.submit(&mut locked, changes, Vec::new());
    }
}

/// A `{"type":"heartbeat"}` frame, as the replication link sends.
pub(crate) fn heartbeat_frame() -> Object {
    let mut o = Object::new();
    o.insert("type".into(), json!("heartbeat"));
    o
}
