//! The scenario language: a seeded, replayable story on a simulated internet.
//!
//! A scenario file (TOML) declares hosts and NAT boxes, link faults, a seed, a script of
//! actions and the expectations that must hold at the end. [`Scenario::parse`] checks it
//! (every name it refers to exists, every socket is bound before use) and [`run`] plays it on
//! turmoil and returns an [`Outcome`]: one result per expectation, and the trace.
//! `docs/SCENARIOS.md` describes the language.
//!
//! Actions and expectations are tagged enums (`do = "..."`, `check = "..."`), so later work
//! adds daemon, registry and beacon actions as new variants.

mod action;
mod agent;
mod check;
mod client;
mod daemon;
mod datagram;
mod delivery;
pub mod duration;
mod exchange;
mod expect;
mod mailbox;
mod payload;
mod pubsub;
mod rendezvous;
mod run;
mod services;
mod tasks;

pub use action::{Action, LinkSpec};
pub use client::REQUEST_TIMEOUT;
pub use daemon::EchoResult;
pub use exchange::SendRecord;
pub use expect::{CheckResult, Expectation, PathKind};
pub use mailbox::Trigger;
pub use run::{
    replay_divergence, run, run_captured, run_detailed, sample_seeds, search, search_rechecked,
    Details, Outcome, SearchReport,
};

use crate::nat::{Filtering, Mapping, NatConfig, PortAllocation, Preset};
use crate::topology::Topology;
use duration::Dur;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// The longest simulated time a script may run (a guard against a typo that would run for
/// days of wall-clock time).
pub const MAX_SIMULATED: Duration = Duration::from_secs(3600);

/// Why a scenario cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the language.
    #[error("{0}")]
    Syntax(String),
    /// The file parses but refers to something that does not exist, or contradicts itself.
    #[error("{problem}\n  hint: {hint}")]
    Invalid {
        /// What is wrong.
        problem: String,
        /// How to fix it.
        hint: String,
    },
    /// The simulation itself failed (a host's software returned an error or panicked).
    #[error("simulation failed: {0}")]
    Simulation(String),
}

fn invalid(problem: impl Into<String>, hint: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        problem: problem.into(),
        hint: hint.into(),
    }
}

/// A parsed, checked scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short name (shown in summaries).
    #[serde(default)]
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// The seed of every random choice; `pilot-sim run --seed` overrides it.
    #[serde(default)]
    pub seed: u64,
    /// Turmoil's latency on every link (default 1 ms).
    pub latency: Option<Dur>,
    /// How long the simulation runs after the last action (default 1 s).
    pub settle: Option<Dur>,
    /// Hosts.
    #[serde(default, rename = "host")]
    pub hosts: Vec<HostSpec>,
    /// NAT boxes.
    #[serde(default, rename = "nat")]
    pub nats: Vec<NatSpec>,
    /// Link faults in force from the start.
    #[serde(default, rename = "link")]
    pub links: Vec<LinkSpec>,
    /// The script, in order.
    #[serde(default, rename = "action")]
    pub actions: Vec<Action>,
    /// What must hold at the end.
    #[serde(default, rename = "expect")]
    pub expectations: Vec<Expectation>,
    /// Errors of daemon operations (an echo cut by a partition, a handshake to a crashed
    /// peer) are noted in the trace but are not failures: only the expectations judge. Swarm
    /// scenarios, whose faults make such errors normal, set it.
    #[serde(default)]
    pub tolerate_errors: bool,
    /// A bug planted on purpose (off unless named), to show the swarm search finds it.
    #[serde(default)]
    pub planted_bug: Option<PlantedBug>,
}

/// Bugs a scenario can plant on purpose: test-only, off by default, never in real daemons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlantedBug {
    /// The echo client receives the 3rd and 4th chunks of a stream of more than 48 KiB in
    /// swapped order, as a broken reassembly would deliver them to the application.
    EchoReorder,
}

impl PlantedBug {
    /// The name, as written in a scenario file.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::EchoReorder => "echo-reorder",
        }
    }
}

/// A host: on the internet, or behind a NAT box.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Its name.
    pub name: String,
    /// The NAT box it sits behind.
    pub behind: Option<String>,
    /// What software it runs (default: the probe agent).
    #[serde(default)]
    pub kind: HostKind,
    /// Rendezvous hosts: the registry's TCP port (default 9000).
    pub registry_port: Option<u16>,
    /// Rendezvous hosts: the beacon's UDP port (default 9001).
    pub beacon_port: Option<u16>,
    /// Standby hosts: the rendezvous host whose registry this one follows.
    pub primary: Option<String>,
    /// Rendezvous hosts: start the registry and beacon at time 0 (default `true`); with
    /// `false`, a `registry-start` action starts them.
    pub autostart: Option<bool>,
    /// Daemon hosts: the rendezvous host whose registry and beacon the daemon uses.
    pub registry: Option<String>,
    /// Daemon hosts: resolvable by anyone (`-public`; default `false`).
    pub public: Option<bool>,
    /// Daemon hosts: a standby rendezvous host to fail over to.
    pub standby_registry: Option<String>,
    /// Daemon hosts: heartbeat interval (`-keepalive`, default 30 s); three missed heartbeats
    /// make the daemon register again, against the standby if the primary is gone.
    pub keepalive: Option<Dur>,
    /// Daemon hosts: forget a tunnel peer after this long without data (`-peer-idle-expiry`,
    /// default 10 min); the next packet sets it up again.
    pub peer_idle_expiry: Option<Dur>,
    /// Daemon hosts: data exchange on port 1001 (default `true`), storing into a mailbox
    /// that survives crashes.
    pub dataexchange: Option<bool>,
    /// Daemon hosts: bytes the mailbox holds at most (default: no limit), to play a full disk.
    pub mailbox_capacity: Option<u64>,
}

/// The software a host runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKind {
    /// The probe agent: binds sockets, sends probes, and talks to registries as a client.
    #[default]
    Probe,
    /// A rendezvous server: the real `pilot::registry` server and `pilot::beacon` server.
    Rendezvous,
    /// A rendezvous server whose registry is a hot standby of `primary`'s.
    Standby,
    /// The real `pilot::daemon`, registered with `registry`'s registry and beacon.
    Daemon,
}

impl HostKind {
    /// Whether the host runs a registry (and a beacon).
    pub fn is_rendezvous(self) -> bool {
        matches!(self, HostKind::Rendezvous | HostKind::Standby)
    }
}

/// The registry's TCP port unless a host says otherwise.
pub const DEFAULT_REGISTRY_PORT: u16 = 9000;
/// The UDP port a `register` puts in `listen_addr` unless it says otherwise.
pub const DEFAULT_LISTEN_PORT: u16 = 4000;
/// The beacon's UDP port unless a host says otherwise.
pub const DEFAULT_BEACON_PORT: u16 = 9001;

impl HostSpec {
    /// The registry's TCP port.
    pub fn registry_port(&self) -> u16 {
        self.registry_port.unwrap_or(DEFAULT_REGISTRY_PORT)
    }

    /// The beacon's UDP port.
    pub fn beacon_port(&self) -> u16 {
        self.beacon_port.unwrap_or(DEFAULT_BEACON_PORT)
    }

    /// Checks the fields that depend on the kind.
    fn check(&self, scenario: &Scenario) -> Result<(), ScenarioError> {
        let what = format!("host {:?}", self.name);
        let rdv_only = [
            ("registry_port", self.registry_port.is_some()),
            ("beacon_port", self.beacon_port.is_some()),
            ("autostart", self.autostart.is_some()),
        ];
        if !self.kind.is_rendezvous() {
            if let Some((field, _)) = rdv_only.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    format!("{what}: `{field}` is only for rendezvous and standby hosts"),
                    "add kind = \"rendezvous\" (or \"standby\"), or remove the field",
                ));
            }
        }
        let daemon_only = [
            ("registry", self.registry.is_some()),
            ("public", self.public.is_some()),
            ("standby_registry", self.standby_registry.is_some()),
            ("keepalive", self.keepalive.is_some()),
            ("peer_idle_expiry", self.peer_idle_expiry.is_some()),
            ("dataexchange", self.dataexchange.is_some()),
            ("mailbox_capacity", self.mailbox_capacity.is_some()),
        ];
        if self.kind != HostKind::Daemon {
            if let Some((field, _)) = daemon_only.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    format!("{what}: `{field}` is only for daemon hosts"),
                    "add kind = \"daemon\", or remove the field",
                ));
            }
        } else {
            let is_rdv = |r: &str| {
                scenario
                    .hosts
                    .iter()
                    .any(|h| h.name == r && h.kind.is_rendezvous())
            };
            let ok = self.registry.as_deref().is_some_and(is_rdv)
                && self.standby_registry.as_deref().is_none_or(is_rdv);
            if !ok {
                return Err(invalid(
                    format!("{what}: a daemon needs `registry` (and any `standby_registry`) to name rendezvous hosts"),
                    format!(
                        "rendezvous hosts: {}",
                        scenario.rendezvous_names().join(", ")
                    ),
                ));
            }
        }
        if self.dataexchange == Some(false) && self.mailbox_capacity.is_some() {
            return Err(invalid(
                format!("{what}: `mailbox_capacity` with data exchange off"),
                "remove `mailbox_capacity`, or `dataexchange = false`",
            ));
        }
        match (self.kind, &self.primary) {
            (HostKind::Standby, None) => {
                return Err(invalid(
                    format!("{what}: a standby needs a primary"),
                    "add primary = \"<name of a rendezvous host>\"",
                ))
            }
            (HostKind::Standby, Some(p)) => {
                let ok = p != &self.name
                    && scenario
                        .hosts
                        .iter()
                        .any(|h| &h.name == p && h.kind.is_rendezvous());
                if !ok {
                    return Err(invalid(
                        format!("{what}: primary {p:?} is not another rendezvous host"),
                        format!(
                            "rendezvous hosts: {}",
                            scenario.rendezvous_names().join(", ")
                        ),
                    ));
                }
            }
            (_, Some(_)) => {
                return Err(invalid(
                    format!("{what}: `primary` is only for standby hosts"),
                    "add kind = \"standby\", or remove `primary`",
                ))
            }
            _ => {}
        }
        if self.kind.is_rendezvous() {
            if self.behind.as_deref().is_some_and(|b| {
                scenario
                    .nats
                    .iter()
                    .any(|n| n.name == b && n.preset != Some(PresetName::Open))
            }) {
                return Err(invalid(
                    format!("{what}: a rendezvous server must be reachable from the internet"),
                    "remove `behind` (or put it behind an \"open\" box)",
                ));
            }
            if self.registry_port() == 0 || self.beacon_port() == 0 {
                return Err(invalid(
                    format!("{what}: port 0 cannot be dialled"),
                    "give registry_port and beacon_port fixed numbers (defaults 9000, 9001)",
                ));
            }
        }
        Ok(())
    }
}

/// The presets a NAT box can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PresetName {
    /// No NAT: hosts "behind" it are public.
    Open,
    /// EIM + EIF.
    FullCone,
    /// EIM + ADF.
    RestrictedCone,
    /// EIM + APDF.
    PortRestrictedCone,
    /// APDM + APDF, random ports.
    Symmetric,
    /// Two boxes in series: `<name>-cgn` (the carrier's) and `name` (the home box, by default
    /// port-restricted cone; other fields configure it).
    Cgnat,
}

/// A NAT box: a preset, individual behaviours, or a preset with overrides.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatSpec {
    /// Its name.
    pub name: String,
    /// A preset to start from.
    pub preset: Option<PresetName>,
    /// Mapping behaviour (overrides the preset's).
    pub mapping: Option<Mapping>,
    /// Filtering behaviour (overrides the preset's).
    pub filtering: Option<Filtering>,
    /// Port allocation (overrides the preset's).
    pub ports: Option<PortAllocation>,
    /// Hairpinning (default off).
    pub hairpinning: Option<bool>,
    /// Mapping lifetime (default 30 s).
    pub lifetime: Option<Dur>,
    /// Another NAT box this one sits behind.
    pub behind: Option<String>,
}

impl NatSpec {
    fn config(&self) -> Result<NatConfig, ScenarioError> {
        let base = match self.preset {
            Some(PresetName::FullCone) => Some(Preset::FullCone),
            Some(PresetName::RestrictedCone) => Some(Preset::RestrictedCone),
            Some(PresetName::Symmetric) => Some(Preset::Symmetric),
            Some(PresetName::PortRestrictedCone | PresetName::Cgnat) => {
                Some(Preset::PortRestrictedCone)
            }
            Some(PresetName::Open) | None => None,
        };
        let mut config = match base {
            Some(p) => NatConfig::preset(p),
            None => {
                let (Some(mapping), Some(filtering)) = (self.mapping, self.filtering) else {
                    return Err(invalid(
                        format!("NAT {:?} has neither a preset nor mapping and filtering", self.name),
                        "add preset = \"port-restricted-cone\" (or full-cone, restricted-cone, symmetric, cgnat, open), or both mapping and filtering",
                    ));
                };
                NatConfig {
                    mapping,
                    filtering,
                    ..NatConfig::preset(Preset::FullCone)
                }
            }
        };
        if let Some(m) = self.mapping {
            config.mapping = m;
        }
        if let Some(f) = self.filtering {
            config.filtering = f;
        }
        if let Some(p) = self.ports {
            config.ports = p;
        }
        if let Some(h) = self.hairpinning {
            config.hairpinning = h;
        }
        if let Some(l) = self.lifetime {
            config.lifetime = l.0;
        }
        Ok(config)
    }
}

impl Scenario {
    /// Parses and checks scenario text.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario =
            toml::from_str(text).map_err(|e| ScenarioError::Syntax(e.to_string()))?;
        scenario.topology()?;
        scenario.check_hosts()?;
        scenario.check_script()?;
        Ok(scenario)
    }

    /// Reads, parses and checks a scenario file.
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::parse(&text).map_err(|e| match e {
            ScenarioError::Syntax(msg) => {
                ScenarioError::Syntax(format!("{}: {msg}", path.display()))
            }
            other => other,
        })
    }

    /// The topology the scenario declares (NAT boxes first, in file order, then hosts).
    pub fn topology(&self) -> Result<Topology, ScenarioError> {
        let mut topo = Topology::new(self.seed);
        if let Some(l) = self.latency {
            topo.latency(l.0);
        }
        // "open" boxes do not exist: whatever is behind them is public.
        let open: BTreeSet<&str> = self
            .nats
            .iter()
            .filter(|n| n.preset == Some(PresetName::Open))
            .map(|n| n.name.as_str())
            .collect();
        fn behind<'a>(open: &BTreeSet<&str>, b: &'a Option<String>) -> Option<&'a str> {
            b.as_deref().filter(|b| !open.contains(b))
        }
        for nat in &self.nats {
            if nat.preset == Some(PresetName::Open) {
                continue;
            }
            let config = nat.config()?;
            if nat.preset == Some(PresetName::Cgnat) {
                if nat.behind.is_some() {
                    return Err(invalid(
                        format!("cgnat box {:?} cannot sit behind another box", nat.name),
                        "remove `behind`; cgnat already puts a carrier box in front of it",
                    ));
                }
                topo.cgnat(&nat.name, config);
            } else {
                topo.nat(&nat.name, config, behind(&open, &nat.behind));
            }
        }
        for host in &self.hosts {
            topo.host(&host.name, behind(&open, &host.behind));
        }
        topo.validate().map_err(|e| {
            invalid(
                e.to_string(),
                "declare every [[nat]] before anything behind it, and give each node a unique name",
            )
        })?;
        Ok(topo)
    }

    /// Checks each host's kind-specific fields.
    pub(crate) fn check_hosts(&self) -> Result<(), ScenarioError> {
        self.hosts.iter().try_for_each(|h| h.check(self))
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&HostSpec> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The names of the hosts that run a registry.
    fn rendezvous_names(&self) -> Vec<&str> {
        self.hosts
            .iter()
            .filter(|h| h.kind.is_rendezvous())
            .map(|h| h.name.as_str())
            .collect()
    }

    /// Whether daemon host `name` runs data exchange.
    pub fn runs_dataexchange(&self, name: &str) -> bool {
        self.host(name)
            .is_some_and(|h| h.kind == HostKind::Daemon && h.dataexchange != Some(false))
    }

    /// Whether daemon host `name` takes part in a task (submits or receives one): only those
    /// run task submit, so other scenarios keep their traces.
    pub fn runs_tasks(&self, name: &str) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a, Action::SubmitTask { from, to, .. } if from == name || to == name))
    }

    /// How long the simulation runs after the last action.
    pub fn settle_time(&self) -> Duration {
        self.settle.map(|d| d.0).unwrap_or(run::DEFAULT_SETTLE)
    }
}
