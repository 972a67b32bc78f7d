//! A registry and a beacon on loopback, and daemons started against them, for the daemon tests.
#![allow(dead_code)]

use pilot::beacon::server::{BeaconServer, ServerConfig as BeaconConfig};
use pilot::daemon::{start, Daemon, DaemonConfig, DaemonHandle};
use pilot::ipc::HandshakeCommand;
use pilot::net::watch;
use pilot::net::{seeded_rng, MemStorage, Network, SystemClock, TokioNet};
use pilot::registry::ratelimit::{Rate, Rates};
use pilot::registry::server::{serve, ServerConfig, ServerHandle};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// The rendezvous servers.
pub struct Rendezvous {
    pub registry: ServerHandle<SystemClock>,
    pub beacon: SocketAddr,
    _stop_beacon: watch::Sender<bool>,
}

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

impl Rendezvous {
    pub async fn start() -> Self {
        let listener = TokioNet.bind_tcp(localhost()).await.unwrap();
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
        let beacon = BeaconServer::bind(TokioNet, BeaconConfig::new(localhost()))
            .await
            .unwrap();
        let beacon_addr = beacon.local_addr();
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(beacon.run(stopped));
        Rendezvous {
            registry,
            beacon: beacon_addr,
            _stop_beacon: stop,
        }
    }

    pub fn config(&self) -> DaemonConfig {
        let mut config = DaemonConfig::new(self.registry.local_addr());
        config.beacon = Some(self.beacon);
        config.listen = localhost();
        config.identity = Some("identity.json".into());
        config
    }

    pub async fn daemon(&self, seed: u64) -> Daemon {
        self.daemon_with(seed, self.config(), MemStorage::new())
            .await
    }

    pub async fn daemon_with(
        &self,
        seed: u64,
        config: DaemonConfig,
        storage: MemStorage,
    ) -> Daemon {
        start(TokioNet, storage, SystemClock, seeded_rng(seed), config)
            .await
            .unwrap()
    }

    /// Why a daemon with `config` fails to start (panics if it starts).
    pub async fn start_error(&self, seed: u64, config: DaemonConfig) -> String {
        match start(
            TokioNet,
            MemStorage::new(),
            SystemClock,
            seeded_rng(seed),
            config,
        )
        .await
        {
            Ok(_) => panic!("the daemon started"),
            Err(e) => e.to_string(),
        }
    }
}

/// Guards a wait so a broken build fails instead of hanging.
pub async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("the awaited event did not happen")
}

/// Waits until `pred` holds for `daemon`'s trust listings (pending and trusted JSON).
pub async fn wait_trust(
    daemon: &DaemonHandle,
    pred: impl Fn(&serde_json::Value, &serde_json::Value) -> bool,
) {
    let mut changes = daemon.trust_changes();
    within(async {
        loop {
            let pending = daemon.handshake(HandshakeCommand::Pending).await.unwrap();
            let trusted = daemon.handshake(HandshakeCommand::Trusted).await.unwrap();
            if pred(&pending, &trusted) {
                return;
            }
            changes.changed().await.unwrap();
        }
    })
    .await
}

pub fn lists(json: &serde_json::Value, key: &str, node: u32) -> bool {
    json[key]
        .as_array()
        .is_some_and(|a| a.iter().any(|e| e["node_id"] == node))
}

/// Makes `a` and `b` trust each other: `a` asks, `b` approves.
pub async fn make_trust(a: &DaemonHandle, b: &DaemonHandle) {
    a.handshake(HandshakeCommand::Send {
        node: b.node_id(),
        justification: "test".into(),
    })
    .await
    .unwrap();
    let an = a.node_id();
    wait_trust(b, |p, _| lists(p, "pending", an)).await;
    b.handshake(HandshakeCommand::Approve { node: an })
        .await
        .unwrap();
    let bn = b.node_id();
    wait_trust(a, |_, t| lists(t, "trusted", bn)).await;
}
