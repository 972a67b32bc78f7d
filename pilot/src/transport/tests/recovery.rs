//! Loss detection and recovery under latency: tail loss probes, RACK's time rule, one window
//! reduction per episode, and timeouts seeded from a known round-trip time. Each test fails on
//! the transport before these rules (tail and re-lost segments waited for the RTO; the dial
//! waited a flat second for a lost SYN).

use super::harness::{data, digest, Dir, Link, Sim};
use crate::net::seeded_rng;
use crate::transport::link_model::{LinkConfig, LinkModel, Loss};
use crate::transport::{Config, Connection, Endpoint, EndpointConfig, Event, ReadError};
use crate::wire::{Addr, Flags, Header, Packet, SocketAddr};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const MSS: usize = 4096;

/// A pair whose handshake is done on a 20 ms round trip (10 ms each way).
fn pair(seed: u64) -> Sim {
    let mut sim = Sim::simple(seed, Link::perfect());
    assert!(
        sim.run_until(Duration::from_secs(1), |s| s.b.stats().packets_received
            >= 1)
    );
    sim.trace.clear();
    sim
}

/// Drops the first `times` transmissions of the data segments starting at the given offsets
/// (in segments from `base`) going A→B.
fn drop_segments(sim: &mut Sim, base: u32, segments: &[u32], times: u32) {
    let mut seen: BTreeMap<u32, u32> = BTreeMap::new();
    let targets: Vec<u32> = segments
        .iter()
        .map(|i| base.wrapping_add(i * MSS as u32))
        .collect();
    sim.filter = Some(Box::new(move |dir, h: &Header, payload: &[u8]| {
        if dir != Dir::AtoB || payload.is_empty() || !targets.contains(&h.seq) {
            return true;
        }
        let n = seen.entry(h.seq).or_insert(0);
        *n += 1;
        *n > times
    }));
}

/// Writes `payload` on A and runs until B has read it all; returns what B read.
fn deliver(sim: &mut Sim, payload: &[u8], limit: Duration) -> Vec<u8> {
    let mut written = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    sim.run_until(limit, |s| {
        while written < payload.len() {
            match s.a.write(&payload[written..]) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        loop {
            match s.b.read(&mut buf) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        got.len() == payload.len()
    });
    got
}

#[test]
fn tail_loss_is_repaired_by_a_probe_not_an_rto() {
    let mut sim = pair(1);
    let base = sim.a.send_next();
    // The last two segments of a ten-segment write are lost: nothing after them can reveal
    // the hole, so only a probe or the RTO can.
    drop_segments(&mut sim, base, &[8, 9], 1);
    let payload = data(10 * MSS, 1);
    let start = sim.now;
    let got = deliver(&mut sim, &payload, Duration::from_secs(5));
    assert_eq!(digest(&got), digest(&payload));
    let s = sim.a.stats();
    assert_eq!(s.timeouts, 0, "{s:?}");
    assert!(s.tail_probes >= 1, "{s:?}");
    // Probe after about 2 SRTT (40 ms) plus the repair's round trips, well before the 200 ms
    // RTO floor.
    let took = sim.now - start;
    assert!(took < Duration::from_millis(150), "{took:?}");
}

#[test]
fn a_lost_tail_probe_is_probed_again_before_the_rto() {
    let mut sim = pair(3);
    let base = sim.a.send_next();
    // The last segment of the write is lost, and so is the probe that resends it: a second
    // probe, a doubled probe time later, repairs it. Before, the RTO (200 ms floor) did.
    drop_segments(&mut sim, base, &[9], 2);
    let payload = data(10 * MSS, 3);
    let start = sim.now;
    let got = deliver(&mut sim, &payload, Duration::from_secs(5));
    assert_eq!(digest(&got), digest(&payload));
    let s = sim.a.stats();
    assert_eq!(s.timeouts, 0, "{s:?}");
    assert_eq!(s.tail_probes, 2, "{s:?}");
    // Probes after 80 ms (2 SRTT + the delayed-ACK time: one segment out) and 160 ms later;
    // the RTO would have come 200 ms after the first and cut the window to one segment.
    let took = sim.now - start;
    assert!(took < Duration::from_millis(280), "{took:?}");
}

#[test]
fn a_lost_tail_probe_of_new_data_is_probed_again_before_the_rto() {
    let mut sim = pair(3);
    let base = sim.a.send_next();
    // The whole first flight (the initial window of ten segments) is lost, and so is the
    // probe, which carries new data (segment 10) because more is queued and the peer's window
    // has room. Sending that probe re-armed the probe timer, which cleared the second probe,
    // and only the RTO (200 ms floor, window one segment) repaired the flight.
    let flight: Vec<u32> = (0..=10).collect();
    drop_segments(&mut sim, base, &flight, 1);
    let payload = data(40 * MSS, 5);
    let got = deliver(&mut sim, &payload, Duration::from_secs(5));
    assert_eq!(digest(&got), digest(&payload));
    let s = sim.a.stats();
    assert_eq!(s.timeouts, 0, "{s:?}");
    assert!(s.tail_probes >= 2, "{s:?}");
}

#[test]
fn lost_retransmission_is_repaired_without_rto_and_one_reduction() {
    let mut sim = pair(2);
    let base = sim.a.send_next();
    // Segment 30 is lost, and so is its first retransmission. A later delivery shows the
    // retransmission overdue (RACK); before, only the RTO could resend it again.
    drop_segments(&mut sim, base, &[30], 2);
    let payload = data(400 * MSS, 2);
    let got = deliver(&mut sim, &payload, Duration::from_secs(20));
    assert_eq!(digest(&got), digest(&payload));
    let s = sim.a.stats();
    assert_eq!(s.timeouts, 0, "{s:?}");
    assert!(s.rack_losses >= 1, "{s:?}");
    // No RTO: the window was not collapsed to one segment. (Since lost retransmissions are
    // judged as a possible new congestion event, the transfer counts a second episode here;
    // on this queue-free path neither cuts the window below what it delivered.)
    assert!(s.fast_retransmits <= 2, "{s:?}");
    assert!(s.cwnd > 10 * MSS as u64, "{s:?}");
}

#[test]
fn rack_marks_a_hole_lost_by_time_when_too_little_is_sacked_above_it() {
    let mut sim = pair(3);
    let base = sim.a.send_next();
    // Three segments after the hole are all that follow: below the 3-MSS SACK and the
    // three-duplicate-ACK thresholds, so only time can declare it lost.
    drop_segments(&mut sim, base, &[0], 1);
    let payload = data(3 * MSS, 3);
    let got = deliver(&mut sim, &payload, Duration::from_secs(5));
    assert_eq!(digest(&got), digest(&payload));
    let s = sim.a.stats();
    assert_eq!(s.timeouts, 0, "{s:?}");
    assert!(s.rack_losses + s.tail_probes >= 1, "{s:?}");
}

// ---- the dial, with endpoints -----------------------------------------------------------------

const A: Addr = Addr::new(0, 10);
const B: Addr = Addr::new(0, 20);

/// Decides, per packet (towards B?, header), whether the network drops it.
type DropRule = Box<dyn FnMut(bool, &Header) -> bool>;

/// Two endpoints, `one_way` apart, with a drop rule.
struct Net {
    now: Instant,
    a: Endpoint,
    b: Endpoint,
    one_way: Duration,
    queue: Vec<(Instant, bool, Vec<u8>)>,
    drop: DropRule,
    /// (time, towards B, header) of every packet sent.
    sent: Vec<(Instant, bool, Header)>,
}

impl Net {
    fn new(one_way: Duration, drop: impl FnMut(bool, &Header) -> bool + 'static) -> Net {
        let mut b = Endpoint::new(EndpointConfig::new(B), seeded_rng(2));
        b.listen(80).unwrap();
        Net {
            now: Instant::now(),
            a: Endpoint::new(EndpointConfig::new(A), seeded_rng(1)),
            b,
            one_way,
            queue: Vec::new(),
            drop: Box::new(drop),
            sent: Vec::new(),
        }
    }

    fn step(&mut self) -> bool {
        let mut buf = Vec::new();
        for to_b in [true, false] {
            loop {
                buf.clear();
                let ep = if to_b { &mut self.a } else { &mut self.b };
                if ep.poll_transmit(self.now, &mut buf).is_none() {
                    break;
                }
                let h = Packet::decode(&buf).unwrap().header;
                self.sent.push((self.now, to_b, h));
                if !(self.drop)(to_b, &h) {
                    self.queue
                        .push((self.now + self.one_way, to_b, buf.clone()));
                }
            }
        }
        let next = self
            .queue
            .iter()
            .map(|q| q.0)
            .chain(self.a.poll_timeout())
            .chain(self.b.poll_timeout())
            .min();
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        let now = self.now;
        let (due, rest): (Vec<_>, Vec<_>) = self.queue.drain(..).partition(|q| q.0 <= now);
        self.queue = rest;
        for (_, to_b, bytes) in due {
            let p = Packet::decode(&bytes).unwrap();
            let ep = if to_b { &mut self.b } else { &mut self.a };
            ep.handle_packet(now, &p);
        }
        self.a.handle_timeout(now);
        self.b.handle_timeout(now);
        true
    }

    /// Dials B:80 from A and runs until A sees `Connected`; returns the time it took.
    fn dial(&mut self, limit: Duration) -> Option<Duration> {
        let start = self.now;
        let id = self.a.connect(self.now, SocketAddr::new(B, 80)).unwrap();
        while self.now - start < limit {
            while let Some((ev_id, ev)) = self.a.poll_event(self.now) {
                if ev_id == id && ev == Event::Connected {
                    return Some(self.now - start);
                }
            }
            while self.b.poll_event(self.now).is_some() {}
            while let Ok(Some(_)) = self.b.accept(80) {}
            if !self.step() {
                break;
            }
        }
        None
    }
}

fn is_syn(h: &Header) -> bool {
    h.flags.contains(Flags::SYN) && !h.flags.contains(Flags::ACK)
}

fn is_syn_ack(h: &Header) -> bool {
    h.flags.contains(Flags::SYN) && h.flags.contains(Flags::ACK)
}

/// Drops the first packet that matches `pred`.
fn drop_first(pred: fn(&Header) -> bool) -> impl FnMut(bool, &Header) -> bool {
    let mut dropped = false;
    move |_, h| {
        let hit = !dropped && pred(h);
        dropped |= hit;
        hit
    }
}

#[test]
fn lost_syn_is_repaired_on_the_peer_rtt_not_a_flat_second() {
    let mut net = Net::new(Duration::from_millis(10), drop_first(is_syn));
    net.a.set_peer_rtt(B, Duration::from_millis(20));
    let took = net.dial(Duration::from_secs(5)).expect("connected");
    // 3 RTT is 60 ms (not floored at the data RTO's 200 ms: a SYN is answered at once);
    // before, the second SYN waited 1 s.
    let syns: Vec<_> = net.sent.iter().filter(|s| s.1 && is_syn(&s.2)).collect();
    assert_eq!(syns.len(), 2);
    assert_eq!(syns[1].0 - syns[0].0, Duration::from_millis(60));
    assert_eq!(took, Duration::from_millis(80));
}

#[test]
fn lost_syn_ack_is_repaired_on_the_rtt_learnt_from_an_earlier_connection() {
    let mut net = Net::new(Duration::from_millis(30), drop_first(is_syn_ack));
    // No hint: the first dial loses its SYN-ACK and waits the flat second.
    assert_eq!(net.a.peer_rtt(B), None);
    let first = net.dial(Duration::from_secs(5)).expect("connected");
    assert_eq!(first, Duration::from_millis(1060));
    // The dial's own sample is ambiguous (two SYNs), but the data RTT is learnt once the
    // connection closes; here the handshake of a clean second dial teaches it.
    let clean = net.dial(Duration::from_secs(5)).expect("connected");
    assert_eq!(clean, Duration::from_millis(60));
    assert_eq!(net.a.peer_rtt(B), Some(Duration::from_millis(60)));
    net.drop = Box::new(drop_first(is_syn_ack));
    let third = net.dial(Duration::from_secs(5)).expect("connected");
    // 3 × 60 ms = 180 ms, plus the round trip.
    assert_eq!(third, Duration::from_millis(240));
}

// ---- goodput over the link model ------------------------------------------------------------

/// Moves `total` bytes A→B over a modelled path; returns (simulated time, A's stats).
fn over_path(link: LinkConfig, seed: u64, total: usize) -> (Duration, crate::transport::Stats) {
    let t0 = Instant::now();
    let mut now = t0;
    let mut path = LinkModel::new(link, seed);
    let a_sock = SocketAddr::new(A, 49152);
    let b_sock = SocketAddr::new(B, 80);
    let mut a = Connection::connect(Config::default(), a_sock, b_sock, 7, now);
    let mut b: Option<Connection> = None;
    let payload = data(total, seed);
    let (mut written, mut got) = (0, Vec::with_capacity(total));
    let mut buf = Vec::new();
    let mut sink = vec![0u8; 64 * 1024];
    while got.len() < total && now - t0 < Duration::from_secs(300) {
        while written < total {
            match a.write(&payload[written..]) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        if let Some(b) = b.as_mut() {
            while let Ok(n) = b.read(&mut sink) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&sink[..n]);
            }
        }
        for (dir, conn) in [
            (crate::transport::link_model::Dir::AtoB, Some(&mut a)),
            (crate::transport::link_model::Dir::BtoA, b.as_mut()),
        ] {
            let Some(conn) = conn else { continue };
            loop {
                buf.clear();
                if conn.poll_transmit(now, &mut buf).is_none() {
                    break;
                }
                path.send(now, dir, &buf);
            }
        }
        let next = [
            path.next_delivery(),
            a.poll_timeout(),
            b.as_ref().and_then(|b| b.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        now = now.max(next);
        while let Some((dir, bytes)) = path.pop_due(now) {
            let p = Packet::decode(&bytes).unwrap();
            match dir {
                crate::transport::link_model::Dir::AtoB => match b.as_mut() {
                    Some(b) => b.handle_packet(now, &p),
                    None => {
                        b = Some(Connection::accept(
                            Config::default(),
                            b_sock,
                            &p.header,
                            9,
                            now,
                        ))
                    }
                },
                crate::transport::link_model::Dir::BtoA => a.handle_packet(now, &p),
            }
            path.recycle(bytes);
        }
        for c in [Some(&mut a), b.as_mut()].into_iter().flatten() {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
        }
        let _ = ReadError::WouldBlock;
    }
    assert_eq!(
        digest(&got),
        digest(&payload),
        "transfer incomplete or corrupt"
    );
    (now - t0, a.stats())
}

#[test]
fn random_loss_on_a_long_path_is_repaired_without_timeouts() {
    // 2 % loss on a 100 ms path with a 50 Mbit/s bottleneck: every hole is found by SACK,
    // RACK or a probe; before, re-lost and tail segments cost RTOs and collapsed the window.
    let rtt = Duration::from_millis(100);
    let mut link = LinkConfig {
        rtt,
        jitter: rtt / 10,
        loss: Loss::Random(0.02),
        rate: 50_000_000 / 8,
        queue: 0,
    };
    link.queue = link.bdp();
    let (took, s) = over_path(link, 11, 4 << 20);
    assert_eq!(s.timeouts, 0, "{s:?}");
    assert!(s.fast_retransmits > 0 && s.rack_losses > 0, "{s:?}");
    // Loss-based congestion control at 2 % loss holds about 1.22 / sqrt(0.02) ≈ 9 segments
    // per round trip (Mathis et al.): about 350 KB/s here, so 4 MiB take at least 12 s.
    // Every RTO would add a 200 ms stall and a window of one segment.
    assert!(took < Duration::from_secs(18), "{took:?} {s:?}");
}

#[test]
fn random_loss_does_not_hold_the_window_to_the_loss_rate() {
    // 2 % loss on a 20 ms path that is not congested. A window halved (or cut to 0.7) on
    // every loss settles near 1.22 / sqrt(0.02) ≈ 9 segments per round trip (Mathis et al.):
    // about 1.8 MB/s. Shrinking no further than what the path delivered keeps more.
    let rtt = Duration::from_millis(20);
    let mut link = LinkConfig {
        rtt,
        jitter: rtt / 10,
        loss: Loss::Random(0.02),
        rate: 50_000_000 / 8,
        queue: 0,
    };
    link.queue = link.bdp().max(64 << 10);
    let total = 8 << 20;
    let (took, s) = over_path(link, 12, total);
    let goodput = total as f64 / took.as_secs_f64();
    assert!(goodput > 2.2e6, "{goodput} {took:?} {s:?}");
    assert_eq!(s.timeouts, 0, "{s:?}");
}

#[test]
fn random_loss_in_slow_start_does_not_end_it() {
    // 5 % loss on a 20 ms path with room to spare (1 Gbit/s, deep queue): the first window
    // already loses a segment. Cutting the window for that, and for the loss in every window
    // after it, held a 1 MiB transfer near the initial window (about 2 MB/s: 500 ms and
    // more). The path shows no queue and the delivery rate keeps climbing, so slow start
    // goes on while the holes are repaired.
    let rtt = Duration::from_millis(20);
    let mut link = LinkConfig {
        rtt,
        jitter: Duration::ZERO,
        loss: Loss::Random(0.05),
        rate: 1_000_000_000 / 8,
        queue: 0,
    };
    link.queue = link.bdp();
    let total = 1 << 20;
    let (took, s) = over_path(link, 13, total);
    assert!(s.fast_retransmits > 0, "{s:?}");
    assert!(took < Duration::from_millis(300), "{took:?} {s:?}");
}

#[test]
fn loss_from_a_full_queue_still_cuts_the_window() {
    // A 10 Mbit/s bottleneck with a queue of one BDP and no random loss: slow start overflows
    // the queue, and the round trip has doubled by then, so the loss is congestion and the
    // window is cut (the queue drains): later round trips come back towards the minimum.
    let rtt = Duration::from_millis(20);
    let mut link = LinkConfig {
        rtt,
        jitter: Duration::ZERO,
        loss: Loss::None,
        rate: 10_000_000 / 8,
        queue: 0,
    };
    link.queue = link.bdp();
    let (_, s) = over_path(link, 14, 4 << 20);
    assert!(s.fast_retransmits > 0, "the queue overflowed: {s:?}");
    assert!(s.cwnd < 4 * link.bdp() as u64, "the window was cut: {s:?}");
}

/// A short uncongested path: 6 ms round trip, 200 Mbit/s, a queue of one BDP.
fn short_path(loss: Loss) -> LinkConfig {
    let rtt = Duration::from_millis(6);
    let mut link = LinkConfig {
        rtt,
        jitter: Duration::from_micros(500),
        loss,
        rate: 200_000_000 / 8,
        queue: 0,
    };
    link.queue = link.bdp().max(64 << 10);
    link
}

#[test]
fn random_loss_after_slow_start_does_not_cut_the_window_each_round() {
    // 5 % loss on a 6 ms path: a window of a hundred segments loses several every round, so
    // recovery episodes follow one another. Taking each as congestion cut the window and held
    // it still for the episode, round after round: a quarter of the lossless goodput and
    // less. With no queue and the window no larger than what the path delivers, the loss is
    // random: repaired, no cut.
    let total = 16 << 20;
    let (clean, _) = over_path(short_path(Loss::None), 16, total);
    let (lossy, s) = over_path(short_path(Loss::Random(0.05)), 16, total);
    // This seed spares the handshake: with no RTT known yet a lost SYN costs a second here.
    assert_eq!(s.syn_retransmits, 0, "{s:?}");
    let ratio = clean.as_secs_f64() / lossy.as_secs_f64();
    // The window cut on every episode made it 0.30 (0.24 to 0.31 over seeds 16 to 20).
    assert!(
        ratio > 0.6,
        "{ratio:.2}: {clean:?} clean, {lossy:?} lossy, {s:?}"
    );
    assert_eq!(s.timeouts, 0, "{s:?}");
}

#[test]
fn a_policer_without_a_queue_still_cuts_the_window() {
    // A 50 Mbit/s policer: whatever exceeds the rate is dropped, nothing queues, the round
    // trip never rises. Loss that the window itself causes shows as a window well above what
    // the path delivers; it is congestion, and the window comes back to the rate, so the
    // policer drops a small share of what is sent.
    let mut link = short_path(Loss::None);
    link.rate = 50_000_000 / 8;
    link.queue = 4 * MSS;
    let total = 16 << 20;
    let (_, s) = over_path(link, 16, total);
    let resent = s.retransmits as f64 * MSS as f64 / total as f64;
    assert!(resent < 0.1, "{resent:.3} of the data resent: {s:?}");
    assert!(s.cwnd < 4 * link.bdp() as u64, "{s:?}");
}

#[test]
fn sacked_data_grows_the_window_while_a_hole_waits_for_repair() {
    // The first segment of a window is lost and the rest arrive: each SACK reports a
    // segment that got through. In slow start that grows the window as a cumulative ACK
    // would (Linux counts SACKed bytes too). Counting only the cumulative ACK left the
    // window where it was until the hole was repaired, and the ACK that repaired it grew
    // it by 2 MSS for the whole window: at a few percent of loss slow start crawled.
    let mut sim = Sim::established(41);
    sim.a.write(&data(256 << 10, 41)).unwrap();
    let window = sim.drain(Dir::AtoB);
    assert!(window.len() >= 8, "{}", window.len());
    let before = sim.a.stats().cwnd;
    for p in &window[1..] {
        sim.forward(p);
        for ack in sim.drain(Dir::BtoA) {
            sim.forward(&ack);
        }
    }
    let sacked = (window.len() - 1) as u64 * MSS as u64;
    let after = sim.a.stats().cwnd;
    assert!(
        after >= before + sacked,
        "{before} -> {after}, {sacked} bytes SACKed"
    );
}

#[test]
fn a_tenth_lost_on_a_20_ms_path_keeps_most_of_the_lossless_goodput() {
    // About what two access links with 5 % loss each do to a 1 MiB transfer (the NAT
    // matrix's lossy cells): nearly every window has holes, so SACKs carry the growth. When
    // only the cumulative ACK grew the window this took 0.44 of the lossless goodput here
    // (0.33 to 0.58 over seeds 1 to 4); it is 0.72 now (0.50 to 0.77 over seeds 1 to 8).
    let path = |loss| LinkConfig {
        rtt: Duration::from_millis(20),
        jitter: Duration::ZERO,
        loss,
        rate: 10_000_000_000 / 8,
        queue: 64 << 20,
    };
    let total = 1 << 20;
    let (clean, _) = over_path(path(Loss::None), 2, total);
    let (lossy, s) = over_path(path(Loss::Random(0.0975)), 2, total);
    let ratio = clean.as_secs_f64() / lossy.as_secs_f64();
    assert!(
        ratio > 0.6,
        "{ratio:.2}: {clean:?} clean, {lossy:?} lossy, {s:?}"
    );
    assert_eq!(s.timeouts, 0, "{s:?}");
}
