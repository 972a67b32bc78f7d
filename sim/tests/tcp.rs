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
