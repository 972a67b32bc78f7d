//! Registry throughput on loopback TCP: 64 concurrent clients, each looping over
//! register (a known key: a durable write), heartbeat and resolve (both signed).
//!
//! Server and clients share this process and its two cores; the store is a real directory,
//! so every register is an fsynced append (group-committed across clients). Rate limits are
//! raised: all clients come from 127.0.0.1. Run:
//! `cargo bench -p pilot --bench registry_throughput`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use pilot::net::{DiskStorage, MemStorage, Network, SystemClock, TokioNet};
use pilot::registry::client::Client;
use pilot::registry::frame::Object;
use pilot::registry::ratelimit::{Rate, Rates};
use pilot::registry::server::{serve, ServerConfig};
use pilot::registry::Config;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 64;
const RUN: Duration = Duration::from_secs(5);

fn obj(v: serde_json::Value) -> Object {
    v.as_object().cloned().unwrap()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        registry: Config {
            rates: Rates {
                new_registration: Rate::per_secs(u32::MAX, 1),
                reregistration: Rate::per_secs(u32::MAX, 1),
                request: Rate::per_secs(u32::MAX, 1),
                connection: Rate::per_secs(u32::MAX, 1),
            },
            ..Config::default()
        },
        ..ServerConfig::default()
    };
    let listener = TokioNet
        .bind_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // PILOT_BENCH_STORE=mem measures without disk (CPU and network only).
    let server = if std::env::var("PILOT_BENCH_STORE").as_deref() == Ok("mem") {
        serve(TokioNet, listener, MemStorage::new(), SystemClock, cfg).await
    } else {
        serve(
            TokioNet,
            listener,
            DiskStorage::open(dir.path()).unwrap(),
            SystemClock,
            cfg,
        )
        .await
    }
    .unwrap();
    let addr = server.local_addr();

    // Setup: every client registers and makes itself public, so resolves succeed.
    let mut scripts = Vec::new();
    for i in 0..CLIENTS {
        let key = SigningKey::from_bytes(&[i as u8 + 1; 32]);
        let pk = STANDARD.encode(key.verifying_key().to_bytes());
        let sign = |m: &str| STANDARD.encode(key.sign(m.as_bytes()).to_bytes());
        let mut c = Client::new(TokioNet, addr);
        let id = c
            .register(&pk, "0.0.0.0:4000", "", "")
            .await
            .unwrap()
            .node_id;
        c.request(&obj(
            json!({"type":"set_visibility","node_id":id,"public":true,
            "signature":sign(&format!("set_visibility:{id}"))}),
        ))
        .await
        .unwrap();
        let peer = (id % CLIENTS as u32) + 1;
        // The endpoint alternates, so every register is a real change made durable.
        let script = vec![
            obj(json!({"type":"register","public_key":pk,"listen_addr":"0.0.0.0:4001"})),
            obj(
                json!({"type":"heartbeat","node_id":id,"signature":sign(&format!("heartbeat:{id}"))}),
            ),
            obj(json!({"type":"resolve","node_id":peer,"requester_id":id,
                "signature":sign(&format!("resolve:{id}:{peer}"))})),
            obj(json!({"type":"register","public_key":pk,"listen_addr":"0.0.0.0:4000"})),
            obj(
                json!({"type":"heartbeat","node_id":id,"signature":sign(&format!("heartbeat:{id}"))}),
            ),
            obj(json!({"type":"resolve","node_id":peer,"requester_id":id,
                "signature":sign(&format!("resolve:{id}:{peer}"))})),
        ];
        scripts.push((c, script));
    }

    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (mut c, script) in scripts {
        let (done, count) = (done.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                c.request(&script[i % script.len()]).await.unwrap();
                count.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(RUN).await;
    done.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = count.load(Ordering::Relaxed);
    println!(
        "registry throughput: {CLIENTS} clients, register+heartbeat+resolve: {n} requests in {elapsed:.2} s = {:.0} requests/s",
        n as f64 / elapsed
    );
    server.shutdown().await;
}
