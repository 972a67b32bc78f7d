//! Handshake, lossless transfer, flow control, close.

use super::harness::*;
use crate::transport::{CloseReason, Config, Event, State};
use crate::wire::Flags;
use std::time::Duration;

#[test]
fn handshake_then_lossless_transfer_is_byte_exact() {
    let mut sim = Sim::simple(1, Link::perfect());
    let payload = data(3 << 20, 7);
    let got = sim.transfer(&payload, Duration::from_secs(60));
    assert_eq!(digest(&got), digest(&payload));
    assert_eq!(sim.a.stats().retransmits, 0);
    let events = Sim::events(&mut sim.a);
    assert_eq!(events.first(), Some(&Event::Connected));
    assert!(events.contains(&Event::Closed(CloseReason::Graceful)));
    let b_events = Sim::events(&mut sim.b);
    assert!(b_events.contains(&Event::Finished));
    // SYN carries the ISN, the first data byte has ISN + 1 (T-7).
    let first_data = sim
        .trace
        .iter()
        .find(|s| s.dir == Dir::AtoB && !s.payload.is_empty())
        .unwrap();
    assert_eq!(first_data.header.seq, 1001);
    let syn_ack = sim
        .trace
        .iter()
        .find(|s| s.header.flags == Flags::SYN | Flags::ACK)
        .unwrap();
    assert_eq!((syn_ack.header.seq, syn_ack.header.ack), (5000, 1001));
}

#[test]
fn time_wait_ends_and_nothing_loops() {
    let mut sim = Sim::simple(2, Link::perfect());
    let got = sim.transfer(b"hello", Duration::from_secs(10));
    assert_eq!(got, b"hello");
    let done = sim.run_until(Duration::from_secs(60), |s| {
        s.a.state() == State::Closed && s.b.state() == State::Closed
    });
    assert!(
        done,
        "TIME_WAIT must end: {:?} {:?}",
        sim.a.state(),
        sim.b.state()
    );
    // Exactly one FIN and one FIN-ACK: nobody answers a FIN-ACK (Q6).
    let fins = sim.count(Dir::AtoB, |s| s.header.flags == Flags::FIN);
    let fin_acks = sim.count(Dir::BtoA, |s| s.header.flags == Flags::FIN | Flags::ACK);
    let a_fin_acks = sim.count(Dir::AtoB, |s| {
        s.header.flags.contains(Flags::FIN | Flags::ACK)
    });
    assert_eq!((fins, fin_acks, a_fin_acks), (1, 1, 0));
    // Nothing more is sent once both are closed.
    let before = sim.trace.len();
    sim.run_until(Duration::from_secs(120), |_| false);
    assert_eq!(sim.trace.len(), before);
}

#[test]
fn both_directions_at_once() {
    let mut sim = Sim::simple(3, Link::lossy(0.02));
    let ab = data(400_000, 1);
    let ba = data(300_000, 2);
    let (mut wa, mut wb) = (0, 0);
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 8192];
    let done = sim.run_until(Duration::from_secs(120), |s| {
        if wa < ab.len() {
            wa += s.a.write(&ab[wa..]).unwrap_or(0);
        }
        if wb < ba.len() {
            wb += s.b.write(&ba[wb..]).unwrap_or(0);
        }
        while let Ok(n) = s.b.read(&mut buf) {
            if n == 0 {
                break;
            }
            rb.extend_from_slice(&buf[..n]);
        }
        while let Ok(n) = s.a.read(&mut buf) {
            if n == 0 {
                break;
            }
            ra.extend_from_slice(&buf[..n]);
        }
        ra.len() == ba.len() && rb.len() == ab.len()
    });
    assert!(done);
    assert_eq!(digest(&ra), digest(&ba));
    assert_eq!(digest(&rb), digest(&ab));
}

#[test]
fn simultaneous_close_ends_in_closed_on_both_sides() {
    let mut sim = Sim::simple(4, Link::perfect());
    sim.run_until(Duration::from_secs(5), |s| {
        s.a.state() == State::Established && s.b.stats().packets_received > 1
    });
    sim.a.write(b"from a").unwrap();
    sim.b.write(b"from b").unwrap();
    let now = sim.now;
    sim.a.close(now);
    sim.b.close(now);
    let mut buf = [0u8; 64];
    let (mut at_a, mut at_b) = (Vec::new(), Vec::new());
    let done = sim.run_until(Duration::from_secs(60), |s| {
        while let Ok(n) = s.a.read(&mut buf) {
            if n == 0 {
                break;
            }
            at_a.extend_from_slice(&buf[..n]);
        }
        while let Ok(n) = s.b.read(&mut buf) {
            if n == 0 {
                break;
            }
            at_b.extend_from_slice(&buf[..n]);
        }
        s.a.state() == State::Closed && s.b.state() == State::Closed
    });
    assert!(done, "{:?} {:?}", sim.a.state(), sim.b.state());
    assert_eq!(at_a, b"from b");
    assert_eq!(at_b, b"from a");
    assert_eq!(sim.a.close_reason(), Some(CloseReason::Graceful));
    assert_eq!(sim.b.close_reason(), Some(CloseReason::Graceful));
    // Both FINs were bare; each answered once; no FIN-ACK was answered.
    for dir in [Dir::AtoB, Dir::BtoA] {
        assert_eq!(sim.count(dir, |s| s.header.flags == Flags::FIN), 1);
        assert!(sim.count(dir, |s| s.header.flags == Flags::FIN | Flags::ACK) <= 1);
    }
}

#[test]
fn sequence_numbers_wrap_around() {
    let link = Link {
        loss: 0.03,
        reorder: 0.05,
        ..Link::perfect()
    };
    let mut sim = Sim::new(
        5,
        link,
        Config::default(),
        Config::default(),
        u32::MAX - 20_000,
        u32::MAX - 3,
    );
    let payload = data(2 << 20, 9);
    let got = sim.transfer(&payload, Duration::from_secs(300));
    assert_eq!(digest(&got), digest(&payload));
    let wrapped = sim
        .trace
        .iter()
        .any(|s| s.dir == Dir::AtoB && s.header.seq < 1_000_000 && !s.payload.is_empty());
    assert!(wrapped, "the transfer crossed 2^32");
}

#[test]
fn segments_never_exceed_the_mss() {
    let mut sim = Sim::simple(6, Link::lossy(0.02));
    let payload = data(300_000, 3);
    let got = sim.transfer(&payload, Duration::from_secs(60));
    assert_eq!(digest(&got), digest(&payload));
    let sizes: Vec<usize> = sim
        .trace
        .iter()
        .filter(|s| s.dir == Dir::AtoB)
        .map(|s| s.payload.len())
        .collect();
    assert!(sizes.iter().all(|&n| n <= crate::transport::MSS));
    assert!(
        sizes
            .iter()
            .filter(|&&n| n == crate::transport::MSS)
            .count()
            >= 70
    );
}

#[test]
fn full_send_buffer_pushes_back_then_reports_writable() {
    let config = Config {
        send_buffer: 64 * 1024,
        ..Config::default()
    };
    let mut sim = Sim::new(7, Link::perfect(), config, Config::default(), 1, 2);
    let chunk = data(100_000, 4);
    assert_eq!(sim.a.write(&chunk), Ok(64 * 1024));
    assert_eq!(
        sim.a.write(&chunk),
        Err(crate::transport::WriteError::WouldBlock)
    );
    let writable = sim.run_until(Duration::from_secs(5), |s| {
        std::iter::from_fn(|| s.a.poll_event()).any(|e| e == Event::Writable)
    });
    assert!(writable);
    assert!(sim.a.send_capacity() > 0);
    assert!(sim.a.write(&chunk).unwrap() > 0);
    // After close, writes are refused.
    let now = sim.now;
    sim.a.close(now);
    assert_eq!(sim.a.write(b"x"), Err(crate::transport::WriteError::Closed));
}

/// Same seed, same run: every packet, its content and its (relative) time replay exactly.
#[test]
fn runs_replay_from_the_seed() {
    let link = Link {
        loss: 0.05,
        duplicate: 0.02,
        reorder: 0.1,
        ..Link::perfect()
    };
    let run = || {
        let mut sim = Sim::simple(8, link);
        let payload = data(200_000, 5);
        sim.transfer(&payload, Duration::from_secs(60));
        let start = sim.start;
        sim.trace
            .iter()
            .map(|s| (s.dir, s.at - start, s.header, s.payload.clone()))
            .collect::<Vec<_>>()
    };
    let first = run();
    assert!(first.len() > 50);
    assert_eq!(first, run());
}

/// Q1: once the RTT is known, a window is spread over the round trip, not sent in one burst.
#[test]
fn pacing_spreads_the_window() {
    let bursts = |pacing: bool| {
        let config = Config {
            pacing,
            ..Config::default()
        };
        let link = Link {
            delay: Duration::from_millis(50),
            ..Link::perfect()
        };
        let mut sim = Sim::new(9, link, config, Config::default(), 1, 2);
        let payload = data(1 << 20, 6);
        let got = sim.transfer(&payload, Duration::from_secs(60));
        assert_eq!(digest(&got), digest(&payload));
        // Largest number of data segments A put on the link at one instant.
        let mut largest = 0;
        let mut run = 0;
        let mut at = None;
        for s in sim
            .trace
            .iter()
            .filter(|s| s.dir == Dir::AtoB && !s.payload.is_empty())
        {
            run = if Some(s.at) == at { run + 1 } else { 1 };
            at = Some(s.at);
            largest = largest.max(run);
        }
        largest
    };
    let paced = bursts(true);
    let unpaced = bursts(false);
    assert!(paced <= 10, "paced bursts of {paced}");
    assert!(unpaced > 50, "unpaced bursts of {unpaced}");
}
