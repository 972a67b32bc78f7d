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
            Expectation::TraceContains { .. } => vec![],
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
    pub(crate) fn judge(
        &self,
        obs: &[Observation],
        trace: &[String],
        world: &World,
    ) -> CheckResult {
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
        };
        CheckResult {
            description,
            passed,
            detail,
        }
    }
}
