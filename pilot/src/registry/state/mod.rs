//! The sans-IO registry: requests in, a reply and the changes to persist out.
//!
//! [`Registry::handle`] never touches a socket, a clock or a disk: the caller passes the TCP
//! peer and the time in [`Ctx`], persists the returned [`Change`]s, and only then sends the
//! reply. Handlers validate everything first, then build changes and apply them through
//! [`Data::apply`], the same function a restart replays.

use super::frame::Object;
use super::hostname::{normalize_tags, validate_hostname};
use super::model::{pair, Change, Data, HsRequest, HsResponse, Node, StoredNode, MAX_REQUESTS};
use super::ratelimit::{Class, RateLimiter, Rates};
pub use super::reply::error_reply;
use super::reply::{addr_text, address, event, polo_reply, reply, request_entry, response_entry};
use super::request::{Kind, Request};
use crate::registry::auth::{decode_key, AuthError, Verifier};
use crate::wire::Addr;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// Settings of a registry.
#[derive(Clone, Debug)]
pub struct Config {
    /// Operator token: `set_polo_score`, `update_polo_score` on any node, `promote`. None
    /// disables those (a node can still update its own score with its signature).
    pub admin_token: Option<String>,
    /// Token beacons must present in `beacon_register`; none = open (as in the reference).
    pub beacon_token: Option<String>,
    /// Token standbys present in `subscribe_replication`; none refuses replication.
    pub replication_token: Option<String>,
    /// Rate limits per source.
    pub rates: Rates,
    /// Serve reads only (§11.3).
    pub standby: bool,
    /// A node is stale after this long without a refresh (3 min).
    pub stale_after_ms: u64,
    /// Relay queue entries, trust wishes and handshake asks expire after this long.
    pub relay_ttl_ms: u64,
    /// A dormant (reaped) node keeps its hostname this long.
    pub hostname_hold_ms: u64,
    /// Beacons are listed for this long after their last registration (60 s).
    pub beacon_ttl_ms: u64,
    /// Most beacons listed at once.
    pub max_beacons: usize,
    /// Most trust wishes or asks addressed to one node.
    pub max_pending_per_node: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            admin_token: None,
            beacon_token: None,
            replication_token: None,
            rates: Rates::default(),
            standby: false,
            stale_after_ms: 180_000,
            relay_ttl_ms: 7 * 24 * 3600 * 1000,
            hostname_hold_ms: 7 * 24 * 3600 * 1000,
            beacon_ttl_ms: 60_000,
            max_beacons: 64,
            max_pending_per_node: 1024,
        }
    }
}

/// What the registry knows about the request besides its content.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    /// The TCP peer of the connection (never a client-supplied header).
    pub peer: SocketAddr,
    /// Wall-clock time, Unix milliseconds.
    pub now_ms: u64,
}

/// A frame to push to a node subscribed with `subscribe_handshakes`.
#[derive(Clone, Debug, PartialEq)]
pub struct Push {
    /// The subscribed node.
    pub to: u32,
    /// The event frame (`handshake_request` or `handshake_response`).
    pub event: Object,
}

/// The result of handling one request.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The reply frame.
    pub reply: Object,
    /// Changes already applied in memory, to make durable before the reply is sent.
    pub changes: Vec<Change>,
    /// Events for subscribed nodes, to send once the changes are durable.
    pub pushes: Vec<Push>,
}

/// Counters of §12.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Requests per kind.
    pub requests: BTreeMap<Kind, u64>,
    /// Error replies per kind.
    pub errors: BTreeMap<Kind, u64>,
    /// `register` successes.
    pub registrations: u64,
    /// `deregister` successes on existing nodes.
    pub deregistrations: u64,
    /// `report_trust` successes.
    pub trust_reports: u64,
    /// `revoke_trust` successes.
    pub trust_revocations: u64,
    /// `request_handshake` successes.
    pub handshake_requests: u64,
}

#[derive(Clone, Debug)]
struct Beacon {
    addr: String,
    seen_ms: u64,
}

type HResult = Result<Object, String>;

/// How far a signed registration's timestamp may be from the registry's clock.
pub const PROOF_WINDOW_SECS: u64 = 300;

/// The optional proof of possession on `register`.
struct Proof<'a> {
    signature: &'a str,
    timestamp: u64,
}

/// The registry state machine.
pub struct Registry {
    cfg: Config,
    data: Data,
    limiter: RateLimiter,
    verifier: Verifier,
    beacons: BTreeMap<u32, Beacon>,
    subscribed: BTreeMap<u32, u32>,
    counters: Counters,
    started_ms: u64,
}

fn not_found(id: u32) -> String {
    format!("node {id}: node not found")
}

fn auth_err(what: &str, e: AuthError) -> String {
    format!("{what}: {e}")
}

/// Constant-time comparison of a presented token with the configured one.
fn token_ok(configured: &Option<String>, presented: &str) -> bool {
    let Some(want) = configured else { return false };
    let (a, b) = (want.as_bytes(), presented.as_bytes());
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// `real_addr` per §7.3: TCP peer IP + the port of `listen_addr`, else the TCP peer.
fn real_addr(peer: SocketAddr, listen_addr: &str) -> SocketAddr {
    let port = listen_addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    match port {
        Some(port) => SocketAddr::new(peer.ip(), port),
        None => peer,
    }
}

mod identity;
mod relay;

impl Registry {
    /// An empty registry started at `now_ms`.
    pub fn new(cfg: Config, now_ms: u64) -> Registry {
        Registry::from_data(cfg, Data::new(now_ms), now_ms)
    }

    /// A registry over loaded state. Every node gets a fresh grace period: heartbeats are not
    /// persisted, so stored `last_seen` values say nothing about health.
    pub fn from_data(cfg: Config, mut data: Data, now_ms: u64) -> Registry {
        // Dormant nodes keep theirs: it times the hold on their hostname.
        for node in data.nodes.values_mut().filter(|n| !n.dormant) {
            node.last_seen_ms = now_ms;
        }
        Registry {
            limiter: RateLimiter::new(cfg.rates),
            cfg,
            data,
            verifier: Verifier::new(),
            beacons: BTreeMap::new(),
            subscribed: BTreeMap::new(),
            counters: Counters::default(),
            started_ms: now_ms,
        }
    }

    /// The state (read-only).
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// When the registry started, Unix milliseconds.
    pub fn started_ms(&self) -> u64 {
        self.started_ms
    }

    /// Switches standby mode (promotion sets it to false).
    pub fn set_standby(&mut self, standby: bool) {
        self.cfg.standby = standby;
    }

    /// Takes a connection token for `ip`; false if the source opens connections too fast.
    pub fn allow_connection(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        self.limiter.allow(Class::Connection, ip, now_ms)
    }

    /// Checks a replication token (§11.1 rule 2); the error text is the reference's.
    pub fn check_replication_token(&self, token: &str) -> Result<(), &'static str> {
        if self.cfg.replication_token.is_none() {
            return Err("replication not configured");
        }
        if !token_ok(&self.cfg.replication_token, token) {
            return Err("invalid replication token");
        }
        Ok(())
    }

    fn apply(&mut self, out: &mut Vec<Change>, change: Change) {
        self.data.apply(&change);
        out.push(change);
    }

    fn put_node(&mut self, out: &mut Vec<Change>, id: u32, node: &Node) {
        self.apply(out, Change::Node(StoredNode::from_node(id, node)));
    }

    fn verify(&mut self, id: u32, challenge: &str, sig: &str) -> Result<(), String> {
        let node = self.data.live(id).ok_or_else(|| not_found(id))?;
        let key = node.key;
        self.verifier
            .verify(&key, challenge, sig)
            .map_err(|e| auth_err(challenge.split(':').next().unwrap_or(""), e))
    }

    fn live(&self, id: u32) -> Result<&Node, String> {
        self.data.live(id).ok_or_else(|| not_found(id))
    }

    /// Whether `requester` may learn `target`'s endpoint (§6.6 rule 3).
    fn may_resolve(&self, requester: u32, target: u32) -> bool {
        let (Some(r), Some(t)) = (self.data.live(requester), self.data.live(target)) else {
            return false;
        };
        t.public
            || self.data.trust.contains(&pair(requester, target))
            || t.networks.iter().any(|n| r.networks.contains(n))
    }

    /// Handles one frame: parse, rate-limit, dispatch, count.
    pub fn handle_frame(&mut self, obj: &Object, ctx: &Ctx) -> Outcome {
        match Request::parse(obj) {
            Ok(req) => self.handle(&req, ctx),
            Err(e) => {
                let kind = Kind::from_type(obj.get("type").and_then(Value::as_str).unwrap_or(""));
                self.count(kind, true);
                Outcome {
                    reply: error_reply(&e.to_string()),
                    ..Outcome::default()
                }
            }
        }
    }

    fn count(&mut self, kind: Kind, error: bool) {
        *self.counters.requests.entry(kind).or_default() += 1;
        if error {
            *self.counters.errors.entry(kind).or_default() += 1;
        }
    }

    /// Handles one parsed request.
    pub fn handle(&mut self, req: &Request, ctx: &Ctx) -> Outcome {
        let kind = req.kind();
        let mut changes = Vec::new();
        let mut pushes = Vec::new();
        let result = self.dispatch(req, ctx, &mut changes, &mut pushes);
        self.count(kind, result.is_err());
        Outcome {
            reply: result.unwrap_or_else(|e| error_reply(&e)),
            changes,
            pushes,
        }
    }

    fn dispatch(
        &mut self,
        req: &Request,
        ctx: &Ctx,
        out: &mut Vec<Change>,
        pushes: &mut Vec<Push>,
    ) -> HResult {
        let kind = req.kind();
        let ip = ctx.peer.ip();
        if kind != Kind::Register && !self.limiter.allow(Class::Request, ip, ctx.now_ms) {
            return Err(format!("rate limited: too many requests from {ip}"));
        }
        if self.cfg.standby && !standby_allowed(kind) {
            return Err(format!(
                "standby mode: {} is served by the primary",
                kind.as_str()
            ));
        }
        match req {
            Request::Register {
                public_key,
                listen_addr,
                owner,
                hostname,
                signature,
                timestamp,
            } => {
                let proof = Proof {
                    signature,
                    timestamp: *timestamp,
                };
                self.register(public_key, listen_addr, owner, hostname, proof, ctx, out)
            }
            Request::Heartbeat { node_id, signature } => {
                self.verify(*node_id, &format!("heartbeat:{node_id}"), signature)?;
                if let Some(n) = self.data.nodes.get_mut(node_id) {
                    n.last_seen_ms = n.last_seen_ms.max(ctx.now_ms);
                }
                let mut r = reply("heartbeat");
                r.insert("time".into(), json!(ctx.now_ms / 1000));
                Ok(r)
            }
            Request::Deregister { node_id, signature } => {
                if self.data.live(*node_id).is_some() {
                    self.verify(*node_id, &format!("deregister:{node_id}"), signature)?;
                    self.apply(out, Change::Drop { id: *node_id });
                    self.counters.deregistrations += 1;
                }
                Ok(reply("deregister"))
            }
            Request::RotateKey {
                node_id,
                signature,
                new_public_key,
            } => self.rotate_key(*node_id, signature, new_public_key, ctx, out),
            Request::Lookup { node_id } => self.lookup(*node_id),
            Request::Resolve {
                node_id,
                requester_id,
                signature,
            } => {
                self.verify(
                    *requester_id,
                    &format!("resolve:{requester_id}:{node_id}"),
                    signature,
                )?;
                let target = self.live(*node_id)?;
                let addr = target.real_addr;
                if !self.may_resolve(*requester_id, *node_id) {
                    return Err(format!(
                        "node {node_id} is private and has no trust pair with node {requester_id}"
                    ));
                }
                let mut r = reply("resolve");
                r.insert("node_id".into(), json!(node_id));
                r.insert("real_addr".into(), json!(addr_text(addr)));
                Ok(r)
            }
            Request::Punch {
                requester_id,
                node_a,
                node_b,
                signature,
            } => {
                if requester_id != node_a && requester_id != node_b {
                    return Err("punch: requester must be node_a or node_b".into());
                }
                self.verify(
                    *requester_id,
                    &format!("punch:{node_a}:{node_b}"),
                    signature,
                )?;
                let (a, b) = (self.live(*node_a)?.real_addr, self.live(*node_b)?.real_addr);
                let other = if requester_id == node_a {
                    *node_b
                } else {
                    *node_a
                };
                // the same disclosure rule as resolve.
                if !self.may_resolve(*requester_id, other) {
                    return Err(format!(
                        "node {other} is private and has no trust pair with node {requester_id}"
                    ));
                }
                let mut r = reply("punch");
                r.insert("node_a".into(), json!(node_a));
                r.insert("node_a_addr".into(), json!(addr_text(a)));
                r.insert("node_b".into(), json!(node_b));
                r.insert("node_b_addr".into(), json!(addr_text(b)));
                Ok(r)
            }
            Request::ResolveHostname { hostname } => {
                if hostname.is_empty() {
                    return Err("hostname required".into());
                }
                let id = self
                    .data
                    .host_idx
                    .get(hostname.as_str())
                    .copied()
                    .filter(|id| self.data.live(*id).is_some())
                    .ok_or_else(|| format!("hostname {hostname:?} not found"))?;
                let node = self.live(id)?;
                let mut r = reply("resolve_hostname");
                r.insert("node_id".into(), json!(id));
                r.insert("address".into(), json!(address(id)));
                r.insert("public".into(), json!(node.public));
                r.insert("hostname".into(), json!(hostname));
                Ok(r)
            }
            Request::SetVisibility {
                node_id,
                public,
                signature,
            } => {
                self.verify(*node_id, &format!("set_visibility:{node_id}"), signature)?;
                let mut node = self.live(*node_id)?.clone();
                if node.public != *public {
                    node.public = *public;
                    self.put_node(out, *node_id, &node);
                }
                let mut r = reply("set_visibility");
                r.insert("node_id".into(), json!(node_id));
                r.insert(
                    "visibility".into(),
                    json!(if *public { "public" } else { "private" }),
                );
                Ok(r)
            }
            Request::SetHostname {
                node_id,
                hostname,
                signature,
            } => {
                if !hostname.is_empty() {
                    validate_hostname(hostname)?;
                }
                self.verify(*node_id, &format!("set_hostname:{node_id}"), signature)?;
                let mut node = self.live(*node_id)?.clone();
                if let Some(holder) = self.data.host_idx.get(hostname.as_str()) {
                    if *holder != *node_id {
                        return Err(format!("hostname {hostname:?} is already taken"));
                    }
                }
                let new = (!hostname.is_empty()).then(|| Box::from(hostname.as_str()));
                if node.hostname != new {
                    node.hostname = new;
                    self.put_node(out, *node_id, &node);
                }
                let mut r = reply("set_hostname");
                r.insert("node_id".into(), json!(node_id));
                r.insert("hostname".into(), json!(hostname));
                Ok(r)
            }
            Request::SetTags {
                node_id,
                tags,
                signature,
            } => {
                let tags = normalize_tags(tags)?;
                self.verify(*node_id, &format!("set_tags:{node_id}"), signature)?;
                let mut node = self.live(*node_id)?.clone();
                node.tags = tags.iter().map(|t| Box::from(t.as_str())).collect();
                self.put_node(out, *node_id, &node);
                let mut r = reply("set_tags");
                r.insert("node_id".into(), json!(node_id));
                r.insert(
                    "tags".into(),
                    if tags.is_empty() {
                        Value::Null
                    } else {
                        json!(tags)
                    },
                );
                Ok(r)
            }
            Request::SetTaskExec {
                node_id,
                enabled,
                signature,
            } => {
                self.verify(*node_id, &format!("set_task_exec:{node_id}"), signature)?;
                let mut node = self.live(*node_id)?.clone();
                if node.task_exec != *enabled {
                    node.task_exec = *enabled;
                    self.put_node(out, *node_id, &node);
                }
                let mut r = reply("set_task_exec");
                r.insert("node_id".into(), json!(node_id));
                r.insert("task_exec".into(), json!(enabled));
                Ok(r)
            }
            Request::UpdatePoloScore {
                node_id,
                delta,
                signature,
                admin_token,
            } => {
                let delta = delta.ok_or("delta is required and must be a number")?;
                self.live(*node_id)?;
                // a node may change its own score with its signature; anyone else needs
                // the operator's token.
                if !token_ok(&self.cfg.admin_token, admin_token) {
                    self.verify(
                        *node_id,
                        &format!("update_polo_score:{node_id}:{delta}"),
                        signature,
                    )?;
                }
                let mut node = self.live(*node_id)?.clone();
                node.polo = node.polo.saturating_add(delta);
                self.put_node(out, *node_id, &node);
                Ok(polo_reply("update_polo_score", *node_id, node.polo))
            }
            Request::SetPoloScore {
                node_id,
                polo_score,
                admin_token,
                ..
            } => {
                let score = polo_score.ok_or("polo_score is required and must be a number")?;
                if !token_ok(&self.cfg.admin_token, admin_token) {
                    return Err("set_polo_score requires the admin token".into());
                }
                let mut node = self.live(*node_id)?.clone();
                node.polo = score;
                self.put_node(out, *node_id, &node);
                Ok(polo_reply("set_polo_score", *node_id, score))
            }
            Request::GetPoloScore { node_id } => {
                let node = self.live(*node_id)?;
                Ok(polo_reply("get_polo_score", *node_id, node.polo))
            }
            Request::ReportTrust {
                node_id,
                peer_id,
                signature,
            } => self.report_trust(*node_id, *peer_id, signature, ctx, out),
            Request::RevokeTrust {
                node_id,
                peer_id,
                signature,
            } => {
                self.verify(
                    *node_id,
                    &format!("revoke_trust:{node_id}:{peer_id}"),
                    signature,
                )?;
                let (a, b) = pair(*node_id, *peer_id);
                if !self.data.trust.contains(&(a, b)) {
                    return Err(format!("no trust pair between {node_id} and {peer_id}"));
                }
                self.apply(out, Change::Trust { a, b, on: false });
                self.forget_wishes(out, *node_id, *peer_id);
                self.counters.trust_revocations += 1;
                Ok(reply("revoke_trust"))
            }
            Request::RequestHandshake {
                from_node_id,
                to_node_id,
                justification,
                signature,
            } => self.request_handshake(
                *from_node_id,
                *to_node_id,
                justification,
                signature,
                ctx,
                out,
                pushes,
            ),
            Request::PollHandshakes { node_id, signature } => {
                self.verify(*node_id, &format!("poll_handshakes:{node_id}"), signature)?;
                let inbox = self.data.inbox.get(node_id).cloned().unwrap_or_default();
                if self.data.inbox.contains_key(node_id) {
                    self.apply(out, Change::Drain { node: *node_id });
                }
                let mut r = reply("poll_handshakes");
                r.insert(
                    "requests".into(),
                    Value::Array(inbox.requests.iter().map(request_entry).collect()),
                );
                r.insert(
                    "responses".into(),
                    Value::Array(inbox.responses.iter().map(response_entry).collect()),
                );
                Ok(r)
            }
            Request::RespondHandshake {
                node_id,
                peer_id,
                accept,
                signature,
            } => self.respond_handshake(*node_id, *peer_id, *accept, signature, ctx, out, pushes),
            Request::CreateNetwork | Request::JoinNetwork | Request::LeaveNetwork => Err(
                "custom networks are not available: only the backbone (network 0) exists".into(),
            ),
            Request::ListNetworks => {
                let mut nets = vec![json!({
                    "id": 0, "name": "backbone", "members": self.data.live_count(),
                    "join_rule": "open"
                })];
                for n in self.data.networks.values() {
                    nets.push(json!({
                        "id": n.id, "name": n.name, "members": n.members.len(),
                        "join_rule": n.join_rule
                    }));
                }
                let mut r = reply("list_networks");
                r.insert("networks".into(), Value::Array(nets));
                Ok(r)
            }
            Request::ListNodes { network_id } => {
                if *network_id == 0 {
                    return Err("listing the backbone (network 0) is not allowed".into());
                }
                let net = self
                    .data
                    .networks
                    .get(network_id)
                    .ok_or_else(|| format!("network {network_id} not found"))?;
                let mut nodes = Vec::new();
                for id in &net.members {
                    let Some(n) = self.data.live(*id) else {
                        continue;
                    };
                    let mut o = Object::new();
                    o.insert("node_id".into(), json!(id));
                    o.insert(
                        "address".into(),
                        json!(Addr::new(*network_id, *id).to_string()),
                    );
                    if let Some(h) = &n.hostname {
                        o.insert("hostname".into(), json!(h));
                    }
                    if n.task_exec {
                        o.insert("task_exec".into(), json!(true));
                    }
                    if n.public {
                        o.insert("real_addr".into(), json!(addr_text(n.real_addr)));
                    }
                    nodes.push(Value::Object(o));
                }
                let mut r = reply("list_nodes");
                r.insert("nodes".into(), Value::Array(nodes));
                Ok(r)
            }
            Request::BeaconRegister {
                beacon_id,
                addr,
                token,
            } => {
                if *beacon_id == 0 {
                    return Err("beacon_id required".into());
                }
                if addr.is_empty() {
                    return Err("addr required".into());
                }
                if self.cfg.beacon_token.is_some() && !token_ok(&self.cfg.beacon_token, token) {
                    return Err("invalid beacon token".into());
                }
                self.expire_beacons(ctx.now_ms);
                if !self.beacons.contains_key(beacon_id)
                    && self.beacons.len() >= self.cfg.max_beacons
                {
                    return Err(format!("too many beacons (max {})", self.cfg.max_beacons));
                }
                self.beacons.insert(
                    *beacon_id,
                    Beacon {
                        addr: addr.clone(),
                        seen_ms: ctx.now_ms,
                    },
                );
                let mut r = reply("beacon_register");
                r.insert("beacon_id".into(), json!(beacon_id));
                Ok(r)
            }
            Request::BeaconList => {
                self.expire_beacons(ctx.now_ms);
                let list: Vec<Value> = self
                    .beacons
                    .iter()
                    .map(|(id, b)| json!({"id": id, "addr": b.addr}))
                    .collect();
                let mut r = reply("beacon_list");
                r.insert("beacons".into(), Value::Array(list));
                Ok(r)
            }
            Request::SubscribeReplication { .. } => {
                Err("subscribe_replication must be the first request of a connection".into())
            }
            Request::SubscribeHandshakes { node_id, signature } => {
                self.verify(
                    *node_id,
                    &format!("subscribe_handshakes:{node_id}"),
                    signature,
                )?;
                *self.subscribed.entry(*node_id).or_default() += 1;
                // Whatever waited in the queues goes out on the new stream at once.
                self.flush_to_subscriber(*node_id, out, pushes);
                let mut r = reply("subscribe_handshakes");
                r.insert("node_id".into(), json!(node_id));
                Ok(r)
            }
            Request::Promote { admin_token } => {
                if !token_ok(&self.cfg.admin_token, admin_token) {
                    return Err("promote requires the admin token".into());
                }
                self.cfg.standby = false;
                Ok(reply("promote"))
            }
            Request::Unknown { type_name } => Err(format!("unknown request type {type_name:?}")),
        }
    }

    fn expire_beacons(&mut self, now_ms: u64) {
        let ttl = self.cfg.beacon_ttl_ms;
        self.beacons
            .retain(|_, b| now_ms.saturating_sub(b.seen_ms) <= ttl);
    }

    fn lookup(&self, id: u32) -> HResult {
        let n = self.live(id)?;
        let mut nets = vec![0u16];
        nets.extend_from_slice(&n.networks);
        let mut r = reply("lookup");
        r.insert("node_id".into(), json!(id));
        r.insert("address".into(), json!(address(id)));
        r.insert("networks".into(), json!(nets));
        r.insert(
            "public_key".into(),
            json!(crate::registry::auth::encode_key(&n.key)),
        );
        r.insert("public".into(), json!(n.public));
        r.insert("polo_score".into(), json!(n.polo));
        if let Some(h) = &n.hostname {
            r.insert("hostname".into(), json!(h));
        }
        if !n.tags.is_empty() {
            r.insert("tags".into(), json!(n.tags));
        }
        if n.task_exec {
            r.insert("task_exec".into(), json!(true));
        }
        if n.public {
            r.insert("real_addr".into(), json!(addr_text(n.real_addr)));
        }
        Ok(r)
    }

    /// The maintenance tick (§7.5): reap stale nodes (they turn dormant), release hostnames
    /// held too long by dormant nodes, expire relay entries, beacons and rate buckets.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Change> {
        let mut out = Vec::new();
        self.expire_beacons(now_ms);
        self.limiter.cleanup(now_ms);
        if self.cfg.standby {
            // A standby's records come from the primary; it reaps nothing itself.
            return out;
        }
        let mut changed = Vec::new();
        for id in self.data.sorted_ids() {
            let n = &self.data.nodes[&id];
            let idle = now_ms.saturating_sub(n.last_seen_ms);
            if !n.dormant && idle > self.cfg.stale_after_ms {
                let mut n = n.clone();
                n.dormant = true;
                changed.push((id, n));
            } else if n.dormant && n.hostname.is_some() && idle > self.cfg.hostname_hold_ms {
                let mut n = n.clone();
                n.hostname = None;
                changed.push((id, n));
            }
        }
        for (id, n) in changed {
            self.put_node(&mut out, id, &n);
        }
        let horizon = now_ms.saturating_sub(self.cfg.relay_ttl_ms);
        let expired = self.data.inbox.values().any(|i| {
            i.requests.iter().any(|e| e.at_ms < horizon)
                || i.responses.iter().any(|e| e.at_ms < horizon)
        }) || self.data.intents.values().any(|t| *t <= now_ms)
            || self.data.asks.values().any(|t| *t <= now_ms);
        if expired {
            self.apply(
                &mut out,
                Change::Expire {
                    now_ms,
                    queue_ttl_ms: self.cfg.relay_ttl_ms,
                },
            );
        }
        out
    }

    /// Nodes subscribed for push delivery.
    pub fn subscribers(&self) -> BTreeSet<u32> {
        self.subscribed.keys().copied().collect()
    }

    /// Replaces the whole state (a standby applying a primary's snapshot).
    pub fn replace_data(&mut self, data: Data, now_ms: u64) {
        self.data = data;
        for node in self.data.nodes.values_mut().filter(|n| !n.dormant) {
            node.last_seen_ms = now_ms;
        }
    }

    /// Applies replicated changes (a standby following its primary).
    pub fn apply_replicated(&mut self, changes: &[Change], now_ms: u64) {
        for c in changes {
            self.data.apply(c);
            if let Change::Node(n) = c {
                if let Some(node) = self.data.nodes.get_mut(&n.id) {
                    node.last_seen_ms = now_ms;
                }
            }
        }
    }
}

fn standby_allowed(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Lookup
            | Kind::Resolve
            | Kind::ListNetworks
            | Kind::ListNodes
            | Kind::Heartbeat
            | Kind::ResolveHostname
            | Kind::BeaconList
            | Kind::GetPoloScore
            | Kind::Promote
            | Kind::Unknown
    )
}
