//! The snapshot: `spec/registry.md` §10.3's JSON object, plus the state the reference loses
//! (owner index, trust wishes, handshake asks, dormant nodes) and the log position it covers.
//!
//! Loading accepts a Go reference snapshot as is (migration) but refuses anything that would
//! load as something else: a malformed key or endpoint is an error, not a skipped node.

use crate::registry::auth::decode_key;
use crate::registry::model::{
    Data, HsRequest, HsResponse, Inbox, Network, RecordError, StoredNode,
};
use crate::registry::rfc3339;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A network as stored (§10.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredNetwork {
    #[allow(missing_docs)]
    pub id: u16,
    #[allow(missing_docs)]
    pub name: String,
    #[allow(missing_docs)]
    #[serde(default)]
    pub join_rule: String,
    #[allow(missing_docs)]
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    #[allow(missing_docs)]
    #[serde(default)]
    pub members: Option<Vec<u32>>,
    #[allow(missing_docs)]
    #[serde(default)]
    pub created: String,
}

/// A queued request as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRequest {
    #[allow(missing_docs)]
    pub from_node_id: u32,
    #[allow(missing_docs)]
    #[serde(default)]
    pub justification: String,
    #[allow(missing_docs)]
    #[serde(default)]
    pub timestamp: String,
}

/// A queued response as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    #[allow(missing_docs)]
    pub from_node_id: u32,
    #[allow(missing_docs)]
    #[serde(default)]
    pub accept: bool,
    #[allow(missing_docs)]
    #[serde(default)]
    pub timestamp: String,
}

/// A directed pending relation (trust wish or handshake ask) with its expiry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPending {
    #[allow(missing_docs)]
    pub from: u32,
    #[allow(missing_docs)]
    pub to: u32,
    #[allow(missing_docs)]
    pub until_ms: u64,
}

fn is_empty<K, V>(m: &BTreeMap<K, V>) -> bool {
    m.is_empty()
}

/// The whole persistent state as one JSON object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Next node ID (missing in a broken file: derived from the nodes, never 0).
    #[serde(default)]
    pub next_node: u32,
    #[allow(missing_docs)]
    #[serde(default)]
    pub next_net: u16,
    #[allow(missing_docs)]
    #[serde(default)]
    pub nodes: BTreeMap<String, StoredNode>,
    #[allow(missing_docs)]
    #[serde(default)]
    pub networks: BTreeMap<String, StoredNetwork>,
    #[allow(missing_docs)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_pairs: Vec<String>,
    #[allow(missing_docs)]
    #[serde(default, skip_serializing_if = "is_empty")]
    pub pub_key_idx: BTreeMap<String, u32>,
    #[allow(missing_docs)]
    #[serde(default, skip_serializing_if = "is_empty")]
    pub handshake_inbox: BTreeMap<String, Vec<StoredRequest>>,
    #[allow(missing_docs)]
    #[serde(default, skip_serializing_if = "is_empty")]
    pub handshake_responses: BTreeMap<String, Vec<StoredResponse>>,
    /// Extension: owner → node.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub owner_idx: BTreeMap<String, u32>,
    /// Extension: one-sided trust wishes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_intents: Vec<StoredPending>,
    /// Extension: outstanding handshake asks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handshake_asks: Vec<StoredPending>,
    /// Extension: the last change-log sequence number this snapshot includes.
    #[serde(default)]
    pub seq: u64,
}

/// Why a snapshot cannot be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// Not JSON of the expected shape.
    #[error("snapshot is not valid JSON of the registry format: {0}")]
    Json(String),
    /// A node record is malformed.
    #[error("snapshot: {0}")]
    Record(#[from] RecordError),
    /// Some other field is malformed.
    #[error("snapshot: {0}")]
    Field(String),
}

impl Snapshot {
    /// The snapshot of `data` covering log position `seq`.
    pub fn from_data(data: &Data, seq: u64) -> Snapshot {
        let mut snap = Snapshot {
            next_node: data.next_node,
            next_net: data.next_net,
            seq,
            ..Snapshot::default()
        };
        let mut backbone = Vec::new();
        for id in data.sorted_ids() {
            let node = &data.nodes[&id];
            if !node.dormant {
                backbone.push(id);
            }
            snap.nodes
                .insert(id.to_string(), StoredNode::from_node(id, node));
        }
        snap.networks.insert(
            "0".into(),
            StoredNetwork {
                id: 0,
                name: "backbone".into(),
                join_rule: "open".into(),
                token: String::new(),
                members: Some(backbone),
                created: rfc3339::format(data.backbone_created_ms, false),
            },
        );
        for n in data.networks.values() {
            snap.networks.insert(
                n.id.to_string(),
                StoredNetwork {
                    id: n.id,
                    name: n.name.clone(),
                    join_rule: n.join_rule.clone(),
                    token: n.token.clone(),
                    members: Some(n.members.clone()),
                    created: rfc3339::format(n.created_ms, false),
                },
            );
        }
        snap.trust_pairs = data.trust.iter().map(|(a, b)| format!("{a}:{b}")).collect();
        let mut keys: Vec<_> = data.key_idx.iter().collect();
        keys.sort_unstable();
        snap.pub_key_idx = keys
            .into_iter()
            .map(|(k, id)| (crate::registry::auth::encode_key(k), *id))
            .collect();
        snap.owner_idx = data
            .owner_idx
            .iter()
            .map(|(o, id)| (o.to_string(), *id))
            .collect();
        for (id, inbox) in &data.inbox {
            if !inbox.requests.is_empty() {
                snap.handshake_inbox.insert(
                    id.to_string(),
                    inbox
                        .requests
                        .iter()
                        .map(|e| StoredRequest {
                            from_node_id: e.from,
                            justification: e.justification.clone(),
                            timestamp: rfc3339::format(e.at_ms, true),
                        })
                        .collect(),
                );
            }
            if !inbox.responses.is_empty() {
                snap.handshake_responses.insert(
                    id.to_string(),
                    inbox
                        .responses
                        .iter()
                        .map(|e| StoredResponse {
                            from_node_id: e.from,
                            accept: e.accept,
                            timestamp: rfc3339::format(e.at_ms, true),
                        })
                        .collect(),
                );
            }
        }
        let pending = |m: &BTreeMap<(u32, u32), u64>| {
            m.iter()
                .map(|((to, from), until)| StoredPending {
                    from: *from,
                    to: *to,
                    until_ms: *until,
                })
                .collect()
        };
        snap.trust_intents = pending(&data.intents);
        snap.handshake_asks = pending(&data.asks);
        snap
    }

    /// Parses snapshot bytes.
    pub fn parse(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        serde_json::from_slice(bytes).map_err(|e| SnapshotError::Json(e.to_string()))
    }

    /// Serialises compactly.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("snapshot types always serialise")
    }

    /// The state this snapshot describes. `now_ms` stands in for unparseable timestamps.
    pub fn to_data(&self, now_ms: u64) -> Result<Data, SnapshotError> {
        let mut data = Data::new(now_ms);
        let mut max_id = 0;
        for (key, stored) in &self.nodes {
            let id: u32 = key
                .parse()
                .map_err(|_| SnapshotError::Field(format!("node key {key:?} is not an ID")))?;
            if id == 0 || (stored.id != 0 && stored.id != id) {
                return Err(SnapshotError::Field(format!(
                    "node {key:?} has id {}",
                    stored.id
                )));
            }
            let mut stored = stored.clone();
            stored.id = id;
            let node = stored.to_node(now_ms)?;
            if let Some(h) = &node.hostname {
                data.host_idx.insert(h.clone(), id);
            }
            if let Some(o) = &node.owner {
                data.owner_idx.entry(o.clone()).or_insert(id);
            }
            data.key_idx.entry(node.key).or_insert(id);
            data.nodes.insert(id, node);
            max_id = max_id.max(id);
        }
        for (key, id) in &self.pub_key_idx {
            let k = decode_key(key).ok_or_else(|| {
                SnapshotError::Field(format!("pub_key_idx key {key:?} is not base64 of 32 bytes"))
            })?;
            data.key_idx.entry(k).or_insert(*id);
            max_id = max_id.max(*id);
        }
        for (owner, id) in &self.owner_idx {
            data.owner_idx.insert(Box::from(owner.as_str()), *id);
        }
        for (key, net) in &self.networks {
            let created_ms = rfc3339::parse(&net.created).unwrap_or(now_ms);
            if net.id == 0 {
                data.backbone_created_ms = created_ms;
                continue;
            }
            if key != &net.id.to_string() {
                return Err(SnapshotError::Field(format!(
                    "network {key:?} has id {}",
                    net.id
                )));
            }
            data.networks.insert(
                net.id,
                Network {
                    id: net.id,
                    name: net.name.clone(),
                    join_rule: net.join_rule.clone(),
                    token: net.token.clone(),
                    members: net.members.clone().unwrap_or_default(),
                    created_ms,
                },
            );
        }
        for p in &self.trust_pairs {
            let parsed = p
                .split_once(':')
                .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
            let (a, b) = parsed
                .ok_or_else(|| SnapshotError::Field(format!("trust pair {p:?} is not a:b")))?;
            data.trust.insert(crate::registry::model::pair(a, b));
        }
        let inbox_id = |k: &str| {
            k.parse::<u32>()
                .ok()
                .filter(|id| *id != 0)
                .ok_or_else(|| SnapshotError::Field(format!("inbox key {k:?} is not a node ID")))
        };
        for (k, entries) in &self.handshake_inbox {
            let inbox: &mut Inbox = data.inbox.entry(inbox_id(k)?).or_default();
            for e in entries {
                inbox.requests.push_back(HsRequest {
                    from: e.from_node_id,
                    justification: e.justification.clone(),
                    at_ms: rfc3339::parse(&e.timestamp).unwrap_or(now_ms),
                });
            }
        }
        for (k, entries) in &self.handshake_responses {
            let inbox: &mut Inbox = data.inbox.entry(inbox_id(k)?).or_default();
            for e in entries {
                inbox.responses.push_back(HsResponse {
                    from: e.from_node_id,
                    accept: e.accept,
                    at_ms: rfc3339::parse(&e.timestamp).unwrap_or(now_ms),
                });
            }
        }
        for p in &self.trust_intents {
            data.intents.insert((p.to, p.from), p.until_ms);
        }
        for p in &self.handshake_asks {
            data.asks.insert((p.to, p.from), p.until_ms);
        }
        // a missing or stale counter never re-issues an ID.
        data.next_node = self.next_node.max(max_id.saturating_add(1)).max(1);
        data.next_net = self.next_net.max(1);
        Ok(data)
    }
}
