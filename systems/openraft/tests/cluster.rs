//! End to end: a 3-node openraft cluster inside madsim, and its determinism.

use faultline_openraft::client::Outcome;
use std::time::Duration;

use faultline_openraft::client::ClientOptions;
use faultline_openraft::cluster::{check, default_raft_config, run_seed, simulate, RunOptions, RunReport, World};
use faultline_openraft::kv::KvOp;
use faultline_openraft::trace::{hash_events, TraceEvent};
use faultline_openraft::runtime::TokioRngPin;
use faultline_openraft::trace::first_divergence;

fn summary(r: &RunReport) -> String {
    let acked = r.ops.iter().filter(|o| o.outcome.is_acked()).count();
    let unknown = r.ops.iter().filter(|o| matches!(o.outcome, Outcome::Unknown(_))).count();
    let failed = r.ops.iter().filter(|o| matches!(o.outcome, Outcome::Failed(_))).count();
    format!(
        "seed {} leader {:?} killed {:?} then {:?}; ops {} acked {acked} unknown {unknown} failed {failed}; converged {}; {} trace events, hash {:016x}; {:?} simulated",
        r.seed,
        r.first_leader,
        r.killed,
        r.second_leader,
        r.ops.len(),
        r.converged,
        r.trace.len(),
        r.trace_hash,
        r.sim_elapsed
    )
}

fn assert_same(a: &RunReport, b: &RunReport, what: &str) {
    if let Some((i, x, y)) = first_divergence(&a.trace, &b.trace) {
        panic!(
            "{what}: traces of seed {} differ at event {i} of {}/{}:\n  first:  {}\n  second: {}",
            a.seed,
            a.trace.len(),
            b.trace.len(),
            x.map(|e| e.to_string()).unwrap_or("<end>".into()),
            y.map(|e| e.to_string()).unwrap_or("<end>".into())
        );
    }
    assert_eq!(a.trace_hash, b.trace_hash);
}

#[test]
fn three_nodes_elect_commit_survive_leader_kill_and_are_deterministic() {
    let a = run_seed(7, RunOptions::default());
    println!("{}", summary(&a));
    assert!(a.first_leader.is_some(), "a leader was elected");
    let first100 = &a.ops[..100];
    assert!(first100.iter().all(|o| o.outcome.is_acked()), "all 100 writes acknowledged: {:?}",
        first100.iter().filter(|o| !o.outcome.is_acked()).collect::<Vec<_>>());
    assert!(a.second_leader.is_some() && a.second_leader.map(|l| l.0) != a.killed, "a new leader after the kill");
    assert!(a.ops[100..].iter().any(|o| o.outcome.is_acked()), "writes commit after the kill");
    assert!(a.converged, "the restarted node caught up");
    assert_eq!(a.final_kv.len(), 3);
    assert!(a.problems.is_empty(), "safety problems: {:#?}", a.problems);

    let b = run_seed(7, RunOptions::default());
    assert_same(&a, &b, "same seed twice");
}

/// The same seed in one process after other seeds: tokio's thread-local RNG (unbiased
/// `select!`, `watch::changed`) is seeded from a process-global counter unless pinned.
#[test]
fn same_seed_after_other_seeds_gives_the_same_trace() {
    assert!(TokioRngPin::AVAILABLE, "built without --cfg tokio_unstable");
    let opts = RunOptions { writes: 40, writes_after_kill: 10, ..RunOptions::default() };
    let first = run_seed(11, opts.clone());
    println!("{}", summary(&first));
    for s in [12, 13, 14] {
        let r = run_seed(s, opts.clone());
        println!("{}", summary(&r));
        assert!(r.problems.is_empty(), "seed {s}: {:#?}", r.problems);
    }
    let again = run_seed(11, opts.clone());
    assert_same(&first, &again, "seed 11 again after seeds 12..14");
}

/// The hazard itself, measured: the same runs without pinning tokio's RNG. Not asserted (it
/// depends on whether some unbiased select! in openraft ever sees two ready branches); prints
/// what happened. Run with `--nocapture` to read it.
#[test]
fn unpinned_tokio_rng_report() {
    for (name, base) in [
        ("quiet", RunOptions { writes: 40, writes_after_kill: 10, ..RunOptions::default() }),
        ("lossy", RunOptions { writes: 60, writes_after_kill: 20, loss_per_mille: 50, delay_us: 1_000..40_000, ..RunOptions::default() }),
    ] {
        let opts = RunOptions { pin_tokio_rng: false, ..base };
        let first = run_seed(11, opts.clone());
        for s in [12, 13, 14] {
            run_seed(s, opts.clone());
        }
        let again = run_seed(11, opts.clone());
        let pinned = run_seed(11, RunOptions { pin_tokio_rng: true, ..opts.clone() });
        match first_divergence(&first.trace, &again.trace) {
            None => println!(
                "unpinned {name}: seed 11 reproduced after other seeds ({} events, hash {:016x}; pinned run hash {:016x})",
                first.trace.len(),
                first.trace_hash,
                pinned.trace_hash
            ),
            Some((i, x, y)) => println!(
                "unpinned {name}: seed 11 DIVERGED at event {i}: {} vs {}",
                x.map(|e| e.to_string()).unwrap_or("<end>".into()),
                y.map(|e| e.to_string()).unwrap_or("<end>".into())
            ),
        }
    }
}

/// Loss and wide, independent per-message delays: safety holds, the cluster converges, and the
/// run is still a function of its seed.
#[test]
fn lossy_reordering_network_is_safe_and_deterministic() {
    let opts = RunOptions { writes: 60, writes_after_kill: 20, loss_per_mille: 50, delay_us: 1_000..40_000, ..RunOptions::default() };
    let a = run_seed(21, opts.clone());
    println!("{}", summary(&a));
    assert!(a.problems.is_empty(), "safety problems: {:#?}", a.problems);
    assert!(a.converged, "converged after the faults");
    assert!(a.ops.iter().filter(|o| o.outcome.is_acked()).count() >= 40, "most writes commit");
    let b = run_seed(21, opts);
    assert_same(&a, &b, "lossy seed twice");
}

/// Snapshots every 10 entries with the log purged behind them: the restarted old leader is
/// behind the purge point and catches up through openraft's chunked snapshot transfer
/// (`install_snapshot` over the simulated network, installed into the state machine, synced).
#[test]
fn restarted_node_catches_up_by_snapshot() {
    let opts = RunOptions { writes: 30, writes_after_kill: 40, snapshot_every: Some(10), ..RunOptions::default() };
    let a = run_seed(31, opts.clone());
    println!("{}", summary(&a));
    let installed = a.trace.iter().filter(|e| e.what.starts_with("snapshot-installed")).count();
    let purged = a.trace.iter().filter(|e| e.what.starts_with("log-purged")).count();
    println!("{installed} snapshot installs, {purged} purges");
    assert!(purged > 0, "logs purged behind snapshots");
    assert!(installed > 0, "the restarted node installed a snapshot");
    assert!(a.converged);
    assert!(a.problems.is_empty(), "safety problems: {:#?}", a.problems);
    let b = run_seed(31, opts);
    assert_same(&a, &b, "snapshot seed twice");
}

/// A partition isolating the leader while a client writes, a held flush on a follower, then
/// heal: a new leader on the majority side, the old one's uncommitted tail truncated or
/// replicated, every acknowledgement on the canonical history, all replicas equal.
#[test]
fn leader_partition_and_held_flush_then_heal() {
    let (trace_a, problems, new_leader, converged) = simulate(41, true, partition_scenario);
    let count = |p: &str| trace_a.iter().filter(|e| e.what.starts_with(p)).count();
    println!(
        "new leader {new_leader:?}; {} dropped at send, {} truncations, {} acked, {} unknown, {} log flushes",
        count("drop-at-send"),
        count("log-truncated"),
        trace_a.iter().filter(|e| e.what.starts_with("complete") && e.what.contains("Acked")).count(),
        trace_a.iter().filter(|e| e.what.starts_with("complete") && e.what.contains("Unknown")).count(),
        count("log-flushed"),
    );
    assert!(problems.is_empty(), "safety problems: {problems:#?}");
    assert!(converged, "converged after the heal");
    assert!(new_leader.is_some(), "majority side elected a leader");
    let (trace_b, ..) = simulate(41, true, partition_scenario);
    assert_eq!(hash_events(&trace_a), hash_events(&trace_b), "partition seed twice");
}

async fn partition_scenario() -> (Vec<TraceEvent>, Vec<String>, Option<(u64, u64)>, bool) {
    let mut world = World::new(3, default_raft_config());
    world.wait_started().await;
    let observer = world.spawn_observer(Duration::from_millis(5));
    world.initialize(1).await;
    let (old, old_term) = world.wait_for_leader(Duration::from_secs(10)).await.expect("leader");
    let put = |i: usize| KvOp::Put { key: format!("k{}", i % 7), value: format!("v{i}") };
    let mut ops = world.run_client(100, (0..30).map(put).collect(), ClientOptions::default()).await;

    // Hold one follower's flushes: the other follower alone makes the leader's quorum.
    let follower = world.members.iter().copied().find(|&n| n != old).unwrap();
    world.disks[&follower].hold_flushes(true);
    ops.extend(world.run_client(101, (30..40).map(put).collect(), ClientOptions::default()).await);
    world.disks[&follower].hold_flushes(false);

    // Isolate the leader for 3 s; a client keeps writing (some to the isolated node: unknown).
    let members = world.members.clone();
    world.control.isolate(old, &members);
    world.trace.record(0, format!("isolate n{old}"));
    let mut new_leader = None;
    let opts = ClientOptions { attempt_timeout: Duration::from_millis(300), ..ClientOptions::default() };
    ops.extend(world.run_client(102, (40..60).map(put).collect(), opts).await);
    let until = madsim::time::Instant::now() + Duration::from_secs(3);
    while madsim::time::Instant::now() < until {
        if let Some((l, t)) = world.leader() {
            if l != old && t > old_term {
                new_leader = Some((l, t));
            }
        }
        madsim::time::sleep(Duration::from_millis(10)).await;
    }
    world.control.heal();
    world.trace.record(0, "heal");
    ops.extend(world.run_client(103, (60..70).map(put).collect(), ClientOptions::default()).await);
    let last = world.applied_indexes().values().copied().max().unwrap_or(0);
    let converged = world.wait_converged(last, Duration::from_secs(20)).await;
    let mut problems = check(&world.applied.lock().unwrap(), &ops);
    let kvs: std::collections::BTreeSet<_> =
        world.members.iter().filter_map(|&id| world.state_machine(id).map(|sm| sm.kv())).collect();
    if kvs.len() != 1 {
        problems.push(format!("replicas differ: {kvs:?}"));
    }
    observer.abort();
    world.shutdown().await;
    (world.trace.events(), problems, new_leader, converged)
}

/// Exploration, not a regression test: for `FAULTLINE_SWEEP_SEEDS` seeds (default 20), a long
/// outage (the old leader stays down while 300 writes go through, so the new leader's
/// replication to it keeps backing off) with loss, pinned vs unpinned. Prints how many seeds'
/// traces differ. `cargo test --release --test cluster sweep -- --ignored --nocapture`
#[test]
#[ignore]
fn sweep_pinned_vs_unpinned() {
    let n: u64 = std::env::var("FAULTLINE_SWEEP_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let base = RunOptions { writes: 20, writes_after_kill: 300, loss_per_mille: 20, delay_us: 1_000..20_000, ..RunOptions::default() };
    let mut differ = 0;
    let mut refused = 0;
    for seed in 100..100 + n {
        let p = run_seed(seed, RunOptions { pin_tokio_rng: true, ..base.clone() });
        let u = run_seed(seed, RunOptions { pin_tokio_rng: false, ..base.clone() });
        assert!(p.problems.is_empty() && u.problems.is_empty(), "seed {seed}: {:?} {:?}", p.problems, u.problems);
        refused += p.trace.iter().filter(|e| e.what.starts_with("refused")).count();
        if let Some((i, x, y)) = first_divergence(&p.trace, &u.trace) {
            differ += 1;
            println!(
                "seed {seed}: pinned and unpinned differ at event {i}/{}: {} vs {}",
                p.trace.len(),
                x.map(|e| e.to_string()).unwrap_or("<end>".into()),
                y.map(|e| e.to_string()).unwrap_or("<end>".into())
            );
        }
    }
    println!("sweep: {differ} of {n} seeds' traces depend on tokio's RNG ({refused} refused RPCs, each one a backoff select!)");
}
