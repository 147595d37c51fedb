//! Unit tests of the raft core, driven by a tiny in-memory cluster: a message queue that can
//! drop traffic to isolated nodes, durable state kept per node, and restarts from that state.

use super::*;
use crate::invariant::classify_panic;

struct Node {
    raft: Option<Raft>,
    hard: HardState,
    log: Vec<Entry>,
    applied: Vec<Entry>,
}

struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    queue: Vec<(NodeId, NodeId, Message)>,
    isolated: BTreeSet<NodeId>,
    volatile: bool,
    seed: u64,
}

impl Cluster {
    fn new(n: u8, volatile: bool) -> Self {
        let mut c = Cluster {
            nodes: BTreeMap::new(),
            queue: vec![],
            isolated: BTreeSet::new(),
            volatile,
            seed: 7,
        };
        for id in 1..=n {
            c.nodes.insert(
                id,
                Node {
                    raft: None,
                    hard: HardState::default(),
                    log: vec![],
                    applied: vec![],
                },
            );
        }
        for id in 1..=n {
            c.start(id);
        }
        c
    }

    fn start(&mut self, id: NodeId) {
        self.seed += 1;
        let members: Vec<NodeId> = self.nodes.keys().copied().collect();
        let mut cfg = RaftConfig::new(id, members, self.seed * 31 + id as u64);
        cfg.volatile_term = self.volatile;
        let node = self.nodes.get_mut(&id).unwrap();
        node.applied.clear(); // the state machine is rebuilt from the log
        node.raft = Some(Raft::new(cfg, node.hard, node.log.clone()));
        self.process(id);
    }

    fn stop(&mut self, id: NodeId) {
        self.nodes.get_mut(&id).unwrap().raft = None;
        self.queue.retain(|(_, to, _)| *to != id);
    }

    fn raft(&self, id: NodeId) -> &Raft {
        self.nodes[&id].raft.as_ref().expect("node running")
    }

    fn process(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        let Some(raft) = node.raft.as_mut() else {
            return;
        };
        let ready = raft.take_ready();
        if let Some(h) = ready.hard_state {
            node.hard = h;
        }
        for op in ready.log_ops {
            match op {
                LogOp::TruncateFrom(i) => node.log.truncate(i as usize - 1),
                LogOp::Append(es) => node.log.extend(es),
            }
        }
        node.applied.extend(ready.committed);
        for (to, m) in ready.messages {
            self.queue.push((id, to, m));
        }
    }

    /// Delivers queued messages until none are left (or `max` deliveries).
    fn deliver_all(&mut self) {
        for _ in 0..10_000 {
            if self.queue.is_empty() {
                return;
            }
            let (from, to, msg) = self.queue.remove(0);
            if self.isolated.contains(&from) || self.isolated.contains(&to) {
                continue;
            }
            if let Some(r) = self.nodes.get_mut(&to).and_then(|n| n.raft.as_mut()) {
                r.step(from, msg);
                self.process(to);
            }
        }
        panic!("message storm");
    }

    fn tick_all(&mut self, n: u32) {
        for _ in 0..n {
            let ids: Vec<_> = self.nodes.keys().copied().collect();
            for id in ids {
                if let Some(r) = self.nodes.get_mut(&id).unwrap().raft.as_mut() {
                    r.tick();
                    self.process(id);
                }
            }
            self.deliver_all();
        }
    }

    fn tick_one(&mut self, id: NodeId, n: u32) {
        for _ in 0..n {
            self.nodes
                .get_mut(&id)
                .unwrap()
                .raft
                .as_mut()
                .unwrap()
                .tick();
            self.process(id);
            self.deliver_all();
        }
    }

    fn leaders(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raft.as_ref().is_some_and(|r| r.role() == Role::Leader))
            .map(|(id, _)| *id)
            .collect()
    }

    fn elect(&mut self) -> NodeId {
        for _ in 0..200 {
            self.tick_all(1);
            let l = self.leaders();
            if l.len() == 1 {
                return l[0];
            }
        }
        panic!("no leader elected");
    }

    fn put(&mut self, leader: NodeId, key: &str) -> Index {
        let op = Op::Put {
            collection: "c".into(),
            key: key.into(),
            value: key.as_bytes().to_vec(),
        };
        let r = self.nodes.get_mut(&leader).unwrap().raft.as_mut().unwrap();
        let (index, _) = r.propose(op, None, 0).expect("leader accepts");
        self.process(leader);
        self.deliver_all();
        index
    }

    fn applied_keys(&self, id: NodeId) -> Vec<String> {
        self.nodes[&id]
            .applied
            .iter()
            .filter_map(|e| match &e.op {
                Op::Put { key, .. } => Some(key.clone()),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn elects_exactly_one_leader_and_others_follow() {
    let mut c = Cluster::new(3, false);
    let l = c.elect();
    c.tick_all(10);
    assert_eq!(c.leaders(), vec![l]);
    let term = c.raft(l).term();
    for id in 1..=3 {
        assert_eq!(c.raft(id).term(), term, "node {id} on the leader's term");
        assert_eq!(c.raft(id).leader(), Some(l), "node {id} knows the leader");
    }
}

#[test]
fn replicates_and_applies_in_order_on_every_node() {
    let mut c = Cluster::new(3, false);
    let l = c.elect();
    for k in ["a", "b", "c", "d"] {
        c.put(l, k);
    }
    c.tick_all(10); // heartbeats carry the commit index to followers
    for id in 1..=3 {
        assert_eq!(c.applied_keys(id), vec!["a", "b", "c", "d"], "node {id}");
        assert_eq!(c.raft(id).commit_index(), c.raft(l).last_index());
    }
}

#[test]
fn follower_refuses_proposals_with_leader_hint() {
    let mut c = Cluster::new(3, false);
    let l = c.elect();
    c.tick_all(5);
    let f = (1..=3).find(|i| *i != l).unwrap();
    let r = c.nodes.get_mut(&f).unwrap().raft.as_mut().unwrap();
    assert_eq!(
        r.propose(Op::Noop, None, 0),
        Err(ProposeError::NotLeader { leader: Some(l) })
    );
}

#[test]
fn minority_cannot_commit_and_lagging_follower_catches_up() {
    let mut c = Cluster::new(3, false);
    let l = c.elect();
    let f = (1..=3).find(|i| *i != l).unwrap();
    c.isolated.insert(f);
    c.put(l, "x");
    c.put(l, "y");
    c.tick_all(3);
    assert_eq!(c.applied_keys(l), vec!["x", "y"], "majority of two commits");
    assert!(c.applied_keys(f).is_empty());
    c.isolated.clear();
    c.tick_all(20);
    assert_eq!(
        c.applied_keys(f),
        vec!["x", "y"],
        "follower caught up after heal"
    );
}

#[test]
fn term_and_vote_are_persisted_before_messages_leave() {
    let mut c = Cluster::new(3, false);
    let l = c.elect();
    let term = c.raft(l).term();
    for id in 1..=3 {
        let h = c.nodes[&id].hard;
        assert_eq!(h.term, term, "node {id} persisted the term");
        assert!(h.voted_for.is_some(), "node {id} persisted its vote");
    }
}

#[test]
fn restart_restores_max_of_persisted_and_last_log_term() {
    let mut c = Cluster::new(3, false);
    let l = c.elect();
    c.put(l, "a");
    c.tick_all(5);
    // A journal written without the term (an older version) still comes back at the log's term.
    let log_term = c.raft(l).last_term();
    c.nodes.get_mut(&1).unwrap().hard.term = 0;
    c.stop(1);
    c.start(1);
    assert!(c.raft(1).term() >= log_term);
    // A persisted term above the log's term wins.
    c.nodes.get_mut(&2).unwrap().hard.term = 99;
    c.stop(2);
    c.start(2);
    assert_eq!(c.raft(2).term(), 99);
}

#[test]
fn restart_does_not_vote_twice_in_one_term() {
    let mut c = Cluster::new(3, false);
    c.elect();
    let voter = 3;
    let h = c.nodes[&voter].hard;
    c.stop(voter);
    c.start(voter);
    let r = c.nodes.get_mut(&voter).unwrap().raft.as_mut().unwrap();
    assert_eq!(r.term(), h.term);
    assert_eq!(r.voted_for(), h.voted_for);
    let other = (1..=3u8)
        .find(|i| Some(*i) != h.voted_for && *i != voter)
        .unwrap();
    r.step(
        other,
        Message::RequestVote {
            term: h.term,
            last_index: 100,
            last_term: h.term,
        },
    );
    let ready = r.take_ready();
    assert!(ready.messages.iter().any(|(_, m)| *m
        == Message::Vote {
            term: h.term,
            granted: false
        }));
}

#[test]
fn commit_hint_is_clamped_to_log_end_on_restart() {
    let cfg = RaftConfig::new(1, vec![1, 2, 3], 1);
    let log = vec![Entry {
        term: 1,
        index: 1,
        ts: 1,
        op: Op::Noop,
        session: None,
    }];
    let r = Raft::new(
        cfg,
        HardState {
            term: 1,
            voted_for: None,
            commit: 9,
        },
        log,
    );
    assert_eq!(r.commit_index(), 1);
    assert_eq!(r.last_applied(), 1);
}

fn follower_with_applied_entries(volatile: bool) -> Raft {
    let mut cfg = RaftConfig::new(1, vec![1, 2, 3], 1);
    cfg.volatile_term = volatile;
    let log: Vec<Entry> = (1..=3)
        .map(|i| Entry {
            term: 1,
            index: i,
            ts: i,
            op: Op::Noop,
            session: None,
        })
        .collect();
    let mut r = Raft::new(
        cfg,
        HardState {
            term: 1,
            voted_for: None,
            commit: 3,
        },
        log,
    );
    assert_eq!(r.last_applied(), 3);
    r.take_ready();
    r
}

#[test]
fn truncating_an_applied_entry_is_fatal_on_the_fixed_path() {
    let mut r = follower_with_applied_entries(false);
    let conflicting = vec![Entry {
        term: 2,
        index: 2,
        ts: 9,
        op: Op::Noop,
        session: None,
    }];
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        r.step(
            2,
            Message::Append {
                term: 2,
                prev_index: 1,
                prev_term: 1,
                entries: conflicting,
                commit: 2,
            },
        )
    }));
    let abort =
        classify_panic(res.unwrap_err().as_ref()).expect("an engine abort, not a plain panic");
    assert!(
        abort.message.contains("at or below last_applied"),
        "{}",
        abort.message
    );
}

#[test]
fn faulty_path_truncates_applied_entries_and_skips_reused_indexes() {
    let mut r = follower_with_applied_entries(true);
    let conflicting = vec![
        Entry {
            term: 2,
            index: 2,
            ts: 9,
            op: Op::Noop,
            session: None,
        },
        Entry {
            term: 2,
            index: 3,
            ts: 10,
            op: Op::Noop,
            session: None,
        },
        Entry {
            term: 2,
            index: 4,
            ts: 11,
            op: Op::Noop,
            session: None,
        },
    ];
    r.step(
        2,
        Message::Append {
            term: 2,
            prev_index: 1,
            prev_term: 1,
            entries: conflicting,
            commit: 4,
        },
    );
    let ready = r.take_ready();
    assert!(ready.events.iter().any(|e| matches!(
        e,
        RaftEvent::Truncated {
            from: 2,
            last_applied: 3,
            ..
        }
    )));
    // Index 2 and 3 are the leader's new entries, but last_applied was never rewound: only 4 applies.
    let applied: Vec<_> = ready.committed.iter().map(|e| e.index).collect();
    assert_eq!(applied, vec![4]);
    assert_eq!(r.entry(2).unwrap().term, 2);
}

#[test]
fn volatile_term_is_never_persisted() {
    let mut c = Cluster::new(3, true);
    c.elect();
    for id in 1..=3 {
        assert_eq!(c.nodes[&id].hard.term, 0);
        assert_eq!(c.nodes[&id].hard.voted_for, None);
    }
}

/// Incident 003, step by step: log through 42-ish at a high term, all restart, A and C elect a
/// leader and commit writes while B is cut off from the leader; B then campaigns with its stale
/// high-term log. On the faulty path B wins and the committed writes vanish from the state
/// machines of A and C; on the fixed path B can never win.
fn simultaneous_restart(volatile: bool) -> (Cluster, NodeId, NodeId) {
    let mut c = Cluster::new(3, volatile);
    // Drive the term up with a few leader changes.
    for _ in 0..4 {
        let l = c.elect();
        c.put(l, &format!("pre-{}", c.raft(l).term()));
        c.isolated.insert(l);
        c.tick_all(40);
        c.isolated.clear();
        c.tick_all(5);
    }
    let l = c.elect();
    c.put(l, "pre-last");
    c.tick_all(5);
    let high_term = c.raft(l).last_term();
    assert!(high_term >= 4);
    // Everyone restarts; B (the slow one) stays cut off from A and C's traffic while A leads.
    for id in 1..=3 {
        c.stop(id);
    }
    let b: NodeId = 2;
    for id in [1, 3] {
        c.start(id);
    }
    let a = c.elect();
    for k in ["post-1", "post-2", "post-3"] {
        c.put(a, k);
    }
    c.tick_all(3);
    c.start(b);
    // B hears nothing from the leader (its connection is in reconnect backoff): B's own
    // requests reach A and C, their answers reach B, nothing else.
    c.isolated.insert(b);
    c.tick_one(b, 100); // B campaigns (messages to/from B dropped while isolated)
    c.isolated.clear();
    for _ in 0..3 {
        // B times out again and campaigns with its stale, high-term log.
        let t = c.raft(b).election_timeout;
        for _ in 0..=t {
            let r = c.nodes.get_mut(&b).unwrap().raft.as_mut().unwrap();
            r.tick();
            c.process(b);
            // deliver only B's requests and the answers to them
            let msgs: Vec<_> = std::mem::take(&mut c.queue);
            for (from, to, m) in msgs {
                if from == b || to == b {
                    if let Some(r) = c.nodes.get_mut(&to).and_then(|n| n.raft.as_mut()) {
                        r.step(from, m);
                        c.process(to);
                    }
                }
            }
            c.queue.retain(|(from, to, _)| *from == b || *to == b);
            let msgs: Vec<_> = std::mem::take(&mut c.queue);
            for (from, to, m) in msgs {
                if let Some(r) = c.nodes.get_mut(&to).and_then(|n| n.raft.as_mut()) {
                    r.step(from, m);
                    c.process(to);
                }
            }
            if c.raft(b).role() == Role::Leader {
                break;
            }
        }
        if c.raft(b).role() == Role::Leader {
            break;
        }
    }
    c.tick_all(30);
    (c, a, b)
}

#[test]
fn incident_003_faulty_path_loses_committed_writes() {
    let (c, a, b) = simultaneous_restart(true);
    assert!(
        c.applied_keys(a).contains(&"post-1".to_string()),
        "A applied the post-restart writes"
    );
    let b_keys = c.applied_keys(b);
    assert!(
        !b_keys.contains(&"post-1".to_string()),
        "B never applies them: {b_keys:?}"
    );
    // A's log no longer holds what A applied: a committed entry was truncated.
    assert!(c.nodes[&a]
        .log
        .iter()
        .all(|e| !matches!(&e.op, Op::Put { key, .. } if key == "post-1")));
}

#[test]
fn incident_003_fixed_path_keeps_committed_writes() {
    let (c, _a, b) = simultaneous_restart(false);
    c.leaders()
        .iter()
        .for_each(|l| assert!(c.raft(*l).role() == Role::Leader));
    for id in 1..=3 {
        let keys = c.applied_keys(id);
        assert!(
            keys.contains(&"post-3".to_string()),
            "node {id} has the committed writes: {keys:?}"
        );
    }
    assert_eq!(c.applied_keys(b), c.applied_keys(1));
}

#[test]
fn a_lost_pipelined_append_is_resent_after_the_rejection() {
    let mut c = Cluster::new(3, false);
    let l = c.elect();
    let f = *c.nodes.keys().find(|id| **id != l).unwrap();
    c.put(l, "a");
    c.isolated.insert(f);
    c.put(l, "lost-to-f");
    c.isolated.clear();
    c.put(l, "c");
    c.tick_all(10);
    assert_eq!(
        c.applied_keys(f),
        ["a", "lost-to-f", "c"],
        "the follower rejected the append past its log, and the leader backed off and resent"
    );
}

#[test]
fn a_leader_that_steps_down_hands_over_to_another_node() {
    let mut c = Cluster::new(3, false);
    let l = c.elect();
    let term = c.raft(l).term();
    c.put(l, "a");
    let r = c.nodes.get_mut(&l).unwrap().raft.as_mut().unwrap();
    assert!(r.step_down());
    assert!(!r.step_down(), "only a leader steps down");
    assert_eq!(r.role(), Role::Follower);
    assert_eq!(r.term(), term, "stepping down does not start a term");
    c.process(l);
    let next = c.elect();
    assert_ne!(
        next, l,
        "the old leader stands aside for longer than an election timeout"
    );
    assert!(c.raft(next).term() > term);
    c.put(next, "b");
    c.tick_all(10);
    assert_eq!(c.applied_keys(l), ["a", "b"], "nothing committed is lost");
}

/// Node 1 of three, with entries of terms 1 and 2 and entry 1 committed, elected leader of
/// term 3 by node 2's vote (so its log is entries 1 and 2 and its own no-op at index 3).
fn leader_of_term_3_over_an_earlier_terms_entry() -> Raft {
    let cfg = RaftConfig::new(1, vec![1, 2, 3], 1);
    let log = (1..=2)
        .map(|i| Entry {
            term: i,
            index: i,
            ts: i,
            op: Op::Noop,
            session: None,
        })
        .collect();
    let hard = HardState {
        term: 2,
        voted_for: None,
        commit: 1,
    };
    let mut r = Raft::new(cfg, hard, log);
    while r.role() != Role::Candidate {
        r.tick();
    }
    r.step(
        2,
        Message::Vote {
            term: 3,
            granted: true,
        },
    );
    assert_eq!((r.role(), r.term(), r.last_index()), (Role::Leader, 3, 3));
    r.take_ready();
    r
}

/// Figure 8 of the raft paper (§5.4.2): a leader never commits an earlier term's entry by
/// counting replicas. Entry 2 (term 2) on a majority stays uncommitted until the leader's own
/// term-3 entry is on a majority too; then both commit.
#[test]
fn figure_8_a_leader_commits_by_counting_only_an_entry_of_its_own_term() {
    let mut r = leader_of_term_3_over_an_earlier_terms_entry();
    let ack = |match_index| Message::AppendResp {
        term: 3,
        success: true,
        match_index,
    };
    // Node 2 holds entry 2 (term 2) but not the no-op: entry 2 is on a majority (1 and 2).
    r.step(2, ack(2));
    let ready = r.take_ready();
    assert_eq!(r.commit_index(), 1, "entry 2 is from term 2: not committed");
    assert!(ready.committed.is_empty(), "{:?}", ready.committed);
    assert!(!ready
        .events
        .iter()
        .any(|e| matches!(e, RaftEvent::Committed { .. })));
    // The no-op of term 3 reaches node 2: it commits, and entry 2 with it.
    r.step(2, ack(3));
    let ready = r.take_ready();
    assert_eq!(r.commit_index(), 3);
    let applied: Vec<_> = ready.committed.iter().map(|e| e.index).collect();
    assert_eq!(applied, vec![2, 3]);
    assert!(ready.events.contains(&RaftEvent::Committed {
        index: 3,
        term: 3,
        entry_term: 3
    }));
}
