//! The script's actions. One variant per verb; new components add variants.

use super::duration::Dur;
use super::{invalid, ScenarioError};
use crate::world::LinkFaults;
use serde::Deserialize;

/// One step of a scenario's script, written `[[action]] do = "..."`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Action {
    /// Binds a UDP socket named `socket` on `host` (port 0 or absent: an ephemeral port).
    Bind {
        /// The host.
        host: String,
        /// A name for the socket, unique in the scenario.
        socket: String,
        /// The port.
        #[serde(default)]
        port: u16,
    },
    /// Sends the text `tag` as one datagram from `socket`, either `to` an address
    /// (`"host:port"`, the host's public address; or `"ip:port"`), or back to the source from
    /// which the probe tagged `reply_to` was received.
    Send {
        /// The socket to send from.
        socket: String,
        /// `"host:port"` or `"ip:port"`.
        to: Option<String>,
        /// The tag of an earlier probe whose observed source is the destination.
        reply_to: Option<String>,
        /// The payload, which identifies the probe in expectations.
        tag: String,
    },
    /// Lets simulated time pass: `for` a duration, or `until` a time since the start.
    Wait {
        /// How long.
        #[serde(rename = "for")]
        duration: Option<Dur>,
        /// Until when.
        until: Option<Dur>,
    },
    /// Stops a host's (or NAT box's) software; its sockets and mappings are lost.
    Crash {
        /// The host.
        host: String,
    },
    /// Starts a host's software again (from scratch: sockets must be bound anew).
    Restart {
        /// The host.
        host: String,
    },
    /// Cuts the link between two nodes: both ways, or only from the first to the second.
    Partition {
        /// The two nodes.
        between: [String; 2],
        /// Only from `between[0]` to `between[1]`.
        #[serde(default)]
        oneway: bool,
    },
    /// Restores the link between two nodes, both ways.
    Heal {
        /// The two nodes.
        between: [String; 2],
    },
    /// Sets the faults of a link from now on (replacing earlier ones).
    SetLink(LinkSpec),
}

/// Faults on the link between two nodes that exchange traffic directly (a host and its NAT
/// box, two public nodes, two hosts on one LAN).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// The two nodes.
    pub between: [String; 2],
    /// Fixed one-way latency (turmoil's; applies to UDP and TCP).
    pub latency: Option<Dur>,
    /// Extra delay drawn uniformly from 0 to this, per datagram.
    pub jitter: Option<Dur>,
    /// Probability a datagram is lost.
    #[serde(default)]
    pub loss: f64,
    /// Probability a datagram is delivered twice.
    #[serde(default)]
    pub duplicate: f64,
    /// Probability a datagram is held back 10 ms, so later ones overtake it.
    #[serde(default)]
    pub reorder: f64,
}

impl LinkSpec {
    /// The fabric's part of the faults.
    pub fn faults(&self) -> LinkFaults {
        LinkFaults {
            loss: self.loss,
            duplicate: self.duplicate,
            reorder: self.reorder,
            jitter: self.jitter.map(|d| d.0).unwrap_or_default(),
        }
    }

    pub(super) fn check(&self) -> Result<(), ScenarioError> {
        for (name, p) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(invalid(
                    format!("link {:?}: {name} = {p} is not a probability", self.between),
                    "use a number between 0.0 and 1.0",
                ));
            }
        }
        if self.between[0] == self.between[1] {
            return Err(invalid(
                format!("link {:?} joins a node to itself", self.between),
                "name two different nodes",
            ));
        }
        Ok(())
    }
}

impl Action {
    /// The verb, as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Bind { .. } => "bind",
            Action::Send { .. } => "send",
            Action::Wait { .. } => "wait",
            Action::Crash { .. } => "crash",
            Action::Restart { .. } => "restart",
            Action::Partition { .. } => "partition",
            Action::Heal { .. } => "heal",
            Action::SetLink(_) => "set-link",
        }
    }

    /// Names that must be hosts (not NAT boxes).
    pub(super) fn hosts(&self) -> Vec<&str> {
        match self {
            Action::Bind { host, .. } => vec![host],
            _ => vec![],
        }
    }

    /// Names that must be hosts or NAT boxes.
    pub(super) fn nodes(&self) -> Vec<&str> {
        match self {
            Action::Crash { host } | Action::Restart { host } => vec![host],
            Action::Partition { between, .. } | Action::Heal { between } => {
                between.iter().map(String::as_str).collect()
            }
            Action::SetLink(l) => l.between.iter().map(String::as_str).collect(),
            _ => vec![],
        }
    }

    pub(super) fn check(&self, what: &str) -> Result<(), ScenarioError> {
        match self {
            Action::Send {
                to, reply_to, tag, ..
            } => {
                if to.is_some() == reply_to.is_some() {
                    return Err(invalid(
                        format!("{what}: give exactly one of `to` and `reply_to`"),
                        "to = \"server:7000\" sends to a host's public address; reply_to = \"p1\" answers probe p1's source",
                    ));
                }
                if tag.is_empty() {
                    return Err(invalid(
                        format!("{what}: the tag is empty"),
                        "tag = \"p1\" names the probe for expectations",
                    ));
                }
                Ok(())
            }
            Action::Wait { duration, until } if duration.is_some() == until.is_some() => {
                Err(invalid(
                    format!("{what}: give exactly one of `for` and `until`"),
                    "for = \"100ms\" waits that long; until = \"35s\" waits until that time",
                ))
            }
            Action::Partition { between, .. } | Action::Heal { between }
                if between[0] == between[1] =>
            {
                Err(invalid(
                    format!("{what}: names the same node twice"),
                    "name two different nodes",
                ))
            }
            Action::SetLink(l) => l.check(),
            _ => Ok(()),
        }
    }
}
