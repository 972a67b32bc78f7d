//! The software of a rendezvous host: the real `pilot::registry` server and
//! `pilot::beacon::BeaconServer` on the host's [`SimNet`].
//!
//! The registry's storage is a [`MemStorage`] made by the runner, outside the turmoil host, so
//! a crashed and restarted host reopens the same blobs and finds exactly what was durable.

use super::agent::{Command, Commands, Reports};
use crate::net::SimNet;
use crate::topology::SimClock;
use crate::world::{host_seed, lock};
use pilot::beacon::server::{BeaconServer, ServerConfig as BeaconConfig};
use pilot::beacon::MoveKey;
use pilot::net::watch;
use pilot::net::{seeded_rng, MemStorage, Network};
use pilot::registry::server::{serve, serve_standby, ServerConfig, ServerHandle};
use pilot::registry::Registry;
use rand_core::Rng as _;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The replication token every simulated registry shares.
const REPLICATION_TOKEN: &str = "sim-replication";

/// How one rendezvous host runs; shared by all its incarnations.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    /// The registry's TCP port.
    pub registry_port: u16,
    /// The beacon's UDP port.
    pub beacon_port: u16,
    /// The primary's registry address, for a standby.
    pub primary: Option<SocketAddr>,
    /// Whether the software runs (set at start, or by `registry-start`); a restarted host
    /// starts it again.
    pub started: Arc<AtomicBool>,
    /// Its storage, which outlives crashes.
    pub storage: MemStorage,
}

/// A running registry and beacon.
struct Running {
    registry: ServerHandle<SimClock>,
    /// Dropping it stops the beacon.
    _beacon: watch::Sender<bool>,
}

/// Runs one incarnation of a rendezvous host.
pub(crate) async fn run(
    net: SimNet,
    spec: Spec,
    commands: Commands,
    reports: Arc<Reports>,
) -> turmoil::Result {
    let name = net.world().node(net.node()).name.clone();
    let mut commands = commands.lock().await;
    let mut running = None;
    if spec.started.load(Ordering::Relaxed) {
        running = start(&net, &spec, &name, &reports).await;
    }
    while let Some(command) = commands.recv().await {
        match (command, &running) {
            (Command::Start, None) => {
                spec.started.store(true, Ordering::Relaxed);
                running = start(&net, &spec, &name, &reports).await;
            }
            (Command::Start, Some(_)) => {
                lock(&reports.errors).push(format!("registry-start: {name} is already running"));
            }
            (Command::Promote, Some(r)) if spec.primary.is_some() => {
                r.registry.promote();
                note(&net, &name, "registry promoted to primary");
            }
            (Command::Promote, _) => {
                lock(&reports.errors).push(format!("promote: {name} runs no standby registry"));
            }
            (Command::Inspect, r) => {
                let digest = r.as_ref().map(|r| r.registry.with_registry(digest));
                lock(&reports.states).insert(name.clone(), digest);
            }
            (
                Command::Bind { .. }
                | Command::Send { .. }
                | Command::Request(_)
                | Command::Daemon(_),
                _,
            ) => {
                lock(&reports.errors).push(format!("{name} runs a registry, not the probe agent"));
            }
        }
    }
    Ok(())
}

fn note(net: &SimNet, name: &str, text: &str) {
    net.world().trace().note_at(crate::trace::now(), name, text);
}

/// Starts the registry (primary or standby) and the beacon; a failure is reported and leaves
/// the host without them.
async fn start(net: &SimNet, spec: &Spec, name: &str, reports: &Reports) -> Option<Running> {
    match try_start(net, spec).await {
        Ok(r) => {
            let role = if spec.primary.is_some() {
                "standby"
            } else {
                "primary"
            };
            let nodes = r.registry.with_registry(|reg| reg.data().nodes.len());
            note(
                net,
                name,
                &format!("registry up ({role}, {nodes} nodes loaded)"),
            );
            Some(r)
        }
        Err(e) => {
            lock(&reports.errors).push(format!("{name}: rendezvous failed to start: {e}"));
            None
        }
    }
}

async fn try_start(net: &SimNet, spec: &Spec) -> Result<Running, String> {
    let any = |port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let listener = net
        .bind_tcp(any(spec.registry_port))
        .await
        .map_err(|e| e.to_string())?;
    let mut cfg = ServerConfig::default();
    cfg.registry.replication_token = Some(REPLICATION_TOKEN.to_string());
    let storage = spec.storage.clone();
    let registry = match spec.primary {
        None => serve(net.clone(), listener, storage, SimClock, cfg).await,
        Some(primary) => {
            serve_standby(net.clone(), listener, storage, SimClock, cfg, primary).await
        }
    }
    .map_err(|e| e.to_string())?;
    let mut beacon_cfg = BeaconConfig::new(any(spec.beacon_port));
    // Its move-proof key comes from the scenario seed, so a run replays bit for bit.
    let name = &net.world().node(net.node()).name;
    let mut key = [0u8; 32];
    seeded_rng(host_seed(net.world().seed(), &format!("beacon/{name}"), 0)).fill_bytes(&mut key);
    beacon_cfg.move_key = Some(MoveKey::from_bytes(key));
    let beacon = BeaconServer::bind(net.clone(), beacon_cfg)
        .await
        .map_err(|e| e.to_string())?;
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(beacon.run(stopped));
    Ok(Running {
        registry,
        _beacon: stop,
    })
}

/// The directory in one line: the next node ID, each node (ID, key prefix, endpoint,
/// visibility, hostname, dormancy) in ID order, and the trust pairs. Replication must make a
/// standby's digest equal its primary's.
fn digest(reg: &Registry) -> String {
    let data = reg.data();
    let mut ids: Vec<_> = data.nodes.keys().copied().collect();
    ids.sort_unstable();
    let mut out = format!("next={}", data.next_node);
    for id in ids {
        let n = &data.nodes[&id];
        let key = pilot::crypto::to_base64(&n.key);
        let addr = n.real_addr.map(|a| a.to_string()).unwrap_or_default();
        let _ = write!(out, " [{id} {} {addr}", &key[..8]);
        if n.public {
            out.push_str(" public");
        }
        if let Some(h) = &n.hostname {
            let _ = write!(out, " {h}");
        }
        if n.dormant {
            out.push_str(" dormant");
        }
        out.push(']');
    }
    for (a, b) in &data.trust {
        let _ = write!(out, " trust({a},{b})");
    }
    out
}
