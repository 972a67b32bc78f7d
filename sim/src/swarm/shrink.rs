//! Shrinking: a failing scenario made smaller while it still breaks the same invariant, for the
//! same cause (a candidate that fails only because it dropped the wait for a registration
//! breaks `reachable-after-heal` too, but is not the bug being shrunk).
//!
//! Works on the scenario file as TOML, so it shrinks any scenario, generated or written by
//! hand. Each candidate drops something (expectations that do not fail, a host with all that
//! names it, a NAT box, runs of actions) or halves a wait; a candidate that no longer parses is
//! skipped without running, one that still breaks the invariant is kept. It stops when a full
//! pass keeps nothing, or after `max_runs` runs.

use super::invariant::{judge, Verdict, Violation};
use crate::scenario::duration;
use crate::scenario::{Scenario, ScenarioError};
use std::collections::BTreeSet;
use std::time::Duration;
use toml::{Table, Value};

/// How big a scenario is, for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    /// Hosts.
    pub hosts: usize,
    /// NAT boxes.
    pub nats: usize,
    /// Actions.
    pub actions: usize,
    /// Expectations.
    pub expectations: usize,
    /// Simulated time the script's waits add up to, in milliseconds.
    pub waited_ms: u128,
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} hosts, {} NAT boxes, {} actions, {} expectations, {:.3} s of waits",
            self.hosts,
            self.nats,
            self.actions,
            self.expectations,
            self.waited_ms as f64 / 1000.0
        )
    }
}

/// What [`shrink`] made.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The small scenario file.
    pub text: String,
    /// The invariant it still breaks.
    pub invariant: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// The size before.
    pub before: Size,
    /// The size after.
    pub after: Size,
    /// Runs made.
    pub runs: usize,
}

/// Why shrinking cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    /// The scenario cannot run.
    #[error("{0}")]
    Scenario(#[from] ScenarioError),
    /// It passes: there is nothing to keep failing.
    #[error("the scenario passes with seed {0}: there is no failure to keep")]
    Passes(u64),
}

/// Shrinks scenario `text` run with `seed` (or its own), keeping its first broken invariant.
pub fn shrink(text: &str, seed: Option<u64>, max_runs: usize) -> Result<Shrunk, ShrinkError> {
    let mut doc: Table = toml::from_str(text).map_err(|e| ScenarioError::Syntax(e.to_string()))?;
    if let Some(seed) = seed {
        doc.insert("seed".into(), Value::Integer(seed as i64));
    }
    let start = to_scenario(&doc)?;
    let first = judge(&start)?;
    let Some(target) = first.violations.first().cloned() else {
        return Err(ShrinkError::Passes(start.seed));
    };
    let mut s = Shrinker {
        doc,
        target,
        verdict: first,
        runs: 1,
        max_runs,
    };
    let before = size(&s.doc);
    loop {
        let kept = s.pass()?;
        if !kept || s.runs >= s.max_runs {
            break;
        }
    }
    Ok(Shrunk {
        text: toml::to_string(&s.doc).expect("a parsed document serializes"),
        after: size(&s.doc),
        before,
        invariant: s.target.invariant,
        verdict: s.verdict,
        runs: s.runs,
    })
}

fn to_scenario(doc: &Table) -> Result<Scenario, ScenarioError> {
    Scenario::parse(&toml::to_string(doc).expect("a parsed document serializes"))
}

fn array<'a>(doc: &'a Table, key: &str) -> &'a [Value] {
    doc.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn size(doc: &Table) -> Size {
    let waited_ms = array(doc, "action")
        .iter()
        .filter(|a| a.get("do").and_then(Value::as_str) == Some("wait"))
        .filter_map(|a| a.get("for").and_then(Value::as_str))
        .filter_map(|d| duration::parse(d).ok())
        .map(|d| d.as_millis())
        .sum();
    Size {
        hosts: array(doc, "host").len(),
        nats: array(doc, "nat").len(),
        actions: array(doc, "action").len(),
        expectations: array(doc, "expect").len(),
        waited_ms,
    }
}

struct Shrinker {
    doc: Table,
    /// The first violation of the scenario as given: what every kept candidate still shows.
    target: Violation,
    verdict: Verdict,
    runs: usize,
    max_runs: usize,
}

impl Shrinker {
    /// Tries `candidate`: keeps it if it parses and breaks the invariant still, for the same
    /// cause.
    fn attempt(&mut self, candidate: Table) -> Result<bool, ScenarioError> {
        if self.runs >= self.max_runs {
            return Ok(false);
        }
        let candidate = tidy(candidate);
        let Ok(scenario) = to_scenario(&candidate) else {
            return Ok(false);
        };
        self.runs += 1;
        let verdict = judge(&scenario)?;
        if verdict.broke_like(&self.target) {
            self.doc = candidate;
            self.verdict = verdict;
            return Ok(true);
        }
        Ok(false)
    }

    /// One round of every kind of reduction; whether anything was kept.
    fn pass(&mut self) -> Result<bool, ScenarioError> {
        let mut kept = self.only_failing_expectations()?;
        kept |= self.drop_each("host", |t| {
            let name = t.get("name").and_then(Value::as_str)?;
            (t.get("kind").and_then(Value::as_str) != Some("rendezvous")).then(|| name.to_string())
        })?;
        kept |= self.drop_each("nat", |t| {
            t.get("name").and_then(Value::as_str).map(str::to_string)
        })?;
        kept |= self.drop_runs("action")?;
        kept |= self.drop_runs("expect")?;
        kept |= self.halve_waits()?;
        Ok(kept)
    }

    /// Drops every expectation that passed.
    fn only_failing_expectations(&mut self) -> Result<bool, ScenarioError> {
        let Some(outcome) = &self.verdict.outcome else {
            return Ok(false);
        };
        let expects = array(&self.doc, "expect");
        let offset = outcome.results.len().saturating_sub(expects.len());
        let failing: Vec<Value> = expects
            .iter()
            .enumerate()
            .filter(|(i, _)| outcome.results.get(offset + i).is_some_and(|r| !r.passed))
            .map(|(_, e)| e.clone())
            .collect();
        if failing.len() == expects.len() {
            return Ok(false);
        }
        let mut candidate = self.doc.clone();
        candidate.insert("expect".into(), Value::Array(failing));
        self.attempt(candidate)
    }

    /// Drops, one at a time, each entry of `key` that `name` names, with everything that
    /// names it.
    fn drop_each(
        &mut self,
        key: &str,
        name: impl Fn(&Table) -> Option<String>,
    ) -> Result<bool, ScenarioError> {
        let mut kept = false;
        let mut i = 0;
        while i < array(&self.doc, key).len() {
            let entry = array(&self.doc, key)[i].as_table().and_then(&name);
            if let Some(n) = entry {
                if self.attempt(without_name(&self.doc, &n))? {
                    kept = true;
                    continue;
                }
            }
            i += 1;
        }
        Ok(kept)
    }

    /// Drops runs of entries of `key`: halves, then quarters, down to single entries.
    fn drop_runs(&mut self, key: &str) -> Result<bool, ScenarioError> {
        let mut kept = false;
        let mut chunk = array(&self.doc, key).len().div_ceil(2);
        while chunk >= 1 {
            let mut at = 0;
            while at < array(&self.doc, key).len() {
                let mut entries = array(&self.doc, key).to_vec();
                let end = (at + chunk).min(entries.len());
                entries.drain(at..end);
                let mut candidate = self.doc.clone();
                candidate.insert(key.into(), Value::Array(entries));
                if self.attempt(candidate)? {
                    kept = true;
                } else {
                    at += chunk;
                }
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
        Ok(kept)
    }

    /// Halves each timed wait once.
    fn halve_waits(&mut self) -> Result<bool, ScenarioError> {
        let mut kept = false;
        for i in 0..array(&self.doc, "action").len() {
            let action = &array(&self.doc, "action")[i];
            let Some(d) = action
                .get("for")
                .and_then(Value::as_str)
                .and_then(|d| duration::parse(d).ok())
            else {
                continue;
            };
            if d < Duration::from_millis(20) {
                continue;
            }
            let mut candidate = self.doc.clone();
            let half = format!("{}ms", d.as_millis() / 2);
            if let Some(Value::Table(t)) = candidate
                .get_mut("action")
                .and_then(Value::as_array_mut)
                .and_then(|a| a.get_mut(i))
            {
                t.insert("for".into(), half.into());
            }
            kept |= self.attempt(candidate)?;
        }
        Ok(kept)
    }
}

/// Whether `value` is, or holds, the string `name`.
fn names(value: &Value, name: &str) -> bool {
    match value {
        Value::String(s) => s == name || s.split_once(':').is_some_and(|(h, _)| h == name),
        Value::Array(items) => items.iter().any(|v| names(v, name)),
        _ => false,
    }
}

/// `doc` without the host or NAT box `name`: its entry goes, as do the actions, links and
/// expectations that name it; hosts behind it sit on the internet, daemons that fall back to
/// it do without.
fn without_name(doc: &Table, name: &str) -> Table {
    let mut out = doc.clone();
    for key in ["host", "nat", "link", "action", "expect"] {
        let Some(Value::Array(entries)) = out.get_mut(key) else {
            continue;
        };
        entries.retain(|e| {
            let Some(t) = e.as_table() else { return true };
            let own = t.get("name").and_then(Value::as_str) == Some(name);
            let refers = t
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "name" | "behind" | "standby_registry"))
                .any(|(_, v)| names(v, name));
            !own && !refers
        });
        for e in entries.iter_mut() {
            if let Value::Table(t) = e {
                for k in ["behind", "standby_registry"] {
                    if t.get(k).and_then(Value::as_str) == Some(name) {
                        t.remove(k);
                    }
                }
            }
        }
    }
    out
}

/// Drops what refers to tags no action carries any more, so that removals elsewhere leave a
/// scenario that still parses.
fn tidy(mut doc: Table) -> Table {
    let actions = array(&doc, "action");
    let tags: BTreeSet<String> = actions
        .iter()
        .filter_map(|a| a.get("tag").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    let sends = actions.iter().any(|a| {
        matches!(
            a.get("do").and_then(Value::as_str),
            Some("send-message" | "send-file")
        )
    });
    if let Some(Value::Array(actions)) = doc.get_mut("action") {
        for a in actions.iter_mut() {
            if let Value::Table(t) = a {
                for k in ["echo", "send", "subscribed"] {
                    if t.get(k)
                        .and_then(Value::as_str)
                        .is_some_and(|v| !tags.contains(v))
                    {
                        t.remove(k);
                    }
                }
            }
        }
    }
    if let Some(Value::Array(expects)) = doc.get_mut("expect") {
        expects.retain(|e| {
            let known = |k: &str| {
                e.get(k)
                    .and_then(Value::as_str)
                    .is_none_or(|v| tags.contains(v))
            };
            let needs_sends = e.get("check").and_then(Value::as_str) == Some("acked-kept");
            known("tag") && known("same_node_as") && (sends || !needs_sends)
        });
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"
[[host]]
name = "rdv"
kind = "rendezvous"

[[nat]]
name = "nat-a"
preset = "full-cone"

[[host]]
name = "a"
behind = "nat-a"

[[action]]
do = "bind"
host = "a"
socket = "s"

[[action]]
do = "send"
socket = "s"
to = "rdv:9"
tag = "p1"

[[action]]
do = "crash"
host = "nat-a"

[[expect]]
check = "received"
socket = "s"
tag = "p1"
"#;

    #[test]
    fn dropping_a_name_takes_what_names_it_along() {
        let doc: Table = toml::from_str(DOC).unwrap();
        let out = without_name(&doc, "nat-a");
        assert_eq!(array(&out, "nat").len(), 0);
        assert_eq!(array(&out, "action").len(), 2, "the crash of nat-a went");
        assert!(array(&out, "host")[1].get("behind").is_none());
        let out = without_name(&doc, "rdv");
        assert_eq!(array(&out, "action").len(), 2, "the send to rdv:9 went");
    }

    #[test]
    fn tidying_drops_expectations_on_tags_no_action_carries() {
        let mut doc: Table = toml::from_str(DOC).unwrap();
        doc.get_mut("action")
            .and_then(Value::as_array_mut)
            .unwrap()
            .remove(1);
        let out = tidy(doc);
        assert!(array(&out, "expect").is_empty());
    }

    #[test]
    fn a_passing_scenario_has_nothing_to_shrink() {
        let text = "settle = \"10ms\"\n[[host]]\nname = \"a\"\n";
        assert!(matches!(
            shrink(text, Some(1), 10),
            Err(ShrinkError::Passes(1))
        ));
    }
}
