//! Seed sweeps: one fresh OS thread per seed, `jobs` of them at a time, results in seed order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use engine::Knobs;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reports::{ClientOp, RunReport, SeedReport, TraceEvent};

use crate::scenario::Scenario;
use crate::world::{run_seed, SeedOptions};

pub struct Sweep {
    pub scenario: Arc<Scenario>,
    /// How the user named the scenario (a name or a path); used in replay commands.
    pub scenario_arg: String,
    pub knobs: Knobs,
    pub seeds: Vec<u64>,
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

pub fn replay_command(scenario_arg: &str, seed: u64, knobs: &Knobs) -> String {
    let mut cmd = format!("faultline run {scenario_arg} --seed {seed}");
    for b in knobs.iter() {
        cmd.push_str(&format!(" --bug {b}"));
    }
    cmd
}

pub fn sweep(s: &Sweep) -> SweepResult {
    let wall = std::time::Instant::now();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failures = AtomicU64::new(0);
    // Per seed: its report, its full trace and history (when kept), the second run's hash.
    type Kept = (Option<Vec<TraceEvent>>, Option<Vec<ClientOp>>);
    type Done = (SeedReport, Kept, Option<String>);
    let results: Mutex<BTreeMap<u64, Done>> = Mutex::new(BTreeMap::new());
    let bar = if s.progress {
        ProgressBar::with_draw_target(Some(s.seeds.len() as u64), ProgressDrawTarget::stderr())
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
    let jobs = s.jobs.clamp(1, 256).min(s.seeds.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&seed) = s.seeds.get(i) else { return };
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
                let second = (s.determinism_every > 0 && i % s.determinism_every == 0).then(|| {
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
        seeds: (h.first..h.first + h.max_seeds).collect(),
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
            tried: h.max_seeds,
        },
    }
}
