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
