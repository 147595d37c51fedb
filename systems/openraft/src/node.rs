//! One raft node's incarnation: its disk handle, stores, network end and the openraft `Raft`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use openraft::error::{ClientWriteError, RaftError};

use crate::disk::SimDisk;
use crate::kv::{KvRequest, NodeId, Raft};
use crate::network::{Body, ClientReply, Envelope, NetControl, Network, NodeNet};
use crate::store::{ApplyHook, LogStore, StateMachine};
use crate::trace::Trace;

/// Everything a node's `init` needs; shared with the harness, which sees each new incarnation's
/// `Raft` handle and state machine appear in `rafts` / `sms`.
#[derive(Clone)]
pub struct NodeCtx {
    pub id: NodeId,
    pub disk: SimDisk,
    pub control: NetControl,
    pub trace: Trace,
    pub raft_config: Arc<openraft::Config>,
    pub rafts: Arc<Mutex<BTreeMap<NodeId, Raft>>>,
    pub sms: Arc<Mutex<BTreeMap<NodeId, StateMachine>>>,
    pub on_apply: Option<ApplyHook>,
    /// Receive loops per node (each madsim receive costs 1 ms of simulated time).
    pub receivers: usize,
}

/// A node's `init` future: never completes (madsim treats a completed init as an exit).
pub async fn run_node(ctx: NodeCtx) {
    let id = ctx.id;
    let handle = ctx.disk.open();
    ctx.trace.record(id, format!("start incarnation={}", handle.incarnation()));
    let log = LogStore::open(id, handle.clone(), ctx.trace.clone());
    let sm = StateMachine::open(id, handle, ctx.trace.clone(), ctx.on_apply.clone());
    let net = NodeNet::bind(id, ctx.control.clone(), ctx.trace.clone()).await.expect("bind raft endpoint");
    let raft = Raft::new(id, ctx.raft_config.clone(), Network { net: net.clone() }, log, sm.clone())
        .await
        .expect("openraft Raft::new");
    ctx.rafts.lock().unwrap().insert(id, raft.clone());
    ctx.sms.lock().unwrap().insert(id, sm);
    let r = raft.clone();
    net.serve(ctx.receivers, move |net, env| handle_request(r.clone(), net, env));
    std::future::pending::<()>().await;
}

/// Serve one request envelope and send the reply.
pub async fn handle_request(raft: Raft, net: Arc<NodeNet>, env: Envelope) {
    let reply = match env.body {
        Body::AppendReq(r) => Body::AppendResp(raft.append_entries(r).await),
        Body::VoteReq(r) => Body::VoteResp(raft.vote(r).await),
        Body::SnapshotReq(r) => Body::SnapshotResp(raft.install_snapshot(r).await),
        Body::ClientReq(r) => Body::ClientResp(client_write(&raft, r).await),
        _ => return,
    };
    net.send(env.from, env.rpc, reply).await;
}

async fn client_write(raft: &Raft, req: KvRequest) -> ClientReply {
    match raft.client_write(req).await {
        Ok(resp) => ClientReply::Ok { index: resp.log_id.index, term: resp.log_id.leader_id.term, response: resp.data },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => ClientReply::NotLeader { leader: f.leader_id },
        Err(e) => ClientReply::Error(e.to_string()),
    }
}
