//! Stream transport benchmarks: two connections through an in-memory link, no crypto, both ends
//! on one thread, virtual time.
//!
//! `cargo bench -p pilot --bench transport` prints the loss-and-latency table first (our
//! goodput beside quinn-proto's over the same seeded `LinkModel` paths), then a summary
//! (lossless and 1 % loss goodput on a latency-free link measured in the same run, their
//! ratio, idle memory per connection), then runs the criterion benchmarks.
//! `cargo bench -p pilot --bench transport -- table` prints only the table.

#[path = "transport/anchor.rs"]
mod anchor;
#[path = "transport/ours.rs"]
mod ours;
#[path = "transport/table.rs"]
mod table;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pilot::net::{seeded_rng, Rng};
use pilot::transport::{Config, Connection, Endpoint, EndpointConfig, ReadError};
use pilot::wire::{Addr, Packet, SocketAddr};
use rand_core::Rng as _;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

/// Counts live heap bytes, to measure what an idle connection really holds.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One transfer over a modelled path.
pub struct Outcome {
    /// Bytes read over simulated seconds from the dial to the last byte.
    pub goodput: f64,
    /// Whether every byte arrived within the time limit.
    pub complete: bool,
    /// Simulated time from the dial to the first byte read.
    pub first_byte: Option<Duration>,
    /// Segments retransmitted (ours) or packets declared lost (quinn).
    pub repairs: u64,
    /// Retransmission timeouts (ours only).
    pub timeouts: Option<u64>,
    /// What the path did.
    #[allow(dead_code)]
    pub link: pilot::transport::link_model::LinkStats,
}

/// Virtual time per loop round: a loopback-like round trip.
const ROUND: Duration = Duration::from_micros(20);

struct Pair {
    a: Connection,
    b: Connection,
    now: Instant,
    rng: Rng,
    loss: f64,
    wire: Vec<u8>,
    sizes: Vec<usize>,
}

impl Pair {
    fn new(config: Config, loss: f64, seed: u64) -> Pair {
        let now = Instant::now();
        let a_sock = SocketAddr::new(Addr::new(0, 1), 49152);
        let b_sock = SocketAddr::new(Addr::new(0, 2), 1000);
        let mut rng = seeded_rng(seed);
        let mut a = Connection::connect(config.clone(), a_sock, b_sock, rng.next_u32(), now);
        let mut wire = Vec::with_capacity(1 << 16);
        a.poll_transmit(now, &mut wire).unwrap();
        let syn = Packet::decode(&wire).unwrap().header;
        let b = Connection::accept(config, b_sock, &syn, rng.next_u32(), now);
        let mut pair = Pair {
            a,
            b,
            now,
            rng,
            loss,
            wire,
            sizes: Vec::with_capacity(1024),
        };
        pair.exchange();
        pair.exchange();
        pair
    }

    fn lost(&mut self) -> bool {
        self.loss > 0.0 && (self.rng.next_u32() as f64) < self.loss * 4_294_967_296.0
    }

    /// Moves everything each side wants to send to the other; returns packets moved.
    fn exchange(&mut self) -> usize {
        let mut moved = 0;
        for a_to_b in [true, false] {
            self.wire.clear();
            self.sizes.clear();
            let (from, _) = if a_to_b {
                (&mut self.a, &mut self.b)
            } else {
                (&mut self.b, &mut self.a)
            };
            while let Some(t) = from.poll_transmit(self.now, &mut self.wire) {
                self.sizes.push(t.size);
            }
            moved += self.sizes.len();
            let mut at = 0;
            for i in 0..self.sizes.len() {
                let size = self.sizes[i];
                let lost = self.lost();
                if !lost {
                    let p = Packet::decode(&self.wire[at..at + size]).unwrap();
                    let to = if a_to_b { &mut self.b } else { &mut self.a };
                    to.handle_packet(self.now, &p);
                }
                at += size;
            }
        }
        moved
    }

    fn advance(&mut self, idle: bool) {
        self.now += ROUND;
        if idle {
            // Nothing moved: jump to the next deadline (a timeout under loss).
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            if let Some(t) = next {
                self.now = self.now.max(t);
            }
        }
        for c in [&mut self.a, &mut self.b] {
            if c.poll_timeout().is_some_and(|t| t <= self.now) {
                c.handle_timeout(self.now);
            }
        }
    }

    /// Sends `total` bytes A→B; returns the bytes B read (always `total`).
    fn transfer(&mut self, total: usize, chunk: &[u8], sink: &mut [u8]) -> usize {
        let mut written = 0;
        let mut read = 0;
        while read < total {
            while written < total {
                let n = chunk.len().min(total - written);
                match self.a.write(&chunk[..n]) {
                    Ok(k) => written += k,
                    Err(_) => break,
                }
            }
            let moved = self.exchange();
            loop {
                match self.b.read(sink) {
                    Ok(0) | Err(ReadError::WouldBlock) => break,
                    Ok(n) => read += n,
                    Err(e) => panic!("{e}"),
                }
            }
            self.advance(moved == 0);
        }
        read
    }
}

fn goodput(loss: f64, total: usize, seed: u64) -> (f64, Duration, u64) {
    let mut pair = Pair::new(Config::default(), loss, seed);
    let chunk = vec![0x5a; 64 * 1024];
    let mut sink = vec![0; 64 * 1024];
    let start = Instant::now();
    let n = pair.transfer(total, &chunk, &mut sink);
    let wall = start.elapsed();
    (
        n as f64 / wall.as_secs_f64(),
        wall,
        pair.a.stats().retransmits,
    )
}

/// The same transfer through two `Endpoint`s (tuple lookup, transmit queue, timers).
fn goodput_endpoints(total: usize) -> f64 {
    let mut now = Instant::now();
    let (a_addr, b_addr) = (Addr::new(0, 1), Addr::new(0, 2));
    let mut a = Endpoint::new(EndpointConfig::new(a_addr), seeded_rng(5));
    let mut b = Endpoint::new(EndpointConfig::new(b_addr), seeded_rng(6));
    b.listen(1001).unwrap();
    let id = a.connect(now, SocketAddr::new(b_addr, 1001)).unwrap();
    let mut wire = Vec::with_capacity(1 << 16);
    let mut sizes = Vec::with_capacity(1024);
    let chunk = vec![0x5a; 64 * 1024];
    let mut sink = vec![0; 64 * 1024];
    let mut server = None;
    let (mut written, mut read) = (0, 0);
    let start = Instant::now();
    while read < total {
        while written < total {
            match a.with_connection(id, now, |c| {
                c.write(&chunk[..chunk.len().min(total - written)])
            }) {
                Some(Ok(n)) => written += n,
                _ => break,
            }
        }
        for a_to_b in [true, false] {
            wire.clear();
            sizes.clear();
            let (from, to) = if a_to_b {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            while let Some(t) = from.poll_transmit(now, &mut wire) {
                sizes.push(t.size);
            }
            let mut at = 0;
            for &size in &sizes {
                to.handle_packet(now, &Packet::decode(&wire[at..at + size]).unwrap());
                at += size;
            }
        }
        if server.is_none() {
            server = b.accept(1001).unwrap();
        }
        if let Some(sid) = server {
            while let Some(Ok(n)) = b.with_connection(sid, now, |c| c.read(&mut sink)) {
                if n == 0 {
                    break;
                }
                read += n;
            }
        }
        while a.poll_event(now).is_some() {}
        while b.poll_event(now).is_some() {}
        now += ROUND;
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    read as f64 / start.elapsed().as_secs_f64()
}

fn idle_memory() -> (usize, usize, isize) {
    let before = LIVE.load(Ordering::Relaxed);
    let pair = Pair::new(Config::default(), 0.0, 1);
    let after = LIVE.load(Ordering::Relaxed);
    // Heap of two connections plus the pair's reusable wire buffers.
    let harness = (pair.wire.capacity() + pair.sizes.capacity() * 8) as isize;
    let per_conn_heap = (after - before - harness) / 2;
    let fresh = pair.a.memory_usage();
    // After a transfer, once the keepalive interval passes idle buffers are released.
    let mut pair = Pair::new(Config::default(), 0.0, 2);
    let chunk = vec![1u8; 64 * 1024];
    let mut sink = vec![0; 64 * 1024];
    pair.transfer(4 << 20, &chunk, &mut sink);
    for _ in 0..4 {
        pair.now += Duration::from_secs(31);
        pair.advance(false);
        pair.exchange();
    }
    let after_transfer = pair.a.memory_usage().max(pair.b.memory_usage());
    drop(pair);
    (
        fresh,
        after_transfer,
        per_conn_heap + std::mem::size_of::<Connection>() as isize,
    )
}

/// Heap allocations per data segment during a lossless transfer (after the handshake).
fn allocations_per_segment(total: usize) -> f64 {
    let mut pair = Pair::new(Config::default(), 0.0, 7);
    let chunk = vec![0x5a; 64 * 1024];
    let mut sink = vec![0; 64 * 1024];
    let before = ALLOCS.load(Ordering::Relaxed);
    pair.transfer(total, &chunk, &mut sink);
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    allocs as f64 / (total / 4096) as f64
}

/// Median and best of a set of goodputs.
fn median_best(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[v.len() - 1])
}

fn summary() {
    let total = 256 << 20;
    let rounds = 5;
    // Warm up once, then alternate lossless and lossy runs so both see the same machine load.
    goodput(0.0, 32 << 20, 1);
    let (mut clean, mut lossy, mut endpoints) = (Vec::new(), Vec::new(), Vec::new());
    let mut retx = 0;
    for round in 0..rounds {
        clean.push(goodput(0.0, total, 1).0);
        let (g, _, r) = goodput(0.01, total, 2 + round);
        lossy.push(g);
        retx = r;
        endpoints.push(goodput_endpoints(total));
    }
    let (clean_med, clean_best) = median_best(clean);
    let (lossy_med, lossy_best) = median_best(lossy);
    let (ep_med, ep_best) = median_best(endpoints);
    let (fresh, after, counted) = idle_memory();
    let per_segment = allocations_per_segment(64 << 20);
    println!(
        "transport summary ({} MiB per run, {rounds} alternating runs, one thread, no crypto):",
        total >> 20
    );
    println!(
        "  lossless goodput:        median {:.2} GB/s, best {:.2} GB/s",
        clean_med / 1e9,
        clean_best / 1e9
    );
    println!(
        "  1% loss goodput:         median {:.2} GB/s, best {:.2} GB/s ({retx} retransmissions in the last run)",
        lossy_med / 1e9,
        lossy_best / 1e9
    );
    println!(
        "  ratio lossy/lossless:    median {:.2}, best {:.2}",
        lossy_med / clean_med,
        lossy_best / clean_best
    );
    println!(
        "  lossless, two Endpoints: median {:.2} GB/s, best {:.2} GB/s",
        ep_med / 1e9,
        ep_best / 1e9
    );
    println!("  heap allocations per data segment (64 MiB lossless): {per_segment:.5}");
    println!(
        "  idle connection memory: {fresh} B fresh (struct + heap), {after} B after a transfer \
         and a keepalive interval; counting allocator: {counted} B"
    );
}

fn benches(c: &mut Criterion) {
    table::print();
    if std::env::args().any(|a| a == "table") {
        return;
    }
    summary();
    let total = 64 << 20;
    let mut group = c.benchmark_group("transport");
    group.throughput(Throughput::Bytes(total as u64));
    group.sample_size(10);
    let chunk = vec![0x5a; 64 * 1024];
    let mut sink = vec![0; 64 * 1024];
    group.bench_function("goodput_lossless_64MiB", |b| {
        b.iter(|| {
            let mut pair = Pair::new(Config::default(), 0.0, 3);
            pair.transfer(total, &chunk, &mut sink)
        })
    });
    group.bench_function("goodput_1pct_loss_64MiB", |b| {
        b.iter(|| {
            let mut pair = Pair::new(Config::default(), 0.01, 4);
            pair.transfer(total, &chunk, &mut sink)
        })
    });
    group.finish();
}

criterion_group!(transport, benches);
criterion_main!(transport);
