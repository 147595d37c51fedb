//! What the harness may read of a live replica (`Inspect`).

use std::collections::BTreeMap;

use super::{lock, Inspector};
use crate::observe::{Inspect, NodeStatus, StorageStatus};
use crate::raft::{Entry, Index, Term};
use crate::state::{Collection, CollectionHash};

impl Inspect for Inspector {
    fn status(&self) -> NodeStatus {
        let c = lock(&self.0);
        let s = &c.store;
        NodeStatus {
            id: c.raft.id(),
            term: c.raft.term(),
            role: c.raft.role(),
            leader: c.raft.leader(),
            commit: c.raft.commit_index(),
            last_applied: s.applied_index(),
            last_index: c.raft.last_index(),
            last_term: c.raft.last_term(),
            storage: StorageStatus {
                mode: s.mode(),
                base: s.base.meta.clone(),
                base_records: s
                    .base
                    .pages
                    .iter()
                    .map(|(t, ps)| (t.clone(), ps.values().map(|d| d.len() as u64).sum()))
                    .collect(),
                checkpoint_in_flight: s.in_flight.is_some() || c.role.freeing.is_some(),
                dirty_empty: s.dirty.is_empty(),
                ingest_min_ts: s.ingest.min_ts(),
                bytes_total: s.bytes_total.clone(),
                keystore: s.keystore.clone(),
                keystore_flushed: c.role.ks_page,
            },
        }
    }
    fn read_all(&self) -> BTreeMap<String, Collection> {
        lock(&self.0).store.read_all()
    }
    fn visit_all(&self, f: &mut dyn FnMut(Index, &dyn crate::state::Visible)) {
        let c = lock(&self.0);
        f(c.store.applied_index(), &c.store)
    }
    fn hashes(&self) -> BTreeMap<String, CollectionHash> {
        lock(&self.0).store.hashes()
    }
    fn read_docs(
        &self,
        docs: &[(String, String)],
        collections: &[String],
    ) -> (Index, Vec<Option<Vec<u8>>>, Vec<bool>) {
        let c = lock(&self.0);
        let values = docs.iter().map(|(t, k)| c.store.get(t, k)).collect();
        let exist = collections
            .iter()
            .map(|t| c.store.has_collection(t))
            .collect();
        (c.store.applied_index(), values, exist)
    }
    fn layer_of(&self, collection: &str, key: &str) -> String {
        lock(&self.0).store.layer_of(collection, key).to_string()
    }
    fn log_tail(&self, n: usize) -> Vec<Entry> {
        let c = lock(&self.0);
        let es = c.raft.entries();
        es[es.len().saturating_sub(n)..].to_vec()
    }
    fn log_digests(&self) -> Vec<(Index, Term, u64)> {
        let c = lock(&self.0);
        let es = c.raft.entries();
        es.iter().map(|e| (e.index, e.term, e.digest())).collect()
    }
}
