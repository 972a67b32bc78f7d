//! One seed, one scenario: a topology, a workload and a fault schedule drawn from a seeded
//! generator, written as an ordinary scenario file (so a failing seed replays with
//! `pilot-sim run`).
//!
//! The story has four acts. Setup: daemons come up (some share a NAT box, which hairpins or
//! not), trusted pairs shake hands, every daemon listens for datagrams, a probe client
//! registers identities. Faults: echoes, datagrams, data-exchange sends and trust revocations
//! run while links lose, delay, duplicate and reorder datagrams, paths are cut one or both
//! ways, NAT boxes reboot and daemons and registries crash and restart (or the primary goes for
//! good and the standby is promoted); every fault heals before the act ends. Heal: time for
//! registrations, mappings and tunnels to recover, bounded by [`HEAL_BOUND`]. Check: every
//! trusted pair echoes, untrusted and revoked daemons try to (streams and datagrams), the
//! client looks its identities up again, a revoked pair may shake hands anew.

use super::rng::Draw;
use crate::scenario::{PlantedBug, Scenario, ScenarioError};
use std::time::Duration;
use toml::{Table, Value};

/// How long, after the last fault heals, daemons get to find each other again before the
/// final echoes (registries re-register after three missed heartbeats, tunnels re-punch).
pub const HEAL_BOUND: Duration = Duration::from_secs(40);

/// The heal bound after a NAT box rebooted: its daemons came back on new public ports, and the
/// beacon keeps a live entry at the old port until `takeover_after` (65 s) has passed since
/// its last refresh, then moves it at the daemon's next Discover (every `beacon_refresh`,
/// 25 s). Relayed peers (a symmetric NAT on one side) cannot reach it before that: a deliberate
/// trade against endpoint hijacking (docs/BEACON.md, "Claims"). Ten seconds more for the
/// tunnel's next relay attempt.
pub fn rebind_bound() -> Duration {
    let takeover = pilot::beacon::BeaconConfig::default().takeover_after;
    let refresh = pilot::tunnel::Timing::default().beacon_refresh;
    (takeover + refresh + Duration::from_secs(10)).max(HEAL_BOUND)
}

/// How long the final act waits for each echo at most: past the harness's own timeout, so a
/// hung stream shows as hung rather than as cut short.
const ECHO_WAIT: Duration = Duration::from_secs(130);

/// What the generator may draw.
#[derive(Clone, Debug)]
pub struct Options {
    /// The length of the fault act.
    pub time: Duration,
    /// The most daemons a topology has (at least 2; at most 20 are drawn).
    pub max_daemons: usize,
    /// A bug to plant in every generated scenario (tests of the search itself).
    pub planted_bug: Option<PlantedBug>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            time: Duration::from_secs(20),
            max_daemons: 20,
            planted_bug: None,
        }
    }
}

/// A generated scenario: its file text and the parsed scenario.
#[derive(Clone, Debug)]
pub struct Generated {
    /// The seed it was drawn from (also the scenario's own seed).
    pub seed: u64,
    /// The scenario file.
    pub text: String,
    /// The scenario, parsed and checked.
    pub scenario: Scenario,
}

/// The NAT presets a daemon may sit behind; `None`: on the internet itself.
const PRESETS: [Option<&str>; 6] = [
    None,
    Some("full-cone"),
    Some("restricted-cone"),
    Some("port-restricted-cone"),
    Some("symmetric"),
    Some("cgnat"),
];

/// The ports every daemon listens on for datagrams.
const DATAGRAM_PORTS: [u16; 2] = [5000, 5001];

/// A daemon of the drawn topology.
#[derive(Clone, Debug)]
struct Daemon {
    name: String,
    /// Its NAT box (`None`: on the internet), perhaps shared with other daemons.
    nat: Option<String>,
    /// The outermost node in front of it: what the internet sees.
    edge: String,
    /// Whether it is resolvable by anyone.
    public: bool,
}

impl Daemon {
    /// The link its traffic always crosses first: to its NAT box, or to the rendezvous host.
    fn access_link(&self) -> [String; 2] {
        match &self.nat {
            Some(nat) => [self.name.clone(), nat.clone()],
            None => [self.name.clone(), RDV.to_string()],
        }
    }
}

const RDV: &str = "rdv";
const STANDBY: &str = "stby";
const CLIENT: &str = "client";

/// Builds scenario `seed` under `options`.
pub fn generate(seed: u64, options: &Options) -> Result<Generated, ScenarioError> {
    let mut g = Generator {
        draw: Draw::new(seed),
        doc: Doc::default(),
        clock: Duration::ZERO,
        echoes: 0,
        sends: 0,
        promotion: None,
        trusted: Vec::new(),
        revoked: Vec::new(),
        nat_rebooted: false,
    };
    g.story(options);
    let text = g.doc.text(seed, options);
    let scenario = Scenario::parse(&text)?;
    Ok(Generated {
        seed,
        text,
        scenario,
    })
}

/// The file being written, as TOML tables.
#[derive(Default)]
struct Doc {
    hosts: Vec<Table>,
    nats: Vec<Table>,
    actions: Vec<Table>,
    expects: Vec<Table>,
}

impl Doc {
    fn text(&self, seed: u64, options: &Options) -> String {
        let mut doc = Table::new();
        doc.insert("name".into(), format!("swarm-{seed}").into());
        doc.insert(
            "description".into(),
            format!("Drawn by `pilot-sim swarm` from seed {seed}.").into(),
        );
        doc.insert("seed".into(), Value::Integer(seed as i64));
        doc.insert("settle".into(), "1s".into());
        doc.insert("tolerate_errors".into(), true.into());
        if let Some(bug) = options.planted_bug {
            doc.insert("planted_bug".into(), bug.name().into());
        }
        let array =
            |tables: &[Table]| Value::Array(tables.iter().cloned().map(Value::Table).collect());
        doc.insert("nat".into(), array(&self.nats));
        doc.insert("host".into(), array(&self.hosts));
        doc.insert("action".into(), array(&self.actions));
        doc.insert("expect".into(), array(&self.expects));
        toml::to_string(&doc).expect("a table of strings, numbers and arrays serializes")
    }
}

/// A TOML table from key-value pairs.
fn table<const N: usize>(pairs: [(&str, Value); N]) -> Table {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn ms(d: Duration) -> Value {
    format!("{}ms", d.as_millis()).into()
}

fn names(pair: &[String; 2]) -> Value {
    Value::Array(pair.iter().cloned().map(Value::from).collect())
}

/// A fault that has begun and heals at `until`.
struct Open {
    until: Duration,
    heal: Vec<Table>,
    /// A host that is down until the fault heals.
    down: Option<String>,
    /// A daemon that restarts as the fault heals (and listens for datagrams again).
    relisten: Option<String>,
}

struct Generator {
    draw: Draw,
    doc: Doc,
    /// Simulated time the script has reached.
    clock: Duration,
    echoes: usize,
    sends: usize,
    /// `Some(false)`: the primary may go for good and the standby be promoted;
    /// `Some(true)`: it happened. `None`: no promotion in this story.
    promotion: Option<bool>,
    /// Trusting pairs `(asker, approver)`, by daemon index.
    trusted: Vec<(usize, usize)>,
    /// Pairs `(revoker, revoked)` whose trust was revoked (and not given again).
    revoked: Vec<(usize, usize)>,
    /// A NAT box rebooted: the heal act waits [`rebind_bound`].
    nat_rebooted: bool,
}

impl Generator {
    fn story(&mut self, options: &Options) {
        let most = options.max_daemons.clamp(2, 20);
        let count = 2 + self.draw.below(most as u64 - 1) as usize;
        let standby = self.draw.chance(1, 3);
        if standby && self.draw.chance(1, 2) {
            self.promotion = Some(false);
        }
        let keepalive = Duration::from_secs(2 + self.draw.below(4));
        let daemons = self.topology(count, standby, keepalive);

        // Setup: trust pairs, datagram listeners, client registrations.
        self.wait(Duration::from_millis(500));
        let pairs = 1 + self.draw.below(count.min(6) as u64) as usize;
        for _ in 0..pairs {
            let (a, b) = self.pair(count);
            if self.trusted.contains(&(a, b)) || self.trusted.contains(&(b, a)) {
                continue;
            }
            self.trusted.push((a, b));
            self.trust(&daemons, a, b);
        }
        for d in &daemons {
            self.listen(&d.name);
        }
        let identities = 1 + self.draw.below(3) as usize;
        for i in 1..=identities {
            self.action(table([
                ("do", "register".into()),
                ("host", CLIENT.into()),
                ("registry", RDV.into()),
                ("identity", format!("w{i}").into()),
                ("tag", format!("reg-w{i}").into()),
            ]));
            self.expect(table([
                ("check", "reply".into()),
                ("tag", format!("reg-w{i}").into()),
                ("ok", true.into()),
            ]));
        }
        self.wait(Duration::from_secs(3));

        // Faults, with work beside them.
        let end = self.clock + options.time;
        let mut open: Vec<Open> = Vec::new();
        while self.clock < end {
            let now = self.clock;
            let (due, rest): (Vec<Open>, Vec<Open>) =
                open.into_iter().partition(|o| o.until <= now);
            open = rest;
            for o in due {
                self.heal(o);
            }
            let down: Vec<String> = open.iter().filter_map(|o| o.down.clone()).collect();
            match self.draw.below(10) {
                0..=3 => self.work(&daemons, &down),
                _ => {
                    if let Some(f) = self.fault(&daemons, &down, end) {
                        open.push(f);
                    }
                }
            }
            let gap = Duration::from_millis(200 + self.draw.below(1800));
            self.wait(gap);
        }
        open.sort_by_key(|o| o.until);
        for o in open {
            self.heal(o);
        }

        // Heal: the bound within which every pair must find each other again.
        self.wait(self.heal_bound());

        // Check: trusted pairs echo, untrusted and revoked daemons are refused.
        let promoted = self.promotion == Some(true);
        let registry = if promoted { STANDBY } else { RDV };
        let trusted = self.trusted.clone();
        let reachable: Vec<(usize, usize)> = trusted
            .iter()
            .filter_map(|&(a, b)| reach(&daemons, a, b, promoted))
            .collect();
        for &(a, b) in reachable.iter().take(6) {
            let tag = self.echo(&daemons[a].name, &daemons[b].name, 2048);
            self.expect(table([("check", "echoed".into()), ("tag", tag.into())]));
        }
        let revoked = self.revoked.clone();
        let untrusted = (0..count)
            .flat_map(|a| (0..count).map(move |b| (a, b)))
            .find(|&(a, b)| {
                let touched =
                    |pairs: &[(usize, usize)]| pairs.contains(&(a, b)) || pairs.contains(&(b, a));
                a != b && daemons[b].public && !touched(&trusted) && !touched(&revoked)
            });
        // A revoked peer is refused by the daemon that revoked it, whatever the other side
        // heard of the revocation; streams and datagrams alike.
        let refused = untrusted
            .into_iter()
            .chain(revoked.iter().map(|&(r, p)| (p, r)));
        for (a, b) in refused.take(4).collect::<Vec<_>>() {
            let tag = self.echo(&daemons[a].name, &daemons[b].name, 1024);
            self.expect(table([
                ("check", "not-echoed".into()),
                ("tag", tag.clone().into()),
            ]));
            self.expect(table([("check", "echo-ended".into()), ("tag", tag.into())]));
            let tag = self.datagrams(&daemons[a].name, &daemons[b].name, 5, 100);
            self.expect(table([
                ("check", "no-datagrams".into()),
                ("tag", tag.into()),
            ]));
        }
        // One send that must be ACKed (with the primary gone for good, no pair may be left
        // that can reach each other: then no send need succeed).
        if let Some(&(a, b)) = reachable.first() {
            self.sends += 1;
            let tag = format!("m{}", self.sends);
            self.action(table([
                ("do", "send-message".into()),
                ("from", daemons[a].name.clone().into()),
                ("to", daemons[b].name.clone().into()),
                ("text", "after the faults".into()),
                ("tag", tag.into()),
            ]));
            self.expect(table([("check", "acked-kept".into())]));
        }
        for i in 1..=identities {
            self.action(table([
                ("do", "lookup".into()),
                ("host", CLIENT.into()),
                ("registry", registry.into()),
                ("target", format!("w{i}").into()),
                ("tag", format!("look-w{i}").into()),
            ]));
            self.expect(table([
                ("check", "reply".into()),
                ("tag", format!("look-w{i}").into()),
                ("same_node_as", format!("reg-w{i}").into()),
            ]));
        }
        if standby && !promoted {
            self.expect(table([
                ("check", "same-state".into()),
                ("hosts", Value::Array(vec![RDV.into(), STANDBY.into()])),
            ]));
        }
        for n in 1..=self.echoes {
            self.action(table([
                ("do", "wait".into()),
                ("for", ms(ECHO_WAIT)),
                ("echo", format!("e{n}").into()),
            ]));
        }
        // Paths are up again (the echoes came back): datagrams arrive, most of them.
        if let Some(&(a, b)) = reachable.first() {
            let tag = self.datagrams(&daemons[a].name, &daemons[b].name, 10, 300);
            self.expect(table([
                ("check", "datagrams-intact".into()),
                ("tag", tag.into()),
                ("at_least", Value::Integer(1)),
            ]));
        }
        // Trust given again after a revocation works like the first time.
        if let Some(&(r, p)) = revoked.first() {
            // After the refused datagrams have all gone (5, 20 ms apart). The revoked side
            // may never have heard of the revocation (its notice is best effort) and would
            // then take its own request for a no-op ("already trusted"): it drops its side
            // first (an error if it had heard, which is tolerated).
            self.wait(Duration::from_secs(2));
            self.action(table([
                ("do", "revoke".into()),
                ("host", daemons[p].name.clone().into()),
                ("peer", daemons[r].name.clone().into()),
            ]));
            self.trust(&daemons, p, r);
            self.wait(Duration::from_secs(5));
            if let Some((a, b)) = reach(&daemons, p, r, promoted) {
                let tag = self.echo(&daemons[a].name, &daemons[b].name, 1024);
                self.expect(table([
                    ("check", "echoed".into()),
                    ("tag", tag.clone().into()),
                ]));
                self.action(table([
                    ("do", "wait".into()),
                    ("for", ms(ECHO_WAIT)),
                    ("echo", tag.into()),
                ]));
            }
        }
        self.wait(Duration::from_secs(5));
    }

    /// Draws the hosts and NAT boxes.
    fn topology(&mut self, count: usize, standby: bool, keepalive: Duration) -> Vec<Daemon> {
        self.doc
            .hosts
            .push(table([("name", RDV.into()), ("kind", "rendezvous".into())]));
        if standby {
            self.doc.hosts.push(table([
                ("name", STANDBY.into()),
                ("kind", "standby".into()),
                ("primary", RDV.into()),
            ]));
        }
        self.doc.hosts.push(table([("name", CLIENT.into())]));
        let mut daemons: Vec<Daemon> = Vec::new();
        for i in 1..=count {
            let name = format!("d{i}");
            // A third of the later daemons share a NAT box with an earlier one (an office, a
            // home, one cloud network): same-NAT peers.
            let behind_nat: Vec<&Daemon> = daemons.iter().filter(|d| d.nat.is_some()).collect();
            let shared = match behind_nat.is_empty() || !self.draw.chance(1, 3) {
                true => None,
                false => {
                    let d = behind_nat[self.draw.below(behind_nat.len() as u64) as usize];
                    Some((d.nat.clone(), d.edge.clone()))
                }
            };
            let (nat, edge) = match shared {
                Some(shared) => shared,
                None => {
                    let preset = PRESETS[self.draw.below(PRESETS.len() as u64) as usize];
                    let nat = preset.map(|p| {
                        let nat = format!("nat-{name}");
                        let hairpin = self.draw.chance(1, 2);
                        self.doc.nats.push(table([
                            ("name", nat.clone().into()),
                            ("preset", p.into()),
                            ("hairpinning", hairpin.into()),
                        ]));
                        nat
                    });
                    let edge = match (preset, &nat) {
                        (Some("cgnat"), Some(n)) => format!("{n}-cgn"),
                        (_, Some(n)) => n.clone(),
                        (_, None) => name.clone(),
                    };
                    (nat, edge)
                }
            };
            let public = self.draw.chance(1, 2);
            let mut host = table([
                ("name", name.clone().into()),
                ("kind", "daemon".into()),
                ("registry", RDV.into()),
                ("keepalive", ms(keepalive)),
                ("public", public.into()),
            ]);
            if let Some(n) = &nat {
                host.insert("behind".into(), n.clone().into());
            }
            if standby {
                host.insert("standby_registry".into(), STANDBY.into());
            }
            self.doc.hosts.push(host);
            daemons.push(Daemon {
                name,
                nat,
                edge,
                public,
            });
        }
        daemons
    }

    /// How long the heal act lasts.
    fn heal_bound(&self) -> Duration {
        match self.nat_rebooted {
            true => rebind_bound(),
            false => HEAL_BOUND,
        }
    }

    /// Daemon `asker` asks `approver` for trust, and `approver` approves.
    fn trust(&mut self, daemons: &[Daemon], asker: usize, approver: usize) {
        self.action(table([
            ("do", "handshake".into()),
            ("host", daemons[asker].name.clone().into()),
            ("peer", daemons[approver].name.clone().into()),
        ]));
        self.action(table([
            ("do", "approve".into()),
            ("host", daemons[approver].name.clone().into()),
            ("peer", daemons[asker].name.clone().into()),
        ]));
    }

    /// Daemon `host` listens for datagrams (again, after a restart).
    fn listen(&mut self, host: &str) {
        let ports = DATAGRAM_PORTS.iter().map(|&p| Value::Integer(p.into()));
        self.action(table([
            ("do", "listen-datagrams".into()),
            ("host", host.into()),
            ("ports", Value::Array(ports.collect())),
        ]));
    }

    /// A send-datagrams action to both datagram ports; returns its tag.
    fn datagrams(&mut self, from: &str, to: &str, count: u64, size: u64) -> String {
        self.sends += 1;
        let tag = format!("g{}", self.sends);
        let ports = DATAGRAM_PORTS.iter().map(|&p| Value::Integer(p.into()));
        self.action(table([
            ("do", "send-datagrams".into()),
            ("from", from.into()),
            ("to", to.into()),
            ("ports", Value::Array(ports.collect())),
            ("count", Value::Integer(count as i64)),
            ("size", Value::Integer(size as i64)),
            ("tag", tag.clone().into()),
        ]));
        tag
    }

    /// Ends a fault: its healing actions, and a restarted daemon listens for datagrams again.
    fn heal(&mut self, open: Open) {
        for t in open.heal {
            self.action(t);
        }
        if let Some(host) = open.relisten {
            self.listen(&host);
        }
    }

    /// Two different daemons, by index.
    fn pair(&mut self, count: usize) -> (usize, usize) {
        let a = self.draw.below(count as u64) as usize;
        let b = (a + 1 + self.draw.below(count as u64 - 1) as usize) % count;
        (a, b)
    }

    fn action(&mut self, t: Table) {
        self.doc.actions.push(t);
    }

    fn expect(&mut self, t: Table) {
        self.doc.expects.push(t);
    }

    fn wait(&mut self, d: Duration) {
        self.clock += d;
        self.action(table([("do", "wait".into()), ("for", ms(d))]));
    }

    /// An echo action; returns its tag.
    fn echo(&mut self, from: &str, to: &str, bytes: u64) -> String {
        self.echoes += 1;
        let tag = format!("e{}", self.echoes);
        self.action(table([
            ("do", "echo".into()),
            ("host", from.into()),
            ("peer", to.into()),
            ("bytes", Value::Integer(bytes as i64)),
            ("tag", tag.clone().into()),
        ]));
        tag
    }

    /// One piece of work between two trusted daemons that are up: an echo, datagrams, a
    /// send, or a revocation of their trust.
    fn work(&mut self, daemons: &[Daemon], down: &[String]) {
        let pick = self.draw.below(self.trusted.len() as u64) as usize;
        let (a, b) = self.trusted[pick];
        let (a, b) = if self.draw.chance(1, 2) {
            (a, b)
        } else {
            (b, a)
        };
        let (from, to) = (&daemons[a].name, &daemons[b].name);
        if down.contains(from) {
            return;
        }
        match self.draw.below(5) {
            // The first pair stays trusted: the final checks need one.
            3 if pick > 0 => {
                self.trusted.remove(pick);
                self.revoked.push((a, b));
                self.action(table([
                    ("do", "revoke".into()),
                    ("host", from.clone().into()),
                    ("peer", to.clone().into()),
                ]));
            }
            3 | 4 => {
                let count = 3 + self.draw.below(20);
                let size = 40 + self.draw.below(1160);
                let (from, to) = (from.clone(), to.clone());
                let tag = self.datagrams(&from, &to, count, size);
                self.expect(table([
                    ("check", "datagrams-intact".into()),
                    ("tag", tag.into()),
                ]));
            }
            0 => {
                let bytes = 256 + self.draw.below(96 << 10);
                let tag = self.echo(from, to, bytes);
                self.expect(table([
                    ("check", "echo-intact".into()),
                    ("tag", tag.clone().into()),
                ]));
                self.expect(table([("check", "echo-ended".into()), ("tag", tag.into())]));
            }
            1 => {
                self.sends += 1;
                let size = 16 + self.draw.below(4096) as i64;
                self.action(table([
                    ("do", "send-message".into()),
                    ("from", from.clone().into()),
                    ("to", to.clone().into()),
                    ("size", Value::Integer(size)),
                    ("timeout", "30s".into()),
                    ("tag", format!("m{}", self.sends).into()),
                ]));
            }
            _ => {
                self.sends += 1;
                let size = 1024 + self.draw.below(200 << 10) as i64;
                self.action(table([
                    ("do", "send-file".into()),
                    ("from", from.clone().into()),
                    ("to", to.clone().into()),
                    ("name", format!("f{}.bin", self.sends).into()),
                    ("size", Value::Integer(size)),
                    ("timeout", "30s".into()),
                    ("tag", format!("m{}", self.sends).into()),
                ]));
            }
        }
    }

    /// Starts one fault (unless the draw lands on a node that is already down) and returns
    /// how it heals, no later than `end`.
    fn fault(&mut self, daemons: &[Daemon], down: &[String], end: Duration) -> Option<Open> {
        let d = &daemons[self.draw.below(daemons.len() as u64) as usize];
        let last = Duration::from_millis(300 + self.draw.below(8000));
        let until = (self.clock + last).min(end);
        let clean = |between: [String; 2]| {
            table([
                ("do", "set-link".into()),
                ("between", names(&between)),
                ("latency", "1ms".into()),
            ])
        };
        let (start, heal, host_down) = match self.draw.below(7) {
            // Loss, delay, duplication or reordering on a link.
            0 | 1 => {
                let between = match self.draw.chance(1, 2) {
                    true => d.access_link(),
                    false => {
                        let other = &daemons[self.draw.below(daemons.len() as u64) as usize];
                        if other.edge == d.edge {
                            d.access_link()
                        } else {
                            [d.edge.clone(), other.edge.clone()]
                        }
                    }
                };
                let mut t = clean(between.clone());
                match self.draw.below(4) {
                    0 => t.insert("loss".into(), self.probability(10, 60)),
                    1 => {
                        t.insert(
                            "latency".into(),
                            ms(Duration::from_millis(50 + self.draw.below(350))),
                        );
                        t.insert(
                            "jitter".into(),
                            ms(Duration::from_millis(self.draw.below(30))),
                        )
                    }
                    2 => t.insert("duplicate".into(), self.probability(10, 50)),
                    _ => t.insert("reorder".into(), self.probability(20, 60)),
                };
                (vec![t], vec![clean(between)], None)
            }
            // A path cut, one way or both.
            2 | 3 => {
                let other = match self.draw.chance(1, 3) {
                    true => RDV.to_string(),
                    false => daemons[self.draw.below(daemons.len() as u64) as usize]
                        .edge
                        .clone(),
                };
                if other == d.edge {
                    return None;
                }
                let between = [d.edge.clone(), other];
                let mut cut = table([("do", "partition".into()), ("between", names(&between))]);
                if self.draw.chance(1, 2) {
                    cut.insert("oneway".into(), true.into());
                }
                let heal = table([("do", "heal".into()), ("between", names(&between))]);
                (vec![cut], vec![heal], None)
            }
            // A NAT box reboots and forgets its mappings.
            4 => {
                let nat = d.nat.clone()?;
                if down.contains(&nat) {
                    return None;
                }
                self.nat_rebooted = true;
                (self.bounce(&nat), vec![self.up(&nat)], Some(nat))
            }
            // A daemon crashes and restarts.
            5 => (
                self.bounce(&d.name),
                vec![self.up(&d.name)],
                Some(d.name.clone()),
            ),
            // The primary registry crashes and restarts, or goes for good and the standby
            // is promoted in its place.
            _ => {
                if self.promotion == Some(true) || down.iter().any(|h| h == RDV) {
                    return None;
                }
                let start = vec![table([
                    ("do", "registry-crash".into()),
                    ("host", RDV.into()),
                ])];
                let heal = match self.promotion {
                    Some(_) => {
                        self.promotion = Some(true);
                        table([("do", "promote".into()), ("host", STANDBY.into())])
                    }
                    None => table([("do", "registry-restart".into()), ("host", RDV.into())]),
                };
                (start, vec![heal], Some(RDV.to_string()))
            }
        };
        if host_down.as_ref().is_some_and(|h| down.contains(h)) {
            return None;
        }
        for t in start {
            self.action(t);
        }
        let relisten = host_down
            .clone()
            .filter(|h| daemons.iter().any(|d| d.name == *h));
        Some(Open {
            until,
            heal,
            down: host_down,
            relisten,
        })
    }

    fn bounce(&self, host: &str) -> Vec<Table> {
        vec![table([("do", "crash".into()), ("host", host.into())])]
    }

    fn up(&self, host: &str) -> Table {
        table([("do", "restart".into()), ("host", host.into())])
    }

    /// A probability between `lo` and `hi` percent.
    fn probability(&mut self, lo: u64, hi: u64) -> Value {
        Value::Float((lo + self.draw.below(hi - lo + 1)) as f64 / 100.0)
    }
}

/// The direction in which pair `(a, b)` must echo after the faults, if it must: with the
/// primary gone for good its beacon went too, so no punch or relay reaches a daemon behind a
/// NAT; only what it contacts itself, or a daemon on the internet, can be reached.
fn reach(daemons: &[Daemon], a: usize, b: usize, promoted: bool) -> Option<(usize, usize)> {
    match (promoted, daemons[a].nat.is_none(), daemons[b].nat.is_none()) {
        (false, _, _) | (true, _, true) => Some((a, b)),
        (true, true, false) => Some((b, a)),
        (true, false, false) => None,
    }
}
