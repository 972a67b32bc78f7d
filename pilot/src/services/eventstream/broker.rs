//! The subscription table and the delivery rules of `spec/services.md` §7.3.
//!
//! Every connection is one subscriber with one topic (its first event). A publish is encoded
//! once and the same bytes are queued for each matching subscriber: those of the event's
//! topic, plus the `*` subscribers. The subscriber of topic `*` gets every event, and an
//! event on topic `*` reaches only them, which is the same as "subscriber topic is `*` or
//! equals the event topic". The publisher never gets its own event. Queuing never waits (see
//! [`super::queue`]); per-publisher order holds because one connection publishes
//! sequentially and each outbox is FIFO.

use super::frame::{self, Event, FrameError, WILDCARD};
use super::queue::{Outbox, QueueLimits};
use crate::wire::SocketAddr;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A subscriber's key in the table.
pub type SubscriberId = u64;

struct Subscriber {
    remote: SocketAddr,
    outbox: Arc<Outbox>,
}

#[derive(Default)]
struct Table {
    by_topic: HashMap<Vec<u8>, BTreeMap<SubscriberId, Subscriber>>,
    topics: HashMap<SubscriberId, Vec<u8>>,
    next_id: SubscriberId,
}

/// The broker of one daemon.
pub struct Broker {
    limits: QueueLimits,
    table: Mutex<Table>,
    published: AtomicU64,
    queued: AtomicU64,
    dropped: AtomicU64,
}

/// Counters of a broker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Subscribers in the table now.
    pub subscribers: usize,
    /// Events published.
    pub published: u64,
    /// Copies queued for subscribers.
    pub queued: u64,
    /// Copies dropped because a subscriber's queue was full.
    pub dropped: u64,
}

/// One subscriber as the broker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Its key.
    pub id: SubscriberId,
    /// The peer.
    pub remote: SocketAddr,
    /// The subscribed topic.
    pub topic: Vec<u8>,
    /// Events waiting for it.
    pub waiting: usize,
    /// Events dropped because it did not keep up.
    pub dropped: u64,
}

impl Default for Broker {
    fn default() -> Self {
        Broker::new(QueueLimits::default())
    }
}

impl Broker {
    /// An empty broker whose subscribers each queue at most `limits`.
    pub fn new(limits: QueueLimits) -> Self {
        Broker {
            limits,
            table: Mutex::default(),
            published: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a subscriber of `topic` (rule 1); its writer drains the returned outbox.
    pub fn subscribe(&self, remote: SocketAddr, topic: &[u8]) -> (SubscriberId, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new(self.limits));
        let mut table = self.lock();
        table.next_id += 1;
        let id = table.next_id;
        table.topics.insert(id, topic.to_vec());
        table.by_topic.entry(topic.to_vec()).or_default().insert(
            id,
            Subscriber {
                remote,
                outbox: outbox.clone(),
            },
        );
        (id, outbox)
    }

    /// Removes a subscriber (a no-op when already gone) and closes its outbox.
    pub fn unsubscribe(&self, id: SubscriberId) {
        let mut table = self.lock();
        let Some(topic) = table.topics.remove(&id) else {
            return;
        };
        if let Some(subs) = table.by_topic.get_mut(&topic) {
            if let Some(sub) = subs.remove(&id) {
                sub.outbox.close();
            }
            if subs.is_empty() {
                table.by_topic.remove(&topic);
            }
        }
    }

    /// Publishes `event` from subscriber `from` (rules 2 to 5); returns how many subscribers
    /// it was queued for. Fails only when the event cannot be encoded.
    pub fn publish(&self, from: SubscriberId, event: &Event) -> Result<usize, FrameError> {
        let bytes: Arc<[u8]> = frame::encode(&event.topic, &event.payload)?.into();
        let table = self.lock();
        let exact = table.by_topic.get(&event.topic);
        let wildcard = if event.topic.as_slice() == WILDCARD {
            None // already the exact set
        } else {
            table.by_topic.get(WILDCARD)
        };
        let mut queued = 0;
        let mut dropped = 0;
        for (id, sub) in exact.into_iter().chain(wildcard).flatten() {
            if *id == from {
                continue;
            }
            let lost = sub.outbox.push(bytes.clone());
            if lost > 0 {
                let after = sub.outbox.dropped();
                // Warn when the count passes a power of two: a stuck subscriber cannot flood
                // the log.
                if (after - lost).leading_zeros() != after.leading_zeros() {
                    tracing::warn!(remote = %sub.remote, dropped = after,
                        "event subscriber is not keeping up: oldest events dropped");
                }
            }
            dropped += lost;
            queued += 1;
        }
        drop(table);
        self.published.fetch_add(1, Ordering::Relaxed);
        self.queued.fetch_add(queued as u64, Ordering::Relaxed);
        self.dropped.fetch_add(dropped, Ordering::Relaxed);
        Ok(queued)
    }

    /// The broker's counters.
    pub fn stats(&self) -> BrokerStats {
        BrokerStats {
            subscribers: self.lock().topics.len(),
            published: self.published.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// Every subscriber with its queue and drop count, in subscription order.
    pub fn subscribers(&self) -> Vec<SubscriberStats> {
        let table = self.lock();
        let mut all: Vec<SubscriberStats> = table
            .by_topic
            .iter()
            .flat_map(|(topic, subs)| {
                subs.iter().map(|(id, sub)| SubscriberStats {
                    id: *id,
                    remote: sub.remote,
                    topic: topic.clone(),
                    waiting: sub.outbox.len(),
                    dropped: sub.outbox.dropped(),
                })
            })
            .collect();
        all.sort_by_key(|s| s.id);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Addr;

    fn peer(n: u32) -> SocketAddr {
        SocketAddr::new(Addr::new(0, n), 1000 + n as u16)
    }

    /// Decoded events waiting in `outbox`.
    fn waiting(outbox: &Outbox) -> Vec<Event> {
        let mut out = Vec::new();
        if outbox.is_empty() {
            return out;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let batch = rt.block_on(outbox.pop_batch(usize::MAX)).unwrap();
        for bytes in batch {
            let mut r = &bytes[..];
            out.push(rt.block_on(frame::read_event(&mut r)).unwrap().unwrap());
        }
        out
    }

    #[test]
    fn exact_topics_and_no_echo() {
        let broker = Broker::default();
        let (a, a_box) = broker.subscribe(peer(1), b"chat");
        let (_b, b_box) = broker.subscribe(peer(2), b"chat");
        let (_c, c_box) = broker.subscribe(peer(3), b"chat.room");
        let (_d, d_box) = broker.subscribe(peer(4), b"");
        assert_eq!(broker.publish(a, &Event::new("chat", "hi")).unwrap(), 1);
        // Publishing on a topic other than the subscribed one is allowed (rule 2).
        assert_eq!(broker.publish(a, &Event::new("chat.room", "x")).unwrap(), 1);
        assert_eq!(broker.publish(a, &Event::new("", "e")).unwrap(), 1);
        assert_eq!(broker.publish(a, &Event::new("nobody", "z")).unwrap(), 0);
        assert!(waiting(&a_box).is_empty(), "no echo to the publisher");
        assert_eq!(waiting(&b_box), [Event::new("chat", "hi")]);
        assert_eq!(waiting(&c_box), [Event::new("chat.room", "x")]);
        assert_eq!(waiting(&d_box), [Event::new("", "e")]);
        let stats = broker.stats();
        assert_eq!((stats.published, stats.queued, stats.dropped), (4, 3, 0));
    }

    #[test]
    fn wildcard_rules() {
        let broker = Broker::default();
        let (p, _) = broker.subscribe(peer(1), b"chat");
        let (_, star) = broker.subscribe(peer(2), b"*");
        let (_, chat) = broker.subscribe(peer(3), b"chat");
        let (_, prefix) = broker.subscribe(peer(4), b"ch*");
        broker.publish(p, &Event::new("chat", "1")).unwrap();
        broker.publish(p, &Event::new("other", "2")).unwrap();
        // An event on topic `*` reaches only `*` subscribers.
        assert_eq!(broker.publish(p, &Event::new("*", "3")).unwrap(), 1);
        assert_eq!(
            waiting(&star),
            [
                Event::new("chat", "1"),
                Event::new("other", "2"),
                Event::new("*", "3")
            ]
        );
        assert_eq!(waiting(&chat), [Event::new("chat", "1")]);
        assert!(waiting(&prefix).is_empty(), "no pattern wildcards");
    }

    #[test]
    fn a_wildcard_publisher_does_not_hear_itself() {
        let broker = Broker::default();
        let (p, own) = broker.subscribe(peer(1), b"*");
        let (_, other) = broker.subscribe(peer(2), b"*");
        assert_eq!(broker.publish(p, &Event::new("t", "1")).unwrap(), 1);
        assert_eq!(broker.publish(p, &Event::new("*", "2")).unwrap(), 1);
        assert!(waiting(&own).is_empty());
        assert_eq!(waiting(&other).len(), 2);
    }

    #[test]
    fn per_publisher_order_is_kept() {
        let broker = Broker::default();
        let (p, _) = broker.subscribe(peer(1), b"x");
        let (q, _) = broker.subscribe(peer(2), b"x");
        let (_, sub) = broker.subscribe(peer(3), b"*");
        for i in 0..50u32 {
            broker.publish(p, &Event::new("a", i.to_string())).unwrap();
            broker.publish(q, &Event::new("b", i.to_string())).unwrap();
        }
        let got = waiting(&sub);
        for topic in ["a", "b"] {
            let seq: Vec<String> = got
                .iter()
                .filter(|e| e.topic == topic.as_bytes())
                .map(|e| String::from_utf8(e.payload.clone()).unwrap())
                .collect();
            let want: Vec<String> = (0..50).map(|i: u32| i.to_string()).collect();
            assert_eq!(seq, want);
        }
    }

    #[test]
    fn a_full_subscriber_drops_its_oldest_without_affecting_others() {
        let broker = Broker::new(QueueLimits {
            events: 4,
            bytes: 1 << 20,
        });
        let (p, _) = broker.subscribe(peer(1), b"t");
        let (slow_id, slow) = broker.subscribe(peer(2), b"t");
        let (_, fast) = broker.subscribe(peer(3), b"t");
        let mut fast_got = Vec::new();
        for i in 0..10u8 {
            broker.publish(p, &Event::new("t", vec![i])).unwrap();
            fast_got.extend(waiting(&fast));
        }
        assert_eq!(fast_got.len(), 10);
        let slow_got: Vec<u8> = waiting(&slow).iter().map(|e| e.payload[0]).collect();
        assert_eq!(slow_got, [6, 7, 8, 9]);
        assert_eq!(broker.stats().dropped, 6);
        let subs = broker.subscribers();
        let slow_stats = subs.iter().find(|s| s.id == slow_id).unwrap();
        assert_eq!((slow_stats.dropped, slow_stats.remote), (6, peer(2)));
        assert_eq!(subs.iter().map(|s| s.dropped).sum::<u64>(), 6);
    }

    #[test]
    fn unsubscribe_removes_and_closes() {
        let broker = Broker::default();
        let (p, _) = broker.subscribe(peer(1), b"t");
        let (s, outbox) = broker.subscribe(peer(2), b"t");
        broker.unsubscribe(s);
        broker.unsubscribe(s);
        assert_eq!(broker.publish(p, &Event::new("t", "x")).unwrap(), 0);
        assert_eq!(broker.stats().subscribers, 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(rt.block_on(outbox.pop_batch(10)).is_none());
    }
}
