//! TCP on a simulated host: turmoil streams, with the addresses each end should see.

use super::SimNet;
use crate::trace::{self, Trace};
use crate::world::PROXY_PORT;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// A proxy request: the destination's address and port.
pub(crate) const PROXY_REQUEST: usize = 6;
/// Proxy reply: connected.
pub(crate) const PROXY_OK: u8 = 0;
/// Proxy reply: the destination refused or cannot be reached.
pub(crate) const PROXY_REFUSED: u8 = 1;

pub(crate) fn encode_proxy_request(dst: SocketAddrV4) -> [u8; PROXY_REQUEST] {
    let mut out = [0u8; PROXY_REQUEST];
    out[..4].copy_from_slice(&dst.ip().octets());
    out[4..].copy_from_slice(&dst.port().to_be_bytes());
    out
}

pub(crate) fn decode_proxy_request(b: [u8; PROXY_REQUEST]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        u16::from_be_bytes([b[4], b[5]]),
    )
}

/// Opens a stream from `net`'s host to `dst`: directly when `dst` is on the host's network,
/// else through the gateway's proxy. `traced` streams record their writes in the trace.
pub(crate) async fn connect(
    net: &SimNet,
    dst: SocketAddrV4,
    traced: bool,
) -> io::Result<SimStream> {
    let world = net.world();
    let me = world.node(net.node());
    let unreachable = || {
        io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("{dst} refused or unreachable from {}", me.name),
        )
    };
    let hop = world.next_hop(me.net, *dst.ip()).ok_or_else(unreachable)?;
    let carrier = world.node(hop).carrier;
    let stream = if world.addr_on(hop, me.net) == Some(*dst.ip()) {
        turmoil::net::TcpStream::connect((carrier, dst.port())).await?
    } else {
        let mut s = turmoil::net::TcpStream::connect((carrier, PROXY_PORT))
            .await
            .map_err(|_| unreachable())?;
        s.write_all(&encode_proxy_request(dst)).await?;
        let mut status = [0u8];
        s.read_exact(&mut status).await.map_err(|_| unreachable())?;
        if status[0] != PROXY_OK {
            return Err(unreachable());
        }
        s
    };
    let local = SocketAddr::from((me.addr, stream.local_addr()?.port()));
    let trace = traced.then(|| (world.trace().clone(), me.name.clone()));
    if let Some((t, name)) = &trace {
        t.event(name, "conn", local, dst, "");
    }
    Ok(SimStream {
        inner: stream,
        local,
        peer: SocketAddr::V4(dst),
        trace,
    })
}

/// Opens an untraced stream (for the NAT proxy, which relays bytes already traced at the
/// ends); returns the turmoil stream and this end's simulated address.
pub(crate) async fn connect_raw(
    net: &SimNet,
    dst: SocketAddrV4,
) -> io::Result<(turmoil::net::TcpStream, SocketAddr)> {
    let s = connect(net, dst, false).await?;
    Ok((s.inner, s.local))
}

/// A TCP stream of a [`SimNet`]: this end's and the peer's simulated addresses, and a trace
/// line per write.
pub struct SimStream {
    inner: turmoil::net::TcpStream,
    local: SocketAddr,
    peer: SocketAddr,
    trace: Option<(Trace, String)>,
}

impl std::fmt::Debug for SimStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimStream")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .finish()
    }
}

impl pilot::net::TcpStream for SimStream {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some((t, name))) = (&result, &this.trace) {
            if *n > 0 {
                t.event(
                    name,
                    "tcp",
                    this.local,
                    this.peer,
                    trace::packet(&buf[..*n]),
                );
            }
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP listener of a [`SimNet`]. It accepts connections from its own network only: a
/// private host cannot be reached from outside its NAT, as with real NATs.
pub struct SimListener {
    net: SimNet,
    inner: turmoil::net::TcpListener,
    local: SocketAddr,
}

impl std::fmt::Debug for SimListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimListener")
            .field("local", &self.local)
            .finish()
    }
}

impl SimListener {
    pub(super) async fn bind(net: SimNet, requested: SocketAddrV4) -> io::Result<Self> {
        let inner =
            turmoil::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, requested.port())).await?;
        let port = inner.local_addr()?.port();
        Ok(SimListener {
            net,
            inner,
            local: SocketAddr::from((*requested.ip(), port)),
        })
    }
}

impl pilot::net::TcpListener for SimListener {
    type Stream = SimStream;

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    async fn accept(&self) -> io::Result<(SimStream, SocketAddr)> {
        let world = self.net.world();
        let me = world.node(self.net.node());
        loop {
            let (stream, origin) = self.inner.accept().await?;
            let Some(peer) = self.net.peer_on_my_net(origin) else {
                // Someone outside this host's network reached its turmoil address directly;
                // a real NAT would never have let that connection in.
                drop(stream);
                continue;
            };
            let local = SocketAddr::from((me.addr, self.local.port()));
            let stream = SimStream {
                inner: stream,
                local,
                peer: SocketAddr::V4(peer),
                trace: Some((world.trace().clone(), me.name.clone())),
            };
            return Ok((stream, SocketAddr::V4(peer)));
        }
    }
}
