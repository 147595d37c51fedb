//! One raft node's incarnation: its stores on the harness's disk, its network end and the
//! openraft `Raft`, started from a `sim::sut::NodeCtx`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use openraft::error::{ClientWriteError, RaftError};
use sim::sut::{addr_of, HostedEvent, NodeCtx};

use crate::kv::{KvRequest, NodeId, Raft};
use crate::network::{Body, ClientReply, Envelope, Network, NodeNet};
use crate::store::{vote_event, LogStore, StateMachine};

/// A live incarnation's handles, as the cluster keeps them (for `status`, `bootstrap`).
#[derive(Clone)]
pub struct NodeHandles {
    pub incarnation: u64,
    pub raft: Raft,
    pub log: LogStore,
    pub sm: StateMachine,
}

/// The handles of every live node; `killed` removes a node's.
#[derive(Default)]
pub struct Live(Mutex<BTreeMap<u8, NodeHandles>>);

impl Live {
    pub fn get(&self, node: u8) -> Option<NodeHandles> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&node).cloned()
    }
    pub fn insert(&self, node: u8, h: NodeHandles) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(node, h);
    }
    pub fn remove(&self, node: u8) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&node);
    }
}

/// How every node of a cluster runs.
#[derive(Clone)]
pub struct NodeOptions {
    pub raft_config: Arc<openraft::Config>,
    /// Receive loops per node (each madsim receive costs 1 ms of simulated time).
    pub receivers: usize,
    /// Report every delivered message as a `Note` (the spike's determinism tests read them).
    pub trace_messages: bool,
}

/// Start an incarnation: open the stores (reporting `Loaded`, then the loaded `Vote`), bind,
/// `Raft::new`, serve. Returns once the node's tasks are spawned. A damaged disk or a failing
/// `Raft::new` leaves the node silent after a `Note` saying why (it refuses to start).
pub async fn start(ctx: NodeCtx, live: Arc<Live>, opts: NodeOptions) {
    let node = ctx.node;
    let id = node as NodeId;
    let obs = ctx.obs.clone();
    let opened = LogStore::open(id, ctx.disk.clone(), ctx.flush.clone(), obs.clone())
        .and_then(|log| StateMachine::open(id, ctx.disk.clone(), obs.clone()).map(|sm| (log, sm)));
    let (log, sm) = match opened {
        Ok(x) => x,
        Err(e) => {
            obs.emit(HostedEvent::Note(format!("refusing to start: {e}")));
            return;
        }
    };
    let covered = log.last_purged().map_or(0, |l| l.index).max(sm.snapshot_index());
    obs.emit(HostedEvent::Loaded { entries: log.entry_ids(), covered });
    if let Some(v) = log.vote() {
        obs.emit(vote_event(&v));
    }
    let trace = opts.trace_messages.then(|| obs.clone());
    let net = match NodeNet::bind(node, addr_of(node), ctx.links.clone(), trace).await {
        Ok(n) => n,
        Err(e) => {
            obs.emit(HostedEvent::Note(format!("refusing to start: bind {}: {e}", addr_of(node))));
            return;
        }
    };
    let raft = match Raft::new(id, opts.raft_config.clone(), Network { net: net.clone() }, log.clone(), sm.clone()).await {
        Ok(r) => r,
        Err(e) => {
            obs.emit(HostedEvent::Note(format!("refusing to start: openraft Raft::new: {e}")));
            return;
        }
    };
    live.insert(node, NodeHandles { incarnation: ctx.incarnation, raft: raft.clone(), log, sm });
    net.serve(opts.receivers, move |net, env| handle_request(raft.clone(), net, env));
}

/// Serve one request envelope and send the reply.
pub async fn handle_request(raft: Raft, net: Arc<NodeNet>, env: Envelope) {
    let Envelope { from, reply_to, rpc, body, .. } = env;
    let reply = match body {
        Body::AppendReq(r) => Body::AppendResp(raft.append_entries(r).await),
        Body::VoteReq(r) => Body::VoteResp(raft.vote(r).await),
        Body::SnapshotReq(r) => Body::SnapshotResp(raft.install_snapshot(r).await),
        Body::ClientReq(r) => Body::ClientResp(client_write(&raft, r).await),
        _ => return,
    };
    net.send(from, reply_to, rpc, reply).await;
}

async fn client_write(raft: &Raft, req: KvRequest) -> ClientReply {
    match raft.client_write(req).await {
        Ok(resp) => ClientReply::Ok { index: resp.log_id.index, term: resp.log_id.leader_id.term, response: resp.data },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => ClientReply::NotLeader { leader: f.leader_id },
        Err(e) => ClientReply::Error(e.to_string()),
    }
}
