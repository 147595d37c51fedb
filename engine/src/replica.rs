//! The replica node: async tasks that drive the raft core and the layered store over the
//! (simulated) network and disk. All decisions live in the pure cores (`raft`, `layered`,
//! `checkpoint`); this file only moves messages, persists before sending, applies, answers
//! clients, and runs the storage tasks: step-up, leader checkpoints and follower pick-ups.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::channel::mpsc;
use futures::StreamExt;
use madsim::net::Endpoint;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::checkpoint::{self, Reconciliation};
use crate::failpoints::{self, FailpointRates, Failpoints};
use crate::guard::guarded;
use crate::keystore::{self, DataKey, KeyBytes, Keystore, KeystoreRef};
use crate::knobs::{planted, Knobs, KnownBug};
use crate::layered::{CheckpointMeta, Mode, StableView, Store};
use crate::log_store::LogStore;
use crate::observe::{
    CheckpointFailure, CrashPoint, Event, Inspect, NodeStatus, Observer, StepUpStage, StorageEvent,
    StorageStatus, Warning,
};
use crate::page_store::{PsOp, PsResult, Published};
use crate::pages::{self, Docs, Lsn};
use crate::ps_client::{KmsClient, PsClient};
use crate::raft::{Entry, Index, NodeId, ProposeError, Raft, RaftConfig, Role, Term};
use crate::state::{Collection, CollectionHash};
use crate::storage::{Storage, StorageError};
use crate::wire::{AdminAction, ClientResult, KmsOp, KmsResult, Wire, TAG};

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
    /// Drain workers a step-up runs.
    pub drain_workers: usize,
    pub kms: SocketAddr,
    /// The keystore the cluster was provisioned with (before any rotation).
    pub keystore: Keystore,
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
    /// The newest keystore page this leadership flushed (or found in its base checkpoint); the
    /// next checkpoint records it.
    ks_page: Option<KeystoreRef>,
    /// A keystore flush is running.
    ks_flushing: bool,
    /// The generation whose published checkpoint is still freeing the blocks it replaced: the
    /// checkpoint is not finished until they are (convergence waits for it).
    freeing: Option<u64>,
    /// Committed entries not applied yet (a drop waiting for a drain worker's copy holds up
    /// the ones behind it).
    backlog: std::collections::VecDeque<Entry>,
    /// The backlog entry whose `Busy` was already reported.
    busy_note: Option<Index>,
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
                checkpoint_in_flight: s.in_flight.is_some() || c.freeing.is_some(),
                dirty_empty: s.dirty.is_empty(),
                ingest_min_ts: s.ingest.min_ts(),
                bytes_total: s.bytes_total.clone(),
                keystore: s.keystore.clone(),
                keystore_flushed: c.ks_page,
            },
        }
    }
    fn read_all(&self) -> BTreeMap<String, Collection> {
        lock(&self.0).store.read_all()
    }
    fn visit_all(&self, f: &mut dyn FnMut(Index, &dyn crate::state::Visible)) {
        let c = lock(&self.0);
        f(c.store.applied_index(), &c.store)
    }
    fn hashes(&self) -> BTreeMap<String, CollectionHash> {
        lock(&self.0).store.hashes()
    }
    fn read_docs(
        &self,
        docs: &[(String, String)],
        collections: &[String],
    ) -> (Index, Vec<Option<Vec<u8>>>, Vec<bool>) {
        let c = lock(&self.0);
        let values = docs.iter().map(|(t, k)| c.store.get(t, k)).collect();
        let exist = collections
            .iter()
            .map(|t| c.store.has_collection(t))
            .collect();
        (c.store.applied_index(), values, exist)
    }
    fn layer_of(&self, collection: &str, key: &str) -> String {
        lock(&self.0).store.layer_of(collection, key).to_string()
    }
    fn log_tail(&self, n: usize) -> Vec<Entry> {
        let c = lock(&self.0);
        let es = c.raft.entries();
        es[es.len().saturating_sub(n)..].to_vec()
    }
    fn log_digests(&self) -> Vec<(Index, Term, u64)> {
        let c = lock(&self.0);
        let es = c.raft.entries();
        es.iter().map(|e| (e.index, e.term, e.digest())).collect()
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

/// Starts a replica incarnation and runs it until the node is killed.
pub async fn run(cfg: ReplicaConfig, disk: Arc<dyn Storage>, obs: Arc<dyn Observer>) {
    let id = cfg.id;
    guarded(obs.clone(), id, run_inner(cfg, disk, obs)).await;
    futures::future::pending::<()>().await
}

/// The node's way to its keys: KEKs unwrapped through the KMS, cached by the wrapped bytes.
struct Keys {
    kms: KmsClient,
    keks: Mutex<BTreeMap<(u32, u32, u64), KeyBytes>>,
}

impl Keys {
    /// The KEK of `ks`, from the cache or through the KMS.
    async fn kek(
        &self,
        ks: &Keystore,
        keep_going: &(dyn Fn() -> bool + Sync),
        max_attempts: u32,
    ) -> Result<KeyBytes, String> {
        let slot = (
            ks.kek_version,
            ks.cmk_version,
            xxhash_rust::xxh3::xxh3_64(&ks.wrapped_kek),
        );
        if let Some(k) = self
            .keks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&slot)
        {
            return Ok(*k);
        }
        let op = KmsOp::Unwrap {
            cmk_version: ks.cmk_version,
            aad: keystore::kek_aad(ks.kek_version),
            ciphertext: ks.wrapped_kek.clone(),
        };
        let kek = match self.kms.request(op, keep_going, max_attempts).await {
            Ok(KmsResult::Unwrapped(bytes)) => {
                keystore::kek_from(bytes, ks.kek_version).map_err(|e| e.to_string())?
            }
            Ok(other) => {
                return Err(format!(
                    "kms: unwrapping kek v{}: {other:?}",
                    ks.kek_version
                ))
            }
            Err(e) => return Err(format!("kms: {e}")),
        };
        self.keks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(slot, kek);
        Ok(kek)
    }

    /// The data key, opened with the KEK of `ks`.
    async fn data_key(
        &self,
        ks: &Keystore,
        keep_going: &(dyn Fn() -> bool + Sync),
        max_attempts: u32,
    ) -> Result<DataKey, String> {
        let kek = self.kek(ks, keep_going, max_attempts).await?;
        ks.data_key(&kek).map_err(|e| e.to_string())
    }

    /// Wraps `plaintext` under a CMK version through the KMS.
    async fn wrap(
        &self,
        cmk_version: u32,
        aad: Vec<u8>,
        plaintext: Vec<u8>,
        keep_going: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<u8>, String> {
        let op = KmsOp::Wrap {
            cmk_version,
            aad,
            plaintext,
        };
        match self.kms.request(op, keep_going, u32::MAX).await {
            Ok(KmsResult::Wrapped(w)) => Ok(w),
            Ok(other) => Err(format!("kms: wrapping under cmk v{cmk_version}: {other:?}")),
            Err(e) => Err(format!("kms: {e}")),
        }
    }
}

/// The page-service table name keystore pages are written under.
pub const KEYSTORE_TABLE: &str = "__keystore";

/// Reads and verifies a checkpoint's keystore page.
async fn load_keystore(
    ps: &PsClient,
    kref: &KeystoreRef,
    keep_going: &(dyn Fn() -> bool + Sync),
    max_attempts: u32,
) -> Result<Keystore, String> {
    let lsn = kref.cookie.lsn;
    let bytes = match ps
        .request_limited(0, PsOp::Get { lsn }, keep_going, max_attempts)
        .await
    {
        Ok(PsResult::Block(b)) => b,
        Ok(PsResult::NotFound) => return Err(format!("keystore page {lsn} not found")),
        Ok(other) => return Err(format!("unexpected reply to get: {other:?}")),
        Err(e) => return Err(e.to_string()),
    };
    pages::verify(&kref.cookie, &bytes).map_err(|e| format!("keystore page: {e}"))?;
    Keystore::decode(&bytes).map_err(|e| e.to_string())
}

/// Loads a checkpoint's pages, reusing the pages (and chain prefixes) `base` already holds.
async fn load_view(
    ps: &PsClient,
    meta: CheckpointMeta,
    base: &StableView,
    key: &DataKey,
    keep_going: &(dyn Fn() -> bool + Sync),
    max_attempts: u32,
) -> Result<StableView, String> {
    let mut pages = BTreeMap::new();
    for (table, root) in &meta.tables {
        // Pages load side by side (each page's chain in order): one at a time, a follower far
        // behind under high latency spent longer than a liveness timeout fetching one
        // checkpoint (`chaos-mix-long` with a drawn 1..120 ms latency found it).
        let loads = root.pages.iter().map(|(p, chain)| async move {
            let old_chain = base.meta.tables.get(table).and_then(|r| r.pages.get(p));
            let old_docs = base.pages.get(table).and_then(|ps| ps.get(p));
            let (mut docs, from) = match (old_chain, old_docs) {
                (Some(oc), Some(od)) if oc == chain => return Ok((*p, od.clone())),
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
                keystore::apply_block(&mut docs, table, cookie, &bytes, i == 0, key)
                    .map_err(|e| format!("{table} page {p}: {e}"))?;
            }
            Ok((*p, Arc::new(docs)))
        });
        let mut loaded = BTreeMap::new();
        for r in futures::future::join_all(loads).await {
            let (p, docs) = r?;
            loaded.insert(p, docs);
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
/// checkpoint ends at (then the log supplies the rest) and the checkpoint's keystore page is
/// the keystore as of its cut; otherwise from nothing, replaying its whole log and picking a
/// checkpoint up later.
async fn recover_base(
    ps: &PsClient,
    keys: &Keys,
    log: &[Entry],
) -> Result<Option<(StableView, Keystore)>, String> {
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
    let Some(kref) = meta.keystore else {
        return Err(format!("checkpoint {} has no keystore page", meta.id));
    };
    if kref.ts != meta.keystore_ts {
        // The keystore page lags the cut: starting from it would lose the rotations between.
        return Err(format!(
            "checkpoint {}'s keystore page (ts {}) lags its cut's keystore (ts {})",
            meta.id, kref.ts, meta.keystore_ts
        ));
    }
    let ks = load_keystore(ps, &kref, &|| true, 3).await?;
    let key = keys.data_key(&ks, &|| true, 3).await?;
    let view = load_view(ps, meta, &StableView::default(), &key, &|| true, 3).await?;
    Ok(Some((view, ks)))
}

async fn run_inner(cfg: ReplicaConfig, disk: Arc<dyn Storage>, obs: Arc<dyn Observer>) {
    let id = cfg.id;
    let addr = cfg.members[&id];
    let log_store =
        LogStore::new(disk).cutting_damage(planted!(cfg.knobs, CutsDamageLikeATornTail));
    let rec = match log_store.load() {
        Ok(r) => r,
        Err(e) => {
            // A dead incarnation's disk handle, or a damaged disk: nothing sane to do. Damage
            // is detected, never repaired by guessing: starting on a shorter log could forget
            // entries this node acknowledged. An operator replaces the node.
            let w = Warning::CannotLoad {
                what: "raft state".to_string(),
                error: e.to_string(),
            };
            obs.event(id, Event::Warn(w));
            if let StorageError::Corrupt { .. } = e {
                obs.abort(
                    id,
                    crate::Abort {
                        message: format!("refusing to start on a damaged disk: {e}"),
                        location: format!("{}:{}", file!(), line!()),
                    },
                );
            }
            return;
        }
    };
    let ps_bind = SocketAddr::new(addr.ip(), crate::wire::PS_CLIENT_PORT);
    // A session of its own per incarnation: request ids restart at 1 without colliding with
    // the ids a previous incarnation used, which the page service may still remember.
    let session = cfg.rng_seed;
    let ps = match PsClient::bind(ps_bind, cfg.page_service, id, session, obs.clone()).await {
        Ok(ps) => ps,
        Err(e) => {
            let w = Warning::CannotBind {
                addr: ps_bind.to_string(),
                error: e.to_string(),
            };
            obs.event(id, Event::Warn(w));
            return;
        }
    };
    let keys = Keys {
        kms: ps.kms(cfg.kms),
        keks: Mutex::new(BTreeMap::new()),
    };
    let genesis = || {
        let mut s = Store::default();
        s.keystore = cfg.keystore.clone();
        s
    };
    let (store, base_note) = match recover_base(&ps, &keys, &rec.entries).await {
        Ok(Some((view, ks))) => {
            let note = format!(
                "from checkpoint {} (applied {}, keystore {}), then the log",
                view.meta.id,
                view.meta.applied_index,
                ks.summary()
            );
            (Store::from_checkpoint(view, ks), note)
        }
        Ok(None) => (genesis(), "from the log alone".to_string()),
        Err(e) => (
            genesis(),
            format!("from the log alone (newest checkpoint unusable: {e})"),
        ),
    };
    obs.event(
        id,
        Event::Storage(StorageEvent::Recovered { from: base_note }),
    );
    let mut rcfg = RaftConfig::new(id, cfg.members.keys().copied().collect(), cfg.rng_seed);
    rcfg.volatile_term = cfg.knobs.on(KnownBug::VolatileRaftTerm);
    rcfg.vote_ignores_log_length = planted!(cfg.knobs, VoteIgnoresLogLength);
    rcfg.append_truncates_unconditionally = planted!(cfg.knobs, AppendTruncatesUnconditionally);
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
    obs.event(id, keystore_event(&store.keystore, false, "recovered"));
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
        ks_page: None,
        ks_flushing: false,
        freeing: None,
        backlog: Default::default(),
        busy_note: None,
    }));
    obs.attach(id, Arc::new(Inspector(core.clone())));

    let ep = match Endpoint::bind(addr).await {
        Ok(ep) => Arc::new(ep),
        Err(e) => {
            let w = Warning::CannotBind {
                addr: addr.to_string(),
                error: e.to_string(),
            };
            obs.event(id, Event::Warn(w));
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
    // Keystore flushes write beside checkpoints: a session of their own.
    let ps_keys = ps.lane(session ^ 0x6b65_7973);
    let rng = Mutex::new(ChaCha8Rng::seed_from_u64(cfg.rng_seed ^ 0x6e6f_6e63));
    let node = Arc::new(Node {
        id,
        cfg,
        log_store,
        obs,
        ep,
        core,
        ps,
        ps_keys,
        keys,
        rng,
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
    ps_keys: PsClient,
    keys: Keys,
    /// Nonces and fresh keys: this incarnation's seeded stream.
    rng: Mutex<ChaCha8Rng>,
    failpoints: Failpoints,
}

/// Documents a drain worker copies between two yield points.
const DRAIN_BATCH: usize = 8;

#[derive(Debug, Clone, Copy, Default)]
struct DrainStats {
    passes: usize,
    tables: usize,
    docs: usize,
}

/// A node's keystore changed (the harness checks it never goes backwards).
fn keystore_event(ks: &Keystore, rotation_on_follower: bool, why: &str) -> Event {
    Event::Keystore {
        ts: ks.ts,
        kek_version: ks.kek_version,
        cmk_version: ks.cmk_version,
        rotation_on_follower,
        why: why.to_string(),
    }
}

impl Node {
    fn note(&self, e: StorageEvent) {
        self.obs.event(self.id, Event::Storage(e));
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
                let ddl = matches!(
                    op,
                    crate::raft::Op::CreateCollection { .. }
                        | crate::raft::Op::DropCollection { .. }
                );
                if c.raft.role() == Role::Leader && c.store.mode() != Mode::Leader && !ddl {
                    // Stepping up: no writes before the drain is done. DDL goes through (as a
                    // forced drop with checkpoint_wait=false would): it is applied from the log
                    // while the drain workers run.
                    self.reply(client, id, ClientResult::Busy);
                    return;
                }
                let ts = sim_clock_us();
                let get = matches!(op, crate::raft::Op::Get { .. });
                match c.raft.propose(op, session, ts) {
                    Ok((index, term)) if !get && planted!(self.cfg.knobs, AckBeforeCommit) => {
                        self.reply(client, id, ClientResult::Committed { index, term });
                    }
                    Ok((index, term)) => {
                        c.pending.insert(index, Pending { client, id, term });
                    }
                    Err(ProposeError::NotLeader { leader }) => {
                        self.reply(client, id, ClientResult::NotLeader { leader });
                    }
                }
            }
            Input::Net(
                Wire::Admin {
                    id,
                    session,
                    action,
                },
                client,
            ) => {
                if c.raft.role() != Role::Leader {
                    let leader = c.raft.leader();
                    self.reply(client, id, ClientResult::NotLeader { leader });
                } else if action == AdminAction::StepDown {
                    // Also mid step-up: a leader may be asked to go at any moment. `process`
                    // then steps storage down and answers the pending writes.
                    let term = c.raft.term();
                    c.raft.step_down();
                    self.note(StorageEvent::LeaderStepDown {
                        term,
                        mid_step_up: c.store.mode() == Mode::SteppingUp,
                    });
                    self.reply(client, id, ClientResult::SteppedDown { term });
                } else if c.store.mode() != Mode::Leader {
                    self.reply(client, id, ClientResult::Busy);
                } else {
                    let (n, term, gen) = (self.clone(), c.lead_term, c.generation);
                    madsim::task::spawn(guarded(self.obs.clone(), self.id, async move {
                        n.rotate(client, id, session, action, term, gen).await
                    }));
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
            let mut c = lock(&self.core);
            if !c.backlog.is_empty() {
                self.apply_backlog(&mut c);
                self.follow_role(&mut c);
            }
            return;
        }
        let mut messages = Some(ready.messages);
        // The lock is not held across the fsync: inspection must not block on the disk.
        let persisted = match self.log_store.write(ready.hard_state, &ready.log_ops) {
            Ok(w) => {
                if planted!(self.cfg.knobs, SendsBeforeSync) {
                    let mut c = lock(&self.core);
                    self.send_raft(&mut c, messages.take().unwrap_or_default());
                }
                if w.any() {
                    self.crash_point(CrashPoint::RaftWritten).await;
                }
                if w.any() && self.cfg.fsync_ms > 0 {
                    madsim::time::sleep(Duration::from_millis(self.cfg.fsync_ms)).await;
                }
                let synced = self.log_store.sync(w);
                if w.any() && synced.is_ok() {
                    self.crash_point(CrashPoint::RaftSynced).await;
                }
                synced
            }
            Err(e) => Err(e),
        };
        if let Err(e) = persisted {
            // Only a dead incarnation's handle fails here; this node no longer exists.
            self.obs.event(
                self.id,
                Event::Warn(Warning::PersistFailed {
                    error: e.to_string(),
                }),
            );
            futures::future::pending::<()>().await;
        }
        let mut c = lock(&self.core);
        for ev in ready.events {
            self.obs.event(self.id, Event::Raft(ev));
        }
        self.send_raft(&mut c, messages.take().unwrap_or_default());
        c.backlog.extend(ready.committed);
        self.apply_backlog(&mut c);
        if c.raft.role() != Role::Leader
            && !c.pending.is_empty()
            && !planted!(self.cfg.knobs, AckOverwrittenProposal)
        {
            // Lost leadership: the outcome of pending writes is unknown to us.
            let leader = c.raft.leader();
            for (_, p) in std::mem::take(&mut c.pending) {
                self.reply(p.client, p.id, ClientResult::NotLeader { leader });
            }
        }
        self.follow_role(&mut c);
        self.maybe_flush_keystore(&mut c);
    }

    /// Sends raft's messages; requests only over links that are up (responses always go).
    fn send_raft(&self, c: &mut Core, messages: Vec<(NodeId, crate::raft::Message)>) {
        let now = now_ms();
        for (to, msg) in messages {
            if !msg.is_response() {
                let link = c.links.get_mut(&to).expect("peer link");
                if !link.allow(now, &self.cfg.link) {
                    continue;
                }
            }
            self.send(self.cfg.members[&to], Wire::Raft { from: self.id, msg });
        }
    }

    /// Applies committed entries in order. A drop whose table a step-up drain holds read-locked
    /// gets `Busy` from the handle's exclusive try-lock: it waits (with everything behind it)
    /// and is retried at the next pass, after the copy. Raft goes on meanwhile.
    fn apply_backlog(&self, c: &mut Core) {
        while let Some(e) = c.backlog.front() {
            if let crate::raft::Op::DropCollection { name } = &e.op {
                if let Err(err) = c.store.handles.try_drop(name) {
                    if c.busy_note != Some(e.index) {
                        c.busy_note = Some(e.index);
                        self.note(StorageEvent::DropBusy {
                            table: name.clone(),
                            index: e.index,
                            error: err.to_string(),
                        });
                    }
                    return;
                }
            }
            let e = c.backlog.pop_front().expect("front exists");
            let executed = self.apply_entry(c, &e);
            if let (true, crate::raft::Op::Rotate(r)) = (executed, &e.op) {
                let ks = &c.store.keystore;
                let follower = c.raft.role() != Role::Leader;
                let on = if follower { "a follower" } else { "the leader" };
                let at = format!(
                    "{} applied on {on} at index {} ts {}",
                    r.summary(),
                    e.index,
                    e.ts
                );
                if ks.ts == e.ts {
                    self.obs.event(self.id, keystore_event(ks, follower, &at));
                } else {
                    let why = format!(
                        "{at}: raced with another rotation, keystore stays {}",
                        ks.summary()
                    );
                    self.note(StorageEvent::Rotation { detail: why });
                }
            }
            self.obs.event(
                self.id,
                Event::Applied {
                    index: e.index,
                    term: e.term,
                    ts: e.ts,
                    digest: e.digest(),
                    executed,
                    op: e.op.clone(),
                    session: e.session,
                },
            );
            if let Some(p) = c.pending.remove(&e.index) {
                // A pending entry of another term: our proposal lost its slot to another
                // leader's entry, whose outcome is not ours to report.
                let result =
                    if p.term != e.term && !planted!(self.cfg.knobs, AckOverwrittenProposal) {
                        ClientResult::NotLeader {
                            leader: c.raft.leader(),
                        }
                    } else if let crate::raft::Op::Get { collection, key } = &e.op {
                        ClientResult::Read {
                            index: e.index,
                            term: e.term,
                            value: if planted!(self.cfg.knobs, ReadFromCheckpoint) {
                                c.store.base.docs(collection).get(key).cloned()
                            } else {
                                c.store.get(collection, key)
                            },
                        }
                    } else {
                        ClientResult::Committed {
                            index: e.index,
                            term: e.term,
                        }
                    };
                self.reply(p.client, p.id, result);
            }
        }
    }

    /// Applies one committed entry to storage; returns whether it executed (see
    /// [`crate::layered::Store::apply`]).
    fn apply_entry(&self, c: &mut Core, e: &Entry) -> bool {
        let follower = c.raft.role() != Role::Leader;
        if follower && planted!(self.cfg.knobs, FollowerDropsDeletes) {
            if let crate::raft::Op::Delete { .. } = e.op {
                let noop = Entry {
                    op: crate::raft::Op::Noop,
                    ..e.clone()
                };
                return c.store.apply(&noop);
            }
        }
        if follower && planted!(self.cfg.knobs, FollowerIgnoresSessions) {
            return c.store.apply(&Entry {
                session: None,
                ..e.clone()
            });
        }
        c.store.apply(e)
    }

    /// Keeps the storage role in step with the raft role: step down when leadership of the
    /// storage's term is gone, start stepping up when this node leads and storage follows.
    fn follow_role(self: &Arc<Self>, c: &mut Core) {
        let (role, term) = (c.raft.role(), c.raft.term());
        if c.store.mode() != Mode::Follower && (role != Role::Leader || term != c.lead_term) {
            c.store.step_down();
            c.generation += 1;
            self.note(StorageEvent::StepDown {
                term: c.lead_term,
                ingest_entries: c.store.ingest.len(),
            });
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
        c.ks_page = None;
        c.ks_flushing = false;
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
        self.note(StorageEvent::StepUp {
            term,
            stage: StepUpStage::Reclaiming { why },
        });
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
        self.note(StorageEvent::StepUp {
            term,
            stage: StepUpStage::Claiming,
        });
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
        self.crash_point(CrashPoint::StepUpFenced).await;
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
                self.note(StorageEvent::StepUp {
                    term,
                    stage: StepUpStage::StandingAside {
                        checkpoint: meta.id,
                        written_in: meta.term,
                    },
                });
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
                let (base, ks) = {
                    let c = lock(&self.core);
                    (c.store.base.clone(), c.store.keystore.clone())
                };
                let id = meta.id;
                // The data key is the same under every KEK: this leader's committed keystore
                // (at least as new as any checkpoint's) opens the pages.
                let key = match self.keys.data_key(&ks, &still, u32::MAX).await {
                    Ok(k) => k,
                    Err(_) if !still() => return,
                    Err(e) => {
                        invariant!(false, "failed to step up: keys for checkpoint {id}: {e}");
                        return;
                    }
                };
                let view = match load_view(&self.ps, meta, &base, &key, &still, u32::MAX).await {
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
                self.note(StorageEvent::PickedUp {
                    id,
                    during_step_up: true,
                    pruned_to: None,
                    left: 0,
                });
            }
        }
        // Blocks below the fence that the newest checkpoint does not reference belong to
        // checkpoints earlier leaders never finished or never cleaned up: free them.
        let referenced: BTreeSet<Lsn> = {
            let c = lock(&self.core);
            let m = &c.store.base.meta;
            m.tables
                .values()
                .flat_map(|t| t.cookies().map(|c| c.lsn))
                .chain(m.keystore.map(|k| k.cookie.lsn))
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
                    self.note(StorageEvent::Sweep {
                        orphans: orphans.clone(),
                    });
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
        let ks_page = {
            let mut c = lock(&self.core);
            if c.generation != gen {
                return;
            }
            c.ks_page = c.store.base.meta.keystore;
            c.ks_page
        };
        if ks_page.is_none() && !self.flush_keystore(term, gen, epoch).await {
            return; // a new cluster: its first checkpoint must carry a keystore page
        }
        {
            let mut c = lock(&self.core);
            if c.generation != gen || !(c.raft.role() == Role::Leader && c.raft.term() == term) {
                return;
            }
            c.lead_epoch = epoch;
        }
        let Some(stats) = self.drain(gen).await else {
            return; // leadership lost meanwhile
        };
        let base = lock(&self.core).store.base.meta.id;
        self.note(StorageEvent::StepUp {
            term,
            stage: StepUpStage::Done {
                epoch,
                tables: stats.tables,
                docs: stats.docs,
                base,
                passes: stats.passes,
            },
        });
        self.checkpoint_once(true).await;
    }

    /// Step-up drain: drain workers (tasks) move every ingest table into the stable tables in
    /// batches, yielding between them; the applier keeps applying meanwhile, so passes repeat
    /// until ingest is empty, and the last one makes the node a leader under the same lock.
    /// `None` when leadership was lost (the workers release what they hold and stop).
    async fn drain(self: &Arc<Self>, gen: u64) -> Option<DrainStats> {
        let stats = Arc::new(Mutex::new(DrainStats::default()));
        loop {
            let tables = {
                let mut c = lock(&self.core);
                if c.generation != gen {
                    return None;
                }
                let tables = c.store.ingest_tables();
                if tables.is_empty() {
                    c.store.finish_step_up();
                    let s = *stats.lock().unwrap_or_else(|e| e.into_inner());
                    return Some(s);
                }
                tables
            };
            stats.lock().unwrap_or_else(|e| e.into_inner()).passes += 1;
            let queue = Arc::new(Mutex::new(
                tables
                    .into_iter()
                    .collect::<std::collections::VecDeque<_>>(),
            ));
            let workers: Vec<_> = (0..self.cfg.drain_workers.max(1))
                .map(|w| {
                    let (n, q, st) = (self.clone(), queue.clone(), stats.clone());
                    madsim::task::spawn(guarded(self.obs.clone(), self.id, async move {
                        n.drain_worker(w, gen, &q, &st).await
                    }))
                })
                .collect();
            for h in workers {
                let _ = h.await;
            }
        }
    }

    /// One drain worker: takes ingest tables off the queue and copies each into stable in
    /// batches. The fixed path holds the table's read lock for the whole copy (a drop waits);
    /// the faulty path of incident 002 (`drop-drain-race`) only pins it, so a forced drop can
    /// remove the table under the copy and the next cursor open fails `NotFound` — fatal, as
    /// every step-up error is.
    async fn drain_worker(
        &self,
        w: usize,
        gen: u64,
        queue: &Mutex<std::collections::VecDeque<String>>,
        stats: &Mutex<DrainStats>,
    ) {
        let pin_only = self.cfg.knobs.on(KnownBug::DropDrainRace);
        loop {
            let Some(t) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front() else {
                return;
            };
            let id = {
                let mut c = lock(&self.core);
                if c.generation != gen {
                    return;
                }
                let id = c.store.handles.acquire(&t);
                let held = if pin_only {
                    c.store.handles.pin(&t, id)
                } else {
                    c.store.handles.read_lock(&t, id) // checks the handle is not dead
                };
                if let Err(e) = &held {
                    self.note(StorageEvent::DrainTableGone {
                        table: t.clone(),
                        error: e.to_string(),
                    });
                }
                invariant!(
                    held.is_ok(),
                    "failed to step up: drain worker {w}: taking ingest table {t}: {held:?}"
                );
                id
            };
            let release = |c: &mut Core| {
                if pin_only {
                    c.store.handles.unpin(&t, id);
                } else {
                    c.store.handles.read_unlock(&t, id);
                }
            };
            let mut after: Option<String> = None;
            let mut docs = 0;
            loop {
                // A yield point between batches; `drain-slow` makes it a loaded node's.
                let pause_ms = if self.failpoints.hit(failpoints::DRAIN_SLOW) {
                    self.rng
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .gen_range(20..=200)
                } else {
                    1
                };
                madsim::time::sleep(Duration::from_millis(pause_ms)).await;
                let mut c = lock(&self.core);
                if c.generation != gen {
                    release(&mut c);
                    return;
                }
                if let Err(e) = c.store.handles.open_cursor(&t, id) {
                    drop(c);
                    self.note(StorageEvent::DrainTableGone {
                        table: t.clone(),
                        error: e.to_string(),
                    });
                    invariant!(
                        false,
                        "failed to step up: drain worker {w}: opening a cursor on ingest table {t}: {e}"
                    );
                    return;
                }
                let (n, next) = c.store.drain_copy_batch(&t, after.as_deref(), DRAIN_BATCH);
                docs += n;
                match next {
                    Some(k) => after = Some(k),
                    None => {
                        c.store.drain_finish(&t);
                        release(&mut c);
                        break;
                    }
                }
            }
            let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
            s.tables += 1;
            s.docs += docs;
        }
    }

    /// One leader checkpoint. `force` publishes even when nothing changed (step-up ends with
    /// one, so followers learn the new leader's base).
    async fn checkpoint_once(self: &Arc<Self>, force: bool) {
        let (term, epoch, gen, cut, base, ks, ks_page) = {
            let mut c = lock(&self.core);
            self.maybe_flush_keystore(&mut c);
            // A flushed keystore page the published checkpoint does not carry yet is a change.
            let ks_new = c.ks_page != c.store.base.meta.keystore;
            if c.store.mode() != Mode::Leader || (c.store.dirty.is_empty() && !force && !ks_new) {
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
                c.store.keystore.clone(),
                c.ks_page,
            )
        };
        let still = || self.leading(term, gen);
        let id = base.meta.id + 1;
        let key = match self.keys.data_key(&ks, &still, 3).await {
            Ok(k) => k,
            Err(e) => {
                // Nothing written yet: the changes stay dirty for the next checkpoint.
                let mut c = lock(&self.core);
                if c.generation == gen {
                    c.store.fail_checkpoint();
                }
                drop(c);
                self.note(StorageEvent::CheckpointFailed {
                    id,
                    cause: CheckpointFailure::NoDataKey(e.to_string()),
                });
                return;
            }
        };
        let leak = self.cfg.knobs.on(KnownBug::BytesTotalLeak);
        let mut plan = checkpoint::plan(&base, &cut);
        // The planted bug's stream only exists when it is planted (test builds).
        let mut per_checkpoint = planted!(self.cfg.knobs, NonceRestartsPerCheckpoint)
            .then(|| ChaCha8Rng::seed_from_u64(self.cfg.rng_seed));
        let sealed = plan.seal(&key, &mut || match per_checkpoint.as_mut() {
            Some(rng) => keystore::nonce(rng),
            None => keystore::nonce(&mut *self.rng.lock().unwrap_or_else(|e| e.into_inner())),
        });
        let fingerprint = key.fingerprint();
        for (nonce, message) in sealed {
            let key = fingerprint;
            self.obs.event(
                self.id,
                Event::Sealed {
                    key,
                    nonce,
                    message,
                },
            );
        }
        let mut r = Reconciliation::new(plan, leak);
        let mut failure = None;
        for i in 0..r.plan.writes.len() {
            if self.failpoints.hit(failpoints::PAGE_PUT) {
                failure = Some((
                    "page-service put failed (failpoint page-put)".to_string(),
                    false,
                ));
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
                    {
                        let mut c = lock(&self.core);
                        if c.generation != gen {
                            return;
                        }
                        r.written(i, lsn, &mut c.store.bytes_total);
                    }
                    self.crash_point(CrashPoint::CheckpointPut).await;
                }
                Ok(PsResult::Fenced { epoch: t }) => {
                    let why = format!("checkpoint {id}: epoch {epoch} fenced by epoch {t}");
                    self.reclaim(term, gen, why);
                    return;
                }
                Ok(PsResult::Stale) => {
                    // The service refused a late duplicate: a newer request on this session
                    // overtook ours. After a re-election that is this node's newer leadership
                    // (this checkpoint belongs to an older one and simply ends); otherwise the
                    // put did not happen and the checkpoint fails before wrap-up.
                    invariant!(
                        !planted!(self.cfg.knobs, StalePutAborts),
                        "checkpoint {id}: unexpected reply to put: Stale"
                    );
                    if lock(&self.core).generation != gen {
                        self.note(StorageEvent::CheckpointAbandoned {
                            id,
                            at_publish: false,
                        });
                        return;
                    }
                    failure = Some((
                        "page-service put refused as a stale duplicate".to_string(),
                        false,
                    ));
                    break;
                }
                Ok(other) => {
                    invariant!(false, "checkpoint {id}: unexpected reply to put: {other:?}");
                    return;
                }
                Err(_) => return, // leadership lost
            }
            if let Err(e) = r.pack(i, self.failpoints.hit(failpoints::ADDR_PACK)) {
                failure = Some((e.to_string(), true));
                break;
            }
        }
        if let Some((err, pack_failed)) = failure {
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
            self.note(StorageEvent::CheckpointFailed {
                id,
                cause: CheckpointFailure::BeforeWrapUp {
                    error: err,
                    pack_failed,
                    discard: cleanup.discard.clone(),
                    orphaned: cleanup.orphaned.clone(),
                },
            });
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
            r.wrap_up(&cut, id, term, ks_page, &mut c.store.bytes_total)
        };
        let meta = view.meta.encode();
        let (ts, applied, size) = (
            view.meta.ts,
            view.meta.applied_index,
            view.meta.database_size,
        );
        let mut lsns: Vec<Lsn> = frees.iter().map(|(_, c)| c.lsn).collect();
        if let Some(old) = base.meta.keystore.filter(|k| Some(*k) != ks_page) {
            lsns.push(old.cookie.lsn); // the keystore page this checkpoint replaced
        }
        if planted!(self.cfg.knobs, FreesBeforePublish) && !lsns.is_empty() {
            let op = PsOp::Discard {
                lsns: std::mem::take(&mut lsns),
            };
            let _ = self.ps.request(epoch, op, &still).await;
        }
        self.crash_point(CrashPoint::CheckpointWrapped).await;
        match self
            .ps
            .request(epoch, PsOp::Publish { id, meta }, &still)
            .await
        {
            Ok(PsResult::Lsn(lsn)) => {
                self.crash_point(CrashPoint::CheckpointPublished).await;
                let mut c = lock(&self.core);
                if c.generation != gen {
                    return;
                }
                c.store.complete_checkpoint(view);
                if !lsns.is_empty() {
                    c.freeing = Some(gen);
                }
                drop(c);
                self.note(StorageEvent::CheckpointPublished {
                    id,
                    lsn,
                    ts,
                    applied,
                    written,
                    freed: frees.len(),
                    database_size: size,
                });
            }
            Ok(PsResult::Fenced { epoch: t }) => {
                let why = format!("checkpoint {id} at publish: epoch {epoch} fenced by epoch {t}");
                self.reclaim(term, gen, why);
                return;
            }
            Ok(PsResult::Stale)
                if lock(&self.core).generation != gen
                    && !planted!(self.cfg.knobs, StalePutAborts) =>
            {
                // Overtaken by this node's newer leadership (see the put above): not ours now.
                self.note(StorageEvent::CheckpointAbandoned {
                    id,
                    at_publish: true,
                });
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
        if !lsns.is_empty() {
            let _ = self.ps.request(epoch, PsOp::Discard { lsns }, &still).await;
            let mut c = lock(&self.core);
            if c.freeing == Some(gen) {
                c.freeing = None;
            }
        }
    }

    /// Starts a keystore flush when the leader's committed keystore is newer than the keystore
    /// page its published checkpoint carries (one flush at a time; a flushed page waits for the
    /// next checkpoint to record it). Checkpoints taken meanwhile still carry the old page:
    /// that lag is incident 000's window, and `keystore-flush-slow` widens it.
    fn maybe_flush_keystore(self: &Arc<Self>, c: &mut Core) {
        let published = c.ks_page == c.store.base.meta.keystore;
        let behind = c.ks_page.is_none_or(|p| p.ts < c.store.keystore.ts);
        if c.store.mode() != Mode::Leader || c.ks_flushing || !published || !behind {
            return;
        }
        c.ks_flushing = true;
        let (n, term, gen, epoch) = (self.clone(), c.lead_term, c.generation, c.lead_epoch);
        madsim::task::spawn(guarded(self.obs.clone(), self.id, async move {
            if n.failpoints.hit(failpoints::KEYSTORE_FLUSH_SLOW) {
                let every = n.cfg.checkpoint_interval_ms;
                let delay = n
                    .rng
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .gen_range(every..=4 * every);
                n.note(StorageEvent::KeystoreFlushSlow { delay_ms: delay });
                madsim::time::sleep(Duration::from_millis(delay)).await;
            }
            n.flush_keystore(term, gen, epoch).await;
            let mut c = lock(&n.core);
            if c.generation == gen {
                c.ks_flushing = false;
            }
        }));
    }

    /// Writes the committed keystore as a keystore page. Returns whether it was written.
    async fn flush_keystore(self: &Arc<Self>, term: Term, gen: u64, epoch: u64) -> bool {
        let still = || self.leading(term, gen);
        let ks = lock(&self.core).store.keystore.clone();
        // A keystore is persisted only once its keys open (this also warms the KEK cache).
        if let Err(e) = self.keys.data_key(&ks, &still, u32::MAX).await {
            if still() {
                invariant!(false, "keystore flush: {} does not open: {e}", ks.summary());
            }
            return false;
        }
        let bytes = ks.encode();
        let op = PsOp::Put {
            table: KEYSTORE_TABLE.to_string(),
            page_id: 0,
            base_lsn: 0,
            bytes: bytes.clone(),
        };
        match self.ps_keys.request(epoch, op, &still).await {
            Ok(PsResult::Lsn(lsn)) => {
                self.crash_point(CrashPoint::KeystorePut).await;
                let cookie = match pages::addr_pack(0, lsn, 0, &bytes) {
                    Ok(c) => c,
                    Err(e) => {
                        invariant!(false, "keystore flush: {e}");
                        return false;
                    }
                };
                let mut c = lock(&self.core);
                if c.generation != gen {
                    return false;
                }
                c.ks_page = Some(KeystoreRef { cookie, ts: ks.ts });
                drop(c);
                self.note(StorageEvent::KeystoreFlushed {
                    lsn,
                    keystore: ks.summary(),
                });
                true
            }
            Ok(PsResult::Fenced { epoch: t }) => {
                self.reclaim(
                    term,
                    gen,
                    format!("keystore flush: epoch {epoch} fenced by epoch {t}"),
                );
                false
            }
            Ok(PsResult::Stale)
                if lock(&self.core).generation != gen
                    && !planted!(self.cfg.knobs, StalePutAborts) =>
            {
                // Overtaken by this node's newer leadership (as a checkpoint put can be): that
                // leadership flushes its own keystore; this one simply ends.
                self.note(StorageEvent::KeystoreFlushAbandoned {
                    keystore: ks.summary(),
                });
                false
            }
            Ok(other) => {
                invariant!(false, "keystore flush: unexpected reply to put: {other:?}");
                false
            }
            Err(_) => false,
        }
    }

    /// An administrative key rotation on the leader: prepare the new wrapped keys with the KMS,
    /// then propose the rotation; the reply goes out when it is applied, like a write's.
    async fn rotate(
        self: Arc<Self>,
        client: SocketAddr,
        id: u64,
        session: Option<crate::raft::Session>,
        action: AdminAction,
        term: Term,
        gen: u64,
    ) {
        let still = || self.leading(term, gen);
        let ks = lock(&self.core).store.keystore.clone();
        let prepared = async {
            let kek = self.keys.kek(&ks, &still, u32::MAX).await?;
            match action {
                AdminAction::RotateKek => {
                    let (new_kek, nonce) = {
                        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                        (keystore::fresh_key(&mut *rng), keystore::nonce(&mut *rng))
                    };
                    let aad = keystore::kek_aad(ks.kek_version + 1);
                    let wrapped = self
                        .keys
                        .wrap(ks.cmk_version, aad, new_kek.to_vec(), &still)
                        .await?;
                    ks.rotate_kek(&kek, &new_kek, wrapped, nonce)
                        .map_err(|e| e.to_string())
                }
                AdminAction::RotateCmk => {
                    let v = ks.cmk_version + 1;
                    let aad = keystore::kek_aad(ks.kek_version);
                    let wrapped = self.keys.wrap(v, aad, kek.to_vec(), &still).await?;
                    Ok(keystore::Rotation::Cmk {
                        kek_version: ks.kek_version,
                        cmk_version: v,
                        wrapped_kek: wrapped,
                    })
                }
                AdminAction::StepDown => Err("a step-down is not a rotation".to_string()),
            }
        };
        let rotation: Result<keystore::Rotation, String> = prepared.await;
        let mut c = lock(&self.core);
        let rotation = match rotation {
            Ok(r) if c.generation == gen => r,
            Ok(_) | Err(_) => {
                // Leadership moved on (or the KMS refused): the client retries elsewhere.
                let leader = c.raft.leader();
                drop(c);
                if let Err(e) = rotation {
                    self.note(StorageEvent::RotationFailed {
                        detail: format!("{action:?}: {e}"),
                    });
                }
                self.reply(client, id, ClientResult::NotLeader { leader });
                return;
            }
        };
        let summary = rotation.summary();
        match c
            .raft
            .propose(crate::raft::Op::Rotate(rotation), session, sim_clock_us())
        {
            Ok((index, term)) => {
                c.pending.insert(index, Pending { client, id, term });
                drop(c);
                self.note(StorageEvent::Rotation {
                    detail: format!("{summary} proposed at index {index}"),
                });
            }
            Err(ProposeError::NotLeader { leader }) => {
                drop(c);
                self.reply(client, id, ClientResult::NotLeader { leader });
            }
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
                self.note(StorageEvent::PickupFailed { reason: e });
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
        let failed = |e: String| {
            let why = format!("checkpoint {id}: {e}; staying on checkpoint {base_id}");
            self.note(StorageEvent::PickupFailed { reason: why });
        };
        // Keys first, before any state changes.
        let Some(kref) = meta.keystore else {
            self.note(StorageEvent::PickupFailed {
                reason: format!("checkpoint {id} has no keystore page"),
            });
            return;
        };
        let persisted = match load_keystore(&self.ps, &kref, &follower, 2).await {
            Ok(ks) => ks,
            Err(e) => return failed(e),
        };
        let committed = lock(&self.core).store.keystore.clone();
        if let Err(err) = keystore::load_key(&persisted, &committed) {
            let stale = matches!(err, keystore::KeyError::StaleKeystore { .. });
            let e = format!(
                "failed to pick up checkpoint {id} (applied {}, keystore page {}): load_key: {err}",
                meta.applied_index,
                persisted.summary()
            );
            // Incident 000's faulty path: a recoverable error through an invariant.
            let abort = self.cfg.knobs.on(KnownBug::StaleKeystoreAbort);
            let reason = if abort {
                e.clone()
            } else {
                format!("{e}; skipping it, staying on checkpoint {base_id}")
            };
            self.note(if stale {
                StorageEvent::StaleKeystoreCheckpoint {
                    id,
                    reason,
                    skipped: !abort,
                }
            } else {
                StorageEvent::PickupFailed { reason }
            });
            invariant!(!abort, "{e}");
            return;
        }
        let key = match self.keys.data_key(&persisted, &follower, 2).await {
            Ok(k) => k,
            Err(e) => return failed(e),
        };
        match load_view(&self.ps, meta, &base, &key, &follower, 2).await {
            Ok(view) => {
                self.crash_point(CrashPoint::PickupLoaded).await;
                self.obs.installing(self.id, id, false);
                let mut c = lock(&self.core);
                if c.store.mode() != Mode::Follower || !c.store.can_install(&view.meta) {
                    return;
                }
                let pruned_to = view.meta.ts;
                c.store.install(view);
                let left = c.store.ingest.len();
                drop(c);
                self.obs.installing(self.id, id, true);
                self.note(StorageEvent::PickedUp {
                    id,
                    during_step_up: false,
                    pruned_to: Some(pruned_to),
                    left,
                });
            }
            Err(e) => failed(e),
        }
    }

    fn reply(&self, to: SocketAddr, id: u64, result: ClientResult) {
        self.send(to, Wire::Reply { id, result });
    }

    /// A moment where a crash matters: the harness may kill the node here (no lock held).
    async fn crash_point(&self, point: CrashPoint) {
        crate::net::crash_point(&*self.obs, self.id, point).await;
    }

    fn send(&self, to: SocketAddr, w: Wire) {
        crate::net::send(&self.ep, &*self.obs, to, w);
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

    /// Reconnect attempts are spaced by a backoff that doubles after every attempt up to the
    /// cap: from 100 ms, gaps of 100, 200, 400 and 800 ms, then 1000 ms (the cap) each time.
    /// (The first two gaps are set when the link goes down; the third is the first that a
    /// reconnect attempt doubles.)
    #[test]
    fn reconnect_attempts_double_their_spacing_up_to_the_cap() {
        let cfg = LinkConfig {
            timeout_ms: 300,
            backoff_min_ms: 100,
            backoff_max_ms: 1_000,
        };
        let mut l = Link::new(&cfg);
        assert!(l.allow(0, &cfg));
        assert!(!l.allow(301, &cfg), "no answer for too long: down");
        let mut last = 301;
        for gap in [100, 200, 400, 800, 1_000, 1_000] {
            assert!(
                !l.allow(last + gap - 1, &cfg),
                "no attempt sooner than {gap} ms after the last"
            );
            last += gap;
            assert!(l.allow(last, &cfg), "an attempt {gap} ms after the last");
        }
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
