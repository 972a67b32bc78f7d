//! The NAT box as a running device: a [`NatTable`] on a simulated host.
//!
//! The box receives every envelope addressed through it on its fabric socket. From the inside
//! it translates the source and forwards outside (or hairpins back in); from the outside it
//! asks the table whether the packet gets in and forwards it to the inside host. Outbound TCP
//! from the LAN arrives at its proxy port and leaves from the box's own outside address.

use super::{InboundDrop, NatTable};
use crate::fabric::{Envelope, Fabric, MAX_ENVELOPE};
use crate::net::decode_proxy_request;
use crate::net::{tcp_connect_raw, SimNet, PROXY_OK, PROXY_REFUSED, PROXY_REQUEST};
use crate::trace::{self, now};
use crate::world::{NatSide, NodeId, World, PROXY_PORT};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The software of a NAT box host; turmoil restarts it from scratch after a crash, so a
/// rebooted box has forgotten every mapping.
pub async fn run(world: Arc<World>, node: NodeId) -> turmoil::Result {
    let side = world
        .node(node)
        .nat
        .clone()
        .ok_or("nat::device::run on a node that is not a NAT box")?;
    let fabric = Fabric::bind(world.clone(), node).await?;
    let table = NatTable::new(side.config, world.node(node).addr, world.start_rng(node));
    tokio::spawn(proxy(world.clone(), node, side.lan));
    let mut nat = NatBox {
        fabric,
        table,
        side,
    };
    let mut buf = vec![0u8; MAX_ENVELOPE];
    loop {
        let (env, hop) = nat.fabric.recv(&mut buf).await?;
        nat.handle(env, hop);
    }
}

struct NatBox {
    fabric: Arc<Fabric>,
    table: NatTable,
    side: NatSide,
}

impl NatBox {
    fn world(&self) -> &World {
        self.fabric.world()
    }

    fn outside_addr(&self) -> Ipv4Addr {
        self.world().node(self.fabric.node()).addr
    }

    fn drop_packet(&self, env: &Envelope, why: impl std::fmt::Display) {
        let detail = format!("{} {why}", trace::packet(&env.payload));
        self.world()
            .trace()
            .event(self.fabric.name(), "drop", env.src, env.dst, detail);
    }

    /// Records a translation of `env`: its addresses before, what happened, its bytes.
    fn note(&self, env: &Envelope, what: String) {
        let detail = format!("{what} {}", trace::packet(&env.payload));
        self.world()
            .trace()
            .event(self.fabric.name(), "nat", env.src, env.dst, detail);
    }

    fn handle(&mut self, env: Envelope, hop: NodeId) {
        let from_inside = self.world().node(hop).net == self.side.lan;
        if from_inside {
            if *env.dst.ip() == self.side.inside_addr {
                self.drop_packet(&env, "addressed to the box");
            } else if *env.dst.ip() == self.outside_addr() {
                self.hairpin(env);
            } else {
                self.outbound(env);
            }
        } else if *env.dst.ip() == self.outside_addr() {
            self.inbound(env);
        } else {
            self.drop_packet(&env, "not for this box");
        }
    }

    fn outbound(&mut self, env: Envelope) {
        let out = match self.table.outbound(env.src, env.dst, now()) {
            Ok(out) => out,
            Err(e) => return self.drop_packet(&env, e),
        };
        let new = if out.created { " new" } else { "" };
        self.note(&env, format!("as {}{new}", out.public));
        let world = self.fabric.world().clone();
        let outside = world.node(self.fabric.node()).net;
        let env = Envelope {
            src: out.public,
            ..env
        };
        match world.next_hop(outside, *env.dst.ip()) {
            Some(next) => self.fabric.transmit(env, next),
            None => self.drop_packet(&env, "unroutable"),
        }
    }

    fn inbound(&mut self, env: Envelope) {
        match self.table.inbound(env.dst.port(), env.src, now()) {
            Ok(inb) => {
                self.note(&env, format!("to {}", inb.inside));
                self.forward_inside(Envelope {
                    dst: inb.inside,
                    ..env
                });
            }
            Err(InboundDrop::NoMapping) => self.drop_packet(&env, "no mapping"),
            Err(InboundDrop::Filtered) => self.drop_packet(&env, "filtered"),
        }
    }

    /// An inside host sent to the box's own public address: loop it back in, with the
    /// translated source (RFC 4787 REQ-9), if the box hairpins at all.
    fn hairpin(&mut self, env: Envelope) {
        if !self.table.config().hairpinning {
            return self.drop_packet(&env, "no hairpinning");
        }
        let out = match self.table.outbound(env.src, env.dst, now()) {
            Ok(out) => out,
            Err(e) => return self.drop_packet(&env, e),
        };
        let translated = Envelope {
            src: out.public,
            ..env.clone()
        };
        match self.table.inbound(env.dst.port(), out.public, now()) {
            Ok(inb) => {
                let detail = format!("hairpin as {} to {}", out.public, inb.inside);
                self.note(&env, detail);
                self.forward_inside(Envelope {
                    dst: inb.inside,
                    ..translated
                });
            }
            Err(e) => self.drop_packet(&translated, format!("hairpin {e}")),
        }
    }

    fn forward_inside(&self, env: Envelope) {
        match self.world().next_hop(self.side.lan, *env.dst.ip()) {
            Some(next) if next != self.fabric.node() => self.fabric.transmit(env, next),
            _ => self.drop_packet(&env, "no such inside host"),
        }
    }
}

/// Proxies TCP connections from the LAN: reads the destination, connects from the box's
/// outside address, answers ok or refused, then relays bytes both ways.
async fn proxy(world: Arc<World>, node: NodeId, lan: usize) -> std::io::Result<()> {
    let listener = turmoil::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, PROXY_PORT)).await?;
    loop {
        let (mut inside, origin) = listener.accept().await?;
        let member = world
            .by_carrier(origin.ip())
            .filter(|&m| world.node(m).net == lan);
        let Some(member) = member else {
            continue; // not from this box's LAN: refuse by closing
        };
        let client = SocketAddrV4::new(world.node(member).addr, origin.port());
        let world = world.clone();
        tokio::spawn(async move {
            let mut request = [0u8; PROXY_REQUEST];
            if inside.read_exact(&mut request).await.is_err() {
                return;
            }
            let dst = decode_proxy_request(request);
            let net = SimNet::new(world.clone(), node);
            match tcp_connect_raw(&net, dst).await {
                Ok((mut outside, public)) => {
                    let name = &world.node(node).name;
                    world
                        .trace()
                        .event(name, "nat", client, dst, format!("tcp as {public}"));
                    if inside.write_all(&[PROXY_OK]).await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
                    }
                }
                Err(_) => {
                    let _ = inside.write_all(&[PROXY_REFUSED]).await;
                }
            }
        });
    }
}
