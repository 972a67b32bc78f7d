//! The async shell around [`DaemonCore`]: start-up (identity, tunnel socket, registration),
//! the task that owns the core and the tunnel socket, and the helper tasks (registry session,
//! handshake subscription, built-in services).
//!
//! Everything reaches the world through the seams: the network through `N: Network`, time
//! through `tokio::time`, files through `S: Storage`, randomness through the injected `Rng`,
//! wall-clock time through `C: WallClock`. The simulator runs this same code.

use super::config::DaemonConfig;
use super::core::DaemonCore;
use super::handle::{DaemonHandle, Request};
use super::info::{info_json, InfoContext};
use super::registry::{self, Registering, RegistryLink};
use super::types::{ClientEvent, ClientId, Output, TrustJob};
use crate::crypto::{to_base64, Identity, LocalKeys};
use crate::net::watch;
use crate::net::{
    monotonic_now, seeded_rng, Network, Outgoing, RecvBatch, Rng, Storage, UdpSocket, WallClock,
};
use crate::services::trust::{self, TrustBook};
use crate::transport::syn_limit::SynLimits;
use crate::transport::{Config as ConnConfig, EndpointConfig};
use crate::tunnel::{Transmit, Tunnel, TunnelConfig};
use crate::wire::Addr;
use rand_core::Rng as _;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Datagrams taken from the socket before timers and transmits run.
const RECV_BATCH: usize = 256;
/// Datagrams handed to the socket in one batch send.
const SEND_BATCH: usize = 128;
/// Requests taken from the queue in one go.
const REQUEST_BATCH: usize = 256;
/// How long shutdown waits for connections to close.
const SHUTDOWN_LINGER: Duration = Duration::from_secs(2);

/// Why a daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The identity file could not be read or written.
    #[error("identity: {0}")]
    Identity(#[from] crate::crypto::IdentityError),
    /// The tunnel socket could not be bound.
    #[error("cannot bind the tunnel socket on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Registration failed.
    #[error("cannot register with the registry at {addr}: {source}")]
    Register {
        /// The registry.
        addr: std::net::SocketAddr,
        /// Why.
        source: crate::registry::client::ClientError,
    },
}

/// A running daemon: its handle and the task to await for its end.
pub struct Daemon {
    /// The typed API.
    pub handle: DaemonHandle,
    /// The tunnel socket's local address.
    pub tunnel_addr: std::net::SocketAddr,
    /// Ends when the daemon stopped.
    pub task: JoinHandle<()>,
}

/// Starts a daemon: identity, tunnel socket, registration, then the tasks. Fails if the
/// registry cannot be reached (as the reference does).
pub async fn start<N, S, C>(
    net: N,
    storage: S,
    clock: C,
    mut rng: Rng,
    config: DaemonConfig,
) -> Result<Daemon, StartError>
where
    N: Network,
    S: Storage,
    C: WallClock + Clone,
{
    let identity = match &config.identity {
        Some(name) => Identity::load_or_create_in(&storage, name, &mut rng)?,
        None => Identity::generate(&mut rng),
    };
    let socket = net
        .bind_udp(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    if let Err(e) = socket.set_buffer_sizes(config.socket_buffer) {
        tracing::warn!(error = %e, "could not enlarge the tunnel socket buffers");
    }
    // The shell receives only in batches, which split what the kernel merged.
    let offload = socket.enable_receive_offload();
    tracing::debug!(offload, "tunnel socket receive offload");
    let tunnel_addr = socket.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;

    let mut addrs = vec![config.registry];
    addrs.extend(config.standby_registry);
    let link = Arc::new(RegistryLink::new(
        net.clone(),
        addrs,
        config.registry_tls_pin.clone(),
        &identity,
    ));
    let who = Registering {
        public_key: to_base64(&identity.public_key()),
        owner: config.owner.clone(),
        hostname: Arc::new(Mutex::new(config.hostname.clone())),
        public: Arc::new(AtomicBool::new(config.public)),
    };
    let listen_addr = config.endpoint.unwrap_or(tunnel_addr).to_string();
    let registration = link
        .register_with_any(&who, &listen_addr)
        .await
        .map_err(|(addr, source)| StartError::Register { addr, source })?;
    let node = registration.node_id;
    tracing::info!(node_id = node, address = %registration.address, tunnel = %tunnel_addr, "registered");

    let persist_trust = config.identity.is_some();
    let book = if persist_trust {
        match trust::store::load(&storage, node) {
            Ok(book) => book,
            Err(e) => {
                tracing::warn!(error = %e, "trust file unusable; starting with no trust");
                TrustBook::new(node)
            }
        }
    } else {
        TrustBook::new(node)
    };

    let tunnel_config = TunnelConfig {
        beacon: config.beacon,
        encryption: config.encrypt,
        accept_plaintext_before_key: config.accept_plaintext,
        timing: crate::tunnel::Timing {
            peer_idle_expiry: config.peer_idle_expiry,
            ..Default::default()
        },
        ..TunnelConfig::default()
    };
    let keys = LocalKeys::generate(identity.clone(), &mut rng);
    let tunnel = Tunnel::new(node, keys, tunnel_config, seeded_rng(rng.next_u64()));
    let mut endpoint = EndpointConfig::new(Addr::backbone(node));
    endpoint.connection = ConnConfig {
        idle_timeout: Some(config.idle_timeout),
        time_wait: config.time_wait,
        ..ConnConfig::default()
    };
    endpoint.max_connections_per_port = config.max_conns_per_port;
    endpoint.max_connections = config.max_conns_total;
    let global = config.syn_rate_limit.max(1);
    endpoint.syn_limits = Some(SynLimits {
        global_per_sec: global,
        per_source_per_sec: (global / 10).max(10).min(global),
        ..SynLimits::default()
    });
    let mut core = DaemonCore::new(tunnel, endpoint, seeded_rng(rng.next_u64()), book);
    core.set_local_candidates(monotonic_now(), &lan_candidates(&net, tunnel_addr));
    if config.endpoint.is_none() && config.beacon.is_some() {
        core.discover(monotonic_now());
    }

    let (tx, rx) = mpsc::unbounded_channel();
    let (trust_version, trust_watch) = watch::channel(0u64);
    let webhooks = crate::services::webhook::Webhooks::new(node, Arc::new(clock.clone()));
    if let Err(e) = webhooks.set(&config.webhook) {
        tracing::warn!(error = %e, "webhook not set");
    }
    webhooks.emit(
        "node.registered",
        serde_json::json!({"address": registration.address.to_string(), "endpoint": listen_addr}),
    );
    let handle = DaemonHandle::new(tx.clone(), node, trust_watch, webhooks.clone());
    let (endpoint_tx, endpoint_rx) = watch::channel(None);
    let subscribed = Arc::new(AtomicBool::new(false));
    let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();

    let mut helpers = vec![
        tokio::spawn(registry::session(
            link.clone(),
            who.clone(),
            listen_addr,
            endpoint_rx,
            subscribed.clone(),
            config.keepalive,
            tx.clone(),
        )),
        tokio::spawn(registry::subscription(link.clone(), subscribed, tx.clone())),
        tokio::spawn(crate::services::handshake::run(
            handle.clone(),
            jobs_rx,
            link.clone(),
            identity.clone(),
            clock.clone(),
        )),
    ];
    let mut bound = Vec::new();
    if config.echo {
        helpers.push(spawn_service(
            &handle,
            crate::services::echo::ECHO_PORT,
            &mut bound,
            crate::services::echo::run,
        ));
    }
    let notify = webhooks.notify();
    if let Some(mailbox) = &config.mailbox {
        let exchange = crate::services::dataexchange::Exchange::new(
            mailbox.clone(),
            Arc::new(clock.clone()),
            notify.clone(),
            config.exchange_quota,
        );
        let exchange = Arc::new(exchange);
        helpers.push(spawn_service(
            &handle,
            crate::services::dataexchange::DATA_EXCHANGE_PORT,
            &mut bound,
            move |listener| crate::services::dataexchange::run(listener, exchange),
        ));
    }
    if config.eventstream {
        // The webhooks' notify, not a client fixed at start: a later set-webhook gets pubsub
        // events too (the reference's Q24).
        let notify = notify.clone();
        helpers.push(spawn_service(
            &handle,
            crate::services::eventstream::EVENT_STREAM_PORT,
            &mut bound,
            move |listener| crate::services::eventstream::run(listener, notify),
        ));
    }
    if let Some(tasks_config) = &config.tasks {
        let tasks = crate::services::tasks::TaskService::new(
            tasks_config.clone(),
            Arc::new(clock.clone()),
            Some(Arc::new(handle.clone())),
            handle.address(),
            Some(handle.clone()),
        );
        let tasks = Arc::new(tasks);
        helpers.push(spawn_service(
            &handle,
            crate::services::tasks::TASK_PORT,
            &mut bound,
            move |listener| crate::services::tasks::run(listener, tasks),
        ));
    }

    let info = InfoContext {
        hostname: config.hostname.clone(),
        uptime_secs: 0,
        registry: link.current_addr().to_string(),
        registry_standby: link.on_standby(),
        identity: config.identity.is_some(),
        public_key: identity.public_key(),
        owner: config.owner.clone(),
    };
    let shell = Shell {
        core,
        socket,
        rx,
        tx,
        link,
        who,
        storage,
        clock,
        persist_trust,
        trust_version,
        clients: HashMap::new(),
        dials: HashMap::new(),
        next_token: 1,
        endpoint_tx,
        jobs: jobs_tx,
        webhooks,
        info,
        started: monotonic_now(),
        shutdown: None,
    };
    let task = tokio::spawn(async move {
        shell.run().await;
        for helper in helpers {
            helper.abort();
        }
    });
    // The services bind through the running shell; once they have, a peer dialing them right
    // after `start` returns is served, not refused.
    for port in bound {
        let _ = port.await;
    }
    Ok(Daemon {
        handle,
        tunnel_addr,
        task,
    })
}

struct Shell<N: Network, S: Storage, C: WallClock> {
    core: DaemonCore,
    socket: N::Udp,
    rx: mpsc::UnboundedReceiver<Request>,
    tx: mpsc::UnboundedSender<Request>,
    link: Arc<RegistryLink<N>>,
    who: Registering,
    storage: S,
    clock: C,
    persist_trust: bool,
    trust_version: watch::Sender<u64>,
    clients: HashMap<ClientId, mpsc::UnboundedSender<ClientEvent>>,
    dials: HashMap<u64, oneshot::Sender<Result<u32, String>>>,
    next_token: u64,
    endpoint_tx: watch::Sender<Option<std::net::SocketAddr>>,
    jobs: mpsc::UnboundedSender<TrustJob>,
    webhooks: Arc<crate::services::webhook::Webhooks>,
    info: InfoContext,
    started: Instant,
    shutdown: Option<(Instant, oneshot::Sender<()>)>,
}

impl<N: Network, S: Storage, C: WallClock> Shell<N, S, C> {
    fn unix_now(&self) -> i64 {
        self.clock.unix_secs() as i64
    }

    async fn run(mut self) {
        let mut batch = RecvBatch::new(self.socket.batch_slots());
        let mut sending: Vec<Transmit> = Vec::with_capacity(SEND_BATCH);
        loop {
            let deadline = self.core.poll_timeout();
            let deadline = match (deadline, &self.shutdown) {
                (Some(d), Some((s, _))) => Some(d.min(*s)),
                (d, Some((s, _))) => Some(d.map_or(*s, |d| d.min(*s))),
                (d, None) => d,
            };
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            // Biased for determinism (tokio's fair choice draws randomness); client requests
            // first, so a flood of datagrams cannot starve them. Timers are checked after every
            // wake-up, whichever branch fired.
            tokio::select! {
                biased;
                request = self.rx.recv() => {
                    let Some(request) = request else { return };
                    self.request(request);
                    for _ in 1..REQUEST_BATCH {
                        match self.rx.try_recv() {
                            Ok(r) => self.request(r),
                            Err(_) => break,
                        }
                    }
                }
                r = self.socket.recv_batch(&mut batch) => {
                    let now = monotonic_now();
                    // A failed receive still counts, so errors cannot spin this loop.
                    let mut taken = 1;
                    match r {
                        Ok(_) => taken = self.handle_batch(now, &batch).max(1),
                        Err(e) => tracing::debug!(error = %e, "tunnel socket receive"),
                    }
                    // Drain what else is already there before timers and transmits.
                    while taken < RECV_BATCH {
                        match self.socket.try_recv_batch(&mut batch).await {
                            Ok(n) if n > 0 => taken += self.handle_batch(now, &batch),
                            _ => break,
                        }
                    }
                }
                () = sleep => {}
            }
            let now = monotonic_now();
            if self.core.poll_timeout().is_some_and(|d| d <= now) {
                self.core.handle_timeout(now);
            }
            self.core.flush(now);
            self.outputs();
            self.transmit(&mut sending).await;
            if let Some((deadline, _)) = &self.shutdown {
                if self.core.is_quiet() || now >= *deadline {
                    if let Err(e) = self.link.deregister().await {
                        tracing::warn!(error = %e, "deregistration failed");
                    }
                    if let Some((_, done)) = self.shutdown.take() {
                        let _ = done.send(());
                    }
                    tracing::info!("daemon stopped");
                    return;
                }
            }
        }
    }

    /// Feeds every datagram of `batch` to the core; returns how many there were.
    fn handle_batch(&mut self, now: Instant, batch: &RecvBatch) -> usize {
        let mut n = 0;
        for (bytes, from) in batch.iter() {
            self.core.handle_datagram(now, from, bytes);
            n += 1;
        }
        n
    }

    /// Sends everything the core has queued, a batch at a time, and hands the buffers back.
    async fn transmit(&mut self, sending: &mut Vec<Transmit>) {
        loop {
            while sending.len() < SEND_BATCH {
                match self.core.poll_transmit() {
                    Some(t) => sending.push(t),
                    None => break,
                }
            }
            if sending.is_empty() {
                return;
            }
            if let Err(e) = self.socket.send_batch(&sending[..]).await {
                tracing::debug!(error = %e, "tunnel socket send");
            }
            for t in sending.drain(..) {
                self.core.recycle(t.bytes);
            }
        }
    }

    fn request(&mut self, request: Request) {
        let now = monotonic_now();
        match request {
            Request::Open {
                options,
                events,
                reply,
            } => {
                let id = self.core.open_client(options);
                self.clients.insert(id, events);
                let _ = reply.send(id);
            }
            Request::Options { client, options } => self.core.set_options(client, options),
            Request::CloseClient(id) => {
                self.clients.remove(&id);
                self.core.close_client(now, id);
            }
            Request::Bind {
                client,
                port,
                reply,
            } => {
                let _ = reply.send(self.core.bind(client, port));
            }
            Request::Unbind {
                client,
                port,
                reply,
            } => {
                let _ = reply.send(self.core.unbind(now, client, port));
            }
            Request::Disconnect { conn, reply } => {
                let _ = reply.send(self.core.disconnect(now, conn));
            }
            Request::Dial {
                client,
                addr,
                port,
                reply,
            } => {
                let token = self.next_token;
                self.next_token += 1;
                match self.core.dial(now, client, addr, port, token) {
                    Ok(()) => {
                        self.dials.insert(token, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Request::Send { client, conn, data } => self.core.send(now, client, conn, data),
            Request::Grant {
                client,
                conn,
                bytes,
            } => self.core.grant(now, client, conn, bytes),
            Request::Close { client, conn } => self.core.close(now, client, conn),
            Request::SendTo {
                client,
                addr,
                port,
                data,
                reply,
            } => {
                let _ = reply.send(self.core.send_to(now, client, addr, port, &data));
            }
            Request::Info(reply) => {
                self.info.uptime_secs = now.saturating_duration_since(self.started).as_secs();
                self.info.registry = self.link.current_addr().to_string();
                self.info.registry_standby = self.link.on_standby();
                if let Ok(h) = self.who.hostname.lock() {
                    self.info.hostname = h.clone();
                }
                let _ = reply.send(info_json(&self.core, &self.info));
            }
            Request::Handshake { cmd, reply } => {
                let unix = self.unix_now();
                let _ = reply.send(self.core.handshake(now, unix, cmd));
            }
            Request::Registry { op, reply } => {
                let link = self.link.clone();
                let who = self.who.clone();
                tokio::spawn(async move {
                    let _ = reply.send(link.op(&op, &who).await);
                });
            }
            Request::Verified { peer, message, key } => {
                let unix = self.unix_now();
                self.core
                    .on_handshake_message(now, unix, peer, &message, key);
            }
            Request::Relayed(event) => {
                let unix = self.unix_now();
                self.core.on_relayed(now, unix, event);
            }
            Request::Resolved { node, result } => self.core.on_resolved(now, node, result),
            Request::RegistryKey { node, key } => self.core.on_registry_key(now, node, key),
            Request::Registered(node) => self.core.on_registered(now, node),
            Request::Shutdown(done) => {
                tracing::info!("shutting down: closing connections");
                self.core.shutdown(now);
                self.shutdown = Some((now + SHUTDOWN_LINGER, done));
            }
        }
    }

    fn outputs(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Event(client, event) => {
                    if let Some(tx) = self.clients.get(&client) {
                        let _ = tx.send(event);
                    }
                }
                Output::DialDone { token, result } => {
                    if let Some(reply) = self.dials.remove(&token) {
                        if let (Err(_), Ok(conn)) = (reply.send(result.clone()), &result) {
                            // Nobody waits any more: the connection must not linger.
                            tracing::debug!(conn, "dial finished after its caller left");
                        }
                    }
                }
                Output::Resolve(node) => {
                    let (link, tx) = (self.link.clone(), self.tx.clone());
                    tokio::spawn(async move {
                        let result = link.resolve(node).await;
                        let _ = tx.send(Request::Resolved { node, result });
                    });
                }
                Output::LookupKey(node) => {
                    let (link, tx) = (self.link.clone(), self.tx.clone());
                    tokio::spawn(async move {
                        let key = link.key(node).await;
                        let _ = tx.send(Request::RegistryKey { node, key });
                    });
                }
                Output::PublicEndpoint(addr) => {
                    tracing::info!(endpoint = %addr, "public endpoint discovered");
                    let _ = self.endpoint_tx.send(Some(addr));
                }
                Output::Notify(name, data) => self.webhooks.emit(name, data),
                Output::PersistTrust(bytes) => {
                    self.trust_version.send_modify(|v| *v += 1);
                    if self.persist_trust {
                        if let Err(e) = self.storage.replace(trust::store::TRUST_FILE, &bytes) {
                            tracing::warn!(error = %e, "trust file not written");
                        }
                    }
                }
                Output::Trust(job) => {
                    let _ = self.jobs.send(job);
                }
            }
        }
    }
}

/// Spawns a built-in service: binds `port` through the daemon, reports on `bound` that the
/// attempt is over, then serves the listener with `serve` until the daemon stops.
fn spawn_service<F, Fut>(
    handle: &DaemonHandle,
    port: u16,
    bound: &mut Vec<oneshot::Receiver<()>>,
    serve: F,
) -> JoinHandle<()>
where
    F: FnOnce(crate::services::conn::ServiceListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (done, wait) = oneshot::channel();
    bound.push(wait);
    let handle = handle.clone();
    tokio::spawn(async move {
        let listener = crate::services::conn::ServiceListener::bind(&handle, port).await;
        let _ = done.send(());
        match listener {
            Ok(listener) => serve(listener).await,
            Err(e) => tracing::warn!(error = %e, port, "built-in service not started"),
        }
    })
}

/// The addresses neighbours can reach the tunnel socket bound at `bound` on: that address if
/// it is a concrete one, else the host's interface addresses of its family (loopback never).
fn lan_candidates<N: Network>(net: &N, bound: std::net::SocketAddr) -> Vec<std::net::SocketAddr> {
    let ip = bound.ip();
    if ip.is_loopback() {
        return Vec::new();
    }
    if !ip.is_unspecified() {
        return vec![bound];
    }
    net.local_addresses()
        .into_iter()
        .filter(|a| !a.is_loopback() && (ip.is_ipv6() || a.is_ipv4()))
        .map(|a| std::net::SocketAddr::new(a, bound.port()))
        .collect()
}

/// The tunnel's datagrams go out through the seam's batch send.
impl Outgoing for Transmit {
    fn destination(&self) -> std::net::SocketAddr {
        self.to
    }

    fn payload(&self) -> &[u8] {
        &self.bytes
    }
}
