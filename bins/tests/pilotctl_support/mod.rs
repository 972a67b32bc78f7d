//! A fake daemon with fixed behaviour for pilotctl tests, and a runner for the real binary.
//!
//! The daemon answers Info, the trust operations and the registry operations with canned
//! replies, echoes on port 7, answers `got: <data>` on other ports, and delivers one message
//! to every port bound. It optionally accepts the Hello extensions.

#![allow(dead_code)]

use pilot::ipc::{Command, Event, FrameDecoder, HandshakeCommand};
use pilot::wire::Addr;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// Failure guard for one pilotctl run.
pub const GUARD: Duration = Duration::from_secs(60);

/// This node's ID in the fake.
pub const NODE_ID: u32 = 42;

/// The fake daemon's Info reply.
pub fn info_json() -> Value {
    json!({
        "node_id": NODE_ID, "address": "0:0000.0000.002A", "hostname": "fake",
        "uptime_secs": 75.0, "connections": 1, "ports": 2, "peers": 2,
        "encrypted_peers": 2, "authenticated_peers": 1, "encrypt": true, "identity": true,
        "public_key": "cHVibGljLWtleS1vZi10aGUtZmFrZS1kYWVtb24tMDE=", "owner": "",
        "bytes_sent": 1000, "bytes_recv": 2000, "pkts_sent": 10, "pkts_recv": 20,
        "peer_list": [
            {"node_id": 5, "endpoint": "192.0.2.5:4000", "encrypted": true, "authenticated": true},
            {"node_id": 77, "endpoint": "198.51.100.7:5000", "encrypted": true, "authenticated": false}
        ],
        "conn_list": [
            {"id": 1, "local_port": 49152, "remote_addr": "0:0000.0000.0005", "remote_port": 1000,
             "state": "ESTABLISHED", "cong_win": 40960, "srtt_ms": 12.0, "bytes_sent": 10,
             "bytes_recv": 20, "retransmits": 0}
        ],
        "a_future_field": "ignored"
    })
}

/// What a connection of the fake does with data.
#[derive(Clone, Copy)]
enum Service {
    Echo,
    Reply,
}

/// A fake daemon serving on a socket in a temp dir, with a temp HOME for pilotctl.
pub struct FakeDaemon {
    dir: tempfile::TempDir,
    socket: PathBuf,
    log: Arc<Mutex<Vec<Command>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeDaemon {
    /// Starts serving (inside a tokio runtime). `extended`: accept the Hello extensions.
    pub fn start(extended: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("pilot.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(serve(listener, extended, log.clone()));
        FakeDaemon {
            dir,
            socket,
            log,
            task,
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A HOME for pilotctl.
    pub fn home(&self) -> PathBuf {
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        home
    }

    /// Every command received so far.
    pub fn commands(&self) -> Vec<Command> {
        self.log.lock().unwrap().clone()
    }

    /// Runs pilotctl against this daemon.
    pub async fn pilotctl(&self, args: &[&str]) -> Run {
        pilotctl(args, &self.home(), Some(&self.socket), None).await
    }
}

/// Serves clients on `listener` until the task is dropped.
pub async fn serve(listener: UnixListener, extended: bool, log: Arc<Mutex<Vec<Command>>>) {
    let next_conn = Arc::new(AtomicU32::new(100));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(client(stream, extended, log.clone(), next_conn.clone()));
    }
}

async fn client(
    mut stream: UnixStream,
    extended: bool,
    log: Arc<Mutex<Vec<Command>>>,
    next_conn: Arc<AtomicU32>,
) {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut conns: HashMap<u32, Service> = HashMap::new();
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        decoder.extend(&buf[..n]);
        let mut replies = Vec::new();
        while let Ok(Some(message)) = decoder.next_message() {
            match Command::decode(message) {
                Ok(cmd) => {
                    log.lock().unwrap().push(cmd.clone());
                    handle(cmd, extended, &mut conns, &next_conn, &mut replies);
                }
                Err(e) => replies.push(Event::error(e.to_string())),
            }
        }
        let mut out = Vec::new();
        for event in replies {
            event.encode_framed(&mut out).unwrap();
        }
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn reply(code: u8, value: Value) -> Event {
    Event::Json {
        code,
        json: serde_json::to_vec(&value).unwrap(),
    }
}

fn handle(
    cmd: Command,
    extended: bool,
    conns: &mut HashMap<u32, Service>,
    next_conn: &AtomicU32,
    out: &mut Vec<Event>,
) {
    let handshake_reply =
        |node: u32, status: &str| reply(0x10, json!({"node_id": node, "status": status}));
    match cmd {
        Command::Hello(_) if extended => out.push(reply(
            0x21,
            json!({"version": 1, "features": ["credit", "unbind", "bound-datagrams"],
                   "recv_credit": 65536, "send_credit": 65536}),
        )),
        Command::Hello(_) => out.push(Event::error("unknown command: 0x20")),
        Command::Info => out.push(reply(0x0E, info_json())),
        Command::Handshake(h) => out.push(match h {
            HandshakeCommand::Send { node, .. } => handshake_reply(node, "sent"),
            HandshakeCommand::Approve { node } => handshake_reply(node, "approved"),
            HandshakeCommand::Reject { node, .. } => handshake_reply(node, "rejected"),
            HandshakeCommand::Revoke { node: 99 } => {
                Event::error("handshake revoke: node 99 was not trusted")
            }
            HandshakeCommand::Revoke { node } => handshake_reply(node, "revoked"),
            HandshakeCommand::Pending => reply(
                0x10,
                json!({"pending": [{"node_id": 9, "public_key": "a2V5LW9mLW5vZGUtOQ==",
                                     "justification": "let me in", "received_at": 1768480496}]}),
            ),
            HandshakeCommand::Trusted => reply(
                0x10,
                json!({"trusted": [{"node_id": 7, "public_key": "a2V5LW9mLW5vZGUtNw==",
                                     "approved_at": 1768480496, "mutual": true, "network": 0}]}),
            ),
        }),
        Command::ResolveHostname(name) if name == "alice" => out.push(reply(
            0x12,
            json!({"type": "resolve_hostname_ok", "node_id": 5, "address": "0:0000.0000.0005",
                   "public": true, "hostname": "alice"}),
        )),
        Command::ResolveHostname(_) => {
            out.push(Event::error("resolve_hostname: hostname not found"))
        }
        Command::SetHostname(name) => out.push(reply(
            0x14,
            json!({"type": "set_hostname_ok", "node_id": NODE_ID, "hostname": name}),
        )),
        Command::SetVisibility(public) => out.push(reply(
            0x16,
            json!({"type": "set_visibility_ok", "node_id": NODE_ID,
                   "visibility": if public { "public" } else { "private" }}),
        )),
        Command::SetWebhook(url) if url.starts_with("http://refused") => {
            out.push(Event::error("webhook URL refused"))
        }
        Command::SetWebhook(url) => out.push(reply(0x1C, json!({ "webhook": url }))),
        Command::Dial { addr, .. } if addr.node == 404 => {
            out.push(Event::error("dial: no route to host"))
        }
        Command::Dial { port, .. } => {
            let conn = next_conn.fetch_add(1, Ordering::Relaxed);
            conns.insert(
                conn,
                if port == 7 {
                    Service::Echo
                } else {
                    Service::Reply
                },
            );
            out.push(Event::DialOk { conn });
        }
        Command::Send { conn, data } => match conns.get(&conn) {
            Some(Service::Echo) => {
                if extended {
                    out.push(Event::SendCredit {
                        conn,
                        bytes: data.len() as u32,
                    });
                }
                out.push(Event::Recv { conn, data });
            }
            Some(Service::Reply) => {
                let mut text = b"got: ".to_vec();
                text.extend_from_slice(&data);
                out.push(Event::Recv { conn, data: text });
            }
            None => out.push(Event::error(format!("connection {conn} not found"))),
        },
        Command::Close { conn } => {
            conns.remove(&conn);
            out.push(Event::CloseOk { conn });
        }
        Command::Bind { port } => {
            out.push(Event::BindOk { port });
            let conn = next_conn.fetch_add(1, Ordering::Relaxed);
            conns.insert(conn, Service::Reply);
            out.push(Event::Accept {
                local_port: port,
                conn,
                remote: Addr::new(0, 3),
                remote_port: 49152,
            });
            out.push(Event::Recv {
                conn,
                data: b"hello from peer".to_vec(),
            });
        }
        Command::Unbind { port } => out.push(Event::UnbindOk { port }),
        Command::RecvCredit { .. } => {}
        other => out.push(Event::error(format!(
            "fake daemon does not serve {other:?}"
        ))),
    }
}

/// The outcome of one pilotctl run.
#[derive(Debug)]
pub struct Run {
    /// Exit status.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Stdout parsed as the success envelope; returns `data`.
    pub fn data(&self) -> Value {
        assert_eq!(self.code, 0, "pilotctl failed: {self:?}");
        let v: Value = serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"));
        assert_eq!(v["status"], "ok", "{self:?}");
        v["data"].clone()
    }

    /// Stderr parsed as the error envelope.
    pub fn error(&self) -> Value {
        assert_eq!(self.code, 1, "expected failure: {self:?}");
        assert!(self.stdout.is_empty(), "errors go to stderr: {self:?}");
        let v: Value = serde_json::from_str(self.stderr.trim())
            .unwrap_or_else(|e| panic!("stderr is not JSON ({e}): {self:?}"));
        assert_eq!(v["status"], "error", "{self:?}");
        v
    }
}

/// Runs the pilotctl binary with a clean environment: `home` as HOME, `socket` as PILOT_SOCKET,
/// and `stdin` piped in (else stdin is empty).
pub async fn pilotctl(
    args: &[&str],
    home: &Path,
    socket: Option<&Path>,
    stdin: Option<&str>,
) -> Run {
    pilotctl_env(args, home, socket, stdin, &[]).await
}

/// [`pilotctl`] with extra environment variables.
pub async fn pilotctl_env(
    args: &[&str],
    home: &Path,
    socket: Option<&Path>,
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pilotctl"));
    cmd.args(args)
        .env("HOME", home)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("PILOT_SOCKET")
        .env_remove("PILOT_REGISTRY")
        .env_remove("PILOT_DAEMON_BIN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(socket) = socket {
        cmd.env("PILOT_SOCKET", socket);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    let output = tokio::time::timeout(GUARD, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("pilotctl {args:?} did not finish"))
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
