//! A replica's reads of keys and checkpoints: KEKs through the KMS (cached), keystore pages and
//! checkpoint pages from the page service, and the base a restarted replica recovers from.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::keystore::{self, DataKey, KeyBytes, Keystore, KeystoreRef};
use crate::layered::{CheckpointMeta, StableView};
use crate::page_store::{PsOp, PsResult};
use crate::pages::{self, Docs};
use crate::ps_client::{KmsClient, PsClient};
use crate::raft::Entry;
use crate::storage_role::pickup::decode_meta;
use crate::wire::{KmsOp, KmsResult};

/// The node's way to its keys: KEKs unwrapped through the KMS, cached by the wrapped bytes.
pub(super) struct Keys {
    pub(super) kms: KmsClient,
    pub(super) keks: Mutex<BTreeMap<(u32, u32, u64), KeyBytes>>,
}

impl Keys {
    /// The KEK of `ks`, from the cache or through the KMS.
    pub(super) async fn kek(
        &self,
        ks: &Keystore,
        keep_going: &(dyn Fn() -> bool + Sync),
        max_attempts: u32,
    ) -> Result<KeyBytes, String> {
        let slot = (
            ks.kek_version,
            ks.cmk_version,
            xxhash_rust::xxh3::xxh3_64(&ks.wrapped_kek),
        );
        if let Some(k) = self
            .keks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&slot)
        {
            return Ok(*k);
        }
        let op = KmsOp::Unwrap {
            cmk_version: ks.cmk_version,
            aad: keystore::kek_aad(ks.kek_version),
            ciphertext: ks.wrapped_kek.clone(),
        };
        let what = || format!("unwrapping kek v{}", ks.kek_version);
        let bytes = self
            .kms
            .expect(op, keep_going, max_attempts, what, |r| match r {
                KmsResult::Unwrapped(bytes) => Ok(bytes),
                other => Err(other),
            })
            .await?;
        let kek = keystore::kek_from(bytes, ks.kek_version).map_err(|e| e.to_string())?;
        self.keks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(slot, kek);
        Ok(kek)
    }

    /// The data key, opened with the KEK of `ks`.
    pub(super) async fn data_key(
        &self,
        ks: &Keystore,
        keep_going: &(dyn Fn() -> bool + Sync),
        max_attempts: u32,
    ) -> Result<DataKey, String> {
        let kek = self.kek(ks, keep_going, max_attempts).await?;
        ks.data_key(&kek).map_err(|e| e.to_string())
    }

    /// Wraps `plaintext` under a CMK version through the KMS.
    pub(super) async fn wrap(
        &self,
        cmk_version: u32,
        aad: Vec<u8>,
        plaintext: Vec<u8>,
        keep_going: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<u8>, String> {
        let op = KmsOp::Wrap {
            cmk_version,
            aad,
            plaintext,
        };
        let what = || format!("wrapping under cmk v{cmk_version}");
        self.kms
            .expect(op, keep_going, u32::MAX, what, |r| match r {
                KmsResult::Wrapped(w) => Ok(w),
                other => Err(other),
            })
            .await
    }
}

/// Reads and verifies a checkpoint's keystore page.
pub(super) async fn load_keystore(
    ps: &PsClient,
    kref: &KeystoreRef,
    keep_going: &(dyn Fn() -> bool + Sync),
    max_attempts: u32,
) -> Result<Keystore, String> {
    let lsn = kref.cookie.lsn;
    let missing = || format!("keystore page {lsn} not found");
    let bytes = ps.get(lsn, keep_going, max_attempts, missing).await?;
    pages::verify(&kref.cookie, &bytes).map_err(|e| format!("keystore page: {e}"))?;
    Keystore::decode(&bytes).map_err(|e| e.to_string())
}

/// Loads a checkpoint's pages, reusing the pages (and chain prefixes) `base` already holds.
pub(super) async fn load_view(
    ps: &PsClient,
    meta: CheckpointMeta,
    base: &StableView,
    key: &DataKey,
    keep_going: &(dyn Fn() -> bool + Sync),
    max_attempts: u32,
) -> Result<StableView, String> {
    let mut pages = BTreeMap::new();
    for (table, root) in &meta.tables {
        // Pages load side by side (each page's chain in order): one at a time, a follower far
        // behind under high latency spent longer than a liveness timeout fetching one
        // checkpoint (`chaos-mix-long` with a drawn 1..120 ms latency found it).
        let loads = root.pages.iter().map(|(p, chain)| async move {
            let old_chain = base.meta.tables.get(table).and_then(|r| r.pages.get(p));
            let old_docs = base.pages.get(table).and_then(|ps| ps.get(p));
            let (mut docs, from) = match (old_chain, old_docs) {
                (Some(oc), Some(od)) if oc == chain => return Ok::<_, String>((*p, od.clone())),
                (Some(oc), Some(od)) if chain.starts_with(oc) => ((**od).clone(), oc.len()),
                _ => (Docs::new(), 0),
            };
            for (i, cookie) in chain.iter().enumerate().skip(from) {
                let missing = || format!("block {} of {table} page {p} not found", cookie.lsn);
                let bytes = ps
                    .get(cookie.lsn, keep_going, max_attempts, missing)
                    .await?;
                keystore::apply_block(&mut docs, table, cookie, &bytes, i == 0, key)
                    .map_err(|e| format!("{table} page {p}: {e}"))?;
            }
            Ok((*p, Arc::new(docs)))
        });
        let mut loaded = BTreeMap::new();
        for r in futures::future::join_all(loads).await {
            let (p, docs) = r?;
            loaded.insert(p, docs);
        }
        pages.insert(table.clone(), loaded);
    }
    Ok(StableView {
        meta: Arc::new(meta),
        pages,
    })
}

/// A restarted replica starts from the newest checkpoint when its log holds the entry the
/// checkpoint ends at (then the log supplies the rest) and the checkpoint's keystore page is
/// the keystore as of its cut; otherwise from nothing, replaying its whole log and picking a
/// checkpoint up later.
pub(super) async fn recover_base(
    ps: &PsClient,
    keys: &Keys,
    log: &[Entry],
) -> Result<Option<(StableView, Keystore)>, String> {
    let latest = match ps.request_limited(0, PsOp::Latest, &|| true, 3).await {
        Ok(PsResult::Latest(Some(p))) => p,
        Ok(_) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let meta = decode_meta(&latest)?;
    let i = meta.applied_index;
    if i == 0 || log.get(i as usize - 1).map(|e| e.term) != Some(meta.applied_term) {
        return Ok(None);
    }
    let Some(kref) = meta.keystore else {
        return Err(format!("checkpoint {} has no keystore page", meta.id));
    };
    if kref.ts != meta.keystore_ts {
        // The keystore page lags the cut: starting from it would lose the rotations between.
        return Err(format!(
            "checkpoint {}'s keystore page (ts {}) lags its cut's keystore (ts {})",
            meta.id, kref.ts, meta.keystore_ts
        ));
    }
    let ks = load_keystore(ps, &kref, &|| true, 3).await?;
    let key = keys.data_key(&ks, &|| true, 3).await?;
    let view = load_view(ps, meta, &StableView::default(), &key, &|| true, 3).await?;
    Ok(Some((view, ks)))
}
