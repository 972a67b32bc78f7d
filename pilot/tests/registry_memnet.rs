//! The registry server on a network that is not tokio's sockets: an in-memory `Network` of
//! duplex pipes, under paused (virtual) time and a fixed wall clock. This is the seam the
//! simulator plugs into; here it lets the maintenance tick run for virtual minutes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use pilot::net::{FixedClock, MemStorage, Network, TcpListener, TcpStream, UdpSocket};
use pilot::registry::client::{Client, Signer};
use pilot::registry::server::{serve, ServerConfig};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::mpsc;

type Backlog = mpsc::UnboundedSender<(MemStream, SocketAddr)>;

/// Hosts on one in-memory network; each handle is one host (one IP).
#[derive(Clone)]
struct MemNet {
    ip: [u8; 4],
    listeners: Arc<Mutex<HashMap<SocketAddr, Backlog>>>,
    next_port: Arc<Mutex<u16>>,
}

impl MemNet {
    fn new() -> Self {
        MemNet {
            ip: [10, 0, 0, 1],
            listeners: Arc::default(),
            next_port: Arc::new(Mutex::new(40_000)),
        }
    }
    fn host(&self, ip: [u8; 4]) -> Self {
        MemNet { ip, ..self.clone() }
    }
    fn port(&self) -> u16 {
        let mut p = self.next_port.lock().unwrap();
        *p += 1;
        *p
    }
}

struct MemStream {
    io: DuplexStream,
    local: SocketAddr,
    peer: SocketAddr,
}

impl AsyncRead for MemStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for MemStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl TcpStream for MemStream {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

struct MemListener {
    addr: SocketAddr,
    backlog: tokio::sync::Mutex<mpsc::UnboundedReceiver<(MemStream, SocketAddr)>>,
}

impl TcpListener for MemListener {
    type Stream = MemStream;
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
    async fn accept(&self) -> io::Result<(MemStream, SocketAddr)> {
        self.backlog
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| io::ErrorKind::BrokenPipe.into())
    }
}

/// UDP is not part of the registry; this network has none.
struct NoUdp;

impl UdpSocket for NoUdp {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Err(io::ErrorKind::Unsupported.into())
    }
    async fn send_to(&self, _: &[u8], _: SocketAddr) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
    async fn recv_from(&self, _: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

impl Network for MemNet {
    type Udp = NoUdp;
    type Listener = MemListener;
    type Stream = MemStream;

    async fn bind_udp(&self, _: SocketAddr) -> io::Result<NoUdp> {
        Err(io::ErrorKind::Unsupported.into())
    }

    async fn bind_tcp(&self, addr: SocketAddr) -> io::Result<MemListener> {
        let port = if addr.port() == 0 {
            self.port()
        } else {
            addr.port()
        };
        let addr = SocketAddr::from((self.ip, port));
        let (tx, rx) = mpsc::unbounded_channel();
        self.listeners.lock().unwrap().insert(addr, tx);
        Ok(MemListener {
            addr,
            backlog: tokio::sync::Mutex::new(rx),
        })
    }

    async fn connect_tcp(&self, addr: SocketAddr) -> io::Result<MemStream> {
        let local = SocketAddr::from((self.ip, self.port()));
        let (a, b) = tokio::io::duplex(64 << 10);
        let backlog = self.listeners.lock().unwrap().get(&addr).cloned();
        let backlog = backlog.ok_or(io::ErrorKind::ConnectionRefused)?;
        backlog
            .send((
                MemStream {
                    io: b,
                    local: addr,
                    peer: local,
                },
                local,
            ))
            .map_err(|_| io::ErrorKind::ConnectionRefused)?;
        Ok(MemStream {
            io: a,
            local,
            peer: addr,
        })
    }
}

fn sk(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}
fn signer(n: u8) -> Signer {
    let key = sk(n);
    Arc::new(move |msg: &str| STANDARD.encode(key.sign(msg.as_bytes()).to_bytes()))
}

#[tokio::test(start_paused = true)]
async fn maintenance_tick_reaps_silent_nodes_in_virtual_time() {
    let net = MemNet::new();
    let server_net = net.host([10, 0, 0, 1]);
    let listener = server_net
        .bind_tcp("0.0.0.0:9000".parse().unwrap())
        .await
        .unwrap();
    let clock = FixedClock::starting_at(1_735_689_600);
    let server = serve(
        server_net,
        listener,
        MemStorage::new(),
        clock,
        ServerConfig::default(),
    )
    .await
    .unwrap();
    let addr = server.local_addr();

    let mut alive = Client::new(net.host([192, 0, 2, 1]), addr).with_signer(signer(1));
    let alive_id = alive
        .register(
            &STANDARD.encode(sk(1).verifying_key().to_bytes()),
            ":4000",
            "",
            "alive",
        )
        .await
        .unwrap()
        .node_id;
    let mut silent = Client::new(net.host([192, 0, 2, 2]), addr).with_signer(signer(2));
    let silent_id = silent
        .register(
            &STANDARD.encode(sk(2).verifying_key().to_bytes()),
            ":4000",
            "",
            "",
        )
        .await
        .unwrap()
        .node_id;
    assert_eq!(
        server.with_registry(|r| r.data().nodes[&alive_id].real_addr),
        Some("192.0.2.1:4000".parse().unwrap()),
        "the endpoint is the TCP peer of the seam's stream"
    );

    // Five virtual minutes: one node heartbeats every 30 s, the other stays silent.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(30)).await;
        alive.heartbeat(alive_id).await.unwrap();
    }
    let (alive_live, silent_live) = server.with_registry(|r| {
        (
            r.data().live(alive_id).is_some(),
            r.data().live(silent_id).is_some(),
        )
    });
    assert!(alive_live, "a heartbeating node is kept");
    assert!(!silent_live, "a silent node is reaped by the tick");
    // Its record waits, dormant, for its key.
    assert!(server.with_registry(|r| r.data().nodes[&silent_id].dormant));
    server.shutdown().await;
}

/// One story on the in-memory network; returns every reply and the final snapshot bytes.
async fn story() -> (Vec<String>, Vec<u8>) {
    use pilot::net::Storage as _;
    let net = MemNet::new();
    let server_net = net.host([10, 0, 0, 1]);
    let listener = server_net
        .bind_tcp("0.0.0.0:9000".parse().unwrap())
        .await
        .unwrap();
    let storage = MemStorage::new();
    let clock = FixedClock::starting_at(1_735_689_600);
    let server = serve(
        server_net,
        listener,
        storage.clone(),
        clock,
        ServerConfig::default(),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let mut transcript = Vec::new();
    let mut clients = Vec::new();
    for n in 1..=3u8 {
        let mut c = Client::new(net.host([192, 0, 2, n]), addr).with_signer(signer(n));
        let r = c
            .register(
                &STANDARD.encode(sk(n).verifying_key().to_bytes()),
                ":4000",
                "",
                &format!("n{n}"),
            )
            .await
            .unwrap();
        transcript.push(format!("{r:?}"));
        clients.push((c, r.node_id));
    }
    let (a, b) = (clients[0].1, clients[1].1);
    clients[0].0.request_handshake(a, b, "hello").await.unwrap();
    tokio::time::sleep(Duration::from_secs(45)).await;
    transcript.push(format!(
        "{:?}",
        clients[1].0.poll_handshakes(b).await.unwrap()
    ));
    clients[1].0.respond_handshake(b, a, true).await.unwrap();
    transcript.push(format!(
        "{:?}",
        clients[0].0.poll_handshakes(a).await.unwrap()
    ));
    transcript.push(format!("{:?}", clients[0].0.resolve(a, b).await.unwrap()));
    let c = clients[2].1;
    transcript.push(format!(
        "{:?}",
        clients[2].0.set_tags(c, &["#x"]).await.unwrap()
    ));
    tokio::time::sleep(Duration::from_secs(300)).await;
    transcript.push(format!("{:?}", clients[0].0.heartbeat(a).await));
    server.shutdown().await;
    let snapshot = storage
        .read(pilot::registry::persist::SNAPSHOT)
        .unwrap()
        .unwrap();
    (transcript, snapshot)
}

#[tokio::test(start_paused = true)]
async fn same_story_same_bytes() {
    let first = story().await;
    let second = story().await;
    assert_eq!(first.0, second.0);
    assert_eq!(first.1, second.1, "snapshots differ byte for byte");
    assert!(first.0.iter().any(|l| l.contains("hello")));
}

async fn get(net: &MemNet, addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = net.connect_tcp(addr).await.unwrap();
    // Every request claims to come from loopback; only the TCP peer may count.
    s.write_all(format!("GET {path} HTTP/1.1\r\nX-Real-IP: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Q-27b: `/api/stats` walks the nodes at most once per second.
#[tokio::test(start_paused = true)]
async fn stats_are_cached_for_a_second() {
    let net = MemNet::new();
    let server_net = net.host([10, 0, 0, 1]);
    let listener = server_net
        .bind_tcp("0.0.0.0:9000".parse().unwrap())
        .await
        .unwrap();
    let web = server_net
        .bind_tcp("0.0.0.0:8080".parse().unwrap())
        .await
        .unwrap();
    let web_addr = web.local_addr().unwrap();
    let clock = FixedClock::starting_at(1_735_689_600);
    let server = serve(
        server_net,
        listener,
        MemStorage::new(),
        clock,
        ServerConfig::default(),
    )
    .await
    .unwrap();
    server.serve_http(web);
    let browser = net.host([198, 51, 100, 1]);
    assert!(get(&browser, web_addr, "/api/stats")
        .await
        .contains("\"total_nodes\":0"));
    let mut c = Client::new(net.host([192, 0, 2, 1]), server.local_addr());
    c.register(
        &STANDARD.encode(sk(1).verifying_key().to_bytes()),
        "",
        "",
        "",
    )
    .await
    .unwrap();
    assert!(get(&browser, web_addr, "/api/stats")
        .await
        .contains("\"total_nodes\":0"));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(get(&browser, web_addr, "/api/stats")
        .await
        .contains("\"total_nodes\":1"));
    // A remote peer gets no metrics, whatever headers it sends.
    assert!(get(&browser, web_addr, "/metrics")
        .await
        .starts_with("HTTP/1.1 403"));
    server.shutdown().await;
}
