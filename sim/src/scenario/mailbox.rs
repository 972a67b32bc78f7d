//! A daemon host's data-exchange mailbox in the simulator, and the crash trigger on it.
//!
//! The store is a [`MemMailbox`] made by the runner, outside the turmoil host, so it outlives
//! every incarnation of the daemon: what the service stored (the real daemon fsyncs before it
//! ACKs) is there after a crash, and the restarted daemon stores into the same place. A file
//! still arriving lives only in its spool, which the crash drops with the daemon's tasks, as a
//! real restart removes `received/.incoming`.
//!
//! Each incarnation sees the store through a [`SimMailbox`], which notes every store in the
//! trace and carries the host's [`Tripwire`]: armed by a `crash-when` action, it fires inside
//! the storage call (after N stored entries, or once N file bytes arrived). From that instant
//! the incarnation is dead: its datagrams are dropped and its storage calls fail, so neither an
//! ACK nor another stored byte gets out, and the runner crashes the host after the step.

use crate::net::SimNet;
use crate::trace;
use crate::world::lock;
use pilot::services::dataexchange::store::Spool;
use pilot::services::dataexchange::{Mailbox, MailboxError, MemMailbox};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// When an armed tripwire fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Right after the n-th entry (message or file) from now is durable, before its reply.
    Stored(u64),
    /// As soon as n file bytes from now have reached the daemon's spools.
    ReceivedBytes(u64),
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Stored(n) => write!(f, "after {n} stored entr{}", plural(*n, "y", "ies")),
            Trigger::ReceivedBytes(n) => write!(f, "after {n} received file bytes"),
        }
    }
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

#[derive(Debug, Default)]
struct Wire {
    armed: Option<Trigger>,
    /// Progress towards the trigger since it was armed.
    stored: u64,
    bytes: u64,
    /// Fired and not yet taken by the runner.
    fired: Option<String>,
}

/// A one-shot crash trigger on one daemon host, shared by the runner and every incarnation.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tripwire(Arc<Mutex<Wire>>);

impl Tripwire {
    /// Arms the trigger (replacing any armed one); progress counts from now.
    pub fn arm(&self, trigger: Trigger) {
        let mut w = lock(&self.0);
        *w = Wire {
            armed: Some(trigger),
            ..Wire::default()
        };
    }

    /// Whether it fired since the last call (then it is disarmed), and why.
    pub fn take_fired(&self) -> Option<String> {
        lock(&self.0).fired.take()
    }

    /// Counts `stored` entries and `bytes` file bytes; when this makes it fire, says why.
    fn count(&self, stored: u64, bytes: u64) -> Option<String> {
        let mut w = lock(&self.0);
        let trigger = w.armed?;
        w.stored += stored;
        w.bytes += bytes;
        let fire = match trigger {
            Trigger::Stored(n) => w.stored >= n,
            Trigger::ReceivedBytes(n) => w.bytes >= n,
        };
        if !fire {
            return None;
        }
        w.armed = None;
        let why = trigger.to_string();
        w.fired = Some(why.clone());
        Some(why)
    }
}

/// One incarnation's view of the host's store.
#[derive(Clone, Debug)]
pub(crate) struct SimMailbox {
    store: MemMailbox,
    wire: Tripwire,
    net: SimNet,
    /// Set when the tripwire fired: this incarnation is crashing.
    dead: Arc<AtomicBool>,
}

impl SimMailbox {
    pub fn new(store: MemMailbox, wire: Tripwire, net: SimNet) -> Self {
        SimMailbox {
            store,
            wire,
            net,
            dead: Arc::default(),
        }
    }

    fn name(&self) -> String {
        self.net.world().node(self.net.node()).name.clone()
    }

    fn note(&self, text: String) {
        let world = self.net.world();
        world.trace().note_at(trace::now(), &self.name(), text);
    }

    fn alive(&self) -> Result<(), MailboxError> {
        if self.dead.load(Ordering::Relaxed) {
            return Err(MailboxError::Io {
                what: "store".to_string(),
                source: std::io::Error::other("the host is crashing"),
            });
        }
        Ok(())
    }

    /// Counts progress; when the tripwire fires, the incarnation dies on the spot.
    fn count(&self, stored: u64, bytes: u64) {
        if let Some(why) = self.wire.count(stored, bytes) {
            self.dead.store(true, Ordering::Relaxed);
            self.net.world().silence(self.net.node());
            self.note(format!("crash-when fired ({why}): the daemon dies here"));
        }
    }

    fn stored(&self, path: &str, bytes: usize) {
        self.note(format!("mailbox stored {path} ({bytes} bytes)"));
        self.count(1, 0);
    }
}

impl Mailbox for SimMailbox {
    fn save_message(&self, stem: &str, entry: &[u8]) -> Result<String, MailboxError> {
        self.alive()?;
        let path = self.store.save_message(stem, entry)?;
        self.stored(&path, entry.len());
        Ok(path)
    }

    fn begin_file(&self, size: u64) -> Result<Box<dyn Spool>, MailboxError> {
        self.alive()?;
        let inner = self.store.begin_file(size)?;
        Ok(Box::new(SimSpool {
            inner,
            mailbox: self.clone(),
            bytes: 0,
        }))
    }
}

struct SimSpool {
    inner: Box<dyn Spool>,
    mailbox: SimMailbox,
    bytes: usize,
}

impl Spool for SimSpool {
    fn write(&mut self, data: &[u8]) -> Result<(), MailboxError> {
        self.mailbox.alive()?;
        self.inner.write(data)?;
        self.bytes += data.len();
        self.mailbox.count(0, data.len() as u64);
        Ok(())
    }

    fn commit(self: Box<Self>, stem: &str, ext: &str) -> Result<String, MailboxError> {
        self.mailbox.alive()?;
        let path = self.inner.commit(stem, ext)?;
        self.mailbox.stored(&path, self.bytes);
        Ok(path)
    }
}

/// What a store holds when the daemon starts, in words (`None` when empty).
pub(crate) fn describe_store(store: &MemMailbox) -> Option<String> {
    let entries = store.entries();
    if entries.is_empty() {
        return None;
    }
    let inbox = entries
        .iter()
        .filter(|(n, _)| n.starts_with("inbox/"))
        .count();
    Some(format!(
        "mailbox holds {} entries from before ({inbox} in the inbox, {} received files)",
        entries.len(),
        entries.len() - inbox
    ))
}
