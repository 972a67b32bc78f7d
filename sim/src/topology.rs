//! Declaring a simulated internet and building it on turmoil.
//!
//! ```no_run
//! use pilot_sim::{nat::{NatConfig, Preset}, topology::Topology};
//! let mut topo = Topology::new(42);
//! topo.host("server", None)
//!     .nat("home", NatConfig::preset(Preset::FullCone), None)
//!     .host("laptop", Some("home"));
//! let (mut sim, world) = topo.build().unwrap();
//! // register "server" and "laptop" software with `sim.host` / `sim.client`, using
//! // `world.net("laptop")` as their network; NAT boxes are already running.
//! ```

use crate::nat::{device, NatConfig, PortAllocation, Preset};
use crate::world::{NatSide, Net, Node, NodeId, World, INTERNET};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The simulated wall-clock start: 2023-11-14T22:13:20Z, fixed so runs replay.
pub const EPOCH_SECS: u64 = 1_700_000_000;
/// Turmoil's link latency unless set otherwise.
pub const DEFAULT_LATENCY: Duration = Duration::from_millis(1);
/// Nodes one private network holds (`.2` to `.254`).
const MAX_LAN_MEMBERS: usize = 253;
/// How much simulated time one turmoil step covers.
pub const DEFAULT_TICK: Duration = Duration::from_millis(1);

/// Mistakes in a topology.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// Two nodes share a name.
    #[error("the name {0:?} is used twice")]
    DuplicateName(String),
    /// `behind` names something that is not a NAT declared earlier.
    #[error("{node:?} is behind {behind:?}, which is not a NAT box declared before it")]
    UnknownNat {
        /// The node declared behind it.
        node: String,
        /// The name it gave.
        behind: String,
    },
    /// More private networks than the address plan holds.
    #[error("too many NAT boxes (at most 250)")]
    TooManyNats,
    /// More nodes behind one NAT box than its /24 holds.
    #[error("more than 253 nodes behind {0:?}")]
    CrowdedLan(String),
    /// A name turmoil could mistake for an address, or an empty name.
    #[error("{0:?} is not a valid host name (use letters, digits, '-', '_' and '.')")]
    BadName(String),
}

#[derive(Clone, Debug)]
struct Entry {
    name: String,
    nat: Option<NatConfig>,
    behind: Option<String>,
}

/// A simulated internet being declared: hosts and NAT boxes, each on the internet or behind a
/// NAT box declared before it.
#[derive(Clone, Debug)]
pub struct Topology {
    seed: u64,
    entries: Vec<Entry>,
    latency: Duration,
    tick: Duration,
}

impl Topology {
    /// An empty internet whose randomness all derives from `seed`.
    pub fn new(seed: u64) -> Self {
        Topology {
            seed,
            entries: Vec::new(),
            latency: DEFAULT_LATENCY,
            tick: DEFAULT_TICK,
        }
    }

    /// Adds a host, on the internet or behind the NAT box `behind`.
    pub fn host(&mut self, name: &str, behind: Option<&str>) -> &mut Self {
        self.entries.push(Entry {
            name: name.to_string(),
            nat: None,
            behind: behind.map(str::to_string),
        });
        self
    }

    /// Adds a NAT box, on the internet or behind another one.
    pub fn nat(&mut self, name: &str, config: NatConfig, behind: Option<&str>) -> &mut Self {
        self.entries.push(Entry {
            name: name.to_string(),
            nat: Some(config),
            behind: behind.map(str::to_string),
        });
        self
    }

    /// Adds carrier-grade NAT: a carrier box `<name>-cgn` on the internet (port-restricted
    /// cone, sequential ports) and the home box `name` behind it, configured by `home`.
    pub fn cgnat(&mut self, name: &str, home: NatConfig) -> &mut Self {
        let carrier = NatConfig {
            ports: PortAllocation::Sequential,
            ..NatConfig::preset(Preset::PortRestrictedCone)
        };
        let carrier_name = format!("{name}-cgn");
        self.nat(&carrier_name, carrier, None);
        self.nat(name, home, Some(&carrier_name))
    }

    /// Sets turmoil's latency on every link.
    pub fn latency(&mut self, latency: Duration) -> &mut Self {
        self.latency = latency;
        self
    }

    /// Sets the simulated time one turmoil step covers.
    pub fn tick(&mut self, tick: Duration) -> &mut Self {
        self.tick = tick;
        self
    }

    /// The names declared so far.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Checks names and nesting without building anything.
    pub fn validate(&self) -> Result<(), TopologyError> {
        let mut nats = BTreeMap::new();
        for e in &self.entries {
            let valid = !e.name.is_empty()
                && e.name.parse::<IpAddr>().is_err()
                && e.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !valid {
                return Err(TopologyError::BadName(e.name.clone()));
            }
            if self.entries.iter().filter(|x| x.name == e.name).count() > 1 {
                return Err(TopologyError::DuplicateName(e.name.clone()));
            }
            if let Some(b) = &e.behind {
                if !nats.contains_key(b) {
                    return Err(TopologyError::UnknownNat {
                        node: e.name.clone(),
                        behind: b.clone(),
                    });
                }
            }
            if e.nat.is_some() {
                nats.insert(e.name.clone(), ());
            }
        }
        if nats.len() > 250 {
            return Err(TopologyError::TooManyNats);
        }
        for nat in nats.keys() {
            let members = self
                .entries
                .iter()
                .filter(|e| e.behind.as_deref() == Some(nat.as_str()))
                .count();
            if members > MAX_LAN_MEMBERS {
                return Err(TopologyError::CrowdedLan(nat.clone()));
            }
        }
        Ok(())
    }

    /// Builds the turmoil simulation with every NAT box running; returns it and the world.
    /// Register the hosts' software yourself, with `world.net(name)` as their network.
    pub fn build(&self) -> Result<(turmoil::Sim<'static>, Arc<World>), TopologyError> {
        self.validate()?;
        let mut sim = turmoil::Builder::new()
            .rng_seed(self.seed)
            .tick_duration(self.tick)
            .simulation_duration(Duration::from_secs(365 * 24 * 3600))
            .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
            .min_message_latency(self.latency)
            .max_message_latency(self.latency)
            .udp_capacity(4096)
            .tcp_capacity(4096)
            .build();

        let mut nets = vec![Net { gateway: None }];
        let mut lan_of: BTreeMap<&str, usize> = BTreeMap::new();
        let mut next_member: BTreeMap<usize, u8> = BTreeMap::new();
        let mut nodes: Vec<Node> = Vec::new();
        for e in &self.entries {
            let carrier = match sim.lookup(e.name.as_str()) {
                IpAddr::V4(v4) => v4,
                IpAddr::V6(_) => unreachable!("the simulation is built IPv4"),
            };
            let id: NodeId = nodes.len();
            let (net, addr) = match &e.behind {
                None => (INTERNET, carrier),
                Some(b) => {
                    let lan = lan_of[b.as_str()];
                    let n = next_member.entry(lan).or_insert(2);
                    let host = *n;
                    *n += 1;
                    (lan, lan_addr(self.carries_nats(b), lan, host))
                }
            };
            let nat = e.nat.map(|config| {
                let lan = nets.len();
                nets.push(Net { gateway: Some(id) });
                lan_of.insert(e.name.as_str(), lan);
                NatSide {
                    lan,
                    inside_addr: lan_addr(self.carries_nats(&e.name), lan, 1),
                    config,
                }
            });
            nodes.push(Node {
                name: e.name.clone(),
                carrier,
                net,
                addr,
                nat,
            });
        }
        let world = World::new(self.seed, nodes, nets);
        for (id, node) in world.nodes().iter().enumerate() {
            if node.nat.is_some() {
                let w = world.clone();
                sim.host(node.name.as_str(), move || device::run(w.clone(), id));
            }
        }
        Ok((sim, world))
    }

    /// Whether NAT boxes sit behind `nat` (its LAN then uses the shared address space).
    fn carries_nats(&self, nat: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.nat.is_some() && e.behind.as_deref() == Some(nat))
    }
}

/// Address `host` on private network `lan`: `10.lan.0.host`, or `100.64.lan.host` (RFC 6598
/// shared address space) on a carrier's network.
fn lan_addr(carrier: bool, lan: usize, host: u8) -> Ipv4Addr {
    let lan = lan as u8;
    if carrier {
        Ipv4Addr::new(100, 64, lan, host)
    } else {
        Ipv4Addr::new(10, lan, 0, host)
    }
}

/// The wall clock simulated hosts should use: [`EPOCH_SECS`] plus simulated time.
pub fn epoch() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(EPOCH_SECS)
}

/// The wall clock of simulated software: [`epoch`] plus turmoil's elapsed time. Unlike a
/// `FixedClock` made at start-up, it keeps counting across a host's restarts, so a restarted
/// registry sees the date move on rather than jump back.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimClock;

impl pilot::net::WallClock for SimClock {
    fn now(&self) -> SystemTime {
        epoch() + crate::trace::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> Arc<World> {
        let mut topo = Topology::new(1);
        topo.host("server", None)
            .nat("home", NatConfig::preset(Preset::FullCone), None)
            .host("laptop", Some("home"))
            .host("phone", Some("home"))
            .cgnat("flat", NatConfig::preset(Preset::Symmetric))
            .host("tv", Some("flat"));
        topo.build().unwrap().1
    }

    #[test]
    fn addresses_follow_the_plan() {
        let w = world();
        let addr = |n: &str| w.node(w.find(n).unwrap()).addr.to_string();
        assert_eq!(addr("server"), "192.168.0.1");
        assert_eq!(addr("home"), "192.168.0.2");
        assert_eq!(addr("laptop"), "10.1.0.2");
        assert_eq!(addr("phone"), "10.1.0.3");
        // The carrier's network holds a NAT box, so it uses the shared address space.
        assert_eq!(addr("flat-cgn"), "192.168.0.5");
        assert_eq!(addr("flat"), "100.64.2.2");
        assert_eq!(addr("tv"), "10.3.0.2");
        let public = |n: &str| w.public_addr(w.find(n).unwrap()).to_string();
        assert_eq!(public("laptop"), "192.168.0.2");
        assert_eq!(public("tv"), "192.168.0.5");
        assert_eq!(public("server"), "192.168.0.1");
    }

    #[test]
    fn next_hops_stay_on_the_network_or_go_to_the_gateway() {
        let w = world();
        let id = |n: &str| w.find(n).unwrap();
        let net = |n: &str| w.node(id(n)).net;
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        // On a LAN: neighbours directly, anything else via the box.
        assert_eq!(w.next_hop(net("laptop"), ip("10.1.0.3")), Some(id("phone")));
        assert_eq!(
            w.next_hop(net("laptop"), ip("192.168.0.1")),
            Some(id("home"))
        );
        assert_eq!(w.next_hop(net("laptop"), ip("10.1.0.1")), Some(id("home")));
        // On the internet: owners only; private addresses go nowhere.
        assert_eq!(w.next_hop(INTERNET, ip("192.168.0.2")), Some(id("home")));
        assert_eq!(w.next_hop(INTERNET, ip("10.1.0.2")), None);
        // Nested: the home box of a cgnat forwards into the carrier's network.
        assert_eq!(
            w.next_hop(net("flat"), ip("192.168.0.1")),
            Some(id("flat-cgn"))
        );
    }

    #[test]
    fn bad_topologies_are_refused() {
        let mut dup = Topology::new(1);
        dup.host("a", None).host("a", None);
        assert_eq!(
            dup.validate(),
            Err(TopologyError::DuplicateName("a".into()))
        );
        let mut order = Topology::new(1);
        order.host("a", Some("nat"));
        assert!(matches!(
            order.validate(),
            Err(TopologyError::UnknownNat { .. })
        ));
        let mut ip = Topology::new(1);
        ip.host("10.0.0.1", None);
        assert!(matches!(ip.validate(), Err(TopologyError::BadName(_))));
    }
}
