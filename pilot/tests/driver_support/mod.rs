//! A scripted fake daemon for driver tests: a real Unix socket in a temp dir, and a handle on
//! each accepted client that reads typed commands and writes typed events, so a test plays the
//! daemon's side message by message.

#![allow(dead_code)]

use pilot::ipc::frame::encode_message;
use pilot::ipc::{Command, Event, FrameDecoder};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// Failure guard: no step of a test should take anywhere near this long.
pub const GUARD: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test if it takes longer than [`GUARD`].
pub async fn guard<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A listening fake daemon.
pub struct FakeDaemon {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl FakeDaemon {
    /// Listens on a fresh socket in a temp dir.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pilot.sock");
        let listener = UnixListener::bind(&path).unwrap();
        FakeDaemon {
            _dir: dir,
            path,
            listener,
        }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next client.
    pub async fn accept(&self) -> Client {
        let (stream, _) = guard("a client", self.listener.accept()).await.unwrap();
        Client {
            stream,
            decoder: FrameDecoder::new(),
        }
    }

    /// The next client, after answering its Hello as a reference daemon would (an error).
    pub async fn accept_reference(&self) -> Client {
        let mut client = self.accept().await;
        assert!(matches!(client.recv().await, Command::Hello(_)));
        client.send(Event::error("unknown command: 0x20")).await;
        client
    }

    /// The next client, after accepting its Hello with every feature and these credits.
    pub async fn accept_extended(&self, recv_credit: u32, send_credit: u32) -> Client {
        let mut client = self.accept().await;
        let Command::Hello(json) = client.recv().await else {
            panic!("expected Hello first")
        };
        let hello: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(hello["version"], 1);
        let reply = serde_json::json!({
            "version": 1,
            "features": ["credit", "unbind", "bound-datagrams"],
            "recv_credit": recv_credit,
            "send_credit": send_credit,
        });
        client.send_json(0x21, &reply).await;
        client
    }
}

/// The daemon's side of one client connection.
pub struct Client {
    stream: UnixStream,
    decoder: FrameDecoder,
}

impl Client {
    /// The next command from the client.
    pub async fn recv(&mut self) -> Command {
        self.try_recv()
            .await
            .expect("client closed the socket while a command was expected")
    }

    /// The next command, or `None` if the client closed the socket.
    pub async fn try_recv(&mut self) -> Option<Command> {
        loop {
            if let Some(message) = self.decoder.next_message().unwrap() {
                return Some(Command::decode(message).unwrap());
            }
            let mut buf = vec![0u8; 64 << 10];
            let n = guard("a command", self.stream.read(&mut buf))
                .await
                .unwrap();
            if n == 0 {
                return None;
            }
            self.decoder.extend(&buf[..n]);
        }
    }

    /// Sends an event.
    pub async fn send(&mut self, event: Event) {
        let mut out = Vec::new();
        event.encode_framed(&mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// Sends a JSON reply with `code`.
    pub async fn send_json(&mut self, code: u8, json: &serde_json::Value) {
        let json = serde_json::to_vec(json).unwrap();
        self.send(Event::Json { code, json }).await;
    }

    /// Sends a raw message (code and payload), for malformed replies.
    pub async fn send_raw(&mut self, code: u8, payload: &[u8]) {
        let mut out = Vec::new();
        encode_message(code, &[payload], &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }
}
