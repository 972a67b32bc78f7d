//! One seed, one scenario: a topology, a workload and a fault schedule drawn from a seeded
//! generator, written as an ordinary scenario file (so a failing seed replays with
//! `pilot-sim run`).
//!
//! The story has four acts. Setup: daemons come up, trusted pairs shake hands, a probe
//! client registers identities. Faults: echoes and data-exchange sends run while links lose,
//! delay, duplicate and reorder datagrams, paths are cut one or both ways, NAT boxes reboot and
//! daemons and registries crash and restart; every fault heals before the act ends. Heal: time
//! for registrations, mappings and tunnels to recover, bounded by [`HEAL_BOUND`]. Check: every
//! trusted pair echoes, an untrusted daemon tries to, the client looks its identities up again.

use super::rng::Draw;
use crate::scenario::{PlantedBug, Scenario, ScenarioError};
use std::time::Duration;
use toml::{Table, Value};

/// How long, after the last fault heals, daemons get to find each other again before the
/// final echoes (registries re-register after three missed heartbeats, tunnels re-punch).
pub const HEAL_BOUND: Duration = Duration::from_secs(40);

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

/// A daemon of the drawn topology.
#[derive(Clone, Debug)]
struct Daemon {
    name: String,
    /// Its NAT box (`None`: public).
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
}

struct Generator {
    draw: Draw,
    doc: Doc,
    /// Simulated time the script has reached.
    clock: Duration,
    echoes: usize,
    sends: usize,
}

impl Generator {
    fn story(&mut self, options: &Options) {
        let most = options.max_daemons.clamp(2, 20);
        let count = 2 + self.draw.below(most as u64 - 1) as usize;
        let standby = self.draw.chance(1, 3);
        let keepalive = Duration::from_secs(2 + self.draw.below(4));
        let daemons = self.topology(count, standby, keepalive);

        // Setup: trust pairs, client registrations.
        self.wait(Duration::from_millis(500));
        let mut trusted = Vec::new();
        let pairs = 1 + self.draw.below(count.min(6) as u64) as usize;
        for _ in 0..pairs {
            let (a, b) = self.pair(count);
            if trusted.contains(&(a, b)) || trusted.contains(&(b, a)) {
                continue;
            }
            trusted.push((a, b));
            self.action(table([
                ("do", "handshake".into()),
                ("host", daemons[a].name.clone().into()),
                ("peer", daemons[b].name.clone().into()),
            ]));
            self.action(table([
                ("do", "approve".into()),
                ("host", daemons[b].name.clone().into()),
                ("peer", daemons[a].name.clone().into()),
            ]));
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
                for t in o.heal {
                    self.action(t);
                }
            }
            let down: Vec<String> = open.iter().filter_map(|o| o.down.clone()).collect();
            match self.draw.below(10) {
                0..=3 => self.work(&daemons, &trusted, &down),
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
            for t in o.heal {
                self.action(t);
            }
        }

        // Heal: the bound within which every pair must find each other again.
        self.wait(HEAL_BOUND);

        // Check: trusted pairs echo, new trust forms, untrusted daemons are refused.
        for &(a, b) in trusted.iter().take(6) {
            let tag = self.echo(&daemons[a].name, &daemons[b].name, 2048);
            self.expect(table([("check", "echoed".into()), ("tag", tag.into())]));
        }
        let untrusted = (0..count)
            .flat_map(|a| (0..count).map(move |b| (a, b)))
            .find(|&(a, b)| {
                a != b
                    && daemons[b].public
                    && !trusted.contains(&(a, b))
                    && !trusted.contains(&(b, a))
            });
        if let Some((a, b)) = untrusted {
            let tag = self.echo(&daemons[a].name, &daemons[b].name, 1024);
            self.expect(table([
                ("check", "not-echoed".into()),
                ("tag", tag.clone().into()),
            ]));
            self.expect(table([("check", "echo-ended".into()), ("tag", tag.into())]));
        }
        let (a, b) = trusted[0];
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
        for i in 1..=identities {
            self.action(table([
                ("do", "lookup".into()),
                ("host", CLIENT.into()),
                ("registry", RDV.into()),
                ("target", format!("w{i}").into()),
                ("tag", format!("look-w{i}").into()),
            ]));
            self.expect(table([
                ("check", "reply".into()),
                ("tag", format!("look-w{i}").into()),
                ("same_node_as", format!("reg-w{i}").into()),
            ]));
        }
        if standby {
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
        let mut daemons = Vec::new();
        for i in 1..=count {
            let name = format!("d{i}");
            let preset = PRESETS[self.draw.below(PRESETS.len() as u64) as usize];
            let nat = preset.map(|p| {
                let nat = format!("nat-{name}");
                self.doc
                    .nats
                    .push(table([("name", nat.clone().into()), ("preset", p.into())]));
                nat
            });
            let edge = match (preset, &nat) {
                (Some("cgnat"), Some(n)) => format!("{n}-cgn"),
                (_, Some(n)) => n.clone(),
                (_, None) => name.clone(),
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

    /// One piece of work between two trusted daemons that are up: an echo or a send.
    fn work(&mut self, daemons: &[Daemon], trusted: &[(usize, usize)], down: &[String]) {
        let (a, b) = trusted[self.draw.below(trusted.len() as u64) as usize];
        let (a, b) = if self.draw.chance(1, 2) {
            (a, b)
        } else {
            (b, a)
        };
        let (from, to) = (&daemons[a].name, &daemons[b].name);
        if down.contains(from) {
            return;
        }
        match self.draw.below(3) {
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
                (self.bounce(&nat), vec![self.up(&nat)], Some(nat))
            }
            // A daemon crashes and restarts.
            5 => (
                self.bounce(&d.name),
                vec![self.up(&d.name)],
                Some(d.name.clone()),
            ),
            // The primary registry crashes and restarts.
            _ => {
                let start = vec![table([
                    ("do", "registry-crash".into()),
                    ("host", RDV.into()),
                ])];
                let heal = vec![table([
                    ("do", "registry-restart".into()),
                    ("host", RDV.into()),
                ])];
                (start, heal, Some(RDV.to_string()))
            }
        };
        if host_down.as_ref().is_some_and(|h| down.contains(h)) {
            return None;
        }
        for t in start {
            self.action(t);
        }
        Some(Open {
            until,
            heal,
            down: host_down,
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
