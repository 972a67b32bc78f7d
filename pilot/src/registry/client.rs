//! The library's registry client over the network seam (what the daemon uses).
//!
//! Behaviour follows the reference client (`spec/registry.md` §3.4): requests on one client are
//! serialised (`&mut self`), a reply carrying an `error` string is an error without reconnecting,
//! and a transport failure reconnects (up to 5 dials, backoff 500 ms doubling to 10 s) and
//! re-sends the request once.

use super::frame::{self, BoxStream, FrameError, Object, MAX_FRAME};
use crate::net::Network;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::BufReader;

/// Signs a challenge string, returning the standard-base64 Ed25519 signature.
pub type Signer = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry answered with an error.
    #[error("registry: {0}")]
    Registry(String),
    /// The connection failed (after the one retry).
    #[error("registry connection: {0}")]
    Io(#[from] std::io::Error),
    /// The registry sent something that is not a frame.
    #[error("registry connection: {0}")]
    Frame(#[from] FrameError),
    /// The registry closed the connection without a reply.
    #[error("registry closed the connection")]
    Closed,
    /// A reply lacked a field or had the wrong type.
    #[error("registry reply malformed: {0}")]
    Malformed(&'static str),
}

/// The answer to `register`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The node ID.
    pub node_id: u32,
    /// The virtual address text.
    pub address: String,
    /// The hostname, if one was applied.
    pub hostname: Option<String>,
    /// Why the requested hostname was refused, if it was.
    pub hostname_error: Option<String>,
}

/// A relayed handshake request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayedRequest {
    /// The requester.
    pub from_node_id: u32,
    /// Its justification.
    pub justification: String,
    /// Unix seconds.
    pub timestamp: u64,
}

/// A relayed handshake response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayedResponse {
    /// The responder.
    pub from_node_id: u32,
    /// Whether it accepted.
    pub accept: bool,
    /// Unix seconds.
    pub timestamp: u64,
}

/// What `poll_handshakes` returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Polled {
    /// Requests addressed to the node.
    pub requests: Vec<RelayedRequest>,
    /// Responses to the node's requests.
    pub responses: Vec<RelayedResponse>,
}

/// One pushed event on a handshake subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeEvent {
    /// A peer asks for trust.
    Request(RelayedRequest),
    /// A peer answered our request.
    Response(RelayedResponse),
}

/// A `register` request; `owner` and `hostname` only when given.
fn register_request(public_key: &str, listen_addr: &str, owner: &str, hostname: &str) -> Value {
    let mut req = json!({"type":"register","public_key":public_key,"listen_addr":listen_addr});
    if !owner.is_empty() {
        req["owner"] = json!(owner);
    }
    if !hostname.is_empty() {
        req["hostname"] = json!(hostname);
    }
    req
}

/// Reads a `register_ok` reply.
fn registration(r: &Object) -> Result<Registration, ClientError> {
    let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(Registration {
        node_id: u32_field(r, "node_id")?,
        address: text("address").ok_or(ClientError::Malformed("address"))?,
        hostname: text("hostname"),
        hostname_error: text("hostname_error"),
    })
}

fn u32_field(o: &Object, key: &'static str) -> Result<u32, ClientError> {
    o.get(key)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(ClientError::Malformed(key))
}

fn relayed_request(v: &Value) -> Option<RelayedRequest> {
    Some(RelayedRequest {
        from_node_id: u32::try_from(v.get("from_node_id")?.as_u64()?).ok()?,
        justification: v.get("justification")?.as_str()?.to_string(),
        timestamp: v.get("timestamp")?.as_u64()?,
    })
}

fn relayed_response(v: &Value) -> Option<RelayedResponse> {
    Some(RelayedResponse {
        from_node_id: u32::try_from(v.get("from_node_id")?.as_u64()?).ok()?,
        accept: v.get("accept")?.as_bool()?,
        timestamp: v.get("timestamp")?.as_u64()?,
    })
}

/// How long a reply may take once the request is written.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Dials with the reference client's retry schedule: 5 attempts, 5 s each, 500 ms doubling
/// to 10 s between them.
async fn dial<N: Network>(
    net: N,
    addr: SocketAddr,
    pin: Option<String>,
) -> std::io::Result<BoxStream> {
    let mut pause = Duration::from_millis(500);
    let mut last = None;
    for attempt in 0..5 {
        if attempt > 0 {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(10));
        }
        let connect = frame::connect(&net, addr, pin.as_deref());
        match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok(s)) => return Ok(s),
            // A refused certificate (or a TLS protocol error) will not change by retrying.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => return Err(e),
            Ok(Err(e)) => last = Some(e),
            Err(_) => last = Some(std::io::ErrorKind::TimedOut.into()),
        }
    }
    Err(last.unwrap_or_else(|| std::io::ErrorKind::NotConnected.into()))
}

/// A registry client.
pub struct Client<N: Network> {
    net: N,
    addr: SocketAddr,
    conn: Option<BufReader<BoxStream>>,
    signer: Option<Signer>,
    tls_pin: Option<String>,
    reply_timeout: Duration,
}

impl<N: Network> Client<N> {
    /// A client of the registry at `addr`; it connects on first use.
    pub fn new(net: N, addr: SocketAddr) -> Self {
        Client {
            net,
            addr,
            conn: None,
            signer: None,
            tls_pin: None,
            reply_timeout: REPLY_TIMEOUT,
        }
    }

    /// Speaks TLS, accepting only the server whose certificate has SHA-256 `pin` (lowercase
    /// hex, as the daemon's `-registry-tls-pin`).
    pub fn with_tls_pin(mut self, pin: &str) -> Self {
        self.tls_pin = Some(pin.to_string());
        self
    }

    /// Gives up on a reply after `timeout` instead of [`REPLY_TIMEOUT`].
    pub fn with_reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = timeout;
        self
    }

    /// Sets the signer used for authenticated requests.
    pub fn with_signer(mut self, signer: Signer) -> Self {
        self.signer = Some(signer);
        self
    }

    fn dial(
        &self,
    ) -> impl std::future::Future<Output = std::io::Result<BoxStream>> + Send + 'static {
        dial(self.net.clone(), self.addr, self.tls_pin.clone())
    }
    async fn exchange(&mut self, bytes: &[u8]) -> Result<Object, ClientError> {
        if self.conn.is_none() {
            self.conn = Some(BufReader::new(self.dial().await?));
        }
        let conn = self.conn.as_mut().ok_or(ClientError::Closed)?;
        let exchange = async {
            frame::write_encoded(conn, bytes).await?;
            frame::read_frame(conn, MAX_FRAME)
                .await?
                .ok_or(ClientError::Closed)
        };
        // A registry that took the request and never answers must not hold the caller (or
        // the daemon's bounded pool of registry connections) forever.
        let result = match tokio::time::timeout(self.reply_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Io(std::io::ErrorKind::TimedOut.into())),
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// Sends one request and returns the reply; an `error` reply is [`ClientError::Registry`].
    pub async fn request(&mut self, request: &Object) -> Result<Object, ClientError> {
        let bytes = frame::encode(request);
        let reply = match self.exchange(&bytes).await {
            Ok(r) => r,
            Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(ClientError::Io(e))
            }
            // One reconnect and verbatim retry on transport failure.
            Err(ClientError::Io(_) | ClientError::Frame(_) | ClientError::Closed) => {
                self.exchange(&bytes).await?
            }
            Err(e) => return Err(e),
        };
        if let Some(e) = reply.get("error").and_then(Value::as_str) {
            return Err(ClientError::Registry(e.to_string()));
        }
        Ok(reply)
    }

    fn signed(&self, mut v: Value, challenge: &str) -> Object {
        if let (Some(signer), Some(o)) = (&self.signer, v.as_object_mut()) {
            o.insert("signature".into(), json!(signer(challenge)));
        }
        match v {
            Value::Object(o) => o,
            _ => Object::new(),
        }
    }

    fn plain(v: Value) -> Object {
        match v {
            Value::Object(o) => o,
            _ => Object::new(),
        }
    }

    /// Registers (or re-registers) the key `public_key` (base64).
    pub async fn register(
        &mut self,
        public_key: &str,
        listen_addr: &str,
        owner: &str,
        hostname: &str,
    ) -> Result<Registration, ClientError> {
        let req = register_request(public_key, listen_addr, owner, hostname);
        let r = self.request(&Self::plain(req)).await?;
        registration(&r)
    }

    /// Registers with proof of possession (our extension, see `docs/REGISTRY.md`): the signer
    /// (which must hold `public_key`'s private key) signs `register:<public_key>:<now>`. Once a
    /// node registered this way, the registry refuses unsigned or replayed registrations for
    /// it, so nobody else can move its endpoint.
    pub async fn register_signed(
        &mut self,
        public_key: &str,
        listen_addr: &str,
        owner: &str,
        hostname: &str,
        now_unix_secs: u64,
    ) -> Result<Registration, ClientError> {
        let mut req = register_request(public_key, listen_addr, owner, hostname);
        req["timestamp"] = json!(now_unix_secs);
        let req = self.signed(req, &format!("register:{public_key}:{now_unix_secs}"));
        let r = self.request(&req).await?;
        registration(&r)
    }

    /// Heartbeats; returns the registry's Unix time.
    pub async fn heartbeat(&mut self, node_id: u32) -> Result<u64, ClientError> {
        let req = self.signed(
            json!({"type":"heartbeat","node_id":node_id}),
            &format!("heartbeat:{node_id}"),
        );
        let r = self.request(&req).await?;
        r.get("time")
            .and_then(Value::as_u64)
            .ok_or(ClientError::Malformed("time"))
    }

    /// Looks a node up (no authentication); returns the reply object.
    pub async fn lookup(&mut self, node_id: u32) -> Result<Object, ClientError> {
        self.request(&Self::plain(json!({"type":"lookup","node_id":node_id})))
            .await
    }

    /// Resolves `node_id`'s endpoint on behalf of `requester_id`.
    pub async fn resolve(
        &mut self,
        requester_id: u32,
        node_id: u32,
    ) -> Result<String, ClientError> {
        let req = self.signed(
            json!({"type":"resolve","node_id":node_id,"requester_id":requester_id}),
            &format!("resolve:{requester_id}:{node_id}"),
        );
        let r = self.request(&req).await?;
        r.get("real_addr")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or(ClientError::Malformed("real_addr"))
    }

    /// Makes the node public or private.
    pub async fn set_visibility(&mut self, node_id: u32, public: bool) -> Result<(), ClientError> {
        let req = self.signed(
            json!({"type":"set_visibility","node_id":node_id,"public":public}),
            &format!("set_visibility:{node_id}"),
        );
        self.request(&req).await.map(drop)
    }

    /// Sets (or, with "", clears) the hostname.
    pub async fn set_hostname(&mut self, node_id: u32, hostname: &str) -> Result<(), ClientError> {
        let req = self.signed(
            json!({"type":"set_hostname","node_id":node_id,"hostname":hostname}),
            &format!("set_hostname:{node_id}"),
        );
        self.request(&req).await.map(drop)
    }

    /// Replaces the tags; returns them normalised.
    pub async fn set_tags(
        &mut self,
        node_id: u32,
        tags: &[&str],
    ) -> Result<Vec<String>, ClientError> {
        let req = self.signed(
            json!({"type":"set_tags","node_id":node_id,"tags":tags}),
            &format!("set_tags:{node_id}"),
        );
        let r = self.request(&req).await?;
        Ok(r.get("tags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Sets the task-executor flag.
    pub async fn set_task_exec(&mut self, node_id: u32, enabled: bool) -> Result<(), ClientError> {
        let req = self.signed(
            json!({"type":"set_task_exec","node_id":node_id,"enabled":enabled}),
            &format!("set_task_exec:{node_id}"),
        );
        self.request(&req).await.map(drop)
    }

    /// Reports that `node_id` trusts `peer_id`; true once both sides agree.
    pub async fn report_trust(&mut self, node_id: u32, peer_id: u32) -> Result<bool, ClientError> {
        let req = self.signed(
            json!({"type":"report_trust","node_id":node_id,"peer_id":peer_id}),
            &format!("report_trust:{node_id}:{peer_id}"),
        );
        let r = self.request(&req).await?;
        Ok(r.get("trusted").and_then(Value::as_bool).unwrap_or(true))
    }

    /// Revokes the trust pair.
    pub async fn revoke_trust(&mut self, node_id: u32, peer_id: u32) -> Result<(), ClientError> {
        let req = self.signed(
            json!({"type":"revoke_trust","node_id":node_id,"peer_id":peer_id}),
            &format!("revoke_trust:{node_id}:{peer_id}"),
        );
        self.request(&req).await.map(drop)
    }

    /// Relays a handshake request to `to`.
    pub async fn request_handshake(
        &mut self,
        from: u32,
        to: u32,
        justification: &str,
    ) -> Result<(), ClientError> {
        let req = self.signed(
            json!({"type":"request_handshake","from_node_id":from,"to_node_id":to,"justification":justification}),
            &format!("handshake:{from}:{to}"),
        );
        self.request(&req).await.map(drop)
    }

    /// Takes the node's queued relayed requests and responses.
    pub async fn poll_handshakes(&mut self, node_id: u32) -> Result<Polled, ClientError> {
        let req = self.signed(
            json!({"type":"poll_handshakes","node_id":node_id}),
            &format!("poll_handshakes:{node_id}"),
        );
        let r = self.request(&req).await?;
        let list = |k: &'static str| {
            r.get(k)
                .and_then(Value::as_array)
                .ok_or(ClientError::Malformed(k))
        };
        Ok(Polled {
            requests: list("requests")?
                .iter()
                .filter_map(relayed_request)
                .collect(),
            responses: list("responses")?
                .iter()
                .filter_map(relayed_response)
                .collect(),
        })
    }

    /// Answers `peer_id`'s relayed request.
    pub async fn respond_handshake(
        &mut self,
        node_id: u32,
        peer_id: u32,
        accept: bool,
    ) -> Result<(), ClientError> {
        let req = self.signed(
            json!({"type":"respond_handshake","node_id":node_id,"peer_id":peer_id,"accept":accept}),
            &format!("respond:{node_id}:{peer_id}"),
        );
        self.request(&req).await.map(drop)
    }

    /// Turns this client's connection into a push stream of relayed handshakes for `node_id`
    /// (extension; see `docs/REGISTRY.md`). Anything queued arrives first.
    pub async fn subscribe_handshakes(
        mut self,
        node_id: u32,
    ) -> Result<HandshakeStream<BufReader<BoxStream>>, ClientError> {
        let req = self.signed(
            json!({"type":"subscribe_handshakes","node_id":node_id}),
            &format!("subscribe_handshakes:{node_id}"),
        );
        self.request(&req).await?;
        let stream = self.conn.take().ok_or(ClientError::Closed)?;
        Ok(HandshakeStream { stream })
    }
}

/// Pushed relayed handshakes (see [`Client::subscribe_handshakes`]).
pub struct HandshakeStream<T> {
    stream: T,
}

impl<T: tokio::io::AsyncRead + Unpin> HandshakeStream<T> {
    /// The next event; `Ok(None)` when the registry closed the stream.
    pub async fn next_event(&mut self) -> Result<Option<HandshakeEvent>, ClientError> {
        loop {
            let Some(o) = frame::read_frame(&mut self.stream, MAX_FRAME).await? else {
                return Ok(None);
            };
            let v = Value::Object(o);
            let event = match v.get("type").and_then(Value::as_str) {
                Some("handshake_request") => relayed_request(&v).map(HandshakeEvent::Request),
                Some("handshake_response") => relayed_response(&v).map(HandshakeEvent::Response),
                _ => None,
            };
            if let Some(e) = event {
                return Ok(Some(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::TokioNet;

    #[tokio::test]
    async fn a_registry_that_never_answers_times_the_request_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Takes every request and answers none.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let mut client = Client::new(TokioNet, addr).with_reply_timeout(Duration::from_millis(50));
        let err = client.lookup(1).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut),
            "{err}"
        );
    }
}
