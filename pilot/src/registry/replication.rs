//! Hot-standby replication (`spec/registry.md` §11), without the reference's quirks.
//!
//! Message set: the standby sends `subscribe_replication` with the token; the primary answers
//! with `replication_snapshot` (the whole state, the §10.3 object embedded) and then keeps the
//! standby current, sending `{"type":"heartbeat"}` every 15 s. Differences:
//!
//! - The primary never times out a quiet standby: the link does not churn.
//! - A standby of ours subscribes with `"changes": true` and then receives each committed
//!   batch as `replication_changes` (`seq`, `changes`), so a change costs its own size on the
//!   link, not the state's. A standby that does not ask (the Go reference) receives a
//!   fresh `replication_snapshot` after changes instead, at most once per second.
//! - Snapshots carry every field (tags, polo score, task_exec, key and owner indexes, trust
//!   wishes; Q-13), and the replication link accepts frames up to [`MAX_REPLICATION_FRAME`]
//!   instead of 1 MiB, on both ends of ours.
//! - A standby that loses the link reconnects every 3 s and starts over from a fresh snapshot,
//!   so a healed partition catches up. [`super::server::ServerHandle::promote`] turns a standby
//!   into a primary in place.

use super::frame::{self, Object};
use super::persist::snapshot::Snapshot;
use super::server::{heartbeat_frame, stopped, Shared};
use super::Change;
use crate::net::watch;
use crate::net::{Network, WallClock};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// Largest frame accepted on the replication link (a snapshot of a very large network).
pub const MAX_REPLICATION_FRAME: usize = 1 << 30;
/// Heartbeat period on the link.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// The standby gives up on a silent link after this long (three heartbeats).
pub const STANDBY_READ_TIMEOUT: Duration = Duration::from_secs(45);
/// Delay before a standby reconnects.
pub const RECONNECT_DELAY: Duration = Duration::from_secs(3);
/// Batches a slow subscriber may lag behind before it is dropped (it then resubscribes and
/// gets a fresh snapshot, instead of holding up the primary: Q-11).
pub const SUBSCRIBER_BACKLOG: usize = 4096;

type Batch = (u64, Arc<Vec<Change>>);

/// The primary's list of subscribers and the standby's "keep following" switch.
pub struct ReplicationHub {
    subscribers: Mutex<Vec<mpsc::Sender<Batch>>>,
    following: watch::Sender<bool>,
}

impl Default for ReplicationHub {
    fn default() -> Self {
        ReplicationHub {
            subscribers: Mutex::new(Vec::new()),
            following: watch::Sender::new(true),
        }
    }
}

impl ReplicationHub {
    /// Sends a durable batch (ending at `ticket`) to every subscriber.
    pub(crate) fn publish(&self, ticket: u64, changes: &[Change]) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        if subs.is_empty() || changes.is_empty() {
            return;
        }
        let batch = Arc::new(changes.to_vec());
        subs.retain(|tx| tx.try_send((ticket, batch.clone())).is_ok());
    }

    fn subscribe(&self) -> mpsc::Receiver<Batch> {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BACKLOG);
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        rx
    }

    /// Stops the standby's follower (promotion).
    pub(crate) fn stop_following(&self) {
        self.following.send_replace(false);
    }
}

fn error_frame(text: &str) -> Object {
    let mut o = Object::new();
    o.insert("type".into(), json!("error"));
    o.insert("error".into(), json!(text));
    o
}

fn snapshot_frame(snapshot: &Snapshot) -> Object {
    let mut o = Object::new();
    o.insert("type".into(), json!("replication_snapshot"));
    o.insert(
        "snapshot".into(),
        serde_json::to_value(snapshot).unwrap_or(Value::Null),
    );
    o
}

/// Serves a connection whose first request was `subscribe_replication`.
pub(crate) async fn serve_subscriber<T, C>(shared: &Arc<Shared<C>>, stream: T, request: &Object)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: WallClock,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let token = request.get("token").and_then(Value::as_str).unwrap_or("");
    let deltas = request.get("changes").and_then(Value::as_bool) == Some(true);
    // Take the snapshot and subscribe under the lock: batches after `ticket` are exactly the
    // ones the snapshot does not contain.
    let admitted = {
        let locked = shared.lock();
        locked.reg.check_replication_token(token).map(|()| {
            let snapshot = Snapshot::from_data(locked.reg.data(), 0);
            (snapshot, locked.ticket, shared.hub.subscribe())
        })
    };
    let (snapshot, ticket, mut rx) = match admitted {
        Ok(x) => x,
        Err(e) => {
            let _ = frame::write_encoded(&mut writer, &frame::encode(&error_frame(e))).await;
            return;
        }
    };
    if !shared.durable_upto(ticket).await {
        return;
    }
    if write(&mut writer, &snapshot_frame(&snapshot))
        .await
        .is_err()
    {
        return;
    }
    let mut shutdown = shared.shutdown_signal();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    let mut resend_snapshot = false;
    let mut coalesce = tokio::time::interval(Duration::from_secs(1));
    let mut probe = [0u8; 1];
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            batch = rx.recv() => {
                let Some((seq, changes)) = batch else { return };
                if seq <= ticket {
                    continue;
                }
                if deltas {
                    let mut o = Object::new();
                    o.insert("type".into(), json!("replication_changes"));
                    o.insert("seq".into(), json!(seq));
                    o.insert("changes".into(), serde_json::to_value(&*changes).unwrap_or(Value::Null));
                    if write(&mut writer, &o).await.is_err() {
                        return;
                    }
                } else {
                    resend_snapshot = true;
                }
            }
            _ = coalesce.tick(), if resend_snapshot => {
                resend_snapshot = false;
                let snapshot = Snapshot::from_data(shared.lock().reg.data(), 0);
                if write(&mut writer, &snapshot_frame(&snapshot)).await.is_err() {
                    return;
                }
            }
            _ = heartbeat.tick() => {
                if write(&mut writer, &heartbeat_frame()).await.is_err() {
                    return;
                }
            }
            // The standby never speaks; only its EOF (or an error) ends the link. No read
            // deadline.
            r = tokio::io::AsyncReadExt::read(&mut reader, &mut probe) => {
                if !matches!(r, Ok(n) if n > 0) {
                    return;
                }
            }
        }
    }
}

async fn write<W: AsyncWrite + Unpin>(writer: &mut W, o: &Object) -> std::io::Result<()> {
    tokio::time::timeout(
        Duration::from_secs(10),
        frame::write_encoded(writer, &frame::encode(o)),
    )
    .await
    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

async fn stopped_following(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|f| !*f).await;
}

/// Starts following `primary` (standby side).
pub(crate) fn follow<N: Network, C: WallClock>(
    net: N,
    shared: Arc<Shared<C>>,
    primary: SocketAddr,
    token: String,
) {
    tokio::spawn(async move {
        let mut following = shared.hub.following.subscribe();
        let mut shutdown = shared.shutdown_signal();
        loop {
            tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => return,
                _ = stopped_following(&mut following) => return,
                r = session(&net, &shared, primary, &token) => {
                    if let Err(e) = r {
                        tracing::info!(%primary, error = %e, "replication link down; reconnecting");
                    }
                }
            }
            tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => return,
                _ = stopped_following(&mut following) => return,
                _ = tokio::time::sleep(shared.cfg.reconnect_delay) => {}
            }
        }
    });
}

async fn session<N: Network, C: WallClock>(
    net: &N,
    shared: &Arc<Shared<C>>,
    primary: SocketAddr,
    token: &str,
) -> Result<(), String> {
    let pin = shared.cfg.primary_tls_pin.as_deref();
    let mut stream =
        tokio::time::timeout(Duration::from_secs(10), frame::connect(net, primary, pin))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
    let mut hello = Object::new();
    hello.insert("type".into(), json!("subscribe_replication"));
    hello.insert("token".into(), json!(token));
    hello.insert("changes".into(), json!(true));
    write(&mut stream, &hello)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let next = tokio::time::timeout(
            STANDBY_READ_TIMEOUT,
            frame::read_frame(&mut stream, MAX_REPLICATION_FRAME),
        )
        .await
        .map_err(|_| "primary silent for 45 s".to_string())?
        .map_err(|e| e.to_string())?;
        let Some(obj) = next else {
            return Err("primary closed the link".into());
        };
        match obj.get("type").and_then(Value::as_str) {
            Some("replication_snapshot") => {
                let snapshot: Snapshot = obj
                    .get("snapshot")
                    .cloned()
                    .ok_or("snapshot missing")
                    .and_then(|v| serde_json::from_value(v).map_err(|_| "snapshot malformed"))?;
                let now = shared.now_ms();
                let data = snapshot.to_data(now).map_err(|e| e.to_string())?;
                let mut locked = shared.lock();
                locked.reg.replace_data(data, now);
                shared.submit(
                    &mut locked,
                    vec![Change::Reset(Box::new(snapshot))],
                    Vec::new(),
                );
            }
            Some("replication_changes") => {
                let changes: Vec<Change> = obj
                    .get("changes")
                    .cloned()
                    .map(serde_json::from_value)
                    .ok_or("changes missing")?
                    .map_err(|e| format!("changes malformed: {e}"))?;
                let now = shared.now_ms();
                let mut locked = shared.lock();
                locked.reg.apply_replicated(&changes, now);
                shared.submit(&mut locked, changes, Vec::new());
            }
            Some("error") => {
                return Err(format!(
                    "primary refused: {}",
                    obj.get("error").and_then(Value::as_str).unwrap_or("")
                ))
            }
            // Heartbeats and unknown frames only prove the link is alive.
            _ => {}
        }
    }
}
