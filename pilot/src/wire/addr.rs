//! Virtual addresses (`spec/wire.md` §2): 6 bytes on the wire, `N:NNNN.HHHH.LLLL` as text.

use super::{be16, be32, check_len, DecodeError};
use std::fmt;
use std::str::FromStr;

/// A 48-bit virtual address: a 16-bit network and a 32-bit node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr {
    /// Network ID; 0 is the backbone every node belongs to.
    pub network: u16,
    /// Node ID, unique per registry; 0 is never issued.
    pub node: u32,
}

impl Addr {
    /// Length of the binary form.
    pub const LEN: usize = 6;
    /// The zero address (unspecified).
    pub const ZERO: Addr = Addr::new(0, 0);
    /// The node part that means "every node of the network".
    pub const BROADCAST_NODE: u32 = 0xFFFF_FFFF;

    /// The address of `node` on `network`.
    pub const fn new(network: u16, node: u32) -> Self {
        Addr { network, node }
    }

    /// The address of `node` on the backbone (network 0).
    pub const fn backbone(node: u32) -> Self {
        Addr::new(0, node)
    }

    /// Whether this is a broadcast address (node `0xFFFFFFFF`, any network).
    pub const fn is_broadcast(&self) -> bool {
        self.node == Self::BROADCAST_NODE
    }

    /// The 6-byte binary form: network (u16) then node (u32), big-endian.
    pub fn to_bytes(&self) -> [u8; 6] {
        let mut out = [0u8; 6];
        out[..2].copy_from_slice(&self.network.to_be_bytes());
        out[2..].copy_from_slice(&self.node.to_be_bytes());
        out
    }

    /// Reads the binary form from the first 6 bytes of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        check_len("address", bytes, Self::LEN)?;
        Ok(Addr::new(be16(bytes, 0), be32(bytes, 2)))
    }
}

/// Why a text address was refused (the accept/reject rules of `spec/wire.md` §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddrParseError {
    /// No `:` between network and node parts.
    #[error("missing ':' between network and node (expected N:NNNN.HHHH.LLLL)")]
    MissingColon,
    /// The decimal network is empty, not plain digits, or above 65535.
    #[error("network must be a decimal number 0-65535")]
    BadNetwork,
    /// The node part is not exactly three groups of four hex digits.
    #[error("node part must be three groups of 4 hex digits (NNNN.HHHH.LLLL)")]
    BadGroups,
    /// The first hex group differs from the decimal network.
    #[error("network mismatch: the first hex group must equal the decimal network")]
    NetworkMismatch,
    /// The port is empty, not plain digits, or above 65535.
    #[error("port must be a decimal number 0-65535")]
    BadPort,
}

/// Parses plain decimal digits (no sign, no spaces, leading zeros allowed) up to `max`.
fn parse_decimal(text: &str, max: u32) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: u32 = 0;
    for b in text.bytes() {
        value = value.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
        if value > max {
            return None;
        }
    }
    Some(value)
}

/// Parses exactly four hex digits, either case.
fn parse_group(text: &str) -> Option<u16> {
    if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(text, 16).ok()
}

impl FromStr for Addr {
    type Err = AddrParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (network, node) = text.split_once(':').ok_or(AddrParseError::MissingColon)?;
        let network =
            parse_decimal(network, u32::from(u16::MAX)).ok_or(AddrParseError::BadNetwork)?;
        let mut groups = node.split('.');
        let mut next = || groups.next().and_then(parse_group);
        let (net_hex, high, low) = match (next(), next(), next()) {
            (Some(n), Some(h), Some(l)) => (n, h, l),
            _ => return Err(AddrParseError::BadGroups),
        };
        if groups.next().is_some() {
            return Err(AddrParseError::BadGroups);
        }
        if u32::from(net_hex) != network {
            return Err(AddrParseError::NetworkMismatch);
        }
        Ok(Addr::new(net_hex, (u32::from(high) << 16) | u32::from(low)))
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{:04X}.{:04X}.{:04X}",
            self.network,
            self.network,
            self.node >> 16,
            self.node & 0xFFFF
        )
    }
}

/// A virtual address and a port: `<address>:<port>` as text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketAddr {
    /// The virtual address.
    pub addr: Addr,
    /// The virtual port.
    pub port: u16,
}

impl SocketAddr {
    /// `addr` at `port`.
    pub const fn new(addr: Addr, port: u16) -> Self {
        SocketAddr { addr, port }
    }
}

impl FromStr for SocketAddr {
    type Err = AddrParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, port) = text.rsplit_once(':').ok_or(AddrParseError::MissingColon)?;
        let addr = addr.parse()?;
        let port = parse_decimal(port, u32::from(u16::MAX)).ok_or(AddrParseError::BadPort)?;
        Ok(SocketAddr::new(addr, port as u16))
    }
}

impl fmt::Display for SocketAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.addr, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_form() {
        let addr = Addr::new(1, 0xF291_0004);
        assert_eq!(addr.to_bytes(), [0x00, 0x01, 0xF2, 0x91, 0x00, 0x04]);
        assert_eq!(Addr::decode(&addr.to_bytes()).unwrap(), addr);
        assert!(Addr::decode(&[0; 5]).is_err());
    }

    #[test]
    fn text_form_table() {
        let table = [
            ((0, 0), "0:0000.0000.0000"),
            ((0, 1), "0:0000.0000.0001"),
            ((0, 42), "0:0000.0000.002A"),
            ((1, 0xF291_0004), "1:0001.F291.0004"),
            ((23, 1), "23:0017.0000.0001"),
            ((5, 0xFFFF_FFFF), "5:0005.FFFF.FFFF"),
            ((65535, 0xFFFF_FFFF), "65535:FFFF.FFFF.FFFF"),
        ];
        for ((network, node), text) in table {
            let addr = Addr::new(network, node);
            assert_eq!(addr.to_string(), text);
            assert_eq!(text.parse::<Addr>().unwrap(), addr);
        }
        assert!(Addr::new(5, 0xFFFF_FFFF).is_broadcast());
    }

    #[test]
    fn accepted_inputs() {
        assert_eq!("0:0000.0000.0001".parse(), Ok(Addr::new(0, 1)));
        assert_eq!("1:0001.f291.0004".parse(), Ok(Addr::new(1, 0xF291_0004)));
        assert_eq!("007:0007.0000.0001".parse(), Ok(Addr::new(7, 1)));
    }

    #[test]
    fn rejected_inputs() {
        use AddrParseError::*;
        let table = [
            ("1:0000.0000.0001", NetworkMismatch),
            ("1:00A3.F291.0004", NetworkMismatch),
            ("0:000.0000.0000", BadGroups),
            ("0:0000.0000", BadGroups),
            ("0:0000.0000.0000.0000", BadGroups),
            ("99999:0000.0000.0000", BadNetwork),
            ("0:ZZZZ.0000.0000", BadGroups),
            ("+0:0000.0000.0000", BadNetwork),
            (" 0:0000.0000.0001", BadNetwork),
            ("0:0000.0000.0001 ", BadGroups),
            ("0000.0000.0001", MissingColon),
            (":0000.0000.0001", BadNetwork),
            ("0x0:0000.0000.0001", BadNetwork),
            ("0:+000.0000.0001", BadGroups),
            ("4294967296:0000.0000.0000", BadNetwork),
        ];
        for (text, err) in table {
            assert_eq!(text.parse::<Addr>(), Err(err), "{text:?}");
        }
    }

    #[test]
    fn socket_addr_text() {
        let sa: SocketAddr = "0:0000.0000.0001:1000".parse().unwrap();
        assert_eq!(sa, SocketAddr::new(Addr::new(0, 1), 1000));
        assert_eq!(sa.to_string(), "0:0000.0000.0001:1000");
        assert_eq!("0:0000.0000.0001:0".parse::<SocketAddr>().unwrap().port, 0);
        assert_eq!(
            "0:0000.0000.0001:007".parse::<SocketAddr>().unwrap().port,
            7
        );
        for bad in [
            "0:0000.0000.0001:",
            "0:0000.0000.0001:-1",
            "0:0000.0000.0001:65536",
        ] {
            assert_eq!(
                bad.parse::<SocketAddr>(),
                Err(AddrParseError::BadPort),
                "{bad}"
            );
        }
        assert!("1:00A3.F291.0004:1000".parse::<SocketAddr>().is_err());
    }
}
