//! The leader's checkpoint as a run of steps: plan and seal, put each block (a `page-put`
//! failpoint before each put), pack its address (`addr-pack` failpoint), wrap up, publish, free
//! the blocks it replaced. Failures before wrap-up are recoverable (discard what was written,
//! the changes stay dirty); `bytes-total-leak` is `crate::checkpoint::Reconciliation`'s faulty
//! accounting, switched on from the role's knobs.

use super::{note, Command, Lease, StorageRole};
use crate::checkpoint::{self, Reconciliation};
use crate::failpoints;
use crate::keystore::{DataKey, Keystore, KeystoreRef, NONCE_LEN};
use crate::knobs::{planted, Knobs, KnownBug};
use crate::layered::{Cut, Mode, StableView, Store};
use crate::observe::{CheckpointFailure, CrashPoint, StorageEvent};
use crate::page_store::{PsOp, PsResult};
use crate::pages::Lsn;

/// What a checkpoint starts from, taken under the node's lock.
#[derive(Debug, Clone)]
pub struct CheckpointStart {
    pub lease: Lease,
    pub epoch: u64,
    pub id: u64,
    pub cut: Cut,
    pub base: StableView,
    /// The committed keystore: its data key seals the pages.
    pub keystore: Keystore,
    /// The keystore page the checkpoint records.
    pub ks_page: Option<KeystoreRef>,
}

/// What a run feeds the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// The page service's reply to the last `Command::Request`.
    Reply(PsResult),
    /// The commands of the last step are done (crash points passed, discards sent).
    Resume,
}

#[derive(Debug)]
enum Stage {
    Put(usize),
    Pack(usize),
    Publish,
    Published(Lsn),
    Freeing,
    Done,
}

/// One checkpoint in progress.
#[derive(Debug)]
pub struct CheckpointRun {
    pub start: CheckpointStart,
    r: Option<Reconciliation>,
    stage: Stage,
    /// After wrap-up: the view to install, the blocks to free once published, counts.
    view: Option<StableView>,
    lsns: Vec<Lsn>,
    freed: usize,
    written: usize,
}

impl StorageRole {
    /// Begins a leader checkpoint (after starting a keystore flush if one is due). `force`
    /// publishes even when nothing changed (step-up ends with one, so followers learn the new
    /// leader's base). `None` when not leading, nothing changed or one is running.
    pub fn begin_checkpoint(
        &mut self,
        store: &mut Store,
        force: bool,
    ) -> (Vec<Command>, Option<CheckpointStart>) {
        let cmds: Vec<Command> = self.maybe_flush_keystore(store).into_iter().collect();
        // A flushed keystore page the published checkpoint does not carry yet is a change.
        let ks_new = self.ks_page != store.base.meta.keystore;
        if store.mode() != Mode::Leader || (store.dirty.is_empty() && !force && !ks_new) {
            return (cmds, None);
        }
        let Some(cut) = store.begin_checkpoint() else {
            return (cmds, None); // one is running
        };
        let start = CheckpointStart {
            lease: self.lease(),
            epoch: self.lead_epoch,
            id: store.base.meta.id + 1,
            cut,
            base: store.base.clone(),
            keystore: store.keystore.clone(),
            ks_page: self.ks_page,
        };
        (cmds, Some(start))
    }

    /// The data key could not be had: nothing was written, the changes stay dirty.
    pub fn checkpoint_without_key(
        &mut self,
        store: &mut Store,
        start: &CheckpointStart,
        error: String,
    ) -> Vec<Command> {
        if self.current(start.lease) {
            store.fail_checkpoint();
        }
        vec![note(StorageEvent::CheckpointFailed {
            id: start.id,
            cause: CheckpointFailure::NoDataKey(error),
        })]
    }
}

impl CheckpointRun {
    /// Plans the checkpoint and seals its pages with `key`; returns the run and, per sealed
    /// page, its nonce and message digest (the node reports each as a `Sealed` event).
    pub fn new(
        knobs: &Knobs,
        start: CheckpointStart,
        key: &DataKey,
        nonce: &mut dyn FnMut() -> [u8; NONCE_LEN],
    ) -> (Self, Vec<([u8; NONCE_LEN], u64)>) {
        let mut plan = checkpoint::plan(&start.base, &start.cut);
        let sealed = plan.seal(key, nonce);
        let leak = knobs.on(KnownBug::BytesTotalLeak);
        let written = plan.writes.len();
        let run = CheckpointRun {
            start,
            r: Some(Reconciliation::new(plan, leak)),
            stage: Stage::Put(0),
            view: None,
            lsns: vec![],
            freed: 0,
            written,
        };
        (run, sealed)
    }

    pub fn done(&self) -> bool {
        matches!(self.stage, Stage::Done)
    }

    /// Blocks the plan writes.
    pub fn writes(&self) -> usize {
        self.written
    }

    /// The first step: the first put (or wrap-up when nothing is written).
    pub fn first(
        &mut self,
        role: &mut StorageRole,
        store: &mut Store,
        fp: &dyn Fn(&str) -> bool,
    ) -> Vec<Command> {
        self.stage = Stage::Done; // each step sets the stage it leaves the run in
        self.put(0, role, store, fp)
    }

    /// One step: what `input` (the reply to the last request, or `Resume`) leads to.
    pub fn step(
        &mut self,
        role: &mut StorageRole,
        store: &mut Store,
        input: Input,
        fp: &dyn Fn(&str) -> bool,
    ) -> Vec<Command> {
        match (std::mem::replace(&mut self.stage, Stage::Done), input) {
            (Stage::Put(i), Input::Reply(reply)) => self.put_reply(i, reply, role, store),
            (Stage::Pack(i), Input::Resume) => {
                let r = self.r.as_mut().expect("reconciling");
                match r.pack(i, fp(failpoints::ADDR_PACK)) {
                    Err(e) => self.fail(e.to_string(), true, role, store),
                    Ok(_) => self.put(i + 1, role, store, fp),
                }
            }
            (Stage::Publish, Input::Reply(reply)) => self.publish_reply(reply, role),
            (Stage::Published(lsn), Input::Resume) => self.complete(lsn, role, store),
            (Stage::Freeing, Input::Resume) => {
                if role.freeing == Some(self.start.lease.gen) {
                    role.freeing = None;
                }
                vec![]
            }
            (stage, input) => {
                vec![Command::Abort(format!(
                    "checkpoint {}: {input:?} in stage {stage:?}",
                    self.start.id
                ))]
            }
        }
    }

    fn put(
        &mut self,
        i: usize,
        role: &mut StorageRole,
        store: &mut Store,
        fp: &dyn Fn(&str) -> bool,
    ) -> Vec<Command> {
        let r = self.r.as_ref().expect("reconciling");
        if i == r.plan.writes.len() {
            return self.wrap_up(role, store);
        }
        if fp(failpoints::PAGE_PUT) {
            let e = "page-service put failed (failpoint page-put)";
            return self.fail(e.to_string(), false, role, store);
        }
        let w = &r.plan.writes[i];
        self.stage = Stage::Put(i);
        vec![Command::Request(PsOp::Put {
            table: w.table.clone(),
            page_id: w.page_id,
            base_lsn: w.base_lsn,
            bytes: w.bytes.clone(),
        })]
    }

    fn put_reply(
        &mut self,
        i: usize,
        reply: PsResult,
        role: &mut StorageRole,
        store: &mut Store,
    ) -> Vec<Command> {
        let (id, lease, epoch) = (self.start.id, self.start.lease, self.start.epoch);
        match reply {
            PsResult::Lsn(lsn) => {
                if !role.current(lease) {
                    return vec![];
                }
                let r = self.r.as_mut().expect("reconciling");
                r.written(i, lsn, &mut store.bytes_total);
                self.stage = Stage::Pack(i);
                vec![Command::Crash(CrashPoint::CheckpointPut)]
            }
            PsResult::Fenced { epoch: t } => {
                let why = format!("checkpoint {id}: epoch {epoch} fenced by epoch {t}");
                vec![Command::Reclaim(lease, why)]
            }
            PsResult::Stale => {
                // The service refused a late duplicate: a newer request on this session
                // overtook ours. After a re-election that is this node's newer leadership
                // (this checkpoint belongs to an older one and simply ends); otherwise the
                // put did not happen and the checkpoint fails before wrap-up.
                if planted!(role.knobs, StalePutAborts) {
                    return vec![Command::Abort(format!(
                        "checkpoint {id}: unexpected reply to put: Stale"
                    ))];
                }
                if !role.current(lease) {
                    let at_publish = false;
                    return vec![note(StorageEvent::CheckpointAbandoned { id, at_publish })];
                }
                let e = "page-service put refused as a stale duplicate";
                self.fail(e.to_string(), false, role, store)
            }
            other => vec![Command::Abort(format!(
                "checkpoint {id}: unexpected reply to put: {other:?}"
            ))],
        }
    }

    /// Before wrap-up: recoverable. Free what was written, retry at the next checkpoint.
    fn fail(
        &mut self,
        error: String,
        pack_failed: bool,
        role: &mut StorageRole,
        store: &mut Store,
    ) -> Vec<Command> {
        if !role.current(self.start.lease) {
            return vec![];
        }
        let cleanup = self
            .r
            .take()
            .expect("reconciling")
            .fail(&mut store.bytes_total);
        store.fail_checkpoint();
        let mut out = vec![note(StorageEvent::CheckpointFailed {
            id: self.start.id,
            cause: CheckpointFailure::BeforeWrapUp {
                error,
                pack_failed,
                discard: cleanup.discard.clone(),
                orphaned: cleanup.orphaned.clone(),
            },
        })];
        if !cleanup.discard.is_empty() {
            out.push(Command::Discard(cleanup.discard));
        }
        out
    }

    /// Wrap-up: past the point of no return.
    fn wrap_up(&mut self, role: &mut StorageRole, store: &mut Store) -> Vec<Command> {
        if !role.current(self.start.lease) {
            return vec![];
        }
        let s = &self.start;
        let r = self.r.take().expect("reconciling");
        let (view, frees) = r.wrap_up(
            &s.cut,
            s.id,
            s.lease.term,
            s.ks_page,
            &mut store.bytes_total,
        );
        let meta = view.meta.encode();
        let mut lsns: Vec<Lsn> = frees.iter().map(|(_, c)| c.lsn).collect();
        if let Some(old) = s.base.meta.keystore.filter(|k| Some(*k) != s.ks_page) {
            lsns.push(old.cookie.lsn); // the keystore page this checkpoint replaced
        }
        let mut out = vec![];
        if planted!(role.knobs, FreesBeforePublish) && !lsns.is_empty() {
            out.push(Command::Discard(std::mem::take(&mut lsns)));
        }
        self.freed = frees.len();
        self.view = Some(view);
        self.lsns = lsns;
        self.stage = Stage::Publish;
        out.push(Command::Crash(CrashPoint::CheckpointWrapped));
        out.push(Command::Request(PsOp::Publish { id: s.id, meta }));
        out
    }

    fn publish_reply(&mut self, reply: PsResult, role: &mut StorageRole) -> Vec<Command> {
        let (id, lease, epoch) = (self.start.id, self.start.lease, self.start.epoch);
        match reply {
            PsResult::Lsn(lsn) => {
                self.stage = Stage::Published(lsn);
                vec![Command::Crash(CrashPoint::CheckpointPublished)]
            }
            PsResult::Fenced { epoch: t } => {
                let why = format!("checkpoint {id} at publish: epoch {epoch} fenced by epoch {t}");
                vec![Command::Reclaim(lease, why)]
            }
            PsResult::Stale if !role.current(lease) && !planted!(role.knobs, StalePutAborts) => {
                // Overtaken by this node's newer leadership (see the put): not ours now.
                let at_publish = true;
                vec![note(StorageEvent::CheckpointAbandoned { id, at_publish })]
            }
            other => vec![Command::Abort(format!(
                "checkpoint {id}: publish after wrap-up failed: {other:?}"
            ))],
        }
    }

    fn complete(&mut self, lsn: Lsn, role: &mut StorageRole, store: &mut Store) -> Vec<Command> {
        if !role.current(self.start.lease) {
            return vec![];
        }
        let view = self.view.take().expect("wrapped up");
        let m = view.meta.clone();
        store.complete_checkpoint(view);
        let mut out = vec![note(StorageEvent::CheckpointPublished {
            id: self.start.id,
            lsn,
            ts: m.ts,
            applied: m.applied_index,
            written: self.written,
            freed: self.freed,
            database_size: m.database_size,
        })];
        if !self.lsns.is_empty() {
            role.freeing = Some(self.start.lease.gen);
            self.stage = Stage::Freeing;
            out.push(Command::Discard(std::mem::take(&mut self.lsns)));
        }
        out
    }
}
