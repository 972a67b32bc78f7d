//! LAN candidates: the private addresses a daemon's tunnel socket has, told to peers that sit
//! behind the same NAT so they can reach it directly, hairpinning or not (`docs/TUNNEL.md`,
//! "Same-NAT peers").
//!
//! The registry protocol has no field for them (`register` records one endpoint, `resolve`
//! returns it), so they travel inside the tunnel: a sealed control packet between the
//! path-proof ports whose payload lists the addresses. Go daemons drop control packets that are
//! not for port 0 (`spec/wire.md` §4.10 R2), so they never see one; an empty payload on the same
//! ports is the path proof.
//!
//! Payload: `b"LAN1"`, a count byte, then per address a family byte (4 or 6), the address
//! bytes, and the port (big-endian).

use super::path::MAX_LAN_CANDIDATES;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The payload's first bytes.
const MAGIC: &[u8; 4] = b"LAN1";

/// The announcement payload for `addrs` (at most [`MAX_LAN_CANDIDATES`] are written).
pub fn encode(addrs: &[SocketAddr], out: &mut Vec<u8>) {
    let addrs = &addrs[..addrs.len().min(MAX_LAN_CANDIDATES)];
    out.extend_from_slice(MAGIC);
    out.push(addrs.len() as u8);
    for addr in addrs {
        match addr.ip() {
            IpAddr::V4(ip) => {
                out.push(4);
                out.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                out.push(6);
                out.extend_from_slice(&ip.octets());
            }
        }
        out.extend_from_slice(&addr.port().to_be_bytes());
    }
}

/// The addresses an announcement payload lists, or `None` if it is not one (or malformed:
/// short, an unknown family, too many addresses, trailing bytes).
pub fn decode(payload: &[u8]) -> Option<Vec<SocketAddr>> {
    let rest = payload.strip_prefix(MAGIC)?;
    let (&count, mut rest) = rest.split_first()?;
    if usize::from(count) > MAX_LAN_CANDIDATES {
        return None;
    }
    let mut addrs = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let (&family, tail) = rest.split_first()?;
        let (ip, tail) = match family {
            4 => {
                let (b, tail) = tail.split_first_chunk::<4>()?;
                (IpAddr::V4(Ipv4Addr::from(*b)), tail)
            }
            6 => {
                let (b, tail) = tail.split_first_chunk::<16>()?;
                (IpAddr::V6(Ipv6Addr::from(*b)), tail)
            }
            _ => return None,
        };
        let (port, tail) = tail.split_first_chunk::<2>()?;
        addrs.push(SocketAddr::new(ip, u16::from_be_bytes(*port)));
        rest = tail;
    }
    rest.is_empty().then_some(addrs)
}

/// Whether an address may be announced or probed as a LAN candidate: a unicast address that is
/// not the unspecified one, and a port.
pub fn usable(addr: &SocketAddr) -> bool {
    let ip = addr.ip();
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_families() {
        let addrs: Vec<SocketAddr> = vec![
            "10.1.0.2:4000".parse().unwrap(),
            "[fd00::1]:5000".parse().unwrap(),
        ];
        let mut out = Vec::new();
        encode(&addrs, &mut out);
        assert_eq!(decode(&out), Some(addrs));
    }

    #[test]
    fn malformed_payloads_are_not_announcements() {
        let mut good = Vec::new();
        encode(&["10.1.0.2:4000".parse().unwrap()], &mut good);
        assert_eq!(decode(&[]), None, "a path proof is empty");
        for cut in 0..good.len() {
            assert_eq!(decode(&good[..cut]), None, "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(decode(&trailing), None);
        let mut family = good.clone();
        family[5] = 5;
        assert_eq!(decode(&family), None);
        let mut many = MAGIC.to_vec();
        many.push(MAX_LAN_CANDIDATES as u8 + 1);
        assert_eq!(decode(&many), None);
    }

    #[test]
    fn only_concrete_addresses_are_usable() {
        assert!(usable(&"10.1.0.2:4000".parse().unwrap()));
        assert!(!usable(&"0.0.0.0:4000".parse().unwrap()));
        assert!(!usable(&"10.1.0.2:0".parse().unwrap()));
        assert!(!usable(&"224.0.0.1:4000".parse().unwrap()));
    }
}
