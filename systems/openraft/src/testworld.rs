//! A small world for the adapter's own tests: it drives [`OpenraftSystem`] only through the
//! `sim::sut` API (a `Cluster`, `NodeCtx`s with the harness's `SimDisk`, `Links`, `FlushGate`
//! and `Obs`, `KvClient`s), the way faultline's generic world does, plus a few checks over the
//! reported `HostedEvent`s and client outcomes. It stands in for `sim::sut::world` in
//! `cargo test` here; scenarios run in the real one (`run.sh VERSION run ...`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sim::disk::SimDisk;
use sim::sut::{
    client_ip, op_label, Cluster, ClusterSpec, HostedEvent, HostedRecord, HostedStatus, KvCall, KvOp, KvOutcome,
    Links, NodeCtx, Obs, Storage, System,
};

use crate::system::{OpenraftSystem, Options};
use crate::trace::{now_us, Trace, TraceEvent};

/// One client call and what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRecord {
    pub call: KvCall,
    pub invoked_us: u64,
    pub completed_us: u64,
    pub outcome: KvOutcome,
}

impl OpRecord {
    pub fn is_acked(&self) -> bool {
        matches!(self.outcome, KvOutcome::Acked { .. })
    }
}

pub struct TestWorld {
    pub handle: madsim::runtime::Handle,
    pub links: Links,
    pub disk: Arc<SimDisk>,
    pub cluster: Arc<dyn Cluster>,
    /// Every observation, stamped like the harness stamps them.
    pub records: Arc<Mutex<Vec<HostedRecord>>>,
    /// Observations, harness actions and client outcomes as text: what determinism is checked on.
    pub trace: Trace,
    pub nodes: u8,
    madsim_ids: BTreeMap<u8, madsim::task::NodeId>,
    down: BTreeSet<u8>,
}

impl TestWorld {
    /// Voters `1..=nodes` with every link at `latency_ms`; call inside the simulation. The
    /// disk tears unsynced appends at a crash (a sector-aligned prefix may survive).
    pub fn new(seed: u64, nodes: u8, latency_ms: [u64; 2], options: Options) -> TestWorld {
        let handle = madsim::runtime::Handle::current();
        let links = Links::new(seed, latency_ms);
        let disk = SimDisk::new(seed, true);
        let cluster = OpenraftSystem { options }.cluster(ClusterSpec { nodes, seed, links: links.clone() });
        let records: Arc<Mutex<Vec<HostedRecord>>> = Arc::new(Mutex::new(Vec::new()));
        let trace = Trace::default();
        let incarnations: Arc<Mutex<BTreeMap<u8, u64>>> = Arc::new(Mutex::new(BTreeMap::new()));
        let mut madsim_ids = BTreeMap::new();
        for n in 1..=nodes {
            let (links, disk, cluster, records, trace, incarnations) =
                (links.clone(), disk.clone(), cluster.clone(), records.clone(), trace.clone(), incarnations.clone());
            let node = handle
                .create_node()
                .name(format!("n{n}"))
                .ip(sim::sut::addr_of(n).ip())
                .init(move || {
                    let incarnation = {
                        let mut g = incarnations.lock().unwrap();
                        let i = g.entry(n).or_insert(0);
                        *i += 1;
                        *i
                    };
                    let (records, trace) = (records.clone(), trace.clone());
                    let obs = Obs::with(n, move |node, _, event| {
                        trace.record(node as u64, format!("#{incarnation} {} {}", event.kind(), event.detail()));
                        records.lock().unwrap().push(HostedRecord { at_us: now_us(), node, incarnation, event });
                    });
                    let ctx = NodeCtx {
                        node: n,
                        incarnation,
                        seed: seed ^ ((n as u64) << 32) ^ incarnation,
                        disk: Arc::new(disk.open(n)) as Arc<dyn Storage>,
                        flush: links.flush_gate(n),
                        links: links.clone(),
                        obs,
                    };
                    // Never completes (see `OpenraftCluster::start`).
                    cluster.start(ctx)
                })
                .build();
            madsim_ids.insert(n, node.id());
        }
        TestWorld { handle, links, disk, cluster, records, trace, nodes, madsim_ids, down: BTreeSet::new() }
    }

    pub fn status(&self, n: u8) -> Option<HostedStatus> {
        if self.down.contains(&n) {
            return None;
        }
        self.cluster.status(n)
    }

    /// Wait until every live node has started its current incarnation (its handles are in).
    pub async fn wait_started(&self) {
        while (1..=self.nodes).any(|n| !self.down.contains(&n) && self.cluster.status(n).is_none()) {
            madsim::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub async fn bootstrap(&self) {
        self.cluster.bootstrap().await.expect("bootstrap");
        self.trace.record(0, "bootstrapped");
    }

    /// Kill a node: madsim drops its tasks and sockets; its disk loses (or tears) every
    /// unsynced write; connections to it are refused until it restarts.
    pub fn kill(&mut self, n: u8) {
        self.handle.kill(self.madsim_ids[&n]);
        let loss = self.disk.crash(n);
        self.links.set_down(n, true);
        self.cluster.killed(n);
        self.down.insert(n);
        self.trace.record(0, format!("kill n{n} ({} bytes lost, {} torn kept)", loss.bytes_lost, loss.bytes_torn_kept));
    }

    /// Restart a killed node (its `start` runs again on what its disk kept).
    pub fn restart(&mut self, n: u8) {
        assert!(self.down.remove(&n), "restart of a node that is up");
        self.links.set_down(n, false);
        self.handle.restart(self.madsim_ids[&n]);
        self.trace.record(0, format!("restart n{n}"));
    }

    /// Cut `n` off from every other node, both directions (clients included).
    pub fn isolate(&self, n: u8) {
        for o in (0..=self.nodes).filter(|&o| o != n) {
            self.links.clog(n, o);
            self.links.clog(o, n);
        }
        self.trace.record(0, format!("isolate n{n}"));
    }

    pub fn heal(&self) {
        self.links.heal();
        self.trace.record(0, "heal");
    }

    /// The live leader with the highest term, by the nodes' own status.
    pub fn leader(&self) -> Option<(u8, u64)> {
        (1..=self.nodes)
            .filter_map(|n| self.status(n).filter(|s| s.leader == Some(n)).map(|s| (n, s.term)))
            .max_by_key(|&(n, t)| (t, n))
    }

    pub async fn wait_for_leader(&self, within: Duration) -> Option<(u8, u64)> {
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

    pub fn applied_indexes(&self) -> BTreeMap<u8, u64> {
        (1..=self.nodes).filter_map(|n| self.status(n).map(|s| (n, s.applied))).collect()
    }

    /// Wait until every node is up and all have applied the same index, at least `min`.
    pub async fn wait_converged(&self, min: u64, within: Duration) -> bool {
        let deadline = madsim::time::Instant::now() + within;
        loop {
            let a = self.applied_indexes();
            let vals: BTreeSet<u64> = a.values().copied().collect();
            if a.len() == self.nodes as usize && vals.len() == 1 && vals.first().copied().unwrap_or(0) >= min {
                return true;
            }
            if madsim::time::Instant::now() >= deadline {
                return false;
            }
            madsim::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Run `ops` one after another as client `client` (each client id once per world: it is a
    /// madsim node at its own IP).
    pub async fn run_client(&self, client: u32, ops: Vec<KvOp>) -> Vec<OpRecord> {
        let node = self.handle.create_node().name(format!("c{client}")).ip(client_ip(client)).build();
        let cluster = self.cluster.clone();
        let trace = self.trace.clone();
        node.spawn(async move {
            let mut kv = cluster.client(client);
            let mut out = Vec::new();
            for (i, op) in ops.into_iter().enumerate() {
                let call = KvCall { client, seq: i as u64 + 1, op };
                let invoked_us = now_us();
                let outcome = kv.execute(call.clone()).await;
                trace.record(0, format!("{} {:?} -> {outcome:?}", op_label(client, call.seq), call.op));
                out.push(OpRecord { call, invoked_us, completed_us: now_us(), outcome });
            }
            out
        })
        .await
        .expect("client task")
    }

    /// State digests of every live node at its applied index.
    pub fn digests(&self) -> BTreeMap<u8, (u64, u64)> {
        (1..=self.nodes).filter_map(|n| self.status(n).map(|s| (n, (s.applied, s.state_digest)))).collect()
    }

    /// Kill every node (madsim leaks tasks still pending when block_on returns).
    pub async fn shutdown(&mut self) {
        for n in 1..=self.nodes {
            if !self.down.contains(&n) {
                self.handle.kill(self.madsim_ids[&n]);
                self.down.insert(n);
            }
        }
        madsim::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Safety checks over what the nodes reported and what clients were told: one entry per index
/// (term and operation) whichever node or incarnation applied it; every acknowledgement is the
/// entry at its index and term, and a `Get` read what the acknowledged history before it holds
/// (not checked: the real world's linearizability checker does it); a `Failed` call was never
/// applied anywhere.
pub fn check(records: &[HostedRecord], ops: &[OpRecord]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut canon: BTreeMap<u64, (u64, String, u8)> = BTreeMap::new();
    for r in records {
        let HostedEvent::Applied { index, term, op } = &r.event else { continue };
        match canon.get(index) {
            None => {
                canon.insert(*index, (*term, op.clone(), r.node));
            }
            Some((t, o, n)) if (t, o) != (term, op) => problems.push(format!(
                "index {index}: n{n} applied term {t} {o:?}, n{} applied term {term} {op:?}",
                r.node
            )),
            _ => {}
        }
    }
    for r in ops {
        let label = format!("{} ", op_label(r.call.client, r.call.seq));
        match &r.outcome {
            KvOutcome::Acked { index, term, .. } => match canon.get(index) {
                Some((t, o, _)) if t == term && o.starts_with(&label) => {}
                other => problems.push(format!("acked {label}at {index}/{term} but applied there: {other:?}")),
            },
            KvOutcome::Failed(why) => {
                if let Some((i, _)) = canon.iter().find(|(_, (_, o, _))| o.starts_with(&label)) {
                    problems.push(format!("{label}failed ({why}) but was applied at {i}"));
                }
            }
            KvOutcome::Unknown(_) => {}
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
    /// Report every delivered message (a `Note` each) into the trace.
    pub trace_messages: bool,
    /// Loss on every link, per mille.
    pub loss_per_mille: u32,
    /// Per-message delay range, ms.
    pub latency_ms: [u64; 2],
    /// Snapshot every N applied entries and purge the log behind it (None: the adapter's
    /// default, every 1000, so never in these runs). A node that comes back behind the purge
    /// point catches up by snapshot transfer.
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
            latency_ms: [1, 10],
            snapshot_every: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub seed: u64,
    pub trace: Vec<TraceEvent>,
    pub trace_hash: u64,
    pub records: Vec<HostedRecord>,
    pub ops: Vec<OpRecord>,
    pub first_leader: Option<(u8, u64)>,
    pub killed: Option<u8>,
    pub second_leader: Option<(u8, u64)>,
    pub converged: bool,
    pub digests: BTreeMap<u8, (u64, u64)>,
    pub problems: Vec<String>,
    pub sim_elapsed: Duration,
}

impl RunReport {
    pub fn count(&self, kind: &str) -> usize {
        self.records.iter().filter(|r| r.event.kind() == kind).count()
    }
}

/// Adapter options for a run.
pub fn options(trace_messages: bool, snapshot_every: Option<u64>) -> Options {
    let mut o = Options { trace_messages, ..Options::default() };
    if let Some(n) = snapshot_every {
        o.raft.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(n);
        o.raft.max_in_snapshot_log_to_keep = 0;
        o.raft.purge_batch_size = 1;
    }
    o
}

/// `n` puts over 10 keys, values naming the write.
pub fn puts(range: std::ops::Range<usize>) -> Vec<KvOp> {
    range.map(|i| KvOp::Put { key: format!("k{}", i % 10), value: format!("v{i}").into_bytes() }).collect()
}

/// The end-to-end run on one seed, on a fresh thread: 3 nodes elect a leader, a client commits
/// `writes` puts, the leader is killed, a new one is elected, `writes_after_kill` more go
/// through, the old leader restarts and catches up; then the checks.
pub fn run_seed(seed: u64, opts: RunOptions) -> RunReport {
    let pin = opts.pin_tokio_rng;
    simulate(seed, pin, move || scenario(seed, opts))
}

/// Run the future `make()` builds as one seeded simulation on a fresh thread (the madsim
/// runtime first, then, with `pin`, tokio's RNG pinned to the seed: [`crate::pin_tokio_rng`]),
/// with madsim's own network latency ~0 (the adapter draws every message's delay from
/// `Links`) and a 300 s simulated time limit.
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
            assert!(crate::runtime::TokioRngPin::AVAILABLE, "pinning tokio's RNG needs --cfg tokio_unstable");
            crate::pin_tokio_rng(seed, || rt.block_on(make()))
        } else {
            rt.block_on(make())
        }
    })
    .join()
    .expect("simulation thread")
}

async fn scenario(seed: u64, opts: RunOptions) -> RunReport {
    let start = madsim::time::Instant::now();
    let mut world = TestWorld::new(seed, 3, opts.latency_ms, options(opts.trace_messages, opts.snapshot_every));
    world.links.set_loss_per_mille(opts.loss_per_mille);
    world.wait_started().await;
    world.bootstrap().await;
    let first_leader = world.wait_for_leader(Duration::from_secs(10)).await;
    world.trace.record(0, format!("leader {first_leader:?}"));

    let mut ops = world.run_client(1, puts(0..opts.writes)).await;
    let mut killed = None;
    let mut second_leader = None;
    if let Some((leader, _)) = world.leader() {
        world.kill(leader);
        killed = Some(leader);
        second_leader = world.wait_for_leader(Duration::from_secs(10)).await;
        world.trace.record(0, format!("leader {second_leader:?}"));
        ops.extend(world.run_client(2, puts(opts.writes..opts.writes + opts.writes_after_kill)).await);
        world.restart(leader);
        world.wait_started().await;
    }
    // Converge on a quiet network: loss stays a fault of the run, not of the final check.
    world.links.set_loss_per_mille(0);
    let last = world.applied_indexes().values().copied().max().unwrap_or(0);
    let converged = world.wait_converged(last, Duration::from_secs(20)).await;
    let digests = world.digests();
    world.trace.record(0, format!("converged={converged} at {digests:?}"));
    let records = world.records.lock().unwrap().clone();
    let mut problems = check(&records, &ops);
    if digests.values().collect::<BTreeSet<_>>().len() > 1 {
        problems.push(format!("state machines differ after convergence: {digests:?}"));
    }
    world.shutdown().await;
    let trace = world.trace.events();
    RunReport {
        seed,
        trace_hash: crate::trace::hash_events(&trace),
        trace,
        records,
        ops,
        first_leader,
        killed,
        second_leader,
        converged,
        digests,
        problems,
        sim_elapsed: madsim::time::Instant::now() - start,
    }
}
