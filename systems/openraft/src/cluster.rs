//! A small harness world: raft nodes and clients on madsim nodes, kill/restart with the disk's
//! crash model, a metrics observer, and the checks the end-to-end test asks for.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::{BasicNode, ServerState};

use crate::client::{Client, ClientOptions, OpRecord, Outcome};
use crate::disk::SimDisk;
use crate::kv::{KvOp, NodeId, Raft};
use crate::network::{ip_of, NetControl, NodeNet};
use crate::node::{run_node, NodeCtx};
use crate::runtime::TokioRngPin;
use crate::store::{ApplyHook, StateMachine};
use crate::trace::{Trace, TraceEvent};

/// One applied entry as a state machine reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub node: NodeId,
    pub index: u64,
    pub term: u64,
    pub what: String,
}

pub struct World {
    pub handle: madsim::runtime::Handle,
    pub control: NetControl,
    pub trace: Trace,
    pub disks: BTreeMap<NodeId, SimDisk>,
    pub members: Vec<NodeId>,
    rafts: Arc<Mutex<BTreeMap<NodeId, Raft>>>,
    sms: Arc<Mutex<BTreeMap<NodeId, StateMachine>>>,
    pub applied: Arc<Mutex<Vec<Applied>>>,
    madsim_ids: BTreeMap<NodeId, madsim::task::NodeId>,
    down: BTreeSet<NodeId>,
}

pub fn default_raft_config() -> openraft::Config {
    openraft::Config {
        cluster_name: "faultline-openraft".into(),
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        ..Default::default()
    }
}

impl World {
    /// Create `n` raft nodes (ids 1..=n); call inside the simulation.
    pub fn new(n: u64, raft_config: openraft::Config) -> World {
        let handle = madsim::runtime::Handle::current();
        let control = NetControl::default();
        let trace = Trace::default();
        let rafts = Arc::new(Mutex::new(BTreeMap::new()));
        let sms = Arc::new(Mutex::new(BTreeMap::new()));
        let applied: Arc<Mutex<Vec<Applied>>> = Arc::new(Mutex::new(Vec::new()));
        let raft_config = Arc::new(raft_config.validate().expect("valid openraft config"));
        let hook_applied = applied.clone();
        let hook_trace = trace.clone();
        let on_apply: ApplyHook = Arc::new(move |node, log_id, what| {
            hook_trace.record(node, format!("apply {} {what}", log_id.index));
            hook_applied.lock().unwrap().push(Applied {
                node,
                index: log_id.index,
                term: log_id.leader_id.term,
                what: what.to_string(),
            });
        });
        let mut disks = BTreeMap::new();
        let mut madsim_ids = BTreeMap::new();
        for id in 1..=n {
            let disk = SimDisk::new();
            disks.insert(id, disk.clone());
            let ctx = NodeCtx {
                id,
                disk,
                control: control.clone(),
                trace: trace.clone(),
                raft_config: raft_config.clone(),
                rafts: rafts.clone(),
                sms: sms.clone(),
                on_apply: Some(on_apply.clone()),
                receivers: 4,
            };
            let node = handle
                .create_node()
                .name(format!("n{id}"))
                .ip(ip_of(id))
                .init(move || run_node(ctx.clone()))
                .build();
            madsim_ids.insert(id, node.id());
        }
        World {
            handle,
            control,
            trace,
            disks,
            members: (1..=n).collect(),
            rafts,
            sms,
            applied,
            madsim_ids,
            down: BTreeSet::new(),
        }
    }

    pub fn raft(&self, id: NodeId) -> Option<Raft> {
        if self.down.contains(&id) {
            return None;
        }
        self.rafts.lock().unwrap().get(&id).cloned()
    }

    pub fn state_machine(&self, id: NodeId) -> Option<StateMachine> {
        if self.down.contains(&id) {
            return None;
        }
        self.sms.lock().unwrap().get(&id).cloned()
    }

    /// Wait until every live node has started its current incarnation.
    pub async fn wait_started(&self) {
        loop {
            let started = self.rafts.lock().unwrap().len();
            if started == self.members.len() - self.down.len() {
                return;
            }
            madsim::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Initialize membership {all members} on node `via`.
    pub async fn initialize(&self, via: NodeId) {
        let members: BTreeMap<NodeId, BasicNode> =
            self.members.iter().map(|&id| (id, BasicNode::new(ip_of(id).to_string()))).collect();
        self.raft(via).expect("node up").initialize(members).await.expect("initialize");
        self.trace.record(0, format!("initialized via n{via}"));
    }

    /// Kill a node: madsim drops its tasks and sockets; its disk loses every unsynced write.
    pub fn kill(&mut self, id: NodeId) {
        self.handle.kill(self.madsim_ids[&id]);
        self.disks[&id].crash();
        self.control.set_down(id, true);
        self.rafts.lock().unwrap().remove(&id);
        self.sms.lock().unwrap().remove(&id);
        self.down.insert(id);
        self.trace.record(0, format!("kill n{id}"));
    }

    /// Restart a killed node (its `init` runs again on what its disk kept).
    pub fn restart(&mut self, id: NodeId) {
        assert!(self.down.remove(&id), "restart of a node that is up");
        self.handle.restart(self.madsim_ids[&id]);
        self.control.set_down(id, false);
        self.trace.record(0, format!("restart n{id}"));
    }

    /// The live leader with the highest term, by the nodes' own metrics.
    pub fn leader(&self) -> Option<(NodeId, u64)> {
        let rafts = self.rafts.lock().unwrap();
        rafts
            .iter()
            .filter(|(id, _)| !self.down.contains(id))
            .filter_map(|(&id, r)| {
                let m = r.metrics().borrow().clone();
                (m.state == ServerState::Leader).then_some((id, m.current_term))
            })
            .max_by_key(|&(id, term)| (term, id))
    }

    pub async fn wait_for_leader(&self, within: Duration) -> Option<(NodeId, u64)> {
        let deadline = madsim::time::Instant::now() + within;
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            if madsim::time::Instant::now() >= deadline {
                return None;
            }
            madsim::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// (node, last_applied index) of every live node.
    pub fn applied_indexes(&self) -> BTreeMap<NodeId, u64> {
        let rafts = self.rafts.lock().unwrap();
        rafts
            .iter()
            .filter(|(id, _)| !self.down.contains(id))
            .map(|(&id, r)| (id, r.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0)))
            .collect()
    }

    /// Wait until every member is up and all have applied the same index, at least `min`.
    pub async fn wait_converged(&self, min: u64, within: Duration) -> bool {
        let deadline = madsim::time::Instant::now() + within;
        loop {
            let a = self.applied_indexes();
            let vals: BTreeSet<u64> = a.values().copied().collect();
            if a.len() == self.members.len() && vals.len() == 1 && *vals.iter().next().unwrap() >= min {
                return true;
            }
            if madsim::time::Instant::now() >= deadline {
                return false;
            }
            madsim::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Record each live node's (state, term, leader, last log, applied) whenever it changes,
    /// every `every` of simulated time. Reads metrics with `borrow()`: `changed()` would draw
    /// from tokio's thread-local RNG (see `TokioRngPin`).
    pub fn spawn_observer(&self, every: Duration) -> madsim::task::JoinHandle<()> {
        let rafts = self.rafts.clone();
        let trace = self.trace.clone();
        madsim::task::spawn(async move {
            let mut last: BTreeMap<NodeId, String> = BTreeMap::new();
            loop {
                let snapshot: Vec<(NodeId, Raft)> = rafts.lock().unwrap().iter().map(|(k, v)| (*k, v.clone())).collect();
                for (id, r) in snapshot {
                    let m = r.metrics().borrow().clone();
                    let s = format!(
                        "metrics {:?} term={} leader={:?} last_log={:?} applied={:?}",
                        m.state,
                        m.current_term,
                        m.current_leader,
                        m.last_log_index,
                        m.last_applied.map(|l| l.index)
                    );
                    if last.get(&id) != Some(&s) {
                        trace.record(id, s.clone());
                        last.insert(id, s);
                    }
                }
                madsim::time::sleep(every).await;
            }
        })
    }

    /// Run `ops` one after another from a new client node `client_id` (>= 100).
    pub async fn run_client(&self, client_id: NodeId, ops: Vec<KvOp>, opts: ClientOptions) -> Vec<OpRecord> {
        let node = self.handle.create_node().name(format!("c{client_id}")).ip(ip_of(client_id)).build();
        let control = self.control.clone();
        let trace = self.trace.clone();
        let members = self.members.clone();
        node.spawn(async move {
            let net = NodeNet::bind(client_id, control, trace.clone()).await.expect("bind client");
            net.serve(1, |_net, _env| async {});
            let mut client = Client::new(client_id, net, members, opts, trace);
            let mut out = Vec::new();
            for op in ops {
                out.push(client.execute(op).await);
            }
            out
        })
        .await
        .expect("client task")
    }

    /// Kill every node (madsim leaks tasks still pending when block_on returns).
    pub async fn shutdown(&mut self) {
        for id in self.members.clone() {
            if !self.down.contains(&id) {
                self.handle.kill(self.madsim_ids[&id]);
                self.down.insert(id);
            }
        }
        madsim::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Safety checks over what the state machines applied and what clients were told.
pub fn check(applied: &[Applied], ops: &[OpRecord]) -> Vec<String> {
    let mut problems = Vec::new();
    // One entry per index, whichever node or incarnation applied it.
    let mut canon: BTreeMap<u64, (u64, String, NodeId)> = BTreeMap::new();
    for a in applied {
        match canon.get(&a.index) {
            None => {
                canon.insert(a.index, (a.term, a.what.clone(), a.node));
            }
            Some((t, w, n)) if (*t, w) != (a.term, &a.what) => problems.push(format!(
                "index {}: n{} applied term {} {:?}, n{} applied term {} {:?}",
                a.index, n, t, w, a.node, a.term, a.what
            )),
            _ => {}
        }
    }
    // Each acknowledged write is the entry at its index.
    for r in ops {
        if let Outcome::Acked { index, term, .. } = &r.outcome {
            let want = format!("{}", crate::kv::KvRequest { client: r.client, seq: r.seq, op: r.op.clone() });
            match canon.get(index) {
                Some((t, w, _)) if t == term && *w == want => {}
                other => problems.push(format!("acked c{}#{} at {index}/{term} but applied there: {other:?}", r.client, r.seq)),
            }
        }
    }
    problems
}

/// Options of [`run_seed`].
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Seed tokio's thread-local RNG from the run seed (needs `--cfg tokio_unstable`).
    pub pin_tokio_rng: bool,
    /// Writes before the kill.
    pub writes: usize,
    /// Writes after the kill.
    pub writes_after_kill: usize,
    /// Keep per-message events in the trace.
    pub trace_messages: bool,
    /// Loss on every link, per mille.
    pub loss_per_mille: u32,
    /// Per-message delay range, simulated microseconds.
    pub delay_us: std::ops::Range<u64>,
    /// Snapshot every N applied entries and purge the log behind it (None: openraft's default,
    /// every 5000, so never in these runs). A node that comes back behind the purge point
    /// catches up by snapshot transfer.
    pub snapshot_every: Option<u64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            pin_tokio_rng: true,
            writes: 100,
            writes_after_kill: 20,
            trace_messages: true,
            loss_per_mille: 0,
            delay_us: 1_000..10_000,
            snapshot_every: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub seed: u64,
    pub trace: Vec<TraceEvent>,
    pub trace_hash: u64,
    pub ops: Vec<OpRecord>,
    pub first_leader: Option<(NodeId, u64)>,
    pub killed: Option<NodeId>,
    pub second_leader: Option<(NodeId, u64)>,
    pub converged: bool,
    pub final_kv: BTreeMap<NodeId, BTreeMap<String, String>>,
    pub problems: Vec<String>,
    pub sim_elapsed: Duration,
}

/// The end-to-end scenario on one seed, on a fresh thread: 3 nodes elect a leader, a client
/// commits `writes` puts, the leader is killed, a new one is elected, `writes_after_kill` more
/// go through, the old leader restarts and catches up; then the safety checks.
pub fn run_seed(seed: u64, opts: RunOptions) -> RunReport {
    let pin = opts.pin_tokio_rng;
    simulate(seed, pin, move || scenario(seed, opts))
}

/// Run the future `make()` builds as one seeded simulation on a fresh thread (madsim runtime
/// first, then, with `pin`, tokio's RNG pinned to the seed), with madsim's own network latency
/// ~0 (the adapter draws every message's delay itself) and a 300 s simulated time limit.
pub fn simulate<T, F>(seed: u64, pin: bool, make: impl FnOnce() -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + 'static,
{
    std::thread::spawn(move || {
        let mut cfg = madsim::Config::default();
        cfg.net.send_latency = Duration::from_micros(0)..Duration::from_micros(1);
        let mut rt = madsim::runtime::Runtime::with_seed_and_config(seed, cfg);
        rt.set_time_limit(Duration::from_secs(300));
        if pin {
            assert!(TokioRngPin::AVAILABLE, "pinning tokio's RNG needs --cfg tokio_unstable");
            TokioRngPin::run(seed, || rt.block_on(make()))
        } else {
            rt.block_on(make())
        }
    })
    .join()
    .expect("simulation thread")
}

async fn scenario(seed: u64, opts: RunOptions) -> RunReport {
    let start = madsim::time::Instant::now();
    let mut raft_config = default_raft_config();
    if let Some(n) = opts.snapshot_every {
        raft_config.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(n);
        raft_config.max_in_snapshot_log_to_keep = 0;
        raft_config.purge_batch_size = 1;
    }
    let mut world = World::new(3, raft_config);
    world.control.set_trace_messages(opts.trace_messages);
    world.control.set_delay_us(opts.delay_us.clone());
    world.control.set_loss_per_mille(opts.loss_per_mille);
    world.wait_started().await;
    let observer = world.spawn_observer(Duration::from_millis(5));
    world.initialize(1).await;
    let first_leader = world.wait_for_leader(Duration::from_secs(10)).await;
    world.trace.record(0, format!("leader {first_leader:?}"));

    let put = |i: usize| KvOp::Put { key: format!("k{}", i % 10), value: format!("v{i}") };
    let mut ops = world.run_client(100, (0..opts.writes).map(put).collect(), ClientOptions::default()).await;

    let mut killed = None;
    let mut second_leader = None;
    if let Some((leader, _)) = world.leader() {
        world.kill(leader);
        killed = Some(leader);
        second_leader = world.wait_for_leader(Duration::from_secs(10)).await;
        world.trace.record(0, format!("leader {second_leader:?}"));
        let after = (opts.writes..opts.writes + opts.writes_after_kill).map(put).collect();
        ops.extend(world.run_client(101, after, ClientOptions::default()).await);
        world.restart(leader);
        world.wait_started().await;
    }
    // Converge on a quiet network: loss stays a fault of the run, not of the final check.
    world.control.set_loss_per_mille(0);
    let last = world.applied_indexes().values().copied().max().unwrap_or(0);
    let converged = world.wait_converged(last, Duration::from_secs(20)).await;
    world.trace.record(0, format!("converged={converged} at {:?}", world.applied_indexes()));

    let final_kv: BTreeMap<NodeId, BTreeMap<String, String>> =
        world.members.iter().filter_map(|&id| world.state_machine(id).map(|sm| (id, sm.kv()))).collect();
    let mut problems = check(&world.applied.lock().unwrap(), &ops);
    let kvs: BTreeSet<&BTreeMap<String, String>> = final_kv.values().collect();
    if kvs.len() > 1 {
        problems.push(format!("state machines differ after convergence: {final_kv:?}"));
    }
    observer.abort();
    world.shutdown().await;
    let trace = world.trace.events();
    RunReport {
        seed,
        trace_hash: crate::trace::hash_events(&trace),
        trace,
        ops,
        first_leader,
        killed,
        second_leader,
        converged,
        final_kv,
        problems,
        sim_elapsed: madsim::time::Instant::now() - start,
    }
}
