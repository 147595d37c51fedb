//! The replica node: async tasks that drive the raft core and the layered store over the
//! (simulated) network and disk. All decisions live in the pure cores (`raft`, `layered`,
//! `checkpoint`); this file only moves messages, persists before sending, applies, answers
//! clients, and runs the storage tasks: step-up, leader checkpoints and follower pick-ups.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use madsim::net::Endpoint;

use crate::checkpoint::{self, Reconciliation};
use crate::failpoints::{self, FailpointRates, Failpoints};
use crate::invariant::classify_panic;
use crate::knobs::{Knobs, KnownBug};
use crate::layered::{CheckpointMeta, Mode, StableView, Store};
use crate::log_store::LogStore;
use crate::observe::{Event, Inspect, NodeStatus, Observer, StorageStatus};
use crate::page_store::{PsOp, PsResult, Published};
use crate::pages::{self, Docs, Lsn};
use crate::ps_client::PsClient;
use crate::raft::{Entry, Index, NodeId, ProposeError, Raft, RaftConfig, Role, Term};
use crate::state::{Collection, CollectionHash};
use crate::storage::Storage;
use crate::wire::{ClientResult, Wire, TAG};

/// Outbound peer connections with reconnect backoff, as a TCP transport has them. Requests
/// (appends, vote requests) need the sender's own connection to the peer; responses go back on
/// the connection the request came in on. After a peer stops answering, the connection is
/// re-established only at exponentially spaced attempts, so a node that comes back can go a
/// while without hearing from the leader while its own requests still get answers.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    pub timeout_ms: u64,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            timeout_ms: 300,
            backoff_min_ms: 100,
            backoff_max_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone)]
struct Link {
    up: bool,
    unanswered_since_ms: Option<u64>,
    next_attempt_ms: u64,
    backoff_ms: u64,
}

impl Link {
    fn new(cfg: &LinkConfig) -> Self {
        Link {
            up: true,
            unanswered_since_ms: None,
            next_attempt_ms: 0,
            backoff_ms: cfg.backoff_min_ms,
        }
    }

    /// Whether a request may go out now.
    fn allow(&mut self, now_ms: u64, cfg: &LinkConfig) -> bool {
        if self.up {
            match self.unanswered_since_ms {
                Some(t) if now_ms.saturating_sub(t) > cfg.timeout_ms => {
                    self.up = false;
                    self.next_attempt_ms = now_ms + self.backoff_ms;
                    self.backoff_ms = (self.backoff_ms * 2).min(cfg.backoff_max_ms);
                    false
                }
                Some(_) => true,
                None => {
                    self.unanswered_since_ms = Some(now_ms);
                    true
                }
            }
        } else if now_ms >= self.next_attempt_ms {
            self.next_attempt_ms = now_ms + self.backoff_ms;
            self.backoff_ms = (self.backoff_ms * 2).min(cfg.backoff_max_ms);
            true // one reconnect attempt
        } else {
            false
        }
    }

    fn answered(&mut self, cfg: &LinkConfig) {
        self.up = true;
        self.unanswered_since_ms = None;
        self.backoff_ms = cfg.backoff_min_ms;
    }
}

#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub id: NodeId,
    /// Every replica (including this one) and its address.
    pub members: BTreeMap<NodeId, SocketAddr>,
    pub tick_ms: u64,
    pub knobs: Knobs,
    /// Seed of this incarnation's election-timeout randomness (derived by the caller).
    pub rng_seed: u64,
    pub link: LinkConfig,
    /// Simulated fsync duration: a kill inside it loses the unsynced write.
    pub fsync_ms: u64,
    pub page_service: SocketAddr,
    /// How often the leader checkpoints its stable tables.
    pub checkpoint_interval_ms: u64,
    /// How often a follower polls for a newer checkpoint.
    pub pickup_interval_ms: u64,
    pub failpoints: FailpointRates,
    /// Seed of this incarnation's failpoint draws.
    pub failpoint_seed: u64,
}

struct Pending {
    client: SocketAddr,
    id: u64,
    term: Term,
}

/// The node's in-memory state, shared between its tasks and the inspection handle.
struct Core {
    raft: Raft,
    store: Store,
    pending: BTreeMap<Index, Pending>,
    links: BTreeMap<NodeId, Link>,
    /// Bumped at every step-up and step-down: a storage task of an older leadership stops.
    generation: u64,
    /// The term this node's storage leadership (step-up, checkpoints) belongs to.
    lead_term: Term,
    /// The page-service epoch this leadership claimed (its writes carry it).
    lead_epoch: u64,
}

struct Inspector(Arc<Mutex<Core>>);

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inspect for Inspector {
    fn status(&self) -> NodeStatus {
        let c = lock(&self.0);
        let s = &c.store;
        NodeStatus {
            id: c.raft.id(),
            term: c.raft.term(),
            role: c.raft.role(),
            leader: c.raft.leader(),
            commit: c.raft.commit_index(),
            last_applied: s.applied_index(),
            last_index: c.raft.last_index(),
            last_term: c.raft.last_term(),
            storage: StorageStatus {
                mode: s.mode(),
                base: s.base.meta.clone(),
                base_records: s
                    .base
                    .pages
                    .iter()
                    .map(|(t, ps)| (t.clone(), ps.values().map(|d| d.len() as u64).sum()))
                    .collect(),
                checkpoint_in_flight: s.in_flight.is_some(),
                dirty_empty: s.dirty.is_empty(),
                ingest_min_ts: s.ingest.min_ts(),
                bytes_total: s.bytes_total.clone(),
            },
        }
    }
    fn read_all(&self) -> BTreeMap<String, Collection> {
        lock(&self.0).store.read_all()
    }
    fn hashes(&self) -> BTreeMap<String, CollectionHash> {
        lock(&self.0).store.hashes()
    }
    fn log_tail(&self, n: usize) -> Vec<Entry> {
        let c = lock(&self.0);
        let es = c.raft.entries();
        es[es.len().saturating_sub(n)..].to_vec()
    }
}

enum Input {
    Net(Wire, SocketAddr),
    Tick,
}

fn now_ms() -> u64 {
    sim_clock_us() / 1000
}

/// Microseconds on the (simulated) wall clock: the source of entry timestamps.
fn sim_clock_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Runs a future as one of the node's tasks: an engine invariant failure becomes an abort of
/// this node (reported, then the task parks until the harness kills the node); any other panic
/// is reported as a crash.
pub async fn guarded<F: std::future::Future<Output = ()>>(
    obs: Arc<dyn Observer>,
    node: NodeId,
    fut: F,
) {
    if let Err(payload) = AssertUnwindSafe(fut).catch_unwind().await {
        match classify_panic(payload.as_ref()) {
            Ok(abort) => obs.abort(node, abort),
            Err(msg) => obs.crash(node, msg),
        }
        futures::future::pending::<()>().await;
    }
}

/// Starts a replica incarnation and runs it until the node is killed.
pub async fn run(cfg: ReplicaConfig, disk: Arc<dyn Storage>, obs: Arc<dyn Observer>) {
    let id = cfg.id;
    guarded(obs.clone(), id, run_inner(cfg, disk, obs)).await;
    futures::future::pending::<()>().await
}

/// Loads a checkpoint's pages, reusing the pages (and chain prefixes) `base` already holds.
async fn load_view(
    ps: &PsClient,
    meta: CheckpointMeta,
    base: &StableView,
    keep_going: &(dyn Fn() -> bool + Sync),
    max_attempts: u32,
) -> Result<StableView, String> {
    let mut pages = BTreeMap::new();
    for (table, root) in &meta.tables {
        let mut loaded = BTreeMap::new();
        for (p, chain) in &root.pages {
            let old_chain = base.meta.tables.get(table).and_then(|r| r.pages.get(p));
            let old_docs = base.pages.get(table).and_then(|ps| ps.get(p));
            let (mut docs, from) = match (old_chain, old_docs) {
                (Some(oc), Some(od)) if oc == chain => {
                    loaded.insert(*p, od.clone());
                    continue;
                }
                (Some(oc), Some(od)) if chain.starts_with(oc) => ((**od).clone(), oc.len()),
                _ => (Docs::new(), 0),
            };
            for (i, cookie) in chain.iter().enumerate().skip(from) {
                let op = PsOp::Get { lsn: cookie.lsn };
                let bytes = match ps.request_limited(0, op, keep_going, max_attempts).await {
                    Ok(PsResult::Block(b)) => b,
                    Ok(PsResult::NotFound) => {
                        return Err(format!(
                            "block {} of {table} page {p} not found",
                            cookie.lsn
                        ))
                    }
                    Ok(other) => return Err(format!("unexpected reply to get: {other:?}")),
                    Err(e) => return Err(e.to_string()),
                };
                pages::apply_block(&mut docs, cookie, &bytes, i == 0)
                    .map_err(|e| format!("{table} page {p}: {e}"))?;
            }
            loaded.insert(*p, Arc::new(docs));
        }
        pages.insert(table.clone(), loaded);
    }
    Ok(StableView {
        meta: Arc::new(meta),
        pages,
    })
}

fn decode_meta(p: &Published) -> Result<CheckpointMeta, String> {
    CheckpointMeta::decode(&p.meta).map_err(|e| format!("checkpoint {} metadata: {e}", p.id))
}

/// A restarted replica starts from the newest checkpoint when its log holds the entry the
/// checkpoint ends at (then the log supplies the rest); otherwise from nothing, replaying its
/// whole log and picking a checkpoint up later.
async fn recover_base(ps: &PsClient, log: &[Entry]) -> Result<Option<StableView>, String> {
    let latest = match ps.request_limited(0, PsOp::Latest, &|| true, 3).await {
        Ok(PsResult::Latest(Some(p))) => p,
        Ok(_) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let meta = decode_meta(&latest)?;
    let i = meta.applied_index;
    if i == 0 || log.get(i as usize - 1).map(|e| e.term) != Some(meta.applied_term) {
        return Ok(None);
    }
    load_view(ps, meta, &StableView::default(), &|| true, 3)
        .await
        .map(Some)
}

async fn run_inner(cfg: ReplicaConfig, disk: Arc<dyn Storage>, obs: Arc<dyn Observer>) {
    let id = cfg.id;
    let addr = cfg.members[&id];
    let log_store = LogStore::new(disk);
    let rec = match log_store.load() {
        Ok(r) => r,
        Err(e) => {
            // A dead incarnation's disk handle, or a corrupt disk: nothing sane to do.
            obs.event(id, Event::Warn(format!("cannot load raft state: {e}")));
            return;
        }
    };
    let ps_bind = SocketAddr::new(addr.ip(), crate::wire::PS_CLIENT_PORT);
    // A session of its own per incarnation: request ids restart at 1 without colliding with
    // the ids a previous incarnation used, which the page service may still remember.
    let session = cfg.rng_seed;
    let ps = match PsClient::bind(ps_bind, cfg.page_service, id, session).await {
        Ok(ps) => ps,
        Err(e) => {
            obs.event(id, Event::Warn(format!("cannot bind {ps_bind}: {e}")));
            return;
        }
    };
    let (store, base_note) = match recover_base(&ps, &rec.entries).await {
        Ok(Some(view)) => {
            let note = format!(
                "from checkpoint {} (applied {}), then the log",
                view.meta.id, view.meta.applied_index
            );
            (Store::from_checkpoint(view), note)
        }
        Ok(None) => (Store::default(), "from the log alone".to_string()),
        Err(e) => (
            Store::default(),
            format!("from the log alone (newest checkpoint unavailable: {e})"),
        ),
    };
    obs.event(
        id,
        Event::Storage {
            kind: "recover",
            detail: base_note,
        },
    );
    let mut rcfg = RaftConfig::new(id, cfg.members.keys().copied().collect(), cfg.rng_seed);
    rcfg.volatile_term = cfg.knobs.on(KnownBug::VolatileRaftTerm);
    let log_len = rec.entries.len() as Index;
    let raft = Raft::restore(rcfg, rec.hard, rec.entries, store.applied_index());
    obs.event(
        id,
        Event::Started {
            term: raft.term(),
            voted_for: raft.voted_for(),
            log_len,
            commit: raft.commit_index(),
            torn_bytes: rec.torn_bytes,
        },
    );
    let links = cfg
        .members
        .keys()
        .filter(|m| **m != id)
        .map(|m| (*m, Link::new(&cfg.link)))
        .collect();
    let core = Arc::new(Mutex::new(Core {
        raft,
        store,
        pending: BTreeMap::new(),
        links,
        generation: 0,
        lead_term: 0,
        lead_epoch: 0,
    }));
    obs.attach(id, Arc::new(Inspector(core.clone())));

    let ep = match Endpoint::bind(addr).await {
        Ok(ep) => Arc::new(ep),
        Err(e) => {
            obs.event(id, Event::Warn(format!("cannot bind {addr}: {e}")));
            return;
        }
    };
    let (tx, mut rx) = mpsc::unbounded::<Input>();

    // Receiver: datagrams into the input queue.
    let (ep2, tx2, obs2) = (ep.clone(), tx.clone(), obs.clone());
    madsim::task::spawn(guarded(obs2, id, async move {
        loop {
            let Ok((payload, from)) = ep2.recv_from_raw(TAG).await else {
                return;
            };
            if let Ok(w) = payload.downcast::<Wire>() {
                if tx2.unbounded_send(Input::Net(*w, from)).is_err() {
                    return;
                }
            }
        }
    }));
    // Ticker.
    let (tx3, tick) = (tx.clone(), Duration::from_millis(cfg.tick_ms));
    madsim::task::spawn(async move {
        loop {
            madsim::time::sleep(tick).await;
            if tx3.unbounded_send(Input::Tick).is_err() {
                return;
            }
        }
    });
    drop(tx);

    let failpoints = Failpoints::new(cfg.failpoints.clone(), cfg.failpoint_seed);
    let node = Arc::new(Node {
        id,
        cfg,
        log_store,
        obs,
        ep,
        core,
        ps,
        failpoints,
    });
    // Checkpoints (leader) and pick-ups (followers) run beside the raft driver.
    let n = node.clone();
    madsim::task::spawn(guarded(node.obs.clone(), id, async move {
        let every = Duration::from_millis(n.cfg.checkpoint_interval_ms);
        loop {
            madsim::time::sleep(every).await;
            n.checkpoint_once(false).await;
        }
    }));
    let n = node.clone();
    madsim::task::spawn(guarded(node.obs.clone(), id, async move {
        let every = Duration::from_millis(n.cfg.pickup_interval_ms);
        loop {
            madsim::time::sleep(every).await;
            n.pick_up().await;
        }
    }));
    // Replay what the restored commit hint already covers.
    node.process().await;
    while let Some(first) = rx.next().await {
        let mut input = Some(first);
        while let Some(i) = input {
            node.handle(i);
            input = rx.try_recv().ok();
        }
        node.process().await;
    }
}

struct Node {
    id: NodeId,
    cfg: ReplicaConfig,
    log_store: LogStore,
    obs: Arc<dyn Observer>,
    ep: Arc<Endpoint>,
    core: Arc<Mutex<Core>>,
    ps: Arc<PsClient>,
    failpoints: Failpoints,
}

impl Node {
    fn note(&self, kind: &'static str, detail: String) {
        self.obs.event(self.id, Event::Storage { kind, detail });
    }

    fn handle(self: &Arc<Self>, input: Input) {
        let mut c = lock(&self.core);
        match input {
            Input::Tick => c.raft.tick(),
            Input::Net(Wire::Raft { from, msg }, _) => {
                if msg.is_response() {
                    if let Some(l) = c.links.get_mut(&from) {
                        l.answered(&self.cfg.link);
                    }
                }
                c.raft.step(from, msg)
            }
            Input::Net(Wire::Request { id, session, op }, client) => {
                if c.raft.role() == Role::Leader && c.store.mode() != Mode::Leader {
                    // Stepping up: no writes before the drain is done.
                    self.reply(client, id, ClientResult::Busy);
                    return;
                }
                let ts = sim_clock_us();
                match c.raft.propose(op, session, ts) {
                    Ok((index, term)) => {
                        c.pending.insert(index, Pending { client, id, term });
                    }
                    Err(ProposeError::NotLeader { leader }) => {
                        self.reply(client, id, ClientResult::NotLeader { leader });
                    }
                }
            }
            // Replicas send no requests to clients; page-service traffic has its own endpoint.
            Input::Net(_, _) => {}
        }
    }

    /// Persist, then send, then apply: the order that keeps raft's promises.
    async fn process(self: &Arc<Self>) {
        let ready = lock(&self.core).raft.take_ready();
        if ready.is_empty() {
            return;
        }
        // The lock is not held across the fsync: inspection must not block on the disk.
        let persisted = match self.log_store.write(ready.hard_state, &ready.log_ops) {
            Ok(w) => {
                if w.any() && self.cfg.fsync_ms > 0 {
                    madsim::time::sleep(Duration::from_millis(self.cfg.fsync_ms)).await;
                }
                self.log_store.sync(w)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = persisted {
            // Only a dead incarnation's handle fails here; this node no longer exists.
            self.obs
                .event(self.id, Event::Warn(format!("persist failed: {e}")));
            futures::future::pending::<()>().await;
        }
        let mut c = lock(&self.core);
        for ev in ready.events {
            self.obs.event(self.id, Event::Raft(ev));
        }
        let now = now_ms();
        for (to, msg) in ready.messages {
            if !msg.is_response() {
                let link = c.links.get_mut(&to).expect("peer link");
                if !link.allow(now, &self.cfg.link) {
                    continue;
                }
            }
            self.send(self.cfg.members[&to], Wire::Raft { from: self.id, msg });
        }
        for e in &ready.committed {
            let executed = c.store.apply(e);
            self.obs.event(
                self.id,
                Event::Applied {
                    index: e.index,
                    term: e.term,
                    ts: e.ts,
                    digest: e.digest(),
                    executed,
                },
            );
            if let Some(p) = c.pending.remove(&e.index) {
                let result = if p.term == e.term {
                    ClientResult::Committed {
                        index: e.index,
                        term: e.term,
                    }
                } else {
                    ClientResult::NotLeader {
                        leader: c.raft.leader(),
                    }
                };
                self.reply(p.client, p.id, result);
            }
        }
        if c.raft.role() != Role::Leader && !c.pending.is_empty() {
            // Lost leadership: the outcome of pending writes is unknown to us.
            let leader = c.raft.leader();
            for (_, p) in std::mem::take(&mut c.pending) {
                self.reply(p.client, p.id, ClientResult::NotLeader { leader });
            }
        }
        self.follow_role(&mut c);
    }

    /// Keeps the storage role in step with the raft role: step down when leadership of the
    /// storage's term is gone, start stepping up when this node leads and storage follows.
    fn follow_role(self: &Arc<Self>, c: &mut Core) {
        let (role, term) = (c.raft.role(), c.raft.term());
        if c.store.mode() != Mode::Follower && (role != Role::Leader || term != c.lead_term) {
            c.store.step_down();
            c.generation += 1;
            self.note(
                "step-down",
                format!(
                    "term {}: un-checkpointed changes back to ingest ({} entries)",
                    c.lead_term,
                    c.store.ingest.len()
                ),
            );
        }
        if role == Role::Leader && c.store.mode() == Mode::Follower {
            self.start_step_up(c, term);
        }
    }

    /// Starts a step-up for `term` as a new storage generation (older tasks stop).
    fn start_step_up(self: &Arc<Self>, c: &mut Core, term: Term) {
        c.store.set_mode(Mode::SteppingUp);
        c.generation += 1;
        c.lead_term = term;
        let (n, gen) = (self.clone(), c.generation);
        madsim::task::spawn(guarded(self.obs.clone(), self.id, async move {
            n.step_up(term, gen).await
        }));
    }

    /// Another node claimed the page service while this one still leads (a deposed leader that
    /// has not heard of its successor yet, or the other way round): start the step-up over
    /// with a fresh claim. The stale leader learns of the newer term soon and stops claiming.
    fn reclaim(self: &Arc<Self>, term: Term, gen: u64, why: String) {
        let mut c = lock(&self.core);
        if c.generation != gen || c.raft.role() != Role::Leader || c.raft.term() != term {
            return;
        }
        c.store.step_down();
        self.start_step_up(&mut c, term);
        drop(c);
        self.note(
            "step-up",
            format!("term {term}: claiming the page service again: {why}"),
        );
    }

    /// Whether the storage leadership `(term, generation)` still holds.
    fn leading(&self, term: Term, gen: u64) -> bool {
        let c = lock(&self.core);
        c.generation == gen && c.raft.role() == Role::Leader && c.raft.term() == term
    }

    /// Step-up: claim the page service, move onto the newest checkpoint, sweep what earlier
    /// leaders left unreferenced, drain ingest into stable, and checkpoint. Losing leadership
    /// abandons it; any other error is fatal for the node.
    async fn step_up(self: Arc<Self>, term: Term, gen: u64) {
        let still = || self.leading(term, gen);
        self.note("step-up", format!("term {term}: claiming the page service"));
        let (epoch, next_lsn, latest) = match self.ps.request(0, PsOp::Fence, &still).await {
            Ok(PsResult::Claimed {
                epoch,
                next_lsn,
                latest,
            }) => (epoch, next_lsn, latest),
            Ok(other) => {
                invariant!(
                    false,
                    "failed to step up: unexpected reply to fence: {other:?}"
                );
                return;
            }
            Err(_) => return,
        };
        if let Some(p) = latest {
            let meta = match decode_meta(&p) {
                Ok(m) => m,
                Err(e) => {
                    invariant!(false, "failed to step up: {e}");
                    return;
                }
            };
            if meta.term > term {
                // Written by the leader of a newer term: this node was deposed and has not heard
                // yet. Stand aside; raft will make it a follower.
                self.note(
                    "step-up",
                    format!(
                        "term {term}: checkpoint {} was written in term {}: standing aside",
                        meta.id, meta.term
                    ),
                );
                return;
            }
            let base_id = lock(&self.core).store.base.meta.id;
            if meta.id > base_id {
                // A leader's log holds every committed entry, and a checkpoint holds only
                // committed ones: a checkpoint beyond (or different from) this log means raft
                // lost committed entries.
                let mine = {
                    let c = lock(&self.core);
                    (
                        c.raft.last_index(),
                        c.raft.entry(meta.applied_index).map(|e| e.term),
                    )
                };
                if !still() {
                    return; // no longer leader: the log may rightly lack newer entries
                }
                invariant!(
                    meta.applied_index == 0 || mine.1 == Some(meta.applied_term),
                    "failed to step up: checkpoint {} ends at entry {} of term {}, but this leader's log {}",
                    meta.id,
                    meta.applied_index,
                    meta.applied_term,
                    match mine.1 {
                        Some(t) => format!("has term {t} there"),
                        None => format!("ends at {}", mine.0),
                    }
                );
                // The newest checkpoint may be ahead of what this node applied: catch up first.
                loop {
                    if !still() {
                        return;
                    }
                    if lock(&self.core).store.applied_index() >= meta.applied_index {
                        break;
                    }
                    madsim::time::sleep(Duration::from_millis(5)).await;
                }
                let base = lock(&self.core).store.base.clone();
                let id = meta.id;
                let view = match load_view(&self.ps, meta, &base, &still, u32::MAX).await {
                    Ok(v) => v,
                    Err(_) if !still() => return,
                    Err(e) => {
                        // A newer leader may have fenced this one out and freed the blocks
                        // meanwhile: then this step-up is moot. Otherwise the loss is real.
                        // (An empty discard is the cheapest write: it only checks the epoch.)
                        let check = PsOp::Discard { lsns: vec![] };
                        if let Ok(PsResult::Fenced { epoch: t }) =
                            self.ps.request(epoch, check, &still).await
                        {
                            self.reclaim(
                                term,
                                gen,
                                format!("epoch {epoch} fenced by epoch {t} ({e})"),
                            );
                            return;
                        }
                        if !still() {
                            return;
                        }
                        invariant!(false, "failed to step up: loading checkpoint {id}: {e}");
                        return;
                    }
                };
                let mut c = lock(&self.core);
                if c.generation != gen {
                    return;
                }
                c.store.install(view);
                drop(c);
                self.note("pickup", format!("checkpoint {id} (step-up)"));
            }
        }
        // Blocks below the fence that the newest checkpoint does not reference belong to
        // checkpoints earlier leaders never finished or never cleaned up: free them.
        let referenced: BTreeSet<Lsn> = {
            let c = lock(&self.core);
            c.store
                .base
                .meta
                .tables
                .values()
                .flat_map(|t| t.cookies().map(|c| c.lsn))
                .collect()
        };
        match self
            .ps
            .request(epoch, PsOp::List { below: next_lsn }, &still)
            .await
        {
            Ok(PsResult::Blocks(lsns)) => {
                let orphans: Vec<Lsn> = lsns
                    .into_iter()
                    .filter(|l| !referenced.contains(l))
                    .collect();
                if !orphans.is_empty() {
                    self.note(
                        "sweep",
                        format!(
                            "discarding {} unreferenced blocks {orphans:?}",
                            orphans.len()
                        ),
                    );
                    let op = PsOp::Discard { lsns: orphans };
                    match self.ps.request(epoch, op, &still).await {
                        Ok(PsResult::Done) => {}
                        Ok(PsResult::Fenced { epoch: t }) => {
                            self.reclaim(term, gen, format!("epoch {epoch} fenced by epoch {t}"));
                            return;
                        }
                        _ => return,
                    }
                }
            }
            Ok(_) | Err(_) => return,
        }
        {
            let mut c = lock(&self.core);
            if c.generation != gen || !(c.raft.role() == Role::Leader && c.raft.term() == term) {
                return;
            }
            c.lead_epoch = epoch;
            let n = c.store.ingest.len();
            c.store.drain_into_stable();
            self.note(
                "step-up",
                format!(
                    "term {term}: epoch {epoch}, drained {n} ingest entries into stable over checkpoint {}",
                    c.store.base.meta.id
                ),
            );
        }
        self.checkpoint_once(true).await;
    }

    /// One leader checkpoint. `force` publishes even when nothing changed (step-up ends with
    /// one, so followers learn the new leader's base).
    async fn checkpoint_once(self: &Arc<Self>, force: bool) {
        let (term, epoch, gen, cut, base) = {
            let mut c = lock(&self.core);
            if c.store.mode() != Mode::Leader || (c.store.dirty.is_empty() && !force) {
                return; // not leading, or nothing to checkpoint
            }
            let Some(cut) = c.store.begin_checkpoint() else {
                return; // one is running
            };
            (
                c.lead_term,
                c.lead_epoch,
                c.generation,
                cut,
                c.store.base.clone(),
            )
        };
        let still = || self.leading(term, gen);
        let id = base.meta.id + 1;
        let leak = self.cfg.knobs.on(KnownBug::BytesTotalLeak);
        let mut r = Reconciliation::new(checkpoint::plan(&base, &cut), leak);
        let mut failure = None;
        for i in 0..r.plan.writes.len() {
            if self.failpoints.hit(failpoints::PAGE_PUT) {
                failure = Some("page-service put failed (failpoint page-put)".to_string());
                break;
            }
            let w = &r.plan.writes[i];
            let op = PsOp::Put {
                table: w.table.clone(),
                page_id: w.page_id,
                base_lsn: w.base_lsn,
                bytes: w.bytes.clone(),
            };
            match self.ps.request(epoch, op, &still).await {
                Ok(PsResult::Lsn(lsn)) => {
                    let mut c = lock(&self.core);
                    if c.generation != gen {
                        return;
                    }
                    r.written(i, lsn, &mut c.store.bytes_total);
                }
                Ok(PsResult::Fenced { epoch: t }) => {
                    let why = format!("checkpoint {id}: epoch {epoch} fenced by epoch {t}");
                    self.reclaim(term, gen, why);
                    return;
                }
                Ok(other) => {
                    invariant!(false, "checkpoint {id}: unexpected reply to put: {other:?}");
                    return;
                }
                Err(_) => return, // leadership lost
            }
            if let Err(e) = r.pack(i, self.failpoints.hit(failpoints::ADDR_PACK)) {
                failure = Some(e.to_string());
                break;
            }
        }
        if let Some(err) = failure {
            // Before wrap-up: recoverable. Free what was written, retry at the next checkpoint.
            let cleanup = {
                let mut c = lock(&self.core);
                if c.generation != gen {
                    return;
                }
                let cl = r.fail(&mut c.store.bytes_total);
                c.store.fail_checkpoint();
                cl
            };
            self.note(
                "checkpoint-failed",
                format!(
                    "checkpoint {id} failed before wrap-up: {err}; discarding blocks {:?}{}",
                    cleanup.discard,
                    if cleanup.orphaned.is_empty() {
                        String::new()
                    } else {
                        format!("; cannot free unpacked blocks {:?}", cleanup.orphaned)
                    }
                ),
            );
            if !cleanup.discard.is_empty() {
                let op = PsOp::Discard {
                    lsns: cleanup.discard,
                };
                let _ = self.ps.request(epoch, op, &still).await;
            }
            return;
        }
        // Wrap-up: past the point of no return.
        let written = r.plan.writes.len();
        let (view, frees) = {
            let mut c = lock(&self.core);
            if c.generation != gen {
                return;
            }
            r.wrap_up(&cut, id, term, &mut c.store.bytes_total)
        };
        let meta = view.meta.encode();
        let (ts, applied, size) = (
            view.meta.ts,
            view.meta.applied_index,
            view.meta.database_size,
        );
        match self
            .ps
            .request(epoch, PsOp::Publish { id, meta }, &still)
            .await
        {
            Ok(PsResult::Lsn(lsn)) => {
                let mut c = lock(&self.core);
                if c.generation != gen {
                    return;
                }
                c.store.complete_checkpoint(view);
                drop(c);
                self.note(
                    "checkpoint",
                    format!(
                        "checkpoint {id} published at lsn {lsn}: ts {ts} applied {applied}, {written} blocks written, {} freed, database_size {size}",
                        frees.len()
                    ),
                );
            }
            Ok(PsResult::Fenced { epoch: t }) => {
                let why = format!("checkpoint {id} at publish: epoch {epoch} fenced by epoch {t}");
                self.reclaim(term, gen, why);
                return;
            }
            Ok(other) => {
                invariant!(
                    false,
                    "checkpoint {id}: publish after wrap-up failed: {other:?}"
                );
                return;
            }
            Err(_) => return,
        }
        if !frees.is_empty() {
            let lsns = frees.iter().map(|(_, c)| c.lsn).collect();
            let _ = self.ps.request(epoch, PsOp::Discard { lsns }, &still).await;
        }
    }

    /// Follower pick-up: install the newest published checkpoint once this node has applied
    /// past it. A failed load leaves the node on its previous checkpoint.
    async fn pick_up(&self) {
        let (base_id, mode) = {
            let c = lock(&self.core);
            (c.store.base.meta.id, c.store.mode())
        };
        if mode != Mode::Follower {
            return;
        }
        let latest = match self.ps.request_limited(0, PsOp::Latest, &|| true, 1).await {
            Ok(PsResult::Latest(Some(p))) if p.id > base_id => p,
            _ => return,
        };
        let meta = match decode_meta(&latest) {
            Ok(m) => m,
            Err(e) => {
                self.note("pickup-failed", e);
                return;
            }
        };
        let base = {
            let c = lock(&self.core);
            if c.store.mode() != Mode::Follower || !c.store.can_install(&meta) {
                return; // not applied that far yet: next time
            }
            c.store.base.clone()
        };
        let id = meta.id;
        let follower = || lock(&self.core).store.mode() == Mode::Follower;
        match load_view(&self.ps, meta, &base, &follower, 2).await {
            Ok(view) => {
                let mut c = lock(&self.core);
                if c.store.mode() != Mode::Follower || !c.store.can_install(&view.meta) {
                    return;
                }
                let pruned_to = view.meta.ts;
                c.store.install(view);
                let left = c.store.ingest.len();
                drop(c);
                self.note(
                    "pickup",
                    format!(
                        "checkpoint {id}: ingest pruned to ts > {pruned_to}, {left} entries left"
                    ),
                );
            }
            Err(e) => self.note(
                "pickup-failed",
                format!("checkpoint {id}: {e}; staying on checkpoint {base_id}"),
            ),
        }
    }

    fn reply(&self, to: SocketAddr, id: u64, result: ClientResult) {
        self.send(to, Wire::Reply { id, result });
    }

    fn send(&self, to: SocketAddr, w: Wire) {
        let ep = self.ep.clone();
        madsim::task::spawn(async move {
            let _ = ep.send_to_raw(to, TAG, Box::new(w)).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_goes_down_after_timeout_and_backs_off_exponentially() {
        let cfg = LinkConfig {
            timeout_ms: 300,
            backoff_min_ms: 100,
            backoff_max_ms: 400,
        };
        let mut l = Link::new(&cfg);
        assert!(l.allow(0, &cfg));
        assert!(l.allow(200, &cfg), "still within the timeout");
        assert!(!l.allow(301, &cfg), "no answer for too long: down");
        assert!(
            !l.allow(350, &cfg),
            "waiting for the first reconnect attempt"
        );
        assert!(l.allow(401, &cfg), "first attempt after 100 ms");
        assert!(!l.allow(500, &cfg));
        assert!(l.allow(601, &cfg), "second attempt after 200 ms");
        assert!(l.allow(1001, &cfg), "backoff capped at 400 ms");
        l.answered(&cfg);
        assert!(l.allow(1002, &cfg), "an answer brings the link back up");
    }
}

#[cfg(test)]
mod guard_tests {
    use super::*;
    use crate::raft::NodeId;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl Observer for Seen {
        fn event(&self, _: NodeId, _: Event) {}
        fn attach(&self, _: NodeId, _: Arc<dyn Inspect>) {}
        fn abort(&self, node: NodeId, abort: crate::Abort) {
            self.0
                .lock()
                .unwrap()
                .push(format!("abort n{node}: {}", abort.message));
        }
        fn crash(&self, node: NodeId, message: String) {
            self.0
                .lock()
                .unwrap()
                .push(format!("crash n{node}: {message}"));
        }
    }

    /// An invariant failure inside a node task is reported as that node's abort and does not
    /// unwind into the runtime: other tasks keep running.
    #[test]
    fn invariant_failure_becomes_an_abort_and_the_runtime_goes_on() {
        let seen = Arc::new(Seen::default());
        let obs: Arc<dyn Observer> = seen.clone();
        let rt = madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
        let survived = rt.block_on(async move {
            madsim::task::spawn(guarded(obs.clone(), 2, async {
                madsim::time::sleep(Duration::from_millis(5)).await;
                invariant!(false, "boom at {}", 5);
            }));
            madsim::task::spawn(guarded(obs.clone(), 3, async { panic!("plain bug") }));
            madsim::time::sleep(Duration::from_millis(50)).await;
            true
        });
        assert!(survived);
        let seen = seen.0.lock().unwrap().clone();
        assert!(
            seen.contains(&"abort n2: boom at 5".to_string()),
            "{seen:?}"
        );
        assert!(
            seen.iter().any(|s| s.starts_with("crash n3: plain bug")),
            "{seen:?}"
        );
    }
}
