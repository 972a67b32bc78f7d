//! Webhooks against a small HTTP server on loopback: the events a daemon posts, their JSON
//! shape, the hot swap, and a receiver that never answers (the daemon does not wait for it).

mod daemon_support;

use daemon_support::{make_trust, within, Rendezvous};
use pilot::daemon::RegistryOp;
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
    events_until(rx, name).await.pop().unwrap()
}

/// Every event posted up to and including the next one called `name`.
async fn events_until(rx: &mut mpsc::UnboundedReceiver<Value>, name: &str) -> Vec<Value> {
    within(async {
        let mut seen = Vec::new();
        loop {
            let event = rx.recv().await.unwrap();
            let last = event["event"] == name;
            seen.push(event);
            if last {
                return seen;
            }
        }
    })
    .await
}

fn find<'a>(events: &'a [Value], name: &str) -> &'a Value {
    let names: Vec<&Value> = events.iter().map(|e| &e["event"]).collect();
    events
        .iter()
        .find(|e| e["event"] == name)
        .unwrap_or_else(|| panic!("no {name} among {names:?}"))
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
    let trust = events_until(&mut events, "handshake.approved").await;
    let received = find(&trust, "handshake.received");
    assert_eq!(received["data"]["peer_node_id"], a.handle.node_id());
    let keyed = find(&trust, "tunnel.established");
    assert_eq!(keyed["data"]["peer_node_id"], a.handle.node_id());
    assert_eq!(keyed["data"]["authenticated"], true);
    assert_eq!(keyed["data"]["relay"], false);
    assert_eq!(keyed["data"]["rekeyed"], false);

    let stream = within(ServiceStream::dial(&a.handle, b.handle.address(), 1001))
        .await
        .unwrap();
    within(DataClient::new(stream).send_text("hi"))
        .await
        .unwrap();
    let exchange = events_until(&mut events, "message.received").await;
    let established = &find(&exchange, "conn.established")["data"];
    assert_eq!(established["src_addr"], a.handle.address().to_string());
    assert_eq!(established["dst_port"], 1001);
    let message = find(&exchange, "message.received");
    assert_eq!(message["data"]["type"], "TEXT");
    assert_eq!(message["data"]["size"], 2);
    assert_eq!(message["data"]["from"], a.handle.address().to_string());
    // The client closed after its ACK: the connection's end is posted too.
    let fin = next_event(&mut events, "conn.fin").await;
    assert_eq!(fin["data"]["local_port"], 1001);
    assert_eq!(fin["data"]["conn_id"], established["conn_id"]);

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

    let session = a.handle.session(Default::default()).await.unwrap();
    within(session.send_to(b.handle.address(), 5000, b"ping".to_vec()))
        .await
        .unwrap();
    let datagram = next_event(&mut moved, "data.datagram").await;
    assert_eq!(datagram["data"]["src_addr"], a.handle.address().to_string());
    assert_eq!(datagram["data"]["dst_port"], 5000);
    assert_eq!(datagram["data"]["size"], 4);

    within(b.handle.registry(RegistryOp::Deregister))
        .await
        .unwrap();
    let gone = next_event(&mut moved, "node.deregistered").await;
    assert!(gone.get("data").is_none(), "no data: {gone}");
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
