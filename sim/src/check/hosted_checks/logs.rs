//! One node's log as its records show it: which entries it holds, which of them are durable,
//! and what a snapshot or purge covers. Kept per node by `HostedChecks`; every operation is
//! O(log n) per entry it touches, so a run's records cost O(n log n) in all.

use std::collections::{BTreeMap, BTreeSet};

/// How a node holds one index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holding {
    /// At or below what its snapshot or purge covers (held, whatever the term).
    Covered(u64),
    /// An entry of this term, durable (flushed in this incarnation or loaded at start).
    Durable(u64),
    /// An entry of this term, appended and not yet flushed.
    Pending(u64),
    Missing,
}

#[derive(Debug, Default, Clone)]
pub(super) struct NodeLog {
    /// index → term of every entry the node's log holds now, durable or not.
    entries: BTreeMap<u64, u64>,
    /// The indexes of `entries` not yet durable.
    pending: BTreeSet<u64>,
    /// Every index at or below this is held through a snapshot (0: none).
    covered: u64,
}

/// Drops the elements of `set` at or below `upto`.
fn keep_above(set: &mut BTreeSet<u64>, upto: u64) {
    *set = match upto.checked_add(1) {
        Some(next) => set.split_off(&next),
        None => BTreeSet::new(),
    };
}

impl NodeLog {
    /// What a starting incarnation found on its disk (all durable).
    pub fn load(&mut self, entries: &[(u64, u64)], covered: u64) {
        self.entries = entries.iter().copied().collect();
        self.pending.clear();
        self.covered = covered;
    }

    /// Entries written, not yet durable. Re-writing an entry the log already holds durably
    /// (same index and term) leaves it durable.
    pub fn append(&mut self, entries: &[(u64, u64)]) {
        for &(i, t) in entries {
            if self.entries.get(&i) == Some(&t) && !self.pending.contains(&i) {
                continue;
            }
            self.entries.insert(i, t);
            self.pending.insert(i);
        }
    }

    /// Every entry at or below `upto` is durable.
    pub fn flush(&mut self, upto: u64) {
        keep_above(&mut self.pending, upto);
    }

    /// Removes the entries at and above `from`; returns the durable ones among them.
    pub fn truncate(&mut self, from: u64) -> Vec<(u64, u64)> {
        let cut = self.entries.split_off(&from);
        let cut_pending = self.pending.split_off(&from);
        cut.into_iter()
            .filter(|(i, _)| !cut_pending.contains(i))
            .collect()
    }

    /// A snapshot or purge holds everything through `upto` now: the log drops those entries.
    pub fn cover(&mut self, upto: u64) {
        self.covered = self.covered.max(upto);
        if let Some(next) = upto.checked_add(1) {
            self.entries = self.entries.split_off(&next);
        } else {
            self.entries.clear();
        }
        keep_above(&mut self.pending, upto);
    }

    /// The node lost what was not durable (killed; a new incarnation starts from its disk).
    pub fn drop_pending(&mut self) {
        for i in std::mem::take(&mut self.pending) {
            self.entries.remove(&i);
        }
    }

    pub fn holding(&self, index: u64) -> Holding {
        if index <= self.covered {
            return Holding::Covered(self.covered);
        }
        match self.entries.get(&index) {
            None => Holding::Missing,
            Some(&t) if self.pending.contains(&index) => Holding::Pending(t),
            Some(&t) => Holding::Durable(t),
        }
    }

    /// Whether the node holds entry `(index, term)` durably (a covered index counts).
    pub fn holds_durably(&self, index: u64, term: u64) -> bool {
        match self.holding(index) {
            Holding::Covered(_) => true,
            Holding::Durable(t) => t == term,
            Holding::Pending(_) | Holding::Missing => false,
        }
    }

    /// The term of the entry at `index`, durable or not (`None`: missing or covered).
    pub fn term_at(&self, index: u64) -> Option<u64> {
        self.entries.get(&index).copied()
    }

    /// The durable entries, in index order.
    pub fn durable(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.entries
            .iter()
            .filter(|(i, _)| !self.pending.contains(i))
            .map(|(i, t)| (*i, *t))
    }

    pub fn last(&self) -> Option<(u64, u64)> {
        self.entries.last_key_value().map(|(i, t)| (*i, *t))
    }

    /// How this node holds `(index, term)`, for a finding: `holds 12 term 2 unflushed`.
    pub fn describe(&self, index: u64, term: u64) -> String {
        match self.holding(index) {
            Holding::Covered(c) => format!("covers {index} by a snapshot through {c}"),
            Holding::Durable(t) if t == term => format!("holds {index} term {t} durably"),
            Holding::Durable(t) => format!("holds {index} term {t} instead"),
            Holding::Pending(t) if t == term => format!("holds {index} term {t} unflushed"),
            Holding::Pending(t) => format!("holds {index} term {t} instead, unflushed"),
            Holding::Missing => match self.last() {
                Some((i, t)) => format!("has nothing at {index} (its log ends at {i} term {t})"),
                None if self.covered > 0 => format!(
                    "has nothing at {index} (an empty log after a snapshot through {})",
                    self.covered
                ),
                None => format!("has nothing at {index} (an empty log)"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_makes_appended_entries_durable_up_to_its_index() {
        let mut log = NodeLog::default();
        log.append(&[(1, 1), (2, 1), (3, 1)]);
        log.flush(2);
        assert_eq!(log.holding(2), Holding::Durable(1));
        assert_eq!(log.holding(3), Holding::Pending(1));
        log.drop_pending();
        assert_eq!(log.holding(3), Holding::Missing);
        assert_eq!(log.last(), Some((2, 1)));
    }

    #[test]
    fn truncate_returns_only_the_durable_entries_it_cut() {
        let mut log = NodeLog::default();
        log.load(&[(1, 1), (2, 1)], 0);
        log.append(&[(3, 2)]);
        assert_eq!(log.truncate(2), vec![(2, 1)]);
        assert_eq!(log.last(), Some((1, 1)));
        assert_eq!(log.holding(3), Holding::Missing);
    }

    #[test]
    fn a_covered_index_is_held_whatever_the_term() {
        let mut log = NodeLog::default();
        log.append(&[(1, 1), (2, 1), (3, 2)]);
        log.flush(3);
        log.cover(2);
        assert!(log.holds_durably(1, 7));
        assert!(log.holds_durably(3, 2));
        assert!(!log.holds_durably(3, 1));
        assert_eq!(log.term_at(2), None);
        assert_eq!(log.durable().collect::<Vec<_>>(), vec![(3, 2)]);
        log.flush(u64::MAX);
        log.cover(u64::MAX);
        assert_eq!(log.last(), None);
    }

    #[test]
    fn rewriting_a_durable_entry_keeps_it_durable() {
        let mut log = NodeLog::default();
        log.load(&[(1, 1)], 0);
        log.append(&[(1, 1), (2, 1)]);
        assert_eq!(log.holding(1), Holding::Durable(1));
        log.append(&[(1, 2)]);
        assert_eq!(log.holding(1), Holding::Pending(2));
    }
}
