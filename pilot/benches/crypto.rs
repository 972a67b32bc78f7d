//! PILS seal and open of a 1,400-byte payload, through the same `PeerCrypto` calls the data
//! path makes (frame header, nonce, AES-256-GCM, replay window), in reused buffers.
//!
//! `ci/crypto-vs-openssl` runs this next to `openssl speed -evp aes-256-gcm -bytes 1024` and
//! prints both figures and their ratio. The raw AEAD is benchmarked too (group `aead`), with
//! both backends considered, to show what framing and replay bookkeeping cost on top.

mod common;
use common::keyed_crypto_pair;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pilot::crypto::TunnelKey;
use pilot::wire::{Nonce, TunnelFrame};
use std::hint::black_box;

/// A typical tunnel payload: a Pilot packet that fills a 1,500-byte path with room to spare.
const PAYLOAD: usize = 1400;

fn pils(c: &mut Criterion) {
    let packet = vec![0x5Au8; PAYLOAD];
    let mut group = c.benchmark_group("pils");
    group.throughput(Throughput::Bytes(PAYLOAD as u64));

    let (mut sender, mut receiver) = keyed_crypto_pair();
    let mut frame = Vec::with_capacity(PAYLOAD + 64);
    group.bench_function("seal_1400", |b| {
        b.iter(|| {
            frame.clear();
            sender
                .seal(1, black_box(&packet), &mut frame)
                .expect("keyed");
            black_box(&frame);
        })
    });

    // Every frame carries a fresh counter (the replay window refuses repeats), so frames are
    // sealed in setup, outside the measured time, and opened in order. Small batches keep
    // them in cache, as a datagram just copied out of the socket is.
    let mut plain = vec![0u8; PAYLOAD + 64];
    group.bench_function("open_1400", |b| {
        b.iter_batched_ref(
            || {
                let mut frame = Vec::with_capacity(PAYLOAD + 64);
                sender.seal(1, &packet, &mut frame).expect("keyed");
                frame
            },
            |frame| {
                let TunnelFrame::Sealed(sealed) = TunnelFrame::decode(frame).expect("PILS") else {
                    unreachable!("seal builds PILS frames")
                };
                let opened = receiver.open(&sealed, &mut plain).expect("genuine frame");
                black_box(opened.len());
            },
            BatchSize::NumIterations(32),
        )
    });

    group.finish();
}

/// The bare AEAD on the same payload: ring (our backend, through `TunnelKey`) and RustCrypto's
/// `aes-gcm` (the alternative), in one run so the choice in `docs/CRYPTO.md` can be re-checked.
fn backends(c: &mut Criterion) {
    use aes_gcm::aead::{inout::InOutBuf, AeadInOut, KeyInit};
    let packet = vec![0x5Au8; PAYLOAD];
    let mut plain = vec![0u8; PAYLOAD];
    let mut group = c.benchmark_group("aead");
    group.throughput(Throughput::Bytes(PAYLOAD as u64));
    let nonce = Nonce {
        prefix: [1, 2, 3, 4],
        counter: 1,
    };

    let key = TunnelKey::from_bytes(&[7u8; 32]);
    let mut buf = packet.clone();
    group.bench_function("ring_seal_1400", |b| {
        b.iter(|| {
            black_box(
                key.seal_in_place(&nonce, black_box(&mut buf))
                    .expect("fits"),
            )
        })
    });
    let mut sealed = packet.clone();
    let tag = key.seal_in_place(&nonce, &mut sealed).expect("fits");
    sealed.extend_from_slice(&tag);
    group.bench_function("ring_open_1400", |b| {
        b.iter(|| {
            let opened = key
                .open_into(&nonce, black_box(&sealed), &mut plain)
                .expect("genuine");
            black_box(opened.len());
        })
    });

    let rc = aes_gcm::Aes256Gcm::new(&[7u8; 32].into());
    let rc_nonce = nonce.to_bytes().into();
    group.bench_function("rustcrypto_seal_1400", |b| {
        b.iter(|| {
            black_box(
                rc.encrypt_inout_detached(&rc_nonce, &[], black_box(&mut buf[..]).into())
                    .expect("fits"),
            )
        })
    });
    let (ciphertext, tag) = sealed.split_at(PAYLOAD);
    let rc_tag: [u8; 16] = tag.try_into().expect("16-byte tag");
    group.bench_function("rustcrypto_open_1400", |b| {
        b.iter(|| {
            let inout = InOutBuf::new(black_box(ciphertext), &mut plain[..]).expect("same length");
            rc.decrypt_inout_detached(&rc_nonce, &[], inout, &rc_tag.into())
                .expect("genuine");
            black_box(&plain);
        })
    });
    group.finish();
}

criterion_group!(benches, pils, backends);
criterion_main!(benches);
