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
