//! One test per reference quirk fixed (`spec/transport.md` §16); each fails on the quirky
//! behaviour it names.

use super::harness::*;
use crate::transport::{CloseReason, Config, Event, ReadError, State};
use crate::wire::Flags;
use std::time::Duration;

fn read_all(conn: &mut crate::transport::Connection) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(ReadError::WouldBlock) => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

/// Q6: a FIN-ACK is never answered, in any state, and TIME_WAIT is not refreshed by it.
#[test]
fn fin_ack_is_never_answered_and_time_wait_still_ends() {
    let mut sim = Sim::established(20);
    // A Go peer stuck in its loop keeps sending FIN-ACKs at B.
    let seq = sim.a.send_next();
    let fin_ack = sim.craft(
        Dir::AtoB,
        Flags::FIN | Flags::ACK,
        seq,
        sim.b.send_next() + 1,
        0,
        &[],
    );
    sim.inject(Dir::AtoB, &fin_ack);
    let out = sim.drain(Dir::BtoA);
    assert!(
        out.iter().all(|p| !p.header.flags.contains(Flags::FIN)),
        "{out:?}"
    );
    assert_eq!(sim.b.state(), State::TimeWait);
    // Ten more over the next nine seconds change nothing; TIME_WAIT ends on time.
    sim.cut = true;
    for _ in 0..10 {
        sim.now += Duration::from_millis(900);
        sim.inject(Dir::AtoB, &fin_ack);
        sim.b.handle_timeout(sim.now);
        assert!(sim.drain(Dir::BtoA).is_empty());
    }
    sim.now += Duration::from_secs(2);
    sim.b.handle_timeout(sim.now);
    assert_eq!(sim.b.state(), State::Closed);
}

/// Q10: a FIN is accepted only at the expected sequence number; an early FIN waits for the
/// missing data instead of discarding it.
#[test]
fn fin_waits_for_missing_data() {
    let mut sim = Sim::established(21);
    let payload = data(50_000, 3);
    sim.a.write(&payload).unwrap();
    sim.a.close(sim.now);
    // Lose the second data segment once: the FIN will overtake the retransmission.
    let mut dropped = false;
    sim.filter = Some(Box::new(move |dir, h, p| {
        if dir == Dir::AtoB && !p.is_empty() && !dropped && h.seq == 1001 + 4096 {
            dropped = true;
            return false;
        }
        true
    }));
    let mut got = Vec::new();
    let done = sim.run_until(Duration::from_secs(30), |s| {
        got.extend(read_all(&mut s.b).unwrap());
        s.b.state() == State::TimeWait
    });
    assert!(done);
    assert_eq!(digest(&got), digest(&payload));
}

/// Q10: a FIN with a sequence number behind what was received is not an end of stream.
#[test]
fn fin_with_wrong_sequence_is_ignored() {
    let mut sim = Sim::established(22);
    sim.a.write(b"0123456789").unwrap();
    sim.settle(Duration::from_millis(100));
    let stale = sim.craft(Dir::AtoB, Flags::FIN, 1001, 0, 0, &[]);
    sim.inject(Dir::AtoB, &stale);
    assert_eq!(sim.b.state(), State::Established);
    assert!(sim
        .drain(Dir::BtoA)
        .iter()
        .all(|p| !p.header.flags.contains(Flags::FIN)));
    assert_eq!(read_all(&mut sim.b).unwrap(), b"0123456789");
}

/// Q12: an RST must carry a sequence number in the receive window; a guessed one is ignored.
#[test]
fn rst_with_wrong_sequence_is_ignored() {
    let mut sim = Sim::established(23);
    let expected = sim.b.recv_next();
    let beyond_window = expected.wrapping_add((1 << 20) + 1);
    for wrong in [
        beyond_window,
        expected.wrapping_sub(1),
        expected.wrapping_add(1 << 31),
    ] {
        let rst = sim.craft(Dir::AtoB, Flags::RST, wrong, 1, 0, &[]);
        sim.inject(Dir::AtoB, &rst);
        assert_eq!(sim.b.state(), State::Established);
    }
    let rst = sim.craft(
        Dir::AtoB,
        Flags::RST,
        expected.wrapping_add(4096),
        0,
        0,
        &[],
    );
    sim.inject(Dir::AtoB, &rst);
    assert_eq!(sim.b.state(), State::Closed);
    assert_eq!(sim.b.close_reason(), Some(CloseReason::Reset));
    assert_eq!(
        read_all(&mut sim.b),
        Err(ReadError::Closed(CloseReason::Reset))
    );
}

/// The reference's own RST (seq 0, ack 0) is heard by default and refused when configured.
#[test]
fn reference_rst_form_is_configurable() {
    let mut sim = Sim::established(24);
    let rst = sim.craft(Dir::AtoB, Flags::RST, 0, 0, 0, &[]);
    sim.inject(Dir::AtoB, &rst);
    assert_eq!(sim.b.close_reason(), Some(CloseReason::Reset));

    let strict = Config {
        accept_unvalidated_rst: false,
        ..Config::default()
    };
    let mut sim = Sim::new(24, Link::perfect(), Config::default(), strict, 9, 10);
    sim.run_until(Duration::from_secs(5), |s| {
        s.b.stats().packets_received >= 1
    });
    let rst = sim.craft(Dir::AtoB, Flags::RST, 0, 0, 0, &[]);
    sim.inject(Dir::AtoB, &rst);
    assert_eq!(sim.b.state(), State::Established);
}

/// An abort with data in flight still resets the peer: the RST's SendSeq is in its window.
#[test]
fn abort_with_data_in_flight_resets_the_peer() {
    let mut sim = Sim::established(40);
    sim.a.write(&data(100_000, 1)).unwrap();
    sim.pump();
    sim.a.abort(sim.now);
    assert!(sim.run_until(Duration::from_secs(5), |s| s.b.state() == State::Closed));
    assert_eq!(sim.b.close_reason(), Some(CloseReason::Reset));
    assert_eq!(sim.a.close_reason(), Some(CloseReason::Aborted));
}

/// Q12: an ACK for data never sent is ignored instead of emptying the retransmission queue.
#[test]
fn ack_beyond_sent_data_is_ignored() {
    let mut sim = Sim::established(25);
    let payload = data(20_000, 5);
    sim.a.write(&payload).unwrap();
    let out = sim.drain(Dir::AtoB);
    assert!(!out.is_empty());
    let bogus = sim.craft(
        Dir::BtoA,
        Flags::ACK,
        sim.b.send_next(),
        sim.a.send_next() + 100_000,
        512,
        &[],
    );
    sim.inject(Dir::BtoA, &bogus);
    assert_eq!(sim.a.unacknowledged(), 20_000);
    // Those segments never arrived (drained above); the transfer still completes.
    let mut got = Vec::new();
    sim.run_until(Duration::from_secs(30), |s| {
        got.extend(read_all(&mut s.b).unwrap());
        got.len() == payload.len()
    });
    assert_eq!(digest(&got), digest(&payload));
}

/// Q8: a receiver that does not read stops the sender: its window never reads as 0 (a Go
/// sender would take 0 as "no limit"), data beyond the buffer is refused, nothing else stalls,
/// and once it reads again everything arrives.
#[test]
fn zero_window_stall_stops_the_sender_and_recovers() {
    let config = Config {
        recv_buffer: 64 * 1024,
        ..Config::default()
    };
    let mut sim = Sim::new(26, Link::perfect(), Config::default(), config, 1, 2);
    let payload = data(1 << 20, 6);
    let mut written = 0;
    // B does not read for two minutes.
    sim.run_until(Duration::from_secs(120), |s| {
        if written < payload.len() {
            written += s.a.write(&payload[written..]).unwrap_or(0);
        }
        false
    });
    assert_eq!(sim.b.readable(), 64 * 1024);
    assert!(sim.a.unacknowledged() > 64 * 1024);
    assert_eq!(
        sim.a.state(),
        State::Established,
        "a stalled reader is not a dead peer"
    );
    let from_b: Vec<_> = sim.trace.iter().filter(|s| s.dir == Dir::BtoA).collect();
    assert!(from_b.iter().all(|s| s.header.window >= 1));
    // While stalled, A sends little: no more than a probe or so per backed-off interval.
    let late = sim
        .trace
        .iter()
        .filter(|s| s.dir == Dir::AtoB && !s.payload.is_empty())
        .count();
    assert!(
        late < 64 * 1024 / 4096 + 60,
        "sent {late} segments into a full window"
    );
    // B reads again: the rest follows.
    let mut got = Vec::new();
    let done = sim.run_until(Duration::from_secs(600), |s| {
        if written < payload.len() {
            written += s.a.write(&payload[written..]).unwrap_or(0);
        }
        got.extend(read_all(&mut s.b).unwrap());
        got.len() == payload.len()
    });
    assert!(done, "got {} of {}", got.len(), payload.len());
    assert_eq!(digest(&got), digest(&payload));
}

/// Q8/Q15: a window of 0 on an ACK that advances means stop (then probe); a bare ACK with window
/// 0 that acknowledges nothing (a Go keepalive) leaves the window alone.
#[test]
fn peer_window_zero_means_stop_then_probe() {
    let mut sim = Sim::established(27);
    sim.a.write(&data(4096, 1)).unwrap();
    let out = sim.drain(Dir::AtoB);
    assert_eq!(out.len(), 1);
    let end = out[0].header.seq + 4096;
    // A Go receiver whose queue is full acknowledges with window 0.
    let full = sim.craft(Dir::BtoA, Flags::ACK, sim.b.send_next(), end, 0, &[]);
    sim.inject(Dir::BtoA, &full);
    sim.a.write(&data(50_000, 2)).unwrap();
    assert!(
        sim.drain(Dir::AtoB).is_empty(),
        "window 0 must stop new data"
    );
    // After the persist interval: a one-byte probe.
    let probe_at = sim.a.poll_timeout().unwrap();
    assert_eq!(probe_at - sim.now, Duration::from_millis(500));
    sim.now = probe_at;
    sim.a.handle_timeout(sim.now);
    let probe = sim.drain(Dir::AtoB);
    assert_eq!(probe.len(), 1);
    assert_eq!((probe[0].header.seq, probe[0].payload.len()), (end, 1));
    // The receiver took it and has room again.
    let open = sim.craft(Dir::BtoA, Flags::ACK, sim.b.send_next(), end + 1, 100, &[]);
    sim.inject(Dir::BtoA, &open);
    assert!(sim.drain(Dir::AtoB).len() > 1);

    // A keepalive-shaped bare ACK with window 0 does not shut the window.
    let mut sim = Sim::established(28);
    let keepalive = sim.craft(
        Dir::BtoA,
        Flags::ACK,
        sim.b.send_next(),
        sim.a.send_next(),
        0,
        &[],
    );
    sim.inject(Dir::BtoA, &keepalive);
    sim.a.write(&data(10_000, 3)).unwrap();
    assert!(!sim.drain(Dir::AtoB).is_empty());
}

/// Q8: a reordered older packet does not overwrite the window set by a newer one.
#[test]
fn stale_window_from_reordered_packet_is_ignored() {
    let mut sim = Sim::established(41);
    sim.a.write(&data(4096, 1)).unwrap();
    let out = sim.drain(Dir::AtoB);
    let end = out[0].header.seq + 4096;
    let b_seq = sim.b.send_next();
    // Newer packet (B's SendSeq moved on since): window 0, acknowledging the segment: stop.
    let newer = sim.craft(Dir::BtoA, Flags::ACK, b_seq + 10, end, 0, b"");
    // The older one, overtaken on the way, still carried a large window.
    let older = sim.craft(Dir::BtoA, Flags::ACK, b_seq, end, 200, b"");
    sim.inject(Dir::BtoA, &newer);
    sim.inject(Dir::BtoA, &older);
    sim.a.write(&data(10_000, 2)).unwrap();
    assert!(sim.drain(Dir::AtoB).is_empty());
}

/// Q19: Go keepalives (bare ACK, window 0) are not duplicate ACKs, so three of them do not
/// trigger a retransmission or shrink the window.
#[test]
fn go_keepalives_are_not_duplicate_acks() {
    let mut sim = Sim::established(42);
    sim.a.write(&data(8192, 1)).unwrap();
    assert_eq!(sim.drain(Dir::AtoB).len(), 2);
    let cwnd = sim.a.stats().cwnd;
    for _ in 0..5 {
        let ka = sim.craft(
            Dir::BtoA,
            Flags::ACK,
            sim.b.send_next(),
            sim.a.send_next() - 8192,
            0,
            &[],
        );
        sim.inject(Dir::BtoA, &ka);
    }
    assert!(sim.drain(Dir::AtoB).is_empty());
    let s = sim.a.stats();
    assert_eq!((s.dup_acks, s.fast_retransmits, s.cwnd), (0, 0, cwnd));
}

fn drop_once(seqs: Vec<u32>) -> impl FnMut(Dir, &crate::wire::Header, &[u8]) -> bool {
    let mut pending = seqs;
    move |dir, h, p| {
        if dir == Dir::AtoB && !p.is_empty() {
            if let Some(i) = pending.iter().position(|&s| s == h.seq) {
                pending.remove(i);
                return false;
            }
        }
        true
    }
}

/// Q2: duplicate ACKs that carry SACK lists count towards fast retransmit.
#[test]
fn sack_duplicate_acks_trigger_fast_retransmit() {
    let mut sim = Sim::established(29);
    sim.a.write(&data(6 * 4096, 4)).unwrap();
    let sent = sim.drain(Dir::AtoB);
    assert_eq!(sent.len(), 6);
    let una = sent[0].header.seq;
    // Three duplicate ACKs, each with the same one-segment SACK block: too little SACKed data
    // to call the head lost by SACK alone, so only duplicate-ACK counting can trigger.
    let mut sack = Vec::new();
    let mut list = crate::wire::SackList::new();
    list.push(crate::wire::SackBlock {
        left: una.wrapping_add(4096),
        right: una.wrapping_add(8192),
    });
    list.encode(&mut sack);
    for i in 0..3 {
        let dup = sim.craft(Dir::BtoA, Flags::ACK, sim.b.send_next(), una, 256, &sack);
        sim.inject(Dir::BtoA, &dup);
        let out = sim.drain(Dir::AtoB);
        if i < 2 {
            assert!(out.is_empty());
        } else {
            assert_eq!(out.len(), 1, "the third duplicate resends the head");
            assert_eq!(out[0].header.seq, una);
        }
    }
    assert_eq!(sim.a.stats().fast_retransmits, 1);
    assert_eq!(sim.a.stats().timeouts, 0);
}

/// Q2/Q3 end to end: a lost segment is repaired from SACK information without a timeout.
#[test]
fn lost_segment_is_repaired_without_timeout() {
    let mut sim = Sim::established(39);
    let first = sim.a.send_next();
    sim.filter = Some(Box::new(drop_once(vec![first.wrapping_add(4096)])));
    let payload = data(200_000, 4);
    let got = sim.transfer(&payload, Duration::from_secs(30));
    assert_eq!(digest(&got), digest(&payload));
    let s = sim.a.stats();
    assert_eq!(
        (s.timeouts, s.fast_retransmits, s.retransmits),
        (0, 1, 1),
        "{s:?}"
    );
}

/// Q3: every hole a SACK reports is resent at once, not one per 100 ms tick.
#[test]
fn every_sack_hole_is_repaired_promptly() {
    let mut sim = Sim::established(30);
    let first = sim.a.send_next();
    // Segments 1, 3 and 5 of the initial window of 10 are lost.
    let holes: Vec<u32> = [1, 3, 5]
        .iter()
        .map(|i| first.wrapping_add(4096 * i))
        .collect();
    sim.filter = Some(Box::new(drop_once(holes.clone())));
    let start = sim.now;
    let payload = data(10 * 4096, 5);
    let got = sim.transfer(&payload, Duration::from_secs(30));
    assert_eq!(digest(&got), digest(&payload));
    assert_eq!(sim.a.stats().timeouts, 0);
    let resend_times: Vec<Duration> = holes
        .iter()
        .map(|&hole| {
            let sends: Vec<_> = sim
                .trace
                .iter()
                .filter(|p| p.dir == Dir::AtoB && p.header.seq == hole && !p.payload.is_empty())
                .collect();
            assert_eq!(sends.len(), 2, "hole {hole}");
            sends[1].at - start
        })
        .collect();
    // All three went out together, one round trip (20 ms) after the window was sent.
    assert!(
        resend_times.iter().all(|&t| t == Duration::from_millis(20)),
        "{resend_times:?}"
    );
}

/// Q10: data still unacknowledged at close is retransmitted until acknowledged, then FIN.
#[test]
fn data_in_flight_at_close_is_retransmitted() {
    let mut sim = Sim::established(31);
    let first = sim.a.send_next();
    let payload = data(3 * 4096 + 100, 6);
    // The last segment is lost twice.
    let last = first.wrapping_add(3 * 4096);
    sim.filter = Some(Box::new(drop_once(vec![last, last])));
    let got = sim.transfer(&payload, Duration::from_secs(30));
    assert_eq!(digest(&got), digest(&payload));
    // The FIN went out only after the data was acknowledged.
    let fin_index = sim
        .trace
        .iter()
        .position(|p| p.header.flags == Flags::FIN)
        .unwrap();
    let last_data = sim
        .trace
        .iter()
        .rposition(|p| p.dir == Dir::AtoB && !p.payload.is_empty())
        .unwrap();
    assert!(fin_index > last_data);
}

/// Q11: a SYN that matches an established connection with the old ISN is a new connection
/// (restarted Go peer re-dialing with ISN 0), not a retransmission to be answered with stale
/// numbers.
#[test]
fn stale_syn_does_not_resurrect() {
    let mut sim = Sim::new(
        32,
        Link::perfect(),
        Config::default(),
        Config::default(),
        0,
        0,
    );
    // Before the handshake is confirmed, the same SYN is a retransmission.
    let syn = sim.craft(Dir::AtoB, Flags::SYN, 0, 0, 512, &[]);
    assert!(sim.b.is_syn_retransmission(0));
    sim.inject(Dir::AtoB, &syn);
    let out = sim.drain(Dir::BtoA);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].header.flags, Flags::SYN | Flags::ACK);
    sim.run_until(Duration::from_secs(5), |s| {
        s.b.stats().packets_received >= 2
    });
    sim.a.write(b"data").unwrap();
    sim.settle(Duration::from_millis(100));
    // Now the same SYN again is not a retransmission and gets no SYN-ACK from the connection.
    assert!(!sim.b.is_syn_retransmission(0));
    sim.inject(Dir::AtoB, &syn);
    assert!(sim.drain(Dir::BtoA).is_empty());
}

/// Q9: data that would parse as a SACK list still arrives, because the sender splits it.
#[test]
fn data_that_looks_like_sack_is_delivered() {
    let mut sim = Sim::established(33);
    let mut payload = b"SACK\x02".to_vec();
    payload.extend_from_slice(&data(100, 7));
    let got = sim.transfer(&payload, Duration::from_secs(10));
    assert_eq!(got, payload);
    assert!(sim
        .trace
        .iter()
        .filter(|p| p.dir == Dir::AtoB)
        .all(|p| !crate::wire::sack::looks_like_sack(&p.payload)));
}

/// Q5: small writes coalesce under Nagle; with no-delay each goes out at once.
#[test]
fn nagle_coalesces_small_writes_and_nodelay_does_not() {
    for nodelay in [false, true] {
        let config = Config {
            nodelay,
            ..Config::default()
        };
        let mut sim = Sim::new(34, Link::perfect(), config, Config::default(), 5, 6);
        sim.run_until(Duration::from_secs(5), |s| {
            s.b.stats().packets_received >= 1
        });
        sim.trace.clear();
        for _ in 0..100 {
            sim.a.write(&[1u8; 100]).unwrap();
            sim.pump();
        }
        sim.settle(Duration::from_secs(1));
        assert_eq!(read_all(&mut sim.b).unwrap().len(), 10_000);
        let segments = sim.count(Dir::AtoB, |p| !p.payload.is_empty());
        if nodelay {
            assert_eq!(segments, 100);
        } else {
            assert!(segments <= 5, "{segments} segments");
        }
    }
}

/// Delayed ACK: every second full segment is acknowledged at once; a lone one after 40 ms.
#[test]
fn delayed_ack_rules() {
    let mut sim = Sim::established(35);
    sim.a.write(&data(4096, 8)).unwrap();
    for p in sim.drain(Dir::AtoB) {
        sim.forward(&p);
    }
    assert!(sim.drain(Dir::BtoA).is_empty());
    assert_eq!(
        sim.b.poll_timeout(),
        Some(sim.now + Duration::from_millis(40))
    );
    sim.a.write(&data(4096, 9)).unwrap();
    for p in sim.drain(Dir::AtoB) {
        sim.forward(&p);
    }
    let acks = sim.drain(Dir::BtoA);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].header.ack, sim.a.send_next());
}

/// A batch of segments handled before the next transmit still gets an ACK per two segments
/// (no stretch ACK), so the sender's slow start keeps its pace.
#[test]
fn batched_segments_get_an_ack_per_two() {
    let mut sim = Sim::established(43);
    // More than the initial window, so the sender is not application-limited.
    sim.a.write(&data(40 * 4096, 1)).unwrap();
    let segments = sim.drain(Dir::AtoB);
    assert_eq!(segments.len(), 10);
    for p in &segments {
        sim.forward(p);
    }
    let acks: Vec<u32> = sim.drain(Dir::BtoA).iter().map(|p| p.header.ack).collect();
    let first = segments[0].header.seq;
    let expected: Vec<u32> = (1..=5).map(|i| first.wrapping_add(2 * 4096 * i)).collect();
    assert_eq!(acks, expected);
    // The sender's window grows per ACK: by 2 MSS for each of the five.
    let before = sim.a.stats().cwnd;
    for ack in acks {
        let bytes = sim.craft(Dir::BtoA, Flags::ACK, sim.b.send_next(), ack, 256, &[]);
        sim.inject(Dir::BtoA, &bytes);
        sim.drain(Dir::AtoB);
    }
    assert_eq!(sim.a.stats().cwnd, before + 10 * 4096);
}

/// Keepalive: an idle connection to a live peer stays up (the probe is answered); the idle
/// timeout closes it only when the peer is silent.
#[test]
fn keepalive_keeps_a_live_idle_connection() {
    let mut sim = Sim::established(36);
    sim.run_until(Duration::from_secs(600), |_| false);
    assert_eq!(sim.a.state(), State::Established);
    assert_eq!(sim.b.state(), State::Established);
    assert!(sim.a.stats().keepalives + sim.b.stats().keepalives >= 10);
    // Idle connections give their buffers back.
    assert!(sim.a.memory_usage() < 16 * 1024, "{}", sim.a.memory_usage());
}

/// Garbage on the tuple (ACKs for data never sent) does not keep a dead connection alive.
#[test]
fn garbage_does_not_postpone_the_idle_timeout() {
    let mut sim = Sim::established(44);
    sim.cut = true;
    let bogus = sim.craft(
        Dir::AtoB,
        Flags::ACK,
        7,
        sim.b.send_next().wrapping_add(1 << 30),
        512,
        &[],
    );
    let start = sim.now;
    while sim.b.state() != State::Closed && sim.now - start < Duration::from_secs(300) {
        sim.now += Duration::from_secs(5);
        sim.inject(Dir::AtoB, &bogus);
        sim.b.handle_timeout(sim.now);
        sim.drain(Dir::BtoA);
    }
    assert_eq!(sim.b.close_reason(), Some(CloseReason::IdleTimeout));
    assert!(sim.now - start <= Duration::from_secs(125));
}

/// A duplicate SYN-ACK (our handshake ACK was lost) is answered with a pure ACK.
#[test]
fn duplicate_syn_ack_is_answered_with_ack() {
    let mut sim = Sim::established(37);
    let syn_ack = sim.craft(Dir::BtoA, Flags::SYN | Flags::ACK, 5000, 1001, 512, &[]);
    sim.inject(Dir::BtoA, &syn_ack);
    let out = sim.drain(Dir::AtoB);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].header.flags, Flags::ACK);
    assert_eq!(out[0].header.ack, 5001);
}

/// A dial to a silent peer fails after 7 SYNs at 0, 1, 3, 7, 15, 23, 31 s, then 39 s (T-8).
#[test]
fn dial_timeout_follows_the_reference_schedule() {
    let mut sim = Sim::simple(38, Link::perfect());
    sim.cut = true;
    let start = sim.now;
    sim.run_until(Duration::from_secs(100), |s| s.a.state() == State::Closed);
    // The first SYN (at 0) went out when the pair was built; the trace has the resends.
    let syn_times: Vec<u64> = sim
        .trace
        .iter()
        .filter(|p| p.header.flags == Flags::SYN)
        .map(|p| (p.at - start).as_secs())
        .collect();
    assert_eq!(syn_times, vec![1, 3, 7, 15, 23, 31]);
    assert_eq!(sim.a.stats().syn_retransmits, 6);
    assert_eq!((sim.now - start).as_secs(), 39);
    assert_eq!(sim.a.close_reason(), Some(CloseReason::DialTimeout));
    assert!(Sim::events(&mut sim.a).contains(&Event::Closed(CloseReason::DialTimeout)));
}
