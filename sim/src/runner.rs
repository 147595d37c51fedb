//! Seed sweeps: one fresh OS thread per seed, `jobs` of them at a time, results in seed order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use engine::Knobs;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reports::{ClientOp, RunReport, SeedReport, TraceEvent};

use crate::scenario::Scenario;
use crate::world::{run_seed, SeedOptions};

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

pub struct SweepResult {
    pub report: RunReport,
    /// Full traces, when requested.
    pub traces: BTreeMap<u64, Vec<TraceEvent>>,
    /// Client histories (with the operations findings name), alongside the full traces.
    pub client_ops: BTreeMap<u64, Vec<ClientOp>>,
    /// Seeds whose two runs gave different trace hashes: (seed, first, second).
    pub nondeterministic: Vec<(u64, String, String)>,
    pub all: Vec<SeedReport>,
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

pub fn sweep(s: &Sweep) -> SweepResult {
    let wall = std::time::Instant::now();
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failures = AtomicU64::new(0);
    // Per seed: its report, its full trace and history (when kept), the second run's hash.
    type Kept = (Option<Vec<TraceEvent>>, Option<Vec<ClientOp>>);
    type Done = (SeedReport, Kept, Option<String>);
    let results: Mutex<BTreeMap<u64, Done>> = Mutex::new(BTreeMap::new());
    let bar = if s.progress {
        ProgressBar::with_draw_target(Some(s.seeds.len()), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} seeds  {per_sec}  {msg}",
        )
        .expect("valid template"),
    );
    bar.set_message("failures: 0");
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
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(seed) = s.seeds.get(i) else { return };
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
                let second = (every > 0 && i % every == 0).then(|| {
                    run_seed(s.scenario.clone(), seed, s.knobs.clone(), opts, replay)
                        .report
                        .trace_hash
                });
                if !r.report.passed {
                    let f = failures.fetch_add(1, Ordering::Relaxed) + 1;
                    bar.set_message(format!("failures: {f}"));
                    if s.fail_fast {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                bar.inc(1);
                results
                    .lock()
                    .unwrap()
                    .insert(seed, (r.report, (r.full_trace, r.client_ops), second));
            });
        }
    });
    bar.finish_and_clear();
    let mut report = RunReport::new(s.scenario.name.clone());
    report.bugs = s.knobs.iter().map(|b| b.to_string()).collect();
    let mut traces = BTreeMap::new();
    let mut client_ops = BTreeMap::new();
    let mut nondeterministic = Vec::new();
    let mut all = Vec::new();
    for (seed, (r, (trace, ops), second)) in results.into_inner().unwrap() {
        if let Some(h2) = second {
            if h2 != r.trace_hash {
                nondeterministic.push((seed, r.trace_hash.clone(), h2));
            }
        }
        if let Some(t) = trace {
            traces.insert(seed, t);
        }
        if let Some(ops) = ops {
            client_ops.insert(seed, ops);
        }
        all.push(r.clone());
        report.add(r);
    }
    report.wall_ms = wall.elapsed().as_millis() as u64;
    SweepResult {
        report,
        traces,
        client_ops,
        nondeterministic,
        all,
    }
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
    /// Seeds from `first` up to and including the failing one (or the whole budget).
    pub tried: u64,
}

/// Runs seeds from `first` until one fails. With `fail_fast`, workers stop taking seeds after
/// the first failure, but every lower seed was taken before it and finishes, so the result is
/// the lowest failing seed at any `jobs`.
pub fn hunt(h: &HuntSearch) -> HuntResult {
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
    let r = sweep(&s);
    match r.report.failures.into_iter().next() {
        Some(f) => HuntResult {
            tried: f.seed - h.first + 1,
            found: Some(f),
        },
        None => HuntResult {
            found: None,
            tried: s.seeds.len(),
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
