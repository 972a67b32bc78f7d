//! Building reply frames and relay events.

use super::frame::Object;
use super::model::{HsRequest, HsResponse};
use crate::wire::Addr;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// A success reply `{"type":"<kind>_ok"}` to add fields to.
pub(crate) fn reply(kind: &str) -> Object {
    let mut o = Object::new();
    o.insert("type".into(), Value::String(format!("{kind}_ok")));
    o
}

/// An error reply: `{"type":"error","error":text}` (§4.4, with the specific reason: Q-6).
pub fn error_reply(text: &str) -> Object {
    let mut o = Object::new();
    o.insert("type".into(), json!("error"));
    o.insert("error".into(), json!(text));
    o
}

/// The backbone address text of a node.
pub(crate) fn address(id: u32) -> String {
    Addr::backbone(id).to_string()
}

pub(crate) fn addr_text(addr: Option<SocketAddr>) -> String {
    addr.map(|a| a.to_string()).unwrap_or_default()
}

pub(crate) fn polo_reply(kind: &str, id: u32, score: i64) -> Object {
    let mut r = reply(kind);
    r.insert("node_id".into(), json!(id));
    r.insert("address".into(), json!(address(id)));
    r.insert("polo_score".into(), json!(score));
    r
}

pub(crate) fn request_entry(e: &HsRequest) -> Value {
    json!({"from_node_id": e.from, "justification": e.justification, "timestamp": e.at_ms / 1000})
}

pub(crate) fn response_entry(e: &HsResponse) -> Value {
    json!({"from_node_id": e.from, "accept": e.accept, "timestamp": e.at_ms / 1000})
}

/// A push event: the queue entry's fields plus `type` and the exact `timestamp_ms` (so a
/// failed push can be re-queued unchanged).
pub(crate) fn event(kind: &str, entry: Value, at_ms: u64) -> Object {
    let Value::Object(mut o) = entry else {
        return Object::new();
    };
    o.insert("type".into(), json!(kind));
    o.insert("timestamp_ms".into(), json!(at_ms));
    o
}
