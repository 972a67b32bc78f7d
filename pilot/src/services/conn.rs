//! In-process services see their connections as ordinary byte streams.
//!
//! A [`ServiceListener`] is a daemon session bound to one port. One router task reads the
//! session's events and files each connection's data into that connection's buffer; a
//! [`ServiceStream`] implements tokio's `AsyncRead` and `AsyncWrite` over it. Services can then
//! be written once, over any `AsyncRead + AsyncWrite`, and run unchanged on the SDK's
//! [`crate::driver::Stream`] or on `tokio::io::duplex` in tests.
//!
//! Flow control is the daemon's credit: the router grants receive credit only as the service
//! reads, so a connection whose service is busy (writing a file to disk, say) holds back its
//! peer instead of growing a buffer; writes wait while [`SEND_WINDOW`] bytes are queued in the
//! daemon and not yet in the stream.

use crate::daemon::{ClientEvent, ClientOptions, DaemonHandle, Session, SessionRequests};
use crate::wire::{Addr, SocketAddr};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};

/// Receive credit a connection starts with (and at most holds unread).
pub const RECV_WINDOW: u32 = 256 << 10;
/// Bytes a connection may have queued in the daemon before writes wait.
pub const SEND_WINDOW: usize = 1 << 20;
/// Accepted connections waiting for the service; more are closed at once.
pub const ACCEPT_BACKLOG: usize = 128;

#[derive(Default)]
struct State {
    chunks: VecDeque<Vec<u8>>,
    offset: usize,
    /// The receive side ended (peer FIN, reset, or the daemon stopped).
    ended: bool,
    /// Bytes written and not yet credited back by the daemon.
    in_flight: usize,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl State {
    fn wake(&mut self) {
        for waker in [self.read_waker.take(), self.write_waker.take()]
            .into_iter()
            .flatten()
        {
            waker.wake();
        }
    }
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A port served in-process: yields each inbound connection as a [`ServiceStream`].
pub struct ServiceListener {
    accepts: mpsc::Receiver<(ServiceStream, SocketAddr)>,
    port: u16,
}

impl ServiceListener {
    /// Binds `port` on the daemon behind `handle`. Fails when the port is taken.
    pub async fn bind(handle: &DaemonHandle, port: u16) -> Result<Self, String> {
        let options = ClientOptions {
            recv_credit: RECV_WINDOW,
            bound_datagrams: true,
        };
        let session = handle.session(options).await?;
        session.listen(port).await?;
        let (tx, accepts) = mpsc::channel(ACCEPT_BACKLOG);
        tokio::spawn(serve_session(session, BTreeMap::new(), tx, None));
        Ok(ServiceListener { accepts, port })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next inbound connection and its peer; `None` once the daemon stopped.
    pub async fn accept(&mut self) -> Option<(ServiceStream, SocketAddr)> {
        self.accepts.recv().await
    }
}

/// Routes a session's events to its streams until the daemon stops, then ends them all.
/// `gone` resolves when a dialled stream is dropped (the session then closes with it);
/// a listener's session lives as long as the daemon.
async fn serve_session(
    mut session: Session,
    mut conns: BTreeMap<u32, Weak<Mutex<State>>>,
    accepts: mpsc::Sender<(ServiceStream, SocketAddr)>,
    gone: Option<oneshot::Receiver<()>>,
) {
    let requests = session.requests();
    let gone = async move {
        match gone {
            Some(rx) => drop(rx.await),
            None => std::future::pending().await,
        }
    };
    tokio::pin!(gone);
    loop {
        tokio::select! {
            biased;
            event = session.next_event() => match event {
                Some(event) => route(event, &requests, &mut conns, &accepts),
                None => break,
            },
            () = &mut gone => return, // dropping the session closes what is left
        }
    }
    for state in conns.values().filter_map(Weak::upgrade) {
        let mut s = lock(&state);
        s.ended = true;
        s.wake();
    }
}

fn route(
    event: ClientEvent,
    requests: &SessionRequests,
    conns: &mut BTreeMap<u32, Weak<Mutex<State>>>,
    accepts: &mpsc::Sender<(ServiceStream, SocketAddr)>,
) {
    match event {
        ClientEvent::Accept { conn, remote, .. } => {
            // Streams the service dropped get no Closed event: forget them here.
            conns.retain(|_, state| state.strong_count() > 0);
            let state = Shared::default();
            let stream = ServiceStream {
                conn,
                requests: requests.clone(),
                state: state.clone(),
                closed: false,
                _session: None,
            };
            if accepts.try_send((stream, remote)).is_ok() {
                conns.insert(conn, Arc::downgrade(&state));
            } else {
                // Backlog full or service gone; the dropped stream closed the connection.
                tracing::debug!(conn, "service backlog full; connection closed");
            }
        }
        ClientEvent::Recv { conn, data } => {
            if let Some(state) = conns.get(&conn).and_then(Weak::upgrade) {
                let mut s = lock(&state);
                s.chunks.push_back(data);
                s.wake();
            }
        }
        ClientEvent::SendCredit { conn, bytes } => {
            if let Some(state) = conns.get(&conn).and_then(Weak::upgrade) {
                let mut s = lock(&state);
                s.in_flight = s.in_flight.saturating_sub(bytes as usize);
                s.wake();
            }
        }
        ClientEvent::Closed { conn } | ClientEvent::SendFailed { conn, .. } => {
            if let Some(state) = conns.remove(&conn).and_then(|w| w.upgrade()) {
                let mut s = lock(&state);
                s.ended = true;
                s.wake();
            }
        }
        ClientEvent::Datagram { .. } => {}
    }
}

/// One inbound connection of a [`ServiceListener`]. Shutting it down, or dropping it, closes
/// the connection after the queued data (both directions: a service reads until the peer
/// ends, then answers, then shuts down).
pub struct ServiceStream {
    conn: u32,
    requests: SessionRequests,
    state: Shared,
    closed: bool,
    /// A dialled stream owns its session: dropping this ends it.
    _session: Option<oneshot::Sender<()>>,
}

impl ServiceStream {
    /// Opens a stream from this daemon to `addr:port`, as an in-process client (the
    /// simulator's daemons and in-process tools dial this way; applications use the driver).
    pub async fn dial(handle: &DaemonHandle, addr: Addr, port: u16) -> Result<Self, String> {
        let options = ClientOptions {
            recv_credit: RECV_WINDOW,
            bound_datagrams: true,
        };
        let session = handle.session(options).await?;
        let conn = session.dial(addr, port).await?;
        let state = Shared::default();
        let (guard, gone) = oneshot::channel();
        let stream = ServiceStream {
            conn,
            requests: session.requests(),
            state: state.clone(),
            closed: false,
            _session: Some(guard),
        };
        let conns = BTreeMap::from([(conn, Arc::downgrade(&state))]);
        // No listener: nothing is ever accepted.
        let (accepts, _) = mpsc::channel(1);
        tokio::spawn(serve_session(session, conns, accepts, Some(gone)));
        Ok(stream)
    }

    /// The daemon's ID of this connection.
    pub fn id(&self) -> u32 {
        self.conn
    }
}

impl AsyncRead for ServiceStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut s = lock(&this.state);
        let mut copied = 0;
        while buf.remaining() > 0 {
            let offset = s.offset;
            let Some(front) = s.chunks.front() else { break };
            let n = (front.len() - offset).min(buf.remaining());
            buf.put_slice(&front[offset..offset + n]);
            copied += n;
            if offset + n == front.len() {
                s.chunks.pop_front();
                s.offset = 0;
            } else {
                s.offset += n;
            }
        }
        if copied > 0 {
            drop(s);
            this.requests.grant(this.conn, copied as u32);
            return Poll::Ready(Ok(()));
        }
        if s.ended || this.closed {
            return Poll::Ready(Ok(())); // end of stream
        }
        s.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for ServiceStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut s = lock(&this.state);
        if s.ended || this.closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "connection closed",
            )));
        }
        let room = SEND_WINDOW.saturating_sub(s.in_flight);
        if room == 0 {
            s.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(room);
        s.in_flight += n;
        drop(s);
        this.requests.send(this.conn, buf[..n].to_vec());
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are already queued in the daemon, which sends them in order.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closed {
            this.closed = true;
            this.requests.close(this.conn);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for ServiceStream {
    fn drop(&mut self) {
        if !self.closed {
            self.requests.close(self.conn);
        }
    }
}
