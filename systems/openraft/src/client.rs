//! The harness's `KvClient` for openraft: every call through the leader, as a log entry.
//!
//! Outcomes, from what the client can know:
//! - `Acked`: the node answered with the entry's log id and the state machine's response (a
//!   `Get` reads its value at its own entry: linearizable without leases).
//! - `Failed`: every attempt was certainly not committed: refused by openraft with
//!   `ForwardToLeader` (sent before appending, or after truncating the entry) or a refused
//!   connection (the node is down), and no attempts are left. That rests on openraft's claim;
//!   the checkers hold it to it.
//! - `Unknown`: no reply in time (lost, slow, or the node died, perhaps after appending), or
//!   another error. The entry may still commit later, so the client never retries after it
//!   (no dedup table in this state machine); it retries only after a certain refusal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sim::sut::{client_ip, BoxFuture, KvCall, KvClient, KvOutcome, Links, CLIENTS};

use crate::kv::{KvOp, KvRequest};
use crate::network::{Body, CallError, ClientReply, NodeNet};
use crate::store::node_u8;

/// The port a client binds at its own IP.
pub const CLIENT_PORT: u16 = 7000;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Per-attempt deadline.
    pub attempt_timeout: Duration,
    /// Attempts per call (only a certain refusal leads to another one).
    pub max_attempts: u32,
    /// Wait before trying another node when the refusing one names no leader.
    pub no_leader_backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            attempt_timeout: Duration::from_millis(2000),
            max_attempts: 20,
            no_leader_backoff: Duration::from_millis(50),
        }
    }
}

pub struct Client {
    pub id: u32,
    links: Links,
    /// Bound on the first call (binding is async; `Cluster::client` is not).
    net: Option<Arc<NodeNet>>,
    nodes: Vec<u8>,
    leader_hint: Option<u8>,
    rr: usize,
    opts: ClientOptions,
}

impl Client {
    /// Client `id` of a cluster of voters `1..=nodes`; use it on the client's own madsim node.
    pub fn new(id: u32, nodes: u8, links: Links, opts: ClientOptions) -> Client {
        Client { id, links, net: None, nodes: (1..=nodes).collect(), leader_hint: None, rr: 0, opts }
    }

    fn next_node(&mut self) -> u8 {
        self.rr = (self.rr + 1) % self.nodes.len();
        self.nodes[self.rr]
    }

    async fn net(&mut self) -> Result<Arc<NodeNet>, String> {
        if let Some(n) = &self.net {
            return Ok(n.clone());
        }
        let addr = SocketAddr::new(client_ip(self.id), CLIENT_PORT);
        let net = NodeNet::bind(CLIENTS, addr, self.links.clone(), None).await.map_err(|e| format!("bind {addr}: {e}"))?;
        // Replies complete the outstanding call; a client serves no requests.
        net.serve(1, |_net, _env| async {});
        self.net = Some(net.clone());
        Ok(net)
    }

    /// One call, retried only after certain refusals.
    pub async fn call(&mut self, req: KvRequest) -> KvOutcome {
        let net = match self.net().await {
            Ok(n) => n,
            Err(e) => return KvOutcome::Failed(e),
        };
        let is_get = matches!(req.op, KvOp::Get { .. });
        let mut target = self.leader_hint.unwrap_or_else(|| self.nodes[self.rr]);
        for _ in 0..self.opts.max_attempts {
            if self.links.is_down(target) {
                // Refused: it never reached the node.
                self.leader_hint = None;
                madsim::time::sleep(self.opts.no_leader_backoff).await;
                target = self.next_node();
                continue;
            }
            match net.call(target, Body::ClientReq(req.clone()), self.opts.attempt_timeout).await {
                Ok(Body::ClientResp(ClientReply::Ok { index, term, response })) => {
                    self.leader_hint = Some(target);
                    let read = is_get.then_some(response.value);
                    return KvOutcome::Acked { index, term, read };
                }
                Ok(Body::ClientResp(ClientReply::NotLeader { leader: Some(l) })) if node_u8(l) != target => {
                    target = node_u8(l);
                }
                Ok(Body::ClientResp(ClientReply::NotLeader { .. })) => {
                    self.leader_hint = None;
                    madsim::time::sleep(self.opts.no_leader_backoff).await;
                    target = self.next_node();
                }
                Ok(Body::ClientResp(ClientReply::Error(e))) => {
                    self.leader_hint = None;
                    return KvOutcome::Unknown(format!("n{target}: {e}"));
                }
                Ok(other) => {
                    self.leader_hint = None;
                    return KvOutcome::Unknown(format!("n{target}: unexpected reply {}", other.kind()));
                }
                Err(CallError::Timeout) => {
                    self.leader_hint = None;
                    self.next_node();
                    return KvOutcome::Unknown(format!("no reply from n{target} in {:?}", self.opts.attempt_timeout));
                }
            }
        }
        KvOutcome::Failed(format!("refused {} times (no leader took it)", self.opts.max_attempts))
    }
}

impl KvClient for Client {
    fn execute(&mut self, call: KvCall) -> BoxFuture<'_, KvOutcome> {
        let req = KvRequest::from(&call);
        Box::pin(self.call(req))
    }
}
