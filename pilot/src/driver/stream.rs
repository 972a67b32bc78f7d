//! Streams: a connection's receive buffer, its send credit, and the [`Stream`] handle that
//! implements tokio's `AsyncRead` and `AsyncWrite`.
//!
//! The reader task only ever appends to a connection's buffer and never waits, so a stream
//! that nobody reads cannot hold up replies or other streams (the reference driver blocks its
//! whole read loop when one connection's channel is full, `spec/services.md` §14 Q20). With
//! the `credit` extension the daemon never sends more than the window we granted, and we grant
//! more as the application reads. Without it the buffer is capped at [`RECV_BUFFER_LIMIT`];
//! past that the connection fails with an error (the data read so far stays readable) and is
//! closed, because silently dropping stream bytes would corrupt the stream.

use super::conn::Inner;
use crate::ipc::frame::encode_message;
use crate::ipc::message::code;
use crate::ipc::{Command, MAX_MESSAGE};
use crate::wire::SocketAddr;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// Largest payload of one Send message: the 1 MiB message cap minus the code and connection ID.
pub const MAX_SEND_CHUNK: usize = MAX_MESSAGE - 5;

/// Unread bytes a connection may hold when the daemon has no flow control (reference daemon).
pub const RECV_BUFFER_LIMIT: usize = 8 << 20;

/// Bytes of Send messages a stream may have queued for the socket and not yet written. Small
/// application writes (a 4 KiB loop) then ride to the daemon many per socket write instead
/// of one write and one task hand-off each, while the queue stays bounded.
pub const WRITE_BEHIND: usize = 1 << 20;

/// Messages a stream may have queued for the socket: tiny writes cannot pile up a million
/// queue entries within [`WRITE_BEHIND`] bytes.
pub const WRITE_BEHIND_MESSAGES: usize = 256;

/// Receive window granted per connection when the daemon's HelloOK names none.
pub(crate) const DEFAULT_RECV_WINDOW: u32 = 256 << 10;

/// How a connection's receive side ended.
#[derive(Clone, Debug)]
enum End {
    /// The daemon reported the connection closed (CloseOK).
    Closed,
    /// The connection failed; reads return this error once the buffer is drained.
    Failed(io::ErrorKind, String),
}

/// The state of one connection shared by the reader task and the [`Stream`].
#[derive(Debug)]
pub(crate) struct ConnState {
    id: u32,
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the front chunk already read.
    offset: usize,
    buffered: usize,
    /// With credits: the window we grant, and bytes read but not yet granted back.
    window: Option<u32>,
    ungranted: u32,
    end: Option<End>,
    read_waker: Option<Waker>,
    /// With credits: bytes the daemon accepts before the next SendCredit.
    send_credit: Option<u64>,
    write_waker: Option<Waker>,
}

/// A connection's shared state.
pub(crate) type ConnSlot = Arc<Mutex<ConnState>>;

/// Locks a mutex, ignoring poisoning (the state stays consistent: no code panics under it).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl ConnState {
    /// A new connection; `credit` is `Some((recv_window, send_credit))` with the extension.
    pub fn new_slot(id: u32, credit: Option<(u32, u32)>) -> ConnSlot {
        Arc::new(Mutex::new(ConnState {
            id,
            chunks: VecDeque::new(),
            offset: 0,
            buffered: 0,
            window: credit.map(|(w, _)| if w == 0 { DEFAULT_RECV_WINDOW } else { w }),
            ungranted: 0,
            end: None,
            read_waker: None,
            send_credit: credit.map(|(_, s)| u64::from(s)),
            write_waker: None,
        }))
    }

    /// Appends received data. Returns false when the buffer overflowed and the connection
    /// was failed (the caller then closes it in the daemon).
    pub fn push(&mut self, data: Vec<u8>) -> bool {
        if self.end.is_some() || data.is_empty() {
            return true;
        }
        let limit = match self.window {
            // A daemon that overshoots its credit still gets some slack before we give up.
            Some(window) => (window as usize * 2).max(RECV_BUFFER_LIMIT),
            None => RECV_BUFFER_LIMIT,
        };
        if self.buffered + data.len() > limit {
            self.fail(
                io::ErrorKind::OutOfMemory,
                format!(
                    "connection {} received more than {limit} unread bytes and was closed: \
                     read streams promptly (the daemon has no flow control)",
                    self.id
                ),
            );
            return false;
        }
        self.buffered += data.len();
        self.chunks.push_back(data);
        wake(&mut self.read_waker);
        true
    }

    /// The daemon reported the connection closed.
    pub fn close(&mut self) {
        if self.end.is_none() {
            self.end = Some(End::Closed);
        }
        self.wake_all();
    }

    /// The connection failed.
    pub fn fail(&mut self, kind: io::ErrorKind, message: String) {
        if !matches!(self.end, Some(End::Failed(..))) {
            self.end = Some(End::Failed(kind, message));
        }
        self.wake_all();
    }

    /// The daemon accepts `bytes` more.
    pub fn add_send_credit(&mut self, bytes: u32) {
        if let Some(credit) = &mut self.send_credit {
            *credit += u64::from(bytes);
        }
        wake(&mut self.write_waker);
    }

    fn wake_all(&mut self) {
        wake(&mut self.read_waker);
        wake(&mut self.write_waker);
    }

    /// The error a write gets once the connection ended.
    fn write_error(&self) -> Option<io::Error> {
        match &self.end {
            None => None,
            Some(End::Closed) => Some(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("connection {} was closed", self.id),
            )),
            Some(End::Failed(kind, message)) => Some(io::Error::new(*kind, message.clone())),
        }
    }

    /// Copies buffered bytes into `buf`; returns how many, and the credit to grant back.
    fn read_into(&mut self, buf: &mut ReadBuf<'_>) -> (usize, Option<u32>) {
        let mut copied = 0;
        while buf.remaining() > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let n = (front.len() - self.offset).min(buf.remaining());
            buf.put_slice(&front[self.offset..self.offset + n]);
            self.offset += n;
            copied += n;
            if self.offset == front.len() {
                self.chunks.pop_front();
                self.offset = 0;
            }
        }
        self.buffered -= copied;
        let grant = self.window.and_then(|window| {
            self.ungranted = self.ungranted.saturating_add(copied as u32);
            // Grant in batches of half a window: fewer messages, and the daemon still has
            // half a window to send while the grant is on its way.
            (self.ungranted >= (window / 2).max(1)).then(|| std::mem::take(&mut self.ungranted))
        });
        (copied, grant)
    }
}

fn wake(waker: &mut Option<Waker>) {
    if let Some(w) = waker.take() {
        w.wake();
    }
}

/// A reliable, ordered byte stream to a remote port, from [`crate::driver::Driver::dial`] or
/// [`crate::driver::Listener::accept`].
///
/// Reads return the bytes in order, then end of file once the daemon reports the connection
/// closed, or an error if it failed (socket loss included). Writes are split into messages of
/// at most [`MAX_SEND_CHUNK`] bytes; each `poll_write` queues one message for the socket, and
/// writes wait while [`WRITE_BEHIND`] bytes of them are not yet written (and, with credits,
/// until the daemon has room). `flush` waits until every queued message reached the daemon
/// socket. `shutdown` closes the whole connection: there is no half-close in the IPC
/// protocol. Dropping a stream closes it too, after what was queued.
pub struct Stream {
    inner: Arc<Inner>,
    id: u32,
    peer: SocketAddr,
    local_port: Option<u16>,
    slot: ConnSlot,
    /// Messages queued for the socket, oldest first, each with its payload length.
    in_flight: VecDeque<(oneshot::Receiver<()>, usize)>,
    /// Sum of the lengths in `in_flight`.
    in_flight_bytes: usize,
    closed: bool,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("local_port", &self.local_port)
            .finish()
    }
}

impl Stream {
    pub(crate) fn new(
        inner: Arc<Inner>,
        id: u32,
        peer: SocketAddr,
        local_port: Option<u16>,
        slot: ConnSlot,
    ) -> Self {
        Stream {
            inner,
            id,
            peer,
            local_port,
            slot,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            closed: false,
        }
    }

    /// The daemon's connection ID.
    pub fn conn_id(&self) -> u32 {
        self.id
    }

    /// The remote address and port.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The local port the connection was accepted on (`None` for dialled streams).
    pub fn local_port(&self) -> Option<u16> {
        self.local_port
    }

    /// Forgets the queued messages that reached the daemon socket, oldest first, and waits
    /// (registering `cx`) while more than `limit` bytes or [`WRITE_BEHIND_MESSAGES`] of them
    /// are left, or while any is left if `limit` is `None`.
    fn poll_in_flight(
        &mut self,
        cx: &mut Context<'_>,
        limit: Option<usize>,
    ) -> Poll<io::Result<()>> {
        while let Some((rx, len)) = self.in_flight.front_mut() {
            let len = *len;
            // The writer writes in order: a message not yet written holds up the ones after.
            let result = match Pin::new(rx).poll(cx) {
                Poll::Ready(result) => result,
                Poll::Pending => match limit {
                    Some(limit)
                        if self.in_flight_bytes <= limit
                            && self.in_flight.len() < WRITE_BEHIND_MESSAGES =>
                    {
                        break
                    }
                    _ => return Poll::Pending,
                },
            };
            self.in_flight_bytes -= len;
            self.in_flight.pop_front();
            if result.is_err() {
                return Poll::Ready(Err(self.lost_error()));
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Queues a framed message for the socket, tracked until it is written.
    fn queue(&mut self, frame: Vec<u8>, len: usize) {
        let (tx, rx) = oneshot::channel();
        self.inner.shared.send_frame(frame, Some(tx));
        self.in_flight.push_back((rx, len));
        self.in_flight_bytes += len;
    }

    fn lost_error(&self) -> io::Error {
        let reason = self.inner.shared.lost_reason();
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("lost the connection to the pilot daemon ({reason})"),
        )
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut state = lock(&this.slot);
        let (copied, grant) = state.read_into(buf);
        if let Some(bytes) = grant {
            drop(state);
            let cmd = Command::RecvCredit {
                conn: this.id,
                bytes,
            };
            this.inner.shared.send_command(&cmd, None);
            return Poll::Ready(Ok(()));
        }
        if copied > 0 {
            return Poll::Ready(Ok(()));
        }
        match &state.end {
            Some(End::Closed) => Poll::Ready(Ok(())),
            Some(End::Failed(kind, message)) => {
                Poll::Ready(Err(io::Error::new(*kind, message.clone())))
            }
            None => {
                state.read_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("connection {} was shut down by this side", this.id),
            )));
        }
        // Room for this write: the queue may hold WRITE_BEHIND bytes before it.
        let room = WRITE_BEHIND.saturating_sub(buf.len().min(MAX_SEND_CHUNK));
        ready!(this.poll_in_flight(cx, Some(room)))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = {
            let mut state = lock(&this.slot);
            if let Some(err) = state.write_error() {
                return Poll::Ready(Err(err));
            }
            let mut n = buf.len().min(MAX_SEND_CHUNK);
            if let Some(credit) = state.send_credit {
                if credit == 0 {
                    state.write_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                n = n.min(credit as usize);
                state.send_credit = Some(credit - n as u64);
            }
            n
        };
        let mut frame = Vec::with_capacity(9 + n);
        // Cannot fail: n is at most MAX_SEND_CHUNK.
        let _ = encode_message(code::SEND, &[&this.id.to_be_bytes(), &buf[..n]], &mut frame);
        this.queue(frame, n);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_in_flight(cx, None)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closed {
            ready!(this.poll_in_flight(cx, None))?;
            let (tx, rx) = oneshot::channel();
            this.inner
                .shared
                .send_command(&Command::Close { conn: this.id }, Some(tx));
            this.in_flight.push_back((rx, 0));
            this.closed = true;
        }
        // Done once the Close reached the socket (or the socket is gone, which closes too).
        let _ = ready!(this.poll_in_flight(cx, None));
        Poll::Ready(Ok(()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.inner.shared.forget_conn(self.id, &self.slot);
        if !self.closed {
            self.inner
                .shared
                .send_command(&Command::Close { conn: self.id }, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(state: &mut ConnState, cap: usize) -> (Vec<u8>, Option<u32>) {
        let mut storage = vec![0u8; cap];
        let mut buf = ReadBuf::new(&mut storage);
        let (_, grant) = state.read_into(&mut buf);
        (buf.filled().to_vec(), grant)
    }

    #[test]
    fn reads_span_chunks_and_grant_in_half_windows() {
        let slot = ConnState::new_slot(1, Some((8, 0)));
        let mut state = lock(&slot);
        assert!(state.push(b"abc".to_vec()));
        assert!(state.push(b"defgh".to_vec()));
        let (bytes, grant) = read_all(&mut state, 2);
        assert_eq!((bytes.as_slice(), grant), (&b"ab"[..], None));
        let (bytes, grant) = read_all(&mut state, 10);
        assert_eq!((bytes.as_slice(), grant), (&b"cdefgh"[..], Some(8)));
        assert_eq!(state.buffered, 0);
    }

    #[test]
    fn overflow_without_credit_fails_the_connection_but_keeps_data() {
        let slot = ConnState::new_slot(3, None);
        let mut state = lock(&slot);
        assert!(state.push(vec![1; RECV_BUFFER_LIMIT]));
        assert!(!state.push(vec![2]));
        assert!(state.write_error().is_some());
        let (bytes, _) = read_all(&mut state, 16);
        assert_eq!(
            bytes,
            vec![1; 16],
            "data received before the overflow stays readable"
        );
    }
}
