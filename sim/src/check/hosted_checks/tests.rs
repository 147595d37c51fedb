//! The online checks, each against a record sequence with the bug it must catch and one
//! without (the end checks are in `end_tests`).

use std::collections::BTreeMap;

use reports::{Violation, ViolationKind};

use super::super::hosted::{HostedEvent as E, HostedRecord};
use super::HostedChecks;

mod end_tests;

/// A run fed record by record, one millisecond apart.
pub(super) struct Run {
    pub c: HostedChecks,
    pub now_us: u64,
    inc: BTreeMap<u8, u64>,
}

impl Run {
    /// `voters` voters, all started (incarnation 1, empty disks).
    pub fn new(voters: u8) -> Run {
        let mut r = Run {
            c: HostedChecks::new(voters),
            now_us: 1_000_000,
            inc: BTreeMap::new(),
        };
        for n in 1..=voters {
            r.start(n, &[], 0);
        }
        r
    }

    fn tick(&mut self) -> u64 {
        self.now_us += 1000;
        self.now_us
    }

    pub fn rec(&mut self, node: u8, event: E) -> &mut Run {
        let at_us = self.tick();
        let incarnation = self.inc[&node];
        self.c.observe(&HostedRecord {
            at_us,
            node,
            incarnation,
            event,
        });
        self
    }

    /// Starts the node's next incarnation, which loads `entries` and `covered`.
    pub fn start(&mut self, node: u8, entries: &[(u64, u64)], covered: u64) -> &mut Run {
        let inc = self.inc.entry(node).or_default();
        *inc += 1;
        let inc = *inc;
        let at = self.tick();
        self.c.started(node, inc, at);
        let entries = entries.to_vec();
        self.rec(node, E::Loaded { entries, covered })
    }

    pub fn kill(&mut self, node: u8) -> &mut Run {
        let at = self.tick();
        self.c.killed(node, at);
        self
    }

    pub fn vote(&mut self, node: u8, term: u64, to: u8, committed: bool) -> &mut Run {
        let voted_for = Some(to);
        self.rec(
            node,
            E::Vote {
                term,
                voted_for,
                committed,
            },
        )
    }

    /// `leader` campaigns in `term`, `grants` vote for it, and every voter accepts it.
    pub fn elect(&mut self, leader: u8, term: u64, grants: &[u8], voters: u8) -> &mut Run {
        self.vote(leader, term, leader, false);
        for &g in grants {
            self.vote(g, term, leader, false);
        }
        self.vote(leader, term, leader, true);
        self.rec(leader, E::Leader { term });
        for v in (1..=voters).filter(|v| *v != leader) {
            self.vote(v, term, leader, true);
        }
        self
    }

    /// `nodes` append and flush `entries`.
    pub fn replicate(&mut self, nodes: &[u8], entries: &[(u64, u64)]) -> &mut Run {
        for &n in nodes {
            let entries = entries.to_vec();
            let upto = entries.last().map_or(0, |e| e.0);
            self.rec(n, E::Appended { entries });
            self.rec(n, E::Flushed { upto });
        }
        self
    }

    /// `nodes` commit and apply `(index, term)` carrying `op`.
    pub fn commit_apply(&mut self, nodes: &[u8], index: u64, term: u64, op: &str) -> &mut Run {
        for &n in nodes {
            self.rec(n, E::Committed { index, term });
            let op = op.to_string();
            self.rec(n, E::Applied { index, term, op });
        }
        self
    }

    pub fn found(&mut self) -> Vec<Violation> {
        self.c.take_violations()
    }
}

/// The only finding, of `kind`, whose message has every one of `words`.
#[track_caller]
pub(super) fn one(found: &[Violation], kind: ViolationKind, words: &[&str]) {
    assert_eq!(found.len(), 1, "expected one finding, got {found:#?}");
    let v = &found[0];
    assert_eq!(v.kind, kind, "{v:#?}");
    for w in words {
        assert!(v.message.contains(w), "`{w}` missing from: {}", v.message);
    }
}

#[track_caller]
pub(super) fn clean(found: &[Violation]) {
    assert!(found.is_empty(), "expected no finding, got {found:#?}");
}

// --- one leader per term ---

#[test]
fn two_leaders_in_one_term_are_found() {
    let mut r = Run::new(3);
    r.vote(1, 5, 1, true).rec(2, E::Leader { term: 5 });
    one(
        &r.found(),
        ViolationKind::RaftSafety,
        &[
            "two leaders in term 5",
            "n1 (saved its own committed vote",
            "n2 (reported itself leader",
        ],
    );
    // Followers accepting two different leaders of one term show it too; reported once a term.
    let mut r = Run::new(3);
    r.vote(2, 4, 1, true)
        .vote(3, 4, 3, true)
        .vote(1, 4, 1, true);
    one(
        &r.found(),
        ViolationKind::RaftSafety,
        &[
            "two leaders in term 4",
            "n2 accepted it as leader",
            "n3 (saved its own committed vote",
        ],
    );
}

#[test]
fn one_leader_per_term_is_clean() {
    let mut r = Run::new(3);
    r.elect(1, 1, &[2], 3)
        .elect(2, 2, &[3], 3)
        .elect(1, 3, &[2, 3], 3);
    r.rec(1, E::Leader { term: 3 });
    clean(&r.found());
}

// --- one vote per voter per term; votes never go backwards ---

#[test]
fn two_grants_in_one_term_across_a_restart_are_found() {
    let mut r = Run::new(3);
    r.vote(3, 7, 1, false)
        .kill(3)
        .start(3, &[], 0)
        .vote(3, 7, 2, false);
    one(
        &r.found(),
        ViolationKind::RaftSafety,
        &[
            "n3 voted twice in term 7",
            "for n1",
            "for n2",
            "incarnation 1, then incarnation 2",
        ],
    );
}

#[test]
fn vote_term_going_back_after_a_restart_is_found() {
    let mut r = Run::new(3);
    r.vote(2, 6, 2, false)
        .kill(2)
        .start(2, &[], 0)
        .vote(2, 5, 1, false);
    one(
        &r.found(),
        ViolationKind::RaftSafety,
        &[
            "n2 saved a vote for n1 in term 5",
            "in term 6",
            "went backwards across a restart",
        ],
    );
    let mut r = Run::new(3);
    r.vote(2, 6, 1, false).rec(
        2,
        E::Vote {
            term: 6,
            voted_for: None,
            committed: false,
        },
    );
    one(&r.found(), ViolationKind::RaftSafety, &["forgot the vote"]);
}

#[test]
fn granting_one_then_accepting_another_leader_is_clean() {
    // n3 voted for n1, but n2 won term 4 without it (n2, n4, n5); n3 then accepts n2.
    let mut r = Run::new(5);
    r.vote(3, 4, 1, false)
        .vote(2, 4, 2, false)
        .vote(4, 4, 2, false)
        .vote(5, 4, 2, false);
    r.vote(2, 4, 2, true).vote(3, 4, 2, true);
    // The same vote again after a restart, then higher terms.
    r.kill(3)
        .start(3, &[], 0)
        .vote(3, 4, 2, true)
        .vote(3, 5, 3, false);
    clean(&r.found());
}

// --- committed on a quorum ---

#[test]
fn commit_without_a_durable_quorum_is_found() {
    // openraft #1802's shape: the leader commits an entry that only it holds durably.
    let mut r = Run::new(3);
    r.elect(1, 1, &[2], 3).replicate(&[1, 2, 3], &[(1, 1)]);
    r.commit_apply(&[1], 1, 1, "");
    r.replicate(&[1], &[(2, 1)]);
    r.rec(
        2,
        E::Appended {
            entries: vec![(2, 1)],
        },
    );
    r.rec(1, E::Committed { index: 2, term: 1 });
    one(
        &r.found(),
        ViolationKind::RaftSafety,
        &[
            "n1 committed through index 2 term 1",
            "durable on only 1 of 3 voters, a commit needs 2",
            "n1 holds 2 term 1 durably",
            "n2 holds 2 term 1 unflushed",
            "n3 has nothing at 2 (its log ends at 1 term 1)",
        ],
    );
}

#[test]
fn commit_counting_entries_lost_in_a_restart_is_found() {
    // n2 appended entry 2 but was killed before flushing it: its disk lost it.
    let mut r = Run::new(3);
    r.elect(1, 1, &[2], 3).replicate(&[1, 2, 3], &[(1, 1)]);
    r.replicate(&[1], &[(2, 1), (3, 1)]);
    r.rec(
        2,
        E::Appended {
            entries: vec![(2, 1), (3, 1)],
        },
    );
    r.kill(2).start(2, &[(1, 1)], 0);
    r.rec(1, E::Committed { index: 3, term: 1 });
    one(
        &r.found(),
        ViolationKind::RaftSafety,
        &[
            "n1 committed through index 3 term 1",
            "entry 2 term 1 is durable on only 1 of 3 voters",
            "n2 has nothing at 2 (its log ends at 1 term 1)",
            "(1 more index(es) through 3 likewise)",
        ],
    );
}

#[test]
fn commit_on_a_durable_quorum_is_clean() {
    let mut r = Run::new(3);
    r.elect(1, 1, &[2], 3).replicate(&[1, 2], &[(1, 1), (2, 1)]);
    r.commit_apply(&[1, 2], 2, 1, "c1#1 put k1");
    // n3 holds 1..=3 through a snapshot; n2 restarts and loads what it flushed.
    r.rec(3, E::SnapshotInstalled { index: 3, term: 1 });
    r.replicate(&[1], &[(3, 1)])
        .kill(2)
        .start(2, &[(1, 1), (2, 1)], 0);
    r.commit_apply(&[1], 3, 1, "c1#2 put k2");
    // n1 and n3 purge behind snapshots; entry 4 then commits on n1 and n3's durable logs.
    r.rec(1, E::Purged { upto: 2 })
        .replicate(&[1, 3], &[(4, 1)]);
    r.commit_apply(&[1, 3], 4, 1, "c1#3 put k3");
    clean(&r.found());
}

// --- one applied history ---

#[test]
fn different_ops_applied_at_one_index_are_found() {
    let mut r = Run::new(3);
    r.elect(1, 1, &[2], 3).replicate(&[1, 2, 3], &[(1, 1)]);
    r.commit_apply(&[1], 1, 1, "c1#1 put k1");
    r.rec(2, E::Committed { index: 1, term: 1 });
    let op = "c2#1 put k9".to_string();
    r.rec(
        2,
        E::Applied {
            index: 1,
            term: 1,
            op,
        },
    );
    one(
        &r.found(),
        ViolationKind::StateDivergence,
        &[
            "n2 applied index 1 term 1 `c2#1 put k9`",
            "n1 applied index 1 term 1 `c1#1 put k1`",
        ],
    );
}

#[test]
fn commit_of_another_term_than_applied_is_found() {
    let mut r = Run::new(3);
    r.elect(1, 2, &[2], 3).replicate(&[1, 2, 3], &[(1, 2)]);
    r.commit_apply(&[1], 1, 2, "");
    r.rec(3, E::Committed { index: 1, term: 1 });
    one(
        &r.found(),
        ViolationKind::RaftSafety,
        &[
            "n3 committed through index 1 term 1",
            "index 1 is term 2 (n1 applied it",
        ],
    );
}

#[test]
fn apply_of_another_term_than_committed_is_found() {
    let mut r = Run::new(3);
    r.elect(1, 2, &[2], 3).replicate(&[1, 2, 3], &[(1, 2)]);
    r.rec(1, E::Committed { index: 1, term: 2 });
    let op = "c1#1 put k1".to_string();
    r.rec(
        2,
        E::Applied {
            index: 1,
            term: 1,
            op,
        },
    );
    one(
        &r.found(),
        ViolationKind::RaftSafety,
        &[
            "n2 applied index 1 term 1",
            "n1 committed index 1 as term 2",
        ],
    );
}

#[test]
fn snapshot_of_another_term_than_applied_is_found() {
    let mut r = Run::new(3);
    r.elect(1, 2, &[2], 3).replicate(&[1, 2, 3], &[(1, 2)]);
    r.commit_apply(&[1], 1, 2, "");
    r.rec(3, E::SnapshotInstalled { index: 1, term: 1 });
    one(
        &r.found(),
        ViolationKind::StateDivergence,
        &[
            "n3 installed a snapshot through index 1 term 1",
            "index 1 is term 2",
        ],
    );
}

// --- committed entries never truncated; what was durable survives a restart ---

#[test]
fn truncating_a_committed_entry_is_found() {
    // openraft #1236's shape: a stale candidate wins and makes n2 cut entries n1 committed.
    let mut r = Run::new(3);
    r.elect(1, 1, &[2], 3)
        .replicate(&[1, 2], &[(1, 1), (2, 1), (3, 1)]);
    r.rec(1, E::Committed { index: 3, term: 1 });
    r.elect(3, 2, &[2], 3).rec(2, E::Truncated { from: 2 });
    one(
        &r.found(),
        ViolationKind::RaftSafety,
        &[
            "n2 truncated its log from index 2",
            "cutting committed entry 2 term 1 (n1 committed it",
            "and 1 more committed entr(ies) through 3",
            "it held 2..=3 durably",
        ],
    );
}

#[test]
fn truncating_an_uncommitted_suffix_is_clean() {
    let mut r = Run::new(3);
    r.elect(1, 1, &[2], 3).replicate(&[1, 2, 3], &[(1, 1)]);
    r.commit_apply(&[1, 2, 3], 1, 1, "");
    r.replicate(&[1], &[(2, 1), (3, 1)])
        .replicate(&[2], &[(2, 1)]);
    r.elect(3, 2, &[2], 3).rec(1, E::Truncated { from: 2 });
    r.rec(2, E::Truncated { from: 2 });
    r.replicate(&[1, 2, 3], &[(2, 2)])
        .commit_apply(&[3, 1, 2], 2, 2, "");
    clean(&r.found());
}

#[test]
fn restart_losing_a_flushed_committed_entry_is_found() {
    let mut r = Run::new(3);
    r.elect(1, 1, &[2], 3)
        .replicate(&[1, 2, 3], &[(1, 1), (2, 1)]);
    r.commit_apply(&[1, 2], 2, 1, "c1#1 put k1");
    r.kill(3).start(3, &[(1, 1)], 0);
    one(
        &r.found(),
        ViolationKind::Durability,
        &[
            "n3 restarted (incarnation 2) without committed entry 2 term 1",
            "it loaded nothing there (its loaded log ends at 1 term 1",
        ],
    );
}

// --- a whole run, stale records, floods, cost ---

#[test]
fn a_run_with_restarts_truncation_and_snapshots_stays_clean() {
    let mut r = Run::new(3);
    r.elect(1, 1, &[2], 3)
        .replicate(&[1, 2, 3], &[(1, 1), (2, 1)]);
    r.commit_apply(&[1, 2, 3], 2, 1, "c1#1 put k1");
    // n1 appends 3 (unflushed) and dies; n2 wins term 2 and overwrites index 3 everywhere.
    r.rec(
        1,
        E::Appended {
            entries: vec![(3, 1)],
        },
    )
    .kill(1);
    r.elect(2, 2, &[3], 3).replicate(&[2, 3], &[(3, 2), (4, 2)]);
    r.commit_apply(&[2, 3], 4, 2, "c2#1 put k2");
    // n1 returns with a torn unflushed entry 3 of term 1 that survived; n2 makes it cut it.
    r.start(1, &[(1, 1), (2, 1), (3, 1)], 0);
    r.vote(1, 2, 2, true).rec(1, E::Truncated { from: 3 });
    r.replicate(&[1], &[(3, 2), (4, 2)])
        .commit_apply(&[1], 4, 2, "c2#1 put k2");
    // n3 compacts; n2 restarts from its durable log and is reelected.
    r.rec(3, E::Purged { upto: 4 })
        .kill(2)
        .start(2, &[(1, 1), (2, 1), (3, 2), (4, 2)], 0);
    r.vote(2, 2, 2, true).elect(3, 3, &[1, 2], 3);
    r.replicate(&[3, 1], &[(5, 3)])
        .commit_apply(&[3, 1], 5, 3, "");
    r.replicate(&[2], &[(5, 3)]).commit_apply(&[2], 5, 3, "");
    clean(&r.found());
}

#[test]
fn records_of_a_killed_or_older_incarnation_are_ignored() {
    let mut r = Run::new(3);
    r.elect(1, 1, &[2], 3).kill(2);
    // A late record of n2's killed incarnation: no vote for n3 in term 1 counts.
    r.vote(2, 1, 3, false);
    r.start(2, &[], 0);
    r.c.observe(&HostedRecord {
        at_us: r.now_us + 1,
        node: 2,
        incarnation: 1,
        event: E::Leader { term: 1 },
    });
    clean(&r.found());
}

#[test]
fn a_flood_is_capped_per_property() {
    let mut r = Run::new(3);
    for term in 1..=20 {
        r.vote(1, term, 1, true).vote(2, term, 2, true);
    }
    r.vote(3, 30, 1, false).vote(3, 30, 2, false);
    let found = r.found();
    assert_eq!(found.len(), 6, "{found:#?}");
    assert!(found[4]
        .message
        .contains("further two-leaders findings are not reported"));
    assert!(found[5].message.contains("voted twice in term 30"));
}

#[test]
fn a_long_run_is_checked_in_one_pass() {
    // 30 000 entries on 3 nodes, committed in batches of 10: linear work, a moment in debug.
    let mut r = Run::new(3);
    r.elect(1, 1, &[2, 3], 3);
    for b in 0..3000u64 {
        let entries: Vec<(u64, u64)> = (b * 10 + 1..=b * 10 + 10).map(|i| (i, 1)).collect();
        r.replicate(&[1, 2, 3], &entries);
        for n in 1..=3 {
            let index = b * 10 + 10;
            r.rec(n, E::Committed { index, term: 1 });
        }
        for (i, t) in entries {
            for n in 1..=3 {
                let op = format!("c1#{i} put k{}", i % 7);
                r.rec(
                    n,
                    E::Applied {
                        index: i,
                        term: t,
                        op,
                    },
                );
            }
        }
        if b % 100 == 99 {
            r.rec(b as u8 % 3 + 1, E::Purged { upto: b * 10 });
        }
    }
    clean(&r.found());
    assert_eq!(r.c.applied_through(), 30_000);
}
