//! `DaemonCore` glue between the tunnel and the transport: the round trip the tunnel measures
//! on its key exchange times the first SYN to that peer. Two cores back to back in memory,
//! with a fixed one-way latency and the registry answered by the test.

use pilot::crypto::{Identity, LocalKeys, RegistryKey};
use pilot::daemon::{ClientOptions, DaemonCore, Output};
use pilot::net::seeded_rng;
use pilot::services::trust::{TrustBook, TrustedPeer};
use pilot::transport::EndpointConfig;
use pilot::tunnel::{Tunnel, TunnelConfig};
use pilot::wire::Addr;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One-way delay of every datagram between the two daemons.
const LATENCY: Duration = Duration::from_millis(30);

fn udp(node: u32) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, node as u8], 4000))
}

fn book(own: u32, other: u32) -> TrustBook {
    let peer = TrustedPeer {
        public_key: None,
        approved_at: 0,
        mutual: true,
        network: 0,
    };
    TrustBook::from_parts(
        own,
        BTreeMap::from([(other, peer)]),
        BTreeMap::new(),
        BTreeMap::new(),
    )
}

struct Pair {
    cores: [DaemonCore; 2],
    keys: [[u8; 32]; 2],
    now: Instant,
    /// (arrival, receiving core, from, bytes), in arrival order (the latency is fixed).
    in_flight: VecDeque<(Instant, usize, SocketAddr, Vec<u8>)>,
    /// Drop the next sealed frame (`PILS`) core `i` sends.
    drop_next_sealed: [bool; 2],
    /// (when, token, result) of finished dials.
    dials: Vec<(Instant, u64, Result<u32, String>)>,
}

impl Pair {
    fn new() -> Pair {
        let mut rng = seeded_rng(21);
        let ids = [Identity::generate(&mut rng), Identity::generate(&mut rng)];
        let keys = [ids[0].public_key(), ids[1].public_key()];
        let cores = [0usize, 1].map(|i| {
            let node = i as u32 + 1;
            let local = LocalKeys::generate(ids[i].clone(), &mut rng);
            let tunnel = Tunnel::new(
                node,
                local,
                TunnelConfig::default(),
                seeded_rng(node.into()),
            );
            DaemonCore::new(
                tunnel,
                EndpointConfig::new(Addr::backbone(node)),
                seeded_rng(30 + u64::from(node)),
                book(node, 3 - node),
            )
        });
        Pair {
            cores,
            keys,
            now: Instant::now(),
            in_flight: VecDeque::new(),
            drop_next_sealed: [false; 2],
            dials: Vec::new(),
        }
    }

    /// Runs until `horizon` from now: outputs answered, datagrams delivered after
    /// [`LATENCY`], timers fired.
    fn run(&mut self, horizon: Duration) {
        let end = self.now + horizon;
        loop {
            self.drain();
            let next_packet = self.in_flight.front().map(|p| p.0);
            let next_timer = self.cores.iter().filter_map(|c| c.poll_timeout()).min();
            let Some(next) = next_packet.into_iter().chain(next_timer).min() else {
                return;
            };
            if next > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(next);
            while self.in_flight.front().is_some_and(|p| p.0 <= self.now) {
                let (_, to, from, bytes) = self.in_flight.pop_front().expect("front");
                self.cores[to].handle_datagram(self.now, from, &bytes);
            }
            for c in &mut self.cores {
                if c.poll_timeout().is_some_and(|t| t <= self.now) {
                    c.handle_timeout(self.now);
                }
            }
        }
    }

    /// Everything the cores want done at this instant.
    fn drain(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..2 {
                let node = 2 - i as u32;
                self.cores[i].flush(self.now);
                while let Some(out) = self.cores[i].poll_output() {
                    moved = true;
                    match out {
                        Output::DialDone { token, result } => {
                            self.dials.push((self.now, token, result))
                        }
                        Output::Resolve(n) if n == node => {
                            self.cores[i].on_resolved(self.now, n, Ok(udp(n)))
                        }
                        Output::Resolve(n) => {
                            self.cores[i].on_resolved(self.now, n, Err("unknown node".into()))
                        }
                        Output::LookupKey(n) => {
                            let key = if n == node {
                                RegistryKey::Known(self.keys[1 - i])
                            } else {
                                RegistryKey::NotRegistered
                            };
                            self.cores[i].on_registry_key(self.now, n, key)
                        }
                        _ => {}
                    }
                }
                while let Some(t) = self.cores[i].poll_transmit() {
                    moved = true;
                    let sealed = t.bytes.starts_with(b"PILS");
                    let dropped = sealed && std::mem::take(&mut self.drop_next_sealed[i]);
                    if t.to == udp(node) && !dropped {
                        let from = udp(i as u32 + 1);
                        self.in_flight.push_back((
                            self.now + LATENCY,
                            1 - i,
                            from,
                            t.bytes.clone(),
                        ));
                    }
                    self.cores[i].recycle(t.bytes);
                }
            }
            if !moved {
                return;
            }
        }
    }
}

#[test]
fn a_lost_first_syn_is_repaired_on_the_tunnels_rtt_not_after_a_second() {
    let mut p = Pair::new();
    let server = p.cores[1].open_client(ClientOptions::default());
    p.cores[1].bind(server, 80).unwrap();
    let client = p.cores[0].open_client(ClientOptions::default());
    // A datagram sets the tunnel up; no stream has measured anything yet.
    let now = p.now;
    p.cores[0]
        .send_to(now, client, Addr::backbone(2), 9, b"hello")
        .unwrap();
    p.run(Duration::from_secs(2));
    let rtt = 2 * LATENCY;
    assert_eq!(p.cores[0].tunnel().peer_rtt(2), Some(rtt));
    assert_eq!(p.cores[0].endpoint().peer_rtt(Addr::backbone(2)), Some(rtt));
    assert_eq!(p.cores[1].endpoint().peer_rtt(Addr::backbone(1)), Some(rtt));

    // The first SYN to the peer is lost.
    p.drop_next_sealed[0] = true;
    let dialled = p.now;
    p.cores[0]
        .dial(dialled, client, Addr::backbone(2), 80, 1)
        .unwrap();
    p.run(Duration::from_secs(5));
    let (at, _, result) = p.dials.iter().find(|d| d.1 == 1).expect("dial finished");
    assert!(result.is_ok(), "{result:?}");
    // Resent after 3 RTT (the seeded RTO: SRTT + 4 · SRTT/2), then one round trip; with
    // the flat initial timeout it took 1 s + 60 ms.
    assert_eq!(*at - dialled, 3 * rtt + rtt);
}
