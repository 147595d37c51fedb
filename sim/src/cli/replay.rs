//! `replay` and `merge`: what a saved report says, re-run or combined.

use super::*;

pub(super) fn merge(paths: &[PathBuf], json: bool) -> Result<i32, UsageError> {
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

pub(super) struct ReplayOpts {
    pub(super) trace: bool,
    pub(super) around_ms: Option<u64>,
    pub(super) window_ms: u64,
    pub(super) seed: Option<u64>,
    pub(super) html: Option<PathBuf>,
    pub(super) perfetto: Option<PathBuf>,
    pub(super) json: bool,
}

pub(super) fn replay(path: &Path, o: &ReplayOpts) -> Result<i32, UsageError> {
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
            print_result(&r, false, false, false);
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
        print_trace(o, f.seed, trace);
        write_renderings(o, &saved.scenario, shown, trace, ops)?;
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

/// `--around T --window W` (the events within W ms of T) or `--trace` (every event).
fn print_trace(o: &ReplayOpts, seed: u64, trace: &[TraceEvent]) {
    if let Some(t_ms) = o.around_ms {
        let lo_us = t_ms.saturating_sub(o.window_ms).saturating_mul(1000);
        let hi_us = t_ms.saturating_add(o.window_ms).saturating_mul(1000);
        let window: Vec<&TraceEvent> = trace
            .iter()
            .filter(|e| (lo_us..=hi_us).contains(&e.at_us))
            .collect();
        println!(
            "--- trace of seed {} within {} ms of {} ({} of {} events)",
            seed,
            o.window_ms,
            reports::text::secs_ms(t_ms),
            window.len(),
            trace.len()
        );
        print!("{}", reports::text::trace_lines(window));
    } else if o.trace {
        println!("--- trace of seed {} ({} events)", seed, trace.len());
        print!("{}", reports::text::trace_lines(trace));
    }
}

/// `--html` and `--perfetto` of one replayed seed (`shown`: the report that describes `trace`).
fn write_renderings(
    o: &ReplayOpts,
    scenario: &str,
    shown: &SeedReport,
    trace: &[TraceEvent],
    ops: &[reports::ClientOp],
) -> Result<(), UsageError> {
    if let Some(file) = &o.html {
        write_file(
            file,
            reports::html::render_with_ops(scenario, shown, trace, ops).as_bytes(),
        )?;
        if !o.json {
            println!("wrote {}", file.display());
        }
    }
    if let Some(file) = &o.perfetto {
        write_file(
            file,
            reports::perfetto::render_with_ops(scenario, shown, trace, ops).as_bytes(),
        )?;
        if !o.json {
            println!("wrote {}", file.display());
        }
    }
    Ok(())
}
