//! Webhooks against a small HTTP server on loopback: the events a daemon posts, their JSON
//! shape, the hot swap, and a receiver that never answers (the daemon does not wait for it).

mod daemon_support;

use daemon_support::{make_trust, within, Rendezvous};
use pilot::net::{MemStorage, SystemClock};
use pilot::services::conn::ServiceStream;
use pilot::services::dataexchange::{DataClient, MemMailbox};
use pilot::services::webhook::{Webhooks, QUEUE};
use serde_json::Value;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// An HTTP/1.1 server that records every POST body and answers 200 (or never answers).
async fn receiver(answer: bool) -> (String, mpsc::UnboundedReceiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(socket);
                loop {
                    let mut length = 0usize;
                    let mut json = false;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        json |= lower.starts_with("content-type: application/json");
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; length];
                    reader.read_exact(&mut body).await.unwrap();
                    assert!(json, "no JSON content type");
                    let _ = tx.send(serde_json::from_slice(&body).unwrap());
                    if !answer {
                        std::future::pending::<()>().await;
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    reader.get_mut().write_all(ok).await.unwrap();
                }
            });
        }
    });
    (url, rx)
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<Value>, name: &str) -> Value {
    within(async {
        loop {
            let event = rx.recv().await.unwrap();
            if event["event"] == name {
                return event;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_posts_its_events() {
    let (url, mut events) = receiver(true).await;
    let rv = Rendezvous::start().await;
    let a = rv.daemon(41).await;
    let mut config = rv.config();
    config.public = true;
    config.webhook = url.clone();
    config.mailbox = Some(Arc::new(MemMailbox::new()));
    let b = rv.daemon_with(42, config, MemStorage::new()).await;
    let registered = next_event(&mut events, "node.registered").await;
    assert_eq!(registered["node_id"], b.handle.node_id());
    assert_eq!(
        registered["data"]["address"],
        b.handle.address().to_string()
    );
    let stamp = registered["timestamp"].as_str().unwrap();
    assert!(
        stamp.ends_with('Z') && stamp.split('.').nth(1).unwrap().len() == 10,
        "{stamp}"
    );

    make_trust(&a.handle, &b.handle).await;
    let received = next_event(&mut events, "handshake.received").await;
    assert_eq!(received["data"]["peer_node_id"], a.handle.node_id());
    next_event(&mut events, "handshake.approved").await;

    let stream = within(ServiceStream::dial(&a.handle, b.handle.address(), 1001))
        .await
        .unwrap();
    within(DataClient::new(stream).send_text("hi"))
        .await
        .unwrap();
    let message = next_event(&mut events, "message.received").await;
    assert_eq!(message["data"]["type"], "TEXT");
    assert_eq!(message["data"]["size"], 2);
    assert_eq!(message["data"]["from"], a.handle.address().to_string());

    // Off, then on again at another URL: events follow the current URL.
    b.handle.webhooks().set("").unwrap();
    assert_eq!(b.handle.webhooks().url(), "");
    let (second, mut moved) = receiver(true).await;
    b.handle.webhooks().set(&second).unwrap();
    let stream = within(ServiceStream::dial(&a.handle, b.handle.address(), 1001))
        .await
        .unwrap();
    within(DataClient::new(stream).send_text("again"))
        .await
        .unwrap();
    let message = next_event(&mut moved, "message.received").await;
    assert_eq!(message["data"]["size"], 5);
    assert!(b.handle.webhooks().set("ftp://nowhere").is_err());
}

#[tokio::test]
async fn a_receiver_that_never_answers_costs_only_dropped_events() {
    let (url, mut seen) = receiver(false).await;
    let hooks = Webhooks::new(7, Arc::new(SystemClock));
    hooks.set(&url).unwrap();
    // The worker holds one event in flight; the queue takes QUEUE more; the rest are dropped
    // at once instead of waiting.
    let first = serde_json::json!({"n": 0});
    hooks.emit("test.first", first);
    let posted = within(seen.recv()).await.unwrap();
    assert_eq!(posted["event"], "test.first");
    assert_eq!(posted["node_id"], 7);
    for n in 0..QUEUE + 500 {
        hooks.emit("test.flood", serde_json::json!({ "n": n }));
    }
    assert_eq!(hooks.dropped(), 500);
    assert_eq!(hooks.posted(), 0);
}
