//! Properties of every wire codec: encoding then decoding gives back the value, and decoding
//! arbitrary bytes never panics.

use pilot::wire::beacon::{BeaconMessage, MoveProof};
use pilot::wire::tunnel::{AuthKeyExchange, KeyExchange, Nonce, SealedFrame, TunnelFrame};
use pilot::wire::{
    Addr, Datagram, Flags, Header, Packet, Protocol, SackBlock, SackList, SocketAddr,
};
use proptest::prelude::*;

fn addr() -> impl Strategy<Value = Addr> {
    (any::<u16>(), any::<u32>()).prop_map(|(network, node)| Addr::new(network, node))
}

fn header() -> impl Strategy<Value = Header> {
    (
        0u8..16,
        0u8..16,
        any::<u8>(),
        addr(),
        addr(),
        any::<(u16, u16, u32, u32, u16)>(),
    )
        .prop_map(
            |(version, flags, protocol, src, dst, (sp, dp, seq, ack, window))| Header {
                version,
                flags: Flags::from_bits(flags),
                protocol: Protocol(protocol),
                src,
                dst,
                src_port: sp,
                dst_port: dp,
                seq,
                ack,
                window,
            },
        )
}

fn socket_addr() -> impl Strategy<Value = std::net::SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| (ip, port).into()),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_filter("IPv4-mapped addresses are sent as IPv4", |(ip, _)| {
                std::net::Ipv6Addr::from(*ip).to_ipv4_mapped().is_none()
            })
            .prop_map(|(ip, port)| (std::net::Ipv6Addr::from(ip), port).into()),
    ]
}

proptest! {
    #[test]
    fn address_text_round_trips(a in addr(), port in any::<u16>()) {
        prop_assert_eq!(a.to_string().parse::<Addr>(), Ok(a));
        prop_assert_eq!(Addr::decode(&a.to_bytes()), Ok(a));
        let sa = SocketAddr::new(a, port);
        prop_assert_eq!(sa.to_string().parse::<SocketAddr>(), Ok(sa));
    }

    #[test]
    fn address_parser_never_panics(text in ".{0,40}") {
        let _ = text.parse::<Addr>();
        let _ = text.parse::<SocketAddr>();
    }

    #[test]
    fn packet_round_trips(h in header(), payload in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut out = Vec::new();
        h.encode_packet(&payload, &mut out).unwrap();
        let p = Packet::decode(&out).unwrap();
        prop_assert_eq!(p.header, h);
        prop_assert_eq!(p.payload, &payload[..]);
    }

    #[test]
    fn sack_round_trips(blocks in proptest::collection::vec(any::<(u32, u32)>(), 1..=4)) {
        let mut list = SackList::new();
        for (left, right) in &blocks {
            list.push(SackBlock { left: *left, right: *right });
        }
        let mut out = Vec::new();
        list.encode(&mut out);
        prop_assert_eq!(SackList::decode(&out), Some(list));
    }

    #[test]
    fn tunnel_frames_round_trip(
        sender in any::<u32>(),
        x in any::<[u8; 32]>(),
        e in any::<[u8; 32]>(),
        sig in proptest::collection::vec(any::<u8>(), 64),
        prefix in any::<[u8; 4]>(),
        counter in any::<u64>(),
        ct in proptest::collection::vec(any::<u8>(), 16..200),
    ) {
        let mut out = Vec::new();
        KeyExchange { sender, x25519: x }.encode(&mut out);
        prop_assert_eq!(
            TunnelFrame::decode(&out),
            Ok(TunnelFrame::KeyExchange(KeyExchange { sender, x25519: x }))
        );

        let mut signature = [0u8; 64];
        signature.copy_from_slice(&sig);
        let ax = AuthKeyExchange { sender, x25519: x, ed25519: e, signature };
        out.clear();
        ax.encode(&mut out);
        prop_assert_eq!(TunnelFrame::decode(&out), Ok(TunnelFrame::AuthKeyExchange(ax)));

        let nonce = Nonce { prefix, counter };
        out.clear();
        SealedFrame::encode_prefix(sender, &nonce, &mut out);
        out.extend_from_slice(&ct);
        prop_assert_eq!(
            TunnelFrame::decode(&out),
            Ok(TunnelFrame::Sealed(SealedFrame { sender, nonce, ciphertext: &ct }))
        );
    }

    #[test]
    fn beacon_messages_round_trip(
        a in any::<u32>(),
        b in any::<u32>(),
        endpoint in socket_addr(),
        inner in proptest::collection::vec(any::<u8>(), 1..100),
        nodes in proptest::collection::vec(any::<u32>(), 0..50),
    ) {
        let messages = [
            BeaconMessage::Discover { node: a, proof: None },
            BeaconMessage::Discover { node: b, proof: Some(MoveProof([a as u8; 16])) },
            BeaconMessage::DiscoverReply { endpoint, proof: None },
            BeaconMessage::DiscoverReply { endpoint, proof: Some(MoveProof([b as u8; 16])) },
            BeaconMessage::PunchRequest { requester: a, target: b },
            BeaconMessage::PunchCommand { endpoint },
            BeaconMessage::Relay { sender: a, destination: b, inner: &inner },
            BeaconMessage::RelayDeliver { sender: a, inner: &inner },
        ];
        for message in messages {
            let mut out = Vec::new();
            message.encode(&mut out);
            prop_assert_eq!(BeaconMessage::decode(&out), Ok(message));
        }
        let mut out = Vec::new();
        BeaconMessage::encode_sync(a, &nodes, &mut out).unwrap();
        match BeaconMessage::decode(&out) {
            Ok(BeaconMessage::Sync { beacon, nodes: ids }) => {
                prop_assert_eq!(beacon, a);
                prop_assert_eq!(ids.iter().collect::<Vec<_>>(), nodes);
            }
            other => prop_assert!(false, "decoded {:?}", other),
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Packet::decode(&bytes);
        let _ = SackList::decode(&bytes);
        let _ = TunnelFrame::decode(&bytes);
        let _ = BeaconMessage::decode(&bytes);
        let _ = Datagram::decode(&bytes);
        let _ = Addr::decode(&bytes);
    }

    #[test]
    fn decoding_mutated_frames_never_panics(
        h in header(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        magic in prop_oneof![Just(*b"PILT"), Just(*b"PILS"), Just(*b"PILK"), Just(*b"PILA")],
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        // Start from well-formed bytes so decoders get past their first checks.
        let mut bytes = magic.to_vec();
        h.encode_packet(&payload, &mut bytes).unwrap();
        bytes.extend_from_slice(&[0u8; 100]);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= value;
        }
        let end = cut.index(bytes.len() + 1);
        let _ = Datagram::decode(&bytes[..end]);
    }
}
