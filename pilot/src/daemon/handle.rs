//! `DaemonHandle`: the typed in-process API of a running daemon. The IPC server, the built-in
//! services, tests and simulator scenarios all drive the daemon through it.

use super::types::{ClientEvent, ClientId, ClientOptions};
use crate::ipc::HandshakeCommand;
use crate::registry::client::HandshakeEvent;
use crate::services::trust::HandshakeMessage;
use crate::wire::Addr;
use serde_json::Value;
use std::net::SocketAddr;
use tokio::sync::{mpsc, oneshot};

/// A registry operation an application asks for (IPC 0x11-0x1D).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryOp {
    /// Hostname to node.
    ResolveHostname(String),
    /// Set or clear the hostname.
    SetHostname(String),
    /// Public or private.
    SetVisibility(bool),
    /// Leave the registry (the daemon keeps running and re-registers later).
    Deregister,
    /// Tags (a JSON array of strings).
    SetTags(Vec<String>),
    /// Task execution flag.
    SetTaskExec(bool),
    /// A node's polo score (`get_polo_score`).
    GetPoloScore(u32),
    /// Adds a delta to this node's own polo score (`update_polo_score`, signed).
    UpdatePoloScore(i64),
}

/// Requests to the daemon task.
#[derive(Debug)]
pub(crate) enum Request {
    Open {
        options: ClientOptions,
        events: mpsc::UnboundedSender<ClientEvent>,
        reply: oneshot::Sender<ClientId>,
    },
    CloseClient(ClientId),
    Options {
        client: ClientId,
        options: ClientOptions,
    },
    Bind {
        client: ClientId,
        port: u16,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Unbind {
        client: ClientId,
        port: u16,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Disconnect {
        conn: u32,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Dial {
        client: ClientId,
        addr: Addr,
        port: u16,
        reply: oneshot::Sender<Result<u32, String>>,
    },
    Send {
        client: ClientId,
        conn: u32,
        data: Vec<u8>,
    },
    Grant {
        client: ClientId,
        conn: u32,
        bytes: u32,
    },
    Close {
        client: ClientId,
        conn: u32,
    },
    SendTo {
        client: ClientId,
        addr: Addr,
        port: u16,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Info(oneshot::Sender<Value>),
    Handshake {
        cmd: HandshakeCommand,
        reply: oneshot::Sender<Result<Value, String>>,
    },
    Registry {
        op: RegistryOp,
        reply: oneshot::Sender<Result<Value, String>>,
    },
    /// A verified port-444 message.
    Verified {
        peer: u32,
        message: Box<HandshakeMessage>,
        key: [u8; 32],
    },
    /// A handshake relayed by the registry.
    Relayed(HandshakeEvent),
    Resolved {
        node: u32,
        result: Result<SocketAddr, String>,
    },
    RegistryKey {
        node: u32,
        key: crate::crypto::RegistryKey,
    },
    Registered(u32),
    Shutdown(oneshot::Sender<()>),
}

/// The daemon stopped; nothing can be done any more.
pub const STOPPED: &str = "daemon stopped";

/// A handle to a running daemon. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DaemonHandle {
    pub(crate) tx: mpsc::UnboundedSender<Request>,
    node_id: u32,
    trust: crate::net::watch::Receiver<u64>,
    webhooks: std::sync::Arc<crate::services::webhook::Webhooks>,
}

impl DaemonHandle {
    pub(crate) fn new(
        tx: mpsc::UnboundedSender<Request>,
        node_id: u32,
        trust: crate::net::watch::Receiver<u64>,
        webhooks: std::sync::Arc<crate::services::webhook::Webhooks>,
    ) -> Self {
        DaemonHandle {
            tx,
            node_id,
            trust,
            webhooks,
        }
    }

    /// The daemon's webhook: where its events are posted.
    pub fn webhooks(&self) -> &crate::services::webhook::Webhooks {
        &self.webhooks
    }

    /// A counter that moves whenever the trust book changes: wait on it instead of polling.
    pub fn trust_changes(&self) -> crate::net::watch::Receiver<u64> {
        self.trust.clone()
    }

    /// The node ID the daemon registered with.
    pub fn node_id(&self) -> u32 {
        self.node_id
    }

    /// This node's virtual address.
    pub fn address(&self) -> Addr {
        Addr::backbone(self.node_id)
    }

    /// Closes connection `conn`, whichever client owns it.
    pub async fn disconnect(&self, conn: u32) -> Result<(), String> {
        self.ask(|reply| Request::Disconnect { conn, reply })
            .await
            .unwrap_or_else(|| Err(STOPPED.into()))
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).ok()?;
        rx.await.ok()
    }

    /// A new client session with its own ports, connections and events.
    pub async fn session(&self, options: ClientOptions) -> Result<Session, String> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let id = self
            .ask(|reply| Request::Open {
                options,
                events: events_tx,
                reply,
            })
            .await
            .ok_or(STOPPED)?;
        Ok(Session {
            requests: SessionRequests {
                id,
                tx: self.tx.clone(),
            },
            events,
        })
    }

    /// The Info document (`spec/services.md` §4.3).
    pub async fn info(&self) -> Result<Value, String> {
        self.ask(Request::Info).await.ok_or_else(|| STOPPED.into())
    }

    /// A trust operation (`spec/services.md` §4.4); the JSON reply or the error text.
    pub async fn handshake(&self, cmd: HandshakeCommand) -> Result<Value, String> {
        self.ask(|reply| Request::Handshake { cmd, reply })
            .await
            .unwrap_or_else(|| Err(STOPPED.into()))
    }

    /// A registry operation; the registry's JSON reply or the error text.
    pub async fn registry(&self, op: RegistryOp) -> Result<Value, String> {
        let deregister = matches!(op, RegistryOp::Deregister);
        let result = self
            .ask(|reply| Request::Registry { op, reply })
            .await
            .unwrap_or_else(|| Err(STOPPED.into()));
        if deregister && result.is_ok() {
            self.webhooks.emit("node.deregistered", Value::Null);
        }
        result
    }

    /// Graceful shutdown: FIN to every connection, deregistration; returns when done.
    pub async fn shutdown(&self) {
        let _ = self.ask(Request::Shutdown).await;
    }

    pub(crate) fn send_request(&self, request: Request) {
        let _ = self.tx.send(request);
    }
}

/// One client of the daemon: ports it bound, connections it owns, and their events. Dropping
/// it closes everything it owns.
///
/// A session is its [`SessionRequests`] (which it dereferences to, so `session.listen(..)`
/// works) plus the stream of its events, which only the session can read.
#[derive(Debug)]
pub struct Session {
    requests: SessionRequests,
    events: mpsc::UnboundedReceiver<ClientEvent>,
}

impl std::ops::Deref for Session {
    type Target = SessionRequests;

    fn deref(&self) -> &SessionRequests {
        &self.requests
    }
}

impl Session {
    /// A handle for requests on behalf of this session, to move into other tasks.
    pub fn requests(&self) -> SessionRequests {
        self.requests.clone()
    }

    /// The next event; `None` once the daemon stopped.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_next_event(&mut self) -> Option<ClientEvent> {
        self.events.try_recv().ok()
    }
}

/// Requests on behalf of a session that can be moved into other tasks (the session itself
/// stays with whoever reads its events).
#[derive(Clone, Debug)]
pub struct SessionRequests {
    id: ClientId,
    tx: mpsc::UnboundedSender<Request>,
}

impl SessionRequests {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).ok()?;
        rx.await.ok()
    }

    /// Listens on `port`; connections arrive as [`ClientEvent::Accept`].
    pub async fn listen(&self, port: u16) -> Result<(), String> {
        let client = self.id;
        self.ask(|reply| Request::Bind {
            client,
            port,
            reply,
        })
        .await
        .unwrap_or_else(|| Err(STOPPED.into()))
    }

    /// Stops listening on `port`.
    pub async fn unbind(&self, port: u16) -> Result<(), String> {
        let client = self.id;
        self.ask(|reply| Request::Unbind {
            client,
            port,
            reply,
        })
        .await
        .unwrap_or_else(|| Err(STOPPED.into()))
    }

    /// Opens a stream to `addr:port`; the connection ID once it is established.
    pub async fn dial(&self, addr: Addr, port: u16) -> Result<u32, String> {
        self.dial_later(addr, port)
            .await
            .unwrap_or_else(|_| Err(STOPPED.into()))
    }

    /// Starts a dial now; the receiver yields its result (for callers that keep serving other
    /// events meanwhile).
    pub fn dial_later(&self, addr: Addr, port: u16) -> oneshot::Receiver<Result<u32, String>> {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Request::Dial {
            client: self.id,
            addr,
            port,
            reply,
        });
        rx
    }

    /// Changes how this session is served.
    pub fn set_options(&self, options: ClientOptions) {
        let _ = self.tx.send(Request::Options {
            client: self.id,
            options,
        });
    }

    /// Queues `data` on `conn`; [`ClientEvent::SendCredit`] reports when it entered the stream.
    pub fn send(&self, conn: u32, data: Vec<u8>) {
        let _ = self.tx.send(Request::Send {
            client: self.id,
            conn,
            data,
        });
    }

    /// Accepts `bytes` more of Recv data on `conn`.
    pub fn grant(&self, conn: u32, bytes: u32) {
        let _ = self.tx.send(Request::Grant {
            client: self.id,
            conn,
            bytes,
        });
    }

    /// Closes `conn` after its queued data.
    pub fn close(&self, conn: u32) {
        let _ = self.tx.send(Request::Close {
            client: self.id,
            conn,
        });
    }

    /// Sends a datagram.
    pub async fn send_to(&self, addr: Addr, port: u16, data: Vec<u8>) -> Result<(), String> {
        let client = self.id;
        self.ask(|reply| Request::SendTo {
            client,
            addr,
            port,
            data,
            reply,
        })
        .await
        .unwrap_or_else(|| Err(STOPPED.into()))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self
            .requests
            .tx
            .send(Request::CloseClient(self.requests.id));
    }
}
