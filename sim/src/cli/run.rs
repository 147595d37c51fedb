//! `run`: a sweep's summary, its JSON report and `--out`.

use super::*;
use crate::interrupt;
use crate::runner::{sweep_with, Control};

/// `faultline run`. A signal (SIGINT, SIGTERM) stops it handing out seeds: the seeds in
/// flight finish, the summary and the reports (`--json`, `--out`) cover the seeds that
/// completed and say `interrupted`, and the exit code is 128 + the signal.
pub(super) fn run(a: &RunArgs) -> Result<i32, UsageError> {
    let (scn, knobs) = load_with_bugs(&a.scenario, &a.bugs)?;
    let seed_list = a.seeds.seed_list()?;
    if let Some(dir) = &a.out {
        // Before the sweep, not after it: a long sweep must not end in "cannot write".
        check_out_dir(dir)?;
    }
    let shard = a.seeds.shard()?;
    let many = seed_list.len() > 1;
    let mode = a.output.mode();
    let s = Sweep {
        scenario: scn,
        scenario_arg: a.scenario.clone(),
        knobs,
        seeds: seed_list,
        jobs: a.seeds.jobs,
        fail_fast: a.fail_fast,
        keep_full_trace: a.trace,
        progress: many && mode == crate::progress::Mode::Bar,
        determinism_every: usize::from(a.check_determinism),
    };
    interrupt::install();
    let control = Control {
        cancel: Some(interrupt::flag()),
        // One seed's report is printed whole (its hash and notes); a sweep keeps only the
        // failing seeds' reports, so its memory does not grow with the seeds that pass.
        summary_only: many,
        progress: if mode == crate::progress::Mode::Lines {
            mode
        } else {
            crate::progress::Mode::Hidden
        },
        what: None,
    };
    let mut r = sweep_with(&s, &control);
    r.report.scenario_file = Some(scenario_file(&a.scenario));
    r.report.shards.extend(shard);
    r.report.tool_version = TOOL_VERSION.to_string();
    if r.interrupted {
        r.report.interrupted = true;
        r.report.completed.push(runner::completed(
            &s.seeds,
            r.report.seeds_run,
            interrupt::signal_name(),
            shard.map(|s| s.index),
        ));
    }
    print_result(&r, a.json, a.trace, a.output.quiet);
    if r.interrupted {
        let line = resume_line(&r.report, &a.scenario, &s.knobs, shard.is_some());
        if a.json {
            if !a.output.quiet {
                eprintln!("faultline: {line}");
            }
        } else {
            println!("{line}");
        }
    }
    let mut nondet = report_nondeterminism(&r);
    if let Some(dir) = &a.out {
        nondet |= !write_out(dir, &r, &s, a.output.quiet)?;
    }
    Ok(if r.interrupted || interrupt::requested() {
        interrupt::exit_code()
    } else if r.report.passed() && !nondet {
        EXIT_PASS
    } else {
        EXIT_FAIL
    })
}

/// What an interrupted run completed, and the command that runs the rest (unsharded sweeps).
fn resume_line(report: &RunReport, arg: &str, knobs: &Knobs, sharded: bool) -> String {
    let Some(c) = report.completed.last() else {
        return "interrupted".into();
    };
    let done = match c.last_seed {
        Some(last) if c.step == 1 => format!("seeds {}..={last}", c.first_seed),
        Some(last) => format!(
            "seeds {}, {}, ..., {last}",
            c.first_seed,
            c.first_seed + c.step
        ),
        None => "no seed".to_string(),
    };
    let mut line = format!("completed: {done} ({} of {})", c.seeds, c.planned);
    if let Some(next) = c.next_seed {
        line += &format!("; next seed {next}");
        if !sharded {
            let mut cmd = format!(
                "faultline run {arg} --seed {next} --seeds {}",
                c.planned - c.seeds
            );
            for b in knobs.iter() {
                cmd += &format!(" --bug {b}");
            }
            line += &format!("; resume: {cmd}");
        }
    }
    line
}

/// The summary (or the JSON report) of a sweep; `quiet` leaves out the coverage and totals
/// lines and a single failure's dossier.
pub(super) fn print_result(r: &SweepResult, json: bool, trace: bool, quiet: bool) {
    if json {
        match reports::json::to_string_pretty(&r.report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("faultline: cannot render JSON: {e}"),
        }
    } else {
        print!("{}", reports::text::run_summary(&r.report));
        if quiet {
            return print_traces(r, trace);
        }
        let windows: Vec<String> = crate::world::WINDOWS
            .iter()
            .map(|w| {
                format!(
                    "{w} {}/{}",
                    r.report.windows.get(*w).copied().unwrap_or(0),
                    r.report.seeds_run
                )
            })
            .collect();
        println!("race windows reached: {}", windows.join(", "));
        let t = r.totals;
        print!(
            "simulated {:.1}s, {} writes acknowledged, {} events",
            t.sim_ms as f64 / 1e3,
            t.ops_acked,
            t.events
        );
        match r.all.as_slice() {
            [one] => {
                println!(", trace hash {}", one.trace_hash);
                if one.passed {
                    for n in &one.notes {
                        println!("  {n}");
                    }
                }
            }
            _ => println!(),
        }
        if r.report.failures.len() == 1 {
            print!("{}", reports::text::seed_dossier(&r.report.failures[0]));
        }
    }
    print_traces(r, trace);
}

fn print_traces(r: &SweepResult, trace: bool) {
    if trace {
        for (seed, events) in &r.traces {
            eprintln!("--- trace of seed {seed} ({} events)", events.len());
            eprint!("{}", reports::text::trace_lines(events));
        }
    }
}

pub(super) fn report_nondeterminism(r: &SweepResult) -> bool {
    for (seed, a, b) in &r.nondeterministic {
        eprintln!("faultline: NON-DETERMINISM: seed {seed} gave trace hash {a} then {b}");
    }
    !r.nondeterministic.is_empty()
}

/// A scenario name as a file-name part: anything but `[A-Za-z0-9._-]` becomes `_`, so a
/// scenario file's `name` can never point a report outside `--out`.
pub(super) fn file_part(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.trim_start_matches('.') {
        "" => "scenario".to_string(),
        t => t.to_string(),
    }
}

/// Creates `--out DIR` if needed and makes sure a file can be written there.
pub(super) fn check_out_dir(dir: &Path) -> Result<(), UsageError> {
    let cannot = |e: std::io::Error| UsageError(format!("--out {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(cannot)?;
    let probe = dir.join(format!(".faultline-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(cannot)?;
    std::fs::remove_file(&probe).map_err(cannot)
}

/// Writes the run report and, per failing seed, `<scenario>-seed-<S>.json`, `.html`,
/// `.perfetto.json` and `.trace.txt`, each atomically. The last three need the seed's full
/// trace, so each failing seed is re-run once with it kept (unless `--trace` already kept it);
/// returns false if a re-run's trace hash differs from the sweep's (reported loudly, and the
/// seed's trace files are not written: they would describe a different execution). After a
/// signal no seed is re-run: the JSON reports are written, the trace files of the rest are not.
pub(super) fn write_out(
    dir: &Path,
    r: &SweepResult,
    s: &Sweep,
    quiet: bool,
) -> Result<bool, UsageError> {
    let name = file_part(&r.report.scenario);
    let run = reports::json::to_string_pretty(&r.report)?;
    write_file(&dir.join(format!("{name}-run.json")), run.as_bytes())?;
    for f in &r.report.failures {
        let mut one = RunReport::new(r.report.scenario.clone());
        one.tool_version = r.report.tool_version.clone();
        one.scenario_file = r.report.scenario_file.clone();
        one.bugs = r.report.bugs.clone();
        one.wall_ms = f.wall_ms;
        one.add(f.clone());
        let s = reports::json::to_string_pretty(&one)?;
        write_file(
            &dir.join(format!("{name}-seed-{}.json", f.seed)),
            s.as_bytes(),
        )?;
    }
    let mut reproduced = true;
    let mut written = 0;
    let mut skipped = 0;
    // Batches of a few seeds: full traces can be large, so never hold many at once.
    for batch in r.report.failures.chunks(s.jobs.clamp(1, 64) * 2) {
        let missing: Vec<u64> = batch
            .iter()
            .map(|f| f.seed)
            .filter(|seed| !r.traces.contains_key(seed))
            .collect();
        if !missing.is_empty() && crate::interrupt::requested() {
            skipped += batch.len();
            continue;
        }
        let (ok, n) = write_batch(dir, &name, r, s, batch, missing)?;
        reproduced &= ok;
        written += n;
    }
    if !quiet || skipped > 0 {
        eprintln!(
            "faultline: wrote {} with {} failing seed(s) ({written} with .html, .perfetto.json, .trace.txt)",
            dir.display(),
            r.report.failures.len()
        );
    }
    if skipped > 0 {
        eprintln!(
            "faultline: interrupted: {skipped} failing seed(s) were not re-run for their \
             .html/.perfetto.json/.trace.txt; `faultline replay {}/{name}-seed-S.json --html FILE` \
             renders one",
            dir.display()
        );
    }
    Ok(reproduced)
}

/// The trace files of one batch of failing seeds, re-running the `missing` ones (without a
/// trace kept by the sweep) together: whether every re-run reproduced, and the seeds written.
fn write_batch(
    dir: &Path,
    name: &str,
    r: &SweepResult,
    s: &Sweep,
    batch: &[SeedReport],
    missing: Vec<u64>,
) -> Result<(bool, usize), UsageError> {
    let rerun = (!missing.is_empty()).then(|| {
        sweep(&Sweep {
            scenario: s.scenario.clone(),
            scenario_arg: s.scenario_arg.clone(),
            knobs: s.knobs.clone(),
            seeds: Seeds::List(missing),
            jobs: s.jobs,
            fail_fast: false,
            keep_full_trace: true,
            progress: false,
            determinism_every: 0,
        })
    });
    let mut reproduced = true;
    let mut written = 0;
    for f in batch {
        let (trace, ops, hash) = match (r.traces.get(&f.seed), &rerun) {
            (Some(t), _) => (t, r.client_ops.get(&f.seed), f.trace_hash.as_str()),
            (None, Some(rr)) => {
                let now = rr.all.iter().find(|x| x.seed == f.seed);
                match (rr.traces.get(&f.seed), now) {
                    (Some(t), Some(now)) => {
                        (t, rr.client_ops.get(&f.seed), now.trace_hash.as_str())
                    }
                    _ => continue,
                }
            }
            (None, None) => continue,
        };
        if hash != f.trace_hash {
            eprintln!(
                "faultline: NON-DETERMINISM: seed {} re-run for its timeline gave trace hash {hash}, \
                 the run gave {}; its .html/.perfetto.json/.trace.txt are not written",
                f.seed, f.trace_hash
            );
            reproduced = false;
            continue;
        }
        let stem = dir.join(format!("{name}-seed-{}", f.seed));
        let ops = ops.map_or(&[][..], Vec::as_slice);
        write_trace_files(&stem, &r.report.scenario, f, trace, ops)?;
        written += 1;
    }
    Ok((reproduced, written))
}

/// `<stem>.html`, `<stem>.perfetto.json` and `<stem>.trace.txt` of one seed; `ops` is its
/// client history (the timelines' client lanes).
pub(super) fn write_trace_files(
    stem: &Path,
    scenario: &str,
    seed: &SeedReport,
    trace: &[TraceEvent],
    ops: &[reports::ClientOp],
) -> Result<(), UsageError> {
    let timeline = reports::timeline::Timeline::build(seed, trace).with_client_ops(ops);
    let with_ext = |ext: &str| {
        let mut p = stem.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    write_file(
        &with_ext(".html"),
        reports::html::render_timeline(scenario, seed, &timeline).as_bytes(),
    )?;
    write_file(
        &with_ext(".perfetto.json"),
        reports::perfetto::render_timeline(scenario, seed, &timeline).as_bytes(),
    )?;
    write_file(
        &with_ext(".trace.txt"),
        reports::text::trace_lines(trace).as_bytes(),
    )
}
