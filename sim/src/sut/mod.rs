//! The system-under-test API: what a raft key-value system implements to run in a faultline
//! world, and what the harness hands it. The harness owns everything else — scenarios, the
//! timeline and chaos faults, the network's fate of every message, the disk's crash model, the
//! workload and its history, the checkers, replay, hunt, shrink and reports.
//!
//! A system implements [`System`] (a factory, registered once per process with [`register`])
//! and [`Cluster`] (one seed's cluster). For each node incarnation the harness calls
//! [`Cluster::start`] inside that node's madsim node with a [`NodeCtx`]: its id, a fresh
//! crash-faithful disk handle, the network rules it must ask before each message, the flush
//! gate it awaits before each fsync, and the observation sink. A killed node's tasks are
//! dropped by madsim and its disk loses what was not synced; the next incarnation gets a new
//! `NodeCtx`. Clients run on their own madsim node ([`Cluster::client`]).
//!
//! What the system reports ([`HostedEvent`]: votes, appends, flushes, truncations, commits,
//! applies) feeds the generic checkers (`check::hosted_checks`); its client outcomes feed the
//! linearizability and durability checks; [`Cluster::status`] feeds liveness and state
//! agreement.

mod faults;
pub mod net;
mod phases;
mod workload;
pub mod world;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};

pub use crate::check::hosted::{HostedEvent, HostedRecord, HostedStatus};
pub use engine::storage::{Storage, StorageError};
pub use net::{FlushGate, Links};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The node id of the client side in [`Links`] (every client node).
pub const CLIENTS: u8 = 0;

/// A raft node's address (`n1` is 10.0.0.1:7000).
pub fn addr_of(node: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, node)), 7000)
}

/// Client `c`'s IP (each client is its own madsim node).
pub fn client_ip(client: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        10,
        0,
        1 + (client / 250) as u8,
        1 + (client % 250) as u8,
    ))
}

/// A system that can be hosted: a factory of one seed's cluster.
pub trait System: Send + Sync + 'static {
    /// The name scenarios give in `"system"`.
    fn name(&self) -> &'static str;
    /// One line for `list` and reports, e.g. the library version linked in.
    fn describe(&self) -> String;
    /// A cluster of `spec.nodes` voters for one seed (called inside the simulation).
    fn cluster(&self, spec: ClusterSpec) -> Arc<dyn Cluster>;
    /// Runs one seed's whole simulation (`run`) on the seed's thread. Override to pin
    /// process-wide state the system's libraries draw from to the seed (tokio's thread-local
    /// RNG behind unbiased `select!`), so a seed runs the same alone, in a sweep or a replay.
    fn around_seed(&self, seed: u64, run: &mut dyn FnMut()) {
        let _ = seed;
        run()
    }
}

/// One seed's cluster as the harness builds it.
#[derive(Clone)]
pub struct ClusterSpec {
    /// Voters `1..=nodes`.
    pub nodes: u8,
    /// The seed (derive the system's own random streams from it, never from the OS).
    pub seed: u64,
    /// The harness's network rules (clients ask them too, as node [`CLIENTS`]).
    pub links: Links,
}

/// One seed's cluster.
pub trait Cluster: Send + Sync {
    /// Starts an incarnation of `ctx.node`; called inside its madsim node. Spawn the node's
    /// tasks and return; they run until the harness kills the node.
    fn start(&self, ctx: NodeCtx) -> BoxFuture<'static, ()>;
    /// Once, after every node's first incarnation started (e.g. initialize membership); runs
    /// on the client node. An error is a finding against the system (`crash`).
    fn bootstrap(&self) -> BoxFuture<'static, Result<(), String>>;
    /// The harness killed `node` (its tasks are gone): drop any handle kept to it.
    fn killed(&self, node: u8);
    /// A client; created and used on client `client`'s madsim node.
    fn client(&self, client: u32) -> Box<dyn KvClient>;
    /// What a live node says about itself now (`None`: not started).
    fn status(&self, node: u8) -> Option<HostedStatus>;
}

/// What one node incarnation gets from the harness.
pub struct NodeCtx {
    pub node: u8,
    /// 1 for the first start, +1 per restart.
    pub incarnation: u64,
    /// Seed for this incarnation's own random draws.
    pub seed: u64,
    /// A crash-faithful disk: reads see unsynced writes; a kill keeps what `sync` made durable
    /// (an unsynced append may survive as a torn, sector-aligned prefix). This incarnation's
    /// handle: a killed incarnation's handle fails with `Fenced`.
    pub disk: Arc<dyn Storage>,
    /// Await before each fsync: the harness's fsync latency and held flushes.
    pub flush: FlushGate,
    pub links: Links,
    pub obs: Obs,
}

/// The observation sink of one node incarnation.
#[derive(Clone)]
pub struct Obs {
    pub(crate) node: u8,
    pub(crate) incarnation: u64,
    pub(crate) sink: Arc<dyn Fn(u8, u64, HostedEvent) + Send + Sync>,
}

impl Obs {
    /// Reports an event, stamped by the harness with node, incarnation and simulated time.
    pub fn emit(&self, ev: HostedEvent) {
        (self.sink)(self.node, self.incarnation, ev)
    }
    pub fn node(&self) -> u8 {
        self.node
    }
    /// A sink that drops everything (tests of an adapter's parts).
    pub fn discard(node: u8) -> Obs {
        Obs {
            node,
            incarnation: 1,
            sink: Arc::new(|_, _, _| {}),
        }
    }
    /// A sink calling `f` (tests of an adapter's parts).
    pub fn with(node: u8, f: impl Fn(u8, u64, HostedEvent) + Send + Sync + 'static) -> Obs {
        Obs {
            node,
            incarnation: 1,
            sink: Arc::new(f),
        }
    }
}

/// One key-value operation of the workload. Values are unique per write, so a value names the
/// write that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    Put {
        key: String,
        value: Vec<u8>,
    },
    Delete {
        key: String,
    },
    /// A read the system must answer linearizably (through its log or a leader lease).
    Get {
        key: String,
    },
}

/// An operation with its identity (client, sequence number): the same on every retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvCall {
    pub client: u32,
    pub seq: u64,
    pub op: KvOp,
}

/// How an applied entry names the client call it carries (`c3#17`): the prefix of
/// `HostedEvent::Applied::op`, which the checkers match to the client history.
pub fn op_label(client: u32, seq: u64) -> String {
    format!("c{client}#{seq}")
}

/// What the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOutcome {
    /// Took effect once, as entry `(index, term)`; a `Get` carries what it read.
    Acked {
        index: u64,
        term: u64,
        read: Option<Option<Vec<u8>>>,
    },
    /// Certainly did not take effect (the system says so; the checkers hold it to that).
    Failed(String),
    /// May or may not have taken effect (timeout, lost reply).
    Unknown(String),
}

/// A client of the hosted cluster.
pub trait KvClient: Send {
    fn execute(&mut self, call: KvCall) -> BoxFuture<'_, KvOutcome>;
}

static SYSTEMS: OnceLock<RwLock<Vec<Arc<dyn System>>>> = OnceLock::new();

/// Registers a system for scenarios naming it (a binary linking a system calls this before
/// `cli::main`). Registering a name twice keeps the first.
pub fn register(system: Arc<dyn System>) {
    let mut all = SYSTEMS
        .get_or_init(|| RwLock::new(Vec::new()))
        .write()
        .unwrap();
    if !all.iter().any(|s| s.name() == system.name()) {
        all.push(system);
    }
}

/// The registered system called `name`.
pub fn find(name: &str) -> Option<Arc<dyn System>> {
    SYSTEMS
        .get()?
        .read()
        .unwrap()
        .iter()
        .find(|s| s.name() == name)
        .cloned()
}

/// Names of the registered systems.
pub fn registered() -> Vec<String> {
    SYSTEMS.get().map_or(vec![], |s| {
        s.read()
            .unwrap()
            .iter()
            .map(|s| s.name().to_string())
            .collect()
    })
}
