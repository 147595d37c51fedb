//! Invariant checkers. `history` and `model` run online over the engine's events (one canonical
//! history, TigerBeetle style, replayed on the plain state machine); `model` also compares each
//! replica's visible state while faults run; `clients` checks what clients observed
//! (acknowledgements, linearizability, durability); `dbhash` and `validate` run on snapshots at
//! the end, after the liveness phase has converged the cluster.

pub mod clients;
pub mod dbhash;
pub mod history;
pub mod hosted;
pub mod hosted_checks;
pub mod keystores;
pub mod linearizability;
pub mod liveness;
pub mod model;
pub mod nonces;
pub mod persistence;
pub mod record;
pub mod snapshot;
pub mod validate;
pub mod windows;

use reports::{Violation, ViolationKind};

pub fn violation(
    kind: ViolationKind,
    node: Option<String>,
    at_ms: u64,
    message: impl Into<String>,
) -> Violation {
    Violation {
        kind,
        node,
        at_ms,
        message: message.into(),
    }
}
