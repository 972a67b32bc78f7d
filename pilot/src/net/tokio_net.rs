//! The [`Network`] on real sockets, through tokio.

use super::{Network, Outgoing, RecvBatch, TcpListener, TcpStream, UdpSocket};
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

    #[cfg(target_os = "linux")]
    fn batch_slots(&self) -> usize {
        super::linux_udp::RECV_SLOTS
    }

    #[cfg(target_os = "linux")]
    fn enable_receive_offload(&self) -> bool {
        use std::os::fd::AsRawFd;
        super::linux_udp::enable_gro(self.as_raw_fd())
    }

    #[cfg(target_os = "linux")]
    async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        use tokio::io::Interest;
        loop {
            let fd = self.as_raw_fd();
            match self
                .async_io(Interest::READABLE, || super::linux_udp::recv(fd, batch))
                .await
            {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Every datagram of the call was unusable (truncated, unnamed): wait again.
                Ok(0) => continue,
                r => return r,
            }
        }
    }

    #[cfg(target_os = "linux")]
    async fn try_recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        use tokio::io::Interest;
        let fd = self.as_raw_fd();
        match self.try_io(Interest::READABLE, || super::linux_udp::recv(fd, batch)) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                batch.clear();
                Ok(0)
            }
            r => r,
        }
    }

    #[cfg(target_os = "linux")]
    async fn send_batch<T: Outgoing + Sync>(&self, batch: &[T]) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        use tokio::io::Interest;
        let fd = self.as_raw_fd();
        let (mut done, mut first_error) = (0, None);
        while done < batch.len() {
            let rest = &batch[done..];
            let sent = self
                .async_io(Interest::WRITABLE, || super::linux_udp::send(fd, rest))
                .await?;
            done += sent.datagrams;
            if let Some(e) = sent.error {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
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

    /// Datagrams of varied sizes and contents: runs of equal ones (GSO material), a shorter
    /// one closing a run, and one to a second receiver in the middle.
    fn mixed_batch(to: SocketAddr, other: SocketAddr) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut batch = Vec::new();
        for i in 0..40u8 {
            let dest = if i == 17 { other } else { to };
            let len = if i % 13 == 12 { 700 } else { 4166 };
            batch.push((dest, vec![i; len]));
        }
        batch
    }

    /// Receives with `recv_batch` until `want` datagrams arrived.
    async fn recv_all<U: UdpSocket>(socket: &U, want: usize) -> Vec<(Vec<u8>, SocketAddr)> {
        let mut batch = RecvBatch::new(socket.batch_slots());
        let mut got = Vec::new();
        while got.len() < want {
            socket.recv_batch(&mut batch).await.unwrap();
            got.extend(batch.iter().map(|(d, from)| (d.to_vec(), from)));
        }
        got
    }

    async fn bound() -> tokio::net::UdpSocket {
        let socket = TokioNet
            .bind_udp("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        socket.set_buffer_sizes(4 << 20).unwrap();
        socket
    }

    #[tokio::test]
    async fn batches_arrive_whole_and_in_order() {
        let (tx, rx, other) = (bound().await, bound().await, bound().await);
        rx.enable_receive_offload();
        let (to, elsewhere) = (
            UdpSocket::local_addr(&rx).unwrap(),
            UdpSocket::local_addr(&other).unwrap(),
        );
        let batch = mixed_batch(to, elsewhere);
        tx.send_batch(&batch).await.unwrap();
        let from = UdpSocket::local_addr(&tx).unwrap();
        let want: Vec<(Vec<u8>, SocketAddr)> = batch
            .iter()
            .filter(|(d, _)| *d == to)
            .map(|(_, bytes)| (bytes.clone(), from))
            .collect();
        assert_eq!(recv_all(&rx, want.len()).await, want);
        // The receiver without offload gets the same datagrams one by one.
        let mut buf = vec![0u8; 65_536];
        let (n, source) = UdpSocket::recv_from(&other, &mut buf).await.unwrap();
        assert_eq!((&buf[..n], source), (&[17u8; 4166][..], from));
        let mut batch = RecvBatch::new(rx.batch_slots());
        assert_eq!(rx.try_recv_batch(&mut batch).await.unwrap(), 0);
        assert!(batch.is_empty());
    }

    /// A socket with only the required methods, to exercise the trait's defaults (what the
    /// simulator's socket uses).
    struct Plain(tokio::net::UdpSocket);

    impl UdpSocket for Plain {
        fn local_addr(&self) -> io::Result<SocketAddr> {
            self.0.local_addr()
        }

        fn send_to(
            &self,
            buf: &[u8],
            to: SocketAddr,
        ) -> impl Future<Output = io::Result<usize>> + Send {
            self.0.send_to(buf, to)
        }

        fn recv_from(
            &self,
            buf: &mut [u8],
        ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send {
            self.0.recv_from(buf)
        }
    }

    #[tokio::test]
    async fn default_batches_go_one_datagram_at_a_time() {
        let (tx, rx, other) = (
            Plain(bound().await),
            Plain(bound().await),
            Plain(bound().await),
        );
        assert!(!rx.enable_receive_offload());
        assert_eq!(rx.batch_slots(), 1);
        let to = rx.local_addr().unwrap();
        let batch = mixed_batch(to, other.local_addr().unwrap());
        tx.send_batch(&batch).await.unwrap();
        let from = tx.local_addr().unwrap();
        let want: Vec<(Vec<u8>, SocketAddr)> = batch
            .iter()
            .filter(|(d, _)| *d == to)
            .map(|(_, bytes)| (bytes.clone(), from))
            .collect();
        let mut batch = RecvBatch::new(1);
        assert_eq!(rx.recv_batch(&mut batch).await.unwrap(), 1);
        let mut got: Vec<_> = batch.iter().map(|(d, f)| (d.to_vec(), f)).collect();
        while got.len() < want.len() {
            // Everything was sent before: the non-waiting receive finds each one queued.
            assert_eq!(rx.try_recv_batch(&mut batch).await.unwrap(), 1);
            got.extend(batch.iter().map(|(d, f)| (d.to_vec(), f)));
        }
        assert_eq!(got, want);
        assert_eq!(rx.try_recv_batch(&mut batch).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_refused_datagram_is_skipped_and_reported() {
        let (tx, rx) = (bound().await, bound().await);
        let to = UdpSocket::local_addr(&rx).unwrap();
        // An IPv6 destination from an IPv4 socket is refused; the rest still go out.
        let refused: SocketAddr = "[::1]:9".parse().unwrap();
        let batch = vec![
            (to, vec![1u8; 100]),
            (refused, vec![2u8; 100]),
            (to, vec![3u8; 100]),
        ];
        assert!(tx.send_batch(&batch).await.is_err());
        let got = recv_all(&rx, 2).await;
        assert_eq!(got.iter().map(|(d, _)| d[0]).collect::<Vec<_>>(), [1, 3]);
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
