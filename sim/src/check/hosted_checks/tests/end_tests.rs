//! The end checks: acknowledgements and refusals against the applied history, state
//! agreement, and the liveness verdict.

use std::collections::BTreeMap;

use engine::raft::Session;
use reports::ViolationKind;

use super::super::super::clients::{ClientKind, ClientOp};
use super::super::super::hosted::{HostedEvent as E, HostedStatus};
use super::super::HostedChecks;
use super::{clean, one, Run};

fn op(client: u32, seq: u64, kind: ClientKind, ack: Option<(u64, u64)>) -> ClientOp {
    ClientOp {
        client,
        session: Session {
            client: u64::from(client),
            seq,
        },
        collection: "kv".into(),
        key: Some("k1".into()),
        kind,
        invoked_us: 1_000_000,
        acked_us: ack.map(|_| 2_000_000),
        returned_us: Some(2_000_000),
        ack,
        read: None,
        failed: false,
    }
}

fn put(client: u32, seq: u64, ack: Option<(u64, u64)>) -> ClientOp {
    op(client, seq, ClientKind::Put(b"v".to_vec()), ack)
}

/// Entries 1..=4 of term 1 applied on n1 and n2: a blank, then c3#1, c3#17 (a read), c3#170.
fn applied_run() -> Run {
    let mut r = Run::new(3);
    r.elect(1, 1, &[2], 3);
    let ops = ["", "c3#1 put k1", "c3#17 get k1", "c3#170 put k2"];
    for (i, o) in ops.iter().enumerate() {
        let i = i as u64 + 1;
        r.replicate(&[1, 2], &[(i, 1)])
            .commit_apply(&[1, 2], i, 1, o);
    }
    r
}

// --- acknowledgements and refusals ---

#[test]
fn acks_naming_their_own_entries_are_clean() {
    let r = applied_run();
    let mut refused = put(3, 2, None);
    refused.failed = true;
    let ops = [
        put(3, 1, Some((2, 1))),
        op(3, 17, ClientKind::Get, Some((3, 1))),
        put(3, 170, Some((4, 1))),
        put(4, 1, None),
        refused,
    ];
    clean(&r.c.check_acks(&ops, 9));
}

#[test]
fn ack_naming_another_calls_entry_is_found() {
    let r = applied_run();
    let found = r.c.check_acks(&[put(3, 1, Some((4, 1)))], 9);
    one(
        &found,
        ViolationKind::Durability,
        &[
            "put kv/k1 (client 3, op 1) acknowledged as index 4 term 1",
            "the entry applied at index 4 is term 1 `c3#170 put k2` (n1 applied it",
        ],
    );
    let found =
        r.c.check_acks(&[op(3, 17, ClientKind::Get, Some((3, 2)))], 9);
    one(
        &found,
        ViolationKind::Linearizability,
        &[
            "get kv/k1 (client 3, op 17) acknowledged as index 3 term 2",
            "is term 1 `c3#17 get k1`",
        ],
    );
    let found = r.c.check_acks(&[put(3, 1, Some((1, 1)))], 9);
    one(
        &found,
        ViolationKind::Durability,
        &["is term 1 without a client operation"],
    );
}

#[test]
fn ack_of_an_entry_no_node_applied_is_found() {
    let r = applied_run();
    let found = r.c.check_acks(&[put(3, 5, Some((9, 1)))], 9);
    one(
        &found,
        ViolationKind::Durability,
        &[
            "acknowledged as index 9 term 1",
            "no node applied index 9 (applied through 4)",
        ],
    );
}

#[test]
fn a_refused_op_that_was_applied_is_found() {
    let mut r = applied_run();
    let mut refused = put(3, 1, None);
    refused.failed = true;
    one(
        &r.c.check_acks(&[refused], 9),
        ViolationKind::Linearizability,
        &[
            "put kv/k1 (client 3, op 1) was told it failed",
            "n1 applied it as index 2 term 1",
        ],
    );
    // Applied only where a node diverged: still applied.
    let op5 = "c5#1 put k3".to_string();
    r.rec(
        3,
        E::Applied {
            index: 2,
            term: 1,
            op: op5,
        },
    );
    r.found();
    let mut refused = put(5, 1, None);
    refused.failed = true;
    one(
        &r.c.check_acks(&[refused], 9),
        ViolationKind::Linearizability,
        &[
            "(client 5, op 1) was told it failed",
            "n3 applied it as index 2 term 1",
        ],
    );
}

// --- state agreement ---

fn status(term: u64, leader: Option<u8>, last_log: u64, applied: u64, digest: u64) -> HostedStatus {
    HostedStatus {
        term,
        leader,
        last_log,
        committed: applied,
        applied,
        state_digest: digest,
    }
}

#[test]
fn different_states_at_one_applied_index_are_found() {
    let statuses = BTreeMap::from([
        (1, status(2, Some(1), 5, 5, 1)),
        (2, status(2, Some(1), 5, 5, 2)),
        (3, status(2, Some(1), 5, 5, 2)),
        (4, status(2, Some(1), 5, 3, 9)),
    ]);
    one(
        &HostedChecks::check_agreement(&statuses, 9),
        ViolationKind::DbhashMismatch,
        &[
            "live nodes applied through index 5 hold different states",
            "n1 state digest 0x0000000000000001",
            "n2 and n3 state digest 0x0000000000000002",
        ],
    );
}

#[test]
fn equal_states_at_equal_indexes_are_clean() {
    let statuses = BTreeMap::from([
        (1, status(2, Some(1), 5, 5, 7)),
        (2, status(2, Some(1), 5, 5, 7)),
        (3, status(2, Some(1), 5, 4, 6)),
    ]);
    clean(&HostedChecks::check_agreement(&statuses, 9));
}

// --- liveness ---

fn live(s: &[(u8, Option<HostedStatus>)]) -> BTreeMap<u8, Option<HostedStatus>> {
    s.iter().cloned().collect()
}

#[test]
fn a_converged_cluster_has_no_gaps() {
    let r = Run::new(3);
    let s = live(&[
        (1, Some(status(3, Some(2), 10, 10, 1))),
        (2, Some(status(3, Some(2), 10, 10, 1))),
        (3, None),
    ]);
    assert_eq!(
        r.c.liveness_gaps(&s, 5_000_000, 1_000_000),
        Vec::<String>::new()
    );
}

#[test]
fn lagging_stale_and_rival_nodes_are_named() {
    let r = Run::new(4);
    let s = live(&[
        (1, Some(status(3, Some(1), 10, 10, 1))),
        (2, Some(status(2, Some(3), 10, 10, 1))),
        (3, Some(status(3, Some(1), 9, 7, 1))),
        (4, Some(status(2, Some(4), 8, 8, 1))),
    ]);
    let mut s3 = s[&3].clone().unwrap();
    s3.committed = 9;
    let s = live(&[
        (1, s[&1].clone()),
        (2, s[&2].clone()),
        (3, Some(s3)),
        (4, s[&4].clone()),
    ]);
    assert_eq!(
        r.c.liveness_gaps(&s, 5_000_000, 1_000_000),
        vec![
            "n2 in term 2 following n3, not n1 of term 3",
            "n4 still leads term 2, and n1 leads term 3",
            "n3 applied through 7 (committed 9) of leader n1's log through 10",
            "n4 applied through 8 (committed 8) of leader n1's log through 10",
        ]
    );
}

#[test]
fn split_votes_without_a_leader_name_each_term() {
    // openraft #1838's shape: n1 and n2 campaign in every term, each voting for itself.
    let mut r = Run::new(3);
    r.elect(1, 1, &[2], 3);
    let since = r.now_us + 1;
    for term in 7..=8 {
        r.vote(1, term, 1, false).vote(2, term, 2, false);
    }
    let s = live(&[
        (1, Some(status(8, None, 3, 3, 1))),
        (2, Some(status(8, None, 3, 3, 1))),
        (3, None),
    ]);
    let gaps = r.c.liveness_gaps(&s, since + 4_000_000, since);
    assert_eq!(
        gaps,
        vec![format!(
            "no leader since {} ms (for 4000 ms) (n3 down): term 7: n1 voted n1, n2 voted n2, n3 no vote (down now) (split vote: no candidate has 2 of 3); term 8: n1 voted n1, n2 voted n2, n3 no vote (down now) (split vote: no candidate has 2 of 3)",
            since / 1000
        )]
    );
}

#[test]
fn a_long_livelock_shows_its_last_elections() {
    let mut r = Run::new(3);
    let since = r.now_us + 1;
    for term in 10..=19 {
        r.vote(1, term, 1, false).vote(2, term, 2, false);
    }
    r.vote(3, 19, 1, false);
    let s = live(&[(1, Some(HostedStatus::default())), (2, None), (3, None)]);
    let gaps = r.c.liveness_gaps(&s, r.now_us, since);
    assert_eq!(gaps.len(), 1);
    let g = &gaps[0];
    for w in [
        "(n2, n3 down): 10 elections since, 9 without a majority; the last 4: term 16:",
        "term 18: n1 voted n1, n2 voted n2 (down now), n3 no vote (down now) (split vote",
        "term 19: n1 voted n1, n2 voted n2 (down now), n3 voted n1 (down now) (n1 had 2 of 3 votes but never led)",
    ] {
        assert!(g.contains(w), "`{w}` missing from: {g}");
    }
    assert!(!g.contains("term 15:"), "{g}");
}

#[test]
fn no_leader_names_the_last_elected_and_a_lone_candidate() {
    let mut r = Run::new(3);
    r.vote(1, 1, 1, false);
    let since = r.now_us + 1;
    r.elect(2, 2, &[3], 3).vote(1, 3, 1, false);
    let s = live(&[
        (1, Some(status(3, None, 1, 1, 1))),
        (2, Some(status(3, None, 1, 1, 1))),
        (3, Some(status(3, None, 1, 1, 1))),
    ]);
    let gaps = r.c.liveness_gaps(&s, r.now_us, since);
    let g = &gaps[0];
    for w in [
        "no leader now (the last elected since",
        ": n2 in term 2 at",
        "term 2: n1 accepted n2, n2 voted n2, accepted n2, n3 voted n2, accepted n2 (n2 elected)",
        "term 3: n1 voted n1, n2 no vote, n3 no vote (no majority: n1 has 1 of 3, needs 2)",
    ] {
        assert!(g.contains(w), "`{w}` missing from: {g}");
    }
    assert!(!g.contains("term 1:"), "{g}");
}
