//! Step-up drain: drain workers move every ingest table into the stable tables in batches,
//! yielding between them; the applier keeps applying meanwhile, so passes repeat until ingest is
//! empty, and the last one makes the node a leader under the same lock.
//!
//! Incident 002 lives here. The fixed worker holds the table's read lock for the whole copy, so
//! a forced drop (the handle's exclusive try-lock, [`StorageRole::admit_drop`]) waits for it.
//! With `drop-drain-race` the worker only pins the table: the drop removes it under the copy and
//! the next cursor open fails `NotFound` — fatal, as every step-up error is.

use super::{note, Command, Lease, StorageRole};
use crate::handles::HandleId;
use crate::knobs::KnownBug;
use crate::layered::Store;
use crate::observe::StorageEvent;

/// Documents a drain worker copies between two yield points.
pub const DRAIN_BATCH: usize = 8;

/// What a drain pass finds.
#[derive(Debug, PartialEq, Eq)]
pub enum Pass {
    /// The lease is gone: stop.
    Lost,
    /// Ingest is empty: the node is a leader now.
    Finished,
    /// Tables to drain in this pass.
    Tables(Vec<String>),
}

/// What a worker does after one batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    /// Stop (lease gone, or the commands abort the node).
    Stop,
    /// More to copy after this key (`n` documents copied in this batch).
    More { after: String, n: usize },
    /// The table is drained (`n` documents in this batch).
    Finished { n: usize },
}

impl StorageRole {
    /// The start of a drain pass.
    pub fn drain_pass(&mut self, store: &mut Store, lease: Lease) -> Pass {
        if !self.current(lease) {
            return Pass::Lost;
        }
        let tables = store.ingest_tables();
        if tables.is_empty() {
            store.finish_step_up();
            return Pass::Finished;
        }
        Pass::Tables(tables)
    }

    /// Drain worker `w` takes ingest table `t`: a read lock (the fixed path; it checks the
    /// handle is not dead) or, with `drop-drain-race`, only a pin. `None`: stop.
    pub fn drain_take(
        &mut self,
        store: &mut Store,
        lease: Lease,
        w: usize,
        t: &str,
    ) -> (Option<HandleId>, Vec<Command>) {
        if !self.current(lease) {
            return (None, vec![]);
        }
        let id = store.handles.acquire(t);
        let held = if self.knobs.on(KnownBug::DropDrainRace) {
            store.handles.pin(t, id)
        } else {
            store.handles.read_lock(t, id)
        };
        match held {
            Ok(()) => (Some(id), vec![]),
            Err(e) => {
                let gone = StorageEvent::DrainTableGone {
                    table: t.to_string(),
                    error: e.to_string(),
                };
                let why = format!(
                    "failed to step up: drain worker {w}: taking ingest table {t}: {:?}",
                    Err::<(), _>(e)
                );
                (None, vec![note(gone), Command::Abort(why)])
            }
        }
    }

    /// Releases what the worker holds on `t`.
    fn drain_release(&self, store: &mut Store, t: &str, id: HandleId) {
        if self.knobs.on(KnownBug::DropDrainRace) {
            store.handles.unpin(t, id);
        } else {
            store.handles.read_unlock(t, id);
        }
    }

    /// One batch of worker `w` on table `t` after key `after`: opens a cursor (the step where
    /// the faulty path fails), copies, and at the table's end merges what is left.
    pub fn drain_batch(
        &mut self,
        store: &mut Store,
        lease: Lease,
        w: usize,
        (t, id): (&str, HandleId),
        after: Option<&str>,
    ) -> (Batch, Vec<Command>) {
        if !self.current(lease) {
            self.drain_release(store, t, id);
            return (Batch::Stop, vec![]);
        }
        if let Err(e) = store.handles.open_cursor(t, id) {
            let gone = StorageEvent::DrainTableGone {
                table: t.to_string(),
                error: e.to_string(),
            };
            let why = format!(
                "failed to step up: drain worker {w}: opening a cursor on ingest table {t}: {e}"
            );
            return (Batch::Stop, vec![note(gone), Command::Abort(why)]);
        }
        let (n, next) = store.drain_copy_batch(t, after, DRAIN_BATCH);
        match next {
            Some(after) => (Batch::More { after, n }, vec![]),
            None => {
                store.drain_finish(t);
                self.drain_release(store, t, id);
                (Batch::Finished { n }, vec![])
            }
        }
    }
}
