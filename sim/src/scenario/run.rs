//! Playing a scenario on turmoil, step by step, and judging it.

use super::action::{Action, LinkSpec};
use super::action::{MessageFormat, DEFAULT_SEND_TIMEOUT};
use super::agent::{self, Command, Reports};
use super::client::{Op, Request};
use super::daemon::{self, DaemonOp, DaemonRequest};
use super::datagram::DatagramPlan;
use super::exchange::{locate, Content, SendPlan, SendRecord, Store};
use super::expect::{
    filters_unsolicited, observed_path, CheckResult, Evidence, Expectation, PathKind,
};
use super::mailbox::{Trigger, Tripwire};
use super::payload;
use super::pubsub::SubscribePlan;
use super::services::{TaskEnd, TaskPlan};
use super::tasks::{self, TaskOp, TaskStep};
use super::EchoResult;
use super::{invalid, rendezvous, HostKind, Scenario, ScenarioError};
use crate::capture::Datagram;
use crate::trace::diverge::{first_divergence, hash, Divergence, CONTEXT};
use crate::trace::fmt_time;
use crate::world::{lock, World};
use pilot::net::MemStorage;
use pilot::services::dataexchange::{FrameType, MemMailbox};
use pilot::services::tasks::TaskDirs;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Bytes an `echo` sends unless it says otherwise.
pub const DEFAULT_ECHO_BYTES: usize = 1024;

/// Most simulation steps the runner waits at the end for registries to report their state.
const INSPECT_STEPS: usize = 100;

/// How long the simulation runs after the last action unless the scenario says otherwise.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(1);

/// What a run produced.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The scenario's name.
    pub scenario: String,
    /// The seed it ran with.
    pub seed: u64,
    /// One result per failed action, then one per expectation, in file order.
    pub results: Vec<CheckResult>,
    /// The trace.
    #[serde(skip)]
    pub trace: Vec<String>,
    /// How many datagrams the simulated network carried (one per link crossed).
    pub datagrams: u64,
    /// Those datagrams, when the run was asked to capture them ([`run_captured`]).
    #[serde(skip)]
    pub captured: Vec<Datagram>,
}

impl Outcome {
    /// Whether every action succeeded and every expectation held.
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.passed)
    }

    /// How many results failed.
    pub fn failures(&self) -> usize {
        self.results.iter().filter(|r| !r.passed).count()
    }

    /// The trace as text, one line per event.
    pub fn trace_text(&self) -> String {
        self.trace.iter().map(|l| format!("{l}\n")).collect()
    }

    /// A readable summary: one line per result, then the totals.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "scenario {:?}, seed {}: {} checks\n",
            self.scenario,
            self.seed,
            self.results.len()
        );
        for r in &self.results {
            let verdict = if r.passed { "pass" } else { "FAIL" };
            out.push_str(&format!("  {verdict}  {} ({})\n", r.description, r.detail));
        }
        let failed = self.failures();
        out.push_str(&format!(
            "{} passed, {} failed\n",
            self.results.len() - failed,
            failed
        ));
        out
    }

    /// The summary as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let failed = self.failures();
        serde_json::json!({
            "scenario": self.scenario,
            "seed": self.seed,
            "passed": self.passed(),
            "results": self.results,
            "datagrams": self.datagrams,
            "totals": { "passed": self.results.len() - failed, "failed": failed },
        })
    }
}

/// Resolves a `to` target: `"name:port"` (the node's public address) or `"ip:port"`.
pub(crate) fn resolve(world: &World, target: &str) -> Result<SocketAddr, String> {
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| format!("{target:?} is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} in {target:?} is not a port number"))?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let id = world
        .find(host)
        .ok_or_else(|| format!("{host:?} in {target:?} is not a host or NAT box"))?;
    Ok(SocketAddr::from((world.public_addr(id), port)))
}

/// Measurements of a run beyond pass and fail: daemon paths and echo timings.
#[derive(Clone, Debug, Default)]
pub struct Details {
    paths: BTreeMap<(String, String), Option<PathKind>>,
    echoes: Vec<EchoResult>,
    sends: Vec<SendRecord>,
    behind_filter: BTreeSet<String>,
}

impl Details {
    /// The path daemon `host` used to `peer` at the end, if a `path` expectation asked.
    pub fn path(&self, host: &str, peer: &str) -> Option<PathKind> {
        self.paths
            .get(&(host.to_string(), peer.to_string()))
            .copied()
            .flatten()
    }

    /// What the sender of the data-exchange send tagged `tag` saw, if it ended.
    pub fn send(&self, tag: &str) -> Option<&SendRecord> {
        self.sends.iter().find(|s| s.tag == tag)
    }

    /// The hosts behind a NAT box that filters unsolicited inbound traffic (what makes a
    /// direct path `punched` rather than `direct`).
    pub fn behind_filter(&self) -> &BTreeSet<String> {
        &self.behind_filter
    }

    /// The echo tagged `tag`.
    pub fn echo(&self, tag: &str) -> Option<&EchoResult> {
        self.echoes.iter().find(|e| e.tag == tag)
    }
}

/// Runs `scenario` with `seed` (or the scenario's own seed).
pub fn run(scenario: &Scenario, seed: Option<u64>) -> Result<Outcome, ScenarioError> {
    run_detailed(scenario, seed).map(|(outcome, _)| outcome)
}

/// Runs `scenario` like [`run`], and returns the measurements too.
pub fn run_detailed(
    scenario: &Scenario,
    seed: Option<u64>,
) -> Result<(Outcome, Details), ScenarioError> {
    play(scenario, seed, false)
}

/// Runs `scenario` like [`run_detailed`], keeping every datagram the network carried in
/// [`Outcome::captured`] (for [`crate::capture::write_pcap`]). The run is the same run: the
/// capture changes neither its behaviour nor its trace.
pub fn run_captured(
    scenario: &Scenario,
    seed: Option<u64>,
) -> Result<(Outcome, Details), ScenarioError> {
    play(scenario, seed, true)
}

fn play(
    scenario: &Scenario,
    seed: Option<u64>,
    capture: bool,
) -> Result<(Outcome, Details), ScenarioError> {
    // A scenario built in code has not been through `parse`: check it the same way.
    scenario.check_hosts()?;
    scenario.check_script()?;
    let mut scenario = scenario.clone();
    scenario.seed = seed.unwrap_or(scenario.seed);
    let (mut sim, world) = scenario
        .topology()?
        .build()
        .map_err(|e| invalid(e.to_string(), "fix the topology"))?;
    if capture {
        world.capture().enable();
    }
    let reports = Arc::new(Reports::default());
    let mut inboxes = BTreeMap::new();
    let mut storages = BTreeMap::new();
    let mut tripwires = BTreeMap::new();
    let mut mailboxes = BTreeMap::new();
    // Task folders are real directories, as the CLI's are; they outlive the run's crashes.
    let mut task_homes: BTreeMap<String, (tempfile::TempDir, TaskDirs)> = BTreeMap::new();
    for host in &scenario.hosts {
        let (tx, rx) = mpsc::unbounded_channel();
        let rx: agent::Commands = Arc::new(tokio::sync::Mutex::new(rx));
        let net = world.net(&host.name).expect("hosts are in the world");
        let reports = reports.clone();
        if host.kind.is_rendezvous() {
            let primary = host
                .primary
                .as_deref()
                .map(|p| registry_addr(&scenario, &world, p));
            let spec = rendezvous::Spec {
                registry_port: host.registry_port(),
                beacon_port: host.beacon_port(),
                primary,
                started: Arc::new(AtomicBool::new(host.autostart.unwrap_or(true))),
                storage: MemStorage::new(),
            };
            storages.insert(host.name.clone(), spec.storage.clone());
            sim.host(host.name.as_str(), move || {
                rendezvous::run(net.clone(), spec.clone(), rx.clone(), reports.clone())
            });
        } else if host.kind == HostKind::Daemon {
            let rdv = host
                .registry
                .as_deref()
                .expect("checked: daemons name a registry");
            let registry = registry_addr(&scenario, &world, rdv);
            let beacon_port = scenario
                .host(rdv)
                .map(|h| h.beacon_port())
                .unwrap_or_default();
            let spec = daemon::Spec {
                registry,
                beacon: SocketAddr::new(registry.ip(), beacon_port),
                keepalive: host.keepalive.map(|k| k.0),
                peer_idle_expiry: host.peer_idle_expiry.map(|e| e.0),
                standby: host
                    .standby_registry
                    .as_deref()
                    .map(|s| registry_addr(&scenario, &world, s)),
                public: host.public.unwrap_or(false),
                storage: MemStorage::new(),
                starts: Arc::default(),
                planted_bug: scenario.planted_bug,
                mailbox: scenario.runs_dataexchange(&host.name).then(|| {
                    match host.mailbox_capacity {
                        Some(bytes) => MemMailbox::with_capacity(bytes),
                        None => MemMailbox::new(),
                    }
                }),
                tripwire: Tripwire::default(),
                tasks: match scenario.runs_tasks(&host.name) {
                    true => {
                        let home = tempfile::tempdir().map_err(|e| {
                            invalid(
                                format!("no temporary directory for {}'s tasks: {e}", host.name),
                                "check that TMPDIR is writable",
                            )
                        })?;
                        let dirs = TaskDirs::new(home.path().join("tasks"));
                        task_homes.insert(host.name.clone(), (home, dirs.clone()));
                        Some(dirs)
                    }
                    false => None,
                },
            };
            storages.insert(host.name.clone(), spec.storage.clone());
            tripwires.insert(host.name.clone(), spec.tripwire.clone());
            if let Some(store) = &spec.mailbox {
                mailboxes.insert(host.name.clone(), store.clone());
            }
            sim.host(host.name.as_str(), move || {
                daemon::run(net.clone(), spec.clone(), rx.clone(), reports.clone())
            });
        } else {
            sim.host(host.name.as_str(), move || {
                agent::run(net.clone(), rx.clone(), reports.clone())
            });
        }
        inboxes.insert(host.name.clone(), tx);
    }

    // After every host is registered: turmoil only has links between registered hosts.
    for link in &scenario.links {
        apply_link(&sim, &world, link);
    }

    let mut player = Player {
        sim,
        world: world.clone(),
        reports: reports.clone(),
        inboxes,
        sockets: BTreeMap::new(),
        down: BTreeSet::new(),
        clock: Duration::ZERO,
        failures: Vec::new(),
        pending: false,
        scenario: scenario.clone(),
        storages,
        tripwires,
        armed: BTreeSet::new(),
        plans: Vec::new(),
        tasks: Vec::new(),
        datagram_plans: Vec::new(),
    };
    for (i, action) in scenario.actions.iter().enumerate() {
        player.play(i + 1, action)?;
    }
    let end = player.clock + scenario.settle_time();
    player.step_until(end)?;
    player.inspect()?;

    let observations = lock(&reports.observations).clone();
    let replies = lock(&reports.replies).clone();
    let states = lock(&reports.states).clone();
    let daemon_info = lock(&reports.daemon_info).clone();
    let node_ids = lock(&reports.identities).clone();
    let echoes = lock(&reports.echoes).clone();
    let echoes_issued = lock(&reports.echoes_issued).clone();
    let sends = lock(&reports.sends).clone();
    let datagrams = lock(&reports.datagrams).clone();
    let stores: BTreeMap<String, Store> = mailboxes
        .iter()
        .map(|(h, m)| (h.clone(), m.entries()))
        .collect();
    let plans = std::mem::take(&mut player.plans);
    let located = locate(&plans, &stores, &node_ids, scenario.seed);
    let subscriptions = lock(&reports.subscriptions).clone();
    let task_ends: BTreeMap<String, TaskEnd> = player
        .tasks
        .iter()
        .map(|plan| {
            let at = |host: &str| {
                task_homes
                    .get(host)
                    .map(|(_, dirs)| tasks::view(dirs, &plan.id))
                    .unwrap_or_default()
            };
            let end = TaskEnd {
                plan: plan.clone(),
                at_from: at(&plan.from),
                at_to: at(&plan.to),
            };
            (plan.tag.clone(), end)
        })
        .collect();
    let trace = world.trace().lines();
    let mut results = player.failures;
    // Tolerated: the errors of script operations (the trace notes each); a host that could
    // not start at all still fails the run.
    let tolerated = |e: &&String| scenario.tolerate_errors && e.starts_with("action #");
    results.extend(
        lock(&reports.errors)
            .iter()
            .filter(|e| !tolerated(e))
            .map(|e| CheckResult {
                description: "host software did what it was told".to_string(),
                passed: false,
                detail: e.clone(),
            }),
    );
    let evidence = Evidence {
        observations: &observations,
        replies: &replies,
        states: &states,
        trace: &trace,
        world: &world,
        daemon_info: &daemon_info,
        node_ids: &node_ids,
        echoes: &echoes,
        echoes_issued: &echoes_issued,
        plans: &plans,
        sends: &sends,
        located: &located,
        subscriptions: &subscriptions,
        tasks: &task_ends,
        datagram_plans: &player.datagram_plans,
        datagrams: &datagrams,
    };
    results.extend(scenario.expectations.iter().map(|e| e.judge(&evidence)));
    let mut details = Details {
        echoes: echoes.clone(),
        sends: sends.clone(),
        behind_filter: scenario
            .hosts
            .iter()
            .filter(|h| filters_unsolicited(&world, &h.name))
            .map(|h| h.name.clone())
            .collect(),
        ..Details::default()
    };
    for e in &scenario.expectations {
        if let Expectation::Path { host, peer, .. } = e {
            let seen = observed_path(&evidence, host, peer);
            details.paths.insert((host.clone(), peer.clone()), seen);
        }
    }
    let outcome = Outcome {
        scenario: scenario.name.clone(),
        seed: scenario.seed,
        results,
        trace,
        datagrams: world.capture().count(),
        captured: world.capture().take(),
    };
    Ok((outcome, details))
}

/// Runs `scenario` with each seed of `seeds` in turn; returns the first outcome that fails,
/// or `None` when every seed passes.
pub fn search(
    scenario: &Scenario,
    seeds: std::ops::Range<u64>,
) -> Result<Option<Outcome>, ScenarioError> {
    search_rechecked(scenario, seeds, 0).map(|report| report.failure)
}

/// What [`search_rechecked`] found.
#[derive(Clone, Debug, Default)]
pub struct SearchReport {
    /// The first run that failed.
    pub failure: Option<Outcome>,
    /// The seeds run twice, each with the hash of its (identical) traces, in the order run.
    pub rechecked: Vec<(u64, u64)>,
    /// The first seed whose two runs gave different traces, and where they part.
    pub divergence: Option<(u64, Divergence)>,
}

/// [`search`], and a determinism check on the way: `recheck` seeds spread evenly over `seeds`,
/// and the failing seed if there is one (its replay line must replay it), run a second time
/// and their traces compared. Stops at the first failure or divergence.
pub fn search_rechecked(
    scenario: &Scenario,
    seeds: std::ops::Range<u64>,
    recheck: u64,
) -> Result<SearchReport, ScenarioError> {
    let sample = sample_seeds(seeds.clone(), recheck);
    let mut report = SearchReport::default();
    for seed in seeds {
        let outcome = run(scenario, Some(seed))?;
        let failed = !outcome.passed();
        if failed || sample.contains(&seed) {
            match replay_divergence(scenario, &outcome)? {
                Some(d) => {
                    report.divergence = Some((seed, d));
                    return Ok(report);
                }
                None => report.rechecked.push((seed, hash(&outcome.trace))),
            }
        }
        if failed {
            report.failure = Some(outcome);
            return Ok(report);
        }
    }
    Ok(report)
}

/// Runs `first`'s scenario and seed again; where the new trace parts from `first`'s, if it
/// does.
pub fn replay_divergence(
    scenario: &Scenario,
    first: &Outcome,
) -> Result<Option<Divergence>, ScenarioError> {
    let again = run(scenario, Some(first.seed))?;
    if hash(&again.trace) == hash(&first.trace) {
        return Ok(None);
    }
    Ok(first_divergence(&first.trace, &again.trace, CONTEXT))
}

/// `n` seeds spread evenly over `seeds`, starting with its first (all of them when `n` is at
/// least its length).
pub fn sample_seeds(seeds: std::ops::Range<u64>, n: u64) -> BTreeSet<u64> {
    let len = seeds.end.saturating_sub(seeds.start);
    if n >= len {
        return seeds.collect();
    }
    // i * len / n < len for i < n, so every pick lies in the range; u128 avoids overflow.
    (0..n)
        .map(|i| seeds.start + (u128::from(i) * u128::from(len) / u128::from(n)) as u64)
        .collect()
}

/// The registry address of rendezvous host `name`: its public address and registry port.
fn registry_addr(scenario: &Scenario, world: &World, name: &str) -> SocketAddr {
    let port = scenario
        .host(name)
        .map(|h| h.registry_port())
        .unwrap_or(super::DEFAULT_REGISTRY_PORT);
    let id = world.find(name).expect("names were checked");
    SocketAddr::from((world.public_addr(id), port))
}

fn apply_link(sim: &turmoil::Sim<'_>, world: &World, link: &LinkSpec) {
    let [a, b] = &link.between;
    if let (Some(x), Some(y)) = (world.find(a), world.find(b)) {
        world.set_link_faults(x, y, link.faults());
        if let Some(latency) = link.latency {
            sim.set_link_latency(a.as_str(), b.as_str(), latency.0);
        }
    }
}

struct Player {
    sim: turmoil::Sim<'static>,
    world: Arc<World>,
    reports: Arc<Reports>,
    inboxes: BTreeMap<String, mpsc::UnboundedSender<Command>>,
    /// Socket name to host name.
    sockets: BTreeMap<String, String>,
    down: BTreeSet<String>,
    clock: Duration,
    failures: Vec<CheckResult>,
    /// Commands were sent that hosts have not run yet.
    pending: bool,
    scenario: Scenario,
    /// The storage of each rendezvous host.
    storages: BTreeMap<String, MemStorage>,
    /// The crash trigger of each daemon host.
    tripwires: BTreeMap<String, Tripwire>,
    /// The hosts whose trigger a `crash-when` armed: only those can fire, so only those are
    /// polled after each step (polling all of them cost a lock per daemon per step).
    armed: BTreeSet<String>,
    /// The data-exchange sends so far, in script order.
    plans: Vec<SendPlan>,
    /// The tasks submitted so far, in script order.
    tasks: Vec<TaskPlan>,
    /// The datagram sends so far, in script order.
    datagram_plans: Vec<DatagramPlan>,
}

impl Player {
    /// The send a send-message or send-file action asks for, with its payload.
    fn send_plan(&self, action: &Action) -> SendPlan {
        let seed = self.scenario.seed;
        match action {
            Action::SendMessage {
                from,
                to,
                text,
                json,
                size,
                format,
                timeout,
                tag,
            } => {
                let (kind, bytes) = match (text, json, size) {
                    (Some(t), _, _) => (FrameType::Text, t.as_bytes().to_vec()),
                    (None, Some(j), _) => (FrameType::Json, j.as_bytes().to_vec()),
                    (None, None, n) => {
                        let n = n.unwrap_or_default();
                        match format {
                            Some(MessageFormat::Json) => {
                                (FrameType::Json, payload::json(seed, tag, n))
                            }
                            _ => (FrameType::Text, payload::text(seed, tag, n)),
                        }
                    }
                };
                SendPlan {
                    tag: tag.clone(),
                    from: from.clone(),
                    to: to.clone(),
                    content: Content::Message { kind, bytes },
                    timeout: timeout.map_or(DEFAULT_SEND_TIMEOUT, |t| t.0),
                }
            }
            Action::SendFile {
                from,
                to,
                name,
                size,
                timeout,
                tag,
            } => SendPlan {
                tag: tag.clone(),
                from: from.clone(),
                to: to.clone(),
                content: Content::File {
                    name: name.clone(),
                    size: *size,
                },
                timeout: timeout.map_or(DEFAULT_SEND_TIMEOUT, |t| t.0),
            },
            _ => unreachable!("only called for sends"),
        }
    }

    /// The task step a task action asks for.
    fn task_op(&self, action: &Action) -> DaemonOp {
        let (tag, step) = match action {
            Action::SubmitTask { to, task, tag, .. } => (
                tag,
                TaskStep::Submit {
                    to: to.clone(),
                    description: task.clone(),
                },
            ),
            Action::AcceptTask { tag, .. } => (tag, TaskStep::Accept),
            Action::DeclineTask {
                tag, justification, ..
            } => (
                tag,
                TaskStep::Decline {
                    justification: justification.clone(),
                },
            ),
            Action::ExecuteTask { tag, .. } => (tag, TaskStep::Execute),
            Action::SendResults { tag, text, .. } => {
                (tag, TaskStep::Results { text: text.clone() })
            }
            _ => unreachable!("only called for task actions"),
        };
        DaemonOp::Task(TaskOp {
            tag: tag.clone(),
            id: tasks::task_id(self.scenario.seed, tag),
            step,
        })
    }

    /// One simulation step; a host whose crash trigger fired in it crashes now.
    fn step(&mut self) -> Result<(), ScenarioError> {
        self.sim
            .step()
            .map_err(|e| ScenarioError::Simulation(e.to_string()))?;
        let fired: Vec<(String, String)> = self
            .armed
            .iter()
            .filter_map(|h| self.tripwires[h].take_fired().map(|why| (h.clone(), why)))
            .collect();
        for (host, why) in fired {
            self.note(&host, format!("crash-when takes the host down ({why})"));
            self.crash(&host);
        }
        Ok(())
    }

    fn step_until(&mut self, t: Duration) -> Result<(), ScenarioError> {
        while self.sim.elapsed() < t {
            self.pending = false;
            self.step()?;
        }
        Ok(())
    }

    /// Lets hosts run the commands already sent (one step), so that an action that changes the
    /// world (crash, partition, link faults) takes effect after them, in script order.
    fn flush(&mut self) -> Result<(), ScenarioError> {
        if self.pending {
            self.pending = false;
            self.step()?;
        }
        Ok(())
    }

    fn fail(&mut self, n: usize, action: &Action, why: String) {
        self.failures.push(CheckResult {
            description: format!(
                "action #{n} ({}) at {}s",
                action.kind(),
                fmt_time(self.clock)
            ),
            passed: false,
            detail: why,
        });
    }

    fn note(&self, node: &str, text: String) {
        self.world.trace().note_at(self.sim.elapsed(), node, text);
    }

    fn command(&mut self, n: usize, action: &Action, host: &str, command: Command) {
        if self.down.contains(host) {
            return self.fail(n, action, format!("{host} is down (crashed)"));
        }
        if self.inboxes[host].send(command).is_err() {
            self.fail(n, action, format!("{host} stopped taking commands"));
        }
        self.pending = true;
    }

    fn id(&self, name: &str) -> usize {
        self.world.find(name).expect("names were checked")
    }

    /// Asks the rendezvous hosts that `same-state` expectations name for a digest of their
    /// directory, and steps until they have all answered (a crashed host answers nothing).
    fn inspect(&mut self) -> Result<(), ScenarioError> {
        let mut hosts = BTreeSet::new();
        for e in &self.scenario.expectations {
            if let Expectation::SameState { hosts: h } = e {
                hosts.extend(h.iter().cloned());
            }
            if let Expectation::Path { host, .. } | Expectation::NoPeer { host, .. } = e {
                hosts.insert(host.clone());
            }
        }
        hosts.retain(|h| !self.down.contains(h));
        for h in &hosts {
            // A closed inbox means the host stopped: it simply reports nothing.
            let _ = self.inboxes[h].send(Command::Inspect);
        }
        let reports = self.reports.clone();
        let reported = |h: &String| {
            lock(&reports.states).contains_key(h) || lock(&reports.daemon_info).contains_key(h)
        };
        for _ in 0..INSPECT_STEPS {
            if hosts.iter().all(reported) {
                break;
            }
            self.step()?;
        }
        Ok(())
    }

    /// Turns a registry action into the request its host carries out.
    fn request(&self, n: usize, action: &Action) -> Option<(String, Request)> {
        let parts = action.request()?;
        let identity = parts.identity.unwrap_or_default().to_string();
        let other = parts.others[0].unwrap_or_default().to_string();
        let op = match action {
            Action::Register {
                port,
                hostname,
                owner,
                ..
            } => Op::Register {
                identity,
                port: port.unwrap_or(super::DEFAULT_LISTEN_PORT),
                hostname: hostname.clone().unwrap_or_default(),
                owner: owner.clone().unwrap_or_default(),
            },
            Action::Resolve { .. } => Op::Resolve {
                identity,
                target: other,
            },
            Action::Lookup { .. } => Op::Lookup { target: other },
            Action::SetVisibility { public, .. } => Op::SetVisibility {
                identity,
                public: *public,
            },
            Action::ReportTrust { .. } => Op::ReportTrust {
                identity,
                peer: other,
            },
            Action::Heartbeat { .. } => Op::Heartbeat { identity },
            Action::RequestHandshake { justification, .. } => Op::RequestHandshake {
                identity,
                peer: other,
                justification: justification.clone().unwrap_or_default(),
            },
            Action::PollHandshakes { .. } => Op::PollHandshakes { identity },
            Action::RespondHandshake { accept, .. } => Op::RespondHandshake {
                identity,
                peer: other,
                accept: accept.unwrap_or(true),
            },
            _ => return None,
        };
        let request = Request {
            action: n,
            tag: parts.tag.map(str::to_string),
            registry: registry_addr(&self.scenario, &self.world, parts.registry),
            registry_name: parts.registry.to_string(),
            op,
        };
        Some((parts.host.to_string(), request))
    }

    fn crash(&mut self, host: &str) {
        self.note(host, "crash".to_string());
        self.sim.crash(host);
        // A trigger silenced the dying host until now; the crash makes that moot.
        self.world.unsilence(self.id(host));
        if let Some(storage) = self.storages.get(host) {
            // Power loss: only what was durable survives.
            storage.crash();
        }
        self.down.insert(host.to_string());
    }

    fn restart(&mut self, host: &str) {
        self.note(host, "restart".to_string());
        if let Some(storage) = self.storages.get(host) {
            storage.restart();
        }
        self.sim.bounce(host);
        self.down.remove(host);
    }

    fn play(&mut self, n: usize, action: &Action) -> Result<(), ScenarioError> {
        // Sends and requests do not change the world: they run at the next step, in order.
        let quiet = matches!(
            action,
            Action::Bind { .. }
                | Action::Send { .. }
                | Action::Handshake { .. }
                | Action::Approve { .. }
                | Action::Revoke { .. }
                | Action::ListenDatagrams { .. }
                | Action::SendDatagrams { .. }
                | Action::Echo { .. }
                | Action::SendMessage { .. }
                | Action::SendFile { .. }
                | Action::Subscribe { .. }
                | Action::Publish { .. }
                | Action::SubmitTask { .. }
                | Action::AcceptTask { .. }
                | Action::DeclineTask { .. }
                | Action::ExecuteTask { .. }
                | Action::SendResults { .. }
        );
        if !quiet && action.request().is_none() {
            self.flush()?;
        }
        if let Some((host, request)) = self.request(n, action) {
            self.command(n, action, &host, Command::Request(request));
            return Ok(());
        }
        let daemon_op =
            match action {
                Action::Handshake { host, peer } => {
                    Some((host, None, DaemonOp::Handshake { peer: peer.clone() }))
                }
                Action::Approve { host, peer } => {
                    Some((host, None, DaemonOp::Approve { peer: peer.clone() }))
                }
                Action::Revoke { host, peer } => {
                    Some((host, None, DaemonOp::Revoke { peer: peer.clone() }))
                }
                Action::ListenDatagrams { host, ports } => {
                    Some((host, None, DaemonOp::ListenDatagrams(ports.clone())))
                }
                Action::SendDatagrams {
                    from,
                    to,
                    ports,
                    count,
                    size,
                    tag,
                } => {
                    let plan = DatagramPlan {
                        tag: tag.clone(),
                        from: from.clone(),
                        to: to.clone(),
                        ports: ports.clone(),
                        count: count.unwrap_or(10),
                        size: size.unwrap_or(200),
                    };
                    self.datagram_plans.push(plan.clone());
                    Some((from, Some(tag.clone()), DaemonOp::SendDatagrams(plan)))
                }
                Action::Echo {
                    host,
                    peer,
                    bytes,
                    tag,
                } => Some((
                    host,
                    Some(tag.clone()),
                    DaemonOp::Echo {
                        peer: peer.clone(),
                        bytes: bytes.unwrap_or(DEFAULT_ECHO_BYTES),
                        expect_failure: self.scenario.expectations.iter().any(
                            |e| matches!(e, Expectation::EchoFailed { tag: t, .. } if t == tag),
                        ),
                    },
                )),
                Action::SendMessage { from, tag, .. } | Action::SendFile { from, tag, .. } => {
                    let plan = self.send_plan(action);
                    self.plans.push(plan.clone());
                    Some((from, Some(tag.clone()), DaemonOp::Send(plan)))
                }
                Action::Subscribe {
                    host,
                    at,
                    topic,
                    count,
                    tag,
                } => Some((
                    host,
                    Some(tag.clone()),
                    DaemonOp::Subscribe(SubscribePlan {
                        tag: tag.clone(),
                        at: at.clone(),
                        topic: topic.clone(),
                        count: *count,
                    }),
                )),
                Action::Publish {
                    host,
                    at,
                    topic,
                    texts,
                } => Some((
                    host,
                    None,
                    DaemonOp::Publish {
                        at: at.clone(),
                        topic: topic.clone(),
                        texts: texts.clone(),
                    },
                )),
                Action::SubmitTask { from, to, tag, .. } => {
                    self.tasks.push(TaskPlan {
                        tag: tag.clone(),
                        from: from.clone(),
                        to: to.clone(),
                        id: tasks::task_id(self.scenario.seed, tag),
                    });
                    Some((from, Some(tag.clone()), self.task_op(action)))
                }
                Action::AcceptTask { host, tag }
                | Action::DeclineTask { host, tag, .. }
                | Action::ExecuteTask { host, tag }
                | Action::SendResults { host, tag, .. } => {
                    Some((host, Some(tag.clone()), self.task_op(action)))
                }
                _ => None,
            };
        if let Some((host, tag, op)) = daemon_op {
            let request = DaemonRequest { action: n, tag, op };
            self.command(n, action, host, Command::Daemon(request));
            return Ok(());
        }
        match action {
            Action::CrashWhen {
                host,
                stored,
                received_bytes,
            } => {
                let trigger = match (stored, received_bytes) {
                    (Some(n), _) => Trigger::Stored(*n),
                    (None, Some(n)) => Trigger::ReceivedBytes(*n),
                    (None, None) => unreachable!("checked by Scenario::parse"),
                };
                self.note(host, format!("crash-when armed: {trigger}"));
                self.tripwires[host.as_str()].arm(trigger);
                self.armed.insert(host.clone());
            }
            Action::Wait {
                duration,
                until,
                echo,
                send,
                subscribed,
            } => {
                let target = match (duration, until) {
                    (Some(d), _) => self.clock + d.0,
                    (None, Some(u)) => u.0,
                    (None, None) => self.clock,
                };
                if target < self.clock {
                    self.fail(
                        n,
                        action,
                        format!("until {}s is in the past", fmt_time(target)),
                    );
                    return Ok(());
                }
                let ended_send = send.clone();
                let ended_echo = echo.clone();
                let ready_subscription = subscribed.clone();
                match echo.as_ref().or(send.as_ref()).or(subscribed.as_ref()) {
                    Some(_) => {
                        // Time passes until the echo or send ends, or the subscription is up;
                        // later actions happen from then on.
                        let ended = |p: &Player| {
                            ended_echo.as_ref().is_some_and(|t| {
                                lock(&p.reports.echoes).iter().any(|e| e.tag == *t)
                            }) || ended_send
                                .as_ref()
                                .is_some_and(|t| lock(&p.reports.sends).iter().any(|s| s.tag == *t))
                                || ready_subscription.as_ref().is_some_and(|t| {
                                    lock(&p.reports.subscriptions)
                                        .get(t)
                                        .is_some_and(|r| r.subscribed || r.error.is_some())
                                })
                        };
                        while self.sim.elapsed() < target && !ended(self) {
                            self.step()?;
                        }
                        self.pending = false;
                        self.clock = self.sim.elapsed().max(self.clock);
                    }
                    None => {
                        self.step_until(target)?;
                        self.clock = target.max(self.clock);
                    }
                }
            }
            Action::Bind { host, socket, port } => {
                self.note(host, format!("bind {socket} port {port}"));
                self.sockets.insert(socket.clone(), host.clone());
                let command = Command::Bind {
                    socket: socket.clone(),
                    port: *port,
                };
                self.command(n, action, host, command);
            }
            Action::Send {
                socket,
                to,
                reply_to,
                tag,
            } => {
                let host = self.sockets[socket].clone();
                let dst = match (to, reply_to) {
                    (Some(to), _) => resolve(&self.world, to)
                        .map_err(|e| invalid(e, "write to = \"host:port\""))?,
                    (None, Some(r)) => {
                        let seen = lock(&self.reports.observations)
                            .iter()
                            .find(|o| o.tag == *r)
                            .map(|o| o.from);
                        match seen {
                            Some(from) => from,
                            None => {
                                let why = format!("no probe tagged {r:?} has arrived yet");
                                self.fail(n, action, why);
                                return Ok(());
                            }
                        }
                    }
                    (None, None) => unreachable!("checked by Scenario::parse"),
                };
                let command = Command::Send {
                    socket: socket.clone(),
                    to: dst,
                    tag: tag.clone(),
                };
                self.command(n, action, &host, command);
            }
            Action::Crash { host } | Action::RegistryCrash { host } => self.crash(host),
            Action::Restart { host } | Action::RegistryRestart { host } => self.restart(host),
            Action::RegistryStart { host } => {
                self.note(host, "registry-start".to_string());
                self.command(n, action, host, Command::Start);
            }
            Action::Promote { host } => {
                self.note(host, "promote".to_string());
                self.command(n, action, host, Command::Promote);
            }
            Action::Partition { between, oneway } => {
                let [a, b] = between;
                let (x, y) = (self.id(a), self.id(b));
                self.world.block(x, y);
                if *oneway {
                    self.note(a, format!("partition {a} -> {b}"));
                    self.sim.partition_oneway(a.as_str(), b.as_str());
                } else {
                    self.note(a, format!("partition {a} <-> {b}"));
                    self.world.block(y, x);
                    self.sim.partition(a.as_str(), b.as_str());
                }
            }
            Action::Heal { between } => {
                let [a, b] = between;
                let (x, y) = (self.id(a), self.id(b));
                self.note(a, format!("heal {a} <-> {b}"));
                self.world.unblock(x, y);
                self.world.unblock(y, x);
                self.sim.repair(a.as_str(), b.as_str());
            }
            Action::SetLink(link) => {
                let [a, b] = &link.between;
                self.note(a, format!("set-link {a} <-> {b}"));
                apply_link(&self.sim, &self.world, link);
            }
            Action::Register { .. }
            | Action::Resolve { .. }
            | Action::Lookup { .. }
            | Action::SetVisibility { .. }
            | Action::ReportTrust { .. }
            | Action::Heartbeat { .. }
            | Action::RequestHandshake { .. }
            | Action::PollHandshakes { .. }
            | Action::RespondHandshake { .. }
            | Action::Handshake { .. }
            | Action::Approve { .. }
            | Action::Revoke { .. }
            | Action::ListenDatagrams { .. }
            | Action::SendDatagrams { .. }
            | Action::Echo { .. }
            | Action::SendMessage { .. }
            | Action::SendFile { .. }
            | Action::Subscribe { .. }
            | Action::Publish { .. }
            | Action::SubmitTask { .. }
            | Action::AcceptTask { .. }
            | Action::DeclineTask { .. }
            | Action::ExecuteTask { .. }
            | Action::SendResults { .. } => unreachable!("requests were handled above"),
        }
        Ok(())
    }
}
