//! Swarm search: many seeds, each drawing its own topology, workload and fault schedule, each
//! checked against the protocol's invariants (after TigerBeetle's VOPR).
//!
//! - [`generate`]: one seed to one scenario file (the ordinary scenario language).
//! - [`invariant`]: what must hold in every run, and the verdict on one run.
//! - [`shrink`]: a failing scenario made small while it breaks the same invariant.
//!
//! A seed's scenario is a pure function of the seed and the [`Options`], and the run of a
//! scenario is a pure function of the scenario: `pilot-sim swarm --seeds 1 --from-seed S`
//! and `pilot-sim run swarm-S.toml` both replay seed `S`. [`swarm`] also runs a sample of seeds
//! twice and compares their traces, so nondeterminism shows as itself, not as a flaky failure.

pub mod generate;
pub mod invariant;
mod rng;
pub mod shrink;

pub use generate::{generate, rebind_bound, Generated, Options, HEAL_BOUND};
pub use invariant::{judge, Verdict, Violation};

use crate::scenario::{replay_divergence, sample_seeds, ScenarioError};
use crate::trace::diverge::{hash, Divergence};
use std::ops::Range;

/// A seed that broke an invariant.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Its scenario.
    pub generated: Generated,
    /// What broke.
    pub verdict: Verdict,
}

/// What [`swarm`] found.
#[derive(Clone, Debug, Default)]
pub struct SwarmReport {
    /// Seeds that ran and passed.
    pub passed: u64,
    /// The first seed that broke an invariant.
    pub failure: Option<Failure>,
    /// Seeds run twice, with their (identical) trace hashes, in the order run.
    pub rechecked: Vec<(u64, u64)>,
    /// The first seed whose two runs gave different traces, and where they part.
    pub divergence: Option<(u64, Divergence)>,
}

/// Runs the seeds of `seeds` in order until one breaks an invariant or two runs of one seed
/// differ. `recheck` seeds spread over the range (and a failing seed) run twice. `seen` hears
/// of each seed's verdict as it comes (for progress output).
pub fn swarm(
    options: &Options,
    seeds: Range<u64>,
    recheck: u64,
    mut seen: impl FnMut(u64, &Verdict),
) -> Result<SwarmReport, ScenarioError> {
    let sample = sample_seeds(seeds.clone(), recheck);
    let mut report = SwarmReport::default();
    for seed in seeds {
        let generated = generate(seed, options)?;
        let verdict = judge(&generated.scenario)?;
        seen(seed, &verdict);
        let failed = !verdict.passed();
        if failed || sample.contains(&seed) {
            if let Some(outcome) = &verdict.outcome {
                match replay_divergence(&generated.scenario, outcome)? {
                    Some(d) => {
                        report.divergence = Some((seed, d));
                        if failed {
                            report.failure = Some(Failure { generated, verdict });
                        }
                        return Ok(report);
                    }
                    None => report.rechecked.push((seed, hash(&outcome.trace))),
                }
            }
        }
        if failed {
            report.failure = Some(Failure { generated, verdict });
            return Ok(report);
        }
        report.passed += 1;
    }
    Ok(report)
}
