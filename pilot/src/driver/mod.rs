//! The SDK: drive a local pilot daemon over its IPC socket.
//!
//! [`Driver::connect`] opens the socket and offers the IPC extensions of `docs/IPC.md` (flow
//! control, Unbind, per-port datagrams); a reference daemon refuses them and the driver falls
//! back to the reference protocol. One reader task demultiplexes the socket: replies go to
//! their requests (first in, first out per reply code; an Error to the oldest request), stream
//! data to per-connection buffers, inbound connections to listeners, datagrams to one queue.
//!
//! ```no_run
//! use pilot::driver::Driver;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let driver = Driver::connect(pilot::driver::default_socket_path()).await?;
//! let peer = "0:0000.0000.002A".parse()?;
//! let mut stream = driver.dial(peer, 7).await?;
//! stream.write_all(b"hello").await?;
//! let mut reply = [0u8; 5];
//! stream.read_exact(&mut reply).await?;
//! # Ok(()) }
//! ```

mod conn;
mod error;
mod info;
mod listener;
mod ops;
mod request;
mod socket_path;
mod stream;

pub use conn::{Features, ACCEPT_QUEUE, DATAGRAM_QUEUE};
pub use error::{DriverError, Result};
pub use info::{ConnInfo, Info, PeerInfo, PendingRequest, Resolved, TrustReply, TrustedPeer};
pub use listener::Listener;
pub use socket_path::{default_socket_path, socket_path_from};
pub use stream::{Stream, MAX_SEND_CHUNK, RECV_BUFFER_LIMIT, WRITE_BEHIND, WRITE_BEHIND_MESSAGES};

use crate::ipc::message::code;
use crate::ipc::{Command, Event, MAX_MESSAGE};
use crate::wire::{Addr, SocketAddr};
use conn::Inner;
use request::Reply;
use std::path::Path;
use std::sync::Arc;

/// The extensions this SDK asks for.
const HELLO: &str = r#"{"version":1,"features":["credit","unbind","bound-datagrams"]}"#;

/// How long a daemon may take to answer Hello before `connect` gives up.
pub const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Largest datagram payload: the message cap minus code, address and port.
pub const MAX_DATAGRAM: usize = MAX_MESSAGE - 9;

/// A datagram received from the overlay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Sender address and port.
    pub src: SocketAddr,
    /// The local port it was sent to.
    pub dst_port: u16,
    /// The payload.
    pub data: Vec<u8>,
}

/// A connection to the local daemon. Cheap to clone; the socket closes when the last clone,
/// stream and listener are gone.
#[derive(Clone)]
pub struct Driver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("features", &self.features())
            .finish()
    }
}

/// The daemon's answer to Hello.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct HelloOk {
    features: Vec<String>,
    recv_credit: u32,
    send_credit: u32,
}

impl Driver {
    /// Connects to the daemon socket at `path` and negotiates extensions.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Driver> {
        let path = path.as_ref();
        let socket = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|source| DriverError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        let driver = Driver {
            inner: Inner::start(socket),
        };
        let hello = Command::Hello(HELLO.as_bytes().to_vec());
        let reply = tokio::time::timeout(
            HELLO_TIMEOUT,
            driver.inner.shared.request(&hello, code::HELLO_OK, "hello"),
        )
        .await
        .map_err(|_| DriverError::NoAnswer {
            path: path.to_path_buf(),
            secs: HELLO_TIMEOUT.as_secs(),
        })?;
        match reply {
            Ok(Reply::Event(Event::Json { json, .. })) => {
                let reply: HelloOk =
                    serde_json::from_slice(&json).map_err(|e| DriverError::Malformed {
                        op: "hello",
                        detail: e.to_string(),
                    })?;
                let has = |name: &str| reply.features.iter().any(|f| f == name);
                driver.inner.shared.state().features = Features {
                    credit: has("credit"),
                    unbind: has("unbind"),
                    bound_datagrams: has("bound-datagrams"),
                    recv_credit: reply.recv_credit,
                    send_credit: reply.send_credit,
                };
            }
            Ok(_) => {
                return Err(DriverError::Malformed {
                    op: "hello",
                    detail: "unexpected reply".into(),
                })
            }
            // A reference daemon: "unknown command: 0x20". Speak the reference protocol.
            Err(DriverError::Daemon { .. }) => {}
            Err(e) => return Err(e),
        }
        Ok(driver)
    }

    /// Connects to the socket at [`default_socket_path`].
    pub async fn connect_default() -> Result<Driver> {
        Driver::connect(default_socket_path()).await
    }

    /// The extensions in use (all off with a reference daemon).
    pub fn features(&self) -> Features {
        self.inner.shared.state().features
    }

    /// Opens a stream to `addr:port`. The daemon may take up to ~30 s to give up on an
    /// unreachable peer; wrap the call in `tokio::time::timeout` to give up sooner (a late
    /// success is then closed automatically).
    pub async fn dial(&self, addr: Addr, port: u16) -> Result<Stream> {
        let cmd = Command::Dial { addr, port };
        match self
            .inner
            .shared
            .request(&cmd, code::DIAL_OK, "dial")
            .await?
        {
            Reply::Dialed(conn, slot) => Ok(Stream::new(
                self.inner.clone(),
                conn,
                SocketAddr::new(addr, port),
                None,
                slot,
            )),
            _ => Err(unexpected("dial")),
        }
    }

    /// Binds `port` and returns a listener for inbound connections.
    pub async fn listen(&self, port: u16) -> Result<Listener> {
        let cmd = Command::Bind { port };
        match self
            .inner
            .shared
            .request(&cmd, code::BIND_OK, "bind")
            .await?
        {
            Reply::Bound(port, rx, token) => Ok(Listener::new(self.inner.clone(), port, token, rx)),
            _ => Err(unexpected("bind")),
        }
    }

    /// Sends a datagram to `addr:port` (unreliable; failures are not reported back).
    pub async fn send_to(&self, addr: Addr, port: u16, data: &[u8]) -> Result<()> {
        if data.len() > MAX_DATAGRAM {
            return Err(DriverError::TooLarge {
                op: "sendto",
                len: data.len(),
                max: MAX_DATAGRAM,
            });
        }
        let cmd = Command::SendTo {
            addr,
            port,
            data: data.to_vec(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner.shared.send_command(&cmd, Some(tx));
        rx.await
            .map_err(|_| DriverError::Disconnected(self.inner.shared.lost_reason()))
    }

    /// The next datagram. With the `bound-datagrams` extension only datagrams to ports this
    /// driver listens on arrive; a reference daemon sends every datagram to every client.
    /// Up to [`DATAGRAM_QUEUE`] wait; more are dropped and counted ([`Self::dropped_datagrams`]).
    pub async fn recv_from(&self) -> Result<Datagram> {
        let mut rx = self.inner.datagrams.lock().await;
        rx.recv()
            .await
            .ok_or_else(|| DriverError::Disconnected(self.inner.shared.lost_reason()))
    }

    /// Datagrams dropped so far because the queue was full.
    pub fn dropped_datagrams(&self) -> u64 {
        self.inner.shared.dropped_datagrams()
    }
}

fn unexpected(op: &'static str) -> DriverError {
    DriverError::Malformed {
        op,
        detail: "unexpected reply type".into(),
    }
}
