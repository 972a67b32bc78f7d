//! Header encode and decode, with and without a full 4096-byte segment behind it (the CRC covers
//! the payload, so the payload length is what costs).
//!
//! Run: `cargo bench -p pilot --bench wire`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pilot::wire::{Addr, Flags, Header, Packet};
use std::hint::black_box;

fn header() -> Header {
    Header {
        flags: Flags::ACK,
        src: Addr::new(0, 1),
        dst: Addr::new(0, 2),
        src_port: 49152,
        dst_port: 7,
        seq: 1,
        ack: 1,
        window: 512,
        ..Header::default()
    }
}

fn bench_header(c: &mut Criterion) {
    let mut group = c.benchmark_group("header");
    for payload_len in [0usize, 1400, 4096] {
        let payload = vec![0x5Au8; payload_len];
        let mut encoded = Vec::new();
        header().encode_packet(&payload, &mut encoded).unwrap();
        group.throughput(Throughput::Bytes((34 + payload_len) as u64));
        group.bench_with_input(BenchmarkId::new("encode", payload_len), &payload, |b, p| {
            let h = header();
            b.iter(|| black_box(&h).encode(black_box(p)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("decode", payload_len), &encoded, |b, e| {
            b.iter(|| Packet::decode(black_box(e)).unwrap().header.seq)
        });
    }
    group.finish();
}

criterion_group!(benches, bench_header);
criterion_main!(benches);
