//! Real `pilot-daemon` and `pilotctl` processes for tests: a child whose output lines arrive
//! on a channel, a daemon started against the rendezvous servers, and `pilotctl --json` runs.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const GUARD: Duration = Duration::from_secs(30);

/// A child process whose stderr lines arrive on a channel; killed when dropped.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
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
    pub fn wait_for(&mut self, needles: &[&str]) -> String {
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

pub struct Node {
    pub proc: Proc,
    pub socket: PathBuf,
    pub home: PathBuf,
}

pub fn daemon(dir: &Path, name: &str, registry: SocketAddr, beacon: SocketAddr) -> Node {
    daemon_with(dir, name, registry, beacon, &[])
}

/// A daemon started with `extra` flags after the usual ones (a `-log-level` among them
/// replaces the default `info`).
pub fn daemon_with(
    dir: &Path,
    name: &str,
    registry: SocketAddr,
    beacon: SocketAddr,
    extra: &[&str],
) -> Node {
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
        .args(extra);
    if !extra.iter().any(|f| f.starts_with("-log-level")) {
        cmd.arg("-log-level=info");
    }
    let mut proc = Proc::spawn(cmd);
    proc.wait_for(&["daemon running"]);
    Node { proc, socket, home }
}

pub fn pilotctl(node: &Node) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pilotctl"));
    cmd.env("HOME", &node.home)
        .env("PILOT_SOCKET", &node.socket)
        .env_remove("RUST_LOG");
    cmd
}

/// Runs `pilotctl --json <args>` and returns `data`; panics with the output on failure.
pub fn ctl(node: &Node, args: &[&str]) -> Value {
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

pub fn ctl_fails(node: &Node, args: &[&str]) -> String {
    let out = pilotctl(node).arg("--json").args(args).output().unwrap();
    assert!(!out.status.success(), "pilotctl {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A asks; B sees it pending (relayed through the registry: B is private) and approves.
pub fn make_trust(a: &mut Node, b: &mut Node, a_id: &str, b_id: &str) {
    let sent = ctl(a, &["handshake", b_id, "let me in"]);
    assert_eq!(sent["status"], "sent");
    b.proc.wait_for(&["Pending", &format!("peer: {a_id}")]);
    let pending = ctl(b, &["pending"]);
    assert!(pending["pending"].to_string().contains(a_id), "{pending}");
    ctl(b, &["approve", a_id]);
    a.proc.wait_for(&["Approved", &format!("peer: {b_id}")]);
    assert!(ctl(a, &["trust"])["trusted"].to_string().contains(b_id));
    assert!(ctl(b, &["trust"])["trusted"].to_string().contains(a_id));
}

/// The node ID `info` reports, as pilotctl takes it.
pub fn node_id(node: &Node) -> String {
    ctl(node, &["info"])["node_id"]
        .as_u64()
        .unwrap()
        .to_string()
}

/// Two daemons `a` and `b` under `dir` that trust each other, with their node IDs.
pub fn trusted_pair(
    dir: &Path,
    registry: SocketAddr,
    beacon: SocketAddr,
) -> (Node, Node, String, String) {
    trusted_pair_with(dir, registry, beacon, &[])
}

/// [`trusted_pair`] with `b` started with the extra flags `b_flags`.
pub fn trusted_pair_with(
    dir: &Path,
    registry: SocketAddr,
    beacon: SocketAddr,
    b_flags: &[&str],
) -> (Node, Node, String, String) {
    let mut a = daemon(dir, "a", registry, beacon);
    let mut b = daemon_with(dir, "b", registry, beacon, b_flags);
    let (a_id, b_id) = (node_id(&a), node_id(&b));
    make_trust(&mut a, &mut b, &a_id, &b_id);
    (a, b, a_id, b_id)
}
