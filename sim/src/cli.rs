//! Command-line interface (clap). Every failure prints its seed and a one-line replay command.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use engine::{Knobs, KnownBug};
use reports::{CiCase, CiReport, RunReport, ViolationKind};

use crate::runner::{sweep, Sweep, SweepResult};
use crate::scenario::{self, Scenario, Verdict};

pub const EXIT_PASS: i32 = 0;
pub const EXIT_FAIL: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "faultline",
    version,
    about = "Deterministic chaos simulation for replicated, disaggregated storage engines."
)]
#[command(
    after_help = "Exit codes: 0 all seeds passed, 1 a violation found (or an expectation missed), 2 bad input."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(clap::Args, Debug, Clone)]
pub struct SeedArgs {
    /// First seed (with --seeds N: seeds S..S+N).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of seeds to run.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// Parallel seeds (one OS thread each). Results do not depend on it.
    #[arg(long, short = 'j', default_value_t = default_jobs())]
    pub jobs: usize,
    /// Run only shard I of N (I in 0..N): seed k of the sweep goes to shard k mod N. Defaults
    /// to JOB_COMPLETION_INDEX/JOB_COMPLETIONS when set (a Kubernetes indexed Job).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
}

impl SeedArgs {
    /// The seeds this process runs, after sharding.
    fn seed_list(&self) -> Result<Vec<u64>, UsageError> {
        if self.seeds == 0 {
            return Err(UsageError("--seeds must be at least 1".into()));
        }
        let (i, n) = match (
            &self.shard,
            std::env::var("JOB_COMPLETION_INDEX"),
            std::env::var("JOB_COMPLETIONS"),
        ) {
            (Some(s), _, _) => {
                parse_shard(s).map_err(|e| UsageError(format!("--shard {s}: {e}")))?
            }
            (None, Ok(i), Ok(n)) => parse_shard(&format!("{i}/{n}")).map_err(|e| {
                UsageError(format!("JOB_COMPLETION_INDEX/JOB_COMPLETIONS {i}/{n}: {e}"))
            })?,
            _ => (0, 1),
        };
        let all = self.seed..self.seed.saturating_add(self.seeds);
        Ok(all
            .enumerate()
            .filter(|(k, _)| *k as u64 % n == i)
            .map(|(_, s)| s)
            .collect())
    }
}

/// Parses `I/N` with N >= 1 and I < N.
pub fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let (i, n) = s.split_once('/').ok_or("expected I/N, e.g. 0/4")?;
    let i: u64 = i
        .trim()
        .parse()
        .map_err(|_| format!("`{i}` is not a shard index"))?;
    let n: u64 = n
        .trim()
        .parse()
        .map_err(|_| format!("`{n}` is not a shard count"))?;
    if n == 0 || i >= n {
        return Err(format!("need 0 <= I < N, got {i}/{n}"));
    }
    Ok((i, n))
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List the named scenarios with their descriptions.
    List,
    /// Run a scenario (a name from `list` or a JSON file) over one or many seeds.
    Run {
        scenario: String,
        #[command(flatten)]
        seeds: SeedArgs,
        /// Switch on a known-bug knob (repeatable): stale-keystore-abort, bytes-total-leak,
        /// drop-drain-race, volatile-raft-term.
        #[arg(long = "bug", value_name = "NAME")]
        bugs: Vec<String>,
        /// Write the JSON report (and one per failing seed) into DIR.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print the report as one JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// Stop at the first failing seed.
        #[arg(long)]
        fail_fast: bool,
        /// Run every seed twice and compare trace hashes.
        #[arg(long)]
        check_determinism: bool,
        /// Print the full event trace of every seed run (to stderr).
        #[arg(long)]
        trace: bool,
    },
    /// Re-run the failures of a saved JSON report exactly and verify their trace hashes.
    Replay {
        report: PathBuf,
        /// Print the full event trace.
        #[arg(long)]
        trace: bool,
    },
    /// Search seeds until a known bug shows; print the seed, seeds tried and time to find.
    Hunt {
        scenario: String,
        #[arg(long = "bug", value_name = "NAME", required = true)]
        bugs: Vec<String>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 1000)]
        max_seeds: u64,
        #[arg(long, short = 'j', default_value_t = default_jobs())]
        jobs: usize,
    },
    /// Combine the JSON reports of a sharded sweep into one.
    Merge {
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Print the merged report as JSON (default: the text summary).
        #[arg(long)]
        json: bool,
    },
    /// Run every named scenario against its `expect` (the regression suite).
    Ci {
        /// Seeds per scenario (default: the scenario's `expect.ci_seeds`, else 10).
        #[arg(long)]
        seeds: Option<u64>,
        /// Write JUnit XML here.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        #[arg(long, short = 'j', default_value_t = default_jobs())]
        jobs: usize,
        /// Only scenarios whose name contains this.
        #[arg(long)]
        filter: Option<String>,
    },
}

/// A user-facing error: printed as one line, exit code 2.
struct UsageError(String);

impl<E: std::fmt::Display> From<E> for UsageError {
    fn from(e: E) -> Self {
        UsageError(e.to_string())
    }
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                EXIT_USAGE
            } else {
                EXIT_PASS
            };
            let _ = e.print();
            return code;
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(UsageError(msg)) => {
            eprintln!("faultline: error: {msg}");
            EXIT_USAGE
        }
    }
}

fn dispatch(cli: Cli) -> Result<i32, UsageError> {
    match cli.cmd {
        Cmd::List => {
            let named = scenario::named();
            let width = named.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
            for (name, path) in named {
                match Scenario::load(&path) {
                    Ok(s) => println!("{name:<width$}  {}", s.description),
                    Err(e) => println!("{name:<width$}  (invalid: {e})"),
                }
            }
            Ok(EXIT_PASS)
        }
        Cmd::Run {
            scenario,
            seeds,
            bugs,
            out,
            json,
            fail_fast,
            check_determinism,
            trace,
        } => {
            let (scn, knobs) = load_with_bugs(&scenario, &bugs)?;
            let seed_list = seeds.seed_list()?;
            let s = Sweep {
                scenario: scn,
                scenario_arg: scenario.clone(),
                knobs,
                seeds: seed_list,
                jobs: seeds.jobs,
                fail_fast,
                keep_full_trace: trace,
                progress: seeds.seeds > 1 && std::io::stderr().is_terminal(),
                determinism_every: usize::from(check_determinism),
            };
            let mut r = sweep(&s);
            r.report.scenario_file = Some(scenario_file(&scenario));
            print_result(&r, json, trace);
            if let Some(dir) = out {
                write_out(&dir, &r)?;
            }
            let nondet = report_nondeterminism(&r);
            Ok(if r.report.passed() && !nondet {
                EXIT_PASS
            } else {
                EXIT_FAIL
            })
        }
        Cmd::Replay { report, trace } => replay(&report, trace),
        Cmd::Hunt {
            scenario,
            bugs,
            seed,
            max_seeds,
            jobs,
        } => hunt(&scenario, &bugs, seed, max_seeds, jobs),
        Cmd::Merge { reports, json } => merge(&reports, json),
        Cmd::Ci {
            seeds,
            junit,
            jobs,
            filter,
        } => ci(seeds, junit, jobs, filter),
    }
}

/// The scenario file as a path a later `replay` can open.
fn scenario_file(arg: &str) -> String {
    scenario::resolve(arg)
        .ok()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .map_or(arg.to_string(), |p| p.display().to_string())
}

fn load_with_bugs(arg: &str, bugs: &[String]) -> Result<(Arc<Scenario>, Knobs), UsageError> {
    let path = scenario::resolve(arg)?;
    let scn = Scenario::load(&path)?;
    let mut all = scn.bugs();
    for b in bugs {
        let bug: KnownBug = b
            .parse()
            .map_err(|e: String| UsageError(format!("--bug: {e}")))?;
        if !bug.implemented() {
            return Err(UsageError(format!(
                "--bug {bug}: this knob is not modelled by the engine yet"
            )));
        }
        all.push(bug);
    }
    Ok((Arc::new(scn), Knobs::new(all)))
}

fn print_result(r: &SweepResult, json: bool, trace: bool) {
    if json {
        match reports::json::to_string_pretty(&r.report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("faultline: cannot render JSON: {e}"),
        }
    } else {
        print!("{}", reports::text::run_summary(&r.report));
        let windows: Vec<String> = crate::world::WINDOWS
            .iter()
            .map(|w| {
                format!(
                    "{w} {}/{}",
                    r.report.windows.get(*w).copied().unwrap_or(0),
                    r.report.seeds_run
                )
            })
            .collect();
        println!("race windows reached: {}", windows.join(", "));
        let sim_ms: u64 = r.all.iter().map(|s| s.sim_ms).sum();
        let acked: u64 = r.all.iter().map(|s| s.ops_acked).sum();
        let events: u64 = r.all.iter().map(|s| s.events).sum();
        print!(
            "simulated {:.1}s, {acked} writes acknowledged, {events} events",
            sim_ms as f64 / 1e3
        );
        match r.all.as_slice() {
            [one] => {
                println!(", trace hash {}", one.trace_hash);
                if one.passed {
                    for n in &one.notes {
                        println!("  {n}");
                    }
                }
            }
            _ => println!(),
        }
        if r.report.failures.len() == 1 {
            print!("{}", reports::text::seed_dossier(&r.report.failures[0]));
        }
    }
    if trace {
        for (seed, events) in &r.traces {
            eprintln!("--- trace of seed {seed} ({} events)", events.len());
            for e in events {
                eprintln!(
                    "{:>12.6}s {:<10} {:<10} {}",
                    e.at_us as f64 / 1e6,
                    e.node,
                    e.kind,
                    e.detail
                );
            }
        }
    }
}

fn report_nondeterminism(r: &SweepResult) -> bool {
    for (seed, a, b) in &r.nondeterministic {
        eprintln!("faultline: NON-DETERMINISM: seed {seed} gave trace hash {a} then {b}");
    }
    !r.nondeterministic.is_empty()
}

fn write_out(dir: &Path, r: &SweepResult) -> Result<(), UsageError> {
    let name = &r.report.scenario;
    let run = reports::json::to_string_pretty(&r.report)?;
    reports::write_atomic(&dir.join(format!("{name}-run.json")), run.as_bytes())?;
    for f in &r.report.failures {
        let mut one = RunReport::new(name.clone());
        one.scenario_file = r.report.scenario_file.clone();
        one.bugs = r.report.bugs.clone();
        one.wall_ms = f.wall_ms;
        one.add(f.clone());
        let s = reports::json::to_string_pretty(&one)?;
        reports::write_atomic(
            &dir.join(format!("{name}-seed-{}.json", f.seed)),
            s.as_bytes(),
        )?;
    }
    Ok(())
}

fn read_report(path: &Path) -> Result<RunReport, UsageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    reports::json::parse_run_report(&text)
        .map_err(|e| UsageError(format!("{}: {e}", path.display())))
}

fn merge(paths: &[PathBuf], json: bool) -> Result<i32, UsageError> {
    let mut merged = read_report(&paths[0])?;
    for p in &paths[1..] {
        merged
            .merge(read_report(p)?)
            .map_err(|e| UsageError(format!("{}: {e}", p.display())))?;
    }
    if json {
        println!("{}", reports::json::to_string_pretty(&merged)?);
    } else {
        print!("{}", reports::text::run_summary(&merged));
    }
    Ok(if merged.passed() {
        EXIT_PASS
    } else {
        EXIT_FAIL
    })
}

fn replay(path: &Path, trace: bool) -> Result<i32, UsageError> {
    let saved = read_report(path)?;
    let arg = saved
        .scenario_file
        .clone()
        .unwrap_or_else(|| saved.scenario.clone());
    let (scn, knobs) = load_with_bugs(&arg, &[])
        .or_else(|_| load_with_bugs(&saved.scenario, &saved.bugs))
        .map_err(|e| UsageError(format!("{}: scenario {arg}: {}", path.display(), e.0)))?;
    let knobs = Knobs::new(
        knobs
            .iter()
            .chain(saved.bugs.iter().filter_map(|b| b.parse().ok())),
    );
    if saved.failures.is_empty() {
        return Err(UsageError(format!(
            "{}: the report has no failing seed to replay",
            path.display()
        )));
    }
    let mut code = EXIT_PASS;
    for f in &saved.failures {
        let s = Sweep {
            scenario: scn.clone(),
            scenario_arg: arg.clone(),
            knobs: knobs.clone(),
            seeds: vec![f.seed],
            jobs: 1,
            fail_fast: false,
            keep_full_trace: trace,
            progress: false,
            determinism_every: 0,
        };
        let r = sweep(&s);
        let now = &r.all[0];
        print_result(&r, false, trace);
        if now.trace_hash == f.trace_hash {
            println!(
                "replay of seed {}: trace hash {} matches the report",
                f.seed, now.trace_hash
            );
        } else {
            println!(
                "replay of seed {}: TRACE HASH MISMATCH: report {} vs now {} (non-determinism or a changed binary)",
                f.seed, f.trace_hash, now.trace_hash
            );
            code = EXIT_FAIL;
        }
        if !now.passed {
            code = EXIT_FAIL;
        }
    }
    Ok(code)
}

fn hunt(
    arg: &str,
    bugs: &[String],
    first: u64,
    max_seeds: u64,
    jobs: usize,
) -> Result<i32, UsageError> {
    let (scn, knobs) = load_with_bugs(arg, bugs)?;
    let wall = std::time::Instant::now();
    let batch = (jobs.max(1) * 4) as u64;
    let mut tried = 0u64;
    let mut next = first;
    while tried < max_seeds {
        let n = batch.min(max_seeds - tried);
        let s = Sweep {
            scenario: scn.clone(),
            scenario_arg: arg.to_string(),
            knobs: knobs.clone(),
            seeds: (next..next + n).collect(),
            jobs,
            fail_fast: false,
            keep_full_trace: false,
            progress: false,
            determinism_every: 0,
        };
        let r = sweep(&s);
        if let Some(f) = r.report.failures.first() {
            // Seeds are reported in order, so this is the lowest failing seed of the batch.
            let tried_until = f.seed - first + 1;
            println!(
                "found after {tried_until} seed(s) in {:.2}s wall: seed {} fails with {}",
                wall.elapsed().as_secs_f64(),
                f.seed,
                reports::text::join_kinds(&f.kinds())
            );
            print!("{}", reports::text::seed_dossier(f));
            println!("replay: {}", f.replay);
            return Ok(EXIT_FAIL);
        }
        tried += n;
        next += n;
    }
    println!(
        "not found in {tried} seeds ({:.2}s wall)",
        wall.elapsed().as_secs_f64()
    );
    Ok(EXIT_PASS)
}

/// Whether a sweep meets a scenario's expectation; the message says why or why not.
pub fn judge(scn: &Scenario, report: &RunReport) -> (bool, String) {
    match scn.expect.verdict {
        Verdict::Pass => {
            if report.passed() {
                (true, format!("all {} seeds passed", report.seeds_run))
            } else {
                let seeds: Vec<String> =
                    report.failures.iter().map(|f| f.seed.to_string()).collect();
                (
                    false,
                    format!(
                        "expected every seed to pass; failing seeds: {}",
                        seeds.join(", ")
                    ),
                )
            }
        }
        Verdict::Fail => {
            let found: Vec<ViolationKind> = report.all_kinds();
            let hit =
                scn.expect.kinds.is_empty() || scn.expect.kinds.iter().any(|k| found.contains(k));
            if !report.passed() && hit {
                (
                    true,
                    format!(
                        "found as expected in {} of {} seeds (kinds: {})",
                        report.seeds_failed(),
                        report.seeds_run,
                        reports::text::join_kinds(&found)
                    ),
                )
            } else {
                (
                    false,
                    format!(
                        "expected a failure with one of [{}] within {} seeds; found [{}]",
                        reports::text::join_kinds(&scn.expect.kinds),
                        report.seeds_run,
                        reports::text::join_kinds(&found)
                    ),
                )
            }
        }
    }
}

/// `ci` re-runs every k-th seed and compares trace hashes: a determinism regression is a
/// release blocker, so the regression suite samples for it on every run.
const CI_DETERMINISM_EVERY: usize = 10;

fn ci(
    seeds: Option<u64>,
    junit: Option<PathBuf>,
    jobs: usize,
    filter: Option<String>,
) -> Result<i32, UsageError> {
    let wall = std::time::Instant::now();
    let mut cases = Vec::new();
    let named = scenario::named();
    if named.is_empty() {
        return Err(UsageError(
            "no named scenarios found (looked in ./scenarios and $FAULTLINE_SCENARIOS)".into(),
        ));
    }
    for (name, path) in named {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let scn = Arc::new(Scenario::load(&path)?);
        let n = seeds.or(scn.expect.ci_seeds).unwrap_or(10).max(1);
        let s = Sweep {
            scenario: scn.clone(),
            scenario_arg: name.clone(),
            knobs: Knobs::new(scn.bugs()),
            seeds: (1..=n).collect(),
            jobs,
            // The whole budget runs: an early failure of another kind does not settle a `fail`
            // expectation, and the found-in-N-seeds share is worth reporting.
            fail_fast: false,
            keep_full_trace: false,
            progress: false,
            determinism_every: CI_DETERMINISM_EVERY,
        };
        let r = sweep(&s);
        let (mut passed, mut message) = judge(&scn, &r.report);
        if !r.nondeterministic.is_empty() {
            report_nondeterminism(&r);
            passed = false;
            message = format!(
                "NON-DETERMINISM on seeds {:?}; {message}",
                r.nondeterministic.iter().map(|n| n.0).collect::<Vec<_>>()
            );
        }
        let expectation = match scn.expect.verdict {
            Verdict::Pass => "pass".to_string(),
            Verdict::Fail => format!("fail with {}", reports::text::join_kinds(&scn.expect.kinds)),
        };
        println!(
            "{} {name}: {message} ({:.1}s)",
            if passed { "ok  " } else { "FAIL" },
            r.report.wall_ms as f64 / 1e3
        );
        cases.push(CiCase {
            scenario: name,
            expectation,
            passed,
            message,
            seeds_run: r.report.seeds_run,
            wall_ms: r.report.wall_ms,
            failing_seeds: r.report.failures.clone(),
        });
    }
    let report = CiReport {
        cases,
        wall_ms: wall.elapsed().as_millis() as u64,
    };
    if let Some(path) = junit {
        reports::write_atomic(&path, reports::junit::render(&report).as_bytes())?;
    }
    let ok = report.passed();
    println!(
        "ci: {} of {} expectations met in {:.1}s",
        report.cases.iter().filter(|c| c.passed).count(),
        report.cases.len(),
        report.wall_ms as f64 / 1e3
    );
    Ok(if ok { EXIT_PASS } else { EXIT_FAIL })
}
