//! The `faultline` binary's contract: exit codes, error messages, JSON fields, replay, ci.

mod common;

use common::{faultline, stderr, stdout, tmpdir};
use std::path::Path;
use std::process::{Command, Output};

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
    // The format version and the tool that wrote it, in the printed report and the saved ones.
    assert_eq!(v["schema_version"], reports::REPORT_SCHEMA_VERSION);
    assert_eq!(v["tool_version"], sim::cli::TOOL_VERSION);
    for name in [
        "simultaneous-restart-run.json",
        "simultaneous-restart-seed-1.json",
    ] {
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join(name)).unwrap()).unwrap();
        assert_eq!(
            saved["schema_version"],
            reports::REPORT_SCHEMA_VERSION,
            "{name}"
        );
        assert_eq!(saved["tool_version"], sim::cli::TOOL_VERSION, "{name}");
    }
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
    // Without an address-packing failure the leak knob stays silent: nothing to find. (The
    // volatile term is found even without a restart now: the first vote it grants is checked
    // against the disk.)
    let o = faultline(&[
        "hunt",
        "steady",
        "--bug",
        "bytes-total-leak",
        "--max-seeds",
        "8",
        "--jobs",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o)
            .starts_with("NOT FOUND: none of 8 seeds (1..=8) failed with [bytes-total-leak] on"),
        "{}",
        stdout(&o)
    );
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
        "progress",
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
    assert_eq!(
        o.status.code(),
        Some(3),
        "a hash mismatch has its own exit code, not the reproduced-failure 1"
    );
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

/// `put c0/k1 (client 0, op 115)` in a finding: (op, document, client, op number).
fn named_op(message: &str) -> Option<(String, String, u32, u64)> {
    let at = message.find(" (client ")?;
    let mut words = message[..at].rsplit(' ');
    let doc = words.next()?.to_string();
    let op = words.next()?.to_string();
    let rest = &message[at + " (client ".len()..];
    let (client, rest) = rest.split_once(", op ")?;
    let seq = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    Some((op, doc, client.parse().ok()?, seq.parse().ok()?))
}

#[test]
fn replay_html_draws_client_lanes_and_outlines_the_ops_a_finding_names() {
    let d = tmpdir("oplanes");
    let scn = "simultaneous-restart-volatile-term";
    // A sweep's JSON report keeps no client history: only full-trace renderings do. Seed 339
    // has a linearizability finding naming a read answered from another operation's entry;
    // should engine changes move it, a durability finding naming a lost write stands in.
    let o = faultline(&["run", scn, "--seed", "330", "--seeds", "20", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let sweep = stdout(&o);
    for field in ["invoked_us", "named_by", "client_ops"] {
        assert!(!sweep.contains(field), "no `{field}` in a sweep report");
    }
    let report: serde_json::Value = serde_json::from_str(&sweep).unwrap();
    // The first seed whose linearizability finding (else durability finding) names a client
    // operation (`get c0/k96 (client 0, op 140)`).
    let mut pick = None;
    for kind in ["linearizability", "durability"] {
        for f in report["failures"].as_array().unwrap() {
            for v in f["violations"].as_array().unwrap() {
                if let (true, None, Some(named)) = (
                    v["kind"] == kind,
                    &pick,
                    named_op(v["message"].as_str().unwrap()),
                ) {
                    pick = Some((f.clone(), kind, named));
                }
            }
        }
    }
    let (seed, kind, (op, doc, client, seq)) =
        pick.expect("a seed with a finding that names a client operation");
    let path = d.join("run.json");
    std::fs::write(&path, &sweep).unwrap();
    let (html, perfetto) = (d.join("seed.html"), d.join("seed.perfetto.json"));
    let s = seed["seed"].to_string();
    let o = faultline(&[
        "replay",
        path.to_str().unwrap(),
        "--seed",
        &s,
        "--html",
        html.to_str().unwrap(),
        "--perfetto",
        perfetto.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("matches the report"), "{}", stdout(&o));
    let page = std::fs::read_to_string(&html).unwrap();

    // A lane per workload client (the scenario runs two); they are not node lanes.
    for lane in ["client 0", "client 1"] {
        assert!(
            page.contains(&format!("class=\"lane oplane\" data-lane=\"{lane}\"")),
            "a lane for {lane}"
        );
    }
    assert!(!page.contains("class=\"lane node\" data-lane=\"client"));
    // Nothing was merged at this size, so every acknowledged op is one green bar.
    assert!(!page.contains("client operations were merged"));
    assert_eq!(
        page.matches("<rect class=\"op o-ok").count() as u64,
        seed["ops_acked"].as_u64().unwrap()
    );
    // The op the finding names is outlined, on its client's lane, with what it did.
    let lane = &page[page
        .find(&format!("<g class=\"ops\" data-n=\"client {client}\">"))
        .unwrap()..];
    let lane = &lane[..lane.find("</g>").unwrap()];
    let bar = lane
        .split("<rect ")
        .find(|l| {
            l.contains(" o-named\" x=")
                && l.contains(&format!("data-k=\"{op} {doc}\""))
                && l.contains(&format!("data-d=\"op {seq}: "))
        })
        .unwrap_or_else(|| panic!("no outlined {op} {doc} (client {client}, op {seq})"));
    assert!(bar.contains(&format!("NAMED BY the {kind}")), "{bar}");

    // Perfetto: every op a slice on its client's thread, the named one flagged.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&perfetto).unwrap()).unwrap();
    let events = v["traceEvents"].as_array().unwrap();
    let pid = events
        .iter()
        .find(|e| e["name"] == "process_name" && e["args"]["name"] == "client operations")
        .expect("a client operations process")["pid"]
        .clone();
    let ops: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["pid"] == pid && e["ph"] == "X")
        .collect();
    assert_eq!(
        ops.iter().filter(|e| e["args"]["outcome"] == "ok").count() as u64,
        seed["ops_acked"].as_u64().unwrap()
    );
    assert!(ops.iter().any(|e| e["name"] == format!("{op} {doc}")
        && e["args"]["client"] == client
        && e["args"]["seq"] == seq
        && e["cname"] == "terrible"));
    eprintln!(
        "seed {s}: {} client ops, HTML {} bytes",
        ops.len(),
        page.len()
    );
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
    // The checkers' parts add up to their share; the by-difference figure is a share too.
    let s = &v["steady"];
    let parts: f64 = ["online", "samples", "end", "messages"]
        .iter()
        .map(|p| s["checkers_parts"][p].as_f64().unwrap())
        .sum();
    let share = s["checkers_share"].as_f64().unwrap();
    assert!((parts - share).abs() < 1e-9, "{parts} vs {share}");
    assert!(s["checkers_share_by_difference"].as_f64().unwrap() < 1.0);
    // The floor ran steady's measured load, faster than steady (it has no engine).
    let floor = &v["floor"];
    assert_eq!(floor["datagrams_per_sim_s"], s["datagrams_per_sim_s"]);
    assert!(
        floor["datagrams_per_sim_s"].as_f64().unwrap() > 100.0,
        "{floor}"
    );
    let fraction = floor["steady_fraction"].as_f64().unwrap();
    assert!(fraction > 0.0 && fraction < 1.0, "{floor}");
    for (table, scenario) in [("hunts", Some("chaos-mix")), ("hunts_tuned", None)] {
        let hunts = v[table].as_array().unwrap();
        assert_eq!(hunts.len(), 4, "one hunt per known bug");
        for h in hunts {
            assert_eq!(h["not_found"], 0, "every knob is found: {h}");
            if let Some(name) = scenario {
                assert_eq!(h["scenario"], name, "{h}");
            }
        }
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

/// A shipped scenario as JSON, to derive test scenarios from.
fn shipped(name: &str) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../scenarios/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Runs `faultline ci` over exactly these scenarios (file stem = name), with extra arguments.
fn ci_over(dir: &str, scenarios: &[(&str, serde_json::Value)], extra: &[&str]) -> Output {
    let d = tmpdir(dir);
    let scn = d.join("scenarios");
    std::fs::create_dir_all(&scn).unwrap();
    for (name, v) in scenarios {
        let mut v = v.clone();
        v["name"] = (*name).into();
        std::fs::write(
            scn.join(format!("{name}.json")),
            serde_json::to_string_pretty(&v).unwrap(),
        )
        .unwrap();
    }
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("ci")
        .args(extra)
        .env("FAULTLINE_SCENARIOS", &scn)
        .output()
        .unwrap()
}

/// The `ci` line of one scenario.
fn ci_line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| {
            l.get(5..)
                .is_some_and(|rest| rest.starts_with(&format!("{name}: ")))
        })
        .unwrap_or_else(|| panic!("no ci line for {name}: {out}"))
}

#[test]
fn ci_fail_expectations_need_the_named_finding_and_refuse_unexpected_kinds() {
    // Incident 000 on 4 seeds: every seed aborts a standby with StaleKeystore, then liveness.
    let mut base = shipped("kek-rotation-stale-keystore-abort");
    base["expect"]["ci_seeds"] = 4.into();
    base["expect"]["min_found"] = 2.into();
    base["expect"]["windows"] = serde_json::json!({ "stale-keystore-checkpoint": 2 });
    let mut wrong_message = base.clone();
    wrong_message["expect"]["message"] = "failed to step up".into();
    let mut unlisted = base.clone();
    unlisted["expect"].as_object_mut().unwrap().remove("also");
    let mut too_many = base.clone();
    too_many["expect"]["min_found"] = 4.into();
    too_many["expect"]["windows"] = serde_json::json!({ "drop-during-drain": 1 });
    let o = ci_over(
        "ci-fail",
        &[
            ("stale-ok", base),
            ("stale-wrong-message", wrong_message),
            ("stale-unlisted-kind", unlisted),
            ("stale-no-drain", too_many),
        ],
        &[],
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    let ok = ci_line(&out, "stale-ok");
    assert!(
        ok.starts_with("ok ")
            && ok.contains(
                "found node-abort ~ \"failed to pick up checkpoint*load_key: StaleKeystore\" in 4 of 4 seeds"
            ),
        "{ok}"
    );
    // The right kind with another mechanism's message is not the finding.
    let l = ci_line(&out, "stale-wrong-message");
    assert!(l.starts_with("FAIL"), "{l}");
    assert!(
        l.contains("expected node-abort ~ \"failed to step up\" in at least 2 of 4 seeds")
            && l.contains("found in 0")
            && l.contains(
                "found instead: node-abort \"invariant failed: failed to pick up checkpoint"
            ),
        "{l}"
    );
    // A kind in neither `kinds` nor `also` fails the expectation even though the finding is there.
    let l = ci_line(&out, "stale-unlisted-kind");
    assert!(l.starts_with("FAIL"), "{l}");
    assert!(
        l.contains("unexpected kind liveness on seed 1: [liveness]") && l.contains("more seeds"),
        "{l}"
    );
    assert!(
        !l.contains("expected node-abort"),
        "the finding itself was found: {l}"
    );
    // Windows count for `fail` expectations too.
    let l = ci_line(&out, "stale-no-drain");
    assert!(l.starts_with("FAIL"), "{l}");
    assert!(
        l.contains("race window drop-during-drain entered by 0 of 4 seeds, need 1"),
        "{l}"
    );
    assert!(out.contains("ci: 1 of 4 expectations met"), "{out}");
}

#[test]
fn ci_pass_expectations_need_progress_under_faults_and_window_coverage() {
    // Short steady runs: they pass, but never reach a keystore race.
    let mut steady = shipped("steady");
    steady["duration_ms"] = 3000.into();
    steady["expect"] = serde_json::json!({
        "verdict": "pass",
        "windows": { "checkpoint-picked-up": 1, "stale-keystore-checkpoint": 2 },
        "ci_seeds": 2
    });
    // Every replica stalled for the whole fault phase: the liveness phase heals the pause and
    // every seed converges and passes, but no operation was acknowledged while faults ran.
    let stalled = serde_json::json!({
        "name": "stalled",
        "duration_ms": 3000,
        "workload": { "clients": 2, "ops_per_sec": 50, "collections": 2, "keys": 50 },
        "timeline": [ { "at_ms": 0, "action": "pause", "nodes": "all", "for_ms": 60000 } ],
        "expect": { "verdict": "pass", "ci_seeds": 2 }
    });
    // The same with progress explicitly not required (and a workload without reads).
    let mut waived = stalled.clone();
    waived["workload"]["mix"] = serde_json::json!({ "reads_per_mille": 0 });
    waived["expect"]["min_ops_acked_fault_phase"] = 0.into();
    let o = ci_over(
        "ci-pass",
        &[
            ("short-steady", steady),
            ("stalled", stalled),
            ("stalled-waived", waived),
        ],
        &[],
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    let l = ci_line(&out, "short-steady");
    assert!(l.starts_with("FAIL"), "{l}");
    assert!(
        l.contains("race window stale-keystore-checkpoint entered by 0 of 2 seeds, need 2")
            && !l.contains("race window checkpoint-picked-up"),
        "names the missed window and its count only: {l}"
    );
    let l = ci_line(&out, "stalled");
    assert!(l.starts_with("FAIL"), "{l}");
    assert!(
        l.contains("no progress under faults: seed 1 acknowledged 0 op(s) while faults ran, need 1 per seed")
            && l.contains("2 of 2 seeds acknowledged none")
            && l.contains("no reads checked"),
        "{l}"
    );
    let l = ci_line(&out, "stalled-waived");
    assert!(l.starts_with("ok "), "{l}");
    // `--seeds` scales the minimums (stated for ci_seeds) to the seeds run, rounding down.
    let mut steady = shipped("steady");
    steady["duration_ms"] = 3000.into();
    steady["expect"] = serde_json::json!({
        "verdict": "pass", "windows": { "stale-keystore-checkpoint": 4 }, "ci_seeds": 8
    });
    let o = ci_over("ci-scaled", &[("short-steady", steady)], &["--seeds", "2"]);
    let l = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{l}");
    assert!(
        l.contains("entered by 0 of 2 seeds, need 1, 4 of 8 scaled to 2 seeds"),
        "{l}"
    );
}

#[test]
fn bad_expect_blocks_exit_2_naming_the_field() {
    let d = tmpdir("bad-expect");
    let cases = [
        (r#"{ "verdict": "fail" }"#, "expect.kinds"),
        (r#"{ "verdict": "pass", "message": "x" }"#, "expect.message"),
        (
            r#"{ "verdict": "pass", "also": ["liveness"] }"#,
            "expect.also",
        ),
        (
            r#"{ "verdict": "pass", "min_found": 1 }"#,
            "expect.min_found",
        ),
        (
            r#"{ "verdict": "fail", "kinds": ["crash"], "min_found": 30, "ci_seeds": 20 }"#,
            "expect.min_found",
        ),
        (
            r#"{ "verdict": "pass", "windows": { "no-such-window": 1 } }"#,
            "expect.windows.no-such-window",
        ),
    ];
    for (i, (expect, field)) in cases.iter().enumerate() {
        let p = d.join(format!("e{i}.json"));
        std::fs::write(
            &p,
            format!(
                "{{\n  \"name\": \"e{i}\",\n  \"duration_ms\": 100,\n  \"expect\": {expect}\n}}\n"
            ),
        )
        .unwrap();
        let o = faultline(&["run", p.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{expect}: {err}");
        assert!(
            err.contains(&format!("e{i}.json:4:")) && err.contains(&format!("field `{field}`")),
            "{expect}: names file, line and field: {err}"
        );
    }
    // An unknown window lists the valid ones; `ci` refuses the file the same way.
    let o = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["ci", "--filter", "e5"])
        .env("FAULTLINE_SCENARIOS", &d)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("expect.windows.no-such-window")
            && err.contains("unknown race window")
            && err.contains("all-replicas-restarted")
            && err.contains("drop-during-drain"),
        "{err}"
    );
}

/// `judge` on hand-made reports: what real runs rarely produce (a crash, a hang).
#[test]
fn judge_never_tolerates_crash_or_hang_unless_listed() {
    use reports::{RunReport, SeedReport, Violation, ViolationKind};
    let scn = |expect: &str| {
        sim::scenario::Scenario::parse(
            &format!(r#"{{ "name": "j", "duration_ms": 1000, "expect": {expect} }}"#),
            "j.json",
        )
        .unwrap()
    };
    let v = |kind, message: &str| Violation {
        kind,
        node: Some("n1".into()),
        at_ms: 5,
        message: message.into(),
    };
    let mut r = RunReport::new("j");
    for seed in 1..=3 {
        let mut violations = vec![
            v(
                ViolationKind::NodeAbort,
                "invariant failed: failed to step up: drain worker 0: NotFound",
            ),
            v(ViolationKind::Liveness, "n1 unreachable"),
        ];
        if seed == 2 {
            violations.push(v(ViolationKind::Crash, "panicked at engine/src/x.rs: boom"));
        }
        r.add(SeedReport {
            seed,
            trace_hash: "0".repeat(16),
            violations,
            ..Default::default()
        });
    }
    let strict = r#"{ "verdict": "fail", "kinds": ["node-abort"], "message": "failed to step up",
                     "also": ["liveness"], "ci_seeds": 3 }"#;
    let (ok, msg) = sim::cli::judge(&scn(strict), &r);
    assert!(!ok, "{msg}");
    assert!(
        msg.contains("unexpected kind crash on seed 2: [crash] n1"),
        "{msg}"
    );
    let listed = strict.replace(r#"["liveness"]"#, r#"["liveness", "crash"]"#);
    let (ok, msg) = sim::cli::judge(&scn(&listed), &r);
    assert!(ok, "crash listed explicitly: {msg}");
    // min_found counts seeds with the finding.
    let need_3 = listed.replace(r#""ci_seeds": 3"#, r#""min_found": 3, "ci_seeds": 3"#);
    assert!(sim::cli::judge(&scn(&need_3), &r).0);
    // A hang alone, with the finding nowhere: both reasons are given.
    let mut h = RunReport::new("j");
    h.add(SeedReport {
        seed: 7,
        trace_hash: "0".repeat(16),
        violations: vec![v(ViolationKind::Hang, "simulation deadlock")],
        ..Default::default()
    });
    let (ok, msg) = sim::cli::judge(&scn(strict), &h);
    assert!(!ok);
    assert!(
        msg.contains("found in 0") && msg.contains("unexpected kind hang on seed 7"),
        "{msg}"
    );
}

#[test]
fn list_json_names_every_scenario_with_the_format_version() {
    let text = faultline(&["list"]);
    let o = faultline(&["list", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    assert_eq!(v["schema_version"], reports::REPORT_SCHEMA_VERSION);
    assert_eq!(v["tool_version"], sim::cli::TOOL_VERSION);
    let list = v["scenarios"].as_array().unwrap();
    assert_eq!(list.len(), stdout(&text).lines().count());
    for s in list {
        assert!(s["name"].is_string() && s["file"].is_string(), "{s}");
        assert!(
            s["description"].is_string() || s["error"].is_string(),
            "{s}"
        );
    }
    assert!(list.iter().any(|s| s["name"] == "steady"));
}

#[test]
fn ci_json_is_one_object_with_every_case() {
    let o = faultline(&[
        "ci",
        "--filter",
        "kek-rotation-stale",
        "--seeds",
        "2",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    assert_eq!(v["schema_version"], reports::REPORT_SCHEMA_VERSION);
    assert_eq!(v["tool_version"], sim::cli::TOOL_VERSION);
    assert_eq!(v["passed"], true);
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0]["scenario"], "kek-rotation-stale-keystore-abort");
    assert_eq!(cases[0]["passed"], true);
    assert_eq!(cases[0]["seeds_run"], 2);
}

#[test]
fn hunt_json_names_the_seed_found_and_the_seeds_tried() {
    let o = faultline(&[
        "hunt",
        "simultaneous-restart",
        "--bug",
        "volatile-raft-term",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "found: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    assert_eq!(v["schema_version"], reports::REPORT_SCHEMA_VERSION);
    assert_eq!(v["found"], true);
    assert_eq!(v["bugs"][0], "volatile-raft-term");
    let seed = v["failure"]["seed"].as_u64().unwrap();
    assert!(v["tried"].as_u64().unwrap() >= 1);
    assert!(v["failure"]["replay"]
        .as_str()
        .unwrap()
        .contains(&format!("--seed {seed}")));
}
