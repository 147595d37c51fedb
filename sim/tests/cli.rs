//! The `faultline` binary's contract: exit codes, error messages, JSON fields, replay, ci.

use std::path::Path;
use std::process::{Command, Output};

fn faultline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("run faultline")
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("faultline-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn bad_scenarios_exit_2_naming_file_line_and_field() {
    let d = tmpdir("bad");
    let cases = [
        ("syntax.json", "{\n  \"name\": \"x\",\n  \"duration_ms\": 100,,\n}\n", ":3:", None),
        ("field.json", "{\n  \"name\": \"x\",\n  \"duration_ms\": 100,\n  \"replics\": 3\n}\n", ":4:", Some("replics")),
        (
            "action.json",
            "{\n  \"name\": \"x\",\n  \"duration_ms\": 100,\n  \"timeline\": [\n    { \"at_ms\": 1, \"action\": \"explode\" }\n  ]\n}\n",
            ":5:",
            Some("action"),
        ),
        (
            "node.json",
            "{\n  \"name\": \"x\",\n  \"duration_ms\": 100,\n  \"timeline\": [\n    { \"at_ms\": 1, \"action\": \"kill\", \"nodes\": \"n7\" }\n  ]\n}\n",
            ":5:",
            Some("timeline[0].nodes"),
        ),
    ];
    for (file, text, line, field) in cases {
        let p = d.join(file);
        std::fs::write(&p, text).unwrap();
        let o = faultline(&["run", p.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{file}: {err}");
        assert!(
            err.contains(file) && err.contains(line),
            "{file}: names file and line: {err}"
        );
        if let Some(f) = field {
            assert!(err.contains(f), "{file}: names the field: {err}");
        }
        assert!(!err.contains("panicked"), "{file}: no panic: {err}");
    }
    let o = faultline(&["run", "steady", "--bug", "no-such-bug"]);
    assert_eq!(o.status.code(), Some(2));
    let o = faultline(&["run", "no-such-scenario"]);
    assert_eq!(o.status.code(), Some(2));
    let o = faultline(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn run_json_has_the_contract_fields_and_replay_reproduces_the_hash() {
    let d = tmpdir("json");
    let o = faultline(&[
        "run",
        "simultaneous-restart",
        "--seeds",
        "12",
        "--bug",
        "volatile-raft-term",
        "--json",
        "--out",
        d.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a violation was found: {}",
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    assert_eq!(v["scenario"], "simultaneous-restart");
    assert_eq!(v["seeds_run"], 12);
    let f = &v["failures"][0];
    for key in ["seed", "trace_hash", "replay", "violations"] {
        assert!(!f[key].is_null(), "failure has `{key}`");
    }
    let viol = &f["violations"][0];
    for key in ["kind", "node", "at_ms", "message"] {
        assert!(viol.get(key).is_some(), "violation has `{key}`");
    }
    let seed = f["seed"].as_u64().unwrap();
    let report = d.join(format!("simultaneous-restart-seed-{seed}.json"));
    assert!(report.is_file(), "--out wrote the per-seed report");
    let o = faultline(&["replay", report.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(out.contains("matches the report"), "{out}");
    assert_eq!(o.status.code(), Some(1), "the replayed seed still fails");
    // The printed replay command works as printed.
    let replay = f["replay"].as_str().unwrap();
    let args: Vec<&str> = replay.split_whitespace().skip(1).collect();
    let o = faultline(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(f["trace_hash"].as_str().unwrap()),
        "same trace hash when re-run"
    );
}

#[test]
fn passing_run_exits_0() {
    let o = faultline(&["run", "steady", "--seeds", "3", "--jobs", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("PASS: 3/3"));
    let o = faultline(&["run", "chaos-mix", "--seeds", "4", "--check-determinism"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(!stderr(&o).contains("NON-DETERMINISM"));
}

#[test]
fn ci_meets_expectations_writes_junit_and_fails_when_one_is_broken() {
    let d = tmpdir("ci");
    let junit = d.join("junit.xml");
    let o = faultline(&[
        "ci",
        "--seeds",
        "4",
        "--junit",
        junit.to_str().unwrap(),
        "--filter",
        "simultaneous",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<testsuites") && xml.contains("simultaneous-restart"));

    // A scenario that expects a failure the fixed engine never produces breaks the suite.
    let scn = d.join("scenarios");
    std::fs::create_dir_all(&scn).unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/steady.json"),
    )
    .unwrap()
    .replace(
        "\"verdict\": \"pass\"",
        "\"verdict\": \"fail\", \"kinds\": [\"durability\"]",
    );
    std::fs::write(scn.join("steady.json"), text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["ci", "--seeds", "2", "--junit", junit.to_str().unwrap()])
        .env("FAULTLINE_SCENARIOS", &scn)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<failure"), "{xml}");
}

#[test]
fn hunt_finds_the_volatile_term_bug_and_prints_a_replay() {
    let o = faultline(&[
        "hunt",
        "simultaneous-restart",
        "--bug",
        "volatile-raft-term",
        "--max-seeds",
        "40",
        "--jobs",
        "2",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("found after")
            && out.contains("replay: faultline run simultaneous-restart --seed"),
        "{out}"
    );
    // Without a full restart the knob stays silent: nothing to find.
    let o = faultline(&[
        "hunt",
        "steady",
        "--bug",
        "volatile-raft-term",
        "--max-seeds",
        "8",
        "--jobs",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("not found in 8 seeds"));
}

#[test]
fn shards_cover_every_seed_once_and_merge_reproduces_the_unsharded_totals() {
    let d = tmpdir("shard");
    let base = [
        "run",
        "simultaneous-restart",
        "--bug",
        "volatile-raft-term",
        "--seed",
        "5",
        "--seeds",
        "30",
        "--json",
    ];
    let whole = faultline(&base);
    let whole: serde_json::Value = serde_json::from_str(&stdout(&whole)).unwrap();
    let mut files = Vec::new();
    let mut seen = Vec::new();
    for i in 0..3 {
        let shard = format!("{i}/3");
        let mut args = base.to_vec();
        args.extend(["--shard", shard.as_str()]);
        let o = faultline(&args);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["seeds_run"], 10, "shard {shard} runs a third");
        seen.extend(
            v["failures"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["seed"].as_u64().unwrap()),
        );
        let f = d.join(format!("shard-{i}.json"));
        std::fs::write(&f, stdout(&o)).unwrap();
        files.push(f);
    }
    // Kubernetes indexed Jobs shard through the environment.
    let o = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(base)
        .env("JOB_COMPLETION_INDEX", "1")
        .env("JOB_COMPLETIONS", "3")
        .output()
        .unwrap();
    let env_shard: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let shard1: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[1]).unwrap()).unwrap();
    assert_eq!(essence(&env_shard), essence(&shard1));

    let mut args = vec!["merge", "--json"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let merged: serde_json::Value = serde_json::from_str(&stdout(&faultline(&args))).unwrap();
    for key in [
        "seeds_run",
        "seeds_passed",
        "first_seed",
        "kinds_found",
        "windows",
    ] {
        assert_eq!(
            merged[key], whole[key],
            "merged `{key}` equals the unsharded run"
        );
    }
    assert_eq!(
        essence(&merged),
        essence(&whole),
        "same failing seeds, hashes and violations"
    );
    seen.sort_unstable();
    let whole_failing: Vec<u64> = whole["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seen, whole_failing,
        "each failing seed found by exactly one shard"
    );
    // Overlapping shards are refused.
    assert!(
        !essence(&shard1).is_empty(),
        "shard 1 has failures to overlap"
    );
    let f1 = files[1].to_str().unwrap();
    let o = faultline(&["merge", f1, f1]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = faultline(&["run", "steady", "--shard", "3/3"]);
    assert_eq!(o.status.code(), Some(2));
}

/// What a report says about its failing seeds, without wall-clock fields.
fn essence(report: &serde_json::Value) -> Vec<(u64, String, String)> {
    report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["seed"].as_u64().unwrap(),
                f["trace_hash"].to_string(),
                f["violations"].to_string(),
            )
        })
        .collect()
}

/// Simulated microseconds of a trace line (`   10.191796s n1  leader  term 2`).
fn line_us(line: &str) -> Option<u64> {
    let secs = line.split_whitespace().next()?.strip_suffix('s')?;
    let (whole, frac) = secs.split_once('.')?;
    Some(whole.parse::<u64>().ok()? * 1_000_000 + frac.parse::<u64>().ok()?)
}

#[test]
fn run_out_writes_timeline_perfetto_and_trace_and_replay_around_prints_a_window() {
    let d = tmpdir("timeline");
    let scn = "simultaneous-restart-volatile-term";
    let o = faultline(&["run", scn, "--seed", "1", "--out", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "seed 1 fails: {}", stdout(&o));
    assert!(!stderr(&o).contains("NON-DETERMINISM"), "{}", stderr(&o));
    let file = |ext: &str| d.join(format!("{scn}-seed-1{ext}"));
    for ext in [".json", ".html", ".perfetto.json", ".trace.txt"] {
        assert!(file(ext).is_file(), "--out wrote {ext}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "atomic writes leave no temp files");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file(".json")).unwrap()).unwrap();
    let seed = &report["failures"][0];
    let trace = std::fs::read_to_string(file(".trace.txt")).unwrap();
    assert_eq!(
        trace.lines().count() as u64,
        seed["events"].as_u64().unwrap(),
        "the text trace is the full trace"
    );
    let html = std::fs::read_to_string(file(".html")).unwrap();
    for lane in ["n1", "n2", "n3"] {
        assert!(
            html.contains(&format!("data-lane=\"{lane}\"")),
            "lane {lane}"
        );
    }
    let violations = seed["violations"].as_array().unwrap().len();
    assert_eq!(html.matches("class=\"mk violation\"").count(), violations);
    assert!(html.contains(seed["trace_hash"].as_str().unwrap()));
    let perfetto: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file(".perfetto.json")).unwrap()).unwrap();
    let events = perfetto["traceEvents"].as_array().unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e["cat"] == "violation" && e["ph"] == "i")
            .count(),
        violations
    );

    // replay --around: only the events within the window, and still the same execution.
    // Around the first violation: the trace has events there by construction.
    let t_ms = seed["violations"][0]["at_ms"].as_u64().unwrap();
    let window_ms = 50u64;
    let o = faultline(&[
        "replay",
        file(".json").to_str().unwrap(),
        "--around",
        &t_ms.to_string(),
        "--window",
        &window_ms.to_string(),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "still fails: {out}");
    assert!(out.contains("matches the report"), "{out}");
    let body: Vec<&str> = out
        .lines()
        .skip_while(|l| {
            !l.starts_with(&format!(
                "--- trace of seed 1 within 50 ms of {}",
                reports::text::secs_ms(t_ms)
            ))
        })
        .skip(1)
        .take_while(|l| !l.starts_with("replay of seed"))
        .collect();
    let (lo, hi) = ((t_ms - window_ms) * 1000, (t_ms + window_ms) * 1000);
    let expected: Vec<&str> = trace
        .lines()
        .filter(|l| line_us(l).is_some_and(|t| (lo..=hi).contains(&t)))
        .collect();
    assert!(!expected.is_empty(), "the window is not empty");
    assert_eq!(
        body, expected,
        "exactly the full trace's lines in the window"
    );

    // replay --html/--perfetto write the replayed seed's renderings.
    let html2 = d.join("replayed.html");
    let o = faultline(&[
        "replay",
        file(".json").to_str().unwrap(),
        "--html",
        html2.to_str().unwrap(),
        "--perfetto",
        d.join("replayed.perfetto.json").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        std::fs::read_to_string(&html2).unwrap() == html,
        "replay renders the same page as run --out"
    );

    // A report whose hash the replay does not reproduce is a loud failure.
    let report = file(".json");
    let tampered = d.join("tampered.json");
    let text = std::fs::read_to_string(&report)
        .unwrap()
        .replace(seed["trace_hash"].as_str().unwrap(), "0123456789abcdef");
    std::fs::write(&tampered, text).unwrap();
    let o = faultline(&["replay", tampered.to_str().unwrap(), "--around", "10200"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("TRACE HASH MISMATCH"), "{}", stdout(&o));
    assert!(stderr(&o).contains("TRACE HASH MISMATCH"), "{}", stderr(&o));

    // Usage errors exit 2 with a message, never a panic.
    for args in [
        vec!["--window", "10"],
        vec!["--seed", "99"],
        vec!["--around", "-5"],
    ] {
        let mut all = vec!["replay", report.to_str().unwrap()];
        all.extend(args.iter().copied());
        let o = faultline(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
}

#[test]
fn bench_quick_reports_every_figure_as_json() {
    let o = faultline(&["bench", "--quick", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("bench JSON");
    for speed in ["steady", "chaos_mix"] {
        let f = &v[speed];
        assert!(f["acceleration"]["median"].as_f64().unwrap() > 0.0, "{f}");
        assert!(f["events_per_s"].as_f64().unwrap() > 0.0);
        let share = f["checkers_share"].as_f64().unwrap();
        assert!(share > 0.0 && share < 1.0, "{speed} checkers share {share}");
    }
    assert_eq!(v["steady"]["sim_s_per_seed"], 120.0);
    let hunts = v["hunts"].as_array().unwrap();
    assert_eq!(hunts.len(), 4, "one hunt per known bug");
    for h in hunts {
        assert_eq!(h["not_found"], 0, "every knob is found: {h}");
    }
    let rss: Vec<f64> = v["memory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["peak_rss_mb"].as_f64().unwrap())
        .collect();
    assert_eq!(rss.len(), 3);
    assert!(rss.iter().all(|mb| *mb > 1.0 && *mb < 1024.0), "{rss:?}");
}
