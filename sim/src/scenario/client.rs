//! Registry requests of a probe host: the real `pilot::registry::client::Client` over the
//! host's [`SimNet`], so requests leave through the host's NATs like a daemon's would.
//!
//! A host runs its requests one after another, in script order (a `resolve` right after a
//! `register` sees the node ID that the register returned). Every reply is recorded for the
//! expectations and noted in the trace.

use super::agent::Reports;
use super::expect::{reply_body, Reply};
use crate::net::SimNet;
use crate::trace;
use crate::world::{host_seed, lock};
use pilot::crypto::{to_base64, Identity};
use pilot::net::seeded_rng;
use pilot::registry::client::{Client, ClientError};
use pilot::registry::frame::Object;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a request may take, reconnects included, before it counts as unanswered. The
/// client's own schedule (5 dials, 5 s each, backoff to 4 s) fits well inside.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One registry request, as the runner hands it to a host.
#[derive(Debug)]
pub(crate) struct Request {
    /// The action's number in the script.
    pub action: usize,
    /// The reply's tag.
    pub tag: Option<String>,
    /// The registry's public address.
    pub registry: SocketAddr,
    /// The registry host's name (for messages).
    pub registry_name: String,
    /// What to ask.
    pub op: Op,
}

/// What a request asks.
#[derive(Debug)]
pub(crate) enum Op {
    Register {
        identity: String,
        port: u16,
        hostname: String,
        owner: String,
    },
    Resolve {
        identity: String,
        target: String,
    },
    Lookup {
        target: String,
    },
    SetVisibility {
        identity: String,
        public: bool,
    },
    ReportTrust {
        identity: String,
        peer: String,
    },
    Heartbeat {
        identity: String,
    },
    RequestHandshake {
        identity: String,
        peer: String,
        justification: String,
    },
    PollHandshakes {
        identity: String,
    },
    RespondHandshake {
        identity: String,
        peer: String,
        accept: bool,
    },
}

impl Op {
    /// The identity whose key signs the request (and whose connection it uses).
    fn identity(&self) -> &str {
        match self {
            Op::Register { identity, .. }
            | Op::Resolve { identity, .. }
            | Op::SetVisibility { identity, .. }
            | Op::ReportTrust { identity, .. }
            | Op::Heartbeat { identity }
            | Op::RequestHandshake { identity, .. }
            | Op::PollHandshakes { identity }
            | Op::RespondHandshake { identity, .. } => identity,
            Op::Lookup { .. } => "",
        }
    }

    fn describe(&self) -> String {
        match self {
            Op::Register { identity, .. } => format!("register {identity}"),
            Op::Resolve { identity, target } => format!("resolve {target} for {identity}"),
            Op::Lookup { target } => format!("lookup {target}"),
            Op::SetVisibility { identity, public } => {
                let v = if *public { "public" } else { "private" };
                format!("set-visibility {identity} {v}")
            }
            Op::ReportTrust { identity, peer } => format!("report-trust {identity} -> {peer}"),
            Op::Heartbeat { identity } => format!("heartbeat {identity}"),
            Op::RequestHandshake { identity, peer, .. } => {
                format!("request-handshake {identity} -> {peer}")
            }
            Op::PollHandshakes { identity } => format!("poll-handshakes {identity}"),
            Op::RespondHandshake {
                identity,
                peer,
                accept,
            } => {
                let a = if *accept { "accept" } else { "refuse" };
                format!("respond-handshake {identity} -> {peer} {a}")
            }
        }
    }
}

/// The key of identity `name`: drawn from a generator seeded by the scenario seed and the
/// name, so it is the same from any host (an identity can move) and in every run.
pub(crate) fn identity_key(seed: u64, name: &str) -> Identity {
    let mut rng = seeded_rng(host_seed(seed, &format!("identity/{name}"), 0));
    Identity::generate(&mut rng)
}

/// Identities and connections of one incarnation of a host.
struct Session {
    net: SimNet,
    reports: Arc<Reports>,
    /// One connection per (registry, identity), kept open like a daemon's.
    clients: BTreeMap<(SocketAddr, String), Client<SimNet>>,
}

/// Runs the requests of one incarnation of a host, in order, until the host stops.
pub(crate) async fn run(
    net: SimNet,
    mut requests: mpsc::UnboundedReceiver<Request>,
    reports: Arc<Reports>,
) {
    let mut session = Session {
        net,
        reports,
        clients: BTreeMap::new(),
    };
    while let Some(request) = requests.recv().await {
        session.handle(request).await;
    }
}

impl Session {
    async fn handle(&mut self, request: Request) {
        let what = format!("{} at {}", request.op.describe(), request.registry_name);
        let key = (request.registry, request.op.identity().to_string());
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, self.perform(&request)).await;
        let result = match outcome {
            Ok(result) => result,
            Err(_) => {
                // The connection may hold half a frame: start afresh next time.
                self.clients.remove(&key);
                Err(format!("no reply within {} s", REQUEST_TIMEOUT.as_secs()))
            }
        };
        if let (Ok(body), Op::Register { identity, .. }) = (&result, &request.op) {
            if let Some(id) = body.get("node_id").and_then(Value::as_u64) {
                lock(&self.reports.identities).insert(identity.clone(), id as u32);
            }
        }
        let reply = Reply {
            tag: request.tag.clone(),
            action: request.action,
            what: what.clone(),
            at: trace::now(),
            result,
        };
        let name = self.net.world().node(self.net.node()).name.clone();
        let label = request
            .tag
            .clone()
            .unwrap_or_else(|| format!("#{}", request.action));
        self.net.world().trace().note_at(
            reply.at,
            &name,
            format!("reply {label} ({what}) {}", reply_body(&reply)),
        );
        if let (None, Err(e)) = (&reply.tag, &reply.result) {
            // Nobody can expect anything of an untagged reply: its failure fails the run.
            lock(&self.reports.errors).push(format!("action #{} ({what}): {e}", request.action));
        }
        lock(&self.reports.replies).push(reply);
    }

    /// The node ID of identity `name`, from its last successful registration.
    fn node_id(&self, name: &str) -> Result<u32, String> {
        lock(&self.reports.identities)
            .get(name)
            .copied()
            .ok_or_else(|| format!("{name} has no node ID: no register of it has succeeded"))
    }

    async fn perform(&mut self, request: &Request) -> Result<Object, String> {
        let seed = self.net.world().seed();
        let identity = request.op.identity();
        let key = identity_key(seed, identity);
        let sign = |challenge: String| to_base64(&key.sign(challenge.as_bytes()));
        let body = match &request.op {
            Op::Register {
                port,
                hostname,
                owner,
                ..
            } => {
                let mut r = json!({
                    "type": "register",
                    "public_key": to_base64(&key.public_key()),
                    "listen_addr": format!("0.0.0.0:{port}"),
                });
                if !owner.is_empty() {
                    r["owner"] = json!(owner);
                }
                if !hostname.is_empty() {
                    r["hostname"] = json!(hostname);
                }
                r
            }
            Op::Resolve { target, .. } => {
                let (me, target) = (self.node_id(identity)?, self.node_id(target)?);
                json!({"type": "resolve", "node_id": target, "requester_id": me,
                       "signature": sign(format!("resolve:{me}:{target}"))})
            }
            Op::Lookup { target } => json!({"type": "lookup", "node_id": self.node_id(target)?}),
            Op::SetVisibility { public, .. } => {
                let me = self.node_id(identity)?;
                json!({"type": "set_visibility", "node_id": me, "public": public,
                       "signature": sign(format!("set_visibility:{me}"))})
            }
            Op::ReportTrust { peer, .. } => {
                let (me, peer) = (self.node_id(identity)?, self.node_id(peer)?);
                json!({"type": "report_trust", "node_id": me, "peer_id": peer,
                       "signature": sign(format!("report_trust:{me}:{peer}"))})
            }
            Op::RequestHandshake {
                peer,
                justification,
                ..
            } => {
                let (me, peer) = (self.node_id(identity)?, self.node_id(peer)?);
                json!({"type": "request_handshake", "from_node_id": me, "to_node_id": peer,
                       "justification": justification,
                       "signature": sign(format!("handshake:{me}:{peer}"))})
            }
            Op::PollHandshakes { .. } => {
                let me = self.node_id(identity)?;
                json!({"type": "poll_handshakes", "node_id": me,
                       "signature": sign(format!("poll_handshakes:{me}"))})
            }
            Op::RespondHandshake { peer, accept, .. } => {
                let (me, peer) = (self.node_id(identity)?, self.node_id(peer)?);
                json!({"type": "respond_handshake", "node_id": me, "peer_id": peer,
                       "accept": accept, "signature": sign(format!("respond:{me}:{peer}"))})
            }
            Op::Heartbeat { .. } => {
                let me = self.node_id(identity)?;
                json!({"type": "heartbeat", "node_id": me,
                       "signature": sign(format!("heartbeat:{me}"))})
            }
        };
        let Value::Object(body) = body else {
            return Err("internal: a request is always an object".to_string());
        };
        let client = self
            .clients
            .entry((request.registry, identity.to_string()))
            .or_insert_with(|| Client::new(self.net.clone(), request.registry));
        client.request(&body).await.map_err(|e| match e {
            ClientError::Registry(text) => text,
            other => other.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_keys_depend_on_seed_and_name_only() {
        let key = |seed, name| identity_key(seed, name).public_key();
        assert_eq!(key(1, "alice"), key(1, "alice"));
        assert_ne!(key(1, "alice"), key(1, "bob"));
        assert_ne!(key(1, "alice"), key(2, "alice"));
    }
}
