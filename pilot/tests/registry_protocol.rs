//! The registry state machine against `spec/registry.md`: the §13 examples replayed, every
//! request type, and one test per fixed reference quirk (each fails on the quirky behaviour).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use pilot::registry::frame::Object;
use pilot::registry::model::{Change, StoredNode};
use pilot::registry::ratelimit::{Rate, Rates};
use pilot::registry::{Config, Ctx, Registry};
use serde_json::{json, Value};
use std::net::SocketAddr;

const T0: u64 = 1_735_689_600_000;

fn sk(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}
fn pk(n: u8) -> String {
    STANDARD.encode(sk(n).verifying_key().to_bytes())
}
fn sig(n: u8, msg: &str) -> String {
    STANDARD.encode(sk(n).sign(msg.as_bytes()).to_bytes())
}

struct Harness {
    reg: Registry,
    now_ms: u64,
    peer: SocketAddr,
}

impl Harness {
    /// A registry whose registration limit does not get in the way of building a scene.
    fn new() -> Self {
        Self::with(Config {
            rates: Rates {
                new_registration: Rate::per_secs(1000, 1),
                ..Rates::default()
            },
            ..Config::default()
        })
    }
    fn with(cfg: Config) -> Self {
        Harness {
            reg: Registry::new(cfg, T0),
            now_ms: T0,
            peer: "203.0.113.5:51000".parse().unwrap(),
        }
    }
    fn send(&mut self, req: Value) -> Value {
        let ctx = Ctx {
            peer: self.peer,
            now_ms: self.now_ms,
        };
        let out = self.reg.handle_frame(req.as_object().unwrap(), &ctx);
        Value::Object(out.reply)
    }
    fn ok(&mut self, req: Value) -> Value {
        let r = self.send(req.clone());
        assert!(r.get("error").is_none(), "{req} failed: {r}");
        r
    }
    fn err(&mut self, req: Value) -> String {
        let r = self.send(req.clone());
        assert_eq!(r["type"], "error", "{req} should fail: {r}");
        r["error"].as_str().unwrap().to_string()
    }
    /// Registers key `n`; returns the node ID.
    fn register(&mut self, n: u8) -> u32 {
        let r = self.ok(json!({"type":"register","public_key":pk(n),"listen_addr":"0.0.0.0:4000"}));
        r["node_id"].as_u64().unwrap() as u32
    }
}

#[test]
fn section_13_examples_replay() {
    let mut h = Harness::new();
    for n in 1..=6 {
        assert_eq!(h.register(n), u32::from(n));
    }
    // A. Registration with hostname.
    let a = h.send(json!({"type":"register","listen_addr":"0.0.0.0:4000",
        "public_key":"mcFcuwjIH9lBJK8Mhgd+HrOmBDz1yAvPwGf5c2md6/Y=",
        "owner":"alice@example.com","hostname":"alice-agent"}));
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        r#"{"address":"0:0000.0000.0007","hostname":"alice-agent","network_id":0,"node_id":7,"public_key":"mcFcuwjIH9lBJK8Mhgd+HrOmBDz1yAvPwGf5c2md6/Y=","type":"register_ok"}"#
    );
    assert_eq!(
        h.reg.data().nodes[&7].real_addr,
        Some("203.0.113.5:4000".parse().unwrap())
    );
    // B. Lookup of a private node (tags set through a recorded change: node 7's private key is
    // not part of the example).
    let mut stored = StoredNode::from_node(7, &h.reg.data().nodes[&7]);
    stored.tags = vec!["assistant".into(), "webserver".into()];
    h.reg.apply_replicated(&[Change::Node(stored)], T0);
    let b = h.send(json!({"type":"lookup","node_id":7}));
    assert_eq!(
        serde_json::to_string(&b).unwrap(),
        r#"{"address":"0:0000.0000.0007","hostname":"alice-agent","networks":[0],"node_id":7,"polo_score":0,"public":false,"public_key":"mcFcuwjIH9lBJK8Mhgd+HrOmBDz1yAvPwGf5c2md6/Y=","tags":["assistant","webserver"],"type":"lookup_ok"}"#
    );
    // C. Denied resolve: node 9 asks for private node 7 without trust.
    assert_eq!(h.register(8), 8);
    assert_eq!(h.register(9), 9);
    let c = h.send(
        json!({"type":"resolve","node_id":7,"requester_id":9,"signature":sig(9,"resolve:9:7")}),
    );
    assert_eq!(c["type"], "error");
    assert!(c["error"].is_string());
    // D. Poll after a relayed request (12 → 9) and an approval (7 answered 9's request).
    for n in 10..=12 {
        assert_eq!(h.register(n), u32::from(n));
    }
    h.ok(
        json!({"type":"request_handshake","from_node_id":12,"to_node_id":9,
        "justification":"I want to collaborate","signature":sig(12,"handshake:12:9")}),
    );
    h.ok(
        json!({"type":"request_handshake","from_node_id":9,"to_node_id":7,
        "justification":"","signature":sig(9,"handshake:9:7")}),
    );
    h.reg.apply_replicated(
        &[
            Change::Response {
                to: 9,
                entry: pilot::registry::model::HsResponse {
                    from: 7,
                    accept: true,
                    at_ms: T0 + 30_000,
                },
            },
            Change::Trust {
                a: 7,
                b: 9,
                on: true,
            },
        ],
        T0,
    );
    let d = h
        .send(json!({"type":"poll_handshakes","node_id":9,"signature":sig(9,"poll_handshakes:9")}));
    assert_eq!(
        serde_json::to_string(&d).unwrap(),
        r#"{"requests":[{"from_node_id":12,"justification":"I want to collaborate","timestamp":1735689600}],"responses":[{"accept":true,"from_node_id":7,"timestamp":1735689630}],"type":"poll_handshakes_ok"}"#
    );
    // Polling is destructive.
    let again =
        h.ok(json!({"type":"poll_handshakes","node_id":9,"signature":sig(9,"poll_handshakes:9")}));
    assert_eq!(again["requests"], json!([]));
    assert_eq!(again["responses"], json!([]));
    // C again, now with the pair: 9 resolves 7.
    let c2 = h.ok(
        json!({"type":"resolve","node_id":7,"requester_id":9,"signature":sig(9,"resolve:9:7")}),
    );
    assert_eq!(c2["real_addr"], "203.0.113.5:4000");
}

#[test]
fn every_request_type_answers() {
    let mut h = Harness::with(Config {
        admin_token: Some("admin".into()),
        ..Config::default()
    });
    let a = h.register(1);
    let b = h.register(2);
    assert_eq!(
        h.ok(json!({"type":"heartbeat","node_id":a,"signature":sig(1,"heartbeat:1")}))["time"],
        T0 / 1000
    );
    let r = h.ok(json!({"type":"set_visibility","node_id":a,"public":true,"signature":sig(1,"set_visibility:1")}));
    assert_eq!(r["visibility"], "public");
    let r = h.ok(json!({"type":"set_hostname","node_id":a,"hostname":"one","signature":sig(1,"set_hostname:1")}));
    assert_eq!(r["hostname"], "one");
    let r = h.ok(json!({"type":"resolve_hostname","hostname":"one"}));
    assert_eq!(
        (r["node_id"].as_u64(), &r["public"]),
        (Some(1), &json!(true))
    );
    let r = h.ok(
        json!({"type":"set_tags","node_id":a,"tags":["#ai","web"],"signature":sig(1,"set_tags:1")}),
    );
    assert_eq!(r["tags"], json!(["ai", "web"]));
    let r = h.ok(json!({"type":"set_tags","node_id":a,"tags":[],"signature":sig(1,"set_tags:1")}));
    assert_eq!(r["tags"], Value::Null);
    let r = h.ok(json!({"type":"set_task_exec","node_id":a,"enabled":true,"signature":sig(1,"set_task_exec:1")}));
    assert_eq!(r["task_exec"], true);
    let r = h.ok(json!({"type":"lookup","node_id":a}));
    assert_eq!(
        (&r["task_exec"], &r["real_addr"]),
        (&json!(true), &json!("203.0.113.5:4000"))
    );
    let r = h.ok(
        json!({"type":"resolve","node_id":a,"requester_id":b,"signature":sig(2,"resolve:2:1")}),
    );
    assert_eq!(r["real_addr"], "203.0.113.5:4000");
    let r = h.ok(json!({"type":"punch","requester_id":b,"node_a":b,"node_b":a,"signature":sig(2,"punch:2:1")}));
    assert_eq!(r["node_b_addr"], "203.0.113.5:4000");
    let r = h.ok(json!({"type":"update_polo_score","node_id":a,"delta":3,"signature":sig(1,"update_polo_score:1:3")}));
    assert_eq!(r["polo_score"], 3);
    let r =
        h.ok(json!({"type":"set_polo_score","node_id":a,"polo_score":-4,"admin_token":"admin"}));
    assert_eq!(r["polo_score"], -4);
    assert_eq!(
        h.ok(json!({"type":"get_polo_score","node_id":a}))["polo_score"],
        -4
    );
    h.ok(json!({"type":"report_trust","node_id":a,"peer_id":b,"signature":sig(1,"report_trust:1:2")}));
    let r = h.ok(json!({"type":"report_trust","node_id":b,"peer_id":a,"signature":sig(2,"report_trust:2:1")}));
    assert_eq!(r["trusted"], true);
    h.ok(json!({"type":"revoke_trust","node_id":b,"peer_id":a,"signature":sig(2,"revoke_trust:2:1")}));
    h.err(json!({"type":"revoke_trust","node_id":b,"peer_id":a,"signature":sig(2,"revoke_trust:2:1")}));
    h.ok(json!({"type":"request_handshake","from_node_id":a,"to_node_id":b,"justification":"hi","signature":sig(1,"handshake:1:2")}));
    let r = h.ok(json!({"type":"respond_handshake","node_id":b,"peer_id":a,"accept":true,"signature":sig(2,"respond:2:1")}));
    assert_eq!((&r["accept"], &r["peer_id"]), (&json!(true), &json!(1)));
    let r =
        h.ok(json!({"type":"poll_handshakes","node_id":a,"signature":sig(1,"poll_handshakes:1")}));
    assert_eq!(r["responses"][0]["from_node_id"], 2);
    for t in ["create_network", "join_network", "leave_network"] {
        h.err(json!({"type":t}));
    }
    let r = h.ok(json!({"type":"list_networks"}));
    assert_eq!(
        r["networks"],
        json!([{"id":0,"name":"backbone","members":2,"join_rule":"open"}])
    );
    h.err(json!({"type":"list_nodes","network_id":0}));
    h.err(json!({"type":"list_nodes","network_id":5}));
    h.ok(json!({"type":"beacon_register","beacon_id":3,"addr":"198.51.100.1:9001"}));
    let r = h.ok(json!({"type":"beacon_list"}));
    assert_eq!(r["beacons"], json!([{"id":3,"addr":"198.51.100.1:9001"}]));
    h.now_ms += 61_000;
    assert_eq!(h.ok(json!({"type":"beacon_list"}))["beacons"], json!([]));
    let r = h.ok(json!({"type":"rotate_key","node_id":a,"new_public_key":pk(3),"signature":sig(1,"rotate:1")}));
    assert_eq!(r["public_key"], pk(3));
    h.err(json!({"type":"heartbeat","node_id":a,"signature":sig(1,"heartbeat:1")}));
    h.ok(json!({"type":"heartbeat","node_id":a,"signature":sig(3,"heartbeat:1")}));
    h.ok(json!({"type":"deregister","node_id":a,"signature":sig(3,"deregister:1")}));
    h.ok(json!({"type":"deregister","node_id":a}));
    h.err(json!({"type":"lookup","node_id":a}));
    // The rotated key reclaims the same ID.
    assert_eq!(h.register(3), a);
    h.err(json!({"type":"subscribe_replication"}));
    h.err(json!({"type":"nonsense"}));
    h.err(json!({}));
}

#[test]
fn register_details() {
    let mut h = Harness::new();
    let r = h.ok(json!({"type":"register","public_key":pk(1),"hostname":"Bad"}));
    assert!(r["hostname_error"]
        .as_str()
        .unwrap()
        .starts_with("hostname must be"));
    assert!(r.get("hostname").is_none());
    assert!(h
        .err(json!({"type":"register"}))
        .contains("requires public_key"));
    h.err(json!({"type":"register","public_key":"AAAA"}));
    // Taken hostname: silently not applied.
    h.ok(json!({"type":"set_hostname","node_id":1,"hostname":"taken","signature":sig(1,"set_hostname:1")}));
    let r = h.ok(json!({"type":"register","public_key":pk(2),"hostname":"taken"}));
    assert!(r.get("hostname").is_none() && r.get("hostname_error").is_none());
    // No listen_addr: the TCP peer address is recorded.
    assert_eq!(h.reg.data().nodes[&2].real_addr, Some(h.peer));
    // Known key: same ID, new endpoint.
    h.peer = "[2001:db8::1]:5555".parse().unwrap();
    let r = h.ok(json!({"type":"register","public_key":pk(1),"listen_addr":":4000"}));
    assert_eq!(r["node_id"], 1);
    assert_eq!(
        h.reg.data().nodes[&1].real_addr.unwrap().to_string(),
        "[2001:db8::1]:4000"
    );
}

/// Q-1: one side's report does not create trust; both sides do.
#[test]
fn quirk_unilateral_trust_is_refused() {
    let mut h = Harness::new();
    let (a, b) = (h.register(1), h.register(2));
    let r = h.ok(json!({"type":"report_trust","node_id":a,"peer_id":b,"signature":sig(1,"report_trust:1:2")}));
    assert_eq!(r["trusted"], false);
    h.err(json!({"type":"resolve","node_id":b,"requester_id":a,"signature":sig(1,"resolve:1:2")}));
    h.ok(json!({"type":"report_trust","node_id":b,"peer_id":a,"signature":sig(2,"report_trust:2:1")}));
    h.ok(json!({"type":"resolve","node_id":b,"requester_id":a,"signature":sig(1,"resolve:1:2")}));
}

/// Q-1: a response to a request that was never made is refused and creates nothing.
#[test]
fn quirk_unrequested_handshake_response_is_refused() {
    let mut h = Harness::new();
    let (a, b) = (h.register(1), h.register(2));
    h.err(json!({"type":"respond_handshake","node_id":b,"peer_id":a,"accept":true,"signature":sig(2,"respond:2:1")}));
    let r =
        h.ok(json!({"type":"poll_handshakes","node_id":a,"signature":sig(1,"poll_handshakes:1")}));
    assert_eq!(r["responses"], json!([]));
    h.err(json!({"type":"resolve","node_id":b,"requester_id":a,"signature":sig(1,"resolve:1:2")}));
}

/// The honest Go relay flow still forms trust (services.md §6.5 rule 11, §6.6).
#[test]
fn go_relay_flow_forms_trust() {
    let mut h = Harness::new();
    let (a, b) = (h.register(1), h.register(2));
    h.ok(json!({"type":"request_handshake","from_node_id":a,"to_node_id":b,"justification":"hi","signature":sig(1,"handshake:1:2")}));
    let r =
        h.ok(json!({"type":"poll_handshakes","node_id":b,"signature":sig(2,"poll_handshakes:2")}));
    assert_eq!(r["requests"][0]["from_node_id"], 1);
    // Approve: report_trust, then respond_handshake.
    let r = h.ok(json!({"type":"report_trust","node_id":b,"peer_id":a,"signature":sig(2,"report_trust:2:1")}));
    assert_eq!(r["trusted"], true);
    h.ok(json!({"type":"respond_handshake","node_id":b,"peer_id":a,"accept":true,"signature":sig(2,"respond:2:1")}));
    let r =
        h.ok(json!({"type":"poll_handshakes","node_id":a,"signature":sig(1,"poll_handshakes:1")}));
    assert_eq!(r["responses"][0]["accept"], true);
    h.ok(json!({"type":"resolve","node_id":b,"requester_id":a,"signature":sig(1,"resolve:1:2")}));
    // A's own report afterwards is idempotent.
    let r = h.ok(json!({"type":"report_trust","node_id":a,"peer_id":b,"signature":sig(1,"report_trust:1:2")}));
    assert_eq!(r["trusted"], true);
}

/// Q-3: nobody but the node itself (signed) or the operator changes a polo score, and score
/// updates no longer keep a node alive.
#[test]
fn quirk_unauthenticated_polo_score_is_refused() {
    let mut h = Harness::new();
    let a = h.register(1);
    h.err(json!({"type":"update_polo_score","node_id":a,"delta":100}));
    h.err(json!({"type":"set_polo_score","node_id":a,"polo_score":100}));
    h.err(json!({"type":"update_polo_score","node_id":a,"delta":100,"signature":sig(1,"update_polo_score:1:5")}));
    assert_eq!(
        h.ok(json!({"type":"get_polo_score","node_id":a}))["polo_score"],
        0
    );
    h.now_ms += 100_000;
    h.ok(json!({"type":"update_polo_score","node_id":a,"delta":1,"signature":sig(1,"update_polo_score:1:1")}));
    assert_eq!(h.reg.data().nodes[&1].last_seen_ms, T0);
}

/// Q-4: punch applies the resolve visibility rule.
#[test]
fn quirk_punch_does_not_disclose_private_endpoints() {
    let mut h = Harness::new();
    let (a, b) = (h.register(1), h.register(2));
    let e = h.err(json!({"type":"punch","requester_id":a,"node_a":a,"node_b":b,"signature":sig(1,"punch:1:2")}));
    assert!(e.contains("private"), "{e}");
    h.err(json!({"type":"punch","requester_id":3,"node_a":a,"node_b":b,"signature":sig(1,"punch:1:2")}));
}

/// Q-5: a known owner label never moves a node to a new key; a known key cannot change the
/// owner.
#[test]
fn quirk_owner_takeover_is_refused() {
    let mut h = Harness::new();
    let r = h.ok(json!({"type":"register","public_key":pk(1),"owner":"alice@example.com"}));
    assert_eq!(r["node_id"], 1);
    let r = h.ok(json!({"type":"register","public_key":pk(9),"owner":"alice@example.com"}));
    assert_eq!(r["node_id"], 2, "a new key gets a new node");
    assert_eq!(
        h.ok(json!({"type":"lookup","node_id":1}))["public_key"],
        pk(1)
    );
    assert_eq!(h.reg.data().nodes[&2].owner, None);
    h.register(3);
    h.ok(json!({"type":"register","public_key":pk(3),"owner":"mallory@example.com"}));
    assert_eq!(h.reg.data().nodes[&3].owner, None);
    // The honest daemon re-registers with its own key and keeps its ID.
    let r = h.ok(json!({"type":"register","public_key":pk(1),"owner":"alice@example.com"}));
    assert_eq!(r["node_id"], 1);
}

/// Q-6: errors say what went wrong, keeping `type: error` and the `error` key.
#[test]
fn quirk_generic_errors_are_specific() {
    let mut h = Harness::new();
    let e = h.err(json!({"type":"lookup","node_id":42}));
    assert_eq!(e, "node 42: node not found");
    h.register(1);
    let e = h.err(json!({"type":"heartbeat","node_id":1,"signature":sig(2,"heartbeat:1")}));
    assert_eq!(e, "heartbeat: invalid signature");
}

/// Q-9: a restart does not make healthy nodes stale, and a reap keeps the node's attributes
/// for when it returns.
#[test]
fn quirk_reaping_keeps_attributes() {
    let mut h = Harness::new();
    let a = h.register(1);
    h.ok(json!({"type":"set_tags","node_id":a,"tags":["x"],"signature":sig(1,"set_tags:1")}));
    h.ok(json!({"type":"set_task_exec","node_id":a,"enabled":true,"signature":sig(1,"set_task_exec:1")}));
    h.ok(json!({"type":"set_hostname","node_id":a,"hostname":"mine","signature":sig(1,"set_hostname:1")}));
    assert!(h.reg.tick(T0 + 170_000).is_empty());
    let changes = h.reg.tick(T0 + 181_000);
    assert_eq!(changes.len(), 1);
    h.now_ms = T0 + 181_000;
    h.err(json!({"type":"lookup","node_id":a}));
    // Q-26: the hostname is held for the dormant node.
    let r = h.ok(json!({"type":"register","public_key":pk(3),"hostname":"mine"}));
    assert!(r.get("hostname").is_none());
    assert_eq!(h.register(1), a);
    let r = h.ok(json!({"type":"lookup","node_id":a}));
    assert_eq!(
        (&r["tags"], &r["task_exec"], &r["hostname"]),
        (&json!(["x"]), &json!(true), &json!("mine"))
    );
}

/// Q-10: handshake relay queues are bounded and expire.
#[test]
fn quirk_inboxes_are_bounded_and_expire() {
    let mut h = Harness::new();
    let target = h.register(1);
    for n in 2..=102u8 {
        h.register(n);
    }
    for n in 2..=101u8 {
        h.ok(json!({"type":"request_handshake","from_node_id":n,"to_node_id":target,"justification":"","signature":sig(n,&format!("handshake:{n}:1"))}));
    }
    let e = h.err(json!({"type":"request_handshake","from_node_id":102,"to_node_id":target,"justification":"","signature":sig(102,"handshake:102:1")}));
    assert!(e.contains("full"), "{e}");
    h.err(json!({"type":"request_handshake","from_node_id":2,"to_node_id":target,"justification":"","signature":sig(2,"handshake:2:1")}));
    let week = Config::default().relay_ttl_ms;
    let changes = h.reg.tick(T0 + week + 1);
    assert!(changes.iter().any(|c| matches!(c, Change::Expire { .. })));
    assert!(h.reg.data().inbox.is_empty());
    assert!(h.reg.data().asks.is_empty() && h.reg.data().intents.is_empty());
}

/// Q-22: every request type is rate-limited per source, not only `register`.
#[test]
fn quirk_all_request_types_are_rate_limited() {
    let mut h = Harness::with(Config {
        rates: Rates {
            request: Rate::per_secs(5, 10),
            ..Default::default()
        },
        ..Config::default()
    });
    for _ in 0..5 {
        h.err(json!({"type":"lookup","node_id":1}));
    }
    let e = h.err(json!({"type":"lookup","node_id":1}));
    assert!(e.starts_with("rate limited"), "{e}");
    // Another source is not affected.
    h.peer = "198.51.100.7:1".parse().unwrap();
    assert!(h
        .err(json!({"type":"lookup","node_id":1}))
        .contains("not found"));
}

/// Q-22: known keys are not exempt from the registration limit.
#[test]
fn quirk_known_keys_are_rate_limited_too() {
    let mut h = Harness::with(Config::default());
    h.register(1);
    let limit = Config::default().rates.reregistration.capacity;
    let mut refused = false;
    for _ in 0..=limit {
        refused |= h.send(json!({"type":"register","public_key":pk(1)}))["type"] == "error";
    }
    assert!(refused);
}

/// Q-25: a standby refuses mutations (including poll) and serves get_polo_score.
#[test]
fn quirk_standby_serving_rules() {
    let mut h = Harness::new();
    let a = h.register(1);
    h.reg.set_standby(true);
    assert!(h
        .err(json!({"type":"register","public_key":pk(2)}))
        .starts_with("standby"));
    h.err(json!({"type":"poll_handshakes","node_id":a,"signature":sig(1,"poll_handshakes:1")}));
    h.ok(json!({"type":"get_polo_score","node_id":a}));
    h.ok(json!({"type":"lookup","node_id":a}));
    h.ok(json!({"type":"heartbeat","node_id":a,"signature":sig(1,"heartbeat:1")}));
    assert!(
        h.reg.tick(T0 + 10 * 60_000).is_empty(),
        "a standby reaps nothing"
    );
}

/// Q-3: beacons are capped and, with a token configured, authenticated.
#[test]
fn quirk_beacon_injection_is_bounded() {
    let mut h = Harness::with(Config {
        beacon_token: Some("b".into()),
        max_beacons: 2,
        ..Config::default()
    });
    h.err(json!({"type":"beacon_register","beacon_id":1,"addr":"198.51.100.1:9001"}));
    h.ok(json!({"type":"beacon_register","beacon_id":1,"addr":"198.51.100.1:9001","token":"b"}));
    h.ok(json!({"type":"beacon_register","beacon_id":2,"addr":"198.51.100.2:9001","token":"b"}));
    h.err(json!({"type":"beacon_register","beacon_id":3,"addr":"198.51.100.3:9001","token":"b"}));
}

/// Q-23: metric labels come only from known request types.
#[test]
fn quirk_metric_labels_are_bounded() {
    let mut h = Harness::new();
    for i in 0..50 {
        h.send(json!({"type":format!("junk-{i}")}));
    }
    let kinds: Vec<_> = h
        .reg
        .counters()
        .requests
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(kinds, ["unknown"]);
}

/// Q-28: a record with a malformed key is refused when loaded.
#[test]
fn quirk_malformed_stored_key_is_refused() {
    let stored: StoredNode = serde_json::from_value(json!({"id":1,"public_key":""})).unwrap();
    assert!(stored
        .to_node(0)
        .unwrap_err()
        .to_string()
        .contains("public key"));
}

#[test]
fn hostile_frames_get_error_replies() {
    let mut h = Harness::new();
    h.register(1);
    for req in [
        json!({"type":"heartbeat","node_id":"1","signature":[1]}),
        json!({"type":"set_tags","node_id":1,"tags":{"a":1}}),
        json!({"type":"register","public_key":"x".repeat(10_000)}),
        json!({"type":"request_handshake","justification":"x".repeat(5000)}),
        json!({"type":"resolve","node_id":1e300,"requester_id":-5}),
        json!({"type":7}),
    ] {
        let r = h.send(req);
        assert_eq!(r["type"], "error");
    }
    let _: &Object = &Object::new();
}

/// §13 E: the reference's initial replication snapshot loads, and ours re-emits every field it
/// had with the same values (adding only our extensions).
#[test]
fn section_13_example_e_round_trips() {
    use pilot::registry::persist::snapshot::Snapshot;
    let e = json!({"next_node":10,"next_net":1,
        "nodes":{"7":{"id":7,"owner":"alice@example.com","public_key":"mcFcuwjIH9lBJK8Mhgd+HrOmBDz1yAvPwGf5c2md6/Y=",
        "real_addr":"203.0.113.5:4000","networks":[0],"last_seen":"2025-01-01T00:00:00Z",
        "hostname":"alice-agent"}},
        "networks":{"0":{"id":0,"name":"backbone","join_rule":"open","members":[7],
        "created":"2025-01-01T00:00:00Z"}},"trust_pairs":["7:9"]});
    let snap: Snapshot = serde_json::from_value(e.clone()).unwrap();
    let data = snap.to_data(T0 + 5_000).unwrap();
    let ours = serde_json::to_value(Snapshot::from_data(&data, 0)).unwrap();
    fn contains(big: &Value, small: &Value, path: &str) {
        match (big, small) {
            (Value::Object(b), Value::Object(s)) => {
                for (k, v) in s {
                    let sub = b.get(k).unwrap_or_else(|| panic!("{path}.{k} missing"));
                    contains(sub, v, &format!("{path}.{k}"));
                }
            }
            _ => assert_eq!(big, small, "{path}"),
        }
    }
    contains(&ours, &e, "snapshot");
}

/// Q-5 for our daemons: once a node registered with proof of possession, nobody can move its
/// endpoint with an unsigned or replayed registration.
#[test]
fn quirk_proof_of_possession_locks_the_endpoint() {
    let mut h = Harness::new();
    let now = T0 / 1000;
    let signed = |ts: u64, addr: &str| {
        json!({"type":"register","public_key":pk(1),"listen_addr":addr,"owner":"a@x",
            "timestamp":ts,"signature":sig(1,&format!("register:{}:{ts}", pk(1)))})
    };
    // A plain registration first (a Go daemon, or ours before upgrading): owner not adopted
    // without proof, adopted with it.
    let id = h.ok(json!({"type":"register","public_key":pk(1)}))["node_id"]
        .as_u64()
        .unwrap() as u32;
    h.ok(signed(now, ":4000"));
    assert_eq!(h.reg.data().nodes[&id].owner.as_deref(), Some("a@x"));
    // The attacker knows the public key but not the private one.
    h.peer = "198.51.100.66:1".parse().unwrap();
    let e = h.err(json!({"type":"register","public_key":pk(1),"listen_addr":":4000"}));
    assert!(e.contains("proof of possession"), "{e}");
    let e = h.err(signed(now, ":4000"));
    assert!(e.contains("replayed"), "{e}");
    let forged = json!({"type":"register","public_key":pk(1),"timestamp":now + 1,
        "signature":sig(2,&format!("register:{}:{}", pk(1), now + 1))});
    assert!(h.err(forged).contains("invalid signature"));
    assert!(h.err(signed(now + 301, ":4000")).contains("not within"));
    assert_eq!(
        h.reg.data().nodes[&id].real_addr,
        Some("203.0.113.5:4000".parse().unwrap()),
        "the endpoint did not move"
    );
    // The owner moves on with a fresh signature.
    h.peer = "203.0.113.77:1".parse().unwrap();
    h.now_ms += 10_000;
    h.ok(signed(now + 10, ":4001"));
    assert_eq!(
        h.reg.data().nodes[&id].real_addr,
        Some("203.0.113.77:4001".parse().unwrap())
    );
}

/// The honest Go direct flow (services.md §6.5 rules 9 and 11): the request went peer to peer;
/// B approves (report_trust, then a background respond_handshake, which is refused because A
/// never asked through the registry), A receives B's direct accept and reports: trust forms.
#[test]
fn go_direct_flow_forms_trust() {
    let mut h = Harness::new();
    let (a, b) = (h.register(1), h.register(2));
    let r = h.ok(json!({"type":"report_trust","node_id":b,"peer_id":a,"signature":sig(2,"report_trust:2:1")}));
    assert_eq!(r["trusted"], false);
    h.err(json!({"type":"respond_handshake","node_id":b,"peer_id":a,"accept":true,"signature":sig(2,"respond:2:1")}));
    let r = h.ok(json!({"type":"report_trust","node_id":a,"peer_id":b,"signature":sig(1,"report_trust:1:2")}));
    assert_eq!(r["trusted"], true);
    h.ok(json!({"type":"resolve","node_id":b,"requester_id":a,"signature":sig(1,"resolve:1:2")}));
    h.ok(json!({"type":"resolve","node_id":a,"requester_id":b,"signature":sig(2,"resolve:2:1")}));
    // Either side revoking removes it for both (§6.13).
    h.ok(json!({"type":"revoke_trust","node_id":a,"peer_id":b,"signature":sig(1,"revoke_trust:1:2")}));
    h.err(json!({"type":"resolve","node_id":a,"requester_id":b,"signature":sig(2,"resolve:2:1")}));
    // After a revocation, one side's old wish does not silently bring the pair back.
    let r = h.ok(json!({"type":"report_trust","node_id":b,"peer_id":a,"signature":sig(2,"report_trust:2:1")}));
    assert_eq!(r["trusted"], false);
}

/// Mutual auto-approval through the relay (rules 6 and 16): both sent requests; each side's
/// accept answers the other's ask.
#[test]
fn go_mutual_relay_flow_forms_trust() {
    let mut h = Harness::new();
    let (a, b) = (h.register(1), h.register(2));
    h.ok(json!({"type":"request_handshake","from_node_id":a,"to_node_id":b,"justification":"","signature":sig(1,"handshake:1:2")}));
    h.ok(json!({"type":"request_handshake","from_node_id":b,"to_node_id":a,"justification":"","signature":sig(2,"handshake:2:1")}));
    // The two wishes already form the pair; the accepts are still answered and delivered.
    h.ok(json!({"type":"resolve","node_id":b,"requester_id":a,"signature":sig(1,"resolve:1:2")}));
    h.ok(json!({"type":"respond_handshake","node_id":b,"peer_id":a,"accept":true,"signature":sig(2,"respond:2:1")}));
    h.ok(json!({"type":"respond_handshake","node_id":a,"peer_id":b,"accept":true,"signature":sig(1,"respond:1:2")}));
    let r =
        h.ok(json!({"type":"poll_handshakes","node_id":a,"signature":sig(1,"poll_handshakes:1")}));
    assert_eq!(r["responses"][0]["from_node_id"], 2);
    assert_eq!(
        r["requests"],
        json!([]),
        "the answered request was taken back"
    );
}
