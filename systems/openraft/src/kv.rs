//! The replicated key-value state machine's types, and openraft's type configuration.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// One client operation. Reads go through the log too (linearizable without leases).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvRequest {
    /// Who issued it (client id, sequence number): lets a checker name the operation.
    pub client: u64,
    pub seq: u64,
    pub op: KvOp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    Put { key: String, value: String },
    Delete { key: String },
    Get { key: String },
}

/// The value before the operation (put, delete) or the value read (get).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvResponse {
    pub value: Option<String>,
}

impl std::fmt::Display for KvRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.op {
            KvOp::Put { key, value } => write!(f, "c{}#{} put {key}={value}", self.client, self.seq),
            KvOp::Delete { key } => write!(f, "c{}#{} del {key}", self.client, self.seq),
            KvOp::Get { key } => write!(f, "c{}#{} get {key}", self.client, self.seq),
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

/// Apply one operation to a map; the response is the value before (put, delete) or read (get).
pub fn apply_op(kv: &mut std::collections::BTreeMap<String, String>, op: &KvOp) -> KvResponse {
    match op {
        KvOp::Put { key, value } => KvResponse { value: kv.insert(key.clone(), value.clone()) },
        KvOp::Delete { key } => KvResponse { value: kv.remove(key) },
        KvOp::Get { key } => KvResponse { value: kv.get(key).cloned() },
    }
}
