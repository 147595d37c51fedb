//! An interrupted sweep's report (issue 17): it says so in JSON and text, never reads as a
//! pass, survives a round trip and a merge, and older reports without the fields still load.

use reports::{Completed, RunReport, SeedReport, Violation, ViolationKind};

fn seed(n: u64, failed: bool) -> SeedReport {
    SeedReport {
        seed: n,
        trace_hash: format!("{n:016x}"),
        passed: !failed,
        violations: if failed {
            vec![Violation {
                kind: ViolationKind::RaftSafety,
                node: Some("n1".into()),
                at_ms: 5,
                message: "two leaders".into(),
            }]
        } else {
            vec![]
        },
        replay: format!("faultline run x --seed {n}"),
        ..SeedReport::default()
    }
}

fn interrupted(shard: Option<u64>, seeds: &[(u64, bool)], planned: u64) -> RunReport {
    let mut r = RunReport::new("x");
    for &(n, failed) in seeds {
        r.add(seed(n, failed));
    }
    r.interrupted = true;
    r.completed.push(Completed {
        signal: "SIGINT".into(),
        shard,
        planned,
        seeds: seeds.len() as u64,
        first_seed: seeds[0].0,
        step: 1,
        last_seed: seeds.last().map(|s| s.0),
        next_seed: seeds.last().map(|s| s.0 + 1),
    });
    r
}

#[test]
fn an_interrupted_report_never_reads_as_a_pass() {
    let r = interrupted(None, &[(1, false), (2, false), (3, false)], 100);
    assert_eq!(r.seeds_planned(), 100);
    let text = reports::text::run_summary(&r);
    assert!(!text.contains("PASS"), "{text}");
    assert!(
        text.contains(
            "INTERRUPTED (SIGINT) after 3 of 100 seeds: none of them failed; the other 97 did not run"
        ),
        "{text}"
    );
    let r = interrupted(None, &[(1, false), (2, true)], 10);
    assert_eq!(
        reports::text::verdict(&r),
        "INTERRUPTED (SIGINT) after 2 of 10 seeds: 1 failed (kinds: raft-safety); the other 8 did not run"
    );
}

#[test]
fn the_interruption_round_trips_and_a_complete_report_has_no_such_fields() {
    let r = interrupted(None, &[(4, true), (5, false)], 7);
    let json = reports::json::to_string_pretty(&r).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["interrupted"], true);
    assert_eq!(
        v["completed"][0],
        serde_json::json!({
            "signal": "SIGINT", "planned": 7, "seeds": 2, "first_seed": 4, "step": 1,
            "last_seed": 5, "next_seed": 6
        })
    );
    assert_eq!(reports::json::parse_run_report(&json).unwrap(), r);
    let mut done = RunReport::new("x");
    done.add(seed(1, false));
    let json = reports::json::to_string_pretty(&done).unwrap();
    assert!(
        !json.contains("interrupted") && !json.contains("completed"),
        "{json}"
    );
}

#[test]
fn merging_an_interrupted_shard_keeps_the_interruption_and_what_each_shard_completed() {
    let shard = |index| reports::Shard {
        index,
        count: 2,
        first_seed: 1,
        seeds: 10,
    };
    let mut a = RunReport::new("x");
    for n in [1, 3, 5, 7, 9] {
        a.add(seed(n, false));
    }
    a.shards.push(shard(0));
    let mut b = interrupted(Some(1), &[(2, false), (4, true)], 5);
    b.shards.push(shard(1));
    a.merge(b).unwrap();
    assert!(a.interrupted);
    assert_eq!(a.completed.len(), 1);
    assert_eq!(a.completed[0].shard, Some(1));
    assert_eq!((a.seeds_run, a.seeds_planned()), (7, 10));
    assert!(reports::text::verdict(&a)
        .starts_with("INTERRUPTED (SIGINT) after 7 of 10 seeds: 1 failed"));
}
