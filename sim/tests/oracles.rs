//! Every oracle finds a bug nobody told it about: each test plants one ordinary engine bug
//! (test-only, `engine::knobs::Planted`, not a knob or a scenario) and asserts the check built
//! for that class of bug reports it, with a message that names the mechanism. The fixed engine
//! passing the same scenarios is covered by `scenarios.rs` and `faultline ci`.

mod common;

use common::*;
use engine::knobs::Planted;
use engine::Knobs;
use reports::ViolationKind;

/// Runs `scenario` with `bug` planted over `seeds` and asserts at least `min` seeds report
/// `kind` with a message containing `pattern`; returns how many did.
fn finds(
    scenario: &str,
    bug: Planted,
    seeds: std::ops::Range<u64>,
    kind: ViolationKind,
    pattern: &str,
    min: usize,
) -> usize {
    let r = run_with(scenario, Knobs::new([]).with_planted(bug), seeds.clone(), 2);
    let hits = r
        .report
        .failures
        .iter()
        .filter(|f| has_violation(f, kind, pattern))
        .count();
    assert!(
        hits >= min,
        "{bug:?} on {scenario}: only {hits} of {} seeds report {kind} with {pattern:?}:\n{}",
        seeds.end - seeds.start,
        reports::text::run_summary(&r.report)
    );
    hits
}

#[test]
fn model_check_sees_a_wrong_follower_apply_path_while_faults_run() {
    // Followers drop deletes: dbhash at the end would see nothing, because the liveness phase
    // makes every follower install the leader's checkpoint.
    finds(
        "steady",
        Planted::FollowerDropsDeletes,
        1..5,
        ViolationKind::ModelDivergence,
        // A deleted document still visible on the follower (through ingest, or the base below).
        "but the reference model has <absent>",
        3,
    );
}

#[test]
fn linearizability_sees_a_stale_leader_read() {
    finds(
        "steady",
        Planted::ReadFromCheckpoint,
        1..5,
        ViolationKind::Linearizability,
        "is not linearizable",
        4,
    );
}

#[test]
fn at_most_once_sees_a_retried_operation_executed_twice() {
    finds(
        "partitions",
        Planted::FollowerIgnoresSessions,
        1..7,
        ViolationKind::Linearizability,
        "must take effect at most once",
        3,
    );
}

#[test]
fn acknowledgements_are_matched_to_their_own_entries() {
    finds(
        "partitions",
        Planted::AckBeforeCommit,
        1..7,
        ViolationKind::Durability,
        "never committed",
        3,
    );
}

#[test]
fn acknowledging_by_index_alone_is_found() {
    finds(
        "partitions",
        Planted::AckOverwrittenProposal,
        1..11,
        ViolationKind::Durability,
        "never committed",
        5,
    );
}

#[test]
fn raft_checker_sees_a_leader_without_committed_entries() {
    finds(
        "partitions",
        Planted::VoteIgnoresLogLength,
        1..11,
        ViolationKind::RaftSafety,
        "without committed entry",
        8,
    );
}

#[test]
fn every_seal_is_checked_for_nonce_reuse() {
    finds(
        "steady",
        Planted::NonceRestartsPerCheckpoint,
        1..4,
        ViolationKind::NonceReuse,
        "keystream is reused",
        3,
    );
}

#[test]
fn persistence_check_sees_a_vote_or_ack_sent_before_its_fsync() {
    // Caught when the message leaves, without waiting for a crash to land in the gap.
    finds(
        "steady",
        Planted::SendsBeforeSync,
        1..4,
        ViolationKind::RaftSafety,
        "persistence before messages",
        3,
    );
}

#[test]
fn duplicated_and_reordered_appends_expose_a_follower_that_cuts_matching_entries() {
    // A late copy of an append makes the follower cut entries it already acknowledged.
    finds(
        "duplicates",
        Planted::AppendTruncatesUnconditionally,
        1..9,
        ViolationKind::RaftSafety,
        "",
        2,
    );
}

#[test]
fn reordered_replies_reach_the_stale_reply_race_on_purpose() {
    // The engine once aborted a healthy re-elected leader here (a latent bug seen once in a
    // few thousand chaos seeds); the scenario reaches the race in about one seed in ten.
    finds(
        "reordered-replies",
        Planted::StalePutAborts,
        1..41,
        ViolationKind::NodeAbort,
        "unexpected reply to put: Stale",
        2,
    );
}

#[test]
fn crash_points_find_a_free_done_before_the_publish() {
    // Freeing replaced blocks before publishing leaves a window of one round trip; a kill at
    // the `checkpoint-wrapped` crash point lands in it on purpose.
    finds(
        "crash-points",
        Planted::FreesBeforePublish,
        1..9,
        ViolationKind::NodeAbort,
        "",
        2,
    );
}

#[test]
fn disk_faults_expose_recovery_that_cuts_damage_like_a_torn_tail() {
    // Fixed: the damaged replica refuses to start and is retired. Planted: it starts on a
    // log missing synced entries, and forgets what it acknowledged.
    finds(
        "disk-faults",
        Planted::CutsDamageLikeATornTail,
        1..9,
        ViolationKind::RaftSafety,
        "",
        2,
    );
}
