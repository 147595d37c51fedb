//! The leader's keystore flush: when the committed keystore is newer than the keystore page its
//! published checkpoint carries, write it as a keystore page (one flush at a time); the next
//! checkpoint records it. Checkpoints taken meanwhile still carry the old page: that lag is
//! incident 000's window (`keystore-flush-slow` widens it).

use super::{note, Command, Lease, StorageRole};
use crate::keystore::{Keystore, KeystoreRef};
use crate::knobs::planted;
use crate::layered::{Mode, Store};
use crate::observe::StorageEvent;
use crate::page_store::{PsOp, PsResult};
use crate::pages::{self, Lsn};

/// The page-service table name keystore pages are written under.
pub const KEYSTORE_TABLE: &str = "__keystore";

/// The put of a keystore page.
pub fn put(ks: &Keystore) -> PsOp {
    PsOp::Put {
        table: KEYSTORE_TABLE.to_string(),
        page_id: 0,
        base_lsn: 0,
        bytes: ks.encode(),
    }
}

/// What a flush does after its put's reply.
#[derive(Debug)]
pub enum FlushReply {
    /// Written at this LSN: pass the crash point, then [`StorageRole::keystore_written`].
    Written(Lsn),
    /// The flush ends (false: nothing recorded) after these commands.
    Ended(Vec<Command>),
}

impl StorageRole {
    /// Starts a keystore flush when one is due (see the module doc).
    pub fn maybe_flush_keystore(&mut self, store: &Store) -> Option<Command> {
        let published = self.ks_page == store.base.meta.keystore;
        let behind = self.ks_page.is_none_or(|p| p.ts < store.keystore.ts);
        if store.mode() != Mode::Leader || self.ks_flushing || !published || !behind {
            return None;
        }
        self.ks_flushing = true;
        let (lease, epoch) = (self.lease(), self.lead_epoch);
        Some(Command::FlushKeystore { lease, epoch })
    }

    /// A flush task of `lease` ended.
    pub fn flush_ended(&mut self, lease: Lease) {
        if self.current(lease) {
            self.ks_flushing = false;
        }
    }

    /// A keystore is persisted only once its keys open: the flush of `ks` failed to open them.
    pub fn keystore_does_not_open(&self, still: bool, ks: &Keystore, e: &str) -> Vec<Command> {
        if !still {
            return vec![];
        }
        vec![Command::Abort(format!(
            "keystore flush: {} does not open: {e}",
            ks.summary()
        ))]
    }

    /// The page service answered the put of keystore `ks` under `epoch`.
    pub fn keystore_put_reply(
        &self,
        lease: Lease,
        epoch: u64,
        ks: &Keystore,
        reply: PsResult,
    ) -> FlushReply {
        match reply {
            PsResult::Lsn(lsn) => FlushReply::Written(lsn),
            PsResult::Fenced { epoch: t } => {
                let why = format!("keystore flush: epoch {epoch} fenced by epoch {t}");
                FlushReply::Ended(vec![Command::Reclaim(lease, why)])
            }
            PsResult::Stale if !self.current(lease) && !planted!(self.knobs, StalePutAborts) => {
                // Overtaken by this node's newer leadership (as a checkpoint put can be): that
                // leadership flushes its own keystore; this one simply ends.
                let keystore = ks.summary();
                FlushReply::Ended(vec![note(StorageEvent::KeystoreFlushAbandoned {
                    keystore,
                })])
            }
            other => FlushReply::Ended(vec![Command::Abort(format!(
                "keystore flush: unexpected reply to put: {other:?}"
            ))]),
        }
    }

    /// The keystore page of `ks` was written at `lsn` (and the crash point passed): the next
    /// checkpoint records it. Returns whether it was recorded.
    pub fn keystore_written(
        &mut self,
        lease: Lease,
        lsn: Lsn,
        ks: &Keystore,
    ) -> (bool, Vec<Command>) {
        let cookie = match pages::addr_pack(0, lsn, 0, &ks.encode()) {
            Ok(c) => c,
            Err(e) => return (false, vec![Command::Abort(format!("keystore flush: {e}"))]),
        };
        if !self.current(lease) {
            return (false, vec![]);
        }
        self.ks_page = Some(KeystoreRef { cookie, ts: ks.ts });
        let keystore = ks.summary();
        (
            true,
            vec![note(StorageEvent::KeystoreFlushed { lsn, keystore })],
        )
    }
}
