//! The sans-IO registry: requests in, a reply and the changes to persist out.
//!
//! [`Registry::handle`] never touches a socket, a clock or a disk: the caller passes the TCP
//! peer and the time in [`Ctx`], persists the returned [`Change`]s, and only then sends the
//! reply. Handlers validate everything first, then build changes and apply them through
//! [`Data::apply`], the same function a restart replays.

use super::auth::{decode_key, AuthError, Verifier};
use super::frame::Object;
use super::hostname::{normalize_tags, validate_hostname};
use super::model::{pair, Change, Data, HsRequest, HsResponse, Node, StoredNode, MAX_REQUESTS};
use super::ratelimit::{Class, RateLimiter, Rates};
use super::request::{Kind, Request};
use crate::wire::Addr;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// Settings of a registry.
#[derive(Clone, Debug)]
pub struct Config {
    /// Operator token for `set_polo_score` / any `update_polo_score`; none disables both paths.
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

fn reply(kind: &str) -> Object {
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

fn address(id: u32) -> String {
    Addr::backbone(id).to_string()
}

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

    #[allow(clippy::too_many_arguments)]
    fn register(
        &mut self,
        public_key: &str,
        listen_addr: &str,
        owner: &str,
        hostname: &str,
        proof: Proof<'_>,
        ctx: &Ctx,
        out: &mut Vec<Change>,
    ) -> HResult {
        let key = decode_key(public_key);
        let known = key.and_then(|k| self.data.key_idx.get(&k).copied());
        let class = if known.is_some() {
            Class::Reregistration
        } else {
            Class::NewRegistration
        };
        let ip = ctx.peer.ip();
        if !self.limiter.allow(class, ip, ctx.now_ms) {
            return Err(format!("rate limited: too many registrations from {ip}"));
        }
        if public_key.is_empty() {
            return Err("registration requires public_key".into());
        }
        let mut hostname_error = None;
        let mut hostname = hostname;
        if !hostname.is_empty() {
            if let Err(e) = validate_hostname(hostname) {
                hostname_error = Some(e);
                hostname = "";
            }
        }
        let key = key.ok_or("invalid public_key: must be base64 of 32 bytes")?;
        let proven = self.check_proof(&key, public_key, &proof, known, ctx)?;
        let addr = real_addr(ctx.peer, listen_addr);
        let owner_box = (!owner.is_empty()).then(|| Box::from(owner));

        let id = match known {
            Some(id) => {
                let mut node = match self.data.nodes.get(&id) {
                    // Live: only the endpoint and freshness move. Q-5: without proof of
                    // possession a known key may not change the owner or anything else.
                    Some(n) if !n.dormant => n.clone(),
                    // Dormant (reaped): comes back with its attributes, private until the
                    // daemon sets its visibility again, as after any registration.
                    Some(n) => {
                        let mut n = n.clone();
                        n.dormant = false;
                        n.public = false;
                        n
                    }
                    // Deregistered: a fresh record under the same ID (§7.2 case 2).
                    None => {
                        let owner = owner_box
                            .clone()
                            .filter(|o| self.data.owner_idx.get(o).is_none_or(|x| *x == id));
                        if let Some(o) = &owner {
                            if !self.data.owner_idx.contains_key(o) {
                                self.apply(
                                    out,
                                    Change::Owner {
                                        owner: o.to_string(),
                                        id,
                                    },
                                );
                            }
                        }
                        Node::fresh(key, owner, ctx.now_ms)
                    }
                };
                let unchanged =
                    self.data.nodes.get(&id) == Some(&node) && node.real_addr == Some(addr);
                if let Some(ts) = proven {
                    node.proven_at = ts;
                    // Proof of possession may bind an owner to a node that has none.
                    if node.owner.is_none() {
                        if let Some(o) = owner_box.clone() {
                            if !self.data.owner_idx.contains_key(&o) {
                                self.apply(
                                    out,
                                    Change::Owner {
                                        owner: o.to_string(),
                                        id,
                                    },
                                );
                                node.owner = Some(o);
                            }
                        }
                    }
                }
                let unchanged = unchanged && proven.is_none();
                node.real_addr = Some(addr);
                node.last_seen_ms = ctx.now_ms;
                if unchanged {
                    // A daemon coming back with the same endpoint: only freshness moves, and
                    // freshness is not persisted (a restart grants a grace period instead).
                    if let Some(n) = self.data.nodes.get_mut(&id) {
                        n.last_seen_ms = n.last_seen_ms.max(ctx.now_ms);
                    }
                } else {
                    self.put_node(out, id, &node);
                }
                id
            }
            None => {
                // an owner label already bound to a node proves nothing, so it never moves
                // that node to a new key. The new key gets a new node, without the owner.
                let owner = owner_box.filter(|o| !self.data.owner_idx.contains_key(o));
                let id = self.data.next_node;
                let next = id.checked_add(1).ok_or("node IDs exhausted")?;
                self.apply(out, Change::NextNode { next });
                self.apply(
                    out,
                    Change::Key {
                        key: super::auth::encode_key(&key),
                        id: Some(id),
                    },
                );
                if let Some(o) = &owner {
                    self.apply(
                        out,
                        Change::Owner {
                            owner: o.to_string(),
                            id,
                        },
                    );
                }
                let mut node = Node::fresh(key, owner, ctx.now_ms);
                node.real_addr = Some(addr);
                node.proven_at = proven.unwrap_or(0);
                self.put_node(out, id, &node);
                id
            }
        };

        let mut applied = None;
        if !hostname.is_empty() {
            let holder = self.data.host_idx.get(hostname).copied();
            if holder.is_none() || holder == Some(id) {
                let mut node = self.live(id)?.clone();
                if node.hostname.as_deref() != Some(hostname) {
                    node.hostname = Some(Box::from(hostname));
                    self.put_node(out, id, &node);
                }
                applied = Some(hostname);
            }
        }
        self.counters.registrations += 1;
        let mut r = reply("register");
        r.insert("node_id".into(), json!(id));
        r.insert("network_id".into(), json!(0));
        r.insert("address".into(), json!(address(id)));
        r.insert("public_key".into(), json!(public_key));
        if let Some(h) = applied {
            r.insert("hostname".into(), json!(h));
        }
        if let Some(e) = hostname_error {
            r.insert("hostname_error".into(), json!(e));
        }
        Ok(r)
    }

    /// Checks the optional proof of possession of a registration (our extension, Q-5):
    /// Ed25519 by the registered key over `register:<public_key>:<timestamp>`, the timestamp
    /// within 5 minutes of the registry's clock and newer than the last one accepted (so a
    /// captured request cannot be replayed). A node that proved possession once may not
    /// register unsigned again. Returns the accepted timestamp.
    fn check_proof(
        &mut self,
        key: &[u8; 32],
        public_key: &str,
        proof: &Proof<'_>,
        known: Option<u32>,
        ctx: &Ctx,
    ) -> Result<Option<u64>, String> {
        let last = known
            .and_then(|id| self.data.nodes.get(&id))
            .map_or(0, |n| n.proven_at);
        if proof.signature.is_empty() {
            if last > 0 {
                return Err(format!(
                    "node {} registers with proof of possession: unsigned registration refused",
                    known.unwrap_or(0)
                ));
            }
            return Ok(None);
        }
        let now_s = ctx.now_ms / 1000;
        if proof.timestamp.abs_diff(now_s) > PROOF_WINDOW_SECS {
            return Err(format!(
                "register: timestamp {} is not within {PROOF_WINDOW_SECS} s of the registry's clock ({now_s})",
                proof.timestamp
            ));
        }
        if proof.timestamp <= last {
            return Err("register: signature replayed or older than the last registration".into());
        }
        let challenge = format!("register:{public_key}:{}", proof.timestamp);
        self.verifier
            .verify(key, &challenge, proof.signature)
            .map_err(|e| auth_err("register", e))?;
        Ok(Some(proof.timestamp))
    }

    fn rotate_key(
        &mut self,
        id: u32,
        signature: &str,
        new_key: &str,
        ctx: &Ctx,
        out: &mut Vec<Change>,
    ) -> HResult {
        if signature.is_empty() {
            return Err("rotate_key requires a signature".into());
        }
        if new_key.is_empty() {
            return Err("rotate_key requires new_public_key".into());
        }
        let key =
            decode_key(new_key).ok_or("invalid new_public_key: must be base64 of 32 bytes")?;
        self.verify(id, &format!("rotate:{id}"), signature)?;
        if let Some(other) = self.data.key_idx.get(&key) {
            if *other != id {
                return Err(format!("public key already belongs to node {other}"));
            }
        }
        let mut node = self.live(id)?.clone();
        let old = super::auth::encode_key(&node.key);
        self.apply(out, Change::Key { key: old, id: None });
        self.apply(
            out,
            Change::Key {
                key: new_key.to_string(),
                id: Some(id),
            },
        );
        node.key = key;
        node.last_seen_ms = ctx.now_ms;
        self.put_node(out, id, &node);
        let mut r = reply("rotate_key");
        r.insert("node_id".into(), json!(id));
        r.insert("address".into(), json!(address(id)));
        r.insert("public_key".into(), json!(new_key));
        Ok(r)
    }

    fn lookup(&self, id: u32) -> HResult {
        let n = self.live(id)?;
        let mut nets = vec![0u16];
        nets.extend_from_slice(&n.networks);
        let mut r = reply("lookup");
        r.insert("node_id".into(), json!(id));
        r.insert("address".into(), json!(address(id)));
        r.insert("networks".into(), json!(nets));
        r.insert("public_key".into(), json!(super::auth::encode_key(&n.key)));
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

    fn pending_room(
        &self,
        map: &BTreeMap<(u32, u32), u64>,
        to: u32,
        from: u32,
    ) -> Result<(), String> {
        if map.contains_key(&(to, from)) || Data::count_to(map, to) < self.cfg.max_pending_per_node
        {
            Ok(())
        } else {
            Err(format!("too many pending trust requests for node {to}"))
        }
    }

    /// a trust pair needs both sides. A report records a wish; the pair forms when the
    /// peer wishes too (its own report, its handshake request, or its accepting response).
    fn report_trust(
        &mut self,
        a: u32,
        b: u32,
        signature: &str,
        ctx: &Ctx,
        out: &mut Vec<Change>,
    ) -> HResult {
        self.verify(a, &format!("report_trust:{a}:{b}"), signature)?;
        self.live(b)?;
        self.counters.trust_reports += 1;
        let trusted = self.wish(a, b, ctx, out)?;
        let mut r = reply("report_trust");
        r.insert("trusted".into(), json!(trusted));
        Ok(r)
    }

    /// Records that `from` wants trust with `to`; forms the pair if `to` wants it too.
    /// Returns whether the pair exists afterwards.
    fn wish(
        &mut self,
        from: u32,
        to: u32,
        ctx: &Ctx,
        out: &mut Vec<Change>,
    ) -> Result<bool, String> {
        let (a, b) = pair(from, to);
        if self.data.trust.contains(&(a, b)) {
            return Ok(true);
        }
        if from == to || self.data.intents.contains_key(&(from, to)) {
            self.apply(out, Change::Trust { a, b, on: true });
            self.apply(
                out,
                Change::Intent {
                    from: to,
                    to: from,
                    until_ms: None,
                },
            );
            self.apply(
                out,
                Change::Intent {
                    from,
                    to,
                    until_ms: None,
                },
            );
            return Ok(true);
        }
        self.pending_room(&self.data.intents, to, from)?;
        self.apply(
            out,
            Change::Intent {
                from,
                to,
                until_ms: Some(ctx.now_ms + self.cfg.relay_ttl_ms),
            },
        );
        Ok(false)
    }

    fn forget_wishes(&mut self, out: &mut Vec<Change>, x: u32, y: u32) {
        for (from, to) in [(x, y), (y, x)] {
            if self.data.intents.contains_key(&(to, from)) {
                self.apply(
                    out,
                    Change::Intent {
                        from,
                        to,
                        until_ms: None,
                    },
                );
            }
            if self.data.asks.contains_key(&(to, from)) {
                self.apply(
                    out,
                    Change::Ask {
                        from,
                        to,
                        until_ms: None,
                    },
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn request_handshake(
        &mut self,
        from: u32,
        to: u32,
        justification: &str,
        signature: &str,
        ctx: &Ctx,
        out: &mut Vec<Change>,
        pushes: &mut Vec<Push>,
    ) -> HResult {
        self.verify(from, &format!("handshake:{from}:{to}"), signature)?;
        self.live(to)?;
        let queued = self.data.inbox.get(&to).map(|i| &i.requests);
        if queued.is_some_and(|q| q.iter().any(|e| e.from == from)) {
            return Err(format!(
                "handshake request from {from} already pending for {to}"
            ));
        }
        if queued.is_some_and(|q| q.len() >= MAX_REQUESTS) {
            return Err(format!("handshake inbox of node {to} is full"));
        }
        self.pending_room(&self.data.asks, to, from)?;
        let until = ctx.now_ms + self.cfg.relay_ttl_ms;
        self.apply(
            out,
            Change::Ask {
                from,
                to,
                until_ms: Some(until),
            },
        );
        if !self.data.trust.contains(&pair(from, to)) {
            self.wish(from, to, ctx, out)?;
        }
        let entry = HsRequest {
            from,
            justification: justification.to_string(),
            at_ms: ctx.now_ms,
        };
        if self.subscribed.contains_key(&to) {
            pushes.push(Push {
                to,
                event: event("handshake_request", request_entry(&entry), entry.at_ms),
            });
        } else {
            self.apply(out, Change::Request { to, entry });
        }
        self.counters.handshake_requests += 1;
        let mut r = reply("request_handshake");
        r.insert("status".into(), json!("delivered"));
        Ok(r)
    }

    /// a response is accepted only for a request the peer actually made (and still has
    /// outstanding); the accept then forms the pair, since both sides have now agreed.
    #[allow(clippy::too_many_arguments)]
    fn respond_handshake(
        &mut self,
        b: u32,
        a: u32,
        accept: bool,
        signature: &str,
        ctx: &Ctx,
        out: &mut Vec<Change>,
        pushes: &mut Vec<Push>,
    ) -> HResult {
        self.verify(b, &format!("respond:{b}:{a}"), signature)?;
        self.live(a)?;
        if !self.data.asks.contains_key(&(b, a)) {
            return Err(format!(
                "no pending handshake request from node {a} to node {b}"
            ));
        }
        self.apply(
            out,
            Change::Ask {
                from: a,
                to: b,
                until_ms: None,
            },
        );
        // Take back an undelivered request: it has been answered.
        if let Some(inbox) = self.data.inbox.get(&b) {
            if inbox.requests.iter().any(|e| e.from == a) {
                let mut keep = inbox.clone();
                keep.requests.retain(|e| e.from != a);
                self.apply(out, Change::Drain { node: b });
                for entry in keep.requests {
                    self.apply(out, Change::Request { to: b, entry });
                }
                for entry in keep.responses {
                    self.apply(out, Change::Response { to: b, entry });
                }
            }
        }
        if accept {
            let (x, y) = pair(a, b);
            if !self.data.trust.contains(&(x, y)) {
                self.apply(
                    out,
                    Change::Trust {
                        a: x,
                        b: y,
                        on: true,
                    },
                );
            }
            self.forget_intents(out, a, b);
        } else {
            self.forget_intents(out, a, b);
        }
        let entry = HsResponse {
            from: b,
            accept,
            at_ms: ctx.now_ms,
        };
        if self.subscribed.contains_key(&a) {
            pushes.push(Push {
                to: a,
                event: event("handshake_response", response_entry(&entry), entry.at_ms),
            });
        } else {
            self.apply(out, Change::Response { to: a, entry });
        }
        let mut r = reply("respond_handshake");
        r.insert("accept".into(), json!(accept));
        r.insert("peer_id".into(), json!(a));
        Ok(r)
    }

    fn forget_intents(&mut self, out: &mut Vec<Change>, x: u32, y: u32) {
        for (from, to) in [(x, y), (y, x)] {
            if self.data.intents.contains_key(&(to, from)) {
                self.apply(
                    out,
                    Change::Intent {
                        from,
                        to,
                        until_ms: None,
                    },
                );
            }
        }
    }

    fn flush_to_subscriber(&mut self, node: u32, out: &mut Vec<Change>, pushes: &mut Vec<Push>) {
        let Some(inbox) = self.data.inbox.get(&node).cloned() else {
            return;
        };
        self.apply(out, Change::Drain { node });
        for e in &inbox.requests {
            pushes.push(Push {
                to: node,
                event: event("handshake_request", request_entry(e), e.at_ms),
            });
        }
        for e in &inbox.responses {
            pushes.push(Push {
                to: node,
                event: event("handshake_response", response_entry(e), e.at_ms),
            });
        }
    }

    /// A subscription stream of `node` ended.
    pub fn unsubscribe(&mut self, node: u32) {
        if let Some(n) = self.subscribed.get_mut(&node) {
            *n -= 1;
            if *n == 0 {
                self.subscribed.remove(&node);
            }
        }
    }

    /// Puts back pushed events that could not be written (the stream broke), so the node gets
    /// them by its next poll or subscription.
    pub fn requeue(&mut self, events: &[Push]) -> Vec<Change> {
        let mut out = Vec::new();
        for p in events {
            let at_ms = p
                .event
                .get("timestamp_ms")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let from = p
                .event
                .get("from_node_id")
                .and_then(Value::as_u64)
                .unwrap_or(0) as u32;
            let change = match p.event.get("type").and_then(Value::as_str) {
                Some("handshake_request") => Change::Request {
                    to: p.to,
                    entry: HsRequest {
                        from,
                        justification: p
                            .event
                            .get("justification")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        at_ms,
                    },
                },
                _ => Change::Response {
                    to: p.to,
                    entry: HsResponse {
                        from,
                        accept: p
                            .event
                            .get("accept")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                        at_ms,
                    },
                },
            };
            self.apply(&mut out, change);
        }
        out
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

fn addr_text(addr: Option<SocketAddr>) -> String {
    addr.map(|a| a.to_string()).unwrap_or_default()
}

fn polo_reply(kind: &str, id: u32, score: i64) -> Object {
    let mut r = reply(kind);
    r.insert("node_id".into(), json!(id));
    r.insert("address".into(), json!(address(id)));
    r.insert("polo_score".into(), json!(score));
    r
}

fn request_entry(e: &HsRequest) -> Value {
    json!({"from_node_id": e.from, "justification": e.justification, "timestamp": e.at_ms / 1000})
}

fn response_entry(e: &HsResponse) -> Value {
    json!({"from_node_id": e.from, "accept": e.accept, "timestamp": e.at_ms / 1000})
}

/// A push event: the queue entry's fields plus `type` and the exact `timestamp_ms` (so a
/// failed push can be re-queued unchanged).
fn event(kind: &str, entry: Value, at_ms: u64) -> Object {
    let Value::Object(mut o) = entry else {
        return Object::new();
    };
    o.insert("type".into(), json!(kind));
    o.insert("timestamp_ms".into(), json!(at_ms));
    o
}
