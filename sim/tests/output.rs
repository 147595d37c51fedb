//! What the CLI says and how much (issue 17): sweeps that keep no passing seed's report,
//! `--quiet`, `hunt` when it finds nothing, `shrink --json --no-bugs`, shell completions and
//! the man page.

mod common;

use common::{faultline, stderr, stdout, tmpdir};
use sim::runner::{sweep, sweep_with, Control, Seeds, Sweep};

#[test]
fn summary_only_sweeps_report_what_full_sweeps_do_and_keep_no_seed_reports() {
    let s = Sweep {
        scenario: common::load("steady"),
        scenario_arg: "steady".into(),
        knobs: engine::Knobs::default(),
        seeds: Seeds::range(1, 4).unwrap(),
        jobs: 2,
        fail_fast: false,
        keep_full_trace: false,
        progress: false,
        determinism_every: 0,
    };
    let full = sweep(&s);
    let lean = sweep_with(
        &s,
        &Control {
            summary_only: true,
            ..Control::default()
        },
    );
    assert_eq!(full.all.len(), 4);
    assert!(lean.all.is_empty(), "no per-seed list is kept");
    let (mut a, mut b) = (full.report.clone(), lean.report.clone());
    (a.wall_ms, b.wall_ms) = (0, 0);
    assert_eq!(a, b, "the same run report");
    assert_eq!(full.totals, lean.totals);
    assert_eq!(
        full.totals.events,
        full.all.iter().map(|r| r.events).sum::<u64>()
    );
    assert_eq!(
        full.totals.sim_ms,
        full.all.iter().map(|r| r.sim_ms).sum::<u64>()
    );
    assert!(!full.interrupted && !lean.interrupted);
}

#[test]
fn quiet_leaves_out_progress_coverage_and_dossiers_but_keeps_the_verdict_and_replay() {
    let o = faultline(&["run", "steady", "--seeds", "2", "--jobs", "2", "--quiet"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("PASS: 2/2 seeds"), "{out}");
    assert!(!out.contains("race windows reached"), "{out}");
    assert!(!out.contains("simulated "), "{out}");
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));

    let o = faultline(&[
        "hunt",
        "simultaneous-restart",
        "--bug",
        "volatile-raft-term",
        "--max-seeds",
        "4",
        "--jobs",
        "1",
        "-q",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "the finding and its replay only: {out}");
    assert!(lines[0].starts_with("found after 1 seed(s)"), "{out}");
    assert!(
        lines[1].starts_with("replay: faultline run simultaneous-restart --seed 1"),
        "{out}"
    );

    let o = faultline(&["run", "steady", "--quiet", "--progress"]);
    assert_eq!(o.status.code(), Some(2), "--quiet and --progress conflict");
}

#[test]
fn progress_lines_show_in_a_log_only_when_asked_for() {
    let o = faultline(&["run", "steady", "--seeds", "2", "--jobs", "2"]);
    assert!(
        !stderr(&o).contains(sim::progress::LINE_PREFIX),
        "{}",
        stderr(&o)
    );
    let o = faultline(&["run", "steady", "--seeds", "2", "--jobs", "2", "--progress"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    // The first seed and the last always get a line, whatever the clock says.
    assert!(
        err.contains(&format!(
            "{}steady 2/2 seeds, 0 failing",
            sim::progress::LINE_PREFIX
        )),
        "{err}"
    );
}

#[test]
fn a_hunt_that_finds_nothing_says_which_seeds_passed_and_exits_0() {
    let o = faultline(&[
        "hunt",
        "steady",
        "--bug",
        "bytes-total-leak",
        "--seed",
        "5",
        "--max-seeds",
        "3",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["found"], false);
    assert_eq!(v["tried"], 3);
    assert_eq!(v["first_seed"], 5);
    assert!(v.get("interrupted").is_none(), "{v}");
    let o = faultline(&[
        "hunt",
        "steady",
        "--bug",
        "bytes-total-leak",
        "--seed",
        "5",
        "--max-seeds",
        "3",
    ]);
    let out = stdout(&o);
    assert!(
        out.starts_with("NOT FOUND: none of 3 seeds (5..=7) failed with [bytes-total-leak] on"),
        "{out}"
    );
    assert!(
        out.contains(
            "more seeds: faultline hunt steady --bug bytes-total-leak --seed 8 --max-seeds 3"
        ),
        "{out}"
    );
    assert!(!out.contains("PASS"), "{out}");
}

#[test]
fn shrink_json_no_bugs_writes_a_regression_scenario_the_fixed_engine_passes() {
    let d = tmpdir("shrink-no-bugs");
    let o = faultline(&[
        "run",
        "simultaneous-restart",
        "--seed",
        "1",
        "--bug",
        "volatile-raft-term",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report = d.join("r.json");
    std::fs::write(&report, &o.stdout).unwrap();
    let min = d.join("min.json");
    let o = faultline(&[
        "shrink",
        report.to_str().unwrap(),
        "--max-runs",
        "6",
        "--out",
        min.to_str().unwrap(),
        "--no-bugs",
        "--json",
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).is_empty(), "--quiet: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    assert_eq!(v["scenario"], "simultaneous-restart");
    assert_eq!(v["seed"], 1);
    assert_eq!(v["out"], min.to_str().unwrap());
    let runs = v["runs"].as_u64().unwrap();
    assert!((1..=6).contains(&runs), "{v}");
    assert!(!v["steps"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(
        v["replay"],
        format!(
            "faultline run {} --seed 1 --bug volatile-raft-term",
            min.display()
        )
    );
    for key in ["before", "after"] {
        assert!(v[key]["duration_ms"].as_u64().is_some(), "{key}: {v}");
    }
    let w = &v["without_bugs"];
    assert_eq!(w["passed"], true, "{v}");
    assert_eq!(
        w["replay"],
        format!("faultline run {} --seed 1", min.display())
    );
    // The file: no knobs, expecting a pass; with the knob back it fails again.
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&min).unwrap()).unwrap();
    assert!(
        file.get("known_bugs")
            .is_none_or(|b| b.as_array().is_some_and(|a| a.is_empty())),
        "{file}"
    );
    assert_eq!(file["expect"]["verdict"], "pass", "{file}");
    let o = faultline(&["run", min.to_str().unwrap(), "--seed", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = faultline(&[
        "run",
        min.to_str().unwrap(),
        "--seed",
        "1",
        "--bug",
        "volatile-raft-term",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
}

#[test]
fn completions_are_scripts_the_shells_accept() {
    let o = faultline(&["completions", "bash"]);
    assert_eq!(o.status.code(), Some(0));
    let script = stdout(&o);
    for sub in ["run", "hunt", "shrink", "completions", "man", "--quiet"] {
        assert!(script.contains(sub), "bash completion knows {sub}");
    }
    // bash loads it and registers the completion (bash is on every machine this runs on).
    let d = tmpdir("completions");
    let file = d.join("faultline.bash");
    std::fs::write(&file, &script).unwrap();
    let b = std::process::Command::new("bash")
        .args([
            "-c",
            &format!("source {} && complete -p faultline", file.display()),
        ])
        .output()
        .expect("bash");
    assert!(
        String::from_utf8_lossy(&b.stdout).contains("faultline"),
        "{}",
        String::from_utf8_lossy(&b.stderr)
    );
    let zsh = stdout(&faultline(&["completions", "zsh"]));
    assert!(zsh.starts_with("#compdef faultline"), "{zsh}");
    let fish = stdout(&faultline(&["completions", "fish"]));
    assert!(fish.contains("complete -c faultline"), "{fish}");
    let o = faultline(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "an unknown shell is bad input");
}

#[test]
fn man_prints_the_page_and_writes_one_per_command() {
    let o = faultline(&["man"]);
    assert_eq!(o.status.code(), Some(0));
    let page = stdout(&o);
    assert!(page.contains(".TH faultline 1"), "{page}");
    for sub in ["run", "hunt", "shrink", "completions"] {
        assert!(page.contains(sub), "the page lists {sub}");
    }
    let d = tmpdir("man");
    let o = faultline(&["man", "--out", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for name in [
        "faultline",
        "faultline-run",
        "faultline-hunt",
        "faultline-man",
    ] {
        let p = d.join(format!("{name}.1"));
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(text.contains(&format!(".TH {name} 1")), "{name}: {text}");
    }
    let run = std::fs::read_to_string(d.join("faultline-run.1")).unwrap();
    assert!(
        run.contains("\\-\\-quiet") || run.contains("--quiet"),
        "{run}"
    );
}
