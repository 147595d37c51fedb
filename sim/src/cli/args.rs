//! The command line: clap's types.

use super::*;

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
    pub(super) fn seed_list(&self) -> Result<Seeds, UsageError> {
        if self.seeds == 0 {
            return Err(UsageError("--seeds must be at least 1".into()));
        }
        let (i, n) = self.shard_of()?;
        let all = Seeds::range(self.seed, self.seeds)
            .map_err(|e| UsageError(format!("--seed {} --seeds {}: {e}", self.seed, self.seeds)))?;
        Ok(all.shard(i, n))
    }

    /// The shard this process runs, when sharded (recorded in its report for `merge`).
    pub(super) fn shard(&self) -> Result<Option<reports::Shard>, UsageError> {
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

pub(super) fn default_jobs() -> usize {
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
    Run(RunArgs),
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
    Hunt(HuntArgs),
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
    Shrink(ShrinkArgs),
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
    /// Print a shell completion script on stdout (bash, zsh, fish, elvish, powershell).
    ///
    /// For bash: `faultline completions bash > ~/.local/share/bash-completion/completions/faultline`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout, or write a page per command into DIR.
    ///
    /// `faultline man | man -l -` reads it; `faultline man --out DIR` writes faultline.1 and
    /// faultline-COMMAND.1 for every command.
    Man {
        /// Write faultline.1 and one faultline-COMMAND.1 per command into DIR.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

// The arguments of `faultline run` (a plain comment: a doc comment would become its about).
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    pub scenario: String,
    #[command(flatten)]
    pub seeds: SeedArgs,
    /// Switch on a known-bug knob (repeatable): stale-keystore-abort, bytes-total-leak,
    /// drop-drain-race, volatile-raft-term.
    #[arg(long = "bug", value_name = "NAME")]
    pub bugs: Vec<String>,
    /// Write the JSON run report into DIR and, per failing seed, its JSON report, HTML
    /// timeline, Perfetto trace and full text trace (the seed is re-run once for its trace).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Stop at the first failing seed.
    #[arg(long)]
    pub fail_fast: bool,
    /// Run every seed twice and compare trace hashes.
    #[arg(long)]
    pub check_determinism: bool,
    /// Print the full event trace of every seed run (to stderr).
    #[arg(long)]
    pub trace: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

// The arguments of `faultline hunt`.
#[derive(clap::Args, Debug, Clone)]
pub struct HuntArgs {
    pub scenario: String,
    #[arg(long = "bug", value_name = "NAME", required = true)]
    pub bugs: Vec<String>,
    /// First seed to try.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seeds to try at most (seeds S..S+N); none failing exits 0 and says so.
    #[arg(long, default_value_t = 1000)]
    pub max_seeds: u64,
    /// Parallel seeds (one OS thread each). The seed found does not depend on it.
    #[arg(long, short = 'j', default_value_t = default_jobs())]
    pub jobs: usize,
    /// Print one JSON object: `schema_version`, `tool_version`, `scenario`, `bugs`,
    /// `found`, `tried`, `first_seed`, `wall_ms` and `failure` (the seed's report, as in
    /// `run --json`); after a signal also `interrupted` and `completed`.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

// The arguments of `faultline shrink`.
#[derive(clap::Args, Debug, Clone)]
pub struct ShrinkArgs {
    /// A JSON report of `run --json` or `run --out`.
    pub report: PathBuf,
    /// The failing seed to shrink (default: the report's first failing seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The violation kind that must keep occurring (default: the seed's first violation).
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Write the minimal scenario here (default: <scenario>-seed<S>-min.json).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Seed runs to spend at most (each candidate scenario is one run).
    #[arg(long, default_value_t = 300)]
    pub max_runs: usize,
    /// Candidates run at once; the result does not depend on it, only the runs spent.
    #[arg(long, short = 'j', default_value_t = 1)]
    pub jobs: usize,
    /// Write the minimal scenario without `known_bugs` and expecting `pass`: a regression
    /// scenario for the fixed engine. The seed is run once more on it without the knobs;
    /// exit 1 if it still fails (the fixed engine has the bug too).
    #[arg(long)]
    pub no_bugs: bool,
    /// Print one JSON object on stdout instead of the summary: `schema_version`,
    /// `tool_version`, `scenario`, `seed`, `kind`, `out`, `runs`, `exhausted`, `steps[]`,
    /// `before`, `after`, `replay`, `wall_ms` (and `without_bugs` with `--no-bugs`).
    #[arg(long)]
    pub json: bool,
    /// No progress lines on stderr (each accepted step), only the result.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// How much a long command says on stderr beyond its result.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct OutputArgs {
    /// No progress and no lines beyond the result: the verdict, each failing seed with its
    /// replay command, what was written.
    #[arg(long, short = 'q', conflicts_with = "progress")]
    pub quiet: bool,
    /// Progress on stderr even when it is not a terminal (a log): a line a second and one per
    /// failing seed as it is found. On a terminal a bar shows anyway.
    #[arg(long)]
    pub progress: bool,
}

impl OutputArgs {
    /// A bar when stderr is a terminal, plain lines when asked for, nothing with `--quiet`.
    pub(super) fn mode(&self) -> crate::progress::Mode {
        use crate::progress::Mode;
        if self.quiet {
            Mode::Hidden
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else if self.progress {
            Mode::Lines
        } else {
            Mode::Hidden
        }
    }
}
