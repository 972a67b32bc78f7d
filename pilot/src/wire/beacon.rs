//! Beacon messages (`spec/wire.md` §6): one type byte below `0x10`, then a fixed layout.
//!
//! | type | message        | layout after the type byte                          |
//! |------|----------------|-----------------------------------------------------|
//! | 0x01 | Discover       | node u32                                            |
//! | 0x02 | Discover Reply | endpoint (§6.3)                                     |
//! | 0x03 | Punch Request  | requester u32, target u32                           |
//! | 0x04 | Punch Command  | endpoint                                            |
//! | 0x05 | Relay          | sender u32, destination u32, inner frame (may be empty) |
//! | 0x06 | Relay Deliver  | sender u32, inner frame (at least one byte)         |
//! | 0x07 | Sync           | beacon u32, count u16, count × node u32             |
//!
//! An endpoint is `[len 4|16][IP][port u16]`; IPv4 and IPv4-mapped IPv6 addresses use 4 bytes.
//!
//! Discover and Discover Reply may carry a [`MoveProof`] trailer after their fixed layout (our
//! extension; Go beacons and daemons read the fixed part and ignore what follows).

use super::{be16, be32, check_len, DecodeError, EncodeError};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Message type codes.
pub mod kind {
    /// Discover.
    pub const DISCOVER: u8 = 0x01;
    /// Discover Reply.
    pub const DISCOVER_REPLY: u8 = 0x02;
    /// Punch Request.
    pub const PUNCH_REQUEST: u8 = 0x03;
    /// Punch Command.
    pub const PUNCH_COMMAND: u8 = 0x04;
    /// Relay.
    pub const RELAY: u8 = 0x05;
    /// Relay Deliver.
    pub const RELAY_DELIVER: u8 = 0x06;
    /// Sync (gossip between beacons).
    pub const SYNC: u8 = 0x07;
}

/// Bytes a Relay message adds before the inner frame.
pub const RELAY_PREFIX_LEN: usize = 9;
/// Bytes a Relay Deliver message adds before the inner frame.
pub const RELAY_DELIVER_PREFIX_LEN: usize = 5;
/// Most node IDs one Sync can list (the count is a u16).
pub const SYNC_MAX_NODES: usize = u16::MAX as usize;

/// Whether a datagram's first byte marks a beacon message rather than a tunnel frame.
pub fn is_beacon_message(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|&b| b < 0x10)
}

/// A return-routability proof (`"PBM1"` ‖ 16 bytes) a beacon appends to the Discover Reply it
/// sends to a node's new port when it refuses to move the node's fresh entry there; a Discover
/// carrying it back shows the sender receives at that address, so the entry may move at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MoveProof(pub [u8; MoveProof::TAG_LEN]);

impl MoveProof {
    /// The trailer's first bytes.
    pub const MAGIC: [u8; 4] = *b"PBM1";
    /// Length of the proof itself.
    pub const TAG_LEN: usize = 16;
    /// Length of the whole trailer.
    pub const LEN: usize = 4 + Self::TAG_LEN;

    /// Reads a trailer: exactly the magic and a tag, or nothing (other trailing bytes are
    /// ignored, as a Go beacon ignores them).
    fn decode(trailer: &[u8]) -> Option<MoveProof> {
        let tag = trailer.strip_prefix(&Self::MAGIC)?;
        tag.try_into().ok().map(MoveProof)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&Self::MAGIC);
        out.extend_from_slice(&self.0);
    }
}

/// The node IDs of a Sync, read in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeIds<'a>(&'a [u8]);

impl<'a> NodeIds<'a> {
    /// Number of IDs.
    pub fn len(&self) -> usize {
        self.0.len() / 4
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The IDs in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.0.chunks_exact(4).map(|c| be32(c, 0))
    }
}

/// One decoded beacon message; relay payloads borrow from the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BeaconMessage<'a> {
    /// A node announces itself; the beacon records the source address.
    Discover {
        /// The announcing node (0 during start-up discovery).
        node: u32,
        /// A proof received in a Discover Reply, sent back to move the node's entry here.
        proof: Option<MoveProof>,
    },
    /// The beacon tells a node the address it saw.
    DiscoverReply {
        /// The observed public endpoint.
        endpoint: SocketAddr,
        /// Present when the beacon kept the node's entry elsewhere and will move it here on
        /// a Discover that carries this proof.
        proof: Option<MoveProof>,
    },
    /// A node asks the beacon to coordinate a hole punch with `target`.
    PunchRequest {
        /// The asking node.
        requester: u32,
        /// The node to punch towards.
        target: u32,
    },
    /// The beacon tells a node to send punch probes to `endpoint`.
    PunchCommand {
        /// Where to send the probes.
        endpoint: SocketAddr,
    },
    /// A frame for the beacon to forward to `destination`.
    Relay {
        /// The node that sent it (claimed).
        sender: u32,
        /// The node to deliver to.
        destination: u32,
        /// The tunnel frame to deliver.
        inner: &'a [u8],
    },
    /// A frame the beacon forwards from `sender`.
    RelayDeliver {
        /// The node that sent it (claimed).
        sender: u32,
        /// The tunnel frame.
        inner: &'a [u8],
    },
    /// A beacon lists the nodes it has observed.
    Sync {
        /// The announcing beacon's ID.
        beacon: u32,
        /// The nodes it has observed.
        nodes: NodeIds<'a>,
    },
}

/// Reads an endpoint (§6.3) from the start of `bytes`.
fn decode_endpoint(what: &'static str, bytes: &[u8]) -> Result<SocketAddr, DecodeError> {
    decode_endpoint_len(what, bytes).map(|(endpoint, _)| endpoint)
}

/// Reads an endpoint (§6.3) from the start of `bytes`; returns it and its encoded length.
fn decode_endpoint_len(
    what: &'static str,
    bytes: &[u8],
) -> Result<(SocketAddr, usize), DecodeError> {
    check_len(what, bytes, 1)?;
    let ip_len = usize::from(bytes[0]);
    if ip_len != 4 && ip_len != 16 {
        return Err(DecodeError::InvalidField {
            what,
            field: "IP length (must be 4 or 16)",
        });
    }
    check_len(what, bytes, 1 + ip_len + 2)?;
    let ip = if ip_len == 4 {
        IpAddr::V4(Ipv4Addr::new(bytes[1], bytes[2], bytes[3], bytes[4]))
    } else {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&bytes[1..17]);
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    Ok((SocketAddr::new(ip, be16(bytes, 1 + ip_len)), 1 + ip_len + 2))
}

/// Appends an endpoint (§6.3); IPv4-mapped IPv6 addresses are written as IPv4.
fn encode_endpoint(endpoint: &SocketAddr, out: &mut Vec<u8>) {
    match endpoint.ip().to_canonical() {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(16);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&endpoint.port().to_be_bytes());
}

impl<'a> BeaconMessage<'a> {
    /// Decodes a beacon message. Trailing bytes after fixed layouts are ignored.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        check_len("beacon message", bytes, 1)?;
        let body = &bytes[1..];
        match bytes[0] {
            kind::DISCOVER => {
                check_len("Discover", bytes, 5)?;
                Ok(BeaconMessage::Discover {
                    node: be32(body, 0),
                    proof: MoveProof::decode(&body[4..]),
                })
            }
            kind::DISCOVER_REPLY => {
                let (endpoint, len) = decode_endpoint_len("Discover Reply", body)?;
                Ok(BeaconMessage::DiscoverReply {
                    endpoint,
                    proof: MoveProof::decode(&body[len..]),
                })
            }
            kind::PUNCH_REQUEST => {
                check_len("Punch Request", bytes, 9)?;
                Ok(BeaconMessage::PunchRequest {
                    requester: be32(body, 0),
                    target: be32(body, 4),
                })
            }
            kind::PUNCH_COMMAND => Ok(BeaconMessage::PunchCommand {
                endpoint: decode_endpoint("Punch Command", body)?,
            }),
            kind::RELAY => {
                check_len("Relay", bytes, RELAY_PREFIX_LEN)?;
                Ok(BeaconMessage::Relay {
                    sender: be32(body, 0),
                    destination: be32(body, 4),
                    inner: &body[8..],
                })
            }
            kind::RELAY_DELIVER => {
                check_len("Relay Deliver", bytes, RELAY_DELIVER_PREFIX_LEN + 1)?;
                Ok(BeaconMessage::RelayDeliver {
                    sender: be32(body, 0),
                    inner: &body[4..],
                })
            }
            kind::SYNC => {
                check_len("Sync", bytes, 7)?;
                let count = usize::from(be16(body, 4));
                let ids = &body[6..];
                if ids.len() < 4 * count {
                    return Err(DecodeError::Truncated {
                        what: "Sync",
                        declared: 4 * count,
                        available: ids.len(),
                    });
                }
                Ok(BeaconMessage::Sync {
                    beacon: be32(body, 0),
                    nodes: NodeIds(&ids[..4 * count]),
                })
            }
            other => Err(DecodeError::UnknownKind {
                what: "beacon message",
                found: u32::from(other),
            }),
        }
    }

    /// Appends the encoded message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            BeaconMessage::Discover { node, proof } => {
                out.push(kind::DISCOVER);
                out.extend_from_slice(&node.to_be_bytes());
                if let Some(proof) = proof {
                    proof.encode(out);
                }
            }
            BeaconMessage::DiscoverReply { endpoint, proof } => {
                out.push(kind::DISCOVER_REPLY);
                encode_endpoint(&endpoint, out);
                if let Some(proof) = proof {
                    proof.encode(out);
                }
            }
            BeaconMessage::PunchRequest { requester, target } => {
                out.push(kind::PUNCH_REQUEST);
                out.extend_from_slice(&requester.to_be_bytes());
                out.extend_from_slice(&target.to_be_bytes());
            }
            BeaconMessage::PunchCommand { endpoint } => {
                out.push(kind::PUNCH_COMMAND);
                encode_endpoint(&endpoint, out);
            }
            BeaconMessage::Relay {
                sender,
                destination,
                inner,
            } => {
                Self::encode_relay_prefix(sender, destination, out);
                out.extend_from_slice(inner);
            }
            BeaconMessage::RelayDeliver { sender, inner } => {
                Self::encode_relay_deliver_prefix(sender, out);
                out.extend_from_slice(inner);
            }
            BeaconMessage::Sync { beacon, nodes } => {
                out.push(kind::SYNC);
                out.extend_from_slice(&beacon.to_be_bytes());
                out.extend_from_slice(&(nodes.len() as u16).to_be_bytes());
                out.extend_from_slice(nodes.0);
            }
        }
    }

    /// Appends the 9-byte Relay prefix; the caller appends the inner frame.
    pub fn encode_relay_prefix(sender: u32, destination: u32, out: &mut Vec<u8>) {
        out.push(kind::RELAY);
        out.extend_from_slice(&sender.to_be_bytes());
        out.extend_from_slice(&destination.to_be_bytes());
    }

    /// Appends the 5-byte Relay Deliver prefix; the caller appends the inner frame.
    pub fn encode_relay_deliver_prefix(sender: u32, out: &mut Vec<u8>) {
        out.push(kind::RELAY_DELIVER);
        out.extend_from_slice(&sender.to_be_bytes());
    }

    /// Appends a Sync listing `nodes`; refuses more than [`SYNC_MAX_NODES`].
    pub fn encode_sync(beacon: u32, nodes: &[u32], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if nodes.len() > SYNC_MAX_NODES {
            return Err(EncodeError::PayloadTooLarge {
                len: nodes.len(),
                max: SYNC_MAX_NODES,
            });
        }
        out.reserve(7 + 4 * nodes.len());
        out.push(kind::SYNC);
        out.extend_from_slice(&beacon.to_be_bytes());
        out.extend_from_slice(&(nodes.len() as u16).to_be_bytes());
        for node in nodes {
            out.extend_from_slice(&node.to_be_bytes());
        }
        Ok(())
    }
}

/// Writes a summary of a relayed inner frame: decoded if it is a tunnel frame.
fn fmt_inner(f: &mut fmt::Formatter<'_>, inner: &[u8]) -> fmt::Result {
    match super::TunnelFrame::decode(inner) {
        Ok(frame) => write!(f, "[{frame}]"),
        Err(_) => write!(f, "[{} bytes]", inner.len()),
    }
}

fn fmt_proof(f: &mut fmt::Formatter<'_>, proof: &Option<MoveProof>) -> fmt::Result {
    match proof {
        Some(_) => f.write_str(" +move-proof"),
        None => Ok(()),
    }
}

impl fmt::Display for BeaconMessage<'_> {
    /// One line for traces and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BeaconMessage::Discover { node, proof } => {
                write!(f, "beacon Discover node={node}")?;
                fmt_proof(f, proof)
            }
            BeaconMessage::DiscoverReply { endpoint, proof } => {
                write!(f, "beacon DiscoverReply endpoint={endpoint}")?;
                fmt_proof(f, proof)
            }
            BeaconMessage::PunchRequest { requester, target } => {
                write!(f, "beacon PunchRequest {requester}>{target}")
            }
            BeaconMessage::PunchCommand { endpoint } => {
                write!(f, "beacon PunchCommand endpoint={endpoint}")
            }
            BeaconMessage::Relay {
                sender,
                destination,
                inner,
            } => {
                write!(f, "beacon Relay {sender}>{destination} ")?;
                fmt_inner(f, inner)
            }
            BeaconMessage::RelayDeliver { sender, inner } => {
                write!(f, "beacon RelayDeliver from={sender} ")?;
                fmt_inner(f, inner)
            }
            BeaconMessage::Sync { beacon, nodes } => {
                write!(f, "beacon Sync beacon={beacon} nodes={}", nodes.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    fn round_trip(bytes: &[u8], expected: BeaconMessage<'_>) {
        let decoded = BeaconMessage::decode(bytes).unwrap();
        assert_eq!(decoded, expected);
        let mut out = Vec::new();
        decoded.encode(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn spec_examples() {
        round_trip(
            &hex!("01 00 00 00 2A"),
            BeaconMessage::Discover {
                node: 42,
                proof: None,
            },
        );
        round_trip(
            &hex!("02 04 CB 00 71 07 9C 40"),
            BeaconMessage::DiscoverReply {
                endpoint: "203.0.113.7:40000".parse().unwrap(),
                proof: None,
            },
        );
        round_trip(
            &hex!("02 10 20 01 0D B8 00 00 00 00 00 00 00 00 00 00 00 01 0F A0"),
            BeaconMessage::DiscoverReply {
                endpoint: "[2001:db8::1]:4000".parse().unwrap(),
                proof: None,
            },
        );
        round_trip(
            &hex!("04 04 C6 33 64 09 CA 6C"),
            BeaconMessage::PunchCommand {
                endpoint: "198.51.100.9:51820".parse().unwrap(),
            },
        );
        round_trip(
            &hex!("03 00 00 00 2A 00 00 00 07"),
            BeaconMessage::PunchRequest {
                requester: 42,
                target: 7,
            },
        );
        let sync = hex!("07 00 00 00 03 00 02 00 00 00 2A 00 00 00 07");
        let BeaconMessage::Sync { beacon, nodes } = BeaconMessage::decode(&sync).unwrap() else {
            panic!("not a Sync");
        };
        assert_eq!(beacon, 3);
        assert_eq!(nodes.iter().collect::<Vec<_>>(), [42, 7]);
        let mut out = Vec::new();
        BeaconMessage::encode_sync(3, &[42, 7], &mut out).unwrap();
        assert_eq!(out, sync);
    }

    #[test]
    fn a_move_proof_rides_after_the_fixed_layout_and_anything_else_there_is_ignored() {
        let proof = MoveProof([0xAB; 16]);
        let tail = hex!("50 42 4D 31 AB AB AB AB AB AB AB AB AB AB AB AB AB AB AB AB");
        let mut discover = hex!("01 00 00 00 2A").to_vec();
        discover.extend_from_slice(&tail);
        round_trip(
            &discover,
            BeaconMessage::Discover {
                node: 42,
                proof: Some(proof),
            },
        );
        let mut reply = hex!("02 04 CB 00 71 07 9C 40").to_vec();
        reply.extend_from_slice(&tail);
        round_trip(
            &reply,
            BeaconMessage::DiscoverReply {
                endpoint: "203.0.113.7:40000".parse().unwrap(),
                proof: Some(proof),
            },
        );
        // A short, long or foreign trailer is no proof; the message itself still decodes.
        for bad in [
            &tail[..19],
            &[&tail[..], &[0]].concat()[..],
            b"PBS1xxxxxxxxxxxxxxxx",
        ] {
            let mut bytes = hex!("01 00 00 00 2A").to_vec();
            bytes.extend_from_slice(bad);
            assert_eq!(
                BeaconMessage::decode(&bytes),
                Ok(BeaconMessage::Discover {
                    node: 42,
                    proof: None
                })
            );
        }
    }

    #[test]
    fn relay_example_wraps_the_pilk_vector() {
        let pilk = crate::wire::tunnel::tests::PILK_NODE2;
        let mut relay = Vec::new();
        BeaconMessage::Relay {
            sender: 2,
            destination: 1,
            inner: &pilk,
        }
        .encode(&mut relay);
        assert_eq!(relay.len(), 49);
        assert_eq!(
            &relay[..13],
            &hex!("05 00 00 00 02 00 00 00 01 50 49 4C 4B")
        );
        let mut deliver = Vec::new();
        BeaconMessage::RelayDeliver {
            sender: 2,
            inner: &pilk,
        }
        .encode(&mut deliver);
        assert_eq!(deliver.len(), 45);
        assert_eq!(&deliver[..9], &hex!("06 00 00 00 02 50 49 4C 4B"));
        assert_eq!(
            BeaconMessage::decode(&deliver).unwrap(),
            BeaconMessage::RelayDeliver {
                sender: 2,
                inner: &pilk
            }
        );
    }

    #[test]
    fn mapped_ipv6_is_sent_as_ipv4() {
        let mut out = Vec::new();
        let endpoint = "[::ffff:203.0.113.7]:40000".parse().unwrap();
        BeaconMessage::DiscoverReply {
            endpoint,
            proof: None,
        }
        .encode(&mut out);
        assert_eq!(out, hex!("02 04 CB 00 71 07 9C 40"));
    }

    #[test]
    fn malformed_messages_are_errors() {
        for bad in [
            &b""[..],
            &hex!("01 00 00 00"),
            &hex!("02 05 01 02 03 04 05 00 01"),
            &hex!("02 04 CB 00 71 07 9C"),
            &hex!("02 10 20 01"),
            &hex!("03 00 00 00 2A 00 00 00"),
            &hex!("05 00 00 00 02 00 00 00"),
            &hex!("06 00 00 00 02"),
            &hex!("07 00 00 00 03 00 02 00 00 00 2A"),
            &hex!("00"),
            &hex!("0F 01 02"),
        ] {
            assert!(BeaconMessage::decode(bad).is_err(), "{bad:02x?}");
        }
        assert_eq!(
            BeaconMessage::decode(&hex!("05 00 00 00 02 00 00 00 01")).unwrap(),
            BeaconMessage::Relay {
                sender: 2,
                destination: 1,
                inner: &[]
            }
        );
        assert!(is_beacon_message(&[0x0F]));
        assert!(!is_beacon_message(b"PILT"));
        assert!(!is_beacon_message(&[]));
    }
}
