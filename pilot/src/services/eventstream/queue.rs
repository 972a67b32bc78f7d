//! One subscriber's outbox: encoded events waiting for that subscriber's writer.
//!
//! The broker only pushes (never waits), the writer only pops. The queue is bounded in
//! events and in bytes; when a push goes over either bound the oldest events are dropped
//! and counted, so a subscriber that does not read loses its backlog instead of stalling the
//! publisher, the broker or the other subscribers (the reference wrote to every subscriber
//! under the table lock, `spec/services.md` §14 Q22). The newest event is always kept, even
//! when it alone exceeds the byte bound.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// How much one subscriber may have waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    /// Events waiting, at most.
    pub events: usize,
    /// Encoded bytes waiting, at most (one larger event is still kept).
    pub bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            events: 1024,
            bytes: 8 << 20,
        }
    }
}

#[derive(Default)]
struct State {
    events: VecDeque<Arc<[u8]>>,
    bytes: usize,
    closed: bool,
}

/// A bounded drop-oldest queue of encoded events.
pub struct Outbox {
    limits: QueueLimits,
    state: Mutex<State>,
    ready: Notify,
    dropped: AtomicU64,
}

impl Outbox {
    /// An empty queue with these bounds.
    pub fn new(limits: QueueLimits) -> Self {
        Outbox {
            limits,
            state: Mutex::default(),
            ready: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `event`; returns how many older events were dropped to make room. Never waits.
    pub fn push(&self, event: Arc<[u8]>) -> u64 {
        let mut s = self.lock();
        if s.closed {
            return 0;
        }
        s.bytes += event.len();
        s.events.push_back(event);
        let mut dropped = 0;
        while s.events.len() > 1
            && (s.events.len() > self.limits.events || s.bytes > self.limits.bytes)
        {
            if let Some(old) = s.events.pop_front() {
                s.bytes -= old.len();
                dropped += 1;
            }
        }
        drop(s);
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        self.ready.notify_one();
        dropped
    }

    /// Waits for events and takes the waiting ones, oldest first, up to about `max_bytes`
    /// (at least one). `None` once the queue is closed.
    pub async fn pop_batch(&self, max_bytes: usize) -> Option<Vec<Arc<[u8]>>> {
        loop {
            {
                let mut s = self.lock();
                if s.closed {
                    return None;
                }
                if !s.events.is_empty() {
                    let mut batch = Vec::new();
                    let mut size = 0;
                    while let Some(front) = s.events.front() {
                        if !batch.is_empty() && size + front.len() > max_bytes {
                            break;
                        }
                        size += front.len();
                        if let Some(event) = s.events.pop_front() {
                            batch.push(event);
                        }
                    }
                    s.bytes -= size;
                    return Some(batch);
                }
            }
            // A push between the check and here leaves a permit, so this cannot miss it.
            self.ready.notified().await;
        }
    }

    /// Ends the queue: waiting events are discarded, the writer's `pop_batch` returns `None`.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.events.clear();
        s.bytes = 0;
        drop(s);
        self.ready.notify_one();
    }

    /// Events waiting now.
    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u8, len: usize) -> Arc<[u8]> {
        vec![n; len].into()
    }

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn the_oldest_events_go_first_when_the_count_is_exceeded() {
        let q = Outbox::new(QueueLimits {
            events: 3,
            bytes: 1 << 20,
        });
        for n in 0..5 {
            q.push(ev(n, 1));
        }
        assert_eq!(q.dropped(), 2);
        let batch = block_on(q.pop_batch(usize::MAX)).unwrap();
        let firsts: Vec<u8> = batch.iter().map(|e| e[0]).collect();
        assert_eq!(firsts, [2, 3, 4]);
        assert!(q.is_empty());
    }

    #[test]
    fn the_byte_bound_keeps_at_least_the_newest_event() {
        let q = Outbox::new(QueueLimits {
            events: 100,
            bytes: 10,
        });
        assert_eq!(q.push(ev(1, 6)), 0);
        assert_eq!(q.push(ev(2, 6)), 1);
        assert_eq!(q.push(ev(3, 50)), 1);
        assert_eq!(q.len(), 1);
        assert_eq!(q.dropped(), 2);
        assert_eq!(block_on(q.pop_batch(1)).unwrap()[0][0], 3);
    }

    #[test]
    fn batches_respect_the_size_and_close_ends_the_writer() {
        let q = Outbox::new(QueueLimits::default());
        for n in 0..4 {
            q.push(ev(n, 10));
        }
        assert_eq!(block_on(q.pop_batch(25)).unwrap().len(), 2);
        assert_eq!(block_on(q.pop_batch(5)).unwrap().len(), 1);
        q.close();
        assert!(block_on(q.pop_batch(25)).is_none());
        assert_eq!(q.push(ev(9, 1)), 0);
        assert!(q.is_empty());
    }

    #[test]
    fn a_waiting_writer_wakes_on_push() {
        let q = Arc::new(Outbox::new(QueueLimits::default()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let waiter = tokio::spawn({
                let q = q.clone();
                async move { q.pop_batch(100).await }
            });
            tokio::task::yield_now().await;
            q.push(ev(7, 3));
            let batch = waiter.await.unwrap().unwrap();
            assert_eq!(&batch[0][..], &[7, 7, 7]);
        });
    }
}
