//! The path timeline: for each pair of daemons, when the path one uses to the other changed
//! (probing, punched, relayed, direct) and why, read from the trace.
//!
//! The trace shows every frame a daemon's tunnel sends and receives, decoded, so the path
//! follows from it without extra events:
//!
//! - `probing`: the daemon starts reaching a peer: it asks the beacon to coordinate a punch
//!   (`PunchRequest`), obeys a `PunchCommand`, or sends a key exchange (`PILA`) straight to
//!   one of the peer's addresses;
//! - `direct` / `punched`: a tunnel frame from the peer (`PILA`, `PILS`) arrives straight from
//!   the peer's address; `punched` when the peer sits behind a NAT that filters unsolicited
//!   traffic and the beacon's `PunchCommand` (naming this daemon) had reached it, so the
//!   peer's NAT admits this daemon's frames (as the `path` expectation judges), `direct`
//!   otherwise. A later frame from another address is a new endpoint;
//! - `relayed`: the daemon wraps frames to the peer in `Relay` messages to the beacon;
//! - `down`: the daemon crashed (it forgets its tunnels); a restart starts from nothing.
//!
//! A peer's addresses are learnt from every frame it sent (`from=N`, at any node, before or
//! after translation) and from registry answers naming its `real_addr`.

use crate::trace::parse::{parse, Line};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// A path state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Trying to reach the peer; no direct frame from it yet.
    Probing,
    /// Direct, through a filtering NAT opened by the beacon's punch.
    Punched,
    /// Direct, with no punch needed.
    Direct,
    /// Through the beacon's relay.
    Relayed,
    /// The daemon crashed.
    Down,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Probing => "probing",
            State::Punched => "punched",
            State::Direct => "direct",
            State::Relayed => "relayed",
            State::Down => "down",
        })
    }
}

/// One change of a pair's path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Simulated time.
    #[serde(serialize_with = "as_seconds")]
    pub at: Duration,
    /// The 1-based trace line that shows it.
    pub line: usize,
    /// The new state.
    pub state: State,
    /// Why, in words.
    pub why: String,
}

fn as_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::trace::fmt_time(*d))
}

/// The path of daemon `host` to daemon `peer` over the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pair {
    /// The daemon whose view this is.
    pub host: String,
    /// The peer.
    pub peer: String,
    /// The peer's node ID.
    pub peer_node: u32,
    /// The changes, in time order.
    pub changes: Vec<Change>,
}

impl Pair {
    /// The state at the end of the run, if the pair ever had one.
    pub fn last(&self) -> Option<State> {
        self.changes.last().map(|c| c.state)
    }
}

/// What the timeline knows about one daemon's view of one peer.
#[derive(Default)]
struct View {
    state: Option<State>,
    /// The address a direct path was confirmed at.
    endpoint: Option<String>,
    /// Key exchanges sent straight to the peer since the last state change.
    probes: usize,
    /// A `PunchCommand` naming the peer reached this daemon.
    punch_seen: bool,
    changes: Vec<Change>,
}

impl View {
    fn change(&mut self, line: &Line<'_>, number: usize, state: State, why: String) {
        self.state = Some(state);
        self.probes = 0;
        self.changes.push(Change {
            at: line.time,
            line: number,
            state,
            why,
        });
    }
}

/// The timeline of every pair of daemons that ever reached each other in `trace`.
/// `behind_filter` names the hosts behind a NAT that filters unsolicited traffic.
pub fn timeline<S: AsRef<str>>(trace: &[S], behind_filter: &BTreeSet<String>) -> Vec<Pair> {
    let lines: Vec<(usize, Line<'_>)> = trace
        .iter()
        .enumerate()
        .filter_map(|(i, l)| Some((i + 1, parse(l.as_ref())?)))
        .collect();
    let daemons = daemon_ids(&lines);
    let names: BTreeMap<u32, &str> = daemons.iter().map(|(h, id)| (*id, *h)).collect();
    let owner = address_owners(&lines);
    let mut views: BTreeMap<(&str, u32), View> = BTreeMap::new();

    for (n, line) in &lines {
        let Some(&own) = daemons.get(line.node) else {
            continue;
        };
        if line.kind == "note" {
            if line.detail == "crash" {
                for (_, view) in views.range_mut((line.node, 0)..=(line.node, u32::MAX)) {
                    if view.state.is_some_and(|s| s != State::Down) {
                        view.change(line, *n, State::Down, "the daemon crashed".into());
                        view.endpoint = None;
                        view.punch_seen = false;
                    }
                }
            }
            continue;
        }
        let Some(packet) = line.packet() else {
            continue;
        };
        let mut words = packet.split_whitespace();
        let first = words.next().unwrap_or("");
        let second = words.next().unwrap_or("");
        match (line.kind, first) {
            ("send", "beacon") => {
                let Some(peer) = relay_target(second, words.next(), own) else {
                    continue;
                };
                let view = views.entry((line.node, peer)).or_default();
                if second == "PunchRequest" && view.state.is_none_or(|s| s == State::Down) {
                    let why = format!("asked the beacon to coordinate a punch ({packet})");
                    view.change(line, *n, State::Probing, why);
                } else if second == "Relay" && view.state != Some(State::Relayed) {
                    let why = match view.state {
                        Some(State::Direct | State::Punched) => format!(
                            "the direct path at {} went quiet; frames go through the beacon",
                            view.endpoint.as_deref().unwrap_or("?")
                        ),
                        _ => format!(
                            "no frame came straight from node {peer} after {} direct \
                             probe{}; frames go through the beacon",
                            view.probes,
                            if view.probes == 1 { "" } else { "s" }
                        ),
                    };
                    view.change(line, *n, State::Relayed, why);
                }
            }
            ("recv", "beacon") if second == "PunchCommand" => {
                let endpoint = words.next().and_then(|w| w.strip_prefix("endpoint="));
                let Some(&peer) = endpoint.and_then(|e| owner.get(e)) else {
                    continue;
                };
                let view = views.entry((line.node, peer)).or_default();
                view.punch_seen = true;
                if view.state.is_none_or(|s| s == State::Down) {
                    let why = format!("the beacon's PunchCommand names {}", endpoint.unwrap_or(""));
                    view.change(line, *n, State::Probing, why);
                }
            }
            ("send", "PILA") => {
                let Some(&peer) = owner.get(line.dst) else {
                    continue;
                };
                let view = views.entry((line.node, peer)).or_default();
                view.probes += 1;
                if view.state.is_none_or(|s| s == State::Down) {
                    let why = format!("key exchange sent straight to {}", line.dst);
                    view.change(line, *n, State::Probing, why);
                }
            }
            ("recv", "PILA" | "PILS") => {
                let Some(peer) = second.strip_prefix("from=").and_then(|p| p.parse().ok()) else {
                    continue;
                };
                if peer == own {
                    continue;
                }
                // Frames from here reach the peer through its NAT only if the peer punched it:
                // it is behind a filtering NAT and the beacon's PunchCommand reached it.
                let peer_name = names.get(&peer).copied().unwrap_or("");
                let peer_punched = views.get(&(peer_name, own)).is_some_and(|v| v.punch_seen);
                let state = if behind_filter.contains(peer_name) && peer_punched {
                    State::Punched
                } else {
                    State::Direct
                };
                let view = views.entry((line.node, peer)).or_default();
                let direct = matches!(view.state, Some(State::Direct | State::Punched));
                if direct && view.endpoint.as_deref() == Some(line.src) {
                    continue;
                }
                let why = match (&view.endpoint, view.state) {
                    (Some(old), Some(State::Direct | State::Punched)) => {
                        format!(
                            "node {peer}'s frames now come from {} (was {old})",
                            line.src
                        )
                    }
                    (_, Some(State::Relayed)) => format!(
                        "a {first} from node {peer} came straight from {}: off the relay",
                        line.src
                    ),
                    _ if state == State::Punched => format!(
                        "a {first} from node {peer} came straight from {}; {peer_name}'s NAT was \
                         punched open",
                        line.src
                    ),
                    _ => format!("a {first} from node {peer} came straight from {}", line.src),
                };
                view.endpoint = Some(line.src.to_string());
                view.change(line, *n, state, why);
            }
            _ => {}
        }
    }

    views
        .into_iter()
        .filter(|(_, v)| !v.changes.is_empty())
        .filter_map(|((host, peer), v)| {
            Some(Pair {
                host: host.to_string(),
                peer: names.get(&peer)?.to_string(),
                peer_node: peer,
                changes: v.changes,
            })
        })
        .collect()
}

/// Runs `scenario` (with `seed`, or its own) and reads the timeline of its trace.
pub fn of_scenario(
    scenario: &crate::scenario::Scenario,
    seed: Option<u64>,
) -> Result<(crate::scenario::Outcome, Vec<Pair>), crate::scenario::ScenarioError> {
    let (outcome, details) = crate::scenario::run_detailed(scenario, seed)?;
    let pairs = timeline(&outcome.trace, details.behind_filter());
    Ok((outcome, pairs))
}

/// The peer a beacon message from `own` is about: `Relay A>B` and `PunchRequest A>B` name it.
fn relay_target(message: &str, pair: Option<&str>, own: u32) -> Option<u32> {
    if message != "Relay" && message != "PunchRequest" {
        return None;
    }
    let (from, to) = pair?.split_once('>')?;
    (from.parse::<u32>().ok()? == own).then_some(())?;
    to.parse().ok()
}

/// Each daemon host's node ID, from its `daemon up as node N` notes.
fn daemon_ids<'a>(lines: &[(usize, Line<'a>)]) -> BTreeMap<&'a str, u32> {
    lines
        .iter()
        .filter(|(_, l)| l.kind == "note")
        .filter_map(|(_, l)| {
            let rest = l.detail.strip_prefix("daemon up as node ")?;
            let id = rest.split_whitespace().next()?.parse().ok()?;
            Some((l.node, id))
        })
        .collect()
}

/// Which node each address belongs to: the sources of its tunnel frames, and the `real_addr`
/// of registry answers.
fn address_owners<'a>(lines: &[(usize, Line<'a>)]) -> BTreeMap<&'a str, u32> {
    let mut owners = BTreeMap::new();
    for (_, l) in lines {
        let Some(packet) = l.packet() else {
            continue;
        };
        let mut words = packet.split_whitespace();
        if let (Some("PILA" | "PILS"), Some(from)) = (words.next(), words.next()) {
            if let Some(id) = from.strip_prefix("from=").and_then(|f| f.parse().ok()) {
                owners.insert(l.src, id);
                // A NAT line shows the source it translated to as well.
                if l.kind == "nat" {
                    if let Some(public) = l.detail.strip_prefix("as ") {
                        if let Some(public) = public.split_whitespace().next() {
                            owners.insert(public, id);
                        }
                    }
                }
            }
        }
        if let (Some(at), true) = (
            packet.find("\"real_addr\":\""),
            packet.contains("\"node_id\":"),
        ) {
            let addr = &packet[at + "\"real_addr\":\"".len()..];
            let addr = &addr[..addr.find('"').unwrap_or(addr.len())];
            if let Some(id) = json_number(packet, "\"node_id\":") {
                owners.insert(addr, id);
            }
        }
    }
    owners
}

/// The number after `key` in compact JSON.
fn json_number(text: &str, key: &str) -> Option<u32> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The timeline as text: one block per pair, one line per change.
pub fn report(pairs: &[Pair]) -> String {
    if pairs.is_empty() {
        return "no daemon reached another\n".to_string();
    }
    let mut out = String::new();
    for p in pairs {
        out.push_str(&format!(
            "{} -> {} (node {})\n",
            p.host, p.peer, p.peer_node
        ));
        for c in &p.changes {
            out.push_str(&format!(
                "  {:>11}  {:<8} {}  (line {})\n",
                crate::trace::fmt_time(c.at),
                c.state.to_string(),
                c.why,
                c.line
            ));
        }
    }
    out
}
