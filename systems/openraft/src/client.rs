//! A client: writes through the leader, each operation ending acknowledged, failed or unknown.
//!
//! Outcomes, from what the client can know:
//! - `Acked`: the node answered with the entry's log id and the state machine's response.
//! - `Failed`: every attempt was refused with openraft's `ForwardToLeader` and none is left.
//!   openraft sends `ForwardToLeader` before appending, or after truncating the entry (never
//!   committed, if openraft is right: a checker should verify exactly that claim).
//! - `Unknown`: no reply in time (lost, slow, or the node died, perhaps after appending), or
//!   another error. The write may still commit later. The client never retries after an
//!   unknown attempt (no dedup table in this state machine), only after `ForwardToLeader`.

use std::sync::Arc;
use std::time::Duration;

use crate::kv::{KvOp, KvRequest, KvResponse, NodeId};
use crate::network::{Body, CallError, ClientReply, NodeNet};
use crate::trace::{now_us, Trace};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Acked { index: u64, term: u64, response: KvResponse },
    Failed(String),
    Unknown(String),
}

impl Outcome {
    pub fn is_acked(&self) -> bool {
        matches!(self, Outcome::Acked { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRecord {
    pub client: NodeId,
    pub seq: u64,
    pub op: KvOp,
    pub invoked_us: u64,
    pub completed_us: u64,
    pub attempts: u32,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Per-attempt deadline.
    pub attempt_timeout: Duration,
    /// Attempts per operation (only `ForwardToLeader` leads to another one).
    pub max_attempts: u32,
    /// Wait before trying another node when nobody knows the leader.
    pub no_leader_backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            attempt_timeout: Duration::from_millis(1000),
            max_attempts: 20,
            no_leader_backoff: Duration::from_millis(50),
        }
    }
}

pub struct Client {
    pub id: NodeId,
    net: Arc<NodeNet>,
    nodes: Vec<NodeId>,
    leader_hint: Option<NodeId>,
    next_seq: u64,
    rr: usize,
    opts: ClientOptions,
    trace: Trace,
}

impl Client {
    /// `net` must be bound on the client's node, with `serve` running for the replies.
    pub fn new(id: NodeId, net: Arc<NodeNet>, nodes: Vec<NodeId>, opts: ClientOptions, trace: Trace) -> Self {
        Client { id, net, nodes, leader_hint: None, next_seq: 1, rr: 0, opts, trace }
    }

    fn next_node(&mut self) -> NodeId {
        self.rr = (self.rr + 1) % self.nodes.len();
        self.nodes[self.rr]
    }

    pub async fn execute(&mut self, op: KvOp) -> OpRecord {
        let seq = self.next_seq;
        self.next_seq += 1;
        let req = KvRequest { client: self.id, seq, op: op.clone() };
        let invoked_us = now_us();
        self.trace.record(self.id, format!("invoke {req}"));
        let mut target = self.leader_hint.unwrap_or_else(|| self.nodes[self.rr]);
        let mut attempts = 0;
        let outcome = loop {
            if attempts == self.opts.max_attempts {
                break Outcome::Failed(format!("no leader accepted it in {attempts} attempts"));
            }
            attempts += 1;
            match self.net.call(target, Body::ClientReq(req.clone()), self.opts.attempt_timeout).await {
                Ok(Body::ClientResp(ClientReply::Ok { index, term, response })) => {
                    self.leader_hint = Some(target);
                    break Outcome::Acked { index, term, response };
                }
                Ok(Body::ClientResp(ClientReply::NotLeader { leader: Some(l) })) if l != target => {
                    target = l;
                }
                Ok(Body::ClientResp(ClientReply::NotLeader { .. })) => {
                    madsim::time::sleep(self.opts.no_leader_backoff).await;
                    target = self.next_node();
                }
                Ok(Body::ClientResp(ClientReply::Error(e))) => {
                    self.leader_hint = None;
                    break Outcome::Unknown(e);
                }
                Ok(other) => {
                    self.leader_hint = None;
                    break Outcome::Unknown(format!("unexpected reply {}", other.kind()));
                }
                Err(CallError::Timeout) => {
                    self.leader_hint = None;
                    self.next_node();
                    break Outcome::Unknown(format!("no reply from n{target} in {:?}", self.opts.attempt_timeout));
                }
            }
        };
        self.trace.record(self.id, format!("complete c{}#{seq} {outcome:?} attempts={attempts}", self.id));
        OpRecord { client: self.id, seq, op, invoked_us, completed_us: now_us(), attempts, outcome }
    }
}
