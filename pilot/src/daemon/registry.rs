//! The daemon's link to the registry: a small pool of client connections (so a slow call never
//! holds up a resolve on the data path), failover between the primary and a standby address,
//! and the session task (heartbeat, re-registration, relayed handshakes by push or poll).

use super::handle::{RegistryOp, Request};
use crate::crypto::{to_base64, Identity};
use crate::net::watch;
use crate::net::Network;
use crate::registry::client::{Client, ClientError, HandshakeEvent, Registration, Signer};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, SemaphorePermit};

/// Connections to the registry at most, in use or idle. Calls beyond it wait for one to come
/// back rather than open more: a daemon with many calls at once (a hub approving hundreds of
/// peers) would otherwise open connection after connection, hit the registry's per-source
/// connection rate, and have each refused call open yet another.
const POOL: usize = 4;

/// What a registration says about this node.
#[derive(Clone, Debug)]
pub struct Registering {
    /// Base64 Ed25519 public key.
    pub public_key: String,
    /// Owner e-mail ("" for none).
    pub owner: String,
    /// Hostname ("" for none); kept current by `set-hostname`.
    pub hostname: Arc<Mutex<String>>,
    /// Public visibility; kept current by `set-public`/`set-private`.
    pub public: Arc<AtomicBool>,
}

/// Connections to the registry (primary, then standby).
pub struct RegistryLink<N: Network> {
    net: N,
    addrs: Vec<SocketAddr>,
    current: AtomicUsize,
    pin: Option<String>,
    signer: Signer,
    idle: Mutex<Vec<(usize, Client<N>)>>,
    /// One permit per connection in use; `POOL` in all.
    in_use: tokio::sync::Semaphore,
    /// This node's ID once registered.
    pub node_id: AtomicU32,
}

fn transport_error(e: &ClientError) -> bool {
    !matches!(e, ClientError::Registry(_) | ClientError::Malformed(_))
}

impl<N: Network> RegistryLink<N> {
    /// A link to `addrs` (primary first), signing with `identity`.
    pub fn new(net: N, addrs: Vec<SocketAddr>, pin: Option<String>, identity: &Identity) -> Self {
        let identity = identity.clone();
        let signer: Signer = Arc::new(move |text: &str| to_base64(&identity.sign(text.as_bytes())));
        RegistryLink {
            net,
            addrs,
            current: AtomicUsize::new(0),
            pin,
            signer,
            idle: Mutex::new(Vec::new()),
            in_use: tokio::sync::Semaphore::new(POOL),
            node_id: AtomicU32::new(0),
        }
    }

    /// The address calls go to now.
    pub fn current_addr(&self) -> SocketAddr {
        self.addrs[self.current.load(Ordering::Relaxed) % self.addrs.len()]
    }

    /// Whether calls go to a standby now rather than the primary.
    pub fn on_standby(&self) -> bool {
        self.current.load(Ordering::Relaxed) % self.addrs.len() != 0
    }

    /// Registers with the first address that answers, primary first: a daemon starting while
    /// its primary is down comes up on the standby. The error is the last address's.
    pub async fn register_with_any(
        &self,
        who: &Registering,
        listen_addr: &str,
    ) -> Result<Registration, (SocketAddr, ClientError)> {
        let mut tries = self.addrs.len();
        loop {
            let addr = self.current_addr();
            match self.register(who, listen_addr).await {
                Err(e) if transport_error(&e) && tries > 1 => {
                    tracing::warn!(registry = %addr, error = %e, "registry unreachable; trying the standby");
                    tries -= 1;
                }
                r => return r.map_err(|e| (addr, e)),
            }
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(usize, Client<N>)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh client of the current address (not pooled).
    pub fn fresh_client(&self) -> Client<N> {
        let mut client = Client::new(self.net.clone(), self.current_addr());
        if let Some(pin) = &self.pin {
            client = client.with_tls_pin(pin);
        }
        client.with_signer(self.signer.clone())
    }

    /// A connection of the current address, once fewer than `POOL` are in use: an idle one, or
    /// a new one. The permit goes back with [`give`](Self::give).
    async fn take(&self) -> (usize, Client<N>, SemaphorePermit<'_>) {
        // Never closed, so acquiring cannot fail.
        let permit = self
            .in_use
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let index = self.current.load(Ordering::Relaxed) % self.addrs.len();
        let mut idle = self.idle();
        if let Some(pos) = idle.iter().position(|(i, _)| *i == index) {
            let (index, client) = idle.swap_remove(pos);
            return (index, client, permit);
        }
        drop(idle);
        (index, self.fresh_client(), permit)
    }

    fn give<T>(
        &self,
        index: usize,
        client: Client<N>,
        permit: SemaphorePermit<'_>,
        result: &Result<T, ClientError>,
    ) {
        match result {
            Err(e) if transport_error(e) => {
                // The registry is unreachable: the next call tries the other address.
                if self.addrs.len() > 1 {
                    let _ = self.current.compare_exchange(
                        index,
                        (index + 1) % self.addrs.len(),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
            }
            _ => {
                let mut idle = self.idle();
                if idle.len() < POOL {
                    idle.push((index, client));
                }
            }
        }
        // Only now: the next caller finds the connection idle instead of opening one.
        drop(permit);
    }

    fn sign(&self, text: &str) -> String {
        (self.signer)(text)
    }

    /// Sends a raw request; the reply object as JSON.
    async fn raw(&self, request: Value) -> Result<Value, ClientError> {
        let Value::Object(object) = request else {
            return Err(ClientError::Malformed("request"));
        };
        let (i, mut c, permit) = self.take().await;
        let r = c.request(&object).await.map(Value::Object);
        self.give(i, c, permit, &r);
        r
    }

    /// Registers this node.
    pub async fn register(
        &self,
        who: &Registering,
        listen_addr: &str,
    ) -> Result<Registration, ClientError> {
        let hostname = who.hostname.lock().map(|h| h.clone()).unwrap_or_default();
        let (i, mut c, permit) = self.take().await;
        let r = c
            .register(&who.public_key, listen_addr, &who.owner, &hostname)
            .await;
        self.give(i, c, permit, &r);
        let reg = r?;
        self.node_id.store(reg.node_id, Ordering::Relaxed);
        if who.public.load(Ordering::Relaxed) {
            let (i, mut c, permit) = self.take().await;
            let r = c.set_visibility(reg.node_id, true).await;
            self.give(i, c, permit, &r);
            r?;
        }
        Ok(reg)
    }

    /// Heartbeat.
    pub async fn heartbeat(&self, node: u32) -> Result<u64, ClientError> {
        let (i, mut c, permit) = self.take().await;
        let r = c.heartbeat(node).await;
        self.give(i, c, permit, &r);
        r
    }

    /// The endpoint of `node`, as the registry lets us see it.
    pub async fn resolve(&self, node: u32) -> Result<SocketAddr, String> {
        let me = self.node_id.load(Ordering::Relaxed);
        let (i, mut c, permit) = self.take().await;
        let r = c.resolve(me, node).await;
        self.give(i, c, permit, &r);
        let text = r.map_err(|e| e.to_string())?;
        text.parse()
            .map_err(|_| format!("registry gave an unusable endpoint {text:?} for node {node}"))
    }

    /// The Ed25519 key the registry holds for `node`.
    pub async fn key(&self, node: u32) -> crate::crypto::RegistryKey {
        use crate::crypto::RegistryKey;
        let (i, mut c, permit) = self.take().await;
        let r = c.lookup(node).await;
        self.give(i, c, permit, &r);
        match r {
            Ok(o) => o
                .get("public_key")
                .and_then(Value::as_str)
                .and_then(|k| crate::crypto::from_base64::<32>(k, "public_key").ok())
                .map_or(RegistryKey::NotRegistered, RegistryKey::Known),
            Err(ClientError::Registry(_)) => RegistryKey::NotRegistered,
            Err(_) => RegistryKey::Unavailable,
        }
    }

    /// Relayed handshakes waiting for us (polling, for when the push subscription is down).
    pub async fn poll(&self, node: u32) -> Result<Vec<HandshakeEvent>, ClientError> {
        let (i, mut c, permit) = self.take().await;
        let r = c.poll_handshakes(node).await;
        self.give(i, c, permit, &r);
        let polled = r?;
        let mut events: Vec<HandshakeEvent> = polled
            .requests
            .into_iter()
            .map(HandshakeEvent::Request)
            .collect();
        events.extend(polled.responses.into_iter().map(HandshakeEvent::Response));
        Ok(events)
    }

    /// `report_trust(self, peer)`.
    pub async fn report_trust(&self, peer: u32) -> Result<(), ClientError> {
        let me = self.node_id.load(Ordering::Relaxed);
        let (i, mut c, permit) = self.take().await;
        let r = c.report_trust(me, peer).await.map(drop);
        self.give(i, c, permit, &r);
        r
    }

    /// `revoke_trust(self, peer)`.
    pub async fn revoke_trust(&self, peer: u32) -> Result<(), ClientError> {
        let me = self.node_id.load(Ordering::Relaxed);
        let (i, mut c, permit) = self.take().await;
        let r = c.revoke_trust(me, peer).await;
        self.give(i, c, permit, &r);
        r
    }

    /// `request_handshake(self → peer)`.
    pub async fn request_handshake(
        &self,
        peer: u32,
        justification: &str,
    ) -> Result<(), ClientError> {
        let me = self.node_id.load(Ordering::Relaxed);
        let (i, mut c, permit) = self.take().await;
        let r = c.request_handshake(me, peer, justification).await;
        self.give(i, c, permit, &r);
        r
    }

    /// `respond_handshake(self, peer, accept)`.
    pub async fn respond_handshake(&self, peer: u32, accept: bool) -> Result<(), ClientError> {
        let me = self.node_id.load(Ordering::Relaxed);
        let (i, mut c, permit) = self.take().await;
        let r = c.respond_handshake(me, peer, accept).await;
        self.give(i, c, permit, &r);
        r
    }

    /// `deregister`.
    pub async fn deregister(&self) -> Result<Value, ClientError> {
        let me = self.node_id.load(Ordering::Relaxed);
        let sig = self.sign(&format!("deregister:{me}"));
        self.raw(json!({"type":"deregister","node_id":me,"signature":sig}))
            .await
    }

    /// An application's registry operation; the registry's reply verbatim.
    pub async fn op(&self, op: &RegistryOp, who: &Registering) -> Result<Value, String> {
        let me = self.node_id.load(Ordering::Relaxed);
        let (label, result) = match op {
            RegistryOp::ResolveHostname(name) => (
                "resolve_hostname",
                self.raw(json!({"type":"resolve_hostname","hostname":name}))
                    .await,
            ),
            RegistryOp::SetHostname(name) => {
                let sig = self.sign(&format!("set_hostname:{me}"));
                let r = self
                    .raw(
                        json!({"type":"set_hostname","node_id":me,"hostname":name,"signature":sig}),
                    )
                    .await;
                if r.is_ok() {
                    if let Ok(mut h) = who.hostname.lock() {
                        *h = name.clone();
                    }
                }
                ("set_hostname", r)
            }
            RegistryOp::SetVisibility(public) => {
                let sig = self.sign(&format!("set_visibility:{me}"));
                let r = self
                    .raw(json!({"type":"set_visibility","node_id":me,"public":public,"signature":sig}))
                    .await;
                if r.is_ok() {
                    who.public.store(*public, Ordering::Relaxed);
                }
                ("set_visibility", r)
            }
            RegistryOp::Deregister => ("deregister", self.deregister().await),
            RegistryOp::SetTags(tags) => {
                let sig = self.sign(&format!("set_tags:{me}"));
                (
                    "set_tags",
                    self.raw(json!({"type":"set_tags","node_id":me,"tags":tags,"signature":sig}))
                        .await,
                )
            }
            RegistryOp::SetTaskExec(on) => {
                let sig = self.sign(&format!("set_task_exec:{me}"));
                (
                    "set_task_exec",
                    self.raw(
                        json!({"type":"set_task_exec","node_id":me,"enabled":on,"signature":sig}),
                    )
                    .await,
                )
            }
            RegistryOp::GetPoloScore(node) => (
                "get_polo_score",
                self.raw(json!({"type":"get_polo_score","node_id":node}))
                    .await,
            ),
            RegistryOp::UpdatePoloScore(delta) => {
                let sig = self.sign(&format!("update_polo_score:{me}:{delta}"));
                (
                    "update_polo_score",
                    self.raw(json!({"type":"update_polo_score","node_id":me,"delta":delta,"signature":sig}))
                        .await,
                )
            }
        };
        result.map_err(|e| format!("{label}: {e}"))
    }
}

/// Heartbeats every `keepalive`; after three failures in a row (or when the beacon reports a new
/// public endpoint) registers again, against the standby if the primary is unreachable.
/// Relayed handshakes are polled after each heartbeat while the push subscription is down.
pub(super) async fn session<N: Network>(
    link: Arc<RegistryLink<N>>,
    who: Registering,
    mut listen_addr: String,
    mut endpoint: watch::Receiver<Option<SocketAddr>>,
    subscribed: Arc<AtomicBool>,
    keepalive: Duration,
    tx: mpsc::UnboundedSender<Request>,
) {
    let mut failures = 0u32;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let reregister = tokio::select! {
            biased;
            _ = tick.tick() => {
                let node = link.node_id.load(Ordering::Relaxed);
                match link.heartbeat(node).await {
                    Ok(_) => {
                        failures = 0;
                        if !subscribed.load(Ordering::Relaxed) {
                            if let Ok(events) = link.poll(node).await {
                                for e in events {
                                    let _ = tx.send(Request::Relayed(e));
                                }
                            }
                        }
                        false
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(error = %e, failures, "heartbeat failed");
                        failures >= 3
                    }
                }
            }
            changed = endpoint.changed() => {
                if changed.is_err() {
                    return;
                }
                match *endpoint.borrow_and_update() {
                    Some(addr) => {
                        listen_addr = addr.to_string();
                        true
                    }
                    None => false,
                }
            }
        };
        if reregister {
            match link.register(&who, &listen_addr).await {
                Ok(reg) => {
                    failures = 0;
                    tracing::info!(node_id = reg.node_id, registry = %link.current_addr(), "registered");
                    if tx.send(Request::Registered(reg.node_id)).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "re-registration failed"),
            }
        }
    }
}

/// Keeps a push subscription for relayed handshakes open, reconnecting with backoff.
pub(super) async fn subscription<N: Network>(
    link: Arc<RegistryLink<N>>,
    subscribed: Arc<AtomicBool>,
    tx: mpsc::UnboundedSender<Request>,
) {
    let mut pause = Duration::from_millis(500);
    loop {
        let node = link.node_id.load(Ordering::Relaxed);
        match link.fresh_client().subscribe_handshakes(node).await {
            Ok(mut stream) => {
                subscribed.store(true, Ordering::Relaxed);
                pause = Duration::from_millis(500);
                while let Ok(Some(event)) = stream.next_event().await {
                    if tx.send(Request::Relayed(event)).is_err() {
                        return;
                    }
                }
                subscribed.store(false, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(error = %e, "handshake subscription failed"),
        }
        if tx.is_closed() {
            return;
        }
        // Retry pacing, not a wait for an event: polling covers the gap.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::TokioNet;
    use crate::registry::frame;
    use tokio::io::BufReader;

    /// A registry that answers heartbeats, but only once `POOL` requests wait at once (so
    /// calls pile up), and counts the connections it accepted.
    async fn gated_registry() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let waiting = Arc::new(tokio::sync::Barrier::new(POOL));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // The first POOL connections hold their first reply at the barrier.
                let mut first = count.fetch_add(1, Ordering::SeqCst) < POOL;
                let waiting = waiting.clone();
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    while let Ok(Some(_)) = frame::read_frame(&mut stream, frame::MAX_FRAME).await {
                        if std::mem::take(&mut first) {
                            waiting.wait().await;
                        }
                        let reply = frame::encode(json!({"time": 1}).as_object().unwrap());
                        if frame::write_encoded(&mut stream, &reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_calls_at_once_share_the_pool_of_connections() {
        let (addr, accepted) = gated_registry().await;
        let identity = Identity::from_seed(&[7; 32]);
        let link = Arc::new(RegistryLink::new(TokioNet, vec![addr], None, &identity));
        let calls: Vec<_> = (0..40)
            .map(|_| {
                let link = link.clone();
                tokio::spawn(async move { link.heartbeat(1).await })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap(), 1);
        }
        // Without the bound every call that found no idle connection opened one.
        assert_eq!(accepted.load(Ordering::SeqCst), POOL);
    }
}
