//! openraft as a faultline system under test: [`OpenraftSystem`] (`sim::sut::System`) builds one
//! seed's [`OpenraftCluster`] (`sim::sut::Cluster`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::BasicNode;
use sim::sut::{addr_of, BoxFuture, Cluster, ClusterSpec, HostedStatus, KvClient, Links, NodeCtx, System};

use crate::client::{Client, ClientOptions};
use crate::kv::NodeId;
use crate::node::{Live, NodeOptions};
use crate::store::node_u8;

/// The openraft release this binary links, as cargo resolved it (`build.rs` reads the lock
/// file; `run.sh VERSION` moves it).
pub const OPENRAFT_VERSION: &str = env!("OPENRAFT_VERSION");

/// openraft's configuration for every node: heartbeats every 50 ms, elections after 150-300 ms
/// (openraft's defaults), a snapshot every 1000 applied entries so that long runs exercise
/// building, purging behind, and (for a node far behind) installing snapshots.
pub fn default_raft_config() -> openraft::Config {
    openraft::Config {
        cluster_name: "faultline-openraft".into(),
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1000),
        ..Default::default()
    }
}

/// How the adapter runs; `Default` is what the registered system uses.
#[derive(Clone)]
pub struct Options {
    pub raft: openraft::Config,
    pub receivers: usize,
    /// Report every delivered message as a `Note` (thousands a simulated second).
    pub trace_messages: bool,
    pub client: ClientOptions,
    /// How long `bootstrap` keeps retrying.
    pub bootstrap_within: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            raft: default_raft_config(),
            receivers: 4,
            trace_messages: false,
            client: ClientOptions::default(),
            bootstrap_within: Duration::from_secs(30),
        }
    }
}

/// The system: `openraft` in scenarios (`"system": "openraft"`).
#[derive(Clone, Default)]
pub struct OpenraftSystem {
    pub options: Options,
}

impl System for OpenraftSystem {
    fn name(&self) -> &'static str {
        "openraft"
    }

    fn describe(&self) -> String {
        let mode = if cfg!(feature = "single-term-leader") { ", single-term-leader" } else { "" };
        format!("openraft {OPENRAFT_VERSION}{mode} (crates.io, unmodified) on madsim, key-value state machine, reads through the log")
    }

    fn cluster(&self, spec: ClusterSpec) -> Arc<dyn Cluster> {
        Arc::new(OpenraftCluster::new(spec, self.options.clone()))
    }

    /// Every seed runs with tokio's thread-local RNG pinned to it ([`crate::pin_tokio_rng`]):
    /// openraft's unbiased `select!`s then choose the same way however many seeds ran before.
    fn around_seed(&self, seed: u64, run: &mut dyn FnMut()) {
        crate::pin_tokio_rng(seed, run)
    }
}

/// One seed's cluster: voters `1..=nodes`, and the handles of its live incarnations.
pub struct OpenraftCluster {
    nodes: u8,
    links: Links,
    live: Arc<Live>,
    node_opts: NodeOptions,
    client_opts: ClientOptions,
    bootstrap_within: Duration,
}

impl OpenraftCluster {
    pub fn new(spec: ClusterSpec, options: Options) -> OpenraftCluster {
        let raft_config = Arc::new(options.raft.validate().expect("valid openraft config"));
        OpenraftCluster {
            nodes: spec.nodes,
            links: spec.links,
            live: Arc::new(Live::default()),
            node_opts: NodeOptions { raft_config, receivers: options.receivers, trace_messages: options.trace_messages },
            client_opts: options.client,
            bootstrap_within: options.bootstrap_within,
        }
    }

    /// The live incarnation's handles of `node` (tests).
    pub fn handles(&self, node: u8) -> Option<crate::node::NodeHandles> {
        self.live.get(node)
    }
}

impl Cluster for OpenraftCluster {
    /// Never completes: madsim 0.2 ends a node whose init future completes (`NodeBuilder::init`
    /// calls `exit()`), which would kill the tasks just spawned if the world's init returned
    /// with this future. Pending here keeps the node up until the harness kills it.
    fn start(&self, ctx: NodeCtx) -> BoxFuture<'static, ()> {
        let started = crate::node::start(ctx, self.live.clone(), self.node_opts.clone());
        Box::pin(async move {
            started.await;
            std::future::pending::<()>().await
        })
    }

    /// `initialize({1..=nodes})` on node 1 (the lowest live node if node 1 is down), retried
    /// until openraft takes it or says the node is already initialized (a vote or log exists:
    /// another attempt got through, or a campaign reached it).
    fn bootstrap(&self) -> BoxFuture<'static, Result<(), String>> {
        let live = self.live.clone();
        let nodes = self.nodes;
        let within = self.bootstrap_within;
        Box::pin(async move {
            let members: BTreeMap<NodeId, BasicNode> =
                (1..=nodes).map(|n| (n as NodeId, BasicNode::new(addr_of(n).to_string()))).collect();
            let deadline = madsim::time::Instant::now() + within;
            let mut last = "no node started".to_string();
            loop {
                if let Some((via, h)) = (1..=nodes).find_map(|n| live.get(n).map(|h| (n, h))) {
                    match crate::runtime::timeout(Duration::from_secs(1), h.raft.initialize(members.clone())).await {
                        Ok(Ok(())) | Ok(Err(RaftError::APIError(InitializeError::NotAllowed(_)))) => return Ok(()),
                        Ok(Err(e)) => last = format!("initialize via n{via}: {e}"),
                        Err(_) => last = format!("initialize via n{via}: no answer in 1s"),
                    }
                }
                if madsim::time::Instant::now() >= deadline {
                    return Err(format!("openraft could not be initialized in {within:?}: {last}"));
                }
                madsim::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }

    fn killed(&self, node: u8) {
        self.live.remove(node);
    }

    fn client(&self, client: u32) -> Box<dyn KvClient> {
        Box::new(Client::new(client, self.nodes, self.links.clone(), self.client_opts.clone()))
    }

    /// From the metrics (`borrow()`: `changed()` would draw from tokio's RNG), and the state
    /// machine's applied index with the digest of its map at that index, read together.
    /// openraft 0.9's metrics carry no commit index: `committed` is what openraft last passed
    /// to `save_committed` this incarnation, never below `applied`.
    fn status(&self, node: u8) -> Option<HostedStatus> {
        let h = self.live.get(node)?;
        let metrics = h.raft.metrics();
        let m = metrics.borrow();
        let (applied, state_digest) = h.sm.applied_and_digest();
        Some(HostedStatus {
            term: m.current_term,
            leader: m.current_leader.map(node_u8),
            last_log: m.last_log_index.unwrap_or(0),
            committed: h.log.committed().map_or(0, |c| c.index).max(applied),
            applied,
            state_digest,
        })
    }
}
