//! Webhooks (`spec/services.md` §8): every event a service or the daemon reports is POSTed as
//! JSON to one URL, by one background worker, in order.
//!
//! The data path never waits for HTTP: [`Webhooks::notify`] only puts the event in a bounded
//! queue ([`QUEUE`] events); when the queue is full the event is dropped and counted. The
//! worker POSTs with a [`TIMEOUT`] per attempt and retries failures (connection errors and
//! 5xx) [`RETRIES`] times with a short backoff; a 4xx is the receiver's verdict and is not
//! retried. Changing the URL swaps in a new worker; the old one drains its queue and stops.
//! Every event goes through the current URL, whoever reports it (unlike the reference, whose
//! event broker kept the client it started with, §14 Q24).

use crate::net::WallClock;
use crate::services::Notify;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::mpsc;

/// Events waiting to be posted.
pub const QUEUE: usize = 1024;
/// Time one POST may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts after the first for one event.
pub const RETRIES: u32 = 2;
/// Wait before the first retry; doubled for each further one.
const BACKOFF: Duration = Duration::from_millis(500);

/// The daemon's webhook: a URL (or none) and the worker posting to it.
pub struct Webhooks {
    node_id: u32,
    clock: Arc<dyn WallClock>,
    current: Mutex<Option<Target>>,
    dropped: AtomicU64,
    posted: Arc<AtomicU64>,
}

struct Target {
    url: String,
    queue: mpsc::Sender<Value>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

/// Checks a webhook URL: empty (off), or an absolute `http://` or `https://` URL.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Ok(());
    }
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(format!(
            "webhook URL {url:?} must start with http:// or https://"
        )),
        Err(e) => Err(format!("webhook URL {url:?}: {e}")),
    }
}

impl Webhooks {
    /// No webhook yet, for node `node_id`; timestamps come from `clock`.
    pub fn new(node_id: u32, clock: Arc<dyn WallClock>) -> Arc<Self> {
        Arc::new(Webhooks {
            node_id,
            clock,
            current: Mutex::new(None),
            dropped: AtomicU64::new(0),
            posted: Arc::new(AtomicU64::new(0)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Target>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The URL events go to; empty when off.
    pub fn url(&self) -> String {
        self.lock()
            .as_ref()
            .map(|t| t.url.clone())
            .unwrap_or_default()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events the receiver accepted (a 2xx or 3xx reply).
    pub fn posted(&self) -> u64 {
        self.posted.load(Ordering::Relaxed)
    }

    /// Points the webhook at `url` (empty: off). Must run inside a tokio runtime.
    pub fn set(&self, url: &str) -> Result<(), String> {
        check_url(url)?;
        let mut current = self.lock();
        // Dropping the old sender lets the old worker finish its queue and stop.
        *current = None;
        if url.is_empty() {
            return Ok(());
        }
        let client = http_client()?;
        let (queue, events) = mpsc::channel(QUEUE);
        tokio::spawn(post_all(
            client,
            url.to_string(),
            events,
            self.posted.clone(),
        ));
        *current = Some(Target {
            url: url.to_string(),
            queue,
        });
        Ok(())
    }

    /// Queues one event; never waits.
    pub fn emit(&self, event: &str, data: Value) {
        let current = self.lock();
        let Some(target) = current.as_ref() else {
            return; // off: no cost beyond the lock
        };
        let mut body = json!({
            "event": event,
            "node_id": self.node_id,
            "timestamp": timestamp(self.clock.now()),
        });
        if !data.is_null() {
            body["data"] = data;
        }
        if target.queue.try_send(body).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(event, dropped = n, "webhook queue full: events dropped");
            }
        }
    }

    /// A [`Notify`] that logs each event and posts it here.
    pub fn notify(self: &Arc<Self>) -> Notify {
        let hooks = self.clone();
        Arc::new(move |event, data| {
            tracing::debug!(event, %data, "service event");
            hooks.emit(event, data);
        })
    }
}

/// RFC 3339 in UTC with nanoseconds, as the reference posts.
fn timestamp(at: std::time::SystemTime) -> String {
    let t = OffsetDateTime::from(at);
    // Rfc3339 prints the fraction only as long as needed; the reference always has nine.
    let base = t
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default();
    let seconds = base.trim_end_matches('Z');
    format!("{seconds}.{:09}Z", t.nanosecond())
}

fn http_client() -> Result<reqwest::Client, String> {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let tls = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("webhook TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| format!("webhook client: {e}"))
}

async fn post_all(
    client: reqwest::Client,
    url: String,
    mut events: mpsc::Receiver<Value>,
    posted: Arc<AtomicU64>,
) {
    while let Some(body) = events.recv().await {
        let bytes = body.to_string();
        let mut wait = BACKOFF;
        for attempt in 0..=RETRIES {
            let request = client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.clone());
            match request.send().await {
                Ok(reply) if reply.status().is_server_error() && attempt < RETRIES => {}
                Ok(reply) => {
                    if reply.status().as_u16() >= 400 {
                        tracing::warn!(%url, status = %reply.status(), "webhook refused an event");
                    } else {
                        posted.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                Err(e) if attempt == RETRIES => {
                    tracing::warn!(%url, error = %e, "webhook event not delivered");
                    break;
                }
                Err(_) => {}
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn urls_are_checked() {
        assert!(check_url("").is_ok());
        assert!(check_url("http://127.0.0.1:9/x").is_ok());
        assert!(check_url("https://hooks.example.com/a?b=c").is_ok());
        assert!(check_url("ftp://x").is_err());
        assert!(check_url("example.com/hook").is_err());
        assert!(check_url("http://").is_err());
    }

    #[test]
    fn timestamps_have_nanoseconds() {
        let at = UNIX_EPOCH + Duration::new(1_767_225_600, 5);
        assert_eq!(timestamp(at), "2026-01-01T00:00:00.000000005Z");
    }
}
