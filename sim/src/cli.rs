//! Command-line interface (clap). Every failure prints its seed and a one-line replay command.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use engine::Knobs;
use reports::{CiCase, CiReport, RunReport, SeedReport, TraceEvent, ViolationKind};

use crate::bench;
use crate::runner::{self, sweep, HuntSearch, Seeds, Sweep, SweepResult};
use crate::scenario::{self, Scenario, Verdict};

/// Recorded in every run report (`tool_version`).
pub const TOOL_VERSION: &str = concat!("faultline ", env!("CARGO_PKG_VERSION"));

pub const EXIT_PASS: i32 = 0;
pub const EXIT_FAIL: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
/// `replay` only: the re-run's trace hash differs from the report's (non-determinism, or a
/// changed binary or scenario), so the report's failure was neither reproduced nor refuted.
pub const EXIT_MISMATCH: i32 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "faultline",
    version,
    about = "Deterministic chaos simulation for replicated, disaggregated storage engines."
)]
#[command(
    after_help = "Exit codes: 0 all seeds passed, 1 a violation found (or an expectation missed; for replay: the failure reproduced), 2 bad input, 3 (replay only) trace hash mismatch."
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
    fn seed_list(&self) -> Result<Seeds, UsageError> {
        if self.seeds == 0 {
            return Err(UsageError("--seeds must be at least 1".into()));
        }
        let (i, n) = self.shard_of()?;
        let all = Seeds::range(self.seed, self.seeds)
            .map_err(|e| UsageError(format!("--seed {} --seeds {}: {e}", self.seed, self.seeds)))?;
        Ok(all.shard(i, n))
    }

    /// The shard this process runs, when sharded (recorded in its report for `merge`).
    fn shard(&self) -> Result<Option<reports::Shard>, UsageError> {
        let (index, count) = self.shard_of()?;
        Ok(
            (self.shard.is_some() || count > 1).then_some(reports::Shard {
                index,
                count,
                first_seed: self.seed,
                seeds: self.seeds,
            }),
        )
    }

    /// `(I, N)` from `--shard I/N` or the Kubernetes indexed-Job variables; `(0, 1)` unsharded.
    fn shard_of(&self) -> Result<(u64, u64), UsageError> {
        Ok(
            match (
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
            },
        )
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
    List {
        /// Print one JSON object: `schema_version`, `tool_version` and `scenarios[]` (each with
        /// `name`, `file`, `description`, and `error` for an invalid file).
        #[arg(long)]
        json: bool,
    },
    /// Run a scenario (a name from `list` or a JSON file) over one or many seeds.
    Run {
        scenario: String,
        #[command(flatten)]
        seeds: SeedArgs,
        /// Switch on a known-bug knob (repeatable): stale-keystore-abort, bytes-total-leak,
        /// drop-drain-race, volatile-raft-term.
        #[arg(long = "bug", value_name = "NAME")]
        bugs: Vec<String>,
        /// Write the JSON run report into DIR and, per failing seed, its JSON report, HTML
        /// timeline, Perfetto trace and full text trace (the seed is re-run once for its trace).
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
    ///
    /// Exit 1 when every failure is reproduced (same trace hash), 3 when a trace hash differs, 2 on
    /// bad input.
    Replay {
        report: PathBuf,
        /// Print the full event trace (to stdout).
        #[arg(long)]
        trace: bool,
        /// Print only the trace events within --window of this simulated time (ms).
        #[arg(long, value_name = "T_MS")]
        around: Option<u64>,
        /// Half-width of the --around window, in simulated ms.
        #[arg(long, value_name = "MS", default_value_t = 2000, requires = "around")]
        window: u64,
        /// Replay only this failing seed of the report.
        #[arg(long)]
        seed: Option<u64>,
        /// Write the HTML timeline of the replayed seed to FILE.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Write the Perfetto / Chrome trace JSON of the replayed seed to FILE.
        #[arg(long, value_name = "FILE")]
        perfetto: Option<PathBuf>,
        /// Print one JSON object instead of the dossiers: `schema_version`, `tool_version`,
        /// `report`, `replays[]` (`seed`, `reproduced`, `trace_hash` of the report,
        /// `trace_hash_now`, `passed_now`, `kinds_now`).
        #[arg(long, conflicts_with_all = ["trace", "around"])]
        json: bool,
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
        /// Print one JSON object: `schema_version`, `tool_version`, `scenario`, `bugs`,
        /// `found`, `tried`, `wall_ms` and `failure` (the seed's report, as in `run --json`).
        #[arg(long)]
        json: bool,
    },
    /// Combine the JSON reports of a sharded sweep into one.
    Merge {
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Print the merged report as JSON (default: the text summary).
        #[arg(long)]
        json: bool,
    },
    /// Minimize a failing seed's scenario: keep the seed, turn the chaos controller's faults
    /// into a timeline, drop and shorten faults, cut duration and load while the same violation
    /// kind still occurs; write the minimal scenario and print its replay command.
    Shrink {
        /// A JSON report of `run --json` or `run --out`.
        report: PathBuf,
        /// The failing seed to shrink (default: the report's first failing seed).
        #[arg(long)]
        seed: Option<u64>,
        /// The violation kind that must keep occurring (default: the seed's first violation).
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        /// Write the minimal scenario here (default: <scenario>-seed<S>-min.json).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Seed runs to spend at most (each candidate scenario is one run).
        #[arg(long, default_value_t = 300)]
        max_runs: usize,
        /// Candidates run at once; the result does not depend on it, only the runs spent.
        #[arg(long, short = 'j', default_value_t = 1)]
        jobs: usize,
    },
    /// Run every named scenario against its `expect` (the regression suite).
    Ci {
        /// Seeds per scenario (default: the scenario's `expect.ci_seeds`, else 10); the
        /// expectations' seed minimums (`min_found`, `windows`) scale to it, rounded down.
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
        /// Print one JSON object at the end instead of a line per scenario: `schema_version`,
        /// `tool_version`, `passed`, `cases[]` (`scenario`, `expectation`, `passed`,
        /// `message`, `seeds_run`, `failing_seeds`), `wall_ms`.
        #[arg(long)]
        json: bool,
    },
    /// Measure simulation speed, seeds per core-second, time to find each known bug and peak
    /// memory (figures with their targets; takes a few minutes, `--quick` seconds).
    Bench {
        /// Print the figures as one JSON object.
        #[arg(long)]
        json: bool,
        /// Few samples and a short memory sweep: checks the bench runs, figures not quotable.
        #[arg(long)]
        quick: bool,
        /// Jobs for the memory sweep (the other figures use one core).
        #[arg(long, short = 'j', default_value_t = default_jobs())]
        jobs: usize,
    },
    /// Print the JSON Schema of scenario files (docs/scenarios.md describes every field).
    ///
    /// Generated from the scenario types; editors can validate scenario files against it.
    Schema,
    /// Explain one scenario field, timeline action or name, with an example for an action.
    Explain {
        /// A timeline action (`partition`), a field (`duration_ms`, `workload.ops_per_sec`,
        /// `for_ms`) or a name (a checker, chaos fault, knob, failpoint, violation kind, window).
        term: String,
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
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(UsageError(msg)) => {
            eprintln!("faultline: error: {msg}");
            EXIT_USAGE
        }
    };
    // For `faultline bench`'s memory figures, measured in a child process.
    if std::env::var_os("FAULTLINE_PEAK_RSS").is_some() {
        if let Some(kb) = bench::own_peak_rss_kb() {
            eprintln!("{}{kb} kB", bench::PEAK_RSS_PREFIX);
        }
    }
    code
}

fn dispatch(cli: Cli) -> Result<i32, UsageError> {
    match cli.cmd {
        Cmd::List { json: true } => {
            let scenarios: Vec<serde_json::Value> = scenario::named()
                .into_iter()
                .map(|(name, path)| {
                    let file = path.display().to_string();
                    match Scenario::load(&path) {
                        Ok(s) => serde_json::json!({
                            "name": name, "file": file, "description": s.description
                        }),
                        Err(e) => serde_json::json!({
                            "name": name, "file": file, "error": e.to_string()
                        }),
                    }
                })
                .collect();
            let v = serde_json::json!({
                "schema_version": reports::REPORT_SCHEMA_VERSION,
                "tool_version": TOOL_VERSION,
                "scenarios": scenarios,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(EXIT_PASS)
        }
        Cmd::List { json: false } => {
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
            if let Some(dir) = &out {
                // Before the sweep, not after it: a long sweep must not end in "cannot write".
                check_out_dir(dir)?;
            }
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
            r.report.shards.extend(seeds.shard()?);
            r.report.tool_version = TOOL_VERSION.to_string();
            print_result(&r, json, trace);
            let mut nondet = report_nondeterminism(&r);
            if let Some(dir) = out {
                nondet |= !write_out(&dir, &r, &s)?;
            }
            Ok(if r.report.passed() && !nondet {
                EXIT_PASS
            } else {
                EXIT_FAIL
            })
        }
        Cmd::Replay {
            report,
            trace,
            around,
            window,
            seed,
            html,
            perfetto,
            json,
        } => replay(
            &report,
            &ReplayOpts {
                trace,
                around_ms: around,
                window_ms: window,
                seed,
                html,
                perfetto,
                json,
            },
        ),
        Cmd::Hunt {
            scenario,
            bugs,
            seed,
            max_seeds,
            jobs,
            json,
        } => hunt(&scenario, &bugs, seed, max_seeds, jobs, json),
        Cmd::Merge { reports, json } => merge(&reports, json),
        Cmd::Shrink {
            report,
            seed,
            kind,
            out,
            max_runs,
            jobs,
        } => shrink(&report, seed, kind.as_deref(), out, max_runs, jobs),
        Cmd::Ci {
            seeds,
            junit,
            jobs,
            filter,
            json,
        } => ci(seeds, junit, jobs, filter, json),
        Cmd::Bench { json, quick, jobs } => run_bench(json, quick, jobs),
        Cmd::Explain { term } => {
            print!("{}", crate::reference::explain(&term).map_err(UsageError)?);
            Ok(EXIT_PASS)
        }
        Cmd::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&scenario::json_schema())?
            );
            Ok(EXIT_PASS)
        }
    }
}

fn run_bench(json: bool, quick: bool, jobs: usize) -> Result<i32, UsageError> {
    let exe = std::env::current_exe()
        .map_err(|e| UsageError(format!("cannot find the faultline binary: {e}")))?;
    let opts = bench::BenchOptions { quick, jobs };
    let r = bench::run(&opts, &exe, &mut |what| eprintln!("bench: {what}"))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).expect("bench figures serialize")
        );
    } else {
        print!("{}", bench::render(&r));
    }
    Ok(EXIT_PASS)
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
        let bug = scenario::parse_knob(b).map_err(|e| UsageError(format!("--bug: {e}")))?;
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
            eprint!("{}", reports::text::trace_lines(events));
        }
    }
}

fn report_nondeterminism(r: &SweepResult) -> bool {
    for (seed, a, b) in &r.nondeterministic {
        eprintln!("faultline: NON-DETERMINISM: seed {seed} gave trace hash {a} then {b}");
    }
    !r.nondeterministic.is_empty()
}

/// A scenario name as a file-name part: anything but `[A-Za-z0-9._-]` becomes `_`, so a
/// scenario file's `name` can never point a report outside `--out`.
fn file_part(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.trim_start_matches('.') {
        "" => "scenario".to_string(),
        t => t.to_string(),
    }
}

/// Creates `--out DIR` if needed and makes sure a file can be written there.
fn check_out_dir(dir: &Path) -> Result<(), UsageError> {
    let cannot = |e: std::io::Error| UsageError(format!("--out {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(cannot)?;
    let probe = dir.join(format!(".faultline-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(cannot)?;
    std::fs::remove_file(&probe).map_err(cannot)
}

/// Writes the run report and, per failing seed, `<scenario>-seed-<S>.json`, `.html`,
/// `.perfetto.json` and `.trace.txt`, each atomically. The last three need the seed's full
/// trace, so each failing seed is re-run once with it kept (unless `--trace` already kept it);
/// returns false if a re-run's trace hash differs from the sweep's (reported loudly, and the
/// seed's trace files are not written: they would describe a different execution).
fn write_out(dir: &Path, r: &SweepResult, s: &Sweep) -> Result<bool, UsageError> {
    let name = file_part(&r.report.scenario);
    let run = reports::json::to_string_pretty(&r.report)?;
    write_file(&dir.join(format!("{name}-run.json")), run.as_bytes())?;
    for f in &r.report.failures {
        let mut one = RunReport::new(r.report.scenario.clone());
        one.tool_version = r.report.tool_version.clone();
        one.scenario_file = r.report.scenario_file.clone();
        one.bugs = r.report.bugs.clone();
        one.wall_ms = f.wall_ms;
        one.add(f.clone());
        let s = reports::json::to_string_pretty(&one)?;
        write_file(
            &dir.join(format!("{name}-seed-{}.json", f.seed)),
            s.as_bytes(),
        )?;
    }

    let mut reproduced = true;
    let mut written = 0;
    // Batches of a few seeds: full traces can be large, so never hold many at once.
    for batch in r.report.failures.chunks(s.jobs.clamp(1, 64) * 2) {
        let missing: Vec<u64> = batch
            .iter()
            .map(|f| f.seed)
            .filter(|seed| !r.traces.contains_key(seed))
            .collect();
        let rerun = (!missing.is_empty()).then(|| {
            sweep(&Sweep {
                scenario: s.scenario.clone(),
                scenario_arg: s.scenario_arg.clone(),
                knobs: s.knobs.clone(),
                seeds: Seeds::List(missing),
                jobs: s.jobs,
                fail_fast: false,
                keep_full_trace: true,
                progress: false,
                determinism_every: 0,
            })
        });
        for f in batch {
            let (trace, ops, hash) = match (r.traces.get(&f.seed), &rerun) {
                (Some(t), _) => (t, r.client_ops.get(&f.seed), f.trace_hash.as_str()),
                (None, Some(rr)) => {
                    let now = rr.all.iter().find(|x| x.seed == f.seed);
                    match (rr.traces.get(&f.seed), now) {
                        (Some(t), Some(now)) => {
                            (t, rr.client_ops.get(&f.seed), now.trace_hash.as_str())
                        }
                        _ => continue,
                    }
                }
                (None, None) => continue,
            };
            if hash != f.trace_hash {
                eprintln!(
                    "faultline: NON-DETERMINISM: seed {} re-run for its timeline gave trace hash {hash}, \
                     the run gave {}; its .html/.perfetto.json/.trace.txt are not written",
                    f.seed, f.trace_hash
                );
                reproduced = false;
                continue;
            }
            let stem = dir.join(format!("{name}-seed-{}", f.seed));
            let ops = ops.map_or(&[][..], Vec::as_slice);
            write_trace_files(&stem, &r.report.scenario, f, trace, ops)?;
            written += 1;
        }
    }
    eprintln!(
        "faultline: wrote {} with {} failing seed(s) ({written} with .html, .perfetto.json, .trace.txt)",
        dir.display(),
        r.report.failures.len()
    );
    Ok(reproduced)
}

/// `<stem>.html`, `<stem>.perfetto.json` and `<stem>.trace.txt` of one seed; `ops` is its
/// client history (the timelines' client lanes).
fn write_trace_files(
    stem: &Path,
    scenario: &str,
    seed: &SeedReport,
    trace: &[TraceEvent],
    ops: &[reports::ClientOp],
) -> Result<(), UsageError> {
    let timeline = reports::timeline::Timeline::build(seed, trace).with_client_ops(ops);
    let with_ext = |ext: &str| {
        let mut p = stem.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    write_file(
        &with_ext(".html"),
        reports::html::render_timeline(scenario, seed, &timeline).as_bytes(),
    )?;
    write_file(
        &with_ext(".perfetto.json"),
        reports::perfetto::render_timeline(scenario, seed, &timeline).as_bytes(),
    )?;
    write_file(
        &with_ext(".trace.txt"),
        reports::text::trace_lines(trace).as_bytes(),
    )
}

/// [`reports::write_atomic`] with the path in the error message.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), UsageError> {
    reports::write_atomic(path, bytes)
        .map_err(|e| UsageError(format!("cannot write {}: {e}", path.display())))
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
    let missing = merged.missing_shards();
    if let (Some(s), false) = (merged.shards.first(), missing.is_empty()) {
        let names: Vec<String> = missing.iter().map(|i| format!("{i}/{}", s.count)).collect();
        eprintln!(
            "faultline: warning: {} of {} shards merged; missing shard(s) {}: the sweep of seeds \
             {}..+{} is incomplete",
            merged.shards.len(),
            s.count,
            names.join(", "),
            s.first_seed,
            s.seeds
        );
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

/// The scenario a saved report ran (its file if it still loads, else the named scenario), how
/// it was named, and the knobs: the scenario's own and the report's.
fn report_scenario(
    path: &Path,
    saved: &RunReport,
) -> Result<(String, Arc<Scenario>, Knobs), UsageError> {
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
    Ok((arg, scn, knobs))
}

struct ReplayOpts {
    trace: bool,
    around_ms: Option<u64>,
    window_ms: u64,
    seed: Option<u64>,
    html: Option<PathBuf>,
    perfetto: Option<PathBuf>,
    json: bool,
}

fn replay(path: &Path, o: &ReplayOpts) -> Result<i32, UsageError> {
    let saved = read_report(path)?;
    let (arg, scn, knobs) = report_scenario(path, &saved)?;
    if saved.failures.is_empty() {
        return Err(UsageError(format!(
            "{}: the report has no failing seed to replay",
            path.display()
        )));
    }
    let failures: Vec<&SeedReport> = saved
        .failures
        .iter()
        .filter(|f| o.seed.is_none_or(|s| s == f.seed))
        .collect();
    if failures.is_empty() {
        let seeds: Vec<String> = saved.failures.iter().map(|f| f.seed.to_string()).collect();
        return Err(UsageError(format!(
            "{}: seed {} is not among the report's failing seeds ({})",
            path.display(),
            o.seed.unwrap_or_default(),
            seeds.join(", ")
        )));
    }
    if failures.len() > 1 && (o.html.is_some() || o.perfetto.is_some()) {
        return Err(UsageError(format!(
            "{}: the report has {} failing seeds; pick one with --seed for --html/--perfetto",
            path.display(),
            failures.len()
        )));
    }
    let keep_full_trace =
        o.trace || o.around_ms.is_some() || o.html.is_some() || o.perfetto.is_some();
    let mut code = EXIT_PASS;
    let mut mismatch = false;
    let mut replays = Vec::new();
    for f in failures {
        let s = Sweep {
            scenario: scn.clone(),
            scenario_arg: arg.clone(),
            knobs: knobs.clone(),
            seeds: Seeds::List(vec![f.seed]),
            jobs: 1,
            fail_fast: false,
            keep_full_trace,
            progress: false,
            determinism_every: 0,
        };
        let mut r = sweep(&s);
        if keep_full_trace {
            // The trace view below replaces the dossier's tail of the last events.
            for failed in &mut r.report.failures {
                failed.trace_tail.clear();
            }
        }
        if !o.json {
            print_result(&r, false, false);
        }
        let now = &r.all[0];
        replays.push(serde_json::json!({
            "seed": f.seed,
            "reproduced": now.trace_hash == f.trace_hash,
            "trace_hash": f.trace_hash,
            "trace_hash_now": now.trace_hash,
            "passed_now": now.passed,
            "kinds_now": r.report.all_kinds().iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        }));
        let trace = r.traces.get(&f.seed).map_or(&[][..], Vec::as_slice);
        let ops = r.client_ops.get(&f.seed).map_or(&[][..], Vec::as_slice);
        // Render the saved report (its replay command) when the replay reproduced it; after a
        // mismatch only the new run's report describes this trace.
        let shown = if now.trace_hash == f.trace_hash {
            f
        } else {
            now
        };
        if let Some(t_ms) = o.around_ms {
            let lo_us = t_ms.saturating_sub(o.window_ms).saturating_mul(1000);
            let hi_us = t_ms.saturating_add(o.window_ms).saturating_mul(1000);
            let window: Vec<&TraceEvent> = trace
                .iter()
                .filter(|e| (lo_us..=hi_us).contains(&e.at_us))
                .collect();
            println!(
                "--- trace of seed {} within {} ms of {} ({} of {} events)",
                f.seed,
                o.window_ms,
                reports::text::secs_ms(t_ms),
                window.len(),
                trace.len()
            );
            print!("{}", reports::text::trace_lines(window));
        } else if o.trace {
            println!("--- trace of seed {} ({} events)", f.seed, trace.len());
            print!("{}", reports::text::trace_lines(trace));
        }
        if let Some(file) = &o.html {
            write_file(
                file,
                reports::html::render_with_ops(&saved.scenario, shown, trace, ops).as_bytes(),
            )?;
            if !o.json {
                println!("wrote {}", file.display());
            }
        }
        if let Some(file) = &o.perfetto {
            write_file(
                file,
                reports::perfetto::render_with_ops(&saved.scenario, shown, trace, ops).as_bytes(),
            )?;
            if !o.json {
                println!("wrote {}", file.display());
            }
        }
        if now.trace_hash == f.trace_hash {
            if !o.json {
                println!(
                    "replay of seed {}: trace hash {} matches the report",
                    f.seed, now.trace_hash
                );
            }
        } else {
            if !o.json {
                println!(
                    "replay of seed {}: TRACE HASH MISMATCH: report {} vs now {} (non-determinism or a changed binary)",
                    f.seed, f.trace_hash, now.trace_hash
                );
            }
            eprintln!(
                "faultline: TRACE HASH MISMATCH replaying seed {}: this is not the execution the report describes",
                f.seed
            );
            mismatch = true;
        }
        if !now.passed {
            code = EXIT_FAIL;
        }
    }
    if o.json {
        let v = serde_json::json!({
            "schema_version": reports::REPORT_SCHEMA_VERSION,
            "tool_version": TOOL_VERSION,
            "report": path.display().to_string(),
            "replays": replays,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    // A mismatch outranks "reproduced": a different execution neither confirms nor refutes
    // the report, and a script must not read it as the bug still being there.
    Ok(if mismatch { EXIT_MISMATCH } else { code })
}

/// `shrink`: see [`crate::shrink`]. Exit 0 with the minimal scenario written, 1 when the seed
/// no longer fails with the kind, 2 on bad input.
fn shrink(
    path: &Path,
    seed: Option<u64>,
    kind: Option<&str>,
    out: Option<PathBuf>,
    max_runs: usize,
    jobs: usize,
) -> Result<i32, UsageError> {
    let wall = std::time::Instant::now();
    let saved = read_report(path)?;
    if saved.failures.is_empty() {
        return Err(UsageError(format!(
            "{}: the report has no failing seed to shrink",
            path.display()
        )));
    }
    let failed = match seed {
        None => &saved.failures[0],
        Some(s) => saved.failures.iter().find(|f| f.seed == s).ok_or_else(|| {
            let seeds: Vec<String> = saved.failures.iter().map(|f| f.seed.to_string()).collect();
            UsageError(format!(
                "{}: seed {s} is not among the report's failing seeds ({})",
                path.display(),
                seeds.join(", ")
            ))
        })?,
    };
    let kind = match kind {
        Some(k) => {
            let kind = ViolationKind::parse(k).ok_or_else(|| {
                UsageError(format!(
                    "--kind {k}: unknown violation kind (one of {})",
                    reports::text::join_kinds(&ViolationKind::ALL)
                ))
            })?;
            if !failed.kinds().contains(&kind) {
                return Err(UsageError(format!(
                    "{}: seed {} failed with [{}], not {kind}",
                    path.display(),
                    failed.seed,
                    reports::text::join_kinds(&failed.kinds())
                )));
            }
            kind
        }
        None => failed.violations.first().map(|v| v.kind).ok_or_else(|| {
            UsageError(format!(
                "{}: seed {} is listed as failing but has no violations",
                path.display(),
                failed.seed
            ))
        })?,
    };
    if max_runs == 0 {
        return Err(UsageError("--max-runs must be at least 1".into()));
    }
    let (arg, scn, knobs) = report_scenario(path, &saved)?;
    let seed = failed.seed;
    let name = format!("{}-seed{seed}-min", file_part(&saved.scenario));
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}.json")));
    let bugs: Vec<String> = knobs.iter().map(|b| b.to_string()).collect();
    let opts = crate::shrink::Options {
        seed,
        kind,
        also: failed.kinds().into_iter().filter(|k| *k != kind).collect(),
        knobs: knobs.clone(),
        max_runs,
        jobs,
        name,
        description: format!(
            "Shrunk by `faultline shrink` from seed {seed} of {} (report {}, knobs [{}]): the \
             chaos controller's faults as a timeline, minimized while `{kind}` still occurs",
            saved.scenario,
            path.display(),
            bugs.join(", ")
        ),
    };
    eprintln!(
        "shrink: {} seed {seed} [{}] for {kind}, at most {max_runs} runs",
        saved.scenario,
        bugs.join(", ")
    );
    let o = match crate::shrink::shrink(&scn, &opts, &mut |line| eprintln!("shrink: {line}")) {
        Ok(o) => o,
        Err(nr) => {
            let now = if nr.found.is_empty() {
                "it passes now".to_string()
            } else {
                format!("found [{}]", reports::text::join_kinds(&nr.found))
            };
            eprintln!(
                "faultline: seed {seed} of {arg} does not fail with {kind} any more ({now}; trace {}, the report's {}): nothing to shrink",
                nr.trace_hash, failed.trace_hash
            );
            return Ok(EXIT_FAIL);
        }
    };
    let text = serde_json::to_string_pretty(&o.minimal)? + "\n";
    write_file(&out, text.as_bytes())?;
    // What was written is what ran: the file loads back to the same scenario.
    match Scenario::load(&out) {
        Ok(back) if back == o.minimal => {}
        Ok(_) => {
            return Err(UsageError(format!(
                "{}: reads back differently",
                out.display()
            )))
        }
        Err(e) => return Err(UsageError(format!("{e}"))),
    }
    let min = &o.minimal;
    let load = |s: &Scenario| match s.workload.clients {
        0 => "no clients".to_string(),
        n => format!("{n} client(s) x {} ops/s", s.workload.ops_per_sec),
    };
    let failpoints = |s: &Scenario| {
        let v: Vec<String> = s
            .failpoints
            .iter()
            .map(|f| format!("{} {}/1000", f.name, f.per_mille))
            .collect();
        format!("[{}]", v.join(", "))
    };
    println!(
        "shrunk {} seed {seed} ({kind}) in {} runs, {:.1}s wall{}",
        saved.scenario,
        o.runs,
        wall.elapsed().as_secs_f64(),
        if o.exhausted {
            " (run budget spent: not fully minimal)"
        } else {
            ""
        }
    );
    let before_items = if scn.chaos.is_some() {
        format!(
            "{} scripted + {} chaos faults = {}",
            scn.timeline.len(),
            o.chaos_faults,
            scn.timeline.len() + o.chaos_faults
        )
    } else {
        scn.timeline.len().to_string()
    };
    let after_items = if !o.materialized {
        format!(
            "{} scripted + the chaos block (its schedule did not fail once materialized)",
            min.timeline.len()
        )
    } else {
        min.timeline.len().to_string()
    };
    println!("  timeline items  {before_items} -> {after_items}");
    println!(
        "  duration        {} ms -> {} ms",
        scn.duration_ms, min.duration_ms
    );
    println!("  workload        {} -> {}", load(&scn), load(min));
    if !scn.failpoints.is_empty() {
        println!(
            "  failpoints      {} -> {}",
            failpoints(&scn),
            failpoints(min)
        );
    }
    for item in &min.timeline {
        println!(
            "    {}",
            serde_json::to_string(item).unwrap_or_else(|_| item.action().to_string())
        );
    }
    println!("wrote {}", out.display());
    println!(
        "replay: {}",
        crate::runner::replay_command(&out.display().to_string(), seed, &knobs)
    );
    Ok(EXIT_PASS)
}

fn hunt(
    arg: &str,
    bugs: &[String],
    first: u64,
    max_seeds: u64,
    jobs: usize,
    json: bool,
) -> Result<i32, UsageError> {
    let (scn, knobs) = load_with_bugs(arg, bugs)?;
    let name = scn.name.clone();
    let bug_names: Vec<String> = knobs.iter().map(|b| b.to_string()).collect();
    if max_seeds == 0 {
        return Err(UsageError("--max-seeds must be at least 1".into()));
    }
    Seeds::range(first, max_seeds)
        .map_err(|e| UsageError(format!("--seed {first} --max-seeds {max_seeds}: {e}")))?;
    let wall = std::time::Instant::now();
    let h = runner::hunt(&HuntSearch {
        scenario: scn,
        scenario_arg: arg.to_string(),
        knobs,
        first,
        max_seeds,
        jobs,
    });
    let secs = wall.elapsed().as_secs_f64();
    if json {
        let v = serde_json::json!({
            "schema_version": reports::REPORT_SCHEMA_VERSION,
            "tool_version": TOOL_VERSION,
            "scenario": name,
            "bugs": bug_names,
            "found": h.found.is_some(),
            "tried": h.tried,
            "wall_ms": wall.elapsed().as_millis() as u64,
            "failure": h.found,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(if v["found"] == true {
            EXIT_FAIL
        } else {
            EXIT_PASS
        });
    }
    match h.found {
        Some(f) => {
            println!(
                "found after {} seed(s) in {secs:.2}s wall: seed {} fails with {}",
                h.tried,
                f.seed,
                reports::text::join_kinds(&f.kinds())
            );
            print!("{}", reports::text::seed_dossier(&f));
            println!("replay: {}", f.replay);
            Ok(EXIT_FAIL)
        }
        None => {
            println!("not found in {} seeds ({secs:.2}s wall)", h.tried);
            Ok(EXIT_PASS)
        }
    }
}

/// Whether a sweep meets a scenario's expectation; the message says why or why not.
///
/// `fail`: at least `min_found` seeds have the finding (a violation of one of `kinds` whose
/// message matches `message`), and no failing seed has a kind outside `kinds` and `also`.
/// `pass`: every seed passed, every seed acknowledged at least `min_ops_acked_fault_phase`
/// ops while faults ran, reads and model comparisons were made across the sweep (when the
/// workload reads and the scenario runs the model check), and each window in `windows` was
/// entered by enough seeds. Minimums are stated for `ci_seeds` seeds and scale with the seeds
/// actually run (`Expect::scaled`).
pub fn judge(scn: &Scenario, report: &RunReport) -> (bool, String) {
    let e = &scn.expect;
    let n = report.seeds_run;
    let scaled_note = |stated: u64, need: u64| {
        if need == stated {
            String::new()
        } else {
            format!(", {stated} of {} scaled to {n} seeds", e.ci_seeds())
        }
    };
    let mut problems: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    match e.verdict {
        Verdict::Pass => {
            if !report.passed() {
                let seeds: Vec<String> =
                    report.failures.iter().map(|f| f.seed.to_string()).collect();
                problems.push(format!(
                    "expected every seed to pass; failing seeds: {} (kinds: {})",
                    seeds.join(", "),
                    reports::text::join_kinds(&report.all_kinds())
                ));
            } else {
                notes.push(format!("all {n} seeds passed"));
            }
            let p = &report.progress;
            let clients = scn.workload.clients > 0;
            let min_ops = e.min_ops_acked_fault_phase.unwrap_or(u64::from(clients));
            if n > 0 && min_ops > 0 {
                if p.ops_acked_fault_phase_min < min_ops {
                    problems.push(format!(
                        "{} progress under faults: seed {} acknowledged {} op(s) while faults ran, \
                         need {min_ops} per seed (min_ops_acked_fault_phase); {} of {n} seeds \
                         acknowledged none",
                        if p.ops_acked_fault_phase_min == 0 { "no" } else { "too little" },
                        p.ops_acked_fault_phase_min_seed,
                        p.ops_acked_fault_phase_min,
                        p.seeds_without_fault_phase_acks
                    ));
                } else {
                    notes.push(format!(
                        ">= {} ops acked under faults per seed",
                        p.ops_acked_fault_phase_min
                    ));
                }
            }
            let reads = clients && scn.workload.mix.is_none_or(|m| m.reads_per_mille > 0);
            if n > 0 && reads {
                if p.reads_acked_fault_phase == 0 {
                    problems.push(format!(
                        "no reads checked: the workload reads, but none of {n} seeds acknowledged \
                         a read while faults ran"
                    ));
                } else {
                    notes.push(format!("{} reads", p.reads_acked_fault_phase));
                }
            }
            if n > 0 && scn.has_check(scenario::Check::Model) {
                if p.model_checks == 0 {
                    problems.push(format!(
                        "no model checks: the `model` check is on, but none of {n} seeds compared \
                         a replica with the reference model"
                    ));
                } else {
                    notes.push(format!("{} model checks", p.model_checks));
                }
            }
        }
        Verdict::Fail => {
            let what = expect_finding(e);
            let stated = e.min_found.unwrap_or(1);
            let need = e.scaled(stated, n).max(1);
            let mut found = 0u64;
            let mut unexpected: Vec<String> = Vec::new();
            for f in &report.failures {
                if f.violations
                    .iter()
                    .any(|v| e.is_finding(v.kind, &v.message))
                {
                    found += 1;
                }
                if let Some(v) = f.violations.iter().find(|v| !e.tolerates(v.kind)) {
                    unexpected.push(format!(
                        "unexpected kind {} on seed {}: {}",
                        v.kind,
                        f.seed,
                        reports::text::violation_line(v)
                            .chars()
                            .take(240)
                            .collect::<String>()
                    ));
                }
            }
            if found < need {
                // Say what was found instead: the first message of each kind.
                let mut seen: Vec<ViolationKind> = Vec::new();
                let mut instead: Vec<String> = Vec::new();
                for v in report.failures.iter().flat_map(|f| f.violations.iter()) {
                    if !seen.contains(&v.kind) {
                        seen.push(v.kind);
                        let m: String = v.message.chars().take(120).collect();
                        instead.push(format!("{} \"{m}\"", v.kind));
                    }
                }
                problems.push(format!(
                    "expected {what} in at least {need} of {n} seeds{}; found in {found} \
                     (failing seeds: {}; found instead: {})",
                    scaled_note(stated, need),
                    report.seeds_failed(),
                    if instead.is_empty() {
                        "nothing".to_string()
                    } else {
                        instead.join("; ")
                    }
                ));
            } else {
                notes.push(format!(
                    "found {what} in {found} of {n} seeds (need {need}; kinds: {})",
                    reports::text::join_kinds(&report.all_kinds())
                ));
            }
            let k = unexpected.len();
            if let Some(first) = unexpected.into_iter().next() {
                problems.push(if k > 1 {
                    format!("{first} (and {} more seeds)", k - 1)
                } else {
                    first
                });
            }
        }
    }
    let mut windows: Vec<String> = Vec::new();
    for (w, &stated) in &e.windows {
        let need = e.scaled(stated, n);
        let got = report.windows.get(w).copied().unwrap_or(0);
        if got < need {
            problems.push(format!(
                "race window {w} entered by {got} of {n} seeds, need {need}{}",
                scaled_note(stated, need)
            ));
        } else {
            windows.push(format!("{w} {got}/{n} (min {need})"));
        }
    }
    if !windows.is_empty() {
        notes.push(format!("windows: {}", windows.join(", ")));
    }
    if problems.is_empty() {
        (true, notes.join("; "))
    } else {
        (false, problems.join("; "))
    }
}

/// `node-abort ~ "StaleKeystore"`, `raft-safety|state-divergence`: a `fail` expectation's finding.
fn expect_finding(e: &scenario::Expect) -> String {
    let kinds: Vec<&str> = e.kinds.iter().map(|k| k.as_str()).collect();
    match &e.message {
        Some(m) => format!("{} ~ \"{m}\"", kinds.join("|")),
        None => kinds.join("|"),
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
    json: bool,
) -> Result<i32, UsageError> {
    let wall = std::time::Instant::now();
    let named = scenario::named();
    if named.is_empty() {
        return Err(UsageError(
            "no named scenarios found (looked in ./scenarios and $FAULTLINE_SCENARIOS)".into(),
        ));
    }
    let selected: Vec<(String, PathBuf)> = named
        .into_iter()
        .filter(|(name, _)| filter.as_ref().is_none_or(|f| name.contains(f.as_str())))
        .collect();
    if selected.is_empty() {
        // Running nothing would pass: a typo in a CI job's filter must not turn it green.
        return Err(UsageError(format!(
            "--filter {}: no named scenario's name contains it (see `faultline list`)",
            filter.unwrap_or_default()
        )));
    }
    if let Some(n) = seeds {
        Seeds::range(1, n).map_err(|e| UsageError(format!("--seeds {n}: {e}")))?;
    }
    let mut cases = Vec::new();
    let mut invalid = false;
    for (name, path) in selected {
        let case = match Scenario::load(&path) {
            Ok(scn) => ci_case(name, Arc::new(scn), seeds, jobs)?,
            Err(e) => {
                // One bad file fails its own case; the others still run, and the exit code
                // says bad input.
                eprintln!("faultline: error: {e}");
                invalid = true;
                CiCase {
                    scenario: name,
                    expectation: "a valid scenario".into(),
                    passed: false,
                    message: format!("invalid scenario: {e}"),
                    seeds_run: 0,
                    wall_ms: 0,
                    failing_seeds: vec![],
                }
            }
        };
        if !json {
            println!(
                "{} {}: {} ({:.1}s)",
                if case.passed { "ok  " } else { "FAIL" },
                case.scenario,
                case.message,
                case.wall_ms as f64 / 1e3
            );
        }
        cases.push(case);
    }
    let report = CiReport {
        cases,
        wall_ms: wall.elapsed().as_millis() as u64,
    };
    if let Some(path) = junit {
        reports::write_atomic(&path, reports::junit::render(&report).as_bytes())?;
    }
    let ok = report.passed();
    if json {
        let mut v = serde_json::to_value(&report)?;
        v["schema_version"] = reports::REPORT_SCHEMA_VERSION.into();
        v["tool_version"] = TOOL_VERSION.into();
        v["passed"] = ok.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "ci: {} of {} expectations met in {:.1}s",
            report.cases.iter().filter(|c| c.passed).count(),
            report.cases.len(),
            report.wall_ms as f64 / 1e3
        );
    }
    Ok(match (invalid, ok) {
        (true, _) => EXIT_USAGE,
        (false, true) => EXIT_PASS,
        (false, false) => EXIT_FAIL,
    })
}

/// One `ci` case: a sweep of seeds 1..=N (`--seeds`, else the scenario's `ci_seeds`) judged
/// against the scenario's expectation.
fn ci_case(
    name: String,
    scn: Arc<Scenario>,
    seeds: Option<u64>,
    jobs: usize,
) -> Result<CiCase, UsageError> {
    let n = seeds.unwrap_or(scn.expect.ci_seeds()).max(1);
    let s = Sweep {
        scenario: scn.clone(),
        scenario_arg: name.clone(),
        knobs: Knobs::new(scn.bugs()),
        seeds: Seeds::range(1, n).map_err(|e| UsageError(format!("{name}: {e}")))?,
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
        Verdict::Fail => format!("fail with {}", expect_finding(&scn.expect)),
    };
    Ok(CiCase {
        scenario: name,
        expectation,
        passed,
        message,
        seeds_run: r.report.seeds_run,
        wall_ms: r.report.wall_ms,
        failing_seeds: r.report.failures.clone(),
    })
}
