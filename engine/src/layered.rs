//! Layered tables: what a replica's collections are made of. Every collection is a stable
//! table (the pages of the checkpoint this node is based on, shared through the page service)
//! with overlays on top:
//!
//! - `dirty` — the leader's writes to its stable tables since the base checkpoint, reconciled
//!   into pages by its next checkpoint (empty on followers);
//! - `ingest` — a follower's applied oplog since the base checkpoint, pruned when it picks up a
//!   newer checkpoint (empty on the leader).
//!
//! Reads see `base ⊕ in-flight checkpoint ⊕ dirty ⊕ ingest`. Both overlays are the same
//! [`Delta`] structure, so draining ingest into stable on step-up (and back on step-down) is a
//! merge, and every layer is a pure function of the committed log.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::handles::Handles;
use crate::keystore::{Keystore, KeystoreRef};
use crate::pages::{Cookie, Docs, PageId};
use crate::raft::{Entry, Index, Op, Term};
use crate::state::{hash_collection, Collection, CollectionHash};

/// Space every published database size keeps on top of the tables' bytes.
pub const DATABASE_SIZE_BUFFER: u64 = 1 << 20;

/// One stable table's root in a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRoot {
    /// Each page's chain of blocks: a full image, then deltas, oldest first.
    pub pages: BTreeMap<PageId, Vec<Cookie>>,
    /// Bytes of the table's live blocks, as the block manager accounted them.
    pub bytes_total: u64,
    pub record_count: u64,
}

impl TableRoot {
    /// Σ sizes of the blocks the root references: what `bytes_total` must equal.
    pub fn live_bytes(&self) -> u64 {
        self.pages.values().flatten().map(|c| c.size as u64).sum()
    }
    pub fn cookies(&self) -> impl Iterator<Item = &Cookie> {
        self.pages.values().flatten()
    }
}

/// The metadata page of a checkpoint, as published to the page service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Increasing across leaders: a new leader continues from the newest published one.
    pub id: u64,
    /// Term of the leader that wrote it.
    pub term: Term,
    /// Checkpoint timestamp: the timestamp of the last entry it includes.
    pub ts: u64,
    pub applied_index: Index,
    pub applied_term: Term,
    pub tables: BTreeMap<String, TableRoot>,
    /// Σ bytes_total + [`DATABASE_SIZE_BUFFER`].
    pub database_size: u64,
    /// Client sessions at `applied_index`, so a node based on this checkpoint dedups retries.
    pub sessions: BTreeMap<u64, u64>,
    /// The keystore page: written by an earlier flush, so it may lag the keystore at the cut.
    pub keystore: Option<KeystoreRef>,
    /// Timestamp of the committed keystore at the cut (what `keystore` would hold if flushed).
    pub keystore_ts: u64,
}

impl CheckpointMeta {
    pub fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("checkpoint metadata serializes")
    }
    pub fn decode(bytes: &[u8]) -> Result<CheckpointMeta, String> {
        bincode::deserialize(bytes).map_err(|e| e.to_string())
    }
    pub fn bytes_total(&self) -> u64 {
        self.tables.values().map(|t| t.bytes_total).sum()
    }
}

/// A checkpoint materialized in memory: its metadata and each page's documents. Pages are
/// shared (`Arc`), so a new view that changes a few pages copies only those.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StableView {
    pub meta: Arc<CheckpointMeta>,
    pub pages: BTreeMap<String, BTreeMap<PageId, Arc<Docs>>>,
}

impl StableView {
    pub fn has(&self, table: &str) -> bool {
        self.meta.tables.contains_key(table)
    }
    pub fn docs(&self, table: &str) -> Collection {
        let mut out = Collection::new();
        if let Some(pages) = self.pages.get(table) {
            for p in pages.values() {
                out.extend(p.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        out
    }
}

/// Changes to one table since the layer below.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDelta {
    /// Timestamp of the latest drop: the layers below are hidden.
    pub masked_ts: Option<u64>,
    /// Timestamp at which the table (re)appeared in this layer while hidden or absent below.
    pub exists_ts: Option<u64>,
    /// Latest change per key: `(ts, Some(value))` or a tombstone `(ts, None)`.
    pub docs: BTreeMap<String, (u64, Option<Vec<u8>>)>,
}

impl TableDelta {
    fn is_empty(&self) -> bool {
        self.masked_ts.is_none() && self.exists_ts.is_none() && self.docs.is_empty()
    }
    /// Whether the table is visible through this layer, given whether it is visible below.
    fn visible(&self, below: bool) -> bool {
        self.exists_ts.is_some() || (below && self.masked_ts.is_none())
    }
    /// Applies this layer on top of the documents visible below.
    fn overlay(&self, below: Option<Collection>) -> Option<Collection> {
        let visible = self.visible(below.is_some());
        if !visible {
            return None;
        }
        let mut docs = if self.masked_ts.is_some() {
            Collection::new()
        } else {
            below.unwrap_or_default()
        };
        for (k, (_, v)) in &self.docs {
            match v {
                Some(v) => docs.insert(k.clone(), v.clone()),
                None => docs.remove(k),
            };
        }
        Some(docs)
    }
}

/// An overlay of applied operations on top of a stable view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    pub tables: BTreeMap<String, TableDelta>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Documents and tombstones held.
    pub fn len(&self) -> usize {
        self.tables.values().map(|t| t.docs.len()).sum()
    }

    /// The oldest timestamp this layer holds anything at (validate: nothing at or below the base).
    pub fn min_ts(&self) -> Option<u64> {
        self.tables
            .values()
            .flat_map(|t| {
                t.docs
                    .values()
                    .map(|(ts, _)| *ts)
                    .chain(t.masked_ts)
                    .chain(t.exists_ts)
            })
            .min()
    }

    /// Applies one operation; `below` says whether a table is visible in the layers underneath.
    pub fn apply(&mut self, op: &Op, ts: u64, below: &dyn Fn(&str) -> bool) {
        match op {
            // `Store::apply` turns an append into the put of its result.
            Op::Noop | Op::Rotate(_) | Op::Get { .. } | Op::Append { .. } => {}
            Op::Put {
                collection,
                key,
                value,
            } => {
                let below = below(collection);
                let t = self.tables.entry(collection.clone()).or_default();
                if !t.visible(below) {
                    t.exists_ts = Some(ts); // an implicit create
                }
                t.docs.insert(key.clone(), (ts, Some(value.clone())));
            }
            Op::Delete { collection, key } => {
                let below = below(collection);
                let visible = self
                    .tables
                    .get(collection)
                    .map_or(below, |t| t.visible(below));
                if visible {
                    let t = self.tables.entry(collection.clone()).or_default();
                    t.docs.insert(key.clone(), (ts, None));
                }
            }
            Op::CreateCollection { name } => {
                let below = below(name);
                let t = self.tables.entry(name.clone()).or_default();
                if !t.visible(below) {
                    t.exists_ts = Some(ts);
                }
                if t.is_empty() {
                    self.tables.remove(name);
                }
            }
            Op::DropCollection { name } => {
                // Masked even when nothing below has the table now: a newer base picked up
                // later may hold it (created after the old base, before this drop).
                self.tables.insert(
                    name.clone(),
                    TableDelta {
                        masked_ts: Some(ts),
                        ..TableDelta::default()
                    },
                );
            }
        }
    }

    /// Forgets everything at or below `ts`: a newer base already reflects it.
    pub fn prune(&mut self, ts: u64) {
        for t in self.tables.values_mut() {
            t.docs.retain(|_, (at, _)| *at > ts);
            if t.masked_ts.is_some_and(|m| m <= ts) {
                t.masked_ts = None;
            }
            if t.exists_ts.is_some_and(|e| e <= ts) {
                t.exists_ts = None;
            }
        }
        self.tables.retain(|_, t| !t.is_empty());
    }

    /// Puts `newer` on top of this layer (this one is older).
    pub fn merge(&mut self, newer: Delta) {
        for (name, n) in newer.tables {
            if n.masked_ts.is_some() {
                // A drop in the newer layer hides everything older.
                self.tables.insert(name, n);
                continue;
            }
            let t = self.tables.entry(name).or_default();
            if t.exists_ts.is_none() {
                t.exists_ts = n.exists_ts;
            }
            t.docs.extend(n.docs);
        }
    }

    fn overlay(&self, name: &str, below: Option<Collection>) -> Option<Collection> {
        match self.tables.get(name) {
            Some(t) => t.overlay(below),
            None => below,
        }
    }
}

/// `read_all` without the copies: the same layering as `read`, walked in place.
impl crate::state::Visible for Store {
    fn collections(&self) -> Vec<&str> {
        let names = self.names().into_iter();
        names
            .filter(|n| self.has_collection(n))
            .map(String::as_str)
            .collect()
    }

    fn docs(&self, name: &str, f: &mut dyn FnMut(&str, &[u8])) {
        let deltas: Vec<Option<&TableDelta>> = self.layers().map(|d| d.tables.get(name)).collect();
        // The lowest layer a reader sees through to: a drop starts afresh from its own layer,
        // a layer that hides the table starts afresh above itself.
        let mut visible = self.base.has(name);
        let (mut from_base, mut lowest) = (visible, 0);
        for (i, t) in deltas.iter().enumerate() {
            let Some(t) = t else { continue };
            let v = t.visible(visible);
            if !v {
                (from_base, lowest) = (false, i + 1);
            } else if t.masked_ts.is_some() {
                (from_base, lowest) = (false, i);
            }
            visible = v;
        }
        if !visible {
            return;
        }
        // A document counts in the layer that holds it unless a layer above holds the key too.
        let overridden = |above: usize, k: &str| {
            deltas[above..]
                .iter()
                .flatten()
                .any(|t| t.docs.contains_key(k))
        };
        if from_base {
            for page in self
                .base
                .pages
                .get(name)
                .into_iter()
                .flat_map(|p| p.values())
            {
                for (k, v) in page.iter().filter(|(k, _)| !overridden(0, k)) {
                    f(k, v)
                }
            }
        }
        for (i, t) in deltas.iter().enumerate().skip(lowest) {
            for (k, (_, v)) in t.iter().flat_map(|t| &t.docs) {
                if let Some(v) = v.as_ref().filter(|_| !overridden(i + 1, k)) {
                    f(k, v)
                }
            }
        }
    }
}

/// Which role the node's storage plays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mode {
    /// Applies the oplog to ingest tables and picks up the leader's checkpoints.
    #[default]
    Follower,
    /// Won an election; still applying to ingest until the drain finishes.
    SteppingUp,
    /// Writes go to the stable tables; checkpoints publish them.
    Leader,
}

/// A node's collections: a base checkpoint and the overlays on it.
#[derive(Debug, Clone, Default)]
pub struct Store {
    pub base: StableView,
    /// A checkpoint being written: the dirty layer it took (still part of every read).
    pub in_flight: Option<Delta>,
    pub dirty: Delta,
    pub ingest: Delta,
    /// The leader's block-manager counters per table (see `checkpoint`).
    pub bytes_total: BTreeMap<String, u64>,
    /// The committed in-memory keystore: rotations take effect as they are applied.
    pub keystore: Keystore,
    /// Handles of the ingest tables, which a step-up's drain and a forced drop contend on.
    pub handles: Handles,
    sessions: BTreeMap<u64, u64>,
    applied_index: Index,
    applied_term: Term,
    applied_ts: u64,
    mode: Mode,
}

impl Store {
    /// A store based on a checkpoint, applied up to that checkpoint, with the keystore as of
    /// that point.
    pub fn from_checkpoint(base: StableView, keystore: Keystore) -> Store {
        let m = base.meta.clone();
        Store {
            keystore,
            sessions: m.sessions.clone(),
            applied_index: m.applied_index,
            applied_term: m.applied_term,
            applied_ts: m.ts,
            base,
            ..Store::default()
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }
    pub fn applied_index(&self) -> Index {
        self.applied_index
    }
    pub fn applied_term(&self) -> Term {
        self.applied_term
    }
    pub fn applied_ts(&self) -> u64 {
        self.applied_ts
    }
    /// Applies one committed entry: to the stable tables on the leader, to ingest otherwise.
    /// Returns false when the entry repeats a client operation already applied (a retry whose
    /// first attempt committed too): its effect is skipped so it cannot overwrite newer writes.
    pub fn apply(&mut self, e: &Entry) -> bool {
        invariant!(
            e.index > self.applied_index,
            "storage: applying index {} after {}",
            e.index,
            self.applied_index
        );
        invariant!(
            e.ts > self.applied_ts || self.applied_index == 0,
            "storage: entry {} has timestamp {} not after applied timestamp {}",
            e.index,
            e.ts,
            self.applied_ts
        );
        self.applied_index = e.index;
        self.applied_term = e.term;
        self.applied_ts = self.applied_ts.max(e.ts);
        if let Some(s) = e.session {
            let last = self.sessions.entry(s.client).or_default();
            if s.seq <= *last {
                return false;
            }
            *last = s.seq;
        }
        if let Op::Rotate(r) = &e.op {
            // A rotation prepared against an older keystore lost a race: nothing to do.
            self.keystore.apply(r, e.ts);
            return true;
        }
        let appended;
        let op = match &e.op {
            Op::Append {
                collection,
                key,
                value,
            } => {
                // Read-modify-write through every layer: the append's result is a put.
                let mut v = self.get(collection, key).unwrap_or_default();
                v.extend_from_slice(value);
                appended = Op::Put {
                    collection: collection.clone(),
                    key: key.clone(),
                    value: v,
                };
                &appended
            }
            op => op,
        };
        if self.mode == Mode::Leader {
            let (base, in_flight) = (&self.base, &self.in_flight);
            let below = |t: &str| visible_in(base, in_flight.as_ref(), t);
            self.dirty.apply(op, e.ts, &below);
        } else {
            let (base, in_flight, dirty) = (&self.base, &self.in_flight, &self.dirty);
            let below = |t: &str| {
                let v = visible_in(base, in_flight.as_ref(), t);
                dirty.tables.get(t).map_or(v, |d| d.visible(v))
            };
            self.ingest.apply(op, e.ts, &below);
        }
        true
    }

    /// Everything a reader sees, collection by collection.
    pub fn read_all(&self) -> BTreeMap<String, Collection> {
        self.names()
            .into_iter()
            .filter_map(|n| self.read(n).map(|c| (n.clone(), c)))
            .collect()
    }

    /// Every collection any layer names (visible or not), in name order.
    fn names(&self) -> std::collections::BTreeSet<&String> {
        let mut names: std::collections::BTreeSet<&String> = self.base.meta.tables.keys().collect();
        for d in self.layers() {
            names.extend(d.tables.keys());
        }
        names
    }

    /// One collection as a reader sees it; `None` when it does not exist.
    pub fn read(&self, name: &str) -> Option<Collection> {
        let mut c = self.base.has(name).then(|| self.base.docs(name));
        for d in self.layers() {
            c = d.overlay(name, c);
        }
        c
    }

    /// One document as a reader sees it, without building its collection: the topmost layer
    /// that holds the key or hides the layers below decides (appends and reads run this per
    /// operation).
    pub fn get(&self, collection: &str, key: &str) -> Option<Vec<u8>> {
        let mut layers: Vec<&Delta> = vec![&self.ingest, &self.dirty];
        layers.extend(self.in_flight.iter());
        for d in layers {
            if let Some(t) = d.tables.get(collection) {
                if let Some((_, v)) = t.docs.get(key) {
                    return v.clone();
                }
                if t.masked_ts.is_some() {
                    return None;
                }
            }
        }
        let pages = self.base.pages.get(collection)?;
        pages.get(&crate::pages::page_of(key))?.get(key).cloned()
    }

    /// Whether a reader sees the collection (cheaper than `read`).
    pub fn has_collection(&self, name: &str) -> bool {
        let mut visible = self.base.has(name);
        for d in self.layers() {
            if let Some(t) = d.tables.get(name) {
                visible = t.visible(visible);
            }
        }
        visible
    }

    /// Which layer decides what a reader sees of `collection/key` (for failure reports).
    pub fn layer_of(&self, collection: &str, key: &str) -> &'static str {
        let layers = [
            ("the ingest layer", &self.ingest),
            ("the dirty layer", &self.dirty),
        ];
        let in_flight = self
            .in_flight
            .iter()
            .map(|d| ("the in-flight checkpoint layer", d));
        for (name, d) in layers.into_iter().chain(in_flight) {
            if let Some(t) = d.tables.get(collection) {
                if t.docs.contains_key(key) || t.masked_ts.is_some() {
                    return name;
                }
            }
        }
        if self.base.has(collection) {
            "the base checkpoint"
        } else {
            "no layer (the collection is nowhere)"
        }
    }

    fn layers(&self) -> impl Iterator<Item = &Delta> {
        self.in_flight.iter().chain([&self.dirty, &self.ingest])
    }

    pub fn hashes(&self) -> BTreeMap<String, CollectionHash> {
        self.read_all()
            .iter()
            .map(|(name, c)| (name.clone(), hash_collection(c)))
            .collect()
    }

    /// Whether `meta` can be installed now: newer than the base, and not ahead of what this
    /// node applied (a reader must never see data from its future).
    pub fn can_install(&self, meta: &CheckpointMeta) -> bool {
        meta.id > self.base.meta.id && meta.applied_index <= self.applied_index
    }

    /// Checkpoint pick-up: swaps the stable view and prunes ingest at or below the checkpoint
    /// timestamp. Only a follower (or a node stepping up, before its drain) installs.
    pub fn install(&mut self, view: StableView) {
        invariant!(
            self.mode != Mode::Leader && self.in_flight.is_none() && self.dirty.is_empty(),
            "storage: installing checkpoint {} on a node in {:?} mode with stable changes",
            view.meta.id,
            self.mode
        );
        invariant!(
            self.can_install(&view.meta),
            "storage: checkpoint {} (applied {}) cannot replace {} on a node applied to {}",
            view.meta.id,
            view.meta.applied_index,
            self.base.meta.id,
            self.applied_index
        );
        self.ingest.prune(view.meta.ts);
        self.base = view;
    }

    /// Step-up drain all at once (tests and the reference model): every ingest table merged
    /// into the stable changes, then writes go to the stable tables.
    pub fn drain_into_stable(&mut self) {
        for t in self.ingest_tables() {
            self.drain_finish(&t);
        }
        self.finish_step_up();
    }

    /// The ingest tables a drain has to move (dropped ones included: the drop must reach the
    /// stable tables).
    pub fn ingest_tables(&self) -> Vec<String> {
        self.ingest.tables.keys().cloned().collect()
    }

    /// Step-up drain, one batch of a drain worker: copies up to `max` documents of ingest table
    /// `table` with keys after `after` into the stable changes. Returns how many it copied and
    /// the last key copied (`None` once the table is exhausted). Reads are unchanged: ingest
    /// still lies on top with the same or newer versions.
    pub fn drain_copy_batch(
        &mut self,
        table: &str,
        after: Option<&str>,
        max: usize,
    ) -> (usize, Option<String>) {
        invariant!(
            self.mode == Mode::SteppingUp,
            "storage: draining {table} in {:?} mode",
            self.mode
        );
        let Some(src) = self.ingest.tables.get(table) else {
            return (0, None);
        };
        let range = match after {
            Some(k) => src
                .docs
                .range::<str, _>((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded)),
            None => src.docs.range::<str, _>(..),
        };
        let batch: Vec<(String, (u64, Option<Vec<u8>>))> = range
            .take(max)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let last = batch.last().map(|(k, _)| k.clone());
        let n = batch.len();
        self.dirty
            .tables
            .entry(table.to_string())
            .or_default()
            .docs
            .extend(batch);
        (n, last)
    }

    /// Step-up drain, the end of one table: what is left of it (the create or drop it carries,
    /// keys applied behind the cursor) goes into the stable changes and the ingest table is
    /// cleared.
    pub fn drain_finish(&mut self, table: &str) {
        if let Some(t) = self.ingest.tables.remove(table) {
            let mut one = Delta::default();
            one.tables.insert(table.to_string(), t);
            self.dirty.merge(one);
        }
    }

    /// Step-up done: ingest is empty, and writes go to the stable tables from now on.
    pub fn finish_step_up(&mut self) {
        invariant!(
            self.ingest.is_empty(),
            "storage: finishing step-up with {} ingest tables left",
            self.ingest.tables.len()
        );
        self.bytes_total = self
            .base
            .meta
            .tables
            .iter()
            .map(|(t, r)| (t.clone(), r.bytes_total))
            .collect();
        self.mode = Mode::Leader;
    }

    /// Leadership lost: un-checkpointed stable changes become ingest again (they are applied,
    /// committed entries above the base), and any checkpoint in flight is abandoned.
    pub fn step_down(&mut self) {
        let mut layer = self.in_flight.take().unwrap_or_default();
        layer.merge(std::mem::take(&mut self.dirty));
        layer.merge(std::mem::take(&mut self.ingest));
        self.ingest = layer;
        self.mode = Mode::Follower;
    }

    /// Starts a checkpoint: takes the dirty layer. `None` when one is already running.
    pub fn begin_checkpoint(&mut self) -> Option<Cut> {
        if self.mode != Mode::Leader || self.in_flight.is_some() {
            return None;
        }
        let delta = std::mem::take(&mut self.dirty);
        self.in_flight = Some(delta.clone());
        Some(Cut {
            delta,
            applied_index: self.applied_index,
            applied_term: self.applied_term,
            ts: self.applied_ts,
            sessions: self.sessions.clone(),
            keystore_ts: self.keystore.ts,
        })
    }

    /// The checkpoint was published: it is the new base.
    pub fn complete_checkpoint(&mut self, view: StableView) {
        invariant!(
            self.in_flight.is_some(),
            "storage: completing checkpoint {} with none in flight",
            view.meta.id
        );
        self.in_flight = None;
        self.base = view;
    }

    /// The checkpoint failed before wrap-up: its changes are dirty again, under newer ones.
    pub fn fail_checkpoint(&mut self) {
        if let Some(mut older) = self.in_flight.take() {
            older.merge(std::mem::take(&mut self.dirty));
            self.dirty = older;
        }
    }
}

/// Whether `table` is visible through the base and an in-flight checkpoint layer.
fn visible_in(base: &StableView, in_flight: Option<&Delta>, table: &str) -> bool {
    let b = base.has(table);
    in_flight
        .and_then(|d| d.tables.get(table))
        .map_or(b, |d| d.visible(b))
}

/// What a checkpoint takes from the leader: the changes since its base and where they end.
#[derive(Debug, Clone)]
pub struct Cut {
    pub delta: Delta,
    pub applied_index: Index,
    pub applied_term: Term,
    pub ts: u64,
    pub sessions: BTreeMap<u64, u64>,
    /// Timestamp of the committed keystore at the cut.
    pub keystore_ts: u64,
}
