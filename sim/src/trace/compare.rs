//! Comparing two traces: where they part, and what each one carried per connection and per
//! NAT box. Behind `pilot-sim diff`.

use super::diverge::{first_divergence, Divergence, CONTEXT};
use super::parse::{parse, Line};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Counts by label (`send PILS`, `drop PILA filtered`, `out new`, ...) in each trace.
pub type Counts = BTreeMap<String, [u64; 2]>;

/// What one connection or NAT box did in each trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// The connection (`a <> b`, its two endpoints in sorted order) or the NAT box's name.
    pub name: String,
    /// Events by kind and packet kind, in the first trace and in the second.
    pub counts: Counts,
    /// Whether some count differs between the traces.
    pub differs: bool,
}

/// Two traces compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Comparison {
    /// Lines in each trace.
    pub lines: [usize; 2],
    /// Lines in each trace that do not have the trace's shape (a corrupt or foreign file).
    pub unparsed: [usize; 2],
    /// The first line where they differ; `None` when they are identical.
    pub divergence: Option<Divergence>,
    /// Per connection: UDP datagrams and TCP writes between two endpoints, either way.
    pub connections: Vec<Tally>,
    /// Per NAT box: translations (`out`, `out new`, `in`, `hairpin`, `tcp`) and drops.
    pub nats: Vec<Tally>,
}

impl Comparison {
    /// Whether the traces are identical.
    pub fn identical(&self) -> bool {
        self.divergence.is_none()
    }
}

/// Compares trace `a` with trace `b`, line by line.
pub fn compare<S: AsRef<str>>(a: &[S], b: &[S]) -> Comparison {
    let mut connections: BTreeMap<String, Counts> = BTreeMap::new();
    let mut nats: BTreeMap<String, Counts> = BTreeMap::new();
    let mut unparsed = [0; 2];
    // A node is a NAT box when it translates in either trace.
    let nat_nodes: BTreeSet<String> = [a, b]
        .iter()
        .flat_map(|t| t.iter())
        .filter_map(|l| parse(l.as_ref()))
        .filter(|l| l.kind == "nat")
        .map(|l| l.node.to_string())
        .collect();
    for (side, trace) in [a, b].into_iter().enumerate() {
        for text in trace {
            let Some(line) = parse(text.as_ref()) else {
                unparsed[side] += 1;
                continue;
            };
            if line.kind == "note" {
                continue;
            }
            if nat_nodes.contains(line.node) {
                if let Some(label) = nat_label(&line) {
                    bump(nats.entry(line.node.to_string()).or_default(), label, side);
                }
            }
            // A NAT's view of a packet is counted under the NAT; the hosts' views under the
            // connection, so a datagram is not counted twice on one connection.
            if line.kind != "nat" {
                let label = match (line.packet_kind(), line.drop_reason()) {
                    (Some(p), Some(r)) => format!("{} {p} ({r})", line.kind),
                    (Some(p), None) => format!("{} {p}", line.kind),
                    (None, _) => line.kind.to_string(),
                };
                bump(
                    connections.entry(connection(&line)).or_default(),
                    label,
                    side,
                );
            }
        }
    }
    Comparison {
        lines: [a.len(), b.len()],
        unparsed,
        divergence: first_divergence(a, b, CONTEXT),
        connections: tallies(connections),
        nats: tallies(nats),
    }
}

fn bump(counts: &mut Counts, label: String, side: usize) {
    counts.entry(label).or_default()[side] += 1;
}

fn tallies(map: BTreeMap<String, Counts>) -> Vec<Tally> {
    map.into_iter()
        .map(|(name, counts)| Tally {
            differs: counts.values().any(|[x, y]| x != y),
            name,
            counts,
        })
        .collect()
}

/// `a <> b` with the endpoints in sorted order, so both directions count together.
fn connection(line: &Line<'_>) -> String {
    let (x, y) = if line.src <= line.dst {
        (line.src, line.dst)
    } else {
        (line.dst, line.src)
    };
    format!("{x} <> {y}")
}

/// What a NAT box's line counts as: the translation's direction, or the drop's reason.
fn nat_label(line: &Line<'_>) -> Option<String> {
    match line.kind {
        "nat" => {
            let d = line.detail;
            Some(
                if d.starts_with("tcp ") {
                    "tcp"
                } else if d.starts_with("hairpin ") {
                    "hairpin"
                } else if d.starts_with("to ") {
                    "in"
                } else if d.split_whitespace().nth(2) == Some("new") {
                    "out new"
                } else {
                    "out"
                }
                .to_string(),
            )
        }
        "drop" => Some(format!("drop {}", line.drop_reason().unwrap_or(""))),
        "send" | "recv" | "dup" => Some(line.kind.to_string()),
        _ => None,
    }
}

impl Comparison {
    /// A readable report: sizes, the first difference, then every connection and NAT box
    /// (each label with its count in both traces, `*` where they differ; a tally that is the
    /// same in both shows as one line).
    pub fn report(&self, left: &str, right: &str) -> String {
        let mut out = format!(
            "A = {left} ({} lines)\nB = {right} ({} lines)\n",
            self.lines[0], self.lines[1]
        );
        for (side, n) in self.unparsed.iter().enumerate() {
            if *n > 0 {
                let name = ["A", "B"][side];
                out.push_str(&format!("{name}: {n} lines are not trace lines\n"));
            }
        }
        match &self.divergence {
            None => out.push_str("identical\n"),
            Some(d) => out.push_str(&d.report("A", "B")),
        }
        for (title, tallies) in [
            ("connections", &self.connections),
            ("NAT boxes", &self.nats),
        ] {
            let differing = tallies.iter().filter(|t| t.differs).count();
            out.push_str(&format!(
                "\n{title}: {} ({differing} differ)\n  {:<48} {:>6} {:>6}\n",
                tallies.len(),
                "",
                "A",
                "B"
            ));
            for t in tallies {
                let [x, y] = t
                    .counts
                    .values()
                    .fold([0, 0], |[x, y], [a, b]| [x + a, y + b]);
                let mark = if t.differs { '*' } else { ' ' };
                out.push_str(&format!("{mark} {:<48} {x:>6} {y:>6}\n", t.name));
                if !t.differs {
                    continue;
                }
                for (label, [a, b]) in &t.counts {
                    let mark = if a != b { '*' } else { ' ' };
                    out.push_str(&format!("  {mark}   {label:<44} {a:>6} {b:>6}\n"));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[&str] = &[
        "   0.001000 a            send 10.1.0.2:4000 > 192.168.0.1:7000 2B \"p1\"",
        "   0.002000 nat-a        nat  10.1.0.2:4000 > 192.168.0.1:7000 as 192.168.0.2:4000 new 2B \"p1\"",
        "   0.003000 server       recv 192.168.0.2:4000 > 192.168.0.1:7000 2B \"p1\"",
    ];

    #[test]
    fn counts_go_to_connections_and_nat_boxes() {
        let mut b = A.to_vec();
        b[2] = "   0.003000 server       drop 192.168.0.2:4000 > 192.168.0.1:7000 2B \"p1\" port unreachable";
        let c = compare(A, &b);
        assert_eq!(c.divergence.as_ref().map(|d| d.line), Some(3));
        let nat = &c.nats[0];
        assert_eq!((nat.name.as_str(), nat.differs), ("nat-a", false));
        assert_eq!(nat.counts["out new"], [1, 1]);
        let outside = c
            .connections
            .iter()
            .find(|t| t.name == "192.168.0.1:7000 <> 192.168.0.2:4000")
            .unwrap();
        assert!(outside.differs);
        assert_eq!(outside.counts["recv text"], [1, 0]);
        assert_eq!(outside.counts["drop text (port unreachable)"], [0, 1]);
        assert!(c
            .report("a", "b")
            .contains("* 192.168.0.1:7000 <> 192.168.0.2:4000"));
    }
}
