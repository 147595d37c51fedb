//! `shrink`: the CLI over `crate::shrink`.

use super::*;
use crate::world::{run_seed, SeedOptions};

/// `shrink`: see [`crate::shrink`]. Exit 0 with the minimal scenario written, 1 when the seed
/// no longer fails with the kind (or, with `--no-bugs`, when the scenario written still fails
/// without the knobs), 2 on bad input.
pub(super) fn shrink(a: &ShrinkArgs) -> Result<i32, UsageError> {
    let wall = std::time::Instant::now();
    let path = a.report.as_path();
    let saved = read_report(path)?;
    let (failed, kind) = pick(path, &saved, a.seed, a.kind.as_deref())?;
    if a.max_runs == 0 {
        return Err(UsageError("--max-runs must be at least 1".into()));
    }
    let (arg, scn, knobs) = report_scenario(path, &saved)?;
    let seed = failed.seed;
    let name = format!("{}-seed{seed}-min", file_part(&saved.scenario));
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{name}.json")));
    let bugs: Vec<String> = knobs.iter().map(|b| b.to_string()).collect();
    let opts = crate::shrink::Options {
        seed,
        kind,
        also: failed.kinds().into_iter().filter(|k| *k != kind).collect(),
        knobs: knobs.clone(),
        max_runs: a.max_runs,
        jobs: a.jobs,
        name,
        description: format!(
            "Shrunk by `faultline shrink` from seed {seed} of {} (report {}, knobs [{}]): the \
             chaos controller's faults as a timeline, minimized while `{kind}` still occurs",
            saved.scenario,
            path.display(),
            bugs.join(", ")
        ),
    };
    if !a.quiet {
        eprintln!(
            "shrink: {} seed {seed} [{}] for {kind}, at most {} runs",
            saved.scenario,
            bugs.join(", "),
            a.max_runs
        );
    }
    let mut steps: Vec<String> = Vec::new();
    let shrunk = crate::shrink::shrink(&scn, &opts, &mut |line| {
        if !a.quiet {
            eprintln!("shrink: {line}");
        }
        steps.push(line);
    });
    let o = match shrunk {
        Ok(o) => o,
        Err(nr) => {
            not_reproduced(&arg, failed, kind, &nr);
            return Ok(EXIT_FAIL);
        }
    };
    let written = if a.no_bugs {
        without_bugs(&o.minimal)
    } else {
        o.minimal.clone()
    };
    write_scenario(&out, &written)?;
    // With --no-bugs: the seed once more, on the file written, with no knob.
    let fixed = a.no_bugs.then(|| {
        let replay = runner::replay_command(&out.display().to_string(), seed, &Knobs::default());
        run_seed(
            Arc::new(written.clone()),
            seed,
            Knobs::new(written.bugs()),
            SeedOptions::default(),
            replay,
        )
        .report
    });
    let r = Shrunk {
        scenario: &saved.scenario,
        seed,
        kind,
        before: &scn,
        outcome: &o,
        written: &written,
        out: &out,
        knobs: &knobs,
        steps: &steps,
        wall_ms: wall.elapsed().as_millis() as u64,
        fixed: fixed.as_ref(),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r.json())?);
    } else {
        r.print(a.quiet);
    }
    Ok(match fixed {
        Some(f) if f.failed() => EXIT_FAIL,
        _ => EXIT_PASS,
    })
}

/// Says why there is nothing to shrink: the seed does not fail with the kind any more.
fn not_reproduced(
    arg: &str,
    failed: &SeedReport,
    kind: ViolationKind,
    nr: &crate::shrink::NotReproduced,
) {
    let now = if nr.found.is_empty() {
        "it passes now".to_string()
    } else {
        format!("found [{}]", reports::text::join_kinds(&nr.found))
    };
    eprintln!(
        "faultline: seed {} of {arg} does not fail with {kind} any more ({now}; trace {}, the report's {}): nothing to shrink",
        failed.seed, nr.trace_hash, failed.trace_hash
    );
}

/// The failing seed to shrink (`--seed`, else the report's first) and the kind that must keep
/// occurring (`--kind`, else the seed's first violation's).
fn pick<'a>(
    path: &Path,
    saved: &'a RunReport,
    seed: Option<u64>,
    kind: Option<&str>,
) -> Result<(&'a SeedReport, ViolationKind), UsageError> {
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
    Ok((failed, kind))
}

/// The minimal scenario as a regression scenario of the fixed engine (`--no-bugs`): no
/// `known_bugs`, expecting `pass`.
fn without_bugs(min: &Scenario) -> Scenario {
    let mut s = min.clone();
    s.known_bugs.clear();
    s.expect = scenario::Expect {
        verdict: Verdict::Pass,
        ..scenario::Expect::default()
    };
    s.description = format!(
        "{} Written without its knobs ([{}]) by --no-bugs: a regression scenario for the \
         fixed engine, which must pass it",
        s.description,
        min.known_bugs.join(", ")
    );
    s
}

/// Writes a scenario file and reads it back: what was written is what ran.
fn write_scenario(out: &Path, scn: &Scenario) -> Result<(), UsageError> {
    let text = serde_json::to_string_pretty(scn)? + "\n";
    write_file(out, text.as_bytes())?;
    match Scenario::load(out) {
        Ok(back) if back == *scn => Ok(()),
        Ok(_) => Err(UsageError(format!(
            "{}: reads back differently",
            out.display()
        ))),
        Err(e) => Err(UsageError(format!("{e}"))),
    }
}

/// What a shrink did, for the summary and `--json`.
struct Shrunk<'a> {
    scenario: &'a str,
    seed: u64,
    kind: ViolationKind,
    before: &'a Scenario,
    outcome: &'a crate::shrink::Outcome,
    /// The file's scenario (the minimal one, without its knobs with `--no-bugs`).
    written: &'a Scenario,
    out: &'a Path,
    knobs: &'a Knobs,
    steps: &'a [String],
    wall_ms: u64,
    /// With `--no-bugs`: the seed's run on the written scenario without the knobs.
    fixed: Option<&'a SeedReport>,
}

/// `N client(s) x M ops/s`.
fn load(s: &Scenario) -> String {
    match s.workload.clients {
        0 => "no clients".to_string(),
        n => format!("{n} client(s) x {} ops/s", s.workload.ops_per_sec),
    }
}

/// `[name N/1000, ...]`.
fn failpoints(s: &Scenario) -> String {
    let v: Vec<String> = s
        .failpoints
        .iter()
        .map(|f| format!("{} {}/1000", f.name, f.per_mille))
        .collect();
    format!("[{}]", v.join(", "))
}

impl Shrunk<'_> {
    fn replay(&self) -> String {
        runner::replay_command(&self.out.display().to_string(), self.seed, self.knobs)
    }

    fn print(&self, quiet: bool) {
        let (o, scn, min) = (self.outcome, self.before, &self.outcome.minimal);
        println!(
            "shrunk {} seed {} ({}) in {} runs, {:.1}s wall{}",
            self.scenario,
            self.seed,
            self.kind,
            o.runs,
            self.wall_ms as f64 / 1e3,
            if o.exhausted {
                " (run budget spent: not fully minimal)"
            } else {
                ""
            }
        );
        if !quiet {
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
            println!("  workload        {} -> {}", load(scn), load(min));
            if !scn.failpoints.is_empty() {
                println!(
                    "  failpoints      {} -> {}",
                    failpoints(scn),
                    failpoints(min)
                );
            }
            for item in &min.timeline {
                println!(
                    "    {}",
                    serde_json::to_string(item).unwrap_or_else(|_| item.action().to_string())
                );
            }
        }
        println!("wrote {}", self.out.display());
        println!("replay: {}", self.replay());
        if let Some(f) = self.fixed {
            let check = runner::replay_command(
                &self.out.display().to_string(),
                self.seed,
                &Knobs::default(),
            );
            if f.failed() {
                println!(
                    "without the knobs: seed {} STILL FAILS with {}: the fixed engine has the bug too ({check})",
                    self.seed,
                    reports::text::join_kinds(&f.kinds())
                );
            } else {
                println!(
                    "without the knobs: seed {} passes (the scenario expects pass): {check}",
                    self.seed
                );
            }
        }
    }

    fn json(&self) -> serde_json::Value {
        let (o, min) = (self.outcome, &self.outcome.minimal);
        let shape = |s: &Scenario, faults: usize| {
            serde_json::json!({
                "timeline_items": s.timeline.len() + faults,
                "chaos": s.chaos.is_some(),
                "duration_ms": s.duration_ms,
                "clients": s.workload.clients,
                "ops_per_sec": s.workload.ops_per_sec,
                "failpoints": s.failpoints.len(),
            })
        };
        let mut v = serde_json::json!({
            "schema_version": reports::REPORT_SCHEMA_VERSION,
            "tool_version": TOOL_VERSION,
            "scenario": self.scenario,
            "seed": self.seed,
            "kind": self.kind,
            "bugs": self.knobs.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
            "out": self.out.display().to_string(),
            "runs": o.runs,
            "exhausted": o.exhausted,
            "materialized": o.materialized,
            "steps": self.steps,
            "before": shape(self.before, if self.before.chaos.is_some() { o.chaos_faults } else { 0 }),
            "after": shape(min, 0),
            "replay": self.replay(),
            "wall_ms": self.wall_ms,
        });
        if let Some(f) = self.fixed {
            v["without_bugs"] = serde_json::json!({
                "known_bugs": self.written.known_bugs,
                "passed": !f.failed(),
                "trace_hash": f.trace_hash,
                "kinds": f.kinds(),
                "replay": runner::replay_command(&self.out.display().to_string(), self.seed, &Knobs::default()),
            });
        }
        v
    }
}
