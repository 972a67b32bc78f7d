//! Driver streams and listeners against a scripted fake daemon: data in and out, close,
//! message splitting, credits, unread streams, accept, unbind.

mod driver_support;

use driver_support::{guard, Client, FakeDaemon};
use pilot::driver::{Driver, Stream, MAX_SEND_CHUNK, RECV_BUFFER_LIMIT, WRITE_BEHIND_MESSAGES};
use pilot::ipc::{Command, Event};
use pilot::wire::Addr;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Dials through `driver`, playing the daemon's side with connection ID `conn`.
async fn dial(driver: &Driver, client: &mut Client, conn: u32) -> Stream {
    let d = driver.clone();
    let dial = tokio::spawn(async move { d.dial(Addr::new(0, 7), 1000).await });
    assert_eq!(
        client.recv().await,
        Command::Dial {
            addr: Addr::new(0, 7),
            port: 1000
        }
    );
    client.send(Event::DialOk { conn }).await;
    guard("dial", dial).await.unwrap().unwrap()
}

#[tokio::test]
async fn data_flows_both_ways_and_close_ends_the_stream() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) =
        tokio::join!(Driver::connect(daemon.path()), daemon.accept_reference());
    let driver = driver.unwrap();
    let mut stream = dial(&driver, &mut client, 5).await;
    assert_eq!(stream.conn_id(), 5);
    assert_eq!(stream.peer_addr().port, 1000);

    // Data pushed right behind DialOK is not lost.
    client
        .send(Event::Recv {
            conn: 5,
            data: b"hel".to_vec(),
        })
        .await;
    client
        .send(Event::Recv {
            conn: 5,
            data: b"lo".to_vec(),
        })
        .await;
    client.send(Event::CloseOk { conn: 5 }).await;
    let mut got = Vec::new();
    guard("read", stream.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"hello");

    let mut other = dial(&driver, &mut client, 6).await;
    guard("write", other.write_all(b"abc")).await.unwrap();
    assert_eq!(
        client.recv().await,
        Command::Send {
            conn: 6,
            data: b"abc".to_vec()
        }
    );
    guard("shutdown", other.shutdown()).await.unwrap();
    assert_eq!(client.recv().await, Command::Close { conn: 6 });
    assert!(
        other.write_all(b"x").await.is_err(),
        "no writes after shutdown"
    );

    // Dropping an open stream closes it in the daemon.
    let third = dial(&driver, &mut client, 7).await;
    drop(third);
    assert_eq!(client.recv().await, Command::Close { conn: 7 });
}

#[tokio::test]
async fn large_writes_are_split_into_messages_under_the_cap() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) =
        tokio::join!(Driver::connect(daemon.path()), daemon.accept_reference());
    let driver = driver.unwrap();
    let mut stream = dial(&driver, &mut client, 1).await;
    let payload: Vec<u8> = (0..3 * MAX_SEND_CHUNK + 100).map(|i| i as u8).collect();
    let expected = payload.clone();
    let writer = tokio::spawn(async move {
        stream.write_all(&payload).await.unwrap();
        stream.flush().await.unwrap();
        stream
    });
    let mut received = Vec::new();
    while received.len() < expected.len() {
        match client.recv().await {
            Command::Send { conn: 1, data } => {
                assert!(data.len() <= MAX_SEND_CHUNK);
                received.extend_from_slice(&data);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(received == expected);
    guard("writer", writer).await.unwrap();
}

#[tokio::test]
async fn small_writes_queue_behind_each_other_in_order_and_the_queue_is_bounded() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) =
        tokio::join!(Driver::connect(daemon.path()), daemon.accept_reference());
    let driver = driver.unwrap();
    let mut stream = dial(&driver, &mut client, 2).await;
    // Polled back to back, so the writer task cannot run in between: each write is taken
    // at once (not after the previous one reached the socket) until the queue is full.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut expected = Vec::new();
    for i in 0..WRITE_BEHIND_MESSAGES {
        let chunk = [i as u8; 16];
        let polled = std::pin::Pin::new(&mut stream).poll_write(&mut cx, &chunk);
        assert!(
            matches!(polled, std::task::Poll::Ready(Ok(16))),
            "write {i}: {polled:?}"
        );
        expected.extend_from_slice(&chunk);
    }
    let polled = std::pin::Pin::new(&mut stream).poll_write(&mut cx, b"more");
    assert!(polled.is_pending(), "the queue is bounded: {polled:?}");
    guard("flush", stream.flush()).await.unwrap();
    let mut received = Vec::new();
    while received.len() < expected.len() {
        match client.recv().await {
            Command::Send { conn: 2, data } => received.extend_from_slice(&data),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(received == expected, "every byte, in order");
}

#[tokio::test]
async fn send_credit_holds_the_writer_back_until_granted() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) = tokio::join!(
        Driver::connect(daemon.path()),
        daemon.accept_extended(1 << 20, 10)
    );
    let driver = driver.unwrap();
    let mut stream = dial(&driver, &mut client, 3).await;
    let writer = tokio::spawn(async move {
        stream.write_all(b"0123456789abcdefghij!").await.unwrap();
        stream.flush().await.unwrap();
        stream
    });
    assert_eq!(
        client.recv().await,
        Command::Send {
            conn: 3,
            data: b"0123456789".to_vec()
        }
    );
    // The writer is stuck on credit: the next message is a request made afterwards.
    let d = driver.clone();
    let info = tokio::spawn(async move { d.info_json().await });
    assert_eq!(client.recv().await, Command::Info);
    client.send(Event::SendCredit { conn: 3, bytes: 5 }).await;
    assert_eq!(
        client.recv().await,
        Command::Send {
            conn: 3,
            data: b"abcde".to_vec()
        }
    );
    client
        .send(Event::SendCredit {
            conn: 3,
            bytes: 100,
        })
        .await;
    assert_eq!(
        client.recv().await,
        Command::Send {
            conn: 3,
            data: b"fghij!".to_vec()
        }
    );
    client
        .send_json(0x0E, &serde_json::json!({"node_id": 1}))
        .await;
    guard("info", info).await.unwrap().unwrap();
    guard("writer", writer).await.unwrap();
}

#[tokio::test]
async fn reading_grants_receive_credit() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) = tokio::join!(
        Driver::connect(daemon.path()),
        daemon.accept_extended(8, 1 << 20)
    );
    let driver = driver.unwrap();
    let mut stream = dial(&driver, &mut client, 4).await;
    client
        .send(Event::Recv {
            conn: 4,
            data: b"12345678".to_vec(),
        })
        .await;
    let mut buf = [0u8; 8];
    guard("read", stream.read_exact(&mut buf)).await.unwrap();
    assert_eq!(
        client.recv().await,
        Command::RecvCredit { conn: 4, bytes: 8 }
    );
}

#[tokio::test]
async fn a_stream_nobody_reads_blocks_neither_replies_nor_other_streams() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) =
        tokio::join!(Driver::connect(daemon.path()), daemon.accept_reference());
    let driver = driver.unwrap();
    let _ignored = dial(&driver, &mut client, 1).await;
    let mut busy = dial(&driver, &mut client, 2).await;
    // Far more than the reference driver's 256-chunk channel, all for the ignored stream.
    for _ in 0..1000 {
        client
            .send(Event::Recv {
                conn: 1,
                data: vec![7; 4096],
            })
            .await;
    }
    client
        .send(Event::Recv {
            conn: 2,
            data: b"still here".to_vec(),
        })
        .await;
    let mut buf = [0u8; 10];
    guard("the other stream", busy.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"still here");
    let d = driver.clone();
    let info = tokio::spawn(async move { d.info().await });
    assert_eq!(client.recv().await, Command::Info);
    client
        .send_json(0x0E, &serde_json::json!({"node_id": 1}))
        .await;
    assert_eq!(guard("info", info).await.unwrap().unwrap().node_id, 1);
}

#[tokio::test]
async fn overflowing_an_unread_stream_without_credit_fails_and_closes_it() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) =
        tokio::join!(Driver::connect(daemon.path()), daemon.accept_reference());
    let driver = driver.unwrap();
    let mut stream = dial(&driver, &mut client, 9).await;
    let chunk = 1 << 20;
    for _ in 0..=RECV_BUFFER_LIMIT / chunk {
        client
            .send(Event::Recv {
                conn: 9,
                data: vec![1; chunk - 8],
            })
            .await;
    }
    assert_eq!(client.recv().await, Command::Close { conn: 9 });
    let mut all = Vec::new();
    let err = guard("read", stream.read_to_end(&mut all))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unread bytes"), "{err}");
    assert!(
        !all.is_empty(),
        "what arrived before the overflow was readable"
    );
}

#[tokio::test]
async fn accepted_connections_get_data_sent_right_behind_accept() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) =
        tokio::join!(Driver::connect(daemon.path()), daemon.accept_reference());
    let driver = driver.unwrap();
    let d = driver.clone();
    let listen = tokio::spawn(async move { d.listen(1000).await });
    assert_eq!(client.recv().await, Command::Bind { port: 1000 });
    client.send(Event::BindOk { port: 1000 }).await;
    client
        .send(Event::Accept {
            local_port: 1000,
            conn: 11,
            remote: Addr::new(0, 3),
            remote_port: 49200,
        })
        .await;
    client
        .send(Event::Recv {
            conn: 11,
            data: b"hi".to_vec(),
        })
        .await;
    client.send(Event::CloseOk { conn: 11 }).await;
    let mut listener = guard("listen", listen).await.unwrap().unwrap();
    let mut stream = guard("accept", listener.accept()).await.unwrap();
    assert_eq!((stream.conn_id(), stream.local_port()), (11, Some(1000)));
    assert_eq!(stream.peer_addr().addr, Addr::new(0, 3));
    let mut got = String::new();
    guard("read", stream.read_to_string(&mut got))
        .await
        .unwrap();
    assert_eq!(got, "hi");
}

#[tokio::test]
async fn closing_a_listener_unbinds_when_the_daemon_supports_it() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) = tokio::join!(
        Driver::connect(daemon.path()),
        daemon.accept_extended(1 << 16, 1 << 16)
    );
    let driver = driver.unwrap();
    let d = driver.clone();
    let listen = tokio::spawn(async move { d.listen(77).await });
    assert_eq!(client.recv().await, Command::Bind { port: 77 });
    client.send(Event::BindOk { port: 77 }).await;
    let listener = guard("listen", listen).await.unwrap().unwrap();
    let close = tokio::spawn(listener.close());
    assert_eq!(client.recv().await, Command::Unbind { port: 77 });
    client.send(Event::UnbindOk { port: 77 }).await;
    guard("close", close).await.unwrap().unwrap();

    // A dropped listener unbinds too, and a connection arriving meanwhile is refused.
    let d = driver.clone();
    let listen = tokio::spawn(async move { d.listen(78).await });
    assert_eq!(client.recv().await, Command::Bind { port: 78 });
    client.send(Event::BindOk { port: 78 }).await;
    drop(guard("listen", listen).await.unwrap().unwrap());
    assert_eq!(client.recv().await, Command::Unbind { port: 78 });
    client
        .send(Event::Accept {
            local_port: 78,
            conn: 4,
            remote: Addr::new(0, 3),
            remote_port: 1,
        })
        .await;
    assert_eq!(client.recv().await, Command::Close { conn: 4 });
}

#[tokio::test]
async fn a_dial_given_up_on_is_closed_when_it_completes() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) =
        tokio::join!(Driver::connect(daemon.path()), daemon.accept_reference());
    let driver = driver.unwrap();
    let d = driver.clone();
    let dial = tokio::spawn(async move { d.dial(Addr::new(0, 7), 7).await });
    assert!(matches!(client.recv().await, Command::Dial { .. }));
    dial.abort();
    let _ = dial.await;
    client.send(Event::DialOk { conn: 12 }).await;
    assert_eq!(client.recv().await, Command::Close { conn: 12 });
}

#[tokio::test]
async fn a_daemon_granting_no_initial_credit_gets_a_window_up_front() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) = tokio::join!(
        Driver::connect(daemon.path()),
        daemon.accept_extended(0, 1 << 16)
    );
    let driver = driver.unwrap();
    let d = driver.clone();
    let dial = tokio::spawn(async move { d.dial(Addr::new(0, 7), 1000).await });
    assert!(matches!(client.recv().await, Command::Dial { .. }));
    client.send(Event::DialOk { conn: 2 }).await;
    assert!(matches!(
        client.recv().await,
        Command::RecvCredit { conn: 2, bytes } if bytes > 0
    ));
    guard("dial", dial).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_full_accept_queue_refuses_new_connections_instead_of_blocking() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) =
        tokio::join!(Driver::connect(daemon.path()), daemon.accept_reference());
    let driver = driver.unwrap();
    let d = driver.clone();
    let listen = tokio::spawn(async move { d.listen(500).await });
    assert_eq!(client.recv().await, Command::Bind { port: 500 });
    client.send(Event::BindOk { port: 500 }).await;
    let mut listener = guard("listen", listen).await.unwrap().unwrap();
    let queue = pilot::driver::ACCEPT_QUEUE as u32;
    for conn in 1..=queue + 1 {
        let remote = Addr::new(0, 3);
        let accept = Event::Accept {
            local_port: 500,
            conn,
            remote,
            remote_port: 1,
        };
        client.send(accept).await;
    }
    assert_eq!(client.recv().await, Command::Close { conn: queue + 1 });
    let first = guard("accept", listener.accept()).await.unwrap();
    assert_eq!(first.conn_id(), 1);
}

#[tokio::test]
async fn datagrams_beyond_the_queue_are_dropped_and_counted() {
    let daemon = FakeDaemon::new();
    let (driver, mut client) =
        tokio::join!(Driver::connect(daemon.path()), daemon.accept_reference());
    let driver = driver.unwrap();
    for i in 0..pilot::driver::DATAGRAM_QUEUE + 3 {
        let data = (i as u32).to_be_bytes().to_vec();
        let src = Addr::new(0, 3);
        client
            .send(Event::RecvFrom {
                src,
                src_port: 1,
                dst_port: 9,
                data,
            })
            .await;
    }
    // A reply after the datagrams proves the reader has handled them all.
    let d = driver.clone();
    let info = tokio::spawn(async move { d.info().await });
    assert_eq!(client.recv().await, Command::Info);
    client
        .send_json(0x0E, &serde_json::json!({"node_id": 1}))
        .await;
    guard("info", info).await.unwrap().unwrap();
    assert_eq!(driver.dropped_datagrams(), 3);
    let first = guard("datagram", driver.recv_from()).await.unwrap();
    assert_eq!(first.data, 0u32.to_be_bytes());
}
