//! Typed storage-layer observations. The harness matches their fields (race windows, checks);
//! `Display` gives the trace line's detail and `kind` its kind, so text is derived, never parsed.

use std::fmt;

use crate::pages::Lsn;
use crate::raft::{Index, Term};

/// One step of the storage layer of a replica, the page service or the KMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageEvent {
    /// A replica incarnation rebuilt its tables (from a checkpoint and/or its log).
    Recovered {
        from: String,
    },
    KmsStarted {
        cmk_versions: u32,
    },
    PageServiceStarted {
        blocks: usize,
        newest: Option<u64>,
        epoch: u64,
        torn: usize,
    },
    /// An admin asked the leader to step down.
    LeaderStepDown {
        term: Term,
        mid_step_up: bool,
    },
    /// Storage followed raft out of leadership.
    StepDown {
        term: Term,
        ingest_entries: usize,
    },
    StepUp {
        term: Term,
        stage: StepUpStage,
    },
    /// A new leader frees blocks no checkpoint references.
    Sweep {
        orphans: Vec<Lsn>,
    },
    CheckpointPublished {
        id: u64,
        lsn: Lsn,
        ts: u64,
        applied: Index,
        written: usize,
        freed: usize,
        database_size: u64,
    },
    CheckpointFailed {
        id: u64,
        cause: CheckpointFailure,
    },
    /// A checkpoint of an older leadership of this node ended: a newer request overtook it.
    CheckpointAbandoned {
        id: u64,
        at_publish: bool,
    },
    KeystoreFlushed {
        lsn: Lsn,
        keystore: String,
    },
    /// A keystore flush of an earlier leadership met that node's newer leadership's request at
    /// the page service (refused as stale) and ended.
    KeystoreFlushAbandoned {
        keystore: String,
    },
    /// The `keystore-flush-slow` failpoint delays a flush (widening incident 000's window).
    KeystoreFlushSlow {
        delay_ms: u64,
    },
    /// A follower installed a checkpoint (or a new leader moved onto one at step-up).
    PickedUp {
        id: u64,
        during_step_up: bool,
        pruned_to: Option<u64>,
        left: usize,
    },
    PickupFailed {
        reason: String,
    },
    /// A checkpoint whose keystore page is older than the committed keystore (incident 000's
    /// window); the fixed path skips it (`skipped`), the knob aborts right after.
    StaleKeystoreCheckpoint {
        id: u64,
        reason: String,
        skipped: bool,
    },
    /// A forced drop met a table a drain worker holds: it waits for the copy.
    DropBusy {
        table: String,
        index: Index,
        error: String,
    },
    /// A drain worker found its table gone under it (incident 002's faulty path aborts next).
    DrainTableGone {
        table: String,
        error: String,
    },
    Rotation {
        detail: String,
    },
    RotationFailed {
        detail: String,
    },
}

/// How a step-up went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepUpStage {
    Claiming,
    Reclaiming {
        why: String,
    },
    /// A checkpoint of a newer term exists: this node was deposed and has not heard yet.
    StandingAside {
        checkpoint: u64,
        written_in: Term,
    },
    Done {
        epoch: u64,
        tables: usize,
        docs: usize,
        base: u64,
        passes: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointFailure {
    NoDataKey(String),
    /// Recoverable: the blocks written are discarded and the changes stay dirty.
    BeforeWrapUp {
        error: String,
        /// The address cookie could not be packed after its block was written (incident 001).
        pack_failed: bool,
        discard: Vec<Lsn>,
        orphaned: Vec<Lsn>,
    },
}

/// Something odd that is not a failure of the system (a port, a file, a dead incarnation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    CannotBind { addr: String, error: String },
    CannotLoad { what: String, error: String },
    PersistFailed { error: String },
}

impl StorageEvent {
    /// The trace kind (renderers key their markers on it).
    pub fn kind(&self) -> &'static str {
        match self {
            StorageEvent::Recovered { .. } => "recover",
            StorageEvent::KmsStarted { .. } => "kms-start",
            StorageEvent::PageServiceStarted { .. } => "ps-start",
            StorageEvent::LeaderStepDown { .. } => "leader-step-down",
            StorageEvent::StepDown { .. } => "step-down",
            StorageEvent::StepUp { .. } => "step-up",
            StorageEvent::Sweep { .. } => "sweep",
            StorageEvent::CheckpointPublished { .. } => "checkpoint",
            StorageEvent::CheckpointFailed { .. } => "checkpoint-failed",
            StorageEvent::CheckpointAbandoned { .. } => "checkpoint-abandoned",
            StorageEvent::KeystoreFlushed { .. }
            | StorageEvent::KeystoreFlushSlow { .. }
            | StorageEvent::KeystoreFlushAbandoned { .. } => "keystore-flush",
            StorageEvent::PickedUp { .. } => "pickup",
            StorageEvent::PickupFailed { .. } => "pickup-failed",
            StorageEvent::StaleKeystoreCheckpoint { .. } => "pickup-skipped",
            StorageEvent::DropBusy { .. } => "drop-busy",
            StorageEvent::DrainTableGone { .. } => "drain-table-gone",
            StorageEvent::Rotation { .. } => "rotate",
            StorageEvent::RotationFailed { .. } => "rotate-failed",
        }
    }
}

impl fmt::Display for StorageEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageEvent::Recovered { from } => f.write_str(from),
            StorageEvent::KmsStarted { cmk_versions } => {
                write!(f, "serving cmk versions 1..={cmk_versions}")
            }
            StorageEvent::PageServiceStarted {
                blocks,
                newest,
                epoch,
                torn,
            } => write!(
                f,
                "{blocks} blocks, newest checkpoint {newest:?}, epoch {epoch}, torn {torn}"
            ),
            StorageEvent::LeaderStepDown { term, mid_step_up } => {
                let during = if *mid_step_up { ", mid step-up" } else { "" };
                write!(f, "term {term}: stepping down as asked{during}")
            }
            StorageEvent::StepDown {
                term,
                ingest_entries,
            } => write!(
                f,
                "term {term}: un-checkpointed changes back to ingest ({ingest_entries} entries)"
            ),
            StorageEvent::StepUp { term, stage } => fmt_step_up(*term, stage, f),
            StorageEvent::Sweep { orphans } => write!(
                f,
                "discarding {} unreferenced blocks {orphans:?}",
                orphans.len()
            ),
            StorageEvent::CheckpointPublished {
                id,
                lsn,
                ts,
                applied,
                written,
                freed,
                database_size,
            } => write!(
                f,
                "checkpoint {id} published at lsn {lsn}: ts {ts} applied {applied}, {written} blocks written, {freed} freed, database_size {database_size}"
            ),
            StorageEvent::CheckpointFailed { id, cause } => fmt_checkpoint_failed(*id, cause, f),
            StorageEvent::CheckpointAbandoned { id, at_publish } => write!(
                f,
                "checkpoint {id}: {} overtaken by a newer leadership's request (stale)",
                if *at_publish { "publish" } else { "put" }
            ),
            StorageEvent::KeystoreFlushed { lsn, keystore } => {
                write!(f, "keystore page at lsn {lsn}: {keystore}")
            }
            StorageEvent::KeystoreFlushAbandoned { keystore } => write!(
                f,
                "keystore flush of {keystore} overtaken by a newer leadership's request (stale)"
            ),
            StorageEvent::KeystoreFlushSlow { delay_ms } => {
                write!(f, "slow flush (failpoint keystore-flush-slow): {delay_ms} ms")
            }
            StorageEvent::PickedUp {
                id,
                during_step_up,
                pruned_to,
                left,
            } => match (during_step_up, pruned_to) {
                (true, _) | (_, None) => write!(f, "checkpoint {id} (step-up)"),
                (false, Some(ts)) => write!(
                    f,
                    "checkpoint {id}: ingest pruned to ts > {ts}, {left} entries left"
                ),
            },
            StorageEvent::PickupFailed { reason } => f.write_str(reason),
            StorageEvent::StaleKeystoreCheckpoint {
                reason, skipped, ..
            } => {
                if *skipped {
                    write!(f, "{reason}")
                } else {
                    write!(f, "{reason} (not skipped)")
                }
            }
            StorageEvent::DropBusy {
                table,
                index,
                error,
            } => write!(
                f,
                "drop {table} (index {index}): {error}: a drain worker holds the table; retrying after the copy"
            ),
            StorageEvent::DrainTableGone { table, error } => {
                write!(f, "drain worker lost ingest table {table}: {error}")
            }
            StorageEvent::Rotation { detail } | StorageEvent::RotationFailed { detail } => {
                f.write_str(detail)
            }
        }
    }
}

fn fmt_step_up(term: Term, stage: &StepUpStage, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match stage {
        StepUpStage::Claiming => write!(f, "term {term}: claiming the page service"),
        StepUpStage::Reclaiming { why } => {
            write!(f, "term {term}: claiming the page service again: {why}")
        }
        StepUpStage::StandingAside {
            checkpoint,
            written_in,
        } => write!(
            f,
            "term {term}: checkpoint {checkpoint} was written in term {written_in}: standing aside"
        ),
        StepUpStage::Done {
            epoch,
            tables,
            docs,
            base,
            passes,
        } => write!(
            f,
            "term {term}: epoch {epoch}, drained {tables} tables ({docs} documents) into stable over checkpoint {base} in {passes} passes"
        ),
        }
}

fn fmt_checkpoint_failed(
    id: u64,
    cause: &CheckpointFailure,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    match cause {
        CheckpointFailure::NoDataKey(e) => write!(f, "checkpoint {id}: no data key: {e}"),
        CheckpointFailure::BeforeWrapUp {
            error,
            discard,
            orphaned,
            ..
        } => {
            write!(
                f,
                "checkpoint {id} failed before wrap-up: {error}; discarding blocks {discard:?}"
            )?;
            if !orphaned.is_empty() {
                write!(f, "; cannot free unpacked blocks {orphaned:?}")?;
            }
            Ok(())
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::CannotBind { addr, error } => write!(f, "cannot bind {addr}: {error}"),
            Warning::CannotLoad { what, error } => write!(f, "cannot load {what}: {error}"),
            Warning::PersistFailed { error } => write!(f, "persist failed: {error}"),
        }
    }
}
