//! Seed sweeps: one fresh OS thread per seed, `jobs` of them at a time, results in seed order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use engine::Knobs;
use reports::{ClientOp, Completed, RunReport, SeedReport, TraceEvent};

use crate::progress::{self, Progress};
use crate::scenario::Scenario;
use crate::world::{run_seed, SeedOptions, SeedResult};

/// The seeds of a sweep. A range is computed seed by seed, never listed: `--seeds 1000000000`
/// costs no memory up front. Either way a sweep reports in seed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seeds {
    /// `first`, `first + step`, `first + 2 * step`, ...: `len` seeds, all within u64.
    Range { first: u64, step: u64, len: u64 },
    /// These seeds (failures re-run for their traces, one seed replayed).
    List(Vec<u64>),
}

impl Seeds {
    /// Seeds `first..first + count`. The end must fit in u64: a range past the last seed is
    /// refused, not cut short (it would run fewer seeds than asked and say all passed).
    pub fn range(first: u64, count: u64) -> Result<Seeds, String> {
        match first.checked_add(count) {
            Some(_) => Ok(Seeds::Range {
                first,
                step: 1,
                len: count,
            }),
            None => Err(format!(
                "{first} + {count} overflows u64: the sweep is seeds S..S+N, so S+N must be at most {}",
                u64::MAX
            )),
        }
    }

    /// Shard `i` of `n` (`i < n`): the k-th seed of the sweep goes to shard k mod n.
    pub fn shard(&self, i: u64, n: u64) -> Seeds {
        match self {
            Seeds::Range { first, step, len } => Seeds::Range {
                first: first.saturating_add(i.saturating_mul(*step)),
                step: step.saturating_mul(n),
                len: len.saturating_sub(i).div_ceil(n),
            },
            Seeds::List(v) => Seeds::List(
                v.iter()
                    .copied()
                    .skip(i as usize)
                    .step_by(n as usize)
                    .collect(),
            ),
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Seeds::Range { len, .. } => *len,
            Seeds::List(v) => v.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The k-th seed of the sweep.
    pub fn get(&self, k: u64) -> Option<u64> {
        match self {
            Seeds::Range { first, step, len } => (k < *len).then(|| first + k * step),
            Seeds::List(v) => usize::try_from(k).ok().and_then(|k| v.get(k).copied()),
        }
    }
}

impl FromIterator<u64> for Seeds {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        Seeds::List(iter.into_iter().collect())
    }
}

pub struct Sweep {
    pub scenario: Arc<Scenario>,
    /// How the user named the scenario (a name or a path); used in replay commands.
    pub scenario_arg: String,
    pub knobs: Knobs,
    pub seeds: Seeds,
    pub jobs: usize,
    pub fail_fast: bool,
    pub keep_full_trace: bool,
    pub progress: bool,
    /// Re-run every k-th seed of the sweep (1: all) and compare trace hashes; 0: never.
    pub determinism_every: usize,
}

/// How a sweep is driven, beyond what it runs: what the CLI's long sweeps need.
/// `Control::default()` is what [`sweep`] does: keep every seed's report, no signal, no
/// progress beyond `Sweep::progress`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Control<'a> {
    /// Once set (by a signal), no new seed is handed out; the seeds in flight finish, so the
    /// seeds that completed are a prefix of the sweep's ([`SweepResult::interrupted`]).
    pub cancel: Option<&'a AtomicBool>,
    /// Fold each seed into the run report and the totals as it completes and keep no list of
    /// seed reports (`SweepResult::all` stays empty; failing seeds are in `report.failures`):
    /// memory stays flat however many seeds pass.
    pub summary_only: bool,
    /// Progress on stderr when `Sweep::progress` (a bar) is off: `Mode::Lines` for a log.
    pub progress: progress::Mode,
    /// Names the sweep in progress lines (default: the scenario's name).
    pub what: Option<&'a str>,
}

pub struct SweepResult {
    pub report: RunReport,
    /// Full traces, when requested.
    pub traces: BTreeMap<u64, Vec<TraceEvent>>,
    /// Client histories (with the operations findings name), alongside the full traces.
    pub client_ops: BTreeMap<u64, Vec<ClientOp>>,
    /// Seeds whose two runs gave different trace hashes: (seed, first, second).
    pub nondeterministic: Vec<(u64, String, String)>,
    /// Every seed's report in seed order (none with `Control::summary_only`).
    pub all: Vec<SeedReport>,
    /// Sums over every seed run, passing or failing.
    pub totals: Totals,
    /// The sweep stopped handing out seeds on `Control::cancel` before it ran them all: the
    /// report covers its first `report.seeds_run` seeds (see [`completed`]).
    pub interrupted: bool,
}

/// Sums over a sweep's seeds, for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub sim_ms: u64,
    pub ops_acked: u64,
    pub events: u64,
}

/// The command that replays a seed. `FAULTLINE_COMMAND` names the program when it is not
/// `faultline` (a hosted system's build: `systems/openraft/run.sh 0.9.24`).
pub fn replay_command(scenario_arg: &str, seed: u64, knobs: &Knobs) -> String {
    let program = std::env::var("FAULTLINE_COMMAND").unwrap_or_else(|_| "faultline".into());
    let mut cmd = format!("{program} run {scenario_arg} --seed {seed}");
    for b in knobs.iter() {
        cmd.push_str(&format!(" --bug {b}"));
    }
    cmd
}

/// What an interrupted sweep of `seeds` completed: its first `done` seeds.
pub fn completed(seeds: &Seeds, done: u64, signal: &str, shard: Option<u64>) -> Completed {
    let (first_seed, step) = match seeds {
        Seeds::Range { first, step, .. } => (*first, *step),
        Seeds::List(v) => (v.first().copied().unwrap_or(0), 1),
    };
    Completed {
        signal: signal.to_string(),
        shard,
        planned: seeds.len(),
        seeds: done,
        first_seed,
        step,
        last_seed: done.checked_sub(1).and_then(|k| seeds.get(k)),
        next_seed: seeds.get(done),
    }
}

/// Runs a sweep, keeping every seed's report (`Control::default()`).
pub fn sweep(s: &Sweep) -> SweepResult {
    sweep_with(s, &Control::default())
}

/// What the workers fold their seeds into, under one lock.
struct Acc {
    report: RunReport,
    traces: BTreeMap<u64, Vec<TraceEvent>>,
    client_ops: BTreeMap<u64, Vec<ClientOp>>,
    nondeterministic: Vec<(u64, String, String)>,
    all: Vec<SeedReport>,
    totals: Totals,
}

impl Acc {
    /// Folds in one seed: `second` is the hash of its second run, when it had one.
    fn add(&mut self, r: SeedResult, second: Option<String>, keep: bool) {
        let seed = r.report.seed;
        if let Some(h2) = second {
            if h2 != r.report.trace_hash {
                self.nondeterministic
                    .push((seed, r.report.trace_hash.clone(), h2));
            }
        }
        if let Some(t) = r.full_trace {
            self.traces.insert(seed, t);
        }
        if let Some(ops) = r.client_ops {
            self.client_ops.insert(seed, ops);
        }
        self.totals.sim_ms += r.report.sim_ms;
        self.totals.ops_acked += r.report.ops_acked;
        self.totals.events += r.report.events;
        if keep {
            self.all.push(r.report.clone());
        }
        self.report.add(r.report);
    }
}

/// Runs a sweep: `jobs` workers take seeds in sweep order, each on a fresh thread; results
/// are folded in as they come and reported in seed order.
pub fn sweep_with(s: &Sweep, c: &Control) -> SweepResult {
    let wall = std::time::Instant::now();
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let interrupted = AtomicBool::new(false);
    let failures = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let mut report = RunReport::new(s.scenario.name.clone());
    report.bugs = s.knobs.iter().map(|b| b.to_string()).collect();
    let acc = Mutex::new(Acc {
        report,
        traces: BTreeMap::new(),
        client_ops: BTreeMap::new(),
        nondeterministic: Vec::new(),
        all: Vec::new(),
        totals: Totals::default(),
    });
    let mode = if s.progress {
        progress::Mode::Bar
    } else {
        c.progress
    };
    let bar = Progress::new(
        mode,
        s.seeds.len(),
        c.what.unwrap_or(s.scenario.name.as_str()),
    );
    let jobs = s
        .jobs
        .clamp(1, 256)
        .min(usize::try_from(s.seeds.len()).unwrap_or(256).max(1));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if c.cancel.is_some_and(|f| f.load(Ordering::SeqCst)) {
                    if next.load(Ordering::SeqCst) < s.seeds.len() {
                        interrupted.store(true, Ordering::SeqCst);
                    }
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(seed) = s.seeds.get(i) else { return };
                let (r, second) = run_one(s, seed, i);
                let failed = r.report.failed();
                let f = if failed {
                    if s.fail_fast {
                        stop.store(true, Ordering::Relaxed);
                    }
                    failures.fetch_add(1, Ordering::Relaxed) + 1
                } else {
                    failures.load(Ordering::Relaxed)
                };
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                bar.seed_done(n, f, failed.then_some(&r.report));
                acc.lock().unwrap().add(r, second, !c.summary_only);
                if c.summary_only {
                    release_free_memory();
                }
            });
        }
    });
    bar.finish();
    let mut acc = acc.into_inner().unwrap();
    acc.report.wall_ms = wall.elapsed().as_millis() as u64;
    acc.all.sort_by_key(|r| r.seed);
    acc.nondeterministic.sort_by_key(|n| n.0);
    SweepResult {
        report: acc.report,
        traces: acc.traces,
        client_ops: acc.client_ops,
        nondeterministic: acc.nondeterministic,
        all: acc.all,
        totals: acc.totals,
        interrupted: interrupted.into_inner(),
    }
}

/// Hands the allocator's free pages back to the OS. A seed allocates and frees tens of MB on
/// its own thread; glibc keeps what was freed in fragmented heaps, so without this a long sweep's
/// resident set creeps up with the seeds run although nothing is leaked (heaptrack: ~2 kB left
/// at exit after 200 chaos-mix seeds). No effect on what a seed does: trace hashes unchanged.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the OS; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One seed of a sweep (the k-th), and its second run's hash when determinism is sampled.
fn run_one(s: &Sweep, seed: u64, k: u64) -> (SeedResult, Option<String>) {
    let replay = replay_command(&s.scenario_arg, seed, &s.knobs);
    let opts = SeedOptions {
        keep_full_trace: s.keep_full_trace,
        ..SeedOptions::default()
    };
    let r = run_seed(
        s.scenario.clone(),
        seed,
        s.knobs.clone(),
        opts.clone(),
        replay.clone(),
    );
    let every = s.determinism_every as u64;
    let second = (every > 0 && k.is_multiple_of(every)).then(|| {
        run_seed(s.scenario.clone(), seed, s.knobs.clone(), opts, replay)
            .report
            .trace_hash
    });
    (r, second)
}

/// A search for the first failing seed of a scenario (with its knobs on).
pub struct HuntSearch {
    pub scenario: Arc<Scenario>,
    pub scenario_arg: String,
    pub knobs: Knobs,
    pub first: u64,
    pub max_seeds: u64,
    pub jobs: usize,
}

pub struct HuntResult {
    /// The lowest failing seed from `first` on, if one was found within the budget.
    pub found: Option<SeedReport>,
    /// Seeds from `first` up to and including the failing one (or the whole budget, or the
    /// seeds that completed before an interruption).
    pub tried: u64,
    /// Stopped by `Control::cancel` before finding a failing seed or spending the budget: the
    /// first `tried` seeds passed, the rest did not run.
    pub interrupted: bool,
    /// The seeds searched (for [`completed`]).
    pub seeds: Seeds,
}

/// [`hunt_with`] with no signal and no progress.
pub fn hunt(h: &HuntSearch) -> HuntResult {
    hunt_with(h, &Control::default())
}

/// Runs seeds from `first` until one fails. With `fail_fast`, workers stop taking seeds after
/// the first failure, but every lower seed was taken before it and finishes, so the result is
/// the lowest failing seed at any `jobs` (an interruption too only stops seeds not yet taken).
pub fn hunt_with(h: &HuntSearch, c: &Control) -> HuntResult {
    let s = Sweep {
        scenario: h.scenario.clone(),
        scenario_arg: h.scenario_arg.clone(),
        knobs: h.knobs.clone(),
        // The CLI refuses a range past the last seed; here it stops there.
        seeds: Seeds::Range {
            first: h.first,
            step: 1,
            len: h.max_seeds.min(u64::MAX - h.first),
        },
        jobs: h.jobs,
        fail_fast: true,
        keep_full_trace: false,
        progress: false,
        determinism_every: 0,
    };
    let r = sweep_with(
        &s,
        &Control {
            summary_only: true,
            ..*c
        },
    );
    match r.report.failures.into_iter().next() {
        Some(f) => HuntResult {
            tried: f.seed - h.first + 1,
            found: Some(f),
            interrupted: false,
            seeds: s.seeds,
        },
        None => HuntResult {
            found: None,
            tried: r.report.seeds_run,
            interrupted: r.interrupted,
            seeds: s.seeds,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::Seeds;

    fn all(s: &Seeds) -> Vec<u64> {
        (0..s.len()).map(|k| s.get(k).unwrap()).collect()
    }

    #[test]
    fn seed_ranges_are_computed_sharded_and_refused_past_u64() {
        let r = Seeds::range(5, 7).unwrap();
        assert_eq!(all(&r), (5..12).collect::<Vec<_>>());
        assert_eq!(r.get(7), None);
        // Shards cover every seed once, seed k of the sweep in shard k mod n.
        let mut covered: Vec<u64> = (0..3).flat_map(|i| all(&r.shard(i, 3))).collect();
        covered.sort_unstable();
        assert_eq!(covered, all(&r));
        assert_eq!(all(&r.shard(1, 3)), vec![6, 9]);
        assert!(Seeds::range(3, 2).unwrap().shard(4, 5).is_empty());
        // The end S+N must fit: the last seed is never silently dropped.
        assert!(Seeds::range(u64::MAX, 1).is_err());
        assert!(Seeds::range(u64::MAX - 10, 11).is_err());
        let top = Seeds::range(u64::MAX - 10, 10).unwrap();
        assert_eq!(top.get(9), Some(u64::MAX - 1));
        assert_eq!(top.shard(1, 4).get(2), Some(u64::MAX - 1));
        // A billion seeds, computed as they are asked for.
        let big = Seeds::range(1, 1_000_000_000).unwrap();
        assert_eq!(big.get(999_999_999), Some(1_000_000_000));
    }
}
