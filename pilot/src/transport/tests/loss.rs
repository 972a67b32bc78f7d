//! Transfers under loss, reordering and duplication; delivery is byte-exact in every case.

use super::harness::*;
use crate::transport::congestion::Algorithm;
use crate::transport::{Config, State};
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;

fn run(seed: u64, link: Link, len: usize, config: Config) -> Sim {
    let mut sim = Sim::new(seed, link, config.clone(), config, 77, 99);
    let payload = data(len, seed);
    let got = sim.transfer(&payload, Duration::from_secs(3600));
    assert_eq!(got.len(), payload.len(), "seed {seed}: {:?}", sim.a.stats());
    assert_eq!(digest(&got), digest(&payload));
    sim
}

#[test]
fn one_percent_loss() {
    let sim = run(11, Link::lossy(0.01), 2 << 20, Config::default());
    let s = sim.a.stats();
    assert!(s.retransmits > 0);
    // Recovery came from SACK / duplicate ACKs, not only from timeouts.
    assert!(s.fast_retransmits > 0, "{s:?}");
}

#[test]
fn ten_percent_loss() {
    run(12, Link::lossy(0.10), 1 << 20, Config::default());
}

#[test]
fn thirty_percent_loss() {
    let config = Config {
        max_transmissions: 30,
        linger: Duration::from_secs(3600),
        ..Config::default()
    };
    run(13, Link::lossy(0.30), 256 << 10, config);
}

#[test]
fn reordering_and_duplication() {
    let link = Link {
        duplicate: 0.05,
        reorder: 0.2,
        ..Link::perfect()
    };
    run(14, link, 2 << 20, Config::default());
}

#[test]
fn newreno_under_loss() {
    let config = Config {
        congestion: Arc::new(Algorithm::NewReno),
        ..Config::default()
    };
    run(15, Link::lossy(0.05), 1 << 20, config);
}

#[test]
fn peer_that_vanishes_is_detected() {
    let mut sim = Sim::simple(16, Link::perfect());
    sim.run_until(Duration::from_secs(5), |s| {
        s.b.stats().packets_received >= 2
    });
    sim.a.write(&data(100_000, 1)).unwrap();
    sim.run_until(Duration::from_millis(5), |_| false);
    sim.cut = true;
    let done = sim.run_until(Duration::from_secs(600), |s| {
        s.a.state() == State::Closed && s.b.state() == State::Closed
    });
    assert!(done);
    assert_eq!(
        sim.a.close_reason(),
        Some(crate::transport::CloseReason::TimedOut)
    );
    // The receiver, hearing nothing, gives up at its idle timeout.
    assert_eq!(
        sim.b.close_reason(),
        Some(crate::transport::CloseReason::IdleTimeout)
    );
}

/// SYN retries for the fault properties. At a quarter of loss each way seven SYNs in a row
/// fail about once in 300 dials: the properties are about delivery, so the dial does not give
/// up either.
const PATIENT_SYN_RETRIES: u32 = 40;

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Random fault schedules: whatever the link does, the bytes arrive exactly.
    #[test]
    fn random_fault_schedules_deliver_exactly(
        seed in any::<u64>(),
        loss in 0.0f64..0.25,
        duplicate in 0.0f64..0.1,
        reorder in 0.0f64..0.3,
        delay_ms in 1u64..50,
        len in 1usize..200_000,
        isn in any::<u32>(),
        nodelay in any::<bool>(),
        newreno in any::<bool>(),
    ) {
        let link = Link {
            loss,
            duplicate,
            reorder,
            delay: Duration::from_millis(delay_ms),
            reorder_delay: Duration::from_millis(delay_ms + 5),
        };
        let config = Config {
            nodelay,
            max_transmissions: 40,
            syn_retries: PATIENT_SYN_RETRIES,
            linger: Duration::from_secs(3600),
            idle_timeout: Some(Duration::from_secs(3600)),
            congestion: Arc::new(if newreno { Algorithm::NewReno } else { Algorithm::Cubic }),
            ..Config::default()
        };
        let mut sim = Sim::new(seed, link, config.clone(), config, isn, isn.wrapping_mul(31));
        let payload = data(len, seed);
        let got = sim.transfer(&payload, Duration::from_secs(7200));
        prop_assert_eq!(digest(&got), digest(&payload));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Both directions at once under random faults and a partition of up to five seconds, then
    /// both sides close: both streams arrive exactly and both connections end closed.
    #[test]
    fn bidirectional_with_partition_then_close(
        seed in any::<u64>(),
        loss in 0.0f64..0.15,
        reorder in 0.0f64..0.2,
        len_ab in 1usize..150_000,
        len_ba in 1usize..150_000,
        cut_at_ms in 0u64..2_000,
        cut_for_ms in 0u64..5_000,
    ) {
        let link = Link { loss, reorder, duplicate: 0.02, ..Link::perfect() };
        let config = Config {
            max_transmissions: 40,
            syn_retries: PATIENT_SYN_RETRIES,
            linger: Duration::from_secs(3600),
            ..Config::default()
        };
        let mut sim = Sim::new(seed, link, config.clone(), config, seed as u32, (seed >> 32) as u32);
        let ab = data(len_ab, seed);
        let ba = data(len_ba, !seed);
        let (mut wa, mut wb) = (0, 0);
        let (mut ra, mut rb) = (Vec::new(), Vec::new());
        let (mut eof_a, mut eof_b) = (false, false);
        let mut buf = vec![0u8; 16 * 1024];
        let start = sim.now;
        let done = sim.run_until(Duration::from_secs(3600), |s| {
            let t = s.now - start;
            s.cut = t >= Duration::from_millis(cut_at_ms)
                && t < Duration::from_millis(cut_at_ms + cut_for_ms);
            if wa < ab.len() {
                wa += s.a.write(&ab[wa..]).unwrap_or(0);
            }
            if wb < ba.len() {
                wb += s.b.write(&ba[wb..]).unwrap_or(0);
            }
            for (conn, got, eof) in [(&mut s.a, &mut ra, &mut eof_a), (&mut s.b, &mut rb, &mut eof_b)] {
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) => { *eof = true; break; }
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(_) => break,
                    }
                }
            }
            // Each side closes once it has everything the other sends (no half-close).
            if ra.len() == ba.len() && rb.len() == ab.len() {
                let now = s.now;
                s.a.close(now);
                s.b.close(now);
            }
            s.a.state() == crate::transport::State::Closed && s.b.state() == crate::transport::State::Closed
        });
        prop_assert!(done, "{:?} {:?}", sim.a.state(), sim.b.state());
        prop_assert_eq!(digest(&rb), digest(&ab));
        prop_assert_eq!(digest(&ra), digest(&ba));
        prop_assert_eq!(sim.a.close_reason(), Some(crate::transport::CloseReason::Graceful));
        prop_assert_eq!(sim.b.close_reason(), Some(crate::transport::CloseReason::Graceful));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Bad input is normal input: random packets on the tuple (any flags, seq, ack, window,
    /// SACK lists with arbitrary blocks) hitting both ends of a transfer never panic, and a
    /// stream that survives them delivers exactly what was sent.
    #[test]
    fn random_packets_never_panic_or_corrupt(
        seed in any::<u64>(),
        packets in proptest::collection::vec(
            (any::<u8>(), any::<u32>(), any::<u32>(), any::<u16>(), proptest::collection::vec(any::<u32>(), 0..8), any::<bool>()),
            1..200,
        ),
    ) {
        use crate::wire::{Flags, SackBlock, SackList};
        let mut sim = Sim::simple(seed, Link::lossy(0.02));
        let payload = data(100_000, seed);
        let mut written = 0;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 16384];
        let mut script = packets.into_iter();
        let done = sim.run_until(Duration::from_secs(600), |s| {
            if written < payload.len() {
                written += s.a.write(&payload[written..]).unwrap_or(0);
            }
            while let Ok(n) = s.b.read(&mut buf) {
                if n == 0 { break; }
                got.extend_from_slice(&buf[..n]);
            }
            if let Some((flags, seq, ack, window, blocks, to_a)) = script.next() {
                // Keep RST and FIN out of the window so the stream can survive; everything else
                // is arbitrary.
                let mut flags = Flags::from_bits(flags);
                if flags.contains(Flags::RST) || flags.contains(Flags::FIN) {
                    flags = Flags::ACK;
                }
                let mut body = Vec::new();
                if blocks.len() >= 2 {
                    let mut list = SackList::new();
                    for pair in blocks.chunks(2).take(4) {
                        if pair.len() == 2 {
                            list.push(SackBlock { left: pair[0], right: pair[1] });
                        }
                    }
                    list.encode(&mut body);
                }
                let dir = if to_a { Dir::BtoA } else { Dir::AtoB };
                // Data with a random seq could land in the window and corrupt the stream, as
                // it would in TCP; only SACK and empty payloads are injected.
                let bytes = s.craft(dir, flags, seq, ack, window, &body);
                s.inject(dir, &bytes);
            }
            got.len() == payload.len() || s.a.is_closed() || s.b.is_closed()
        });
        prop_assert!(done);
        if got.len() == payload.len() {
            prop_assert_eq!(digest(&got), digest(&payload));
        }
    }
}
