//! The translation state of one NAT box, sans-IO.
//!
//! A [`NatTable`] is told about packets (`outbound` from the inside, `inbound` at the public
//! address) together with the current simulated time, and answers where they go. It never reads
//! a clock or a socket; the [`device`](super::device) does that around it.

use super::{Filtering, Mapping, NatConfig, PortAllocation};
use pilot::net::Rng;
use rand_core::Rng as _;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::time::Duration;

/// Public ports the box hands out.
pub const PUBLIC_PORTS: RangeInclusive<u16> = 1024..=65535;
/// Where sequential allocation starts (so that sequential ports are easy to tell from preserved).
pub const SEQUENTIAL_START: u16 = 20000;

/// What the mapping of one inside endpoint is keyed on, besides that endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum RemoteKey {
    Any,
    Ip(Ipv4Addr),
    Endpoint(SocketAddrV4),
}

#[derive(Clone, Debug)]
struct Entry {
    inside: SocketAddrV4,
    key: RemoteKey,
    /// Remote endpoints this mapping has sent to; the filter consults them.
    contacted: BTreeSet<SocketAddrV4>,
    /// The mapping is gone at this time unless an outbound packet refreshes it first.
    expires: Duration,
}

/// The result of translating an outbound packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// The source the packet carries on the outside.
    pub public: SocketAddrV4,
    /// Whether this packet created the mapping.
    pub created: bool,
}

/// The result of admitting an inbound packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inbound {
    /// The inside endpoint the packet is forwarded to.
    pub inside: SocketAddrV4,
}

/// Why an inbound packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InboundDrop {
    /// No live mapping holds the destination port.
    #[error("no mapping")]
    NoMapping,
    /// A mapping exists but its filter refuses this remote endpoint.
    #[error("filtered")]
    Filtered,
}

/// Every public port is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("public ports exhausted")]
pub struct PortsExhausted;

/// The mappings of one NAT box.
#[derive(Debug)]
pub struct NatTable {
    config: NatConfig,
    public_ip: Ipv4Addr,
    /// Live mappings by public port.
    by_port: BTreeMap<u16, Entry>,
    /// Public port of the mapping for (inside endpoint, remote key).
    index: BTreeMap<(SocketAddrV4, RemoteKey), u16>,
    next_sequential: u16,
    rng: Rng,
}

impl NatTable {
    /// An empty table for a box with public address `public_ip`; `rng` draws random ports.
    pub fn new(config: NatConfig, public_ip: Ipv4Addr, rng: Rng) -> Self {
        NatTable {
            config,
            public_ip,
            by_port: BTreeMap::new(),
            index: BTreeMap::new(),
            next_sequential: SEQUENTIAL_START,
            rng,
        }
    }

    /// The box's behaviour.
    pub fn config(&self) -> &NatConfig {
        &self.config
    }

    /// The public address.
    pub fn public_ip(&self) -> Ipv4Addr {
        self.public_ip
    }

    /// Number of live mappings (as of the last call that was given `now`).
    pub fn len(&self) -> usize {
        self.by_port.len()
    }

    /// Whether there is no live mapping.
    pub fn is_empty(&self) -> bool {
        self.by_port.is_empty()
    }

    /// Translates a packet from `inside` to `remote` at time `now`, creating or refreshing the
    /// mapping it uses.
    pub fn outbound(
        &mut self,
        inside: SocketAddrV4,
        remote: SocketAddrV4,
        now: Duration,
    ) -> Result<Outbound, PortsExhausted> {
        self.expire(now);
        let key = match self.config.mapping {
            Mapping::EndpointIndependent => RemoteKey::Any,
            Mapping::AddressDependent => RemoteKey::Ip(*remote.ip()),
            Mapping::AddressAndPortDependent => RemoteKey::Endpoint(remote),
        };
        let expires = now + self.config.lifetime;
        if let Some(&port) = self.index.get(&(inside, key)) {
            let entry = self.by_port.get_mut(&port).expect("index and table agree");
            entry.contacted.insert(remote);
            entry.expires = expires;
            return Ok(Outbound {
                public: SocketAddrV4::new(self.public_ip, port),
                created: false,
            });
        }
        let port = self.allocate(inside.port())?;
        self.index.insert((inside, key), port);
        self.by_port.insert(
            port,
            Entry {
                inside,
                key,
                contacted: BTreeSet::from([remote]),
                expires,
            },
        );
        Ok(Outbound {
            public: SocketAddrV4::new(self.public_ip, port),
            created: true,
        })
    }

    /// Decides whether a packet from `remote` to public port `public_port` gets in at `now`.
    /// Inbound packets never refresh a mapping.
    pub fn inbound(
        &mut self,
        public_port: u16,
        remote: SocketAddrV4,
        now: Duration,
    ) -> Result<Inbound, InboundDrop> {
        self.expire(now);
        let entry = self
            .by_port
            .get(&public_port)
            .ok_or(InboundDrop::NoMapping)?;
        let allowed = match self.config.filtering {
            Filtering::EndpointIndependent => true,
            Filtering::AddressDependent => entry.contacted.iter().any(|c| c.ip() == remote.ip()),
            Filtering::AddressAndPortDependent => entry.contacted.contains(&remote),
        };
        if allowed {
            Ok(Inbound {
                inside: entry.inside,
            })
        } else {
            Err(InboundDrop::Filtered)
        }
    }

    /// Forgets every mapping whose lifetime has run out by `now`.
    fn expire(&mut self, now: Duration) {
        let dead: Vec<u16> = self
            .by_port
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(port, _)| *port)
            .collect();
        for port in dead {
            if let Some(entry) = self.by_port.remove(&port) {
                self.index.remove(&(entry.inside, entry.key));
            }
        }
    }

    fn is_free(&self, port: u16) -> bool {
        PUBLIC_PORTS.contains(&port) && !self.by_port.contains_key(&port)
    }

    fn allocate(&mut self, inside_port: u16) -> Result<u16, PortsExhausted> {
        match self.config.ports {
            PortAllocation::Preserving if self.is_free(inside_port) => Ok(inside_port),
            PortAllocation::Preserving | PortAllocation::Sequential => self.sequential(),
            PortAllocation::Random => {
                let span = u32::from(PUBLIC_PORTS.end() - PUBLIC_PORTS.start()) + 1;
                // A few draws find a free port unless the table is nearly full; then scan.
                for _ in 0..64 {
                    let port = PUBLIC_PORTS.start() + (self.rng.next_u32() % span) as u16;
                    if self.is_free(port) {
                        return Ok(port);
                    }
                }
                self.sequential()
            }
        }
    }

    fn sequential(&mut self) -> Result<u16, PortsExhausted> {
        for _ in PUBLIC_PORTS {
            let port = self.next_sequential;
            self.next_sequential = if port == *PUBLIC_PORTS.end() {
                *PUBLIC_PORTS.start()
            } else {
                port + 1
            };
            if self.is_free(port) {
                return Ok(port);
            }
        }
        Err(PortsExhausted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::Preset;
    use pilot::net::seeded_rng;

    const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

    fn ep(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn table(mapping: Mapping, filtering: Filtering, ports: PortAllocation) -> NatTable {
        let config = NatConfig {
            mapping,
            filtering,
            ports,
            ..NatConfig::preset(Preset::FullCone)
        };
        NatTable::new(config, PUBLIC, seeded_rng(1))
    }

    fn preset(p: Preset) -> NatTable {
        NatTable::new(NatConfig::preset(p), PUBLIC, seeded_rng(1))
    }

    const INSIDE: &str = "10.0.0.2:4000";
    const SERVER: &str = "198.51.100.1:7000";

    #[test]
    fn endpoint_independent_mapping_reuses_the_public_port() {
        let mut t = preset(Preset::FullCone);
        let a = t.outbound(ep(INSIDE), ep(SERVER), secs(0)).unwrap();
        let b = t
            .outbound(ep(INSIDE), ep("198.51.100.2:9000"), secs(1))
            .unwrap();
        assert!(a.created && !b.created);
        assert_eq!(a.public, b.public);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn address_dependent_mapping_splits_by_ip_only() {
        let mut t = table(
            Mapping::AddressDependent,
            Filtering::AddressDependent,
            PortAllocation::Sequential,
        );
        let a = t.outbound(ep(INSIDE), ep(SERVER), secs(0)).unwrap();
        let same_ip = t
            .outbound(ep(INSIDE), ep("198.51.100.1:7001"), secs(0))
            .unwrap();
        let other_ip = t
            .outbound(ep(INSIDE), ep("198.51.100.2:7000"), secs(0))
            .unwrap();
        assert_eq!(a.public, same_ip.public);
        assert_ne!(a.public, other_ip.public);
    }

    #[test]
    fn symmetric_mapping_gives_each_destination_its_own_port() {
        let mut t = preset(Preset::Symmetric);
        let a = t.outbound(ep(INSIDE), ep(SERVER), secs(0)).unwrap();
        let b = t
            .outbound(ep(INSIDE), ep("198.51.100.1:7001"), secs(0))
            .unwrap();
        let again = t.outbound(ep(INSIDE), ep(SERVER), secs(0)).unwrap();
        assert_ne!(a.public.port(), b.public.port());
        assert_eq!(a.public, again.public);
        assert!(!again.created);
    }

    #[test]
    fn endpoint_independent_filtering_admits_anyone() {
        let mut t = preset(Preset::FullCone);
        let out = t.outbound(ep(INSIDE), ep(SERVER), secs(0)).unwrap();
        let got = t
            .inbound(out.public.port(), ep("192.0.2.9:1234"), secs(1))
            .unwrap();
        assert_eq!(got.inside, ep(INSIDE));
    }

    #[test]
    fn address_dependent_filtering_admits_the_same_ip_on_any_port() {
        let mut t = preset(Preset::RestrictedCone);
        let port = t
            .outbound(ep(INSIDE), ep(SERVER), secs(0))
            .unwrap()
            .public
            .port();
        assert!(t.inbound(port, ep("198.51.100.1:9999"), secs(1)).is_ok());
        assert_eq!(
            t.inbound(port, ep("198.51.100.2:7000"), secs(1)),
            Err(InboundDrop::Filtered)
        );
    }

    #[test]
    fn address_and_port_dependent_filtering_admits_only_contacted_endpoints() {
        let mut t = preset(Preset::PortRestrictedCone);
        let port = t
            .outbound(ep(INSIDE), ep(SERVER), secs(0))
            .unwrap()
            .public
            .port();
        assert!(t.inbound(port, ep(SERVER), secs(1)).is_ok());
        assert_eq!(
            t.inbound(port, ep("198.51.100.1:7001"), secs(1)),
            Err(InboundDrop::Filtered)
        );
        // Sending to the other port opens it too.
        t.outbound(ep(INSIDE), ep("198.51.100.1:7001"), secs(2))
            .unwrap();
        assert!(t.inbound(port, ep("198.51.100.1:7001"), secs(3)).is_ok());
    }

    #[test]
    fn unknown_port_has_no_mapping() {
        let mut t = preset(Preset::FullCone);
        assert_eq!(
            t.inbound(4000, ep(SERVER), secs(0)),
            Err(InboundDrop::NoMapping)
        );
    }

    #[test]
    fn port_preservation_keeps_a_free_inside_port_and_falls_back_when_taken() {
        let mut t = preset(Preset::FullCone);
        let a = t.outbound(ep(INSIDE), ep(SERVER), secs(0)).unwrap();
        assert_eq!(a.public.port(), 4000);
        // A second inside host with the same port cannot have 4000 too.
        let b = t
            .outbound(ep("10.0.0.3:4000"), ep(SERVER), secs(0))
            .unwrap();
        assert_eq!(b.public.port(), SEQUENTIAL_START);
    }

    #[test]
    fn sequential_allocation_counts_up() {
        let mut t = table(
            Mapping::EndpointIndependent,
            Filtering::EndpointIndependent,
            PortAllocation::Sequential,
        );
        let ports: Vec<u16> = (0..3)
            .map(|i| {
                let inside = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 4000 + i);
                t.outbound(inside, ep(SERVER), secs(0))
                    .unwrap()
                    .public
                    .port()
            })
            .collect();
        assert_eq!(ports, [20000, 20001, 20002]);
    }

    #[test]
    fn random_allocation_depends_on_the_seed_only() {
        let run = |seed| {
            let mut t = NatTable::new(
                NatConfig::preset(Preset::Symmetric),
                PUBLIC,
                seeded_rng(seed),
            );
            t.outbound(ep(INSIDE), ep(SERVER), secs(0))
                .unwrap()
                .public
                .port()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
        assert_ne!(run(5), 4000);
    }

    #[test]
    fn idle_mapping_expires_after_its_lifetime() {
        let mut t = preset(Preset::FullCone);
        let port = t
            .outbound(ep(INSIDE), ep(SERVER), secs(0))
            .unwrap()
            .public
            .port();
        assert!(t.inbound(port, ep(SERVER), secs(29)).is_ok());
        assert_eq!(
            t.inbound(port, ep(SERVER), secs(30)),
            Err(InboundDrop::NoMapping)
        );
        assert!(t.is_empty());
    }

    #[test]
    fn outbound_traffic_refreshes_and_inbound_does_not() {
        let mut t = preset(Preset::FullCone);
        let port = t
            .outbound(ep(INSIDE), ep(SERVER), secs(0))
            .unwrap()
            .public
            .port();
        // Inbound at 20 s does not extend the life past 30 s...
        assert!(t.inbound(port, ep(SERVER), secs(20)).is_ok());
        // ...but outbound at 25 s does, to 55 s.
        let again = t.outbound(ep(INSIDE), ep(SERVER), secs(25)).unwrap();
        assert!(!again.created);
        assert!(t.inbound(port, ep(SERVER), secs(54)).is_ok());
        assert_eq!(
            t.inbound(port, ep(SERVER), secs(55)),
            Err(InboundDrop::NoMapping)
        );
    }

    #[test]
    fn an_expired_mapping_is_recreated_fresh() {
        let mut t = preset(Preset::PortRestrictedCone);
        t.outbound(ep(INSIDE), ep(SERVER), secs(0)).unwrap();
        t.outbound(ep(INSIDE), ep("198.51.100.7:1"), secs(0))
            .unwrap();
        let again = t.outbound(ep(INSIDE), ep(SERVER), secs(40)).unwrap();
        assert!(again.created);
        // The old permission for 198.51.100.7:1 died with the old mapping.
        assert_eq!(
            t.inbound(again.public.port(), ep("198.51.100.7:1"), secs(41)),
            Err(InboundDrop::Filtered)
        );
    }
}
