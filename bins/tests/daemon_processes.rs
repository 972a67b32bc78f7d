//! Real processes on loopback: a registry and a beacon (in this test process, over real
//! sockets), two `pilot-daemon` processes, and `pilotctl` driving them through handshake,
//! approve, ping, bench, send/recv, connect and untrust.
//!
//! Nothing sleeps: each step waits for the line a process prints when the awaited thing
//! happened (the daemons' logs, `pilotctl recv`'s "listening" note), with a timeout only as a
//! failure guard.

use pilot::beacon::server::{BeaconServer, ServerConfig as BeaconConfig};
use pilot::net::{MemStorage, Network, SystemClock, TokioNet};
use pilot::registry::ratelimit::{Rate, Rates};
use pilot::registry::server::{serve, ServerConfig};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const GUARD: Duration = Duration::from_secs(30);

/// A child process whose stderr lines arrive on a channel; killed when dropped.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx2.send(line);
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for an output line containing every one of `needles`.
    fn wait_for(&mut self, needles: &[&str]) -> String {
        let deadline = std::time::Instant::now() + GUARD;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if needles.iter().all(|n| line.contains(n)) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needles:?}; output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Node {
    proc: Proc,
    socket: PathBuf,
    home: PathBuf,
}

fn daemon(dir: &Path, name: &str, registry: SocketAddr, beacon: SocketAddr) -> Node {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let socket = home.join("pilot.sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pilot-daemon"));
    cmd.env("HOME", &home)
        .env_remove("PILOT_SOCKET")
        .env_remove("RUST_LOG")
        .arg(format!("-registry={registry}"))
        .arg(format!("-beacon={beacon}"))
        .arg("-listen=127.0.0.1:0")
        .arg(format!("-socket={}", socket.display()))
        .arg(format!(
            "-identity={}",
            home.join("identity.json").display()
        ))
        .arg("-log-level=info");
    let mut proc = Proc::spawn(cmd);
    proc.wait_for(&["daemon running"]);
    Node { proc, socket, home }
}

fn pilotctl(node: &Node) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pilotctl"));
    cmd.env("HOME", &node.home)
        .env("PILOT_SOCKET", &node.socket)
        .env_remove("RUST_LOG");
    cmd
}

/// Runs `pilotctl --json <args>` and returns `data`; panics with the output on failure.
fn ctl(node: &Node, args: &[&str]) -> Value {
    let out = pilotctl(node)
        .arg("--json")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pilotctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["data"].clone()
}

fn ctl_fails(node: &Node, args: &[&str]) -> String {
    let out = pilotctl(node).arg("--json").args(args).output().unwrap();
    assert!(!out.status.success(), "pilotctl {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn two_daemons_driven_by_pilotctl() {
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
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(beacon.run(stopped));
        (registry, addr, stop)
    });
    let dir = tempfile::tempdir().unwrap();
    let mut a = daemon(dir.path(), "a", registry.local_addr(), beacon);
    let mut b = daemon(dir.path(), "b", registry.local_addr(), beacon);

    // The socket is private to its user.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&a.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let a_id = ctl(&a, &["info"])["node_id"].as_u64().unwrap().to_string();
    let b_id = ctl(&b, &["info"])["node_id"].as_u64().unwrap().to_string();

    // Before trust: B (private) cannot even be resolved, and nothing answers.
    ctl_fails(&a, &["ping", &b_id, "--count", "1", "--timeout", "5s"]);

    // A asks; B sees it pending (relayed through the registry: B is private) and approves.
    let sent = ctl(&a, &["handshake", &b_id, "let me in"]);
    assert_eq!(sent["status"], "sent");
    b.proc.wait_for(&["Pending", &format!("peer: {a_id}")]);
    let pending = ctl(&b, &["pending"]);
    assert!(pending["pending"].to_string().contains(&a_id), "{pending}");
    ctl(&b, &["approve", &a_id]);
    a.proc.wait_for(&["Approved", &format!("peer: {b_id}")]);
    assert!(ctl(&a, &["trust"])["trusted"].to_string().contains(&b_id));
    assert!(ctl(&b, &["trust"])["trusted"].to_string().contains(&a_id));

    let ping = ctl(&a, &["ping", &b_id, "--count", "3", "--interval", "0"]);
    assert_eq!(ping["received"], 3, "{ping}");

    let bench = ctl(&a, &["bench", &b_id, "4"]);
    assert_eq!(bench["recv_bytes"], bench["sent_bytes"], "{bench}");

    let echoed = ctl(&a, &["connect", &b_id, "7", "--message", "over the tunnel"]);
    assert_eq!(echoed["response"], "over the tunnel");

    // send/recv: B listens (its note says when), A sends.
    let mut recv = pilotctl(&b);
    recv.args(["recv", "5000", "--count", "1", "--timeout", "20s"]);
    let mut receiver = Proc::spawn(recv);
    receiver.wait_for(&["listening on port 5000"]);
    let sent = ctl(&a, &["send", &b_id, "5000", "--data", "hello b"]);
    assert_eq!(sent["sent"], "hello b");
    receiver.wait_for(&["hello b"]);

    let peers = ctl(&a, &["peers"]);
    assert!(peers.to_string().contains(&b_id), "{peers}");
    ctl(&a, &["connections"]);

    // B withdraws trust: A's ping is refused from then on.
    ctl(&b, &["untrust", &a_id]);
    a.proc
        .wait_for(&["RevokedByPeer", &format!("peer: {b_id}")]);
    ctl_fails(&a, &["ping", &b_id, "--count", "1", "--timeout", "5s"]);

    // Graceful stop: SIGTERM, the socket goes away, the exit status is 0.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(b.proc.child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    b.proc.wait_for(&["daemon stopped"]);
    let status = b.proc.child.wait().unwrap();
    assert!(status.success());
    assert!(!b.socket.exists());
}
