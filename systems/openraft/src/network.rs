//! openraft's `RaftNetwork` over madsim's simulated network, under the harness's `Links`.
//!
//! Every message (request or reply) is a typed [`Envelope`] sent with
//! `Endpoint::send_to_raw` (no serialization). The sender asks `Links::deliver` for each
//! message's fate: lost, or its own delay, which stamps an absolute delivery time on the
//! envelope; the receiver holds each envelope in a task of its own until then and asks
//! `Links::open` whether the link still carries it (a partition catches messages in flight).
//! Each message is delayed independently, so two messages on one link overtake each other:
//! never one ordered stream per peer pair, which would hide reorderings such as the one
//! openraft #1236 needs. A message in flight survives its sender's kill (it was sent) and dies
//! with its receiver (the receiving task is the receiver's). A raft RPC to a node the harness
//! killed (`Links::is_down`) fails at once with `Unreachable`, as a refused connection does.
//!
//! The delivery time is absolute, so madsim's own latency (if the world sets any) only matters
//! where it exceeds the drawn delay.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::Endpoint;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout as RpcTimeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use sim::sut::{addr_of, HostedEvent, Links, Obs};

use crate::kv::{KvRequest, KvResponse, NodeId, TypeConfig};
use crate::runtime::SimInstant;
use crate::store::node_u8;

/// The one madsim tag every envelope uses.
pub const TAG: u64 = 0x6f72_6166; // "oraf"

/// What a client write came to on the node that took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientReply {
    /// Committed and applied: the entry's log id and the state machine's response.
    Ok { index: u64, term: u64, response: KvResponse },
    /// openraft's `ForwardToLeader`: not the leader, or the entry was truncated. openraft says
    /// it is not committed (the checkers hold it to that).
    NotLeader { leader: Option<NodeId> },
    /// Any other error (fatal, shutting down, ...): outcome unknown.
    Error(String),
}

#[derive(Debug)]
pub enum Body {
    AppendReq(AppendEntriesRequest<TypeConfig>),
    AppendResp(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    VoteReq(VoteRequest<NodeId>),
    VoteResp(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    SnapshotReq(InstallSnapshotRequest<TypeConfig>),
    SnapshotResp(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    ClientReq(KvRequest),
    ClientResp(ClientReply),
}

impl Body {
    pub fn kind(&self) -> &'static str {
        match self {
            Body::AppendReq(_) => "append",
            Body::AppendResp(_) => "append-resp",
            Body::VoteReq(_) => "vote",
            Body::VoteResp(_) => "vote-resp",
            Body::SnapshotReq(_) => "snapshot",
            Body::SnapshotResp(_) => "snapshot-resp",
            Body::ClientReq(_) => "client",
            Body::ClientResp(_) => "client-resp",
        }
    }

    pub fn is_request(&self) -> bool {
        matches!(self, Body::AppendReq(_) | Body::VoteReq(_) | Body::SnapshotReq(_) | Body::ClientReq(_))
    }

    /// A short description for a trace line.
    pub fn summary(&self) -> String {
        match self {
            Body::AppendReq(r) => format!(
                "append vote={} prev={} n={} commit={}",
                r.vote,
                r.prev_log_id.map(|l| l.index.to_string()).unwrap_or("-".into()),
                r.entries.len(),
                r.leader_commit.map(|l| l.index.to_string()).unwrap_or("-".into())
            ),
            Body::AppendResp(r) => format!("append-resp {:?}", r.as_ref().map(|x| x.to_string()).map_err(|e| e.to_string())),
            Body::VoteReq(r) => format!("vote {r}"),
            Body::VoteResp(r) => format!(
                "vote-resp {:?}",
                r.as_ref().map(|x| format!("{} granted={}", x.vote, x.vote_granted)).map_err(|e| e.to_string())
            ),
            Body::SnapshotReq(r) => format!("snapshot {}", r.meta.snapshot_id),
            Body::SnapshotResp(_) => "snapshot-resp".into(),
            Body::ClientReq(r) => format!("client {r}"),
            Body::ClientResp(r) => format!("client-resp {r:?}"),
        }
    }
}

#[derive(Debug)]
pub struct Envelope {
    /// Sender and receiver as `Links` names them (clients are `sim::sut::CLIENTS`).
    pub from: u8,
    pub to: u8,
    /// Where the reply goes (a client's own address).
    pub reply_to: SocketAddr,
    /// Request id, echoed by the reply.
    pub rpc: u64,
    pub deliver_at: SimInstant,
    pub body: Body,
}

#[derive(Debug)]
pub enum CallError {
    /// No reply within the deadline (lost, clogged, slow, or the peer died).
    Timeout,
}

/// One incarnation's (or one client's) end of the network: its endpoint and its outstanding
/// calls.
pub struct NodeNet {
    /// Its name in `Links`.
    pub id: u8,
    addr: SocketAddr,
    ep: Endpoint,
    links: Links,
    pending: Mutex<BTreeMap<u64, tokio::sync::oneshot::Sender<Body>>>,
    next_rpc: AtomicU64,
    /// Where delivered messages are reported as `Note`s (off unless asked for: thousands a
    /// simulated second).
    trace: Option<Obs>,
}

impl NodeNet {
    /// Bind the endpoint at `addr` (call inside the node). `trace`: report each delivery.
    pub async fn bind(id: u8, addr: SocketAddr, links: Links, trace: Option<Obs>) -> std::io::Result<Arc<NodeNet>> {
        let ep = Endpoint::bind(addr).await?;
        Ok(Arc::new(NodeNet {
            id,
            addr,
            ep,
            links,
            pending: Mutex::new(BTreeMap::new()),
            next_rpc: AtomicU64::new(1),
            trace,
        }))
    }

    pub fn links(&self) -> &Links {
        &self.links
    }

    fn note(&self, what: impl FnOnce() -> String) {
        if let Some(obs) = &self.trace {
            obs.emit(HostedEvent::Note(what()));
        }
    }

    /// Send one envelope to `to` at `to_addr` under the harness's rules (fire and forget).
    pub async fn send(&self, to: u8, to_addr: SocketAddr, rpc: u64, body: Body) {
        let Some(delay) = self.links.deliver(self.id, to) else {
            self.note(|| format!("drop-at-send ->n{to} #{rpc} {}", body.kind()));
            return;
        };
        let env = Envelope { from: self.id, to, reply_to: self.addr, rpc, deliver_at: SimInstant::now() + delay, body };
        // A send to a node that is down fails or vanishes: either way, the message is lost.
        let _ = self.ep.send_to_raw(to_addr, TAG, Box::new(env)).await;
    }

    /// A request to raft node `to` and its reply, within `ttl`.
    pub async fn call(&self, to: u8, body: Body, ttl: Duration) -> Result<Body, CallError> {
        let rpc = self.next_rpc.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(rpc, tx);
        let res = crate::runtime::timeout(ttl, async {
            self.send(to, addr_of(to), rpc, body).await;
            rx.await
        })
        .await;
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&rpc);
        match res {
            Ok(Ok(b)) => Ok(b),
            _ => Err(CallError::Timeout),
        }
    }

    /// Receive envelopes forever, each handed to `handler` in a task of its own at its delivery
    /// time (replies complete this end's outstanding calls). Runs `receivers` receive loops:
    /// every madsim receive costs a simulated millisecond, one loop alone would cap a node at
    /// 1000 messages a second.
    pub fn serve<H, F>(self: &Arc<Self>, receivers: usize, handler: H)
    where
        H: Fn(Arc<NodeNet>, Envelope) -> F + Send + Sync + 'static,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let handler = Arc::new(handler);
        for _ in 0..receivers.max(1) {
            let me = self.clone();
            let handler = handler.clone();
            madsim::task::spawn(async move {
                loop {
                    let Ok((payload, _from)) = me.ep.recv_from_raw(TAG).await else { return };
                    let Ok(env) = payload.downcast::<Envelope>() else { continue };
                    let env = *env;
                    let me2 = me.clone();
                    let handler = handler.clone();
                    madsim::task::spawn(async move {
                        let now = SimInstant::now();
                        if env.deliver_at > now {
                            madsim::time::sleep(env.deliver_at - now).await;
                        }
                        if !me2.links.open(env.from, env.to) {
                            me2.note(|| format!("drop-in-flight n{}-> #{} {}", env.from, env.rpc, env.body.kind()));
                            return;
                        }
                        me2.note(|| format!("recv n{}-> #{} {}", env.from, env.rpc, env.body.summary()));
                        if env.body.is_request() {
                            handler(me2, env).await;
                        } else {
                            let tx = me2.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&env.rpc);
                            if let Some(tx) = tx {
                                let _ = tx.send(env.body);
                            }
                        }
                    });
                }
            });
        }
    }
}

/// Builds one [`RaftClient`] per peer.
#[derive(Clone)]
pub struct Network {
    pub net: Arc<NodeNet>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = RaftClient;
    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> RaftClient {
        RaftClient { net: self.net.clone(), target }
    }
}

pub struct RaftClient {
    net: Arc<NodeNet>,
    target: NodeId,
}

impl RaftClient {
    fn target(&self) -> u8 {
        node_u8(self.target)
    }

    /// `Some`: the peer is down, the connection refused (openraft backs off 500 ms).
    fn refused<E: std::error::Error>(&self) -> Option<RPCError<NodeId, BasicNode, E>> {
        let to = self.target();
        self.net.links.is_down(to).then(|| {
            self.net.note(|| format!("refused ->n{to}"));
            unreachable_error(&format!("n{to} is down"))
        })
    }

    fn timeout_err<E: std::error::Error>(&self, action: RPCTypes, ttl: Duration) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Timeout(RpcTimeout { action, id: self.net.id as NodeId, target: self.target, timeout: ttl })
    }
}

fn unexpected<E: std::error::Error>(b: &Body) -> RPCError<NodeId, BasicNode, E> {
    let e = std::io::Error::other(format!("unexpected reply {}", b.kind()));
    RPCError::Network(NetworkError::new(&e))
}

impl RaftNetwork<TypeConfig> for RaftClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let ttl = option.hard_ttl();
        if let Some(e) = self.refused() {
            return Err(e);
        }
        match self.net.call(self.target(), Body::AppendReq(rpc), ttl).await {
            Ok(Body::AppendResp(Ok(r))) => Ok(r),
            Ok(Body::AppendResp(Err(e))) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(b) => Err(unexpected(&b)),
            Err(CallError::Timeout) => Err(self.timeout_err(RPCTypes::AppendEntries, ttl)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        let ttl = option.hard_ttl();
        if let Some(e) = self.refused() {
            return Err(e);
        }
        match self.net.call(self.target(), Body::SnapshotReq(rpc), ttl).await {
            Ok(Body::SnapshotResp(Ok(r))) => Ok(r),
            Ok(Body::SnapshotResp(Err(e))) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(b) => Err(unexpected(&b)),
            Err(CallError::Timeout) => Err(self.timeout_err(RPCTypes::InstallSnapshot, ttl)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let ttl = option.hard_ttl();
        if let Some(e) = self.refused() {
            return Err(e);
        }
        match self.net.call(self.target(), Body::VoteReq(rpc), ttl).await {
            Ok(Body::VoteResp(Ok(r))) => Ok(r),
            Ok(Body::VoteResp(Err(e))) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(b) => Err(unexpected(&b)),
            Err(CallError::Timeout) => Err(self.timeout_err(RPCTypes::Vote, ttl)),
        }
    }
}

/// `Unreachable`: what a refused connection to a dead peer gives; openraft backs off
/// (`RaftNetwork::backoff`, 500 ms by default) before it tries that peer again.
pub fn unreachable_error<E: std::error::Error>(why: &str) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(why.to_string())))
}
