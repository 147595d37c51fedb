//! openraft's `RaftNetwork` over madsim's simulated network, with harness-owned fault rules.
//!
//! Every message (request or reply) is a typed [`Envelope`] sent with
//! `Endpoint::send_to_raw` (no serialization). The sender draws each message's delay on its own
//! (from the link's range, with madsim's deterministic RNG) and stamps the envelope with its
//! delivery time; the receiver holds each envelope in a task of its own until then. So two
//! messages on one link can overtake each other. Loss and clogs ([`NetControl`]) are decided at
//! send time, and a link clogged when a message is due drops it too (a partition catches
//! messages in flight). A message in flight survives its sender's kill (it was sent) and dies
//! with its receiver (the receiving task is the receiver's).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
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
use rand::Rng;

use crate::kv::{KvRequest, KvResponse, NodeId, TypeConfig};
use crate::runtime::SimInstant;
use crate::trace::Trace;

/// The one madsim tag every envelope uses.
pub const TAG: u64 = 0x6f72_6166; // "oraf"
pub const PORT: u16 = 7000;

/// Raft node `id` (1..=99) lives at 10.0.0.id; client `id` (100..) at 10.0.1.(id-100+1).
pub fn ip_of(id: NodeId) -> IpAddr {
    if id < 100 {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 1, (id - 100 + 1) as u8))
    }
}

pub fn addr_of(id: NodeId) -> SocketAddr {
    SocketAddr::new(ip_of(id), PORT)
}

/// What a client write came to on the node that took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientReply {
    /// Committed and applied: the entry's log id and the state machine's response.
    Ok { index: u64, term: u64, response: KvResponse },
    /// Not the leader (or the entry was truncated): openraft says it is not committed.
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

    /// A short description for the trace.
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
    pub from: NodeId,
    pub to: NodeId,
    /// Request id, echoed by the reply.
    pub rpc: u64,
    pub deliver_at: SimInstant,
    pub body: Body,
}

#[derive(Debug, Clone)]
struct Rules {
    delay_us: Range<u64>,
    link_delay_us: BTreeMap<(NodeId, NodeId), Range<u64>>,
    loss_per_mille: u32,
    link_loss_per_mille: BTreeMap<(NodeId, NodeId), u32>,
    clogged: BTreeSet<(NodeId, NodeId)>,
    /// Nodes the harness killed: a raft RPC to one fails at once with `Unreachable` (a refused
    /// connection), which sends openraft's replication into its backoff.
    down: BTreeSet<NodeId>,
    refuse_down_peers: bool,
    sent: u64,
    dropped: u64,
    /// Record every delivery in the trace (on by default: the determinism check reads it).
    trace_messages: bool,
}

/// The harness's hold on the network: per-link delays, loss, clogs, partitions. Cloning shares.
#[derive(Debug, Clone)]
pub struct NetControl(Arc<Mutex<Rules>>);

impl Default for NetControl {
    fn default() -> Self {
        NetControl(Arc::new(Mutex::new(Rules {
            delay_us: 1_000..10_000,
            link_delay_us: BTreeMap::new(),
            loss_per_mille: 0,
            link_loss_per_mille: BTreeMap::new(),
            clogged: BTreeSet::new(),
            down: BTreeSet::new(),
            refuse_down_peers: true,
            sent: 0,
            dropped: 0,
            trace_messages: true,
        })))
    }
}

impl NetControl {
    fn lock(&self) -> std::sync::MutexGuard<'_, Rules> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every link's per-message delay range (simulated microseconds), drawn per message.
    pub fn set_delay_us(&self, range: Range<u64>) {
        assert!(range.start < range.end);
        self.lock().delay_us = range;
    }

    /// One directed link's delay range, overriding the default.
    pub fn set_link_delay_us(&self, from: NodeId, to: NodeId, range: Range<u64>) {
        assert!(range.start < range.end);
        self.lock().link_delay_us.insert((from, to), range);
    }

    pub fn set_loss_per_mille(&self, p: u32) {
        self.lock().loss_per_mille = p.min(1000);
    }

    pub fn set_link_loss_per_mille(&self, from: NodeId, to: NodeId, p: u32) {
        self.lock().link_loss_per_mille.insert((from, to), p.min(1000));
    }

    /// Drop everything sent on from -> to (and everything due on it) until unclogged.
    pub fn clog_link(&self, from: NodeId, to: NodeId) {
        self.lock().clogged.insert((from, to));
    }

    pub fn unclog_link(&self, from: NodeId, to: NodeId) {
        self.lock().clogged.remove(&(from, to));
    }

    /// Clog every link into and out of `node` among `all`.
    pub fn isolate(&self, node: NodeId, all: &[NodeId]) {
        let mut g = self.lock();
        for &o in all.iter().filter(|&&o| o != node) {
            g.clogged.insert((node, o));
            g.clogged.insert((o, node));
        }
    }

    /// Partition: clog both directions of every pair in different groups.
    pub fn partition(&self, groups: &[&[NodeId]]) {
        let mut g = self.lock();
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i != j {
                    for &x in a.iter() {
                        for &y in b.iter() {
                            g.clogged.insert((x, y));
                        }
                    }
                }
            }
        }
    }

    /// Heal every clog and partition (delays and loss stay).
    pub fn heal(&self) {
        self.lock().clogged.clear();
    }

    pub fn link_open(&self, from: NodeId, to: NodeId) -> bool {
        !self.lock().clogged.contains(&(from, to))
    }

    /// The harness marks a node down (killed) or up (restarted).
    pub fn set_down(&self, node: NodeId, down: bool) {
        let mut g = self.lock();
        if down {
            g.down.insert(node);
        } else {
            g.down.remove(&node);
        }
    }

    /// Refuse raft RPCs to down nodes with `Unreachable` (default), or let them time out.
    pub fn set_refuse_down_peers(&self, on: bool) {
        self.lock().refuse_down_peers = on;
    }

    fn refuses(&self, to: NodeId) -> bool {
        let g = self.lock();
        g.refuse_down_peers && g.down.contains(&to)
    }

    pub fn set_trace_messages(&self, on: bool) {
        self.lock().trace_messages = on;
    }

    fn trace_messages(&self) -> bool {
        self.lock().trace_messages
    }

    /// (sent, dropped) so far.
    pub fn stats(&self) -> (u64, u64) {
        let g = self.lock();
        (g.sent, g.dropped)
    }

    /// This message's fate: dropped (None) or its own delay.
    fn decide(&self, from: NodeId, to: NodeId) -> Option<Duration> {
        let mut g = self.lock();
        g.sent += 1;
        let mut rng = madsim::rand::thread_rng();
        let loss = g.link_loss_per_mille.get(&(from, to)).copied().unwrap_or(g.loss_per_mille);
        let lost = loss > 0 && rng.gen_range(0..1000) < loss;
        if g.clogged.contains(&(from, to)) || lost {
            g.dropped += 1;
            return None;
        }
        let range = g.link_delay_us.get(&(from, to)).cloned().unwrap_or_else(|| g.delay_us.clone());
        Some(Duration::from_micros(rng.gen_range(range)))
    }

    fn count_drop(&self) {
        self.lock().dropped += 1;
    }
}

#[derive(Debug)]
pub enum CallError {
    /// No reply within the deadline (lost, clogged, slow, or the peer is down).
    Timeout,
}

/// One incarnation's end of the network: its endpoint and its outstanding calls.
pub struct NodeNet {
    pub id: NodeId,
    ep: Endpoint,
    control: NetControl,
    pending: Mutex<BTreeMap<u64, tokio::sync::oneshot::Sender<Body>>>,
    next_rpc: AtomicU64,
    trace: Trace,
}

impl NodeNet {
    /// Bind this node's endpoint (call inside the node).
    pub async fn bind(id: NodeId, control: NetControl, trace: Trace) -> std::io::Result<Arc<NodeNet>> {
        let ep = Endpoint::bind(addr_of(id)).await?;
        Ok(Arc::new(NodeNet { id, ep, control, pending: Mutex::new(BTreeMap::new()), next_rpc: AtomicU64::new(1), trace }))
    }

    pub fn control(&self) -> &NetControl {
        &self.control
    }

    /// Send one envelope under the harness's rules (fire and forget).
    pub async fn send(&self, to: NodeId, rpc: u64, body: Body) {
        let Some(delay) = self.control.decide(self.id, to) else {
            if self.control.trace_messages() {
                self.trace.record(self.id, format!("drop-at-send ->n{to} #{rpc} {}", body.kind()));
            }
            return;
        };
        let env = Envelope { from: self.id, to, rpc, deliver_at: SimInstant::now() + delay, body };
        // A send to a node that is down fails or vanishes: either way, the message is lost.
        let _ = self.ep.send_to_raw(addr_of(to), TAG, Box::new(env)).await;
    }

    /// A request and its reply, within `ttl`.
    pub async fn call(&self, to: NodeId, body: Body, ttl: Duration) -> Result<Body, CallError> {
        let rpc = self.next_rpc.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(rpc, tx);
        let res = crate::runtime::timeout(ttl, async {
            self.send(to, rpc, body).await;
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
    /// time (replies complete this node's outstanding calls). Runs `receivers` receive loops:
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
                        if !me2.control.link_open(env.from, env.to) {
                            me2.control.count_drop();
                            if me2.control.trace_messages() {
                                me2.trace.record(me2.id, format!("drop-in-flight n{}-> #{} {}", env.from, env.rpc, env.body.kind()));
                            }
                            return;
                        }
                        if me2.control.trace_messages() {
                            me2.trace.record(me2.id, format!("recv n{}-> #{} {}", env.from, env.rpc, env.body.summary()));
                        }
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
    /// A refused RPC (the peer is down), traced: its timing shows openraft's backoff.
    fn refused<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        if self.net.control.trace_messages() {
            self.net.trace.record(self.net.id, format!("refused ->n{}", self.target));
        }
        unreachable_error(&format!("n{} is down", self.target))
    }

    fn timeout_err<E: std::error::Error>(&self, action: RPCTypes, ttl: Duration) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Timeout(RpcTimeout { action, id: self.net.id, target: self.target, timeout: ttl })
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
        if self.net.control.refuses(self.target) {
            return Err(self.refused());
        }
        match self.net.call(self.target, Body::AppendReq(rpc), ttl).await {
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
        if self.net.control.refuses(self.target) {
            return Err(self.refused());
        }
        match self.net.call(self.target, Body::SnapshotReq(rpc), ttl).await {
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
        if self.net.control.refuses(self.target) {
            return Err(self.refused());
        }
        match self.net.call(self.target, Body::VoteReq(rpc), ttl).await {
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
