//! What travels between simulated nodes. Messages are passed as typed payloads (madsim's raw
//! datagrams), so serialization is not exercised by the network model.
//!
//! The envelope sits below every node that sends it: it names raft's messages and the page
//! store's requests, and defines the KMS's requests and results itself (the KMS node, which
//! serves them, sits above it).

use serde::{Deserialize, Serialize};

use crate::page_store::{PsRequest, PsResult};
use crate::raft::{Index, Message, NodeId, Op, Session, Term};

/// The one datagram tag every faultline endpoint uses.
pub const TAG: u64 = 0x6661_756c;
/// Port every replica listens on.
pub const REPLICA_PORT: u16 = 7000;
/// Port a replica's page-service client binds.
pub const PS_CLIENT_PORT: u16 = 7001;
/// Port the page service listens on.
pub const PAGE_SERVICE_PORT: u16 = 7100;
/// Port the KMS listens on.
pub const KMS_PORT: u16 = 7200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wire {
    Raft {
        from: NodeId,
        msg: Message,
    },
    /// A client write; answered once committed and applied on the leader.
    Request {
        id: u64,
        session: Option<Session>,
        op: Op,
    },
    /// An administrative command (key rotation): the leader prepares the operation itself
    /// (with the KMS) and answers once it is committed, like a write.
    Admin {
        id: u64,
        session: Option<Session>,
        action: AdminAction,
    },
    Reply {
        id: u64,
        result: ClientResult,
    },
    /// A request to the page service.
    Ps(PsRequest),
    PsReply {
        req_id: u64,
        result: PsResult,
    },
    /// A request to the KMS.
    Kms(KmsRequest),
    KmsReply {
        req_id: u64,
        result: KmsResult,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminAction {
    RotateKek,
    RotateCmk,
    /// The leader steps down and stands aside so another node takes over (a leadership
    /// transfer, as operators and balancers ask for).
    StepDown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientResult {
    Committed {
        index: Index,
        term: Term,
    },
    /// A read (`Op::Get`) committed at `index`: the document as of that entry.
    Read {
        index: Index,
        term: Term,
        value: Option<Vec<u8>>,
    },
    /// Not (or no longer) the leader; the write may or may not commit later.
    NotLeader {
        leader: Option<NodeId>,
    },
    /// The leader is stepping up (draining ingest into stable): retry shortly.
    Busy,
    /// The leader of `term` stepped down as asked.
    SteppedDown {
        term: Term,
    },
}

/// What a replica asks the KMS: wrap a key under a CMK version, or unwrap one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KmsOp {
    Wrap {
        cmk_version: u32,
        aad: Vec<u8>,
        plaintext: Vec<u8>,
    },
    Unwrap {
        cmk_version: u32,
        aad: Vec<u8>,
        ciphertext: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KmsResult {
    Wrapped(Vec<u8>),
    Unwrapped(Vec<u8>),
    /// Unknown CMK version, or a ciphertext that does not open under it.
    Refused(String),
}

/// A request to the KMS; `req_id` pairs it with its reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsRequest {
    pub req_id: u64,
    pub op: KmsOp,
}
