//! Event stream fan-out: one publisher, N subscribers, all on daemon A, talking to the broker
//! on daemon B over a real tunnel on loopback; events delivered per second, against the same
//! run with one subscriber as the baseline.
//!
//! ```text
//! cargo bench -p pilot --bench eventstream            # 100 subscribers
//! cargo bench -p pilot --bench eventstream -- --quick
//! ```
//!
//! Each subscriber reads until an `end` event; the broker's queues drop the oldest event when
//! a subscriber falls behind, so `end` always arrives, and what did not is reported as
//! dropped rather than waited for.

#[path = "../tests/daemon_support/mod.rs"]
mod daemon_support;

use daemon_support::{make_trust, Rendezvous};
use pilot::daemon::DaemonHandle;
use pilot::services::eventstream::subscribe_in_process;
use pilot::wire::Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Barrier};

const TOPIC: &str = "bench";
const PAYLOAD: usize = 64;

struct Run {
    delivered: u64,
    expected: u64,
    elapsed: Duration,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64()
    }
}

async fn fan_out(a: &DaemonHandle, broker: Addr, subscribers: usize, events: u64) -> Run {
    let ready = Arc::new(Barrier::new(subscribers + 1));
    let (done_tx, mut done) = mpsc::unbounded_channel();
    for _ in 0..subscribers {
        let mut sub = subscribe_in_process(a, broker, TOPIC).await.unwrap();
        let (ready, done_tx) = (ready.clone(), done_tx.clone());
        tokio::spawn(async move {
            let mut greeted = false;
            let mut count = 0u64;
            while let Ok(Some(event)) = sub.recv().await {
                match event.payload.as_slice() {
                    b"ready" if !greeted => {
                        greeted = true;
                        ready.wait().await;
                    }
                    b"ready" => {}
                    b"end" => break,
                    _ => count += 1,
                }
            }
            let _ = done_tx.send((count, Instant::now()));
        });
    }
    drop(done_tx);
    // Subscriptions reach the broker asynchronously: greet until every subscriber heard it.
    let mut publisher = subscribe_in_process(a, broker, "publisher").await.unwrap();
    let all_ready = ready.wait();
    tokio::pin!(all_ready);
    loop {
        publisher.publish(TOPIC, b"ready").await.unwrap();
        tokio::select! {
            _ = &mut all_ready => break,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let payload = vec![b'x'; PAYLOAD];
    let start = Instant::now();
    for _ in 0..events {
        publisher.publish(TOPIC, &payload).await.unwrap();
    }
    publisher.publish(TOPIC, b"end").await.unwrap();
    let (mut delivered, mut last) = (0, start);
    while let Some((count, at)) = done.recv().await {
        delivered += count;
        last = last.max(at);
    }
    Run {
        delivered,
        expected: events * subscribers as u64,
        elapsed: last - start,
    }
}

fn report(label: &str, run: &Run) {
    println!(
        "  {label:<16} {:>10.0} events/s delivered  ({} of {} in {:.2} s, {} dropped)",
        run.per_second(),
        run.delivered,
        run.expected,
        run.elapsed.as_secs_f64(),
        run.expected - run.delivered
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (subscribers, events) = if quick { (100, 500) } else { (100, 20_000) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let rv = Rendezvous::start().await;
        let a = rv.daemon(1).await;
        let b = rv.daemon(2).await;
        make_trust(&a.handle, &b.handle).await;
        let broker = b.handle.address();
        let one = fan_out(&a.handle, broker, 1, events).await;
        let many = fan_out(&a.handle, broker, subscribers, events).await;
        println!("\nevent stream fan-out, {events} events of {PAYLOAD} bytes, broker across a loopback tunnel");
        report("1 subscriber", &one);
        report(&format!("{subscribers} subscribers"), &many);
        println!(
            "  fan-out gain     {:>10.1} x the single-subscriber rate",
            many.per_second() / one.per_second()
        );
    });
}
