//! Race windows: named moments a run can reach, as typed predicates over the engine's
//! observations (and, for the controller's own faults, marked where the fault is applied).
//! A scenario that never enters its race cannot find the bug behind it, so seed and run
//! reports count them.

use engine::observe::{CheckpointFailure, CrashPoint, Event, StorageEvent};
use engine::raft::RaftEvent;

/// Incident 003 needs both: every replica restarting at once, then a vote for a candidate with
/// a shorter but higher-term log.
pub const WINDOW_ALL_RESTARTED: &str = "all-replicas-restarted";
pub const WINDOW_VOTE_SHORTER_LOG: &str = "vote-for-shorter-log";
/// Incident 001: a checkpoint's address-cookie packing failed after its block was written.
pub const WINDOW_PACK_FAILED: &str = "addr-pack-failed-after-put";
/// A follower installed a newer checkpoint while applying the oplog.
pub const WINDOW_PICKUP: &str = "checkpoint-picked-up";
/// The page service crashed while a leader's checkpoint was being written.
pub const WINDOW_PS_KILLED_MID_CHECKPOINT: &str = "page-service-killed-mid-checkpoint";
/// A leader crashed while its checkpoint was being written.
pub const WINDOW_LEADER_KILLED_MID_CHECKPOINT: &str = "leader-killed-mid-checkpoint";
/// Incident 000: a standby holding a rotated keystore met a checkpoint whose keystore page is
/// older (a rotation applied before a stale checkpoint's pick-up).
pub const WINDOW_STALE_KEYSTORE: &str = "stale-keystore-checkpoint";
/// A key rotation was applied on a follower.
pub const WINDOW_ROTATION_ON_FOLLOWER: &str = "rotation-applied-on-follower";
/// Incident 002: a forced drop reached a table a step-up drain worker was copying.
pub const WINDOW_DROP_DURING_DRAIN: &str = "drop-during-drain";
/// A leader was asked to step down while its storage was still stepping up.
pub const WINDOW_STEP_DOWN_MID_STEP_UP: &str = "step-down-mid-step-up";
/// A checkpoint of an earlier leadership of a node met that node's newer leadership's requests
/// at the page service (a re-elected leader must not treat the stale reply as fatal).
pub const WINDOW_STALE_REPLY_AFTER_RE_ELECTION: &str = "stale-reply-after-re-election";

/// A node was killed at one of the engine's named crash points (one window per point).
pub const WINDOW_CRASH_RAFT_WRITTEN: &str = "crash-at-raft-written";
pub const WINDOW_CRASH_RAFT_SYNCED: &str = "crash-at-raft-synced";
pub const WINDOW_CRASH_PAGES_WRITTEN: &str = "crash-at-pages-written";
pub const WINDOW_CRASH_PAGES_SYNCED: &str = "crash-at-pages-synced";
pub const WINDOW_CRASH_CHECKPOINT_PUT: &str = "crash-at-checkpoint-put";
pub const WINDOW_CRASH_CHECKPOINT_WRAPPED: &str = "crash-at-checkpoint-wrapped";
pub const WINDOW_CRASH_CHECKPOINT_PUBLISHED: &str = "crash-at-checkpoint-published";
pub const WINDOW_CRASH_PICKUP_LOADED: &str = "crash-at-pickup-loaded";
pub const WINDOW_CRASH_STEP_UP_FENCED: &str = "crash-at-step-up-fenced";
pub const WINDOW_CRASH_KEYSTORE_PUT: &str = "crash-at-keystore-put";

/// The window a kill at `point` enters.
pub fn crash_point_window(point: CrashPoint) -> &'static str {
    match point {
        CrashPoint::RaftWritten => WINDOW_CRASH_RAFT_WRITTEN,
        CrashPoint::RaftSynced => WINDOW_CRASH_RAFT_SYNCED,
        CrashPoint::PagesWritten => WINDOW_CRASH_PAGES_WRITTEN,
        CrashPoint::PagesSynced => WINDOW_CRASH_PAGES_SYNCED,
        CrashPoint::CheckpointPut => WINDOW_CRASH_CHECKPOINT_PUT,
        CrashPoint::CheckpointWrapped => WINDOW_CRASH_CHECKPOINT_WRAPPED,
        CrashPoint::CheckpointPublished => WINDOW_CRASH_CHECKPOINT_PUBLISHED,
        CrashPoint::PickupLoaded => WINDOW_CRASH_PICKUP_LOADED,
        CrashPoint::StepUpFenced => WINDOW_CRASH_STEP_UP_FENCED,
        CrashPoint::KeystorePut => WINDOW_CRASH_KEYSTORE_PUT,
    }
}

pub const WINDOWS: [&str; 21] = [
    WINDOW_ALL_RESTARTED,
    WINDOW_VOTE_SHORTER_LOG,
    WINDOW_PACK_FAILED,
    WINDOW_PICKUP,
    WINDOW_PS_KILLED_MID_CHECKPOINT,
    WINDOW_LEADER_KILLED_MID_CHECKPOINT,
    WINDOW_ROTATION_ON_FOLLOWER,
    WINDOW_STALE_KEYSTORE,
    WINDOW_DROP_DURING_DRAIN,
    WINDOW_STEP_DOWN_MID_STEP_UP,
    WINDOW_STALE_REPLY_AFTER_RE_ELECTION,
    WINDOW_CRASH_RAFT_WRITTEN,
    WINDOW_CRASH_RAFT_SYNCED,
    WINDOW_CRASH_PAGES_WRITTEN,
    WINDOW_CRASH_PAGES_SYNCED,
    WINDOW_CRASH_CHECKPOINT_PUT,
    WINDOW_CRASH_CHECKPOINT_WRAPPED,
    WINDOW_CRASH_CHECKPOINT_PUBLISHED,
    WINDOW_CRASH_PICKUP_LOADED,
    WINDOW_CRASH_STEP_UP_FENCED,
    WINDOW_CRASH_KEYSTORE_PUT,
];

/// The window an engine observation enters, if any.
pub fn entered(ev: &Event) -> Option<&'static str> {
    match ev {
        Event::Raft(RaftEvent::VoteGranted {
            candidate_last_index,
            own_last_index,
            ..
        }) if candidate_last_index < own_last_index => Some(WINDOW_VOTE_SHORTER_LOG),
        Event::Keystore {
            rotation_on_follower: true,
            ..
        } => Some(WINDOW_ROTATION_ON_FOLLOWER),
        Event::Storage(s) => match s {
            StorageEvent::CheckpointFailed {
                cause:
                    CheckpointFailure::BeforeWrapUp {
                        pack_failed: true, ..
                    },
                ..
            } => Some(WINDOW_PACK_FAILED),
            StorageEvent::PickedUp {
                during_step_up: false,
                ..
            } => Some(WINDOW_PICKUP),
            StorageEvent::DropBusy { .. } | StorageEvent::DrainTableGone { .. } => {
                Some(WINDOW_DROP_DURING_DRAIN)
            }
            StorageEvent::LeaderStepDown {
                mid_step_up: true, ..
            } => Some(WINDOW_STEP_DOWN_MID_STEP_UP),
            StorageEvent::StaleKeystoreCheckpoint { .. } => Some(WINDOW_STALE_KEYSTORE),
            StorageEvent::CheckpointAbandoned { .. }
            | StorageEvent::KeystoreFlushAbandoned { .. } => {
                Some(WINDOW_STALE_REPLY_AFTER_RE_ELECTION)
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_observations_name_their_windows() {
        let pack = Event::Storage(StorageEvent::CheckpointFailed {
            id: 3,
            cause: CheckpointFailure::BeforeWrapUp {
                error: "x".into(),
                pack_failed: true,
                discard: vec![],
                orphaned: vec![],
            },
        });
        assert_eq!(entered(&pack), Some(WINDOW_PACK_FAILED));
        let put_failed = Event::Storage(StorageEvent::CheckpointFailed {
            id: 3,
            cause: CheckpointFailure::BeforeWrapUp {
                error: "x".into(),
                pack_failed: false,
                discard: vec![],
                orphaned: vec![],
            },
        });
        assert_eq!(entered(&put_failed), None);
        let step_up_pickup = Event::Storage(StorageEvent::PickedUp {
            id: 1,
            during_step_up: true,
            pruned_to: None,
            left: 0,
        });
        assert_eq!(entered(&step_up_pickup), None);
        for w in WINDOWS {
            assert_eq!(
                WINDOWS.iter().filter(|x| **x == w).count(),
                1,
                "{w} listed once"
            );
        }
    }
}
