//! Daemon benchmarks with real processes on loopback (run through `ci/bench-daemon`).
//!
//! Starts a registry and a beacon in this process, two `pilot-daemon` processes (encryption on)
//! that trust each other, then measures with `pilotctl`:
//!
//! - throughput: `pilotctl bench` (writes to the peer's echo port and reads it all back) and a
//!   one-way SDK stream, next
//!   to raw UDP on loopback with the same datagram size, measured in the same run;
//! - latency: `pilotctl ping` (a dial plus an echo per probe), median and p90;
//! - memory: resident size of the daemons with 1,000 idle connections open through them.
//!
//! Usage: `bench_daemon [--bench-mb 256] [--pings 50] [--conns 1000]`.

use pilot::beacon::server::{BeaconServer, ServerConfig as BeaconConfig};
use pilot::driver::Driver;
use pilot::net::{MemStorage, Network, SystemClock, TokioNet};
use pilot::registry::ratelimit::{Rate, Rates};
use pilot::registry::server::{serve, ServerConfig};
use pilot::wire::Addr;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Node {
    child: Child,
    socket: PathBuf,
    home: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin(name: &str) -> PathBuf {
    // target/<profile>/examples/bench_daemon -> target/<profile>/<name>
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join(name)
}

fn start_daemon(dir: &Path, name: &str, registry: &str, beacon: &str) -> Node {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let socket = home.join("pilot.sock");
    let mut child = Command::new(bin("pilot-daemon"))
        .env("HOME", &home)
        .args([
            format!("-registry={registry}"),
            format!("-beacon={beacon}"),
            "-listen=127.0.0.1:0".into(),
            format!("-socket={}", socket.display()),
            format!("-identity={}", home.join("identity.json").display()),
            "-syn-rate-limit=100000".into(),
            "-log-level=info".into(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pilot-daemon (build it with cargo build --release -p pilot-bins)");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("daemon running") {
            break;
        }
    }
    // Keep draining the log so the daemon never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Node {
        child,
        socket,
        home,
    }
}

fn ctl(node: &Node, args: &[&str]) -> Value {
    let out = Command::new(bin("pilotctl"))
        .env("HOME", &node.home)
        .env("PILOT_SOCKET", &node.socket)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pilotctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["data"].clone()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Raw UDP on loopback: one sender thread, one receiver, `size`-byte datagrams, for `secs`.
fn raw_udp_mb_s(size: usize, secs: f64) -> f64 {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = rx.local_addr().unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let sender = std::thread::spawn(move || {
        let buf = vec![7u8; size];
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = tx.send_to(&buf, to);
        }
    });
    let mut buf = vec![0u8; 65536];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        if let Ok(n) = rx.recv(&mut buf) {
            bytes += n as u64;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.join().unwrap();
    bytes as f64 / elapsed / (1 << 20) as f64
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let bench_mb = arg("--bench-mb", 256);
    let pings = arg("--pings", 50);
    let conns = arg("--conns", 1000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (registry, beacon, _stop) = runtime.block_on(async {
        let listener = TokioNet
            .bind_tcp("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let config = ServerConfig {
            registry: pilot::registry::Config {
                rates: Rates {
                    new_registration: Rate::per_secs(1000, 1),
                    ..Rates::default()
                },
                ..pilot::registry::Config::default()
            },
            ..ServerConfig::default()
        };
        let registry = serve(TokioNet, listener, MemStorage::new(), SystemClock, config)
            .await
            .unwrap();
        let beacon =
            BeaconServer::bind(TokioNet, BeaconConfig::new("127.0.0.1:0".parse().unwrap()))
                .await
                .unwrap();
        let addr = beacon.local_addr();
        let (stop, stopped) = pilot::net::watch::channel(false);
        tokio::spawn(beacon.run(stopped));
        (registry, addr, stop)
    });
    let dir = tempfile::tempdir().unwrap();
    let reg = registry.local_addr().to_string();
    let a = start_daemon(dir.path(), "a", &reg, &beacon.to_string());
    let b = start_daemon(dir.path(), "b", &reg, &beacon.to_string());
    let a_id = ctl(&a, &["info"])["node_id"].as_u64().unwrap();
    let b_id = ctl(&b, &["info"])["node_id"].as_u64().unwrap();
    let rss_a0 = rss_kib(a.child.id());
    let rss_b0 = rss_kib(b.child.id());

    // Trust both ways: A asks, B approves once the request is pending.
    ctl(&a, &["handshake", &b_id.to_string(), "bench"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ctl(&b, &["pending"])
        .to_string()
        .contains(&a_id.to_string())
    {
        assert!(Instant::now() < deadline, "handshake never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    ctl(&b, &["approve", &a_id.to_string()]);
    while !ctl(&a, &["trust"]).to_string().contains(&b_id.to_string()) {
        assert!(Instant::now() < deadline, "approval never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    let target = b_id.to_string();

    println!("== pilot daemon benchmarks (loopback, real processes, encryption on)");
    let udp = raw_udp_mb_s(4096 + 34 + 40, 1.0);
    let mut runs: Vec<f64> = Vec::new();
    for _ in 0..3 {
        let r = ctl(&a, &["bench", &target, &bench_mb.to_string()]);
        runs.push(r["total_mbps"].as_f64().unwrap_or(0.0));
    }
    runs.sort_by(|x, y| x.total_cmp(y));
    let median = runs[1];
    println!(
        "throughput  pilotctl bench {bench_mb} MiB (echo, both ways): median {median:.1} MiB/s of runs {runs:.1?}"
    );
    println!(
        "baseline    raw UDP loopback, 4170-byte datagrams, one direction: {udp:.1} MiB/s; ratio {:.2}",
        median / udp
    );

    // One direction through the SDK: A writes, a reader on B takes everything.
    let one_way = runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let da = Driver::connect(&a.socket).await.unwrap();
        let db = Driver::connect(&b.socket).await.unwrap();
        let mut listener = db.listen(5001).await.unwrap();
        let total = (bench_mb as usize) << 20;
        let reader = tokio::spawn(async move {
            let mut s = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let mut got = 0;
            while got < total {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "stream ended early");
                got += n;
            }
        });
        let mut s = da.dial(Addr::backbone(b_id as u32), 5001).await.unwrap();
        let chunk = vec![0x5au8; 1 << 20];
        let start = Instant::now();
        for _ in 0..bench_mb {
            s.write_all(&chunk).await.unwrap();
        }
        reader.await.unwrap();
        let secs = start.elapsed().as_secs_f64();
        bench_mb as f64 / secs
    });
    println!(
        "one way     SDK stream A -> B, {bench_mb} MiB: {one_way:.1} MiB/s; ratio to raw UDP {:.2}",
        one_way / udp
    );

    let ping = ctl(
        &a,
        &[
            "ping",
            &target,
            "--count",
            &pings.to_string(),
            "--interval",
            "0",
        ],
    );
    let mut rtts: Vec<f64> = ping["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["rtt_ms"].as_f64())
        .collect();
    rtts.sort_by(|x, y| x.total_cmp(y));
    let p = |q: f64| rtts[((rtts.len() - 1) as f64 * q) as usize];
    println!(
        "latency     pilotctl ping x{} (dial + echo): median {:.3} ms, p90 {:.3} ms, min {:.3} ms",
        rtts.len(),
        p(0.5),
        p(0.9),
        p(0.0)
    );

    let (rss_a, rss_b) = runtime.block_on(async {
        let driver = Driver::connect(&a.socket).await.unwrap();
        let mut streams = Vec::new();
        for _ in 0..conns {
            streams.push(driver.dial(Addr::backbone(b_id as u32), 7).await.unwrap());
        }
        let info = ctl(&b, &["info"]);
        let open = info["connections"].as_u64().unwrap_or(0);
        let rss = (rss_kib(a.child.id()), rss_kib(b.child.id()));
        println!("memory      {conns} idle connections open (B reports {open} live)");
        drop(streams);
        rss
    });
    println!(
        "            daemon A (dialer): {:.1} MiB resident ({:.1} MiB before)",
        rss_a as f64 / 1024.0,
        rss_a0 as f64 / 1024.0
    );
    println!(
        "            daemon B (echo server): {:.1} MiB resident ({:.1} MiB before)",
        rss_b as f64 / 1024.0,
        rss_b0 as f64 / 1024.0
    );
}
