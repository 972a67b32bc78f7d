//! The daemon's IPC server: reference clients (raw frames, no Hello) and the Rust SDK, error
//! texts, ownership of connections, oversized frames, large writes and socket-file safety.

mod daemon_support;

use daemon_support::{make_trust, within, Rendezvous};
use pilot::daemon::ipc;
use pilot::driver::Driver;
use pilot::ipc::{Command, Event, FrameDecoder};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// A client speaking raw frames, as one written for the reference daemon would.
struct Raw {
    stream: UnixStream,
    decoder: FrameDecoder,
}

impl Raw {
    async fn connect(path: &Path) -> Raw {
        Raw {
            stream: UnixStream::connect(path).await.unwrap(),
            decoder: FrameDecoder::new(),
        }
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn command(&mut self, command: &Command) {
        let mut out = Vec::new();
        command.encode_framed(&mut out).unwrap();
        self.send_bytes(&out).await;
    }

    /// The next message, or `None` when the daemon closed the socket.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(m) = self.decoder.next_message().unwrap() {
                return Some(Event::decode(m).unwrap());
            }
            let mut buf = [0u8; 65536];
            let n = within(self.stream.read(&mut buf)).await.ok()?;
            if n == 0 {
                return None;
            }
            self.decoder.extend(&buf[..n]);
        }
    }

    async fn error(&mut self) -> String {
        loop {
            if let Event::Error { message, .. } = self.next().await.unwrap() {
                return message;
            }
        }
    }
}

async fn serve(
    rv: &Rendezvous,
    dir: &Path,
) -> (
    pilot::daemon::Daemon,
    pilot::daemon::Daemon,
    std::path::PathBuf,
) {
    let a = rv.daemon(11).await;
    let mut public = rv.config();
    public.public = true;
    let b = rv
        .daemon_with(12, public, pilot::net::MemStorage::new())
        .await;
    let path = dir.join("run").join("pilot.sock");
    let listener = ipc::bind(&path).await.unwrap();
    tokio::spawn(ipc::serve(listener, a.handle.clone()));
    (a, b, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_clients_errors_ownership_and_oversized_frames() {
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b, path) = serve(&rv, dir.path()).await;
    make_trust(&a.handle, &b.handle).await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);

    let mut one = Raw::connect(&path).await;
    one.command(&Command::Info).await;
    match one.next().await.unwrap() {
        Event::Json { json, .. } => {
            let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
            assert_eq!(v["node_id"], a.handle.node_id());
        }
        other => panic!("{other:?}"),
    }
    one.send_bytes(&[0, 0, 0, 1, 0x99]).await;
    assert_eq!(one.error().await, "unknown command: 0x99");
    one.send_bytes(&[0, 0, 0, 1, 0x01]).await;
    assert_eq!(one.error().await, "bind: missing port");
    one.send_bytes(&[0, 0, 0, 2, 0x0F, 0x09]).await;
    assert_eq!(one.error().await, "handshake: unknown sub-command 0x09");

    // Client one dials B's echo; client two may not touch that connection.
    one.command(&Command::Dial {
        addr: b.handle.address(),
        port: 7,
    })
    .await;
    let conn = match one.next().await.unwrap() {
        Event::DialOk { conn } => conn,
        other => panic!("{other:?}"),
    };
    let mut two = Raw::connect(&path).await;
    two.command(&Command::Send {
        conn,
        data: b"intruder".to_vec(),
    })
    .await;
    assert_eq!(two.error().await, format!("connection {conn} not found"));
    two.command(&Command::Close { conn }).await;
    assert_eq!(two.next().await, Some(Event::CloseOk { conn }));

    // The owner's connection is untouched, and a 1 MiB message is taken whole.
    let big: Vec<u8> = (0..(1 << 20) - 5).map(|i| (i % 253) as u8).collect();
    one.command(&Command::Send {
        conn,
        data: big.clone(),
    })
    .await;
    let mut echoed = Vec::new();
    while echoed.len() < big.len() {
        match one.next().await.unwrap() {
            Event::Recv { conn: c, data } if c == conn => echoed.extend_from_slice(&data),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(echoed, big);

    // An oversized frame ends that client only.
    two.send_bytes(&(2u32 << 20).to_be_bytes()).await;
    assert_eq!(two.next().await, None);
    one.command(&Command::Info).await;
    assert!(matches!(one.next().await, Some(Event::Json { .. })));

    // Disconnecting closes what the client owned: B sees the echo connection end.
    drop(one);
    let mut three = Raw::connect(&path).await;
    three.command(&Command::Info).await;
    assert!(matches!(three.next().await, Some(Event::Json { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_closes_a_connection_of_another_client() {
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b, path) = serve(&rv, dir.path()).await;
    make_trust(&a.handle, &b.handle).await;
    let mut owner = Raw::connect(&path).await;
    owner
        .command(&Command::Dial {
            addr: b.handle.address(),
            port: 7,
        })
        .await;
    let conn = match owner.next().await.unwrap() {
        Event::DialOk { conn } => conn,
        other => panic!("{other:?}"),
    };
    let mut operator = Raw::connect(&path).await;
    operator.command(&Command::Disconnect { conn }).await;
    assert_eq!(operator.next().await, Some(Event::DisconnectOk { conn }));
    // The owner is told its connection ended.
    assert_eq!(owner.next().await, Some(Event::CloseOk { conn }));

    operator
        .command(&Command::Disconnect { conn: 999_999 })
        .await;
    assert_eq!(
        operator.error().await,
        "disconnect: connection 999999 not found"
    );
    operator.send_bytes(&[0, 0, 0, 3, 0x26, 0, 1]).await;
    assert_eq!(operator.error().await, "disconnect: missing conn_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_gets_extensions_and_large_writes_flow() {
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b, path) = serve(&rv, dir.path()).await;
    make_trust(&a.handle, &b.handle).await;

    let driver = Driver::connect(&path).await.unwrap();
    let features = driver.features();
    assert!(features.credit && features.unbind && features.bound_datagrams);
    let info = driver.info().await.unwrap();
    assert_eq!(info.node_id, a.handle.node_id());

    let mut stream = within(driver.dial(b.handle.address(), 7)).await.unwrap();
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 241) as u8).collect();
    let (mut rd, mut wr) = tokio::io::split(&mut stream);
    let expected = data.clone();
    let writer = async move {
        wr.write_all(&data).await.unwrap();
    };
    let reader = async move {
        let mut got = vec![0u8; expected.len()];
        rd.read_exact(&mut got).await.unwrap();
        assert!(got == expected, "echo differs");
    };
    within(async { tokio::join!(writer, reader) }).await;

    // A listener can be closed without disconnecting.
    let listener = driver.listen(4000).await.unwrap();
    listener.close().await.unwrap();
    let again = driver.listen(4000).await;
    assert!(again.is_ok(), "{again:?}");
}

#[tokio::test]
async fn socket_file_safety() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file is never replaced.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"precious").unwrap();
    assert!(matches!(
        ipc::bind(&file).await,
        Err(ipc::SocketError::NotASocket(_))
    ));
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");

    // A live listener is refused; a stale socket file is replaced.
    let path = dir.path().join("pilot.sock");
    let live = ipc::bind(&path).await.unwrap();
    assert!(matches!(
        ipc::bind(&path).await,
        Err(ipc::SocketError::InUse(_))
    ));
    drop(live);
    let again = ipc::bind(&path).await;
    assert!(again.is_ok(), "{:?}", again.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_from_clients_never_hurt_the_daemon() {
    use rand_core::Rng as _;
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_a, _b, path) = serve(&rv, dir.path()).await;
    let mut rng = pilot::net::seeded_rng(77);
    for round in 0..60 {
        let mut raw = Raw::connect(&path).await;
        let len = (rng.next_u32() % 300) as usize;
        let mut bytes = vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        if round % 2 == 0 && len > 5 {
            // A plausible frame with a random code and payload.
            let body = (len - 4) as u32;
            bytes[..4].copy_from_slice(&body.to_be_bytes());
        }
        raw.send_bytes(&bytes).await;
        drop(raw);
    }
    let mut check = Raw::connect(&path).await;
    check.command(&Command::Info).await;
    assert!(matches!(check.next().await, Some(Event::Json { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_stalls_only_itself() {
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b, path) = serve(&rv, dir.path()).await;
    make_trust(&a.handle, &b.handle).await;

    // A reference client pumps 8 MiB into the echo and never reads its socket.
    let mut sleeper = Raw::connect(&path).await;
    sleeper
        .command(&Command::Dial {
            addr: b.handle.address(),
            port: 7,
        })
        .await;
    let conn = match sleeper.next().await.unwrap() {
        Event::DialOk { conn } => conn,
        other => panic!("{other:?}"),
    };
    let chunk = vec![1u8; 512 << 10];
    let pump = tokio::spawn(async move {
        for _ in 0..16 {
            let mut out = Vec::new();
            Command::Send {
                conn,
                data: chunk.clone(),
            }
            .encode_framed(&mut out)
            .unwrap();
            // Blocks once the daemon stops reading this client: that is the point.
            if sleeper.stream.write_all(&out).await.is_err() {
                break;
            }
        }
        sleeper
    });

    // Meanwhile another client moves data through the same daemon.
    let driver = Driver::connect(&path).await.unwrap();
    let mut stream = within(driver.dial(b.handle.address(), 7)).await.unwrap();
    let data = vec![9u8; 2 << 20];
    let (mut rd, mut wr) = tokio::io::split(&mut stream);
    within(async {
        let w = async { wr.write_all(&data).await.unwrap() };
        let r = async {
            let mut got = vec![0u8; data.len()];
            rd.read_exact(&mut got).await.unwrap();
            assert!(got == data);
        };
        tokio::join!(w, r);
    })
    .await;
    let info = within(driver.info()).await.unwrap();
    assert_eq!(info.node_id, a.handle.node_id());
    pump.abort();
}

/// A client's socket as the daemon writes it: the first write is taken (and handed to the
/// test), every later one fails as writing to a client that closed its socket does.
struct ClosesAfterFirstWrite {
    first: Option<tokio::sync::oneshot::Sender<Vec<u8>>>,
    refused: Option<tokio::sync::oneshot::Sender<()>>,
}

impl tokio::io::AsyncWrite for ClosesAfterFirstWrite {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if let Some(first) = self.first.take() {
            let _ = first.send(buf.to_vec());
            return std::task::Poll::Ready(Ok(buf.len()));
        }
        if let Some(refused) = self.refused.take() {
            let _ = refused.send(());
        }
        std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A program that sends its last data and a Close and exits without reading the replies
/// (`pilotctl publish`): the daemon's write to it fails, and what it sent still reaches the
/// peer, then the end of the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_sent_before_a_client_exits_reaches_the_peer() {
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _path) = serve(&rv, dir.path()).await;
    make_trust(&a.handle, &b.handle).await;
    let mut listener = pilot::services::conn::ServiceListener::bind(&b.handle, 1000)
        .await
        .unwrap();
    let received = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        all
    });

    let (mut client, daemon_side) = tokio::io::duplex(1 << 16);
    let (first, first_write) = tokio::sync::oneshot::channel();
    let (refused, write_refused) = tokio::sync::oneshot::channel();
    let writer = ClosesAfterFirstWrite {
        first: Some(first),
        refused: Some(refused),
    };
    let served = tokio::spawn(ipc::serve_client(daemon_side, writer, a.handle.clone()));
    let frame = |command: Command| {
        let mut out = Vec::new();
        command.encode_framed(&mut out).unwrap();
        out
    };

    client
        .write_all(&frame(Command::Dial {
            addr: b.handle.address(),
            port: 1000,
        }))
        .await
        .unwrap();
    let mut decoder = FrameDecoder::new();
    decoder.extend(&within(first_write).await.unwrap());
    let conn = match Event::decode(decoder.next_message().unwrap().unwrap()).unwrap() {
        Event::DialOk { conn } => conn,
        other => panic!("{other:?}"),
    };
    // Info draws a reply, and its write fails: the client has stopped reading.
    client.write_all(&frame(Command::Info)).await.unwrap();
    within(write_refused).await.unwrap();
    let mut last = frame(Command::Send {
        conn,
        data: b"last words".to_vec(),
    });
    last.extend(frame(Command::Close { conn }));
    client.write_all(&last).await.unwrap();
    drop(client);

    assert_eq!(within(received).await.unwrap(), b"last words");
    within(served).await.unwrap().unwrap();
}
