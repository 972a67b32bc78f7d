//! The invariants a swarm run checks, and the verdict on one run.
//!
//! Each invariant is an expectation kind in the generated scenario (so `pilot-sim run`
//! judges a written-out seed the same way), except "no panic", which is the run itself.

use crate::scenario::{self, Outcome, Scenario, ScenarioError};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A host panicked or the simulation failed.
pub const NO_PANIC: &str = "no-panic";

/// The invariant an expectation kind stands for in swarm scenarios.
pub fn of_expectation(kind: &str) -> &'static str {
    match kind {
        "echo-intact" => "stream-bytes-intact",
        "echo-ended" => "stream-ends",
        "not-echoed" | "no-datagrams" => "untrusted-refused",
        "datagrams-intact" => "datagrams-intact",
        "echoed" => "reachable-after-heal",
        "acked-kept" => "acked-kept",
        "reply" | "same-state" => "registry-kept",
        _ => "expectation",
    }
}

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant (`stream-ends`, `no-panic`, ...).
    pub invariant: String,
    /// What was expected, in words.
    pub description: String,
    /// What was observed.
    pub detail: String,
}

impl Violation {
    /// What went wrong, without the particulars: the detail's last clause with its numbers
    /// removed. "2048 bytes to d10: dial: dial timeout" and "512 bytes to d3: dial: dial
    /// timeout" have one cause; "d10 has no node ID" has another.
    pub fn cause(&self) -> String {
        let last = self.detail.rsplit(": ").next().unwrap_or_default();
        last.chars().filter(|c| !c.is_ascii_digit()).collect()
    }
}

/// The verdict on one run.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The run, unless it panicked.
    pub outcome: Option<Outcome>,
    /// Every invariant it broke, in the scenario's expectation order.
    pub violations: Vec<Violation>,
}

impl Verdict {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The first broken invariant's name.
    pub fn first(&self) -> Option<&str> {
        self.violations.first().map(|v| v.invariant.as_str())
    }

    /// Whether it broke `invariant`.
    pub fn broke(&self, invariant: &str) -> bool {
        self.violations.iter().any(|v| v.invariant == invariant)
    }

    /// Whether it broke `invariant` for the same cause as `like` (see [`Violation::cause`]).
    pub fn broke_like(&self, like: &Violation) -> bool {
        self.violations
            .iter()
            .any(|v| v.invariant == like.invariant && v.cause() == like.cause())
    }

    /// One line per broken invariant.
    pub fn report(&self) -> String {
        self.violations
            .iter()
            .map(|v| {
                format!(
                    "  FAIL [{}] {} ({})\n",
                    v.invariant, v.description, v.detail
                )
            })
            .collect()
    }
}

/// Runs `scenario` with its own seed and judges it. An error is a scenario that cannot run
/// (a generator or shrinker bug), not a broken invariant.
pub fn judge(scenario: &Scenario) -> Result<Verdict, ScenarioError> {
    let ran = catch_unwind(AssertUnwindSafe(|| scenario::run(scenario, None)));
    let outcome = match ran {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(ScenarioError::Simulation(why))) => return Ok(panicked(why)),
        Ok(Err(other)) => return Err(other),
        Err(payload) => {
            let why = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".to_string());
            return Ok(panicked(why));
        }
    };
    // Results are the failed actions and host errors first, then one per expectation.
    let offset = outcome.results.len() - scenario.expectations.len();
    let violations = outcome
        .results
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.passed)
        .map(|(i, r)| Violation {
            invariant: match i.checked_sub(offset) {
                Some(e) => of_expectation(scenario.expectations[e].kind()).to_string(),
                None => "script".to_string(),
            },
            description: r.description.clone(),
            detail: r.detail.clone(),
        })
        .collect();
    Ok(Verdict {
        outcome: Some(outcome),
        violations,
    })
}

fn panicked(why: String) -> Verdict {
    Verdict {
        outcome: None,
        violations: vec![Violation {
            invariant: NO_PANIC.to_string(),
            description: "no host panicked and the simulation ran to the end".to_string(),
            detail: why,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(invariant: &str, detail: &str) -> Violation {
        Violation {
            invariant: invariant.to_string(),
            description: String::new(),
            detail: detail.to_string(),
        }
    }

    #[test]
    fn a_cause_is_the_last_clause_without_its_numbers() {
        let timeout = violation(
            "reachable-after-heal",
            "2048 bytes to d10: dial: dial timeout",
        );
        let other_timeout = violation(
            "reachable-after-heal",
            "512 bytes to d3: dial: dial timeout",
        );
        let unregistered = violation(
            "reachable-after-heal",
            "2048 bytes to d10: d10 has no node ID (is its daemon up?)",
        );
        assert_eq!(timeout.cause(), "dial timeout");
        assert_eq!(timeout.cause(), other_timeout.cause());
        assert_ne!(timeout.cause(), unregistered.cause());

        let verdict = |v: &Violation| Verdict {
            outcome: None,
            violations: vec![v.clone()],
        };
        assert!(verdict(&other_timeout).broke_like(&timeout));
        assert!(!verdict(&unregistered).broke_like(&timeout));
        let elsewhere = violation("stream-ends", "2048 bytes to d10: dial: dial timeout");
        assert!(!verdict(&elsewhere).broke_like(&timeout));
    }
}
