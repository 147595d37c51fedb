//! One seed of a hosted system: the generic world. The same shape as the engine's world
//! (`crate::world`), for any [`System`]: a fresh OS thread and madsim runtime per seed, one
//! madsim node per voter and per client, the harness's disk crash model and network rules,
//! every observation stamped, traced and fed to the generic checkers (`check::hosted_checks`).
//! `phases.rs` runs the seed (faults, liveness, end checks), `faults.rs` applies timeline and
//! chaos items, `workload.rs` runs the clients.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use engine::raft::Session;
use madsim::runtime::{Handle, Runtime};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use reports::{SeedReport, Violation};

use super::{
    addr_of, Cluster, ClusterSpec, HostedEvent, HostedRecord, Links, NodeCtx, Obs, System,
};
use crate::check::clients::{ClientKind, ClientOp};
use crate::check::hosted_checks::HostedChecks;
use crate::disk::SimDisk;
use crate::panics;
use crate::scenario::{Scenario, TimelineItem};
use crate::trace::Trace;
use crate::world::{derive_seed, SeedOptions, SeedResult};

#[derive(Default)]
pub(super) struct Slot {
    pub madsim_id: Option<madsim::task::NodeId>,
    pub up: bool,
    pub incarnation: u64,
    /// Killed for good (`kill` with `permanent`): the liveness phase leaves it down.
    pub permanent: bool,
}

pub(super) struct State {
    pub trace: Trace,
    pub checks: HostedChecks,
    pub violations: Vec<Violation>,
    pub slots: BTreeMap<u8, Slot>,
    pub ops: Vec<ClientOp>,
    pub ops_acked: u64,
    pub ops_acked_fault_phase: u64,
    pub reads_acked_fault_phase: u64,
    pub start: Option<madsim::time::Instant>,
    pub notes: Vec<String>,
    pub windows: BTreeSet<&'static str>,
    pub chaos_schedule: Vec<TimelineItem>,
    /// Selector draws (standby, minority) and restart delays.
    pub chaos_rng: ChaCha8Rng,
    /// The liveness phase began: faults still running must not undo its healing.
    pub healed: bool,
    /// Keys the workload wrote (the final reads read each).
    pub keys: BTreeSet<String>,
}

pub(super) struct HWorld {
    pub scn: Arc<Scenario>,
    pub seed: u64,
    pub cluster: Arc<dyn Cluster>,
    pub links: Links,
    pub disk: Arc<SimDisk>,
    pub st: Mutex<State>,
    pub stop: AtomicBool,
    pub handle: Handle,
    pub me: Weak<HWorld>,
}

/// Runs one seed of `scn` (whose `system` names a registered system) on a fresh OS thread.
pub fn run_seed(
    scn: Arc<Scenario>,
    system: Arc<dyn System>,
    seed: u64,
    opts: SeedOptions,
    replay: String,
) -> SeedResult {
    let t = std::thread::Builder::new()
        .name(format!("faultline-seed-{seed}"))
        .stack_size(16 << 20)
        .spawn(move || run_here(scn, system, seed, opts, replay))
        .expect("spawn a seed thread");
    t.join().expect("the seed thread catches its own panics")
}

fn run_here(
    scn: Arc<Scenario>,
    system: Arc<dyn System>,
    seed: u64,
    opts: SeedOptions,
    replay: String,
) -> SeedResult {
    let wall = std::time::Instant::now();
    panics::install_hook();
    let _sim = panics::SimThreadGuard::enter();
    let mut cfg = madsim::Config::default();
    // Every message's delay and loss come from `Links`; madsim's own stay out of the way.
    cfg.net.send_latency = Duration::from_micros(0)..Duration::from_micros(1);
    let rt = Runtime::with_seed_and_config(seed, cfg);
    let links = Links::new(derive_seed(seed, "links", 0), scn.network.latency_ms);
    links.set_loss_per_mille(scn.network.loss_per_mille);
    let mut outcome = None;
    let mut world_slot: Option<Arc<HWorld>> = None;
    system.around_seed(seed, &mut || {
        let handle = rt.handle().clone();
        let spec = ClusterSpec {
            nodes: scn.replicas,
            seed,
            links: links.clone(),
        };
        let world = Arc::new_cyclic(|me| HWorld {
            scn: scn.clone(),
            seed,
            cluster: system.cluster(spec),
            links: links.clone(),
            disk: SimDisk::new(derive_seed(seed, "disk", 0), true),
            st: Mutex::new(State {
                trace: Trace::new(opts.keep_full_trace),
                checks: HostedChecks::new(scn.replicas),
                violations: vec![],
                slots: BTreeMap::new(),
                ops: vec![],
                ops_acked: 0,
                ops_acked_fault_phase: 0,
                reads_acked_fault_phase: 0,
                start: None,
                notes: vec![format!("system: {}", system.describe())],
                windows: BTreeSet::new(),
                chaos_schedule: vec![],
                chaos_rng: ChaCha8Rng::seed_from_u64(derive_seed(seed, "chaos", 0)),
                healed: false,
                keys: BTreeSet::new(),
            }),
            stop: AtomicBool::new(false),
            handle,
            me: me.clone(),
        });
        world_slot = Some(world.clone());
        outcome = Some(std::panic::catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(super::phases::supervise(world))
        })));
    });
    let world = world_slot.expect("around_seed runs the seed");
    let outcome = outcome.expect("around_seed runs the seed");
    world.report(outcome, seed, replay, wall)
}

impl HWorld {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn now_us(st: &State) -> u64 {
        st.start.map_or(0, |s| s.elapsed().as_micros() as u64)
    }

    pub fn sim_now_us(&self) -> u64 {
        Self::now_us(&self.lock())
    }

    pub fn record(&self, node: &str, kind: &'static str, detail: String) {
        let mut st = self.lock();
        let at = Self::now_us(&st);
        st.trace.record(at, node, kind, detail);
    }

    pub fn note(&self, s: String) {
        self.lock().notes.push(s);
    }

    pub fn window(&self, name: &'static str) {
        self.lock().windows.insert(name);
    }

    pub fn voters(&self) -> Vec<u8> {
        (1..=self.scn.replicas).collect()
    }

    /// Builds voter `n`'s madsim node; its init runs each incarnation.
    pub fn build_node(self: &Arc<Self>, n: u8) {
        let weak = self.me.clone();
        let node = self
            .handle
            .create_node()
            .name(format!("n{n}"))
            .ip(addr_of(n).ip())
            .init(move || {
                let w = weak.upgrade();
                async move {
                    if let Some(w) = w {
                        let ctx = w.node_ctx(n);
                        w.cluster.start(ctx).await;
                        // madsim ends a node when its init task returns (it kills every task
                        // the node spawned): the node lives on until the harness kills it.
                        std::future::pending::<()>().await;
                    }
                }
            })
            .build();
        let mut st = self.lock();
        let slot = st.slots.entry(n).or_default();
        slot.madsim_id = Some(node.id());
        slot.up = true;
    }

    /// A new incarnation's context: a fresh disk handle (the previous one is fenced), its seed,
    /// and an observation sink that stamps, traces and checks.
    fn node_ctx(&self, n: u8) -> NodeCtx {
        let incarnation = {
            let mut st = self.lock();
            let now = Self::now_us(&st);
            let slot = st.slots.entry(n).or_default();
            slot.incarnation += 1;
            let inc = slot.incarnation;
            st.checks.started(n, inc, now);
            st.trace
                .record(now, &format!("n{n}"), "start", format!("incarnation {inc}"));
            inc
        };
        let weak = self.me.clone();
        NodeCtx {
            node: n,
            incarnation,
            seed: derive_seed(self.seed, "node", (n as u64) << 32 | incarnation),
            disk: Arc::new(self.disk.open(n)),
            flush: self.links.flush_gate(n),
            links: self.links.clone(),
            obs: Obs {
                node: n,
                incarnation,
                sink: Arc::new(move |node, inc, ev| {
                    if let Some(w) = weak.upgrade() {
                        w.observe(node, inc, ev);
                    }
                }),
            },
        }
    }

    fn observe(&self, node: u8, incarnation: u64, event: HostedEvent) {
        let mut st = self.lock();
        let at_us = Self::now_us(&st);
        st.trace
            .record(at_us, &format!("n{node}"), event.kind(), event.detail());
        match &event {
            HostedEvent::Truncated { .. } => {
                st.windows.insert("log-truncated");
            }
            HostedEvent::SnapshotInstalled { .. } => {
                st.windows.insert("snapshot-installed");
            }
            _ => {}
        }
        let rec = HostedRecord {
            at_us,
            node,
            incarnation,
            event,
        };
        st.checks.observe(&rec);
    }

    /// Kills voter `n` now (its tasks dropped, its disk's unsynced part lost or torn).
    pub fn kill(&self, n: u8, permanent: bool) {
        let id = {
            let mut st = self.lock();
            let now = Self::now_us(&st);
            let Some(slot) = st.slots.get_mut(&n) else {
                return;
            };
            slot.permanent |= permanent;
            if !slot.up {
                return;
            }
            slot.up = false;
            let id = slot.madsim_id;
            st.checks.killed(n, now);
            let loss = self.disk.crash(n);
            st.trace.record(
                now,
                &format!("n{n}"),
                "kill",
                format!(
                    "{}unsynced bytes lost {}, torn bytes kept {}",
                    if permanent { "for good; " } else { "" },
                    loss.bytes_lost,
                    loss.bytes_torn_kept
                ),
            );
            id
        };
        self.links.set_down(n, true);
        self.cluster.killed(n);
        if let Some(id) = id {
            self.handle.kill(id);
        }
    }

    /// Starts voter `n` again if it is down (and not killed for good).
    pub fn restart(&self, n: u8) {
        let id = {
            let mut st = self.lock();
            let Some(slot) = st.slots.get_mut(&n) else {
                return;
            };
            if slot.up || slot.permanent {
                return;
            }
            slot.up = true;
            slot.madsim_id
        };
        self.links.set_down(n, false);
        if let Some(id) = id {
            self.handle.restart(id);
        }
    }

    pub fn is_up(&self, n: u8) -> bool {
        self.lock().slots.get(&n).is_some_and(|s| s.up)
    }

    /// The live node that says it leads the highest term.
    pub fn leader(&self) -> Option<u8> {
        self.voters()
            .into_iter()
            .filter(|&n| self.is_up(n))
            .filter_map(|n| {
                let s = self.cluster.status(n)?;
                (s.leader == Some(n)).then_some((s.term, n))
            })
            .max()
            .map(|(_, n)| n)
    }

    pub fn begin_op(&self, client: u32, seq: u64, key: &str, kind: ClientKind) -> usize {
        let mut st = self.lock();
        let now = Self::now_us(&st);
        if !matches!(kind, ClientKind::Get) {
            st.keys.insert(key.to_string());
        }
        st.ops.push(ClientOp {
            client,
            session: Session {
                client: client as u64,
                seq,
            },
            collection: "kv".to_string(),
            key: Some(key.to_string()),
            kind,
            invoked_us: now,
            acked_us: None,
            returned_us: None,
            ack: None,
            read: None,
            failed: false,
        });
        st.ops.len() - 1
    }

    pub fn complete_op(&self, handle: usize, outcome: &super::KvOutcome) {
        let fault_phase = !self.stop.load(std::sync::atomic::Ordering::Relaxed);
        let mut st = self.lock();
        let now = Self::now_us(&st);
        let Some(op) = st.ops.get_mut(handle) else {
            return;
        };
        op.returned_us = Some(now);
        match outcome {
            super::KvOutcome::Acked { index, term, read } => {
                op.acked_us = Some(now);
                op.ack = Some((*index, *term));
                op.read = read.clone();
                let is_read = read.is_some();
                st.ops_acked += 1;
                if fault_phase {
                    st.ops_acked_fault_phase += 1;
                    st.reads_acked_fault_phase += is_read as u64;
                }
            }
            super::KvOutcome::Failed(_) => {
                op.failed = true;
            }
            super::KvOutcome::Unknown(_) => {}
        }
    }

    fn report(
        &self,
        outcome: std::thread::Result<()>,
        seed: u64,
        replay: String,
        wall: std::time::Instant,
    ) -> SeedResult {
        let mut st = self.lock();
        let sim_ms_end = st.trace.tail(1).last().map_or(0, |e| e.at_us / 1000);
        if let Err(payload) = outcome {
            let v = crate::world::panic_violation(payload.as_ref(), sim_ms_end);
            st.violations.push(v);
        }
        let mut violations = std::mem::take(&mut st.violations);
        violations.sort_by(|a, b| (a.at_ms, a.kind).cmp(&(b.at_ms, b.kind)));
        let passed = violations.is_empty();
        let (datagrams, _) = self.links.stats();
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
            model_checks: 0,
            datagrams,
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
        let client_ops = full_trace
            .is_some()
            .then(|| crate::check::clients::for_report(&st.ops, &[]));
        SeedResult {
            scenario: self.scn.clone(),
            report,
            full_trace,
            client_ops,
            cpu: None,
            chaos_schedule: std::mem::take(&mut st.chaos_schedule),
        }
    }
}
