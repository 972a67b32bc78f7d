//! The committer: one task that makes batches of changes durable (group commit), publishes
//! them to standbys, delivers pushes, and compacts the log.

use super::*;

pub(super) async fn committer<S: Storage, C: WallClock>(
    shared: Arc<Shared<C>>,
    mut store: Store<S>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    durable: watch::Sender<Durable>,
    _done: mpsc::Sender<()>,
) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let first = tokio::select! {
            biased;
            p = rx.recv() => match p { Some(p) => p, None => break },
            _ = stopped(&mut shutdown) => break,
        };
        let mut batch = vec![first];
        while let Ok(p) = rx.try_recv() {
            batch.push(p);
        }
        if !commit_batch(&shared, &mut store, &batch, &durable) {
            return;
        }
        // Deliver pushes only now that what they announce is durable; put back what could
        // not be delivered.
        let requeue = deliver(&shared, &batch);
        if !requeue.is_empty() {
            let mut locked = shared.lock();
            let changes = locked.reg.requeue(&requeue);
            shared.submit(&mut locked, changes, Vec::new());
        }
        if store.needs_compaction() && !compact(&shared, &mut store, &mut rx, &durable) {
            return;
        }
    }
    // Shutdown: whatever is still queued, then a final snapshot.
    let mut rest = Vec::new();
    while let Ok(p) = rx.try_recv() {
        rest.push(p);
    }
    if !rest.is_empty() && !commit_batch(&shared, &mut store, &rest, &durable) {
        return;
    }
    compact(&shared, &mut store, &mut rx, &durable);
}

pub(super) fn commit_batch<S: Storage, C: WallClock>(
    shared: &Shared<C>,
    store: &mut Store<S>,
    batch: &[Pending],
    durable: &watch::Sender<Durable>,
) -> bool {
    let changes: Vec<_> = batch
        .iter()
        .flat_map(|p| p.changes.iter().cloned())
        .collect();
    let last = batch.iter().map(|p| p.ticket).max().unwrap_or(0);
    match blocking(|| store.commit(&changes)) {
        Ok(()) => {
            // One publication per ticket: a standby that subscribed at ticket T must skip
            // exactly the batches its snapshot already holds.
            for p in batch {
                shared.hub.publish(p.ticket, &p.changes);
            }
            durable.send_replace(Durable::Upto(last));
            true
        }
        Err(e) => {
            // Nothing acknowledged is lost; nothing more can be acknowledged.
            tracing::error!(error = %e, "registry storage failed; refusing further changes");
            durable.send_replace(Durable::Failed);
            false
        }
    }
}

pub(super) fn compact<S: Storage, C: WallClock>(
    shared: &Shared<C>,
    store: &mut Store<S>,
    rx: &mut mpsc::UnboundedReceiver<Pending>,
    durable: &watch::Sender<Durable>,
) -> bool {
    // Under the lock every applied change is already in the channel: commit those, then the
    // snapshot matches the log position exactly.
    let bytes = {
        let locked = shared.lock();
        let mut late = Vec::new();
        while let Ok(p) = rx.try_recv() {
            late.push(p);
        }
        if !late.is_empty() {
            if !commit_batch(shared, store, &late, durable) {
                return false;
            }
            // Their pushes go out with the snapshot's release below.
            drop(locked);
            deliver(shared, &late);
            return compact(shared, store, rx, durable);
        }
        Snapshot::from_data(locked.reg.data(), store.seq()).to_bytes()
    };
    if let Err(e) = blocking(|| store.compact_bytes(bytes)) {
        tracing::error!(error = %e, "registry snapshot failed; refusing further changes");
        durable.send_replace(Durable::Failed);
        return false;
    }
    true
}

/// Runs a blocking storage call. On a multi-threaded runtime the worker hands its other tasks
/// away first, so an fsync does not stall request handling; on a current-thread runtime (the
/// simulator) it runs inline, which keeps the run deterministic.
pub(super) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Sends each push to its node's live streams; returns those no stream took.
pub(super) fn deliver<C>(shared: &Shared<C>, batch: &[Pending]) -> Vec<Push> {
    let mut undelivered = Vec::new();
    let mut subs = shared.subscribers.lock().unwrap_or_else(|e| e.into_inner());
    for push in batch.iter().flat_map(|p| &p.pushes) {
        let streams = subs.entry(push.to).or_default();
        streams.retain(|tx| !tx.is_closed());
        match streams.first() {
            Some(tx) if tx.send(push.event.clone()).is_ok() => {}
            _ => undelivered.push(push.clone()),
        }
    }
    subs.retain(|_, v| !v.is_empty());
    undelivered
}
