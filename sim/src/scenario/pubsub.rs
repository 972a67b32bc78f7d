//! Event stream (port 1002) in scenarios: a daemon subscribes to a topic on a peer's broker and
//! records every event it receives; another publishes on that broker. At the end, what each
//! subscription received is compared with what the script expects, in order.

use super::agent::Reports;
use super::daemon::peer_id;
use crate::net::SimNet;
use crate::trace;
use crate::world::lock;
use pilot::daemon::DaemonHandle;
use pilot::services::eventstream::client::subscribe_in_process;
use pilot::wire::Addr;
use std::sync::Arc;

/// One subscription, as the script asks for it.
#[derive(Clone, Debug)]
pub(crate) struct SubscribePlan {
    pub tag: String,
    /// The daemon host whose broker is subscribed to.
    pub at: String,
    pub topic: String,
    /// Stop after this many events (`None`: keep the subscription until the run ends).
    pub count: Option<usize>,
}

/// What one subscription received: the events' topics and payloads, in arrival order.
#[derive(Clone, Debug, Default)]
pub struct SubscriptionRecord {
    /// The subscribe frame went out on an open connection.
    pub subscribed: bool,
    /// `(topic, payload)` of each event, as text.
    pub events: Vec<(String, String)>,
    /// Why the subscription ended early, if it did.
    pub error: Option<String>,
}

fn note(net: &SimNet, text: String) {
    let name = net.world().node(net.node()).name.clone();
    net.world().trace().note_at(trace::now(), &name, text);
}

/// Subscribes as `plan` says from daemon `handle` and records events until the subscription
/// ends (its count reached, the broker gone, or the run over).
pub(crate) async fn subscribe(
    net: SimNet,
    handle: DaemonHandle,
    reports: Arc<Reports>,
    plan: SubscribePlan,
) {
    let record = |update: &mut dyn FnMut(&mut SubscriptionRecord)| {
        update(
            lock(&reports.subscriptions)
                .entry(plan.tag.clone())
                .or_default(),
        );
    };
    // Listed even if it never connects, so expectations can say why it got nothing.
    record(&mut |_| {});
    let client = match peer_id(&reports, &plan.at) {
        Ok(node) => subscribe_in_process(&handle, Addr::backbone(node), &plan.topic)
            .await
            .map_err(|e| format!("subscribe at {}: {e}", plan.at)),
        Err(e) => Err(e),
    };
    let mut client = match client {
        Ok(c) => c,
        Err(e) => {
            note(&net, format!("events {}: {e}", plan.tag));
            record(&mut |r| r.error = Some(e.clone()));
            return;
        }
    };
    note(
        &net,
        format!(
            "events {} subscribed to {:?} at {}",
            plan.tag, plan.topic, plan.at
        ),
    );
    record(&mut |r| r.subscribed = true);
    let mut received = 0usize;
    while plan.count.is_none_or(|n| received < n) {
        match client.recv().await {
            Ok(Some(event)) => {
                let topic = String::from_utf8_lossy(&event.topic).into_owned();
                let payload = String::from_utf8_lossy(&event.payload).into_owned();
                note(
                    &net,
                    format!("events {} got {topic:?}: {payload:?}", plan.tag),
                );
                record(&mut |r| r.events.push((topic.clone(), payload.clone())));
                received += 1;
            }
            Ok(None) => {
                note(&net, format!("events {}: the broker closed", plan.tag));
                record(&mut |r| r.error = Some("the broker closed the subscription".to_string()));
                return;
            }
            Err(e) => {
                note(&net, format!("events {}: {e}", plan.tag));
                record(&mut |r| r.error = Some(e.to_string()));
                return;
            }
        }
    }
    let _ = client.close().await;
}

/// Publishes one event per text on `topic` at `at`'s broker from daemon `handle`, over one
/// connection so the broker gets them in order.
pub(crate) async fn publish(
    handle: &DaemonHandle,
    reports: &Reports,
    at: &str,
    topic: &str,
    texts: &[String],
) -> Result<String, String> {
    let node = peer_id(reports, at)?;
    let mut client = subscribe_in_process(handle, Addr::backbone(node), topic)
        .await
        .map_err(|e| format!("connect to {at}'s event stream: {e}"))?;
    for text in texts {
        client
            .publish(topic, text.as_bytes())
            .await
            .map_err(|e| format!("publish at {at}: {e}"))?;
    }
    client
        .close()
        .await
        .map_err(|e| format!("close at {at}: {e}"))?;
    Ok(format!("published {} on {topic:?} at {at}", texts.len()))
}
