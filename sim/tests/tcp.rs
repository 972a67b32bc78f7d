//! TCP over the simulated internet: direct between public hosts, through the gateway's proxy
//! for private hosts (one NAT or two in series), never into a private host from outside.

use pilot::net::{Network, TcpListener, TcpStream};
use pilot_sim::nat::{NatConfig, Preset};
use pilot_sim::topology::Topology;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A server that answers each connection with the peer address it sees.
fn serve_peer_addresses(sim: &mut turmoil::Sim<'static>, net: pilot_sim::net::SimNet) {
    sim.host("server", move || {
        let net = net.clone();
        async move {
            let listener = net.bind_tcp(addr("0.0.0.0:8000")).await?;
            loop {
                let (mut s, peer) = listener.accept().await?;
                assert_eq!(TcpStream::peer_addr(&s)?, peer);
                let mut hello = [0u8; 5];
                s.read_exact(&mut hello).await?;
                s.write_all(peer.to_string().as_bytes()).await?;
                s.shutdown().await?;
            }
        }
    });
}

#[test]
fn private_hosts_reach_a_public_server_which_sees_their_nat() {
    let mut topo = Topology::new(3);
    topo.host("server", None)
        .host("pub", None)
        .nat("nat", NatConfig::preset(Preset::PortRestrictedCone), None)
        .host("priv", Some("nat"))
        .cgnat("home", NatConfig::preset(Preset::FullCone))
        .host("deep", Some("home"));
    let (mut sim, world) = topo.build().unwrap();
    serve_peer_addresses(&mut sim, world.net("server").unwrap());
    let server = SocketAddr::from((world.public_addr(world.find("server").unwrap()), 8000));
    let seen = Arc::new(Mutex::new(Vec::new()));
    for client in ["pub", "priv", "deep"] {
        let net = world.net(client).unwrap();
        let seen = seen.clone();
        sim.client(client, async move {
            let mut s = net.connect_tcp(server).await?;
            assert_eq!(TcpStream::peer_addr(&s)?, server);
            assert_eq!(TcpStream::local_addr(&s)?.ip(), net.addr());
            s.write_all(b"hello").await?;
            let mut answer = String::new();
            s.read_to_string(&mut answer).await?;
            seen.lock().unwrap().push((client, answer));
            Ok(())
        });
    }
    sim.run().unwrap();
    let public_ip = |name: &str| world.public_addr(world.find(name).unwrap()).to_string();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen.len(), 3);
    for (client, peer) in seen {
        let peer: SocketAddr = peer.parse().unwrap();
        let expected = match client {
            "pub" => public_ip("pub"),
            "priv" => public_ip("nat"),
            _ => public_ip("home-cgn"),
        };
        assert_eq!(peer.ip().to_string(), expected, "{client} seen as {peer}");
    }
    let trace = world.trace().text();
    assert!(trace.contains(" nat  10."), "{trace}");
    assert!(trace.contains("tcp as"), "{trace}");
}

#[test]
fn a_private_host_cannot_be_reached_from_outside() {
    let mut topo = Topology::new(3);
    topo.host("outsider", None)
        .nat("nat", NatConfig::preset(Preset::FullCone), None)
        .host("priv", Some("nat"))
        .host("neighbour", Some("nat"));
    let (mut sim, world) = topo.build().unwrap();
    let priv_net = world.net("priv").unwrap();
    sim.host("priv", move || {
        let net = priv_net.clone();
        async move {
            let listener = net.bind_tcp(addr("0.0.0.0:9000")).await?;
            loop {
                let (mut s, _) = listener.accept().await?;
                s.write_all(b"inside").await?;
            }
        }
    });
    let priv_addr = SocketAddr::from((world.net("priv").unwrap().addr(), 9000));
    let nat_public = SocketAddr::from((world.public_addr(world.find("nat").unwrap()), 9000));
    let outsider = world.net("outsider").unwrap();
    sim.client("outsider", async move {
        // Neither its private address nor the NAT's public address leads in.
        assert!(outsider.connect_tcp(priv_addr).await.is_err());
        assert!(outsider.connect_tcp(nat_public).await.is_err());
        Ok(())
    });
    let neighbour = world.net("neighbour").unwrap();
    sim.client("neighbour", async move {
        // A host on the same LAN connects directly.
        let mut s = neighbour.connect_tcp(priv_addr).await?;
        let mut got = [0u8; 6];
        s.read_exact(&mut got).await?;
        assert_eq!(&got, b"inside");
        Ok(())
    });
    sim.run().unwrap();
}

/// Steps `sim` until `done` holds; panics after a simulated minute.
fn step_until(sim: &mut turmoil::Sim<'static>, done: impl Fn() -> bool) {
    for _ in 0..60_000 {
        if done() {
            return;
        }
        sim.step().unwrap();
    }
    panic!("not done after a simulated minute");
}

/// The client ports, in the order the server saw their connections end, when a client holding
/// eight connections (each in its own spawned task) crashes. `shift` first moves tokio's
/// process-wide task ids on: a crashed runtime drops its tasks in an order set by those ids.
fn ends_seen_after_a_crash(shift: usize) -> Vec<u16> {
    let spare = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for _ in 0..shift {
        drop(spare.spawn(async {}));
    }
    let mut topo = Topology::new(5);
    topo.host("server", None).host("client", None);
    let (mut sim, world) = topo.build().unwrap();
    let (accepted, ended) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(Vec::new())));
    let (net, counted, sink) = (
        world.net("server").unwrap(),
        accepted.clone(),
        ended.clone(),
    );
    sim.host("server", move || {
        let (net, counted, sink) = (net.clone(), counted.clone(), sink.clone());
        async move {
            let listener = net.bind_tcp(addr("0.0.0.0:8000")).await?;
            loop {
                let (mut s, peer) = listener.accept().await?;
                *counted.lock().unwrap() += 1;
                let sink = sink.clone();
                tokio::spawn(async move {
                    let _ = s.read(&mut [0u8; 1]).await;
                    sink.lock().unwrap().push(peer.port());
                });
            }
        }
    });
    let server = SocketAddr::from((world.public_addr(world.find("server").unwrap()), 8000));
    let net = world.net("client").unwrap();
    sim.host("client", move || {
        let net = net.clone();
        async move {
            for _ in 0..8 {
                let s = net.connect_tcp(server).await?;
                tokio::spawn(async move {
                    let _held = s;
                    std::future::pending::<()>().await
                });
            }
            std::future::pending().await
        }
    });
    step_until(&mut sim, || *accepted.lock().unwrap() == 8);
    sim.crash("client");
    step_until(&mut sim, || ended.lock().unwrap().len() == 8);
    let ended = ended.lock().unwrap().clone();
    ended
}

#[test]
fn a_crash_closes_its_connections_in_the_same_order_in_every_run() {
    let first = ends_seen_after_a_crash(0);
    for shift in 1..4 {
        assert_eq!(
            ends_seen_after_a_crash(shift),
            first,
            "task ids moved on by {shift}"
        );
    }
}
