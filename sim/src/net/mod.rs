//! [`SimNet`]: the [`pilot::net::Network`] of one simulated host.
//!
//! UDP sockets are virtual: each host has one endpoint stack that owns the host's fabric
//! attachment and hands arriving envelopes to the socket bound on their destination port.
//! TCP rides on turmoil's TCP: directly between hosts on the same network, and through the
//! gateway's proxy for a private host reaching outside, so the server sees the NAT's public
//! address as the peer.

mod tcp;
mod udp;

pub(crate) use tcp::{
    connect_raw as tcp_connect_raw, decode_proxy_request, PROXY_OK, PROXY_REFUSED, PROXY_REQUEST,
};
pub use tcp::{SimListener, SimStream};
pub use udp::SimUdpSocket;

use crate::fabric::{Envelope, Fabric, MAX_ENVELOPE};
use crate::trace;
use crate::world::{lock, NodeId, World};
use pilot::net::Network;
use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Datagrams waiting in one socket (beyond this they are dropped, as a full socket buffer does).
const SOCKET_QUEUE: usize = 1024;
/// Ephemeral ports for binds to port 0.
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;

/// One simulated host's view of the network; a cheap handle. Use it only from that host's
/// software (its turmoil host or client), never from another host's.
#[derive(Clone, Debug)]
pub struct SimNet {
    world: Arc<World>,
    node: NodeId,
}

impl SimNet {
    /// The network of node `node` of `world`.
    pub fn new(world: Arc<World>, node: NodeId) -> Self {
        SimNet { world, node }
    }

    /// The world this host lives in.
    pub fn world(&self) -> &Arc<World> {
        &self.world
    }

    /// The host's node.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The host's own address on its network.
    pub fn addr(&self) -> Ipv4Addr {
        self.world.node(self.node).addr
    }

    /// The host's endpoint stack for this incarnation, started on first use.
    pub(crate) async fn endpoint(&self) -> io::Result<Arc<Endpoint>> {
        if self.world.node(self.node).nat.is_some() {
            // The box's device owns its fabric socket; it has no UDP sockets of its own.
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a NAT box has no UDP sockets",
            ));
        }
        if let Some(ep) = lock(&self.world.endpoints)
            .get(&self.node)
            .and_then(|w| w.upgrade())
        {
            if ep.fabric.is_alive() {
                return Ok(ep);
            }
        }
        // No await between the lookup above and the insert below completes later than this
        // one (turmoil binds synchronously), so two callers cannot both start a stack.
        let fabric = Fabric::bind(self.world.clone(), self.node).await?;
        let ep = Arc::new(Endpoint {
            fabric,
            sockets: Mutex::default(),
            next_port: Mutex::new(*EPHEMERAL.start()),
        });
        lock(&self.world.endpoints).insert(self.node, Arc::downgrade(&ep));
        tokio::spawn(ep.clone().receive());
        Ok(ep)
    }
}

/// Refuses addresses the simulated internet cannot carry.
pub(crate) fn v4(addr: SocketAddr) -> io::Result<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(_) => Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "the simulated internet is IPv4 only",
        )),
    }
}

/// A datagram as a socket receives it: bytes and source.
pub(crate) type Datagram = (Vec<u8>, SocketAddr);
type Inbox = mpsc::Sender<Datagram>;

/// A host's UDP stack: its fabric attachment and its bound sockets.
pub(crate) struct Endpoint {
    fabric: Arc<Fabric>,
    sockets: Mutex<BTreeMap<u16, Inbox>>,
    next_port: Mutex<u16>,
}

impl Endpoint {
    fn world(&self) -> &World {
        self.fabric.world()
    }

    fn addr(&self) -> Ipv4Addr {
        self.world().node(self.fabric.node()).addr
    }

    /// Binds `port` (0 = any free ephemeral port); returns the port and the socket's inbox.
    fn bind(&self, port: u16) -> io::Result<(u16, mpsc::Receiver<Datagram>)> {
        let mut sockets = lock(&self.sockets);
        let port = match port {
            0 => self.ephemeral(&sockets)?,
            p if sockets.contains_key(&p) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("UDP port {p} is in use"),
                ))
            }
            p => p,
        };
        let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
        sockets.insert(port, tx);
        Ok((port, rx))
    }

    /// The next free ephemeral port, going round the range like a real stack.
    fn ephemeral(&self, sockets: &BTreeMap<u16, Inbox>) -> io::Result<u16> {
        let mut next = lock(&self.next_port);
        for _ in EPHEMERAL {
            let p = *next;
            *next = if p == *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                p + 1
            };
            if !sockets.contains_key(&p) {
                return Ok(p);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "ephemeral UDP ports exhausted",
        ))
    }

    fn unbind(&self, port: u16) {
        lock(&self.sockets).remove(&port);
    }

    /// Sends a datagram from local `port` to `to`.
    fn send(&self, port: u16, payload: &[u8], to: SocketAddrV4) {
        // Like a real stack, a datagram to loopback comes from loopback.
        let ip = if to.ip().is_loopback() {
            *to.ip()
        } else {
            self.addr()
        };
        let src = SocketAddrV4::new(ip, port);
        let world = self.world();
        let name = self.fabric.name();
        world
            .trace()
            .event(name, "send", src, to, trace::packet(payload));
        let env = Envelope {
            src,
            dst: to,
            payload: payload.to_vec(),
        };
        if to.ip() == &self.addr() || to.ip().is_loopback() {
            self.deliver(env);
            return;
        }
        let net = world.node(self.fabric.node()).net;
        match world.next_hop(net, *to.ip()) {
            Some(next) => self.fabric.transmit(env, next),
            None => {
                let why = format!("{} unroutable", trace::packet(&env.payload));
                world.trace().event(name, "drop", env.src, env.dst, why);
            }
        }
    }

    /// Hands an arrived envelope to the socket bound on its destination port.
    fn deliver(&self, env: Envelope) {
        let trace = self.world().trace();
        let name = self.fabric.name();
        let detail = trace::packet(&env.payload);
        let (src, dst) = (env.src, env.dst);
        let Some(inbox) = lock(&self.sockets).get(&dst.port()).cloned() else {
            return trace.event(name, "drop", src, dst, format!("{detail} port unreachable"));
        };
        match inbox.try_send((env.payload, SocketAddr::V4(src))) {
            Ok(()) => trace.event(name, "recv", src, dst, detail),
            Err(_) => trace.event(
                name,
                "drop",
                src,
                dst,
                format!("{detail} socket queue full"),
            ),
        }
    }

    /// The receiving task of the host: runs until the host's software stops.
    async fn receive(self: Arc<Self>) {
        let _alive = self.fabric.liveness();
        let mut buf = vec![0u8; MAX_ENVELOPE];
        while let Ok((env, _hop)) = self.fabric.recv(&mut buf).await {
            if env.dst.ip() == &self.addr() {
                self.deliver(env);
            } else {
                let why = format!("{} not for this host", trace::packet(&env.payload));
                self.world()
                    .trace()
                    .event(self.fabric.name(), "drop", env.src, env.dst, why);
            }
        }
    }
}

impl Network for SimNet {
    type Udp = SimUdpSocket;
    type Listener = SimListener;
    type Stream = SimStream;

    async fn bind_udp(&self, addr: SocketAddr) -> io::Result<SimUdpSocket> {
        let requested = v4(addr)?;
        self.check_local(*requested.ip())?;
        let ep = self.endpoint().await?;
        let (port, rx) = ep.bind(requested.port())?;
        Ok(SimUdpSocket::new(
            ep,
            SocketAddr::from((*requested.ip(), port)),
            port,
            rx,
        ))
    }

    async fn bind_tcp(&self, addr: SocketAddr) -> io::Result<SimListener> {
        let requested = v4(addr)?;
        self.check_local(*requested.ip())?;
        SimListener::bind(self.clone(), requested).await
    }

    async fn connect_tcp(&self, addr: SocketAddr) -> io::Result<SimStream> {
        tcp::connect(self, v4(addr)?, true).await
    }

    /// The host's one address on its network (private behind a NAT box).
    fn local_addresses(&self) -> Vec<std::net::IpAddr> {
        vec![self.addr().into()]
    }
}

impl SimNet {
    /// A host can bind its own address, the unspecified address or loopback.
    fn check_local(&self, ip: Ipv4Addr) -> io::Result<()> {
        if ip.is_unspecified() || ip.is_loopback() || ip == self.addr() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "{ip} is not an address of {}",
                    self.world.node(self.node).name
                ),
            ))
        }
    }

    /// The address of the turmoil peer `origin` on this host's network.
    pub(crate) fn peer_on_my_net(&self, origin: SocketAddr) -> Option<SocketAddrV4> {
        let who = self.world.by_carrier(origin.ip())?;
        let net = self.world.node(self.node).net;
        let ip = self.world.addr_on(who, net)?;
        Some(SocketAddrV4::new(ip, origin.port()))
    }
}
