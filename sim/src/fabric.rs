//! The fabric: how simulated UDP crosses turmoil.
//!
//! Turmoil delivers datagrams between its hosts' addresses, but a NAT must rewrite addresses
//! and private hosts need addresses turmoil does not know. So every host has one turmoil UDP
//! socket (on [`FABRIC_PORT`]) and every simulated datagram travels in an [`Envelope`] holding
//! its real source and destination. A host sends an envelope to its next hop (the destination
//! itself on the same network, else the network's gateway NAT); the next hop opens it and
//! delivers, translates or forwards it. Link faults that turmoil lacks (loss, duplication,
//! reordering, jitter) are applied here, on send, with the sending host's seeded generator.

use crate::trace;
use crate::world::{lock, NodeId, World, FABRIC_PORT, REORDER_DELAY};
use pilot::net::Rng;
use rand_core::Rng as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest envelope the fabric carries (UDP's limit plus the envelope header).
pub const MAX_ENVELOPE: usize = 65_535 + Envelope::HEADER;

/// A simulated datagram with its real addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The source as the receiver sees it (after any translation).
    pub src: SocketAddrV4,
    /// The destination.
    pub dst: SocketAddrV4,
    /// The datagram's bytes.
    pub payload: Vec<u8>,
}

impl Envelope {
    /// Bytes before the payload: source and destination, each 4 address + 2 port bytes.
    pub const HEADER: usize = 12;

    /// The bytes on the turmoil wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::HEADER + self.payload.len());
        for a in [self.src, self.dst] {
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        out.extend_from_slice(&self.payload);
        out
    }

    /// Parses bytes from the turmoil wire; `None` if they are too short.
    pub fn decode(bytes: &[u8]) -> Option<Envelope> {
        if bytes.len() < Self::HEADER {
            return None;
        }
        let addr = |at: usize| {
            let ip = Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
            SocketAddrV4::new(ip, u16::from_be_bytes([bytes[at + 4], bytes[at + 5]]))
        };
        Some(Envelope {
            src: addr(0),
            dst: addr(6),
            payload: bytes[Self::HEADER..].to_vec(),
        })
    }
}

/// One host's attachment to the fabric: its turmoil socket and its fault generator.
pub struct Fabric {
    world: Arc<World>,
    node: NodeId,
    socket: turmoil::net::UdpSocket,
    rng: Mutex<Rng>,
    alive: AtomicBool,
}

impl Fabric {
    /// Binds the fabric socket of `node`. Must run on that node's turmoil host.
    pub async fn bind(world: Arc<World>, node: NodeId) -> io::Result<Arc<Fabric>> {
        let socket = turmoil::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, FABRIC_PORT)).await?;
        let rng = Mutex::new(world.start_rng(node));
        Ok(Arc::new(Fabric {
            world,
            node,
            socket,
            rng,
            alive: AtomicBool::new(true),
        }))
    }

    /// The world.
    pub fn world(&self) -> &Arc<World> {
        &self.world
    }

    /// The node this fabric belongs to.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The node's name, for trace lines.
    pub fn name(&self) -> &str {
        &self.world.node(self.node).name
    }

    /// Whether the task receiving for this fabric still runs (it stops when its host crashes).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Waits for the next envelope, using `buf` (at least [`MAX_ENVELOPE`] bytes) to receive;
    /// returns it and the node that sent it (the previous hop). Undecodable datagrams and
    /// senders that are not nodes are skipped.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(Envelope, NodeId)> {
        loop {
            let (n, origin) = self.socket.recv_from(buf).await?;
            let hop = self.world.by_carrier(origin.ip());
            if let (Some(env), Some(hop)) = (Envelope::decode(&buf[..n]), hop) {
                return Ok((env, hop));
            }
        }
    }

    /// A guard that marks this fabric dead when dropped; the receiving task holds it, so a
    /// crash (which drops the host's tasks) is noticed by the next `SimNet` call.
    pub fn liveness(self: &Arc<Self>) -> LivenessGuard {
        LivenessGuard(self.clone())
    }

    /// Sends `env` to the node `next`, through the faults of that link.
    pub fn transmit(self: &Arc<Self>, env: Envelope, next: NodeId) {
        let world = &self.world;
        let trace = world.trace();
        if world.is_silenced(self.node) {
            let why = format!("{} sender crashing", trace::packet(&env.payload));
            trace.event(self.name(), "drop", env.src, env.dst, why);
            return;
        }
        if world.is_blocked(self.node, next) {
            let why = format!("{} partitioned", trace::packet(&env.payload));
            trace.event(self.name(), "drop", env.src, env.dst, why);
            return;
        }
        let faults = world.link_faults(self.node, next);
        let mut rng = lock(&self.rng);
        if chance(&mut rng, faults.loss) {
            let why = format!("{} lost", trace::packet(&env.payload));
            trace.event(self.name(), "drop", env.src, env.dst, why);
            return;
        }
        let copies = if chance(&mut rng, faults.duplicate) {
            trace.event(
                self.name(),
                "dup",
                env.src,
                env.dst,
                trace::packet(&env.payload),
            );
            2
        } else {
            1
        };
        let to = SocketAddr::from((world.node(next).carrier, FABRIC_PORT));
        let bytes = env.encode();
        for _ in 0..copies {
            let mut delay = Duration::ZERO;
            if !faults.jitter.is_zero() {
                let micros = faults.jitter.as_micros() as u64;
                delay += Duration::from_micros(rng.next_u64() % (micros + 1));
            }
            if chance(&mut rng, faults.reorder) {
                delay += REORDER_DELAY;
            }
            if delay.is_zero() {
                self.put_on_link(&env, &bytes, to);
            } else {
                let (me, env, bytes) = (self.clone(), env.clone(), bytes.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    me.put_on_link(&env, &bytes, to);
                });
            }
        }
    }
}

impl Fabric {
    /// Hands one encoded envelope to turmoil: the single place a simulated datagram goes
    /// onto a link, so the capture sees exactly what the network carries.
    fn put_on_link(&self, env: &Envelope, bytes: &[u8], to: SocketAddr) {
        // Errors only mean turmoil has no link there; the datagram is lost like any other.
        if self.socket.try_send_to(bytes, to).is_ok() {
            let capture = self.world.capture();
            capture.record(trace::now(), env.src, env.dst, &env.payload);
        }
    }
}

/// See [`Fabric::liveness`].
pub struct LivenessGuard(Arc<Fabric>);

impl Drop for LivenessGuard {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::Relaxed);
    }
}

/// True with probability `p`, drawing from `rng` only when `p` is positive (so that a fault on
/// one link does not shift the random stream of the others).
fn chance(rng: &mut Rng, p: f64) -> bool {
    if p <= 0.0 {
        return false;
    }
    let x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    x < p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_short_input_is_refused() {
        let env = Envelope {
            src: "10.1.0.2:4000".parse().unwrap(),
            dst: "192.168.0.1:7000".parse().unwrap(),
            payload: b"hi".to_vec(),
        };
        assert_eq!(Envelope::decode(&env.encode()), Some(env));
        assert_eq!(Envelope::decode(&[0; 11]), None);
    }
}
