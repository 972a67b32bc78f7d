//! The [`Network`] on real sockets, through tokio.

use super::{Network, TcpListener, TcpStream, UdpSocket};
use std::future::Future;
use std::io;
use std::net::SocketAddr;

/// Real sockets of the operating system.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

impl Network for TokioNet {
    type Udp = tokio::net::UdpSocket;
    type Listener = tokio::net::TcpListener;
    type Stream = tokio::net::TcpStream;

    fn bind_udp(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Udp>> + Send {
        tokio::net::UdpSocket::bind(addr)
    }

    fn bind_tcp(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        tokio::net::TcpListener::bind(addr)
    }

    async fn connect_tcp(&self, addr: SocketAddr) -> io::Result<Self::Stream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        // Requests and replies are small; waiting to coalesce them only adds latency.
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn local_addresses(&self) -> Vec<std::net::IpAddr> {
        match if_addrs::get_if_addrs() {
            Ok(interfaces) => interfaces
                .into_iter()
                .filter(|i| !i.is_loopback())
                .map(|i| i.ip())
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, "interface addresses unavailable");
                Vec::new()
            }
        }
    }
}

impl UdpSocket for tokio::net::UdpSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::UdpSocket::local_addr(self)
    }

    fn send_to(
        &self,
        buf: &[u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        tokio::net::UdpSocket::send_to(self, buf, to)
    }

    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send {
        tokio::net::UdpSocket::recv_from(self, buf)
    }

    fn set_buffer_sizes(&self, bytes: usize) -> io::Result<()> {
        let socket = socket2::SockRef::from(self);
        socket.set_recv_buffer_size(bytes)?;
        socket.set_send_buffer_size(bytes)
    }
}

impl TcpListener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }

    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }
}

impl TcpStream for tokio::net::TcpStream {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpStream::local_addr(self)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpStream::peer_addr(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn udp_round_trip_on_loopback() {
        let net = TokioNet;
        let a = net.bind_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let b = net.bind_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        UdpSocket::send_to(&a, b"hi", UdpSocket::local_addr(&b).unwrap())
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = UdpSocket::recv_from(&b, &mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hi");
        assert_eq!(from, UdpSocket::local_addr(&a).unwrap());
    }

    #[tokio::test]
    async fn tcp_round_trip_on_loopback() {
        let net = TokioNet;
        let listener = net.bind_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = TcpListener::local_addr(&listener).unwrap();
        let client = tokio::spawn(async move {
            let mut s = TokioNet.connect_tcp(addr).await.unwrap();
            s.write_all(b"ping").await.unwrap();
            TcpStream::local_addr(&s).unwrap()
        });
        let (mut s, peer) = TcpListener::accept(&listener).await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        assert_eq!(peer, client.await.unwrap());
    }
}
