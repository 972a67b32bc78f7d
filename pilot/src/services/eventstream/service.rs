//! The daemon side of the event stream: one task per connection reads its events (the first
//! is the subscription, the rest are publishes), and one writer task per subscriber drains
//! that subscriber's outbox onto its connection. Readers never wait for writers, so a slow
//! subscriber only ever loses its own oldest events.

use super::broker::{Broker, SubscriberId};
use super::frame::{self, FrameError};
use super::queue::Outbox;
use crate::services::conn::ServiceListener;
use crate::services::Notify;
use crate::wire::SocketAddr;
use serde_json::json;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::oneshot;

/// Bytes of queued events a writer joins into one write.
const WRITE_BATCH: usize = 64 << 10;

/// Serves a listener bound to port 1002 with a broker of default bounds until the daemon
/// stops.
pub async fn run(listener: ServiceListener, notify: Notify) {
    serve_listener(listener, Arc::new(Broker::default()), notify).await
}

/// Serves the connections of a bound `listener` with `broker` (whose counters the caller can
/// read) until the daemon stops.
pub async fn serve_listener(mut listener: ServiceListener, broker: Arc<Broker>, notify: Notify) {
    while let Some((stream, remote)) = listener.accept().await {
        let broker = broker.clone();
        let notify = notify.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(stream, remote, broker, notify).await {
                tracing::debug!(%remote, error = %e, "event stream connection ended");
            }
        });
    }
}

/// Serves one connection until the peer ends it or sends an invalid event; then the
/// subscription is removed and the connection closed.
pub async fn serve<S>(
    stream: S,
    remote: SocketAddr,
    broker: Arc<Broker>,
    notify: Notify,
) -> Result<(), FrameError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let subscription = match frame::read_event(&mut reader).await {
        Ok(Some(event)) => event,
        Ok(None) => return Ok(()),
        Err(e) => {
            let _ = reader.unsplit(writer).shutdown().await;
            return Err(e);
        }
    };
    let topic = subscription.topic_str().into_owned();
    let (id, outbox) = broker.subscribe(remote, &subscription.topic);
    notify(
        "pubsub.subscribed",
        json!({"topic": topic, "remote": remote.to_string()}),
    );
    let (stop, stopped) = oneshot::channel();
    let writer = tokio::spawn(write_outbox(writer, outbox, broker.clone(), id, stopped));

    let result = loop {
        match frame::read_event(&mut reader).await {
            Ok(Some(event)) => {
                // Cannot fail: what was read within the limits encodes within them.
                broker.publish(id, &event)?;
                notify(
                    "pubsub.published",
                    json!({
                        "topic": event.topic_str(),
                        "size": event.payload.len(),
                        "from": remote.to_string(),
                    }),
                );
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };

    broker.unsubscribe(id);
    let _ = stop.send(());
    if let Ok(writer) = writer.await {
        let _ = reader.unsplit(writer).shutdown().await;
    }
    if !topic.is_empty() {
        notify(
            "pubsub.unsubscribed",
            json!({"topic": topic, "remote": remote.to_string()}),
        );
    }
    result
}

/// Moves queued events onto the connection until told to stop. A failed write removes the
/// subscriber from the table but leaves the connection to its reader (rule 5). Returns the
/// write half so the connection can be shut down whole.
async fn write_outbox<S: AsyncWrite>(
    mut writer: WriteHalf<S>,
    outbox: Arc<Outbox>,
    broker: Arc<Broker>,
    id: SubscriberId,
    stopped: oneshot::Receiver<()>,
) -> WriteHalf<S> {
    let drain = async {
        let mut buf = Vec::with_capacity(WRITE_BATCH);
        while let Some(batch) = outbox.pop_batch(WRITE_BATCH).await {
            buf.clear();
            for event in &batch {
                buf.extend_from_slice(event);
            }
            // Whole events only: a batch is written with one call.
            if writer.write_all(&buf).await.is_err() || writer.flush().await.is_err() {
                broker.unsubscribe(id);
                break;
            }
        }
    };
    // Biased: the same order in every run of a simulation seed (DESIGN rule 3).
    tokio::select! {
        biased;
        () = drain => {}
        _ = stopped => {} // the reader ended: waiting events no longer matter
    }
    writer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::eventstream::frame::{read_event, write_event, Event};
    use crate::wire::Addr;
    use std::sync::Mutex;
    use tokio::io::AsyncReadExt;

    fn peer(n: u32) -> SocketAddr {
        SocketAddr::new(Addr::new(0, n), 49152)
    }

    #[tokio::test]
    async fn events_flow_and_the_webhook_hears_each_step() {
        let broker = Arc::new(Broker::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let notify: Notify = {
            let seen = seen.clone();
            Arc::new(move |event, data| seen.lock().unwrap().push((event, data)))
        };
        let (mut sub, server) = tokio::io::duplex(1 << 16);
        let sub_task = tokio::spawn(serve(server, peer(1), broker.clone(), notify.clone()));
        write_event(&mut sub, b"news", b"ignored").await.unwrap();
        let (mut publ, server) = tokio::io::duplex(1 << 16);
        let pub_task = tokio::spawn(serve(server, peer(2), broker.clone(), notify.clone()));
        write_event(&mut publ, b"", b"").await.unwrap();
        // Wait until both are in the table before publishing.
        while broker.stats().subscribers < 2 {
            tokio::task::yield_now().await;
        }
        write_event(&mut publ, b"news", b"hello").await.unwrap();
        assert_eq!(
            read_event(&mut sub).await.unwrap(),
            Some(Event::new("news", "hello"))
        );
        drop(publ);
        pub_task.await.unwrap().unwrap();
        drop(sub);
        sub_task.await.unwrap().unwrap();
        let seen = seen.lock().unwrap();
        let names: Vec<&str> = seen.iter().map(|(e, _)| *e).collect();
        // The empty-topic subscriber's end is not announced (rule 6).
        assert_eq!(
            names,
            [
                "pubsub.subscribed",
                "pubsub.subscribed",
                "pubsub.published",
                "pubsub.unsubscribed"
            ]
        );
        assert_eq!(
            seen[0].1,
            json!({"topic": "news", "remote": "0:0000.0000.0001:49152"})
        );
        assert_eq!(
            seen[2].1,
            json!({"topic": "news", "size": 5, "from": "0:0000.0000.0002:49152"})
        );
        assert_eq!(broker.stats().subscribers, 0);
    }

    #[tokio::test]
    async fn a_bad_event_closes_the_connection_with_an_error() {
        let broker = Arc::new(Broker::default());
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(serve(
            server,
            peer(1),
            broker.clone(),
            crate::services::quiet(),
        ));
        write_event(&mut client, b"t", b"").await.unwrap();
        client.write_all(&[0x04, 0x01]).await.unwrap(); // topic_len 1025
        let err = task.await.unwrap().unwrap_err();
        assert!(matches!(err, FrameError::TopicTooLong(1025)), "{err}");
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        assert_eq!(broker.stats().subscribers, 0);
    }
}
