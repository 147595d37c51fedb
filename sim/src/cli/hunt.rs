//! `hunt`: search seeds until a known bug shows.

use super::*;
use crate::interrupt;
use crate::runner::Control;

/// `faultline hunt`: exit 1 with the lowest failing seed found, 0 when every seed of the budget
/// passed (said as such: the bug was not found, nothing more), 128 + the signal when a signal
/// stopped it first (the seeds that completed all passed; the rest did not run).
pub(super) fn hunt(a: &HuntArgs) -> Result<i32, UsageError> {
    let (scn, knobs) = load_with_bugs(&a.scenario, &a.bugs)?;
    let name = scn.name.clone();
    let bug_names: Vec<String> = knobs.iter().map(|b| b.to_string()).collect();
    if a.max_seeds == 0 {
        return Err(UsageError("--max-seeds must be at least 1".into()));
    }
    Seeds::range(a.seed, a.max_seeds).map_err(|e| {
        UsageError(format!(
            "--seed {} --max-seeds {}: {e}",
            a.seed, a.max_seeds
        ))
    })?;
    let wall = std::time::Instant::now();
    interrupt::install();
    let what = format!("hunt {} in {name}", bug_names.join(", "));
    let h = runner::hunt_with(
        &HuntSearch {
            scenario: scn,
            scenario_arg: a.scenario.clone(),
            knobs: knobs.clone(),
            first: a.seed,
            max_seeds: a.max_seeds,
            jobs: a.jobs,
        },
        &Control {
            cancel: Some(interrupt::flag()),
            summary_only: true,
            progress: a.output.mode(),
            what: Some(&what),
        },
    );
    let secs = wall.elapsed().as_secs_f64();
    let completed = h
        .interrupted
        .then(|| runner::completed(&h.seeds, h.tried, interrupt::signal_name(), None));
    let code = match (&h.found, h.interrupted) {
        (Some(_), _) => EXIT_FAIL,
        (None, true) => interrupt::exit_code(),
        (None, false) => EXIT_PASS,
    };
    if a.json {
        let mut v = serde_json::json!({
            "schema_version": reports::REPORT_SCHEMA_VERSION,
            "tool_version": TOOL_VERSION,
            "scenario": name,
            "bugs": bug_names,
            "found": h.found.is_some(),
            "tried": h.tried,
            "first_seed": a.seed,
            "wall_ms": wall.elapsed().as_millis() as u64,
            "failure": h.found,
        });
        if let Some(c) = &completed {
            v["interrupted"] = true.into();
            v["completed"] = serde_json::to_value(c)?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(code);
    }
    print_hunt(a, &h, completed.as_ref(), &knobs, secs);
    Ok(code)
}

/// The text result of a hunt: the finding, the interruption or that nothing was found.
fn print_hunt(
    a: &HuntArgs,
    h: &runner::HuntResult,
    completed: Option<&reports::Completed>,
    knobs: &Knobs,
    secs: f64,
) {
    let last = a.seed + h.tried.saturating_sub(1);
    let bugs = bug_names_of(knobs);
    match (&h.found, completed) {
        (Some(f), _) => {
            println!(
                "found after {} seed(s) in {secs:.2}s wall: seed {} fails with {}",
                h.tried,
                f.seed,
                reports::text::join_kinds(&f.kinds())
            );
            if !a.output.quiet {
                print!("{}", reports::text::seed_dossier(f));
            }
            println!("replay: {}", f.replay);
        }
        (None, Some(c)) => {
            let ran = match c.last_seed {
                Some(l) => format!("seeds {}..={l}", a.seed),
                None => "no seed".to_string(),
            };
            println!(
                "INTERRUPTED ({}) after {} of {} seeds ({ran}, {secs:.2}s wall): none failed with \
                 [{bugs}] on; the other {} did not run",
                c.signal,
                h.tried,
                a.max_seeds,
                a.max_seeds - h.tried
            );
            if let Some(next) = c.next_seed {
                println!(
                    "resume: faultline hunt {} {} --seed {next} --max-seeds {}",
                    a.scenario,
                    bug_flags(knobs),
                    a.max_seeds - h.tried
                );
            }
        }
        (None, None) => {
            println!(
                "NOT FOUND: none of {} seeds ({}..={last}) failed with [{bugs}] on ({secs:.2}s wall)",
                h.tried, a.seed
            );
            if !a.output.quiet {
                println!(
                    "more seeds: faultline hunt {} {} --seed {} --max-seeds {}",
                    a.scenario,
                    bug_flags(knobs),
                    last.saturating_add(1),
                    a.max_seeds
                );
            }
        }
    }
}

/// `a, b`: the knobs' names.
fn bug_names_of(knobs: &Knobs) -> String {
    let names: Vec<String> = knobs.iter().map(|b| b.to_string()).collect();
    names.join(", ")
}

/// `--bug A --bug B`.
fn bug_flags(knobs: &Knobs) -> String {
    let flags: Vec<String> = knobs.iter().map(|b| format!("--bug {b}")).collect();
    flags.join(" ")
}
