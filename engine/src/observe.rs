//! The observation interface: how the harness sees the engine without the engine knowing the
//! harness. Nodes report events as they happen and expose an [`Inspect`] handle for snapshots.

mod storage;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub use storage::{CheckpointFailure, StepUpStage, StorageEvent, Warning};

use crate::invariant::Abort;
use crate::keystore::{Keystore, KeystoreRef};
use crate::layered::{CheckpointMeta, Mode};
use crate::page_store::{BlockInfo, Published};
use crate::pages::Lsn;
use crate::raft::{Entry, Index, NodeId, Op, RaftEvent, Role, Session, Term};
use crate::state::{Collection, CollectionHash, Visible};
use crate::wire::Wire;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A node incarnation came up from its disk.
    Started {
        term: Term,
        voted_for: Option<NodeId>,
        log_len: Index,
        commit: Index,
        torn_bytes: u64,
    },
    Raft(RaftEvent),
    Applied {
        index: Index,
        term: Term,
        ts: u64,
        digest: u64,
        /// False when the entry repeated an already applied client operation (skipped).
        executed: bool,
        /// The entry's operation and client session: the harness replays the committed
        /// sequence on its own reference model and matches acknowledgements to entries.
        op: Op,
        session: Option<Session>,
    },
    /// Something worth a line in the trace that is not a failure.
    Warn(Warning),
    /// A storage-layer step (checkpoint, pick-up, step-up, sweep...).
    Storage(StorageEvent),
    /// A page was sealed under key `key` (a fingerprint) with `nonce`; `message` digests its
    /// associated data and plaintext (ChaCha20-Poly1305 must never reuse a nonce).
    Sealed {
        key: u64,
        nonce: [u8; 12],
        message: u64,
    },
    /// The node's in-memory keystore is now this one (at start, recovery, or a rotation).
    Keystore {
        ts: u64,
        kek_version: u32,
        cmk_version: u32,
        /// A rotation applied while this node was not the leader (incident 000's first step).
        rotation_on_follower: bool,
        why: String,
    },
}

/// A point-in-time view of a replica for the checkers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: NodeId,
    pub term: Term,
    pub role: Role,
    pub leader: Option<NodeId>,
    pub commit: Index,
    pub last_applied: Index,
    pub last_index: Index,
    pub last_term: Term,
    pub storage: StorageStatus,
}

/// The storage layer of a replica, for convergence and `validate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageStatus {
    pub mode: Mode,
    /// The checkpoint the stable tables are at.
    pub base: Arc<CheckpointMeta>,
    /// Documents per table in the base checkpoint's pages.
    pub base_records: BTreeMap<String, u64>,
    pub checkpoint_in_flight: bool,
    /// The leader holds no change its checkpoints have not taken yet.
    pub dirty_empty: bool,
    /// Oldest timestamp ingest holds anything at.
    pub ingest_min_ts: Option<u64>,
    /// The leader's live `bytes_total` counters.
    pub bytes_total: BTreeMap<String, u64>,
    /// The committed in-memory keystore.
    pub keystore: Keystore,
    /// The newest keystore page the leader flushed (what its next checkpoint records).
    pub keystore_flushed: Option<KeystoreRef>,
}

pub trait Inspect: Send + Sync {
    fn status(&self) -> NodeStatus;
    /// Everything a reader would see, collection by collection.
    fn read_all(&self) -> BTreeMap<String, Collection>;
    /// The applied index and everything a reader sees, read in place for the length of `f` and
    /// at one instant: `read_all` without copying any document (the model check runs this
    /// around every checkpoint install).
    fn visit_all(&self, f: &mut dyn FnMut(Index, &dyn Visible)) {
        let applied = self.status().last_applied;
        f(applied, &self.read_all())
    }
    /// The node's own dbHash of what a reader sees (costly: hashes every document; `status`
    /// stays cheap because the harness polls it).
    fn hashes(&self) -> BTreeMap<String, CollectionHash>;
    /// The last `n` log entries, for failure reports.
    fn log_tail(&self, n: usize) -> Vec<Entry>;
    /// Index, term and digest of every log entry (what the raft checker compares at the end,
    /// without copying the entries).
    fn log_digests(&self) -> Vec<(Index, Term, u64)> {
        let log = self.log_tail(usize::MAX);
        log.iter().map(|e| (e.index, e.term, e.digest())).collect()
    }
    /// The applied index and what a reader sees of some documents and collections, read at one
    /// instant (the model check compares what changed since its last look this way).
    fn read_docs(
        &self,
        docs: &[(String, String)],
        collections: &[String],
    ) -> (Index, Vec<Option<Vec<u8>>>, Vec<bool>) {
        let applied = self.status().last_applied;
        let all = self.read_all();
        let values = docs
            .iter()
            .map(|(c, k)| all.get(c).and_then(|col| col.get(k)).cloned())
            .collect();
        let exist = collections.iter().map(|c| all.contains_key(c)).collect();
        (applied, values, exist)
    }
    /// Which storage layer decides what a reader sees of one document (for failure reports).
    fn layer_of(&self, _collection: &str, _key: &str) -> String {
        "an unknown layer".to_string()
    }
}

pub trait Observer: Send + Sync {
    fn event(&self, node: NodeId, event: Event);
    /// A node incarnation is up and can be inspected.
    fn attach(&self, node: NodeId, inspect: Arc<dyn Inspect>);
    /// An engine invariant failed: the node must die now (its task stops after this call).
    fn abort(&self, node: NodeId, abort: Abort);
    /// An unexpected Rust panic in engine code: a `crash` finding.
    fn crash(&self, node: NodeId, message: String);
    /// The page service is up and can be inspected.
    fn attach_pages(&self, _inspect: Arc<dyn InspectPages>) {}
    /// A follower is about to install checkpoint `id` (`after`: it just did). Called with none
    /// of the node's locks held, so its [`Inspect`] may be read: the harness compares what a
    /// reader sees on both sides of the swap.
    fn installing(&self, _node: NodeId, _id: u64, _after: bool) {}
    /// A datagram is about to leave `from` for `to` (every engine send passes here): the
    /// harness, which owns the network, decides how it is delivered, and may check that what
    /// the message promises is already durable.
    fn sending(&self, _from: SocketAddr, _to: SocketAddr, _msg: &Wire) -> Delivery {
        Delivery::Now
    }
    /// The node reached a moment where a crash matters. `true`: the harness killed the node
    /// here, and the calling task must not take another step (see [`crate::net::crash_point`]).
    /// Called with none of the node's locks held.
    fn crash_point(&self, _node: NodeId, _point: CrashPoint) -> bool {
        false
    }
}

/// How the network delivers one datagram (on top of the simulator's own latency and loss).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Now,
    /// Held back this long first (a latency spike on one message: reordering within a link).
    After {
        delay_ms: u64,
    },
    /// Delivered now and once more this much later (a duplicated packet).
    Twice {
        again_ms: u64,
    },
}

/// The moments where a crash loses or splits something. Each sits between two steps whose
/// order the engine relies on; the harness kills the node exactly there at a per-mille rate,
/// so crash timing is explored on purpose rather than by luck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CrashPoint {
    /// Raft state written to the page cache, not yet fsynced.
    RaftWritten,
    /// Raft state fsynced; the messages and replies that depend on it not yet sent.
    RaftSynced,
    /// The page service appended a request's records, not yet fsynced.
    PagesWritten,
    /// The page service fsynced; its reply not yet sent.
    PagesSynced,
    /// A leader's checkpoint has put a page, not yet its next one or the publish.
    CheckpointPut,
    /// A leader's checkpoint has put every page and wrapped up; not yet published.
    CheckpointWrapped,
    /// A leader's checkpoint is published; its local completion and the frees not yet done.
    CheckpointPublished,
    /// A follower loaded a newer checkpoint's pages, not yet installed them.
    PickupLoaded,
    /// A new leader fenced the page service, not yet drained or cleaned up.
    StepUpFenced,
    /// A leader put its keystore page, not yet recorded it for the next checkpoint.
    KeystorePut,
}

impl CrashPoint {
    pub const ALL: [CrashPoint; 10] = [
        CrashPoint::RaftWritten,
        CrashPoint::RaftSynced,
        CrashPoint::PagesWritten,
        CrashPoint::PagesSynced,
        CrashPoint::CheckpointPut,
        CrashPoint::CheckpointWrapped,
        CrashPoint::CheckpointPublished,
        CrashPoint::PickupLoaded,
        CrashPoint::StepUpFenced,
        CrashPoint::KeystorePut,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::RaftWritten => "raft-written",
            CrashPoint::RaftSynced => "raft-synced",
            CrashPoint::PagesWritten => "pages-written",
            CrashPoint::PagesSynced => "pages-synced",
            CrashPoint::CheckpointPut => "checkpoint-put",
            CrashPoint::CheckpointWrapped => "checkpoint-wrapped",
            CrashPoint::CheckpointPublished => "checkpoint-published",
            CrashPoint::PickupLoaded => "pickup-loaded",
            CrashPoint::StepUpFenced => "step-up-fenced",
            CrashPoint::KeystorePut => "keystore-put",
        }
    }

    pub fn parse(name: &str) -> Option<CrashPoint> {
        CrashPoint::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// What the harness may see of the page service.
pub trait InspectPages: Send + Sync {
    fn blocks(&self) -> BTreeMap<Lsn, BlockInfo>;
    /// A block's bytes (for checkers that open the pages).
    fn block(&self, lsn: Lsn) -> Option<Arc<Vec<u8>>>;
    fn latest(&self) -> Option<Published>;
}
