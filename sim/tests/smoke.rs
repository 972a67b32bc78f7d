use pilot::net::{Network, UdpSocket};
use pilot_sim::nat::{NatConfig, Preset};
use pilot_sim::topology::Topology;
use std::time::Duration;

#[test]
fn private_host_reaches_public_server_and_gets_reply() {
    let mut topo = Topology::new(7);
    topo.host("server", None)
        .nat("nat-a", NatConfig::preset(Preset::PortRestrictedCone), None)
        .host("a", Some("nat-a"));
    let (mut sim, world) = topo.build().unwrap();
    let w = world.clone();
    sim.host("server", move || {
        let net = w.net("server").unwrap();
        async move {
            let s = net.bind_udp("0.0.0.0:7000".parse().unwrap()).await?;
            let mut buf = [0u8; 100];
            loop {
                let (n, from) = s.recv_from(&mut buf).await?;
                s.send_to(&buf[..n], from).await?;
            }
        }
    });
    let net = world.net("a").unwrap();
    let server = world.public_addr(world.find("server").unwrap());
    sim.client("a", async move {
        let s = net.bind_udp("0.0.0.0:4000".parse().unwrap()).await?;
        s.send_to(b"hello", (server, 7000).into()).await?;
        let mut buf = [0u8; 100];
        let (n, from) =
            tokio::time::timeout(Duration::from_secs(1), s.recv_from(&mut buf)).await??;
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, (server, 7000).into());
        Ok(())
    });
    sim.run().unwrap();
    println!("{}", world.trace().text());
}
