//! Whatever arrives on the tunnel socket, from whoever, the tunnel does not panic, and a frame
//! that was tampered with never reaches the router.

use pilot::crypto::{Identity, LocalKeys, RegistryKey};
use pilot::net::seeded_rng;
use pilot::tunnel::{Tunnel, TunnelConfig, TunnelEvent};
use pilot::wire::{Addr, BeaconMessage, Header, Protocol};
use proptest::prelude::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const BEACON: ([u8; 4], u16) = ([192, 0, 2, 1], 9001);

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, n], 4000))
}

fn packet(from: u32, to: u32, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        protocol: Protocol::DATAGRAM,
        src: Addr::backbone(from),
        dst: Addr::backbone(to),
        ..Header::default()
    };
    let mut out = Vec::new();
    header.encode_packet(payload, &mut out).unwrap();
    out
}

/// Nodes 1 and 2, keyed with each other directly; returns them with the time.
fn keyed_pair() -> (Tunnel, Tunnel, Instant) {
    let mut rng = seeded_rng(5);
    let ids = [Identity::generate(&mut rng), Identity::generate(&mut rng)];
    let config = TunnelConfig {
        beacon: Some(SocketAddr::from(BEACON)),
        ..TunnelConfig::default()
    };
    let mut tunnels = [1u32, 2].map(|node| {
        let keys = LocalKeys::generate(ids[node as usize - 1].clone(), &mut rng);
        Tunnel::new(node, keys, config.clone(), seeded_rng(u64::from(node)))
    });
    let now = Instant::now();
    tunnels[0].add_peer(now, 2, Some(addr(2))).unwrap();
    let mut plain = vec![0; 65_536];
    for _ in 0..8 {
        for i in 0..2 {
            while let Some(event) = tunnels[i].poll_event() {
                if let TunnelEvent::NeedRegistryKey(node) = event {
                    let key = RegistryKey::Known(ids[node as usize - 1].public_key());
                    tunnels[i].on_registry_key(now, node, key);
                }
            }
            while let Some(t) = tunnels[i].poll_transmit() {
                let from = addr(i as u8 + 1);
                if t.to == addr(1) {
                    tunnels[0].handle_datagram(now, from, &t.bytes, &mut plain);
                } else if t.to == addr(2) {
                    tunnels[1].handle_datagram(now, from, &t.bytes, &mut plain);
                }
            }
        }
    }
    let [a, b] = tunnels;
    assert!(a.is_keyed(2) && b.is_keyed(1));
    (a, b, now)
}

fn source() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        Just(SocketAddr::from(BEACON)),
        Just(addr(1)),
        Just(addr(66)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_datagrams_never_panic(
        datagrams in proptest::collection::vec(
            (source(), proptest::collection::vec(any::<u8>(), 0..200)), 1..16),
        prefix in prop_oneof![
            Just(&b""[..]), Just(&b"PILS"[..]), Just(&b"PILA"[..]), Just(&b"PILK"[..]),
            Just(&b"PILT"[..]), Just(&b"PILP"[..]), Just(&[6u8, 0, 0, 0, 1][..]),
            Just(&[4u8][..]), Just(&[2u8][..]),
        ],
    ) {
        let (_, mut b, now) = keyed_pair();
        let mut plain = vec![0; 65_536];
        for (i, (from, body)) in datagrams.iter().enumerate() {
            let mut bytes = prefix.to_vec();
            bytes.extend_from_slice(body);
            let now = now + Duration::from_millis(i as u64 * 300);
            b.handle_datagram(now, *from, &bytes, &mut plain);
            b.handle_timeout(now);
            while b.poll_transmit().is_some() {}
            while b.poll_event().is_some() {}
        }
    }

    #[test]
    fn tampered_frames_never_reach_the_router(
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        relayed in any::<bool>(),
    ) {
        let (mut a, mut b, now) = keyed_pair();
        a.send(now, 2, &packet(1, 2, b"genuine payload")).unwrap();
        let frame = a.poll_transmit().unwrap().bytes;
        let mut bytes = if relayed {
            let mut d = Vec::new();
            BeaconMessage::RelayDeliver { sender: 1, inner: &frame }.encode(&mut d);
            d
        } else {
            frame
        };
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        let from = if relayed { SocketAddr::from(BEACON) } else { addr(1) };
        let mut plain = vec![0; 65_536];
        let got = b.handle_datagram(now, from, &bytes, &mut plain).map(|r| r.bytes.to_vec());
        prop_assert_eq!(got, None);
    }
}
