//! Typed requests, parsed from a frame's JSON object with the coercion rules of
//! `spec/registry.md` §4.1 (wrong types become zero values, as in the reference), plus bounds on
//! every peer-supplied string so no request can make the registry hold unbounded data.

use super::frame::Object;
use serde_json::Value;

/// Longest accepted `owner`, `listen_addr`, `addr` or token string, in bytes.
pub const MAX_SHORT_STRING: usize = 256;
/// Longest accepted handshake `justification`, in bytes (a Go daemon cannot send more than
/// about 3.9 KB: services.md §6.7).
pub const MAX_JUSTIFICATION: usize = 4096;
/// Most elements accepted in a `tags` array before validation (validation then allows 10).
pub const MAX_TAG_ELEMENTS: usize = 64;

/// The kind of a request: its `type`, restricted to the known set so metric labels are bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Register,
    Heartbeat,
    Deregister,
    RotateKey,
    Lookup,
    Resolve,
    Punch,
    ResolveHostname,
    SetVisibility,
    SetHostname,
    SetTags,
    SetTaskExec,
    UpdatePoloScore,
    SetPoloScore,
    GetPoloScore,
    ReportTrust,
    RevokeTrust,
    RequestHandshake,
    PollHandshakes,
    RespondHandshake,
    CreateNetwork,
    JoinNetwork,
    LeaveNetwork,
    ListNetworks,
    ListNodes,
    BeaconRegister,
    BeaconList,
    SubscribeReplication,
    /// Extension: turn the connection into a push stream of relayed handshakes.
    SubscribeHandshakes,
    /// Extension: promote a standby to primary (admin token).
    Promote,
    /// Any other (or missing) type.
    Unknown,
}

impl Kind {
    /// Every kind, in a fixed order (for metrics output).
    pub const ALL: [Kind; 31] = [
        Kind::Register,
        Kind::Heartbeat,
        Kind::Deregister,
        Kind::RotateKey,
        Kind::Lookup,
        Kind::Resolve,
        Kind::Punch,
        Kind::ResolveHostname,
        Kind::SetVisibility,
        Kind::SetHostname,
        Kind::SetTags,
        Kind::SetTaskExec,
        Kind::UpdatePoloScore,
        Kind::SetPoloScore,
        Kind::GetPoloScore,
        Kind::ReportTrust,
        Kind::RevokeTrust,
        Kind::RequestHandshake,
        Kind::PollHandshakes,
        Kind::RespondHandshake,
        Kind::CreateNetwork,
        Kind::JoinNetwork,
        Kind::LeaveNetwork,
        Kind::ListNetworks,
        Kind::ListNodes,
        Kind::BeaconRegister,
        Kind::BeaconList,
        Kind::SubscribeReplication,
        Kind::SubscribeHandshakes,
        Kind::Promote,
        Kind::Unknown,
    ];

    /// The wire name (`"unknown"` for [`Kind::Unknown`], used only as a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::Heartbeat => "heartbeat",
            Kind::Deregister => "deregister",
            Kind::RotateKey => "rotate_key",
            Kind::Lookup => "lookup",
            Kind::Resolve => "resolve",
            Kind::Punch => "punch",
            Kind::ResolveHostname => "resolve_hostname",
            Kind::SetVisibility => "set_visibility",
            Kind::SetHostname => "set_hostname",
            Kind::SetTags => "set_tags",
            Kind::SetTaskExec => "set_task_exec",
            Kind::UpdatePoloScore => "update_polo_score",
            Kind::SetPoloScore => "set_polo_score",
            Kind::GetPoloScore => "get_polo_score",
            Kind::ReportTrust => "report_trust",
            Kind::RevokeTrust => "revoke_trust",
            Kind::RequestHandshake => "request_handshake",
            Kind::PollHandshakes => "poll_handshakes",
            Kind::RespondHandshake => "respond_handshake",
            Kind::CreateNetwork => "create_network",
            Kind::JoinNetwork => "join_network",
            Kind::LeaveNetwork => "leave_network",
            Kind::ListNetworks => "list_networks",
            Kind::ListNodes => "list_nodes",
            Kind::BeaconRegister => "beacon_register",
            Kind::BeaconList => "beacon_list",
            Kind::SubscribeReplication => "subscribe_replication",
            Kind::SubscribeHandshakes => "subscribe_handshakes",
            Kind::Promote => "promote",
            Kind::Unknown => "unknown",
        }
    }

    /// The kind named by a `type` string.
    pub fn from_type(name: &str) -> Kind {
        Kind::ALL
            .into_iter()
            .find(|k| *k != Kind::Unknown && k.as_str() == name)
            .unwrap_or(Kind::Unknown)
    }
}

/// A parsed request. Field names follow the wire; absent or mistyped fields hold zero values.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum Request {
    /// `signature` and `timestamp` are our extension (proof of possession); Go daemons send
    /// neither.
    Register {
        public_key: String,
        listen_addr: String,
        owner: String,
        hostname: String,
        signature: String,
        timestamp: u64,
    },
    Heartbeat {
        node_id: u32,
        signature: String,
    },
    Deregister {
        node_id: u32,
        signature: String,
    },
    RotateKey {
        node_id: u32,
        signature: String,
        new_public_key: String,
    },
    Lookup {
        node_id: u32,
    },
    Resolve {
        node_id: u32,
        requester_id: u32,
        signature: String,
    },
    Punch {
        requester_id: u32,
        node_a: u32,
        node_b: u32,
        signature: String,
    },
    ResolveHostname {
        hostname: String,
    },
    SetVisibility {
        node_id: u32,
        public: bool,
        signature: String,
    },
    SetHostname {
        node_id: u32,
        hostname: String,
        signature: String,
    },
    SetTags {
        node_id: u32,
        tags: Vec<String>,
        signature: String,
    },
    SetTaskExec {
        node_id: u32,
        enabled: bool,
        signature: String,
    },
    /// `delta` is `None` when missing or not a number.
    UpdatePoloScore {
        node_id: u32,
        delta: Option<i64>,
        signature: String,
        admin_token: String,
    },
    /// `polo_score` is `None` when missing or not a number.
    SetPoloScore {
        node_id: u32,
        polo_score: Option<i64>,
        signature: String,
        admin_token: String,
    },
    GetPoloScore {
        node_id: u32,
    },
    ReportTrust {
        node_id: u32,
        peer_id: u32,
        signature: String,
    },
    RevokeTrust {
        node_id: u32,
        peer_id: u32,
        signature: String,
    },
    RequestHandshake {
        from_node_id: u32,
        to_node_id: u32,
        justification: String,
        signature: String,
    },
    PollHandshakes {
        node_id: u32,
        signature: String,
    },
    RespondHandshake {
        node_id: u32,
        peer_id: u32,
        accept: bool,
        signature: String,
    },
    CreateNetwork,
    JoinNetwork,
    LeaveNetwork,
    ListNetworks,
    ListNodes {
        network_id: u16,
    },
    BeaconRegister {
        beacon_id: u32,
        addr: String,
        token: String,
    },
    BeaconList,
    SubscribeReplication {
        token: String,
    },
    SubscribeHandshakes {
        node_id: u32,
        signature: String,
    },
    Promote {
        admin_token: String,
    },
    /// Unknown or missing `type`.
    Unknown {
        type_name: String,
    },
}

/// A request refused before it reaches the registry state (a string over its bound).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("field {field:?} is longer than {max} bytes")]
pub struct TooLong {
    /// The offending field.
    pub field: &'static str,
    /// Its bound.
    pub max: usize,
}

impl Request {
    /// The request's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Request::Register { .. } => Kind::Register,
            Request::Heartbeat { .. } => Kind::Heartbeat,
            Request::Deregister { .. } => Kind::Deregister,
            Request::RotateKey { .. } => Kind::RotateKey,
            Request::Lookup { .. } => Kind::Lookup,
            Request::Resolve { .. } => Kind::Resolve,
            Request::Punch { .. } => Kind::Punch,
            Request::ResolveHostname { .. } => Kind::ResolveHostname,
            Request::SetVisibility { .. } => Kind::SetVisibility,
            Request::SetHostname { .. } => Kind::SetHostname,
            Request::SetTags { .. } => Kind::SetTags,
            Request::SetTaskExec { .. } => Kind::SetTaskExec,
            Request::UpdatePoloScore { .. } => Kind::UpdatePoloScore,
            Request::SetPoloScore { .. } => Kind::SetPoloScore,
            Request::GetPoloScore { .. } => Kind::GetPoloScore,
            Request::ReportTrust { .. } => Kind::ReportTrust,
            Request::RevokeTrust { .. } => Kind::RevokeTrust,
            Request::RequestHandshake { .. } => Kind::RequestHandshake,
            Request::PollHandshakes { .. } => Kind::PollHandshakes,
            Request::RespondHandshake { .. } => Kind::RespondHandshake,
            Request::CreateNetwork => Kind::CreateNetwork,
            Request::JoinNetwork => Kind::JoinNetwork,
            Request::LeaveNetwork => Kind::LeaveNetwork,
            Request::ListNetworks => Kind::ListNetworks,
            Request::ListNodes { .. } => Kind::ListNodes,
            Request::BeaconRegister { .. } => Kind::BeaconRegister,
            Request::BeaconList => Kind::BeaconList,
            Request::SubscribeReplication { .. } => Kind::SubscribeReplication,
            Request::SubscribeHandshakes { .. } => Kind::SubscribeHandshakes,
            Request::Promote { .. } => Kind::Promote,
            Request::Unknown { .. } => Kind::Unknown,
        }
    }

    /// Parses a frame's object. Never fails on types (§4.1 coercion); fails only when a string
    /// exceeds its bound.
    pub fn parse(obj: &Object) -> Result<Request, TooLong> {
        let f = Fields(obj);
        let type_name = f.string("type");
        Ok(match Kind::from_type(&type_name) {
            Kind::Register => Request::Register {
                public_key: f.bounded("public_key", MAX_SHORT_STRING)?,
                listen_addr: f.bounded("listen_addr", MAX_SHORT_STRING)?,
                owner: f.bounded("owner", MAX_SHORT_STRING)?,
                hostname: f.bounded("hostname", MAX_SHORT_STRING)?,
                signature: f.sig()?,
                timestamp: f.ranged("timestamp", u64::MAX as f64),
            },
            Kind::Heartbeat => Request::Heartbeat {
                node_id: f.id("node_id"),
                signature: f.sig()?,
            },
            Kind::Deregister => Request::Deregister {
                node_id: f.id("node_id"),
                signature: f.sig()?,
            },
            Kind::RotateKey => Request::RotateKey {
                node_id: f.id("node_id"),
                signature: f.sig()?,
                new_public_key: f.bounded("new_public_key", MAX_SHORT_STRING)?,
            },
            Kind::Lookup => Request::Lookup {
                node_id: f.id("node_id"),
            },
            Kind::Resolve => Request::Resolve {
                node_id: f.id("node_id"),
                requester_id: f.id("requester_id"),
                signature: f.sig()?,
            },
            Kind::Punch => Request::Punch {
                requester_id: f.id("requester_id"),
                node_a: f.id("node_a"),
                node_b: f.id("node_b"),
                signature: f.sig()?,
            },
            Kind::ResolveHostname => Request::ResolveHostname {
                hostname: f.bounded("hostname", MAX_SHORT_STRING)?,
            },
            Kind::SetVisibility => Request::SetVisibility {
                node_id: f.id("node_id"),
                public: f.boolean("public"),
                signature: f.sig()?,
            },
            Kind::SetHostname => Request::SetHostname {
                node_id: f.id("node_id"),
                hostname: f.bounded("hostname", MAX_SHORT_STRING)?,
                signature: f.sig()?,
            },
            Kind::SetTags => Request::SetTags {
                node_id: f.id("node_id"),
                tags: f.tags()?,
                signature: f.sig()?,
            },
            Kind::SetTaskExec => Request::SetTaskExec {
                node_id: f.id("node_id"),
                enabled: f.boolean("enabled"),
                signature: f.sig()?,
            },
            Kind::UpdatePoloScore => Request::UpdatePoloScore {
                node_id: f.id("node_id"),
                delta: f.integer("delta"),
                signature: f.sig()?,
                admin_token: f.bounded("admin_token", MAX_SHORT_STRING)?,
            },
            Kind::SetPoloScore => Request::SetPoloScore {
                node_id: f.id("node_id"),
                polo_score: f.integer("polo_score"),
                signature: f.sig()?,
                admin_token: f.bounded("admin_token", MAX_SHORT_STRING)?,
            },
            Kind::GetPoloScore => Request::GetPoloScore {
                node_id: f.id("node_id"),
            },
            Kind::ReportTrust => Request::ReportTrust {
                node_id: f.id("node_id"),
                peer_id: f.id("peer_id"),
                signature: f.sig()?,
            },
            Kind::RevokeTrust => Request::RevokeTrust {
                node_id: f.id("node_id"),
                peer_id: f.id("peer_id"),
                signature: f.sig()?,
            },
            Kind::RequestHandshake => Request::RequestHandshake {
                from_node_id: f.id("from_node_id"),
                to_node_id: f.id("to_node_id"),
                justification: f.bounded("justification", MAX_JUSTIFICATION)?,
                signature: f.sig()?,
            },
            Kind::PollHandshakes => Request::PollHandshakes {
                node_id: f.id("node_id"),
                signature: f.sig()?,
            },
            Kind::RespondHandshake => Request::RespondHandshake {
                node_id: f.id("node_id"),
                peer_id: f.id("peer_id"),
                accept: f.boolean("accept"),
                signature: f.sig()?,
            },
            Kind::CreateNetwork => Request::CreateNetwork,
            Kind::JoinNetwork => Request::JoinNetwork,
            Kind::LeaveNetwork => Request::LeaveNetwork,
            Kind::ListNetworks => Request::ListNetworks,
            Kind::ListNodes => Request::ListNodes {
                network_id: f.net("network_id"),
            },
            Kind::BeaconRegister => Request::BeaconRegister {
                beacon_id: f.id("beacon_id"),
                addr: f.bounded("addr", MAX_SHORT_STRING)?,
                token: f.bounded("token", MAX_SHORT_STRING)?,
            },
            Kind::BeaconList => Request::BeaconList,
            Kind::SubscribeReplication => Request::SubscribeReplication {
                token: f.bounded("token", MAX_SHORT_STRING)?,
            },
            Kind::SubscribeHandshakes => Request::SubscribeHandshakes {
                node_id: f.id("node_id"),
                signature: f.sig()?,
            },
            Kind::Promote => Request::Promote {
                admin_token: f.bounded("admin_token", MAX_SHORT_STRING)?,
            },
            Kind::Unknown => Request::Unknown {
                type_name: truncate(type_name, 64),
            },
        })
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Field access with the §4.1 coercions.
struct Fields<'a>(&'a Object);

impl Fields<'_> {
    /// A JSON number truncated to an integer in `0..=max`; anything else is 0.
    fn ranged(&self, key: &str, max: f64) -> u64 {
        match self.0.get(key).and_then(Value::as_f64) {
            Some(n) if n.is_finite() && n >= 0.0 && n.trunc() <= max => n.trunc() as u64,
            _ => 0,
        }
    }

    fn id(&self, key: &str) -> u32 {
        self.ranged(key, u32::MAX as f64) as u32
    }

    fn net(&self, key: &str) -> u16 {
        self.ranged(key, u16::MAX as f64) as u16
    }

    fn boolean(&self, key: &str) -> bool {
        self.0.get(key).and_then(Value::as_bool).unwrap_or(false)
    }

    fn string(&self, key: &str) -> String {
        self.0
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    fn bounded(&self, key: &'static str, max: usize) -> Result<String, TooLong> {
        let s = self.0.get(key).and_then(Value::as_str).unwrap_or("");
        if s.len() > max {
            return Err(TooLong { field: key, max });
        }
        Ok(s.to_string())
    }

    fn sig(&self) -> Result<String, TooLong> {
        self.bounded("signature", MAX_SHORT_STRING)
    }

    /// A number truncated to an integer (saturating); `None` if missing or not a number.
    fn integer(&self, key: &str) -> Option<i64> {
        let n = self.0.get(key)?.as_f64()?;
        if n.is_nan() {
            return None;
        }
        Some(n.trunc() as i64)
    }

    /// String elements of an array; others dropped; non-array means empty.
    fn tags(&self) -> Result<Vec<String>, TooLong> {
        let Some(items) = self.0.get("tags").and_then(Value::as_array) else {
            return Ok(Vec::new());
        };
        let tags: Vec<String> = items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        if tags.len() > MAX_TAG_ELEMENTS {
            return Err(TooLong {
                field: "tags",
                max: MAX_TAG_ELEMENTS,
            });
        }
        Ok(tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Request {
        Request::parse(v.as_object().unwrap()).unwrap()
    }

    #[test]
    fn ids_follow_the_coercion_rules() {
        for (value, want) in [
            (json!(7), 7),
            (json!(7.9), 7),
            (json!(-1), 0),
            (json!(4294967296u64), 0),
            (json!(4294967295u64), u32::MAX),
            (json!("7"), 0),
            (json!(null), 0),
        ] {
            let req = parse(json!({"type":"lookup","node_id":value}));
            assert_eq!(req, Request::Lookup { node_id: want }, "{value}");
        }
        assert_eq!(
            parse(json!({"type":"lookup"})),
            Request::Lookup { node_id: 0 }
        );
        assert_eq!(
            parse(json!({"type":"list_nodes","network_id":65536})),
            Request::ListNodes { network_id: 0 }
        );
    }

    #[test]
    fn booleans_strings_tags_and_numbers() {
        let req = parse(json!({"type":"set_visibility","node_id":1,"public":"yes","signature":5}));
        assert_eq!(
            req,
            Request::SetVisibility {
                node_id: 1,
                public: false,
                signature: String::new()
            }
        );
        let req = parse(json!({"type":"set_tags","node_id":1,"tags":["a",1,null,"b"]}));
        assert!(matches!(req, Request::SetTags { tags, .. } if tags == ["a", "b"]));
        let req = parse(json!({"type":"update_polo_score","node_id":1,"delta":-2.7}));
        assert!(matches!(
            req,
            Request::UpdatePoloScore {
                delta: Some(-2),
                ..
            }
        ));
        let req = parse(json!({"type":"update_polo_score","node_id":1,"delta":"3"}));
        assert!(matches!(req, Request::UpdatePoloScore { delta: None, .. }));
    }

    #[test]
    fn unknown_types_and_long_strings() {
        assert_eq!(
            parse(json!({})),
            Request::Unknown {
                type_name: String::new()
            }
        );
        assert_eq!(parse(json!({"type":"x"})).kind(), Kind::Unknown);
        let long = "a".repeat(MAX_JUSTIFICATION + 1);
        let obj = json!({"type":"request_handshake","justification":long});
        assert_eq!(
            Request::parse(obj.as_object().unwrap()),
            Err(TooLong {
                field: "justification",
                max: MAX_JUSTIFICATION
            })
        );
        for kind in Kind::ALL {
            if kind != Kind::Unknown {
                assert_eq!(Kind::from_type(kind.as_str()), kind);
            }
        }
    }
}
