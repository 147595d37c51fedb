//! Scenario tests: real seeds of the named scenarios, on the fixed engine and with the
//! `volatile-raft-term` knob.

mod common;

use common::*;
use engine::KnownBug;
use reports::ViolationKind;
use std::sync::Arc;

#[test]
fn steady_passes_every_seed_and_makes_progress() {
    let r = run("steady", &[], 1..41, 2);
    assert_all_pass(&r);
    // No faults: no fault race window is entered; every seed's followers pick up checkpoints.
    assert_eq!(
        r.report.windows.keys().collect::<Vec<_>>(),
        vec![sim::world::WINDOW_PICKUP],
        "{:?}",
        r.report.windows
    );
    for s in &r.all {
        assert!(
            s.ops_acked > 200,
            "seed {} acknowledged only {} writes",
            s.seed,
            s.ops_acked
        );
    }
}

#[test]
fn fixed_engine_survives_simultaneous_restart() {
    assert_all_pass(&run("simultaneous-restart", &[], 1..201, 2));
}

#[test]
fn fixed_engine_survives_rolling_restarts_and_partitions() {
    assert_all_pass(&run("rolling-restarts", &[], 1..41, 2));
    assert_all_pass(&run("partitions", &[], 1..41, 2));
}

#[test]
fn fixed_engine_survives_chaos_mix() {
    let r = run("chaos-mix", &[], 1..61, 2);
    assert_all_pass(&r);
    // Swarm testing: seeds differ in the fault mix they drew, and say so.
    let mixes: std::collections::BTreeSet<&String> = r
        .all
        .iter()
        .flat_map(|s| s.notes.iter())
        .filter(|n| n.starts_with("chaos"))
        .collect();
    assert!(mixes.len() >= 10, "swarm choices vary by seed: {mixes:?}");
}

#[test]
fn chaos_mix_finds_the_volatile_term_bug_without_a_script() {
    let r = run("chaos-mix", &[KnownBug::VolatileRaftTerm], 1..61, 2);
    let lost = r
        .report
        .failures
        .iter()
        .filter(|f| f.kinds().contains(&ViolationKind::StateDivergence))
        .count();
    assert!(
        lost >= 3,
        "chaos found committed-data loss on only {lost}/60 seeds"
    );
}

#[test]
fn volatile_term_knob_is_seen_at_its_first_message_but_loses_data_only_after_a_full_restart() {
    // Without restarts the knob loses nothing, but the persistence check sees it at the first
    // vote request: the term it is sent in is not on disk.
    let r = run("steady", &[KnownBug::VolatileRaftTerm], 1..11, 2);
    assert_eq!(r.report.failures.len(), 10, "seen on every seed");
    for f in &r.report.failures {
        assert!(
            f.violations.iter().all(|v| says(
                v,
                ViolationKind::RaftSafety,
                "persistence before messages"
            )),
            "seed {}: {:?}",
            f.seed,
            f.violations
        );
    }
    // One node restarting at a time: the raft checker sees the forgotten term at once (the
    // first bad state), while the cluster still loses nothing (a majority kept its term).
    let r = run("rolling-restarts", &[KnownBug::VolatileRaftTerm], 1..21, 2);
    assert_eq!(r.report.failures.len(), 20, "every seed restarts a node");
    for f in &r.report.failures {
        assert!(
            has_violation(
                f,
                ViolationKind::RaftSafety,
                "went backwards across a restart"
            ),
            "seed {}: {:?}",
            f.seed,
            f.violations
        );
        assert!(
            !f.kinds().iter().any(|k| matches!(
                k,
                ViolationKind::StateDivergence
                    | ViolationKind::Durability
                    | ViolationKind::ModelDivergence
            )),
            "seed {} lost data with only rolling restarts: {:?}",
            f.seed,
            f.violations
        );
    }
}

#[test]
fn harness_finds_incident_003_by_searching_seeds() {
    let r = run(
        "simultaneous-restart",
        &[KnownBug::VolatileRaftTerm],
        1..101,
        2,
    );
    let failing = r.report.failures.len();
    assert!(failing >= 20, "only {failing}/100 seeds failed");
    // Committed entries were truncated: the raft checker sees it. (A later leader then stands
    // aside from the page service, whose newest checkpoint carries the term the bug forgot, so
    // these runs also fail liveness.)
    let data_loss: Vec<_> = r
        .report
        .failures
        .iter()
        .filter(|f| has_violation(f, ViolationKind::RaftSafety, "truncated committed entries"))
        .collect();
    assert!(
        data_loss.len() >= 10,
        "committed entries lost on only {} seeds",
        data_loss.len()
    );
    // Every loss follows a full restart; most go through the vote for a shorter, higher-term
    // log (incident 003's step). Others lose entries to an equal-length log of a reused term.
    let via_shorter_log = data_loss
        .iter()
        .filter(|f| {
            f.windows
                .iter()
                .any(|x| x == sim::world::WINDOW_VOTE_SHORTER_LOG)
        })
        .count();
    assert!(
        via_shorter_log * 2 >= data_loss.len(),
        "only {via_shorter_log} of {} losses went through the shorter-log vote",
        data_loss.len()
    );
    for f in &data_loss {
        // The first bad state comes first: the persistence check saw the bug at the first vote
        // request, long before any restart (the dossier's causal excerpt ends there). The
        // forgotten term then shows again at the full restart.
        assert!(
            f.violations[0]
                .message
                .contains("persistence before messages"),
            "seed {}: {:?}",
            f.seed,
            f.violations[0]
        );
        assert!(
            f.violations
                .iter()
                .any(|v| v.message.contains("went backwards across a restart")),
            "seed {}: {:?}",
            f.seed,
            f.violations
        );
        assert!(
            f.windows
                .iter()
                .any(|x| x == sim::world::WINDOW_ALL_RESTARTED),
            "seed {} lost entries without a full restart",
            f.seed
        );
        assert!(
            f.replay.contains("--bug volatile-raft-term")
                && f.replay.contains(&format!("--seed {}", f.seed))
        );
    }
}

#[test]
fn a_failing_seed_replays_to_the_same_violations_and_hash() {
    let r = run(
        "simultaneous-restart",
        &[KnownBug::VolatileRaftTerm],
        1..21,
        2,
    );
    let f = r.report.failures.first().expect("some seed fails").clone();
    let again = run(
        "simultaneous-restart",
        &[KnownBug::VolatileRaftTerm],
        f.seed..f.seed + 1,
        1,
    );
    let g = &again.all[0];
    assert_eq!(g.trace_hash, f.trace_hash);
    assert_eq!(g.violations, f.violations);
}

#[test]
fn same_seed_same_trace_hash_at_any_jobs() {
    let a = run("chaos-mix", &[], 1..9, 1);
    let b = run("chaos-mix", &[], 1..9, 2);
    let c = run("chaos-mix", &[], 1..9, 2);
    let hashes = |r: &sim::runner::SweepResult| {
        r.all
            .iter()
            .map(|s| (s.seed, s.trace_hash.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(hashes(&a), hashes(&b));
    assert_eq!(hashes(&b), hashes(&c));
    // Different seeds explore different schedules.
    let distinct: std::collections::BTreeSet<_> =
        a.all.iter().map(|s| s.trace_hash.clone()).collect();
    assert_eq!(distinct.len(), 8);
}

#[test]
fn fixed_engine_survives_checkpoint_churn_and_pack_failures() {
    let churn = run("checkpoint-churn", &[], 1..31, 2);
    assert_all_pass(&churn);
    let packs = run("addr-pack-failures", &[], 1..31, 2);
    assert_all_pass(&packs);
    // The runs really exercised what they are named for.
    assert_eq!(
        packs.report.windows.get(sim::world::WINDOW_PACK_FAILED),
        Some(&30),
        "every seed saw a cookie pack fail after its put"
    );
    assert!(churn.report.windows.get(sim::world::WINDOW_PICKUP) == Some(&30));
    // Kills really landed mid-checkpoint, and nothing acknowledged was lost (durability ran).
    for w in [
        sim::world::WINDOW_PS_KILLED_MID_CHECKPOINT,
        sim::world::WINDOW_LEADER_KILLED_MID_CHECKPOINT,
    ] {
        assert_window(&churn, "checkpoint-churn", w, 20);
    }
}

/// Incident 001: with the knob on, the same failpoint schedule that the fixed engine survives
/// leaves orphaned blocks and inflated `bytes_total`, and `validate` names table, drift and
/// orphans.
#[test]
fn harness_finds_incident_001_bytes_total_leak() {
    let r = run("addr-pack-failures", &[KnownBug::BytesTotalLeak], 1..21, 2);
    assert_fails_at_least(&r, 15);
    for f in &r.report.failures {
        assert_eq!(kinds(f), vec![ViolationKind::Validate], "seed {}", f.seed);
        let drift = f.violations.iter().any(|v| {
            v.message.starts_with("table c")
                && v.message.contains("bytes_total")
                && v.message.contains("(drift +")
        });
        let orphans = f.violations.iter().any(|v| {
            v.message
                .contains("orphaned blocks in the page service: lsn ")
        });
        assert!(drift && orphans, "seed {}: {:#?}", f.seed, f.violations);
        assert!(f.replay.contains("--bug bytes-total-leak"));
        // The dossier's causal excerpt names the failed checkpoint that orphaned a block the
        // violation lists, before the violation.
        let orphaned: Vec<String> = f
            .violations
            .iter()
            .flat_map(|v| v.message.split("lsn ").skip(1))
            .filter_map(|rest| rest.split(' ').next().map(str::to_string))
            .collect();
        let named = f.causal.iter().any(|e| {
            e.kind == "checkpoint-failed"
                && e.detail.contains("cannot free unpacked blocks")
                && orphaned.iter().any(|l| {
                    e.detail.contains(&format!("[{l}]")) || e.detail.contains(&format!(" {l}]"))
                })
        });
        assert!(named, "seed {}: causal excerpt {:#?}", f.seed, f.causal);
        let first_ms = f.violations[0].at_ms;
        assert!(f.causal.iter().all(|e| e.at_us <= (first_ms + 1) * 1000));
    }
}

/// Key rotations (KEK, CMK) while standbys pick up checkpoints, with slow keystore flushes, the
/// KMS and the page service crashing: the fixed engine skips stale checkpoints and loses
/// nothing, and the race window of incident 000 is entered.
#[test]
fn fixed_engine_survives_key_rotations() {
    for (name, seeds) in [
        ("kek-rotation", 1..41),
        ("cmk-rotation", 1..21),
        ("kek-rotation-page-service-crash", 1..21),
    ] {
        let r = run(name, &[], seeds.clone(), 2);
        assert_all_pass(&r);
        let half = (seeds.end - seeds.start).div_ceil(2);
        for w in [
            sim::world::WINDOW_ROTATION_ON_FOLLOWER,
            sim::world::WINDOW_STALE_KEYSTORE,
        ] {
            assert_window(&r, name, w, half);
        }
    }
}

/// Incident 000: with the knob on, a standby that applied a KEK rotation aborts on the
/// stale checkpoint it then tries to pick up; liveness reports it unreachable with the reason,
/// and the dossier shows the rotation applied on that standby before the abort.
#[test]
fn harness_finds_incident_000_stale_keystore_abort() {
    let r = run("kek-rotation", &[KnownBug::StaleKeystoreAbort], 1..21, 2);
    assert_fails_at_least(&r, 10);
    for f in &r.report.failures {
        let k = kinds(f);
        assert!(
            k.contains(&ViolationKind::NodeAbort) && k.contains(&ViolationKind::Liveness),
            "seed {}: {k:?}",
            f.seed
        );
        let (abort, node) = node_abort(f);
        assert_abort_says(f, abort, &["failed to pick up checkpoint", "StaleKeystore"]);
        let unreachable = f.violations.iter().any(|v| {
            v.kind == ViolationKind::Liveness
                && v.message
                    .starts_with(&format!("{node} unreachable for dbhash"))
                && v.message.contains("StaleKeystore")
        });
        assert!(unreachable, "seed {}: {:#?}", f.seed, f.violations);
        // The committed keystore the standby refused to go back from came from a rotation
        // it applied as a follower, before the abort.
        let committed = abort
            .message
            .split("behind last committed timestamp ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .expect("the abort names the committed timestamp");
        assert_before_abort(f, &node, "rotation", |e| {
            e.kind == "keystore"
                && e.detail.contains("applied on a follower")
                && e.detail.contains(&format!("ts {committed}:"))
        });
        assert!(f.replay.contains("--bug stale-keystore-abort"));
    }
}

/// Forced drops racing the step-up drain, and DDL churn under leader changes: on the fixed
/// engine every table ends fully drained or fully dropped on every replica, and the drops do
/// meet running drains (they wait for the copy).
#[test]
fn fixed_engine_survives_step_up_drops_and_ddl_churn() {
    // (scenario, seeds, least number of seeds in which a drop met a running drain)
    for (name, seeds, least) in [("step-up-drop", 1..31, 20), ("ddl-churn", 1..21, 5)] {
        let r = run(name, &[], seeds.clone(), 2);
        assert_all_pass(&r);
        assert_window(&r, name, sim::world::WINDOW_DROP_DURING_DRAIN, least);
    }
}

/// Incident 002: with the knob on, the drain only pins the ingest table; a forced drop removes
/// it under the copy, the worker's next cursor open fails `NotFound`, and the new leader aborts
/// its step-up. The harness finds it by running seeds of a scenario that only schedules leader
/// changes and drops.
#[test]
fn harness_finds_incident_002_drop_drain_race() {
    let r = run("step-up-drop", &[KnownBug::DropDrainRace], 1..21, 2);
    assert_fails_at_least(&r, 15);
    for f in &r.report.failures {
        let (abort, node) = node_abort(f);
        assert_abort_says(f, abort, &["failed to step up: drain worker", ": NotFound"]);
        // The aborting node had just become leader, and a drop was on its way.
        assert_before_abort(f, &node, "leader", |e| e.kind == "leader");
        assert!(f
            .causal
            .iter()
            .any(|e| e.kind == "ddl" && e.detail.starts_with("drop")));
        assert!(f.replay.contains("--bug drop-drain-race"));
    }
}

#[test]
fn profiling_a_seed_measures_it_without_changing_it() {
    let scn = load("chaos-mix");
    let knobs = engine::Knobs::new(vec![]);
    let go = |profile| {
        sim::world::run_seed(
            scn.clone(),
            3,
            knobs.clone(),
            sim::world::SeedOptions {
                profile,
                ..Default::default()
            },
            String::new(),
        )
    };
    let (plain, profiled) = (go(false), go(true));
    assert_eq!(plain.report.trace_hash, profiled.report.trace_hash);
    assert!(plain.cpu.is_none());
    let cpu = profiled.cpu.expect("a profiled seed reports its CPU split");
    assert!(cpu.checkers_ns > 0 && cpu.trace_ns > 0, "{cpu:?}");
    assert!(
        cpu.checkers_ns + cpu.trace_ns < cpu.total_ns,
        "parts within the whole: {cpu:?}"
    );
}

#[test]
fn hunt_returns_the_lowest_failing_seed_at_any_jobs() {
    let scn = load("step-up-drop");
    let knobs = engine::Knobs::new(vec![KnownBug::DropDrainRace]);
    let find = |jobs| {
        sim::runner::hunt(&sim::runner::HuntSearch {
            scenario: scn.clone(),
            scenario_arg: "step-up-drop".into(),
            knobs: knobs.clone(),
            first: 1,
            max_seeds: 40,
            jobs,
        })
    };
    let (one, two) = (find(1), find(2));
    let seed = one.found.as_ref().expect("the knob is found").seed;
    assert_eq!(two.found.as_ref().map(|f| f.seed), Some(seed));
    assert_eq!((one.tried, two.tried), (seed, seed));
    let all = run("step-up-drop", &[KnownBug::DropDrainRace], 1..seed + 1, 2);
    assert_eq!(
        all.report.failures.first().map(|f| f.seed),
        Some(seed),
        "no lower seed fails"
    );
}

#[test]
fn a_step_down_hands_leadership_to_another_replica_and_loses_nothing() {
    let scn = sim::scenario::Scenario::parse(
        r#"{ "name": "step-downs", "replicas": 3, "duration_ms": 8000,
             "workload": { "clients": 2, "ops_per_sec": 80, "collections": 2, "keys": 50 },
             "timeline": [ { "at_ms": 2000, "action": "step_down" },
                           { "at_ms": 4000, "action": "step_down" },
                           { "at_ms": 6000, "action": "step_down" } ] }"#,
        "step-downs.json",
    )
    .expect("scenario parses");
    let scn = Arc::new(scn);
    let mut handovers = 0;
    for seed in 1..=4 {
        let r = sim::world::run_seed(
            scn.clone(),
            seed,
            engine::Knobs::new(vec![]),
            sim::world::SeedOptions {
                keep_full_trace: true,
                ..Default::default()
            },
            String::new(),
        );
        assert!(
            r.report.passed,
            "seed {seed}: {}",
            reports::text::seed_dossier(&r.report)
        );
        let trace = r.full_trace.expect("full trace kept");
        for (i, ev) in trace.iter().enumerate() {
            if ev.kind != "leader-step-down" {
                continue;
            }
            let next = trace[i..].iter().find(|e| e.kind == "leader");
            let next = next.unwrap_or_else(|| panic!("seed {seed}: no election after {ev:?}"));
            assert_ne!(
                next.node, ev.node,
                "seed {seed}: the node that stepped down stands aside"
            );
            handovers += 1;
        }
    }
    assert!(handovers >= 8, "step-downs reached leaders: {handovers}");
}
