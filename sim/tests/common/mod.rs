//! Helpers shared by the scenario tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use engine::{Knobs, KnownBug};
use reports::{SeedReport, TraceEvent, Violation, ViolationKind};
use sim::runner::{sweep, Sweep, SweepResult};
use sim::scenario::Scenario;

pub fn scenario_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.json"))
}

pub fn load(name: &str) -> Arc<Scenario> {
    Arc::new(Scenario::load(&scenario_path(name)).unwrap_or_else(|e| panic!("{e}")))
}

pub fn run(name: &str, bugs: &[KnownBug], seeds: std::ops::Range<u64>, jobs: usize) -> SweepResult {
    let scn = load(name);
    let mut knobs: Vec<KnownBug> = scn.bugs();
    knobs.extend_from_slice(bugs);
    run_with(name, Knobs::new(knobs), seeds, jobs)
}

/// A sweep of a named scenario with these knobs (planted bugs included).
pub fn run_with(name: &str, knobs: Knobs, seeds: std::ops::Range<u64>, jobs: usize) -> SweepResult {
    let scn = load(name);
    sweep(&Sweep {
        scenario: scn,
        scenario_arg: name.to_string(),
        knobs,
        seeds: seeds.collect(),
        jobs,
        fail_fast: false,
        keep_full_trace: false,
        progress: false,
        determinism_every: 0,
    })
}

pub fn kinds(r: &SeedReport) -> Vec<ViolationKind> {
    r.kinds()
}

/// Asserts every seed passed, printing the failures' dossiers otherwise.
pub fn assert_all_pass(r: &SweepResult) {
    if !r.report.passed() {
        panic!(
            "expected every seed to pass:\n{}",
            reports::text::run_summary(&r.report)
        );
    }
    assert!(r.report.seeds_run > 0);
}

/// Runs the `faultline` binary from the workspace root.
pub fn faultline(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("run faultline")
}

/// A fresh, empty temporary directory for one test (unique per test binary run).
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("faultline-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The seed's first node abort and the node it names (panics with the violations when none).
pub fn node_abort(f: &SeedReport) -> (&Violation, String) {
    let abort = f
        .violations
        .iter()
        .find(|v| v.kind == ViolationKind::NodeAbort)
        .unwrap_or_else(|| panic!("seed {}: no node abort in {:#?}", f.seed, f.violations));
    let node = abort.node.clone().expect("an abort names its node");
    (abort, node)
}

/// Asserts that the abort's message contains every one of `parts`.
pub fn assert_abort_says(f: &SeedReport, abort: &Violation, parts: &[&str]) {
    assert!(
        parts.iter().all(|p| abort.message.contains(p)),
        "seed {}: {}",
        f.seed,
        abort.message
    );
}

/// Asserts that the causal excerpt holds an event of `node` matching `cause` before that
/// node's abort; `what` names the cause in the failure message.
pub fn assert_before_abort(
    f: &SeedReport,
    node: &str,
    what: &str,
    cause: impl Fn(&TraceEvent) -> bool,
) {
    let caused = f.causal.iter().position(|e| e.node == node && cause(e));
    let aborted = f
        .causal
        .iter()
        .position(|e| e.node == node && e.kind == "abort");
    assert!(
        matches!((caused, aborted), (Some(a), Some(b)) if a < b),
        "seed {}: {what} {caused:?} abort {aborted:?} in {:#?}",
        f.seed,
        f.causal
    );
}

/// Asserts that at least `least` seeds of the sweep of `name` entered race window `w`.
pub fn assert_window(r: &SweepResult, name: &str, w: &str, least: u64) {
    let reached = r.report.windows.get(w).copied().unwrap_or(0);
    assert!(
        reached >= least,
        "{name}: window {w} reached in {reached}/{} seeds, want {least}",
        r.report.seeds_run
    );
}

/// Whether violation `v` is of `kind` and its message contains `pattern`.
pub fn says(v: &Violation, kind: ViolationKind, pattern: &str) -> bool {
    v.kind == kind && v.message.contains(pattern)
}

/// Whether the seed has a violation of `kind` whose message contains `pattern`.
pub fn has_violation(f: &SeedReport, kind: ViolationKind, pattern: &str) -> bool {
    f.violations.iter().any(|v| says(v, kind, pattern))
}

/// Asserts that at least `least` seeds of the sweep failed.
pub fn assert_fails_at_least(r: &SweepResult, least: usize) {
    let failed = r.report.failures.len();
    assert!(
        failed >= least,
        "only {failed}/{} seeds failed",
        r.report.seeds_run
    );
}
