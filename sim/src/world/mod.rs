//! One seed's simulated world: the madsim runtime and its state. The parts, with one-way
//! dependencies on `check` (never the reverse):
//! - `nodes`: building the page-service, KMS and replica nodes, their incarnations;
//! - `faults`: applying timeline and chaos items (kills, clogs, latency, failpoints, admin);
//! - `damage`: disk faults in synced data, and retiring a node that detects them;
//! - `network`: how each datagram travels (delays, duplicates) and the engine's crash points;
//! - `observe`: the engine's [`Observer`]: each observation becomes a typed record for the
//!   online checkers, the race windows and the trace;
//! - `checks`: sampling the reference model and the at-rest checks after the run;
//! - `phases`: the supervisor (faults, then liveness, then checks).

mod checks;
mod damage;
mod faults;
mod network;
mod nodes;
mod observe;
mod phases;

pub use crate::check::snapshot::{node_name, op_summary, NodeSnapshot, PagesSnapshot};
pub use crate::check::windows::*;
pub use nodes::{kms_addr, page_service_addr, replica_addr, CLIENT_IP, REPLICA_TICK_MS};

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
use engine::raft::{NodeId, Op, Role};
use engine::replica::{LinkConfig, ReplicaConfig};
use engine::wire::AdminAction;
use engine::{Abort, Knobs};
use madsim::net::NetSim;
use madsim::runtime::{Handle, Runtime};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reports::{SeedReport, TraceEvent, Violation, ViolationKind};

use crate::check::clients::ClientOp;
use crate::check::history::History;
use crate::check::keystores::Keystores;
use crate::check::model::Model;
use crate::check::nonces::Nonces;
use crate::check::record::Online;
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

#[derive(Default)]
struct Slot {
    madsim_id: Option<madsim::task::NodeId>,
    up: bool,
    aborted: Option<(u64, String)>,
    incarnation: u64,
    inspect: Option<Arc<dyn Inspect>>,
    /// The harness damaged this node's disk (`disk_fault`).
    disk_faulted: bool,
    /// Refused to start on that damage: down for good, excluded from the end checks like an
    /// aborted node, but not a finding.
    retired: bool,
}

struct State {
    /// Datagrams sent so far (`SeedReport::datagrams`).
    datagrams: u64,
    trace: Trace,
    history: History,
    violations: Vec<Violation>,
    slots: BTreeMap<NodeId, Slot>,
    ops: Vec<ClientOp>,
    /// The history and the operations the at-rest findings name, after the end checks.
    checked_ops: Option<(Vec<ClientOp>, check::record::NamedOps)>,
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
    /// Per replica: the incarnation and applied index at which it last matched the model.
    model_checked: BTreeMap<NodeId, (u64, engine::raft::Index)>,
    /// Active one-way clogs between madsim nodes, counted so overlapping faults compose.
    clogs: BTreeMap<(madsim::task::NodeId, madsim::task::NodeId), u32>,
    chaos_rng: ChaCha8Rng,
    start: Option<madsim::time::Instant>,
    notes: Vec<String>,
    windows: std::collections::BTreeSet<&'static str>,
    pages: Option<Arc<dyn InspectPages>>,
    /// Keystores never going backwards (online; `validate` findings).
    keystores: Keystores,
    /// Every seal's (key, nonce) sealing one message only (online).
    nonces: Nonces,
    /// Every item the chaos controller applied, with `at_ms` set to when it fired.
    chaos_schedule: Vec<TimelineItem>,
    /// Failpoint rates the chaos swarm set for the whole fault phase.
    background_failpoints: BTreeMap<String, u32>,
    /// Network rules (delays, duplicates) and crash-point rules in force.
    rules: network::Rules,
    /// Raft messages held to their sender's durable state (online).
    persistence: check::persistence::Persistence,
    /// The node faults run on (crash-point restarts are scheduled there).
    controller: Option<madsim::runtime::NodeHandle>,
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
    profile: Option<Arc<Profile>>,
    /// This world (the engine's hooks get `&World` and sometimes must schedule work).
    me: std::sync::Weak<World>,
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
    /// The client history, with the operations the findings name: only with the full trace,
    /// for the timeline's client lanes.
    pub client_ops: Option<Vec<reports::ClientOp>>,
    /// With `SeedOptions::profile`.
    pub cpu: Option<CpuSplit>,
    /// The scenario the seed ran: the one given, with a swarm-drawn cluster baked in.
    pub scenario: Arc<Scenario>,
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
    if let Some(name) = &scn.system {
        // Validation refuses a system this binary does not have.
        let system = crate::sut::find(name).expect("scenario validation checked the system");
        return crate::sut::world::run_seed(scn, system, seed, opts, replay);
    }
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
    let drawn = crate::chaos::world_for_seed(&scn, seed);
    let scn = if drawn != *scn { Arc::new(drawn) } else { scn };
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
    let world = Arc::new_cyclic(|me| World {
        me: me.clone(),
        disk: SimDisk::new(derive_seed(seed, "disk", 0), true),
        st: Mutex::new(State {
            datagrams: 0,
            trace: Trace::new(opts.keep_full_trace),
            history: History::default(),
            violations: vec![],
            slots: BTreeMap::new(),
            ops: vec![],
            checked_ops: None,
            ops_acked: 0,
            ops_acked_fault_phase: 0,
            reads_acked_fault_phase: 0,
            model: Model::default(),
            model_sampled_us: None,
            model_divergences: 0,
            model_checked: BTreeMap::new(),
            clogs: BTreeMap::new(),
            chaos_rng: ChaCha8Rng::seed_from_u64(derive_seed(seed, "chaos", 0)),
            start: None,
            notes: vec![],
            windows: Default::default(),
            pages: None,
            keystores: Keystores::default(),
            nonces: Nonces::default(),
            chaos_schedule: vec![],
            background_failpoints: BTreeMap::new(),
            rules: network::Rules::new(seed),
            persistence: Default::default(),
            controller: None,
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
        profile: opts.profile.then(|| Arc::new(Profile::calibrated())),
    });
    let w2 = world.clone();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(phases::supervise(w2))));
    let mut st = world.lock();
    let mut sim_ms_end = 0;
    if let Err(payload) = outcome {
        let at_ms = st.trace.tail(1).last().map_or(0, |e| e.at_us / 1000);
        st.violations.push(panic_violation(payload.as_ref(), at_ms));
        sim_ms_end = at_ms;
    } else if let Some(e) = st.trace.tail(1).last() {
        sim_ms_end = e.at_us / 1000;
    }
    let mut violations = world.online_violations(&mut st);
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
        datagrams: st.datagrams,
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
    let client_ops = full_trace.is_some().then(|| {
        // Without end checks (a crash or hang) the history is still in `ops`.
        let (ops, named) = st
            .checked_ops
            .take()
            .unwrap_or_else(|| (std::mem::take(&mut st.ops), Vec::new()));
        check::clients::for_report(&ops, &named)
    });
    let chaos_schedule = std::mem::take(&mut st.chaos_schedule);
    drop(st);
    let cpu = world
        .profile
        .as_ref()
        .zip(cpu_start)
        .map(|(p, start)| p.split(thread_cpu_ns().saturating_sub(start)));
    SeedResult {
        scenario: world.scn.clone(),
        report,
        full_trace,
        client_ops,
        cpu,
        chaos_schedule,
    }
}

/// A simulation that panicked outside every node's guard: a hang (madsim found no task able
/// to run) or a crash, at the last traced moment.
pub(crate) fn panic_violation(payload: &(dyn std::any::Any + Send), at_ms: u64) -> Violation {
    let msg = panics::describe(payload);
    let (kind, text) = if msg.contains("no events, all tasks will block forever") {
        (
            ViolationKind::Hang,
            format!("the simulation stopped making progress: {msg}"),
        )
    } else {
        (ViolationKind::Crash, format!("unexpected panic: {msg}"))
    };
    violation(kind, None, at_ms, text)
}

impl World {
    /// What the online checkers found, for the checks the scenario runs.
    fn online_violations(&self, st: &mut State) -> Vec<Violation> {
        let mut out = Vec::new();
        let history = st.history.take_violations();
        let forgotten = st.persistence.take_violations();
        if self.scn.has_check(Check::Raft) {
            out.extend(history);
            out.extend(forgotten);
        }
        let decisions = st.model.take_violations();
        if self.scn.has_check(Check::Linearizability) {
            out.extend(decisions);
        }
        let keystores = st.keystores.take_violations();
        if self.scn.has_check(Check::Validate) {
            out.extend(keystores);
        }
        // Always on: a security invariant, not a scenario's choice.
        out.extend(st.nonces.take_violations());
        out
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_us(st: &State) -> u64 {
        st.start.map_or(0, |s| s.elapsed().as_micros() as u64)
    }

    fn record(&self, node: &str, kind: &'static str, detail: String) {
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
        if let Some(op) = st.ops.get_mut(handle) {
            op.returned_us = Some(now);
        }
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

    pub fn sim_now_us(&self) -> u64 {
        Self::now_us(&self.lock())
    }

    fn replicas(&self) -> Vec<NodeId> {
        (1..=self.scn.replicas).collect()
    }

    fn checkpoint_interval_ms(&self) -> u64 {
        self.scn.checkpoint_interval_ms.unwrap_or(1_000)
    }

    pub fn client_node(&self) -> Option<madsim::task::NodeId> {
        *self.client_node.lock().unwrap()
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
    pub fn record_client(&self, kind: &'static str, detail: String) {
        self.record("clients", kind, detail);
    }
}
