//! The IPC connection: one Unix socket, a writer task that owns its write half, and a reader
//! task that demultiplexes everything the daemon sends.
//!
//! Neither task ever waits on the application. The writer takes framed messages from an
//! unbounded queue whose growth is bounded by the callers (each stream has at most one message
//! in flight, requests are small); the reader only appends to per-connection buffers and
//! bounded queues, so one slow consumer cannot stall replies or other streams.

use super::error::{DriverError, Result};
use super::listener::Accepted;
use super::request::{Pending, PendingQueue, Reply, ReplySender};
use super::stream::{lock, ConnSlot, ConnState, DEFAULT_RECV_WINDOW};
use super::Datagram;
use crate::ipc::message::{code, EventError};
use crate::ipc::{Command, Event, FrameDecoder, FrameError};
use crate::wire::SocketAddr;
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, Weak};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

/// Accepted connections queued per listener before new ones are refused (closed).
pub const ACCEPT_QUEUE: usize = 64;
/// Datagrams queued before new ones are dropped (counted in `dropped_datagrams`).
pub const DATAGRAM_QUEUE: usize = 256;

/// The IPC extensions the daemon agreed to (see `docs/IPC.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// Per-connection flow control in both directions.
    pub credit: bool,
    /// Listeners can be closed without disconnecting.
    pub unbind: bool,
    /// Datagrams arrive only for ports this client bound.
    pub bound_datagrams: bool,
    /// Initial receive window per connection (with `credit`).
    pub recv_credit: u32,
    /// Initial send credit per connection (with `credit`).
    pub send_credit: u32,
}

impl Features {
    fn conn_credit(&self) -> Option<(u32, u32)> {
        self.credit.then_some((self.recv_credit, self.send_credit))
    }
}

/// A framed message for the writer task, with an optional notice once it is written.
pub(crate) struct Outgoing {
    frame: Vec<u8>,
    done: Option<oneshot::Sender<()>>,
}

/// Everything the reader task and the handles share.
pub(crate) struct State {
    lost: Option<String>,
    pending: PendingQueue,
    conns: HashMap<u32, ConnSlot>,
    listeners: HashMap<u16, (u64, mpsc::Sender<Accepted>)>,
    next_listener: u64,
    datagrams: Option<mpsc::Sender<Datagram>>,
    dropped_datagrams: u64,
    pub(crate) features: Features,
}

/// The shared half of a driver.
pub(crate) struct Shared {
    state: Mutex<State>,
    tx: mpsc::UnboundedSender<Outgoing>,
}

/// Owns the tasks: when the last handle (driver, stream or listener) goes, the socket closes.
pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) datagrams: tokio::sync::Mutex<mpsc::Receiver<Datagram>>,
    reader: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The reader holds the last other reference to `Shared`; with it gone the writer's
        // queue closes, the writer ends, and the socket is closed.
        self.reader.abort();
    }
}

impl Inner {
    /// Connects and starts the tasks (no Hello yet).
    pub(crate) fn start(socket: tokio::net::UnixStream) -> Arc<Inner> {
        let (rd, wr) = socket.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let (dgram_tx, dgram_rx) = mpsc::channel(DATAGRAM_QUEUE);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                lost: None,
                pending: PendingQueue::default(),
                conns: HashMap::new(),
                listeners: HashMap::new(),
                next_listener: 0,
                datagrams: Some(dgram_tx),
                dropped_datagrams: 0,
                features: Features::default(),
            }),
            tx,
        });
        tokio::spawn(write_loop(Arc::downgrade(&shared), rx, wr));
        let reader = tokio::spawn(read_loop(shared.clone(), rd)).abort_handle();
        Arc::new(Inner {
            shared,
            datagrams: tokio::sync::Mutex::new(dgram_rx),
            reader,
        })
    }
}

impl Shared {
    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Queues a framed message for the socket. If the writer is gone, `done` is dropped, which
    /// its waiter reads as socket loss.
    pub(crate) fn send_frame(&self, frame: Vec<u8>, done: Option<oneshot::Sender<()>>) {
        let _ = self.tx.send(Outgoing { frame, done });
    }

    /// Queues a command that expects no reply.
    pub(crate) fn send_command(&self, cmd: &Command, done: Option<oneshot::Sender<()>>) {
        let mut frame = Vec::new();
        if cmd.encode_framed(&mut frame).is_ok() {
            self.send_frame(frame, done);
        }
    }

    /// Why the socket was lost ("" while it is not).
    pub(crate) fn lost_reason(&self) -> String {
        self.state().lost.clone().unwrap_or_default()
    }

    /// Writes a request and registers its waiter in one step, so the order of waiters is the
    /// order of requests on the socket.
    pub(crate) async fn request(
        &self,
        cmd: &Command,
        reply: u8,
        op: &'static str,
    ) -> Result<Reply> {
        let mut frame = Vec::new();
        cmd.encode_framed(&mut frame).map_err(|e| {
            let FrameError::TooLarge(len) = e;
            DriverError::TooLarge {
                op,
                len,
                max: crate::ipc::MAX_MESSAGE,
            }
        })?;
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.state();
            if let Some(reason) = &state.lost {
                return Err(DriverError::Disconnected(reason.clone()));
            }
            state.pending.push(Pending {
                reply,
                op,
                tx: Some(tx),
            });
            self.send_frame(frame, None);
        }
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(DriverError::Disconnected(self.lost_reason())),
        }
    }

    /// Sends a request whose reply nobody awaits, keeping reply matching in step.
    pub(crate) fn request_detached(&self, cmd: &Command, reply: u8, op: &'static str) {
        let mut state = self.state();
        if state.lost.is_some() {
            return;
        }
        state.pending.push(Pending {
            reply,
            op,
            tx: None,
        });
        self.send_command(cmd, None);
    }

    /// Forgets a connection whose stream was dropped.
    pub(crate) fn forget_conn(&self, id: u32, slot: &ConnSlot) {
        let mut state = self.state();
        if state.conns.get(&id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            state.conns.remove(&id);
        }
    }

    /// Forgets a listener that was closed or dropped.
    pub(crate) fn forget_listener(&self, port: u16, token: u64) {
        let mut state = self.state();
        if state.listeners.get(&port).is_some_and(|(t, _)| *t == token) {
            state.listeners.remove(&port);
        }
    }

    /// Datagrams dropped because the application did not keep up.
    pub(crate) fn dropped_datagrams(&self) -> u64 {
        self.state().dropped_datagrams
    }

    /// Fails everything: the socket is gone.
    fn fail(&self, reason: String) {
        let mut state = self.state();
        if state.lost.is_some() {
            return;
        }
        tracing::debug!(%reason, "daemon IPC socket lost");
        state.lost = Some(reason.clone());
        for pending in state.pending.drain() {
            pending.fail(DriverError::Disconnected(reason.clone()));
        }
        for (_, slot) in state.conns.drain() {
            lock(&slot).fail(
                io::ErrorKind::ConnectionAborted,
                format!("lost the connection to the pilot daemon ({reason})"),
            );
        }
        state.listeners.clear();
        state.datagrams = None;
    }

    /// Handles one message from the daemon.
    fn dispatch(&self, message: &[u8]) {
        let event = match Event::decode(message) {
            Ok(event) => event,
            Err(err) => return self.malformed(err),
        };
        let mut state = self.state();
        match event {
            Event::Recv { conn, data } => {
                let Some(slot) = state.conns.get(&conn) else {
                    return; // a connection this driver has closed or never owned
                };
                if !lock(slot).push(data) {
                    state.conns.remove(&conn);
                    self.send_command(&Command::Close { conn }, None);
                }
            }
            Event::CloseOk { conn } => {
                if let Some(slot) = state.conns.get(&conn) {
                    lock(slot).close();
                }
            }
            Event::SendCredit { conn, bytes } => {
                if let Some(slot) = state.conns.get(&conn) {
                    lock(slot).add_send_credit(bytes);
                }
            }
            Event::Accept {
                local_port,
                conn,
                remote,
                remote_port,
            } => self.accept(
                &mut state,
                local_port,
                conn,
                SocketAddr::new(remote, remote_port),
            ),
            Event::RecvFrom {
                src,
                src_port,
                dst_port,
                data,
            } => {
                let datagram = Datagram {
                    src: SocketAddr::new(src, src_port),
                    dst_port,
                    data,
                };
                let delivered = state
                    .datagrams
                    .as_ref()
                    .is_some_and(|tx| tx.try_send(datagram).is_ok());
                if !delivered {
                    state.dropped_datagrams += 1;
                }
            }
            Event::Error { message, .. } => self.error(&mut state, message),
            Event::DialOk { conn } => {
                let Some(pending) = state.pending.take_for(code::DIAL_OK) else {
                    tracing::debug!(conn, "DialOK nobody waits for; closing it");
                    return self.send_command(&Command::Close { conn }, None);
                };
                let slot = self.new_conn(&state, conn);
                state.conns.insert(conn, slot.clone());
                if !deliver(pending.tx, Ok(Reply::Dialed(conn, slot))) {
                    // The dialler gave up (timeout): don't leave the connection open.
                    state.conns.remove(&conn);
                    self.send_command(&Command::Close { conn }, None);
                }
            }
            Event::BindOk { port } => {
                let Some(pending) = state.pending.take_for(code::BIND_OK) else {
                    return;
                };
                let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
                state.next_listener += 1;
                let token = state.next_listener;
                state.listeners.insert(port, (token, tx));
                if !deliver(pending.tx, Ok(Reply::Bound(port, rx, token))) {
                    state.listeners.remove(&port);
                    if state.features.unbind {
                        drop(state);
                        self.request_detached(&Command::Unbind { port }, code::UNBIND_OK, "unbind");
                    }
                }
            }
            event @ (Event::UnbindOk { .. } | Event::DisconnectOk { .. } | Event::Json { .. }) => {
                let code = match &event {
                    Event::Json { code, .. } => *code,
                    Event::DisconnectOk { .. } => code::DISCONNECT_OK,
                    _ => code::UNBIND_OK,
                };
                if let Some(pending) = state.pending.take_for(code) {
                    deliver(pending.tx, Ok(Reply::Event(event)));
                } else {
                    tracing::debug!(code, "reply nobody waits for");
                }
            }
        }
    }

    /// State for a new connection. A daemon that starts connections with no receive credit
    /// gets our default window granted up front, or it could never send.
    fn new_conn(&self, state: &State, conn: u32) -> ConnSlot {
        let credit = state.features.conn_credit();
        if let Some((0, _)) = credit {
            let bytes = DEFAULT_RECV_WINDOW;
            self.send_command(&Command::RecvCredit { conn, bytes }, None);
        }
        ConnState::new_slot(conn, credit)
    }

    fn accept(&self, state: &mut State, port: u16, conn: u32, remote: SocketAddr) {
        let slot = self.new_conn(state, conn);
        let accepted = Accepted {
            conn,
            remote,
            port,
            slot: slot.clone(),
        };
        let queued = state
            .listeners
            .get(&port)
            .is_some_and(|(_, tx)| tx.try_send(accepted).is_ok());
        if queued {
            state.conns.insert(conn, slot);
        } else {
            // Nobody listens (closed listener on a daemon without Unbind) or the queue is full:
            // refuse the connection rather than leave it open and unread.
            tracing::debug!(port, conn, "no room for an accepted connection; closing it");
            self.send_command(&Command::Close { conn }, None);
        }
    }

    /// An Error: either the answer to the oldest request, or an uncorrelated failure of an
    /// earlier Send/SendTo (the reference reports those asynchronously, `spec` §14 Q19).
    fn error(&self, state: &mut State, message: String) {
        if let Some(conn) = send_error_conn(&message) {
            if let Some(slot) = state.conns.remove(&conn) {
                lock(&slot).fail(
                    io::ErrorKind::BrokenPipe,
                    format!("connection {conn}: daemon: {message}"),
                );
            }
            return;
        }
        if message.starts_with("send: ") || message.starts_with("sendto: ") {
            tracing::debug!(%message, "asynchronous send error from the daemon");
            return;
        }
        match state.pending.take_oldest() {
            Some(pending) => {
                let op = pending.op;
                pending.fail(DriverError::Daemon { op, message });
            }
            None => tracing::debug!(%message, "daemon error with no request outstanding"),
        }
    }

    /// A message the codec could not decode: fail the request it answers, if any.
    fn malformed(&self, err: EventError) {
        let mut state = self.state();
        let pending = if err.code == code::ERROR {
            state.pending.take_oldest()
        } else {
            state.pending.take_for(err.code)
        };
        match pending {
            Some(pending) => {
                let op = pending.op;
                pending.fail(DriverError::Malformed {
                    op,
                    detail: err.to_string(),
                });
            }
            None => tracing::debug!(%err, "ignoring a daemon message"),
        }
    }
}

/// Sends a reply to its waiter; false when nobody waits any more.
fn deliver(tx: Option<ReplySender>, reply: Result<Reply>) -> bool {
    tx.is_some_and(|tx| tx.send(reply).is_ok())
}

/// The connection named by the reference's `connection N not found` send error.
fn send_error_conn(message: &str) -> Option<u32> {
    message
        .strip_prefix("connection ")?
        .strip_suffix(" not found")?
        .parse()
        .ok()
}

async fn read_loop(shared: Arc<Shared>, mut rd: OwnedReadHalf) {
    let mut decoder = FrameDecoder::new();
    let reason = 'socket: loop {
        let n = match rd.read(decoder.spare(READ_BUFFER)).await {
            Ok(0) => break "the daemon closed the socket".to_string(),
            Ok(n) => n,
            Err(e) => break format!("reading the socket failed: {e}"),
        };
        decoder.commit(n);
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => shared.dispatch(message),
                Ok(None) => break,
                Err(e) => break 'socket format!("the daemon sent an invalid message: {e}"),
            }
        }
    };
    shared.fail(reason);
}

/// Bytes read from the socket at a time (straight into the frame decoder).
const READ_BUFFER: usize = 256 << 10;

/// Bytes of queued messages the writer joins into one socket write.
const WRITE_BATCH: usize = 1 << 20;

async fn write_loop(
    shared: Weak<Shared>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    mut wr: OwnedWriteHalf,
) {
    let mut batch: Vec<u8> = Vec::new();
    let mut done: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        // Whatever else is already queued goes out in the same write: one system call for a
        // run of small messages instead of one each.
        let written = match rx.try_recv() {
            Err(_) => {
                done.extend(first.done);
                wr.write_all(&first.frame).await
            }
            Ok(second) => {
                batch.clear();
                for message in [first, second] {
                    batch.extend_from_slice(&message.frame);
                    done.extend(message.done);
                }
                while batch.len() < WRITE_BATCH {
                    let Ok(message) = rx.try_recv() else { break };
                    batch.extend_from_slice(&message.frame);
                    done.extend(message.done);
                }
                wr.write_all(&batch).await
            }
        };
        if let Err(e) = written {
            fail(&shared, e);
            return;
        }
        for d in done.drain(..) {
            let _ = d.send(());
        }
    }
}

fn fail(shared: &Weak<Shared>, e: io::Error) {
    if let Some(shared) = shared.upgrade() {
        shared.fail(format!("writing the socket failed: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_errors_name_their_connection() {
        assert_eq!(send_error_conn("connection 12 not found"), Some(12));
        assert_eq!(send_error_conn("connection refused"), None);
        assert_eq!(send_error_conn("dial: timeout"), None);
    }
}
