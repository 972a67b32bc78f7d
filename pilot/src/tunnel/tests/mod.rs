//! Tunnels talking through an in-test network (`net`): NAT boxes, a beacon, a registry,
//! virtual time. No runtime, no clock, seeded randomness.

mod net;

use super::*;
use crate::crypto::{LocalKeys, RegistryKey};
use crate::net::seeded_rng;
use crate::wire::tunnel::{PILA, PILP};
use crate::wire::BeaconMessage;
use net::*;
use std::time::Duration;

#[test]
fn key_exchange_converges_without_echo_and_delivers_sealed() {
    let mut net = Net::new(1, &[NatKind::Open, NatKind::Open], false);
    net.send(1, 2, b"hello").unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.inbox(2), [msg(b"hello", 1, false)]);
    // A's PILA, B's reply, A's reply to that; the third changes nothing at B.
    assert_eq!(net.pilas_sent(), 3);
    assert!(net.hosts[0].tunnel.is_keyed(2) && net.hosts[1].tunnel.is_keyed(1));
    net.send(2, 1, b"back").unwrap();
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.inbox(1), [msg(b"back", 2, false)]);
    // "back" got no answer (a one-way datagram): 2 checks the peer is alive with one PILA,
    // which 1 answers with a sealed path proof. Then nothing, however long the tunnels idle.
    assert_eq!(net.pilas_sent(), 4);
    let proofs = |net: &Net| {
        net.log
            .iter()
            .filter(|(n, _, b)| *n == 1 && b.starts_with(b"PILS"))
            .count()
    };
    // "hello", the proof that the path became direct, the answer to 2's liveness check.
    assert_eq!(proofs(&net), 3);
    net.run_for(Duration::from_secs(300));
    assert_eq!(net.pilas_sent(), 4, "nothing echoes while idle");
    assert_eq!(proofs(&net), 3);
    assert!(
        net.inbox(1).is_empty() && net.inbox(2).is_empty(),
        "proofs never reach the router"
    );
    // No plaintext ever left either tunnel.
    assert!(net.log.iter().all(|(_, _, b)| !b.starts_with(b"PILT")));
}

#[test]
fn with_a_beacon_both_sides_converge_direct_and_stay_quiet() {
    let mut net = Net::new(2, &[NatKind::Open, NatKind::PortRestrictedCone], true);
    net.send(1, 2, b"hello").unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.inbox(2), [msg(b"hello", 1, false)]);
    net.run_for(Duration::from_secs(10));
    let pilas = net.pilas_sent();
    assert!(pilas <= 10, "{pilas} PILAs");
    net.run_for(Duration::from_secs(300));
    assert_eq!(net.pilas_sent(), pilas, "no key exchange while idle");
}

#[test]
fn plaintext_is_refused_once_keyed_and_by_default_before() {
    let mut net = Net::new(3, &[NatKind::Open, NatKind::Open], false);
    let forged = |from: u32| {
        let mut frame = b"PILT".to_vec();
        frame.extend_from_slice(&packet(from, 2, b"plain"));
        frame
    };
    let a = net.hosts[0].local;
    let now = net.now;
    let b = &mut net.hosts[1].tunnel;
    let mut plain = vec![0; 65_536];
    assert!(
        b.handle_datagram(now, a, &forged(1), &mut plain).is_none(),
        "default: refused"
    );

    let cfg = TunnelConfig {
        accept_plaintext_before_key: true,
        ..config(false)
    };
    let mut net = Net::with_config(3, &[NatKind::Open, NatKind::Open], cfg);
    let now = net.now;
    let b = &mut net.hosts[1].tunnel;
    let frame = forged(1);
    let got = b.handle_datagram(now, a, &frame, &mut plain).unwrap();
    assert!(got.plaintext && got.peer == 1 && got.packet.payload == b"plain");
    net.send(1, 2, b"key up").unwrap();
    net.run_for(Duration::from_secs(1));
    let now = net.now;
    let b = &mut net.hosts[1].tunnel;
    assert!(b.is_keyed(1));
    assert!(
        b.handle_datagram(now, a, &forged(1), &mut plain).is_none(),
        "keyed: refused (Q5)"
    );
}

#[test]
fn inner_source_must_be_the_tunnel_peer_and_destination_us() {
    let mut net = Net::new(4, &[NatKind::Open, NatKind::Open, NatKind::Open], false);
    net.send(1, 2, b"first").unwrap();
    net.run_for(Duration::from_secs(1));
    net.inbox(2);
    let now = net.now;
    // Node 1 is keyed with 2 and seals a packet claiming to come from node 3 (Q6) ...
    let spoofed = packet(3, 2, b"from 3, really");
    net.hosts[0].tunnel.send(now, 2, &spoofed).unwrap();
    // ... and one addressed to node 3.
    net.hosts[0]
        .tunnel
        .send(now, 2, &packet(1, 3, b"for 3"))
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert!(net.inbox(2).is_empty());
    net.send(1, 2, b"honest").unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.inbox(2), [msg(b"honest", 1, false)]);
}

#[test]
fn forged_beacon_messages_from_elsewhere_are_ignored() {
    let mut net = Net::new(5, &[NatKind::Open, NatKind::Open], true);
    net.send(1, 2, b"hello").unwrap();
    net.run_for(Duration::from_secs(3));
    net.inbox(2);
    let a = net.hosts[0].local;
    assert_eq!(net.route(2, 1), Some(PeerRoute::Direct(a)));
    // Capture a genuine sealed frame from 1 to 2 and replay it wrapped in a Relay Deliver, from
    // an address that is not the beacon, with a Punch Command and a Discover Reply.
    let now = net.now;
    net.hosts[0]
        .tunnel
        .send(now, 2, &packet(1, 2, b"captured"))
        .unwrap();
    let captured = net.hosts[0].tunnel.poll_transmit().unwrap().bytes;
    let mut deliver = Vec::new();
    BeaconMessage::RelayDeliver {
        sender: 1,
        inner: &captured,
    }
    .encode(&mut deliver);
    let mut punch = Vec::new();
    BeaconMessage::PunchCommand { endpoint: ATTACKER }.encode(&mut punch);
    let mut reply = Vec::new();
    BeaconMessage::DiscoverReply {
        endpoint: ATTACKER,
        proof: None,
    }
    .encode(&mut reply);
    let b = &mut net.hosts[1].tunnel;
    let mut plain = vec![0; 65_536];
    for forged in [&deliver, &punch, &reply] {
        assert!(b
            .handle_datagram(now, ATTACKER, forged, &mut plain)
            .is_none());
    }
    assert!(
        b.poll_transmit().is_none(),
        "no probes sent for a forged Punch Command"
    );
    assert_eq!(
        b.peer_route(1),
        Some(PeerRoute::Direct(a)),
        "not relayed (Q12)"
    );
    assert_ne!(b.public_endpoint(), Some(ATTACKER));
    // The same Relay Deliver from the beacon is honoured: it opens, and counts as relayed.
    let got = b
        .handle_datagram(now, BEACON, &deliver, &mut plain)
        .unwrap();
    assert!(got.relayed && got.packet.payload == b"captured");
    assert_eq!(
        b.peer_route(1),
        Some(PeerRoute::Direct(a)),
        "a direct path stays direct"
    );
    // And it cannot be replayed.
    assert!(b
        .handle_datagram(now, BEACON, &deliver, &mut plain)
        .is_none());
}

#[test]
fn blocked_direct_path_falls_back_to_relay_and_upgrades_when_unblocked() {
    let mut net = Net::new(6, &[NatKind::Open, NatKind::Open], true);
    net.direct_blocked = true;
    net.send(1, 2, b"via relay").unwrap();
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.inbox(2), [msg(b"via relay", 1, true)]);
    assert_eq!(net.route(1, 2), Some(PeerRoute::Relay));
    assert_eq!(net.route(2, 1), Some(PeerRoute::Relay));
    net.send(2, 1, b"reply via relay").unwrap();
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.inbox(1), [msg(b"reply via relay", 2, true)]);

    net.direct_blocked = false;
    net.run_for(Duration::from_secs(20));
    let (a, b) = (net.hosts[0].local, net.hosts[1].local);
    assert_eq!(net.route(1, 2), Some(PeerRoute::Direct(b)));
    assert_eq!(net.route(2, 1), Some(PeerRoute::Direct(a)));
    net.send(1, 2, b"direct again").unwrap();
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.inbox(2), [msg(b"direct again", 1, false)]);
    let changes = |h: &Host| {
        h.events
            .iter()
            .filter(|e| matches!(e, TunnelEvent::PeerPathChanged { .. }))
            .count()
    };
    assert_eq!(changes(&net.hosts[0]), 2, "relay, then direct");
}

#[test]
fn without_a_beacon_a_blocked_peer_is_not_relayed() {
    let mut net = Net::new(7, &[NatKind::Open, NatKind::Open], false);
    net.direct_blocked = true;
    net.send(1, 2, b"lost").unwrap();
    net.run_for(Duration::from_secs(5));
    assert!(net.inbox(2).is_empty());
    assert_eq!(net.route(1, 2), Some(PeerRoute::Probing));
    assert!(net.log.iter().all(|(_, to, _)| *to != BEACON));
}

#[test]
fn endpoint_change_mid_session_keeps_delivery() {
    let mut net = Net::new(8, &[NatKind::PortRestrictedCone, NatKind::Open], true);
    net.send(1, 2, b"before").unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.inbox(2), [msg(b"before", 1, false)]);
    let old = match net.route(2, 1) {
        Some(PeerRoute::Direct(addr)) => addr,
        other => panic!("not direct: {other:?}"),
    };
    // Node 1's NAT rebinds: its public port changes and old mappings are gone.
    net.hosts[0].nat.as_mut().unwrap().rebind();
    net.send(1, 2, b"after").unwrap();
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.inbox(2), [msg(b"after", 1, false)]);
    let new = match net.route(2, 1) {
        Some(PeerRoute::Direct(addr)) => addr,
        other => panic!("not direct: {other:?}"),
    };
    assert_ne!(new, old, "the authenticated frame moved the endpoint");
    net.send(2, 1, b"reply").unwrap();
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.inbox(1), [msg(b"reply", 2, false)]);
}

#[test]
fn a_restarted_peer_is_rekeyed_after_silence() {
    let mut net = Net::new(9, &[NatKind::Open, NatKind::Open], false);
    net.send(1, 2, b"one").unwrap();
    net.run_for(Duration::from_secs(1));
    net.inbox(2);
    // Node 2 restarts: same identity and node, fresh X25519 pair, no peers. Like a Go daemon
    // it does nothing about PILS it cannot open (no resolve on its side).
    let mut rng = seeded_rng(99);
    let keys = LocalKeys::generate(net.hosts[1].identity.clone(), &mut rng);
    net.hosts[1].tunnel = Tunnel::new(2, keys, config(false), rng);
    net.hosts[1].auto_resolve = false;
    net.send(1, 2, b"lost").unwrap();
    net.run_for(Duration::from_secs(4));
    assert!(net.inbox(2).is_empty());
    assert!(net.hosts[0]
        .events
        .contains(&TunnelEvent::PeerRekeyed { node: 2 }));
    net.send(1, 2, b"after restart").unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.inbox(2), [msg(b"after restart", 1, false)]);
}

#[test]
fn a_sealed_frame_from_an_unknown_node_asks_for_a_resolve() {
    let mut net = Net::new(10, &[NatKind::Open, NatKind::Open], false);
    net.send(1, 2, b"one").unwrap();
    net.run_for(Duration::from_secs(1));
    // This time node 2 restarts and asks its daemon to resolve the unknown sender.
    let mut rng = seeded_rng(100);
    let keys = LocalKeys::generate(net.hosts[1].identity.clone(), &mut rng);
    net.hosts[1].tunnel = Tunnel::new(2, keys, config(false), rng);
    net.send(1, 2, b"lost").unwrap();
    net.send(1, 2, b"lost too").unwrap();
    net.run_for(Duration::from_secs(1));
    let resolves = net.hosts[1]
        .events
        .iter()
        .filter(|e| **e == TunnelEvent::NeedResolve(1))
        .count();
    assert_eq!(resolves, 1, "deduplicated");
    net.send(1, 2, b"recovered").unwrap();
    net.run_for(Duration::from_secs(1));
    assert!(net.inbox(2).contains(&msg(b"recovered", 1, false)));
}

#[test]
fn pending_queue_is_bounded_and_expires() {
    let mut net = Net::new(11, &[NatKind::Open, NatKind::Open], false);
    net.direct_blocked = true;
    for i in 0..100u8 {
        net.send(1, 2, &[i]).unwrap();
    }
    assert_eq!(net.hosts[0].tunnel.pending_len(2), 64);
    // Only the probe schedule sends key exchanges, not each queued packet (Q21).
    net.run_for(Duration::from_secs(1));
    assert!(net.pilas_sent() <= 6, "{}", net.pilas_sent());
    net.run_for(Duration::from_secs(31));
    assert_eq!(net.hosts[0].tunnel.pending_len(2), 0);
    // The newest 64 were kept: unblocking and keying delivers nothing stale.
    net.direct_blocked = false;
    net.send(1, 2, b"fresh").unwrap();
    net.run_for(Duration::from_secs(20));
    assert_eq!(net.inbox(2), [msg(b"fresh", 1, false)]);
}

#[test]
fn registry_key_is_fetched_once_and_the_stashed_pila_processed() {
    let mut net = Net::new(12, &[NatKind::Open, NatKind::Open], false);
    net.hosts[1].auto_registry = false;
    net.send(1, 2, b"waits").unwrap();
    net.run_for(Duration::from_secs(1));
    let asks = |net: &Net| {
        net.hosts[1]
            .events
            .iter()
            .filter(|e| **e == TunnelEvent::NeedRegistryKey(1))
            .count()
    };
    assert_eq!(asks(&net), 1, "one lookup for six probes");
    assert!(!net.hosts[1].tunnel.is_keyed(1));
    assert!(net.inbox(2).is_empty());
    let key = net.registry_key(1);
    net.answer_registry(1, 1, key);
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.inbox(2), [msg(b"waits", 1, false)]);
    assert_eq!(asks(&net), 1, "the answer is cached");
}

#[test]
fn a_pila_with_another_key_than_the_registrys_is_refused() {
    let mut net = Net::new(13, &[NatKind::Open, NatKind::Open], false);
    // The registry says node 1 has some other key: node 1's PILA is refused, no peer appears.
    net.hosts[1].auto_registry = false;
    net.send(1, 2, b"x").unwrap();
    net.run_for(Duration::from_millis(100));
    let now = net.now;
    net.hosts[1]
        .tunnel
        .on_registry_key(now, 1, RegistryKey::Known([7; 32]));
    net.run_for(Duration::from_secs(1));
    assert!(!net.hosts[1].tunnel.is_keyed(1));
    assert_eq!(net.hosts[1].tunnel.peers().count(), 0);
}

#[test]
fn keepalives_hold_an_active_direct_path_and_stop_when_idle() {
    let mut net = Net::new(14, &[NatKind::Open, NatKind::PortRestrictedCone], true);
    net.send(1, 2, b"hello").unwrap();
    net.run_for(Duration::from_secs(5));
    let start = net.log.len();
    net.run_for(Duration::from_secs(295));
    let keepalives = |from: u32| {
        net.log[start..]
            .iter()
            .filter(|(n, _, b)| *n == from && b.as_slice() == PILP)
            .count()
    };
    // Every 15 s for the 2 minutes after the last traffic, then silence.
    assert!((7..=8).contains(&keepalives(1)), "{}", keepalives(1));
    assert!((7..=8).contains(&keepalives(2)), "{}", keepalives(2));
    let discovers = net
        .log
        .iter()
        .filter(|(n, to, b)| *n == 1 && *to == BEACON && b[0] == 1)
        .count();
    assert_eq!(discovers, 1 + 300 / 25, "beacon refreshed every 25 s");
}

#[test]
fn re_registration_rekeys_every_peer_under_the_new_node_id() {
    let mut net = Net::new(15, &[NatKind::Open, NatKind::Open, NatKind::Open], false);
    net.send(1, 2, b"to 2").unwrap();
    net.send(1, 3, b"to 3").unwrap();
    net.run_for(Duration::from_secs(1));
    net.inbox(2);
    net.inbox(3);
    // Node 1 becomes node 3's ... no: node 1 becomes a new ID the registry maps to the same
    // identity. Model it by giving host 1 the ID 4 and teaching the others' registry about it.
    let now = net.now;
    net.hosts[0].tunnel.set_own_node(now, 4);
    net.hosts[0].node = 4;
    let key = RegistryKey::Known(net.hosts[0].identity.public_key());
    for h in 1..3 {
        net.hosts[h].auto_registry = false;
        net.hosts[h].tunnel.on_registry_key(now, 4, key);
    }
    net.run_for(Duration::from_secs(1));
    for peer in [2u32, 3] {
        let now = net.now;
        net.hosts[0]
            .tunnel
            .send(now, peer, &packet(4, peer, b"new id"))
            .unwrap();
    }
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.inbox(2), [msg(b"new id", 4, false)]);
    assert_eq!(net.inbox(3), [msg(b"new id", 4, false)]);
}

/// How a pair of NATs ends up: the route both ends settle on.
fn settle(seed: u64, a: NatKind, b: NatKind) -> (Option<PeerRoute>, Option<PeerRoute>) {
    let mut net = Net::new(seed, &[a, b], true);
    net.send(1, 2, b"ping").unwrap();
    net.run_for(Duration::from_secs(3));
    net.send(2, 1, b"pong").unwrap();
    net.run_for(Duration::from_secs(3));
    let relayed = net.route(1, 2) == Some(PeerRoute::Relay);
    // Exactly once: the first packet is not lost even when it overtakes the passive side's
    // registry lookup (it waits in `deferred`).
    assert_eq!(net.inbox(2), [msg(b"ping", 1, relayed)], "{a:?} -> {b:?}");
    assert_eq!(net.inbox(1).len(), 1, "{a:?} <- {b:?}");
    (net.route(1, 2), net.route(2, 1))
}

#[test]
fn nat_pairs_end_direct_or_relayed_as_documented() {
    use NatKind::*;
    let kinds = [
        Open,
        FullCone,
        RestrictedCone,
        PortRestrictedCone,
        Symmetric,
    ];
    // docs/TUNNEL.md: relay only when one side is symmetric and the other filters by address
    // and port (port-restricted cone or symmetric).
    let relays = |a: NatKind, b: NatKind| {
        let strict = |k| matches!(k, PortRestrictedCone | Symmetric);
        (a == Symmetric && strict(b)) || (b == Symmetric && strict(a))
    };
    for (i, &a) in kinds.iter().enumerate() {
        for &b in &kinds {
            let (ab, ba) = settle(100 + i as u64, a, b);
            if relays(a, b) {
                assert_eq!(
                    (ab, ba),
                    (Some(PeerRoute::Relay), Some(PeerRoute::Relay)),
                    "{a:?} {b:?}"
                );
            } else {
                assert!(
                    matches!(ab, Some(PeerRoute::Direct(_))),
                    "{a:?} -> {b:?}: {ab:?}"
                );
                assert!(
                    matches!(ba, Some(PeerRoute::Direct(_))),
                    "{a:?} <- {b:?}: {ba:?}"
                );
            }
        }
    }
}

#[test]
fn a_dead_direct_path_falls_back_to_relay() {
    let mut net = Net::new(16, &[NatKind::Open, NatKind::Open], true);
    net.send(1, 2, b"hello").unwrap();
    net.run_for(Duration::from_secs(2));
    net.inbox(2);
    assert!(matches!(net.route(1, 2), Some(PeerRoute::Direct(_))));
    // The direct path dies silently (the beacon is still reachable).
    net.direct_blocked = true;
    for _ in 0..50 {
        net.send(1, 2, b"tick").unwrap();
        net.run_for(Duration::from_secs(1));
    }
    assert_eq!(net.route(1, 2), Some(PeerRoute::Relay));
    let got = net.inbox(2);
    assert!(
        got.len() >= 3 && got.iter().all(|m| *m == msg(b"tick", 1, true)),
        "{got:?}"
    );
    // And once the path heals, a background punch brings it back.
    net.direct_blocked = false;
    net.run_for(Duration::from_secs(20));
    assert!(matches!(net.route(1, 2), Some(PeerRoute::Direct(_))));
}

#[test]
fn a_direct_path_whose_re_sent_pila_goes_unanswered_falls_back_within_seconds() {
    // A NAT on the path restarted: data and our re-sent PILA vanish. A peer that had restarted
    // would have answered the PILA, so the second silence punches, and the window's end (with
    // nothing confirmed) relays: about 10 s, where `dead_after` alone would take 45 s.
    let mut net = Net::new(16, &[NatKind::Open, NatKind::Open], true);
    net.send(1, 2, b"hello").unwrap();
    net.run_for(Duration::from_secs(2));
    net.inbox(2);
    net.direct_blocked = true;
    for _ in 0..12 {
        net.send(1, 2, b"tick").unwrap();
        net.run_for(Duration::from_secs(1));
    }
    assert_eq!(net.route(1, 2), Some(PeerRoute::Relay));
    assert!(net.inbox(2).contains(&msg(b"tick", 1, true)));
}

#[test]
fn without_encryption_packets_travel_as_plaintext_and_key_exchanges_are_ignored() {
    let cfg = TunnelConfig {
        encryption: false,
        ..config(false)
    };
    let mut net = Net::with_config(17, &[NatKind::Open, NatKind::Open], cfg);
    net.send(1, 2, b"plain hello").unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.inbox(2), [msg(b"plain hello", 1, false)]);
    assert_eq!(net.pilas_sent(), 0);
    assert!(net.log.iter().all(|(_, _, b)| !b.starts_with(b"PILS")));
    // Node 2 learns of node 1 from the packet and resolves it to answer.
    net.send(2, 1, b"plain reply").unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.inbox(1), [msg(b"plain reply", 2, false)]);
    let b = net.hosts[1].local;
    assert_eq!(
        net.route(1, 2),
        Some(PeerRoute::Direct(b)),
        "the reply confirmed the path"
    );
}

#[test]
fn without_punching_or_relay_only_the_direct_cells_connect() {
    use NatKind::*;
    let kinds = [
        Open,
        FullCone,
        RestrictedCone,
        PortRestrictedCone,
        Symmetric,
    ];
    for (i, &a) in kinds.iter().enumerate() {
        for &b in &kinds {
            let mut net = Net::new(200 + i as u64, &[a, b], true);
            net.beacon.helps = false;
            net.send(1, 2, b"ping").unwrap();
            net.run_for(Duration::from_secs(3));
            // docs/TUNNEL.md: direct exactly when the target admits unsolicited traffic.
            let direct = matches!(b, Open | FullCone);
            let got = net.inbox(2);
            if direct {
                assert_eq!(got, [msg(b"ping", 1, false)], "{a:?} -> {b:?}");
                assert!(matches!(net.route(1, 2), Some(PeerRoute::Direct(_))));
            } else {
                assert!(got.is_empty(), "{a:?} -> {b:?} needs the beacon");
            }
        }
    }
}

#[test]
fn keepalives_hold_nat_mappings_and_an_idle_path_is_revalidated() {
    let prc = NatKind::PortRestrictedCone;
    let mut net = Net::new(18, &[prc, prc], true);
    net.send(1, 2, b"hello").unwrap();
    net.run_for(Duration::from_secs(2));
    net.inbox(2);
    // A message a minute: the path stays direct only because keepalives hold the mappings
    // open in between (they expire after 30 s of outbound silence).
    for _ in 0..4 {
        net.run_for(Duration::from_secs(60));
        net.send(1, 2, b"minute").unwrap();
        net.run_for(Duration::from_millis(100));
        assert_eq!(net.inbox(2), [msg(b"minute", 1, false)]);
    }
    // Idle long enough for keepalives to stop and mappings to expire: the next send punches
    // again right away, and the path is direct again within the probe window.
    net.run_for(Duration::from_secs(400));
    net.send(1, 2, b"after a long idle").unwrap();
    net.run_for(Duration::from_secs(3));
    assert!(
        matches!(net.route(1, 2), Some(PeerRoute::Direct(_))),
        "{:?}",
        net.route(1, 2)
    );
    net.send(1, 2, b"again").unwrap();
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.inbox(2).last(), Some(&msg(b"again", 1, false)));
}

#[test]
fn a_run_replays_bit_for_bit_from_its_seed() {
    let run = |seed: u64| {
        let mut net = Net::new(seed, &[NatKind::Symmetric, NatKind::RestrictedCone], true);
        net.direct_blocked = true;
        net.send(1, 2, b"one").unwrap();
        net.run_for(Duration::from_secs(3));
        net.direct_blocked = false;
        net.send(2, 1, b"two").unwrap();
        net.run_for(Duration::from_secs(40));
        let start = net.hosts[0].tunnel.poll_timeout().map(|t| t - net.now);
        (net.log, start)
    };
    assert_eq!(run(7), run(7));
    assert_ne!(
        run(7).0,
        run(8).0,
        "the seed matters (keys, nonce prefixes)"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Whatever the NATs and however lossy the start, once loss stops the two nodes talk, over
    /// the route the NAT table says.
    #[test]
    fn lossy_starts_converge(
        seed in 0u64..1_000_000,
        a in 0usize..5,
        b in 0usize..5,
        loss in 0.0f64..0.7,
    ) {
        use NatKind::*;
        let kinds = [Open, FullCone, RestrictedCone, PortRestrictedCone, Symmetric];
        let (a, b) = (kinds[a], kinds[b]);
        let mut net = Net::new(seed, &[a, b], true);
        net.loss = loss;
        for _ in 0..5 {
            net.send(1, 2, b"early").unwrap();
            let _ = net.send(2, 1, b"early");
            net.run_for(Duration::from_secs(1));
        }
        net.loss = 0.0;
        // Background punching, silence re-keys and probe answers bring everything back.
        net.run_for(Duration::from_secs(70));
        net.inbox(1);
        net.inbox(2);
        // Routes may be asymmetric for a while (one side confirmed direct, the other still
        // relaying until a sealed frame from the peer confirms it): read them before sending.
        let relayed = net.route(1, 2) == Some(PeerRoute::Relay);
        net.send(1, 2, b"late").unwrap();
        net.run_for(Duration::from_secs(2));
        proptest::prop_assert_eq!(net.inbox(2), vec![msg(b"late", 1, relayed)]);
        let relayed = net.route(2, 1) == Some(PeerRoute::Relay);
        net.send(2, 1, b"late").unwrap();
        net.run_for(Duration::from_secs(2));
        proptest::prop_assert_eq!(net.inbox(1), vec![msg(b"late", 2, relayed)]);
    }
}

/// Two nodes that reach each other only over the relay, where node 1 accepted node 2's PILA
/// but every reply of its own was lost: only node 1 holds the key. Node 1 is heard again.
fn half_keyed_over_the_relay() -> Net {
    let mut net = Net::new(19, &[NatKind::Open, NatKind::Open], true);
    net.direct_blocked = true;
    net.mute = Some(1);
    net.send(2, 1, b"hi").unwrap();
    net.run_for(Duration::from_secs(2));
    assert!(net.hosts[0].tunnel.is_keyed(2) && !net.hosts[1].tunnel.is_keyed(1));
    net.mute = None;
    net
}

#[test]
fn a_key_exchange_reply_lost_on_the_relay_is_recovered() {
    // Found by `lossy_starts_converge`: node 2's later PILAs repeat a key node 1 already has.
    let mut net = half_keyed_over_the_relay();
    net.run_for(Duration::from_secs(10));
    assert!(net.hosts[1].tunnel.is_keyed(1));
    assert_eq!(
        net.inbox(1),
        [msg(b"hi", 2, true)],
        "the queued packet went out once keyed"
    );
}

#[test]
fn a_key_exchange_reply_lost_on_the_relay_is_answered_on_the_next_repeat() {
    // As above, but timed: node 2 repeats its PILA (its silence timers) while node 1 holds
    // the key and waits. Node 1 answered a repeat at most once per `silence_rekey` (3 s)
    // after its lost reply, so the repeat 1.5 s later went unanswered and the pair waited
    // for the next (the NAT matrix's relayed cells: 7 s to the first byte at 5 % loss). It
    // now answers at most once per `key_exchange_interval` (1 s), as it offers its key to a
    // peer whose sealed frames it cannot open.
    let mut net = half_keyed_over_the_relay();
    let start = net.now;
    while !net.hosts[1].tunnel.is_keyed(1) && net.now - start < Duration::from_secs(10) {
        net.run_for(Duration::from_millis(10));
    }
    let took = net.now - start;
    assert!(took <= Duration::from_secs(2), "{took:?}");
}

#[test]
fn a_replayed_pila_from_elsewhere_moves_nothing() {
    let mut net = Net::new(20, &[NatKind::Open, NatKind::Open], false);
    net.send(1, 2, b"hello").unwrap();
    net.run_for(Duration::from_secs(1));
    net.send(2, 1, b"hello back").unwrap();
    net.run_for(Duration::from_secs(1));
    let a = net.hosts[0].local;
    assert_eq!(net.route(2, 1), Some(PeerRoute::Direct(a)));
    // An attacker captured node 1's PILA and replays it, again and again (Q3).
    let captured = net
        .log
        .iter()
        .find(|(n, _, b)| *n == 1 && b.starts_with(&PILA))
        .map(|(_, _, b)| b.clone())
        .unwrap();
    let mut plain = vec![0; 65_536];
    let mut answers = 0;
    for i in 0..20 {
        let now = net.now + Duration::from_millis(500 * i);
        let b = &mut net.hosts[1].tunnel;
        assert!(b
            .handle_datagram(now, ATTACKER, &captured, &mut plain)
            .is_none());
        while let Some(t) = b.poll_transmit() {
            answers += usize::from(t.to == ATTACKER);
        }
    }
    // At most a rate-limited probe answer (one per 3 s) goes back: no amplification.
    assert!(answers <= 4, "{answers}");
    assert_eq!(
        net.route(2, 1),
        Some(PeerRoute::Direct(a)),
        "the path did not move"
    );
    assert!(!net.hosts[1]
        .events
        .contains(&TunnelEvent::PeerRekeyed { node: 1 }));
}

#[test]
fn a_rotated_identity_is_looked_up_again() {
    let mut net = Net::new(21, &[NatKind::Open, NatKind::Open], false);
    net.hosts[1].auto_registry = false;
    net.send(1, 2, b"x").unwrap();
    net.run_for(Duration::from_millis(50));
    // The registry's first answer is stale (the node rotated its identity since).
    let now = net.now;
    net.hosts[1]
        .tunnel
        .on_registry_key(now, 1, RegistryKey::Known([7; 32]));
    assert!(!net.hosts[1].tunnel.is_keyed(1));
    // Node 1 keeps probing; once the lookup may be retried, node 2 asks again (Q10).
    net.run_for(Duration::from_secs(20));
    let asks = net.hosts[1]
        .events
        .iter()
        .filter(|e| **e == TunnelEvent::NeedRegistryKey(1))
        .count();
    assert!(asks >= 2, "{asks}");
    let key = net.registry_key(1);
    net.answer_registry(1, 1, key);
    net.run_for(Duration::from_secs(5));
    assert!(net.hosts[1].tunnel.is_keyed(1));
    assert_eq!(net.inbox(2), [msg(b"x", 1, false)]);
}

/// Something that happens to the network or a node mid-session.
#[derive(Clone, Copy, Debug)]
enum Trouble {
    /// Direct paths blocked for a while.
    Block(u8),
    /// A node's NAT forgets its mappings and picks new ports.
    Rebind(u8),
    /// Half the datagrams lost for a while.
    Loss(u8),
    /// Nobody sends for this many tens of seconds.
    Idle(u8),
    /// Node 2 restarts: fresh X25519 keys, no peers.
    Restart,
}

fn trouble() -> impl proptest::strategy::Strategy<Value = Trouble> {
    use proptest::prelude::*;
    prop_oneof![
        (1u8..30).prop_map(Trouble::Block),
        (1u8..=2).prop_map(Trouble::Rebind),
        (1u8..10).prop_map(Trouble::Loss),
        (1u8..30).prop_map(Trouble::Idle),
        Just(Trouble::Restart),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]

    /// Whatever happened, once the network heals the two nodes talk again.
    #[test]
    fn sessions_survive_trouble(
        seed in 0u64..1_000_000,
        a in 0usize..5,
        b in 0usize..5,
        troubles in proptest::collection::vec(trouble(), 1..6),
    ) {
        use NatKind::*;
        let kinds = [Open, FullCone, RestrictedCone, PortRestrictedCone, Symmetric];
        let mut net = Net::new(seed, &[kinds[a], kinds[b]], true);
        net.send(1, 2, b"start").unwrap();
        net.run_for(Duration::from_secs(2));
        let mut restarts = 0u64;
        for t in &troubles {
            match *t {
                Trouble::Block(s) => {
                    net.direct_blocked = true;
                    net.send(1, 2, b"during").unwrap();
                    net.run_for(Duration::from_secs(s.into()));
                    net.direct_blocked = false;
                }
                Trouble::Rebind(n) => {
                    if let Some(nat) = net.hosts[usize::from(n) - 1].nat.as_mut() {
                        nat.rebind();
                    }
                }
                Trouble::Loss(s) => {
                    net.loss = 0.5;
                    net.send(2, 1, b"during").unwrap();
                    net.run_for(Duration::from_secs(s.into()));
                    net.loss = 0.0;
                }
                Trouble::Idle(s) => net.run_for(Duration::from_secs(10 * u64::from(s))),
                Trouble::Restart => {
                    // A new process draws new keys (a real one from OS entropy).
                    restarts += 1;
                    let mut rng = seeded_rng(seed ^ 0xDEAD ^ (restarts << 32));
                    let keys = LocalKeys::generate(net.hosts[1].identity.clone(), &mut rng);
                    let cfg = net.hosts[1].tunnel.config().clone();
                    net.hosts[1].tunnel = Tunnel::new(2, keys, cfg, rng);
                    net.hosts[1].tunnel.discover_request(net.now);
                }
            }
            net.send(1, 2, b"between").unwrap();
            net.run_for(Duration::from_secs(1));
        }
        // Healed: give background punching, silence re-keys and resolves time to act.
        net.run_for(Duration::from_secs(90));
        net.send(1, 2, b"ping").unwrap();
        net.run_for(Duration::from_secs(5));
        net.send(2, 1, b"pong").unwrap();
        net.run_for(Duration::from_secs(5));
        let to_2: Vec<_> = net.inbox(2).into_iter().map(|m| m.1).collect();
        let to_1: Vec<_> = net.inbox(1).into_iter().map(|m| m.1).collect();
        proptest::prop_assert!(to_2.contains(&b"ping".to_vec()), "{:?}", troubles);
        proptest::prop_assert!(to_1.contains(&b"pong".to_vec()), "{:?}", troubles);
    }
}

#[test]
fn an_idle_peer_is_forgotten_and_the_next_packet_sets_it_up_again() {
    // Open hosts: no NAT mapping lapses while idle, so only the tunnel's own state is tested.
    let mut net = Net::new(21, &[NatKind::Open, NatKind::Open], true);
    let expiry = Timing::default().peer_idle_expiry;
    net.send(1, 2, b"hello").unwrap();
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.inbox(2), [msg(b"hello", 1, false)]);
    // Data within the bound keeps the peer, however long the tunnel lives.
    net.run_for(expiry - Duration::from_secs(60));
    net.send(1, 2, b"still here").unwrap();
    net.run_for(expiry - Duration::from_secs(60));
    assert_eq!(net.inbox(2), [msg(b"still here", 1, false)]);
    assert!(net.hosts[0].tunnel.is_keyed(2));
    // Then idle past the bound: both sides forget each other and say so.
    net.run_for(Duration::from_secs(120));
    assert_eq!(net.hosts[0].tunnel.peers().count(), 0);
    assert_eq!(net.hosts[1].tunnel.peers().count(), 0);
    for (h, peer) in [(0, 2), (1, 1)] {
        assert!(net.hosts[h]
            .events
            .contains(&TunnelEvent::PeerExpired { node: peer }));
    }
    // On demand: the next packet resolves, keys and punches again, and arrives.
    let pilas = net.pilas_sent();
    net.send(1, 2, b"back again").unwrap();
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.inbox(2), [msg(b"back again", 1, false)]);
    assert!(net.pilas_sent() > pilas, "a fresh key exchange");
    assert!(net.hosts[0].tunnel.is_keyed(2) && net.hosts[1].tunnel.is_keyed(1));
}

#[test]
fn a_peer_with_packets_waiting_for_its_key_is_not_expired() {
    let mut net = Net::new(22, &[NatKind::Open, NatKind::Open], false);
    // Nothing gets through: the packet waits for a key the peer never sends.
    net.direct_blocked = true;
    net.send(1, 2, b"waiting").unwrap();
    let expiry = Timing::default().peer_idle_expiry;
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.hosts[0].tunnel.peers().count(), 1);
    // Once the queue has expired (pending_ttl) the idle bound applies.
    net.run_for(expiry + Duration::from_secs(60));
    assert_eq!(net.hosts[0].tunnel.peers().count(), 0);
}

#[test]
fn a_silent_peer_that_is_no_longer_registered_is_forgotten() {
    let mut net = Net::new(40, &[NatKind::Open, NatKind::Open], true);
    net.send(1, 2, b"hello").unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.inbox(2), [msg(b"hello", 1, false)]);
    // Node 2 goes away; node 1's next data goes unanswered.
    net.mute = Some(2);
    net.host(1).auto_registry = false;
    net.host(1).events.clear();
    net.send(1, 2, b"anyone?").unwrap();
    // The first re-send of our key exchange (after 3 s) may just have lost one answer: no
    // lookup yet.
    net.run_for(Duration::from_secs(4));
    let asked = |net: &mut Net| {
        net.host(1)
            .events
            .contains(&TunnelEvent::NeedRegistryKey(2))
    };
    assert!(!asked(&mut net), "{:?}", net.host(1).events);
    // The second (6 s later) asks the registry.
    net.run_for(Duration::from_secs(6));
    assert!(
        asked(&mut net),
        "silence asks the registry: {:?}",
        net.host(1).events
    );
    // The registry still knows it: nothing is forgotten.
    let key = net.registry_key(2);
    net.answer_registry(0, 2, key);
    net.pump();
    assert!(net.route(1, 2).is_some());
    // The third re-send (12 s later) asks again.
    net.run_for(Duration::from_secs(13));
    // Now it lapsed.
    net.answer_registry(0, 2, RegistryKey::NotRegistered);
    net.pump();
    assert_eq!(net.route(1, 2), None);
    assert!(net
        .host(1)
        .events
        .contains(&TunnelEvent::PeerGone { node: 2 }));
    let now = net.now;
    assert_eq!(
        net.host(1).tunnel.send(now, 2, &packet(1, 2, b"x")),
        Err(SendError::NeedResolve(2))
    );
}

#[test]
fn a_negative_answer_about_a_peer_that_answers_forgets_nothing() {
    let mut net = Net::new(41, &[NatKind::Open, NatKind::Open], true);
    net.send(1, 2, b"hello").unwrap();
    net.run_for(Duration::from_secs(2));
    // An answer nobody asked for (or about a peer that is not silent) changes nothing.
    net.answer_registry(0, 2, RegistryKey::NotRegistered);
    net.pump();
    assert!(net.route(1, 2).is_some());
    assert!(!net
        .host(1)
        .events
        .contains(&TunnelEvent::PeerGone { node: 2 }));
}

#[test]
fn each_side_measures_the_round_trip_of_its_key_exchange() {
    let mut net = Net::new(3, &[NatKind::Open, NatKind::Open], false);
    net.send(1, 2, b"hello").unwrap();
    net.run_for(Duration::from_secs(1));
    let rtt = 2 * LATENCY;
    for (node, peer) in [(1, 2), (2, 1)] {
        let samples: Vec<TunnelEvent> = net.hosts[net.idx(node)]
            .events
            .iter()
            .copied()
            .filter(|e| matches!(e, TunnelEvent::PeerRtt { .. }))
            .collect();
        // The initiator: its PILA to the reply; the responder: its reply to the answer.
        assert_eq!(
            samples,
            [TunnelEvent::PeerRtt { node: peer, rtt }],
            "node {node}"
        );
        assert_eq!(net.hosts[net.idx(node)].tunnel.peer_rtt(peer), Some(rtt));
    }
}

#[test]
fn a_lost_key_exchange_gives_no_round_trip_sample() {
    // Everything node 1 sends is lost for a while: its key exchange goes out again later, so
    // the reply cannot be matched to one of them (Karn) and node 1 takes no sample.
    let mut net = Net::new(4, &[NatKind::Open, NatKind::Open], false);
    net.mute = Some(1);
    net.send(1, 2, b"hello").unwrap();
    net.run_for(Duration::from_millis(1_500));
    net.mute = None;
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.inbox(2), [msg(b"hello", 1, false)]);
    assert_eq!(net.hosts[0].tunnel.peer_rtt(2), None);
    assert_eq!(net.hosts[1].tunnel.peer_rtt(1), Some(2 * LATENCY));
}

/// Discovers node `from` sent to the beacon, in order, with whether each carried a proof.
fn discovers(net: &Net, from: u32) -> Vec<Option<crate::wire::beacon::MoveProof>> {
    net.log
        .iter()
        .filter(|(node, to, _)| *node == from && *to == BEACON)
        .filter_map(|(_, _, bytes)| match BeaconMessage::decode(bytes) {
            Ok(BeaconMessage::Discover { proof, .. }) => Some(proof),
            _ => None,
        })
        .collect()
}

#[test]
fn a_peer_falling_back_to_the_relay_refreshes_our_beacon_entry_first() {
    let mut net = Net::new(6, &[NatKind::Open, NatKind::Open], true);
    net.direct_blocked = true;
    net.send(1, 2, b"via relay").unwrap();
    net.run_for(Duration::from_millis(100));
    let before = discovers(&net, 1).len();
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.route(1, 2), Some(PeerRoute::Relay));
    // The relay (and the punch before it) work off the endpoint the beacon holds for us; if our
    // NAT mapping changed, only a Discover tells it. One, not one per trigger.
    assert_eq!(discovers(&net, 1).len(), before + 1);
}

#[test]
fn a_move_proof_from_the_beacon_goes_back_at_most_once_a_second() {
    use crate::wire::beacon::MoveProof;
    let mut net = Net::new(21, &[NatKind::Open, NatKind::Open], true);
    let t0 = net.now;
    let proof = MoveProof([9; 16]);
    let mut reply = Vec::new();
    BeaconMessage::DiscoverReply {
        endpoint: "192.0.2.50:40000".parse().unwrap(),
        proof: Some(proof),
    }
    .encode(&mut reply);
    let mut plain = vec![0; 65_536];
    let t = &mut net.hosts[0].tunnel;
    while t.poll_transmit().is_some() {}
    let mut answer = |t: &mut Tunnel, at: std::time::Instant, from: std::net::SocketAddr| {
        assert!(t.handle_datagram(at, from, &reply, &mut plain).is_none());
        let sent: Vec<Transmit> = std::iter::from_fn(|| t.poll_transmit()).collect();
        sent.iter()
            .filter(|s| s.to == BEACON)
            .filter_map(|s| match BeaconMessage::decode(&s.bytes) {
                Ok(BeaconMessage::Discover { node, proof }) => Some((node, proof)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert!(answer(t, t0, ATTACKER).is_empty(), "not from the beacon");
    assert_eq!(answer(t, t0, BEACON), [(1, Some(proof))]);
    let half = t0 + Duration::from_millis(500);
    assert!(
        answer(t, half, BEACON).is_empty(),
        "a second reply within the gap"
    );
    let later = t0 + Duration::from_millis(1_500);
    assert_eq!(answer(t, later, BEACON), [(1, Some(proof))]);
}
