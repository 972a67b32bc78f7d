//! The HTTP status and metrics endpoints of `spec/registry.md` §12: plain HTTP/1.1, one
//! request per connection, over the network seam.
//!
//! `/metrics` is served only to a loopback TCP peer. Headers are never consulted for that
//! decision (Q-17: `X-Real-IP` was spoofable). There is no profiler: `/debug/pprof/*` is 404.

use super::metrics;
use super::server::Shared;
use crate::net::{TcpListener, WallClock};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request head read.
const MAX_HEAD: usize = 8192;

/// A response: status, content type, extra headers, body.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, &'static str)>,
    /// Body.
    pub body: String,
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    fn text(status: u16, body: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }

    fn encode(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Bad Request",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        bytes
    }
}

const INDEX: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Pilot Protocol registry</title></head>\
<body><h1>Pilot Protocol</h1><p>Registry status: <a href=\"/api/stats\">/api/stats</a></p>\
<p><img src=\"/api/badge/nodes\" alt=\"nodes\"> <img src=\"/api/badge/trust\" alt=\"trust\"> \
<img src=\"/api/badge/requests\" alt=\"requests\"> <img src=\"/api/badge/tags\" alt=\"tags\"> \
<img src=\"/api/badge/task-executors\" alt=\"task executors\"></p></body></html>\n";

/// Whether `/metrics` may be served: only to a loopback TCP peer. The request headers are
/// deliberately ignored: a client can write any `X-Real-IP` or `X-Forwarded-For` it likes.
pub fn metrics_allowed(peer: SocketAddr, _headers: &[(String, String)]) -> bool {
    peer.ip().to_canonical().is_loopback()
}

/// Answers `GET path` from `peer`.
pub(crate) fn route<C: WallClock>(
    shared: &Shared<C>,
    path: &str,
    peer: SocketAddr,
    headers: &[(String, String)],
) -> Response {
    let path = path.split('?').next().unwrap_or("");
    let now = shared.now_ms();
    match path {
        "/" => Response::new(200, "text/html; charset=utf-8", INDEX.to_string()),
        "/api/stats" => {
            let mut cache = shared.stats_cache.lock().unwrap_or_else(|e| e.into_inner());
            let body = match cache.as_ref() {
                Some((at, body)) if now.saturating_sub(*at) < 1000 => body.clone(),
                _ => {
                    let body = metrics::stats(&shared.lock().reg, now).to_string();
                    *cache = Some((now, body.clone()));
                    body
                }
            };
            let mut r = Response::new(200, "application/json", body);
            r.headers.push(("Access-Control-Allow-Origin", "*"));
            r
        }
        "/metrics" => {
            if !metrics_allowed(peer, headers) {
                return Response::text(403, "forbidden");
            }
            let durations = shared.durations();
            let body = metrics::prometheus(&shared.lock().reg, &durations, now);
            Response::new(200, "text/plain; version=0.0.4; charset=utf-8", body)
        }
        _ => match path.strip_prefix("/api/badge/") {
            Some(which) => {
                let value = metrics::badge_value(&shared.lock().reg, which, now);
                match value {
                    Some((label, n)) => {
                        let mut r = Response::new(200, "image/svg+xml", metrics::badge(label, n));
                        r.headers.push(("Cache-Control", "no-cache"));
                        r
                    }
                    None => Response::text(404, "not found"),
                }
            }
            None => Response::text(404, "not found"),
        },
    }
}

/// A parsed request head: method, path, headers.
type Head = (String, String, Vec<(String, String)>);

/// Reads a request head.
async fn read_head<R: AsyncRead + Unpin>(r: &mut R) -> Option<Head> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() >= MAX_HEAD {
            return None;
        }
        let n = r.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = std::str::from_utf8(&buf).ok()?;
    let mut lines = head.lines();
    let mut parts = lines.next()?.split_whitespace();
    let (method, path) = (parts.next()?, parts.next()?);
    parts.next()?.starts_with("HTTP/1.").then_some(())?;
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((method.to_string(), path.to_string(), headers))
}

async fn serve_one<T, C>(shared: &Shared<C>, mut stream: T, peer: SocketAddr)
where
    T: AsyncRead + AsyncWrite + Unpin,
    C: WallClock,
{
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut stream)).await;
    let response = match head {
        Ok(Some((method, path, headers))) => match method.as_str() {
            "GET" | "HEAD" => Some((route(shared, &path, peer, &headers), method == "HEAD")),
            _ => Some((Response::text(405, "method not allowed"), false)),
        },
        Ok(None) => Some((Response::text(400, "bad request"), false)),
        Err(_) => None,
    };
    if let Some((r, head_only)) = response {
        let _ = stream.write_all(&r.encode(head_only)).await;
        let _ = stream.shutdown().await;
    }
}

/// Serves HTTP on `listener` until shutdown.
pub(crate) async fn serve<L, C>(shared: Arc<Shared<C>>, listener: L)
where
    L: TcpListener,
    C: WallClock,
{
    let mut shutdown = shared.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = super::server::stopped(&mut shutdown) => return,
            r = listener.accept() => r,
        };
        let Ok((stream, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move { serve_one(&shared, stream, peer).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// a spoofed `X-Real-IP` does not open `/metrics` to a remote client.
    #[test]
    fn metrics_access_uses_the_tcp_peer_only() {
        let spoof = vec![
            ("x-real-ip".to_string(), "127.0.0.1".to_string()),
            ("x-forwarded-for".to_string(), "::1".to_string()),
        ];
        assert!(!metrics_allowed("192.0.2.1:5000".parse().unwrap(), &spoof));
        assert!(!metrics_allowed(
            "[2001:db8::1]:5000".parse().unwrap(),
            &spoof
        ));
        assert!(metrics_allowed("127.0.0.1:5000".parse().unwrap(), &[]));
        assert!(metrics_allowed("[::1]:5000".parse().unwrap(), &[]));
        assert!(metrics_allowed(
            "[::ffff:127.0.0.1]:5000".parse().unwrap(),
            &[]
        ));
    }

    #[tokio::test]
    async fn request_heads_parse_and_bound() {
        let mut ok: &[u8] = b"GET /metrics HTTP/1.1\r\nX-Real-IP: 127.0.0.1\r\n\r\n";
        let (m, p, h) = read_head(&mut ok).await.unwrap();
        assert_eq!((m.as_str(), p.as_str()), ("GET", "/metrics"));
        assert_eq!(h, vec![("x-real-ip".to_string(), "127.0.0.1".to_string())]);
        let big = vec![b'a'; MAX_HEAD + 10];
        assert!(read_head(&mut &big[..]).await.is_none());
        assert!(read_head(&mut &b"GET /\r\n\r\n"[..]).await.is_none());
    }
}
