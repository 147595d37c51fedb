//! Key rotations. The leader prepares one with the KMS (the node's I/O) and proposes it under
//! its lease; every node applies it from the log, where it takes effect only if it fits the
//! keystore it was prepared against (`Keystore::apply`). A standby applying it while checkpoints
//! still carry the older keystore page is incident 000's first step (`pickup`).

use super::{note, Command, Lease, StorageRole};
use crate::keystore::{Keystore, Rotation};
use crate::observe::{Event, StorageEvent};
use crate::raft::Entry;

/// A node's keystore changed (the harness checks it never goes backwards).
pub fn keystore_event(ks: &Keystore, rotation_on_follower: bool, why: &str) -> Event {
    Event::Keystore {
        ts: ks.ts,
        kek_version: ks.kek_version,
        cmk_version: ks.cmk_version,
        rotation_on_follower,
        why: why.to_string(),
    }
}

/// What a node reports after applying rotation `r` of entry `e` (`ks` is its keystore after):
/// the new keystore, or that the rotation raced with another and changed nothing.
pub fn applied(ks: &Keystore, r: &Rotation, e: &Entry, follower: bool) -> Command {
    let on = if follower { "a follower" } else { "the leader" };
    let at = format!(
        "{} applied on {on} at index {} ts {}",
        r.summary(),
        e.index,
        e.ts
    );
    if ks.ts == e.ts {
        return Command::Note(keystore_event(ks, follower, &at));
    }
    let detail = format!(
        "{at}: raced with another rotation, keystore stays {}",
        ks.summary()
    );
    note(StorageEvent::Rotation { detail })
}

impl StorageRole {
    /// A rotation prepared under `lease` (or the KMS's refusal, for `what`): `Ok` to propose
    /// it; `Err` with what to report before answering the client `NotLeader` (leadership moved
    /// on, or the KMS refused: the client retries elsewhere).
    pub fn rotation_prepared(
        &self,
        lease: Lease,
        prepared: Result<Rotation, String>,
        what: &str,
    ) -> Result<Rotation, Vec<Command>> {
        match prepared {
            Ok(r) if self.current(lease) => Ok(r),
            Ok(_) => Err(vec![]),
            Err(e) => Err(vec![note(StorageEvent::RotationFailed {
                detail: format!("{what}: {e}"),
            })]),
        }
    }
}
