//! The raft checker: one canonical history of applied entries. Every node's applied sequence
//! must be a prefix of it (state-machine safety), at most one node may lead a term (election
//! safety), and no node may cut an entry some node already applied (committed entries are
//! never truncated).

use std::collections::BTreeMap;

use engine::raft::{Index, NodeId, Term};
use reports::{Violation, ViolationKind};

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
    canonical: BTreeMap<Index, Applied>,
    /// Last index applied by each node's current incarnation.
    applied_upto: BTreeMap<NodeId, Index>,
    pub violations: Vec<Violation>,
    /// Per-kind cap so a diverged run does not report every later index.
    reported: BTreeMap<ViolationKind, u32>,
}

const MAX_PER_KIND: u32 = 5;

impl History {
    fn report(&mut self, kind: ViolationKind, node: NodeId, at_ms: u64, msg: String) {
        let n = self.reported.entry(kind).or_default();
        *n += 1;
        if *n <= MAX_PER_KIND {
            self.violations
                .push(violation(kind, Some(format!("n{node}")), at_ms, msg));
        }
    }

    /// A node incarnation started: it re-applies from its own state.
    pub fn restarted(&mut self, node: NodeId) {
        self.applied_upto.insert(node, 0);
    }

    pub fn became_leader(&mut self, node: NodeId, term: Term, at_ms: u64) {
        match self.leaders.get(&term) {
            Some((other, t)) if *other != node => {
                let msg = format!(
                    "two leaders in term {term}: n{other} (at {}) and n{node}",
                    secs(*t)
                );
                self.report(ViolationKind::RaftSafety, node, at_ms, msg);
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
            self.report(ViolationKind::RaftSafety, node, at_ms, msg);
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
                self.report(ViolationKind::StateDivergence, node, at_ms, msg);
            }
        }
    }

    /// A node cut its log from `from` (entries `from..=removed_last` removed).
    pub fn truncated(&mut self, node: NodeId, from: Index, removed_last: Index, at_ms: u64) {
        // An applied entry is committed; the node's own removed entries were the ones it applied
        // if it had applied past `from` in this incarnation.
        let upto = self.applied_upto.get(&node).copied().unwrap_or(0);
        if from <= upto {
            let msg = format!(
                "truncated committed entries {from}..={} it had already applied (applied up to {upto})",
                removed_last.min(upto)
            );
            self.report(ViolationKind::RaftSafety, node, at_ms, msg);
        }
    }

    pub fn canonical_len(&self) -> usize {
        self.canonical.len()
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
            h.restarted(n);
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
        h.restarted(1);
        h.applied(1, 1, 1, 1, 0);
        h.applied(1, 2, 1, 2, 0);
        h.truncated(1, 3, 4, 1); // never applied: fine
        assert!(h.violations.is_empty());
        h.truncated(1, 2, 4, 2);
        assert_eq!(h.violations[0].kind, ViolationKind::RaftSafety);
    }

    #[test]
    fn restart_reapplies_from_the_start() {
        let mut h = History::default();
        h.restarted(1);
        h.applied(1, 1, 1, 1, 0);
        h.restarted(1);
        h.applied(1, 1, 1, 1, 5);
        assert!(h.violations.is_empty());
    }
}
