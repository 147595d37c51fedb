//! The replica node: async tasks that drive the raft core and the state machine over the
//! (simulated) network and disk. All decisions live in the pure cores; this file only moves
//! messages, persists before sending, applies, and answers clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use madsim::net::Endpoint;

use crate::invariant::classify_panic;
use crate::knobs::{Knobs, KnownBug};
use crate::log_store::LogStore;
use crate::observe::{Event, Inspect, NodeStatus, Observer};
use crate::raft::{Entry, Index, NodeId, ProposeError, Raft, RaftConfig, Role, Term};
use crate::state::{Collection, StateMachine};
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
}

struct Pending {
    client: SocketAddr,
    id: u64,
    term: Term,
}

/// The node's in-memory state, shared between its task and the inspection handle.
struct Core {
    raft: Raft,
    sm: StateMachine,
    pending: BTreeMap<Index, Pending>,
    links: BTreeMap<NodeId, Link>,
}

struct Inspector(Arc<Mutex<Core>>);

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inspect for Inspector {
    fn status(&self) -> NodeStatus {
        let c = lock(&self.0);
        NodeStatus {
            id: c.raft.id(),
            term: c.raft.term(),
            role: c.raft.role(),
            leader: c.raft.leader(),
            commit: c.raft.commit_index(),
            last_applied: c.sm.applied_index(),
            last_index: c.raft.last_index(),
            last_term: c.raft.last_term(),
            hashes: c.sm.hashes(),
        }
    }
    fn read_all(&self) -> BTreeMap<String, Collection> {
        lock(&self.0).sm.collections().clone()
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

async fn run_inner(cfg: ReplicaConfig, disk: Arc<dyn Storage>, obs: Arc<dyn Observer>) {
    let id = cfg.id;
    let addr = cfg.members[&id];
    let store = LogStore::new(disk);
    let rec = match store.load() {
        Ok(r) => r,
        Err(e) => {
            // A dead incarnation's disk handle, or a corrupt disk: nothing sane to do.
            obs.event(id, Event::Warn(format!("cannot load raft state: {e}")));
            return;
        }
    };
    let mut rcfg = RaftConfig::new(id, cfg.members.keys().copied().collect(), cfg.rng_seed);
    rcfg.volatile_term = cfg.knobs.on(KnownBug::VolatileRaftTerm);
    let log_len = rec.entries.len() as Index;
    let raft = Raft::new(rcfg, rec.hard, rec.entries);
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
        sm: StateMachine::default(),
        pending: BTreeMap::new(),
        links,
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

    let driver = Driver {
        id,
        cfg,
        store,
        obs,
        ep,
        core,
    };
    // Replay what the restored commit hint already covers.
    driver.process().await;
    while let Some(first) = rx.next().await {
        let mut input = Some(first);
        while let Some(i) = input {
            driver.handle(i);
            input = rx.try_recv().ok();
        }
        driver.process().await;
    }
}

struct Driver {
    id: NodeId,
    cfg: ReplicaConfig,
    store: LogStore,
    obs: Arc<dyn Observer>,
    ep: Arc<Endpoint>,
    core: Arc<Mutex<Core>>,
}

impl Driver {
    fn handle(&self, input: Input) {
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
            Input::Net(Wire::Reply { .. }, _) => {} // replicas send no requests to clients
        }
    }

    /// Persist, then send, then apply: the order that keeps raft's promises.
    async fn process(&self) {
        let ready = lock(&self.core).raft.take_ready();
        if ready.is_empty() {
            return;
        }
        // The lock is not held across the fsync: inspection must not block on the disk.
        let persisted = match self.store.write(ready.hard_state, &ready.log_ops) {
            Ok(w) => {
                if w.any() && self.cfg.fsync_ms > 0 {
                    madsim::time::sleep(Duration::from_millis(self.cfg.fsync_ms)).await;
                }
                self.store.sync(w)
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
            let executed = c.sm.apply(e);
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
