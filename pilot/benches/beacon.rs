//! The sans-IO beacon's hot paths: relay delivery (the data path for nodes behind hard NATs),
//! relay forwarding to a peer beacon, and Discover handling with a populated table. Rate limits
//! are lifted so that the measurement is the protocol work, not the drop path.
//!
//! Run: `cargo bench -p pilot --bench beacon`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pilot::beacon::{Beacon, BeaconConfig, MoveKey, Outbox, Rate, RateLimits};
use pilot::wire::beacon::BeaconMessage;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

const UNLIMITED: Rate = Rate::new(1e300, 1e300);
const PEER: &str = "198.51.100.1:9001";

fn config() -> BeaconConfig {
    BeaconConfig {
        beacon_id: 1,
        limits: RateLimits {
            control: UNLIMITED,
            sync: UNLIMITED,
            relay_packets: UNLIMITED,
            relay_bytes: UNLIMITED,
            ..RateLimits::default()
        },
        ..BeaconConfig::default()
    }
}

fn node_addr(node: u32) -> SocketAddr {
    SocketAddr::from((
        [10, (node >> 16) as u8, (node >> 8) as u8, node as u8],
        4000,
    ))
}

/// A beacon that has seen `nodes` Discovers (nodes 1..=nodes) and one peer announcing node 1_000_000.
fn populated(nodes: u32, now: Instant) -> Beacon {
    let mut beacon = Beacon::new(config(), now, MoveKey::from_bytes([1; 32]));
    beacon.set_peers(&[PEER.parse().unwrap()]);
    let mut out = Outbox::new();
    for node in 1..=nodes {
        let mut msg = Vec::new();
        BeaconMessage::Discover { node, proof: None }.encode(&mut msg);
        beacon.handle_datagram(now, node_addr(node), &msg, &mut out);
        out.clear();
    }
    let mut sync = Vec::new();
    BeaconMessage::encode_sync(2, &[1_000_000], &mut sync).unwrap();
    beacon.handle_datagram(now, PEER.parse().unwrap(), &sync, &mut out);
    beacon
}

fn relay(sender: u32, destination: u32, inner_len: usize) -> Vec<u8> {
    let inner = vec![0x50u8; inner_len];
    let mut out = Vec::new();
    BeaconMessage::Relay {
        sender,
        destination,
        inner: &inner,
    }
    .encode(&mut out);
    out
}

fn bench_relay(c: &mut Criterion) {
    let now = Instant::now();
    let mut group = c.benchmark_group("beacon_relay");
    // A PILK, a typical 1200-byte frame, and a full encrypted stream segment (§3.6).
    for inner_len in [40usize, 1200, 4166] {
        group.throughput(Throughput::Elements(1));
        let datagram = relay(2, 1, inner_len);
        // Baseline: the one copy any relay must make (the frame into an outgoing buffer).
        let mut copy = Vec::with_capacity(datagram.len());
        group.bench_with_input(
            BenchmarkId::new("copy_only", inner_len),
            &datagram,
            |b, d| {
                b.iter(|| {
                    copy.clear();
                    copy.extend_from_slice(&black_box(d)[4..]);
                    black_box(&copy);
                })
            },
        );
        let mut beacon = populated(10_000, now);
        let mut out = Outbox::new();
        group.bench_with_input(BenchmarkId::new("deliver", inner_len), &datagram, |b, d| {
            b.iter(|| {
                beacon.handle_datagram(now, node_addr(2), black_box(d), &mut out);
                debug_assert_eq!(out.len(), 1);
                out.clear();
            })
        });
        let datagram = relay(2, 1_000_000, inner_len);
        group.bench_with_input(BenchmarkId::new("forward", inner_len), &datagram, |b, d| {
            b.iter(|| {
                beacon.handle_datagram(now, node_addr(2), black_box(d), &mut out);
                debug_assert_eq!(out.len(), 1);
                out.clear();
            })
        });
    }
    group.finish();
}

fn bench_discover(c: &mut Criterion) {
    let now = Instant::now();
    let mut group = c.benchmark_group("beacon_discover");
    group.throughput(Throughput::Elements(1));
    for nodes in [1_000u32, 100_000] {
        let mut beacon = populated(nodes, now);
        let mut out = Outbox::new();
        let messages: Vec<(SocketAddr, Vec<u8>)> = (1..=nodes)
            .map(|node| {
                let mut msg = Vec::new();
                BeaconMessage::Discover { node, proof: None }.encode(&mut msg);
                (node_addr(node), msg)
            })
            .collect();
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("refresh", nodes), |b| {
            b.iter(|| {
                let (from, msg) = &messages[i % messages.len()];
                i += 1;
                beacon.handle_datagram(now, *from, black_box(msg), &mut out);
                out.clear();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_relay, bench_discover);
criterion_main!(benches);
