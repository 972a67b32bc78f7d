//! Probabilistic link faults: they happen about as often as asked, and exactly the same way for
//! the same seed.

use pilot::net::{Network, UdpSocket};
use pilot_sim::topology::Topology;
use pilot_sim::world::LinkFaults;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Sends 200 numbered datagrams over a faulty link; returns the numbers received, in order.
fn deliveries(seed: u64, faults: LinkFaults) -> Vec<u8> {
    let mut topo = Topology::new(seed);
    topo.host("tx", None).host("rx", None);
    let (mut sim, world) = topo.build().unwrap();
    world.set_link_faults(world.find("tx").unwrap(), world.find("rx").unwrap(), faults);
    let got = Arc::new(Mutex::new(Vec::new()));
    let (rx_net, sink) = (world.net("rx").unwrap(), got.clone());
    sim.host("rx", move || {
        let (net, sink) = (rx_net.clone(), sink.clone());
        async move {
            let s = net.bind_udp("0.0.0.0:9".parse().unwrap()).await?;
            let mut buf = [0u8; 4];
            loop {
                let (n, _) = s.recv_from(&mut buf).await?;
                sink.lock().unwrap().push(buf[n - 1]);
            }
        }
    });
    let to = SocketAddr::from((world.net("rx").unwrap().addr(), 9));
    let tx = world.net("tx").unwrap();
    sim.client("tx", async move {
        let s = tx.bind_udp("0.0.0.0:0".parse().unwrap()).await?;
        for i in 0..200u8 {
            s.send_to(&[i], to).await?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    });
    sim.run().unwrap();
    let got = got.lock().unwrap().clone();
    got
}

#[test]
fn loss_drops_about_the_share_asked_and_replays_exactly() {
    let lossy = LinkFaults {
        loss: 0.3,
        ..LinkFaults::default()
    };
    let got = deliveries(1, lossy);
    assert!(
        (110..=170).contains(&got.len()),
        "{} of 200 arrived",
        got.len()
    );
    assert_eq!(got, deliveries(1, lossy));
    assert_ne!(got, deliveries(2, lossy));
}

#[test]
fn duplication_and_reordering_change_what_arrives() {
    let dup = deliveries(
        1,
        LinkFaults {
            duplicate: 0.25,
            ..LinkFaults::default()
        },
    );
    assert!((220..=280).contains(&dup.len()), "{} arrived", dup.len());

    let jumbled = deliveries(
        1,
        LinkFaults {
            reorder: 0.2,
            jitter: Duration::from_millis(3),
            ..LinkFaults::default()
        },
    );
    assert_eq!(jumbled.len(), 200);
    let mut sorted = jumbled.clone();
    sorted.sort();
    assert_ne!(jumbled, sorted, "nothing was reordered");
    assert_eq!(sorted, (0..200u8).collect::<Vec<_>>());

    let clean = deliveries(1, LinkFaults::default());
    assert_eq!(clean, (0..200u8).collect::<Vec<_>>());
}
