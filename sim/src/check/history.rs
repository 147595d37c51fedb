//! The raft checker: one canonical history of applied entries, checked online against every
//! raft property the harness can see from outside:
//! - state-machine safety: every node's applied sequence is a prefix of the canonical one;
//! - election safety: one leader per term, and one vote per voter per term across restarts;
//! - a node's term never goes backwards, across restarts included;
//! - leader completeness: a new leader's log reaches every applied entry, and a leader commits
//!   only through an entry of its own term;
//! - no node cuts an entry any node applied, in any incarnation.
//!
//! It cannot see a lost vote or term that no later message reveals, log contents a node never
//! applies (`end_logs` compares whole logs at the end), or persistence order inside a node.

use std::collections::BTreeMap;

use engine::observe::Event;
use engine::raft::{Index, NodeId, RaftEvent, Term};
use reports::{Violation, ViolationKind};

use super::record::{Online, Record};
use super::violation;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Applied {
    term: Term,
    digest: u64,
    node: NodeId,
    at_ms: u64,
}

#[derive(Default)]
pub struct History {
    leaders: BTreeMap<Term, (NodeId, u64)>,
    /// Who each voter voted for in each term (across its restarts).
    votes: BTreeMap<(NodeId, Term), (NodeId, u64)>,
    /// The highest term each node has shown, in any incarnation.
    max_term: BTreeMap<NodeId, (Term, u64)>,
    /// The highest index the leader of each term committed.
    commits: BTreeMap<Term, Index>,
    canonical: BTreeMap<Index, Applied>,
    /// Last index applied by each node's current incarnation.
    applied_upto: BTreeMap<NodeId, Index>,
    pub violations: Vec<Violation>,
    /// Per-kind cap so a diverged run does not report every later index.
    /// Per property (not per kind): a flood of one finding must not hide another.
    reported: BTreeMap<&'static str, u32>,
}

const MAX_PER_KIND: u32 = 5;

impl History {
    fn report(
        &mut self,
        property: &'static str,
        kind: ViolationKind,
        node: NodeId,
        at_ms: u64,
        msg: String,
    ) {
        let n = self.reported.entry(property).or_default();
        *n += 1;
        if *n <= MAX_PER_KIND {
            self.violations
                .push(violation(kind, Some(format!("n{node}")), at_ms, msg));
        }
    }

    /// A node incarnation started in `term`: it re-applies from its own state, and its term must
    /// be at least any term it showed before (terms are persisted before they are used).
    pub fn restarted(&mut self, node: NodeId, term: Term, at_ms: u64) {
        self.applied_upto.insert(node, 0);
        if let Some(&(before, t)) = self.max_term.get(&node) {
            if term < before {
                let msg = format!(
                    "restarted in term {term}, but it was in term {before} at {}: its term went backwards across a restart",
                    secs(t)
                );
                self.report(
                    "term-regression",
                    ViolationKind::RaftSafety,
                    node,
                    at_ms,
                    msg,
                );
            }
        }
        self.saw_term(node, term, at_ms);
    }

    /// Node `node` showed it is in `term` (an election event or a vote).
    pub fn saw_term(&mut self, node: NodeId, term: Term, at_ms: u64) {
        let e = self.max_term.entry(node).or_insert((term, at_ms));
        if term > e.0 {
            *e = (term, at_ms);
        }
    }

    /// `voter` granted its vote in `term` to `candidate`.
    pub fn voted(&mut self, voter: NodeId, term: Term, candidate: NodeId, at_ms: u64) {
        self.saw_term(voter, term, at_ms);
        match self.votes.get(&(voter, term)).copied() {
            Some((c, t)) if c != candidate => {
                let msg = format!(
                    "voted twice in term {term}: for n{c} at {} and for n{candidate}",
                    secs(t)
                );
                self.report("double-vote", ViolationKind::RaftSafety, voter, at_ms, msg);
            }
            Some(_) => {}
            None => {
                self.votes.insert((voter, term), (candidate, at_ms));
            }
        }
    }

    /// A leader advanced its commit index to `index`, whose entry is of `entry_term`.
    pub fn committed(
        &mut self,
        node: NodeId,
        index: Index,
        term: Term,
        entry_term: Term,
        at_ms: u64,
    ) {
        let c = self.commits.entry(term).or_default();
        *c = (*c).max(index);
        if entry_term != term {
            let msg = format!(
                "leader of term {term} committed through index {index}, an entry of term {entry_term}: a leader may count replicas only for its own term's entries"
            );
            self.report("commit-rule", ViolationKind::RaftSafety, node, at_ms, msg);
        }
    }

    /// Leader completeness at election: a leader of term T holds every entry committed in an
    /// earlier term (not those of later terms: a stale leader of a lower term is legal). Its log
    /// must reach the highest such index, with at least that entry's term (log terms never
    /// decrease, so a lower last term cannot hold it).
    pub fn leader_log(
        &mut self,
        node: NodeId,
        term: Term,
        last_index: Index,
        last_term: Term,
        at_ms: u64,
    ) {
        let Some(m) = self.commits.range(..term).map(|(_, i)| *i).max() else {
            return;
        };
        let entry_term = self.canonical.get(&m).map(|a| a.term);
        if last_index < m || entry_term.is_some_and(|t| last_term < t) {
            let who = match self.canonical.get(&m) {
                Some(a) => format!(
                    "{m}@t{} that n{} applied at {}",
                    a.term,
                    a.node,
                    secs(a.at_ms)
                ),
                None => format!("{m}"),
            };
            let msg = format!(
                "became leader of term {term} with its log ending at {last_index}@t{last_term}, without committed entry {who} (committed before term {term})"
            );
            self.report(
                "leader-completeness",
                ViolationKind::RaftSafety,
                node,
                at_ms,
                msg,
            );
        }
    }

    pub fn became_leader(&mut self, node: NodeId, term: Term, at_ms: u64) {
        self.saw_term(node, term, at_ms);
        match self.leaders.get(&term) {
            Some((other, t)) if *other != node => {
                let msg = format!(
                    "two leaders in term {term}: n{other} (at {}) and n{node}",
                    secs(*t)
                );
                self.report(
                    "election-safety",
                    ViolationKind::RaftSafety,
                    node,
                    at_ms,
                    msg,
                );
            }
            Some(_) => {}
            None => {
                self.leaders.insert(term, (node, at_ms));
            }
        }
    }

    pub fn applied(&mut self, node: NodeId, index: Index, term: Term, digest: u64, at_ms: u64) {
        let prev = self.applied_upto.insert(node, index).unwrap_or(0);
        if index <= prev {
            let msg =
                format!("applied index {index} after {prev}: applied sequence went backwards");
            self.report("apply-order", ViolationKind::RaftSafety, node, at_ms, msg);
        }
        match self.canonical.get(&index).copied() {
            None => {
                self.canonical.insert(
                    index,
                    Applied {
                        term,
                        digest,
                        node,
                        at_ms,
                    },
                );
            }
            Some(c) if c.term == term && c.digest == digest => {}
            Some(c) => {
                let msg = format!(
                    "applied index {index} as term {term} entry {digest:016x}, but n{} applied term {} entry {:016x} there at {}: state machines diverged",
                    c.node,
                    c.term,
                    c.digest,
                    secs(c.at_ms)
                );
                self.report(
                    "divergence",
                    ViolationKind::StateDivergence,
                    node,
                    at_ms,
                    msg,
                );
            }
        }
    }

    /// A node cut its log from `from`; `removed` holds the term and digest of each entry cut.
    pub fn truncated(
        &mut self,
        node: NodeId,
        from: Index,
        removed_last: Index,
        removed: &[(Term, u64)],
        at_ms: u64,
    ) {
        // Its own applied entries, in this incarnation (whatever their content).
        let upto = self.applied_upto.get(&node).copied().unwrap_or(0);
        if from <= upto {
            let msg = format!(
                "truncated committed entries {from}..={} it had already applied (applied up to {upto})",
                removed_last.min(upto)
            );
            self.report("truncation", ViolationKind::RaftSafety, node, at_ms, msg);
            return;
        }
        // Any node's applied entry, in any incarnation: the cut entry is the canonical one.
        let cut = removed.iter().zip(from..).find(|((t, d), i)| {
            self.canonical
                .get(i)
                .is_some_and(|c| c.term == *t && c.digest == *d)
        });
        if let Some(((t, _), i)) = cut {
            let c = self.canonical[&i];
            let msg = format!(
                "truncated entry {i}@t{t}, which n{} applied at {}: a committed entry was cut",
                c.node,
                secs(c.at_ms)
            );
            self.report("truncation", ViolationKind::RaftSafety, node, at_ms, msg);
        }
    }

    /// Whole logs at the end, `(index, term, digest)` per entry: terms never decrease along a
    /// log; two logs holding an entry of the same index and term hold the same entries up to it
    /// (log matching); every log holds each applied entry it reaches, and the leader's log
    /// reaches every applied entry (leader completeness, at rest).
    pub fn end_logs(
        &mut self,
        logs: &[(NodeId, Vec<(Index, Term, u64)>)],
        leader: Option<NodeId>,
        at_ms: u64,
    ) {
        for (node, log) in logs {
            if let Some(w) = log.windows(2).find(|w| w[1].1 < w[0].1) {
                let msg = format!(
                    "log terms decrease: entry {}@t{} follows {}@t{}",
                    w[1].0, w[1].1, w[0].0, w[0].1
                );
                self.report("log-terms", ViolationKind::RaftSafety, *node, at_ms, msg);
            }
            let wrong = log.iter().find(|(i, t, d)| {
                self.canonical
                    .get(i)
                    .is_some_and(|c| (c.term, c.digest) != (*t, *d))
            });
            if let Some((i, t, _)) = wrong {
                let c = self.canonical[i];
                let msg = format!(
                    "log holds {i}@t{t} where n{} applied {i}@t{}: a committed entry was replaced",
                    c.node, c.term
                );
                self.report("log-replaced", ViolationKind::RaftSafety, *node, at_ms, msg);
            }
            let last = self.canonical.keys().next_back().copied().unwrap_or(0);
            let reach = log.last().map_or(0, |e| e.0);
            if Some(*node) == leader && reach < last {
                let msg =
                    format!("the leader's log ends at {reach}, short of applied entry {last}");
                self.report(
                    "leader-log-end",
                    ViolationKind::RaftSafety,
                    *node,
                    at_ms,
                    msg,
                );
            }
        }
        for (a, la) in logs {
            for (b, lb) in logs.iter().filter(|(b, _)| b > a) {
                let bi: BTreeMap<Index, (Term, u64)> =
                    lb.iter().map(|(i, t, d)| (*i, (*t, *d))).collect();
                // The highest index where both hold an entry of the same term...
                let Some(&(m, _, _)) = la
                    .iter()
                    .rev()
                    .find(|(i, t, _)| bi.get(i).is_some_and(|(tb, _)| tb == t))
                else {
                    continue;
                };
                // ...below which every entry must be the same.
                let diff = la
                    .iter()
                    .take_while(|e| e.0 <= m)
                    .find(|(i, t, d)| bi.get(i) != Some(&(*t, *d)));
                if let Some((i, t, _)) = diff {
                    let msg = format!(
                        "log matching broken: n{a} and n{b} agree on entry {m}'s term but differ at {i} (n{a} has term {t})"
                    );
                    self.report("log-matching", ViolationKind::RaftSafety, *b, at_ms, msg);
                }
            }
        }
    }

    pub fn canonical_len(&self) -> usize {
        self.canonical.len()
    }
}

impl Online for History {
    fn record(&mut self, r: &Record<'_>) {
        let (node, at_ms) = (r.node, r.at_ms());
        match r.event {
            Event::Started { term, .. } => self.restarted(node, *term, at_ms),
            Event::Raft(e) => match e {
                RaftEvent::BecameLeader {
                    term,
                    last_index,
                    last_term,
                } => {
                    self.became_leader(node, *term, at_ms);
                    self.leader_log(node, *term, *last_index, *last_term, at_ms);
                }
                RaftEvent::BecameCandidate { term } | RaftEvent::BecameFollower { term, .. } => {
                    self.saw_term(node, *term, at_ms)
                }
                RaftEvent::VoteGranted {
                    term, candidate, ..
                } => self.voted(node, *term, *candidate, at_ms),
                RaftEvent::Committed {
                    index,
                    term,
                    entry_term,
                } => self.committed(node, *index, *term, *entry_term, at_ms),
                RaftEvent::Truncated {
                    from,
                    removed_last,
                    removed,
                    ..
                } => self.truncated(node, *from, *removed_last, removed, at_ms),
            },
            Event::Applied {
                index,
                term,
                digest,
                ..
            } => self.applied(node, *index, *term, *digest, at_ms),
            _ => {}
        }
    }

    fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.violations)
    }
}

fn secs(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_history_on_every_node_is_clean() {
        let mut h = History::default();
        for n in 1..=3 {
            h.restarted(n, 0, 0);
            for i in 1..=5 {
                h.applied(n, i, 1, i * 10, i);
            }
        }
        h.became_leader(1, 1, 0);
        h.became_leader(2, 2, 0);
        assert!(h.violations.is_empty());
        assert_eq!(h.canonical_len(), 5);
    }

    #[test]
    fn different_entry_at_an_index_is_divergence() {
        let mut h = History::default();
        h.applied(1, 1, 1, 0xa, 0);
        h.applied(2, 1, 2, 0xb, 5);
        assert_eq!(h.violations.len(), 1);
        assert_eq!(h.violations[0].kind, ViolationKind::StateDivergence);
        assert_eq!(h.violations[0].node.as_deref(), Some("n2"));
    }

    #[test]
    fn two_leaders_in_one_term() {
        let mut h = History::default();
        h.became_leader(1, 3, 0);
        h.became_leader(1, 3, 1); // same node again: fine
        h.became_leader(2, 3, 9);
        assert_eq!(h.violations.len(), 1);
        assert_eq!(h.violations[0].kind, ViolationKind::RaftSafety);
    }

    #[test]
    fn truncating_applied_entries_is_flagged_but_uncommitted_ones_are_not() {
        let mut h = History::default();
        h.restarted(1, 0, 0);
        h.applied(1, 1, 1, 1, 0);
        h.applied(1, 2, 1, 2, 0);
        h.truncated(1, 3, 4, &[(1, 3), (1, 4)], 1); // never applied: fine
        assert!(h.violations.is_empty());
        h.truncated(1, 2, 4, &[(1, 2), (1, 3), (1, 4)], 2);
        assert_eq!(h.violations[0].kind, ViolationKind::RaftSafety);
    }

    #[test]
    fn restart_reapplies_from_the_start() {
        let mut h = History::default();
        h.restarted(1, 0, 0);
        h.applied(1, 1, 1, 1, 0);
        h.restarted(1, 1, 3);
        h.applied(1, 1, 1, 1, 5);
        assert!(h.violations.is_empty());
    }

    #[test]
    fn cutting_an_entry_another_incarnation_applied_is_flagged() {
        let mut h = History::default();
        h.restarted(1, 0, 0);
        h.applied(1, 1, 1, 0xa, 0);
        h.applied(1, 2, 1, 0xb, 0);
        h.restarted(1, 1, 5); // a new incarnation has applied nothing yet
        h.truncated(1, 2, 2, &[(1, 0xc)], 6); // a different entry at 2: never applied, fine
        assert!(h.violations.is_empty());
        h.truncated(1, 2, 2, &[(1, 0xb)], 7); // the applied one
        assert_eq!(h.violations.len(), 1);
        assert!(h.violations[0].message.contains("committed entry was cut"));
    }

    #[test]
    fn two_votes_in_a_term_and_a_term_going_backwards() {
        let mut h = History::default();
        h.voted(1, 4, 2, 0);
        h.voted(1, 4, 2, 1); // the same vote again: fine
        assert!(h.violations.is_empty());
        h.restarted(1, 2, 5); // term 4 was shown before
        h.voted(1, 4, 3, 6);
        let msgs: Vec<&str> = h.violations.iter().map(|v| v.message.as_str()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("went backwards"));
        assert!(msgs[1].contains("voted twice in term 4"));
    }

    #[test]
    fn whole_logs_at_the_end() {
        let mut h = History::default();
        h.applied(1, 1, 1, 0xa, 0);
        h.applied(1, 2, 1, 0xb, 0);
        let good = vec![(1, 1, 0xa), (2, 1, 0xb), (3, 2, 0xc)];
        h.end_logs(&[(1, good.clone()), (2, good.clone())], Some(1), 9);
        assert!(h.violations.is_empty(), "{:?}", h.violations);
        let decreasing = vec![(1, 1, 0xa), (2, 1, 0xb), (3, 2, 0xc), (4, 1, 0xd)];
        let replaced = vec![(1, 1, 0xa), (2, 1, 0xe), (3, 2, 0xc)];
        h.end_logs(&[(1, good), (2, decreasing), (3, replaced)], Some(1), 9);
        let msgs: Vec<&str> = h.violations.iter().map(|v| v.message.as_str()).collect();
        assert!(
            msgs.iter().any(|m| m.contains("terms decrease")),
            "{msgs:?}"
        );
        assert!(msgs.iter().any(|m| m.contains("was replaced")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("log matching")), "{msgs:?}");
    }

    #[test]
    fn leader_completeness_and_commit_through_own_term() {
        let mut h = History::default();
        h.applied(1, 1, 1, 0xa, 0);
        h.committed(1, 1, 1, 1, 0);
        h.applied(1, 2, 2, 0xb, 0);
        h.committed(1, 2, 2, 2, 0);
        h.leader_log(5, 2, 1, 1, 1); // a leader of term 2 need not hold term 2's commits
        h.leader_log(2, 3, 2, 2, 1); // holds 2@t2: fine
        h.applied(2, 3, 3, 0xc, 1);
        h.committed(2, 3, 3, 3, 1);
        assert!(h.violations.is_empty());
        h.leader_log(3, 4, 5, 1, 2); // longer but with a lower last term: cannot hold 3@t3
        h.leader_log(3, 4, 1, 1, 2); // too short
        h.committed(3, 4, 4, 2, 3);
        assert_eq!(h.violations.len(), 3, "{:?}", h.violations);
    }
}
