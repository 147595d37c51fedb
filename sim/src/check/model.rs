//! The reference model: the canonical committed sequence replayed on `engine::state`, the plain
//! state machine, with every document's versions kept by index. A replica's visible state (what
//! a read on it returns: base ⊕ in-flight ⊕ dirty ⊕ ingest) must equal the model at the
//! replica's applied index — checked while faults run, on both sides of every checkpoint
//! install and at the end of the fault phase, before the liveness phase makes every replica a
//! copy of the leader's checkpoint. It sees a wrong follower apply or read path the moment it
//! shows; it cannot see a bug that leaves what readers see right (block accounting: `validate`)
//! or state it is never shown (a node that is down at every sample).

use std::collections::{BTreeMap, BTreeSet};

use engine::observe::Event;
use engine::raft::{Entry, Index, Op, Session, Term};
use engine::state::{Collection, StateMachine, Visible};
use reports::{Violation, ViolationKind};

use super::record::{Online, Record};
use super::snapshot::node_name;
use super::violation;

type DocKey = (String, String);

/// The count of a set of documents and the sum of their hashes: equal sets give equal
/// digests, whatever order they are visited in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Digest {
    count: u64,
    sum: u64,
}

impl Digest {
    // Wrapping both ways: a digest that went wrong must read as "different" (and send the
    // comparison down the authoritative path), never panic the harness.
    fn add(&mut self, key: &str, value: &[u8]) {
        self.count = self.count.wrapping_add(1);
        self.sum = self.sum.wrapping_add(doc_hash(key, value));
    }
    fn remove(&mut self, key: &str, value: &[u8]) {
        self.count = self.count.wrapping_sub(1);
        self.sum = self.sum.wrapping_sub(doc_hash(key, value));
    }
}

fn doc_hash(key: &str, value: &[u8]) -> u64 {
    use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};
    xxh3_64_with_seed(value, xxh3_64(key.as_bytes()))
}

/// How far below its tip the model judges a state by undoing the later changes (`equals_at`);
/// further down it walks every document's versions.
const CHEAP_WALK: Index = 64;

/// One change of a document or a collection: the index that made it and what it left.
#[derive(Debug, Clone)]
struct Version<T> {
    index: Index,
    after: T,
}

#[derive(Default)]
pub struct Model {
    sm: StateMachine,
    /// Canonical entries above the model's applied index, waiting for the gap below to fill.
    waiting: BTreeMap<Index, (Term, Op, Option<Session>)>,
    /// Every version of every document, by collection then key (looked up by `&str`).
    docs: BTreeMap<String, BTreeMap<String, Vec<Version<Option<Vec<u8>>>>>>,
    /// Per collection at the tip: its documents' count and the sum of their hashes, kept as
    /// they change, so a replica's whole state is compared without a lookup per document.
    digests: BTreeMap<String, Digest>,
    tables: BTreeMap<String, Vec<Version<bool>>>,
    /// The model's execute/skip decision per index (a duplicate client operation is skipped).
    /// Indexed by `index - 1`: the model applies every index in order.
    executed: Vec<bool>,
    /// Where each client operation took effect.
    took_effect: BTreeMap<Session, Index>,
    /// Term of each canonical index, for matching acknowledgements.
    /// Indexed by `index - 1`, like `executed`.
    terms: Vec<(Term, Option<Session>)>,
    /// Documents and collections each index changed, to rebuild the state just below the tip.
    changed_at: BTreeMap<Index, (Vec<DocKey>, Vec<String>)>,
    /// Comparisons made (coverage: a model check that never ran proved nothing).
    pub comparisons: u64,
    /// Execute/skip decisions that differ from the model's (online).
    violations: Vec<Violation>,
    decisions_reported: u32,
    /// The client operations those findings name, for the timeline.
    pub named_sessions: Vec<(Session, ViolationKind)>,
}

/// Where the model and a replica first disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub collection: String,
    /// `None`: the collection itself exists on one side only.
    pub key: Option<String>,
    pub replica: Option<Vec<u8>>,
    pub model: Option<Vec<u8>>,
    /// Index of the model's last change to that document or collection.
    pub model_changed_at: Option<Index>,
}

impl Model {
    /// Highest index the model has applied (every canonical index up to it is known).
    pub fn applied(&self) -> Index {
        self.sm.applied_index()
    }

    /// An entry of the canonical committed history, seen for the first time.
    pub fn offer(&mut self, index: Index, term: Term, op: Op, session: Option<Session>) {
        if index <= self.applied() {
            return;
        }
        // The first node to apply an index defines it (a divergent one is `history`'s finding).
        self.waiting.entry(index).or_insert((term, op, session));
        while let Some((term, op, session)) = self.waiting.remove(&(self.applied() + 1)) {
            self.apply(self.applied() + 1, term, op, session);
        }
    }

    fn apply(&mut self, index: Index, term: Term, op: Op, session: Option<Session>) {
        // The documents this entry can change, read back after applying.
        let touched: Vec<DocKey> = match &op {
            Op::Put {
                collection, key, ..
            }
            | Op::Append {
                collection, key, ..
            }
            | Op::Delete { collection, key } => vec![(collection.clone(), key.clone())],
            Op::DropCollection { name } => self
                .sm
                .collections()
                .get(name)
                .map(|c| c.keys().map(|k| (name.clone(), k.clone())).collect())
                .unwrap_or_default(),
            Op::Noop | Op::Get { .. } | Op::CreateCollection { .. } | Op::Rotate(_) => vec![],
        };
        let table = match &op {
            Op::Put { collection, .. }
            | Op::Append { collection, .. }
            | Op::Delete { collection, .. } => Some(collection.clone()),
            Op::DropCollection { name } | Op::CreateCollection { name } => Some(name.clone()),
            _ => None,
        };
        let existed = table
            .as_ref()
            .map(|t| self.sm.collections().contains_key(t));
        let entry = Entry {
            term,
            index,
            ts: 0,
            op,
            session,
        };
        let executed = self.sm.apply(&entry);
        debug_assert_eq!(self.executed.len() as Index, index - 1, "applied in order");
        self.executed.push(executed);
        self.terms.push((term, session));
        if let (true, Some(s)) = (executed, session) {
            self.took_effect.insert(s, index);
        }
        let mut changed = (Vec::new(), Vec::new());
        for (c, k) in touched {
            let after = self.sm.get(&c, &k).cloned();
            let versions = match self.docs.get_mut(&c).and_then(|keys| keys.get_mut(&k)) {
                Some(v) => v,
                None => self
                    .docs
                    .entry(c.clone())
                    .or_default()
                    .entry(k.clone())
                    .or_default(),
            };
            let before = versions.last().and_then(|v| v.after.as_ref());
            if before != after.as_ref() {
                let digest = match self.digests.get_mut(&c) {
                    Some(d) => d,
                    None => self.digests.entry(c.clone()).or_default(),
                };
                if let Some(v) = before {
                    digest.remove(&k, v);
                }
                if let Some(v) = &after {
                    digest.add(&k, v);
                }
                versions.push(Version { index, after });
                changed.0.push((c, k));
            }
        }
        if let (Some(t), Some(before)) = (table, existed) {
            let now = self.sm.collections().contains_key(&t);
            if now != before {
                self.tables
                    .entry(t.clone())
                    .or_default()
                    .push(Version { index, after: now });
                changed.1.push(t);
            }
        }
        if !changed.0.is_empty() || !changed.1.is_empty() {
            self.changed_at.insert(index, changed);
        }
    }

    /// The model's decision for `index`: executed (`true`) or skipped as a duplicate.
    pub fn executed(&self, index: Index) -> Option<bool> {
        let i = usize::try_from(index.checked_sub(1)?).ok()?;
        self.executed.get(i).copied()
    }

    /// Where client operation `s` took effect, if it has.
    pub fn took_effect(&self, s: Session) -> Option<Index> {
        self.took_effect.get(&s).copied()
    }

    /// Term and session of the canonical entry at `index`.
    pub fn entry_at(&self, index: Index) -> Option<(Term, Option<Session>)> {
        let i = usize::try_from(index.checked_sub(1)?).ok()?;
        self.terms.get(i).copied()
    }

    /// A document's value as of `index` (absent: `None`).
    pub fn value_at(&self, collection: &str, key: &str, index: Index) -> Option<&Vec<u8>> {
        let versions = self.docs.get(collection)?.get(key)?;
        last_at(versions, index)?.after.as_ref()
    }

    fn doc_changed_at(&self, (c, k): &DocKey, index: Index) -> Option<Index> {
        self.docs
            .get(c)
            .and_then(|keys| keys.get(k))
            .and_then(|v| last_at(v, index))
            .map(|v| v.index)
    }

    fn table_at(&self, name: &str, index: Index) -> (bool, Option<Index>) {
        match self.tables.get(name).and_then(|v| last_at(v, index)) {
            Some(v) => (v.after, Some(v.index)),
            None => (false, None),
        }
    }

    /// Compares what a replica applied to `index` shows with the model at that index; the first
    /// difference in (collection, key) order. `None` also when the model cannot answer yet.
    pub fn compare(
        &mut self,
        index: Index,
        data: &BTreeMap<String, Collection>,
    ) -> Option<Mismatch> {
        if index > self.applied() {
            return None;
        }
        self.comparisons += 1;
        // Fast path: the state at `index` is the tip with the few later changes undone; equal
        // maps need no walk over every document's versions.
        if self.applied() - index <= CHEAP_WALK && self.equals_at(index, data) {
            return None;
        }
        self.first_difference(index, data)
    }

    /// Whether a replica applied to `index` shows exactly the model's state there, judged on
    /// borrowed data: `Some(true)` equal (counted as a comparison), `Some(false)` different
    /// (find the difference with `compare` on a copy), `None` when this cannot tell: the model
    /// is behind `index`, or `index` is too far below its tip for the cheap walk.
    pub fn matches(&mut self, index: Index, data: &dyn Visible) -> Option<bool> {
        if index > self.applied() || self.applied() - index > CHEAP_WALK {
            return None;
        }
        let equal = self.equals_at(index, data);
        if equal {
            self.comparisons += 1;
        }
        Some(equal)
    }

    /// The slow, authoritative walk: every collection and document against its versions.
    fn first_difference(
        &self,
        index: Index,
        data: &BTreeMap<String, Collection>,
    ) -> Option<Mismatch> {
        let mut names: Vec<&String> = self.tables.keys().chain(data.keys()).collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let (exists, changed) = self.table_at(name, index);
            if exists != data.contains_key(name) {
                return Some(Mismatch {
                    collection: name.clone(),
                    key: None,
                    replica: None,
                    model: None,
                    model_changed_at: changed,
                });
            }
        }
        // Every document the model ever had, then any the replica has that it never had.
        for (c, keys) in &self.docs {
            for (k, versions) in keys {
                let model = last_at(versions, index).and_then(|v| v.after.as_ref());
                let replica = data.get(c).and_then(|col| col.get(k));
                if model != replica {
                    return Some(self.mismatch(c, k, replica, index));
                }
            }
        }
        for (c, col) in data {
            for (k, v) in col {
                if !self.docs.get(c).is_some_and(|keys| keys.contains_key(k)) {
                    return Some(self.mismatch(c, k, Some(v), index));
                }
            }
        }
        None
    }

    /// Documents and collections the committed history changed in `(after, upto]`: what a
    /// replica that matched the model at `after` must show anew at `upto`.
    pub fn changed_between(&self, after: Index, upto: Index) -> (Vec<DocKey>, Vec<String>) {
        let (mut docs, mut tables) = (Vec::new(), Vec::new());
        if upto <= after {
            return (docs, tables);
        }
        for (d, t) in self.changed_at.range(after + 1..=upto).map(|(_, c)| c) {
            docs.extend(d.iter().cloned());
            tables.extend(t.iter().cloned());
        }
        docs.sort_unstable();
        docs.dedup();
        tables.sort_unstable();
        tables.dedup();
        (docs, tables)
    }

    /// Compares some documents and collections of a replica at `index` with the model.
    pub fn compare_some(
        &mut self,
        index: Index,
        docs: &[DocKey],
        values: &[Option<Vec<u8>>],
        tables: &[String],
        exist: &[bool],
    ) -> Option<Mismatch> {
        if index > self.applied() {
            return None;
        }
        self.comparisons += 1;
        for (t, e) in tables.iter().zip(exist) {
            let (exists, changed) = self.table_at(t, index);
            if exists != *e {
                return Some(Mismatch {
                    collection: t.clone(),
                    key: None,
                    replica: None,
                    model: None,
                    model_changed_at: changed,
                });
            }
        }
        for ((c, k), v) in docs.iter().zip(values) {
            if self.value_at(c, k, index) != v.as_ref() {
                return Some(self.mismatch(c, k, v.as_ref(), index));
            }
        }
        None
    }

    /// The model's collections as of `index` (at most a few entries below the tip: it patches
    /// a copy of the tip).
    /// Whether `data` is the model's state at `index` (at most a few entries below the tip):
    /// the tip compared in place, the documents and tables changed after `index` looked up at
    /// `index`. The same answer as `*data == self.state_at(index)` without copying the whole
    /// state (a test holds them equal); the comparisons around every checkpoint install made
    /// those copies the checkers' largest cost.
    fn equals_at(&self, index: Index, data: &dyn Visible) -> bool {
        // Documents and tables changed after `index`, by collection.
        let mut docs: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut tables: BTreeSet<&str> = Default::default();
        for (d, t) in self.changed_at.range(index + 1..).map(|(_, c)| c) {
            for (c, k) in d {
                docs.entry(c.as_str()).or_default().insert(k.as_str());
            }
            tables.extend(t.iter().map(String::as_str));
        }
        let tip = self.sm.collections();
        let exists = |t: &str| {
            if tables.contains(t) {
                self.table_at(t, index).0
            } else {
                tip.contains_key(t)
            }
        };
        // Tables: every one the tip, the replica or a later change names.
        let seen: BTreeSet<&str> = data.collections().into_iter().collect();
        let named = tip.keys().map(String::as_str).chain(seen.iter().copied());
        if named
            .chain(tables.iter().copied())
            .any(|t| exists(t) != seen.contains(t))
        {
            return false;
        }
        let empty = Collection::new();
        let none = BTreeSet::new();
        for c in seen {
            // The model's digest at `index`: the tip's, with the later-changed documents'
            // values at the tip taken out and their values at `index` put back.
            let tip_col = tip.get(c).unwrap_or(&empty);
            let mut want = self.digests.get(c).copied().unwrap_or_default();
            for k in docs.get(c).unwrap_or(&none) {
                if let Some(v) = tip_col.get(*k) {
                    want.remove(k, v);
                }
                if let Some(v) = self.value_at(c, k, index) {
                    want.add(k, v);
                }
            }
            let mut shown = Digest::default();
            data.docs(c, &mut |k, v| shown.add(k, v));
            if shown != want {
                return false;
            }
        }
        true
    }

    /// The state at `index`, rebuilt (tests hold `equals_at` to it).
    #[cfg(test)]
    fn state_at(&self, index: Index) -> BTreeMap<String, Collection> {
        let mut state = self.sm.collections().clone();
        for (docs, tables) in self.changed_at.range(index + 1..).map(|(_, c)| c) {
            for t in tables {
                if self.table_at(t, index).0 {
                    state.entry(t.clone()).or_default();
                } else {
                    state.remove(t);
                }
            }
            for (c, k) in docs {
                match self.value_at(c, k, index) {
                    Some(v) => {
                        state
                            .entry(c.clone())
                            .or_default()
                            .insert(k.clone(), v.clone());
                    }
                    None => {
                        if let Some(col) = state.get_mut(c) {
                            col.remove(k);
                        }
                    }
                }
            }
        }
        state
    }

    fn mismatch(&self, c: &str, k: &str, replica: Option<&Vec<u8>>, index: Index) -> Mismatch {
        let key = (c.to_string(), k.to_string());
        Mismatch {
            collection: c.to_string(),
            key: Some(k.to_string()),
            replica: replica.cloned(),
            model: self.value_at(c, k, index).cloned(),
            model_changed_at: self.doc_changed_at(&key, index),
        }
    }
}

impl Online for Model {
    /// Applied entries feed the model; each node's execute/skip decision for a client operation
    /// must be the model's: executing a duplicate applies its effect twice (at-most-once is
    /// broken), skipping a first attempt loses it.
    fn record(&mut self, r: &Record<'_>) {
        let Event::Applied {
            index,
            term,
            executed,
            op,
            session,
            ..
        } = r.event
        else {
            return;
        };
        if *index > self.applied() {
            self.offer(*index, *term, op.clone(), *session);
        }
        let (Some(decided), Some(s)) = (self.executed(*index), session) else {
            return;
        };
        if decided == *executed || self.decisions_reported >= 5 {
            return;
        }
        self.decisions_reported += 1;
        let name = node_name(r.node);
        let (kind, msg) = if *executed {
            let first = self
                .took_effect(*s)
                .map_or("earlier".to_string(), |i| format!("at index {i}"));
            (
                ViolationKind::Linearizability,
                format!(
                    "{name} executed client {} op {} again at index {index}: it already took effect {first} (an operation must take effect at most once)",
                    s.client, s.seq
                ),
            )
        } else {
            (
                ViolationKind::StateDivergence,
                format!(
                    "{name} skipped client {} op {} at index {index} as a duplicate, but it had not taken effect before: its effect is lost",
                    s.client, s.seq
                ),
            )
        };
        self.violations
            .push(violation(kind, Some(name), r.at_ms(), msg));
        self.named_sessions.push((*s, kind));
    }

    fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.violations)
    }
}

fn last_at<T>(versions: &[Version<T>], index: Index) -> Option<&Version<T>> {
    let n = versions.partition_point(|v| v.index <= index);
    n.checked_sub(1).map(|i| &versions[i])
}

pub fn show(v: Option<&Vec<u8>>) -> String {
    match v {
        None => "<absent>".into(),
        Some(b) if b.len() > 48 => format!(
            "{:?}...({} bytes)",
            String::from_utf8_lossy(&b[..48]),
            b.len()
        ),
        Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
    }
}

/// The `model-divergence` finding for a mismatch on `node` at `index`; `when` says which
/// sample found it and `layer` which of the node's layers produced its value.
pub fn divergence(
    node: &str,
    index: Index,
    when: &str,
    m: &Mismatch,
    layer: &str,
    at_ms: u64,
) -> Violation {
    let at = m.model_changed_at.map_or("never changed".to_string(), |i| {
        format!("last changed at index {i}")
    });
    let msg = match &m.key {
        None => format!(
            "{node} at applied index {index} ({when}): collection {} exists on one side only (the reference model's {at})",
            m.collection
        ),
        Some(k) => format!(
            "{node} at applied index {index} ({when}): {}/{k} reads {} but the reference model has {} ({at}); the value came from {layer}",
            m.collection,
            show(m.replica.as_ref()),
            show(m.model.as_ref()),
        ),
    };
    violation(
        ViolationKind::ModelDivergence,
        Some(node.to_string()),
        at_ms,
        msg,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(c: &str, k: &str, v: &str) -> Op {
        Op::Put {
            collection: c.into(),
            key: k.into(),
            value: v.into(),
        }
    }

    fn data(pairs: &[(&str, &str, &str)]) -> BTreeMap<String, Collection> {
        let mut d: BTreeMap<String, Collection> = BTreeMap::new();
        for (c, k, v) in pairs {
            d.entry(c.to_string())
                .or_default()
                .insert(k.to_string(), v.as_bytes().to_vec());
        }
        d
    }

    #[test]
    fn versions_answer_any_past_index() {
        let mut m = Model::default();
        m.offer(1, 1, put("a", "k", "v1"), None);
        m.offer(3, 1, put("a", "k", "v3"), None); // waits for index 2
        assert_eq!(m.applied(), 1);
        m.offer(2, 1, put("a", "j", "x"), None);
        assert_eq!(m.applied(), 3);
        assert_eq!(m.value_at("a", "k", 2), Some(&b"v1".to_vec()));
        assert_eq!(m.value_at("a", "k", 3), Some(&b"v3".to_vec()));
        assert_eq!(
            m.compare(2, &data(&[("a", "k", "v1"), ("a", "j", "x")])),
            None
        );
        let miss = m
            .compare(3, &data(&[("a", "k", "v1"), ("a", "j", "x")]))
            .unwrap();
        assert_eq!(miss.key.as_deref(), Some("k"));
        assert_eq!(miss.model_changed_at, Some(3));
    }

    #[test]
    fn drops_deletes_and_appends_follow_the_state_machine() {
        let mut m = Model::default();
        m.offer(1, 1, put("a", "k", "v"), None);
        let append = Op::Append {
            collection: "a".into(),
            key: "l".into(),
            value: b"1;".to_vec(),
        };
        m.offer(2, 1, append.clone(), None);
        m.offer(3, 1, append, None);
        assert_eq!(m.value_at("a", "l", 3), Some(&b"1;1;".to_vec()));
        m.offer(4, 1, Op::DropCollection { name: "a".into() }, None);
        assert_eq!(m.compare(4, &BTreeMap::new()), None);
        let miss = m.compare(4, &data(&[("a", "k", "v")])).unwrap();
        assert_eq!(miss.key, None, "the collection should be gone");
        assert_eq!(
            m.compare(3, &data(&[("a", "k", "v"), ("a", "l", "1;1;")])),
            None
        );
    }

    #[test]
    fn a_duplicate_session_is_skipped_and_remembered() {
        let mut m = Model::default();
        let s = Some(Session { client: 1, seq: 1 });
        m.offer(1, 1, put("a", "k", "v"), s);
        m.offer(2, 1, put("a", "k", "v"), s);
        assert_eq!(m.executed(1), Some(true));
        assert_eq!(m.executed(2), Some(false));
        assert_eq!(m.took_effect(s.unwrap()), Some(1));
    }

    #[test]
    fn the_state_just_below_the_tip_is_rebuilt_exactly() {
        // A deterministic mix of puts, appends, deletes, drops and creates over few keys.
        let mut m = Model::default();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 1..=300 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (c, k) = (format!("c{}", x % 3), format!("k{}", (x >> 8) % 5));
            let op = match (x >> 16) % 10 {
                0 => Op::DropCollection { name: c },
                1 => Op::CreateCollection { name: c },
                2 | 3 => Op::Delete {
                    collection: c,
                    key: k,
                },
                4 | 5 => Op::Append {
                    collection: c,
                    key: k,
                    value: format!("{i};").into_bytes(),
                },
                _ => Op::Put {
                    collection: c,
                    key: k,
                    value: format!("v{i}").into_bytes(),
                },
            };
            m.offer(i, 1, op, None);
            for back in 0..=8.min(i - 1) {
                let at = i - back;
                let st = m.state_at(at);
                assert_eq!(m.first_difference(at, &st), None, "index {at} at tip {i}");
                // The clone-free equality agrees with the rebuilt state, on it and on states
                // one step off it (another index's state, a document changed, added, removed,
                // a table added or removed).
                assert!(m.equals_at(at, &st), "index {at} at tip {i}");
                for other in (at.saturating_sub(3)..=i).filter(|o| *o >= 1) {
                    let o = m.state_at(other);
                    assert_eq!(m.equals_at(at, &o), o == st, "{other} vs {at} at tip {i}");
                }
                let mut off = st.clone();
                if let Some((c, col)) = off.iter_mut().next() {
                    let c = c.clone();
                    match col.keys().next().cloned() {
                        Some(k) if x % 2 == 0 => {
                            col.remove(&k);
                        }
                        Some(k) => {
                            col.insert(k, b"wrong".to_vec());
                        }
                        None => {
                            off.remove(&c);
                        }
                    }
                    assert!(!m.equals_at(at, &off), "changed {c} at {at} tip {i}");
                }
                let mut extra = st.clone();
                extra
                    .entry("c0".into())
                    .or_default()
                    .insert("new".into(), b"n".to_vec());
                assert!(!m.equals_at(at, &extra));
                let mut table = st.clone();
                table.insert("zz".into(), Default::default());
                assert!(!m.equals_at(at, &table));
                // What changed since `at` is all a replica that matched there must show anew.
                let (docs, tables) = m.changed_between(at, i);
                let now = m.state_at(i);
                let values: Vec<_> = docs
                    .iter()
                    .map(|(c, k)| now.get(c).and_then(|d| d.get(k)).cloned())
                    .collect();
                let exist: Vec<_> = tables.iter().map(|t| now.contains_key(t)).collect();
                assert_eq!(m.compare_some(i, &docs, &values, &tables, &exist), None);
                assert_eq!(m.changed_between(i, i), (vec![], vec![]));
            }
        }
    }

    #[test]
    fn a_document_the_model_never_had_is_a_mismatch() {
        let mut m = Model::default();
        m.offer(1, 1, put("a", "k", "v"), None);
        let miss = m
            .compare(1, &data(&[("a", "k", "v"), ("a", "ghost", "g")]))
            .unwrap();
        assert_eq!(miss.key.as_deref(), Some("ghost"));
        assert_eq!(miss.model, None);
    }
}
