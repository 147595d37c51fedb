//! The replicated state machine: named collections of key → document. Applying is a pure
//! function of the committed log, so replicas that applied the same prefix hash the same.

use std::collections::BTreeMap;

use crate::raft::{Entry, Index, Op};

pub type Collection = BTreeMap<String, Vec<u8>>;

/// What a reader sees, read in place: the harness compares it with its model around every
/// checkpoint install, where copying every document cost more than the comparison.
pub trait Visible {
    /// The collections a reader sees, in name order.
    fn collections(&self) -> Vec<&str>;
    /// Every document a reader sees in `collection`, each once, in no particular order.
    fn docs(&self, collection: &str, f: &mut dyn FnMut(&str, &[u8]));
}

impl Visible for BTreeMap<String, Collection> {
    fn collections(&self) -> Vec<&str> {
        self.keys().map(String::as_str).collect()
    }
    fn docs(&self, collection: &str, f: &mut dyn FnMut(&str, &[u8])) {
        for (k, v) in self.get(collection).into_iter().flatten() {
            f(k, v)
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateMachine {
    collections: BTreeMap<String, Collection>,
    /// Last applied operation number per client: retried duplicates are skipped.
    sessions: BTreeMap<u64, u64>,
    applied_index: Index,
    applied_ts: u64,
}

/// Hash and size of one collection (documents hashed in key order, like CheckReplDBHash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectionHash {
    pub hash: u64,
    pub count: u64,
}

impl StateMachine {
    pub fn applied_index(&self) -> Index {
        self.applied_index
    }
    pub fn applied_ts(&self) -> u64 {
        self.applied_ts
    }

    /// Applies one committed entry. Entries arrive in index order; a put into a missing
    /// collection creates it (like an implicit create), a drop of a missing one is a no-op.
    /// Returns false when the entry repeats a client operation already applied (a retry whose
    /// first attempt committed too): its effect is skipped so it cannot overwrite newer writes.
    pub fn apply(&mut self, e: &Entry) -> bool {
        invariant!(
            e.index > self.applied_index,
            "state machine: applying index {} after {}",
            e.index,
            self.applied_index
        );
        self.applied_index = e.index;
        self.applied_ts = self.applied_ts.max(e.ts);
        if let Some(s) = e.session {
            let last = self.sessions.entry(s.client).or_default();
            if s.seq <= *last {
                return false;
            }
            *last = s.seq;
        }
        match &e.op {
            // Key rotations change the keystore, not the documents (see `layered::Store`).
            Op::Noop | Op::Rotate(_) | Op::Get { .. } => {}
            Op::Append {
                collection,
                key,
                value,
            } => {
                self.collections
                    .entry(collection.clone())
                    .or_default()
                    .entry(key.clone())
                    .or_default()
                    .extend_from_slice(value);
            }
            Op::Put {
                collection,
                key,
                value,
            } => {
                self.collections
                    .entry(collection.clone())
                    .or_default()
                    .insert(key.clone(), value.clone());
            }
            Op::Delete { collection, key } => {
                if let Some(c) = self.collections.get_mut(collection) {
                    c.remove(key);
                }
            }
            Op::CreateCollection { name } => {
                self.collections.entry(name.clone()).or_default();
            }
            Op::DropCollection { name } => {
                self.collections.remove(name);
            }
        }
        true
    }

    pub fn get(&self, collection: &str, key: &str) -> Option<&Vec<u8>> {
        self.collections.get(collection)?.get(key)
    }

    pub fn collections(&self) -> &BTreeMap<String, Collection> {
        &self.collections
    }

    pub fn hashes(&self) -> BTreeMap<String, CollectionHash> {
        self.collections
            .iter()
            .map(|(name, c)| (name.clone(), hash_collection(c)))
            .collect()
    }
}

pub fn hash_collection(c: &Collection) -> CollectionHash {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (k, v) in c {
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        h.update(&(v.len() as u64).to_le_bytes());
        h.update(v);
    }
    CollectionHash {
        hash: h.digest(),
        count: c.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(i: Index, c: &str, k: &str, v: &str) -> Entry {
        Entry {
            term: 1,
            index: i,
            ts: i,
            op: Op::Put {
                collection: c.into(),
                key: k.into(),
                value: v.into(),
            },
            session: None,
        }
    }

    #[test]
    fn applies_puts_deletes_and_ddl() {
        let mut sm = StateMachine::default();
        sm.apply(&put(1, "a", "k1", "v1"));
        sm.apply(&put(2, "a", "k2", "v2"));
        sm.apply(&Entry {
            term: 1,
            index: 3,
            ts: 3,
            op: Op::Delete {
                collection: "a".into(),
                key: "k1".into(),
            },
            session: None,
        });
        sm.apply(&Entry {
            term: 1,
            index: 4,
            ts: 4,
            op: Op::CreateCollection { name: "b".into() },
            session: None,
        });
        assert_eq!(sm.get("a", "k2"), Some(&b"v2".to_vec()));
        assert_eq!(sm.get("a", "k1"), None);
        assert_eq!(sm.hashes()["b"].count, 0);
        sm.apply(&Entry {
            term: 1,
            index: 5,
            ts: 5,
            op: Op::DropCollection { name: "a".into() },
            session: None,
        });
        assert!(!sm.collections().contains_key("a"));
        assert_eq!(sm.applied_index(), 5);
    }

    #[test]
    fn hash_depends_on_content_not_history() {
        let mut x = StateMachine::default();
        x.apply(&put(1, "a", "k", "old"));
        x.apply(&put(2, "a", "k", "new"));
        let mut y = StateMachine::default();
        y.apply(&put(7, "a", "k", "new"));
        assert_eq!(x.hashes(), y.hashes());
        y.apply(&put(8, "a", "k2", "x"));
        assert_ne!(x.hashes(), y.hashes());
    }

    #[test]
    fn a_retried_operation_is_applied_once() {
        use crate::raft::Session;
        let mut sm = StateMachine::default();
        let mut first = put(1, "a", "k", "old");
        first.session = Some(Session { client: 7, seq: 1 });
        let mut newer = put(2, "a", "k", "new");
        newer.session = Some(Session { client: 8, seq: 1 });
        let mut zombie = put(3, "a", "k", "old"); // a late retry of client 7's op 1
        zombie.session = first.session;
        assert!(sm.apply(&first));
        assert!(sm.apply(&newer));
        assert!(!sm.apply(&zombie), "the duplicate is skipped");
        assert_eq!(sm.get("a", "k"), Some(&b"new".to_vec()));
        assert_eq!(sm.applied_index(), 3);
    }

    #[test]
    #[should_panic]
    fn applying_out_of_order_aborts() {
        let mut sm = StateMachine::default();
        sm.apply(&put(2, "a", "k", "v"));
        sm.apply(&put(1, "a", "k", "v"));
    }
}
