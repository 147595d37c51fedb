use std::collections::BTreeMap;
use std::path::PathBuf;

use reports::{
    json, junit, text, write_atomic, CiCase, CiReport, ReportError, RunReport, SeedReport,
    TraceEvent, Violation, ViolationKind,
};

fn violation(kind: ViolationKind, node: Option<&str>, at_ms: u64, message: &str) -> Violation {
    Violation {
        kind,
        node: node.map(str::to_string),
        at_ms,
        message: message.to_string(),
    }
}

fn seed(seed: u64, violations: Vec<Violation>) -> SeedReport {
    SeedReport {
        seed,
        trace_hash: format!("{seed:016x}"),
        passed: violations.is_empty(),
        violations,
        replay: format!("faultline run kv-basic --seed {seed} --replay"),
        sim_ms: 30_000,
        events: 1234,
        ops_acked: 99,
        ops_acked_fault_phase: 80,
        reads_acked_fault_phase: 20,
        model_checks: 7,
        datagrams: 4321,
        wall_ms: 17,
        trace_tail: Vec::new(),
        causal: Vec::new(),
        notes: Vec::new(),
        windows: Vec::new(),
    }
}

fn sample_run() -> RunReport {
    let mut run = RunReport::new("kv-basic");
    run.scenario_file = Some("scenarios/kv-basic.toml".into());
    run.bugs = vec!["lost-ack".into()];
    run.wall_ms = 12_345;
    for s in [5, 3, 1, 2, 4] {
        run.add(seed(s, vec![]));
    }
    run.add(seed(
        9,
        vec![violation(
            ViolationKind::StateDivergence,
            None,
            20_000,
            "n1 != n2",
        )],
    ));
    run.add(seed(
        7,
        vec![
            violation(
                ViolationKind::NodeAbort,
                Some("n1"),
                12_345,
                "assert <x> & \"y\"",
            ),
            violation(ViolationKind::DbhashMismatch, Some("n2"), 13_000, "hash"),
        ],
    ));
    run.add(seed(
        8,
        vec![violation(
            ViolationKind::RaftSafety,
            Some("n3"),
            1,
            "two leaders",
        )],
    ));
    run
}

// ---------- model / JSON ----------

#[test]
fn kinds_serialize_as_kebab_case() {
    let cases = [
        (ViolationKind::NodeAbort, "node-abort"),
        (ViolationKind::DbhashMismatch, "dbhash-mismatch"),
        (ViolationKind::RaftSafety, "raft-safety"),
        (ViolationKind::StateDivergence, "state-divergence"),
    ];
    for (kind, s) in cases {
        assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{s}\""));
        assert_eq!(kind.as_str(), s);
        assert_eq!(kind.to_string(), s);
    }
    for kind in ViolationKind::ALL {
        let js = serde_json::to_string(&kind).unwrap();
        assert_eq!(js, format!("\"{}\"", kind.as_str()));
        assert_eq!(serde_json::from_str::<ViolationKind>(&js).unwrap(), kind);
        assert_eq!(ViolationKind::parse(kind.as_str()), Some(kind));
    }
    assert_eq!(
        ViolationKind::parse("NODE_ABORT"),
        Some(ViolationKind::NodeAbort)
    );
    assert_eq!(ViolationKind::parse("nope"), None);
    assert!(matches!(
        "nope".parse::<ViolationKind>(),
        Err(ReportError::UnknownKind(_))
    ));
}

#[test]
fn run_report_json_round_trip_and_contract() {
    let mut run = sample_run();
    run.failures[0].trace_tail.push(TraceEvent {
        at_us: 1,
        node: "n1".into(),
        kind: "send".into(),
        detail: "x".into(),
    });
    run.failures[0].notes.push("swarm: no-partitions".into());
    let s = json::to_string_pretty(&run).unwrap();
    let back = json::parse_run_report(&s).unwrap();
    assert_eq!(back, run);

    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["scenario"], "kv-basic");
    assert_eq!(v["seeds_run"], 8);
    let failures = v["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 3);
    for f in failures {
        for key in ["seed", "trace_hash", "replay", "violations"] {
            assert!(f.get(key).is_some(), "failure lacks {key}: {f}");
        }
        for viol in f["violations"].as_array().unwrap() {
            for key in ["kind", "node", "at_ms", "message"] {
                assert!(viol.get(key).is_some(), "violation lacks {key}: {viol}");
            }
        }
    }
    // node: null is kept (contract), empty tail/notes are skipped.
    assert!(failures[2]["violations"][0]["node"].is_null());
    assert!(failures[1].get("trace_tail").is_none());
    assert_eq!(
        v["kinds_found"],
        serde_json::json!([
            "node-abort",
            "dbhash-mismatch",
            "raft-safety",
            "state-divergence"
        ])
    );
}

#[test]
fn minimal_json_parses_and_bad_json_is_typed_error() {
    let minimal = r#"{"scenario":"s","seeds_run":3,"failures":[
        {"seed":4,"trace_hash":"00000000000000ff","replay":"r",
         "violations":[{"kind":"crash","node":null,"at_ms":5,"message":"m"}]}]}"#;
    let run = json::parse_run_report(minimal).unwrap();
    assert_eq!(run.seeds_run, 3);
    assert_eq!(run.failures[0].violations[0].kind, ViolationKind::Crash);
    assert!(!run.passed());

    for bad in [
        "",
        "{",
        "[]",
        r#"{"scenario":1}"#,
        r#"{"scenario":"s","failures":[{"seed":1,"trace_hash":"x","violations":[{"kind":"bogus"}]}]}"#,
    ] {
        let err = json::parse_run_report(bad).unwrap_err();
        assert!(matches!(err, ReportError::Parse { .. }), "{bad}: {err:?}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn add_keeps_seed_order_and_counts() {
    let run = sample_run();
    assert_eq!(run.seeds_run, 8);
    assert_eq!(run.seeds_passed, 5);
    assert_eq!(run.seeds_failed(), 3);
    assert_eq!(run.first_seed, 1);
    let order: Vec<u64> = run.failures.iter().map(|f| f.seed).collect();
    assert_eq!(order, vec![7, 8, 9]);
    assert_eq!(
        run.kinds_found,
        vec![
            ViolationKind::NodeAbort,
            ViolationKind::DbhashMismatch,
            ViolationKind::RaftSafety,
            ViolationKind::StateDivergence
        ]
    );
    assert!(!run.passed());
    assert!(run.failures.iter().all(|f| !f.passed));

    // A seed claiming to pass but carrying a violation is stored as a failure.
    let mut run2 = RunReport::new("x");
    let mut s = seed(1, vec![violation(ViolationKind::Hang, None, 0, "")]);
    s.passed = true;
    run2.add(s);
    assert_eq!(run2.seeds_passed, 0);
    assert_eq!(run2.failures.len(), 1);
    assert!(!run2.passed());

    let mut ok = RunReport::new("ok");
    for s in 10..20 {
        ok.add(seed(s, vec![]));
    }
    assert!(ok.passed());
    assert_eq!(ok.first_seed, 10);
    assert!(ok.failures.is_empty() && ok.kinds_found.is_empty());
}

// ---------- text ----------

#[test]
fn text_summary_contains_seed_replay_and_verdict() {
    let run = sample_run();
    let s = text::run_summary(&run);
    assert!(
        s.starts_with("scenario kv-basic (scenarios/kv-basic.toml)"),
        "{s}"
    );
    assert!(s.contains("bugs: lost-ack"));
    assert!(s.contains("wall 12.345s"));
    assert!(s.contains("seed 7  trace 0000000000000007"));
    assert!(
        s.contains("  [node-abort] n1 @ 12.345s: assert <x> & \"y\""),
        "{s}"
    );
    assert!(
        s.contains("  [state-divergence] - @ 20.000s: n1 != n2"),
        "{s}"
    );
    assert!(s.contains("  replay: faultline run kv-basic --seed 7 --replay"));
    assert!(s.ends_with(
        "FAIL: 3 of 8 seeds failed (kinds: node-abort, dbhash-mismatch, raft-safety, state-divergence)\n"
    ));

    let mut ok = RunReport::new("ok");
    ok.add(seed(1, vec![]));
    ok.add(seed(2, vec![]));
    assert!(text::run_summary(&ok).ends_with("PASS: 2/2 seeds\n"));
}

#[test]
fn text_summary_truncates_many_failures_and_strips_controls() {
    let mut run = RunReport::new("many");
    for s in 0..25 {
        run.add(seed(
            s,
            vec![violation(
                ViolationKind::Crash,
                Some("n1"),
                0,
                "line1\nline2\x1b[31m",
            )],
        ));
    }
    let s = text::run_summary(&run);
    assert_eq!(s.matches("  replay: ").count(), text::MAX_DETAILED_FAILURES);
    assert!(s.contains("... and 15 more failing seeds: 10, 11,"), "{s}");
    assert!(!s.contains('\x1b'));
    assert!(s.contains("line1 line2 [31m"));
    assert!(s.ends_with("FAIL: 25 of 25 seeds failed (kinds: crash)\n"));
}

#[test]
fn seed_dossier_shows_trace_tail() {
    let mut s = seed(
        42,
        vec![violation(
            ViolationKind::Durability,
            Some("n2"),
            1_500,
            "lost key k1\nexpected v1",
        )],
    );
    s.notes.push("swarm: disk-faults=on".into());
    s.trace_tail = vec![
        TraceEvent {
            at_us: 12_345_678,
            node: "n1".into(),
            kind: "crash".into(),
            detail: "power loss".into(),
        },
        TraceEvent {
            at_us: 12_400_000,
            node: "client".into(),
            kind: "ack".into(),
            detail: String::new(),
        },
    ];
    let d = text::seed_dossier(&s);
    assert!(
        d.starts_with("seed 42  FAILED  trace 000000000000002a\n"),
        "{d}"
    );
    assert!(
        d.contains("  [durability] n2 @ 1.500s: lost key k1\n      expected v1\n"),
        "{d}"
    );
    assert!(
        d.contains("  12.345678s n1      crash  power loss\n"),
        "{d}"
    );
    assert!(d.contains("  12.400000s client  ack\n"), "{d}");
    assert!(d.contains("  - swarm: disk-faults=on"));
    assert!(d.contains("replay:\n  faultline run kv-basic --seed 42 --replay"));
}

// ---------- JUnit ----------

#[derive(Debug)]
struct Element {
    name: String,
    attrs: BTreeMap<String, String>,
    /// The enclosing element, `None` for the root.
    parent: Option<String>,
    /// Non-whitespace text directly inside, with entities still escaped.
    text: String,
}

/// Tiny XML checker: balanced tags via a stack, quoted unique attributes, no raw `<`/`&` in
/// text or attributes, only known entities. Returns every element in document order.
fn check_xml(xml: &str) -> Result<Vec<Element>, String> {
    let rest = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        .ok_or("missing XML declaration")?;
    let mut elements = Vec::new();
    let mut stack: Vec<(String, usize)> = Vec::new();
    let mut seen_root = false;
    let mut i = 0;
    let b = rest.as_bytes();
    while i < b.len() {
        if b[i] == b'<' {
            let end = rest[i..].find('>').ok_or("unterminated tag")? + i;
            let tag = &rest[i + 1..end];
            i = end + 1;
            if let Some(name) = tag.strip_prefix('/') {
                let (open, _) = stack.pop().ok_or(format!("unexpected </{name}>"))?;
                if open != name {
                    return Err(format!("</{name}> closes <{open}>"));
                }
                continue;
            }
            let (tag, self_closing) = match tag.strip_suffix('/') {
                Some(t) => (t, true),
                None => (tag, false),
            };
            let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
            let name = &tag[..name_end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("bad tag name {name:?}"));
            }
            if stack.is_empty() {
                if seen_root {
                    return Err("multiple roots".into());
                }
                seen_root = true;
            }
            let mut attrs = BTreeMap::new();
            let mut a = tag[name_end..].trim_start();
            while !a.is_empty() {
                let eq = a.find("=\"").ok_or(format!("bad attribute in {tag:?}"))?;
                let key = a[..eq].to_string();
                let close = a[eq + 2..].find('"').ok_or("unterminated attribute")? + eq + 2;
                let value = &a[eq + 2..close];
                check_chars(value, true)?;
                if attrs.insert(key.clone(), value.to_string()).is_some() {
                    return Err(format!("duplicate attribute {key}"));
                }
                a = a[close + 1..].trim_start();
            }
            elements.push(Element {
                name: name.to_string(),
                attrs,
                parent: stack.last().map(|(n, _)| n.clone()),
                text: String::new(),
            });
            if !self_closing {
                stack.push((name.to_string(), elements.len() - 1));
            }
        } else {
            let end = rest[i..].find('<').map_or(b.len(), |p| p + i);
            let text = &rest[i..end];
            if stack.is_empty() && !text.trim().is_empty() {
                return Err(format!("text outside root: {text:?}"));
            }
            check_chars(text, false)?;
            if let Some(&(_, open)) = stack.last() {
                elements[open].text.push_str(text.trim());
            }
            i = end;
        }
    }
    if !stack.is_empty() {
        return Err(format!("unclosed {stack:?}"));
    }
    Ok(elements)
}

fn check_chars(s: &str, attr: bool) -> Result<(), String> {
    let mut rest = s;
    while let Some(p) = rest.find(|c: char| c == '&' || c == '<' || (attr && c == '"')) {
        if !rest[p..].starts_with('&') {
            return Err(format!("raw markup char in {s:?}"));
        }
        let semi = rest[p..].find(';').ok_or("unterminated entity")? + p;
        let ent = &rest[p + 1..semi];
        let known = ["amp", "lt", "gt", "quot", "apos", "#10", "#13", "#9"];
        if !known.contains(&ent) {
            return Err(format!("unknown entity &{ent};"));
        }
        rest = &rest[semi + 1..];
    }
    for c in s.chars() {
        let ok =
            matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}');
        if !ok {
            return Err(format!("forbidden char {c:?}"));
        }
    }
    Ok(())
}

fn sample_ci() -> CiReport {
    let bad = seed(
        7,
        vec![violation(
            ViolationKind::NodeAbort,
            Some("n<1>"),
            12_345,
            "a<b && \"c\" 'd'\x00\x07\nnext",
        )],
    );
    CiReport {
        wall_ms: 61_234,
        cases: vec![
            CiCase {
                scenario: "kv-basic".into(),
                expectation: "pass".into(),
                passed: false,
                message: "2 seeds failed: <&\"'>".into(),
                seeds_run: 100,
                wall_ms: 40_001,
                failing_seeds: vec![bad.clone(), seed(9, vec![])],
            },
            CiCase {
                scenario: "lost-ack".into(),
                expectation: "fail:durability".into(),
                passed: true,
                message: "found durability".into(),
                seeds_run: 10,
                wall_ms: 5,
                failing_seeds: vec![seed(
                    3,
                    vec![violation(ViolationKind::Durability, None, 1, "lost")],
                )],
            },
            CiCase {
                scenario: "raft".into(),
                expectation: "pass".into(),
                passed: true,
                message: String::new(),
                seeds_run: 10,
                wall_ms: 999,
                failing_seeds: vec![],
            },
            CiCase {
                scenario: "div".into(),
                expectation: "fail:state-divergence".into(),
                passed: false,
                message: String::new(),
                seeds_run: 10,
                wall_ms: 1,
                failing_seeds: vec![],
            },
        ],
    }
}

#[test]
fn junit_is_well_formed_and_counts_match() {
    let xml = junit::render(&sample_ci());
    let elements = check_xml(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let testcases = elements.iter().filter(|e| e.name == "testcase").count();
    let failures = elements.iter().filter(|e| e.name == "failure").count();
    // One testcase per case: the failing seeds of the failed "pass" expectation are in its
    // failure's body, not testcases of their own (names stay the same from run to run).
    assert_eq!(testcases, 4);
    assert_eq!(failures, 2);
    for root in ["testsuites", "testsuite"] {
        let e = elements.iter().find(|e| e.name == root).unwrap();
        assert_eq!(e.attrs["tests"], testcases.to_string(), "{root}");
        assert_eq!(e.attrs["failures"], failures.to_string(), "{root}");
        assert_eq!(e.attrs["time"], "61.234");
    }
    assert_eq!(elements[0].attrs["name"], "faultline");
    assert_eq!(elements[1].attrs["name"], "faultline-ci");

    let names: Vec<&str> = elements
        .iter()
        .filter(|e| e.name == "testcase")
        .map(|e| e.attrs["name"].as_str())
        .collect();
    assert_eq!(names, ["kv-basic", "lost-ack", "raft", "div"]);
    let first = elements.iter().find(|e| e.name == "testcase").unwrap();
    assert_eq!(first.attrs["classname"], "faultline.ci");
    assert_eq!(first.attrs["time"], "40.001");
    let f = elements.iter().find(|e| e.name == "failure").unwrap();
    assert_eq!(f.attrs["type"], "expectation");
    assert!(xml.contains("replay: faultline run kv-basic --seed 7 --replay"));
    assert!(xml.contains("seed 7 [node-abort] trace 0000000000000007"));
}

/// The common JUnit schema (Jenkins / Surefire / GitLab / the junit-10 XSD): which element
/// goes where and the attributes each one needs, with counts that add up and times as plain
/// non-negative decimal seconds.
fn check_junit_schema(elements: &[Element]) -> Result<(), String> {
    let count = |e: &Element, key: &str| -> Result<u64, String> {
        let v = e
            .attrs
            .get(key)
            .ok_or(format!("<{}> lacks `{key}`: {:?}", e.name, e.attrs))?;
        v.parse()
            .map_err(|_| format!("<{}> `{key}`={v:?} is not a count", e.name))
    };
    let time = |e: &Element| -> Result<(), String> {
        let v = e
            .attrs
            .get("time")
            .ok_or(format!("<{}> lacks `time`", e.name))?;
        let ok = v.parse::<f64>().is_ok_and(|t| t >= 0.0 && t.is_finite())
            && v.chars().all(|c| c.is_ascii_digit() || c == '.');
        ok.then_some(())
            .ok_or(format!("<{}> time={v:?} is not decimal seconds", e.name))
    };
    let need = |e: &Element, keys: &[&str]| -> Result<(), String> {
        for k in keys {
            if e.attrs.get(*k).is_none_or(|v| v.is_empty()) {
                return Err(format!("<{}> lacks `{k}`: {:?}", e.name, e.attrs));
            }
        }
        Ok(())
    };
    let root = elements.first().ok_or("empty document")?;
    if root.name != "testsuites" || root.parent.is_some() {
        return Err(format!("root is <{}>, not <testsuites>", root.name));
    }
    let mut suite_totals = [0u64; 3];
    let mut cases_in_suite = 0u64;
    let mut failed_in_suite = 0u64;
    let mut suites: Vec<&Element> = Vec::new();
    let mut case_results: Vec<usize> = Vec::new();
    for e in elements {
        let parent = e.parent.as_deref();
        match (e.name.as_str(), parent) {
            ("testsuites", None) => {
                need(e, &["name"])?;
                for k in ["tests", "failures", "errors"] {
                    count(e, k)?;
                }
                time(e)?;
            }
            ("testsuite", Some("testsuites")) => {
                need(e, &["name"])?;
                let t = count(e, "tests")?;
                let f = count(e, "failures")?;
                let er = count(e, "errors")?;
                time(e)?;
                if f + er > t {
                    return Err(format!("suite {:?}: failures+errors > tests", e.attrs));
                }
                suite_totals[0] += t;
                suite_totals[1] += f;
                suite_totals[2] += er;
                suites.push(e);
            }
            ("testcase", Some("testsuite")) => {
                need(e, &["name", "classname"])?;
                time(e)?;
                cases_in_suite += 1;
                case_results.push(0);
            }
            ("failure" | "error", Some("testcase")) => {
                need(e, &["message", "type"])?;
                let n = case_results.last_mut().ok_or("result outside a testcase")?;
                *n += 1;
                if *n > 1 {
                    return Err("a testcase with two results".into());
                }
                if e.name == "failure" {
                    failed_in_suite += 1;
                }
            }
            ("skipped", Some("testcase")) => {}
            ("system-out" | "system-err", Some("testcase" | "testsuite")) => {}
            ("properties", Some("testsuite")) | ("property", Some("properties")) => {}
            (name, parent) => return Err(format!("<{name}> not allowed inside {parent:?}")),
        }
    }
    if suites.is_empty() {
        return Err("no <testsuite>".into());
    }
    // This renderer writes one suite, so its counts must equal the elements it contains.
    if suites.len() == 1 {
        let s = suites[0];
        if count(s, "tests")? != cases_in_suite || count(s, "failures")? != failed_in_suite {
            return Err(format!(
                "suite says tests={} failures={}, has {cases_in_suite} testcases, {failed_in_suite} failures",
                s.attrs["tests"], s.attrs["failures"]
            ));
        }
    }
    for (i, k) in ["tests", "failures", "errors"].into_iter().enumerate() {
        if count(root, k)? != suite_totals[i] {
            return Err(format!("<testsuites> `{k}` is not the sum over its suites"));
        }
    }
    Ok(())
}

#[test]
fn junit_validates_against_the_common_schema() {
    let mut hostile = sample_ci();
    hostile.cases.push(CiCase {
        scenario: "]]> <![CDATA[ & \u{1b}[31m".into(),
        expectation: "pass".into(),
        passed: false,
        message: "</failure><testcase name=\"x\">".into(),
        seeds_run: 1,
        wall_ms: u64::MAX,
        failing_seeds: vec![seed(
            u64::MAX,
            vec![violation(ViolationKind::Hang, None, u64::MAX, "\r\n\t<&>")],
        )],
    });
    for report in [sample_ci(), CiReport::default(), hostile] {
        let xml = junit::render(&report);
        let elements = check_xml(&xml).unwrap_or_else(|e| panic!("not well-formed: {e}\n{xml}"));
        check_junit_schema(&elements).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        // Failure bodies are escaped text, never markup.
        for f in elements.iter().filter(|e| e.name == "failure") {
            assert!(!f.text.contains('<'), "{}", f.text);
        }
    }
    // The checker itself rejects what CI systems reject.
    let decl = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
    for bad in [
        "<testsuite name=\"a\" tests=\"0\" failures=\"0\" errors=\"0\" time=\"0\"/>",
        "<testsuites name=\"a\" tests=\"1\" failures=\"0\" errors=\"0\" time=\"0\"><testsuite name=\"s\" tests=\"1\" failures=\"0\" errors=\"0\" time=\"0\"><testcase name=\"c\" time=\"0\"/></testsuite></testsuites>",
        "<testsuites name=\"a\" tests=\"1\" failures=\"0\" errors=\"0\" time=\"1s\"><testsuite name=\"s\" tests=\"1\" failures=\"0\" errors=\"0\" time=\"0\"><testcase name=\"c\" classname=\"k\" time=\"0\"/></testsuite></testsuites>",
        "<testsuites name=\"a\" tests=\"2\" failures=\"0\" errors=\"0\" time=\"0\"><testsuite name=\"s\" tests=\"1\" failures=\"0\" errors=\"0\" time=\"0\"><testcase name=\"c\" classname=\"k\" time=\"0\"/></testsuite></testsuites>",
    ] {
        let elements = check_xml(&format!("{decl}{bad}")).unwrap();
        assert!(check_junit_schema(&elements).is_err(), "{bad}");
    }
}

#[test]
fn junit_escapes_markup_and_strips_forbidden_chars() {
    let xml = junit::render(&sample_ci());
    assert!(
        xml.contains("message=\"2 seeds failed: &lt;&amp;&quot;&apos;&gt;\""),
        "{xml}"
    );
    assert!(
        xml.contains("a&lt;b &amp;&amp; &quot;c&quot; &apos;d&apos;"),
        "{xml}"
    );
    assert!(xml.contains("n&lt;1&gt;"));
    assert!(!xml.contains('\x00') && !xml.contains('\x07'));

    let empty = junit::render(&CiReport::default());
    let elements = check_xml(&empty).unwrap();
    assert_eq!(elements[0].attrs["tests"], "0");
    assert_eq!(elements[0].attrs["failures"], "0");
}

// ---------- write_atomic ----------

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "faultline-reports-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn write_atomic_replaces_content_and_leaves_no_temp() {
    let dir = scratch_dir("atomic");
    let path = dir.join("nested/deeper/report.json");
    write_atomic(&path, b"first version, longer").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"first version, longer");
    write_atomic(&path, b"second").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second");

    let parent = path.parent().unwrap();
    let entries: Vec<String> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, vec!["report.json".to_string()]);
    assert!(!parent.join(".report.json.tmp").exists());

    // A path without a file name is an error, not a panic.
    assert!(write_atomic(std::path::Path::new("/"), b"x").is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn xml_checker_rejects_malformed_documents() {
    let decl = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
    for bad in [
        "<a><b></a></b>",
        "<a>x & y</a>",
        "<a t=\"<\"/>",
        "<a t=\"1\" t=\"2\"/>",
        "<a>",
        "<a/><b/>",
        "<a>\u{1}</a>",
    ] {
        assert!(check_xml(&format!("{decl}{bad}")).is_err(), "{bad}");
    }
    assert!(check_xml(&format!("{decl}<a t=\"&amp;\"><b/>x &lt; y</a>")).is_ok());
}

#[test]
#[ignore = "prints sample output for eyeballing"]
fn print_samples() {
    println!("{}", text::run_summary(&sample_run()));
    println!("{}", text::seed_dossier(&sample_run().failures[0]));
    println!("{}", junit::render(&sample_ci()));
}

#[test]
fn trace_lines_are_one_line_per_event() {
    let events = [
        TraceEvent {
            at_us: 10_191_796,
            node: "n1".into(),
            kind: "leader".into(),
            detail: "term 2".into(),
        },
        TraceEvent {
            at_us: 5,
            node: "n2".into(),
            kind: "warn".into(),
            detail: "two\nlines\x1b[31m".into(),
        },
    ];
    let text = text::trace_lines(&events);
    assert_eq!(
        text,
        "   10.191796s n1         leader     term 2\n    0.000005s n2         warn       two lines [31m\n"
    );
}
