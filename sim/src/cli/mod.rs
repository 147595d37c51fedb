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

mod args;
mod ci;
mod gen;
mod hunt;
mod replay;
mod run;
mod shrink;

use ci::*;
use gen::*;
use hunt::*;
use replay::*;
use run::*;
use shrink::*;

pub use args::{parse_shard, Cli, Cmd, HuntArgs, OutputArgs, RunArgs, SeedArgs, ShrinkArgs};
pub use ci::judge;

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
        Cmd::Run(a) => run(&a),
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
        Cmd::Hunt(a) => hunt(&a),
        Cmd::Merge { reports, json } => merge(&reports, json),
        Cmd::Shrink(a) => shrink(&a),
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
        Cmd::Completions { shell } => completions(shell),
        Cmd::Man { out } => man(out.as_deref()),
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
