//! The UDP side of `SimNet` on one host: binding, ports, loopback, refusals.

use pilot::net::{Network, UdpSocket};
use pilot_sim::topology::Topology;
use std::io::ErrorKind;
use std::net::SocketAddr;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn binding_ports_loopback_and_refusals() {
    let mut topo = Topology::new(1);
    topo.host("h", None).host("peer", None);
    let (mut sim, world) = topo.build().unwrap();
    let net = world.net("h").unwrap();
    let own = net.addr();
    sim.client("h", async move {
        let a = net.bind_udp(addr("0.0.0.0:0")).await?;
        let b = net.bind_udp(addr("0.0.0.0:0")).await?;
        assert_eq!(a.local_addr()?.port(), 49152);
        assert_eq!(b.local_addr()?.port(), 49153);
        let fixed = net.bind_udp(SocketAddr::from((own, 5000))).await?;
        assert_eq!(fixed.local_addr()?, SocketAddr::from((own, 5000)));

        let in_use = net.bind_udp(addr("0.0.0.0:5000")).await.unwrap_err();
        assert_eq!(in_use.kind(), ErrorKind::AddrInUse);
        let foreign = net.bind_udp(addr("10.9.9.9:1")).await.unwrap_err();
        assert_eq!(foreign.kind(), ErrorKind::AddrNotAvailable);
        let v6 = net.bind_udp(addr("[::]:1")).await.unwrap_err();
        assert_eq!(v6.kind(), ErrorKind::AddrNotAvailable);

        // Loopback and the host's own address reach its sockets directly.
        a.send_to(b"to-self", addr("127.0.0.1:5000")).await?;
        let mut buf = [0u8; 16];
        let (n, from) = fixed.recv_from(&mut buf).await?;
        assert_eq!(&buf[..n], b"to-self");
        assert_eq!(from, addr("127.0.0.1:49152"));
        b.send_to(b"via-own-ip", SocketAddr::from((own, 5000)))
            .await?;
        let (n, from) = fixed.recv_from(&mut buf).await?;
        assert_eq!(&buf[..n], b"via-own-ip");
        assert_eq!(from, SocketAddr::from((own, 49153)));

        // A closed socket frees its port; datagrams to it are dropped.
        drop(fixed);
        let again = net.bind_udp(addr("0.0.0.0:5000")).await?;
        drop(again);
        a.send_to(b"nobody", SocketAddr::from((own, 5000))).await?;
        // Truncation: a short buffer gets the first bytes, like a real socket.
        let c = net.bind_udp(addr("0.0.0.0:6000")).await?;
        a.send_to(b"0123456789", addr("127.0.0.1:6000")).await?;
        let mut small = [0u8; 4];
        let (n, _) = c.recv_from(&mut small).await?;
        assert_eq!(&small[..n], b"0123");
        Ok(())
    });
    sim.run().unwrap();
    let trace = world.trace().text();
    assert!(trace.contains("\"nobody\" port unreachable"), "{trace}");
}
