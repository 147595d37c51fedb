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
    let opts = RunOptions { pin_tokio_rng: false, writes: 40, writes_after_kill: 10, ..RunOptions::default() };
    let first = run_seed(11, opts.clone());
    for s in [12, 13, 14] {
        run_seed(s, opts.clone());
    }
    let again = run_seed(11, opts.clone());
    match first_divergence(&first.trace, &again.trace) {
        None => println!("unpinned: seed 11 reproduced after other seeds ({} events, hash {:016x})", first.trace.len(), first.trace_hash),
        Some((i, x, y)) => println!(
            "unpinned: seed 11 DIVERGED at event {i}: {} vs {}",
            x.map(|e| e.to_string()).unwrap_or("<end>".into()),
            y.map(|e| e.to_string()).unwrap_or("<end>".into())
        ),
    }
}
