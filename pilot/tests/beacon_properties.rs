//! Properties of the sans-IO beacon under arbitrary input: no panic, state never beyond its caps,
//! at most two datagrams out per datagram in, nothing larger than a UDP payload, nothing sent to
//! an address that never spoke to the beacon (no reflection), and the same inputs always give the
//! same outputs.

use pilot::beacon::{Beacon, BeaconConfig, MoveKey, Outbox, Rate, RateLimits};
use pilot::wire::beacon::BeaconMessage;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const MAX_NODES: usize = 16;
const MAX_PEERS: usize = 2;
const MAX_GOSSIP_PER_PEER: usize = 8;
const MAX_SOURCES: usize = 4;

fn config() -> BeaconConfig {
    BeaconConfig {
        beacon_id: 1,
        max_nodes: MAX_NODES,
        max_peers: MAX_PEERS,
        max_gossip_per_peer: MAX_GOSSIP_PER_PEER,
        max_sync_nodes: 5,
        max_relay_len: 512,
        limits: RateLimits {
            control: Rate::new(50.0, 100.0),
            max_sources: MAX_SOURCES,
            ..RateLimits::default()
        },
        ..BeaconConfig::default()
    }
}

/// A few hosts and ports, so that claims collide; hosts 1 and 2 port 9001 are the peers.
fn source() -> impl Strategy<Value = SocketAddr> {
    (1u8..5, prop_oneof![Just(9001u16), Just(1u16)])
        .prop_map(|(h, p)| SocketAddr::from(([10, 0, 0, h], p)))
}

fn peers() -> Vec<SocketAddr> {
    vec![
        SocketAddr::from(([10, 0, 0, 1], 9001)),
        SocketAddr::from(([10, 0, 0, 2], 9001)),
        SocketAddr::from(([10, 0, 0, 3], 9001)),
    ]
}

/// Small node IDs (plus the reserved ones) so that messages refer to each other.
fn node() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 1u32..6, 1 => Just(0u32), 1 => 6u32..40, 1 => Just(u32::MAX)]
}

fn datagram() -> impl Strategy<Value = Vec<u8>> {
    let encode = |m: BeaconMessage<'_>| {
        let mut out = Vec::new();
        m.encode(&mut out);
        out
    };
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        node().prop_map(move |node| encode(BeaconMessage::Discover { node, proof: None })),
        (node(), node()).prop_map(
            move |(requester, target)| encode(BeaconMessage::PunchRequest { requester, target })
        ),
        (
            node(),
            node(),
            proptest::collection::vec(any::<u8>(), 0..600)
        )
            .prop_map(
                move |(sender, destination, inner)| encode(BeaconMessage::Relay {
                    sender,
                    destination,
                    inner: &inner
                })
            ),
        (
            any::<u32>(),
            proptest::collection::vec(node(), 0..30),
            any::<bool>()
        )
            .prop_map(|(beacon, nodes, trailer)| {
                let mut out = Vec::new();
                BeaconMessage::encode_sync(beacon, &nodes, &mut out).unwrap();
                if trailer {
                    out.extend_from_slice(b"PBS1\x00\x00\x00\x02");
                }
                out
            }),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    Datagram(SocketAddr, Vec<u8>),
    Advance(u64),
    Tick,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (source(), datagram()).prop_map(|(from, bytes)| Step::Datagram(from, bytes)),
        1 => (0u64..120_000).prop_map(Step::Advance),
        1 => Just(Step::Tick),
    ]
}

/// Runs the steps and returns every datagram sent, checking the invariants on the way.
fn run(steps: &[Step], t0: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut beacon = Beacon::new(config(), t0, MoveKey::from_bytes([1; 32]));
    beacon.set_peers(&peers());
    let mut now = t0;
    let mut out = Outbox::new();
    let mut sent = Vec::new();
    // Addresses that announced a node (Discover or Punch Request): the only ones, besides the
    // current source and the peers, that the beacon may send to.
    let mut announced = BTreeSet::new();
    for step in steps {
        match step {
            Step::Datagram(from, bytes) => {
                if matches!(bytes.first(), Some(1 | 3)) {
                    announced.insert(*from);
                }
                beacon.handle_datagram(now, *from, bytes, &mut out);
                assert!(out.len() <= 2, "one datagram in, at most two out");
                for (to, _) in out.iter() {
                    assert!(to == *from || announced.contains(&to) || peers().contains(&to));
                }
            }
            Step::Advance(ms) => now += Duration::from_millis(*ms),
            Step::Tick => {
                now = now.max(beacon.poll_timeout());
                beacon.handle_timeout(now, &mut out);
                assert!(beacon.poll_timeout() > now);
            }
        }
        assert!(beacon.node_count() <= MAX_NODES);
        assert!(beacon.gossip_count() <= MAX_PEERS * MAX_GOSSIP_PER_PEER);
        assert!(beacon.source_count() <= MAX_SOURCES);
        assert!(beacon.peers().len() <= MAX_PEERS);
        for (to, bytes) in out.iter() {
            assert!(bytes.len() <= 65_507);
            sent.push((to, bytes.to_vec()));
        }
        out.clear();
    }
    sent
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_traffic_stays_bounded_and_deterministic(steps in proptest::collection::vec(step(), 0..200)) {
        let t0 = Instant::now();
        let first = run(&steps, t0);
        let second = run(&steps, t0);
        prop_assert_eq!(first, second);
    }

    #[test]
    fn arbitrary_bytes_never_panic(from in source(), bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut beacon = Beacon::new(config(), Instant::now(), MoveKey::from_bytes([1; 32]));
        let mut out = Outbox::new();
        beacon.handle_datagram(Instant::now(), from, &bytes, &mut out);
        prop_assert!(out.len() <= 2);
    }
}
