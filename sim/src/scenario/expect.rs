//! What must hold when a scenario ends, and how each expectation is judged.

use super::{invalid, ScenarioError};
use crate::world::World;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// One expectation, written `[[expect]] check = "..."`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "check", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Expectation {
    /// `socket` received the probe `tag` at least once, or exactly `count` times.
    Received {
        /// The receiving socket.
        socket: String,
        /// The probe.
        tag: String,
        /// Exact number of copies.
        count: Option<usize>,
    },
    /// `socket` never received the probe `tag`.
    NotReceived {
        /// The socket.
        socket: String,
        /// The probe.
        tag: String,
    },
    /// The probes `tags` were all seen coming from one source address (first copy of each).
    SameSource {
        /// The probes.
        tags: Vec<String>,
    },
    /// The probes `tags` were seen from pairwise different source addresses.
    DifferentSource {
        /// The probes.
        tags: Vec<String>,
    },
    /// The probe `tag` was seen from the public address of `host` and/or from `port`.
    Source {
        /// The probe.
        tag: String,
        /// The node whose public address the source must have.
        host: Option<String>,
        /// The source port.
        port: Option<u16>,
    },
    /// `socket` received the probes `tags` in this order (first copy of each).
    ArrivalOrder {
        /// The socket.
        socket: String,
        /// The probes in expected order.
        tags: Vec<String>,
    },
    /// Some trace line contains `text`.
    TraceContains {
        /// The text.
        text: String,
    },
    /// The registry's reply tagged `tag` arrived and says what is given: success or an error
    /// (containing `error`), a node ID (or the one of reply `same_node_as`), an endpoint
    /// (`real_addr = "home:4000"`: that node's public address and port), or some text.
    Reply {
        /// The reply.
        tag: String,
        /// Success (`true`) or an error reply (`false`).
        ok: Option<bool>,
        /// Text the error must contain (implies `ok = false`).
        error: Option<String>,
        /// The node ID the reply must carry.
        node_id: Option<u32>,
        /// Another reply whose node ID this one must carry.
        same_node_as: Option<String>,
        /// The endpoint the reply's `real_addr` must be: `"host:port"` or `"ip:port"`.
        real_addr: Option<String>,
        /// Text the reply (compact JSON) must contain.
        contains: Option<String>,
    },
    /// When the run ends, daemon `host` reaches daemon `peer` on this path: `direct` (a direct
    /// endpoint to a peer whose NATs admit unsolicited traffic), `punched` (a direct endpoint
    /// to a peer behind a filtering NAT, which the beacon's Punch Command reached), `relayed`
    /// (through the beacon).
    Path {
        /// The daemon host.
        host: String,
        /// The peer daemon host.
        peer: String,
        /// `direct`, `punched` or `relayed`.
        path: PathKind,
    },
    /// Daemon `host`'s tunnel holds nothing for `peer` when the run ends (never contacted, or
    /// forgotten after `peer_idle_expiry` without data).
    NoPeer {
        /// The daemon host.
        host: String,
        /// The peer daemon host.
        peer: String,
    },
    /// The echo exchange `tag` completed (every byte came back unaltered).
    Echoed {
        /// The exchange.
        tag: String,
    },
    /// The echo exchange `tag` failed, with an error containing `error`.
    EchoFailed {
        /// The exchange.
        tag: String,
        /// Text the error must contain.
        error: String,
    },
    /// Every byte the echo exchange `tag` brought back was the byte sent at that position:
    /// the stream may have failed, but never delivered altered or reordered data.
    EchoIntact {
        /// The exchange.
        tag: String,
    },
    /// The echo exchange `tag` ended, completed or failed with an error, before the
    /// harness's own timeout: the stream did not hang.
    EchoEnded {
        /// The exchange.
        tag: String,
    },
    /// The echo exchange `tag` got no byte back (its sender is not trusted by the peer, so
    /// no port but the handshake port may answer it).
    NotEchoed {
        /// The exchange.
        tag: String,
    },
    /// Every datagram of send `tag` that arrived was handed over intact, on the port it was
    /// sent to, from its sender (datagrams may be lost); and at least `at_least` (default 0)
    /// of them arrived. Any datagram the receiver got on a listening port that is not a
    /// datagram some send sent, intact, also fails it.
    DatagramsIntact {
        /// The send.
        tag: String,
        /// How many must arrive.
        #[serde(default)]
        at_least: u32,
    },
    /// No datagram of send `tag` was handed to the receiver (its sender is not trusted, so no
    /// port but the handshake port takes its datagrams).
    NoDatagrams {
        /// The send.
        tag: String,
    },
    /// The receiver's mailbox holds send `tag` with identical bytes when the run ends.
    Delivered {
        /// The send.
        tag: String,
    },
    /// The receiver's mailbox holds nothing of send `tag` (no entry of its name or content).
    NotDelivered {
        /// The send.
        tag: String,
    },
    /// The sender of `tag` got an ACK naming the frame's type and counting its bytes.
    Acked {
        /// The send.
        tag: String,
    },
    /// The sender of `tag` was not told it was stored: no ACK reached it.
    NotAcked {
        /// The send.
        tag: String,
    },
    /// Every send whose sender saw an ACK (to `to`, or to anyone) is in its receiver's store
    /// with identical bytes, whatever crashed and restarted; no sender was told "stored" by
    /// an ACK that does not match its frame; and at least one send was ACKed.
    AckedKept {
        /// Only sends to this daemon host.
        to: Option<String>,
    },
    /// Subscription `tag` received exactly the events carrying `texts`, in order (a connected
    /// subscriber gets every event published after it subscribed).
    Events {
        /// The subscription.
        tag: String,
        /// The payloads, in order.
        texts: Vec<String>,
    },
    /// Daemon `host`'s copy of task `tag` (the submitter's or the receiver's) has `status`
    /// when the run ends.
    TaskStatus {
        /// The submitter or the receiver.
        host: String,
        /// The task.
        tag: String,
        /// NEW, ACCEPTED, DECLINED, EXECUTING, SUCCEEDED, COMPLETED, CANCELLED or EXPIRED.
        status: String,
    },
    /// The submitter of task `tag` stored `text` as its results.
    TaskResults {
        /// The task.
        tag: String,
        /// The results.
        text: String,
    },
    /// The registries of `hosts` hold the same directory when the run ends: the same nodes
    /// (key, endpoint, visibility, hostname), trust pairs and next node ID.
    SameState {
        /// Rendezvous hosts.
        hosts: Vec<String>,
    },
}

/// How one daemon reaches another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    /// A direct endpoint, reached without a punch.
    Direct,
    /// A direct endpoint, after a hole punch.
    Punched,
    /// Through the beacon's relay.
    Relayed,
    /// A direct endpoint on the peer's private address, behind a NAT both share (a LAN
    /// candidate it announced).
    Lan,
}

impl std::fmt::Display for PathKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathKind::Direct => "direct",
            PathKind::Punched => "punched",
            PathKind::Relayed => "relayed",
            PathKind::Lan => "lan",
        })
    }
}

/// The path daemon `host` uses to `peer` when the run ends, from its info document and the
/// trace; `None` when it has no route.
pub(crate) fn observed_path(ev: &Evidence<'_>, host: &str, peer: &str) -> Option<PathKind> {
    let peer_id = ev.node_ids.get(peer)?;
    let info = ev.daemon_info.get(host)?;
    let entry = info["peer_list"]
        .as_array()?
        .iter()
        .find(|p| p["node_id"] == *peer_id)?;
    match entry["endpoint"].as_str()? {
        "" => None,
        "relay" => Some(PathKind::Relayed),
        endpoint if on_private_address(ev.world, peer, endpoint) => Some(PathKind::Lan),
        _ => {
            // Direct, or punched: the peer sits behind a NAT that filters unsolicited
            // traffic, and the beacon's Punch Command reached it (so it opened its filter).
            let punch_seen = ev.trace.iter().any(|l| {
                let mut cols = l.split_whitespace().skip(1);
                cols.next() == Some(peer)
                    && cols.next() == Some("recv")
                    && l.contains("beacon PunchCommand")
            });
            if filters_unsolicited(ev.world, peer) {
                punch_seen.then_some(PathKind::Punched)
            } else {
                Some(PathKind::Direct)
            }
        }
    }
}

/// Whether `endpoint` is `host`'s own address behind a NAT box (only a neighbour reaches it).
fn on_private_address(world: &World, host: &str, endpoint: &str) -> bool {
    let Some(id) = world.find(host) else {
        return false;
    };
    let node = world.node(id);
    world.gateway(node.net).is_some()
        && endpoint
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip() == std::net::IpAddr::V4(node.addr))
}

/// Whether some NAT box between `host` and the internet drops unsolicited inbound traffic
/// (filtering other than endpoint-independent).
pub(crate) fn filters_unsolicited(world: &World, host: &str) -> bool {
    let Some(mut id) = world.find(host) else {
        return false;
    };
    loop {
        let node = world.node(id);
        let Some(gateway) = world.gateway(node.net) else {
            return false;
        };
        let side = world.node(gateway).nat.as_ref();
        if side.is_some_and(|s| s.config.filtering != crate::nat::Filtering::EndpointIndependent) {
            return true;
        }
        id = gateway;
    }
}

/// When `host` crashed at or after `at`, as the trace's runner notes say (the time column as
/// written).
fn crashed_after<'t>(trace: &'t [String], host: &str, at: Duration) -> Option<&'t str> {
    trace.iter().find_map(|l| {
        let mut cols = l.split_whitespace();
        let time = cols.next()?;
        let seen = (cols.next()? == host)
            && cols.next()? == "note"
            && cols.next()?.starts_with("crash")
            && time.parse::<f64>().is_ok_and(|t| t >= at.as_secs_f64());
        seen.then_some(time)
    })
}

/// One reply of a registry request (or the reason there was none).
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    /// The tag, if the action gave one.
    pub tag: Option<String>,
    /// The action's number in the script.
    pub action: usize,
    /// What was asked, in words.
    pub what: String,
    /// When the reply arrived.
    pub at: Duration,
    /// The reply object, or why there is none (an error reply, a timeout, ...).
    pub result: Result<serde_json::Map<String, serde_json::Value>, String>,
}

/// Everything a run leaves for the expectations to judge.
pub(crate) struct Evidence<'a> {
    pub observations: &'a [Observation],
    pub replies: &'a [Reply],
    /// Each rendezvous host's directory digest at the end (`None`: not running).
    pub states: &'a std::collections::BTreeMap<String, Option<String>>,
    pub trace: &'a [String],
    pub world: &'a World,
    /// Each daemon host's info document at the end.
    pub daemon_info: &'a std::collections::BTreeMap<String, serde_json::Value>,
    /// Node IDs by identity or daemon host name.
    pub node_ids: &'a std::collections::BTreeMap<String, u32>,
    /// Echo exchanges.
    pub echoes: &'a [super::daemon::EchoResult],
    /// Echo exchanges as their daemons took them on: tag, daemon host, when.
    pub echoes_issued: &'a [(String, String, Duration)],
    /// Data-exchange sends as the script asked for them, in script order.
    pub plans: &'a [super::exchange::SendPlan],
    /// What each sender saw.
    pub sends: &'a [super::exchange::SendRecord],
    /// Where each send ended up in its receiver's store, by tag.
    pub located: &'a std::collections::BTreeMap<String, super::exchange::Located>,
    /// What each subscription received, by tag.
    pub subscriptions: &'a std::collections::BTreeMap<String, super::pubsub::SubscriptionRecord>,
    /// How each task ended on both sides, by tag.
    pub tasks: &'a std::collections::BTreeMap<String, super::services::TaskEnd>,
    /// Datagram sends as the script asked for them, in script order.
    pub datagram_plans: &'a [super::datagram::DatagramPlan],
    /// Datagrams as the receiving daemons handed them over.
    pub datagrams: &'a [super::datagram::DatagramRecord],
}

/// One received probe.
#[derive(Clone, Debug)]
pub(crate) struct Observation {
    pub socket: String,
    pub tag: String,
    pub from: SocketAddr,
    pub at: Duration,
}

/// The verdict on one expectation (or a failed action).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CheckResult {
    /// What was expected, in words.
    pub description: String,
    /// Whether it held.
    pub passed: bool,
    /// What was observed.
    pub detail: String,
}

impl Expectation {
    /// The check's name, as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Expectation::Received { .. } => "received",
            Expectation::NotReceived { .. } => "not-received",
            Expectation::SameSource { .. } => "same-source",
            Expectation::DifferentSource { .. } => "different-source",
            Expectation::Source { .. } => "source",
            Expectation::ArrivalOrder { .. } => "arrival-order",
            Expectation::TraceContains { .. } => "trace-contains",
            Expectation::Reply { .. } => "reply",
            Expectation::SameState { .. } => "same-state",
            Expectation::Path { .. } => "path",
            Expectation::Echoed { .. } => "echoed",
            Expectation::EchoFailed { .. } => "echo-failed",
            Expectation::EchoIntact { .. } => "echo-intact",
            Expectation::EchoEnded { .. } => "echo-ended",
            Expectation::NotEchoed { .. } => "not-echoed",
            Expectation::DatagramsIntact { .. } => "datagrams-intact",
            Expectation::NoDatagrams { .. } => "no-datagrams",
            Expectation::NoPeer { .. } => "no-peer",
            Expectation::Delivered { .. } => "delivered",
            Expectation::NotDelivered { .. } => "not-delivered",
            Expectation::Acked { .. } => "acked",
            Expectation::NotAcked { .. } => "not-acked",
            Expectation::AckedKept { .. } => "acked-kept",
            Expectation::Events { .. } => "events",
            Expectation::TaskStatus { .. } => "task-status",
            Expectation::TaskResults { .. } => "task-results",
        }
    }

    /// The send tag the expectation names.
    pub(super) fn send(&self) -> Option<&str> {
        match self {
            Expectation::Delivered { tag }
            | Expectation::NotDelivered { tag }
            | Expectation::Acked { tag }
            | Expectation::NotAcked { tag } => Some(tag),
            _ => None,
        }
    }

    /// Reply tags the expectation names.
    pub(super) fn replies(&self) -> Vec<&str> {
        match self {
            Expectation::Reply {
                tag, same_node_as, ..
            } => std::iter::once(tag)
                .chain(same_node_as)
                .map(String::as_str)
                .collect(),
            _ => vec![],
        }
    }

    /// Hosts that must run a registry.
    pub(super) fn rendezvous(&self) -> Vec<&str> {
        match self {
            Expectation::SameState { hosts } => hosts.iter().map(String::as_str).collect(),
            _ => vec![],
        }
    }

    /// Hosts that must run a daemon.
    pub(super) fn daemons(&self) -> Vec<&str> {
        match self {
            Expectation::Path { host, peer, .. } | Expectation::NoPeer { host, peer } => {
                vec![host, peer]
            }
            Expectation::AckedKept { to: Some(to) } => vec![to],
            Expectation::TaskStatus { host, .. } => vec![host],
            _ => vec![],
        }
    }

    pub(super) fn sockets(&self) -> Vec<&str> {
        match self {
            Expectation::Received { socket, .. }
            | Expectation::NotReceived { socket, .. }
            | Expectation::ArrivalOrder { socket, .. } => vec![socket],
            _ => vec![],
        }
    }

    pub(super) fn tags(&self) -> Vec<&str> {
        match self {
            Expectation::Received { tag, .. }
            | Expectation::NotReceived { tag, .. }
            | Expectation::Source { tag, .. } => vec![tag],
            Expectation::SameSource { tags }
            | Expectation::DifferentSource { tags }
            | Expectation::ArrivalOrder { tags, .. } => tags.iter().map(String::as_str).collect(),
            Expectation::TraceContains { .. }
            | Expectation::Reply { .. }
            | Expectation::SameState { .. }
            | Expectation::Path { .. }
            | Expectation::NoPeer { .. }
            | Expectation::Echoed { .. }
            | Expectation::EchoFailed { .. }
            | Expectation::EchoIntact { .. }
            | Expectation::EchoEnded { .. }
            | Expectation::NotEchoed { .. }
            | Expectation::DatagramsIntact { .. }
            | Expectation::NoDatagrams { .. }
            | Expectation::Delivered { .. }
            | Expectation::NotDelivered { .. }
            | Expectation::Acked { .. }
            | Expectation::NotAcked { .. }
            | Expectation::AckedKept { .. }
            | Expectation::Events { .. }
            | Expectation::TaskStatus { .. }
            | Expectation::TaskResults { .. } => vec![],
        }
    }

    pub(super) fn nodes(&self) -> Vec<&str> {
        match self {
            Expectation::Source { host: Some(h), .. } => vec![h],
            _ => vec![],
        }
    }

    pub(super) fn check(&self, what: &str) -> Result<(), ScenarioError> {
        let few = match self {
            Expectation::SameSource { tags }
            | Expectation::DifferentSource { tags }
            | Expectation::ArrivalOrder { tags, .. } => tags.len() < 2,
            _ => false,
        };
        if few {
            return Err(invalid(
                format!("{what}: needs at least two tags"),
                "tags = [\"p1\", \"p2\"]",
            ));
        }
        if let Expectation::SameState { hosts } = self {
            if hosts.len() < 2 {
                return Err(invalid(
                    format!("{what}: needs at least two hosts"),
                    "hosts = [\"rdv\", \"standby\"]",
                ));
            }
        }
        if let Expectation::Reply {
            ok,
            error,
            node_id,
            same_node_as,
            real_addr,
            contains,
            ..
        } = self
        {
            if ok.is_none()
                && error.is_none()
                && node_id.is_none()
                && same_node_as.is_none()
                && real_addr.is_none()
                && contains.is_none()
            {
                return Err(invalid(
                    format!("{what}: says nothing about the reply"),
                    "add ok = true, error = \"...\", node_id, same_node_as, real_addr or contains",
                ));
            }
            if *ok == Some(true) && error.is_some() {
                return Err(invalid(
                    format!("{what}: ok = true contradicts error = ..."),
                    "an error reply is not ok: drop one of them",
                ));
            }
        }
        if let Expectation::Source {
            host: None,
            port: None,
            ..
        } = self
        {
            return Err(invalid(
                format!("{what}: says nothing about the source"),
                "add host = \"nat-a\" and/or port = 4000",
            ));
        }
        Ok(())
    }

    /// Judges the expectation against what was observed.
    pub(crate) fn judge(&self, ev: &Evidence<'_>) -> CheckResult {
        let (obs, trace, world) = (ev.observations, ev.trace, ev.world);
        let first = |tag: &str| obs.iter().find(|o| o.tag == tag);
        let on = |socket: &str, tag: &str| {
            obs.iter()
                .filter(|o| o.socket == socket && o.tag == tag)
                .count()
        };
        let sources = |tags: &[String]| -> Vec<Option<SocketAddr>> {
            tags.iter().map(|t| first(t).map(|o| o.from)).collect()
        };
        let show = |s: &[Option<SocketAddr>], tags: &[String]| {
            tags.iter()
                .zip(s)
                .map(|(t, a)| match a {
                    Some(a) => format!("{t} from {a}"),
                    None => format!("{t} never arrived"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (description, passed, detail) = match self {
            Expectation::Received { socket, tag, count } => {
                let n = on(socket, tag);
                let at = obs
                    .iter()
                    .find(|o| o.socket == *socket && o.tag == *tag)
                    .map(|o| format!(", first at {}s", crate::trace::fmt_time(o.at)))
                    .unwrap_or_default();
                let passed = match count {
                    Some(c) => n == *c,
                    None => n > 0,
                };
                let want = match count {
                    Some(c) => format!(" {c} time(s)"),
                    None => String::new(),
                };
                (
                    format!("{socket} received {tag:?}{want}"),
                    passed,
                    format!("received {n} time(s){at}"),
                )
            }
            Expectation::NotReceived { socket, tag } => {
                let n = on(socket, tag);
                (
                    format!("{socket} did not receive {tag:?}"),
                    n == 0,
                    format!("received {n} time(s)"),
                )
            }
            Expectation::SameSource { tags } => {
                let s = sources(tags);
                let passed = s.iter().all(|a| a.is_some()) && s.windows(2).all(|w| w[0] == w[1]);
                (
                    format!("{} came from the same source", tags.join(", ")),
                    passed,
                    show(&s, tags),
                )
            }
            Expectation::DifferentSource { tags } => {
                let s = sources(tags);
                let mut distinct = s.clone();
                distinct.sort();
                distinct.dedup();
                let passed = s.iter().all(|a| a.is_some()) && distinct.len() == s.len();
                (
                    format!("{} came from different sources", tags.join(", ")),
                    passed,
                    show(&s, tags),
                )
            }
            Expectation::Source { tag, host, port } => {
                let seen = first(tag).map(|o| o.from);
                let want_ip = host
                    .as_ref()
                    .and_then(|h| world.find(h))
                    .map(|id| world.public_addr(id));
                let passed = seen.is_some_and(|a| {
                    want_ip.is_none_or(|ip| a.ip() == ip) && port.is_none_or(|p| a.port() == p)
                });
                let mut want = Vec::new();
                if let Some(h) = host {
                    want.push(format!("{h}'s public address"));
                }
                if let Some(p) = port {
                    want.push(format!("port {p}"));
                }
                let detail = match seen {
                    Some(a) => format!("seen from {a}"),
                    None => "never arrived".to_string(),
                };
                (
                    format!("{tag:?} came from {}", want.join(", ")),
                    passed,
                    detail,
                )
            }
            Expectation::ArrivalOrder { socket, tags } => {
                let mut seen: Vec<&str> = Vec::new();
                for o in obs.iter().filter(|o| o.socket == *socket) {
                    if tags.contains(&o.tag) && !seen.contains(&o.tag.as_str()) {
                        seen.push(&o.tag);
                    }
                }
                (
                    format!("{socket} received {} in that order", tags.join(", ")),
                    seen == *tags,
                    format!("arrival order: {}", seen.join(", ")),
                )
            }
            Expectation::TraceContains { text } => {
                let line = trace.iter().find(|l| l.contains(text.as_str()));
                (
                    format!("the trace contains {text:?}"),
                    line.is_some(),
                    line.map(|l| l.trim().to_string())
                        .unwrap_or_else(|| "no such line".to_string()),
                )
            }
            Expectation::Reply { tag, .. } => {
                let (passed, detail) = self.judge_reply(ev);
                (self.describe_reply(tag), passed, detail)
            }
            Expectation::Path { host, peer, path } => {
                let seen = observed_path(ev, host, peer);
                (
                    format!("{host} reaches {peer} {path}"),
                    seen == Some(*path),
                    match seen {
                        Some(p) => format!("{p}"),
                        None => "no route".to_string(),
                    },
                )
            }
            Expectation::NoPeer { host, peer } => {
                let held = ev.node_ids.get(peer).is_some_and(|id| {
                    ev.daemon_info.get(host).is_some_and(|info| {
                        info["peer_list"]
                            .as_array()
                            .is_some_and(|l| l.iter().any(|p| p["node_id"] == *id))
                    })
                });
                (
                    format!("{host} holds no tunnel state for {peer}"),
                    !held && ev.daemon_info.contains_key(host),
                    match (held, ev.daemon_info.contains_key(host)) {
                        (_, false) => format!("{host} was not running at the end"),
                        (true, _) => format!("{host} still holds {peer} as a tunnel peer"),
                        (false, _) => "no such peer".to_string(),
                    },
                )
            }
            Expectation::Echoed { tag } => {
                let e = ev.echoes.iter().find(|e| e.tag == *tag);
                let passed = e.is_some_and(|e| e.error.is_none() && e.done.is_some());
                (
                    format!("echo {tag:?} completed"),
                    passed,
                    match e {
                        Some(e) => super::daemon::describe_echo(e),
                        None => "never ran".to_string(),
                    },
                )
            }
            Expectation::EchoFailed { tag, error } => {
                let e = ev.echoes.iter().find(|e| e.tag == *tag);
                let passed = e.is_some_and(|e| e.error.as_ref().is_some_and(|m| m.contains(error)));
                (
                    format!("echo {tag:?} failed with {error:?}"),
                    passed,
                    match e {
                        Some(e) => super::daemon::describe_echo(e),
                        None => "never ran".to_string(),
                    },
                )
            }
            Expectation::EchoIntact { tag } => {
                let e = ev.echoes.iter().find(|e| e.tag == *tag);
                let altered = e.is_some_and(|e| e.error.as_deref() == Some(super::daemon::ALTERED));
                (
                    format!("echo {tag:?} brought back only the bytes sent, in order"),
                    !altered,
                    match e {
                        Some(e) => super::daemon::describe_echo(e),
                        None => "never ended".to_string(),
                    },
                )
            }
            Expectation::EchoEnded { tag } => {
                let e = ev.echoes.iter().find(|e| e.tag == *tag);
                // An echo whose own host crashed under it ended with the host.
                let cut = ev
                    .echoes_issued
                    .iter()
                    .find(|(t, _, _)| t == tag)
                    .and_then(|(_, host, at)| crashed_after(ev.trace, host, *at));
                let (ended, detail) = match (e, cut) {
                    (Some(e), _) => (!e.timed_out(), super::daemon::describe_echo(e)),
                    (None, Some(when)) => {
                        (true, format!("cut short by its host's crash at {when}s"))
                    }
                    (None, None) => (false, "still running when the run ended".to_string()),
                };
                (
                    format!("echo {tag:?} completed or failed with an error, without hanging"),
                    ended,
                    detail,
                )
            }
            Expectation::NotEchoed { tag } => {
                let e = ev.echoes.iter().find(|e| e.tag == *tag);
                (
                    format!("echo {tag:?} got no byte back"),
                    e.is_none_or(|e| e.first_byte.is_none()),
                    match e {
                        Some(e) => super::daemon::describe_echo(e),
                        None => "never ended".to_string(),
                    },
                )
            }
            Expectation::DatagramsIntact { tag, at_least } => {
                let plan = ev.datagram_plans.iter().find(|p| p.tag == *tag);
                let from = plan.and_then(|p| ev.node_ids.get(&p.from)).copied();
                let (passed, detail) = super::datagram::judge(ev.datagrams, plan, from, *at_least);
                (
                    format!(
                        "datagrams {tag:?} arrived intact on their ports (at least {at_least})"
                    ),
                    passed,
                    detail,
                )
            }
            Expectation::NoDatagrams { tag } => {
                let plan = ev.datagram_plans.iter().find(|p| p.tag == *tag);
                let got = super::datagram::received(ev.datagrams, plan);
                (
                    format!("no datagram of {tag:?} was handed over"),
                    got == 0,
                    format!("{got} were"),
                )
            }
            Expectation::Delivered { .. }
            | Expectation::NotDelivered { .. }
            | Expectation::Acked { .. }
            | Expectation::NotAcked { .. }
            | Expectation::AckedKept { .. } => super::delivery::judge(self, ev),
            Expectation::Events { .. }
            | Expectation::TaskStatus { .. }
            | Expectation::TaskResults { .. } => super::services::judge(self, ev),
            Expectation::SameState { hosts } => {
                let digests: Vec<_> = hosts
                    .iter()
                    .map(|h| ev.states.get(h).cloned().flatten())
                    .collect();
                let passed =
                    digests.iter().all(Option::is_some) && digests.windows(2).all(|w| w[0] == w[1]);
                let detail = hosts
                    .iter()
                    .zip(&digests)
                    .map(|(h, d)| match d {
                        Some(d) => format!("{h}: {d}"),
                        None => format!("{h}: not running"),
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                (
                    format!("{} hold the same directory", hosts.join(", ")),
                    passed,
                    detail,
                )
            }
        };
        CheckResult {
            description,
            passed,
            detail,
        }
    }
}

impl Expectation {
    fn describe_reply(&self, tag: &str) -> String {
        let Expectation::Reply {
            ok,
            error,
            node_id,
            same_node_as,
            real_addr,
            contains,
            ..
        } = self
        else {
            return String::new();
        };
        let mut want = Vec::new();
        match (ok, error) {
            (_, Some(e)) => want.push(format!("an error containing {e:?}")),
            (Some(true), None) => want.push("success".to_string()),
            (Some(false), None) => want.push("an error".to_string()),
            (None, None) => {}
        }
        if let Some(id) = node_id {
            want.push(format!("node {id}"));
        }
        if let Some(other) = same_node_as {
            want.push(format!("the node of {other:?}"));
        }
        if let Some(a) = real_addr {
            want.push(format!("real_addr {a}"));
        }
        if let Some(c) = contains {
            want.push(format!("text {c:?}"));
        }
        format!("reply {tag:?} is {}", want.join(", "))
    }

    fn judge_reply(&self, ev: &Evidence<'_>) -> (bool, String) {
        let Expectation::Reply {
            tag,
            ok,
            error,
            node_id,
            same_node_as,
            real_addr,
            contains,
        } = self
        else {
            return (false, String::new());
        };
        let find = |t: &str| ev.replies.iter().find(|r| r.tag.as_deref() == Some(t));
        let Some(reply) = find(tag) else {
            return (false, "no reply arrived".to_string());
        };
        let shown = format!("#{} {}: {}", reply.action, reply.what, show_reply(reply));
        let body = match &reply.result {
            Err(e) => {
                let passed = *ok != Some(true)
                    && error.as_ref().is_none_or(|want| e.contains(want.as_str()))
                    && node_id.is_none()
                    && same_node_as.is_none()
                    && real_addr.is_none()
                    && contains.as_ref().is_none_or(|c| e.contains(c.as_str()));
                return (passed, shown);
            }
            Ok(body) => body,
        };
        if *ok == Some(false) || error.is_some() {
            return (false, shown);
        }
        let id_of = |b: &serde_json::Map<String, serde_json::Value>| {
            b.get("node_id").and_then(serde_json::Value::as_u64)
        };
        if let Some(want) = node_id {
            if id_of(body) != Some(u64::from(*want)) {
                return (false, shown);
            }
        }
        if let Some(other) = same_node_as {
            let theirs = find(other)
                .and_then(|r| r.result.as_ref().ok())
                .and_then(id_of);
            if theirs.is_none() || theirs != id_of(body) {
                let why = match theirs {
                    Some(id) => format!("{other:?} carried node {id}"),
                    None => format!("{other:?} carried no node ID"),
                };
                return (false, format!("{shown}; {why}"));
            }
        }
        if let Some(target) = real_addr {
            let want = match super::run::resolve(ev.world, target) {
                Ok(a) => a.to_string(),
                Err(e) => return (false, e),
            };
            let seen = body.get("real_addr").and_then(serde_json::Value::as_str);
            if seen != Some(want.as_str()) {
                return (false, format!("{shown}; expected real_addr {want}"));
            }
        }
        if let Some(c) = contains {
            if !serde_json::Value::Object(body.clone())
                .to_string()
                .contains(c.as_str())
            {
                return (false, shown);
            }
        }
        (true, shown)
    }
}

/// A reply in one line, for results: when it came, then the JSON (abbreviated) or the error.
pub(crate) fn show_reply(reply: &Reply) -> String {
    format!(
        "at {}s: {}",
        crate::trace::fmt_time(reply.at),
        reply_body(reply)
    )
}

/// The reply's JSON (abbreviated) or its error.
pub(crate) fn reply_body(reply: &Reply) -> String {
    match &reply.result {
        Ok(body) => crate::trace::json_line(&serde_json::Value::Object(body.clone())),
        Err(e) => format!("error: {e}"),
    }
}
