//! `pilot-sim`: runs scenarios on the simulated internet.
//!
//! ```text
//! pilot-sim run scenarios/nat-probe.toml [--seed N] [--trace PATH] [--pcap PATH] [--json]
//! pilot-sim search scenarios/faults.toml [--seeds 100] [--from 0] [--recheck 2]
//! pilot-sim diff A.txt B.txt [--json]
//! pilot-sim timeline scenarios/daemon-upgrade.toml [--seed N] [--json]
//! pilot-sim matrix [--bytes 1048576] [--write scenarios/matrix] [--pcap DIR]
//! pilot-sim swarm [--seeds 100] [--from-seed 0] [--time 20s] [--recheck 2] [--out DIR]
//! pilot-sim shrink swarm-17.toml [--seed 17] [--out swarm-17-small.toml] [--max-runs 400]
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
    /// Draws a scenario per seed (topology, workload, faults), runs it and checks the
    /// invariants; stops at the first seed that breaks one, writes its scenario file and
    /// prints the command that replays it.
    Swarm {
        /// How many seeds to try.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// The first seed to try.
        #[arg(long, default_value_t = 0)]
        from_seed: u64,
        /// How long the fault act of each scenario lasts (simulated).
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        time: std::time::Duration,
        /// The most daemons a drawn topology has (2 to 20).
        #[arg(long, default_value_t = 20)]
        max_daemons: usize,
        /// How many seeds (spread over the range) to run twice, comparing their traces; the
        /// failing seed, if any, is always run twice too.
        #[arg(long, default_value_t = 2)]
        recheck: u64,
        /// Where to write a failing seed's scenario file.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Plants a bug on purpose (to see the search find it): echo-reorder.
        #[arg(long, hide = true)]
        plant: Option<String>,
    },
    /// Reduces a failing scenario (drops hosts, NAT boxes, actions, expectations; halves
    /// waits) while it still breaks the same invariant, and writes the small scenario.
    Shrink {
        /// The failing scenario file (TOML).
        file: PathBuf,
        /// Overrides the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Where to write the small scenario (default: FILE with `-small` before `.toml`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The most runs to spend.
        #[arg(long, default_value_t = 400)]
        max_runs: usize,
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
        Command::Swarm {
            seeds,
            from_seed,
            time,
            max_daemons,
            recheck,
            out,
            plant,
        } => {
            let planted_bug = match plant.as_deref().map(planted) {
                None => None,
                Some(Ok(bug)) => Some(bug),
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let options = pilot_sim::swarm::Options {
                time,
                max_daemons,
                planted_bug,
            };
            swarm(&options, from_seed, seeds, recheck, &out)
        }
        Command::Shrink {
            file,
            seed,
            out,
            max_runs,
        } => shrink(&file, seed, out, max_runs),
    }
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    scenario::duration::parse(text)
}

fn planted(name: &str) -> Result<scenario::PlantedBug, String> {
    match name {
        "echo-reorder" => Ok(scenario::PlantedBug::EchoReorder),
        other => Err(format!(
            "no planted bug is called {other:?} (there is: echo-reorder)"
        )),
    }
}

fn swarm(
    options: &pilot_sim::swarm::Options,
    from: u64,
    seeds: u64,
    recheck: u64,
    out: &Path,
) -> ExitCode {
    use pilot_sim::swarm;
    let to = from.saturating_add(seeds);
    let started = std::time::Instant::now();
    let found = swarm::swarm(options, from..to, recheck, |seed, verdict| {
        let verdict = if verdict.passed() { "ok" } else { "FAILED" };
        eprintln!("seed {seed}: {verdict}");
    });
    let report = match found {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let ran = report.passed + u64::from(report.failure.is_some());
    if !report.rechecked.is_empty() {
        let seeds: Vec<String> = report
            .rechecked
            .iter()
            .map(|(seed, hash)| format!("{seed} ({hash:016x})"))
            .collect();
        println!("replayed identically: seeds {}", seeds.join(", "));
    }
    let flags = swarm_flags(options);
    if let Some((seed, divergence)) = &report.divergence {
        println!("nondeterminism: seed {seed} gave two different traces");
        print!("{}", divergence.report("first run", "second run"));
        println!("replay: pilot-sim swarm --seeds 1 --from-seed {seed}{flags}");
        if report.failure.is_none() {
            // A seed's scenario is a pure function of it: written out, the file can be run
            // twice with `--trace` and the traces compared with `pilot-sim diff`.
            if let Ok(generated) = swarm::generate(*seed, options) {
                write_scenario(out, &generated);
            }
            return ExitCode::FAILURE;
        }
    }
    let Some(failure) = report.failure else {
        println!(
            "seeds {from}..{to}: every run kept every invariant ({ran} seeds, {:.1} seeds per minute)",
            ran as f64 / minutes.max(1e-9)
        );
        return ExitCode::SUCCESS;
    };
    let seed = failure.generated.seed;
    println!(
        "seed {seed} broke {} after {} passing seeds:",
        failure.verdict.first().unwrap_or("an invariant"),
        report.passed
    );
    print!("{}", failure.verdict.report());
    match write_scenario(out, &failure.generated) {
        Some(path) => println!("shrink: pilot-sim shrink {}", path.display()),
        None => println!("replay: pilot-sim swarm --seeds 1 --from-seed {seed}{flags}"),
    }
    ExitCode::FAILURE
}

/// Writes a seed's scenario file into `out` and says how to replay it; `None` (and an error
/// on stderr) when it cannot be written.
fn write_scenario(out: &Path, generated: &pilot_sim::swarm::Generated) -> Option<PathBuf> {
    let path = out.join(format!("swarm-{}.toml", generated.seed));
    if let Err(e) = std::fs::write(&path, &generated.text) {
        eprintln!(
            "error: cannot write {}: {e}\n  hint: check that the directory exists and is writable",
            path.display()
        );
        return None;
    }
    println!("scenario written to {}", path.display());
    println!("replay: pilot-sim run {}", path.display());
    Some(path)
}

/// The flags that make `swarm --from-seed S` draw what this run drew.
fn swarm_flags(options: &pilot_sim::swarm::Options) -> String {
    let defaults = pilot_sim::swarm::Options::default();
    let mut flags = String::new();
    if options.time != defaults.time {
        flags.push_str(&format!(" --time {}ms", options.time.as_millis()));
    }
    if options.max_daemons != defaults.max_daemons {
        flags.push_str(&format!(" --max-daemons {}", options.max_daemons));
    }
    if let Some(bug) = options.planted_bug {
        flags.push_str(&format!(" --plant {}", bug.name()));
    }
    flags
}

fn shrink(file: &Path, seed: Option<u64>, out: Option<PathBuf>, max_runs: usize) -> ExitCode {
    use pilot_sim::swarm::shrink;
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let shrunk = match shrink::shrink(&text, seed, max_runs) {
        Ok(shrunk) => shrunk,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let out = out.unwrap_or_else(|| {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("scenario");
        file.with_file_name(format!("{stem}-small.toml"))
    });
    if let Err(e) = std::fs::write(&out, &shrunk.text) {
        eprintln!(
            "error: cannot write {}: {e}\n  hint: check that the directory exists and is writable",
            out.display()
        );
        return ExitCode::from(2);
    }
    println!(
        "still breaks {} after {} runs",
        shrunk.invariant, shrunk.runs
    );
    println!("  before: {}", shrunk.before);
    println!("  after:  {}", shrunk.after);
    print!("{}", shrunk.verdict.report());
    println!("written to {}", out.display());
    println!("replay: pilot-sim run {}", out.display());
    ExitCode::SUCCESS
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
