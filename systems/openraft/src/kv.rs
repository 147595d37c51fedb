//! The replicated key-value state machine's types, and openraft's type configuration.

use std::collections::BTreeMap;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// One client operation as it travels through the log. Reads go through the log too, so a
/// `Get` is linearizable without leases: it is answered by the state machine at its entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvRequest {
    /// The harness's call identity (client, sequence number): the applied entry names it.
    pub client: u32,
    pub seq: u64,
    pub op: KvOp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
    Get { key: String },
}

/// The value before the operation (put, delete) or the value read (get).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvResponse {
    pub value: Option<Vec<u8>>,
}

impl From<&sim::sut::KvCall> for KvRequest {
    fn from(call: &sim::sut::KvCall) -> Self {
        let op = match &call.op {
            sim::sut::KvOp::Put { key, value } => KvOp::Put { key: key.clone(), value: value.clone() },
            sim::sut::KvOp::Delete { key } => KvOp::Delete { key: key.clone() },
            sim::sut::KvOp::Get { key } => KvOp::Get { key: key.clone() },
        };
        KvRequest { client: call.client, seq: call.seq, op }
    }
}

/// The text `HostedEvent::Applied::op` carries: `sim::sut::op_label` (which the checkers match
/// to the client history), then the operation. Values are escaped, so any bytes print the same.
impl std::fmt::Display for KvRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let label = sim::sut::op_label(self.client, self.seq);
        match &self.op {
            KvOp::Put { key, value } => write!(f, "{label} put {key}={}", value.escape_ascii()),
            KvOp::Delete { key } => write!(f, "{label} del {key}"),
            KvOp::Get { key } => write!(f, "{label} get {key}"),
        }
    }
}

openraft::declare_raft_types!(
    /// openraft hosted on madsim: u64 node ids, the KV operations above, in-memory snapshots.
    pub TypeConfig:
        D = KvRequest,
        R = KvResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = crate::runtime::MadsimRuntime,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;

/// The state machine's visible state.
pub type KvMap = BTreeMap<String, Vec<u8>>;

/// Apply one operation to a map; the response is the value before (put, delete) or read (get).
pub fn apply_op(kv: &mut KvMap, op: &KvOp) -> KvResponse {
    match op {
        KvOp::Put { key, value } => KvResponse { value: kv.insert(key.clone(), value.clone()) },
        KvOp::Delete { key } => KvResponse { value: kv.remove(key) },
        KvOp::Get { key } => KvResponse { value: kv.get(key).cloned() },
    }
}

/// `HostedStatus::state_digest`: xxh3 over every (key, value), length-prefixed so that entry
/// boundaries count. Equal maps, equal digests, in any process (no per-process hash keys).
pub fn digest(kv: &KvMap) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (k, v) in kv {
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        h.update(&(v.len() as u64).to_le_bytes());
        h.update(v);
    }
    h.digest()
}
