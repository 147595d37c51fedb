//! `faultline bench`: how many interleavings a core explores per second, and how fast the known
//! bugs are found. Figures only, printed criterion-style (`[min median max]` over the samples)
//! or as JSON; targets are printed beside them and never asserted, so no test depends on the
//! speed of the machine it runs on.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use engine::{Knobs, KnownBug};
use serde::Serialize;

use crate::floor::FloorLoad;
use crate::profile::{process_cpu_ns, CpuSplit};
use crate::runner::{hunt, replay_command, HuntSearch};
use crate::scenario::{self, Scenario, ScenarioError};
use crate::world::{run_seed, SeedOptions};

/// Targets from the performance issue, per core of the CI machine.
pub const TARGET_STEADY_ACCEL: f64 = 2_000.0;
pub const TARGET_CHAOS_SEEDS_PER_S: f64 = 50.0;
pub const TARGET_FIND_MEDIAN_S: f64 = 2.0;
pub const TARGET_RSS_MB: f64 = 100.0;
pub const TARGET_RSS_SLOPE_MB_PER_1000: f64 = 0.5;
pub const TARGET_CHECKERS_SHARE: f64 = 0.20;

/// The scripted scenario each knob is hunted in.
pub const HUNT_SCENARIOS: [(KnownBug, &str); 4] = [
    (
        KnownBug::StaleKeystoreAbort,
        "kek-rotation-stale-keystore-abort",
    ),
    (
        KnownBug::BytesTotalLeak,
        "addr-pack-failures-bytes-total-leak",
    ),
    (KnownBug::DropDrainRace, "step-up-drop-drain-race"),
    (
        KnownBug::VolatileRaftTerm,
        "simultaneous-restart-volatile-term",
    ),
];

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Fewer samples and a short memory sweep: a smoke run, not figures to quote.
    pub quick: bool,
    /// Jobs for the memory sweep (the other figures are per core: one seed at a time).
    pub jobs: usize,
}

impl BenchOptions {
    fn steady_seeds(&self) -> u64 {
        if self.quick {
            1
        } else {
            5
        }
    }
    fn chaos_seeds(&self) -> u64 {
        if self.quick {
            3
        } else {
            40
        }
    }
    /// Seeds run again with profiling for the CPU split.
    fn profiled_seeds(&self) -> u64 {
        if self.quick {
            1
        } else {
            5
        }
    }
    fn hunt_starts(&self) -> u64 {
        if self.quick {
            2
        } else {
            10
        }
    }
    /// Seed counts of the memory sweeps; the last one is the long sweep.
    fn rss_sweeps(&self) -> Vec<u64> {
        if self.quick {
            vec![1, 4, 8]
        } else {
            vec![1, 100, 1000, 10_000]
        }
    }
}

/// `[min, median, max]` of some samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    pub samples: usize,
}

impl Stat {
    pub fn of(samples: &[f64]) -> Stat {
        assert!(!samples.is_empty(), "a statistic needs samples");
        let mut v = samples.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stat {
            min: v[0],
            median,
            max: v[n - 1],
            samples: n,
        }
    }
}

/// One scenario run seed after seed on one core.
#[derive(Debug, Clone, Serialize)]
pub struct SpeedFigure {
    pub scenario: String,
    pub sim_s_per_seed: f64,
    /// Wall seconds per seed.
    pub wall_s: Stat,
    /// Simulated seconds per wall second.
    pub acceleration: Stat,
    pub seeds_per_s: f64,
    pub events_per_s: f64,
    /// Datagrams the cluster sent per simulated second (what the floor reproduces).
    pub datagrams_per_sim_s: f64,
    pub ops_acked_per_s: f64,
    /// Where the CPU went, over the profiled seeds (`profiled_seeds`).
    pub checkers_share: f64,
    pub trace_share: f64,
    /// The simulated disk's file operations.
    pub disk_share: f64,
    /// The checkers' share by part: online (as events arrive), model samples (comparisons with
    /// replicas during faults), end (after the liveness phase), messages (persistence before
    /// each datagram).
    pub checkers_parts: CheckerParts,
    pub profiled_seeds: u64,
    /// 1 − (CPU time of the same seeds with no checks) / (CPU time with the scenario's
    /// checks): the checkers' share measured without instrumentation.
    pub checkers_share_by_difference: f64,
}

/// Shares of a run's CPU, one per kind of checker.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CheckerParts {
    pub online: f64,
    pub samples: f64,
    pub end: f64,
    pub messages: f64,
}

/// The simulator's floor beside `steady`: the same load with no engine (`crate::floor`).
#[derive(Debug, Clone, Serialize)]
pub struct FloorFigure {
    /// Simulated seconds per wall second of the message-only cluster.
    pub acceleration: Stat,
    pub datagrams_per_sim_s: f64,
    /// steady's median acceleration over the floor's: the fraction of the substrate's speed
    /// the engine, harness and checkers leave.
    pub steady_fraction: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HuntFigure {
    pub bug: String,
    pub scenario: String,
    /// Wall seconds until the first failing seed, one sample per starting seed.
    pub wall_s: Stat,
    pub seeds_tried: Stat,
    /// Starting seeds whose hunt found nothing within its budget.
    pub not_found: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RssFigure {
    pub scenario: String,
    pub seeds: u64,
    pub jobs: usize,
    pub peak_rss_mb: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub cores: usize,
    pub quick: bool,
    pub steady: SpeedFigure,
    pub floor: FloorFigure,
    pub chaos_mix: SpeedFigure,
    /// Each knob hunted on the general `chaos-mix`, which nobody tuned for it.
    pub hunts: Vec<HuntFigure>,
    /// Each knob hunted on the scenario written for its incident (first seeds often fail).
    pub hunts_tuned: Vec<HuntFigure>,
    pub memory: Vec<RssFigure>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("memory sweep: {0}")]
    Child(String),
}

fn load(name: &str) -> Result<Scenario, BenchError> {
    Ok(Scenario::load(&scenario::resolve(name)?)?)
}

/// Runs `seeds` of `scn` one at a time, then the first `profiled` of them again with profiling
/// for the CPU split (a separate pass, so the timed runs pay nothing for it), then the same
/// seeds with no checks, for the checkers' share by difference.
pub fn speed(scn: Scenario, seeds: u64, profiled: u64) -> SpeedFigure {
    let scn = Arc::new(scn);
    let knobs = Knobs::new(scn.bugs());
    let run = |scn: &Arc<Scenario>, seed: u64, profile: bool| {
        let opts = SeedOptions {
            profile,
            ..SeedOptions::default()
        };
        run_seed(
            scn.clone(),
            seed,
            knobs.clone(),
            opts,
            replay_command(&scn.name, seed, &knobs),
        )
    };
    let (mut walls, mut accels) = (vec![], vec![]);
    let (mut events, mut ops, mut total_wall) = (0u64, 0u64, 0.0);
    let (mut datagrams, mut sim_ms) = (0u64, 0u64);
    let cpu_start = process_cpu_ns();
    for seed in 1..=seeds {
        let start = Instant::now();
        let r = run(&scn, seed, false);
        let wall = start.elapsed().as_secs_f64();
        walls.push(wall);
        accels.push(r.report.sim_ms as f64 / 1000.0 / wall);
        events += r.report.events;
        datagrams += r.report.datagrams;
        sim_ms += r.report.sim_ms;
        ops += r.report.ops_acked;
        total_wall += wall;
    }
    let checked_cpu_ns = process_cpu_ns().saturating_sub(cpu_start);
    let mut split = CpuSplit::default();
    for seed in 1..=profiled {
        split = split.plus(&run(&scn, seed, true).cpu.unwrap_or_default());
    }
    let share = |part: u64| part as f64 / split.total_ns.max(1) as f64;
    // The same seeds with no checks at all: what the checkers cost, by difference (the profile
    // above charges stretches of code; this needs no instrumentation and no attribution).
    let bare = Arc::new(Scenario {
        checks: vec![],
        ..(*scn).clone()
    });
    let cpu_start = process_cpu_ns();
    for seed in 1..=seeds {
        run(&bare, seed, false);
    }
    let bare_cpu_ns = process_cpu_ns().saturating_sub(cpu_start);
    SpeedFigure {
        scenario: scn.name.clone(),
        sim_s_per_seed: scn.duration_ms as f64 / 1000.0,
        wall_s: Stat::of(&walls),
        acceleration: Stat::of(&accels),
        seeds_per_s: seeds as f64 / total_wall,
        events_per_s: events as f64 / total_wall,
        datagrams_per_sim_s: datagrams as f64 * 1000.0 / sim_ms.max(1) as f64,
        ops_acked_per_s: ops as f64 / total_wall,
        checkers_share: share(split.checkers_ns),
        trace_share: share(split.trace_ns),
        disk_share: share(split.disk_ns),
        checkers_parts: CheckerParts {
            online: share(split.online_ns),
            samples: share(split.samples_ns),
            end: share(split.end_ns),
            messages: share(split.messages_ns),
        },
        profiled_seeds: profiled,
        checkers_share_by_difference: 1.0 - bare_cpu_ns as f64 / checked_cpu_ns.max(1) as f64,
    }
}

/// The floor under `scn`'s measured load, over `seeds` seeds, one at a time.
pub fn floor(scn: &Scenario, measured: &SpeedFigure, seeds: u64) -> FloorFigure {
    let load = FloorLoad {
        replicas: u32::from(scn.replicas),
        services: 2,
        clients: scn.workload.clients,
        ops_per_sec: scn.workload.ops_per_sec,
        datagrams_per_sim_s: measured.datagrams_per_sim_s,
        tick_ms: crate::world::REPLICA_TICK_MS,
        duration_ms: scn.duration_ms,
        latency_ms: scn.network.latency_ms,
    };
    let accels: Vec<f64> = (1..=seeds)
        .map(|seed| {
            let start = Instant::now();
            crate::floor::run(&load, seed);
            load.duration_ms as f64 / 1000.0 / start.elapsed().as_secs_f64()
        })
        .collect();
    let acceleration = Stat::of(&accels);
    FloorFigure {
        steady_fraction: measured.acceleration.median / acceleration.median,
        acceleration,
        datagrams_per_sim_s: measured.datagrams_per_sim_s,
    }
}

/// Hunts `bug` in `scenario` from `starts` different starting seeds, one core each time.
pub fn time_to_find(bug: KnownBug, scenario: &str, starts: u64) -> Result<HuntFigure, BenchError> {
    let scn = Arc::new(load(scenario)?);
    let mut bugs = scn.bugs();
    if !bugs.contains(&bug) {
        bugs.push(bug);
    }
    let knobs = Knobs::new(bugs);
    let (mut walls, mut tried, mut not_found) = (vec![], vec![], 0);
    for i in 0..starts {
        // Starting seeds far apart, so the samples do not share seeds.
        let first = 1 + i * 7_919;
        let start = Instant::now();
        let h = hunt(&HuntSearch {
            scenario: scn.clone(),
            scenario_arg: scenario.to_string(),
            knobs: knobs.clone(),
            first,
            max_seeds: 1_000,
            jobs: 1,
        });
        walls.push(start.elapsed().as_secs_f64());
        tried.push(h.tried as f64);
        if h.found.is_none() {
            not_found += 1;
        }
    }
    Ok(HuntFigure {
        bug: bug.to_string(),
        scenario: scenario.to_string(),
        wall_s: Stat::of(&walls),
        seeds_tried: Stat::of(&tried),
        not_found,
    })
}

/// Peak RSS of `faultline run SCENARIO --seeds N` in a child process of `exe`, which reports
/// its own high-water mark when `FAULTLINE_PEAK_RSS` is set.
pub fn peak_rss(
    exe: &Path,
    scenario: &str,
    seeds: u64,
    jobs: usize,
) -> Result<RssFigure, BenchError> {
    let out = std::process::Command::new(exe)
        .args([
            "run",
            scenario,
            "--seeds",
            &seeds.to_string(),
            "--jobs",
            &jobs.to_string(),
        ])
        .env("FAULTLINE_PEAK_RSS", "1")
        .output()
        .map_err(|e| BenchError::Child(format!("cannot run {}: {e}", exe.display())))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kb = stderr
        .lines()
        .find_map(|l| l.strip_prefix(PEAK_RSS_PREFIX))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .ok_or_else(|| {
            BenchError::Child(format!(
                "`{} run {scenario} --seeds {seeds}` exited with {} and reported no peak RSS",
                exe.display(),
                out.status
            ))
        })?;
    Ok(RssFigure {
        scenario: scenario.to_string(),
        seeds,
        jobs,
        peak_rss_mb: kb as f64 / 1024.0,
    })
}

/// The line a run prints on stderr when `FAULTLINE_PEAK_RSS` is set.
pub const PEAK_RSS_PREFIX: &str = "faultline: peak RSS ";

/// This process's peak resident set (VmHWM), where the OS tells it.
pub fn own_peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs everything; `progress` hears what is being measured.
pub fn run(
    opts: &BenchOptions,
    exe: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport, BenchError> {
    progress("steady, 120 s simulated, one seed at a time");
    let mut steady = load("steady")?;
    steady.duration_ms = 120_000;
    steady.workload.ops_per_sec = 100;
    let steady_scn = steady.clone();
    let steady = speed(steady, opts.steady_seeds(), opts.profiled_seeds());
    progress("the simulator's floor: steady's load with no engine");
    let floor = floor(&steady_scn, &steady, opts.steady_seeds());
    progress("chaos-mix, 30 s simulated, one seed at a time");
    let chaos = load("chaos-mix")?;
    assert_eq!(
        chaos.duration_ms, 30_000,
        "the bench's chaos-mix seed is 30 s"
    );
    let chaos_mix = speed(chaos, opts.chaos_seeds(), opts.profiled_seeds());
    let mut hunts = vec![];
    for (bug, _) in HUNT_SCENARIOS {
        progress(&format!("hunt {bug} in chaos-mix"));
        hunts.push(time_to_find(bug, "chaos-mix", opts.hunt_starts())?);
    }
    let mut hunts_tuned = vec![];
    for (bug, scenario) in HUNT_SCENARIOS {
        progress(&format!("hunt {bug} in {scenario}"));
        hunts_tuned.push(time_to_find(bug, scenario, opts.hunt_starts())?);
    }
    let mut memory = vec![];
    for seeds in opts.rss_sweeps() {
        let jobs = if seeds == 1 { 1 } else { opts.jobs };
        progress(&format!(
            "peak RSS of chaos-mix, {seeds} seed(s), {jobs} job(s)"
        ));
        memory.push(peak_rss(exe, "chaos-mix", seeds, jobs)?);
    }
    Ok(BenchReport {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        quick: opts.quick,
        steady,
        floor,
        chaos_mix,
        hunts,
        hunts_tuned,
        memory,
    })
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.3} s")
    }
}

/// The criterion-style text form.
pub fn render(r: &BenchReport) -> String {
    let mut out = format!(
        "faultline bench: {} core(s); per-core figures run one seed at a time{}\n\n",
        r.cores,
        if r.quick {
            " (quick: too few samples to quote)"
        } else {
            ""
        }
    );
    for (f, target) in [(&r.steady, true), (&r.chaos_mix, false)] {
        if !target {
            let fl = &r.floor;
            out += &format!(
                "floor/{}-{}s (the same madsim load, no engine)\n{:>24}[{:.0}x {:.0}x {:.0}x] simulated s per wall s; {:.0} datagrams per simulated s\n{:>24}steady runs at {:.1}% of the floor's speed\n\n",
                r.steady.scenario,
                r.steady.sim_s_per_seed,
                "accel:  ",
                fl.acceleration.min,
                fl.acceleration.median,
                fl.acceleration.max,
                fl.datagrams_per_sim_s,
                "ratio:  ",
                fl.steady_fraction * 100.0
            );
        }
        let name = format!("{}-{}s", f.scenario, f.sim_s_per_seed);
        out += &format!(
            "{name}/seed\n{:>24}[{} {} {}]\n",
            "time:   ",
            secs(f.wall_s.min),
            secs(f.wall_s.median),
            secs(f.wall_s.max)
        );
        let accel_note = if target {
            format!(
                "   target >= {TARGET_STEADY_ACCEL}x: {}",
                verdict(f.acceleration.median >= TARGET_STEADY_ACCEL)
            )
        } else {
            String::new()
        };
        out += &format!(
            "{:>24}[{:.0}x {:.0}x {:.0}x] simulated s per wall s{accel_note}\n",
            "accel:  ", f.acceleration.min, f.acceleration.median, f.acceleration.max
        );
        let seeds_note = if target {
            String::new()
        } else {
            format!(
                "   target >= {TARGET_CHAOS_SEEDS_PER_S}: {}",
                verdict(f.seeds_per_s >= TARGET_CHAOS_SEEDS_PER_S)
            )
        };
        out += &format!(
            "{:>24}{:.2} seeds/s/core{seeds_note}; {:.0} events/s; {:.0} acked ops/s\n",
            "thrpt:  ", f.seeds_per_s, f.events_per_s, f.ops_acked_per_s
        );
        out += &format!(
            "{:>24}checkers {:.1}% of CPU (target <= {:.0}%: {}), trace {:.1}%\n",
            "split:  ",
            f.checkers_share * 100.0,
            TARGET_CHECKERS_SHARE * 100.0,
            verdict(f.checkers_share <= TARGET_CHECKERS_SHARE),
            f.trace_share * 100.0
        );
        let floor = if target {
            format!(
                ", the simulator floor for this load (network, timers, scheduling) {:.1}%",
                r.floor.steady_fraction * 100.0
            )
        } else {
            String::new()
        };
        let known = f.checkers_share
            + f.trace_share
            + f.disk_share
            + if target { r.floor.steady_fraction } else { 0.0 };
        out += &format!(
            "{:>24}checkers {:.1}%, trace {:.1}%, disk {:.1}%{floor}; engine, harness and the tasks and wake-ups they add {:.1}%\n",
            "cpu:    ",
            f.checkers_share * 100.0,
            f.trace_share * 100.0,
            f.disk_share * 100.0,
            (1.0 - known).max(0.0) * 100.0
        );
        let p = &f.checkers_parts;
        out += &format!(
            "{:>24}online {:.1}%, model samples {:.1}%, end {:.1}%, messages {:.1}% (over {} profiled seed(s)); by difference with a check-free run {:.1}%\n\n",
            "checkers: ",
            p.online * 100.0,
            p.samples * 100.0,
            p.end * 100.0,
            p.messages * 100.0,
            f.profiled_seeds,
            f.checkers_share_by_difference * 100.0
        );
    }
    let tables = [
        ("on chaos-mix, tuned for no bug", &r.hunts),
        ("on the scenario written for each incident", &r.hunts_tuned),
    ];
    for (title, hunts) in tables {
        out += &format!("hunts {title}:\n\n");
        out += &render_hunts(hunts);
    }
    out += "memory/peak-rss\n";
    let max_mb = r.memory.iter().map(|m| m.peak_rss_mb).fold(0.0, f64::max);
    for m in &r.memory {
        out += &format!(
            "{:>24}{:.1} MB  {} {} seed(s), {} job(s)\n",
            "rss:    ", m.peak_rss_mb, m.scenario, m.seeds, m.jobs
        );
    }
    let slope = rss_slope_mb_per_1000_seeds(&r.memory);
    // Over a few seeds the "slope" is allocator noise divided by almost nothing.
    let judged = r.memory.last().is_some_and(|m| m.seeds >= 1_000);
    if judged {
        out += &format!(
            "{:>24}{:.2} MB per 1,000 seeds between the second sweep and the last\n",
            "slope:  ", slope
        );
    } else {
        out += &format!(
            "{:>24}not judged: the sweeps are under 1,000 seeds\n",
            "slope:  "
        );
    }
    out += &format!(
        "{:>24}<= {TARGET_RSS_MB} MB per run and slope <= {TARGET_RSS_SLOPE_MB_PER_1000} MB per 1,000 seeds: {}\n",
        "target: ",
        verdict(max_mb <= TARGET_RSS_MB && (!judged || slope <= TARGET_RSS_SLOPE_MB_PER_1000))
    );
    out
}

/// Growth of peak RSS per 1,000 seeds from the second sweep (the first with `jobs` threads,
/// so thread stacks are already counted) to the last: a leak per seed shows here even when
/// the peak stays under its cap.
pub fn rss_slope_mb_per_1000_seeds(memory: &[RssFigure]) -> f64 {
    match (memory.get(1), memory.last()) {
        (Some(a), Some(b)) if b.seeds > a.seeds => {
            (b.peak_rss_mb - a.peak_rss_mb) * 1000.0 / (b.seeds - a.seeds) as f64
        }
        _ => 0.0,
    }
}

fn render_hunts(hunts: &[HuntFigure]) -> String {
    let mut out = String::new();
    for h in hunts {
        out += &format!(
            "hunt/{} ({})\n{:>24}[{} {} {}] over {} starting seeds   target median <= {TARGET_FIND_MEDIAN_S} s: {}\n",
            h.bug,
            h.scenario,
            "time:   ",
            secs(h.wall_s.min),
            secs(h.wall_s.median),
            secs(h.wall_s.max),
            h.wall_s.samples,
            verdict(h.wall_s.median <= TARGET_FIND_MEDIAN_S && h.not_found == 0)
        );
        out += &format!(
            "{:>24}[{:.0} {:.0} {:.0}]{}\n\n",
            "seeds:  ",
            h.seeds_tried.min,
            h.seeds_tried.median,
            h.seeds_tried.max,
            if h.not_found > 0 {
                format!("; not found from {} start(s)", h.not_found)
            } else {
                String::new()
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_takes_min_median_max() {
        let s = Stat::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.min, s.median, s.max, s.samples), (1.0, 2.0, 3.0, 3));
        let even = Stat::of(&[4.0, 1.0, 2.0, 3.0]);
        assert_eq!(even.median, 2.5);
    }

    #[test]
    fn every_implemented_knob_has_a_hunt_scenario_that_names_it() {
        for bug in KnownBug::ALL.into_iter().filter(|b| b.implemented()) {
            let (_, name) = HUNT_SCENARIOS
                .iter()
                .find(|(b, _)| *b == bug)
                .unwrap_or_else(|| panic!("{bug} has no hunt scenario"));
            let scn = load(name).expect("hunt scenario loads");
            assert!(scn.bugs().contains(&bug), "{name} switches {bug} on");
        }
    }
}
