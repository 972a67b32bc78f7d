//! The trace of a small exchange through two NATs: snapshot-tested, and identical for a seed.

use pilot::net::{Network, TcpListener, UdpSocket};
use pilot::wire::{Addr, Flags, Header, Protocol};
use pilot_sim::nat::{NatConfig, Preset};
use pilot_sim::topology::Topology;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A Pilot SYN in a plaintext tunnel frame, as a daemon would send it.
fn pilt_syn() -> Vec<u8> {
    let header = Header {
        flags: Flags::SYN,
        protocol: Protocol::STREAM,
        src: Addr::new(0, 1),
        dst: Addr::new(0, 2),
        src_port: 49152,
        dst_port: 1000,
        window: 512,
        ..Header::default()
    };
    let mut frame = b"PILT".to_vec();
    header.encode_packet(&[], &mut frame).unwrap();
    frame
}

/// `a` (behind a port-restricted cone) and `b` (behind a symmetric NAT) each send a datagram
/// to a public server, which echoes it; `a` also asks the server something over TCP.
fn exchange(seed: u64) -> String {
    let mut topo = Topology::new(seed);
    topo.host("server", None)
        .nat("nat-a", NatConfig::preset(Preset::PortRestrictedCone), None)
        .nat("nat-b", NatConfig::preset(Preset::Symmetric), None)
        .host("a", Some("nat-a"))
        .host("b", Some("nat-b"));
    let (mut sim, world) = topo.build().unwrap();
    let server_net = world.net("server").unwrap();
    sim.host("server", move || {
        let net = server_net.clone();
        async move {
            let udp = net.bind_udp(addr("0.0.0.0:7000")).await?;
            let tcp = net.bind_tcp(addr("0.0.0.0:8000")).await?;
            tokio::spawn(async move {
                while let Ok((mut s, _)) = tcp.accept().await {
                    let mut q = [0u8; 4];
                    if s.read_exact(&mut q).await.is_ok() {
                        let _ = s.write_all(b"pong").await;
                    }
                }
            });
            let mut buf = [0u8; 1500];
            loop {
                let (n, from) = udp.recv_from(&mut buf).await?;
                udp.send_to(&buf[..n], from).await?;
            }
        }
    });
    let server = world.public_addr(world.find("server").unwrap());
    for (name, payload) in [("a", pilt_syn()), ("b", b"hello".to_vec())] {
        let net = world.net(name).unwrap();
        sim.client(name, async move {
            let s = net.bind_udp(addr("0.0.0.0:4000")).await?;
            s.send_to(&payload, (server, 7000).into()).await?;
            let mut buf = [0u8; 1500];
            let (n, _) = s.recv_from(&mut buf).await?;
            assert_eq!(&buf[..n], &payload[..]);
            if name == "a" {
                let mut t = net.connect_tcp((server, 8000).into()).await?;
                t.write_all(b"ping").await?;
                let mut answer = [0u8; 4];
                t.read_exact(&mut answer).await?;
                assert_eq!(&answer, b"pong");
            }
            Ok(())
        });
    }
    sim.run().unwrap();
    world.trace().text()
}

#[test]
fn exchange_through_two_nats_matches_the_snapshot() {
    let trace = exchange(1);
    insta::with_settings!({
        snapshot_path => "../../snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!("two_nats_exchange", trace);
    });
}

#[test]
fn a_seed_replays_byte_for_byte_and_another_seed_differs() {
    let first = exchange(1);
    assert_eq!(first, exchange(1));
    // The symmetric NAT draws its public port from the seed.
    assert_ne!(first, exchange(2));
}
