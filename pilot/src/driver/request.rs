//! Matching replies to requests.
//!
//! The IPC protocol has no request IDs: the daemon serves one client's requests in order, and a
//! reply is matched to the oldest outstanding request expecting that reply code. An Error reply
//! names no request, so it goes to the oldest outstanding request of any kind.

use super::error::DriverError;
use super::listener::Accepted;
use super::stream::ConnSlot;
use crate::ipc::Event;
use std::collections::VecDeque;
use tokio::sync::{mpsc, oneshot};

/// What a successful request yields to its waiter.
pub(crate) enum Reply {
    /// A reply event as decoded (JSON replies, UnbindOK).
    Event(Event),
    /// DialOK: the connection is already registered, so no data can be missed.
    Dialed(u32, ConnSlot),
    /// BindOK: the accept queue is already registered, so no Accept can be missed.
    Bound(u16, mpsc::Receiver<Accepted>, u64),
}

/// The channel a waiter listens on.
pub(crate) type ReplySender = oneshot::Sender<Result<Reply, DriverError>>;

/// One outstanding request.
pub(crate) struct Pending {
    /// The reply code that completes it.
    pub reply: u8,
    /// What was asked, for error messages.
    pub op: &'static str,
    /// `None` for fire-and-forget requests that still take part in matching.
    pub tx: Option<ReplySender>,
}

impl Pending {
    /// Completes the request with an error (if anyone still waits).
    pub fn fail(self, err: DriverError) {
        if let Some(tx) = self.tx {
            let _ = tx.send(Err(err));
        }
    }
}

/// Outstanding requests, oldest first.
#[derive(Default)]
pub(crate) struct PendingQueue {
    items: VecDeque<Pending>,
}

impl PendingQueue {
    /// Adds a request just written to the socket.
    pub fn push(&mut self, pending: Pending) {
        self.items.push_back(pending);
    }

    /// Removes the oldest request that expects reply `code`.
    pub fn take_for(&mut self, code: u8) -> Option<Pending> {
        let index = self.items.iter().position(|p| p.reply == code)?;
        self.items.remove(index)
    }

    /// Removes the oldest request of any kind (the one an Error answers).
    pub fn take_oldest(&mut self) -> Option<Pending> {
        self.items.pop_front()
    }

    /// Removes every request.
    pub fn drain(&mut self) -> impl Iterator<Item = Pending> + '_ {
        self.items.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(reply: u8, op: &'static str) -> Pending {
        Pending {
            reply,
            op,
            tx: None,
        }
    }

    #[test]
    fn replies_match_per_code_fifo_and_errors_the_oldest() {
        let mut queue = PendingQueue::default();
        queue.push(pending(0x0E, "info-1"));
        queue.push(pending(0x04, "dial"));
        queue.push(pending(0x0E, "info-2"));
        assert_eq!(queue.take_for(0x04).unwrap().op, "dial");
        assert_eq!(queue.take_for(0x0E).unwrap().op, "info-1");
        assert!(queue.take_for(0x02).is_none());
        assert_eq!(queue.take_oldest().unwrap().op, "info-2");
        assert!(queue.take_oldest().is_none());
    }
}
