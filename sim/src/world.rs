//! One seed's simulated world: the madsim runtime, the replica nodes, the client node, the
//! timeline controller, and the phases of a run (faults, then liveness, then final checks).
//! It is also the engine's [`Observer`]: every engine event lands in the trace and the online
//! history checker here.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use engine::failpoints::FailpointRates;
use engine::keystore::Keystore;
use engine::kms::{Kms, KmsConfig, KMS_NODE};
use engine::layered::CheckpointMeta;
use engine::observe::{Event, Inspect, InspectPages, NodeStatus, Observer};
use engine::page_service::{PageServiceConfig, PAGE_SERVICE_NODE};
use engine::raft::{Entry, NodeId, Op, RaftEvent, Role};
use engine::replica::{LinkConfig, ReplicaConfig};
use engine::state::Collection;
use engine::wire::AdminAction;
use engine::{Abort, Knobs};
use madsim::net::NetSim;
use madsim::runtime::{Handle, Runtime};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reports::{SeedReport, TraceEvent, Violation, ViolationKind};

use crate::check::clients::ClientOp;
use crate::check::model::Model;
use crate::check::history::History;
use crate::check::{self, violation};
use crate::disk::SimDisk;
use crate::profile::{thread_cpu_ns, Bucket, CpuSplit, Profile};
use crate::scenario::{Check, Scenario, Selector, TimelineItem};
use crate::trace::Trace;
use crate::{panics, workload};

/// Derives an independent seed for one subsystem, so a draw added in one stream does not
/// reshuffle the others.
pub fn derive_seed(seed: u64, stream: &str, index: u64) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&seed.to_le_bytes());
    h.update(stream.as_bytes());
    h.update(&index.to_le_bytes());
    h.digest()
}

/// Race windows the run marks as reached (coverage). Incident 003 needs both: every replica
/// restarting at once, then a vote for a candidate with a shorter but higher-term log.
pub const WINDOW_ALL_RESTARTED: &str = "all-replicas-restarted";
pub const WINDOW_VOTE_SHORTER_LOG: &str = "vote-for-shorter-log";
/// Incident 001: a checkpoint's address-cookie packing failed after its block was written.
pub const WINDOW_PACK_FAILED: &str = "addr-pack-failed-after-put";
/// A follower installed a newer checkpoint while applying the oplog.
pub const WINDOW_PICKUP: &str = "checkpoint-picked-up";
/// The page service crashed while a leader's checkpoint was being written.
pub const WINDOW_PS_KILLED_MID_CHECKPOINT: &str = "page-service-killed-mid-checkpoint";
/// A leader crashed while its checkpoint was being written.
pub const WINDOW_LEADER_KILLED_MID_CHECKPOINT: &str = "leader-killed-mid-checkpoint";
/// Incident 000: a standby holding a rotated keystore met a checkpoint whose keystore page is
/// older (a rotation applied before a stale checkpoint's pick-up).
pub const WINDOW_STALE_KEYSTORE: &str = "stale-keystore-checkpoint";
/// A key rotation was applied on a follower.
pub const WINDOW_ROTATION_ON_FOLLOWER: &str = "rotation-applied-on-follower";
/// Incident 002: a forced drop reached a table a step-up drain worker was copying.
pub const WINDOW_DROP_DURING_DRAIN: &str = "drop-during-drain";
/// A leader was asked to step down while its storage was still stepping up.
pub const WINDOW_STEP_DOWN_MID_STEP_UP: &str = "step-down-mid-step-up";
pub const WINDOWS: [&str; 10] = [
    WINDOW_ALL_RESTARTED,
    WINDOW_VOTE_SHORTER_LOG,
    WINDOW_PACK_FAILED,
    WINDOW_PICKUP,
    WINDOW_PS_KILLED_MID_CHECKPOINT,
    WINDOW_LEADER_KILLED_MID_CHECKPOINT,
    WINDOW_ROTATION_ON_FOLLOWER,
    WINDOW_STALE_KEYSTORE,
    WINDOW_DROP_DURING_DRAIN,
    WINDOW_STEP_DOWN_MID_STEP_UP,
];

/// A scenario's `[min, max]` latency as madsim's half-open range.
fn latency_range([lo, hi]: [u64; 2]) -> std::ops::Range<Duration> {
    Duration::from_millis(lo)..Duration::from_millis(hi + 1)
}

/// Per-mille loss as the probability madsim takes.
fn loss_rate(per_mille: u32) -> f64 {
    per_mille as f64 / 1000.0
}

/// The page service and the KMS: nodes that are not replicas.
fn is_service(id: NodeId) -> bool {
    id == PAGE_SERVICE_NODE || id == KMS_NODE
}

pub fn replica_addr(id: NodeId) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, id)),
        engine::wire::REPLICA_PORT,
    )
}
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);

pub fn page_service_addr() -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1)),
        engine::wire::PAGE_SERVICE_PORT,
    )
}

pub fn kms_addr() -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, 3, 1)),
        engine::wire::KMS_PORT,
    )
}

/// How nodes are named in traces and reports: replicas `n1`.., the page service `ps`, the
/// KMS `kms`.
pub fn node_name(id: NodeId) -> String {
    match id {
        PAGE_SERVICE_NODE => "ps".to_string(),
        KMS_NODE => "kms".to_string(),
        _ => format!("n{id}"),
    }
}

/// The published checkpoint and the blocks the page service holds, for `validate`.
pub struct PagesSnapshot {
    pub blocks: BTreeMap<engine::pages::Lsn, engine::page_store::BlockInfo>,
    pub latest: Option<(u64, Result<CheckpointMeta, String>)>,
    /// Fetches a block's bytes.
    pub fetch: Arc<dyn InspectPages>,
}

/// What the final checkers see of one live replica.
pub struct NodeSnapshot {
    pub status: NodeStatus,
    /// The node's dbHash per collection.
    pub hashes: BTreeMap<String, engine::state::CollectionHash>,
    pub data: BTreeMap<String, Collection>,
    pub log_tail: Vec<Entry>,
}

pub fn op_summary(op: &Op) -> String {
    match op {
        Op::Noop => "noop".into(),
        Op::Put {
            collection, key, ..
        } => format!("put {collection}/{key}"),
        Op::Delete { collection, key } => format!("del {collection}/{key}"),
        Op::CreateCollection { name } => format!("create {name}"),
        Op::DropCollection { name } => format!("drop {name}"),
        Op::Append {
            collection, key, ..
        } => format!("append {collection}/{key}"),
        Op::Get { collection, key } => format!("get {collection}/{key}"),
        Op::Rotate(r) => r.summary(),
    }
}

#[derive(Default)]
struct Slot {
    madsim_id: Option<madsim::task::NodeId>,
    up: bool,
    aborted: Option<(u64, String)>,
    incarnation: u64,
    inspect: Option<Arc<dyn Inspect>>,
}

struct State {
    trace: Trace,
    history: History,
    violations: Vec<Violation>,
    slots: BTreeMap<NodeId, Slot>,
    ops: Vec<ClientOp>,
    ops_acked: u64,
    /// Acknowledged operations while faults ran (progress: a run that stops serving during
    /// faults and converges at the end tested little).
    ops_acked_fault_phase: u64,
    /// Acknowledged reads while faults ran (each one checked by linearizability).
    reads_acked_fault_phase: u64,
    /// The canonical committed sequence replayed on the plain state machine.
    model: Model,
    /// Simulated time of the last sampled model comparison.
    model_sampled_us: Option<u64>,
    /// Model divergences found (the first few are reported).
    model_divergences: u32,
    /// Active one-way clogs between madsim nodes, counted so overlapping faults compose.
    clogs: BTreeMap<(madsim::task::NodeId, madsim::task::NodeId), u32>,
    chaos_rng: ChaCha8Rng,
    start: Option<madsim::time::Instant>,
    notes: Vec<String>,
    windows: std::collections::BTreeSet<&'static str>,
    pages: Option<Arc<dyn InspectPages>>,
    /// Each replica incarnation's keystore timestamp, to catch it going backwards.
    keystore_ts: BTreeMap<NodeId, u64>,
    /// Keystore regressions seen during the run (`validate` findings).
    keystore_regressions: Vec<Violation>,
    /// Every item the chaos controller applied, with `at_ms` set to when it fired.
    chaos_schedule: Vec<TimelineItem>,
    /// Failpoint rates the chaos swarm set for the whole fault phase.
    background_failpoints: BTreeMap<String, u32>,
}

pub struct World {
    pub scn: Arc<Scenario>,
    pub seed: u64,
    pub knobs: Knobs,
    disk: Arc<SimDisk>,
    st: Mutex<State>,
    pub workload_stop: AtomicBool,
    /// DDL clients started so far (each binds its own port).
    pub ddl_clients: std::sync::atomic::AtomicU16,
    client_node: Mutex<Option<madsim::task::NodeId>>,
    /// Failpoint rates every node reads; the timeline and chaos change them during a run.
    failpoints: FailpointRates,
    /// The KMS's keys (the checkers open pages the way an operator with KMS access would).
    pub kms: Kms,
    /// The keystore the cluster is provisioned with.
    genesis: Keystore,
    /// CPU accounting for the bench (`None`: not profiling, nothing measured).
    profile: Option<Profile>,
}

/// Options that do not change what a seed does, only what is kept of it.
#[derive(Debug, Clone, Default)]
pub struct SeedOptions {
    pub keep_full_trace: bool,
    /// Measure where the seed's CPU time goes (see [`crate::profile`]).
    pub profile: bool,
}

pub struct SeedResult {
    pub report: SeedReport,
    pub full_trace: Option<Vec<TraceEvent>>,
    /// With `SeedOptions::profile`.
    pub cpu: Option<CpuSplit>,
    /// The chaos controller's faults as timeline items at their firing times (ms), in firing
    /// order: with the scenario's own timeline and no chaos block they script the same faults
    /// (`shrink` starts from that). Recording them changes nothing in the run.
    pub chaos_schedule: Vec<TimelineItem>,
}

/// Runs one seed on a fresh OS thread (std's `HashMap` seeding inside madsim is only
/// deterministic that way) and returns its report.
pub fn run_seed(
    scn: Arc<Scenario>,
    seed: u64,
    knobs: Knobs,
    opts: SeedOptions,
    replay: String,
) -> SeedResult {
    let t = std::thread::Builder::new()
        .name(format!("faultline-seed-{seed}"))
        .stack_size(16 << 20)
        .spawn(move || run_seed_here(scn, seed, knobs, opts, replay))
        .expect("spawn a seed thread");
    t.join().expect("the seed thread catches its own panics")
}

fn run_seed_here(
    scn: Arc<Scenario>,
    seed: u64,
    knobs: Knobs,
    opts: SeedOptions,
    replay: String,
) -> SeedResult {
    let wall = std::time::Instant::now();
    let cpu_start = opts.profile.then(thread_cpu_ns);
    panics::install_hook();
    let _sim = panics::SimThreadGuard::enter();
    let mut cfg = madsim::Config::default();
    let [lo, hi] = scn.network.latency_ms;
    cfg.net.send_latency = latency_range([lo, hi]);
    cfg.net.packet_loss_rate = loss_rate(scn.network.loss_per_mille);
    let rt = Runtime::with_seed_and_config(seed, cfg);
    // Key material derives from the seed: the KMS's CMKs, the provisioned KEK and data key.
    let kms = Kms::new(derive_seed(seed, "kms", 0));
    let genesis = {
        let mut keys = ChaCha8Rng::seed_from_u64(derive_seed(seed, "keys", 0));
        let mut nonces = ChaCha8Rng::seed_from_u64(derive_seed(seed, "keys", 1));
        Keystore::genesis(&mut keys, |kek, aad| kms.wrap(1, aad, kek, &mut nonces))
    };
    let world = Arc::new(World {
        disk: SimDisk::new(derive_seed(seed, "disk", 0), true),
        st: Mutex::new(State {
            trace: Trace::new(opts.keep_full_trace),
            history: History::default(),
            violations: vec![],
            slots: BTreeMap::new(),
            ops: vec![],
            ops_acked: 0,
            ops_acked_fault_phase: 0,
            reads_acked_fault_phase: 0,
            model: Model::default(),
            model_sampled_us: None,
            model_divergences: 0,
            clogs: BTreeMap::new(),
            chaos_rng: ChaCha8Rng::seed_from_u64(derive_seed(seed, "chaos", 0)),
            start: None,
            notes: vec![],
            windows: Default::default(),
            pages: None,
            keystore_ts: BTreeMap::new(),
            keystore_regressions: vec![],
            chaos_schedule: vec![],
            background_failpoints: BTreeMap::new(),
        }),
        failpoints: Arc::new(Mutex::new(
            scn.failpoints
                .iter()
                .map(|f| (f.name.clone(), f.per_mille))
                .collect(),
        )),
        scn: scn.clone(),
        seed,
        knobs,
        workload_stop: AtomicBool::new(false),
        ddl_clients: std::sync::atomic::AtomicU16::new(0),
        client_node: Mutex::new(None),
        kms: kms.clone(),
        genesis,
        profile: opts.profile.then(Profile::default),
    });
    let w2 = world.clone();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(supervise(w2))));
    let mut st = world.lock();
    let mut sim_ms_end = 0;
    if let Err(payload) = outcome {
        let msg = panics::describe(payload.as_ref());
        let at_ms = st.trace.tail(1).last().map_or(0, |e| e.at_us / 1000);
        let (kind, text) = if msg.contains("no events, all tasks will block forever") {
            (
                ViolationKind::Hang,
                format!("the simulation stopped making progress: {msg}"),
            )
        } else {
            (ViolationKind::Crash, format!("unexpected panic: {msg}"))
        };
        st.violations.push(violation(kind, None, at_ms, text));
        sim_ms_end = at_ms;
    } else if let Some(e) = st.trace.tail(1).last() {
        sim_ms_end = e.at_us / 1000;
    }
    let mut violations = std::mem::take(&mut st.history.violations);
    violations.append(&mut st.violations);
    violations.sort_by(|a, b| (a.at_ms, a.kind).cmp(&(b.at_ms, b.kind)));
    let passed = violations.is_empty();
    let report = SeedReport {
        seed,
        trace_hash: st.trace.hash_hex(),
        passed,
        replay,
        sim_ms: sim_ms_end,
        events: st.trace.count(),
        ops_acked: st.ops_acked,
        ops_acked_fault_phase: st.ops_acked_fault_phase,
        reads_acked_fault_phase: st.reads_acked_fault_phase,
        model_checks: st.model.comparisons,
        wall_ms: wall.elapsed().as_millis() as u64,
        trace_tail: if passed { vec![] } else { st.trace.tail(80) },
        causal: match violations.first() {
            Some(v) => st.trace.causal_before((v.at_ms + 1) * 1000, 40),
            None => vec![],
        },
        notes: std::mem::take(&mut st.notes),
        windows: st.windows.iter().map(|w| w.to_string()).collect(),
        violations,
    };
    let full_trace = st.trace.take_full();
    let chaos_schedule = std::mem::take(&mut st.chaos_schedule);
    drop(st);
    let cpu = world
        .profile
        .as_ref()
        .zip(cpu_start)
        .map(|(p, start)| p.split(thread_cpu_ns().saturating_sub(start)));
    SeedResult {
        report,
        full_trace,
        cpu,
        chaos_schedule,
    }
}

impl World {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_us(st: &State) -> u64 {
        st.start.map_or(0, |s| s.elapsed().as_micros() as u64)
    }

    fn record(&self, node: &str, kind: &str, detail: String) {
        let mut st = self.lock();
        let at = Self::now_us(&st);
        st.trace.record(at, node, kind, detail);
    }

    /// A controller fault line in the trace.
    fn fault(&self, detail: String) {
        self.record("controller", "fault", detail);
    }

    fn now_ms(&self) -> u64 {
        self.sim_now_us() / 1000
    }

    /// Records an operation as it is issued (so in-flight writes are known to the checkers);
    /// returns a handle for [`World::complete_op`].
    pub fn begin_op(&self, op: ClientOp) -> usize {
        let mut st = self.lock();
        st.ops.push(op);
        st.ops.len() - 1
    }

    /// What the client saw at the end of operation `handle`.
    pub fn complete_op(&self, handle: usize, outcome: &engine::client::Outcome) {
        use engine::client::Outcome;
        let fault_phase = !self.workload_stop.load(Ordering::Relaxed);
        let mut st = self.lock();
        let now = Self::now_us(&st);
        let (ack, read) = match outcome {
            Outcome::Acked { index, term } => (Some((*index, *term)), None),
            Outcome::Read { index, term, value } => (Some((*index, *term)), Some(value.clone())),
            Outcome::Unknown | Outcome::SteppedDown { .. } => return,
        };
        let Some(op) = st.ops.get_mut(handle) else {
            return;
        };
        op.acked_us = Some(now);
        op.ack = ack;
        op.read = read.clone();
        st.ops_acked += 1;
        if fault_phase {
            st.ops_acked_fault_phase += 1;
            st.reads_acked_fault_phase += read.is_some() as u64;
        }
    }

    /// Compares every live replica's visible state with the reference model, at most every
    /// 500 ms of simulated time. Called from client tasks between operations: no task or timer
    /// of its own, so checking does not change the schedule it checks.
    pub fn sample_model(&self, when: &str) {
        if !self.scn.has_check(Check::Model) {
            return;
        }
        {
            let mut st = self.lock();
            let now = Self::now_us(&st);
            if st.model_sampled_us.is_some_and(|t| now < t + 500_000) {
                return;
            }
            st.model_sampled_us = Some(now);
        }
        self.compare_with_model(None, when);
    }

    /// Compares live replicas (or just `only`) with the model; records any divergence.
    fn compare_with_model(&self, only: Option<NodeId>, when: &str) {
        let inspects: Vec<(NodeId, Arc<dyn Inspect>)> = {
            let st = self.lock();
            st.slots
                .iter()
                .filter(|(id, _)| !is_service(**id) && only.is_none_or(|o| o == **id))
                .filter_map(|(id, s)| Some((*id, s.inspect.clone()?)))
                .collect()
        };
        for (id, inspect) in inspects {
            // No await between these reads: the node cannot apply anything in between.
            let applied = inspect.status().last_applied;
            let data = inspect.read_all();
            let mut st = self.lock();
            let Some(m) = st.model.compare(applied, &data) else {
                continue;
            };
            let layer = match &m.key {
                Some(k) => inspect.layer_of(&m.collection, k),
                None => "its collection list".to_string(),
            };
            let at_ms = Self::now_us(&st) / 1000;
            let v = crate::check::model::divergence(&node_name(id), applied, when, &m, &layer, at_ms);
            let n = st.model_divergences;
            st.model_divergences += 1;
            if n < 3 {
                st.violations.push(v);
            }
        }
    }

    pub fn sim_now_us(&self) -> u64 {
        Self::now_us(&self.lock())
    }

    fn replicas(&self) -> Vec<NodeId> {
        (1..=self.scn.replicas).collect()
    }

    fn checkpoint_interval_ms(&self) -> u64 {
        self.scn.checkpoint_interval_ms.unwrap_or(1_000)
    }

    fn build_page_service(self: &Arc<Self>) {
        let w = self.clone();
        let node = Handle::current()
            .create_node()
            .name("ps")
            .ip(page_service_addr().ip())
            .init(move || {
                let w = w.clone();
                async move {
                    let (disk, _) = w.incarnate(PAGE_SERVICE_NODE);
                    let cfg = PageServiceConfig {
                        addr: page_service_addr(),
                        fsync_ms: 1,
                    };
                    engine::page_service::run(cfg, Arc::new(disk), w.clone()).await
                }
            })
            .build();
        self.lock()
            .slots
            .entry(PAGE_SERVICE_NODE)
            .or_default()
            .madsim_id = Some(node.id());
    }

    fn build_kms(self: &Arc<Self>) {
        let w = self.clone();
        let node = Handle::current()
            .create_node()
            .name("kms")
            .ip(kms_addr().ip())
            .init(move || {
                let w = w.clone();
                async move {
                    let inc = w.next_incarnation(KMS_NODE);
                    let cfg = KmsConfig {
                        addr: kms_addr(),
                        seed: derive_seed(w.seed, "kms", 0),
                        nonce_seed: derive_seed(w.seed, "kms-nonces", inc),
                    };
                    engine::kms::run(cfg, w.clone()).await
                }
            })
            .build();
        self.lock().slots.entry(KMS_NODE).or_default().madsim_id = Some(node.id());
    }

    /// Sets a failpoint's rate (0 switches it off).
    fn set_failpoint(&self, name: &str, per_mille: u32) {
        self.failpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), per_mille);
    }

    /// The failpoint's rate for the whole fault phase: the scenario's, or the chaos swarm's
    /// background rate if higher. A timed failpoint fault returns to it.
    fn scenario_failpoint(&self, name: &str) -> u32 {
        let scripted = self
            .scn
            .failpoints
            .iter()
            .find(|f| f.name == name)
            .map_or(0, |f| f.per_mille);
        let background = self.lock().background_failpoints.get(name).copied();
        scripted.max(background.unwrap_or(0))
    }

    /// The chaos swarm switched `name` on for the whole fault phase.
    pub fn set_background_failpoint(&self, name: &str, per_mille: u32) {
        self.lock()
            .background_failpoints
            .insert(name.to_string(), per_mille);
    }

    fn madsim_id(&self, id: NodeId) -> madsim::task::NodeId {
        self.lock().slots[&id]
            .madsim_id
            .expect("replica node built")
    }

    /// Marks node `id` up as a new incarnation; returns its number.
    fn next_incarnation(&self, id: NodeId) -> u64 {
        let mut st = self.lock();
        let slot = st.slots.entry(id).or_default();
        slot.incarnation += 1;
        slot.up = true;
        slot.incarnation
    }

    /// A new incarnation of replica `id`: its disk handle and election seed.
    fn incarnate(self: &Arc<Self>, id: NodeId) -> (crate::disk::DiskHandle, u64) {
        let inc = self.next_incarnation(id);
        (
            self.disk.open(id),
            derive_seed(self.seed, "election", (id as u64) << 32 | inc),
        )
    }

    fn build_replicas(self: &Arc<Self>) {
        let handle = Handle::current();
        let members: BTreeMap<NodeId, SocketAddr> = self
            .replicas()
            .into_iter()
            .map(|i| (i, replica_addr(i)))
            .collect();
        for id in self.replicas() {
            let w = self.clone();
            let members = members.clone();
            let node = handle
                .create_node()
                .name(format!("n{id}"))
                .ip(replica_addr(id).ip())
                .init(move || {
                    let w = w.clone();
                    let members = members.clone();
                    async move {
                        let (disk, rng_seed) = w.incarnate(id);
                        let ckpt_ms = w.checkpoint_interval_ms();
                        let cfg = ReplicaConfig {
                            id,
                            members,
                            tick_ms: 10,
                            knobs: w.knobs.clone(),
                            rng_seed,
                            link: LinkConfig::default(),
                            fsync_ms: 1,
                            page_service: page_service_addr(),
                            checkpoint_interval_ms: ckpt_ms,
                            pickup_interval_ms: (ckpt_ms / 2).clamp(50, 500),
                            failpoints: w.failpoints.clone(),
                            failpoint_seed: rng_seed ^ 0x6661_696c,
                            drain_workers: w.scn.drain_workers.unwrap_or(2),
                            kms: kms_addr(),
                            keystore: w.genesis.clone(),
                        };
                        engine::replica::run(cfg, Arc::new(disk), w.clone()).await
                    }
                })
                .build();
            self.lock().slots.entry(id).or_default().madsim_id = Some(node.id());
        }
    }

    // ----- faults -----

    fn kill(&self, id: NodeId, why: &str) {
        let mid = self.madsim_id(id);
        // Coverage: a kill that lands while a leader's checkpoint is being written.
        let mid_checkpoint = self
            .statuses()
            .values()
            .any(|s| s.storage.checkpoint_in_flight && (id == PAGE_SERVICE_NODE || s.id == id));
        if mid_checkpoint {
            self.lock().windows.insert(if id == PAGE_SERVICE_NODE {
                WINDOW_PS_KILLED_MID_CHECKPOINT
            } else {
                WINDOW_LEADER_KILLED_MID_CHECKPOINT
            });
        }
        {
            let mut st = self.lock();
            let slot = st.slots.get_mut(&id).unwrap();
            if !slot.up {
                return;
            }
            slot.up = false;
            slot.inspect = None;
            if id == PAGE_SERVICE_NODE {
                st.pages = None;
            }
        }
        Handle::current().kill(mid);
        let loss = self.disk.crash(id);
        self.record(
            &node_name(id),
            "kill",
            format!(
                "{why}; unsynced bytes lost {} (torn kept {})",
                loss.bytes_lost, loss.bytes_torn_kept
            ),
        );
    }

    fn start(&self, id: NodeId) {
        let (up, aborted) = {
            let st = self.lock();
            let s = &st.slots[&id];
            (s.up, s.aborted.is_some())
        };
        if up || aborted {
            return; // an aborted process stays down: the abort is the finding
        }
        self.record(&node_name(id), "restart", String::new());
        Handle::current().restart(self.madsim_id(id));
    }

    fn clog(&self, a: madsim::task::NodeId, b: madsim::task::NodeId) {
        let mut st = self.lock();
        let n = st.clogs.entry((a, b)).or_default();
        *n += 1;
        if *n == 1 {
            NetSim::current().clog_link(a, b);
        }
    }

    fn unclog(&self, a: madsim::task::NodeId, b: madsim::task::NodeId) {
        let mut st = self.lock();
        let key = (a, b);
        if let Some(n) = st.clogs.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                st.clogs.remove(&key);
                NetSim::current().unclog_link(a, b);
            }
        }
    }

    fn heal_all(&self) {
        let mut st = self.lock();
        let net = NetSim::current();
        for (a, b) in std::mem::take(&mut st.clogs).into_keys() {
            net.unclog_link(a, b);
        }
        drop(st);
        self.set_loss(self.scn.network.loss_per_mille);
        self.set_latency(self.scn.network.latency_ms);
        for id in self.replicas() {
            Handle::current().resume(self.madsim_id(id));
        }
        Handle::current().resume(self.madsim_id(PAGE_SERVICE_NODE));
        Handle::current().resume(self.madsim_id(KMS_NODE));
    }

    /// Sets the network-wide latency range (madsim has one global setting), leaving loss alone.
    fn set_latency(&self, latency_ms: [u64; 2]) {
        NetSim::current().update_config(|c| c.send_latency = latency_range(latency_ms));
    }

    /// Sets the network-wide packet loss, leaving latency alone.
    fn set_loss(&self, per_mille: u32) {
        NetSim::current().update_config(|c| c.packet_loss_rate = loss_rate(per_mille));
    }

    /// Every madsim node other than the given replicas (other replicas and the client node).
    fn others(&self, ids: &[NodeId]) -> Vec<madsim::task::NodeId> {
        let mut v: Vec<_> = self
            .replicas()
            .into_iter()
            .filter(|i| !ids.contains(i))
            .map(|i| self.madsim_id(i))
            .collect();
        if let Some(c) = *self.client_node.lock().unwrap() {
            v.push(c);
        }
        for service in [PAGE_SERVICE_NODE, KMS_NODE] {
            if !ids.contains(&service) {
                v.push(self.madsim_id(service));
            }
        }
        v
    }

    fn statuses(&self) -> BTreeMap<NodeId, NodeStatus> {
        let inspects: Vec<(NodeId, Arc<dyn Inspect>)> = {
            let st = self.lock();
            st.slots
                .iter()
                .filter_map(|(id, s)| Some((*id, s.inspect.clone()?)))
                .collect()
        };
        inspects
            .into_iter()
            .map(|(id, i)| (id, i.status()))
            .collect()
    }

    fn current_leader(&self) -> Option<NodeId> {
        self.statuses()
            .values()
            .filter(|s| s.role == Role::Leader)
            .max_by_key(|s| s.term)
            .map(|s| s.id)
    }

    fn resolve(&self, sel: &Selector) -> Vec<NodeId> {
        let up: Vec<NodeId> = {
            let st = self.lock();
            st.slots
                .iter()
                .filter(|(id, s)| s.up && !is_service(**id))
                .map(|(id, _)| *id)
                .collect()
        };
        let leader = || {
            self.current_leader().or_else(|| {
                // No leader right now: the fault still lands, on a node the seed picks.
                let mut st = self.lock();
                (!up.is_empty()).then(|| up[st.chaos_rng.gen_range(0..up.len())])
            })
        };
        match sel {
            Selector::Node(n) => vec![*n],
            Selector::All => self.replicas(),
            Selector::Leader => leader().into_iter().collect(),
            Selector::Followers => {
                let l = leader();
                self.replicas()
                    .into_iter()
                    .filter(|i| Some(*i) != l)
                    .collect()
            }
            Selector::Standby => {
                let l = leader();
                let f: Vec<NodeId> = up.iter().copied().filter(|i| Some(*i) != l).collect();
                if f.is_empty() {
                    return vec![];
                }
                let i = self.lock().chaos_rng.gen_range(0..f.len());
                vec![f[i]]
            }
            Selector::Minority => {
                let mut all = self.replicas();
                let size = {
                    let mut st = self.lock();
                    let size = st.chaos_rng.gen_range(1..=(all.len() - 1) / 2).max(1);
                    // Fisher-Yates prefix: a seed-chosen subset of that size.
                    for k in 0..size.min(all.len()) {
                        let j = st.chaos_rng.gen_range(k..all.len());
                        all.swap(k, j);
                    }
                    size
                };
                all.truncate(size);
                all.sort_unstable();
                all
            }
            Selector::PageService => vec![PAGE_SERVICE_NODE],
            Selector::Kms => vec![KMS_NODE],
        }
    }

    fn draw(&self, [lo, hi]: [u64; 2]) -> u64 {
        self.lock().chaos_rng.gen_range(lo..=hi)
    }

    pub async fn apply(self: Arc<Self>, item: TimelineItem) {
        let names = |ids: &[NodeId]| {
            ids.iter()
                .map(|i| node_name(*i))
                .collect::<Vec<_>>()
                .join(",")
        };
        match item {
            TimelineItem::Restart {
                nodes,
                down_ms,
                straggler_ms,
                ..
            } => {
                let ids = self.resolve(&nodes);
                self.fault(format!("restart {nodes} = [{}]", names(&ids)));
                if ids.len() == self.replicas().len() {
                    self.lock().windows.insert(WINDOW_ALL_RESTARTED);
                }
                for id in &ids {
                    self.kill(*id, "restart");
                }
                let straggler = straggler_ms.and_then(|_| {
                    (!ids.is_empty()).then(|| ids[self.lock().chaos_rng.gen_range(0..ids.len())])
                });
                for id in ids {
                    let mut delay = self.draw(down_ms);
                    if Some(id) == straggler {
                        delay += self.draw(straggler_ms.unwrap());
                        self.record(
                            &node_name(id),
                            "straggler",
                            format!("back after {delay} ms"),
                        );
                    }
                    let w = self.clone();
                    madsim::task::spawn(async move {
                        madsim::time::sleep(Duration::from_millis(delay)).await;
                        if !w.workload_stop.load(Ordering::Relaxed) {
                            w.start(id);
                        }
                    });
                }
            }
            TimelineItem::Kill { nodes, .. } => {
                for id in self.resolve(&nodes) {
                    self.kill(id, "kill");
                }
            }
            TimelineItem::Start { nodes, .. } => {
                for id in self.resolve(&nodes) {
                    self.start(id);
                }
            }
            TimelineItem::Partition { nodes, for_ms, .. } => {
                let ids = self.resolve(&nodes);
                let inside: Vec<_> = ids.iter().map(|i| self.madsim_id(*i)).collect();
                let outside = self.others(&ids);
                self.fault(format!(
                    "partition {nodes} = [{}] for {for_ms} ms",
                    names(&ids)
                ));
                let pairs: Vec<_> = inside
                    .iter()
                    .flat_map(|a| outside.iter().flat_map(move |b| [(*a, *b), (*b, *a)]))
                    .collect();
                self.timed_clogs(pairs, for_ms).await;
            }
            TimelineItem::ClogLink {
                from, to, for_ms, ..
            } => {
                let (f, t) = (self.resolve(&from), self.resolve(&to));
                let pairs: Vec<_> = f
                    .iter()
                    .flat_map(|a| t.iter().filter(move |b| *b != a).map(move |b| (*a, *b)))
                    .map(|(a, b)| (self.madsim_id(a), self.madsim_id(b)))
                    .collect();
                self.fault(format!("clog {from}->{to} for {for_ms} ms"));
                self.timed_clogs(pairs, for_ms).await;
            }
            TimelineItem::Pause { nodes, for_ms, .. } => {
                let ids = self.resolve(&nodes);
                self.fault(format!("pause [{}] for {for_ms} ms", names(&ids)));
                for id in &ids {
                    Handle::current().pause(self.madsim_id(*id));
                }
                madsim::time::sleep(Duration::from_millis(for_ms)).await;
                for id in &ids {
                    Handle::current().resume(self.madsim_id(*id));
                }
            }
            TimelineItem::Loss {
                per_mille, for_ms, ..
            } => {
                self.fault(format!("loss {per_mille}/1000 for {for_ms} ms"));
                self.set_loss(per_mille);
                madsim::time::sleep(Duration::from_millis(for_ms)).await;
                self.set_loss(self.scn.network.loss_per_mille);
            }
            TimelineItem::Latency {
                latency_ms: [lo, hi],
                for_ms,
                ..
            } => {
                self.fault(format!("latency {lo}..{hi} ms for {for_ms} ms"));
                self.set_latency([lo, hi]);
                madsim::time::sleep(Duration::from_millis(for_ms)).await;
                self.set_latency(self.scn.network.latency_ms);
            }
            TimelineItem::Heal { .. } => {
                self.fault("heal".into());
                self.heal_all();
            }
            TimelineItem::CreateCollection { name, .. } => {
                self.record("controller", "ddl", format!("create {name}"));
                workload::spawn_ddl(self.clone(), Op::CreateCollection { name });
            }
            TimelineItem::DropCollection { name, .. } => {
                self.record("controller", "ddl", format!("drop {name}"));
                workload::spawn_ddl(self.clone(), Op::DropCollection { name });
            }
            TimelineItem::Failpoint {
                name,
                per_mille,
                for_ms,
                ..
            } => {
                self.fault(format!(
                    "failpoint {name} at {per_mille}/1000 for {for_ms} ms"
                ));
                self.set_failpoint(&name, per_mille);
                madsim::time::sleep(Duration::from_millis(for_ms)).await;
                // After the fault phase the liveness phase owns failpoints: all off.
                let rate = if self.workload_stop.load(Ordering::Relaxed) {
                    0
                } else {
                    self.scenario_failpoint(&name)
                };
                self.set_failpoint(&name, rate);
            }
            TimelineItem::RotateKek { .. } => {
                self.record("controller", "admin", "rotate kek".into());
                workload::spawn_admin(self.clone(), AdminAction::RotateKek);
            }
            TimelineItem::RotateCmk { .. } => {
                self.record("controller", "admin", "rotate cmk".into());
                workload::spawn_admin(self.clone(), AdminAction::RotateCmk);
            }
            TimelineItem::StepDown { .. } => {
                self.record("controller", "admin", "leader step-down".into());
                workload::spawn_admin(self.clone(), AdminAction::StepDown);
            }
        }
    }

    async fn timed_clogs(
        &self,
        pairs: Vec<(madsim::task::NodeId, madsim::task::NodeId)>,
        for_ms: u64,
    ) {
        for (a, b) in &pairs {
            self.clog(*a, *b);
        }
        madsim::time::sleep(Duration::from_millis(for_ms)).await;
        for (a, b) in &pairs {
            self.unclog(*a, *b);
        }
    }

    pub fn client_node(&self) -> Option<madsim::task::NodeId> {
        *self.client_node.lock().unwrap()
    }

    // ----- phases -----

    /// Heals everything, brings every non-aborted replica back, and waits for convergence.
    async fn liveness_phase(&self) -> bool {
        self.record(
            "controller",
            "phase",
            "liveness: heal all faults, restart down replicas".into(),
        );
        self.heal_all();
        self.failpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.start(PAGE_SERVICE_NODE);
        self.start(KMS_NODE);
        for id in self.replicas() {
            self.start(id);
        }
        let deadline =
            madsim::time::Instant::now() + Duration::from_millis(self.scn.liveness_timeout_ms);
        loop {
            madsim::time::sleep(Duration::from_millis(100)).await;
            if Profile::time(self.profile.as_ref(), Bucket::EndChecks, || {
                self.converged()
            }) {
                self.record("controller", "phase", "converged".into());
                return true;
            }
            if madsim::time::Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// One leader, every live replica on its term and fully applied to its log end, storage at
    /// rest (the leader stepped up and checkpointed everything, with its current keystore; the
    /// page service holds that checkpoint; every follower picked it up).
    fn converged(&self) -> bool {
        self.convergence_gaps().is_empty()
    }

    /// What stands between the cluster and convergence, node by node (empty when converged).
    fn convergence_gaps(&self) -> Vec<String> {
        let (live, down): (Vec<NodeId>, Vec<NodeId>) = {
            let st = self.lock();
            let ids = st
                .slots
                .iter()
                .filter(|(id, s)| s.aborted.is_none() && !is_service(**id));
            let live = ids.clone().map(|(id, _)| *id).collect();
            let down = ids.filter(|(_, s)| !s.up).map(|(id, _)| *id).collect();
            (live, down)
        };
        let statuses = self.statuses();
        let published = {
            let st = self.lock();
            st.pages.as_ref().map(|p| p.latest().map(|l| l.id))
        };
        check::liveness::gaps(&live, &down, &statuses, published)
    }

    /// The checkers after the liveness phase, over the converged (or not) cluster.
    fn end_checks(&self, converged: bool, at_ms: u64) -> Vec<Violation> {
        let mut found = Vec::new();
        if self.scn.has_check(Check::Liveness) {
            found.extend(self.liveness_violations(converged));
        }
        let snaps = self.snapshots();
        if self.scn.has_check(Check::Dbhash) {
            found.extend(check::dbhash::check(&snaps, at_ms));
        }
        if self.scn.has_check(Check::Validate) {
            let pages = self.pages_snapshot();
            found.extend(check::validate::check(
                &snaps,
                pages.as_ref(),
                &self.kms,
                at_ms,
            ));
            found.append(&mut self.lock().keystore_regressions);
        }
        if self.scn.has_check(Check::Model) {
            self.compare_with_model(None, "after the liveness phase");
        }
        let ops = std::mem::take(&mut self.lock().ops);
        let mut undecided = 0;
        {
            let st = self.lock();
            if self.scn.has_check(Check::Durability) {
                // Every live replica, at whatever index it applied.
                for snap in &snaps {
                    found.extend(check::clients::check_durability(
                        &ops,
                        &st.model,
                        &node_name(snap.status.id),
                        snap.status.last_applied,
                        &snap.data,
                        at_ms,
                    ));
                }
            }
            let acks = check::clients::check_acks(&ops, &st.model, at_ms);
            found.extend(acks.into_iter().filter(|v| match v.kind {
                ViolationKind::Durability => self.scn.has_check(Check::Durability),
                _ => self.scn.has_check(Check::Linearizability),
            }));
            if self.scn.has_check(Check::Linearizability) {
                let (lin, n) = Profile::time(self.profile.as_ref(), Bucket::EndChecks, || {
                    check::clients::check_linearizable(&ops, at_ms)
                });
                found.extend(lin);
                undecided = n;
            }
        }
        if undecided > 0 {
            self.note(format!(
                "linearizability: {undecided} key history(ies) undecided within the search budget"
            ));
        }
        if self.scn.has_check(Check::Raft) {
            let inspects: Vec<(NodeId, Arc<dyn Inspect>)> = {
                let st = self.lock();
                st.slots
                    .iter()
                    .filter(|(id, _)| !is_service(**id))
                    .filter_map(|(id, s)| Some((*id, s.inspect.clone()?)))
                    .collect()
            };
            let logs: Vec<(NodeId, Vec<(engine::raft::Index, engine::raft::Term, u64)>)> = inspects
                .iter()
                .map(|(id, i)| {
                    let log = i.log_tail(usize::MAX);
                    (*id, log.iter().map(|e| (e.index, e.term, e.digest())).collect())
                })
                .collect();
            let leader = self.current_leader();
            self.lock().history.end_logs(&logs, leader, at_ms);
        }
        if !self.scn.has_check(Check::Raft) {
            self.lock().history.violations.clear();
        }
        found
    }

    /// What the page service holds now (`None` when it is down).
    fn pages_snapshot(&self) -> Option<PagesSnapshot> {
        let p = self.lock().pages.clone()?;
        Some(PagesSnapshot {
            blocks: p.blocks(),
            latest: p.latest().map(|l| (l.id, CheckpointMeta::decode(&l.meta))),
            fetch: p,
        })
    }

    fn snapshots(&self) -> Vec<NodeSnapshot> {
        let inspects: Vec<Arc<dyn Inspect>> = {
            let st = self.lock();
            st.slots
                .values()
                .filter_map(|s| s.inspect.clone())
                .collect()
        };
        inspects
            .into_iter()
            .map(|i| NodeSnapshot {
                status: i.status(),
                hashes: i.hashes(),
                data: i.read_all(),
                log_tail: i.log_tail(8),
            })
            .collect()
    }

    fn liveness_violations(&self, converged: bool) -> Vec<Violation> {
        let at_ms = self.now_ms();
        let mut out = Vec::new();
        let aborted: Vec<(NodeId, u64, String)> = {
            let st = self.lock();
            st.slots
                .iter()
                .filter_map(|(id, s)| s.aborted.clone().map(|(t, r)| (*id, t, r)))
                .collect()
        };
        for (id, t, reason) in aborted {
            out.push(violation(
                ViolationKind::Liveness,
                Some(node_name(id)),
                at_ms,
                format!(
                    "n{id} unreachable for dbhash and validate: aborted at {}.{:03}s: {reason}",
                    t / 1000,
                    t % 1000
                ),
            ));
        }
        if !converged {
            out.push(violation(
                ViolationKind::Liveness,
                None,
                at_ms,
                format!(
                    "cluster did not converge within {} ms after faults stopped: {}",
                    self.scn.liveness_timeout_ms,
                    self.convergence_gaps().join("; ")
                ),
            ));
        }
        out
    }
}

async fn supervise(w: Arc<World>) {
    w.lock().start = Some(madsim::time::Instant::now());
    let bugs: Vec<String> = w.knobs.iter().map(|b| b.to_string()).collect();
    w.record(
        "controller",
        "run",
        format!(
            "scenario {} seed {} replicas {} bugs [{}]",
            w.scn.name,
            w.seed,
            w.scn.replicas,
            bugs.join(",")
        ),
    );
    w.build_page_service();
    w.build_kms();
    w.build_replicas();
    workload::start(w.clone());

    // Faults run on a node of their own, killed at the end: a fault still waiting then (a
    // restart's downtime, say) is dropped with it. A task left pending when the runtime is
    // dropped leaks madsim's state for the whole seed (~0.8 MB), and sweeps grew without bound.
    let controller = Handle::current().create_node().name("controller").build();
    for item in w.scn.timeline.clone() {
        let w2 = w.clone();
        controller.spawn(async move {
            madsim::time::sleep(Duration::from_millis(item.at_ms())).await;
            w2.apply(item).await;
        });
    }
    if let Some(chaos) = w.scn.chaos.clone() {
        controller.spawn(crate::chaos::run(w.clone(), chaos));
    }
    madsim::time::sleep(Duration::from_millis(w.scn.duration_ms)).await;
    w.workload_stop.store(true, Ordering::Relaxed);
    w.record("controller", "phase", "faults stop".into());
    // Before the liveness phase makes every replica a copy of the leader's checkpoint.
    if w.scn.has_check(Check::Model) {
        w.compare_with_model(None, "at the end of the fault phase");
    }

    let converged = w.liveness_phase().await;
    let at_ms = w.now_ms();
    let found = Profile::time(w.profile.as_ref(), Bucket::EndChecks, || {
        w.end_checks(converged, at_ms)
    });
    w.record(
        "controller",
        "checks",
        format!("{} violation(s) at the end", found.len()),
    );
    w.lock().violations.extend(found);

    // Tear down so no task outlives the run (madsim leaks pending tasks otherwise).
    let handle = Handle::current();
    handle.kill(controller.id());
    for id in w.replicas() {
        handle.kill(w.madsim_id(id));
    }
    handle.kill(w.madsim_id(PAGE_SERVICE_NODE));
    handle.kill(w.madsim_id(KMS_NODE));
    if let Some(c) = w.client_node() {
        handle.kill(c);
    }
    madsim::time::sleep(Duration::from_millis(1)).await;
}

impl Observer for World {
    fn event(&self, node: NodeId, ev: Event) {
        Profile::time(self.profile.as_ref(), Bucket::Observe, || {
            self.observe(node, ev)
        })
    }

    fn attach_pages(&self, inspect: Arc<dyn InspectPages>) {
        self.lock().pages = Some(inspect);
    }

    fn attach(&self, node: NodeId, inspect: Arc<dyn Inspect>) {
        self.lock().slots.entry(node).or_default().inspect = Some(inspect);
    }

    fn abort(&self, node: NodeId, abort: Abort) {
        self.aborted(node, abort)
    }

    fn crash(&self, node: NodeId, message: String) {
        self.crashed(node, message)
    }

    fn installing(&self, node: NodeId, id: u64, after: bool) {
        if self.scn.has_check(Check::Model) {
            let when = if after { "right after" } else { "right before" };
            self.compare_with_model(Some(node), &format!("{when} installing checkpoint {id}"));
        }
    }
}

impl World {
    /// One engine event: the online checks see it, then it goes into the trace.
    fn observe(&self, node: NodeId, ev: Event) {
        let p = self.profile.as_ref();
        let mut st = self.lock();
        let at_us = Self::now_us(&st);
        let at_ms = at_us / 1000;
        let name = node_name(node);
        let (kind, detail) = match ev {
            Event::Started {
                term,
                voted_for,
                log_len,
                commit,
                torn_bytes,
            } => {
                Profile::time(p, Bucket::OnlineChecks, || st.history.restarted(node, term, at_ms));
                st.keystore_ts.remove(&node);
                ("start", format!("term {term} vote {voted_for:?} log {log_len} commit {commit} torn {torn_bytes}"))
            }
            Event::Raft(r) => match r {
                RaftEvent::BecameLeader {
                    term,
                    last_index,
                    last_term,
                } => {
                    Profile::time(p, Bucket::OnlineChecks, || {
                        st.history.became_leader(node, term, at_ms);
                        st.history.leader_log(node, term, last_index, last_term, at_ms);
                    });
                    ("leader", format!("term {term}"))
                }
                RaftEvent::BecameCandidate { term } => {
                    st.history.saw_term(node, term, at_ms);
                    ("candidate", format!("term {term}"))
                }
                RaftEvent::BecameFollower { term, leader } => {
                    st.history.saw_term(node, term, at_ms);
                    ("follower", format!("term {term} leader {leader:?}"))
                }
                RaftEvent::VoteGranted {
                    term,
                    candidate,
                    candidate_last_term,
                    own_last_term,
                    candidate_last_index,
                    own_last_index,
                } => {
                    if candidate_last_index < own_last_index {
                        st.windows.insert(WINDOW_VOTE_SHORTER_LOG);
                    }
                    Profile::time(p, Bucket::OnlineChecks, || {
                        st.history.voted(node, term, candidate, at_ms)
                    });
                    (
                        "vote",
                        format!(
                            "term {term} for n{candidate} (its log {candidate_last_index}@t{candidate_last_term}, ours {own_last_index}@t{own_last_term})"
                        ),
                    )
                }
                RaftEvent::Committed {
                    index,
                    term,
                    entry_term,
                } => {
                    st.history.committed(node, index, term, entry_term, at_ms);
                    ("commit", format!("{index} term {term}"))
                }
                RaftEvent::Truncated {
                    from,
                    removed_last,
                    last_applied,
                    commit,
                    removed,
                } => {
                    Profile::time(p, Bucket::OnlineChecks, || {
                        st.history.truncated(node, from, removed_last, &removed, at_ms)
                    });
                    (
                        "truncate",
                        format!("{from}..={removed_last} (last_applied {last_applied}, commit {commit})"),
                    )
                }
            },
            Event::Applied {
                index,
                term,
                ts,
                digest,
                executed,
                op,
                session,
            } => {
                Profile::time(p, Bucket::OnlineChecks, || {
                    st.history.applied(node, index, term, digest, at_ms);
                    st.model.offer(index, term, op, session);
                    if let Some(v) = Self::check_decision(&st.model, &name, index, executed, session, at_ms) {
                        st.history.violations.push(v);
                    }
                });
                let dup = if executed {
                    ""
                } else {
                    " (duplicate client op, skipped)"
                };
                (
                    "apply",
                    format!("{index} term {term} ts {ts} {digest:016x}{dup}"),
                )
            }
            Event::Warn(msg) => ("warn", msg),
            Event::Keystore {
                ts,
                kek_version,
                cmk_version,
                why,
            } => {
                if let Some(&before) = st.keystore_ts.get(&node) {
                    if ts < before {
                        let v = violation(
                            ViolationKind::Validate,
                            Some(name.clone()),
                            at_ms,
                            format!(
                                "{name}'s keystore went backwards: ts {before} -> {ts} ({why})"
                            ),
                        );
                        st.keystore_regressions.push(v);
                    }
                }
                st.keystore_ts.insert(node, ts);
                if why.contains("applied on a follower") {
                    st.windows.insert(WINDOW_ROTATION_ON_FOLLOWER);
                }
                (
                    "keystore",
                    format!("now kek v{kek_version} cmk v{cmk_version} ts {ts}: {why}"),
                )
            }
            Event::Storage { kind, detail } => {
                if kind == "checkpoint-failed" && detail.contains("not above base_lsn") {
                    st.windows.insert(WINDOW_PACK_FAILED);
                }
                if kind == "pickup" {
                    st.windows.insert(WINDOW_PICKUP);
                }
                if kind == "drop-busy" {
                    st.windows.insert(WINDOW_DROP_DURING_DRAIN);
                }
                if kind == "leader-step-down" && detail.ends_with("mid step-up") {
                    st.windows.insert(WINDOW_STEP_DOWN_MID_STEP_UP);
                }
                if kind == "pickup-skipped" && detail.contains("StaleKeystore") {
                    st.windows.insert(WINDOW_STALE_KEYSTORE);
                }

                (kind, detail)
            }
        };
        st.trace.record(at_us, &name, kind, detail);
    }

    /// Every replica makes the model's execute/skip decision for a client operation: executing
    /// a duplicate applies its effect twice; skipping a first attempt loses it.
    fn check_decision(
        model: &Model,
        name: &str,
        index: engine::raft::Index,
        executed: bool,
        session: Option<engine::raft::Session>,
        at_ms: u64,
    ) -> Option<Violation> {
        let decided = model.executed(index)?;
        if decided == executed {
            return None;
        }
        let s = session?;
        let msg = if executed {
            let first = model.took_effect(s).map_or("earlier".to_string(), |i| format!("at index {i}"));
            format!(
                "{name} executed client {} op {} again at index {index}: it already took effect {first} (an operation must take effect at most once)",
                s.client, s.seq
            )
        } else {
            format!(
                "{name} skipped client {} op {} at index {index} as a duplicate, but it had not taken effect before: its effect is lost",
                s.client, s.seq
            )
        };
        let kind = if executed {
            ViolationKind::Linearizability
        } else {
            ViolationKind::StateDivergence
        };
        Some(violation(kind, Some(name.to_string()), at_ms, msg))
    }

    fn aborted(&self, node: NodeId, abort: Abort) {
        let reason = abort.to_string();
        if reason.contains("StaleKeystore") {
            self.lock().windows.insert(WINDOW_STALE_KEYSTORE);
        }
        if reason.contains("failed to step up: drain worker") {
            self.lock().windows.insert(WINDOW_DROP_DURING_DRAIN);
        }
        self.node_died(
            node,
            ViolationKind::NodeAbort,
            "abort",
            reason.clone(),
            reason,
        );
    }

    fn crashed(&self, node: NodeId, message: String) {
        let finding = format!("unexpected panic in engine code: {message}");
        self.node_died(
            node,
            ViolationKind::Crash,
            "crash",
            format!("panic: {message}"),
            finding,
        );
    }
}

impl World {
    /// A node process ended on its own (abort or panic): record the finding, keep it down.
    fn node_died(
        &self,
        node: NodeId,
        kind: ViolationKind,
        event: &str,
        reason: String,
        finding: String,
    ) {
        {
            let mut st = self.lock();
            let at_us = Self::now_us(&st);
            let at_ms = at_us / 1000;
            st.slots.entry(node).or_default().aborted = Some((at_ms, reason.clone()));
            st.trace.record(at_us, &node_name(node), event, reason);
            st.violations
                .push(violation(kind, Some(node_name(node)), at_ms, finding));
        }
        self.kill(node, event);
    }

    pub fn set_client_node(&self, id: madsim::task::NodeId) {
        *self.client_node.lock().unwrap() = Some(id);
    }
    /// Remembers a fault the chaos controller is about to apply, timed now (see
    /// [`SeedResult::chaos_schedule`]). Not traced: the run is the same with or without it.
    pub fn record_chaos(&self, item: &TimelineItem) {
        let mut st = self.lock();
        let at_ms = Self::now_us(&st) / 1000;
        st.chaos_schedule
            .push(crate::scenario::retimed(item, at_ms));
    }
    pub fn note(&self, s: String) {
        self.lock().notes.push(s);
    }
    pub fn record_client(&self, kind: &str, detail: String) {
        self.record("clients", kind, detail);
    }
}
