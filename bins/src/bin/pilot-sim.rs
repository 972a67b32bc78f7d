//! `pilot-sim`: runs scenarios on the simulated internet.
//!
//! ```text
//! pilot-sim run scenarios/nat-probe.toml [--seed N] [--trace PATH] [--pcap PATH] [--json]
//! pilot-sim search scenarios/faults.toml [--seeds 100] [--from 0] [--recheck 2]
//! pilot-sim diff A.txt B.txt [--json]
//! pilot-sim timeline scenarios/daemon-upgrade.toml [--seed N] [--json]
//! pilot-sim matrix [--bytes 1048576] [--write scenarios/matrix] [--pcap DIR]
//! ```
//!
//! Exit status: 0 when every expectation holds (for every seed searched), 1 when one fails (with
//! a line naming the command that replays the run), 2 when the scenario cannot run.

use clap::{Parser, Subcommand};
use pilot_sim::scenario::{self, Scenario};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pilot-sim",
    version,
    about = "Deterministic simulated internet for Pilot Protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a scenario file and checks its expectations.
    Run {
        /// The scenario file (TOML).
        file: PathBuf,
        /// Overrides the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Writes the trace (one line per packet, translation and drop) to this file.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Writes every datagram the simulated network carried to this file (pcap, raw IPv4,
        /// simulated time), one record per link crossed.
        #[arg(long)]
        pcap: Option<PathBuf>,
        /// Prints the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Runs a scenario with many seeds and reports the first that fails.
    Search {
        /// The scenario file (TOML).
        file: PathBuf,
        /// How many seeds to try.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// The first seed to try.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// How many seeds (spread over the range) to run twice, comparing their traces; the
        /// failing seed, if any, is always run twice too.
        #[arg(long, default_value_t = 2)]
        recheck: u64,
    },
    /// Compares two trace files: the first line where they differ, and what each carried per
    /// connection and per NAT box. Exits 0 when identical, 1 when they differ.
    Diff {
        /// The first trace file (from `run --trace`).
        a: PathBuf,
        /// The second trace file.
        b: PathBuf,
        /// Prints the comparison as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Runs a scenario and shows, per pair of daemons, when and why the path between them
    /// changed (probing, punched, relayed, direct).
    Timeline {
        /// The scenario file (TOML).
        file: PathBuf,
        /// Overrides the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Prints the timeline as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Runs the NAT matrix (two daemons per pair of NAT presets, with and without 5% loss)
    /// and prints it as a table.
    Matrix {
        /// Bytes moved through echo per pair.
        #[arg(long, default_value_t = pilot_sim::matrix::FULL_TRANSFER)]
        bytes: usize,
        /// Writes each cell's scenario file into this directory instead of running them.
        #[arg(long)]
        write: Option<PathBuf>,
        /// Writes each cell's datagrams as `<cell>.pcap` into this directory.
        #[arg(long)]
        pcap: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    pilot_bins::pipe::exit_quietly_on_closed_pipe();
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            file,
            seed,
            trace,
            pcap,
            json,
        } => run(file, seed, trace, pcap, json),
        Command::Search {
            file,
            seeds,
            from,
            recheck,
        } => search(file, from, seeds, recheck),
        Command::Diff { a, b, json } => diff(&a, &b, json),
        Command::Timeline { file, seed, json } => timeline(&file, seed, json),
        Command::Matrix { bytes, write, pcap } => matrix(bytes, write, pcap),
    }
}

fn diff(a: &Path, b: &Path, json: bool) -> ExitCode {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| {
            eprintln!(
                "error: cannot read the trace {}: {e}\n  hint: write one with `pilot-sim run FILE --trace PATH`",
                path.display()
            );
        })
    };
    let (Ok(left), Ok(right)) = (read(a), read(b)) else {
        return ExitCode::from(2);
    };
    let left: Vec<&str> = left.lines().collect();
    let right: Vec<&str> = right.lines().collect();
    let comparison = pilot_sim::trace::compare::compare(&left, &right);
    if json {
        let value = serde_json::json!({
            "a": a.display().to_string(),
            "b": b.display().to_string(),
            "identical": comparison.identical(),
            "comparison": comparison,
        });
        emit(&format!("{value}\n"));
    } else {
        emit(&comparison.report(&a.display().to_string(), &b.display().to_string()));
    }
    if comparison.identical() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn timeline(file: &Path, seed: Option<u64>, json: bool) -> ExitCode {
    use pilot_sim::timeline;
    let found = Scenario::load(file).and_then(|s| timeline::of_scenario(&s, seed));
    let (outcome, pairs) = match found {
        Ok(found) => found,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        let value = serde_json::json!({
            "scenario": outcome.scenario,
            "seed": outcome.seed,
            "passed": outcome.passed(),
            "pairs": pairs,
        });
        emit(&format!("{value}\n"));
    } else {
        let verdict = if outcome.passed() { "passed" } else { "FAILED" };
        emit(&format!(
            "scenario {:?}, seed {}: {verdict}\n{}",
            outcome.scenario,
            outcome.seed,
            timeline::report(&pairs)
        ));
    }
    ExitCode::SUCCESS
}

/// Writes a report to stdout; a closed pipe (`| head`) ends the output, not the program.
fn emit(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn matrix(bytes: usize, write: Option<PathBuf>, pcap: Option<PathBuf>) -> ExitCode {
    use pilot_sim::matrix;
    let cells: Vec<_> = matrix::pairs()
        .into_iter()
        .flat_map(|(a, b)| [(a, b, 0.0), (a, b, 0.05)])
        .collect();
    if let Some(dir) = write {
        for (a, b, loss) in cells {
            let path = dir.join(format!("{}.toml", matrix::name(a, b, loss)));
            if let Err(e) = std::fs::write(&path, matrix::scenario_text(a, b, loss, bytes)) {
                eprintln!(
                    "error: cannot write {}: {e}\n  hint: create the directory first",
                    path.display()
                );
                return ExitCode::from(2);
            }
        }
        return ExitCode::SUCCESS;
    }
    let mut rows = Vec::new();
    for (a, b, loss) in cells {
        match matrix::run_cell_with(a, b, loss, bytes, pcap.is_some()) {
            Ok(mut row) => {
                if let Some(dir) = &pcap {
                    let path = dir.join(format!("{}.pcap", matrix::name(a, b, loss)));
                    let captured = std::mem::take(&mut row.outcome.captured);
                    if let Err(e) = write_pcap(&path, &captured) {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                }
                rows.push(row)
            }
            Err(e) => {
                eprintln!("error: {}: {e}", matrix::name(a, b, loss));
                return ExitCode::from(2);
            }
        }
    }
    print!("{}", matrix::table(&rows));
    let failed: Vec<_> = rows.iter().filter(|r| !r.outcome.passed()).collect();
    for r in &failed {
        print!("{}", r.outcome.summary());
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn search(file: PathBuf, from: u64, seeds: u64, recheck: u64) -> ExitCode {
    let to = from.saturating_add(seeds);
    let found =
        Scenario::load(&file).and_then(|s| scenario::search_rechecked(&s, from..to, recheck));
    let report = match found {
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        Ok(report) => report,
    };
    if let Some((seed, divergence)) = &report.divergence {
        println!("nondeterminism: seed {seed} gave two different traces");
        print!("{}", divergence.report("first run", "second run"));
        println!("replay: pilot-sim run {} --seed {seed}", file.display());
        return ExitCode::FAILURE;
    }
    if !report.rechecked.is_empty() {
        let seeds: Vec<String> = report
            .rechecked
            .iter()
            .map(|(seed, hash)| format!("{seed} ({hash:016x})"))
            .collect();
        println!("replayed identically: seeds {}", seeds.join(", "));
    }
    match report.failure {
        None => {
            println!("seeds {from}..{to}: every run passed");
            ExitCode::SUCCESS
        }
        Some(outcome) => {
            print!("{}", outcome.summary());
            println!(
                "replay: pilot-sim run {} --seed {}",
                file.display(),
                outcome.seed
            );
            ExitCode::FAILURE
        }
    }
}

/// Writes `datagrams` as pcap to `path`; the error is the line to print.
fn write_pcap(path: &Path, datagrams: &[pilot_sim::capture::Datagram]) -> Result<(), String> {
    let hint = "  hint: check that the directory exists and is writable";
    let file = std::fs::File::create(path)
        .map_err(|e| format!("error: cannot create {}: {e}\n{hint}", path.display()))?;
    let out = pilot_sim::capture::write_pcap(std::io::BufWriter::new(file), datagrams)
        .map_err(|e| format!("error: {}: {e}\n{hint}", path.display()))?;
    out.into_inner()
        .map_err(|e| format!("error: cannot write {}: {e}\n{hint}", path.display()))?;
    Ok(())
}

fn run(
    file: PathBuf,
    seed: Option<u64>,
    trace: Option<PathBuf>,
    pcap: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    let outcome = Scenario::load(&file).and_then(|s| match pcap {
        Some(_) => scenario::run_captured(&s, seed).map(|(o, _)| o),
        None => scenario::run(&s, seed),
    });
    let mut outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = trace {
        if let Err(e) = std::fs::write(&path, outcome.trace_text()) {
            eprintln!(
                "error: cannot write the trace to {}: {e}\n  hint: check that the directory exists and is writable",
                path.display()
            );
            return ExitCode::from(2);
        }
    }
    if let Some(path) = &pcap {
        let captured = std::mem::take(&mut outcome.captured);
        if let Err(e) = write_pcap(path, &captured) {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
        if !json {
            println!(
                "pcap: {} datagrams written to {}",
                captured.len(),
                path.display()
            );
        }
    }
    if json {
        println!("{}", outcome.to_json());
    } else {
        print!("{}", outcome.summary());
    }
    if outcome.passed() {
        ExitCode::SUCCESS
    } else {
        println!(
            "replay: pilot-sim run {} --seed {}",
            file.display(),
            outcome.seed
        );
        ExitCode::FAILURE
    }
}
