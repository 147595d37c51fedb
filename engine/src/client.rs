//! The client driver: sends writes to the replica it believes leads, follows redirects, retries
//! on timeout with the same operation, and reports whether the write was acknowledged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use madsim::net::Endpoint;

use crate::observe::Observer;
use crate::raft::{Index, NodeId, Op, Session, Term};
use crate::wire::{AdminAction, ClientResult, Wire, TAG};

/// How an operation ended, from the client's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed: the cluster promised durability.
    Acked { index: Index, term: Term },
    /// A read committed at `index`: the document as of that entry.
    Read {
        index: Index,
        term: Term,
        value: Option<Vec<u8>>,
    },
    /// Gave up before an acknowledgement; the write may or may not have committed.
    Unknown,
    /// An admin step-down: the leader of `term` stepped down.
    SteppedDown { term: Term },
}

#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    pub attempt_timeout_ms: u64,
    pub op_deadline_ms: u64,
    pub retry_pause_ms: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            attempt_timeout_ms: 400,
            op_deadline_ms: 6_000,
            retry_pause_ms: 50,
        }
    }
}

pub struct Client {
    ep: Arc<Endpoint>,
    /// Who decides how this client's requests travel (the harness's network); none: on time.
    net: Option<Arc<dyn Observer>>,
    replicas: BTreeMap<NodeId, SocketAddr>,
    leader_guess: NodeId,
    next_request: u64,
    /// Identifies this client's operations across retries (see [`Session`]).
    client_id: u64,
    op_seq: u64,
    cfg: ClientConfig,
}

impl Client {
    /// `client_id` must be unique among the cluster's clients.
    pub async fn connect(
        client_id: u64,
        bind: SocketAddr,
        replicas: BTreeMap<NodeId, SocketAddr>,
        cfg: ClientConfig,
    ) -> std::io::Result<Self> {
        let ep = Arc::new(Endpoint::bind(bind).await?);
        let leader_guess = *replicas.keys().next().expect("at least one replica");
        Ok(Client {
            ep,
            net: None,
            replicas,
            leader_guess,
            next_request: 1,
            client_id,
            op_seq: 0,
            cfg,
        })
    }

    /// Sends every request through the harness's network (duplicates, delays).
    pub fn with_network(mut self, net: Arc<dyn Observer>) -> Self {
        self.net = Some(net);
        self
    }

    fn rotate_guess(&mut self) {
        let next = self
            .replicas
            .range(self.leader_guess + 1..)
            .next()
            .or_else(|| self.replicas.iter().next());
        self.leader_guess = *next.expect("replicas").0;
    }

    /// The session the next operation will carry in its log entry (retries reuse it).
    pub fn next_session(&self) -> Session {
        Session {
            client: self.client_id,
            seq: self.op_seq + 1,
        }
    }

    /// Executes one operation (a write, or an `Op::Get` read) until it is acknowledged or the
    /// deadline passes.
    pub async fn write(&mut self, op: Op) -> Outcome {
        self.execute(&|id, session| Wire::Request {
            id,
            session,
            op: op.clone(),
        })
        .await
    }

    /// Executes one administrative command like a write: a key rotation is acknowledged once
    /// the operation the leader prepared for it is committed; a step-down once the leader it
    /// reached has stepped down.
    pub async fn admin(&mut self, action: AdminAction) -> Outcome {
        self.execute(&|id, session| Wire::Admin {
            id,
            session,
            action,
        })
        .await
    }

    /// Sends the request `make(request id, session)` until acknowledged or out of time.
    async fn execute(&mut self, make: &(dyn Fn(u64, Option<Session>) -> Wire + Sync)) -> Outcome {
        let start = madsim::time::Instant::now();
        let deadline = Duration::from_millis(self.cfg.op_deadline_ms);
        self.op_seq += 1;
        let session = Some(Session {
            client: self.client_id,
            seq: self.op_seq,
        });
        while start.elapsed() < deadline {
            let id = self.next_request;
            self.next_request += 1;
            let to = self.replicas[&self.leader_guess];
            let req = make(id, session);
            if let Some(net) = &self.net {
                crate::net::send_inline(&self.ep, &**net, to, req).await;
            } else if self.ep.send_to_raw(to, TAG, Box::new(req)).await.is_err() {
                self.rotate_guess();
                continue;
            }
            match self.await_reply(id).await {
                Some(ClientResult::Committed { index, term }) => {
                    return Outcome::Acked { index, term }
                }
                Some(ClientResult::Read { index, term, value }) => {
                    return Outcome::Read { index, term, value }
                }
                Some(ClientResult::NotLeader { leader: Some(l) }) if l != self.leader_guess => {
                    self.leader_guess = l;
                }
                Some(ClientResult::SteppedDown { term }) => return Outcome::SteppedDown { term },
                Some(ClientResult::Busy) => {
                    // The leader is stepping up: same replica, a little later.
                    madsim::time::sleep(Duration::from_millis(self.cfg.retry_pause_ms)).await;
                }
                Some(ClientResult::NotLeader { .. }) | None => {
                    self.rotate_guess();
                    madsim::time::sleep(Duration::from_millis(self.cfg.retry_pause_ms)).await;
                }
            }
        }
        Outcome::Unknown
    }

    async fn await_reply(&self, id: u64) -> Option<ClientResult> {
        let timeout = Duration::from_millis(self.cfg.attempt_timeout_ms);
        let until = madsim::time::Instant::now() + timeout;
        loop {
            let left = until.checked_duration_since(madsim::time::Instant::now())?;
            let (payload, _) = madsim::time::timeout(left, self.ep.recv_from_raw(TAG))
                .await
                .ok()?
                .ok()?;
            if let Ok(w) = payload.downcast::<Wire>() {
                if let Wire::Reply { id: rid, result } = *w {
                    if rid == id {
                        return Some(result);
                    }
                }
            }
        }
    }
}
