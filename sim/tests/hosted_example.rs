//! Testing your own system with faultline: a small replicated key-value store written against
//! the system-under-test API (`sim::sut`), and plain `#[test]`s that run it through real seeds.
//!
//! Run it with `cargo test -p faultline --test hosted_example`.
//!
//! # What a system must do
//!
//! - **Be a [`System`]**: a named factory of one seed's [`Cluster`], registered with
//!   [`sut::register`] before a scenario naming it (`"system": "example"`) is parsed.
//! - **Start a node when asked** ([`Cluster::start`], inside that node's madsim node): read its
//!   state back from `ctx.disk`, spawn its tasks, return. A kill drops those tasks and keeps
//!   only what `sync` made durable (an unsynced append may survive as a torn prefix); the
//!   restart is a new `start` with a new `NodeCtx`.
//! - **Await `ctx.flush.wait()` before each fsync**: the harness draws its latency and can hold
//!   a node's flushes (a stalled disk).
//! - **Ask `ctx.links` about every message**: `deliver(from, to)` when sending (`None`: lost,
//!   else the delay to sleep before it leaves), `open(from, to)` when it arrives (a partition
//!   that started meanwhile catches it in flight). Clients are node [`CLIENTS`].
//! - **Report what it does** ([`HostedEvent`] through `ctx.obs`) at the moment it does it:
//!   what it loaded, its vote, appends, fsyncs, commits, applies (naming each client operation
//!   with [`sut::op_label`]), leadership. The generic checkers work from these.
//! - **Answer clients truthfully** ([`KvOutcome`]): `Acked` names the operation's own
//!   `(index, term)` and what a read returned; `Failed` only when it certainly did not happen;
//!   `Unknown` otherwise (a timeout).
//! - **Say where it is** ([`Cluster::status`]): term, leader, last log index, committed,
//!   applied and a digest of the state machine, for liveness and state agreement.
//!
//! # The example system
//!
//! A primary/backup log with a fixed leader: `n1` leads term 1 forever (so it is unavailable
//! while `n1` is down, but never unsafe). The leader appends each client operation to its log
//! file, fsyncs it in the background, then replicates it; followers append, fsync and
//! acknowledge. An entry commits once a majority of the voters (the leader included) hold it
//! durably; then every node applies it, and the leader answers the client. Reads go through
//! the log too. A restarted node reloads its log; the leader re-sends every follower what it
//! has not acknowledged on each heartbeat.
//!
//! `example-unsynced-self` is the same system with a planted bug: the leader replicates
//! entries before its own fsync and counts itself toward the majority as soon as it has
//! appended. A stalled leader disk then lets it acknowledge writes that only one follower
//! holds durably; a leader crash loses them, and the harness finds it.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures::StreamExt;
use madsim::net::Endpoint;
use reports::ViolationKind;
use sim::scenario::Scenario;
use sim::sut::{
    self, BoxFuture, Cluster, ClusterSpec, HostedEvent, HostedStatus, KvCall, KvClient, KvOp,
    KvOutcome, Links, NodeCtx, Obs, Storage, System, CLIENTS,
};

// ---------------------------------------------------------------------------------------------
// The system
// ---------------------------------------------------------------------------------------------

const LEADER: u8 = 1;
const TERM: u64 = 1;
const LOG: &str = "log";
/// The one madsim tag every message of this system travels on.
const TAG: u64 = 7;
/// Leader heartbeat: re-sends each follower everything it has not acknowledged.
const HEARTBEAT: Duration = Duration::from_millis(20);
/// Entries per append message.
const BATCH: usize = 64;
const CLIENT_TIMEOUT: Duration = Duration::from_millis(1000);

/// The system, registered under its name (`bug`: the planted bug described in the module doc).
struct Example {
    bug: bool,
}

impl System for Example {
    fn name(&self) -> &'static str {
        if self.bug {
            "example-unsynced-self"
        } else {
            "example"
        }
    }
    fn describe(&self) -> String {
        format!(
            "{}: fixed-leader primary/backup log (sim/tests/hosted_example.rs)",
            self.name()
        )
    }
    fn cluster(&self, spec: ClusterSpec) -> Arc<dyn Cluster> {
        Arc::new(ExampleCluster {
            voters: spec.nodes,
            bug: self.bug,
            links: spec.links,
            live: Mutex::new(BTreeMap::new()),
        })
    }
}

/// Registers both variants (idempotent: every test calls it).
fn register() {
    sut::register(Arc::new(Example { bug: false }));
    sut::register(Arc::new(Example { bug: true }));
}

/// What travels between nodes and clients (typed: `send_to_raw` needs no serialization).
enum Msg {
    /// Client -> leader.
    Request(KvCall),
    /// Leader -> client.
    Reply { seq: u64, outcome: KvOutcome },
    /// Leader -> follower: entries `first..` and the leader's commit index (empty: heartbeat).
    Append {
        first: u64,
        entries: Vec<KvCall>,
        commit: u64,
    },
    /// Follower -> leader: "I durably hold your log through `durable`".
    Ack { durable: u64 },
}

struct Envelope {
    from: u8,
    msg: Msg,
}

/// A node's (or client's) end of the network: every message goes through the harness's rules.
#[derive(Clone)]
struct Net {
    ep: Endpoint,
    links: Links,
    me: u8,
}

impl Net {
    /// Sends `msg` to node `to` at `dst` as the harness decides: lost, or delivered after its
    /// drawn delay (slept in a task of the sender, so a message in flight dies with its sender).
    fn send(&self, to: u8, dst: SocketAddr, msg: Msg) {
        let Some(delay) = self.links.deliver(self.me, to) else {
            return;
        };
        let (ep, from) = (self.ep.clone(), self.me);
        madsim::task::spawn(async move {
            madsim::time::sleep(delay).await;
            // A node that is down has no endpoint: the message vanishes.
            let _ = ep
                .send_to_raw(dst, TAG, Box::new(Envelope { from, msg }))
                .await;
        });
    }

    /// The next message the network lets through (a partition catches messages in flight).
    async fn recv(&self) -> Option<(Envelope, SocketAddr)> {
        loop {
            let (payload, addr) = self.ep.recv_from_raw(TAG).await.ok()?;
            let Ok(env) = payload.downcast::<Envelope>() else {
                continue;
            };
            if self.links.open(env.from, self.me) {
                return Some((*env, addr));
            }
        }
    }
}

/// The log file: one length-prefixed record per entry (index = position, term always 1).
fn encode(call: &KvCall) -> Vec<u8> {
    let (kind, key, value): (u8, &str, &[u8]) = match &call.op {
        KvOp::Put { key, value } => (0, key, value),
        KvOp::Delete { key } => (1, key, &[]),
        KvOp::Get { key } => (2, key, &[]),
    };
    let mut body = call.client.to_le_bytes().to_vec();
    body.extend(call.seq.to_le_bytes());
    body.push(kind);
    body.extend((key.len() as u32).to_le_bytes());
    body.extend(key.as_bytes());
    body.extend(value);
    let mut record = (body.len() as u32).to_le_bytes().to_vec();
    record.extend(body);
    record
}

/// The entries of a log file and the length of its valid part: a torn last record (a crash
/// kept only part of an unsynced append) is dropped. The harness's disk tears writes but never
/// corrupts them; a real system would add a checksum per record.
fn decode(bytes: &[u8]) -> (Vec<KvCall>, usize) {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let (mut calls, mut at) = (vec![], 0);
    while at + 4 <= bytes.len() && at + 4 + u32_at(at) <= bytes.len() {
        let b = &bytes[at + 4..at + 4 + u32_at(at)];
        let klen = u32::from_le_bytes(b[13..17].try_into().unwrap()) as usize;
        let key = String::from_utf8(b[17..17 + klen].to_vec()).unwrap();
        let value = b[17 + klen..].to_vec();
        calls.push(KvCall {
            client: u32::from_le_bytes(b[0..4].try_into().unwrap()),
            seq: u64::from_le_bytes(b[4..12].try_into().unwrap()),
            op: match b[12] {
                0 => KvOp::Put { key, value },
                1 => KvOp::Delete { key },
                _ => KvOp::Get { key },
            },
        });
        at += 4 + b.len();
    }
    (calls, at)
}

/// One node incarnation's state (shared with [`Cluster::status`]).
#[derive(Default)]
struct State {
    log: Vec<KvCall>,
    /// Entries `1..=durable` are fsynced.
    durable: u64,
    committed: u64,
    applied: u64,
    kv: BTreeMap<String, Vec<u8>>,
    /// Follower: the leader's commit index as last heard.
    leader_commit: u64,
    /// Leader: per follower, what it acknowledged holding durably.
    matched: BTreeMap<u8, u64>,
    /// Leader: the clients waiting on an entry (their call's seq and address).
    waiting: BTreeMap<u64, (u64, SocketAddr)>,
}

struct ExampleCluster {
    voters: u8,
    bug: bool,
    links: Links,
    /// Live nodes' state, for `status`.
    live: Mutex<BTreeMap<u8, Arc<Mutex<State>>>>,
}

/// What a node's main loop reacts to.
enum Input {
    Net(Envelope, SocketAddr),
    /// The log is durable through this index.
    Synced(u64),
    Heartbeat,
}

/// One node incarnation.
struct Node {
    id: u8,
    voters: u8,
    bug: bool,
    net: Net,
    obs: Obs,
    disk: Arc<dyn Storage>,
    st: Arc<Mutex<State>>,
    /// Wakes the flusher after an append.
    wake_flusher: UnboundedSender<()>,
}

impl Cluster for ExampleCluster {
    fn start(&self, ctx: NodeCtx) -> BoxFuture<'static, ()> {
        let (voters, bug) = (self.voters, self.bug);
        let st = Arc::new(Mutex::new(State::default()));
        self.live.lock().unwrap().insert(ctx.node, st.clone());
        Box::pin(async move {
            // Recover: the log's valid part; a torn tail is cut off durably before anything
            // is appended after it.
            let bytes = ctx.disk.read(LOG).expect("read the log");
            let (log, valid) = decode(&bytes);
            if valid < bytes.len() {
                ctx.disk
                    .replace(LOG, &bytes[..valid])
                    .expect("cut the torn tail");
                ctx.flush.wait().await;
                ctx.disk.sync(LOG).expect("sync the log");
            }
            let n = log.len() as u64;
            ctx.obs.emit(HostedEvent::Loaded {
                entries: (1..=n).map(|i| (i, TERM)).collect(),
                covered: 0,
            });
            // The configuration is the vote: everyone follows n1 in term 1, durably.
            ctx.obs.emit(HostedEvent::Vote {
                term: TERM,
                voted_for: Some(LEADER),
                committed: true,
            });
            if ctx.node == LEADER {
                ctx.obs.emit(HostedEvent::Leader { term: TERM });
            }
            *st.lock().unwrap() = State {
                log,
                durable: n,
                ..State::default()
            };
            let net = Net {
                ep: Endpoint::bind(sut::addr_of(ctx.node)).await.expect("bind"),
                links: ctx.links.clone(),
                me: ctx.node,
            };
            let (inbox, rx) = unbounded();
            let (wake_flusher, wake) = unbounded();
            let node = Arc::new(Node {
                id: ctx.node,
                voters,
                bug,
                net: net.clone(),
                obs: ctx.obs.clone(),
                disk: ctx.disk.clone(),
                st: st.clone(),
                wake_flusher,
            });
            let tx = inbox.clone();
            madsim::task::spawn(async move {
                while let Some((env, addr)) = net.recv().await {
                    let _ = tx.unbounded_send(Input::Net(env, addr));
                }
            });
            madsim::task::spawn(flusher(ctx, st, wake, inbox.clone()));
            if node.id == LEADER {
                madsim::task::spawn(async move {
                    loop {
                        madsim::time::sleep(HEARTBEAT).await;
                        if inbox.unbounded_send(Input::Heartbeat).is_err() {
                            return;
                        }
                    }
                });
            }
            madsim::task::spawn(node.run(rx));
        })
    }

    fn bootstrap(&self) -> BoxFuture<'static, Result<(), String>> {
        // Membership and leadership are fixed: nothing to set up.
        Box::pin(async { Ok(()) })
    }

    fn killed(&self, node: u8) {
        self.live.lock().unwrap().remove(&node);
    }

    fn client(&self, client: u32) -> Box<dyn KvClient> {
        Box::new(ExampleClient {
            id: client,
            links: self.links.clone(),
            net: None,
        })
    }

    fn status(&self, node: u8) -> Option<HostedStatus> {
        let st = self.live.lock().unwrap().get(&node)?.clone();
        let st = st.lock().unwrap();
        let mut h = DefaultHasher::new();
        st.kv.hash(&mut h);
        Some(HostedStatus {
            term: TERM,
            leader: Some(LEADER),
            last_log: st.log.len() as u64,
            committed: st.committed,
            applied: st.applied,
            state_digest: h.finish(),
        })
    }
}

/// Fsyncs the log in the background (appends go on meanwhile) and reports each fsync.
async fn flusher(
    ctx: NodeCtx,
    st: Arc<Mutex<State>>,
    mut wake: UnboundedReceiver<()>,
    inbox: UnboundedSender<Input>,
) {
    while wake.next().await.is_some() {
        while wake.try_recv().is_ok() {}
        ctx.flush.wait().await;
        let upto = st.lock().unwrap().log.len() as u64;
        ctx.disk.sync(LOG).expect("sync the log");
        ctx.obs.emit(HostedEvent::Flushed { upto });
        let _ = inbox.unbounded_send(Input::Synced(upto));
    }
}

impl Node {
    /// The main loop: takes every input queued, appends what it brought in one write, then
    /// replicates, commits and applies.
    async fn run(self: Arc<Self>, mut rx: UnboundedReceiver<Input>) {
        while let Some(first) = rx.next().await {
            let mut st = self.st.lock().unwrap();
            let (from, durable) = (st.log.len(), st.durable);
            let mut heartbeat = false;
            // Follower: tell the leader what we hold durably (after its appends, our fsyncs).
            let mut ack = false;
            let mut input = Some(first);
            while let Some(i) = input {
                match i {
                    Input::Net(env, addr) => match env.msg {
                        Msg::Request(call) if self.id == LEADER => {
                            st.log.push(call.clone());
                            let index = st.log.len() as u64;
                            st.waiting.insert(index, (call.seq, addr));
                        }
                        Msg::Append {
                            first,
                            entries,
                            commit,
                        } => {
                            // Our log is a prefix of the leader's: take what extends it.
                            for (i, e) in entries.into_iter().enumerate() {
                                if first + i as u64 == st.log.len() as u64 + 1 {
                                    st.log.push(e);
                                }
                            }
                            st.leader_commit = st.leader_commit.max(commit);
                            ack = true;
                        }
                        Msg::Ack { durable } => {
                            let m = st.matched.entry(env.from).or_default();
                            *m = (*m).max(durable);
                        }
                        _ => {}
                    },
                    Input::Synced(upto) => {
                        st.durable = st.durable.max(upto);
                        ack = true;
                    }
                    Input::Heartbeat => heartbeat = true,
                }
                input = rx.try_recv().ok();
            }
            if st.log.len() > from {
                let bytes: Vec<u8> = st.log[from..].iter().flat_map(encode).collect();
                self.disk.append(LOG, &bytes).expect("append to the log");
                let indexes = from as u64 + 1..=st.log.len() as u64;
                self.obs.emit(HostedEvent::Appended {
                    entries: indexes.map(|i| (i, TERM)).collect(),
                });
                let _ = self.wake_flusher.unbounded_send(());
            }
            if self.id == LEADER {
                let grew = st.log.len() > from || st.durable > durable;
                if heartbeat || grew {
                    self.replicate(&mut st);
                }
                self.advance_commit(&mut st);
            } else {
                if ack {
                    let durable = st.durable;
                    self.net
                        .send(LEADER, sut::addr_of(LEADER), Msg::Ack { durable });
                }
                let target = st.leader_commit.min(st.log.len() as u64);
                self.commit(&mut st, target);
            }
        }
    }

    /// Sends each follower what it has not acknowledged (a heartbeat when that is nothing).
    fn replicate(&self, st: &mut State) {
        // Only entries durable here leave (so a follower's log is always a prefix of ours,
        // even after we crash). The bug: send what is merely appended.
        let upto = if self.bug {
            st.log.len() as u64
        } else {
            st.durable
        };
        for f in 2..=self.voters {
            let matched = st.matched.get(&f).copied().unwrap_or(0).min(upto);
            let end = upto.min(matched + BATCH as u64);
            let msg = Msg::Append {
                first: matched + 1,
                entries: st.log[matched as usize..end as usize].to_vec(),
                commit: st.committed,
            };
            self.net.send(f, sut::addr_of(f), msg);
        }
    }

    /// Commits what a majority holds durably.
    fn advance_commit(&self, st: &mut State) {
        // The bug: the leader counts itself as soon as it has appended, before its fsync.
        let own = if self.bug {
            st.log.len() as u64
        } else {
            st.durable
        };
        let mut held: Vec<u64> = (2..=self.voters)
            .map(|f| st.matched.get(&f).copied().unwrap_or(0))
            .chain([own])
            .collect();
        held.sort_unstable_by(|a, b| b.cmp(a));
        let quorum = held[self.voters as usize / 2].min(st.log.len() as u64);
        self.commit(st, quorum);
    }

    /// Learns that everything through `upto` is committed and applies it; the leader answers
    /// the clients waiting on what it applied.
    fn commit(&self, st: &mut State, upto: u64) {
        if upto <= st.committed {
            return;
        }
        st.committed = upto;
        self.obs.emit(HostedEvent::Committed {
            index: upto,
            term: TERM,
        });
        while st.applied < st.committed {
            st.applied += 1;
            let index = st.applied;
            let call = st.log[index as usize - 1].clone();
            let (what, read) = match call.op {
                KvOp::Put { key, value } => {
                    let what = format!("put {key}={}", String::from_utf8_lossy(&value));
                    st.kv.insert(key, value);
                    (what, None)
                }
                KvOp::Delete { key } => {
                    st.kv.remove(&key);
                    (format!("delete {key}"), None)
                }
                KvOp::Get { key } => (format!("get {key}"), Some(st.kv.get(&key).cloned())),
            };
            self.obs.emit(HostedEvent::Applied {
                index,
                term: TERM,
                op: format!("{} {what}", sut::op_label(call.client, call.seq)),
            });
            if let Some((seq, addr)) = st.waiting.remove(&index) {
                let outcome = KvOutcome::Acked {
                    index,
                    term: TERM,
                    read,
                };
                self.net.send(CLIENTS, addr, Msg::Reply { seq, outcome });
            }
        }
    }
}

/// A client: sends each call to n1 and waits for its answer.
struct ExampleClient {
    id: u32,
    links: Links,
    /// Bound on first use (on the client's own madsim node).
    net: Option<Net>,
}

impl KvClient for ExampleClient {
    fn execute(&mut self, call: KvCall) -> BoxFuture<'_, KvOutcome> {
        Box::pin(async move {
            if self.net.is_none() {
                let ep = Endpoint::bind((sut::client_ip(self.id), 0)).await;
                let ep = ep.expect("bind a client endpoint");
                let links = self.links.clone();
                self.net = Some(Net {
                    ep,
                    links,
                    me: CLIENTS,
                });
            }
            let net = self.net.as_ref().unwrap();
            if net.links.is_down(LEADER) {
                // Connection refused: the call never left, so it certainly did not happen.
                return KvOutcome::Failed("n1 is down".into());
            }
            let seq = call.seq;
            net.send(LEADER, sut::addr_of(LEADER), Msg::Request(call));
            let reply = async {
                while let Some((env, _)) = net.recv().await {
                    match env.msg {
                        // A late answer to an earlier call that timed out is skipped.
                        Msg::Reply { seq: s, outcome } if s == seq => return Some(outcome),
                        _ => {}
                    }
                }
                None
            };
            match madsim::time::timeout(CLIENT_TIMEOUT, reply).await {
                Ok(Some(outcome)) => outcome,
                _ => KvOutcome::Unknown("no answer from n1 within 1 s".into()),
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

const CHECKS: &str = r#"["raft", "durability", "linearizability", "dbhash", "liveness"]"#;

/// Follower restarts, a partitioned follower, a stalled follower disk, latency, loss, and the
/// leader killed and started again, on top of a lossy network.
fn faults_scenario(system: &str) -> Arc<Scenario> {
    let text = format!(
        r#"{{
  "name": "example-faults",
  "system": "{system}",
  "replicas": 3,
  "duration_ms": 6000,
  "workload": {{ "clients": 3, "ops_per_sec": 40, "keys": 12 }},
  "network": {{ "latency_ms": [1, 8], "loss_per_mille": 10 }},
  "timeline": [
    {{ "action": "restart", "at_ms": 700, "nodes": "n2", "down_ms": [200, 600] }},
    {{ "action": "partition", "at_ms": 1500, "nodes": "n3", "for_ms": 700 }},
    {{ "action": "hold_flushes", "at_ms": 2200, "nodes": "n2", "for_ms": 800 }},
    {{ "action": "restart", "at_ms": 2800, "nodes": "n2", "down_ms": [100, 300] }},
    {{ "action": "latency", "at_ms": 3000, "latency_ms": [5, 40], "for_ms": 800 }},
    {{ "action": "loss", "at_ms": 3700, "per_mille": 100, "for_ms": 600 }},
    {{ "action": "kill", "at_ms": 4400, "nodes": "n1" }},
    {{ "action": "start", "at_ms": 4900, "nodes": "n1" }},
    {{ "action": "restart", "at_ms": 5300, "nodes": "n3", "down_ms": [100, 400] }}
  ],
  "checks": {CHECKS},
  "liveness_timeout_ms": 5000
}}"#
    );
    parse(&text)
}

/// The leader's disk stalls, then the leader dies before it comes back.
fn stalled_leader_scenario(system: &str) -> Arc<Scenario> {
    let text = format!(
        r#"{{
  "name": "example-stalled-leader",
  "system": "{system}",
  "duration_ms": 2000,
  "workload": {{ "clients": 3, "ops_per_sec": 50, "keys": 30 }},
  "timeline": [
    {{ "action": "hold_flushes", "at_ms": 800, "nodes": "n1", "for_ms": 1000 }},
    {{ "action": "kill", "at_ms": 1200, "nodes": "n1" }},
    {{ "action": "start", "at_ms": 1600, "nodes": "n1" }}
  ],
  "checks": {CHECKS},
  "liveness_timeout_ms": 5000
}}"#
    );
    parse(&text)
}

fn parse(text: &str) -> Arc<Scenario> {
    Arc::new(Scenario::parse(text, "inline.json").unwrap_or_else(|e| panic!("{e}")))
}

fn run(scn: &Arc<Scenario>, seed: u64) -> reports::SeedReport {
    sim::world::run_seed(
        scn.clone(),
        seed,
        engine::Knobs::default(),
        sim::world::SeedOptions::default(),
        format!("hosted_example seed {seed}"),
    )
    .report
}

fn explain(r: &reports::SeedReport) -> String {
    let v: Vec<String> = r
        .violations
        .iter()
        .map(|v| format!("{:?}: {}", v.kind, v.message))
        .collect();
    format!("seed {}: {}", r.seed, v.join("\n"))
}

#[test]
fn correct_system_passes_faults_and_a_leader_restart() {
    register();
    for scn in [
        faults_scenario("example"),
        stalled_leader_scenario("example"),
    ] {
        for seed in 1..=5 {
            let r = run(&scn, seed);
            assert!(r.passed, "{}: {}", scn.name, explain(&r));
            let acked = r.ops_acked_fault_phase;
            assert!(acked > 0, "{} seed {seed}: nothing acknowledged", scn.name);
        }
    }
}

/// Random faults from the chaos controller: each seed draws its own mix and rate.
#[test]
fn correct_system_passes_random_chaos() {
    register();
    let text = format!(
        r#"{{
  "name": "example-chaos",
  "system": "example",
  "duration_ms": 8000,
  "workload": {{ "clients": 4, "ops_per_sec": 40, "keys": 15 }},
  "chaos": {{
    "faults": ["kill", "restart_all", "partition", "split", "one_way", "loss",
               "latency_spike", "link_latency", "hold_flushes"],
    "mean_interval_ms": 700,
    "swarm": true
  }},
  "checks": {CHECKS},
  "liveness_timeout_ms": 10000
}}"#
    );
    let scn = parse(&text);
    for seed in 1..=10 {
        let r = run(&scn, seed);
        assert!(r.passed, "{}", explain(&r));
    }
}

/// The log's decoder keeps every whole record and drops a torn last one, wherever a crash
/// cut the file.
#[test]
fn a_torn_last_record_is_dropped() {
    let calls: Vec<KvCall> = (1..=3)
        .map(|seq| KvCall {
            client: 1,
            seq,
            op: KvOp::Put {
                key: format!("k{seq}"),
                value: format!("c1-{seq}").into_bytes(),
            },
        })
        .collect();
    let records: Vec<Vec<u8>> = calls.iter().map(encode).collect();
    let bytes = records.concat();
    for cut in 0..=bytes.len() {
        let (got, valid) = decode(&bytes[..cut]);
        let whole = (0..=records.len())
            .rev()
            .find(|&k| records[..k].concat().len() <= cut)
            .unwrap();
        assert_eq!(got, calls[..whole], "cut at {cut}");
        assert_eq!(valid, records[..whole].concat().len(), "cut at {cut}");
    }
}

#[test]
fn same_seed_same_trace() {
    register();
    let scn = faults_scenario("example");
    assert_eq!(run(&scn, 7).trace_hash, run(&scn, 7).trace_hash);
    // Inside sweeps: one thread, two threads, and each seed run twice.
    let sweep = |jobs| {
        sim::runner::sweep(&sim::runner::Sweep {
            scenario: scn.clone(),
            scenario_arg: "example-faults".into(),
            knobs: engine::Knobs::default(),
            seeds: (1..=4).collect(),
            jobs,
            fail_fast: false,
            keep_full_trace: false,
            progress: false,
            determinism_every: 1,
        })
    };
    let (one, two) = (sweep(1), sweep(2));
    assert!(
        one.nondeterministic.is_empty(),
        "{:?}",
        one.nondeterministic
    );
    assert!(
        two.nondeterministic.is_empty(),
        "{:?}",
        two.nondeterministic
    );
    let hashes = |r: &sim::runner::SweepResult| -> Vec<(u64, String)> {
        r.all
            .iter()
            .map(|s| (s.seed, s.trace_hash.clone()))
            .collect()
    };
    assert_eq!(hashes(&one), hashes(&two));
}

#[test]
fn planted_bug_is_found() {
    register();
    let scn = stalled_leader_scenario("example-unsynced-self");
    // The leader acknowledges writes that only it (unsynced) and one follower hold; its crash
    // loses them, and later reads miss them. Today the client-history checker sees that:
    // `Linearizability` (a read returns a value older than an acknowledged write). Once the
    // hosted raft checkers land, `raft` will also report the commit without a durable quorum
    // (`RaftSafety`), and state agreement the followers that kept the lost entries.
    let found = (1..=10).map(|seed| run(&scn, seed)).find(|r| !r.passed);
    let r = found.expect("some seed of the first 10 finds the planted bug");
    assert!(
        r.kinds().contains(&ViolationKind::Linearizability),
        "{}",
        explain(&r)
    );
}

#[test]
fn scenarios_a_system_cannot_run_are_refused() {
    register();
    let parse = |body: &str| {
        Scenario::parse(
            &format!(r#"{{"name": "x", "duration_ms": 1000, {body}}}"#),
            "x.json",
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let e = parse(r#""system": "no-such-system", "checks": ["raft"]"#);
    assert!(
        e.contains("system `no-such-system` is not built into this binary"),
        "{e}"
    );
    assert!(e.contains("example"), "names the systems it has: {e}");
    let e = parse(
        r#""system": "example", "checks": ["raft"], "timeline": [{"action": "rotate_kek", "at_ms": 100}]"#,
    );
    assert!(
        e.contains("`rotate_kek` is not available for hosted system `example`"),
        "{e}"
    );
    let e = parse(r#""system": "example", "checks": ["model"]"#);
    assert!(e.contains("engine-only check `model`"), "{e}");
}
