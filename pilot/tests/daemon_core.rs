//! `DaemonCore` without any I/O: two cores wired back to back in memory, with the registry
//! answered by the test. Trust enforcement, ownership, credits, and hostile input of every
//! shape (datagrams, commands) without a panic.

use pilot::crypto::{Identity, LocalKeys, RegistryKey};
use pilot::daemon::{ClientEvent, ClientOptions, DaemonCore, Output};
use pilot::net::seeded_rng;
use pilot::services::trust::{TrustBook, TrustedPeer};
use pilot::transport::EndpointConfig;
use pilot::tunnel::{Tunnel, TunnelConfig};
use pilot::wire::Addr;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn udp(node: u32) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, node as u8], 4000))
}

struct Pair {
    cores: [DaemonCore; 2],
    keys: [[u8; 32]; 2],
    now: Instant,
    events: Vec<(usize, ClientEvent)>,
    dials: Vec<(u64, Result<u32, String>)>,
}

fn book(own: u32, trusted: &[u32]) -> TrustBook {
    let trusted: BTreeMap<u32, TrustedPeer> = trusted
        .iter()
        .map(|n| {
            (
                *n,
                TrustedPeer {
                    public_key: None,
                    approved_at: 0,
                    mutual: true,
                    network: 0,
                },
            )
        })
        .collect();
    TrustBook::from_parts(own, trusted, BTreeMap::new(), BTreeMap::new())
}

impl Pair {
    /// Nodes 1 and 2; `trusts[i]` says whether node i+1 trusts the other.
    fn new(trusts: [bool; 2]) -> Pair {
        let mut rng = seeded_rng(9);
        let ids = [Identity::generate(&mut rng), Identity::generate(&mut rng)];
        let keys = [ids[0].public_key(), ids[1].public_key()];
        let cores = [0usize, 1].map(|i| {
            let node = i as u32 + 1;
            let other = 2 - i as u32;
            let local = LocalKeys::generate(ids[i].clone(), &mut rng);
            let tunnel = Tunnel::new(
                node,
                local,
                TunnelConfig::default(),
                seeded_rng(node.into()),
            );
            let trusted: &[u32] = if trusts[i] { &[other] } else { &[] };
            DaemonCore::new(
                tunnel,
                EndpointConfig::new(Addr::backbone(node)),
                seeded_rng(10 + u64::from(node)),
                book(node, trusted),
            )
        });
        Pair {
            cores,
            keys,
            now: Instant::now(),
            events: Vec::new(),
            dials: Vec::new(),
        }
    }

    /// Moves datagrams and answers the registry until nothing happens any more, advancing
    /// time to pending timers within `horizon`.
    fn run(&mut self, horizon: Duration) {
        let end = self.now + horizon;
        loop {
            let mut moved = false;
            for i in 0..2 {
                self.cores[i].flush(self.now);
                while let Some(out) = self.cores[i].poll_output() {
                    moved = true;
                    let other = 1 - i;
                    let node = other as u32 + 1;
                    match out {
                        Output::Event(_, e) => self.events.push((i, e)),
                        Output::DialDone { token, result } => self.dials.push((token, result)),
                        Output::Resolve(n) if n == node => {
                            self.cores[i].on_resolved(self.now, n, Ok(udp(n)))
                        }
                        Output::Resolve(n) => {
                            self.cores[i].on_resolved(self.now, n, Err("unknown node".into()))
                        }
                        Output::LookupKey(n) => {
                            let key = if n == node {
                                RegistryKey::Known(self.keys[other])
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
                    let from = udp(i as u32 + 1);
                    if t.to == udp(2 - i as u32) {
                        self.cores[1 - i].handle_datagram(self.now, from, &t.bytes);
                    }
                    self.cores[i].recycle(t.bytes);
                }
            }
            if moved {
                continue;
            }
            let next = self.cores.iter().filter_map(|c| c.poll_timeout()).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for c in &mut self.cores {
                        c.handle_timeout(self.now);
                    }
                }
                _ => return,
            }
        }
    }
}

#[test]
fn untrusted_syn_is_reset_except_on_the_handshake_port() {
    // Node 2 does not trust node 1.
    let mut p = Pair::new([true, false]);
    let server = p.cores[1].open_client(ClientOptions::default());
    p.cores[1].bind(server, 7).unwrap();
    p.cores[1].bind(server, 444).unwrap();
    let client = p.cores[0].open_client(ClientOptions::default());
    let now = p.now;
    p.cores[0]
        .dial(now, client, Addr::backbone(2), 7, 1)
        .unwrap();
    p.cores[0]
        .dial(now, client, Addr::backbone(2), 444, 2)
        .unwrap();
    p.run(Duration::from_secs(5));
    let refused = p.dials.iter().find(|(t, _)| *t == 1).unwrap();
    assert!(
        refused.1.as_ref().unwrap_err().contains("refused"),
        "{refused:?}"
    );
    assert!(p.dials.iter().any(|(t, r)| *t == 2 && r.is_ok()));
    assert_eq!(p.cores[1].counters().untrusted_syns, 1);
    assert!(p
        .events
        .iter()
        .any(|(i, e)| *i == 1 && matches!(e, ClientEvent::Accept { port: 444, .. })));
}

#[test]
fn trusted_stream_with_credit_and_ownership() {
    let mut p = Pair::new([true, true]);
    let server = p.cores[1].open_client(ClientOptions {
        recv_credit: 1000,
        bound_datagrams: true,
    });
    p.cores[1].bind(server, 80).unwrap();
    let client = p.cores[0].open_client(ClientOptions::default());
    let intruder = p.cores[0].open_client(ClientOptions::default());
    let now = p.now;
    p.cores[0]
        .dial(now, client, Addr::backbone(2), 80, 1)
        .unwrap();
    p.run(Duration::from_secs(1));
    let conn = p.dials[0].1.clone().unwrap();

    // Someone else's connection: refused, and nothing is sent.
    p.cores[0].send(now, intruder, conn, b"nope".to_vec());
    p.cores[0].send(now, client, conn, vec![5u8; 5000]);
    p.run(Duration::from_secs(1));
    assert!(p.events.iter().any(
        |(i, e)| *i == 0 && matches!(e, ClientEvent::SendFailed { conn: c, .. } if *c == conn)
    ));

    // The server granted 1000 bytes: exactly that much arrives until it grants more.
    let received = |p: &Pair| -> usize {
        p.events
            .iter()
            .filter_map(|(i, e)| match e {
                ClientEvent::Recv { data, .. } if *i == 1 => Some(data.len()),
                _ => None,
            })
            .sum()
    };
    assert_eq!(received(&p), 1000);
    let server_conn = p
        .events
        .iter()
        .find_map(|(i, e)| match e {
            ClientEvent::Accept { conn, .. } if *i == 1 => Some(*conn),
            _ => None,
        })
        .unwrap();
    let now = p.now;
    p.cores[1].grant(now, server, server_conn, 10_000);
    p.run(Duration::from_secs(1));
    assert_eq!(received(&p), 5000);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any bytes from the peer's address or anyone else, and any commands with any IDs: no
    /// panic, and the cores keep working.
    #[test]
    fn hostile_datagrams_and_commands_do_not_panic(
        datagrams in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..200)), 0..40),
        commands in proptest::collection::vec((0u8..6, any::<u32>(), any::<u16>()), 0..40),
    ) {
        let mut p = Pair::new([true, true]);
        let client = p.cores[0].open_client(ClientOptions::default());
        for (from_peer, bytes) in &datagrams {
            let from = if *from_peer { udp(2) } else { udp(99) };
            let now = p.now;
            p.cores[0].handle_datagram(now, from, bytes);
        }
        for (op, id, port) in &commands {
            let now = p.now;
            let core = &mut p.cores[0];
            match op {
                0 => core.send(now, client, *id, vec![1, 2, 3]),
                1 => core.close(now, client, *id),
                2 => core.grant(now, client, *id, *id),
                3 => { let _ = core.bind(client, *port); }
                4 => { let _ = core.dial(now, client, Addr::backbone(*id), *port, 7); }
                _ => { let _ = core.send_to(now, client, Addr::backbone(*id), *port, b"x"); }
            }
        }
        p.run(Duration::from_secs(2));
        // Still serving: a fresh dial to node 2 connects.
        let server = p.cores[1].open_client(ClientOptions::default());
        let _ = p.cores[1].bind(server, 9);
        let now = p.now;
        p.cores[0].dial(now, client, Addr::backbone(2), 9, 99).unwrap();
        p.run(Duration::from_secs(5));
        prop_assert!(p.dials.iter().any(|(t, r)| *t == 99 && r.is_ok()), "{:?}", p.dials);
    }
}
