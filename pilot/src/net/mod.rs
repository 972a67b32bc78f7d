//! The seams between protocol code and the world.
//!
//! Everything that can run under the simulator reaches the network, the clocks, randomness and
//! persistent storage only through this module:
//!
//! - [`Network`] (UDP sockets, TCP listeners and streams): [`TokioNet`] on real sockets here,
//!   the turmoil-backed simulated internet in `pilot-sim`.
//! - Monotonic time: `tokio::time` (turmoil drives it in simulation). Wall-clock time: an
//!   injected [`WallClock`].
//! - Randomness: an injected [`Rng`] (ChaCha20), seeded from the OS in real runs and from the
//!   scenario seed in simulation.
//! - Persistent state: a [`Storage`], on disk with write-fsync-rename, or in memory with crash
//!   semantics for the simulator.

mod batch;
mod clock;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod linux_udp;
mod rng;
mod storage;
mod tokio_net;
pub mod watch;

pub use batch::{Outgoing, RecvBatch, SLOT_LEN};
pub use clock::{monotonic_now, FixedClock, SystemClock, WallClock};
pub use rng::{os_seeded_rng, seeded_rng, Rng};
pub use storage::{DiskStorage, MemStorage, Storage, StorageError};
pub use tokio_net::TokioNet;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};

/// A network a component can bind sockets on and connect through.
///
/// Implementations are cheap handles (`Clone`) to one host's view of a network: real sockets
/// ([`TokioNet`]) or a simulated host behind simulated NATs (`pilot-sim`).
pub trait Network: Clone + Send + Sync + 'static {
    /// A bound UDP socket.
    type Udp: UdpSocket;
    /// A bound TCP listener.
    type Listener: TcpListener<Stream = Self::Stream>;
    /// A connected TCP stream.
    type Stream: TcpStream;

    /// Binds a UDP socket. Port 0 picks a free port.
    fn bind_udp(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Udp>> + Send;
    /// Binds a TCP listener. Port 0 picks a free port.
    fn bind_tcp(&self, addr: SocketAddr)
        -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Opens a TCP connection.
    fn connect_tcp(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// This host's addresses on its networks (not loopback): what a socket bound to the
    /// wildcard address can be reached at by neighbours, announced as LAN candidates. The
    /// default knows none.
    fn local_addresses(&self) -> Vec<std::net::IpAddr> {
        Vec::new()
    }
}

/// A bound UDP socket.
pub trait UdpSocket: Send + Sync + 'static {
    /// The address the socket is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// Sends one datagram.
    fn send_to(&self, buf: &[u8], to: SocketAddr)
        -> impl Future<Output = io::Result<usize>> + Send;
    /// Receives one datagram; returns its length and source.
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;
    /// Asks for kernel buffers of `bytes` in each direction (a busy tunnel socket needs
    /// megabytes to ride out bursts). Best effort: the default does nothing (simulated
    /// sockets have no kernel buffers), and the kernel may grant less.
    fn set_buffer_sizes(&self, bytes: usize) -> io::Result<()> {
        let _ = bytes;
        Ok(())
    }

    /// How many receive slots a [`RecvBatch`] for this socket should have: what one
    /// [`recv_batch`](Self::recv_batch) can fill. The default fills one.
    fn batch_slots(&self) -> usize {
        1
    }

    /// Turns on receive offload (several datagrams of one sender per slot) where the
    /// platform has it, and says whether it did. After it, receive only with
    /// [`recv_batch`](Self::recv_batch) and [`try_recv_batch`](Self::try_recv_batch), which
    /// split what the kernel merged. The default has none.
    fn enable_receive_offload(&self) -> bool {
        false
    }

    /// Receives into `batch` (emptied first), waiting until there is at least one datagram;
    /// returns how many arrived. The default is one [`recv_from`](Self::recv_from).
    fn recv_batch(&self, batch: &mut RecvBatch) -> impl Future<Output = io::Result<usize>> + Send {
        async move {
            batch.clear();
            let Some(slot) = batch.free_slot() else {
                return Ok(0);
            };
            let (n, from) = self.recv_from(slot).await?;
            batch.push(n, n, from);
            Ok(1)
        }
    }

    /// Like [`recv_batch`](Self::recv_batch) but never waits: `Ok(0)` when nothing is
    /// queued. The default polls [`recv_from`](Self::recv_from) once.
    fn try_recv_batch(
        &self,
        batch: &mut RecvBatch,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        async move {
            batch.clear();
            let Some(slot) = batch.free_slot() else {
                return Ok(0);
            };
            let polled = tokio::select! {
                biased;
                r = self.recv_from(slot) => Some(r),
                () = std::future::ready(()) => None,
            };
            match polled {
                None => Ok(0),
                Some(r) => {
                    let (n, from) = r?;
                    batch.push(n, n, from);
                    Ok(1)
                }
            }
        }
    }

    /// Sends every datagram of `batch`, in order. One the system refuses is skipped; the
    /// first such error is returned once the rest were tried. The default sends them one
    /// [`send_to`](Self::send_to) at a time.
    fn send_batch<T: Outgoing + Sync>(
        &self,
        batch: &[T],
    ) -> impl Future<Output = io::Result<()>> + Send {
        async move {
            let mut first_error = None;
            for datagram in batch {
                if let Err(e) = self
                    .send_to(datagram.payload(), datagram.destination())
                    .await
                {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        }
    }
}

/// A bound TCP listener.
pub trait TcpListener: Send + Sync + 'static {
    /// The stream type accepted connections yield.
    type Stream: TcpStream;
    /// The address the listener is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// Waits for the next connection; returns it and the peer's address.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
}

/// A connected TCP stream.
pub trait TcpStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// This end's address.
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// The other end's address.
    fn peer_addr(&self) -> io::Result<SocketAddr>;
}
