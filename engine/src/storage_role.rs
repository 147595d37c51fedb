//! The storage role of a replica as a pure state machine, the way `raft` is one for consensus.
//!
//! It holds what the storage leadership is (`generation`, term, claimed epoch, keystore page
//! state) and makes every decision of the storage tasks: step-up (`step_up`), drain (`drain`),
//! the leader's checkpoint (`checkpoint`), the keystore flush (`keystore_flush`), key rotations
//! (`rotation`) and the followers' pick-up (`pickup`). Inputs are raft role changes, applied entries, page-service and
//! KMS replies, failpoint draws and the end of a crash point; outputs are [`Command`]s. The async
//! node (`replica`) only executes commands (requests, crash points, task spawns, observations)
//! and feeds the replies back. A task holds a [`Lease`]; the core answers a reply of a lease it
//! no longer grants by ending the task, so generation checks live here, not in the node.
//!
//! The known-bug knobs of the storage side live in this core: `stale-keystore-abort` in
//! `pickup`, `drop-drain-race` in `drain`, `bytes-total-leak` in `crate::checkpoint` (through
//! `checkpoint`'s run). Golden scripts drive it step by step (`engine/tests/storage_golden.rs`).

pub mod checkpoint;
pub mod drain;
pub mod keystore_flush;
pub mod pickup;
pub mod rotation;
pub mod step_up;

use crate::keystore::KeystoreRef;
use crate::knobs::Knobs;
use crate::layered::{Mode, Store};
use crate::observe::{CrashPoint, Event, StepUpStage, StorageEvent};
use crate::page_store::PsOp;
use crate::pages::Lsn;
use crate::raft::{Index, Role, Term};

/// A storage task's claim: the leadership (term, generation) it works for. Every step-up and
/// step-down starts a new generation, so the tasks of an older one end at their next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub term: Term,
    pub gen: u64,
}

/// What the node must do, in order.
#[derive(Debug, Clone)]
pub enum Command {
    /// An observation for the harness.
    Note(Event),
    /// An invariant failure: the node aborts (the faulty paths of the knobs end here).
    Abort(String),
    /// Start a step-up task for this lease.
    StepUp(Lease),
    /// Start a keystore flush task for this lease, writing under `epoch`.
    FlushKeystore { lease: Lease, epoch: u64 },
    /// A moment where a crash matters: the harness may kill the node here.
    Crash(CrashPoint),
    /// A page-service request whose reply the task feeds back; failing (leadership lost while
    /// retrying) ends the task.
    Request(PsOp),
    /// Free blocks; the result is not awaited by the decision (a failed discard leaves orphans
    /// the next step-up sweeps).
    Discard(Vec<Lsn>),
    /// Another node claimed the page service while this one leads: claim again.
    Reclaim(Lease, String),
}

/// `Command::Note` of a storage event.
pub fn note(e: StorageEvent) -> Command {
    Command::Note(Event::Storage(e))
}

/// The storage role's state (the store itself is passed in: it is shared with the applier).
#[derive(Debug, Clone)]
pub struct StorageRole {
    pub knobs: Knobs,
    /// Bumped at every step-up and step-down: a storage task of an older leadership stops.
    pub generation: u64,
    /// The term this node's storage leadership (step-up, checkpoints) belongs to.
    pub lead_term: Term,
    /// The page-service epoch this leadership claimed (its writes carry it).
    pub lead_epoch: u64,
    /// The newest keystore page this leadership flushed (or found in its base checkpoint); the
    /// next checkpoint records it.
    pub ks_page: Option<KeystoreRef>,
    /// A keystore flush is running.
    pub ks_flushing: bool,
    /// The generation whose published checkpoint is still freeing the blocks it replaced: the
    /// checkpoint is not finished until they are (convergence waits for it).
    pub freeing: Option<u64>,
    /// The backlog entry (a drop waiting for a drain worker) whose `Busy` was already reported.
    pub busy_note: Option<Index>,
}

impl StorageRole {
    pub fn new(knobs: Knobs) -> Self {
        StorageRole {
            knobs,
            generation: 0,
            lead_term: 0,
            lead_epoch: 0,
            ks_page: None,
            ks_flushing: false,
            freeing: None,
            busy_note: None,
        }
    }

    /// The lease of the current storage leadership.
    pub fn lease(&self) -> Lease {
        Lease {
            term: self.lead_term,
            gen: self.generation,
        }
    }

    /// Whether `lease` is still this node's current storage generation.
    pub fn current(&self, lease: Lease) -> bool {
        self.generation == lease.gen
    }

    /// Whether the storage leadership `lease` still holds, raft being in `role` at `term`.
    pub fn holds(&self, lease: Lease, role: Role, term: Term) -> bool {
        self.current(lease) && role == Role::Leader && term == lease.term
    }

    /// Keeps the storage role in step with the raft role: step down when leadership of the
    /// storage's term is gone, start stepping up when this node leads and storage follows.
    pub fn follow_role(&mut self, store: &mut Store, role: Role, term: Term) -> Vec<Command> {
        let mut out = Vec::new();
        if store.mode() != Mode::Follower && (role != Role::Leader || term != self.lead_term) {
            store.step_down();
            self.generation += 1;
            out.push(note(StorageEvent::StepDown {
                term: self.lead_term,
                ingest_entries: store.ingest.len(),
            }));
        }
        if role == Role::Leader && store.mode() == Mode::Follower {
            out.push(self.start_step_up(store, term));
        }
        out
    }

    /// Starts a step-up for `term` as a new storage generation (older tasks stop).
    fn start_step_up(&mut self, store: &mut Store, term: Term) -> Command {
        store.set_mode(Mode::SteppingUp);
        self.generation += 1;
        self.lead_term = term;
        self.ks_page = None;
        self.ks_flushing = false;
        Command::StepUp(self.lease())
    }

    /// Another node claimed the page service while this one still leads (a deposed leader that
    /// has not heard of its successor yet, or the other way round): start the step-up over
    /// with a fresh claim. The stale leader learns of the newer term soon and stops claiming.
    pub fn reclaim(
        &mut self,
        store: &mut Store,
        lease: Lease,
        role: Role,
        term: Term,
        why: String,
    ) -> Vec<Command> {
        if !self.holds(lease, role, term) {
            return vec![];
        }
        store.step_down();
        let step_up = self.start_step_up(store, lease.term);
        let stage = StepUpStage::Reclaiming { why };
        vec![
            step_up,
            note(StorageEvent::StepUp {
                term: lease.term,
                stage,
            }),
        ]
    }

    /// Whether a committed drop of `table` (backlog entry `index`) may be applied now: `Err`
    /// while a step-up drain worker holds the table's read lock (the handle's exclusive
    /// try-lock says `Busy`; reported once per entry). The drop and the entries behind it wait.
    pub fn admit_drop(
        &mut self,
        store: &mut Store,
        table: &str,
        index: Index,
    ) -> Result<(), Vec<Command>> {
        let Err(err) = store.handles.try_drop(table) else {
            return Ok(());
        };
        if self.busy_note == Some(index) {
            return Err(vec![]);
        }
        self.busy_note = Some(index);
        Err(vec![note(StorageEvent::DropBusy {
            table: table.to_string(),
            index,
            error: err.to_string(),
        })])
    }
}
