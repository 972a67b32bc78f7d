//! The in-test network tunnels talk through: NAT boxes (RFC 4787 mapping and filtering), a
//! beacon modelled with the wire codecs, a registry as a table, virtual time stepped to the
//! next deadline. No runtime, no clock, seeded randomness.

use crate::crypto::{Identity, LocalKeys, RegistryKey};
use crate::net::seeded_rng;
use crate::tunnel::*;
use crate::wire::tunnel::PILA;
use crate::wire::{Addr, BeaconMessage, Header, Protocol};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

pub(super) const BEACON: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 9001);
pub(super) const ATTACKER: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 66)), 6666);
pub(super) const LATENCY: Duration = Duration::from_millis(10);

/// RFC 4787 presets (`DESIGN.md`, "The NAT model").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NatKind {
    Open,
    FullCone,
    RestrictedCone,
    PortRestrictedCone,
    Symmetric,
}

/// NAT mappings expire this long after the last outbound packet (`DESIGN.md`).
pub(super) const MAPPING_LIFETIME: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(super) struct Mapping {
    pub(super) last_out: Instant,
    pub(super) internal: SocketAddr,
    /// The remote this mapping is for, under address-and-port-dependent mapping.
    pub(super) remote: Option<SocketAddr>,
    pub(super) port: u16,
    /// Remotes sent to, and when last: filtering state expires per remote, like conntrack.
    pub(super) contacted: Vec<(SocketAddr, Instant)>,
}

#[derive(Debug)]
pub(super) struct NatBox {
    pub(super) kind: NatKind,
    pub(super) ip: IpAddr,
    pub(super) next_port: u16,
    pub(super) mappings: Vec<Mapping>,
}

impl NatBox {
    pub(super) fn outbound(
        &mut self,
        now: Instant,
        internal: SocketAddr,
        remote: SocketAddr,
    ) -> SocketAddr {
        self.expire(now);
        let dependent = self.kind == NatKind::Symmetric;
        let found = self
            .mappings
            .iter_mut()
            .find(|m| m.internal == internal && (!dependent || m.remote == Some(remote)));
        let mapping = match found {
            Some(m) => m,
            None => {
                self.next_port += 7;
                self.mappings.push(Mapping {
                    last_out: now,
                    internal,
                    remote: dependent.then_some(remote),
                    port: self.next_port,
                    contacted: Vec::new(),
                });
                self.mappings.last_mut().unwrap()
            }
        };
        mapping.last_out = now;
        mapping.contacted.retain(|(r, _)| *r != remote);
        mapping.contacted.push((remote, now));
        SocketAddr::new(self.ip, mapping.port)
    }

    pub(super) fn expire(&mut self, now: Instant) {
        let live = |t: Instant| now.saturating_duration_since(t) < MAPPING_LIFETIME;
        self.mappings.retain(|m| live(m.last_out));
        for m in &mut self.mappings {
            m.contacted.retain(|(_, t)| live(*t));
        }
    }

    pub(super) fn inbound(
        &mut self,
        now: Instant,
        port: u16,
        remote: SocketAddr,
    ) -> Option<SocketAddr> {
        self.expire(now);
        let m = self.mappings.iter().find(|m| m.port == port)?;
        let admitted = match self.kind {
            NatKind::Open | NatKind::FullCone => true,
            NatKind::RestrictedCone => m.contacted.iter().any(|(c, _)| c.ip() == remote.ip()),
            NatKind::PortRestrictedCone | NatKind::Symmetric => {
                m.contacted.iter().any(|(c, _)| *c == remote)
            }
        };
        admitted.then_some(m.internal)
    }

    /// The NAT reboots or rebinds: every mapping is lost, new ones get new ports.
    pub(super) fn rebind(&mut self) {
        self.mappings.clear();
        self.next_port += 1000;
    }
}

pub(super) struct Host {
    pub(super) node: u32,
    pub(super) identity: Identity,
    pub(super) local: SocketAddr,
    pub(super) nat: Option<NatBox>,
    pub(super) tunnel: Tunnel,
    /// What the router got: (peer, payload, relayed).
    pub(super) inbox: Vec<(u32, Vec<u8>, bool)>,
    pub(super) events: Vec<TunnelEvent>,
    /// Answer registry lookups and resolves at once.
    pub(super) auto_registry: bool,
    pub(super) auto_resolve: bool,
    /// Public endpoint as the registry holds it.
    pub(super) real_addr: Option<SocketAddr>,
}

/// The beacon: observed endpoints, punch coordination, relay (`spec/wire.md` §6).
pub(super) struct Beacon {
    pub(super) observed: std::collections::BTreeMap<u32, SocketAddr>,
    /// Answer Punch Requests and relay; off, the beacon only answers Discovers.
    pub(super) helps: bool,
}

impl Default for Beacon {
    fn default() -> Self {
        Beacon {
            observed: Default::default(),
            helps: true,
        }
    }
}

impl Beacon {
    pub(super) fn handle(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        let Ok(message) = BeaconMessage::decode(bytes) else {
            return;
        };
        let mut send = |to: SocketAddr, m: BeaconMessage<'_>| {
            let mut buf = Vec::new();
            m.encode(&mut buf);
            out.push((to, buf));
        };
        match message {
            BeaconMessage::Discover { node, .. } => {
                self.observed.insert(node, from);
                send(
                    from,
                    BeaconMessage::DiscoverReply {
                        endpoint: from,
                        proof: None,
                    },
                );
            }
            _ if !self.helps => {}
            BeaconMessage::PunchRequest { requester, target } => {
                self.observed.insert(requester, from);
                if let Some(&t) = self.observed.get(&target) {
                    send(from, BeaconMessage::PunchCommand { endpoint: t });
                    send(t, BeaconMessage::PunchCommand { endpoint: from });
                }
            }
            BeaconMessage::Relay {
                sender,
                destination,
                inner,
            } => {
                if let Some(&to) = self.observed.get(&destination) {
                    send(to, BeaconMessage::RelayDeliver { sender, inner });
                }
            }
            _ => {}
        }
    }
}

pub(super) struct Net {
    pub(super) now: Instant,
    pub(super) hosts: Vec<Host>,
    pub(super) beacon: Beacon,
    pub(super) has_beacon: bool,
    pub(super) in_flight: VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    /// Drop every datagram that neither comes from nor goes to the beacon.
    pub(super) direct_blocked: bool,
    /// Drop everything this node sends.
    pub(super) mute: Option<u32>,
    /// Drop each datagram with this probability (drawn from `loss_rng`).
    pub(super) loss: f64,
    pub(super) loss_rng: crate::net::Rng,
    /// Datagrams sent by tunnels, as (from node, to, bytes).
    pub(super) log: Vec<(u32, SocketAddr, Vec<u8>)>,
    pub(super) plain: Vec<u8>,
}

pub(super) fn config(beacon: bool) -> TunnelConfig {
    TunnelConfig {
        beacon: beacon.then_some(BEACON),
        ..TunnelConfig::default()
    }
}

impl Net {
    pub(super) fn new(seed: u64, nats: &[NatKind], beacon: bool) -> Self {
        Self::with_config(seed, nats, config(beacon))
    }

    pub(super) fn with_config(seed: u64, nats: &[NatKind], cfg: TunnelConfig) -> Self {
        let mut rng = seeded_rng(seed);
        let now = Instant::now();
        let hosts = nats
            .iter()
            .enumerate()
            .map(|(i, &kind)| {
                let node = i as u32 + 1;
                let identity = Identity::generate(&mut rng);
                let keys = LocalKeys::generate(identity.clone(), &mut rng);
                let i = i as u8 + 1;
                let (local, nat) = if kind == NatKind::Open {
                    (SocketAddr::from(([198, 51, 100, i], 4000)), None)
                } else {
                    let nat = NatBox {
                        kind,
                        ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, i)),
                        next_port: 20_000 + u16::from(i) * 100,
                        mappings: Vec::new(),
                    };
                    (SocketAddr::from(([10, 0, i, 1], 4000)), Some(nat))
                };
                let tunnel = Tunnel::new(node, keys, cfg.clone(), seeded_rng(seed ^ u64::from(i)));
                Host {
                    node,
                    identity,
                    local,
                    real_addr: nat.is_none().then_some(local),
                    nat,
                    tunnel,
                    inbox: Vec::new(),
                    events: Vec::new(),
                    auto_registry: true,
                    auto_resolve: true,
                }
            })
            .collect();
        let mut net = Net {
            now,
            hosts,
            beacon: Beacon::default(),
            has_beacon: cfg.beacon.is_some(),
            in_flight: VecDeque::new(),
            direct_blocked: false,
            mute: None,
            loss: 0.0,
            loss_rng: seeded_rng(seed.wrapping_add(1)),
            log: Vec::new(),
            plain: vec![0; 65_536],
        };
        if net.has_beacon {
            // Register with the beacon from the tunnel socket; the registry learns real_addr.
            for h in 0..net.hosts.len() {
                net.hosts[h].tunnel.discover_request(now);
            }
            net.run_for(Duration::from_millis(100));
        }
        net
    }

    pub(super) fn idx(&self, node: u32) -> usize {
        node as usize - 1
    }

    pub(super) fn host(&mut self, node: u32) -> &mut Host {
        let i = self.idx(node);
        &mut self.hosts[i]
    }

    pub(super) fn registry_key(&self, node: u32) -> RegistryKey {
        self.hosts
            .get(node as usize - 1)
            .map_or(RegistryKey::NotRegistered, |h| {
                RegistryKey::Known(h.identity.public_key())
            })
    }

    /// Moves everything the tunnels want to send onto the wire, and handles their events,
    /// until nothing is left (handling an event can produce datagrams).
    pub(super) fn pump(&mut self) {
        while self.pump_once() {}
    }

    pub(super) fn pump_once(&mut self) -> bool {
        let mut busy = false;
        for h in 0..self.hosts.len() {
            while let Some(t) = self.hosts[h].tunnel.poll_transmit() {
                busy = true;
                let host = &mut self.hosts[h];
                let now = self.now;
                let from = match host.nat.as_mut() {
                    Some(nat) => nat.outbound(now, host.local, t.to),
                    None => host.local,
                };
                if std::env::var_os("TUNNEL_TRACE").is_some() {
                    let summary = crate::wire::Datagram::decode(&t.bytes)
                        .map_or_else(|e| e.to_string(), |d| d.to_string());
                    eprintln!("{:?} {} {from}>{} {summary}", self.now, host.node, t.to);
                }
                self.log.push((host.node, t.to, t.bytes.clone()));
                let lost = self.loss > 0.0 && {
                    use rand_core::Rng as _;
                    (self.loss_rng.next_u32() as f64) < self.loss * f64::from(u32::MAX)
                };
                let muted = self.mute == Some(host.node);
                let blocked = lost || muted || (self.direct_blocked && t.to != BEACON);
                if !blocked {
                    self.in_flight
                        .push_back((self.now + LATENCY, from, t.to, t.bytes.clone()));
                }
                host.tunnel.recycle(t.bytes);
            }
            while let Some(event) = self.hosts[h].tunnel.poll_event() {
                busy = true;
                self.hosts[h].events.push(event);
                let now = self.now;
                match event {
                    TunnelEvent::NeedRegistryKey(node) if self.hosts[h].auto_registry => {
                        let key = self.registry_key(node);
                        self.answer_registry(h, node, key);
                    }
                    TunnelEvent::NeedResolve(node) if self.hosts[h].auto_resolve => {
                        let addr = self.hosts.get(node as usize - 1).and_then(|p| p.real_addr);
                        let _ = self.hosts[h].tunnel.add_peer(now, node, addr);
                    }
                    TunnelEvent::PublicEndpoint(addr) => self.hosts[h].real_addr = Some(addr),
                    _ => {}
                }
            }
        }
        busy
    }

    /// The daemon's registry answer, and the packets it lets through.
    pub(super) fn answer_registry(&mut self, h: usize, node: u32, key: RegistryKey) {
        let now = self.now;
        let host = &mut self.hosts[h];
        host.tunnel.on_registry_key(now, node, key);
        while let Some(r) = host.tunnel.poll_received(now, &mut self.plain) {
            host.inbox
                .push((r.peer, r.packet.payload.to_vec(), r.relayed));
        }
    }

    pub(super) fn deliver(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        if to == BEACON {
            if self.has_beacon {
                let mut out = Vec::new();
                self.beacon.handle(from, &bytes, &mut out);
                for (dest, b) in out {
                    self.in_flight
                        .push_back((self.now + LATENCY, BEACON, dest, b));
                }
            }
            return;
        }
        let now = self.now;
        let Some(h) = self.hosts.iter().position(|h| match &h.nat {
            Some(nat) => nat.ip == to.ip(),
            None => h.local == to,
        }) else {
            return;
        };
        if let Some(nat) = &mut self.hosts[h].nat {
            if nat.inbound(now, to.port(), from).is_none() {
                return;
            }
        }
        let host = &mut self.hosts[h];
        if let Some(r) = host
            .tunnel
            .handle_datagram(now, from, &bytes, &mut self.plain)
        {
            host.inbox
                .push((r.peer, r.packet.payload.to_vec(), r.relayed));
        }
    }

    pub(super) fn run_until(&mut self, until: Instant) {
        loop {
            self.pump();
            let next_packet = self.in_flight.iter().map(|p| p.0).min();
            let next_timer = self
                .hosts
                .iter()
                .filter_map(|h| h.tunnel.poll_timeout())
                .min();
            let Some(next) = next_packet.into_iter().chain(next_timer).min() else {
                break;
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            let (due, later): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.in_flight)
                .into_iter()
                .partition(|p| p.0 <= now);
            self.in_flight = later;
            for (_, from, to, bytes) in due {
                self.deliver(from, to, bytes);
            }
            for h in 0..self.hosts.len() {
                if self.hosts[h]
                    .tunnel
                    .poll_timeout()
                    .is_some_and(|t| t <= now)
                {
                    self.hosts[h].tunnel.handle_timeout(now);
                }
            }
        }
        self.now = self.now.max(until);
    }

    pub(super) fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// The app on `from` sends `payload` to `to` as a datagram; resolves on first contact.
    pub(super) fn send(&mut self, from: u32, to: u32, payload: &[u8]) -> Result<(), SendError> {
        let packet = packet(from, to, payload);
        let now = self.now;
        let real = self.hosts.get(to as usize - 1).and_then(|h| h.real_addr);
        let host = self.host(from);
        match host.tunnel.send(now, to, &packet) {
            Err(SendError::NeedResolve(_)) => {
                host.tunnel.add_peer(now, to, real).unwrap();
                host.tunnel.send(now, to, &packet)
            }
            other => other,
        }
    }

    pub(super) fn inbox(&mut self, node: u32) -> Vec<(u32, Vec<u8>, bool)> {
        std::mem::take(&mut self.host(node).inbox)
    }

    pub(super) fn route(&self, node: u32, peer: u32) -> Option<PeerRoute> {
        self.hosts[self.idx(node)].tunnel.peer_route(peer)
    }

    /// Key-exchange frames sent so far, relayed or not.
    pub(super) fn pilas_sent(&self) -> usize {
        self.log
            .iter()
            .filter(|(_, _, b)| b.starts_with(&PILA) || (b.len() > 9 && b[9..].starts_with(&PILA)))
            .count()
    }
}

pub(super) fn packet(from: u32, to: u32, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        protocol: Protocol::DATAGRAM,
        src: Addr::backbone(from),
        dst: Addr::backbone(to),
        src_port: 49152,
        dst_port: 1001,
        ..Header::default()
    };
    let mut out = Vec::new();
    header.encode_packet(payload, &mut out).unwrap();
    out
}

pub(super) fn msg(payload: &[u8], from: u32, relayed: bool) -> (u32, Vec<u8>, bool) {
    (from, payload.to_vec(), relayed)
}
