//! Per-node validation of internal consistency, like a storage engine's `validate`: the raft
//! bookkeeping, the layered tables (ingest holds nothing the checkpoint already has, record
//! counts match) and the block manager's accounting against what the page service really
//! holds (`bytes_total` = Σ live block sizes, no orphaned blocks, `database_size` consistent),
//! and the keys: replicas at the same applied index hold the same keystore, and every page of
//! the newest checkpoint opens with each node's keystore. (That a node's keystore never goes
//! backwards is checked as the run goes, from its keystore events.)
//! Runs at rest, after the liveness phase: no checkpoint is in flight then.

use std::collections::{BTreeMap, BTreeSet};

use engine::keystore::{kek_aad, kek_from, rebuild, Keystore};
use engine::kms::Kms;
use engine::layered::{CheckpointMeta, Mode, DATABASE_SIZE_BUFFER};
use engine::pages::Lsn;
use reports::{Violation, ViolationKind};

use super::snapshot::{NodeSnapshot, PagesSnapshot};
use super::violation;

/// Per-node bookkeeping, block accounting and keys, as an at-rest checker (opens pages with
/// the KMS's keys, as an operator would).
pub struct Validate<'a> {
    pub kms: &'a Kms,
}

impl super::record::AtRest for Validate<'_> {
    fn check(&self, c: &super::record::Cluster<'_>, _: &mut Vec<String>) -> Vec<Violation> {
        check(c.nodes, c.pages, self.kms, c.at_ms)
    }
}

pub fn check(
    snaps: &[NodeSnapshot],
    pages: Option<&PagesSnapshot>,
    kms: &Kms,
    at_ms: u64,
) -> Vec<Violation> {
    let mut out = Vec::new();
    for s in snaps {
        let problems = node_problems(s);
        if !problems.is_empty() {
            out.push(violation(
                ViolationKind::Validate,
                Some(format!("n{}", s.status.id)),
                at_ms,
                problems.join("; "),
            ));
        }
    }
    if let Some(p) = pages {
        out.extend(page_service_problems(snaps, p, at_ms));
    }
    out.extend(keystore_problems(snaps, pages, kms, at_ms));
    out
}

/// Replicas applied to the same index agree on the keystore, and each node's keystore opens
/// every page of the newest checkpoint (through the KMS, as the node itself would).
fn keystore_problems(
    snaps: &[NodeSnapshot],
    pages: Option<&PagesSnapshot>,
    kms: &Kms,
    at_ms: u64,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut by_index: BTreeMap<u64, (u8, &Keystore)> = BTreeMap::new();
    for s in snaps {
        let ks = &s.status.storage.keystore;
        match by_index.get(&s.status.last_applied) {
            Some((other, theirs)) if *theirs != ks => out.push(violation(
                ViolationKind::Validate,
                Some(format!("n{}", s.status.id)),
                at_ms,
                format!(
                    "keystore differs from n{other}'s at applied index {}: {} vs {}",
                    s.status.last_applied,
                    ks.summary(),
                    theirs.summary()
                ),
            )),
            Some(_) => {}
            None => {
                by_index.insert(s.status.last_applied, (s.status.id, ks));
            }
        }
    }
    let Some(p) = pages else { return out };
    let Some((id, Ok(meta))) = &p.latest else {
        return out;
    };
    let mut verdicts: BTreeMap<Vec<u8>, Result<(), String>> = BTreeMap::new();
    for s in snaps {
        let ks = &s.status.storage.keystore;
        let verdict = verdicts
            .entry(ks.encode())
            .or_insert_with(|| opens_checkpoint(ks, meta, p, kms));
        if let Err(e) = verdict {
            out.push(violation(
                ViolationKind::Validate,
                Some(format!("n{}", s.status.id)),
                at_ms,
                format!(
                    "checkpoint {id} does not open with this node's keystore ({}): {e}",
                    ks.summary()
                ),
            ));
        }
    }
    out
}

/// Opens every page chain of `meta` with the data key of `ks`.
fn opens_checkpoint(
    ks: &Keystore,
    meta: &CheckpointMeta,
    p: &PagesSnapshot,
    kms: &Kms,
) -> Result<(), String> {
    let kek = kms
        .unwrap_key(ks.cmk_version, &kek_aad(ks.kek_version), &ks.wrapped_kek)
        .map_err(|e| format!("the KMS does not open its KEK: {e}"))?;
    let kek = kek_from(kek, ks.kek_version).map_err(|e| e.to_string())?;
    let key = ks.data_key(&kek).map_err(|e| e.to_string())?;
    for (t, root) in &meta.tables {
        for (page, chain) in &root.pages {
            let blocks: Option<Vec<_>> = chain
                .iter()
                .map(|c| Some((*c, p.fetch.block(c.lsn)?.to_vec())))
                .collect();
            let Some(blocks) = blocks else {
                continue; // a missing block is reported by the page-service check
            };
            rebuild(t, &blocks, &key).map_err(|e| format!("table {t} page {page}: {e}"))?;
        }
    }
    Ok(())
}

fn node_problems(s: &NodeSnapshot) -> Vec<String> {
    let st = &s.status;
    let mut problems = Vec::new();
    if st.last_applied > st.commit {
        problems.push(format!(
            "last_applied {} beyond commit {}",
            st.last_applied, st.commit
        ));
    }
    if st.commit > st.last_index {
        problems.push(format!(
            "commit {} beyond log end {}",
            st.commit, st.last_index
        ));
    }
    if st.last_term > st.term {
        problems.push(format!(
            "last log term {} above current term {}",
            st.last_term, st.term
        ));
    }
    for (name, h) in &s.hashes {
        let docs = s.data.get(name).map_or(0, |c| c.len() as u64);
        if docs != h.count {
            problems.push(format!(
                "{name}: {} documents but hash counted {}",
                docs, h.count
            ));
        }
    }
    let sto = &st.storage;
    let base = &sto.base;
    if let Some(ts) = sto.ingest_min_ts {
        if ts <= base.ts {
            problems.push(format!(
                "ingest holds an entry at ts {ts}, at or below its checkpoint {}'s timestamp {}",
                base.id, base.ts
            ));
        }
    }
    for (t, root) in &base.tables {
        let found = sto.base_records.get(t).copied().unwrap_or(0);
        if found != root.record_count {
            problems.push(format!(
                "table {t}: checkpoint {} records {} documents but its pages hold {found}",
                base.id, root.record_count
            ));
        }
    }
    if sto.mode == Mode::Leader {
        if let Some(ts) = sto.ingest_min_ts {
            problems.push(format!(
                "a leader holding ingest not drained into stable (oldest at ts {ts})"
            ));
        }
    }
    if sto.mode == Mode::Leader && !sto.checkpoint_in_flight {
        for (t, root) in &base.tables {
            let live = sto.bytes_total.get(t).copied().unwrap_or(0);
            if live != root.bytes_total {
                problems.push(format!(
                    "table {t}: live bytes_total {live} but checkpoint {} published {}",
                    base.id, root.bytes_total
                ));
            }
        }
        for t in sto.bytes_total.keys() {
            if !base.tables.contains_key(t) {
                problems.push(format!(
                    "bytes_total kept for table {t}, which no longer exists"
                ));
            }
        }
    }
    problems
}

/// Checks the newest published checkpoint against the page service's blocks.
fn page_service_problems(snaps: &[NodeSnapshot], p: &PagesSnapshot, at_ms: u64) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some((id, meta)) = &p.latest else {
        if !p.blocks.is_empty() {
            out.push(violation(
                ViolationKind::Validate,
                Some("ps".into()),
                at_ms,
                format!(
                    "{} blocks but no published checkpoint: all orphaned",
                    p.blocks.len()
                ),
            ));
        }
        return out;
    };
    let meta: &CheckpointMeta = match meta {
        Ok(m) => m,
        Err(e) => {
            out.push(violation(
                ViolationKind::Validate,
                Some("ps".into()),
                at_ms,
                format!("checkpoint {id}: unreadable metadata page: {e}"),
            ));
            return out;
        }
    };
    // Attribute accounting findings to the node that leads now (it published the checkpoint).
    let leader = snaps
        .iter()
        .find(|s| s.status.storage.mode == Mode::Leader)
        .map(|s| format!("n{}", s.status.id));
    let mut referenced: BTreeSet<Lsn> = BTreeSet::new();
    let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    match meta.keystore {
        None => problems
            .entry("(keystore)".into())
            .or_default()
            .push("no keystore page".into()),
        Some(k) => {
            referenced.insert(k.cookie.lsn);
            let page = p.fetch.block(k.cookie.lsn);
            let ks = page.as_ref().map(|b| {
                engine::pages::verify(&k.cookie, b)
                    .map_err(|e| e.to_string())
                    .and_then(|()| Keystore::decode(b).map_err(|e| e.to_string()))
            });
            let problem = match ks {
                None => Some(format!("keystore page {} missing", k.cookie.lsn)),
                Some(Err(e)) => Some(format!("keystore page {}: {e}", k.cookie.lsn)),
                Some(Ok(ks)) if ks.ts != k.ts || ks.ts > meta.keystore_ts => Some(format!(
                    "keystore page {} holds ts {}, the metadata says {} (cut at {})",
                    k.cookie.lsn, ks.ts, k.ts, meta.keystore_ts
                )),
                Some(Ok(_)) => None,
            };
            if let Some(problem) = problem {
                problems
                    .entry("(keystore)".into())
                    .or_default()
                    .push(problem);
            }
        }
    }
    for (t, root) in &meta.tables {
        let live = root.live_bytes();
        if root.bytes_total != live {
            let drift = root.bytes_total as i64 - live as i64;
            problems.entry(t.clone()).or_default().push(format!(
                "bytes_total {} but its live blocks sum to {live} (drift {drift:+})",
                root.bytes_total
            ));
        }
        for c in root.cookies() {
            referenced.insert(c.lsn);
            match p.blocks.get(&c.lsn) {
                None => problems.entry(t.clone()).or_default().push(format!(
                    "page {} references block {} which the page service does not hold",
                    c.page_id, c.lsn
                )),
                Some(b) if b.size != c.size || &b.table != t => {
                    problems.entry(t.clone()).or_default().push(format!(
                        "block {}: cookie says {} bytes of {t}, the page service holds {} bytes of {}",
                        c.lsn, c.size, b.size, b.table
                    ))
                }
                Some(_) => {}
            }
        }
    }
    let mut orphans: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (lsn, b) in &p.blocks {
        if !referenced.contains(lsn) {
            orphans.entry(b.table.clone()).or_default().push(format!(
                "lsn {lsn} (page {}, {} bytes, written by n{} in epoch {})",
                b.page_id, b.size, b.writer, b.epoch
            ));
        }
    }
    for (t, list) in orphans {
        problems.entry(t).or_default().push(format!(
            "orphaned blocks in the page service: {}",
            list.join(", ")
        ));
    }
    let want_size = meta.bytes_total() + DATABASE_SIZE_BUFFER;
    if meta.database_size != want_size {
        problems
            .entry("(database)".into())
            .or_default()
            .push(format!(
                "database_size {} but Σ bytes_total + buffer is {want_size}",
                meta.database_size
            ));
    }
    for (t, list) in problems {
        out.push(violation(
            ViolationKind::Validate,
            leader.clone().or_else(|| Some("ps".into())),
            at_ms,
            format!("table {t} in checkpoint {id}: {}", list.join("; ")),
        ));
    }
    out
}
