//! A virtual UDP socket on a simulated host.

use super::{v4, Datagram, Endpoint};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, Mutex};

/// A bound UDP socket of a [`SimNet`](super::SimNet).
pub struct SimUdpSocket {
    endpoint: Arc<Endpoint>,
    local: SocketAddr,
    port: u16,
    inbox: Mutex<mpsc::Receiver<Datagram>>,
}

impl std::fmt::Debug for SimUdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimUdpSocket")
            .field("local", &self.local)
            .finish()
    }
}

impl SimUdpSocket {
    pub(super) fn new(
        endpoint: Arc<Endpoint>,
        local: SocketAddr,
        port: u16,
        inbox: mpsc::Receiver<Datagram>,
    ) -> Self {
        SimUdpSocket {
            endpoint,
            local,
            port,
            inbox: Mutex::new(inbox),
        }
    }
}

impl Drop for SimUdpSocket {
    fn drop(&mut self) {
        self.endpoint.unbind(self.port);
    }
}

impl pilot::net::UdpSocket for SimUdpSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        let to = v4(to)?;
        if buf.len() > u16::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "datagram larger than 65535 bytes",
            ));
        }
        self.endpoint.send(self.port, buf, to);
        Ok(buf.len())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let mut inbox = self.inbox.lock().await;
        let (bytes, from) = inbox.recv().await.ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotConnected, "the host's network stopped")
        })?;
        // Like a real socket, a datagram longer than the buffer is truncated.
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Ok((n, from))
    }
}
