//! Leader checkpoints as a pure state machine: plan the page writes for a cut, account each
//! block as the driver writes it, then either clean up (before wrap-up: recoverable) or wrap up
//! into the next checkpoint's metadata (after wrap-up: errors are fatal).
//!
//! Block accounting is where incident 001 lives. Fixed path: the bytes of written blocks are
//! accumulated per table and applied to `bytes_total` only at wrap-up, and a failed
//! reconciliation discards every block it wrote, packed or not. Faulty path
//! (`bytes-total-leak`): `bytes_total` grows right after each `put`, and the cleanup frees only
//! blocks whose address cookie was packed — so a failed pack leaves an orphaned block and an
//! inflated `bytes_total` behind, silently.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::keystore::{DataKey, KeystoreRef, NONCE_LEN};
use crate::layered::{
    CheckpointMeta, Cut, StableView, TableDelta, TableRoot, DATABASE_SIZE_BUFFER,
};
use crate::pages::{
    addr_pack, page_of, Changes, Cookie, Docs, Lsn, PageError, PageId, PageImage, MAX_DELTAS,
};
use crate::raft::Term;

/// One block the checkpoint must write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageWrite {
    pub table: String,
    pub page_id: PageId,
    /// The version this block is a delta over; 0 for a full image.
    pub base_lsn: Lsn,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
enum PlannedPage {
    /// Unchanged: same chain, same documents.
    Keep(Vec<Cookie>, Arc<Docs>),
    /// Rewritten: `prefix` is the chain this write extends (empty for a full image).
    Write {
        write: usize,
        prefix: Vec<Cookie>,
        docs: Arc<Docs>,
    },
}

/// The page writes of one checkpoint and what the tables look like once they are done.
#[derive(Debug, Clone)]
pub struct Plan {
    pub writes: Vec<PageWrite>,
    tables: BTreeMap<String, BTreeMap<PageId, PlannedPage>>,
    /// Blocks no longer referenced once this checkpoint is published (replaced chains and
    /// dropped tables), with their table.
    frees: Vec<(String, Cookie)>,
}

/// A table's changes grouped by page.
fn changes_by_page(d: &TableDelta) -> BTreeMap<PageId, Changes> {
    let mut by_page: BTreeMap<PageId, Changes> = BTreeMap::new();
    for (k, (_, v)) in &d.docs {
        by_page
            .entry(page_of(k))
            .or_default()
            .insert(k.clone(), v.clone());
    }
    by_page
}

/// A page's documents after `changes`.
fn changed(old: &Docs, changes: &Changes) -> Docs {
    let mut docs = old.clone();
    for (k, v) in changes {
        match v {
            Some(v) => docs.insert(k.clone(), v.clone()),
            None => docs.remove(k),
        };
    }
    docs
}

/// Plans the writes that turn `base` plus the cut's changes into the next checkpoint.
pub fn plan(base: &StableView, cut: &Cut) -> Plan {
    let mut tables: BTreeMap<String, BTreeMap<PageId, PlannedPage>> = BTreeMap::new();
    let mut writes = Vec::new();
    let mut frees = Vec::new();
    let empty_root = TableRoot::default();
    let mut names: std::collections::BTreeSet<&String> = base.meta.tables.keys().collect();
    names.extend(cut.delta.tables.keys());
    for name in names {
        let root = base.meta.tables.get(name).unwrap_or(&empty_root);
        let base_pages = base.pages.get(name);
        let base_docs = |p: PageId| -> Arc<Docs> {
            base_pages
                .and_then(|ps| ps.get(&p).cloned())
                .unwrap_or_default()
        };
        let Some(d) = cut.delta.tables.get(name) else {
            // Untouched table: every page kept as is.
            let pages = root
                .pages
                .iter()
                .map(|(p, chain)| (*p, PlannedPage::Keep(chain.clone(), base_docs(*p))))
                .collect();
            tables.insert(name.clone(), pages);
            continue;
        };
        let masked = d.masked_ts.is_some();
        let exists = d.exists_ts.is_some() || (base.has(name) && !masked);
        if masked {
            // Dropped since the base: every old block goes.
            frees.extend(root.cookies().map(|c| (name.clone(), *c)));
        }
        if !exists {
            continue;
        }
        let mut by_page = changes_by_page(d);
        let mut pages = BTreeMap::new();
        let old_pages: BTreeMap<PageId, Vec<Cookie>> = if masked {
            BTreeMap::new()
        } else {
            root.pages.clone()
        };
        let mut ids: std::collections::BTreeSet<PageId> = old_pages.keys().copied().collect();
        ids.extend(by_page.keys());
        for p in ids {
            let chain = old_pages.get(&p).cloned().unwrap_or_default();
            let old_docs = if masked {
                Arc::new(Docs::new())
            } else {
                base_docs(p)
            };
            let Some(changes) = by_page.remove(&p) else {
                pages.insert(p, PlannedPage::Keep(chain, old_docs));
                continue;
            };
            let docs = changed(&old_docs, &changes);
            if docs.is_empty() {
                // The page emptied: no block at all.
                frees.extend(chain.iter().map(|c| (name.clone(), *c)));
                continue;
            }
            let (image, base_lsn, prefix) = if chain.is_empty() || chain.len() > MAX_DELTAS {
                frees.extend(chain.iter().map(|c| (name.clone(), *c)));
                (PageImage::Full(docs.clone()), 0, Vec::new())
            } else {
                let last = chain.last().expect("non-empty chain").lsn;
                (PageImage::Delta(changes), last, chain)
            };
            pages.insert(
                p,
                PlannedPage::Write {
                    write: writes.len(),
                    prefix,
                    docs: Arc::new(docs),
                },
            );
            writes.push(PageWrite {
                table: name.clone(),
                page_id: p,
                base_lsn,
                bytes: image.encode(),
            });
        }
        tables.insert(name.clone(), pages);
    }
    Plan {
        writes,
        tables,
        frees,
    }
}

impl Plan {
    /// Encrypts every page image with the data key (`nonce` draws from the leader's seeded
    /// stream). Sizes and checksums in the cookies are then those of the sealed blocks.
    /// Returns each seal's nonce and a digest of what it sealed (associated data and page), for
    /// the observer: a nonce must never seal two different messages under one key.
    pub fn seal(
        &mut self,
        key: &DataKey,
        nonce: &mut dyn FnMut() -> [u8; NONCE_LEN],
    ) -> Vec<([u8; NONCE_LEN], u64)> {
        let mut sealed = Vec::with_capacity(self.writes.len());
        for w in &mut self.writes {
            let n = nonce();
            let what = crate::keystore::page_digest(&w.table, w.page_id, w.base_lsn, &w.bytes);
            w.bytes = key.seal_page(&w.table, w.page_id, w.base_lsn, &w.bytes, n);
            sealed.push((n, what));
        }
        sealed
    }
}

/// Per-table `bytes_total`: the block manager's live counters on the leader.
pub type BytesTotal = BTreeMap<String, u64>;

/// One checkpoint's reconciliation in progress.
#[derive(Debug)]
pub struct Reconciliation {
    pub plan: Plan,
    /// Faulty path of incident 001.
    leak: bool,
    written: Vec<Option<Lsn>>,
    cookies: Vec<Option<Cookie>>,
    /// Fixed path: bytes written per table, applied at wrap-up.
    accumulated: BytesTotal,
}

/// What a failed reconciliation leaves to clean up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleanup {
    /// Blocks to discard from the page service.
    pub discard: Vec<Lsn>,
    /// Blocks written whose cleanup this path cannot do (faulty path only): orphaned.
    pub orphaned: Vec<Lsn>,
}

impl Reconciliation {
    pub fn new(plan: Plan, leak: bool) -> Self {
        let n = plan.writes.len();
        Reconciliation {
            plan,
            leak,
            written: vec![None; n],
            cookies: vec![None; n],
            accumulated: BytesTotal::new(),
        }
    }

    /// `put` of write `i` returned `lsn`.
    pub fn written(&mut self, i: usize, lsn: Lsn, bytes_total: &mut BytesTotal) {
        invariant!(
            self.written[i].is_none(),
            "checkpoint: block {i} written twice"
        );
        self.written[i] = Some(lsn);
        if self.leak {
            let w = &self.plan.writes[i];
            *bytes_total.entry(w.table.clone()).or_default() += w.bytes.len() as u64;
        }
    }

    /// Packs write `i`'s address cookie. `stale_base` injects the logic error the cookie check
    /// guards against (the `addr-pack` failpoint): the block's base LSN is not below its LSN.
    pub fn pack(&mut self, i: usize, stale_base: bool) -> Result<Cookie, PageError> {
        let w = &self.plan.writes[i];
        let lsn = self.written[i].expect("packing a block that was written");
        let base_lsn = if stale_base { lsn } else { w.base_lsn };
        let cookie = addr_pack(w.page_id, lsn, base_lsn, &w.bytes)?;
        self.cookies[i] = Some(cookie);
        if !self.leak {
            *self.accumulated.entry(w.table.clone()).or_default() += cookie.size as u64;
        }
        Ok(cookie)
    }

    /// Recoverable error before wrap-up: what to free. The fixed path discards every block it
    /// wrote and has not touched `bytes_total`; the faulty path can only free packed blocks.
    pub fn fail(self, bytes_total: &mut BytesTotal) -> Cleanup {
        let mut cleanup = Cleanup {
            discard: vec![],
            orphaned: vec![],
        };
        for (i, lsn) in self.written.iter().enumerate() {
            let Some(lsn) = *lsn else { continue };
            match (self.leak, self.cookies[i]) {
                (false, _) => cleanup.discard.push(lsn),
                (true, Some(c)) => {
                    let w = &self.plan.writes[i];
                    let t = bytes_total.entry(w.table.clone()).or_default();
                    *t = t.saturating_sub(c.size as u64);
                    cleanup.discard.push(lsn);
                }
                (true, None) => cleanup.orphaned.push(lsn),
            }
        }
        cleanup
    }

    /// Past the point of no return: applies the accounting, builds the next checkpoint and
    /// returns it with the blocks it no longer references (freed once it is published).
    /// Accounting errors from here on are fatal.
    pub fn wrap_up(
        self,
        cut: &Cut,
        id: u64,
        term: Term,
        keystore: Option<KeystoreRef>,
        bytes_total: &mut BytesTotal,
    ) -> (StableView, Vec<(String, Cookie)>) {
        for (i, c) in self.cookies.iter().enumerate() {
            invariant!(
                c.is_some(),
                "checkpoint {id}: wrap-up with block {i} of {} not packed",
                self.plan.writes.len()
            );
        }
        for (t, n) in &self.accumulated {
            *bytes_total.entry(t.clone()).or_default() += n;
        }
        for (t, c) in &self.plan.frees {
            let total = bytes_total.entry(t.clone()).or_default();
            invariant!(
                *total >= c.size as u64,
                "checkpoint {id}: freeing block {} ({} bytes) of {t} with bytes_total {}",
                c.lsn,
                c.size,
                total
            );
            *total -= c.size as u64;
        }
        let mut meta = CheckpointMeta {
            id,
            term,
            ts: cut.ts,
            applied_index: cut.applied_index,
            applied_term: cut.applied_term,
            tables: BTreeMap::new(),
            database_size: 0,
            sessions: cut.sessions.clone(),
            keystore,
            keystore_ts: cut.keystore_ts,
        };
        let mut pages = BTreeMap::new();
        for (name, planned) in self.plan.tables {
            let mut root = TableRoot::default();
            let mut docs_of = BTreeMap::new();
            for (p, page) in planned {
                let (chain, docs) = match page {
                    PlannedPage::Keep(chain, docs) => (chain, docs),
                    PlannedPage::Write {
                        write,
                        mut prefix,
                        docs,
                    } => {
                        prefix.push(self.cookies[write].expect("checked above"));
                        (prefix, docs)
                    }
                };
                root.record_count += docs.len() as u64;
                root.pages.insert(p, chain);
                docs_of.insert(p, docs);
            }
            root.bytes_total = bytes_total.get(&name).copied().unwrap_or(0);
            meta.tables.insert(name.clone(), root);
            pages.insert(name, docs_of);
        }
        // A dropped table's counter goes with it.
        bytes_total.retain(|t, _| meta.tables.contains_key(t));
        meta.database_size = meta.bytes_total() + DATABASE_SIZE_BUFFER;
        let frees = self.plan.frees;
        (
            StableView {
                meta: Arc::new(meta),
                pages,
            },
            frees,
        )
    }
}

#[cfg(test)]
mod tests;
