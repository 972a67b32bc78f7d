//! The tunnel's data path with a 4096-byte packet (a full stream segment): `send` (seal and
//! route into a pooled buffer, `poll_transmit`, `recycle`) and `handle_datagram` (classify,
//! open into the caller's buffer, decode, check the inner header, path bookkeeping), between
//! two tunnels keyed with each other on a direct path.
//!
//! Baseline in the same run: `PeerCrypto::seal` and `open` of the same packet alone
//! (`pils_seal_4096`, `pils_open_4096`), so the tunnel's own cost (routing, buffers, checks,
//! path bookkeeping) reads as the difference, whatever the load on the machine.

mod common;
use common::keyed_crypto_pair;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pilot::crypto::{Identity, LocalKeys, RegistryKey};
use pilot::net::seeded_rng;
use pilot::tunnel::{Tunnel, TunnelConfig, TunnelEvent};
use pilot::wire::{Addr, Header, Protocol, TunnelFrame};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

const PAYLOAD: usize = 4096;

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, n], 4000))
}

fn keyed_pair(now: Instant) -> (Tunnel, Tunnel) {
    let mut rng = seeded_rng(2026);
    let ids = [Identity::generate(&mut rng), Identity::generate(&mut rng)];
    let mut tunnels = [1u32, 2].map(|node| {
        let keys = LocalKeys::generate(ids[node as usize - 1].clone(), &mut rng);
        Tunnel::new(
            node,
            keys,
            TunnelConfig::default(),
            seeded_rng(u64::from(node)),
        )
    });
    tunnels[0]
        .add_peer(now, 2, Some(addr(2)))
        .expect("room for a peer");
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
                let to = usize::from(t.to == addr(2));
                tunnels[to].handle_datagram(now, from, &t.bytes, &mut plain);
            }
        }
    }
    let [a, b] = tunnels;
    assert!(a.is_keyed(2) && b.is_keyed(1), "handshake completed");
    (a, b)
}

fn tunnel(c: &mut Criterion) {
    let now = Instant::now();
    let header = Header {
        protocol: Protocol::STREAM,
        src: Addr::backbone(1),
        dst: Addr::backbone(2),
        ..Header::default()
    };
    let mut packet = Vec::new();
    header
        .encode_packet(&[0x5A; PAYLOAD], &mut packet)
        .expect("fits");
    let mut group = c.benchmark_group("tunnel");
    group.throughput(Throughput::Bytes(PAYLOAD as u64));

    let (mut seal, mut open) = keyed_crypto_pair();
    let mut frame = Vec::with_capacity(PAYLOAD + 128);
    group.bench_function("pils_seal_4096", |bench| {
        bench.iter(|| {
            frame.clear();
            seal.seal(1, black_box(&packet), &mut frame).expect("keyed");
        })
    });
    let mut plain = vec![0u8; 65_536];
    group.bench_function("pils_open_4096", |bench| {
        bench.iter_batched_ref(
            || {
                let mut f = Vec::with_capacity(PAYLOAD + 128);
                seal.seal(1, &packet, &mut f).expect("keyed");
                f
            },
            |f| {
                let TunnelFrame::Sealed(sealed) = TunnelFrame::decode(f).expect("PILS") else {
                    unreachable!("sealed frames decode as PILS");
                };
                black_box(open.open(&sealed, &mut plain).expect("genuine"));
            },
            BatchSize::SmallInput,
        )
    });

    let (mut a, _) = keyed_pair(now);
    group.bench_function("send_4096", |bench| {
        bench.iter(|| {
            a.send(now, 2, black_box(&packet)).expect("keyed");
            let t = a.poll_transmit().expect("a datagram");
            black_box(&t.bytes);
            a.recycle(t.bytes);
        })
    });

    let (mut a, mut b) = keyed_pair(now);
    group.bench_function("receive_4096", |bench| {
        bench.iter_batched_ref(
            || {
                a.send(now, 2, &packet).expect("keyed");
                a.poll_transmit().expect("a datagram").bytes
            },
            |frame| {
                let got = b.handle_datagram(now, addr(1), frame, &mut plain);
                assert!(got.is_some());
            },
            BatchSize::SmallInput,
        )
    });

    group.bench_function("send_and_receive_4096", |bench| {
        bench.iter(|| {
            a.send(now, 2, black_box(&packet)).expect("keyed");
            let t = a.poll_transmit().expect("a datagram");
            let got = b.handle_datagram(now, addr(1), &t.bytes, &mut plain);
            assert!(got.is_some());
            a.recycle(t.bytes);
        })
    });
    group.finish();
}

criterion_group!(benches, tunnel);
criterion_main!(benches);
