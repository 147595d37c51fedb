//! The typed observation log at the centre: every engine observation becomes a [`Record`]
//! stamped with simulated time, node and incarnation. Online checkers see each record as it
//! happens; at-rest checkers see a [`Cluster`] snapshot after the run. Nothing here knows the
//! simulator: the world only feeds records in and snapshots out.

use std::cell::RefCell;

use engine::observe::Event;
use engine::raft::NodeId;
use reports::{Violation, ViolationKind};

use super::clients::ClientOp;
use super::model::Model;
use super::snapshot::{NodeSnapshot, PagesSnapshot};

/// One engine observation, as the harness saw it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub at_us: u64,
    pub node: NodeId,
    /// Which incarnation of the node (1 for its first start).
    pub incarnation: u64,
    pub event: &'a Event,
}

impl Record<'_> {
    pub fn at_ms(&self) -> u64 {
        self.at_us / 1000
    }
}

/// A checker that sees each record as it happens, so it can fire at the first bad state
/// rather than wait for a symptom a later checkpoint or leader change may repair.
pub trait Online {
    fn record(&mut self, r: &Record<'_>);
    /// What it found so far (drained).
    fn take_violations(&mut self) -> Vec<Violation>;
}

/// Everything the at-rest checkers see once the run is over.
pub struct Cluster<'a> {
    pub nodes: &'a [NodeSnapshot],
    pub pages: Option<&'a PagesSnapshot>,
    pub ops: &'a [ClientOp],
    pub model: &'a Model,
    pub at_ms: u64,
    /// The client operations the findings name: the timeline outlines them.
    pub named: &'a RefCell<NamedOps>,
}

/// Client operations (indices into the history) a finding of each kind names.
pub type NamedOps = Vec<(usize, ViolationKind)>;

impl Cluster<'_> {
    /// Records that a finding of `kind` names these operations.
    pub fn name_ops(&self, ops: impl IntoIterator<Item = usize>, kind: ViolationKind) {
        self.named
            .borrow_mut()
            .extend(ops.into_iter().map(|i| (i, kind)));
    }
}

/// A checker over the cluster at rest (after the liveness phase). `notes` takes what a
/// report should say without it being a violation (e.g. an undecided search).
pub trait AtRest {
    fn check(&self, c: &Cluster<'_>, notes: &mut Vec<String>) -> Vec<Violation>;
}
