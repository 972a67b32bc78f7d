//! The shape of the simulated internet once built: who is where, with which address, and how
//! a packet finds its next hop. Shared (in an `Arc`) by every simulated host.
//!
//! Networks: index 0 is the internet; every NAT box owns one private network (its LAN). A node
//! is attached to exactly one network and has one address there; a NAT box also has an inside
//! address on its LAN. Internet addresses are the turmoil addresses of the hosts, so turmoil's
//! own TCP carries public traffic unchanged; private addresses (`10.k.0.n`, or `100.64.k.n` on a
//! carrier's LAN) exist only in the simulator and are carried inside fabric envelopes.

use crate::nat::NatConfig;
use crate::trace::Trace;
use pilot::net::{seeded_rng, Rng};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// Index of a node (host or NAT box) in the world.
pub type NodeId = usize;
/// Index of a network; [`INTERNET`] is the public one.
pub type NetId = usize;
/// The public internet.
pub const INTERNET: NetId = 0;

/// The turmoil UDP port every host's fabric socket uses.
pub const FABRIC_PORT: u16 = 1;
/// The turmoil TCP port on which a NAT box proxies outbound connections from its LAN.
pub const PROXY_PORT: u16 = 2;

/// One simulated machine.
#[derive(Clone, Debug)]
pub struct Node {
    /// Its name (also its turmoil host name).
    pub name: String,
    /// Its turmoil address: what carries its traffic.
    pub carrier: Ipv4Addr,
    /// The network it is attached to.
    pub net: NetId,
    /// Its address on that network.
    pub addr: Ipv4Addr,
    /// Set when the node is a NAT box.
    pub nat: Option<NatSide>,
}

/// The inside of a NAT box.
#[derive(Clone, Debug)]
pub struct NatSide {
    /// The LAN it serves.
    pub lan: NetId,
    /// Its address on that LAN.
    pub inside_addr: Ipv4Addr,
    /// How it translates.
    pub config: NatConfig,
}

/// One network.
#[derive(Clone, Debug)]
pub struct Net {
    /// The NAT box that connects it to its outside; `None` for the internet.
    pub gateway: Option<NodeId>,
}

/// Faults on the link between two nodes, applied by the fabric to UDP (turmoil's link latency
/// applies to everything underneath).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkFaults {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back by [`REORDER_DELAY`], letting later ones pass.
    pub reorder: f64,
    /// Extra delay drawn uniformly from `0..=jitter` per datagram.
    pub jitter: Duration,
}

/// How long a reordered datagram is held back.
pub const REORDER_DELAY: Duration = Duration::from_millis(10);

#[derive(Debug, Default)]
struct Faults {
    links: BTreeMap<(NodeId, NodeId), LinkFaults>,
    /// Directed pairs (from, to) whose traffic is dropped.
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Nodes whose software is dying: everything they send is dropped until they crash.
    silenced: BTreeSet<NodeId>,
}

fn pair(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

/// The built simulated internet.
pub struct World {
    seed: u64,
    nodes: Vec<Node>,
    nets: Vec<Net>,
    by_name: BTreeMap<String, NodeId>,
    by_carrier: BTreeMap<Ipv4Addr, NodeId>,
    /// Who owns each address on each network (a NAT box owns its inside address too).
    owners: BTreeMap<(NetId, Ipv4Addr), NodeId>,
    faults: Mutex<Faults>,
    trace: Trace,
    capture: crate::capture::Capture,
    /// How many times each node's network stack has started (restarts draw fresh randomness).
    starts: Mutex<BTreeMap<NodeId, u64>>,
    /// The live endpoint stack of each host, reused by every `SimNet` handle of one incarnation.
    pub(crate) endpoints: Mutex<BTreeMap<NodeId, Weak<crate::net::Endpoint>>>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("seed", &self.seed)
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex, recovering from poisoning: every critical section here is a single update.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl World {
    pub(crate) fn new(seed: u64, nodes: Vec<Node>, nets: Vec<Net>) -> Arc<Self> {
        let by_name = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let by_carrier = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.carrier, i))
            .collect();
        let mut owners = BTreeMap::new();
        for (i, n) in nodes.iter().enumerate() {
            owners.insert((n.net, n.addr), i);
            if let Some(side) = &n.nat {
                owners.insert((side.lan, side.inside_addr), i);
            }
        }
        Arc::new(World {
            seed,
            owners,
            nodes,
            nets,
            by_name,
            by_carrier,
            faults: Mutex::default(),
            trace: Trace::default(),
            capture: crate::capture::Capture::default(),
            starts: Mutex::default(),
            endpoints: Mutex::default(),
        })
    }

    /// The network of the host named `name`, or `None` if there is no such node.
    pub fn net(self: &Arc<Self>, name: &str) -> Option<crate::net::SimNet> {
        let id = self.find(name)?;
        Some(crate::net::SimNet::new(self.clone(), id))
    }

    /// The seed the world was built with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The trace every host records into.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The capture of every datagram the fabric carries.
    pub fn capture(&self) -> &crate::capture::Capture {
        &self.capture
    }

    /// All nodes, in declaration order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// One node.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// The node named `name`.
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.by_name.get(name).copied()
    }

    /// The node whose turmoil address is `ip`.
    pub fn by_carrier(&self, ip: IpAddr) -> Option<NodeId> {
        match ip {
            IpAddr::V4(v4) => self.by_carrier.get(&v4).copied(),
            IpAddr::V6(_) => None,
        }
    }

    /// The NAT box that connects network `net` to its outside (`None` for the internet).
    pub fn gateway(&self, net: NetId) -> Option<NodeId> {
        self.nets[net].gateway
    }

    /// The address at which the internet sees `id`: its own if public, else its gateway's.
    pub fn public_addr(&self, id: NodeId) -> Ipv4Addr {
        let node = &self.nodes[id];
        match self.nets[node.net].gateway {
            None => node.addr,
            Some(gateway) => self.public_addr(gateway),
        }
    }

    /// The node that a packet for `dst`, sent on network `net`, goes to next: the owner of
    /// `dst` on that network, else the network's gateway; `None` when the internet has no
    /// such address (private addresses are not routable there).
    pub fn next_hop(&self, net: NetId, dst: Ipv4Addr) -> Option<NodeId> {
        let owner = self.owners.get(&(net, dst)).copied();
        owner.or(self.nets[net].gateway)
    }

    /// The address of node `who` as seen on network `net`, if it is attached there (or is that
    /// network's gateway).
    pub fn addr_on(&self, who: NodeId, net: NetId) -> Option<Ipv4Addr> {
        let node = &self.nodes[who];
        if node.net == net {
            return Some(node.addr);
        }
        node.nat
            .as_ref()
            .filter(|s| s.lan == net)
            .map(|s| s.inside_addr)
    }

    /// A generator for a new start of node `id`'s software: seeded from the world's seed, the
    /// node's name and how many times it has started, so runs replay and restarts differ.
    pub fn start_rng(&self, id: NodeId) -> Rng {
        let mut starts = lock(&self.starts);
        let n = starts.entry(id).or_insert(0);
        let rng = seeded_rng(host_seed(self.seed, &self.nodes[id].name, *n));
        *n += 1;
        rng
    }

    /// Faults on the link between `a` and `b`.
    pub fn link_faults(&self, a: NodeId, b: NodeId) -> LinkFaults {
        lock(&self.faults)
            .links
            .get(&pair(a, b))
            .copied()
            .unwrap_or_default()
    }

    /// Sets the faults on the link between `a` and `b` (both directions).
    pub fn set_link_faults(&self, a: NodeId, b: NodeId, faults: LinkFaults) {
        lock(&self.faults).links.insert(pair(a, b), faults);
    }

    /// Whether datagrams from `from` to `to` are dropped by a partition.
    pub fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        lock(&self.faults).blocked.contains(&(from, to))
    }

    /// Drops datagrams from `from` to `to` (pair it with turmoil's partition for TCP).
    pub fn block(&self, from: NodeId, to: NodeId) {
        lock(&self.faults).blocked.insert((from, to));
    }

    /// Drops every datagram `node` sends from now on: its software died mid-step, and the
    /// runner crashes the host after the step (see `scenario::mailbox`).
    pub fn silence(&self, node: NodeId) {
        lock(&self.faults).silenced.insert(node);
    }

    /// Ends [`World::silence`] (the host has crashed).
    pub fn unsilence(&self, node: NodeId) {
        lock(&self.faults).silenced.remove(&node);
    }

    /// Whether `node` is silenced.
    pub fn is_silenced(&self, node: NodeId) -> bool {
        lock(&self.faults).silenced.contains(&node)
    }

    /// Lets datagrams from `from` to `to` through again.
    pub fn unblock(&self, from: NodeId, to: NodeId) {
        lock(&self.faults).blocked.remove(&(from, to));
    }
}

/// The seed of one host's generator: FNV-1a over the scenario seed, the host name and the
/// start count. Stable across platforms and Rust versions (unlike `DefaultHasher`).
pub fn host_seed(seed: u64, name: &str, start: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = seed
        .to_le_bytes()
        .into_iter()
        .chain(name.bytes())
        .chain(start.to_le_bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_seeds_are_stable_and_distinct() {
        assert_eq!(host_seed(1, "a", 0), host_seed(1, "a", 0));
        assert_ne!(host_seed(1, "a", 0), host_seed(1, "b", 0));
        assert_ne!(host_seed(1, "a", 0), host_seed(2, "a", 0));
        assert_ne!(host_seed(1, "a", 0), host_seed(1, "a", 1));
    }
}
