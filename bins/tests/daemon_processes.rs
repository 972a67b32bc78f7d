//! Real processes on loopback: `pilot-rendezvous` (registry and beacon), two `pilot-daemon`
//! processes, and `pilotctl` driving them through handshake, approve, ping, bench, send/recv,
//! connect and untrust.
//!
//! Nothing sleeps: each step waits for the line a process prints when the awaited thing
//! happened (the daemons' logs, `pilotctl recv`'s "listening" note), with a timeout only as a
//! failure guard.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};

mod process_support;
mod rendezvous_support;

use process_support::*;

#[test]
fn two_daemons_driven_by_pilotctl() {
    let servers = rendezvous_support::start(None);
    let dir = tempfile::tempdir().unwrap();
    let mut a = daemon(dir.path(), "a", servers.registry, servers.beacon);
    let mut b = daemon(dir.path(), "b", servers.registry, servers.beacon);

    // The socket is private to its user.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&a.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let a_id = ctl(&a, &["info"])["node_id"].as_u64().unwrap().to_string();
    let b_id = ctl(&b, &["info"])["node_id"].as_u64().unwrap().to_string();

    // Before trust: B (private) cannot even be resolved, and nothing answers.
    ctl_fails(&a, &["ping", &b_id, "--count", "1", "--timeout", "5s"]);

    make_trust(&mut a, &mut b, &a_id, &b_id);

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

#[test]
fn messages_and_files_acked_before_kill_9_are_kept() {
    let servers = rendezvous_support::start(None);
    let dir = tempfile::tempdir().unwrap();
    let (a, mut b, _, b_id) = trusted_pair(dir.path(), servers.registry, servers.beacon);

    let sent = ctl(&a, &["send-message", &b_id, "--data", "hello b"]);
    assert_eq!(sent["ack"], "ACK TEXT 7 bytes", "{sent}");
    let sent = ctl(
        &a,
        &[
            "send-message",
            &b_id,
            "--data",
            "{\"n\":1}",
            "--type",
            "json",
        ],
    );
    assert_eq!(sent["ack"], "ACK JSON 7 bytes", "{sent}");
    // Larger than one frame: streamed.
    let big: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 253) as u8).collect();
    let path = dir.path().join("model.bin");
    std::fs::write(&path, &big).unwrap();
    let sent = ctl(&a, &["send-file", &b_id, path.to_str().unwrap()]);
    assert_eq!(
        sent["ack"],
        format!("ACK FILE {} bytes", big.len()),
        "{sent}"
    );
    assert_eq!(sent["bytes"], big.len());

    // Everything ACKed is on disk even if the daemon dies without warning.
    b.proc.child.kill().unwrap();
    b.proc.child.wait().unwrap();
    let inbox = ctl(&b, &["inbox"]);
    assert_eq!(inbox["total"], 2, "{inbox}");
    assert!(inbox.to_string().contains("hello b"), "{inbox}");
    let received = ctl(&b, &["received"]);
    assert_eq!(received["total"], 1, "{received}");
    let file = &received["files"][0];
    assert!(
        file["name"].as_str().unwrap().starts_with("model-"),
        "{file}"
    );
    assert_eq!(std::fs::read(file["path"].as_str().unwrap()).unwrap(), big);

    assert_eq!(ctl(&b, &["inbox", "--clear"])["cleared"], 2);
    assert_eq!(ctl(&b, &["inbox"])["total"], 0);
    assert_eq!(ctl(&b, &["received", "--clear"])["cleared"], 1);
    let missing = ctl_fails(&a, &["send-file", &b_id, "/no/such/file"]);
    assert!(missing.contains("not_found"), "{missing}");
    let bad = ctl_fails(&a, &["send-message", &b_id, "--data", "x", "--type", "xml"]);
    assert!(bad.contains("unknown type"), "{bad}");
}

/// Kills whatever the PID file names when the test ends, so a failure leaks no process.
struct KillOnDrop(PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

#[test]
fn pilotctl_daemon_start_status_stop() {
    let servers = rendezvous_support::start(None);
    let home = tempfile::tempdir().unwrap();
    let socket = home.path().join("d.sock");
    let _guard = KillOnDrop(home.path().join(".pilot").join("pilot.pid"));
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pilotctl"))
            .env("HOME", home.path())
            .env("PILOT_DAEMON_BIN", env!("CARGO_BIN_EXE_pilot-daemon"))
            .env("PILOT_SOCKET", &socket)
            .env_remove("RUST_LOG")
            .arg("--json")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let registry = servers.registry.to_string();
    let beacon = servers.beacon.to_string();
    let start = [
        "daemon",
        "start",
        "--registry",
        &registry,
        "--beacon",
        &beacon,
        "--listen",
        "127.0.0.1:0",
    ];
    let out = run(&start);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        started["data"]["node_id"].as_u64().unwrap() > 0,
        "{started}"
    );
    // The identity went where pilotctl asked, private to the user.
    let identity = home.path().join(".pilot").join("identity.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&identity).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let out = run(&["daemon", "status"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["data"]["responsive"], true, "{status}");
    assert_eq!(status["data"]["node_id"], started["data"]["node_id"]);

    let again = run(&start);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already_exists"));

    let out = run(&["daemon", "stop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stopped: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(stopped["data"]["forced"], true, "{stopped}");
    assert!(!socket.exists());
}

#[test]
fn bad_flags_and_config_are_clear_errors() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pilot-daemon"))
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let out = run(&["-no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-flag"));

    let out = run(&["-config", "/nonexistent/pilot.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.json");
    std::fs::write(
        &config,
        r#"{"registry_tls": true, "registry": "127.0.0.1:9"}"#,
    )
    .unwrap();
    let out = run(&["-config", config.to_str().unwrap(), "-identity", ""]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("-registry-tls needs -registry-fingerprint")
    );

    let out = run(&["-registry", "not an address", "-identity", ""]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-registry"));

    let out = run(&[
        "-keepalive",
        "soon",
        "-registry",
        "127.0.0.1:9",
        "-identity",
        "",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-keepalive"));
}
