//! The registry's data and the changes that move it.
//!
//! Every mutation of persistent state is a [`Change`]. Request handlers compute changes and
//! apply them with [`Data::apply`]; the change log replays the same changes after a restart,
//! and a standby could apply them too, so there is exactly one place where state moves.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;

/// One node. Compact on purpose: 100 000 of these must fit in well under 100 MiB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Ed25519 public key.
    pub key: [u8; 32],
    /// The UDP endpoint recorded at registration.
    pub real_addr: Option<SocketAddr>,
    /// Owner label given at creation (e-mail or similar).
    pub owner: Option<Box<str>>,
    /// Unique hostname.
    pub hostname: Option<Box<str>>,
    /// Tags, validated.
    pub tags: Box<[Box<str>]>,
    /// Networks besides the backbone (only from legacy snapshots: networks are dormant).
    pub networks: Box<[u16]>,
    /// Reputation.
    pub polo: i64,
    /// Last refresh, Unix milliseconds (kept in memory; persisted only with other changes).
    pub last_seen_ms: u64,
    /// Whether `real_addr` is disclosed to anyone.
    pub public: bool,
    /// Whether the node executes tasks.
    pub task_exec: bool,
    /// Reaped for staleness: hidden from every request, but its attributes and hostname wait
    /// for the key to come back.
    pub dormant: bool,
    /// Timestamp (Unix seconds) of the last registration signed with the node's key; 0 if it
    /// never proved possession. Once set, unsigned or older registrations are refused.
    pub proven_at: u64,
}

impl Node {
    /// A fresh record with the defaults of registration (§7.1).
    pub fn fresh(key: [u8; 32], owner: Option<Box<str>>, now_ms: u64) -> Node {
        Node {
            key,
            real_addr: None,
            owner,
            hostname: None,
            tags: Box::new([]),
            networks: Box::new([]),
            polo: 0,
            last_seen_ms: now_ms,
            public: false,
            task_exec: false,
            dormant: false,
            proven_at: 0,
        }
    }
}

/// A custom network (dormant feature; only from legacy snapshots).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Network ID (never 0 here: the backbone is implicit).
    pub id: u16,
    /// Name.
    pub name: String,
    /// `open`, `token` or `invite`.
    pub join_rule: String,
    /// Join token (never shown).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// Member node IDs in join order.
    #[serde(default)]
    pub members: Vec<u32>,
    /// Creation time, Unix milliseconds.
    #[serde(default)]
    pub created_ms: u64,
}

/// A relayed handshake request waiting in the target's inbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HsRequest {
    /// The requester.
    pub from: u32,
    /// Its justification.
    pub justification: String,
    /// When it arrived, Unix milliseconds.
    pub at_ms: u64,
}

/// A relayed handshake response waiting for the original requester.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HsResponse {
    /// The responder.
    pub from: u32,
    /// Whether it accepted.
    pub accept: bool,
    /// When it arrived, Unix milliseconds.
    pub at_ms: u64,
}

/// A node's two relay queues.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inbox {
    /// Requests addressed to the node, in arrival order.
    pub requests: VecDeque<HsRequest>,
    /// Responses to the node's requests, in arrival order.
    pub responses: VecDeque<HsResponse>,
}

/// The node record as stored in snapshots and changes (`spec/registry.md` §10.3 plus
/// `dormant`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredNode {
    /// Node ID.
    pub id: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[allow(missing_docs)]
    pub owner: String,
    #[allow(missing_docs)]
    pub public_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[allow(missing_docs)]
    pub real_addr: String,
    #[serde(default)]
    #[allow(missing_docs)]
    pub networks: Option<Vec<u16>>,
    #[serde(default, skip_serializing_if = "is_false")]
    #[allow(missing_docs)]
    pub public: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[allow(missing_docs)]
    pub last_seen: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[allow(missing_docs)]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[allow(missing_docs)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    #[allow(missing_docs)]
    pub polo_score: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    #[allow(missing_docs)]
    pub task_exec: bool,
    /// Extension: reaped but waiting for its key.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dormant: bool,
    /// Extension: last proof-of-possession timestamp (Unix seconds).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub proven_at: u64,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero(n: &i64) -> bool {
    *n == 0
}
fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// Why a stored record cannot be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// The key is not base64 of 32 bytes (Q-28: refused at load, never at use).
    #[error("node {id}: stored public key {key:?} is not base64 of 32 bytes")]
    BadKey {
        /// The node.
        id: u32,
        /// The offending text.
        key: String,
    },
    /// The endpoint is not `ip:port`.
    #[error("node {id}: stored real_addr {addr:?} is not ip:port")]
    BadAddr {
        /// The node.
        id: u32,
        /// The offending text.
        addr: String,
    },
}

impl StoredNode {
    /// The stored form of `node`.
    pub fn from_node(id: u32, node: &Node) -> StoredNode {
        let mut networks = vec![0];
        networks.extend_from_slice(&node.networks);
        StoredNode {
            id,
            owner: node.owner.as_deref().unwrap_or("").to_string(),
            public_key: super::auth::encode_key(&node.key),
            real_addr: node.real_addr.map(|a| a.to_string()).unwrap_or_default(),
            networks: Some(networks),
            public: node.public,
            last_seen: super::rfc3339::format(node.last_seen_ms, false),
            hostname: node.hostname.as_deref().unwrap_or("").to_string(),
            tags: node.tags.iter().map(|t| t.to_string()).collect(),
            polo_score: node.polo,
            task_exec: node.task_exec,
            dormant: node.dormant,
            proven_at: node.proven_at,
        }
    }

    /// The in-memory node; `last_seen` missing or unparseable becomes `now_ms`.
    pub fn to_node(&self, now_ms: u64) -> Result<Node, RecordError> {
        let key = super::auth::decode_key(&self.public_key).ok_or_else(|| RecordError::BadKey {
            id: self.id,
            key: self.public_key.clone(),
        })?;
        let real_addr = if self.real_addr.is_empty() {
            None
        } else {
            Some(self.real_addr.parse().map_err(|_| RecordError::BadAddr {
                id: self.id,
                addr: self.real_addr.clone(),
            })?)
        };
        let nonempty = |s: &str| (!s.is_empty()).then(|| Box::from(s));
        Ok(Node {
            key,
            real_addr,
            owner: nonempty(&self.owner),
            hostname: nonempty(&self.hostname),
            tags: self.tags.iter().map(|t| Box::from(t.as_str())).collect(),
            networks: self
                .networks
                .iter()
                .flatten()
                .copied()
                .filter(|n| *n != 0)
                .collect(),
            polo: self.polo_score,
            last_seen_ms: super::rfc3339::parse(&self.last_seen).unwrap_or(now_ms),
            public: self.public,
            task_exec: self.task_exec,
            dormant: self.dormant,
            proven_at: self.proven_at,
        })
    }
}

/// One mutation of persistent state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// Create or replace a node record (hostname index follows the record).
    Node(StoredNode),
    /// Delete a node record (deregistration); key and owner indexes are kept.
    Drop {
        /// The node.
        id: u32,
    },
    /// Index a key to a node, or un-index it (`id` = None).
    Key {
        /// Base64 key.
        key: String,
        /// The node, or none.
        id: Option<u32>,
    },
    /// Index an owner to a node.
    Owner {
        /// Owner label.
        owner: String,
        /// The node.
        id: u32,
    },
    /// Set the next node ID to allocate.
    NextNode {
        /// The ID.
        next: u32,
    },
    /// Add (`on`) or remove a trust pair.
    Trust {
        /// Smaller ID.
        a: u32,
        /// Larger ID.
        b: u32,
        /// Whether the pair exists afterwards.
        on: bool,
    },
    /// Record (`until_ms` = Some) or forget that `from` wants trust with `to`.
    Intent {
        /// Who wants trust.
        from: u32,
        /// With whom.
        to: u32,
        /// Expiry, or none to forget.
        until_ms: Option<u64>,
    },
    /// Record (`until_ms` = Some) or forget that `from` asked `to` for a handshake (a
    /// response from `to` is expected).
    Ask {
        /// Requester.
        from: u32,
        /// Target.
        to: u32,
        /// Expiry, or none to forget.
        until_ms: Option<u64>,
    },
    /// Queue a relayed request for `to`.
    Request {
        /// Target.
        to: u32,
        /// The entry.
        entry: HsRequest,
    },
    /// Queue a relayed response for `to` (the oldest is dropped beyond the cap).
    Response {
        /// Original requester.
        to: u32,
        /// The entry.
        entry: HsResponse,
    },
    /// Empty both of a node's queues (delivered).
    Drain {
        /// The node.
        node: u32,
    },
    /// Replace the whole state (a standby applying its primary's snapshot).
    Reset(Box<super::persist::snapshot::Snapshot>),
    /// Drop queue entries, intents and asks that expired before `now_ms`.
    Expire {
        /// The expiry horizon.
        now_ms: u64,
        /// Entries older than this many milliseconds are dropped from queues.
        queue_ttl_ms: u64,
    },
}

/// Most responses queued per node; the oldest go first.
pub const MAX_RESPONSES: usize = 100;
/// Most requests queued per node (the reference's limit).
pub const MAX_REQUESTS: usize = 100;

/// All persistent registry state plus its indexes.
#[derive(Debug, Default)]
pub struct Data {
    /// Node records (live and dormant) by ID. Never iterated into output unsorted.
    pub nodes: HashMap<u32, Node>,
    /// Key → node ID, never pruned, so a returning key gets its ID back.
    pub key_idx: HashMap<[u8; 32], u32>,
    /// Owner → node ID, never pruned (and, unlike the reference, persisted: Q-15).
    pub owner_idx: HashMap<Box<str>, u32>,
    /// Hostname → node ID (live and dormant holders).
    pub host_idx: HashMap<Box<str>, u32>,
    /// Custom networks (the backbone, network 0, is implicit: every node is a member).
    pub networks: BTreeMap<u16, Network>,
    /// Symmetric trust pairs, `a <= b`.
    pub trust: BTreeSet<(u32, u32)>,
    /// Trust wishes keyed by (to, from) → expiry.
    pub intents: BTreeMap<(u32, u32), u64>,
    /// Outstanding handshake asks keyed by (to, from) → expiry.
    pub asks: BTreeMap<(u32, u32), u64>,
    /// Relay queues by node.
    pub inbox: BTreeMap<u32, Inbox>,
    /// Next node ID to allocate (starts at 1).
    pub next_node: u32,
    /// Next network ID (kept for the snapshot format).
    pub next_net: u16,
    /// Creation time of the backbone.
    pub backbone_created_ms: u64,
}

/// The ordered trust-pair key of two nodes.
pub fn pair(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
}

impl Data {
    /// An empty registry (only the implicit backbone).
    pub fn new(now_ms: u64) -> Data {
        Data {
            next_node: 1,
            next_net: 1,
            backbone_created_ms: now_ms,
            ..Data::default()
        }
    }

    /// Applies one change. Total: a change that refers to missing state is a no-op, so a log
    /// replays whatever it holds.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Node(stored) => {
                // Handlers only emit records that convert; a hand-edited log is checked at load.
                let Ok(node) = stored.to_node(0) else { return };
                let id = stored.id;
                if let Some(old) = self.nodes.get(&id) {
                    if let Some(h) = &old.hostname {
                        if node.hostname.as_ref() != Some(h) && self.host_idx.get(h) == Some(&id) {
                            self.host_idx.remove(h);
                        }
                    }
                }
                if let Some(h) = &node.hostname {
                    self.host_idx.insert(h.clone(), id);
                }
                self.nodes.insert(id, node);
            }
            Change::Drop { id } => {
                if let Some(old) = self.nodes.remove(id) {
                    if let Some(h) = &old.hostname {
                        if self.host_idx.get(h) == Some(id) {
                            self.host_idx.remove(h);
                        }
                    }
                    for net in old.networks.iter() {
                        if let Some(n) = self.networks.get_mut(net) {
                            n.members.retain(|m| m != id);
                        }
                    }
                }
            }
            Change::Key { key, id } => {
                if let Some(k) = super::auth::decode_key(key) {
                    match id {
                        Some(id) => {
                            self.key_idx.insert(k, *id);
                        }
                        None => {
                            self.key_idx.remove(&k);
                        }
                    }
                }
            }
            Change::Owner { owner, id } => {
                self.owner_idx.insert(Box::from(owner.as_str()), *id);
            }
            Change::NextNode { next } => self.next_node = *next,
            Change::Trust { a, b, on } => {
                if *on {
                    self.trust.insert(pair(*a, *b));
                } else {
                    self.trust.remove(&pair(*a, *b));
                }
            }
            Change::Intent { from, to, until_ms } => match until_ms {
                Some(t) => {
                    self.intents.insert((*to, *from), *t);
                }
                None => {
                    self.intents.remove(&(*to, *from));
                }
            },
            Change::Ask { from, to, until_ms } => match until_ms {
                Some(t) => {
                    self.asks.insert((*to, *from), *t);
                }
                None => {
                    self.asks.remove(&(*to, *from));
                }
            },
            Change::Request { to, entry } => {
                let q = &mut self.inbox.entry(*to).or_default().requests;
                if q.len() < MAX_REQUESTS {
                    q.push_back(entry.clone());
                }
            }
            Change::Response { to, entry } => {
                let q = &mut self.inbox.entry(*to).or_default().responses;
                if q.len() >= MAX_RESPONSES {
                    q.pop_front();
                }
                q.push_back(entry.clone());
            }
            Change::Drain { node } => {
                self.inbox.remove(node);
            }
            Change::Reset(snapshot) => {
                // Validated by the receiver before it is applied or logged.
                if let Ok(data) = snapshot.to_data(0) {
                    *self = data;
                }
            }
            Change::Expire {
                now_ms,
                queue_ttl_ms,
            } => {
                let horizon = now_ms.saturating_sub(*queue_ttl_ms);
                self.inbox.retain(|_, inbox| {
                    inbox.requests.retain(|e| e.at_ms >= horizon);
                    inbox.responses.retain(|e| e.at_ms >= horizon);
                    !(inbox.requests.is_empty() && inbox.responses.is_empty())
                });
                self.intents.retain(|_, until| *until > *now_ms);
                self.asks.retain(|_, until| *until > *now_ms);
            }
        }
    }

    /// The live (not dormant) node `id`.
    pub fn live(&self, id: u32) -> Option<&Node> {
        self.nodes.get(&id).filter(|n| !n.dormant)
    }

    /// Node IDs in ascending order (for output).
    pub fn sorted_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.nodes.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Number of live nodes.
    pub fn live_count(&self) -> usize {
        self.nodes.values().filter(|n| !n.dormant).count()
    }

    /// Entries in `map` addressed to `to`.
    pub fn count_to(map: &BTreeMap<(u32, u32), u64>, to: u32) -> usize {
        map.range((to, 0)..=(to, u32::MAX)).count()
    }
}
