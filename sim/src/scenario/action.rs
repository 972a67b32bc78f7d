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
        /// Stop waiting as soon as the echo with this tag has ended (done or failed).
        echo: Option<String>,
        /// Stop waiting as soon as the data-exchange send with this tag has ended.
        send: Option<String>,
        /// Stop waiting as soon as the subscription with this tag has sent its subscribe
        /// frame on an open connection (or failed).
        subscribed: Option<String>,
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
    /// Starts the registry and beacon of a rendezvous host declared with `autostart = false`.
    #[serde(alias = "registry_start")]
    RegistryStart {
        /// The rendezvous host.
        host: String,
    },
    /// Crashes a rendezvous host: its software stops, and its storage keeps only what was
    /// durable (as `crash` does to any rendezvous host).
    #[serde(alias = "registry_crash")]
    RegistryCrash {
        /// The rendezvous host.
        host: String,
    },
    /// Restarts a crashed rendezvous host: its registry reopens the same storage.
    #[serde(alias = "registry_restart")]
    RegistryRestart {
        /// The rendezvous host.
        host: String,
    },
    /// Promotes a standby's registry to primary: it stops following and accepts writes.
    #[serde(alias = "registry_promote")]
    Promote {
        /// The standby host.
        host: String,
    },
    /// Registers `identity` (a key drawn from the scenario seed, the host and the identity
    /// name) from `host`, through its NATs, with the registry on `registry`.
    Register {
        /// The client host (a probe host).
        host: String,
        /// The rendezvous host whose registry to ask.
        registry: String,
        /// The identity's name (default: the host's name).
        identity: Option<String>,
        /// The UDP port of `listen_addr` (default 4000): the registry records the TCP peer's
        /// address with this port.
        port: Option<u16>,
        /// A hostname to claim.
        hostname: Option<String>,
        /// An owner label.
        owner: Option<String>,
        /// Names the reply for expectations.
        tag: Option<String>,
    },
    /// Asks for `target`'s endpoint on behalf of `identity` (signed).
    Resolve {
        /// The client host.
        host: String,
        /// The rendezvous host.
        registry: String,
        /// The requester (default: the host's name).
        identity: Option<String>,
        /// The identity resolved.
        target: String,
        /// Names the reply.
        tag: Option<String>,
    },
    /// Looks `target` up (no authentication).
    Lookup {
        /// The client host.
        host: String,
        /// The rendezvous host.
        registry: String,
        /// The identity looked up.
        target: String,
        /// Names the reply.
        tag: Option<String>,
    },
    /// Makes `identity`'s node public or private (signed).
    SetVisibility {
        /// The client host.
        host: String,
        /// The rendezvous host.
        registry: String,
        /// The identity (default: the host's name).
        identity: Option<String>,
        /// Public (`true`) or private.
        public: bool,
        /// Names the reply.
        tag: Option<String>,
    },
    /// Reports that `identity` trusts `peer` (signed); a pair forms when both sides report.
    ReportTrust {
        /// The client host.
        host: String,
        /// The rendezvous host.
        registry: String,
        /// The identity (default: the host's name).
        identity: Option<String>,
        /// The identity trusted.
        peer: String,
        /// Names the reply.
        tag: Option<String>,
    },
    /// Asks `peer` for trust through the registry's relay (signed); also a trust wish.
    RequestHandshake {
        /// The client host.
        host: String,
        /// The rendezvous host.
        registry: String,
        /// The requester (default: the host's name).
        identity: Option<String>,
        /// The identity asked.
        peer: String,
        /// Why (shown to the peer).
        justification: Option<String>,
        /// Names the reply.
        tag: Option<String>,
    },
    /// Takes `identity`'s queued relayed requests and responses (signed).
    PollHandshakes {
        /// The client host.
        host: String,
        /// The rendezvous host.
        registry: String,
        /// The identity (default: the host's name).
        identity: Option<String>,
        /// Names the reply.
        tag: Option<String>,
    },
    /// Answers `peer`'s relayed request (signed); accepting forms the trust pair.
    RespondHandshake {
        /// The client host.
        host: String,
        /// The rendezvous host.
        registry: String,
        /// The identity answering (default: the host's name).
        identity: Option<String>,
        /// The identity that asked.
        peer: String,
        /// Accept (default) or refuse.
        accept: Option<bool>,
        /// Names the reply.
        tag: Option<String>,
    },
    /// Daemon `host` asks daemon `peer` for trust (the trust handshake, port 444).
    Handshake {
        /// The daemon host asking.
        host: String,
        /// The daemon host asked.
        peer: String,
    },
    /// Daemon `host` approves `peer`'s request once it has arrived.
    Approve {
        /// The daemon host approving.
        host: String,
        /// The daemon host that asked.
        peer: String,
    },
    /// Daemon `host` revokes its trust in `peer` (and tells it and the registry).
    Revoke {
        /// The daemon host revoking.
        host: String,
        /// The daemon host no longer trusted.
        peer: String,
    },
    /// Daemon `host` listens on `ports` and records every datagram it is handed there, until
    /// it stops (a restarted daemon listens again only if told to).
    ListenDatagrams {
        /// The daemon host.
        host: String,
        /// The virtual ports.
        ports: Vec<u16>,
    },
    /// Daemon `from` sends `count` numbered datagrams of `size` bytes to daemon `to`, 20 ms
    /// apart, datagram `i` to `ports[i % ports.len()]`. Each carries its tag, number and port,
    /// so `datagrams-intact` can tell a corrupted or misdelivered one from a lost one.
    SendDatagrams {
        /// The daemon host sending.
        from: String,
        /// The daemon host receiving.
        to: String,
        /// The virtual ports, in turn.
        ports: Vec<u16>,
        /// How many (default 10).
        count: Option<u32>,
        /// Bytes per datagram (default 200; at least the header).
        size: Option<usize>,
        /// Names the send for expectations.
        tag: String,
    },
    /// Daemon `host` sends `bytes` to `peer`'s echo service (port 7) and reads them back,
    /// timing the first byte and the whole exchange.
    Echo {
        /// The daemon host sending.
        host: String,
        /// The daemon host echoing.
        peer: String,
        /// How many bytes (default 1024).
        bytes: Option<usize>,
        /// Names the exchange for expectations.
        tag: String,
    },
    /// Daemon `from` sends a message to daemon `to`'s data exchange (port 1001): `text`,
    /// `json`, or `size` bytes generated from the seed and the tag (`format = "json"`: a JSON
    /// document of that size). Records whether the sender got the ACK.
    SendMessage {
        /// The daemon host sending.
        from: String,
        /// The daemon host receiving.
        to: String,
        /// Text to send.
        text: Option<String>,
        /// JSON text to send (not validated, as the service does not).
        json: Option<String>,
        /// Bytes of generated payload.
        size: Option<usize>,
        /// What the generated payload is: `text` (default) or `json`.
        format: Option<MessageFormat>,
        /// How long the sender waits for the reply (default 60 s).
        timeout: Option<Dur>,
        /// Names the send for expectations.
        tag: String,
    },
    /// Daemon `from` streams a file of `size` generated bytes, named `name`, to daemon `to`.
    SendFile {
        /// The daemon host sending.
        from: String,
        /// The daemon host receiving.
        to: String,
        /// The file's name (stored as `<stem>-<time><ext>` in `received/`).
        name: String,
        /// Its size in bytes.
        size: u64,
        /// How long the sender waits for the reply (default 60 s).
        timeout: Option<Dur>,
        /// Names the send for expectations.
        tag: String,
    },
    /// Arms a crash of daemon `host`, fired inside its data-exchange store: right after the
    /// `stored`-th entry from now is durable (before its ACK leaves), or once `received_bytes`
    /// file bytes from now have arrived. The host then restarts only on `restart`.
    CrashWhen {
        /// The daemon host.
        host: String,
        /// Entries (messages or files) stored.
        stored: Option<u64>,
        /// File bytes received.
        received_bytes: Option<u64>,
    },
    /// Daemon `host` subscribes to `topic` (`"*"`: every topic) on daemon `at`'s event stream
    /// (port 1002) and records the events it receives, until `count` have arrived or the run
    /// ends (runs beside later actions).
    Subscribe {
        /// The daemon host subscribing.
        host: String,
        /// The daemon host whose broker it subscribes to.
        at: String,
        /// The topic.
        topic: String,
        /// Stop after this many events.
        count: Option<usize>,
        /// Names the subscription for expectations.
        tag: String,
    },
    /// Daemon `host` publishes one event per entry of `texts`, in order over one connection,
    /// on `topic` to daemon `at`'s event stream.
    Publish {
        /// The daemon host publishing.
        host: String,
        /// The daemon host whose broker it publishes to.
        at: String,
        /// The topic (not `*`).
        topic: String,
        /// The events' payloads.
        texts: Vec<String>,
    },
    /// Daemon `from` submits the task `task` to daemon `to` (port 1003), under an id drawn
    /// from the seed and `tag`.
    SubmitTask {
        /// The daemon host submitting.
        from: String,
        /// The daemon host asked to do it.
        to: String,
        /// What to do.
        task: String,
        /// Names the task for later steps and expectations.
        tag: String,
    },
    /// Daemon `host` accepts the task `tag` once it has arrived, and tells its submitter.
    AcceptTask {
        /// The daemon host that received the task.
        host: String,
        /// The task.
        tag: String,
    },
    /// Daemon `host` declines the task `tag` once it has arrived, and tells its submitter.
    DeclineTask {
        /// The daemon host that received the task.
        host: String,
        /// The task.
        tag: String,
        /// Why.
        justification: String,
    },
    /// Daemon `host` starts the head of its queue, which must be the task `tag`.
    ExecuteTask {
        /// The daemon host executing.
        host: String,
        /// The task.
        tag: String,
    },
    /// Daemon `host` sends `text` as the results of task `tag` to its submitter.
    SendResults {
        /// The daemon host that executed the task.
        host: String,
        /// The task.
        tag: String,
        /// The results.
        text: String,
    },
    /// Heartbeats `identity`'s node (signed).
    Heartbeat {
        /// The client host.
        host: String,
        /// The rendezvous host.
        registry: String,
        /// The identity (default: the host's name).
        identity: Option<String>,
        /// Names the reply.
        tag: Option<String>,
    },
}

/// What a generated message payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageFormat {
    /// Printable text (a TEXT frame).
    Text,
    /// One JSON string of that many bytes (a JSON frame).
    Json,
}

/// Largest generated file: the simulated receiver holds what it stores in memory.
pub const MAX_FILE_SIZE: u64 = 64 << 20;
/// Longest a sender waits for a reply unless the action says otherwise.
pub const DEFAULT_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The parts every registry request shares.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestParts<'a> {
    /// The client host.
    pub host: &'a str,
    /// The rendezvous host asked.
    pub registry: &'a str,
    /// The identity acting (for `lookup`, none).
    pub identity: Option<&'a str>,
    /// The identities the request names besides its own.
    pub others: [Option<&'a str>; 1],
    /// The reply's tag.
    pub tag: Option<&'a str>,
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
            Action::RegistryStart { .. } => "registry-start",
            Action::RegistryCrash { .. } => "registry-crash",
            Action::RegistryRestart { .. } => "registry-restart",
            Action::Promote { .. } => "promote",
            Action::Register { .. } => "register",
            Action::Resolve { .. } => "resolve",
            Action::Lookup { .. } => "lookup",
            Action::SetVisibility { .. } => "set-visibility",
            Action::ReportTrust { .. } => "report-trust",
            Action::Heartbeat { .. } => "heartbeat",
            Action::RequestHandshake { .. } => "request-handshake",
            Action::Handshake { .. } => "handshake",
            Action::Approve { .. } => "approve",
            Action::Revoke { .. } => "revoke",
            Action::ListenDatagrams { .. } => "listen-datagrams",
            Action::SendDatagrams { .. } => "send-datagrams",
            Action::Echo { .. } => "echo",
            Action::SendMessage { .. } => "send-message",
            Action::SendFile { .. } => "send-file",
            Action::CrashWhen { .. } => "crash-when",
            Action::Subscribe { .. } => "subscribe",
            Action::Publish { .. } => "publish",
            Action::SubmitTask { .. } => "submit-task",
            Action::AcceptTask { .. } => "accept-task",
            Action::DeclineTask { .. } => "decline-task",
            Action::ExecuteTask { .. } => "execute-task",
            Action::SendResults { .. } => "send-results",
            Action::PollHandshakes { .. } => "poll-handshakes",
            Action::RespondHandshake { .. } => "respond-handshake",
        }
    }

    /// The shared parts of a registry request; `None` for other actions.
    pub(crate) fn request(&self) -> Option<RequestParts<'_>> {
        fn parts<'a>(
            host: &'a str,
            registry: &'a str,
            identity: &'a Option<String>,
            other: Option<&'a String>,
            tag: &'a Option<String>,
        ) -> RequestParts<'a> {
            RequestParts {
                host,
                registry,
                identity: Some(identity.as_deref().unwrap_or(host)),
                others: [other.map(String::as_str)],
                tag: tag.as_deref(),
            }
        }
        Some(match self {
            Action::Register {
                host,
                registry,
                identity,
                tag,
                ..
            }
            | Action::SetVisibility {
                host,
                registry,
                identity,
                tag,
                ..
            }
            | Action::Heartbeat {
                host,
                registry,
                identity,
                tag,
            }
            | Action::PollHandshakes {
                host,
                registry,
                identity,
                tag,
            } => parts(host, registry, identity, None, tag),
            Action::RequestHandshake {
                host,
                registry,
                identity,
                peer,
                tag,
                ..
            }
            | Action::RespondHandshake {
                host,
                registry,
                identity,
                peer,
                tag,
                ..
            } => parts(host, registry, identity, Some(peer), tag),
            Action::Resolve {
                host,
                registry,
                identity,
                target,
                tag,
            } => parts(host, registry, identity, Some(target), tag),
            Action::ReportTrust {
                host,
                registry,
                identity,
                peer,
                tag,
            } => parts(host, registry, identity, Some(peer), tag),
            Action::Lookup {
                host,
                registry,
                target,
                tag,
            } => RequestParts {
                host,
                registry,
                identity: None,
                others: [Some(target)],
                tag: tag.as_deref(),
            },
            _ => return None,
        })
    }

    /// Names that must be probe hosts (not NAT boxes, not rendezvous servers).
    pub(super) fn hosts(&self) -> Vec<&str> {
        match self {
            Action::Bind { host, .. } => vec![host],
            _ => self.request().map(|r| vec![r.host]).unwrap_or_default(),
        }
    }

    /// Names that must be daemon hosts.
    pub(super) fn daemons(&self) -> Vec<&str> {
        match self {
            Action::Handshake { host, peer }
            | Action::Approve { host, peer }
            | Action::Revoke { host, peer }
            | Action::Echo { host, peer, .. } => vec![host, peer],
            Action::SendDatagrams { from, to, .. } => vec![from, to],
            Action::ListenDatagrams { host, .. } => vec![host],
            Action::SendMessage { from, to, .. } | Action::SendFile { from, to, .. } => {
                vec![from, to]
            }
            Action::CrashWhen { host, .. }
            | Action::AcceptTask { host, .. }
            | Action::DeclineTask { host, .. }
            | Action::ExecuteTask { host, .. }
            | Action::SendResults { host, .. } => vec![host],
            Action::Subscribe { host, at, .. } | Action::Publish { host, at, .. } => {
                vec![host, at]
            }
            Action::SubmitTask { from, to, .. } => vec![from, to],
            _ => vec![],
        }
    }

    /// Names that must be rendezvous (or standby) hosts.
    pub(super) fn rendezvous(&self) -> Vec<&str> {
        match self {
            Action::RegistryStart { host }
            | Action::RegistryCrash { host }
            | Action::RegistryRestart { host }
            | Action::Promote { host } => vec![host],
            _ => self.request().map(|r| vec![r.registry]).unwrap_or_default(),
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
            Action::Wait {
                duration, until, ..
            } if duration.is_some() == until.is_some() => Err(invalid(
                format!("{what}: give exactly one of `for` and `until`"),
                "for = \"100ms\" waits that long; until = \"35s\" waits until that time",
            )),
            Action::Partition { between, .. } | Action::Heal { between }
                if between[0] == between[1] =>
            {
                Err(invalid(
                    format!("{what}: names the same node twice"),
                    "name two different nodes",
                ))
            }
            Action::SetLink(l) => l.check(),
            Action::ListenDatagrams { ports, .. } | Action::SendDatagrams { ports, .. }
                if ports.is_empty() =>
            {
                Err(invalid(format!("{what}: no ports"), "ports = [5000, 5001]"))
            }
            Action::SendDatagrams { from, to, .. } if from == to => Err(invalid(
                format!("{what}: a daemon sending to itself crosses no network"),
                "name another daemon host as `to`",
            )),
            Action::SendDatagrams {
                size: Some(size), ..
            } if *size > pilot::driver::MAX_DATAGRAM => Err(invalid(
                format!(
                    "{what}: {size} bytes exceed a datagram's {} bytes",
                    pilot::driver::MAX_DATAGRAM
                ),
                "size = 200",
            )),
            Action::SendMessage { .. } | Action::SendFile { .. } | Action::CrashWhen { .. } => {
                self.check_exchange(what)
            }
            Action::Subscribe { .. }
            | Action::Publish { .. }
            | Action::SubmitTask { .. }
            | Action::AcceptTask { .. }
            | Action::DeclineTask { .. }
            | Action::ExecuteTask { .. }
            | Action::SendResults { .. } => super::services::check_action(self, what),
            _ => Ok(()),
        }
    }
}

impl Action {
    /// Checks the data-exchange actions' own fields.
    fn check_exchange(&self, what: &str) -> Result<(), ScenarioError> {
        use pilot::services::dataexchange::frame::MAX_FRAME;
        use pilot::services::dataexchange::names;
        let (from, to, tag, timeout) = match self {
            Action::SendMessage {
                from,
                to,
                tag,
                timeout,
                ..
            }
            | Action::SendFile {
                from,
                to,
                tag,
                timeout,
                ..
            } => (from, to, tag, timeout),
            Action::CrashWhen {
                stored,
                received_bytes,
                ..
            } => {
                return match (stored, received_bytes) {
                    (Some(0), _) | (_, Some(0)) => Err(invalid(
                        format!("{what}: a trigger of 0 would fire at once"),
                        "count from 1: stored = 1 crashes right after the next entry is stored",
                    )),
                    (Some(_), None) | (None, Some(_)) => Ok(()),
                    _ => Err(invalid(
                        format!("{what}: give exactly one of `stored` and `received_bytes`"),
                        "stored = 1 crashes after the next stored entry (before its ACK); received_bytes = 100000 crashes mid-file",
                    )),
                };
            }
            _ => return Ok(()),
        };
        if from == to {
            return Err(invalid(
                format!("{what}: a daemon sending to itself crosses no network"),
                "name another daemon host as `to`",
            ));
        }
        if tag.is_empty() {
            return Err(invalid(
                format!("{what}: the tag is empty"),
                "tag = \"m1\" names the send for expectations",
            ));
        }
        if timeout.is_some_and(|t| t.0.is_zero()) {
            return Err(invalid(
                format!("{what}: a timeout of 0 gives the send no time"),
                "timeout = \"30s\", or leave it out (60 s)",
            ));
        }
        match self {
            Action::SendMessage {
                text,
                json,
                size,
                format,
                ..
            } => {
                let given = [text.is_some(), json.is_some(), size.is_some()];
                if given.iter().filter(|g| **g).count() != 1 {
                    return Err(invalid(
                        format!("{what}: give exactly one of `text`, `json` and `size`"),
                        "text = \"hello\", json = '{\"k\": 1}', or size = 4096 (generated from the seed)",
                    ));
                }
                if format.is_some() && size.is_none() {
                    return Err(invalid(
                        format!("{what}: `format` describes a generated payload, but there is no `size`"),
                        "remove `format`, or replace the text with size = N",
                    ));
                }
                let len =
                    size.unwrap_or_else(|| text.as_ref().or(json.as_ref()).map_or(0, String::len));
                if len > MAX_FRAME {
                    return Err(invalid(
                        format!("{what}: a message of {len} bytes exceeds the {MAX_FRAME}-byte frame limit"),
                        "send it as a file (do = \"send-file\"), which streams any size",
                    ));
                }
                if *format == Some(MessageFormat::Json) && len < 2 {
                    return Err(invalid(
                        format!("{what}: no JSON document has {len} bytes"),
                        "a generated JSON message needs size >= 2",
                    ));
                }
                Ok(())
            }
            Action::SendFile { name, size, .. } => {
                if *size > MAX_FILE_SIZE {
                    return Err(invalid(
                        format!("{what}: a file of {size} bytes is too large for the simulator (at most {MAX_FILE_SIZE})"),
                        "a multi-frame file needs only a few hundred KB; the receiver keeps files in memory",
                    ));
                }
                match names::sanitize(name.as_bytes()) {
                    Some(safe) if safe == *name => Ok(()),
                    Some(safe) => Err(invalid(
                        format!("{what}: the receiver would store {name:?} as {safe:?}"),
                        format!(
                            "name = {safe:?} (no folders, no control characters, at most {} bytes)",
                            names::MAX_STORED_NAME
                        ),
                    )),
                    None => Err(invalid(
                        format!("{what}: {name:?} is not a usable file name"),
                        "name = \"report.bin\"",
                    )),
                }
            }
            _ => Ok(()),
        }
    }
}
