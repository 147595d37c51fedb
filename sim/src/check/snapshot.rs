//! What the at-rest checkers see of the cluster: plain data taken from the engine's inspection
//! interface, so no checker touches the simulator.

use std::collections::BTreeMap;
use std::sync::Arc;

use engine::kms::KMS_NODE;
use engine::layered::CheckpointMeta;
use engine::observe::{InspectPages, NodeStatus};
use engine::page_service::PAGE_SERVICE_NODE;
use engine::raft::{Entry, NodeId, Op};
use engine::state::{Collection, CollectionHash};

/// The published checkpoint and the blocks the page service holds, for `validate`.
pub struct PagesSnapshot {
    pub blocks: BTreeMap<engine::pages::Lsn, engine::page_store::BlockInfo>,
    pub latest: Option<(u64, Result<CheckpointMeta, String>)>,
    /// Fetches a block's bytes.
    pub fetch: Arc<dyn InspectPages>,
}

/// What the final checkers see of one live replica.
pub struct NodeSnapshot {
    pub status: NodeStatus,
    /// The node's dbHash per collection.
    pub hashes: BTreeMap<String, CollectionHash>,
    pub data: BTreeMap<String, Collection>,
    pub log_tail: Vec<Entry>,
}

/// `node_name` without an allocation for the usual ids (the trace names a node per event).
pub fn node_label(id: NodeId) -> std::borrow::Cow<'static, str> {
    const REPLICAS: [&str; 10] = ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"];
    match id {
        PAGE_SERVICE_NODE => "ps".into(),
        KMS_NODE => "kms".into(),
        _ => match REPLICAS.get(id as usize) {
            Some(n) => (*n).into(),
            None => format!("n{id}").into(),
        },
    }
}

/// How nodes are named in traces and reports: replicas `n1`.., the page service `ps`, the
/// KMS `kms`.
pub fn node_name(id: NodeId) -> String {
    node_label(id).into_owned()
}

/// One line for a log entry's operation (reports and traces).
pub fn op_summary(op: &Op) -> String {
    match op {
        Op::Noop => "noop".into(),
        Op::Put {
            collection, key, ..
        } => format!("put {collection}/{key}"),
        Op::Delete { collection, key } => format!("del {collection}/{key}"),
        Op::Append {
            collection, key, ..
        } => format!("append {collection}/{key}"),
        Op::Get { collection, key } => format!("get {collection}/{key}"),
        Op::CreateCollection { name } => format!("create {name}"),
        Op::DropCollection { name } => format!("drop {name}"),
        Op::Rotate(r) => r.summary(),
    }
}
