//! Line rate on one machine: raw UDP on loopback, `pilotctl bench` (echo) and a one-way SDK
//! stream between two real daemons (encryption on), in one run, each in MiB/s, as a ratio to
//! the raw-UDP baseline, and in CPU seconds per GiB carried:
//!
//! ```text
//! cargo bench -p pilot-bins --bench line_rate             # 1 GiB per transfer
//! PILOT_BENCH_MB=256 cargo bench -p pilot-bins --bench line_rate
//! cargo bench -p pilot-bins --bench line_rate -- --quick  # 128 MiB
//! ```
//!
//! Targets (issue: line rate): echo at least 500 MiB/s, one-way at least 1 GiB/s.
//! CPU is everything the measurement made the machine do: both daemons (from
//! `/proc/<pid>/stat`), the `pilotctl` children (`getrusage(RUSAGE_CHILDREN)`) and this
//! process (`getrusage(RUSAGE_SELF)`: the raw-UDP threads, or the SDK clients).

#[path = "../tests/process_support/mod.rs"]
mod process_support;
#[path = "../tests/rendezvous_support/mod.rs"]
mod rendezvous_support;

use pilot::driver::Driver;
use pilot::wire::Addr;
use process_support::{ctl, trusted_pair, Node};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;
const TARGET_ECHO_MIB_S: f64 = 500.0;
const TARGET_ONE_WAY_MIB_S: f64 = 1024.0;
/// The datagram a full stream segment makes on the tunnel: PILS header and tag (36), the
/// packet header (34) and 4096 bytes of payload.
const TUNNEL_DATAGRAM: usize = 4096 + 34 + 36;
/// The typical internet-safe datagram, for reference.
const SMALL_DATAGRAM: usize = 1200;
const RAW_UDP_SECS: f64 = 1.0;
const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = (1u64 << 30) as f64;

fn size_mb() -> u64 {
    if std::env::args().any(|a| a == "--quick") {
        return 128;
    }
    std::env::var("PILOT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(1024)
}

/// User plus system CPU seconds of a `getrusage` target.
fn rusage_secs(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// User plus system CPU seconds of a running process, from `/proc/<pid>/stat`.
fn process_cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the file (utime, stime) are 12 and 13 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / hz,
        _ => f64::NAN,
    }
}

/// CPU seconds used so far by everything a measurement involves.
struct CpuMeter<'a> {
    daemons: &'a [&'a Node],
}

impl CpuMeter<'_> {
    fn now(&self) -> f64 {
        let daemons: f64 = self
            .daemons
            .iter()
            .map(|n| process_cpu_secs(n.proc.child.id()))
            .sum();
        daemons + rusage_secs(libc::RUSAGE_CHILDREN) + rusage_secs(libc::RUSAGE_SELF)
    }
}

/// One measurement: payload bytes delivered, wall time, CPU seconds, and the bytes the
/// tunnel carried for it (twice the payload for an echo).
#[derive(Clone, Copy)]
struct Run {
    bytes: f64,
    secs: f64,
    cpu: f64,
    carried: f64,
}

impl Run {
    fn mib_s(&self) -> f64 {
        self.bytes / MIB / self.secs
    }

    fn cpu_per_gib(&self) -> f64 {
        self.cpu / (self.carried / GIB)
    }
}

/// The median run by throughput.
fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.mib_s().total_cmp(&b.mib_s()));
    runs[runs.len() / 2]
}

/// Raw UDP on loopback: one thread blasting `size`-byte datagrams, one receiving, for `secs`.
/// Only received bytes count.
fn raw_udp(size: usize, secs: f64) -> Run {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = rx.local_addr().unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let buf = vec![0x5au8; size];
            while !stop.load(Ordering::Relaxed) {
                let _ = tx.send_to(&buf, to);
            }
        })
    };
    let cpu0 = rusage_secs(libc::RUSAGE_SELF);
    let mut buf = vec![0u8; 65_536];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        if let Ok(n) = rx.recv(&mut buf) {
            bytes += n as u64;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    Run {
        bytes: bytes as f64,
        secs: elapsed,
        cpu: rusage_secs(libc::RUSAGE_SELF) - cpu0,
        carried: bytes as f64,
    }
}

/// `pilotctl bench` of `mb` MiB: the payload goes out and comes back, so the tunnel carries
/// it twice; the rate is the echoed bytes over the whole run (pilotctl's `total_mbps`).
fn echo(a: &Node, target: &str, mb: u64, meter: &CpuMeter) -> Run {
    let cpu0 = meter.now();
    let r = ctl(a, &["bench", target, &mb.to_string(), "--timeout", "1800s"]);
    let cpu = meter.now() - cpu0;
    assert_eq!(r["recv_bytes"], r["sent_bytes"], "{r}");
    let received = r["recv_bytes"].as_f64().unwrap();
    let secs = r["total_duration_ms"].as_f64().unwrap() / 1000.0;
    Run {
        bytes: received,
        secs,
        cpu,
        carried: 2.0 * received,
    }
}

/// One direction through the SDK: a writer on A, a reader on B taking everything.
fn one_way(
    runtime: &tokio::runtime::Runtime,
    a: &Node,
    b: &Node,
    b_node: u32,
    mb: u64,
    port: u16,
    meter: &CpuMeter,
) -> Run {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    runtime.block_on(async {
        let da = Driver::connect(&a.socket).await.unwrap();
        let db = Driver::connect(&b.socket).await.unwrap();
        let mut listener = db.listen(port).await.unwrap();
        let total = (mb as usize) << 20;
        let cpu0 = meter.now();
        let start = Instant::now();
        let reader = tokio::spawn(async move {
            let mut s = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let mut got = 0;
            while got < total {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "stream ended after {got} of {total} bytes");
                got += n;
            }
        });
        let mut s = da.dial(Addr::backbone(b_node), port).await.unwrap();
        let chunk = vec![0x5au8; 1 << 20];
        for _ in 0..mb {
            s.write_all(&chunk).await.unwrap();
        }
        reader.await.unwrap();
        Run {
            bytes: total as f64,
            secs: start.elapsed().as_secs_f64(),
            cpu: meter.now() - cpu0,
            carried: total as f64,
        }
    })
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn main() {
    let mb = size_mb();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let servers = rendezvous_support::start(None);
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _, b_id) = trusted_pair(dir.path(), servers.registry, servers.beacon);
    let b_node: u32 = b_id.parse().unwrap();
    let daemons = [&a, &b];
    let meter = CpuMeter { daemons: &daemons };

    // Rounds interleave the three measurements so machine noise hits them alike.
    let (mut udp, mut udp_small, mut echoes, mut streams) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        udp.push(raw_udp(TUNNEL_DATAGRAM, RAW_UDP_SECS));
        udp_small.push(raw_udp(SMALL_DATAGRAM, RAW_UDP_SECS));
        echoes.push(echo(&a, &b_id, mb, &meter));
        streams.push(one_way(
            &runtime,
            &a,
            &b,
            b_node,
            mb,
            5001 + round as u16,
            &meter,
        ));
        println!(
            "round {}: raw UDP {:.0} MiB/s, echo {:.1} MiB/s, one-way {:.1} MiB/s",
            round + 1,
            udp[round].mib_s(),
            echoes[round].mib_s(),
            streams[round].mib_s()
        );
    }
    let (udp, udp_small, echo, stream) = (
        median(udp),
        median(udp_small),
        median(echoes),
        median(streams),
    );
    let base = udp.mib_s();
    println!(
        "\nline rate, two daemons on loopback, encryption on, {mb} MiB per transfer, median of {ROUNDS}"
    );
    println!("                              MiB/s   vs raw UDP   CPU s/GiB");
    let row = |name: &str, run: &Run, extra: String| {
        println!(
            "  {name:<26} {:8.1}   {:8.3}   {:9.2}  {extra}",
            run.mib_s(),
            run.mib_s() / base,
            run.cpu_per_gib()
        );
    };
    row(
        &format!("raw UDP, {TUNNEL_DATAGRAM} B datagrams"),
        &udp,
        "(baseline)".into(),
    );
    row(
        &format!("raw UDP, {SMALL_DATAGRAM} B datagrams"),
        &udp_small,
        String::new(),
    );
    row(
        "pilotctl bench (echo)",
        &echo,
        format!(
            "(target >= {TARGET_ECHO_MIB_S:.0}) {}",
            verdict(echo.mib_s() >= TARGET_ECHO_MIB_S)
        ),
    );
    row(
        "SDK stream, one way",
        &stream,
        format!(
            "(target >= {TARGET_ONE_WAY_MIB_S:.0}) {}",
            verdict(stream.mib_s() >= TARGET_ONE_WAY_MIB_S)
        ),
    );
    println!(
        "  CPU per GiB the tunnel carried (an echo carries each byte twice); it covers both daemons,\n  pilotctl and the SDK clients in this process"
    );
}
