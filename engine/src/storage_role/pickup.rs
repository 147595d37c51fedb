//! A follower's pick-up: install the newest published checkpoint once this node has applied
//! past it, keys first. Incident 000 lives here: a standby that applied a rotation meets a
//! checkpoint whose keystore page is older (`load_key` says `StaleKeystore`). The fixed path
//! skips that checkpoint and stays on its own; `stale-keystore-abort` turns the recoverable
//! error into an abort, as the incident's invariant did.

use super::{note, Command, StorageRole};
use crate::keystore::{self, KeyError, Keystore, KeystoreRef};
use crate::knobs::KnownBug;
use crate::layered::{CheckpointMeta, Mode, StableView, Store};
use crate::observe::StorageEvent;
use crate::page_store::Published;

/// A published checkpoint's metadata.
pub fn decode_meta(p: &Published) -> Result<CheckpointMeta, String> {
    CheckpointMeta::decode(&p.meta).map_err(|e| format!("checkpoint {} metadata: {e}", p.id))
}

/// What a follower does with the newest published checkpoint.
#[derive(Debug)]
pub enum Target {
    /// Nothing to do now (not a follower, nothing newer, or not applied that far yet).
    Wait,
    /// Load this checkpoint's keystore page first (over the view `base`).
    Keys {
        meta: CheckpointMeta,
        kref: KeystoreRef,
        base: StableView,
    },
    /// Unusable: report and stay.
    Fail(Vec<Command>),
}

impl StorageRole {
    /// The pick-up target among the newest published checkpoint `latest`.
    pub fn pickup_target(&self, store: &Store, latest: Option<&Published>) -> Target {
        let base_id = store.base.meta.id;
        let Some(latest) = latest.filter(|p| p.id > base_id) else {
            return Target::Wait;
        };
        let meta = match decode_meta(latest) {
            Ok(m) => m,
            Err(reason) => return Target::Fail(vec![note(StorageEvent::PickupFailed { reason })]),
        };
        if store.mode() != Mode::Follower || !store.can_install(&meta) {
            return Target::Wait; // not applied that far yet: next time
        }
        let Some(kref) = meta.keystore else {
            let reason = format!("checkpoint {} has no keystore page", meta.id);
            return Target::Fail(vec![note(StorageEvent::PickupFailed { reason })]);
        };
        let base = store.base.clone();
        Target::Keys { meta, kref, base }
    }

    /// A pick-up step failed (a load): the node stays on its checkpoint.
    pub fn pickup_failed(&self, store: &Store, id: u64, e: String) -> Vec<Command> {
        let base_id = store.base.meta.id;
        let reason = format!("checkpoint {id}: {e}; staying on checkpoint {base_id}");
        vec![note(StorageEvent::PickupFailed { reason })]
    }

    /// The checkpoint's keystore page `persisted` against this node's committed keystore:
    /// `Ok` to go on loading, `Err` with what to do instead (skip, or abort with the knob).
    pub fn pickup_keys(
        &self,
        store: &Store,
        meta: &CheckpointMeta,
        persisted: &Keystore,
    ) -> Result<(), Vec<Command>> {
        let Err(err) = keystore::load_key(persisted, &store.keystore) else {
            return Ok(());
        };
        let (id, base_id) = (meta.id, store.base.meta.id);
        let stale = matches!(err, KeyError::StaleKeystore { .. });
        let e = format!(
            "failed to pick up checkpoint {id} (applied {}, keystore page {}): load_key: {err}",
            meta.applied_index,
            persisted.summary()
        );
        // Incident 000's faulty path: a recoverable error through an invariant.
        let abort = self.knobs.on(KnownBug::StaleKeystoreAbort);
        let reason = if abort {
            e.clone()
        } else {
            format!("{e}; skipping it, staying on checkpoint {base_id}")
        };
        let mut out = vec![note(if stale {
            StorageEvent::StaleKeystoreCheckpoint {
                id,
                reason,
                skipped: !abort,
            }
        } else {
            StorageEvent::PickupFailed { reason }
        })];
        if abort {
            out.push(Command::Abort(e));
        }
        Err(out)
    }

    /// The checkpoint's pages are loaded: install them if this node still follows and has
    /// applied that far. Returns whether it installed.
    pub fn pickup_install(&mut self, store: &mut Store, view: StableView) -> (bool, Vec<Command>) {
        if store.mode() != Mode::Follower || !store.can_install(&view.meta) {
            return (false, vec![]);
        }
        let (id, pruned_to) = (view.meta.id, view.meta.ts);
        store.install(view);
        let left = store.ingest.len();
        let picked = StorageEvent::PickedUp {
            id,
            during_step_up: false,
            pruned_to: Some(pruned_to),
            left,
        };
        (true, vec![note(picked)])
    }
}
