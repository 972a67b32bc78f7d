//! Driver requests against a scripted fake daemon: Hello and fallback, reply matching, errors,
//! malformed replies, datagrams and socket loss.

mod driver_support;

use driver_support::{guard, FakeDaemon};
use pilot::driver::{Driver, DriverError};
use pilot::ipc::{Command, Event, HandshakeCommand};
use pilot::wire::{Addr, SocketAddr};
use serde_json::json;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn reference_daemon_falls_back_and_serves_info() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) =
        tokio::join!(Driver::connect(daemon.path()), daemon.accept_reference());
    let driver = driver.unwrap();
    assert!(!driver.features().credit && !driver.features().unbind);

    let info = tokio::spawn({
        let driver = driver.clone();
        async move { driver.info().await }
    });
    assert_eq!(client.recv().await, Command::Info);
    client
        .send_json(
            0x0E,
            &json!({"node_id": 42, "address": "0:0000.0000.002A", "uptime_secs": 3,
                    "peer_list": null, "conn_list": [], "something_new": {"x": 1}}),
        )
        .await;
    let info = guard("info", info).await.unwrap().unwrap();
    assert_eq!(info.node_id, 42);
    assert_eq!(info.address, "0:0000.0000.002A");
}

#[tokio::test]
async fn hello_negotiates_the_extensions() {
    let daemon = FakeDaemon::new();
    let (driver, _client) = tokio::join!(
        Driver::connect(daemon.path()),
        daemon.accept_extended(4096, 8192)
    );
    let features = driver.unwrap().features();
    assert!(features.credit && features.unbind && features.bound_datagrams);
    assert_eq!((features.recv_credit, features.send_credit), (4096, 8192));
}

#[tokio::test]
async fn connect_to_a_missing_socket_says_how_to_start_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let err = Driver::connect(dir.path().join("none.sock"))
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::Connect { .. }));
    assert!(err.to_string().contains("pilotctl daemon start"), "{err}");
}

#[tokio::test]
async fn an_error_answers_the_oldest_request_and_replies_match_by_code() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) =
        tokio::join!(Driver::connect(daemon.path()), daemon.accept_reference());
    let driver = driver.unwrap();

    let d = driver.clone();
    let pending = tokio::spawn(async move { d.pending().await });
    assert_eq!(
        client.recv().await,
        Command::Handshake(HandshakeCommand::Pending)
    );
    let d = driver.clone();
    let listen = tokio::spawn(async move { d.listen(80).await.map(|l| l.port()) });
    assert_eq!(client.recv().await, Command::Bind { port: 80 });
    let d = driver.clone();
    let resolve = tokio::spawn(async move { d.resolve_hostname("alice").await });
    assert_eq!(
        client.recv().await,
        Command::ResolveHostname("alice".into())
    );

    // The resolve reply arrives first, then an error (the oldest: pending), then BindOK.
    client
        .send_json(0x12, &json!({"type": "resolve_hostname_ok", "node_id": 5,
                                  "address": "0:0000.0000.0005", "public": true, "hostname": "alice"}))
        .await;
    client.send(Event::error("registry unavailable")).await;
    client.send(Event::BindOk { port: 80 }).await;

    let resolved = guard("resolve", resolve).await.unwrap().unwrap();
    assert_eq!((resolved.node_id, resolved.public), (5, true));
    assert_eq!(resolved.extra["type"], "resolve_hostname_ok");
    let err = guard("pending", pending).await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "pending: daemon: registry unavailable");
    assert_eq!(guard("listen", listen).await.unwrap().unwrap(), 80);
}

#[tokio::test]
async fn asynchronous_send_errors_do_not_fail_later_requests() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) =
        tokio::join!(Driver::connect(daemon.path()), daemon.accept_reference());
    let driver = driver.unwrap();
    let d = driver.clone();
    let trusted = tokio::spawn(async move { d.trusted().await });
    assert_eq!(
        client.recv().await,
        Command::Handshake(HandshakeCommand::Trusted)
    );
    client
        .send(Event::error("sendto: no route to 0:0000.0000.0009"))
        .await;
    client
        .send_json(
            0x10,
            &json!({"trusted": [{"node_id": 9, "mutual": true, "approved_at": 7}]}),
        )
        .await;
    let trusted = guard("trusted", trusted).await.unwrap().unwrap();
    assert_eq!((trusted[0].node_id, trusted[0].mutual), (9, true));
}

#[tokio::test]
async fn malformed_replies_are_errors_not_hangs() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) =
        tokio::join!(Driver::connect(daemon.path()), daemon.accept_reference());
    let driver = driver.unwrap();

    let d = driver.clone();
    let dial = tokio::spawn(async move { d.dial(Addr::new(0, 5), 7).await.map(drop) });
    assert!(matches!(client.recv().await, Command::Dial { .. }));
    client.send_raw(0x04, &[0, 1]).await; // DialOK needs 4 bytes
    let err = guard("dial", dial).await.unwrap().unwrap_err();
    assert!(
        matches!(err, DriverError::Malformed { op: "dial", .. }),
        "{err}"
    );

    let d = driver.clone();
    let info = tokio::spawn(async move { d.info().await });
    assert_eq!(client.recv().await, Command::Info);
    client.send_raw(0x0E, b"{not json").await;
    let err = guard("info", info).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("malformed reply"), "{err}");

    // The driver still works afterwards.
    let d = driver.clone();
    let approve = tokio::spawn(async move { d.approve(3).await });
    assert_eq!(
        client.recv().await,
        Command::Handshake(HandshakeCommand::Approve { node: 3 })
    );
    client
        .send_json(0x10, &json!({"node_id": 3, "status": "approved"}))
        .await;
    assert_eq!(
        guard("approve", approve).await.unwrap().unwrap().status,
        "approved"
    );
}

#[tokio::test]
async fn datagrams_in_and_out() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) =
        tokio::join!(Driver::connect(daemon.path()), daemon.accept_reference());
    let driver = driver.unwrap();
    guard("send_to", driver.send_to(Addr::new(0, 9), 1234, b"ping"))
        .await
        .unwrap();
    assert_eq!(
        client.recv().await,
        Command::SendTo {
            addr: Addr::new(0, 9),
            port: 1234,
            data: b"ping".to_vec()
        }
    );
    client
        .send(Event::RecvFrom {
            src: Addr::new(0, 9),
            src_port: 49152,
            dst_port: 1234,
            data: b"pong".to_vec(),
        })
        .await;
    let datagram = guard("datagram", driver.recv_from()).await.unwrap();
    assert_eq!(datagram.src, SocketAddr::new(Addr::new(0, 9), 49152));
    assert_eq!(
        (datagram.dst_port, datagram.data.as_slice()),
        (1234, &b"pong"[..])
    );
    let huge = vec![0u8; pilot::driver::MAX_DATAGRAM + 1];
    assert!(matches!(
        driver.send_to(Addr::new(0, 9), 1, &huge).await,
        Err(DriverError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn socket_loss_fails_every_waiter_stream_and_listener() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) =
        tokio::join!(Driver::connect(daemon.path()), daemon.accept_reference());
    let driver = driver.unwrap();

    let d = driver.clone();
    let dial = tokio::spawn(async move { d.dial(Addr::new(0, 5), 1000).await });
    assert!(matches!(client.recv().await, Command::Dial { .. }));
    client.send(Event::DialOk { conn: 1 }).await;
    let mut stream = guard("dial", dial).await.unwrap().unwrap();

    let d = driver.clone();
    let listen = tokio::spawn(async move { d.listen(90).await });
    assert_eq!(client.recv().await, Command::Bind { port: 90 });
    client.send(Event::BindOk { port: 90 }).await;
    let mut listener = guard("listen", listen).await.unwrap().unwrap();

    let d = driver.clone();
    let info = tokio::spawn(async move { d.info().await });
    assert_eq!(client.recv().await, Command::Info);
    drop(client); // the daemon goes away

    let err = guard("info", info).await.unwrap().unwrap_err();
    assert!(matches!(err, DriverError::Disconnected(_)), "{err}");
    let mut buf = [0u8; 8];
    let read = guard("read", stream.read(&mut buf)).await;
    assert_eq!(
        read.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionAborted,
        "socket loss is an error, not a clean end of stream"
    );
    assert!(matches!(
        guard("accept", listener.accept()).await,
        Err(DriverError::Disconnected(_))
    ));
    assert!(matches!(
        guard("recv_from", driver.recv_from()).await,
        Err(DriverError::Disconnected(_))
    ));
    assert!(matches!(
        driver.info().await,
        Err(DriverError::Disconnected(_))
    ));
}

#[tokio::test]
async fn a_socket_that_never_answers_hello_is_a_clear_error() {
    let daemon = FakeDaemon::new();
    let connect = tokio::spawn(Driver::connect(daemon.path().to_path_buf()));
    let mut client = daemon.accept().await;
    assert!(matches!(client.recv().await, Command::Hello(_)));
    // Say nothing; let the clock run to the Hello deadline.
    tokio::time::pause();
    let err = connect.await.unwrap().unwrap_err();
    assert!(matches!(err, DriverError::NoAnswer { .. }), "{err}");
    assert!(err.to_string().contains("does not answer"), "{err}");
}

#[tokio::test]
async fn oversized_requests_are_refused_before_they_reach_the_socket() {
    let daemon = FakeDaemon::new();
    let (driver, _client) = tokio::join!(Driver::connect(daemon.path()), daemon.accept_reference());
    let justification = "x".repeat(pilot::ipc::MAX_MESSAGE);
    let err = driver
        .unwrap()
        .handshake(5, &justification)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DriverError::TooLarge { len, .. } if len > pilot::ipc::MAX_MESSAGE),
        "{err}"
    );
}
