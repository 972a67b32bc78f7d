//! Unit tests of the sans-IO beacon: every message, every rule, and one test per fixed reference
//! quirk that fails on the quirky behaviour (named `quirk_…`).

use super::config::{BeaconConfig, Rate, RateLimits, MAX_UDP_PAYLOAD};
use super::gossip::SyncPart;
use super::outbox::Outbox;
use super::proof::MoveKey;
use super::state::Beacon;
use crate::wire::beacon::{BeaconMessage, MoveProof};
use hex_literal::hex;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const PEER_A: &str = "198.51.100.1:9001";
const PEER_B: &str = "198.51.100.2:9001";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A beacon with a clock at `t0 + elapsed`.
struct Harness {
    beacon: Beacon,
    t0: Instant,
    elapsed: Duration,
    out: Outbox,
}

type Sent = Vec<(SocketAddr, Vec<u8>)>;

impl Harness {
    fn new(config: BeaconConfig) -> Self {
        let t0 = Instant::now();
        Harness {
            beacon: Beacon::new(config, t0, MoveKey::from_bytes([1; 32])),
            t0,
            elapsed: Duration::ZERO,
            out: Outbox::new(),
        }
    }

    fn with_defaults() -> Self {
        Self::new(BeaconConfig {
            beacon_id: 1,
            ..BeaconConfig::default()
        })
    }

    fn now(&self) -> Instant {
        self.t0 + self.elapsed
    }

    fn advance(&mut self, by: Duration) {
        self.elapsed += by;
    }

    fn collect(&mut self) -> Sent {
        let sent = self.out.iter().map(|(to, b)| (to, b.to_vec())).collect();
        self.out.clear();
        sent
    }

    fn recv(&mut self, from: &str, bytes: &[u8]) -> Sent {
        let now = self.now();
        self.beacon
            .handle_datagram(now, addr(from), bytes, &mut self.out);
        self.collect()
    }

    /// Advances to the next tick (if it is not already due) and runs it.
    fn tick(&mut self) -> Sent {
        let due = self.beacon.poll_timeout();
        self.elapsed = self.elapsed.max(due.saturating_duration_since(self.t0));
        let now = self.now();
        self.beacon.handle_timeout(now, &mut self.out);
        self.collect()
    }

    fn discover(&mut self, from: &str, node: u32) -> Sent {
        self.recv(from, &encode(BeaconMessage::Discover { node, proof: None }))
    }

    fn endpoint(&self, node: u32) -> Option<SocketAddr> {
        self.beacon.endpoint(self.now(), node)
    }
}

fn encode(message: BeaconMessage<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    message.encode(&mut out);
    out
}

fn relay(sender: u32, destination: u32, inner: &[u8]) -> Vec<u8> {
    encode(BeaconMessage::Relay {
        sender,
        destination,
        inner,
    })
}

fn punch(requester: u32, target: u32) -> Vec<u8> {
    encode(BeaconMessage::PunchRequest { requester, target })
}

fn sync(beacon: u32, nodes: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    BeaconMessage::encode_sync(beacon, nodes, &mut out).unwrap();
    out
}

fn synced_ids(sent: &Sent) -> Vec<u32> {
    sent.iter()
        .flat_map(|(_, b)| match BeaconMessage::decode(b).unwrap() {
            BeaconMessage::Sync { nodes, .. } => nodes.iter().collect::<Vec<_>>(),
            other => panic!("not a Sync: {other:?}"),
        })
        .collect()
}

// --- Discover -------------------------------------------------------------------------------

#[test]
fn discover_replies_with_the_observed_endpoint_and_records_it() {
    let mut h = Harness::with_defaults();
    let sent = h.discover("203.0.113.7:40000", 42);
    assert_eq!(
        sent,
        [(
            addr("203.0.113.7:40000"),
            hex!("02 04 CB 00 71 07 9C 40").to_vec()
        )]
    );
    assert_eq!(h.endpoint(42), Some(addr("203.0.113.7:40000")));
    let sent = h.discover("[2001:db8::1]:4000", 43);
    assert_eq!(
        sent[0].1,
        hex!("02 10 20 01 0D B8 00 00 00 00 00 00 00 00 00 00 00 01 0F A0")
    );
    // Trailing bytes are ignored, as in Go.
    let sent = h.recv("192.0.2.5:1", &hex!("01 00 00 00 05 FF FF"));
    assert_eq!(sent.len(), 1);
    assert_eq!(h.endpoint(5), Some(addr("192.0.2.5:1")));
}

#[test]
fn quirk_q13_discover_with_node_zero_records_nothing() {
    let mut h = Harness::with_defaults();
    let sent = h.discover("203.0.113.7:40000", 0);
    assert_eq!(sent.len(), 1, "start-up discovery still gets its reply");
    assert_eq!(h.endpoint(0), None);
    assert_eq!(h.beacon.node_count(), 0);
    // So nobody can punch or relay towards "node 0".
    h.discover("192.0.2.1:1", 1);
    assert!(h.recv("192.0.2.1:1", &punch(1, 0)).is_empty());
    assert!(h.recv("192.0.2.1:1", &relay(1, 0, b"PILT")).is_empty());
}

#[test]
fn quirk_q15_a_fresh_entry_cannot_be_hijacked() {
    let mut h = Harness::with_defaults();
    h.discover("192.0.2.1:4000", 7);
    h.advance(secs(30));
    h.discover("192.0.2.1:4000", 7);
    h.advance(secs(20));
    let sent = h.discover("203.0.113.66:6666", 7);
    assert_eq!(sent.len(), 1, "the attacker still learns its own address");
    assert_eq!(h.endpoint(7), Some(addr("192.0.2.1:4000")));
    assert_eq!(h.beacon.stats().claims_refused, 1);
}

#[test]
fn a_stale_entry_moves_to_the_new_address() {
    // An honest daemon that restarted on another port is served again once its old entry has
    // missed two refreshes.
    let mut h = Harness::with_defaults();
    h.discover("192.0.2.1:4000", 7);
    h.advance(secs(64));
    h.discover("192.0.2.1:5000", 7);
    assert_eq!(h.endpoint(7), Some(addr("192.0.2.1:4000")));
    h.advance(secs(1));
    h.discover("192.0.2.1:5000", 7);
    assert_eq!(h.endpoint(7), Some(addr("192.0.2.1:5000")));
}

/// The move proof a Discover Reply carries, if any.
fn offered_proof(sent: &Sent) -> Option<MoveProof> {
    match sent.as_slice() {
        [(_, bytes)] => match BeaconMessage::decode(bytes).unwrap() {
            BeaconMessage::DiscoverReply { proof, .. } => proof,
            other => panic!("not a Discover Reply: {other:?}"),
        },
        other => panic!("expected one reply, got {other:?}"),
    }
}

fn discover_with(h: &mut Harness, from: &str, node: u32, proof: MoveProof) -> Sent {
    h.recv(
        from,
        &encode(BeaconMessage::Discover {
            node,
            proof: Some(proof),
        }),
    )
}

#[test]
fn a_node_whose_nat_changed_its_port_moves_its_fresh_entry_with_the_proof_it_was_sent() {
    let mut h = Harness::with_defaults();
    h.discover("192.0.2.1:4000", 7);
    h.discover("198.51.100.9:4000", 8);
    h.advance(secs(5));
    // The NAT restarted: the daemon's next Discover comes from another port of the same IP.
    let sent = h.discover("192.0.2.1:4001", 7);
    let proof = offered_proof(&sent).expect("a proof for the new port");
    assert_eq!(h.endpoint(7), Some(addr("192.0.2.1:4000")), "not moved yet");
    assert!(h.recv("192.0.2.1:4001", &relay(7, 8, b"PILPx")).is_empty());
    // Sending it back shows the sender receives there: the entry moves, relays flow.
    let sent = discover_with(&mut h, "192.0.2.1:4001", 7, proof);
    assert_eq!(offered_proof(&sent), None);
    assert_eq!(h.endpoint(7), Some(addr("192.0.2.1:4001")));
    assert_eq!(h.recv("192.0.2.1:4001", &relay(7, 8, b"PILPx")).len(), 1);
    assert_eq!(
        h.recv("198.51.100.9:4000", &relay(8, 7, b"PILPy"))[0].0,
        addr("192.0.2.1:4001")
    );
    let stats = h.beacon.stats();
    assert_eq!((stats.move_proofs_issued, stats.moves_proven), (1, 1));
}

#[test]
fn a_move_proof_works_only_for_its_node_its_endpoint_and_a_while() {
    let mut h = Harness::with_defaults();
    h.discover("192.0.2.1:4000", 7);
    h.discover("192.0.2.1:5000", 9);
    let proof = offered_proof(&h.discover("192.0.2.1:4001", 7)).unwrap();
    // Another port, another node, another IP: refused, the entries stay.
    discover_with(&mut h, "192.0.2.1:4002", 7, proof);
    discover_with(&mut h, "192.0.2.1:4001", 9, proof);
    assert_eq!(h.endpoint(7), Some(addr("192.0.2.1:4000")));
    assert_eq!(h.endpoint(9), Some(addr("192.0.2.1:5000")));
    // Too late: the proof has expired (it lasts 10 to 20 s).
    h.advance(secs(21));
    discover_with(&mut h, "192.0.2.1:4001", 7, proof);
    assert_eq!(h.endpoint(7), Some(addr("192.0.2.1:4000")));
    assert_eq!(h.beacon.stats().moves_proven, 0);
}

#[test]
fn quirk_q15_a_claim_from_another_ip_is_offered_no_proof_and_a_forged_one_moves_nothing() {
    let mut h = Harness::with_defaults();
    h.discover("192.0.2.1:4000", 7);
    let sent = h.discover("203.0.113.66:6666", 7);
    assert_eq!(
        offered_proof(&sent),
        None,
        "a proof only helps another port of the IP"
    );
    // A proof made up by an attacker at the victim's IP (another port) is just bytes.
    discover_with(&mut h, "192.0.2.1:6666", 7, MoveProof([0; 16]));
    discover_with(&mut h, "203.0.113.66:6666", 7, MoveProof([0; 16]));
    assert_eq!(h.endpoint(7), Some(addr("192.0.2.1:4000")));
    assert_eq!(h.beacon.stats().claims_refused, 3);
}

#[test]
fn quirk_q15_node_entries_expire() {
    let mut h = Harness::with_defaults();
    h.discover("192.0.2.1:4000", 7);
    h.discover("192.0.2.2:4000", 8);
    h.advance(secs(179));
    h.discover("192.0.2.2:4000", 8);
    assert_eq!(h.endpoint(7), Some(addr("192.0.2.1:4000")));
    h.advance(secs(1));
    assert_eq!(h.endpoint(7), None);
    // Not served to punches or relays either.
    assert!(h.recv("192.0.2.2:4000", &punch(8, 7)).is_empty());
    assert!(h.recv("192.0.2.2:4000", &relay(8, 7, b"PILT")).is_empty());
    // And the housekeeping tick frees it.
    h.tick();
    assert_eq!(h.beacon.node_count(), 1);
}

#[test]
fn quirk_q15_node_table_is_bounded() {
    let mut h = Harness::new(BeaconConfig {
        max_nodes: 100,
        limits: RateLimits {
            control: Rate::new(1e9, 1e9),
            ..RateLimits::default()
        },
        ..BeaconConfig::default()
    });
    for node in 1..=1000u32 {
        h.discover(&format!("192.0.2.1:{}", 1000 + node), node);
    }
    assert_eq!(h.beacon.node_count(), 100);
    // The newest survive.
    assert!(h.endpoint(1000).is_some());
    assert!(h.endpoint(1).is_none());
}

// --- Punch ----------------------------------------------------------------------------------

#[test]
fn punch_request_commands_both_sides() {
    let mut h = Harness::with_defaults();
    h.discover("198.51.100.9:51820", 7);
    h.discover("203.0.113.7:40000", 42);
    let sent = h.recv("203.0.113.7:40000", &hex!("03 00 00 00 2A 00 00 00 07"));
    assert_eq!(
        sent,
        [
            (
                addr("203.0.113.7:40000"),
                hex!("04 04 C6 33 64 09 CA 6C").to_vec()
            ),
            (
                addr("198.51.100.9:51820"),
                hex!("04 04 CB 00 71 07 9C 40").to_vec()
            ),
        ]
    );
    assert_eq!(h.beacon.stats().punches, 1);
}

#[test]
fn punch_request_records_the_requester_like_a_discover() {
    // Go records the requester's endpoint from a Punch Request; a daemon that has not
    // Discovered yet is still served.
    let mut h = Harness::with_defaults();
    h.discover("198.51.100.9:51820", 7);
    let sent = h.recv("203.0.113.7:40000", &punch(42, 7));
    assert_eq!(sent.len(), 2);
    assert_eq!(h.endpoint(42), Some(addr("203.0.113.7:40000")));
}

#[test]
fn punch_request_for_an_unknown_target_is_dropped() {
    let mut h = Harness::with_defaults();
    h.discover("203.0.113.7:40000", 42);
    assert!(h.recv("203.0.113.7:40000", &punch(42, 7)).is_empty());
    assert_eq!(h.beacon.stats().punch_unknown_target, 1);
}

#[test]
fn quirk_q15_punch_request_from_a_foreign_address_is_refused() {
    // Go would move node 42's entry to the attacker and tell node 7 to probe the attacker.
    let mut h = Harness::with_defaults();
    h.discover("198.51.100.9:51820", 7);
    h.discover("203.0.113.7:40000", 42);
    assert!(h.recv("192.0.2.66:6666", &punch(42, 7)).is_empty());
    assert_eq!(h.endpoint(42), Some(addr("203.0.113.7:40000")));
    assert_eq!(h.beacon.stats().punch_unverified, 1);
}

// --- Relay ----------------------------------------------------------------------------------

#[test]
fn relay_is_delivered_with_the_sender_prefix() {
    let pilk = crate::wire::tunnel::tests::PILK_NODE2;
    let mut h = Harness::with_defaults();
    h.discover("192.0.2.1:1001", 1);
    h.discover("192.0.2.2:1002", 2);
    let sent = h.recv("192.0.2.2:1002", &relay(2, 1, &pilk));
    assert_eq!(sent.len(), 1);
    let (to, bytes) = &sent[0];
    assert_eq!(*to, addr("192.0.2.1:1001"));
    assert_eq!(bytes.len(), 45);
    assert_eq!(&bytes[..5], &hex!("06 00 00 00 02"));
    assert_eq!(&bytes[5..], &pilk[..]);
    // An empty inner frame is relayed as in Go (the daemon ignores it).
    let sent = h.recv("192.0.2.2:1002", &relay(2, 1, b""));
    assert_eq!(sent[0].1, hex!("06 00 00 00 02"));
}

#[test]
fn quirk_q15_relay_with_a_spoofed_sender_is_dropped() {
    let mut h = Harness::with_defaults();
    h.discover("192.0.2.1:1001", 1);
    h.discover("192.0.2.2:1002", 2);
    // Node 2's ID from another address, and an ID that never Discovered.
    assert!(h.recv("192.0.2.66:6666", &relay(2, 1, b"PILT")).is_empty());
    assert!(h.recv("192.0.2.66:6666", &relay(99, 1, b"PILT")).is_empty());
    assert_eq!(h.beacon.stats().relay_unverified, 2);
    assert_eq!(h.beacon.stats().relays_delivered, 0);
}

#[test]
fn relay_traffic_keeps_the_sender_entry_alive() {
    let mut h = Harness::with_defaults();
    h.discover("192.0.2.1:1001", 1);
    h.discover("192.0.2.2:1002", 2);
    for _ in 0..4 {
        h.advance(secs(60));
        h.discover("192.0.2.1:1001", 1);
        assert_eq!(h.recv("192.0.2.2:1002", &relay(2, 1, b"PILT")).len(), 1);
    }
    assert_eq!(h.endpoint(2), Some(addr("192.0.2.2:1002")));
}

#[test]
fn relay_to_an_unknown_destination_is_dropped() {
    let mut h = Harness::with_defaults();
    h.discover("192.0.2.2:1002", 2);
    assert!(h.recv("192.0.2.2:1002", &relay(2, 1, b"PILT")).is_empty());
    assert_eq!(h.beacon.stats().relay_no_route, 1);
}

#[test]
fn relay_larger_than_the_limit_is_dropped() {
    let mut h = Harness::new(BeaconConfig {
        max_relay_len: 100,
        ..BeaconConfig::default()
    });
    h.discover("192.0.2.1:1001", 1);
    h.discover("192.0.2.2:1002", 2);
    assert_eq!(h.recv("192.0.2.2:1002", &relay(2, 1, &[0x50; 91])).len(), 1);
    assert!(h
        .recv("192.0.2.2:1002", &relay(2, 1, &[0x50; 92]))
        .is_empty());
    assert_eq!(h.beacon.stats().relay_too_large, 1);
}

#[test]
fn relay_for_a_node_of_a_peer_beacon_is_forwarded_unchanged() {
    let mut h = Harness::with_defaults();
    h.beacon.set_peers(&[addr(PEER_A)]);
    h.recv(PEER_A, &sync(2, &[1]));
    h.discover("192.0.2.2:1002", 2);
    let original = relay(2, 1, b"PILS....");
    let sent = h.recv("192.0.2.2:1002", &original);
    assert_eq!(sent, [(addr(PEER_A), original)]);
    assert_eq!(h.beacon.stats().relays_forwarded, 1);
}

#[test]
fn local_destination_wins_over_gossip() {
    let mut h = Harness::with_defaults();
    h.beacon.set_peers(&[addr(PEER_A)]);
    h.recv(PEER_A, &sync(2, &[1]));
    h.discover("192.0.2.1:1001", 1);
    h.discover("192.0.2.2:1002", 2);
    let sent = h.recv("192.0.2.2:1002", &relay(2, 1, b"PILT"));
    assert_eq!(sent[0].0, addr("192.0.2.1:1001"));
}

#[test]
fn relay_from_a_peer_beacon_is_delivered_locally() {
    let mut h = Harness::with_defaults();
    h.beacon.set_peers(&[addr(PEER_A)]);
    h.recv(PEER_A, &sync(2, &[2]));
    h.discover("192.0.2.1:1001", 1);
    let sent = h.recv(PEER_A, &relay(2, 1, b"PILT"));
    assert_eq!(
        sent,
        [(addr("192.0.2.1:1001"), b"\x06\x00\x00\x00\x02PILT".to_vec())]
    );
}

#[test]
fn quirk_q15_relay_from_a_peer_beacon_is_never_forwarded_again() {
    // Two beacons that both believe the other owns node 1 would bounce a Go Relay forever.
    let mut h = Harness::with_defaults();
    h.beacon.set_peers(&[addr(PEER_A), addr(PEER_B)]);
    h.recv(PEER_A, &sync(2, &[2, 1]));
    h.recv(PEER_B, &sync(3, &[1]));
    assert!(h.recv(PEER_A, &relay(2, 1, b"PILT")).is_empty());
    assert_eq!(h.beacon.stats().relay_no_route, 1);
}

#[test]
fn relay_from_a_peer_beacon_needs_a_sender_it_announced() {
    let mut h = Harness::with_defaults();
    h.beacon.set_peers(&[addr(PEER_A)]);
    h.recv(PEER_A, &sync(2, &[2]));
    h.discover("192.0.2.1:1001", 1);
    assert!(h.recv(PEER_A, &relay(5, 1, b"PILT")).is_empty());
    assert_eq!(h.beacon.stats().relay_unverified, 1);
}

#[test]
fn quirk_q15_relay_from_an_unknown_beacon_is_dropped() {
    // Go forwards a Relay from anyone; here a non-peer must be the sender's own address.
    let mut h = Harness::with_defaults();
    h.discover("192.0.2.1:1001", 1);
    assert!(h
        .recv("198.51.100.99:9001", &relay(2, 1, b"PILT"))
        .is_empty());
}

// --- Sync and gossip ------------------------------------------------------------------------

#[test]
fn quirk_q15_sync_from_an_unknown_address_is_ignored() {
    let mut h = Harness::with_defaults();
    h.beacon.set_peers(&[addr(PEER_A)]);
    h.recv("192.0.2.66:9001", &sync(66, &[1, 2, 3]));
    assert_eq!(h.beacon.gossip_owner(h.now(), 1), None);
    assert_eq!(h.beacon.gossip_count(), 0);
    assert_eq!(h.beacon.stats().sync_unknown_peer, 1);
    // Same source port on another host is not the peer either.
    h.recv("198.51.100.1:9002", &sync(66, &[1]));
    assert_eq!(h.beacon.gossip_count(), 0);
}

#[test]
fn sync_from_a_go_peer_replaces_its_list() {
    let mut h = Harness::with_defaults();
    h.beacon.set_peers(&[addr(PEER_A)]);
    h.recv(
        PEER_A,
        &hex!("07 00 00 00 03 00 02 00 00 00 2A 00 00 00 07"),
    );
    assert_eq!(h.beacon.gossip_owner(h.now(), 42), Some(addr(PEER_A)));
    h.recv(PEER_A, &sync(3, &[7]));
    assert_eq!(h.beacon.gossip_owner(h.now(), 42), None);
    assert_eq!(h.beacon.gossip_owner(h.now(), 7), Some(addr(PEER_A)));
}

#[test]
fn gossip_tick_sends_every_live_node_to_every_peer() {
    let mut h = Harness::with_defaults();
    h.beacon
        .set_peers(&[addr(PEER_B), addr(PEER_A), addr(PEER_A)]);
    h.discover("192.0.2.7:1", 7);
    h.discover("192.0.2.42:1", 42);
    h.discover("192.0.2.1:1", 0);
    let sent = h.tick();
    assert_eq!(h.elapsed, secs(10));
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].0, addr(PEER_A));
    assert_eq!(sent[1].0, addr(PEER_B));
    for (_, bytes) in &sent {
        // A Go beacon reads the Sync and ignores our 8-byte trailer.
        assert_eq!(
            &bytes[..15],
            &hex!("07 00 00 00 01 00 02 00 00 00 07 00 00 00 2A")
        );
        assert_eq!(SyncPart::decode(&bytes[15..]), Some(SyncPart::WHOLE));
    }
    assert_eq!(h.beacon.poll_timeout(), h.t0 + secs(20));
    // Nothing more to do before then.
    h.advance(secs(5));
    let now = h.now();
    h.beacon.handle_timeout(now, &mut h.out);
    assert!(h.out.is_empty());
}

#[test]
fn no_peers_no_gossip() {
    let mut h = Harness::with_defaults();
    h.discover("192.0.2.7:1", 7);
    assert!(h.tick().is_empty());
}

fn many_nodes_harness(nodes: u32) -> Harness {
    let mut h = Harness::new(BeaconConfig {
        beacon_id: 1,
        limits: RateLimits {
            control: Rate::new(1e9, 1e9),
            ..RateLimits::default()
        },
        ..BeaconConfig::default()
    });
    for node in 1..=nodes {
        let from = SocketAddr::from(([10, (node >> 16) as u8, (node >> 8) as u8, node as u8], 1));
        h.beacon.handle_datagram(
            h.now(),
            from,
            &encode(BeaconMessage::Discover { node, proof: None }),
            &mut h.out,
        );
        h.out.clear();
    }
    h
}

#[test]
fn quirk_q16_gossip_fits_in_datagrams() {
    // 20 000 nodes: Go's single Sync would be 80 007 bytes and fail to send.
    let mut h = many_nodes_harness(20_000);
    h.beacon.set_peers(&[addr(PEER_A), addr(PEER_B)]);
    // Peer A has shown it merges split Syncs (it sent our trailer); peer B may be Go.
    let mut from_a = sync(2, &[]);
    SyncPart::WHOLE.encode(&mut from_a);
    h.recv(PEER_A, &from_a);
    let sent = h.tick();
    assert!(sent.iter().all(|(_, b)| b.len() <= MAX_UDP_PAYLOAD));
    let to_a: Sent = sent
        .iter()
        .filter(|(to, _)| *to == addr(PEER_A))
        .cloned()
        .collect();
    let to_b: Sent = sent
        .iter()
        .filter(|(to, _)| *to == addr(PEER_B))
        .cloned()
        .collect();
    assert_eq!(to_a.len(), 2);
    assert_eq!(synced_ids(&to_a), (1..=20_000).collect::<Vec<_>>());
    assert_eq!(
        SyncPart::decode(&to_a[1].1[7 + 4 * 3_627..]),
        Some(SyncPart { index: 1, count: 2 })
    );
    // The possibly-Go peer gets one whole, stable Sync (Go replaces its view on each one).
    assert_eq!(to_b.len(), 1);
    assert_eq!(synced_ids(&to_b), (1..=16_373).collect::<Vec<_>>());
}

#[test]
fn split_syncs_are_merged_by_a_rust_peer() {
    let mut sender = many_nodes_harness(20_000);
    let mut receiver = Harness::with_defaults();
    let sender_addr = addr(PEER_A);
    sender.beacon.set_peers(&[addr(PEER_B)]);
    receiver.beacon.set_peers(&[sender_addr]);
    // The receiver announces itself first, so the sender knows it merges parts.
    let hello = receiver.tick();
    sender.recv(PEER_B, &hello[0].1);
    for (_, bytes) in sender.tick() {
        receiver.recv(PEER_A, &bytes);
    }
    assert_eq!(receiver.beacon.gossip_count(), 20_000);
    assert_eq!(
        receiver.beacon.gossip_owner(receiver.now(), 20_000),
        Some(sender_addr)
    );
}

#[test]
fn gossip_is_forgotten_when_a_peer_goes_silent_or_is_removed() {
    let mut h = Harness::with_defaults();
    h.beacon.set_peers(&[addr(PEER_A), addr(PEER_B)]);
    h.recv(PEER_A, &sync(2, &[1]));
    h.recv(PEER_B, &sync(3, &[2]));
    h.advance(secs(34));
    h.recv(PEER_B, &sync(3, &[2]));
    h.advance(secs(1));
    assert_eq!(h.beacon.gossip_owner(h.now(), 1), None);
    assert_eq!(h.beacon.gossip_owner(h.now(), 2), Some(addr(PEER_B)));
    h.beacon.set_peers(&[addr(PEER_A)]);
    assert_eq!(h.beacon.gossip_owner(h.now(), 2), None);
    h.tick();
    assert_eq!(h.beacon.gossip_count(), 0);
}

#[test]
fn quirk_q15_gossip_per_peer_is_bounded() {
    let mut h = Harness::new(BeaconConfig {
        max_gossip_per_peer: 1000,
        ..BeaconConfig::default()
    });
    h.beacon.set_peers(&[addr(PEER_A)]);
    let ids: Vec<u32> = (1..=16_000).collect();
    h.recv(PEER_A, &sync(2, &ids));
    assert_eq!(h.beacon.gossip_count(), 1000);
}

#[test]
fn peer_list_is_capped() {
    let mut h = Harness::new(BeaconConfig {
        max_peers: 2,
        ..BeaconConfig::default()
    });
    h.beacon
        .set_peers(&[addr(PEER_B), addr("198.51.100.3:1"), addr(PEER_A)]);
    assert_eq!(h.beacon.peers(), [addr(PEER_A), addr(PEER_B)]);
}

// --- Rate limits and bad input --------------------------------------------------------------

#[test]
fn quirk_q15_sources_are_rate_limited() {
    let mut h = Harness::new(BeaconConfig {
        limits: RateLimits {
            control: Rate::new(10.0, 20.0),
            ..RateLimits::default()
        },
        ..BeaconConfig::default()
    });
    let replies: usize = (0..100u16)
        .map(|i| h.discover(&format!("192.0.2.66:{}", 1000 + i), 7).len())
        .sum();
    assert_eq!(replies, 20);
    assert_eq!(h.beacon.stats().rate_limited, 80);
    // Another source is unaffected, and the flooder recovers with time.
    assert_eq!(h.discover("192.0.2.1:1", 1).len(), 1);
    h.advance(secs(1));
    assert_eq!(
        (0..20)
            .map(|_| h.discover("192.0.2.66:1000", 7).len())
            .sum::<usize>(),
        10
    );
}

#[test]
fn relay_bytes_are_rate_limited() {
    let mut h = Harness::new(BeaconConfig {
        limits: RateLimits {
            relay_bytes: Rate::new(0.0, 10_000.0),
            ..RateLimits::default()
        },
        max_relay_len: 1000,
        ..BeaconConfig::default()
    });
    h.discover("192.0.2.1:1001", 1);
    h.discover("192.0.2.2:1002", 2);
    let delivered: usize = (0..20)
        .map(|_| h.recv("192.0.2.2:1002", &relay(2, 1, &[0x50; 991])).len())
        .sum();
    assert_eq!(delivered, 10);
}

#[test]
fn malformed_and_unhandled_messages_are_dropped() {
    let mut h = Harness::with_defaults();
    for bad in [
        &b""[..],
        &hex!("01 00 00"),
        &hex!("03 00 00 00 01"),
        &hex!("05 00 00 00 01 00 00 00"),
        &hex!("07 00 00 00 01 00 05 00 00 00 01"),
        &hex!("0F"),
        b"PILT....",
    ] {
        assert!(h.recv("192.0.2.1:1", bad).is_empty());
    }
    assert_eq!(h.beacon.stats().malformed, 7);
    for unhandled in [
        &hex!("02 04 CB 00 71 07 9C 40")[..],
        &hex!("04 04 C6 33 64 09 CA 6C"),
        &hex!("06 00 00 00 02 50"),
    ] {
        assert!(h.recv("192.0.2.1:1", unhandled).is_empty());
    }
    assert_eq!(h.beacon.stats().ignored, 3);
    assert_eq!(h.beacon.node_count(), 0);
}

// --- Two beacons, wired together without sockets --------------------------------------------

#[test]
fn two_beacons_gossip_and_relay_across() {
    let (a_addr, b_addr) = (addr(PEER_A), addr(PEER_B));
    let mut a = Harness::with_defaults();
    let mut b = Harness::new(BeaconConfig {
        beacon_id: 2,
        ..BeaconConfig::default()
    });
    a.beacon.set_peers(&[b_addr]);
    b.beacon.set_peers(&[a_addr]);
    a.discover("192.0.2.1:1001", 1);
    b.discover("192.0.2.2:1002", 2);
    for (to, bytes) in a.tick() {
        assert_eq!(to, b_addr);
        b.recv(PEER_A, &bytes);
    }
    assert_eq!(b.beacon.gossip_owner(b.now(), 1), Some(a_addr));
    b.tick();
    let forwarded = b.recv("192.0.2.2:1002", &relay(2, 1, b"PILS"));
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0].0, a_addr);
    // B announced node 2 to A when it ticked.
    for (_, bytes) in b.tick() {
        a.recv(PEER_B, &bytes);
    }
    let delivered = a.recv(PEER_B, &forwarded[0].1);
    assert_eq!(
        delivered,
        [(addr("192.0.2.1:1001"), b"\x06\x00\x00\x00\x02PILS".to_vec())]
    );
}
