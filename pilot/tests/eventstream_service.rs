//! Event stream (port 1002) between two daemons on loopback: the SDK over the driver and
//! in-process, events written byte by byte from the spec's layout, the wildcard rules, a
//! subscriber that never reads, hostile events, and the disabled service.

mod daemon_support;

use daemon_support::{make_trust, within, Rendezvous};
use pilot::daemon::ipc;
use pilot::daemon::Daemon;
use pilot::driver::{Driver, Stream};
use pilot::net::MemStorage;
use pilot::services::conn::ServiceListener;
use pilot::services::eventstream::{
    serve_listener, subscribe, subscribe_in_process, Broker, Event, QueueLimits, EVENT_STREAM_PORT,
};
use pilot::services::Notify;
use serde_json::Value;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// A client daemon `a` with an IPC socket and a public broker daemon `b` that trusts it.
struct Pair {
    _rv: Rendezvous,
    _dir: tempfile::TempDir,
    a: Daemon,
    b: Daemon,
    driver: Driver,
}

async fn pair(eventstream: bool) -> Pair {
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = rv.daemon(31).await;
    let mut config = rv.config();
    config.public = true;
    config.eventstream = eventstream;
    let b = rv.daemon_with(32, config, MemStorage::new()).await;
    let path = dir.path().join("a.sock");
    let listener = ipc::bind(&path).await.unwrap();
    tokio::spawn(ipc::serve(listener, a.handle.clone()));
    make_trust(&a.handle, &b.handle).await;
    let driver = within(Driver::connect(&path)).await.unwrap();
    Pair {
        _rv: rv,
        _dir: dir,
        a,
        b,
        driver,
    }
}

/// The service events a broker reported, in order.
type Reports = mpsc::UnboundedReceiver<(&'static str, Value)>;

/// Runs a broker with `limits` on `b` (whose own service is off), reporting into a channel.
async fn own_broker(b: &Daemon, limits: QueueLimits) -> (Arc<Broker>, Reports) {
    let broker = Arc::new(Broker::new(limits));
    let (tx, rx) = mpsc::unbounded_channel();
    let notify: Notify = Arc::new(move |event, data| {
        let _ = tx.send((event, data));
    });
    let listener = ServiceListener::bind(&b.handle, EVENT_STREAM_PORT)
        .await
        .unwrap();
    tokio::spawn(serve_listener(listener, broker.clone(), notify));
    (broker, rx)
}

/// The data of the next report named `name`, skipping others.
async fn next_report(reports: &mut Reports, name: &str) -> Value {
    within(async {
        loop {
            let (event, data) = reports.recv().await.expect("broker gone");
            if event == name {
                return data;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_broker_relays_between_driver_and_in_process_clients() {
    let p = pair(true).await;
    let peer = p.b.handle.address();
    let sub = within(subscribe(&p.driver, peer, "news")).await.unwrap();
    let mut publ = within(subscribe_in_process(&p.a.handle, peer, "news"))
        .await
        .unwrap();
    // The driver side's events go through a channel, so waiting for one can time out without
    // cutting a frame in half.
    let (mut sub_events, mut sub) = sub.split();
    let (tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(event)) = sub_events.recv().await {
            let _ = tx.send(event);
        }
    });
    // A connection's subscription is handled before its later publishes, so once the driver
    // side hears the in-process side, both subscriptions are in the table. Until the driver
    // side's own subscription is in, nothing reaches it: say it again.
    loop {
        within(publ.publish("news", b"ready")).await.unwrap();
        let wait = tokio::time::timeout(std::time::Duration::from_millis(200), heard.recv());
        if let Ok(event) = wait.await {
            assert_eq!(event, Some(Event::new("news", "ready")));
            break;
        }
    }
    for i in 0..20u32 {
        let payload = format!("item {i}");
        within(publ.publish("news", payload.as_bytes()))
            .await
            .unwrap();
    }
    let mut items = 0u32;
    while items < 20 {
        let event = within(heard.recv()).await.unwrap();
        if event == Event::new("news", "ready") {
            continue; // a repeat of the greeting, sent before the first was heard
        }
        assert_eq!(event, Event::new("news", format!("item {items}")));
        items += 1;
    }
    // The split halves work from different tasks.
    let (mut events, mut publisher) = publ.split();
    let reader = tokio::spawn(async move { events.recv().await });
    within(sub.publish("news", b"back")).await.unwrap();
    assert_eq!(
        within(reader).await.unwrap().unwrap(),
        Some(Event::new("news", "back"))
    );
    within(publisher.publish("news", b"last")).await.unwrap();
    assert_eq!(
        within(heard.recv()).await.unwrap(),
        Event::new("news", "last")
    );
    within(publisher.close()).await.unwrap();
    within(sub.close()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_is_a_stream_of_events() {
    use futures_util::StreamExt;
    let p = pair(true).await;
    let peer = p.b.handle.address();
    let sub = within(subscribe(&p.driver, peer, "s")).await.unwrap();
    let mut publ = within(subscribe_in_process(&p.a.handle, peer, "other"))
        .await
        .unwrap();
    let (events, _publisher) = sub.split();
    let mut events = Box::pin(events.into_stream());
    // Greet until the subscription is in the table (a publish before it is not delivered).
    let first = loop {
        within(publ.publish("s", b"one")).await.unwrap();
        let wait = tokio::time::timeout(std::time::Duration::from_millis(200), events.next());
        if let Ok(event) = wait.await {
            break event;
        }
    };
    assert_eq!(first.unwrap().unwrap(), Event::new("s", "one"));
    within(publ.publish("s", b"two")).await.unwrap();
    let next = loop {
        let event = within(events.next()).await.unwrap().unwrap();
        if event != Event::new("s", "one") {
            break event;
        }
    };
    assert_eq!(next, Event::new("s", "two"));
}

async fn raw_event(stream: &mut Stream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.ok()?;
    let mut topic = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut topic).await.ok()?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut payload).await.ok()?;
    Some((topic, payload))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_events_in_the_spec_layout_and_the_webhook_reports() {
    let p = pair(false).await;
    let (_broker, mut reports) = own_broker(&p.b, QueueLimits::default()).await;
    let peer = p.b.handle.address();

    let mut raw = within(p.driver.dial(peer, EVENT_STREAM_PORT))
        .await
        .unwrap();
    // Subscription to "raw" with a payload, which is ignored.
    raw.write_all(&[0, 3, b'r', b'a', b'w', 0, 0, 0, 2, b'x', b'y'])
        .await
        .unwrap();
    let subscribed = next_report(&mut reports, "pubsub.subscribed").await;
    assert_eq!(subscribed["topic"], "raw");
    let remote = subscribed["remote"].as_str().unwrap().to_string();
    assert!(
        remote.starts_with(&format!("{}:", p.a.handle.address())),
        "{remote}"
    );

    let mut sdk = within(subscribe_in_process(&p.a.handle, peer, "raw"))
        .await
        .unwrap();
    next_report(&mut reports, "pubsub.subscribed").await;
    within(sdk.publish("raw", &[0, 1, 2])).await.unwrap();
    assert_eq!(
        within(raw_event(&mut raw)).await,
        Some((b"raw".to_vec(), vec![0, 1, 2]))
    );
    let published = next_report(&mut reports, "pubsub.published").await;
    assert_eq!(published["topic"], "raw");
    assert_eq!(published["size"], 3);

    // A raw publish on another topic than the subscribed one reaches that topic.
    let mut other = within(subscribe_in_process(&p.a.handle, peer, "other"))
        .await
        .unwrap();
    next_report(&mut reports, "pubsub.subscribed").await;
    raw.write_all(&[0, 5, b'o', b't', b'h', b'e', b'r', 0, 0, 0, 1, 9])
        .await
        .unwrap();
    assert_eq!(
        within(other.recv()).await.unwrap(),
        Some(Event::new("other", [9]))
    );
    let published = next_report(&mut reports, "pubsub.published").await;
    assert_eq!(published["from"], remote);

    raw.shutdown().await.unwrap();
    let gone = next_report(&mut reports, "pubsub.unsubscribed").await;
    assert_eq!(gone, serde_json::json!({"topic": "raw", "remote": remote}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_subscribers_get_everything_and_star_events_only_reach_them() {
    let p = pair(false).await;
    let (_broker, mut reports) = own_broker(&p.b, QueueLimits::default()).await;
    let peer = p.b.handle.address();
    let mut star = within(subscribe(&p.driver, peer, "*")).await.unwrap();
    let mut chat = within(subscribe(&p.driver, peer, "chat")).await.unwrap();
    let mut prefix = within(subscribe(&p.driver, peer, "ch*")).await.unwrap();
    let mut publ = within(subscribe_in_process(&p.a.handle, peer, "chat"))
        .await
        .unwrap();
    for _ in 0..4 {
        next_report(&mut reports, "pubsub.subscribed").await;
    }
    for (topic, payload) in [
        ("chat", "1"),
        ("x", "2"),
        ("*", "3"),
        ("ch*", "4"),
        ("chat", "end"),
    ] {
        within(publ.publish(topic, payload.as_bytes()))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(within(star.recv()).await.unwrap().unwrap());
    }
    assert_eq!(
        got,
        [
            Event::new("chat", "1"),
            Event::new("x", "2"),
            Event::new("*", "3"),
            Event::new("ch*", "4"),
            Event::new("chat", "end")
        ]
    );
    // Order per publisher holds, so anything else would have come before "end".
    assert_eq!(
        within(chat.recv()).await.unwrap(),
        Some(Event::new("chat", "1"))
    );
    assert_eq!(
        within(chat.recv()).await.unwrap(),
        Some(Event::new("chat", "end"))
    );
    // "ch*" is a plain topic: only the literal "ch*" event.
    assert_eq!(
        within(prefix.recv()).await.unwrap(),
        Some(Event::new("ch*", "4"))
    );
    // The publisher's own subscription ("chat") never hears its own events.
    within(chat.publish("chat", b"from chat")).await.unwrap();
    assert_eq!(
        within(publ.recv()).await.unwrap(),
        Some(Event::new("chat", "from chat"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_stalls_nobody_and_its_drops_are_counted() {
    let p = pair(false).await;
    let limits = QueueLimits {
        events: 16,
        bytes: 1 << 20,
    };
    let (broker, mut reports) = own_broker(&p.b, limits).await;
    let peer = p.b.handle.address();
    // In-process, never read: its receive window, the tunnel's and the daemon's send window
    // fill, then its outbox, then its oldest events are dropped.
    let _stuck = within(subscribe_in_process(&p.a.handle, peer, "*"))
        .await
        .unwrap();
    let mut fast = within(subscribe(&p.driver, peer, "t")).await.unwrap();
    let mut publ = within(subscribe_in_process(&p.a.handle, peer, "p"))
        .await
        .unwrap();
    for _ in 0..3 {
        next_report(&mut reports, "pubsub.subscribed").await;
    }
    let payload = vec![0x5a; 64 << 10];
    let rounds = 160u32; // 10 MiB in all, far past every buffer on the stuck path
    for i in 0..rounds {
        let mut event = i.to_be_bytes().to_vec();
        event.extend_from_slice(&payload);
        within(publ.publish("t", &event)).await.unwrap();
        // Lock step with the reading subscriber: its queue never holds more than one.
        let got = within(fast.recv()).await.unwrap().unwrap();
        assert_eq!(&got.payload[..4], &i.to_be_bytes());
        assert_eq!(got.payload.len(), event.len());
    }
    let stats = broker.stats();
    assert_eq!(stats.published, u64::from(rounds));
    assert!(stats.dropped > 0, "{stats:?}");
    let subs = broker.subscribers();
    let stuck = subs.iter().find(|s| s.topic == b"*").unwrap();
    let reader = subs.iter().find(|s| s.topic == b"t").unwrap();
    assert_eq!(reader.dropped, 0);
    assert_eq!(stuck.dropped, stats.dropped);
    assert!(stuck.waiting <= limits.events, "{stuck:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_close_only_their_own_connection() {
    let p = pair(false).await;
    let (broker, mut reports) = own_broker(&p.b, QueueLimits::default()).await;
    let peer = p.b.handle.address();
    let mut good = within(subscribe(&p.driver, peer, "t")).await.unwrap();
    let mut publ = within(subscribe_in_process(&p.a.handle, peer, "p"))
        .await
        .unwrap();
    for _ in 0..2 {
        next_report(&mut reports, "pubsub.subscribed").await;
    }
    let cases: [(&str, &[u8]); 3] = [
        // topic_len 1025.
        ("long-topic", &[0x04, 0x01]),
        // payload_len 16 MiB + 1.
        ("big-payload", &[0, 1, b't', 0x01, 0, 0, 1]),
        // 100 payload bytes announced, 3 sent, then the end.
        ("truncated", &[0, 1, b't', 0, 0, 0, 100, 1, 2, 3]),
    ];
    for (i, (topic, bytes)) in cases.iter().enumerate() {
        let mut bad = within(p.driver.dial(peer, EVENT_STREAM_PORT))
            .await
            .unwrap();
        let mut sub = vec![0, topic.len() as u8];
        sub.extend_from_slice(topic.as_bytes());
        sub.extend_from_slice(&[0, 0, 0, 0]);
        bad.write_all(&sub).await.unwrap();
        bad.write_all(bytes).await.unwrap();
        if *topic == "truncated" {
            bad.shutdown().await.unwrap();
        } else {
            // The broker closes the connection: end of stream, nothing delivered.
            let mut rest = Vec::new();
            within(bad.read_to_end(&mut rest)).await.unwrap();
            assert!(rest.is_empty(), "{topic}");
        }
        let gone = next_report(&mut reports, "pubsub.unsubscribed").await;
        assert_eq!(gone["topic"], *topic);
        // The others carry on.
        let payload = format!("after {i}");
        within(publ.publish("t", payload.as_bytes())).await.unwrap();
        assert_eq!(
            within(good.recv()).await.unwrap(),
            Some(Event::new("t", payload))
        );
    }
    // Only the three good publishes were published; the bad connections are gone.
    assert_eq!(broker.stats().published, 3);
    assert_eq!(broker.stats().subscribers, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_service_refuses_connections() {
    let p = pair(false).await;
    let err = within(subscribe(&p.driver, p.b.handle.address(), "t"))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("refused"), "{err}");
}
