//! Checking a scenario before it runs: every name it uses exists and has the right kind, every
//! socket, tag, identity and echo is introduced before use, and the script stays within
//! [`MAX_SIMULATED`]. Every problem is an [`invalid`] error with a hint.

use super::action::{Action, LinkSpec};
use super::expect::Expectation;
use super::{invalid, HostKind, PresetName, Scenario, ScenarioError, MAX_SIMULATED};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

impl Scenario {
    /// Every node name, mapped to whether it is a host (rather than a NAT box).
    fn node_names(&self) -> BTreeMap<String, bool> {
        let mut names = BTreeMap::new();
        for n in &self.nats {
            if n.preset != Some(PresetName::Open) {
                names.insert(n.name.clone(), false);
                if n.preset == Some(PresetName::Cgnat) {
                    names.insert(format!("{}-cgn", n.name), false);
                }
            }
        }
        for h in &self.hosts {
            names.insert(h.name.clone(), true);
        }
        names
    }

    /// For each node, the NAT box it sits behind (`None`: the internet), "open" boxes removed.
    fn attachments(&self) -> BTreeMap<&str, Option<String>> {
        let open: BTreeSet<&str> = self
            .nats
            .iter()
            .filter(|n| n.preset == Some(PresetName::Open))
            .map(|n| n.name.as_str())
            .collect();
        let effective = |b: &Option<String>| b.clone().filter(|b| !open.contains(b.as_str()));
        let mut att = BTreeMap::new();
        for n in &self.nats {
            match n.preset {
                Some(PresetName::Open) => {}
                Some(PresetName::Cgnat) => {
                    att.insert(n.name.as_str(), Some(format!("{}-cgn", n.name)));
                }
                _ => {
                    att.insert(n.name.as_str(), effective(&n.behind));
                }
            }
        }
        for h in &self.hosts {
            att.insert(h.name.as_str(), effective(&h.behind));
        }
        att
    }

    /// Checks that `a` and `b` exchange traffic directly, so that a link between them means
    /// something: same network, or one is the other's NAT box.
    fn check_adjacent(&self, a: &str, b: &str, what: &str) -> Result<(), ScenarioError> {
        let att = self.attachments();
        let of = |n: &str| att.get(n).cloned().flatten();
        let (x, y) = (of(a), of(b));
        if x == y || x.as_deref() == Some(b) || y.as_deref() == Some(a) {
            return Ok(());
        }
        Err(invalid(
            format!("{what}: {a:?} and {b:?} never exchange traffic directly"),
            "a link joins two nodes on the same network, or a host and the NAT box it sits behind",
        ))
    }

    /// Checks a `to` target: `"name:port"` with a known node, or `"ip:port"`.
    fn check_target(
        &self,
        to: &str,
        nodes: &BTreeMap<String, bool>,
        what: &str,
    ) -> Result<(), ScenarioError> {
        let hint =
            "write to = \"server:7000\" (a host or NAT box and a port) or \"192.168.0.1:7000\"";
        let Some((name, port)) = to.rsplit_once(':') else {
            return Err(invalid(format!("{what}: {to:?} is not host:port"), hint));
        };
        if port.parse::<u16>().is_err() {
            return Err(invalid(
                format!("{what}: {port:?} is not a port number"),
                hint,
            ));
        }
        if name.parse::<std::net::IpAddr>().is_err() && !nodes.contains_key(name) {
            return Err(invalid(
                format!("{what}: {name:?} is not a host or NAT box"),
                format!(
                    "known names: {}",
                    nodes.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Checks that the script and the expectations refer to things that exist.
    pub(crate) fn check_script(&self) -> Result<(), ScenarioError> {
        let nodes = self.node_names();
        let hosts: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
        let node = |name: &str, what: &str| -> Result<(), ScenarioError> {
            if nodes.contains_key(name) {
                Ok(())
            } else {
                Err(invalid(
                    format!("{what} names {name:?}, which is not a host or NAT box"),
                    format!(
                        "known names: {}",
                        nodes.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ))
            }
        };
        let host = |name: &str, what: &str| -> Result<(), ScenarioError> {
            if nodes.get(name) == Some(&true) {
                Ok(())
            } else {
                Err(invalid(
                    format!("{what} names {name:?}, which is not a host"),
                    format!("hosts: {}", hosts.join(", ")),
                ))
            }
        };
        for link in &self.links {
            link.check()?;
            for n in &link.between {
                node(n, "a [[link]]")?;
            }
            self.check_adjacent(&link.between[0], &link.between[1], "a [[link]]")?;
        }
        let rendezvous = |name: &str, what: &str| -> Result<(), ScenarioError> {
            match self.host(name) {
                Some(h) if h.kind.is_rendezvous() => Ok(()),
                _ => Err(invalid(
                    format!("{what} names {name:?}, which runs no registry"),
                    format!(
                        "rendezvous hosts (kind = \"rendezvous\" or \"standby\"): {}",
                        self.rendezvous_names().join(", ")
                    ),
                )),
            }
        };
        let daemon = |name: &str, what: &str| -> Result<(), ScenarioError> {
            if self.host(name).map(|h| h.kind) == Some(HostKind::Daemon) {
                return Ok(());
            }
            let daemons: Vec<&str> = self
                .hosts
                .iter()
                .filter(|h| h.kind == HostKind::Daemon)
                .map(|h| h.name.as_str())
                .collect();
            Err(invalid(
                format!("{what} names {name:?}, which runs no daemon"),
                format!("daemon hosts (kind = \"daemon\"): {}", daemons.join(", ")),
            ))
        };
        let probe = |name: &str, what: &str| -> Result<(), ScenarioError> {
            host(name, what)?;
            if self.host(name).is_some_and(|h| h.kind != HostKind::Probe) {
                return Err(invalid(
                    format!("{what}: {name:?} runs a registry or a daemon, not the probe agent"),
                    "bind, send and registry requests run on probe hosts (no `kind`)",
                ));
            }
            Ok(())
        };
        let mut clock = Duration::ZERO;
        let mut sockets: BTreeMap<&str, &str> = BTreeMap::new();
        let mut tags: BTreeSet<&str> = BTreeSet::new();
        let mut identities: BTreeSet<&str> = BTreeSet::new();
        let mut replies: BTreeSet<&str> = BTreeSet::new();
        let mut echoes: BTreeSet<&str> = BTreeSet::new();
        let mut sends: BTreeSet<&str> = BTreeSet::new();
        let mut datagram_sends: BTreeSet<&str> = BTreeSet::new();
        let mut started = super::services::Started::default();
        for (i, action) in self.actions.iter().enumerate() {
            let what = format!("action #{} ({})", i + 1, action.kind());
            action.check(&what)?;
            started.check(action, &what)?;
            for n in action.daemons() {
                daemon(n, &what)?;
            }
            if let Action::Wait { echo: Some(t), .. } = action {
                if !echoes.contains(t.as_str()) {
                    return Err(invalid(
                        format!("{what}: echo {t:?} is not started by an earlier action"),
                        "`echo` in a wait names the tag of an earlier echo action",
                    ));
                }
            }
            if let Action::Wait { send: Some(t), .. } = action {
                if !sends.contains(t.as_str()) {
                    return Err(invalid(
                        format!("{what}: send {t:?} is not started by an earlier action"),
                        "`send` in a wait names the tag of an earlier send-message or send-file",
                    ));
                }
            }
            if let Action::Wait {
                subscribed: Some(t),
                ..
            } = action
            {
                started.check_subscribed(t, &what)?;
            }
            if let Action::SendMessage { tag, .. } | Action::SendFile { tag, .. } = action {
                if !sends.insert(tag) {
                    return Err(invalid(
                        format!("{what}: send tag {tag:?} is used twice"),
                        "give each send its own tag",
                    ));
                }
            }
            if let Action::SendDatagrams { tag, .. } = action {
                if !datagram_sends.insert(tag) {
                    return Err(invalid(
                        format!("{what}: datagram send tag {tag:?} is used twice"),
                        "give each send-datagrams its own tag",
                    ));
                }
            }
            if let Action::CrashWhen { host, .. } = action {
                if !self.runs_dataexchange(host) {
                    return Err(invalid(
                        format!("{what}: {host:?} runs no data exchange, so nothing can trigger the crash"),
                        "remove `dataexchange = false` from the host, or crash it with do = \"crash\"",
                    ));
                }
            }
            if let Action::Echo {
                tag, host, peer, ..
            } = action
            {
                if host == peer {
                    return Err(invalid(
                        format!("{what}: a daemon echoing to itself crosses no network"),
                        "name another daemon host as `peer`",
                    ));
                }
                if !echoes.insert(tag) {
                    return Err(invalid(
                        format!("{what}: echo tag {tag:?} is used twice"),
                        "give each echo its own tag",
                    ));
                }
            }
            for n in action.hosts() {
                probe(n, &what)?;
            }
            for n in action.rendezvous() {
                rendezvous(n, &what)?;
            }
            if let Action::Promote { host } = action {
                if self.host(host).map(|h| h.kind) != Some(HostKind::Standby) {
                    return Err(invalid(
                        format!("{what}: {host:?} is not a standby"),
                        "promote names a host with kind = \"standby\"",
                    ));
                }
            }
            if let Some(r) = action.request() {
                let named = r.others.iter().flatten().copied();
                let acting = r
                    .identity
                    .filter(|_| !matches!(action, Action::Register { .. }));
                for id in acting.into_iter().chain(named) {
                    if !identities.contains(id) {
                        return Err(invalid(
                            format!("{what}: identity {id:?} is not registered by an earlier action"),
                            "add a `do = \"register\"` action for it first (an identity is named by `identity`, by default the host's name)",
                        ));
                    }
                }
                if let Some(id) = r.identity {
                    identities.insert(id);
                }
                if let Some(tag) = r.tag {
                    if !replies.insert(tag) {
                        return Err(invalid(
                            format!("{what}: reply tag {tag:?} is used twice"),
                            "give each request its own tag",
                        ));
                    }
                }
            }
            for n in action.nodes() {
                node(n, &what)?;
            }
            if let Action::Partition { between, .. }
            | Action::Heal { between }
            | Action::SetLink(LinkSpec { between, .. }) = action
            {
                self.check_adjacent(&between[0], &between[1], &what)?;
            }
            match action {
                Action::Wait {
                    duration, until, ..
                } => {
                    clock = match (duration, until) {
                        (Some(d), _) => clock + d.0,
                        (None, Some(u)) => clock.max(u.0),
                        (None, None) => clock,
                    };
                    if clock > MAX_SIMULATED {
                        return Err(invalid(
                            format!("{what}: the script runs past {} s of simulated time", MAX_SIMULATED.as_secs()),
                            "scenarios are short stories: shorten the waits (NAT lifetimes can be set per box)",
                        ));
                    }
                }
                Action::Bind { host, socket, .. } => {
                    if let Some(other) = sockets.insert(socket, host) {
                        if other != host {
                            return Err(invalid(
                                format!("{what}: socket {socket:?} is already bound on {other:?}"),
                                "socket names are global: pick another name",
                            ));
                        }
                    }
                }
                Action::Send {
                    socket,
                    tag,
                    reply_to,
                    to,
                } => {
                    if let Some(to) = to {
                        self.check_target(to, &nodes, &what)?;
                    }
                    if !sockets.contains_key(socket.as_str()) {
                        return Err(invalid(
                            format!("{what}: socket {socket:?} is not bound by an earlier action"),
                            "add a `do = \"bind\"` action for it before this one",
                        ));
                    }
                    if let Some(r) = reply_to {
                        if !tags.contains(r.as_str()) {
                            return Err(invalid(
                                format!("{what}: reply_to {r:?} is not the tag of an earlier send"),
                                "reply_to names the tag of a probe sent before",
                            ));
                        }
                    }
                    tags.insert(tag);
                }
                _ => {}
            }
        }
        if clock + self.settle_time() > MAX_SIMULATED {
            return Err(invalid(
                format!(
                    "the script and its settle time run past {} s of simulated time",
                    MAX_SIMULATED.as_secs()
                ),
                "shorten `settle` or the waits",
            ));
        }
        for (i, e) in self.expectations.iter().enumerate() {
            let what = format!("expectation #{} ({})", i + 1, e.kind());
            for s in e.sockets() {
                if !sockets.contains_key(s) {
                    return Err(invalid(
                        format!("{what} names socket {s:?}, which no action binds"),
                        format!(
                            "bound sockets: {}",
                            sockets.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            for t in e.tags() {
                if !tags.contains(t) {
                    return Err(invalid(
                        format!("{what} names tag {t:?}, which no send action uses"),
                        "check the spelling against the `tag` of your send actions",
                    ));
                }
            }
            for n in e.nodes() {
                node(n, &what)?;
            }
            for n in e.rendezvous() {
                rendezvous(n, &what)?;
            }
            for n in e.daemons() {
                daemon(n, &what)?;
            }
            if let Expectation::Echoed { tag }
            | Expectation::EchoFailed { tag, .. }
            | Expectation::EchoIntact { tag }
            | Expectation::EchoEnded { tag }
            | Expectation::NotEchoed { tag } = e
            {
                if !echoes.contains(tag.as_str()) {
                    return Err(invalid(
                        format!("{what} names echo {tag:?}, which no echo action tags"),
                        "check the spelling against the `tag` of your echo actions",
                    ));
                }
            }
            if let Expectation::DatagramsIntact { tag, .. } | Expectation::NoDatagrams { tag } = e {
                if !datagram_sends.contains(tag.as_str()) {
                    return Err(invalid(
                        format!("{what} names datagram send {tag:?}, which no send-datagrams tags"),
                        "check the spelling against the `tag` of your send-datagrams actions",
                    ));
                }
            }
            if let Some(t) = e.send() {
                if !sends.contains(t) {
                    return Err(invalid(
                        format!("{what} names send {t:?}, which no send-message or send-file tags"),
                        format!(
                            "send tags: {}",
                            sends.iter().copied().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            if matches!(e, Expectation::AckedKept { .. }) && sends.is_empty() {
                return Err(invalid(
                    format!("{what}: no action sends anything"),
                    "add send-message or send-file actions, or remove the expectation",
                ));
            }
            for t in e.replies() {
                if !replies.contains(t) {
                    return Err(invalid(
                        format!("{what} names reply {t:?}, which no request action tags"),
                        format!(
                            "reply tags: {}",
                            replies.iter().copied().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            if let Expectation::Reply {
                real_addr: Some(to),
                ..
            } = e
            {
                self.check_target(to, &nodes, &what)?;
            }
            started.check_expectation(e, &what)?;
            e.check(&what)?;
        }
        Ok(())
    }
}
