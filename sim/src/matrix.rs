//! The NAT matrix: one scenario per pair of NAT presets, from one template. Two daemons
//! register with a rendezvous server, handshake, and move bytes through echo; each scenario
//! asserts the path the pair must end on (`docs/TUNNEL.md`, "Expected outcome per NAT
//! pairing"), with and without loss. `pilot-sim matrix` prints the table.

use crate::scenario::{self, Outcome, PathKind, Scenario, ScenarioError};

/// The presets, in the order of the table (the first of a pair initiates).
pub const PRESETS: [&str; 6] = [
    "open",
    "full-cone",
    "restricted-cone",
    "port-restricted-cone",
    "symmetric",
    "cgnat",
];

/// The seed every matrix scenario runs with.
pub const SEED: u64 = 1;

/// Bytes moved through echo in the README's matrix.
pub const FULL_TRANSFER: usize = 1 << 20;

/// The path from a daemon behind `a` (initiating) to one behind `b`: `docs/TUNNEL.md`'s table.
pub fn expected_path(a: &str, b: &str) -> PathKind {
    let index = |p: &str| PRESETS.iter().position(|x| *x == p).unwrap_or(0);
    // Rows: initiator; columns: target (open, full, restricted, port-restricted, symmetric, cgnat).
    const D: PathKind = PathKind::Direct;
    const P: PathKind = PathKind::Punched;
    const R: PathKind = PathKind::Relayed;
    const TABLE: [[PathKind; 6]; 6] = [
        [D, D, P, P, P, P],
        [D, D, P, P, P, P],
        [D, D, P, P, P, P],
        [D, D, P, P, R, P],
        [D, D, P, R, R, R],
        [D, D, P, P, R, P],
    ];
    TABLE[index(a)][index(b)]
}

/// Every unordered pair of presets (21), each once, the first initiating.
pub fn pairs() -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for (i, a) in PRESETS.iter().enumerate() {
        for b in &PRESETS[i..] {
            out.push((*a, *b));
        }
    }
    out
}

/// The scenario's name: `matrix-<a>-<b>` plus `-loss5` with 5% loss.
pub fn name(a: &str, b: &str, loss: f64) -> String {
    let suffix = if loss > 0.0 {
        format!("-loss{}", (loss * 100.0).round())
    } else {
        String::new()
    };
    format!("matrix-{a}-{b}{suffix}")
}

/// The template: the scenario text for daemons behind `a` and `b`, `loss` on each daemon's
/// link to its NAT box, moving `bytes` through echo.
pub fn scenario_text(a: &str, b: &str, loss: f64, bytes: usize) -> String {
    let path = expected_path(a, b);
    let mut text = format!(
        r#"name = "{name}"
description = "Daemons behind {a} and {b} handshake and move {bytes} bytes through echo; the pair ends on {path}."
seed = {SEED}
settle = "100ms"

[[host]]
name = "rdv"
kind = "rendezvous"

[[nat]]
name = "nat-a"
preset = "{a}"

[[nat]]
name = "nat-b"
preset = "{b}"

[[host]]
name = "a"
behind = "nat-a"
kind = "daemon"
registry = "rdv"

[[host]]
name = "b"
behind = "nat-b"
kind = "daemon"
registry = "rdv"
"#,
        name = name(a, b, loss),
    );
    if loss > 0.0 {
        for link in loss_links(a, b) {
            text.push_str(&format!(
                "\n[[link]]\nbetween = [\"{}\", \"{}\"]\nloss = {loss}\n",
                link[0], link[1]
            ));
        }
    }
    text.push_str(&format!(
        r#"
[[action]]
do = "wait"
for = "100ms"

[[action]]
do = "handshake"
host = "a"
peer = "b"

[[action]]
do = "approve"
host = "b"
peer = "a"

[[action]]
do = "wait"
for = "1s"

[[action]]
do = "echo"
host = "a"
peer = "b"
bytes = {bytes}
tag = "echo"

[[action]]
do = "wait"
for = "120s"
echo = "echo"

[[expect]]
check = "echoed"
tag = "echo"

[[expect]]
check = "path"
host = "a"
peer = "b"
path = "{path}"
"#
    ));
    text
}

/// The links that carry each daemon's traffic out of its network: a NATed host's link to its
/// box; an "open" host's links to the rendezvous host and to the other side's outermost node
/// (an "open" box does not exist, so the host itself is on the internet).
fn loss_links(a: &str, b: &str) -> Vec<[String; 2]> {
    let outer = |host: &str, preset: &str| match preset {
        "open" => host.to_string(),
        "cgnat" => format!("nat-{host}-cgn"),
        _ => format!("nat-{host}"),
    };
    let mut links: Vec<[String; 2]> = Vec::new();
    for (host, preset, other, other_preset) in [("a", a, "b", b), ("b", b, "a", a)] {
        let wanted = if preset == "open" {
            vec![
                [host.to_string(), "rdv".to_string()],
                [host.to_string(), outer(other, other_preset)],
            ]
        } else {
            vec![[host.to_string(), format!("nat-{host}")]]
        };
        for link in wanted {
            let mut sorted = link.clone();
            sorted.sort();
            if !links.iter().any(|l| {
                let mut l = l.clone();
                l.sort();
                l == sorted
            }) {
                links.push(link);
            }
        }
    }
    links
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// The pair, initiator first.
    pub pair: (String, String),
    /// Loss on each daemon's access link.
    pub loss: f64,
    /// The path the table expects.
    pub expected: PathKind,
    /// The path observed (`None`: no route).
    pub path: Option<PathKind>,
    /// Time to the first echoed byte.
    pub time_to_first_byte: Option<std::time::Duration>,
    /// Bytes per second over the echo.
    pub throughput: Option<f64>,
    /// The seed.
    pub seed: u64,
    /// The run's outcome.
    pub outcome: Outcome,
}

/// Runs one cell of the matrix.
pub fn run_cell(a: &str, b: &str, loss: f64, bytes: usize) -> Result<Row, ScenarioError> {
    run_cell_with(a, b, loss, bytes, false)
}

/// [`run_cell`], keeping every datagram in the row's outcome when `capture` is set
/// ([`scenario::run_captured`]).
pub fn run_cell_with(
    a: &str,
    b: &str,
    loss: f64,
    bytes: usize,
    capture: bool,
) -> Result<Row, ScenarioError> {
    let scenario = Scenario::parse(&scenario_text(a, b, loss, bytes))?;
    let (outcome, details) = if capture {
        scenario::run_captured(&scenario, None)?
    } else {
        scenario::run_detailed(&scenario, None)?
    };
    Ok(Row {
        pair: (a.to_string(), b.to_string()),
        loss,
        expected: expected_path(a, b),
        path: details.path("a", "b"),
        time_to_first_byte: details.echo("echo").and_then(|e| e.time_to_first_byte()),
        throughput: details.echo("echo").and_then(|e| e.throughput()),
        seed: outcome.seed,
        outcome,
    })
}

/// The table as Markdown: pair, loss, path (expected), time to first byte, throughput, seed,
/// verdict.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| pair | loss | path (expected) | time to first byte | throughput | seed | result |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let path = match r.path {
            Some(p) if p == r.expected => format!("{p}"),
            Some(p) => format!("{p} ({} expected)", r.expected),
            None => format!("none ({} expected)", r.expected),
        };
        let ttfb = r
            .time_to_first_byte
            .map(|d| format!("{} ms", d.as_millis()))
            .unwrap_or_else(|| "-".into());
        let tput = r
            .throughput
            .map(|b| format!("{:.2} MB/s", b / 1e6))
            .unwrap_or_else(|| "-".into());
        let verdict = if r.outcome.passed() { "pass" } else { "FAIL" };
        out.push_str(&format!(
            "| {} ↔ {} | {}% | {path} | {ttfb} | {tput} | {} | {verdict} |\n",
            r.pair.0,
            r.pair.1,
            (r.loss * 100.0).round(),
            r.seed
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_one_pairs_and_a_symmetric_table() {
        assert_eq!(pairs().len(), 21);
        // Direct-or-punched versus relay does not depend on who initiates.
        for a in PRESETS {
            for b in PRESETS {
                let relay = |x, y| expected_path(x, y) == PathKind::Relayed;
                assert_eq!(relay(a, b), relay(b, a), "{a} {b}");
            }
        }
        assert_eq!(expected_path("symmetric", "symmetric"), PathKind::Relayed);
        assert_eq!(expected_path("open", "full-cone"), PathKind::Direct);
    }

    #[test]
    fn every_cell_of_the_template_parses() {
        for (a, b) in pairs() {
            for loss in [0.0, 0.05] {
                let text = scenario_text(a, b, loss, 1000);
                Scenario::parse(&text).unwrap_or_else(|e| panic!("{a} {b} {loss}: {e}\n{text}"));
            }
        }
    }
}
