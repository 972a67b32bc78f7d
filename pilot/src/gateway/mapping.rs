//! The gateway's mapping table: which local IPv4 address stands for which pilot address, with
//! addresses handed out from a subnet. Plain data, no sockets: the proxy asks it, tests drive it.

use crate::wire::Addr;
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The reference gateway's subnet.
pub const DEFAULT_SUBNET: &str = "10.4.0.0/16";

/// What can go wrong with a mapping or a subnet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The subnet text is not `a.b.c.d/prefix`.
    #[error("invalid subnet {0:?}: expected an IPv4 network such as 10.4.0.0/16")]
    InvalidSubnet(String),
    /// A local IP text is not an IPv4 address.
    #[error("invalid local IP {0:?}: expected an IPv4 address such as 10.4.0.1")]
    InvalidIp(String),
    /// The requested local IP lies outside the subnet.
    #[error("{ip} is not in the gateway subnet {subnet}")]
    OutsideSubnet {
        /// The address asked for.
        ip: Ipv4Addr,
        /// The gateway's subnet.
        subnet: Subnet,
    },
    /// The requested local IP is the subnet's network or broadcast address.
    #[error("{ip} is the network or broadcast address of {subnet}")]
    Reserved {
        /// The address asked for.
        ip: Ipv4Addr,
        /// The gateway's subnet.
        subnet: Subnet,
    },
    /// Every usable address of the subnet is mapped.
    #[error("subnet {0} is exhausted: every address is mapped")]
    Exhausted(Subnet),
    /// The local IP already stands for another pilot address.
    #[error("{ip} is already mapped to {addr}")]
    IpInUse {
        /// The address asked for.
        ip: Ipv4Addr,
        /// The pilot address it stands for.
        addr: Addr,
    },
    /// The pilot address is already mapped to another local IP.
    #[error("{addr} is already mapped to {ip}")]
    AddrInUse {
        /// The pilot address.
        addr: Addr,
        /// The local IP it has.
        ip: Ipv4Addr,
    },
    /// Nothing is mapped to this local IP.
    #[error("no mapping for {0}")]
    NotMapped(Ipv4Addr),
}

/// An IPv4 network: a base address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    base: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// The network `base/prefix`; host bits of `base` are cleared. `None` if `prefix > 32`.
    pub fn new(base: Ipv4Addr, prefix: u8) -> Option<Subnet> {
        (prefix <= 32).then(|| Subnet {
            base: Ipv4Addr::from(u32::from(base) & Self::mask(prefix)),
            prefix,
        })
    }

    fn mask(prefix: u8) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.prefix) == u32::from(self.base)
    }

    /// The first and last address that can be handed out: a /31 or /32 has no network or
    /// broadcast address to skip.
    fn usable(&self) -> (u32, u32) {
        let first = u32::from(self.base);
        let last = first | !Self::mask(self.prefix);
        if self.prefix >= 31 {
            (first, last)
        } else {
            (first + 1, last - 1)
        }
    }

    fn is_usable(&self, ip: Ipv4Addr) -> bool {
        let (first, last) = self.usable();
        (first..=last).contains(&u32::from(ip))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = MappingError;

    fn from_str(text: &str) -> Result<Subnet, MappingError> {
        let bad = || MappingError::InvalidSubnet(text.to_string());
        let (base, prefix) = text.split_once('/').ok_or_else(bad)?;
        let base: Ipv4Addr = base.parse().map_err(|_| bad())?;
        // Digits only: `u8::from_str` would also take "+16".
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Subnet::new(base, prefix).ok_or_else(bad)
    }
}

/// Parses a local IP argument.
pub fn parse_ip(text: &str) -> Result<Ipv4Addr, MappingError> {
    text.parse()
        .map_err(|_| MappingError::InvalidIp(text.to_string()))
}

/// One mapping: a local IP that stands for a pilot address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The local address programs connect to.
    pub local_ip: Ipv4Addr,
    /// The pilot address connections are forwarded to.
    pub pilot_addr: Addr,
}

/// Local IP ↔ pilot address, both ways, with allocation from a subnet.
#[derive(Clone, Debug)]
pub struct MappingTable {
    subnet: Subnet,
    by_ip: BTreeMap<Ipv4Addr, Addr>,
    by_addr: BTreeMap<Addr, Ipv4Addr>,
    /// Where the next search for a free address starts, so freed addresses are not reused at
    /// once (a program may still hold a connection to the old mapping).
    cursor: u32,
}

impl MappingTable {
    /// An empty table handing out addresses of `subnet`.
    pub fn new(subnet: Subnet) -> Self {
        MappingTable {
            subnet,
            by_ip: BTreeMap::new(),
            by_addr: BTreeMap::new(),
            cursor: subnet.usable().0,
        }
    }

    /// The subnet addresses come from.
    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    /// Maps `addr` to `ip`, or to the next free address of the subnet when `ip` is `None`.
    /// Mapping an address again to the IP it already has (or to no IP in particular) returns
    /// the existing mapping.
    pub fn map(&mut self, addr: Addr, ip: Option<Ipv4Addr>) -> Result<Mapping, MappingError> {
        if let Some(&existing) = self.by_addr.get(&addr) {
            return match ip {
                None => Ok(Mapping {
                    local_ip: existing,
                    pilot_addr: addr,
                }),
                Some(ip) if ip == existing => Ok(Mapping {
                    local_ip: ip,
                    pilot_addr: addr,
                }),
                Some(_) => Err(MappingError::AddrInUse { addr, ip: existing }),
            };
        }
        let ip = match ip {
            Some(ip) => self.check_free(ip)?,
            None => self.allocate()?,
        };
        self.by_ip.insert(ip, addr);
        self.by_addr.insert(addr, ip);
        Ok(Mapping {
            local_ip: ip,
            pilot_addr: addr,
        })
    }

    fn check_free(&self, ip: Ipv4Addr) -> Result<Ipv4Addr, MappingError> {
        let subnet = self.subnet;
        if !subnet.contains(ip) {
            return Err(MappingError::OutsideSubnet { ip, subnet });
        }
        if !subnet.is_usable(ip) {
            return Err(MappingError::Reserved { ip, subnet });
        }
        if let Some(&addr) = self.by_ip.get(&ip) {
            return Err(MappingError::IpInUse { ip, addr });
        }
        Ok(ip)
    }

    /// The first free address at or after the cursor, wrapping around once.
    fn allocate(&mut self) -> Result<Ipv4Addr, MappingError> {
        let (first, last) = self.subnet.usable();
        let size = u64::from(last - first) + 1;
        if self.by_ip.len() as u64 >= size {
            return Err(MappingError::Exhausted(self.subnet));
        }
        let mut candidate = self.cursor.clamp(first, last);
        loop {
            let ip = Ipv4Addr::from(candidate);
            candidate = if candidate == last {
                first
            } else {
                candidate + 1
            };
            if !self.by_ip.contains_key(&ip) {
                self.cursor = candidate;
                return Ok(ip);
            }
        }
    }

    /// Removes the mapping of `ip`.
    pub fn unmap(&mut self, ip: Ipv4Addr) -> Result<Mapping, MappingError> {
        let addr = self.by_ip.remove(&ip).ok_or(MappingError::NotMapped(ip))?;
        self.by_addr.remove(&addr);
        Ok(Mapping {
            local_ip: ip,
            pilot_addr: addr,
        })
    }

    /// The pilot address `ip` stands for.
    pub fn lookup(&self, ip: Ipv4Addr) -> Option<Addr> {
        self.by_ip.get(&ip).copied()
    }

    /// The local IP of `addr`.
    pub fn reverse_lookup(&self, addr: Addr) -> Option<Ipv4Addr> {
        self.by_addr.get(&addr).copied()
    }

    /// Every mapping, in local IP order.
    pub fn all(&self) -> Vec<Mapping> {
        self.by_ip
            .iter()
            .map(|(&local_ip, &pilot_addr)| Mapping {
                local_ip,
                pilot_addr,
            })
            .collect()
    }

    /// How many mappings there are.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(text: &str) -> Subnet {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn subnets_parse_and_contain() {
        let net = subnet(DEFAULT_SUBNET);
        assert_eq!(net.to_string(), "10.4.0.0/16");
        assert!(net.contains(ip("10.4.255.254")));
        assert!(!net.contains(ip("10.5.0.1")));
        // Host bits are cleared, as a router would.
        assert_eq!(subnet("10.4.7.9/16").to_string(), "10.4.0.0/16");
        assert!(subnet("0.0.0.0/0").contains(ip("203.0.113.9")));
        for bad in [
            "",
            "10.4.0.0",
            "10.4.0.0/",
            "10.4.0.0/33",
            "10.4.0/16",
            "10.4.0.0/+16",
            "fe80::/64",
            "10.4.0.0/16/1",
            "a.b.c.d/8",
        ] {
            assert_eq!(
                bad.parse::<Subnet>(),
                Err(MappingError::InvalidSubnet(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            parse_ip("10.4.0.x"),
            Err(MappingError::InvalidIp("10.4.0.x".into()))
        );
        assert_eq!(parse_ip("::1"), Err(MappingError::InvalidIp("::1".into())));
    }

    #[test]
    fn allocation_starts_after_the_network_address_and_goes_up() {
        let mut table = MappingTable::new(subnet(DEFAULT_SUBNET));
        let a = table.map(Addr::backbone(7), None).unwrap();
        let b = table.map(Addr::backbone(8), None).unwrap();
        assert_eq!(a.local_ip, ip("10.4.0.1"));
        assert_eq!(b.local_ip, ip("10.4.0.2"));
        assert_eq!(table.lookup(ip("10.4.0.2")), Some(Addr::backbone(8)));
        assert_eq!(
            table.reverse_lookup(Addr::backbone(7)),
            Some(ip("10.4.0.1"))
        );
        assert_eq!(table.all(), vec![a, b]);
    }

    #[test]
    fn explicit_addresses_are_checked() {
        let mut table = MappingTable::new(subnet("10.4.0.0/24"));
        let net = table.subnet();
        let m = table.map(Addr::backbone(1), Some(ip("10.4.0.9"))).unwrap();
        assert_eq!(m.local_ip, ip("10.4.0.9"));
        assert_eq!(
            table.map(Addr::backbone(2), Some(ip("10.9.0.1"))),
            Err(MappingError::OutsideSubnet {
                ip: ip("10.9.0.1"),
                subnet: net
            })
        );
        for reserved in ["10.4.0.0", "10.4.0.255"] {
            assert_eq!(
                table.map(Addr::backbone(2), Some(ip(reserved))),
                Err(MappingError::Reserved {
                    ip: ip(reserved),
                    subnet: net
                })
            );
        }
        // Automatic allocation skips what was taken explicitly.
        for n in 1..=8 {
            table.map(Addr::backbone(100 + n), None).unwrap();
        }
        assert_eq!(
            table.map(Addr::backbone(200), None).unwrap().local_ip,
            ip("10.4.0.10")
        );
    }

    #[test]
    fn duplicates_are_refused_but_repeating_a_mapping_is_not() {
        let mut table = MappingTable::new(subnet(DEFAULT_SUBNET));
        let m = table.map(Addr::backbone(1), None).unwrap();
        assert_eq!(table.map(Addr::backbone(1), None), Ok(m));
        assert_eq!(table.map(Addr::backbone(1), Some(m.local_ip)), Ok(m));
        assert_eq!(
            table.map(Addr::backbone(1), Some(ip("10.4.0.50"))),
            Err(MappingError::AddrInUse {
                addr: Addr::backbone(1),
                ip: m.local_ip
            })
        );
        assert_eq!(
            table.map(Addr::backbone(2), Some(m.local_ip)),
            Err(MappingError::IpInUse {
                ip: m.local_ip,
                addr: Addr::backbone(1)
            })
        );
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_full_subnet_is_exhausted_until_something_is_unmapped() {
        // A /30 has two usable addresses.
        let mut table = MappingTable::new(subnet("10.4.0.0/30"));
        let first = table.map(Addr::backbone(1), None).unwrap();
        table.map(Addr::backbone(2), None).unwrap();
        let net = table.subnet();
        assert_eq!(
            table.map(Addr::backbone(3), None),
            Err(MappingError::Exhausted(net))
        );
        table.unmap(first.local_ip).unwrap();
        assert_eq!(
            table.map(Addr::backbone(3), None).unwrap().local_ip,
            first.local_ip
        );
        // A /32 is one usable address; a /31 two.
        let mut single = MappingTable::new(subnet("127.0.0.5/32"));
        assert_eq!(
            single.map(Addr::backbone(1), None).unwrap().local_ip,
            ip("127.0.0.5")
        );
        assert!(matches!(
            single.map(Addr::backbone(2), None),
            Err(MappingError::Exhausted(_))
        ));
        let pair = subnet("10.0.0.0/31").usable();
        assert_eq!(pair, (u32::from(ip("10.0.0.0")), u32::from(ip("10.0.0.1"))));
    }

    #[test]
    fn freed_addresses_are_reused_only_after_the_rest() {
        let mut table = MappingTable::new(subnet("10.4.0.0/29"));
        let a = table.map(Addr::backbone(1), None).unwrap();
        table.unmap(a.local_ip).unwrap();
        assert_eq!(
            table.map(Addr::backbone(2), None).unwrap().local_ip,
            ip("10.4.0.2")
        );
    }

    #[test]
    fn unmapping_unknown_addresses_is_an_error() {
        let mut table = MappingTable::new(subnet(DEFAULT_SUBNET));
        assert_eq!(
            table.unmap(ip("10.4.0.1")),
            Err(MappingError::NotMapped(ip("10.4.0.1")))
        );
        let m = table.map(Addr::backbone(3), None).unwrap();
        assert_eq!(table.unmap(m.local_ip), Ok(m));
        assert_eq!(
            table.unmap(m.local_ip),
            Err(MappingError::NotMapped(m.local_ip))
        );
        assert!(table.is_empty());
        assert_eq!(table.reverse_lookup(Addr::backbone(3)), None);
    }
}
