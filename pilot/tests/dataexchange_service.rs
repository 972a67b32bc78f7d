//! Data exchange (port 1001) between two daemons on loopback: the SDK client, frames written
//! byte by byte from the spec's layout, hostile names, limits, and the disabled service.

mod daemon_support;

use daemon_support::{make_trust, within, Rendezvous};
use pilot::daemon::ipc;
use pilot::daemon::Daemon;
use pilot::driver::{Driver, Stream};
use pilot::net::MemStorage;
use pilot::services::dataexchange::quota::QuotaConfig;
use pilot::services::dataexchange::{dial, ClientError, DiskMailbox, Mailbox, MemMailbox, Reply};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A sender with an IPC socket and a public receiver storing into `mailbox`.
async fn pair(
    rv: &Rendezvous,
    dir: &Path,
    mailbox: Option<Arc<dyn Mailbox>>,
    quota: QuotaConfig,
) -> (Daemon, Daemon, Driver) {
    let a = rv.daemon(21).await;
    let mut config = rv.config();
    config.public = true;
    config.mailbox = mailbox;
    config.exchange_quota = quota;
    let b = rv.daemon_with(22, config, MemStorage::new()).await;
    let path = dir.join("a.sock");
    let listener = ipc::bind(&path).await.unwrap();
    tokio::spawn(ipc::serve(listener, a.handle.clone()));
    make_trust(&a.handle, &b.handle).await;
    let driver = within(Driver::connect(&path)).await.unwrap();
    (a, b, driver)
}

fn ack(kind: &str, bytes: u64) -> Reply {
    Reply::Ack {
        kind: kind.into(),
        bytes,
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_files_are_stored_before_the_ack() {
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let mailbox = DiskMailbox::new(&home).with_min_free(0);
    let (_a, b, driver) = pair(
        &rv,
        dir.path(),
        Some(Arc::new(mailbox.clone())),
        QuotaConfig::default(),
    )
    .await;
    let mut client = within(dial(&driver, b.handle.address())).await.unwrap();

    assert_eq!(
        within(client.send_text("hello")).await.unwrap(),
        ack("TEXT", 5)
    );
    assert_eq!(
        within(client.send_json("{\"k\":1}")).await.unwrap(),
        ack("JSON", 7)
    );
    assert_eq!(
        within(client.send_binary(&[0xff, 0x00, 0x41]))
            .await
            .unwrap(),
        ack("BINARY", 3)
    );
    let inbox = files(mailbox.inbox_dir());
    assert_eq!(inbox.len(), 3, "{inbox:?}");
    let text = inbox.iter().find(|n| n.starts_with("TEXT-")).unwrap();
    let entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(mailbox.inbox_dir().join(text)).unwrap()).unwrap();
    assert_eq!(entry["data"], "hello");
    assert_eq!(entry["bytes"], 5);
    assert_eq!(entry["type"], "TEXT");
    assert_eq!(entry["from"], _a.handle.address().to_string());
    assert!(entry["received_at"].as_str().unwrap().ends_with('Z'));
    let binary = inbox.iter().find(|n| n.starts_with("BINARY-")).unwrap();
    let entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(mailbox.inbox_dir().join(binary)).unwrap()).unwrap();
    assert_eq!(entry["data"], "\u{fffd}\u{0}A");

    // Hostile names never leave the received folder.
    assert_eq!(
        within(client.send_file("../../x.txt", b"one"))
            .await
            .unwrap(),
        ack("FILE", 3)
    );
    assert_eq!(
        within(client.send_file("/etc/passwd", b"two"))
            .await
            .unwrap(),
        ack("FILE", 3)
    );
    let nul = within(client.send_file("a\0b", b"three")).await.unwrap();
    assert_eq!(nul, ack("FILE", 5));
    let long = "n".repeat(10_000);
    assert_eq!(
        within(client.send_file(&long, b"four")).await.unwrap(),
        ack("FILE", 4)
    );
    // An empty name stores nothing (as the reference); `..` is refused.
    assert_eq!(
        within(client.send_file("", b"five")).await.unwrap(),
        ack("FILE", 4)
    );
    match within(client.send_file("..", b"six")).await {
        Err(ClientError::Refused(why)) => assert!(why.contains("invalid file name"), "{why}"),
        other => panic!("{other:?}"),
    }
    let received = files(mailbox.received_dir());
    assert_eq!(received.len(), 4, "{received:?}");
    assert!(received
        .iter()
        .any(|n| n.starts_with("x-") && n.ends_with(".txt")));
    assert!(received.iter().any(|n| n.starts_with("passwd-")));
    assert!(received.iter().any(|n| n.starts_with("ab-")));
    assert!(received.iter().all(|n| n.len() < 200));
    assert!(!dir.path().join("x.txt").exists());

    // Larger than a frame: streamed with progress, stored whole.
    let big: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut seen = Vec::new();
    let reply =
        within(client.send_file_from("big.bin", &big[..], big.len() as u64, |n| seen.push(n)))
            .await
            .unwrap();
    assert_eq!(reply, ack("FILE", big.len() as u64));
    assert_eq!(seen.last(), Some(&(big.len() as u64)));
    assert!(seen.len() > 10);
    let stored = files(mailbox.received_dir())
        .into_iter()
        .find(|n| n.starts_with("big-"))
        .unwrap();
    assert_eq!(
        std::fs::read(mailbox.received_dir().join(stored)).unwrap(),
        big
    );
    within(client.close()).await.unwrap();
}

async fn raw_reply(stream: &mut Stream) -> Option<(u32, String)> {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await.ok()?;
    let kind = u32::from_be_bytes(header[..4].try_into().unwrap());
    let len = u32::from_be_bytes(header[4..].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.ok()?;
    Some((kind, String::from_utf8(body).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_from_the_spec_layout_and_bad_frames() {
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mailbox = MemMailbox::new();
    let (_a, b, driver) = pair(
        &rv,
        dir.path(),
        Some(Arc::new(mailbox.clone())),
        QuotaConfig::default(),
    )
    .await;
    let peer = b.handle.address();

    let mut s = within(driver.dial(peer, 1001)).await.unwrap();
    // TEXT "hello", header and payload in two writes as the reference writer does.
    s.write_all(&[0, 0, 0, 1, 0, 0, 0, 5]).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    assert_eq!(
        within(raw_reply(&mut s)).await,
        Some((1, "ACK TEXT 5 bytes".into()))
    );
    // FILE: [u16 name_len][name][data].
    s.write_all(&[
        0, 0, 0, 4, 0, 0, 0, 9, 0, 5, b'a', b'.', b'b', b'i', b'n', 1, 2,
    ])
    .await
    .unwrap();
    assert_eq!(
        within(raw_reply(&mut s)).await,
        Some((1, "ACK FILE 2 bytes".into()))
    );
    // A name length past the payload: all data, no name, not stored.
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 3, 0, 9, 7])
        .await
        .unwrap();
    assert_eq!(
        within(raw_reply(&mut s)).await,
        Some((1, "ACK FILE 3 bytes".into()))
    );
    // An unknown type is read and acknowledged, not stored.
    s.write_all(&[0, 0, 0, 9, 0, 0, 0, 2, 1, 2]).await.unwrap();
    assert_eq!(
        within(raw_reply(&mut s)).await,
        Some((1, "ACK UNKNOWN(9) 2 bytes".into()))
    );
    // Oversized: the connection is closed without a reply.
    s.write_all(&[0, 0, 0, 2, 1, 0, 0, 1]).await.unwrap();
    assert_eq!(within(raw_reply(&mut s)).await, None);

    // Truncated: 100 bytes announced, 10 sent, then the end. Nothing is stored.
    let mut s = within(driver.dial(peer, 1001)).await.unwrap();
    s.write_all(&[
        0, 0, 0, 4, 0, 0, 0, 100, 0, 3, b'c', b'u', b't', 1, 2, 3, 4, 5,
    ])
    .await
    .unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(within(raw_reply(&mut s)).await, None);

    let names: Vec<String> = mailbox.entries().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("inbox/TEXT-"));
    assert!(names[1].starts_with("received/a-") && names[1].ends_with(".bin"));
    assert_eq!(mailbox.entries()[1].1, vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_and_quota_refuse_without_losing_the_connection() {
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mailbox = MemMailbox::with_capacity(1000);
    let quota = QuotaConfig {
        bytes: 3000,
        period: Duration::from_secs(3600),
    };
    let (_a, b, driver) = pair(&rv, dir.path(), Some(Arc::new(mailbox.clone())), quota).await;
    let mut client = within(dial(&driver, b.handle.address())).await.unwrap();
    let reply = within(client.send_binary(&[7; 2000])).await.unwrap();
    assert!(
        matches!(&reply, Reply::Err { kind, message } if kind == "BINARY" && message.contains("not enough space")),
        "{reply:?}"
    );
    match within(client.send_file("f.bin", &[1; 2000])).await {
        Err(ClientError::Refused(why)) => assert!(why.contains("not enough space"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(mailbox.entries().is_empty());
    // The same connection still works, and the refused bytes were not charged.
    assert_eq!(
        within(client.send_text("ok")).await.unwrap(),
        ack("TEXT", 2)
    );
    // 3000 bytes per hour: the fourth 900-byte message is over the quota.
    for _ in 0..2 {
        let _ = within(client.send_binary(&[1; 100])).await.unwrap();
    }
    let reply = within(client.send_binary(&[1; 2900])).await.unwrap();
    assert!(
        matches!(&reply, Reply::Err { message, .. } if message.contains("quota exceeded")),
        "{reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_service_refuses_connections() {
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_a, b, driver) = pair(&rv, dir.path(), None, QuotaConfig::default()).await;
    let err = within(dial(&driver, b.handle.address()))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_client_dials_through_its_daemon() {
    use pilot::services::conn::ServiceStream;
    use pilot::services::dataexchange::DataClient;
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mailbox = MemMailbox::new();
    let (a, b, _driver) = pair(
        &rv,
        dir.path(),
        Some(Arc::new(mailbox.clone())),
        QuotaConfig::default(),
    )
    .await;
    for round in 0..3 {
        let stream = within(ServiceStream::dial(&a.handle, b.handle.address(), 1001))
            .await
            .unwrap();
        let mut client = DataClient::new(stream);
        let text = format!("round {round}");
        assert_eq!(
            within(client.send_text(&text)).await.unwrap(),
            ack("TEXT", text.len() as u64)
        );
        // Dropping the client closes the connection and its session.
    }
    assert_eq!(mailbox.entries().len(), 3);
}
