//! The replica node: async tasks that drive the raft core and the layered store over the
//! (simulated) network and disk. All decisions live in the pure cores (`raft`, `layered`,
//! `storage_role`, `checkpoint`); this file only moves messages, persists before sending,
//! applies and answers clients. The storage tasks (step-up, drain, leader checkpoints, keystore
//! flush, rotations, follower pick-ups) are in `tasks`: they execute the storage-role core's
//! commands. `keys` reads keys and checkpoints, `links` is the peer-link backoff, `inspect` the
//! harness's read handle.

mod inspect;
mod keys;
mod links;
mod tasks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::channel::mpsc;
use futures::StreamExt;
use madsim::net::Endpoint;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::failpoints::{FailpointRates, Failpoints};
use crate::guard::guarded;
use crate::keystore::Keystore;
use crate::knobs::{planted, Knobs, KnownBug};
use crate::layered::{Mode, Store};
use crate::log_store::{LogStore, Recovered};
use crate::observe::{CrashPoint, Event, Observer, StorageEvent, Warning};
use crate::ps_client::PsClient;
use crate::raft::{Entry, Index, NodeId, ProposeError, Raft, RaftConfig, Role, Term};
use crate::storage::{Storage, StorageError};
use crate::storage_role::{rotation, StorageRole};
use crate::wire::{AdminAction, ClientResult, Wire, TAG};
use keys::{recover_base, Keys};
use links::Link;
pub use links::LinkConfig;

/// The page-service table name keystore pages are written under.
pub use crate::storage_role::keystore_flush::KEYSTORE_TABLE;

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
    /// The storage role (step-up, checkpoints, keystore flush, pick-up): its decisions.
    role: StorageRole,
    /// Committed entries not applied yet (a drop waiting for a drain worker's copy holds up
    /// the ones behind it).
    backlog: std::collections::VecDeque<Entry>,
}

struct Inspector(Arc<Mutex<Core>>);

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|e| e.into_inner())
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

/// The raft state on disk; `None` when the node cannot start (reported).
fn load_raft(
    cfg: &ReplicaConfig,
    disk: Arc<dyn Storage>,
    obs: &Arc<dyn Observer>,
) -> Option<(LogStore, Recovered)> {
    let id = cfg.id;
    let log_store =
        LogStore::new(disk).cutting_damage(planted!(cfg.knobs, CutsDamageLikeATornTail));
    match log_store.load() {
        Ok(r) => Some((log_store, r)),
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
            None
        }
    }
}

/// The store a restarted replica starts from (see [`keys::recover_base`]).
async fn recover_store(
    cfg: &ReplicaConfig,
    ps: &PsClient,
    keys: &Keys,
    log: &[Entry],
    obs: &Arc<dyn Observer>,
) -> Store {
    let genesis = || {
        let mut s = Store::default();
        s.keystore = cfg.keystore.clone();
        s
    };
    let (store, base_note) = match recover_base(ps, keys, log).await {
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
        cfg.id,
        Event::Storage(StorageEvent::Recovered { from: base_note }),
    );
    store
}

/// The raft core restored from its disk, over `store`.
fn restore_raft(
    cfg: &ReplicaConfig,
    rec: Recovered,
    store: &Store,
    obs: &Arc<dyn Observer>,
) -> Raft {
    let id = cfg.id;
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
    obs.event(
        id,
        rotation::keystore_event(&store.keystore, false, "recovered"),
    );
    raft
}

/// The receiver (datagrams into the input queue) and the ticker.
fn spawn_inputs(
    id: NodeId,
    tick_ms: u64,
    ep: &Arc<Endpoint>,
    obs: &Arc<dyn Observer>,
) -> mpsc::UnboundedReceiver<Input> {
    let (tx, rx) = mpsc::unbounded::<Input>();
    let (ep2, tx2) = (ep.clone(), tx.clone());
    madsim::task::spawn(guarded(obs.clone(), id, async move {
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
    let tick = Duration::from_millis(tick_ms);
    madsim::task::spawn(async move {
        loop {
            madsim::time::sleep(tick).await;
            if tx.unbounded_send(Input::Tick).is_err() {
                return;
            }
        }
    });
    rx
}

/// Checkpoints (leader) and pick-ups (followers) run beside the raft driver.
fn spawn_storage_loops(node: &Arc<Node>) {
    let n = node.clone();
    madsim::task::spawn(guarded(node.obs.clone(), node.id, async move {
        let every = Duration::from_millis(n.cfg.checkpoint_interval_ms);
        loop {
            madsim::time::sleep(every).await;
            n.checkpoint_once(false).await;
        }
    }));
    let n = node.clone();
    madsim::task::spawn(guarded(node.obs.clone(), node.id, async move {
        let every = Duration::from_millis(n.cfg.pickup_interval_ms);
        loop {
            madsim::time::sleep(every).await;
            n.pick_up().await;
        }
    }));
}

async fn run_inner(cfg: ReplicaConfig, disk: Arc<dyn Storage>, obs: Arc<dyn Observer>) {
    let id = cfg.id;
    let addr = cfg.members[&id];
    let Some((log_store, rec)) = load_raft(&cfg, disk, &obs) else {
        return;
    };
    let ps_bind = SocketAddr::new(addr.ip(), crate::wire::PS_CLIENT_PORT);
    // A session of its own per incarnation: request ids restart at 1 without colliding with
    // the ids a previous incarnation used, which the page service may still remember.
    let session = cfg.rng_seed;
    let ps = match PsClient::bind(ps_bind, cfg.page_service, id, session, obs.clone()).await {
        Ok(ps) => ps,
        Err(e) => return crate::net::cannot_bind(&*obs, id, ps_bind, &e),
    };
    let keys = Keys {
        kms: ps.kms(cfg.kms),
        keks: Mutex::new(BTreeMap::new()),
    };
    let store = recover_store(&cfg, &ps, &keys, &rec.entries, &obs).await;
    let raft = restore_raft(&cfg, rec, &store, &obs);
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
        role: StorageRole::new(cfg.knobs.clone()),
        backlog: Default::default(),
    }));
    obs.attach(id, Arc::new(Inspector(core.clone())));

    let Some(ep) = crate::net::bind(&*obs, id, addr).await else {
        return;
    };
    let mut rx = spawn_inputs(id, cfg.tick_ms, &ep, &obs);
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
    spawn_storage_loops(&node);
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
                    let (n, lease) = (self.clone(), c.role.lease());
                    madsim::task::spawn(guarded(self.obs.clone(), self.id, async move {
                        n.rotate(client, id, session, action, lease).await
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
        let c = &mut *c;
        let flush = c.role.maybe_flush_keystore(&c.store);
        self.exec_all(flush.into_iter().collect());
    }

    /// Keeps the storage role in step with the raft role (see [`StorageRole::follow_role`]).
    fn follow_role(self: &Arc<Self>, c: &mut Core) {
        let (role, term) = (c.raft.role(), c.raft.term());
        let cmds = c.role.follow_role(&mut c.store, role, term);
        self.exec_all(cmds);
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
    fn apply_backlog(self: &Arc<Self>, c: &mut Core) {
        while let Some(e) = c.backlog.front() {
            if let crate::raft::Op::DropCollection { name } = &e.op {
                let (name, index) = (name.clone(), e.index);
                let c = &mut *c;
                if let Err(busy) = c.role.admit_drop(&mut c.store, &name, index) {
                    self.exec_all(busy);
                    return;
                }
            }
            let e = c.backlog.pop_front().expect("front exists");
            let executed = self.apply_entry(c, &e);
            if let (true, crate::raft::Op::Rotate(r)) = (executed, &e.op) {
                let follower = c.raft.role() != Role::Leader;
                self.exec(rotation::applied(&c.store.keystore, r, &e, follower));
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
