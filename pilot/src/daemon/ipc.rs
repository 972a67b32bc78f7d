//! The IPC server: the daemon's Unix socket (`spec/services.md` §4, `docs/IPC.md`).
//!
//! One task per client, each a [`Session`] of the daemon. Replies go out in request order
//! (clients match them by code, and an Error belongs to the oldest request), pushed events as
//! they come. A slow client stalls only itself:
//!
//! - with the `credit` extension the daemon pushes only the receive window the client granted,
//!   and grants send credit as the client's data enters the stream;
//! - without it (clients written for the reference daemon) the session grants receive credit
//!   back as it writes Recv data to the socket, and stops reading the client's socket while
//!   more than [`REFERENCE_SEND_QUEUE`] bytes of its Sends wait for the stream.
//!
//! Large writes never drop a client: a Send up to the 1 MiB message cap is queued and fed into
//! the stream as it drains.

use super::handle::{DaemonHandle, RegistryOp, Session, STOPPED};
use super::types::{ClientEvent, ClientOptions};
use crate::ipc::frame::encode_message;
use crate::ipc::message::code;
use crate::ipc::{Command, Event, FrameDecoder};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// Receive window per connection for clients without the credit extension.
pub const REFERENCE_RECV_WINDOW: u32 = 256 << 10;
/// Send bytes a client without credits may have queued before its socket is no longer read.
pub const REFERENCE_SEND_QUEUE: usize = 4 << 20;
/// The receive window granted per connection in HelloOK.
pub const HELLO_RECV_CREDIT: u32 = 1 << 20;
/// The send credit granted per connection in HelloOK.
pub const HELLO_SEND_CREDIT: u32 = 1 << 20;
/// Bytes read from a client's socket at a time.
const READ_BUFFER: usize = 256 << 10;
/// Largest run of one connection's Sends joined into one request to the daemon.
const MERGED_SEND: usize = 1 << 20;

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another daemon answers on the path.
    #[error("another daemon is already listening on {0}; stop it first (pilotctl daemon stop) or choose another --socket")]
    InUse(PathBuf),
    /// The path exists and is not a socket.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// Something else.
    #[error("IPC socket {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Binds the IPC socket at `path`: the directory is created 0700 if missing, a stale socket
/// file is removed, a live daemon on the path is an error, and the socket is made 0600.
pub async fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    let io_err = |source| SocketError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io_err)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err)?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(SocketError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(io_err)?;
        }
        Ok(_) => return Err(SocketError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    Ok(listener)
}

/// Serves clients on `listener` until the daemon stops.
pub async fn serve(listener: UnixListener, handle: DaemonHandle) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let handle = handle.clone();
                tokio::spawn(async move {
                    if let Err(e) = client(stream, handle).await {
                        tracing::debug!(error = %e, "IPC client ended");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "IPC accept"),
        }
    }
}

type Reply = Pin<Box<dyn Future<Output = Option<Event>> + Send>>;

fn ready(event: Event) -> Reply {
    Box::pin(std::future::ready(Some(event)))
}

fn json_reply(code: u8, value: &Value) -> Event {
    Event::Json {
        code,
        json: serde_json::to_vec(value).unwrap_or_default(),
    }
}

fn registry_reply(handle: &DaemonHandle, op: RegistryOp, code: u8) -> Reply {
    let handle = handle.clone();
    Box::pin(async move {
        Some(match handle.registry(op).await {
            Ok(v) => json_reply(code, &v),
            Err(e) => Event::error(e),
        })
    })
}

struct State {
    handle: DaemonHandle,
    credit: bool,
    /// Without credits: bytes sent but not yet taken by the stream.
    queued_sends: usize,
    out: Vec<u8>,
    /// Without credits: receive credit to give back once `out` is written.
    regrant: Vec<(u32, u32)>,
}

async fn client(stream: UnixStream, handle: DaemonHandle) -> io::Result<()> {
    let (rd, wr) = stream.into_split();
    serve_client(rd, wr, handle).await
}

/// Serves one client whose messages arrive on `rd` and whose replies and events go to `wr`,
/// until it closes `rd` or the daemon stops.
///
/// A client that stops reading (a failed write: it closed its socket, or shut down its read
/// side) is still read to the end: a program may send its last Sends and a Close and exit
/// without waiting for the replies, and that data must still reach the peer.
pub async fn serve_client<R, W>(mut rd: R, mut wr: W, handle: DaemonHandle) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let session = handle
        .session(ClientOptions {
            recv_credit: REFERENCE_RECV_WINDOW,
            bound_datagrams: false,
        })
        .await
        .map_err(io::Error::other)?;
    let mut session = session;
    let mut replies: VecDeque<Reply> = VecDeque::new();
    let mut state = State {
        handle,
        credit: false,
        queued_sends: 0,
        out: Vec::with_capacity(1 << 16),
        regrant: Vec::new(),
    };
    // The client no longer reads: what the daemon would tell it is dropped.
    let mut deaf = false;
    let mut decoder = FrameDecoder::new();
    loop {
        let may_read = state.credit || state.queued_sends < REFERENCE_SEND_QUEUE;
        tokio::select! {
            biased;
            n = rd.read(decoder.spare(READ_BUFFER)), if may_read => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                decoder.commit(n);
                // Consecutive Sends on one connection reach the daemon as one: a client
                // writing 4 KiB at a time costs one request per read, not one per message.
                let mut merged: Option<(u32, Vec<u8>)> = None;
                loop {
                    match decoder.next_message() {
                        Ok(Some(message)) => {
                            let Some((conn, data)) = send_payload(message) else {
                                if let Some((conn, data)) = merged.take() {
                                    state.send(&session, conn, data);
                                }
                                state.command(&session, &mut replies, message);
                                continue;
                            };
                            match &mut merged {
                                Some((c, queued)) if *c == conn && queued.len() + data.len() <= MERGED_SEND => {
                                    queued.extend_from_slice(data);
                                }
                                _ => {
                                    if let Some((conn, data)) = merged.take() {
                                        state.send(&session, conn, data);
                                    }
                                    let mut queued = Vec::with_capacity(data.len().max(READ_BUFFER));
                                    queued.extend_from_slice(data);
                                    merged = Some((conn, queued));
                                }
                            }
                        }
                        Ok(None) => {
                            if let Some((conn, data)) = merged.take() {
                                state.send(&session, conn, data);
                            }
                            break;
                        }
                        Err(e) => {
                            // Spec §4.1: an oversized length ends the client.
                            tracing::info!(error = %e, "IPC client sent an invalid frame; dropping it");
                            return Ok(());
                        }
                    }
                }
            }
            event = session.next_event() => {
                let Some(event) = event else { return Ok(()) };
                state.event(event);
                while let Some(event) = session.try_next_event() {
                    state.event(event);
                    if state.out.len() > 1 << 20 {
                        break;
                    }
                }
            }
            reply = async { replies.front_mut().expect("guarded").await }, if !replies.is_empty() => {
                replies.pop_front();
                if let Some(event) = reply {
                    encode(&event, &mut state.out);
                }
            }
        }
        // Replies that are already there go out in the same write.
        while let Some(front) = replies.front_mut() {
            match futures_now(front) {
                Some(reply) => {
                    replies.pop_front();
                    if let Some(event) = reply {
                        encode(&event, &mut state.out);
                    }
                }
                None => break,
            }
        }
        if !state.out.is_empty() {
            if !deaf {
                if let Err(e) = wr.write_all(&state.out).await {
                    tracing::debug!(error = %e, "IPC client stopped reading; reading its last messages");
                    deaf = true;
                }
            }
            state.out.clear();
            for (conn, bytes) in state.regrant.drain(..) {
                session.grant(conn, bytes);
            }
        }
    }
}

/// Polls a reply once without waiting.
fn futures_now(reply: &mut Reply) -> Option<Option<Event>> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match reply.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

fn encode(event: &Event, out: &mut Vec<u8>) {
    // Recv is the bulk of the traffic: framed straight from the data, without a copy.
    if let Event::Recv { conn, data } = event {
        let _ = encode_message(code::RECV, &[&conn.to_be_bytes(), data], out);
        return;
    }
    if let Err(e) = event.encode_framed(out) {
        tracing::warn!(error = %e, "IPC event not sent");
    }
}

impl State {
    fn event(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Accept { port, conn, remote } => encode(
                &Event::Accept {
                    local_port: port,
                    conn,
                    remote: remote.addr,
                    remote_port: remote.port,
                },
                &mut self.out,
            ),
            ClientEvent::Recv { conn, data } => {
                let _ = encode_message(code::RECV, &[&conn.to_be_bytes(), &data], &mut self.out);
                if !self.credit {
                    self.regrant.push((conn, data.len() as u32));
                }
            }
            ClientEvent::Closed { conn } => encode(&Event::CloseOk { conn }, &mut self.out),
            ClientEvent::SendCredit { conn, bytes } => {
                if self.credit {
                    encode(&Event::SendCredit { conn, bytes }, &mut self.out);
                } else {
                    self.queued_sends = self.queued_sends.saturating_sub(bytes as usize);
                }
            }
            ClientEvent::Datagram {
                src,
                dst_port,
                data,
            } => encode(
                &Event::RecvFrom {
                    src: src.addr,
                    src_port: src.port,
                    dst_port,
                    data,
                },
                &mut self.out,
            ),
            ClientEvent::SendFailed { conn, message } => {
                let event = if self.credit {
                    Event::CloseOk { conn }
                } else {
                    Event::error(message)
                };
                encode(&event, &mut self.out);
            }
        }
    }

    /// Hands a Send's data to the daemon.
    fn send(&mut self, session: &Session, conn: u32, data: Vec<u8>) {
        if !self.credit {
            self.queued_sends += data.len();
        }
        session.send(conn, data);
    }

    fn command(&mut self, session: &Session, replies: &mut VecDeque<Reply>, message: &[u8]) {
        let command = match Command::decode(message) {
            Ok(c) => c,
            Err(e) => {
                replies.push_back(ready(Event::error(e.to_string())));
                return;
            }
        };
        let reply: Reply = match command {
            Command::Send { conn, data } => return self.send(session, conn, data),
            Command::RecvCredit { conn, bytes } => {
                session.grant(conn, bytes);
                return;
            }
            Command::Close { conn } => {
                session.close(conn);
                ready(Event::CloseOk { conn })
            }
            Command::Bind { port } => {
                let requests = session.requests();
                Box::pin(async move {
                    Some(match requests.listen(port).await {
                        Ok(()) => Event::BindOk { port },
                        Err(e) => Event::error(e),
                    })
                })
            }
            Command::Unbind { port } => {
                let requests = session.requests();
                Box::pin(async move {
                    Some(match requests.unbind(port).await {
                        Ok(()) => Event::UnbindOk { port },
                        Err(e) => Event::error(format!("unbind: {e}")),
                    })
                })
            }
            Command::Disconnect { conn } => {
                let handle = self.handle.clone();
                Box::pin(async move {
                    Some(match handle.disconnect(conn).await {
                        Ok(()) => Event::DisconnectOk { conn },
                        Err(e) => Event::error(format!("disconnect: {e}")),
                    })
                })
            }
            Command::Dial { addr, port } => {
                let rx = session.dial_later(addr, port);
                Box::pin(async move {
                    Some(match rx.await {
                        Ok(Ok(conn)) => Event::DialOk { conn },
                        Ok(Err(e)) => Event::error(e),
                        Err(_) => Event::error(STOPPED),
                    })
                })
            }
            Command::SendTo { addr, port, data } => {
                let requests = session.requests();
                Box::pin(async move {
                    requests
                        .send_to(addr, port, data)
                        .await
                        .err()
                        .map(Event::error)
                })
            }
            Command::Info => {
                let handle = self.handle.clone();
                Box::pin(async move {
                    Some(match handle.info().await {
                        Ok(v) => json_reply(code::INFO_OK, &v),
                        Err(e) => Event::error(e),
                    })
                })
            }
            Command::Handshake(cmd) => {
                let handle = self.handle.clone();
                Box::pin(async move {
                    Some(match handle.handshake(cmd).await {
                        Ok(v) => json_reply(code::HANDSHAKE_OK, &v),
                        Err(e) => Event::error(e),
                    })
                })
            }
            Command::ResolveHostname(name) => {
                if name.is_empty() {
                    ready(Event::error("resolve_hostname: missing hostname"))
                } else {
                    registry_reply(
                        &self.handle,
                        RegistryOp::ResolveHostname(name),
                        code::RESOLVE_HOSTNAME_OK,
                    )
                }
            }
            Command::SetHostname(name) => registry_reply(
                &self.handle,
                RegistryOp::SetHostname(name),
                code::SET_HOSTNAME_OK,
            ),
            Command::SetVisibility(public) => registry_reply(
                &self.handle,
                RegistryOp::SetVisibility(public),
                code::SET_VISIBILITY_OK,
            ),
            Command::Deregister => {
                registry_reply(&self.handle, RegistryOp::Deregister, code::DEREGISTER_OK)
            }
            Command::SetTaskExec(on) => registry_reply(
                &self.handle,
                RegistryOp::SetTaskExec(on),
                code::SET_TASK_EXEC_OK,
            ),
            Command::SetTags(bytes) => match parse_tags(&bytes) {
                Ok(tags) => {
                    registry_reply(&self.handle, RegistryOp::SetTags(tags), code::SET_TAGS_OK)
                }
                Err(e) => ready(Event::error(e)),
            },
            Command::SetWebhook(url) => match self.handle.webhooks().set(&url) {
                Ok(()) => ready(json_reply(code::SET_WEBHOOK_OK, &json!({ "webhook": url }))),
                Err(e) => ready(Event::error(e)),
            },
            Command::Hello(bytes) => ready(self.hello(session, &bytes)),
        };
        replies.push_back(reply);
    }

    fn hello(&mut self, session: &Session, bytes: &[u8]) -> Event {
        let offered: Vec<String> = serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|v| v.get("features").cloned())
            .and_then(|f| serde_json::from_value(f).ok())
            .unwrap_or_default();
        let supported = ["credit", "unbind", "bound-datagrams"];
        let accepted: Vec<&str> = supported
            .into_iter()
            .filter(|f| offered.iter().any(|o| o == f))
            .collect();
        self.credit = accepted.contains(&"credit");
        let bound = accepted.contains(&"bound-datagrams");
        session.set_options(ClientOptions {
            recv_credit: if self.credit {
                HELLO_RECV_CREDIT
            } else {
                REFERENCE_RECV_WINDOW
            },
            bound_datagrams: bound,
        });
        json_reply(
            code::HELLO_OK,
            &json!({"version": 1, "features": accepted,
                    "recv_credit": HELLO_RECV_CREDIT, "send_credit": HELLO_SEND_CREDIT}),
        )
    }
}

/// A Send message's connection and data, without copying them; `None` for other messages
/// (a malformed Send included: [`State::command`] answers it).
fn send_payload(message: &[u8]) -> Option<(u32, &[u8])> {
    match message {
        [code::SEND, a, b, c, d, data @ ..] => Some((u32::from_be_bytes([*a, *b, *c, *d]), data)),
        _ => None,
    }
}

/// The SetTags payload: a JSON array of at most three strings, or `null`.
fn parse_tags(bytes: &[u8]) -> Result<Vec<String>, String> {
    let tags: Option<Vec<String>> =
        serde_json::from_slice(bytes).map_err(|e| format!("set_tags: invalid JSON: {e}"))?;
    let tags = tags.unwrap_or_default();
    if tags.len() > 3 {
        return Err("set_tags: maximum 3 tags allowed".into());
    }
    Ok(tags)
}
