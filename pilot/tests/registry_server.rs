//! The registry server on real loopback TCP: clients, push delivery, hostile connections,
//! restart with persistence, and hot-standby replication with a partition that heals.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use pilot::net::{DiskStorage, MemStorage, Network, Storage, SystemClock, TokioNet};
use pilot::registry::client::{Client, HandshakeEvent, Signer};
use pilot::registry::ratelimit::{Rate, Rates};
use pilot::registry::server::{serve, serve_standby, ServerConfig, ServerHandle};
use pilot::registry::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn sk(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}
fn pk(n: u8) -> String {
    STANDARD.encode(sk(n).verifying_key().to_bytes())
}
fn signer(n: u8) -> Signer {
    let key = sk(n);
    Arc::new(move |msg: &str| STANDARD.encode(key.sign(msg.as_bytes()).to_bytes()))
}

fn config() -> ServerConfig {
    ServerConfig {
        registry: Config {
            rates: Rates {
                new_registration: Rate::per_secs(1000, 1),
                ..Rates::default()
            },
            replication_token: Some("secret".into()),
            admin_token: Some("admin".into()),
            ..Config::default()
        },
        reconnect_delay: Duration::from_millis(20),
        ..ServerConfig::default()
    }
}

async fn start<S: Storage>(storage: S, cfg: ServerConfig) -> ServerHandle<SystemClock> {
    let listener = TokioNet
        .bind_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    serve(TokioNet, listener, storage, SystemClock, cfg)
        .await
        .unwrap()
}

async fn client(addr: SocketAddr, n: u8) -> (Client<TokioNet>, u32) {
    let mut c = Client::new(TokioNet, addr).with_signer(signer(n));
    let reg = c.register(&pk(n), "0.0.0.0:4000", "", "").await.unwrap();
    (c, reg.node_id)
}

/// Guards a wait on an event so a broken build fails instead of hanging.
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("event did not happen")
}

#[tokio::test]
async fn clients_push_delivery_and_polling() {
    let server = start(MemStorage::new(), config()).await;
    let addr = server.local_addr();
    let (mut a, ida) = client(addr, 1).await;
    let (mut b, idb) = client(addr, 2).await;
    let (mut c, idc) = client(addr, 3).await;
    assert!(a.heartbeat(ida).await.unwrap() > 1_600_000_000);
    a.set_hostname(ida, "alpha").await.unwrap();
    assert_eq!(b.lookup(ida).await.unwrap()["hostname"], "alpha");
    assert!(b.resolve(idb, ida).await.is_err(), "a is private");

    // A subscribes with a request already queued: it arrives first.
    b.request_handshake(idb, ida, "queued").await.unwrap();
    let sub = Client::new(TokioNet, addr).with_signer(signer(1));
    let mut events = sub.subscribe_handshakes(ida).await.unwrap();
    let first = within(events.next_event()).await.unwrap().unwrap();
    assert!(
        matches!(first, HandshakeEvent::Request(r) if r.from_node_id == idb && r.justification == "queued")
    );
    // A new request reaches the subscriber without any poll.
    c.request_handshake(idc, ida, "pushed").await.unwrap();
    let second = within(events.next_event()).await.unwrap().unwrap();
    assert!(matches!(second, HandshakeEvent::Request(r) if r.from_node_id == idc));
    // Nothing is left for a poll: push delivery took it.
    assert!(a.poll_handshakes(ida).await.unwrap().requests.is_empty());

    // A accepts B; B (a polling, Go-style client) gets the response at its next poll.
    a.respond_handshake(ida, idb, true).await.unwrap();
    let polled = b.poll_handshakes(idb).await.unwrap();
    assert_eq!(polled.responses.len(), 1);
    assert!(polled.responses[0].accept);
    assert_eq!(b.resolve(idb, ida).await.unwrap(), "127.0.0.1:4000");
    // C never asked B, so B cannot "answer" it; C's request to A can be answered.
    assert!(b.respond_handshake(idb, idc, true).await.is_err());
    a.respond_handshake(ida, idc, false).await.unwrap();
    drop(events);
    server.shutdown().await;
}

#[tokio::test]
async fn hostile_connections_are_dropped_and_others_served() {
    let server = start(MemStorage::new(), config()).await;
    let addr = server.local_addr();
    for bad in [
        ((2u32 << 20).to_be_bytes().to_vec()),
        ([&5u32.to_be_bytes()[..], b"{{{{{"].concat()),
        ([&3u32.to_be_bytes()[..], b"[1]"].concat()),
    ] {
        let mut s = TokioNet.connect_tcp(addr).await.unwrap();
        s.write_all(&bad).await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            within(s.read(&mut buf)).await.unwrap_or(0),
            0,
            "dropped without reply"
        );
    }
    // A wrong-typed request gets an error reply and the connection stays usable.
    let (mut a, ida) = client(addr, 1).await;
    let mut bad = serde_json::Map::new();
    bad.insert("type".into(), "heartbeat".into());
    bad.insert("node_id".into(), "one".into());
    assert!(a.request(&bad).await.is_err());
    a.heartbeat(ida).await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn restart_keeps_acknowledged_state() {
    let dir = tempfile::tempdir().unwrap();
    let storage = DiskStorage::open(dir.path()).unwrap();
    let server = start(storage.clone(), config()).await;
    let (mut a, ida) = client(server.local_addr(), 1).await;
    a.set_tags(ida, &["#ai"]).await.unwrap();
    let mut proven = Client::new(TokioNet, server.local_addr()).with_signer(signer(2));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let idb = proven
        .register_signed(&pk(2), ":4000", "", "", now)
        .await
        .unwrap()
        .node_id;
    server.shutdown().await;

    let server = start(storage, config()).await;
    let (mut a, again) = client(server.local_addr(), 1).await;
    assert_eq!(again, ida);
    let info = a.lookup(ida).await.unwrap();
    assert_eq!(info["tags"], serde_json::json!(["ai"]));
    a.heartbeat(ida).await.unwrap();
    // The proof of possession survived the restart: an unsigned registration is refused.
    let mut thief = Client::new(TokioNet, server.local_addr());
    let err = thief.register(&pk(2), ":4000", "", "").await.unwrap_err();
    assert!(err.to_string().contains("proof of possession"), "{err}");
    assert!(a.lookup(idb).await.is_ok());
    server.shutdown().await;
}

/// A TCP forwarder the test can cut and heal, standing in for a network partition.
struct Link {
    addr: SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
    /// Connections forwarded so far.
    forwarded: Arc<std::sync::atomic::AtomicUsize>,
}

async fn link_to(target: SocketAddr) -> Link {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (cut, cut_rx) = tokio::sync::watch::channel(false);
    let forwarded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = forwarded.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            if *cut_rx.borrow() {
                continue;
            }
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut cut_rx = cut_rx.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    biased;
                    _ = cut_rx.wait_for(|c| *c) => {}
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                }
            });
        }
    });
    Link {
        addr,
        cut,
        forwarded,
    }
}

#[tokio::test]
async fn standby_follows_catches_up_after_partition_and_promotes() {
    let primary = start(MemStorage::new(), config()).await;
    let link = link_to(primary.local_addr()).await;
    let listener = TokioNet
        .bind_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let standby_store = MemStorage::new();
    let standby = serve_standby(
        TokioNet,
        listener,
        standby_store.clone(),
        SystemClock,
        config(),
        link.addr,
    )
    .await
    .unwrap();

    let (mut a, ida) = client(primary.local_addr(), 1).await;
    a.set_tags(ida, &["x"]).await.unwrap();
    a.set_task_exec(ida, true).await.unwrap();
    within(standby.wait_until(|r| {
        r.data()
            .nodes
            .get(&ida)
            .is_some_and(|n| n.task_exec && n.tags.len() == 1)
    }))
    .await;
    // The standby serves reads and refuses writes.
    let mut s = Client::new(TokioNet, standby.local_addr()).with_signer(signer(2));
    assert_eq!(
        s.lookup(ida).await.unwrap()["tags"],
        serde_json::json!(["x"])
    );
    assert!(s.register(&pk(2), "", "", "").await.is_err());

    // Partition: changes on the primary do not reach the standby until the link heals.
    link.cut.send_replace(true);
    let (_, idb) = client(primary.local_addr(), 2).await;
    link.cut.send_replace(false);
    within(standby.wait_until(|r| r.data().live(idb).is_some())).await;
    assert!(
        link.forwarded.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the standby reconnected after the partition"
    );

    // Promotion with one command (the admin request; `ServerHandle::promote` does the same
    // in-process): the standby accepts writes.
    let mut promote = serde_json::Map::new();
    promote.insert("type".into(), "promote".into());
    promote.insert("admin_token".into(), "wrong".into());
    assert!(s.request(&promote).await.is_err());
    promote.insert("admin_token".into(), "admin".into());
    s.request(&promote).await.unwrap();
    let (_, idc) = client(standby.local_addr(), 3).await;
    assert!(idc > idb, "IDs continue from the replicated counter");
    primary.shutdown().await;
    standby.shutdown().await;
}

#[tokio::test]
async fn replication_refuses_bad_tokens() {
    let server = start(MemStorage::new(), config()).await;
    let mut c = Client::new(TokioNet, server.local_addr());
    let mut req = serde_json::Map::new();
    req.insert("type".into(), "subscribe_replication".into());
    req.insert("token".into(), "wrong".into());
    let e = c.request(&req).await.unwrap_err().to_string();
    assert!(e.contains("invalid replication token"), "{e}");
    server.shutdown().await;
}

async fn http(addr: SocketAddr, request: &str) -> String {
    let mut s = TokioNet.connect_tcp(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    within(s.read_to_string(&mut out)).await.unwrap();
    out
}

#[tokio::test]
async fn http_status_and_metrics_endpoints() {
    let server = start(MemStorage::new(), config()).await;
    let listener = TokioNet
        .bind_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let web = listener.local_addr().unwrap();
    server.serve_http(listener);
    let (mut a, ida) = client(server.local_addr(), 1).await;
    a.set_tags(ida, &["ai"]).await.unwrap();
    a.lookup(12345).await.unwrap_err();

    let index = http(web, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(index.starts_with("HTTP/1.1 200") && index.contains("Pilot Protocol"));
    let stats = http(web, "GET /api/stats HTTP/1.1\r\n\r\n").await;
    assert!(stats.contains("Access-Control-Allow-Origin: *"));
    let body: serde_json::Value =
        serde_json::from_str(stats.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["total_nodes"], 1);
    assert_eq!(body["unique_tags"], 1);
    assert_eq!(body["nodes"][0]["address"], "0:0000.0000.0001");
    assert!(!stats.contains("127.0.0.1"), "no endpoints in public stats");
    let badge = http(web, "GET /api/badge/nodes HTTP/1.1\r\n\r\n").await;
    assert!(badge.contains("image/svg+xml") && badge.contains("no-cache"));
    let metrics = http(web, "GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(
        metrics.contains("pilot_requests_total{type=\"register\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("pilot_errors_total{type=\"lookup\"} 1"));
    assert!(metrics.contains("pilot_request_duration_seconds_count{type=\"set_tags\"} 1"));
    assert!(metrics.contains("pilot_nodes_online 1"));
    assert!(http(web, "GET /debug/pprof/ HTTP/1.1\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 404"));
    assert!(http(web, "POST / HTTP/1.1\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 405"));
    assert!(http(web, "nonsense\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 400"));
    server.shutdown().await;
}

#[tokio::test]
async fn tls_with_pinning_for_clients_and_replication() {
    use pilot::registry::tls::TlsIdentity;
    let storage = MemStorage::new();
    let mut rng = pilot::net::seeded_rng(7);
    let identity =
        Arc::new(TlsIdentity::load_or_generate(&storage, &mut rng, 1_735_689_600).unwrap());
    let pin = identity.fingerprint();
    let mut cfg = config();
    cfg.tls = Some(identity);
    let primary = start(storage, cfg).await;

    let mut a = Client::new(TokioNet, primary.local_addr())
        .with_signer(signer(1))
        .with_tls_pin(&pin);
    let id = a.register(&pk(1), ":4000", "", "").await.unwrap().node_id;
    a.heartbeat(id).await.unwrap();
    let wrong = "0".repeat(64);
    let mut b = Client::new(TokioNet, primary.local_addr()).with_tls_pin(&wrong);
    assert!(b.lookup(id).await.is_err(), "a wrong pin is refused");
    let mut plain = Client::new(TokioNet, primary.local_addr());
    assert!(
        plain.lookup(id).await.is_err(),
        "plain TCP is not served on a TLS port"
    );

    let mut standby_cfg = config();
    standby_cfg.primary_tls_pin = Some(pin);
    let listener = TokioNet
        .bind_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let standby = serve_standby(
        TokioNet,
        listener,
        MemStorage::new(),
        SystemClock,
        standby_cfg,
        primary.local_addr(),
    )
    .await
    .unwrap();
    a.set_hostname(id, "secure").await.unwrap();
    within(standby.wait_until(|r| {
        r.data()
            .live(id)
            .is_some_and(|n| n.hostname.as_deref() == Some("secure"))
    }))
    .await;
    primary.shutdown().await;
    standby.shutdown().await;
}

/// A Go standby subscribes without asking for change batches: it gets whole snapshots, with
/// every field.
#[tokio::test]
async fn go_style_standby_receives_full_snapshots() {
    use pilot::registry::frame::{encode, read_frame};
    let server = start(MemStorage::new(), config()).await;
    let mut link = TokioNet.connect_tcp(server.local_addr()).await.unwrap();
    let mut hello = serde_json::Map::new();
    hello.insert("type".into(), "subscribe_replication".into());
    hello.insert("token".into(), "secret".into());
    link.write_all(&encode(&hello)).await.unwrap();
    let first = within(read_frame(&mut link, 1 << 30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first["type"], "replication_snapshot");
    assert_eq!(first["snapshot"]["next_node"], 1);
    let (mut a, id) = client(server.local_addr(), 1).await;
    a.set_tags(id, &["x"]).await.unwrap();
    loop {
        let next = within(read_frame(&mut link, 1 << 30))
            .await
            .unwrap()
            .unwrap();
        if next["type"] == "replication_snapshot"
            && next["snapshot"]["nodes"][id.to_string()]["tags"] == serde_json::json!(["x"])
        {
            break;
        }
    }
    server.shutdown().await;
}

/// shutting down closes open sessions; nothing is accepted after the final flush.
#[tokio::test]
async fn shutdown_closes_sessions() {
    let server = start(MemStorage::new(), config()).await;
    let mut raw = TokioNet.connect_tcp(server.local_addr()).await.unwrap();
    let (_, _) = client(server.local_addr(), 1).await;
    server.shutdown().await;
    let mut buf = [0u8; 1];
    assert_eq!(within(raw.read(&mut buf)).await.unwrap_or(0), 0);
}

/// the primary keeps a quiet standby: five minutes of heartbeats, no disconnect.
#[tokio::test(start_paused = true)]
async fn replication_link_does_not_churn() {
    use pilot::registry::frame::{encode, read_frame};
    let server = start(MemStorage::new(), config()).await;
    let mut link = TokioNet.connect_tcp(server.local_addr()).await.unwrap();
    let mut hello = serde_json::Map::new();
    hello.insert("type".into(), "subscribe_replication".into());
    hello.insert("token".into(), "secret".into());
    hello.insert("changes".into(), true.into());
    link.write_all(&encode(&hello)).await.unwrap();
    let start_time = tokio::time::Instant::now();
    let mut heartbeats = 0;
    while heartbeats < 20 {
        let frame = read_frame(&mut link, 1 << 30)
            .await
            .unwrap()
            .expect("the primary closed a quiet standby's link");
        heartbeats += usize::from(frame["type"] == "heartbeat");
    }
    assert!(start_time.elapsed() >= Duration::from_secs(300));
    server.shutdown().await;
}

/// a snapshot larger than 1 MiB replicates.
#[tokio::test]
async fn snapshots_beyond_one_mebibyte_replicate() {
    use pilot::registry::model::{Change, Node, StoredNode};
    use pilot::registry::persist::snapshot::Snapshot;
    use pilot::registry::Data;
    let mut data = Data::new(1_735_689_600_000);
    let nodes = 6_000u32;
    for id in 1..=nodes {
        let mut key = [9u8; 32];
        key[..4].copy_from_slice(&id.to_be_bytes());
        let mut node = Node::fresh(key, None, 1_735_689_600_000);
        node.hostname = Some(format!("host-{id}").into());
        node.real_addr = Some("203.0.113.9:4000".parse().unwrap());
        data.apply(&Change::Node(StoredNode::from_node(id, &node)));
        data.apply(&Change::Key {
            key: STANDARD.encode(key),
            id: Some(id),
        });
    }
    data.next_node = nodes + 1;
    let bytes = Snapshot::from_data(&data, 0).to_bytes();
    assert!(bytes.len() > 1 << 20, "{} bytes", bytes.len());
    let storage = MemStorage::new();
    storage
        .replace(pilot::registry::persist::SNAPSHOT, &bytes)
        .unwrap();
    let primary = start(storage, config()).await;
    let listener = TokioNet
        .bind_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let standby = serve_standby(
        TokioNet,
        listener,
        MemStorage::new(),
        SystemClock,
        config(),
        primary.local_addr(),
    )
    .await
    .unwrap();
    within(standby.wait_until(|r| r.data().nodes.len() == nodes as usize)).await;
    primary.shutdown().await;
    standby.shutdown().await;
}

/// A standby that subscribes while writes are in flight ends up with exactly the primary's
/// relay queues: no batch is applied twice or missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_during_writes_neither_loses_nor_duplicates() {
    let primary = start(MemStorage::new(), config()).await;
    let addr = primary.local_addr();
    let (_, target) = client(addr, 100).await;
    let mut writers = Vec::new();
    for n in 1..=8u8 {
        let (mut c, id) = client(addr, n).await;
        let mut t = Client::new(TokioNet, addr).with_signer(signer(100));
        writers.push(tokio::spawn(async move {
            for round in 0..30 {
                c.request_handshake(id, target, &format!("round {round}"))
                    .await
                    .unwrap();
                if round % 3 == 0 {
                    t.poll_handshakes(target).await.unwrap();
                } else {
                    // Answer (reject) this writer's request so it may ask again.
                    t.respond_handshake(target, id, false).await.unwrap();
                }
            }
        }));
    }
    let listener = TokioNet
        .bind_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let standby = serve_standby(
        TokioNet,
        listener,
        MemStorage::new(),
        SystemClock,
        config(),
        addr,
    )
    .await
    .unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let (inbox, asks) = primary.with_registry(|r| (r.data().inbox.clone(), r.data().asks.clone()));
    within(standby.wait_until(|r| r.data().inbox == inbox && r.data().asks == asks)).await;
    primary.shutdown().await;
    standby.shutdown().await;
}
