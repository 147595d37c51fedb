//! Step-up: claim the page service, move onto the newest checkpoint, sweep what earlier leaders
//! left unreferenced, flush a keystore page if the base has none, drain ingest into stable
//! (`drain`), and checkpoint. Losing leadership abandons it; any other error is fatal for the
//! node.

use std::collections::BTreeSet;

use super::pickup::decode_meta;
use super::{note, Command, Lease, StorageRole};
use crate::layered::{CheckpointMeta, StableView, Store};
use crate::observe::{StepUpStage, StorageEvent};
use crate::page_store::{PsOp, PsResult, Published};
use crate::pages::Lsn;
use crate::raft::{Index, Role, Term};

/// After the claim.
#[derive(Debug)]
pub enum Claimed {
    /// Stop after these commands (standing aside, or an abort).
    Stop(Vec<Command>),
    /// Move onto this newer checkpoint first (catch up to its applied index, load it).
    Install(CheckpointMeta),
    /// Go on to the sweep.
    Sweep,
}

/// What raft's log says at a checkpoint's cut.
#[derive(Debug, Clone, Copy)]
pub struct LogAt {
    pub last_index: Index,
    /// The term of the entry at the checkpoint's applied index, if the log has it.
    pub term_there: Option<Term>,
}

/// The claim's counts the step-up reports at its end.
#[derive(Debug, Clone, Copy, Default)]
pub struct DrainStats {
    pub passes: usize,
    pub tables: usize,
    pub docs: usize,
}

impl StorageRole {
    /// The page service answered the claim of `lease`.
    pub fn step_up_claimed(&self, store: &Store, lease: Lease, reply: PsResult) -> Claimed {
        let latest: Option<Published> = match reply {
            PsResult::Claimed { latest, .. } => latest,
            other => {
                let e = format!("failed to step up: unexpected reply to fence: {other:?}");
                return Claimed::Stop(vec![Command::Abort(e)]);
            }
        };
        let Some(p) = latest else {
            return Claimed::Sweep;
        };
        let meta = match decode_meta(&p) {
            Ok(m) => m,
            Err(e) => {
                return Claimed::Stop(vec![Command::Abort(format!("failed to step up: {e}"))])
            }
        };
        if meta.term > lease.term {
            // Written by the leader of a newer term: this node was deposed and has not heard
            // yet. Stand aside; raft will make it a follower.
            let stage = StepUpStage::StandingAside {
                checkpoint: meta.id,
                written_in: meta.term,
            };
            let term = lease.term;
            return Claimed::Stop(vec![note(StorageEvent::StepUp { term, stage })]);
        }
        if meta.id > store.base.meta.id {
            return Claimed::Install(meta);
        }
        Claimed::Sweep
    }

    /// A leader's log holds every committed entry, and a checkpoint holds only committed ones:
    /// a checkpoint beyond (or different from) this log means raft lost committed entries.
    /// Asked only while the lease holds (otherwise the log may rightly lack newer entries).
    pub fn step_up_log_check(&self, meta: &CheckpointMeta, log: LogAt) -> Vec<Command> {
        if meta.applied_index == 0 || log.term_there == Some(meta.applied_term) {
            return vec![];
        }
        vec![Command::Abort(format!(
            "failed to step up: checkpoint {} ends at entry {} of term {}, but this leader's log {}",
            meta.id,
            meta.applied_index,
            meta.applied_term,
            match log.term_there {
                Some(t) => format!("has term {t} there"),
                None => format!("ends at {}", log.last_index),
            }
        ))]
    }

    /// The keys to open the newest checkpoint could not be had while the lease holds: fatal.
    pub fn step_up_no_keys(&self, id: u64, e: &str) -> Vec<Command> {
        vec![Command::Abort(format!(
            "failed to step up: keys for checkpoint {id}: {e}"
        ))]
    }

    /// Loading the newest checkpoint failed with `e`; `fenced` is the epoch that fenced this
    /// leadership's, if an empty discard says so (a newer leader may have freed the blocks
    /// meanwhile: then this step-up is moot). Otherwise the loss is real.
    pub fn step_up_load_failed(
        &self,
        lease: Lease,
        epoch: u64,
        id: u64,
        e: String,
        fenced: Option<u64>,
        still: bool,
    ) -> Vec<Command> {
        if let Some(t) = fenced {
            return vec![Command::Reclaim(
                lease,
                format!("epoch {epoch} fenced by epoch {t} ({e})"),
            )];
        }
        if !still {
            return vec![];
        }
        vec![Command::Abort(format!(
            "failed to step up: loading checkpoint {id}: {e}"
        ))]
    }

    /// The newest checkpoint is loaded: install it under the lease.
    pub fn step_up_install(
        &mut self,
        store: &mut Store,
        lease: Lease,
        view: StableView,
    ) -> Vec<Command> {
        if !self.current(lease) {
            return vec![];
        }
        let id = view.meta.id;
        store.install(view);
        vec![note(StorageEvent::PickedUp {
            id,
            during_step_up: true,
            pruned_to: None,
            left: 0,
        })]
    }

    /// Blocks below the fence that the newest checkpoint does not reference belong to
    /// checkpoints earlier leaders never finished or never cleaned up: the sweep frees them.
    pub fn step_up_orphans(&self, store: &Store, listed: Vec<Lsn>) -> (Vec<Lsn>, Vec<Command>) {
        let m = &store.base.meta;
        let referenced: BTreeSet<Lsn> = m
            .tables
            .values()
            .flat_map(|t| t.cookies().map(|c| c.lsn))
            .chain(m.keystore.map(|k| k.cookie.lsn))
            .collect();
        let orphans: Vec<Lsn> = listed
            .into_iter()
            .filter(|l| !referenced.contains(l))
            .collect();
        if orphans.is_empty() {
            return (orphans, vec![]);
        }
        let sweep = note(StorageEvent::Sweep {
            orphans: orphans.clone(),
        });
        (orphans, vec![sweep])
    }

    /// The sweep's discard was answered: go on (`Ok`) or stop after the commands.
    pub fn step_up_swept(
        &self,
        lease: Lease,
        epoch: u64,
        reply: PsResult,
    ) -> Result<(), Vec<Command>> {
        match reply {
            PsResult::Done => Ok(()),
            PsResult::Fenced { epoch: t } => Err(vec![Command::Reclaim(
                lease,
                format!("epoch {epoch} fenced by epoch {t}"),
            )]),
            _ => Err(vec![]),
        }
    }

    /// The keystore page of the base checkpoint becomes this leadership's; `Some(needs_flush)`
    /// (a new cluster: its first checkpoint must carry a keystore page), `None` if the lease is
    /// gone.
    pub fn step_up_keystore_page(&mut self, store: &Store, lease: Lease) -> Option<bool> {
        if !self.current(lease) {
            return None;
        }
        self.ks_page = store.base.meta.keystore;
        Some(self.ks_page.is_none())
    }

    /// The claimed epoch becomes this leadership's write epoch, if it still holds.
    pub fn step_up_epoch(&mut self, lease: Lease, role: Role, term: Term, epoch: u64) -> bool {
        if !self.holds(lease, role, term) {
            return false;
        }
        self.lead_epoch = epoch;
        true
    }

    /// The drain finished: the node leads its storage (a forced checkpoint follows).
    pub fn step_up_done(&self, store: &Store, lease: Lease, epoch: u64, s: DrainStats) -> Command {
        note(StorageEvent::StepUp {
            term: lease.term,
            stage: StepUpStage::Done {
                epoch,
                tables: s.tables,
                docs: s.docs,
                base: store.base.meta.id,
                passes: s.passes,
            },
        })
    }

    /// The claim of a step-up.
    pub fn step_up_claiming(lease: Lease) -> (Command, PsOp) {
        let stage = StepUpStage::Claiming;
        let claiming = note(StorageEvent::StepUp {
            term: lease.term,
            stage,
        });
        (claiming, PsOp::Fence)
    }
}
