//! Two daemons in one process on loopback, with an in-process registry and beacon: trust
//! enforcement, the handshake, echo, bulk data, datagrams, revocation, restart with the same
//! identity.

mod daemon_support;

use daemon_support::{lists, make_trust, wait_trust, within, Rendezvous};
use pilot::daemon::{ClientEvent, ClientOptions, Session};
use pilot::ipc::HandshakeCommand;
use pilot::net::MemStorage;
use pilot::wire::Addr;

async fn echo_round_trip(session: &mut Session, peer: Addr, payload: Vec<u8>) -> Vec<u8> {
    let conn = within(session.dial(peer, 7)).await.unwrap();
    let want = payload.len();
    session.send(conn, payload);
    let mut got = Vec::new();
    while got.len() < want {
        match within(session.next_event()).await.unwrap() {
            ClientEvent::Recv { conn: c, data } if c == conn => {
                session.grant(conn, data.len() as u32);
                got.extend_from_slice(&data);
            }
            ClientEvent::Closed { conn: c } if c == conn => panic!("closed early"),
            _ => {}
        }
    }
    session.close(conn);
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_then_echo_bulk_datagrams_and_revoke() {
    let rv = Rendezvous::start().await;
    let a = rv.daemon(1).await;
    // B is public, so A can resolve it and reach its tunnel: only the daemon's trust check
    // stands between A and B's ports.
    let mut public = rv.config();
    public.public = true;
    let b = rv.daemon_with(2, public, MemStorage::new()).await;
    let (ah, bh) = (a.handle.clone(), b.handle.clone());
    assert_ne!(ah.node_id(), bh.node_id());

    // Not trusted yet: every port but 444 is refused.
    let mut sa = ah.session(ClientOptions::default()).await.unwrap();
    let refused = within(sa.dial(bh.address(), 7)).await;
    let why = refused.unwrap_err();
    assert!(why.contains("refused"), "{why}");

    make_trust(&ah, &bh).await;
    let an = ah.node_id();
    wait_trust(&bh, |_, t| lists(t, "trusted", an)).await;

    assert_eq!(
        echo_round_trip(&mut sa, bh.address(), b"hello".to_vec()).await,
        b"hello"
    );
    let bulk: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(
        echo_round_trip(&mut sa, bh.address(), bulk.clone()).await,
        bulk
    );

    // A datagram reaches the session that bound its port.
    let mut sb = bh.session(ClientOptions::default()).await.unwrap();
    sb.listen(9000).await.unwrap();
    sa.send_to(bh.address(), 9000, b"dgram".to_vec())
        .await
        .unwrap();
    loop {
        if let ClientEvent::Datagram {
            src,
            dst_port,
            data,
        } = within(sb.next_event()).await.unwrap()
        {
            assert_eq!(
                (src.addr, dst_port, data.as_slice()),
                (ah.address(), 9000, &b"dgram"[..])
            );
            break;
        }
    }

    // Info reports the peer and the registration.
    let info = ah.info().await.unwrap();
    assert_eq!(info["node_id"], ah.node_id());
    assert!(info["peer_list"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["node_id"] == bh.node_id()));

    // B revokes: A is refused again, and learns of it.
    bh.handshake(HandshakeCommand::Revoke { node: an })
        .await
        .unwrap();
    let bn = bh.node_id();
    wait_trust(&ah, |_, t| !lists(t, "trusted", bn)).await;
    let refused = within(sa.dial(bh.address(), 7)).await;
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_node_id_and_trust() {
    let rv = Rendezvous::start().await;
    let storage = MemStorage::new();
    let a = rv.daemon_with(3, rv.config(), storage.clone()).await;
    let b = rv.daemon(4).await;
    make_trust(&a.handle, &b.handle).await;
    let node = a.handle.node_id();
    a.handle.shutdown().await;
    within(a.task).await.unwrap();

    let a2 = rv.daemon_with(5, rv.config(), storage).await;
    assert_eq!(a2.handle.node_id(), node);
    let trusted = a2
        .handle
        .handshake(HandshakeCommand::Trusted)
        .await
        .unwrap();
    assert!(lists(&trusted, "trusted", b.handle.node_id()));
    // The restarted daemon reaches its trusted peer again (new tunnel keys, same identity).
    let mut s = a2.handle.session(ClientOptions::default()).await.unwrap();
    assert_eq!(
        echo_round_trip(&mut s, b.handle.address(), b"again".to_vec()).await,
        b"again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_to_the_standby_registry() {
    let primary = Rendezvous::start().await;
    let standby = Rendezvous::start().await;
    let mut config = primary.config();
    config.standby_registry = Some(standby.registry.local_addr());
    config.keepalive = std::time::Duration::from_millis(100);
    let daemon = primary.daemon_with(21, config, MemStorage::new()).await;
    let Rendezvous { registry, .. } = primary;
    registry.shutdown().await;
    // Heartbeats fail, the link moves to the standby, and the daemon registers there.
    tokio::time::timeout(
        std::time::Duration::from_secs(40),
        standby.registry.wait_until(|r| !r.data().nodes.is_empty()),
    )
    .await
    .expect("the daemon never registered with the standby");
    let info = daemon.handle.info().await.unwrap();
    assert!(info["node_id"].as_u64().is_some());
    assert_eq!(info["registry"], standby.registry.local_addr().to_string());
    assert_eq!(info["registry_standby"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_on_the_standby_when_the_primary_does_not_answer() {
    let standby = Rendezvous::start().await;
    // An address nothing listens on: connections to it are refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = standby.config();
    config.registry = dead;
    config.standby_registry = Some(standby.registry.local_addr());
    let daemon = standby.daemon_with(22, config, MemStorage::new()).await;
    let info = daemon.handle.info().await.unwrap();
    assert_eq!(info["registry"], standby.registry.local_addr().to_string());
    assert_eq!(info["registry_standby"], true);
    within(standby.registry.wait_until(|r| !r.data().nodes.is_empty())).await;

    // Without a standby the same start fails, naming the address that did not answer.
    let mut alone = standby.config();
    alone.registry = dead;
    let err = standby.start_error(23, alone).await;
    assert!(err.contains(&dead.to_string()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_clears_the_request_on_both_sides() {
    let rv = Rendezvous::start().await;
    let a = rv.daemon(31).await;
    let b = rv.daemon(32).await;
    let (an, bn) = (a.handle.node_id(), b.handle.node_id());
    let mut a_changes = a.handle.trust_changes();
    a.handle
        .handshake(HandshakeCommand::Send {
            node: bn,
            justification: "please".into(),
        })
        .await
        .unwrap();
    a_changes.borrow_and_update();
    wait_trust(&b.handle, |p, _| lists(p, "pending", an)).await;
    b.handle
        .handshake(HandshakeCommand::Reject {
            node: an,
            reason: "no".into(),
        })
        .await
        .unwrap();
    let pending = b.handle.handshake(HandshakeCommand::Pending).await.unwrap();
    assert!(!lists(&pending, "pending", an));
    // A hears the rejection (its outgoing request is cleared and persisted).
    within(a_changes.changed()).await.unwrap();
    let trusted = a.handle.handshake(HandshakeCommand::Trusted).await.unwrap();
    assert!(!lists(&trusted, "trusted", bn));
    // An approval that was never asked for changes nothing.
    let approved = b
        .handle
        .handshake(HandshakeCommand::Approve { node: an })
        .await
        .unwrap();
    assert_eq!(approved["status"], "approved");
    let trusted = b.handle.handshake(HandshakeCommand::Trusted).await.unwrap();
    assert!(!lists(&trusted, "trusted", an));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_fin_to_peers() {
    let rv = Rendezvous::start().await;
    let a = rv.daemon(41).await;
    let b = rv.daemon(42).await;
    make_trust(&a.handle, &b.handle).await;
    let mut server = b.handle.session(ClientOptions::default()).await.unwrap();
    server.listen(6000).await.unwrap();
    let client = a.handle.session(ClientOptions::default()).await.unwrap();
    let conn = within(client.dial(b.handle.address(), 6000)).await.unwrap();
    client.send(conn, b"last words".to_vec());
    let accepted = loop {
        if let ClientEvent::Accept { conn, .. } = within(server.next_event()).await.unwrap() {
            break conn;
        }
    };
    a.handle.shutdown().await;
    // B gets the data, then the end of the stream: a FIN, not a silent timeout.
    let mut got = Vec::new();
    loop {
        match within(server.next_event()).await.unwrap() {
            ClientEvent::Recv { conn, data } if conn == accepted => got.extend_from_slice(&data),
            ClientEvent::Closed { conn } if conn == accepted => break,
            _ => {}
        }
    }
    assert_eq!(got, b"last words");
    within(a.task).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_reaches_its_own_address_without_the_network() {
    let rv = Rendezvous::start().await;
    let a = rv.daemon(6).await;
    let own = a.handle.address();
    let mut s = a.handle.session(ClientOptions::default()).await.unwrap();
    // Its own echo service, with no trust and no tunnel: the packets loop back inside.
    assert_eq!(
        echo_round_trip(&mut s, own, b"myself".to_vec()).await,
        b"myself"
    );
    let bulk: Vec<u8> = (0..1_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
    assert_eq!(echo_round_trip(&mut s, own, bulk.clone()).await, bulk);
    // A closed port of its own is refused like anyone's.
    let refused = within(s.dial(own, 6001)).await;
    assert!(refused.is_err());
    let info = a.handle.info().await.unwrap();
    assert_eq!(info["peers"], 0, "no tunnel peer was made for itself");
}
