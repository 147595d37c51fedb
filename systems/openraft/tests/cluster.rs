//! End to end: a 3-node openraft cluster inside madsim, and its determinism.

use faultline_openraft::client::Outcome;
use faultline_openraft::cluster::{run_seed, RunOptions, RunReport};
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
