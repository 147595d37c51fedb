//! Invariant checkers. `history` runs online over the engine's events (one canonical history,
//! TigerBeetle style); `dbhash`, `durability` and `validate` run on snapshots at the end, after
//! the liveness phase has converged the cluster.

pub mod dbhash;
pub mod durability;
pub mod history;
pub mod liveness;
pub mod validate;

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
