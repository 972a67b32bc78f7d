//! The beacon server on real UDP sockets on 127.0.0.1 (ephemeral ports), with "daemons" that
//! are plain sockets speaking the beacon protocol.
//!
//! Real sockets and tokio's paused clock do not mix (the paused clock jumps while a datagram is
//! still in flight), so these tests run on real time. Nothing sleeps: each test waits for a
//! datagram or for the beacon's published status, and the timeouts only turn a hang into a
//! failure.

use pilot::beacon::{
    discover_peers, BeaconConfig, BeaconServer, BeaconStats, BeaconStatus, PeerBeacon, PeerSource,
    ServerConfig,
};
use pilot::net::watch;
use pilot::net::{Network, TokioNet};
use pilot::wire::beacon::BeaconMessage;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Guard against a hang; never reached when the beacon works.
const GUARD: Duration = Duration::from_secs(10);

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

struct RunningBeacon {
    addr: SocketAddr,
    status: watch::Receiver<BeaconStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<BeaconStats>>,
}

impl RunningBeacon {
    async fn start(beacon: BeaconConfig, peers: PeerSource) -> Self {
        Self::start_on(TokioNet.bind_udp(localhost()).await.unwrap(), beacon, peers).await
    }

    /// Starts on the address of `reserved`, which is closed first (so a peer list can name a
    /// beacon before it runs).
    async fn start_on(reserved: UdpSocket, beacon: BeaconConfig, peers: PeerSource) -> Self {
        let listen = reserved.local_addr().unwrap();
        drop(reserved);
        let config = ServerConfig {
            beacon,
            peers,
            ..ServerConfig::new(listen)
        };
        let server = BeaconServer::bind(TokioNet, config).await.unwrap();
        let addr = server.local_addr();
        let status = server.status();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(server.run(stopped));
        RunningBeacon {
            addr,
            status,
            stop,
            task,
        }
    }

    /// Waits until a published status satisfies `ready`.
    async fn wait_until(&mut self, ready: impl FnMut(&BeaconStatus) -> bool) {
        tokio::time::timeout(GUARD, self.status.wait_for(ready))
            .await
            .expect("status reached")
            .unwrap();
    }

    async fn stop(self) -> BeaconStats {
        self.stop.send_replace(true);
        tokio::time::timeout(GUARD, self.task)
            .await
            .expect("beacon stops")
            .unwrap()
            .unwrap()
    }
}

/// Gossip every 20 ms so that the multi-beacon tests do not wait for the 10 s default.
fn fast_gossip(beacon_id: u32) -> BeaconConfig {
    BeaconConfig {
        beacon_id,
        gossip_interval: Duration::from_millis(20),
        ..BeaconConfig::default()
    }
}

async fn daemon() -> UdpSocket {
    UdpSocket::bind(localhost()).await.unwrap()
}

fn encode(message: BeaconMessage<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    message.encode(&mut out);
    out
}

async fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65_535];
    let (len, from) = tokio::time::timeout(GUARD, socket.recv_from(&mut buf))
        .await
        .expect("a datagram arrives")
        .unwrap();
    buf.truncate(len);
    (buf, from)
}

/// Discovers `node` from `socket` and checks the reply names the socket's address.
async fn discover(socket: &UdpSocket, beacon: SocketAddr, node: u32) {
    socket
        .send_to(
            &encode(BeaconMessage::Discover { node, proof: None }),
            beacon,
        )
        .await
        .unwrap();
    let (reply, from) = recv(socket).await;
    assert_eq!(from, beacon);
    assert_eq!(
        BeaconMessage::decode(&reply).unwrap(),
        BeaconMessage::DiscoverReply {
            endpoint: socket.local_addr().unwrap(),
            proof: None,
        }
    );
}

#[tokio::test]
async fn discover_is_answered_with_the_observed_endpoint() {
    let beacon = RunningBeacon::start(BeaconConfig::default(), PeerSource::None).await;
    let node = daemon().await;
    discover(&node, beacon.addr, 42).await;
    // Start-up discovery with node 0 is answered too.
    discover(&node, beacon.addr, 0).await;
    let stats = beacon.stop().await;
    assert_eq!(stats.discover_replies, 2);
}

#[tokio::test]
async fn punch_request_commands_both_daemons() {
    let beacon = RunningBeacon::start(BeaconConfig::default(), PeerSource::None).await;
    let (a, b) = (daemon().await, daemon().await);
    discover(&a, beacon.addr, 1).await;
    discover(&b, beacon.addr, 2).await;
    a.send_to(
        &encode(BeaconMessage::PunchRequest {
            requester: 1,
            target: 2,
        }),
        beacon.addr,
    )
    .await
    .unwrap();
    let (to_a, _) = recv(&a).await;
    let (to_b, _) = recv(&b).await;
    assert_eq!(
        BeaconMessage::decode(&to_a).unwrap(),
        BeaconMessage::PunchCommand {
            endpoint: b.local_addr().unwrap()
        }
    );
    assert_eq!(
        BeaconMessage::decode(&to_b).unwrap(),
        BeaconMessage::PunchCommand {
            endpoint: a.local_addr().unwrap()
        }
    );
    beacon.stop().await;
}

#[tokio::test]
async fn relay_is_delivered_and_spoofed_relay_is_not() {
    let beacon = RunningBeacon::start(BeaconConfig::default(), PeerSource::None).await;
    let (a, b, mallory) = (daemon().await, daemon().await, daemon().await);
    discover(&a, beacon.addr, 1).await;
    discover(&b, beacon.addr, 2).await;
    let relay = |sender, inner: &'static [u8]| {
        encode(BeaconMessage::Relay {
            sender,
            destination: 1,
            inner,
        })
    };
    // Mallory claims to be node 2 first; then node 2 relays for real. Datagrams between two
    // loopback sockets arrive in order, so the first thing node 1 sees is the genuine one.
    mallory
        .send_to(&relay(2, b"PILT forged"), beacon.addr)
        .await
        .unwrap();
    b.send_to(&relay(2, b"PILT hello"), beacon.addr)
        .await
        .unwrap();
    let (delivered, from) = recv(&a).await;
    assert_eq!(from, beacon.addr);
    assert_eq!(
        BeaconMessage::decode(&delivered).unwrap(),
        BeaconMessage::RelayDeliver {
            sender: 2,
            inner: b"PILT hello"
        }
    );
    let stats = beacon.stop().await;
    assert_eq!(stats.relay_unverified, 1);
    assert_eq!(stats.relays_delivered, 1);
}

/// Waits until each beacon has gossip from the other (every beacon here knows one node), then
/// relays from `from` (node `sender`, at `beacon`) to `destination` and returns what `to` gets.
async fn relay_across(
    beacons: [&mut RunningBeacon; 2],
    from: &UdpSocket,
    sender: u32,
    to: &UdpSocket,
    destination: u32,
) -> (Vec<u8>, SocketAddr) {
    let [a, b] = beacons;
    a.wait_until(|s| s.gossip >= 1).await;
    b.wait_until(|s| s.gossip >= 1).await;
    let relay = encode(BeaconMessage::Relay {
        sender,
        destination,
        inner: b"PILS across",
    });
    from.send_to(&relay, b.addr).await.unwrap();
    recv(to).await
}

#[tokio::test]
async fn two_beacons_gossip_and_forward_a_relay() {
    let (reserve_a, reserve_b) = (daemon().await, daemon().await);
    let (addr_a, addr_b) = (
        reserve_a.local_addr().unwrap(),
        reserve_b.local_addr().unwrap(),
    );
    let mut a =
        RunningBeacon::start_on(reserve_a, fast_gossip(1), PeerSource::Static(vec![addr_b])).await;
    let mut b =
        RunningBeacon::start_on(reserve_b, fast_gossip(2), PeerSource::Static(vec![addr_a])).await;
    let (x, y) = (daemon().await, daemon().await);
    discover(&x, a.addr, 10).await;
    discover(&y, b.addr, 20).await;
    // Node 10 is known only to beacon A; node 20 relays through beacon B.
    let (delivered, origin) = relay_across([&mut a, &mut b], &y, 20, &x, 10).await;
    assert_eq!(origin, a.addr, "delivered by the beacon that knows node 10");
    assert_eq!(
        BeaconMessage::decode(&delivered).unwrap(),
        BeaconMessage::RelayDeliver {
            sender: 20,
            inner: b"PILS across"
        }
    );
    let (stats_a, stats_b) = (a.stop().await, b.stop().await);
    assert_eq!(stats_b.relays_forwarded, 1);
    assert_eq!(stats_a.relays_delivered, 1);
}

/// A registry that answers only `beacon_register` and `beacon_list` (spec/registry.md §6.16).
async fn fake_registry() -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind(localhost()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let beacons = Arc::new(Mutex::new(Vec::<Value>::new()));
    let shared = beacons.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let beacons = shared.clone();
            tokio::spawn(async move {
                loop {
                    let mut len = [0u8; 4];
                    if stream.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
                    stream.read_exact(&mut body).await.unwrap();
                    let request: Value = serde_json::from_slice(&body).unwrap();
                    let reply = match request["type"].as_str() {
                        Some("beacon_register") => {
                            let mut list = beacons.lock().unwrap();
                            list.retain(|b| b["id"] != request["beacon_id"]);
                            list.push(json!({"id": request["beacon_id"], "addr": request["addr"]}));
                            json!({"type": "beacon_register_ok", "beacon_id": request["beacon_id"]})
                        }
                        Some("beacon_list") => {
                            let list = beacons.lock().unwrap().clone();
                            json!({"type": "beacon_list_ok", "beacons": list})
                        }
                        _ => json!({"type": "error", "error": "request failed"}),
                    };
                    let reply = serde_json::to_vec(&reply).unwrap();
                    stream
                        .write_all(&(reply.len() as u32).to_be_bytes())
                        .await
                        .unwrap();
                    stream.write_all(&reply).await.unwrap();
                }
            });
        }
    });
    (addr, beacons)
}

#[tokio::test]
async fn beacons_find_each_other_through_the_registry() {
    let (registry, registered) = fake_registry().await;
    let peers = PeerSource::Registry {
        registry,
        period: Duration::from_millis(50),
    };
    let mut a = RunningBeacon::start(fast_gossip(1), peers.clone()).await;
    let mut b = RunningBeacon::start(fast_gossip(2), peers).await;
    let (x, y) = (daemon().await, daemon().await);
    discover(&x, a.addr, 10).await;
    discover(&y, b.addr, 20).await;
    let (_, origin) = relay_across([&mut a, &mut b], &y, 20, &x, 10).await;
    assert_eq!(origin, a.addr);
    assert_eq!(a.status.borrow().peers, [b.addr]);
    let mut list = registered.lock().unwrap().clone();
    list.sort_by_key(|b| b["id"].as_u64());
    assert_eq!(
        list,
        [
            json!({"id": 1, "addr": a.addr.to_string()}),
            json!({"id": 2, "addr": b.addr.to_string()}),
        ]
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn registry_discovery_needs_a_beacon_id() {
    let config = ServerConfig {
        peers: PeerSource::Registry {
            registry: "127.0.0.1:9".parse().unwrap(),
            period: Duration::from_secs(30),
        },
        ..ServerConfig::new(localhost())
    };
    assert!(BeaconServer::bind(TokioNet, config).await.is_err());
}

#[tokio::test]
async fn dropping_the_stop_signal_stops_the_beacon() {
    let beacon = RunningBeacon::start(BeaconConfig::default(), PeerSource::None).await;
    drop(beacon.stop);
    tokio::time::timeout(GUARD, beacon.task)
        .await
        .expect("beacon stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_wildcard_address_is_registered_as_the_local_ip_of_the_registry_connection() {
    let (registry, registered) = fake_registry().await;
    registered
        .lock()
        .unwrap()
        .push(json!({"id": 7, "addr": "192.0.2.7:9001"}));
    let advertised: SocketAddr = "0.0.0.0:9001".parse().unwrap();
    let peers = discover_peers(&TokioNet, registry, 3, advertised)
        .await
        .unwrap();
    assert_eq!(
        peers,
        [PeerBeacon {
            id: 7,
            addr: "192.0.2.7:9001".parse().unwrap()
        }]
    );
    let list = registered.lock().unwrap().clone();
    assert_eq!(list[1], json!({"id": 3, "addr": "127.0.0.1:9001"}));
}
