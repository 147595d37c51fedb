use super::*;

const GOOD: &str = r#"{
  "name": "t",
  "duration_ms": 5000,
  "timeline": [
{ "at_ms": 1000, "action": "restart", "nodes": "all", "straggler_ms": [100, 200] },
{ "at_ms": 2000, "action": "partition", "nodes": "leader", "for_ms": 500 }
  ],
  "expect": { "verdict": "fail", "kinds": ["raft-safety", "dbhash-mismatch"] }
}"#;

#[test]
fn parses_a_good_scenario_with_defaults() {
    let s = Scenario::parse(GOOD, "t.json").unwrap();
    assert_eq!(s.replicas, 3);
    assert_eq!(s.timeline.len(), 2);
    assert_eq!(s.timeline[1].at_ms(), 2000);
    assert_eq!(
        s.expect.kinds,
        vec![ViolationKind::RaftSafety, ViolationKind::DbhashMismatch]
    );
    assert_eq!(s.checks.len(), 7);
}

#[test]
fn syntax_error_names_file_line_and_column() {
    let bad = "{\n  \"name\": \"t\",\n  \"duration_ms\": 5000,,\n}";
    let e = Scenario::parse(bad, "bad.json").unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("bad.json", 3));
    assert!(e.column > 0);
}

#[test]
fn unknown_field_names_the_field_and_line() {
    let bad = GOOD.replace("\"for_ms\": 500", "\"for_ms\": 500, \"forr_ms\": 1");
    let e = Scenario::parse(&bad, "f.json").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("timeline[1].forr_ms"), "{e}");
    assert_eq!(e.line, 6, "{e}");
    let top = GOOD.replace("\"name\": \"t\",", "\"name\": \"t\", \"replics\": 3,");
    let e = Scenario::parse(&top, "f.json").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("replics"));
    assert_eq!(e.line, 2);
}

#[test]
fn unknown_action_is_reported_with_its_line() {
    let bad = GOOD.replace("\"action\": \"partition\"", "\"action\": \"explode\"");
    let e = Scenario::parse(&bad, "a.json").unwrap_err();
    assert!(e.message.contains("explode"), "{e}");
    assert_eq!(e.field.as_deref(), Some("timeline[1].action"));
    assert_eq!(e.line, 6, "{e}");
}

#[test]
fn semantic_errors_point_at_the_field() {
    let bad = GOOD.replace("\"nodes\": \"leader\"", "\"nodes\": \"n9\"");
    let e = Scenario::parse(&bad, "s.json").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("timeline[1].nodes"), "{e}");
    assert_eq!(e.line, 6);
    let bad = GOOD.replace("\"at_ms\": 2000", "\"at_ms\": 9000");
    let e = Scenario::parse(&bad, "s.json").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("timeline[1].at_ms"));
    let bad = GOOD.replace("\"nodes\": \"all\"", "\"nodes\": \"everyone\"");
    let e = Scenario::parse(&bad, "s.json").unwrap_err();
    assert!(e.message.contains("unknown node selector"), "{e}");
    assert_eq!(e.line, 5);
}

/// Seven partitions of the leader, one per line (the first item on line 5).
fn seven_items(last: &str) -> String {
    let mut items: Vec<String> = (1..=6)
        .map(|i| {
            format!(
                r#"    {{ "at_ms": {i}00, "action": "partition", "nodes": "leader", "for_ms": 50 }}"#
            )
        })
        .collect();
    items.push(format!("    {last}"));
    format!(
        "{{\n  \"name\": \"t\",\n  \"duration_ms\": 5000,\n  \"timeline\": [\n{}\n  ]\n}}\n",
        items.join(",\n")
    )
}

#[test]
fn errors_inside_a_timeline_item_name_its_path_and_line() {
    let cases = [
        // A missing field: the item that lacks it, not another item that has it.
        (
            r#"{ "at_ms": 700, "action": "partition", "nodes": "leader" }"#,
            "timeline[6].for_ms",
            "missing field `for_ms`",
            5,
        ),
        // A wrong type: the field, at its value (not the end of the object).
        (
            r#"{ "at_ms": 700, "action": "partition", "nodes": "leader", "for_ms": "50" }"#,
            "timeline[6].for_ms",
            "invalid type: string \"50\", expected u64",
            73,
        ),
        (
            r#"{ "at_ms": 700, "action": "partition", "nodes": "the leader", "for_ms": 50 }"#,
            "timeline[6].nodes",
            "unknown node selector `the leader`",
            53,
        ),
        (
            r#"{ "at_ms": 700, "action": "restart", "nodes": "all", "down_ms": [1, -2] }"#,
            "timeline[6].down_ms[1]",
            "invalid value: integer `-2`, expected u64",
            73,
        ),
        (
            r#"{ "at_ms": 700, "action": "partition", "nodes": "leader", "for_ms": 5, "for_ms": 6 }"#,
            "timeline[6].for_ms",
            "duplicate field `for_ms`",
            76,
        ),
        (
            r#"{ "at_ms": 700, "action": "parition", "nodes": "leader", "for_ms": 5 }"#,
            "timeline[6].action",
            "unknown variant `parition`",
            31,
        ),
        (
            r#"{ "at_ms": 700, "nodes": "leader", "for_ms": 5 }"#,
            "timeline[6].action",
            "missing field `action`",
            5,
        ),
    ];
    for (item, field, message, column) in cases {
        let e = Scenario::parse(&seven_items(item), "t.json").unwrap_err();
        assert_eq!(e.field.as_deref(), Some(field), "{item}: {e}");
        assert!(e.message.starts_with(message), "{item}: {e}");
        assert_eq!((e.line, e.column), (11, column), "{item}: {e}");
    }
    let good = seven_items(r#"{ "at_ms": 700, "action": "kill", "nodes": "n1" }"#);
    assert_eq!(Scenario::parse(&good, "t.json").unwrap().timeline.len(), 7);
}

#[test]
fn non_ascii_text_is_an_error_with_a_position_never_a_panic() {
    // A no-break space or curly quotes pasted from a document, right after a value.
    for (bad, line, column) in [
        (
            "{\n  \"name\": \"t\",\n  \"duration_ms\": 5000\u{a0}\n}",
            3,
            22,
        ),
        (
            "{\n  \"name\": \u{201c}t\u{201d},\n  \"duration_ms\": 5000\n}",
            2,
            11,
        ),
        (
            "{\n  \"name\": \"t\"\u{2019},\n  \"duration_ms\": 5000\n}",
            2,
            14,
        ),
        (
            "{ \"name\": \"\u{e9}t\u{e9}\", \"duration_ms\": 5000 }\u{2014}",
            1,
            39,
        ),
    ] {
        let e = Scenario::parse(bad, "u.json").unwrap_err();
        assert_eq!((e.line, e.column), (line, column), "{bad:?}: {e}");
    }
    // Columns count characters: the `é`s before the bad value count one each.
    let e = Scenario::parse(
        "{ \"name\": \"\u{e9}\u{e9}\", \"duration_ms\": \"x\" }",
        "u.json",
    )
    .unwrap_err();
    assert_eq!(
        (e.line, e.column, e.field.as_deref()),
        (1, 32, Some("duration_ms")),
        "{e}"
    );
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let s = Scenario::parse(&format!("\u{feff}{GOOD}"), "bom.json").unwrap();
    assert_eq!(s.timeline.len(), 2);
    let e = Scenario::parse("\u{feff}{\n  \"name\": 1 }", "bom.json").unwrap_err();
    assert_eq!(
        (e.line, e.column),
        (2, 11),
        "columns as an editor shows them: {e}"
    );
}

#[test]
fn scenarios_the_harness_cannot_run_are_refused() {
    let with_timeline = |replicas: u8, item: &str| {
        format!(
            r#"{{ "name": "t", "replicas": {replicas}, "duration_ms": 5000, "timeline": [ {item} ] }}"#
        )
    };
    let partition = |nodes: &str| {
        format!(r#"{{ "at_ms": 100, "action": "partition", "nodes": "{nodes}", "for_ms": 50 }}"#)
    };
    let cases = [
        (with_timeline(2, &partition("minority")), "timeline[0].nodes", "needs at least 3 replicas"),
        (with_timeline(1, &partition("minority")), "timeline[0].nodes", "needs at least 3 replicas"),
        (
            r#"{ "name": "t", "replicas": 2, "duration_ms": 5000, "chaos": { "faults": ["kill", "split"], "mean_interval_ms": 500 } }"#.to_string(),
            "chaos.faults[1]",
            "needs at least 3 replicas",
        ),
        (
            with_timeline(3, r#"{ "at_ms": 5000, "action": "kill", "nodes": "n1" }"#),
            "timeline[0].at_ms",
            "not before duration_ms 5000",
        ),
        (
            with_timeline(3, r#"{ "at_ms": 10, "action": "partition", "nodes": "n1", "for_ms": 18446744073709551615 }"#),
            "timeline[0].for_ms",
            "must be at most 3600000",
        ),
        (
            with_timeline(3, r#"{ "at_ms": 10, "action": "restart", "nodes": "n1", "down_ms": [1, 4000000] }"#),
            "timeline[0].down_ms",
            "must be at most 3600000",
        ),
        (
            with_timeline(3, r#"{ "at_ms": 10, "action": "crash_points", "per_mille": 5, "for_ms": 1, "down_ms": [99999999999, 99999999999] }"#),
            "timeline[0].down_ms",
            "must be at most 3600000",
        ),
        (
            r#"{ "name": "t", "duration_ms": 18446744073709551615 }"#.to_string(),
            "duration_ms",
            "must be 1..=3600000",
        ),
        (
            r#"{ "name": "t", "duration_ms": 5000, "liveness_timeout_ms": 18446744073709551615 }"#.to_string(),
            "liveness_timeout_ms",
            "must be at most 3600000",
        ),
        (
            r#"{ "name": "t", "duration_ms": 5000, "chaos": { "faults": ["kill"], "mean_interval_ms": 18446744073709551615 } }"#.to_string(),
            "chaos.mean_interval_ms",
            "must be at most 3600000",
        ),
        (
            r#"{ "name": "t", "duration_ms": 5000, "checks": [] }"#.to_string(),
            "checks",
            "checked nothing",
        ),
    ];
    for (text, field, message) in cases {
        let e = Scenario::parse(&text, "r.json").unwrap_err();
        assert_eq!(e.field.as_deref(), Some(field), "{text}: {e}");
        assert!(e.message.contains(message), "{text}: {e}");
        assert!(e.line >= 1 && e.column >= 1, "{e}");
    }
    // What stays allowed: a minority of three, `split` where the swarm draws 3 or 5
    // replicas, the last millisecond of the fault phase.
    for ok in [
        with_timeline(3, &partition("minority")),
        r#"{ "name": "t", "replicas": 1, "duration_ms": 5000, "chaos": { "faults": ["split"], "mean_interval_ms": 500, "swarm": true, "swarm_world": true } }"#.to_string(),
        with_timeline(3, r#"{ "at_ms": 4999, "action": "kill", "nodes": "n1" }"#),
    ] {
        Scenario::parse(&ok, "ok.json").unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn bad_knob_and_kind_are_rejected() {
    let bad = GOOD.replace(
        "\"duration_ms\": 5000,",
        "\"duration_ms\": 5000, \"known_bugs\": [\"nope\"],",
    );
    let e = Scenario::parse(&bad, "k.json").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("known_bugs[0]"));
    assert!(
        e.message.contains("volatile-raft-term"),
        "lists the knobs: {e}"
    );
    let bad = GOOD.replace("raft-safety", "raft-oops");
    assert!(Scenario::parse(&bad, "k.json").is_err());
}

#[test]
fn chaos_block_is_validated() {
    let with = |faults: &str| {
        GOOD.replace(
            "\"timeline\"",
            &format!("\"chaos\": {{ \"faults\": [{faults}], \"mean_interval_ms\": 1000, \"swarm\": true }},\n  \"timeline\""),
        )
    };
    let s = Scenario::parse(&with("\"kill\", \"split\""), "c.json").unwrap();
    assert_eq!(s.chaos.unwrap().faults.len(), 2);
    let e = Scenario::parse(&with("\"kill\", \"meteor\""), "c.json").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("chaos.faults[1]"), "{e}");
    assert!(e.message.contains("meteor"));
}

/// `GOOD` with its `expect` block replaced.
fn with_expect(expect: &str) -> String {
    GOOD.replace(
        r#""expect": { "verdict": "fail", "kinds": ["raft-safety", "dbhash-mismatch"] }"#,
        &format!("\"expect\": {expect}"),
    )
}

#[test]
fn strict_fail_expectation_parses_and_matches_kind_and_message() {
    let text = with_expect(
        r#"{ "verdict": "fail", "kinds": ["node-abort"], "message": "failed to step up*NotFound",
            "also": ["liveness"], "min_found": 3, "windows": { "drop-during-drain": 2 }, "ci_seeds": 20 }"#,
    );
    let s = Scenario::parse(&text, "e.json").unwrap();
    let e = &s.expect;
    assert_eq!(e.min_found, Some(3));
    assert_eq!(e.windows.get("drop-during-drain"), Some(&2));
    let abort = "invariant failed: failed to step up: drain worker 1: cursor on c2: NotFound";
    assert!(e.is_finding(ViolationKind::NodeAbort, abort));
    assert!(!e.is_finding(
        ViolationKind::NodeAbort,
        "failed to pick up checkpoint 8: StaleKeystore"
    ));
    assert!(
        !e.is_finding(ViolationKind::Liveness, abort),
        "`also` kinds are never the finding"
    );
    assert!(e.tolerates(ViolationKind::Liveness) && e.tolerates(ViolationKind::NodeAbort));
    assert!(!e.tolerates(ViolationKind::Crash) && !e.tolerates(ViolationKind::Hang));
    // Round-trips through JSON (shrink writes scenarios back).
    let back: Expect = serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap();
    assert_eq!(&back, e);
    // Minimums scale with the seeds run, rounded down.
    assert_eq!(e.scaled(10, 20), 10);
    assert_eq!(e.scaled(10, 4), 2);
    assert_eq!(e.scaled(1, 4), 0);
    assert_eq!(e.scaled(10, 40), 20);
}

#[test]
fn message_patterns_are_substrings_with_star() {
    assert!(message_matches(
        "StaleKeystore",
        "load_key: StaleKeystore: behind"
    ));
    assert!(message_matches(
        "load_key*behind",
        "load_key: StaleKeystore: behind"
    ));
    assert!(!message_matches(
        "behind*load_key",
        "load_key: StaleKeystore: behind"
    ));
    assert!(message_matches("", "anything") && message_matches("*", "anything"));
    assert!(
        !message_matches("stalekeystore", "StaleKeystore"),
        "case matters"
    );
    assert!(!message_matches("a*a", "a"), "pieces do not overlap");
}

#[test]
fn expect_errors_point_at_the_field() {
    let cases = [
        (r#"{ "verdict": "fail" }"#, "expect.kinds", "name the kinds"),
        (
            r#"{ "verdict": "fail", "kinds": [] }"#,
            "expect.kinds",
            "name the kinds",
        ),
        (
            r#"{ "verdict": "pass", "message": "x" }"#,
            "expect.message",
            "only goes with verdict `fail`",
        ),
        (
            r#"{ "verdict": "pass", "also": ["liveness"] }"#,
            "expect.also",
            "only goes with",
        ),
        (
            r#"{ "verdict": "pass", "min_found": 2 }"#,
            "expect.min_found",
            "only goes with",
        ),
        (
            r#"{ "verdict": "pass", "kinds": ["crash"] }"#,
            "expect.kinds",
            "only goes with",
        ),
        (
            r#"{ "verdict": "fail", "kinds": ["crash"], "min_ops_acked_fault_phase": 3 }"#,
            "expect.min_ops_acked_fault_phase",
            "only goes with verdict `pass`",
        ),
        (
            r#"{ "verdict": "fail", "kinds": ["crash"], "message": " " }"#,
            "expect.message",
            "must not be empty",
        ),
        (
            r#"{ "verdict": "fail", "kinds": ["crash"], "also": ["hang", "crash"] }"#,
            "expect.also[1]",
            "one of `kinds` already",
        ),
        (
            r#"{ "verdict": "fail", "kinds": ["crash"], "min_found": 0 }"#,
            "expect.min_found",
            "must be 1..=10",
        ),
        (
            r#"{ "verdict": "fail", "kinds": ["crash"], "min_found": 11 }"#,
            "expect.min_found",
            "must be 1..=10",
        ),
        (
            r#"{ "verdict": "pass", "windows": { "checkpoint-picked-up": 3, "nope": 1 } }"#,
            "expect.windows.nope",
            "unknown race window `nope`",
        ),
        (
            r#"{ "verdict": "pass", "windows": { "checkpoint-picked-up": 21 }, "ci_seeds": 20 }"#,
            "expect.windows.checkpoint-picked-up",
            "must be 1..=20",
        ),
    ];
    for (expect, field, msg) in cases {
        let text = with_expect(expect);
        let e = Scenario::parse(&text, "x.json").unwrap_err();
        assert_eq!(e.field.as_deref(), Some(field), "{expect}: {e}");
        assert!(e.message.contains(msg), "{expect}: {e}");
        assert_eq!(e.line, 8, "{expect}: points at the expect block: {e}");
    }
    let text = with_expect(r#"{ "verdict": "pass", "windows": { "nope": 1 } }"#);
    let e = Scenario::parse(&text, "x.json").unwrap_err();
    assert!(
        e.message.contains("all-replicas-restarted") && e.message.contains("drop-during-drain"),
        "lists the windows: {e}"
    );
    let text = with_expect(r#"{ "verdict": "pass", "minfound": 1 }"#);
    let e = Scenario::parse(&text, "x.json").unwrap_err();
    assert_eq!(
        e.field.as_deref(),
        Some("expect.minfound"),
        "unknown fields are rejected: {e}"
    );
}

#[test]
fn every_shipped_scenario_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let s = Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                Some(s.name.as_str()),
                p.file_stem().and_then(|s| s.to_str()),
                "name matches file"
            );
            n += 1;
        }
    }
    assert!(n >= 4, "the named scenarios ship with the repo");
}
