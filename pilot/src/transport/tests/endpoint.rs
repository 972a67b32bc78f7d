//! Two endpoints over an in-memory network: dials, listeners, limits, datagrams, control.

use super::harness::{data, digest};
use crate::net::seeded_rng;
use crate::transport::datagram::DatagramError;
use crate::transport::{
    CloseReason, ConnectionId, Endpoint, EndpointConfig, EndpointError, Event, ReadError, State,
};
use crate::wire::{Addr, Flags, Header, Packet, Protocol, SocketAddr};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const A: Addr = Addr::new(0, 10);
const B: Addr = Addr::new(0, 20);

struct Net {
    now: Instant,
    start: Instant,
    a: Endpoint,
    b: Endpoint,
    /// (deliver at, to B?, bytes)
    queue: VecDeque<(Instant, bool, Vec<u8>)>,
    trace: Vec<(bool, Header, usize)>,
}

impl Net {
    fn new(seed: u64, config_b: impl FnOnce(&mut EndpointConfig)) -> Net {
        let mut cb = EndpointConfig::new(B);
        config_b(&mut cb);
        let now = Instant::now();
        Net {
            now,
            start: now,
            a: Endpoint::new(EndpointConfig::new(A), seeded_rng(seed)),
            b: Endpoint::new(cb, seeded_rng(seed ^ 0xFFFF)),
            queue: VecDeque::new(),
            trace: Vec::new(),
        }
    }

    fn pump(&mut self) {
        let mut buf = Vec::new();
        for to_b in [true, false] {
            loop {
                buf.clear();
                let ep = if to_b { &mut self.a } else { &mut self.b };
                let Some(t) = ep.poll_transmit(self.now, &mut buf) else {
                    break;
                };
                assert_eq!(t.size, buf.len());
                let h = Packet::decode(&buf).unwrap().header;
                self.trace.push((to_b, h, buf.len()));
                self.queue
                    .push_back((self.now + Duration::from_millis(1), to_b, buf.clone()));
            }
        }
    }

    fn step(&mut self) -> bool {
        self.pump();
        let next = [
            self.queue.front().map(|q| q.0),
            self.a.poll_timeout(),
            self.b.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        while self.queue.front().is_some_and(|q| q.0 <= self.now) {
            let (_, to_b, bytes) = self.queue.pop_front().unwrap();
            let p = Packet::decode(&bytes).unwrap();
            let ep = if to_b { &mut self.b } else { &mut self.a };
            ep.handle_packet(self.now, &p);
        }
        let now = self.now;
        self.a.handle_timeout(now);
        self.b.handle_timeout(now);
        true
    }

    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Net) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if self.now > end || !self.step() {
                return done(self);
            }
        }
    }

    fn events(ep: &mut Endpoint, now: Instant) -> Vec<(ConnectionId, Event)> {
        std::iter::from_fn(|| ep.poll_event(now)).collect()
    }

    fn dial(&mut self, port: u16) -> ConnectionId {
        let now = self.now;
        self.a.connect(now, SocketAddr::new(B, port)).unwrap()
    }
}

fn read_some(ep: &mut Endpoint, id: ConnectionId, now: Instant, into: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 16384];
    loop {
        match ep.with_connection(id, now, |c| c.read(&mut buf)) {
            Some(Ok(0)) => return true,
            Some(Ok(n)) => into.extend_from_slice(&buf[..n]),
            Some(Err(ReadError::WouldBlock)) | None => return false,
            Some(Err(e)) => panic!("{e}"),
        }
    }
}

#[test]
fn dial_accept_transfer_close_through_endpoints() {
    let mut net = Net::new(1, |_| {});
    net.b.listen(7).unwrap();
    let id = net.dial(7);
    assert!(net.run_until(Duration::from_secs(1), |n| {
        Net::events(&mut n.a, n.now).contains(&(id, Event::Connected))
    }));
    // The dial completed one round trip after it started (no polling tick, Q4).
    assert_eq!(net.now - net.start, Duration::from_millis(2));
    let server = net.b.accept(7).unwrap().unwrap();
    let payload = data(500_000, 1);
    let mut written = 0;
    let mut got = Vec::new();
    let now = net.now;
    assert!(net.run_until(Duration::from_secs(60), |n| {
        if written < payload.len() {
            written +=
                n.a.with_connection(id, n.now, |c| c.write(&payload[written..]).unwrap_or(0))
                    .unwrap();
            if written == payload.len() {
                n.a.with_connection(id, n.now, |c| c.close(n.now));
            }
        }
        read_some(&mut n.b, server, n.now, &mut got)
    }));
    assert_eq!(digest(&got), digest(&payload));
    let _ = now;
    // Both ends finish and are released after TIME_WAIT.
    net.b.with_connection(server, net.now, |c| c.close(net.now));
    Net::events(&mut net.a, net.now);
    Net::events(&mut net.b, net.now);
    assert!(net.run_until(Duration::from_secs(30), |n| {
        Net::events(&mut n.a, n.now);
        Net::events(&mut n.b, n.now);
        n.a.connection_count() == 0 && n.b.connection_count() == 0
    }));
    // ISNs came from the RNG: neither SYN nor SYN-ACK carries the reference's constant 0.
    let syn = net.trace.iter().find(|t| t.1.flags == Flags::SYN).unwrap();
    let syn_ack = net
        .trace
        .iter()
        .find(|t| t.1.flags == Flags::SYN | Flags::ACK)
        .unwrap();
    assert_ne!(syn.1.seq, 0);
    assert_ne!(syn_ack.1.seq, 0);
    assert_eq!(syn_ack.1.ack, syn.1.seq.wrapping_add(1));
}

#[test]
fn isn_and_ephemeral_port_depend_on_the_seed() {
    let mut seen = Vec::new();
    for seed in [1, 2] {
        let mut net = Net::new(seed, |_| {});
        net.b.listen(7).unwrap();
        net.dial(7);
        net.pump();
        let syn = net.trace[0].1;
        assert!(syn.src_port >= 49152);
        seen.push((syn.seq, syn.src_port));
    }
    assert_ne!(seen[0], seen[1]);
    // Same seed, same choices: runs replay.
    let mut net = Net::new(1, |_| {});
    net.dial(7);
    net.pump();
    assert_eq!((net.trace[0].1.seq, net.trace[0].1.src_port), seen[0]);
}

#[test]
fn syn_to_unbound_port_is_refused() {
    let mut net = Net::new(2, |_| {});
    let id = net.dial(99);
    assert!(net.run_until(Duration::from_secs(1), |n| {
        Net::events(&mut n.a, n.now).contains(&(id, Event::Closed(CloseReason::Refused)))
    }));
    assert_eq!(net.b.stats().syn_refused, 1);
}

#[test]
fn full_accept_queue_refuses_before_syn_ack() {
    let mut net = Net::new(3, |c| c.accept_queue = 2);
    net.b.listen(80).unwrap();
    let ids: Vec<_> = (0..3).map(|_| net.dial(80)).collect();
    net.run_until(Duration::from_secs(1), |_| false);
    let evs = Net::events(&mut net.a, net.now);
    assert!(evs.contains(&(ids[0], Event::Connected)));
    assert!(evs.contains(&(ids[1], Event::Connected)));
    assert!(evs.contains(&(ids[2], Event::Closed(CloseReason::Refused))));
    // The refused dial never saw a SYN-ACK (the reference sent one first, Q14).
    let syn_acks = net
        .trace
        .iter()
        .filter(|t| !t.0 && t.1.flags == Flags::SYN | Flags::ACK)
        .count();
    assert_eq!(syn_acks, 2);
    // Accepting makes room again.
    assert!(net.b.accept(80).unwrap().is_some());
    let id = net.dial(80);
    assert!(net.run_until(Duration::from_secs(1), |n| {
        Net::events(&mut n.a, n.now).contains(&(id, Event::Connected))
    }));
}

#[test]
fn connection_limits_refuse_with_rst() {
    let mut net = Net::new(4, |c| {
        c.max_connections_per_port = 2;
        c.max_connections = 3;
    });
    net.b.listen(1).unwrap();
    net.b.listen(2).unwrap();
    let on1: Vec<_> = (0..3).map(|_| net.dial(1)).collect();
    let on2: Vec<_> = (0..2).map(|_| net.dial(2)).collect();
    net.run_until(Duration::from_secs(1), |_| false);
    let evs = Net::events(&mut net.a, net.now);
    let refused = |id| evs.contains(&(id, Event::Closed(CloseReason::Refused)));
    assert!(!refused(on1[0]) && !refused(on1[1]) && refused(on1[2]));
    assert!(!refused(on2[0]) && refused(on2[1]));
    assert_eq!(net.b.live_connections(), 3);
}

/// Q11 through the endpoint: a restarted peer re-dialing the same tuple with a new SYN gets a
/// new connection; the old one ends as reset. A retransmitted SYN during the handshake gets the
/// same SYN-ACK again and no second connection.
#[test]
fn new_syn_on_old_tuple_replaces_it_retransmitted_syn_does_not() {
    let mut net = Net::new(5, |_| {});
    net.b.listen(9).unwrap();
    let now = net.now;
    let syn = |seq: u32| Header {
        flags: Flags::SYN,
        protocol: Protocol::STREAM,
        src: A,
        dst: B,
        src_port: 49152,
        dst_port: 9,
        seq,
        window: 512,
        ..Header::default()
    };
    let s0 = syn(0);
    let mut out = Vec::new();
    let mut syn_acks = Vec::new();
    for _ in 0..2 {
        net.b.handle_packet(
            now,
            &Packet {
                header: s0,
                payload: &[],
            },
        );
        while net.b.poll_transmit(now, &mut out).is_some() {
            let h = Packet::decode(&out).unwrap().header;
            syn_acks.push((h.flags, h.seq, h.ack));
            out.clear();
        }
    }
    assert_eq!(net.b.connection_count(), 1);
    assert_eq!(syn_acks.len(), 2);
    assert_eq!(syn_acks[0], syn_acks[1]);
    let old = net.b.accept(9).unwrap().unwrap();
    // The handshake completes and data flows.
    let ack = Header {
        flags: Flags::ACK,
        seq: 1,
        ack: syn_acks[0].1.wrapping_add(1),
        ..s0
    };
    net.b.handle_packet(
        now,
        &Packet {
            header: ack,
            payload: b"old data",
        },
    );
    assert_eq!(net.b.connection(old).unwrap().readable(), 8);
    // The peer restarts and dials again from the same port with ISN 0.
    net.b.handle_packet(
        now,
        &Packet {
            header: s0,
            payload: &[],
        },
    );
    let new = net.b.accept(9).unwrap().unwrap();
    assert_ne!(new, old);
    assert_eq!(net.b.stats().replaced, 1);
    let evs = Net::events(&mut net.b, now);
    assert!(evs.contains(&(old, Event::Closed(CloseReason::Reset))));
    // No RST went out on the tuple (it would hit the new dial).
    let mut flags = Vec::new();
    while net.b.poll_transmit(now, &mut out).is_some() {
        flags.push(Packet::decode(&out).unwrap().header.flags);
        out.clear();
    }
    assert!(!flags.contains(&Flags::RST), "{flags:?}");
    assert!(flags.contains(&(Flags::SYN | Flags::ACK)));
}

/// Q7: one connection whose reader never reads fills only its own window; another connection
/// to the same daemon moves its data and a new dial is accepted meanwhile.
#[test]
fn a_slow_reader_stalls_only_its_own_connection() {
    let mut net = Net::new(6, |_| {});
    net.b.listen(5).unwrap();
    let stuck = net.dial(5);
    let busy = net.dial(5);
    net.run_until(Duration::from_secs(1), |_| false);
    let _stuck_srv = net.b.accept(5).unwrap().unwrap();
    let busy_srv = net.b.accept(5).unwrap().unwrap();
    let flood = data(4 << 20, 2);
    let payload = data(2 << 20, 3);
    let (mut w1, mut w2) = (0, 0);
    let mut got = Vec::new();
    let mut late: Option<ConnectionId> = None;
    assert!(net.run_until(Duration::from_secs(120), |n| {
        let now = n.now;
        if w1 < flood.len() {
            w1 +=
                n.a.with_connection(stuck, now, |c| c.write(&flood[w1..]).unwrap_or(0))
                    .unwrap();
        }
        if w2 < payload.len() {
            w2 +=
                n.a.with_connection(busy, now, |c| c.write(&payload[w2..]).unwrap_or(0))
                    .unwrap();
        }
        read_some(&mut n.b, busy_srv, now, &mut got);
        if late.is_none() && got.len() > payload.len() / 2 {
            late = Some(n.a.connect(now, SocketAddr::new(B, 5)).unwrap());
        }
        let late_ok = late.is_some_and(|id| {
            n.a.connection(id)
                .is_some_and(|c| c.state() == State::Established)
        });
        got.len() == payload.len() && late_ok
    }));
    assert_eq!(digest(&got), digest(&payload));
    // The stuck connection is alive, its buffer full, not more.
    let stuck_conn = net.a.connection(stuck).unwrap();
    assert_eq!(stuck_conn.state(), State::Established);
    assert!(stuck_conn.unacknowledged() > 0);
}

#[test]
fn datagrams_are_delivered_to_their_bound_port() {
    let mut net = Net::new(7, |_| {});
    net.b.bind_datagram(4000).unwrap();
    assert_eq!(
        net.b.bind_datagram(4000),
        Err(DatagramError::PortInUse(4000))
    );
    let mut out = Vec::new();
    let now = net.now;
    let t = net
        .a
        .send_datagram(None, SocketAddr::new(B, 4000), b"hello", &mut out)
        .unwrap();
    assert_eq!(t.size, out.len());
    let src_port = Packet::decode(&out).unwrap().header.src_port;
    net.b.handle_packet(now, &Packet::decode(&out).unwrap());
    // A second datagram uses the same source port (the reference burned one per datagram).
    out.clear();
    net.a
        .send_datagram(None, SocketAddr::new(B, 4001), b"nobody", &mut out)
        .unwrap();
    assert_eq!(Packet::decode(&out).unwrap().header.src_port, src_port);
    net.b.handle_packet(now, &Packet::decode(&out).unwrap());
    let d = net.b.recv_datagram(4000).unwrap().unwrap();
    assert_eq!(
        (d.data.as_slice(), d.src, d.dst_port),
        (&b"hello"[..], SocketAddr::new(A, src_port), 4000)
    );
    assert_eq!(net.b.recv_datagram(4000), Ok(None));
    assert_eq!(
        net.b.recv_datagram(4001),
        Err(DatagramError::NotBound(4001))
    );
    assert_eq!(net.b.stats().datagrams_dropped, 1);
    // Errors: empty, oversize, broadcast, unbound source port.
    out.clear();
    let dst = SocketAddr::new(B, 4000);
    assert_eq!(
        net.a.send_datagram(None, dst, b"", &mut out),
        Err(DatagramError::Empty)
    );
    let big = vec![0u8; 70_000];
    assert!(matches!(
        net.a.send_datagram(None, dst, &big, &mut out),
        Err(DatagramError::TooLarge { .. })
    ));
    let bcast = SocketAddr::new(Addr::new(0, Addr::BROADCAST_NODE), 1);
    assert_eq!(
        net.a.send_datagram(None, bcast, b"x", &mut out),
        Err(DatagramError::Broadcast)
    );
    assert_eq!(
        net.a.send_datagram(Some(5), dst, b"x", &mut out),
        Err(DatagramError::NotBound(5))
    );
    assert!(out.is_empty());
    // Empty datagrams arriving are dropped (T-45).
    let empty = Header {
        protocol: Protocol::DATAGRAM,
        src: A,
        dst: B,
        dst_port: 4000,
        ..Header::default()
    };
    net.b.handle_packet(
        now,
        &Packet {
            header: empty,
            payload: &[],
        },
    );
    assert_eq!(net.b.recv_datagram(4000), Ok(None));
}

#[test]
fn receive_all_mode_and_bounded_queues() {
    let mut net = Net::new(8, |c| {
        c.datagram_receive_all = true;
        c.datagram_queue = 3;
    });
    let now = net.now;
    for i in 0..5u8 {
        let h = Header {
            protocol: Protocol::DATAGRAM,
            src: A,
            dst: B,
            src_port: 1,
            dst_port: 100 + u16::from(i),
            ..Header::default()
        };
        net.b.handle_packet(
            now,
            &Packet {
                header: h,
                payload: &[i],
            },
        );
    }
    let got: Vec<u8> = std::iter::from_fn(|| net.b.recv_datagram_any())
        .map(|d| d.data[0])
        .collect();
    assert_eq!(got, vec![0, 1, 2]);
    assert_eq!(net.b.stats().datagrams_dropped, 2);
}

/// Q13: a ping gets a pong; a pong (ACK set) never gets an answer, so two daemons cannot loop.
#[test]
fn control_ping_is_answered_pong_is_not() {
    let mut net = Net::new(9, |_| {});
    let now = net.now;
    let ping = Header {
        protocol: Protocol::CONTROL,
        src: A,
        dst: B,
        src_port: 0,
        dst_port: 0,
        seq: 41,
        ..Header::default()
    };
    net.b.handle_packet(
        now,
        &Packet {
            header: ping,
            payload: b"ping",
        },
    );
    let mut out = Vec::new();
    net.b.poll_transmit(now, &mut out).unwrap();
    let pong = Packet::decode(&out).unwrap();
    assert_eq!(pong.header.flags, Flags::ACK);
    assert_eq!(
        (pong.header.seq, pong.header.ack, pong.header.dst_port),
        (41, 42, 0)
    );
    assert_eq!(pong.payload, b"ping");
    // The pong, delivered to a daemon, is not answered.
    net.a.handle_packet(now, &pong);
    let mut more = Vec::new();
    assert!(net.a.poll_transmit(now, &mut more).is_none());
    // Pings to other ports are ignored.
    let other = Header {
        dst_port: 1,
        ..ping
    };
    net.b.handle_packet(
        now,
        &Packet {
            header: other,
            payload: &[],
        },
    );
    assert!(net.b.poll_transmit(now, &mut more).is_none());
}

#[test]
fn ephemeral_ports_skip_listeners_and_used_ports_and_run_out() {
    let mut net = Net::new(10, |_| {});
    // Listen on every ephemeral port but three.
    for port in 49152..=65535u16 {
        if port % 5000 != 0 {
            net.a.listen(port).unwrap();
        }
    }
    let free: Vec<u16> = (49152..=65535u16).filter(|p| p % 5000 == 0).collect();
    let mut got = Vec::new();
    for _ in 0..free.len() {
        let id = net.dial(7);
        got.push(net.a.connection(id).unwrap().local().port);
    }
    got.sort();
    assert_eq!(got, free);
    assert_eq!(
        net.a.connect(net.now, SocketAddr::new(B, 7)),
        Err(EndpointError::NoFreePort)
    );
    assert_eq!(net.a.listen(49153), Err(EndpointError::PortInUse(49153)));
}

#[test]
fn garbage_stream_packets_never_panic() {
    let mut net = Net::new(11, |_| {});
    net.b.listen(7).unwrap();
    let id = net.dial(7);
    net.run_until(Duration::from_secs(1), |_| false);
    let server = net.b.accept(7).unwrap().unwrap();
    let tuple = net.b.connection(server).unwrap().remote();
    let mut rng = seeded_rng(99);
    use rand_core::Rng as _;
    for _ in 0..20_000 {
        let h = Header {
            flags: Flags::from_bits(rng.next_u32() as u8),
            protocol: Protocol::STREAM,
            src: A,
            dst: B,
            src_port: tuple.port,
            dst_port: if rng.next_u32() % 2 == 0 {
                7
            } else {
                rng.next_u32() as u16
            },
            seq: rng.next_u32(),
            ack: rng.next_u32(),
            window: rng.next_u32() as u16,
            ..Header::default()
        };
        let len = (rng.next_u32() % 64) as usize;
        let mut payload = vec![0u8; len];
        rng.fill_bytes(&mut payload);
        if rng.next_u32() % 4 == 0 && len >= 13 {
            payload[..5].copy_from_slice(b"SACK\x01");
        }
        let now = net.now;
        net.b.handle_packet(
            now,
            &Packet {
                header: h,
                payload: &payload,
            },
        );
        let mut out = Vec::new();
        while net.b.poll_transmit(now, &mut out).is_some() {}
        net.now += Duration::from_millis(1);
        let now = net.now;
        net.b.handle_timeout(now);
    }
    let _ = id;
}

/// T-11 with Q24 fixed: SYNs over a source's rate are dropped silently (no RST), and do not use
/// up the daemon-wide allowance.
#[test]
fn syn_flood_from_one_source_is_rate_limited_silently() {
    let mut net = Net::new(12, |_| {});
    net.b.listen(7).unwrap();
    for _ in 0..20 {
        net.dial(7);
    }
    net.pump();
    net.run_until(Duration::from_millis(5), |_| false);
    let s = net.b.stats();
    assert_eq!((s.syn_rate_limited, s.syn_refused), (10, 0));
    assert_eq!(net.b.connection_count(), 10);
}

/// Determinism: the same seeds give the same packets (every header field and size), in the
/// same order, for three connections sharing an endpoint.
#[test]
fn endpoint_runs_replay_from_the_seed() {
    let run = || {
        let mut net = Net::new(13, |_| {});
        net.b.listen(7).unwrap();
        let ids: Vec<_> = (0..3).map(|_| net.dial(7)).collect();
        let payload = data(300_000, 4);
        let mut written = [0usize; 3];
        let mut got = Vec::new();
        net.run_until(Duration::from_secs(30), |n| {
            let now = n.now;
            for (i, &id) in ids.iter().enumerate() {
                if written[i] < payload.len() {
                    written[i] += n
                        .a
                        .with_connection(id, now, |c| c.write(&payload[written[i]..]).unwrap_or(0))
                        .unwrap_or(0);
                }
            }
            while let Ok(Some(id)) = n.b.accept(7) {
                got.push(id);
            }
            for &id in &got {
                let mut sink = Vec::new();
                read_some(&mut n.b, id, now, &mut sink);
            }
            false
        });
        net.trace
            .iter()
            .map(|(to_b, h, len)| (*to_b, *h, *len))
            .collect::<Vec<_>>()
    };
    let first = run();
    assert!(first.len() > 200);
    assert_eq!(first, run());
}
