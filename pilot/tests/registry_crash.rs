//! Crash points through the whole server: a reply that says "ok" means the change survives a
//! power loss at any later moment. The storage crashes after every possible number of write
//! steps; the server is restarted on what was durable and every acknowledged change is checked.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use pilot::net::{MemStorage, Network, SystemClock, TokioNet};
use pilot::registry::client::{Client, Signer};
use pilot::registry::ratelimit::{Rate, Rates};
use pilot::registry::server::{serve, ServeError, ServerConfig, ServerHandle};
use pilot::registry::Config;
use std::sync::Arc;

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

async fn start(storage: MemStorage) -> Result<ServerHandle<SystemClock>, ServeError> {
    let cfg = ServerConfig {
        registry: Config {
            rates: Rates {
                new_registration: Rate::per_secs(1000, 1),
                ..Rates::default()
            },
            ..Config::default()
        },
        ..ServerConfig::default()
    };
    let listener = TokioNet
        .bind_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    serve(TokioNet, listener, storage, SystemClock, cfg).await
}

/// What the clients were told succeeded.
#[derive(Default, Debug)]
struct Acked {
    nodes: Vec<(u8, u32)>,
    hostnames: Vec<(u32, String)>,
    public: Vec<u32>,
}

async fn workload(server: &ServerHandle<SystemClock>, acked: &mut Acked) {
    for n in 1..=4u8 {
        let mut c = Client::new(TokioNet, server.local_addr()).with_signer(signer(n));
        let Ok(reg) = c.register(&pk(n), ":4000", "", "").await else {
            return;
        };
        acked.nodes.push((n, reg.node_id));
        let name = format!("node-{n}");
        if c.set_hostname(reg.node_id, &name).await.is_err() {
            return;
        }
        acked.hostnames.push((reg.node_id, name));
        if c.set_visibility(reg.node_id, true).await.is_err() {
            return;
        }
        acked.public.push(reg.node_id);
    }
}

#[tokio::test]
async fn every_crash_point_through_the_server_keeps_acknowledged_changes() {
    let probe = MemStorage::new();
    let server = start(probe.clone()).await.unwrap();
    let mut all = Acked::default();
    workload(&server, &mut all).await;
    server.shutdown().await;
    assert_eq!(all.public.len(), 4);
    let steps = probe.steps_taken();

    for crash_at in 0..steps {
        let storage = MemStorage::new();
        storage.crash_after_steps(crash_at);
        let mut acked = Acked::default();
        if let Ok(server) = start(storage.clone()).await {
            workload(&server, &mut acked).await;
            server.shutdown().await;
        }
        storage.restart();
        let server = start(storage.clone())
            .await
            .unwrap_or_else(|e| panic!("crash after {crash_at} steps: restart refused: {e}"));
        server.with_registry(|r| {
            let d = r.data();
            for (n, id) in &acked.nodes {
                let node = d.nodes.get(id).unwrap_or_else(|| {
                    panic!("crash after {crash_at} steps: acknowledged node {id} lost")
                });
                assert_eq!(node.key.to_vec(), STANDARD.decode(pk(*n)).unwrap());
            }
            for (id, name) in &acked.hostnames {
                assert_eq!(
                    d.host_idx.get(name.as_str()),
                    Some(id),
                    "crash after {crash_at}"
                );
            }
            for id in &acked.public {
                assert!(
                    d.nodes[id].public,
                    "crash after {crash_at}: visibility lost"
                );
            }
        });
        server.shutdown().await;
    }
}
