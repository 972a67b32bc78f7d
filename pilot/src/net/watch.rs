//! A watch channel (one value, many readers told of each change) whose readers wake in a
//! reproducible order.
//!
//! `tokio::sync::watch` spreads its waiting receivers over eight `Notify`s picked by the
//! runtime's random generator, which is seeded from the operating system unless tokio is built
//! with `--cfg tokio_unstable`; two tasks waiting on one channel then wake in a different order
//! from run to run, and a simulated run no longer replays bit for bit. This channel keeps its
//! waiters on one `Notify`, which wakes them in the order they started waiting. It offers the
//! subset of tokio's API this crate uses, with the same meaning.

use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// The sender is gone (returned by [`Receiver::changed`] and [`Receiver::wait_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvError;

impl std::fmt::Display for RecvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("channel closed")
    }
}

impl std::error::Error for RecvError {}

/// No receiver is left (returned by [`Sender::send`], with the value).
#[derive(Debug, PartialEq, Eq)]
pub struct SendError<T>(pub T);

impl<T> std::fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("channel closed")
    }
}

impl<T: std::fmt::Debug> std::error::Error for SendError<T> {}

struct State<T> {
    value: T,
    /// Bumped on every send.
    version: u64,
    closed: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    changed: Notify,
    receivers: AtomicUsize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A borrowed value; holds the channel's lock, so keep it short and never across an await.
pub struct Ref<'a, T>(MutexGuard<'a, State<T>>);

impl<T> Deref for Ref<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0.value
    }
}

/// The sending half.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// A receiving half; it remembers the last version it saw.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    seen: u64,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("value", &self.shared.lock().value)
            .finish()
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("value", &self.shared.lock().value)
            .field("seen", &self.seen)
            .finish()
    }
}

/// A channel holding `init`.
pub fn channel<T>(init: T) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            value: init,
            version: 0,
            closed: false,
        }),
        changed: Notify::new(),
        receivers: AtomicUsize::new(1),
    });
    let rx = Receiver {
        shared: shared.clone(),
        seen: 0,
    };
    (Sender { shared }, rx)
}

impl<T> Sender<T> {
    /// A channel holding `init` with no receiver yet ([`Sender::subscribe`] makes them).
    pub fn new(init: T) -> Self {
        let (tx, _) = channel(init);
        tx
    }

    /// Stores `value` and tells the receivers; fails (giving it back) if none is left.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.shared.receivers.load(Ordering::Acquire) == 0 {
            return Err(SendError(value));
        }
        self.send_replace(value);
        Ok(())
    }

    /// Stores `value` whether or not anyone listens; returns the old one.
    pub fn send_replace(&self, value: T) -> T {
        let old = {
            let mut state = self.shared.lock();
            state.version += 1;
            std::mem::replace(&mut state.value, value)
        };
        self.shared.changed.notify_waiters();
        old
    }

    /// Changes the value in place and tells the receivers.
    pub fn send_modify(&self, modify: impl FnOnce(&mut T)) {
        {
            let mut state = self.shared.lock();
            modify(&mut state.value);
            state.version += 1;
        }
        self.shared.changed.notify_waiters();
    }

    /// The current value.
    pub fn borrow(&self) -> Ref<'_, T> {
        Ref(self.shared.lock())
    }

    /// A new receiver that has seen the current value.
    pub fn subscribe(&self) -> Receiver<T> {
        self.shared.receivers.fetch_add(1, Ordering::AcqRel);
        let seen = self.shared.lock().version;
        Receiver {
            shared: self.shared.clone(),
            seen,
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_waiters();
    }
}

impl<T> Receiver<T> {
    /// The current value (not marking it seen).
    pub fn borrow(&self) -> Ref<'_, T> {
        Ref(self.shared.lock())
    }

    /// The current value, marking it seen.
    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        let state = self.shared.lock();
        self.seen = state.version;
        Ref(state)
    }

    /// Waits for a value this receiver has not seen (and marks it seen); fails once the
    /// sender is gone and nothing new is left.
    pub async fn changed(&mut self) -> Result<(), RecvError> {
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a send in between still wakes us.
            notified.as_mut().enable();
            {
                let state = self.shared.lock();
                if state.version != self.seen {
                    self.seen = state.version;
                    return Ok(());
                }
                if state.closed {
                    return Err(RecvError);
                }
            }
            notified.await;
        }
    }

    /// Waits until the value satisfies `ready` (checking the current one first) and returns
    /// it, marked seen; fails if the sender goes first.
    pub async fn wait_for(
        &mut self,
        mut ready: impl FnMut(&T) -> bool,
    ) -> Result<Ref<'_, T>, RecvError> {
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.shared.lock();
                self.seen = state.version;
                if ready(&state.value) {
                    return Ok(Ref(state));
                }
                if state.closed {
                    return Err(RecvError);
                }
            }
            notified.await;
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.fetch_add(1, Ordering::AcqRel);
        Receiver {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.receivers.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    #[tokio::test]
    async fn receivers_see_changes_and_the_close() {
        let (tx, mut rx) = channel(1);
        assert_eq!(*rx.borrow(), 1);
        tx.send(2).unwrap();
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), 2);
        let mut late = tx.subscribe();
        tx.send_modify(|v| *v += 1);
        late.changed().await.unwrap();
        assert_eq!(*late.wait_for(|v| *v == 3).await.unwrap(), 3);
        drop(tx);
        assert_eq!(rx.changed().await, Ok(()), "the last change is still news");
        assert_eq!(rx.changed().await, Err(RecvError));
    }

    #[tokio::test]
    async fn a_send_without_receivers_fails_and_gives_the_value_back() {
        let (tx, rx) = channel(0);
        drop(rx);
        assert_eq!(tx.send(5), Err(SendError(5)));
        assert_eq!(tx.send_replace(6), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn waiters_wake_in_the_order_they_started_waiting() {
        let (tx, rx) = channel(0u32);
        let order = Arc::new(StdMutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (mut rx, order) = (rx.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                rx.changed().await.unwrap();
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        tx.send(1).unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..16).collect::<Vec<_>>());
    }
}
