//! Property tests: the frame decoder and the request path are total over arbitrary input.

use pilot::registry::frame::{decode, encode, Object, MAX_FRAME};
use pilot::registry::{Config, Ctx, Registry, Request};
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z_#:0-9]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const TYPES: &[&str] = &[
    "register",
    "heartbeat",
    "deregister",
    "rotate_key",
    "lookup",
    "resolve",
    "punch",
    "resolve_hostname",
    "set_visibility",
    "set_hostname",
    "set_tags",
    "set_task_exec",
    "update_polo_score",
    "set_polo_score",
    "get_polo_score",
    "report_trust",
    "revoke_trust",
    "request_handshake",
    "poll_handshakes",
    "respond_handshake",
    "create_network",
    "join_network",
    "leave_network",
    "list_networks",
    "list_nodes",
    "beacon_register",
    "beacon_list",
    "subscribe_replication",
    "subscribe_handshakes",
    "bogus",
];

proptest! {
    #[test]
    fn decoder_is_total(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(Some((_, used))) = decode(&bytes) {
            prop_assert!(used <= bytes.len());
        }
    }

    #[test]
    fn decoder_never_trusts_the_length(len in any::<u32>(), tail in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        match decode(&bytes) {
            Err(pilot::registry::frame::FrameError::TooLarge(n)) => prop_assert!(n > MAX_FRAME as u64),
            Ok(None) => prop_assert!(tail.len() < len as usize),
            _ => prop_assert!(tail.len() >= len as usize),
        }
    }

    #[test]
    fn any_request_object_gets_a_reply(ty in prop::sample::select(TYPES), fields in prop::collection::btree_map(
        prop::sample::select(&["node_id", "peer_id", "requester_id", "public_key", "signature",
            "hostname", "tags", "delta", "polo_score", "accept", "public", "enabled",
            "network_id", "beacon_id", "addr", "listen_addr", "owner", "from_node_id",
            "to_node_id", "node_a", "node_b", "new_public_key", "justification"][..]),
        json_value(), 0..8)) {
        let mut obj = Object::new();
        obj.insert("type".into(), Value::from(ty));
        for (k, v) in fields {
            obj.insert(k.to_string(), v);
        }
        let _ = Request::parse(&obj);
        let mut reg = Registry::new(Config::default(), 1_000);
        let ctx = Ctx { peer: "192.0.2.1:1".parse().unwrap(), now_ms: 1_000 };
        let out = reg.handle_frame(&obj, &ctx);
        prop_assert!(out.reply.get("type").and_then(Value::as_str).is_some());
        // Replies always re-encode into a frame the decoder accepts.
        let bytes = encode(&out.reply);
        prop_assert_eq!(decode(&bytes).unwrap().unwrap().0, out.reply);
    }
}
