//! An in-memory link between two connections: loss, duplication, reordering and delay drawn
//! from a seeded RNG, time advanced to the next deadline. No runtime, no clock.

use crate::net::{seeded_rng, Rng};
use crate::transport::{Config, Connection, Event, ReadError, State};
use crate::wire::{Addr, Flags, Header, Packet, SocketAddr};
use rand_core::Rng as _;
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Which way a packet travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    AtoB,
    BtoA,
}

/// Faults and delay of the link, per packet.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub loss: f64,
    pub duplicate: f64,
    /// Probability that a packet gets extra delay (and so is overtaken).
    pub reorder: f64,
    pub delay: Duration,
    pub reorder_delay: Duration,
}

impl Link {
    pub fn perfect() -> Self {
        Link {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            delay: Duration::from_millis(10),
            reorder_delay: Duration::from_millis(15),
        }
    }

    pub fn lossy(loss: f64) -> Self {
        Link {
            loss,
            ..Link::perfect()
        }
    }
}

/// One packet as it was put on the link.
#[derive(Clone, Debug)]
pub struct Sent {
    pub dir: Dir,
    pub at: Instant,
    pub header: Header,
    pub payload: Vec<u8>,
}

/// A packet waiting on the link: delivery time, tie-breaker, direction, bytes.
type InFlight = Reverse<(Instant, u64, Dir, Vec<u8>)>;

type Filter = Box<dyn FnMut(Dir, &Header, &[u8]) -> bool>;

pub struct Sim {
    pub now: Instant,
    pub start: Instant,
    pub a: Connection,
    pub b: Connection,
    pub link: Link,
    rng: Rng,
    queue: BinaryHeap<InFlight>,
    counter: u64,
    /// Every packet emitted, in order.
    pub trace: Vec<Sent>,
    /// Returns false to drop a packet (applied before random faults).
    pub filter: Option<Filter>,
    /// The link is cut both ways.
    pub cut: bool,
}

pub const A_ADDR: Addr = Addr::new(0, 1);
pub const B_ADDR: Addr = Addr::new(0, 2);

impl Sim {
    /// Dials from A to B and builds B from A's first SYN; nothing has been exchanged yet
    /// beyond that SYN.
    pub fn new(
        seed: u64,
        link: Link,
        config_a: Config,
        config_b: Config,
        isn_a: u32,
        isn_b: u32,
    ) -> Sim {
        let start = Instant::now();
        let a_sock = SocketAddr::new(A_ADDR, 49152);
        let b_sock = SocketAddr::new(B_ADDR, 1000);
        let mut a = Connection::connect(config_a, a_sock, b_sock, isn_a, start);
        let mut buf = Vec::new();
        a.poll_transmit(start, &mut buf).expect("SYN");
        let syn = Packet::decode(&buf).unwrap();
        let b = Connection::accept(config_b, b_sock, &syn.header, isn_b, start);
        Sim {
            now: start,
            start,
            a,
            b,
            link,
            rng: seeded_rng(seed),
            queue: BinaryHeap::new(),
            counter: 0,
            trace: Vec::new(),
            filter: None,
            cut: false,
        }
    }

    /// A simple pair, run until B has seen the handshake ACK.
    pub fn established(seed: u64) -> Sim {
        let mut sim = Sim::simple(seed, Link::perfect());
        assert!(
            sim.run_until(Duration::from_secs(5), |s| s.b.stats().packets_received
                >= 1)
        );
        sim.trace.clear();
        sim
    }

    /// Runs until nothing is in flight on the link and nothing is due before `within`.
    pub fn settle(&mut self, within: Duration) {
        let until = self.now + within;
        loop {
            self.pump();
            let quiet = self.queue.is_empty()
                && [self.a.poll_timeout(), self.b.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .all(|t| t > until);
            if quiet || !self.step() {
                return;
            }
        }
    }

    /// Encodes a packet from B's side of the tuple to A (or the reverse), for injection.
    pub fn craft(
        &self,
        dir: Dir,
        flags: Flags,
        seq: u32,
        ack: u32,
        window: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let (src, dst) = match dir {
            Dir::AtoB => (self.a.local(), self.a.remote()),
            Dir::BtoA => (self.b.local(), self.b.remote()),
        };
        let h = Header {
            flags,
            src: src.addr,
            dst: dst.addr,
            src_port: src.port,
            dst_port: dst.port,
            seq,
            ack,
            window,
            ..Header::default()
        };
        let mut out = Vec::new();
        h.encode_packet(payload, &mut out).unwrap();
        out
    }

    /// Packets the connection on the `from` side wants to send right now, decoded.
    pub fn drain(&mut self, from: Dir) -> Vec<Sent> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let conn = match from {
                Dir::AtoB => &mut self.a,
                Dir::BtoA => &mut self.b,
            };
            if conn.poll_transmit(self.now, &mut buf).is_none() {
                return out;
            }
            let p = Packet::decode(&buf).unwrap();
            out.push(Sent {
                dir: from,
                at: self.now,
                header: p.header,
                payload: p.payload.to_vec(),
            });
        }
    }

    pub fn simple(seed: u64, link: Link) -> Sim {
        Sim::new(seed, link, Config::default(), Config::default(), 1000, 5000)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u32() as f64) < p * 4_294_967_296.0
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Moves every packet both connections want to send onto the link.
    pub fn pump(&mut self) {
        let mut buf = Vec::with_capacity(8192);
        for dir in [Dir::AtoB, Dir::BtoA] {
            loop {
                buf.clear();
                let conn = match dir {
                    Dir::AtoB => &mut self.a,
                    Dir::BtoA => &mut self.b,
                };
                if conn.poll_transmit(self.now, &mut buf).is_none() {
                    break;
                }
                self.put(dir, &buf);
            }
        }
    }

    /// Puts raw packet bytes on the link in direction `dir` (subject to faults).
    pub fn put(&mut self, dir: Dir, bytes: &[u8]) {
        let p = Packet::decode(bytes).expect("connections emit valid packets");
        self.trace.push(Sent {
            dir,
            at: self.now,
            header: p.header,
            payload: p.payload.to_vec(),
        });
        if self.cut {
            return;
        }
        if let Some(f) = self.filter.as_mut() {
            if !f(dir, &p.header, p.payload) {
                return;
            }
        }
        if self.chance(self.link.loss) {
            return;
        }
        let copies = if self.chance(self.link.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = self.now + self.link.delay;
            if self.chance(self.link.reorder) {
                at += self.link.reorder_delay;
            }
            self.counter += 1;
            self.queue
                .push(Reverse((at, self.counter, dir, bytes.to_vec())));
        }
    }

    /// Hands a drained packet to the other side immediately, as it was sent.
    pub fn forward(&mut self, p: &Sent) {
        let h = &p.header;
        let bytes = self.craft(p.dir, h.flags, h.seq, h.ack, h.window, &p.payload);
        self.inject(p.dir, &bytes);
    }

    /// Delivers a packet to a connection immediately, bypassing the link.
    pub fn inject(&mut self, dir: Dir, bytes: &[u8]) {
        let p = Packet::decode(bytes).unwrap();
        match dir {
            Dir::AtoB => self.b.handle_packet(self.now, &p),
            Dir::BtoA => self.a.handle_packet(self.now, &p),
        }
    }

    /// One step: send what is ready, advance to the next event, deliver and fire timers.
    /// Returns false when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        self.pump();
        let next = [
            self.queue.peek().map(|Reverse((t, ..))| *t),
            self.a.poll_timeout(),
            self.b.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { return false };
        if next > self.now {
            self.now = next;
        }
        while let Some(Reverse((t, ..))) = self.queue.peek() {
            if *t > self.now {
                break;
            }
            let Reverse((_, _, dir, bytes)) = self.queue.pop().unwrap();
            self.inject(dir, &bytes);
        }
        if self.a.poll_timeout().is_some_and(|t| t <= self.now) {
            self.a.handle_timeout(self.now);
        }
        if self.b.poll_timeout().is_some_and(|t| t <= self.now) {
            self.b.handle_timeout(self.now);
        }
        true
    }

    /// Steps until `done` holds or virtual time passes `limit`; returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Sim) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if self.elapsed() > limit || !self.step() {
                return done(self);
            }
        }
    }

    /// Sends `data` from A to B (B reading as it arrives), then closes A gracefully and runs
    /// until both sides have finished. Returns what B read.
    pub fn transfer(&mut self, data: &[u8], limit: Duration) -> Vec<u8> {
        let mut written = 0;
        let mut received = Vec::with_capacity(data.len());
        let mut closed = false;
        let mut buf = vec![0u8; 64 * 1024];
        let mut eof = false;
        self.run_until(limit, |sim| {
            while written < data.len() {
                match sim.a.write(&data[written..]) {
                    Ok(n) => written += n,
                    Err(_) => break,
                }
            }
            if written == data.len() && !closed {
                sim.a.close(sim.now);
                closed = true;
            }
            loop {
                match sim.b.read(&mut buf) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                    Err(ReadError::WouldBlock) => break,
                    Err(ReadError::Closed(r)) => panic!(
                        "stream failed: {r}; sender {:?} {:?} {:?}",
                        sim.a.state(),
                        sim.a.close_reason(),
                        sim.a.stats()
                    ),
                }
            }
            eof && matches!(sim.a.state(), State::TimeWait | State::Closed)
        });
        received
    }

    pub fn events(conn: &mut Connection) -> Vec<Event> {
        std::iter::from_fn(|| conn.poll_event()).collect()
    }

    /// Packets in the trace from `dir` matching `pred`.
    pub fn count(&self, dir: Dir, pred: impl Fn(&Sent) -> bool) -> usize {
        self.trace
            .iter()
            .filter(|s| s.dir == dir && pred(s))
            .count()
    }
}

/// Deterministic pseudo-random test data.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = seeded_rng(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

pub fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}
