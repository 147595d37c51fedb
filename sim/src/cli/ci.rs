//! `ci`: every named scenario against its `expect`.

use super::*;

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
    let mut problems: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    match e.verdict {
        Verdict::Pass => judge_pass(scn, report, &mut problems, &mut notes),
        Verdict::Fail => judge_fail(scn, report, &mut problems, &mut notes),
    }
    let mut windows: Vec<String> = Vec::new();
    for (w, &stated) in &e.windows {
        let need = e.scaled(stated, n);
        let got = report.windows.get(w).copied().unwrap_or(0);
        if got < need {
            problems.push(format!(
                "race window {w} entered by {got} of {n} seeds, need {need}{}",
                scaled_note(e, n, stated, need)
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

/// `, 2 of 10 scaled to 4 seeds` when a minimum was scaled to the seeds run, else nothing.
fn scaled_note(e: &scenario::Expect, n: u64, stated: u64, need: u64) -> String {
    if need == stated {
        String::new()
    } else {
        format!(", {stated} of {} scaled to {n} seeds", e.ci_seeds())
    }
}

/// A `pass` expectation: every seed passed, with progress under faults, reads and model checks.
fn judge_pass(
    scn: &Scenario,
    report: &RunReport,
    problems: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    let e = &scn.expect;
    let n = report.seeds_run;
    if !report.passed() {
        let seeds: Vec<String> = report.failures.iter().map(|f| f.seed.to_string()).collect();
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
                if p.ops_acked_fault_phase_min == 0 {
                    "no"
                } else {
                    "too little"
                },
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

/// A `fail` expectation: the finding in enough seeds, and no kind outside `kinds` and `also`.
fn judge_fail(
    scn: &Scenario,
    report: &RunReport,
    problems: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    let e = &scn.expect;
    let n = report.seeds_run;
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
            scaled_note(e, n, stated, need),
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

/// `node-abort ~ "StaleKeystore"`, `raft-safety|state-divergence`: a `fail` expectation's finding.
pub(super) fn expect_finding(e: &scenario::Expect) -> String {
    let kinds: Vec<&str> = e.kinds.iter().map(|k| k.as_str()).collect();
    match &e.message {
        Some(m) => format!("{} ~ \"{m}\"", kinds.join("|")),
        None => kinds.join("|"),
    }
}

/// `ci` re-runs every k-th seed and compares trace hashes: a determinism regression is a
/// release blocker, so the regression suite samples for it on every run.
pub(super) const CI_DETERMINISM_EVERY: usize = 10;

pub(super) fn ci(
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
pub(super) fn ci_case(
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
