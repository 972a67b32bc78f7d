//! Scripted exchanges with a Go reference peer, packet by packet as `spec/transport.md` §1 and
//! `spec/wire.md` §3.7 describe what it sends (ISN 0, FIN with ack 0 and window 0, RST 0/0,
//! keepalives with window 0, FIN-ACK answered with FIN-ACK).

use crate::net::seeded_rng;
use crate::transport::{CloseReason, Endpoint, EndpointConfig, Event, State};
use crate::wire::{Addr, Flags, Header, Packet, Protocol, SocketAddr};
use std::time::{Duration, Instant};

const US: Addr = Addr::new(0, 2);
const GO: Addr = Addr::new(0, 1);
const GO_PORT: u16 = 49152;

fn go(flags: Flags, seq: u32, ack: u32, window: u16) -> Header {
    Header {
        flags,
        protocol: Protocol::STREAM,
        src: GO,
        dst: US,
        src_port: GO_PORT,
        dst_port: 7,
        seq,
        ack,
        window,
        ..Header::default()
    }
}

fn out(ep: &mut Endpoint, now: Instant) -> Vec<(Header, Vec<u8>, u8)> {
    let mut v = Vec::new();
    let mut buf = Vec::new();
    while ep.poll_transmit(now, &mut buf).is_some() {
        let p = Packet::decode(&buf).unwrap();
        v.push((p.header, p.payload.to_vec(), buf[0]));
        buf.clear();
    }
    v
}

fn feed(ep: &mut Endpoint, now: Instant, h: Header, payload: &[u8]) {
    let mut bytes = Vec::new();
    h.encode_packet(payload, &mut bytes).unwrap();
    ep.handle_packet(now, &Packet::decode(&bytes).unwrap());
}

/// A Go daemon dials our listener, sends data, closes; then keeps answering our FIN-ACK with
/// FIN-ACKs. We answer its FIN once and never its FIN-ACKs, so the loop stops.
#[test]
fn go_dialer_to_our_listener() {
    let mut now = Instant::now();
    let mut ep = Endpoint::new(EndpointConfig::new(US), seeded_rng(1));
    ep.listen(7).unwrap();
    feed(&mut ep, now, go(Flags::SYN, 0, 0, 512), &[]);
    let syn_ack = out(&mut ep, now);
    assert_eq!(syn_ack.len(), 1);
    let (h, _, byte0) = &syn_ack[0];
    assert_eq!(*byte0, 0x13);
    assert_eq!(h.ack, 1);
    assert!(h.window >= 1);
    let our_isn = h.seq;
    let id = ep.accept(7).unwrap().unwrap();
    // Handshake ACK, then 5000 bytes in two segments with the reference's numbering.
    feed(
        &mut ep,
        now,
        go(Flags::ACK, 1, our_isn.wrapping_add(1), 512),
        &[],
    );
    feed(
        &mut ep,
        now,
        go(Flags::ACK, 1, our_isn.wrapping_add(1), 512),
        &[b'x'; 4096],
    );
    feed(
        &mut ep,
        now,
        go(Flags::ACK, 4097, our_isn.wrapping_add(1), 512),
        &[b'y'; 904],
    );
    let acks = out(&mut ep, now);
    assert_eq!(acks.last().unwrap().0.ack, 5001);
    assert_eq!(acks.last().unwrap().2, 0x12);
    // Our reply data uses our ISN + 1.
    ep.with_connection(id, now, |c| c.write(b"pong").unwrap());
    let data = out(&mut ep, now);
    assert_eq!(data[0].0.seq, our_isn.wrapping_add(1));
    assert_eq!(data[0].1, b"pong");
    feed(
        &mut ep,
        now,
        go(Flags::ACK, 5001, our_isn.wrapping_add(5), 512),
        &[],
    );
    // The Go peer closes: FIN, seq = SendSeq, ack 0, window 0.
    feed(&mut ep, now, go(Flags::FIN, 5001, 0, 0), &[]);
    let reply = out(&mut ep, now);
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0].2, 0x16);
    assert_eq!(reply[0].0.ack, 5002);
    // Its loop answers our FIN-ACK with a FIN-ACK, forever; we stay silent.
    for _ in 0..100 {
        now += Duration::from_millis(1);
        feed(
            &mut ep,
            now,
            go(Flags::FIN | Flags::ACK, 5001, our_isn.wrapping_add(5), 0),
            &[],
        );
        ep.handle_timeout(now);
        assert!(out(&mut ep, now).is_empty());
    }
    let mut read = Vec::new();
    let mut buf = [0u8; 8192];
    while let Some(Ok(n)) = ep.with_connection(id, now, |c| c.read(&mut buf)) {
        if n == 0 {
            break;
        }
        read.extend_from_slice(&buf[..n]);
    }
    assert_eq!(read.len(), 5000);
    // TIME_WAIT ends 10 s after it began despite the stream of FIN-ACKs.
    now += Duration::from_secs(10);
    ep.handle_timeout(now);
    while ep.poll_event(now).is_some() {}
    assert_eq!(ep.connection_count(), 0);
}

/// We dial a Go listener: its SYN-ACK has ISN 0; its keepalive (window 0) does not stop us; a
/// full Go receiver's window 0 does; its RST (seq 0, ack 0) ends the connection.
#[test]
fn our_dialer_to_go_listener() {
    let now = Instant::now();
    let mut ep = Endpoint::new(EndpointConfig::new(US), seeded_rng(2));
    let id = ep.connect(now, SocketAddr::new(GO, 80)).unwrap();
    let syn = out(&mut ep, now);
    assert_eq!(syn[0].2, 0x11);
    let (sh, ..) = syn[0];
    let reply = |flags, seq, ack, window| Header {
        src: GO,
        dst: US,
        src_port: 80,
        dst_port: sh.src_port,
        ..go(flags, seq, ack, window)
    };
    feed(
        &mut ep,
        now,
        reply(Flags::SYN | Flags::ACK, 0, sh.seq.wrapping_add(1), 512),
        &[],
    );
    let hs = out(&mut ep, now);
    assert_eq!(
        (hs[0].2, hs[0].0.seq, hs[0].0.ack),
        (0x12, sh.seq.wrapping_add(1), 1)
    );
    let evs: Vec<_> = std::iter::from_fn(|| ep.poll_event(now)).collect();
    assert!(evs.contains(&(id, Event::Connected)));
    // A Go keepalive: bare ACK, window 0. Then we write: data flows.
    feed(
        &mut ep,
        now,
        reply(Flags::ACK, 1, sh.seq.wrapping_add(1), 0),
        &[],
    );
    ep.with_connection(id, now, |c| c.write(&[1u8; 8192]).unwrap());
    let sent = out(&mut ep, now);
    assert_eq!(sent.iter().filter(|p| !p.1.is_empty()).count(), 2);
    // The Go receiver's queue is full: it acknowledges with window 0. We stop.
    let end = sh.seq.wrapping_add(1 + 8192);
    feed(&mut ep, now, reply(Flags::ACK, 1, end, 0), &[]);
    ep.with_connection(id, now, |c| c.write(&[2u8; 8192]).unwrap());
    assert!(out(&mut ep, now).is_empty());
    // Its RST, seq 0 ack 0, is heard.
    feed(&mut ep, now, reply(Flags::RST, 0, 0, 0), &[]);
    let evs: Vec<_> = std::iter::from_fn(|| ep.poll_event(now)).collect();
    assert!(
        evs.contains(&(id, Event::Closed(CloseReason::Reset))),
        "{evs:?}"
    );
    assert!(ep.connection(id).is_none_or(|c| c.state() == State::Closed));
}
