//! openraft 0.9 storage (v2 API: `RaftLogStorage` + `RaftStateMachine`) on the harness's disk
//! (`sim::sut::Storage`), reporting each durable step as a `HostedEvent`.
//!
//! Log: one append-only file `log` of framed records (`[len u32][crc32 u32][json]`: append an
//! entry, truncate from an index, purge up to a log id), replayed on open. `append` writes the
//! entries unsynced and queues openraft's `LogFlushed` callback on a flusher task, which awaits
//! the harness's `FlushGate`, syncs, reports `Flushed` and only then calls back: openraft counts
//! an entry towards a quorum (and acknowledges it) only after that callback, so a kill before it
//! loses exactly what openraft has not relied on. `truncate`, `purge` and `save_vote` sync
//! before they return (openraft 0.9 expects them durable on return).
//!
//! The harness's disk may keep a torn, sector-aligned prefix of an unsynced append after a
//! crash, so the last record of the file can be partial: the decoder drops it and `open`
//! rewrites the file without it (else the next append would land behind garbage). A record that
//! is whole but fails its checksum is damage at rest: the node refuses to start.
//!
//! State machine: volatile, rebuilt on restart from the durable snapshot (if any) and then by
//! openraft re-applying committed entries (0.9 does that when `applied_state` is behind).
//! Snapshots are written and synced to the file `snapshot` when built or installed.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use sim::sut::{FlushGate, HostedEvent, Obs, Storage};

use crate::kv::{apply_op, digest, Entry, KvMap, KvResponse, LogId, NodeId, StorageError, TypeConfig, Vote};

pub const LOG_FILE: &str = "log";
pub const VOTE_FILE: &str = "vote";
pub const SNAPSHOT_FILE: &str = "snapshot";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LogRecord {
    Append(Entry),
    /// Remove entries with index >= since.
    Truncate { since: u64 },
    /// Remove entries with index <= upto.index.
    Purge { upto: LogId },
}

const HEADER: usize = 8;

pub fn frame(rec: &LogRecord) -> Vec<u8> {
    let body = serde_json::to_vec(rec).expect("log record encodes");
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A log file read back: its whole records, and how many bytes they span (less than the file
/// when a torn record ends it).
#[derive(Debug)]
pub struct DecodedLog {
    pub records: Vec<LogRecord>,
    pub valid_len: usize,
}

/// Decode a log file. A record cut short by the end of the file (a torn append) ends it; a
/// whole record that fails its checksum or does not parse is damage: `Err`.
pub fn decode_log(bytes: &[u8]) -> Result<DecodedLog, String> {
    let mut records = Vec::new();
    let mut at = 0;
    while at + HEADER <= bytes.len() {
        let n = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        let Some(body) = bytes.get(at + HEADER..at + HEADER + n) else { break };
        if crc32fast::hash(body) != crc {
            return Err(format!("log record at byte {at} fails its checksum"));
        }
        let rec = serde_json::from_slice(body).map_err(|e| format!("log record at byte {at}: {e}"))?;
        records.push(rec);
        at += HEADER + n;
    }
    Ok(DecodedLog { records, valid_len: at })
}

/// Replay log records into (entries by index, last purged log id).
pub fn replay(records: Vec<LogRecord>) -> (BTreeMap<u64, Entry>, Option<LogId>) {
    let mut log = BTreeMap::new();
    let mut purged = None;
    for r in records {
        match r {
            LogRecord::Append(e) => {
                log.insert(e.log_id.index, e);
            }
            LogRecord::Truncate { since } => {
                log.split_off(&since);
            }
            LogRecord::Purge { upto } => {
                log = log.split_off(&(upto.index + 1));
                purged = Some(upto);
            }
        }
    }
    (log, purged)
}

/// A raft node id as the harness names it (`n1` is 1).
pub fn node_u8(id: NodeId) -> u8 {
    u8::try_from(id).expect("node ids are 1..=255")
}

/// The harness's view of a vote.
pub fn vote_event(vote: &Vote) -> HostedEvent {
    HostedEvent::Vote {
        term: vote.leader_id().get_term(),
        voted_for: vote.leader_id().voted_for().filter(|&n| n != 0).map(node_u8),
        committed: vote.is_committed(),
    }
}

struct LogInner {
    disk: Arc<dyn Storage>,
    log: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    /// What openraft last called `save_committed` with, this incarnation (never persisted: a
    /// follower may learn a commit index past entries it has not flushed yet, and a durable
    /// one would then point past the log a crash leaves).
    committed: Option<LogId>,
}

/// What to do once an append is durable (or failed to be): openraft's `LogFlushed` callback,
/// or a test's closure (`LogFlushed::new` is private to openraft).
pub type FlushDone = Box<dyn FnOnce(Result<(), std::io::Error>) + Send>;

/// The log store of one incarnation. Clones share it (the reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    node: NodeId,
    inner: Arc<Mutex<LogInner>>,
    flush_tx: tokio::sync::mpsc::UnboundedSender<(u64, FlushDone)>,
    obs: Obs,
}

fn io_err(e: sim::sut::StorageError) -> std::io::Error {
    std::io::Error::other(e)
}

impl LogStore {
    /// Open from what the disk holds (dropping a torn last record, durably) and spawn the
    /// flusher on the current (node's) task context, so a kill drops it along with every flush
    /// it had not done. `Err`: the disk is damaged or unreadable; the node must not start.
    pub fn open(node: NodeId, disk: Arc<dyn Storage>, flush: FlushGate, obs: Obs) -> Result<LogStore, String> {
        let bytes = disk.read(LOG_FILE).map_err(|e| e.to_string())?;
        let decoded = decode_log(&bytes)?;
        if decoded.valid_len < bytes.len() {
            disk.replace(LOG_FILE, &bytes[..decoded.valid_len]).map_err(|e| e.to_string())?;
            disk.sync(LOG_FILE).map_err(|e| e.to_string())?;
            obs.emit(HostedEvent::Note(format!(
                "log: dropped a torn last record ({} bytes)",
                bytes.len() - decoded.valid_len
            )));
        }
        let (log, last_purged) = replay(decoded.records);
        let vote_bytes = disk.read(VOTE_FILE).map_err(|e| e.to_string())?;
        let vote = if vote_bytes.is_empty() {
            None
        } else {
            Some(serde_json::from_slice::<Vote>(&vote_bytes).map_err(|e| format!("vote file: {e}"))?)
        };
        let inner = Arc::new(Mutex::new(LogInner { disk, log, last_purged, vote, committed: None }));
        let (flush_tx, flush_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, FlushDone)>();
        madsim::task::spawn(flusher(inner.clone(), flush, obs.clone(), flush_rx));
        Ok(LogStore { node, inner, flush_tx, obs })
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `(index, term)` of every entry held, in order (for `HostedEvent::Loaded`).
    pub fn entry_ids(&self) -> Vec<(u64, u64)> {
        self.lock().log.values().map(|e| (e.log_id.index, e.log_id.leader_id.term)).collect()
    }

    pub fn last_purged(&self) -> Option<LogId> {
        self.lock().last_purged
    }

    pub fn vote(&self) -> Option<Vote> {
        self.lock().vote
    }

    /// The commit index openraft last saved (this incarnation).
    pub fn committed(&self) -> Option<LogId> {
        self.lock().committed
    }

    /// Write `entries` unsynced and queue `done` for when they are durable: what
    /// `RaftLogStorage::append` does with openraft's callback.
    pub fn append_with(&self, entries: impl IntoIterator<Item = Entry>, done: FlushDone) -> Result<(), StorageError> {
        let mut g = self.lock();
        let mut ids = Vec::new();
        for e in entries {
            g.disk.append(LOG_FILE, &frame(&LogRecord::Append(e.clone()))).map_err(|err| StorageIOError::write_logs(&err))?;
            ids.push((e.log_id.index, e.log_id.leader_id.term));
            g.log.insert(e.log_id.index, e);
        }
        drop(g);
        let last = ids.last().map_or(0, |&(i, _)| i);
        self.obs.emit(HostedEvent::Appended { entries: ids });
        // The flusher owns the callback: it fires only once the bytes are durable.
        let _ = self.flush_tx.send((last, done));
        Ok(())
    }
}

/// One incarnation's flusher: for each append in order, the harness's gate (fsync latency,
/// held flushes), the sync, `Flushed`, then openraft's callback.
async fn flusher(
    inner: Arc<Mutex<LogInner>>,
    gate: FlushGate,
    obs: Obs,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(u64, FlushDone)>,
) {
    while let Some((upto, done)) = rx.recv().await {
        gate.wait().await;
        let (res, held) = {
            let g = inner.lock().unwrap_or_else(|e| e.into_inner());
            // Everything in the log now was written before this sync: durable after it. A
            // truncation since the append may have removed the batch's tail, so report no
            // further than the log reaches.
            let held = g.log.keys().next_back().copied().or(g.last_purged.map(|l| l.index)).unwrap_or(0);
            (g.disk.sync(LOG_FILE).map_err(io_err), held)
        };
        if res.is_ok() {
            obs.emit(HostedEvent::Flushed { upto: upto.min(held) });
        }
        done(res);
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        // An inverted range is empty, not a panic (`BTreeMap::range` panics on one): openraft
        // 0.9.14 asks for one once #1236 has made a stale-log node leader, and a panic here
        // would hide that finding behind a crash of the adapter.
        let from = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        if from >= to {
            return Ok(Vec::new());
        }
        let g = self.lock();
        Ok(g.log.range(from..to).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let g = self.lock();
        let last = g.log.values().next_back().map(|e| e.log_id).or(g.last_purged);
        Ok(LogState { last_purged_log_id: g.last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut g = self.lock();
        let bytes = serde_json::to_vec(vote).expect("vote encodes");
        g.disk.replace(VOTE_FILE, &bytes).map_err(|e| StorageIOError::write_vote(&e))?;
        g.disk.sync(VOTE_FILE).map_err(|e| StorageIOError::write_vote(&e))?;
        g.vote = Some(*vote);
        drop(g);
        self.obs.emit(vote_event(vote));
        // openraft 0.9: a node's own committed vote is leadership (`establish_leader` commits
        // the vote before the leader's first entry; `become_leader` follows a committed vote
        // for this node). Reported once the vote is durable, as the leader's first act is.
        if vote.is_committed() && vote.leader_id().voted_for() == Some(self.node) {
            self.obs.emit(HostedEvent::Leader { term: vote.leader_id().get_term() });
        }
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    /// Kept in memory only (see `LogInner::committed`); reported as `Committed`, which openraft
    /// calls right before it applies up to `committed`.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.lock().committed = committed;
        if let Some(c) = committed {
            self.obs.emit(HostedEvent::Committed { index: c.index, term: c.leader_id.term });
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.append_with(entries, Box::new(move |res| callback.log_io_completed(res)))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut g = self.lock();
        g.disk
            .append(LOG_FILE, &frame(&LogRecord::Truncate { since: log_id.index }))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        g.disk.sync(LOG_FILE).map_err(|e| StorageIOError::write_logs(&e))?;
        g.log.split_off(&log_id.index);
        drop(g);
        self.obs.emit(HostedEvent::Truncated { from: log_id.index });
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut g = self.lock();
        g.disk.append(LOG_FILE, &frame(&LogRecord::Purge { upto: log_id })).map_err(|e| StorageIOError::write_logs(&e))?;
        g.disk.sync(LOG_FILE).map_err(|e| StorageIOError::write_logs(&e))?;
        let keep = g.log.split_off(&(log_id.index + 1));
        g.log = keep;
        g.last_purged = Some(log_id);
        drop(g);
        self.obs.emit(HostedEvent::Purged { upto: log_id.index });
        Ok(())
    }
}

/// A stored snapshot: its meta and the serialized map.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    pub data: Vec<u8>,
}

struct SmInner {
    disk: Arc<dyn Storage>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership<NodeId, openraft::BasicNode>,
    kv: KvMap,
    snapshot: Option<StoredSnapshot>,
    snapshots_built: u64,
}

/// The key-value state machine of one incarnation. Clones share it (the snapshot builder is one).
#[derive(Clone)]
pub struct StateMachine {
    node: NodeId,
    inner: Arc<Mutex<SmInner>>,
    obs: Obs,
}

impl StateMachine {
    /// Open at the durable snapshot, if any. `Err`: the snapshot file is damaged.
    pub fn open(node: NodeId, disk: Arc<dyn Storage>, obs: Obs) -> Result<StateMachine, String> {
        let bytes = disk.read(SNAPSHOT_FILE).map_err(|e| e.to_string())?;
        let mut inner = SmInner {
            disk,
            last_applied: None,
            last_membership: StoredMembership::default(),
            kv: KvMap::new(),
            snapshot: None,
            snapshots_built: 0,
        };
        if !bytes.is_empty() {
            let snap: StoredSnapshot = serde_json::from_slice(&bytes).map_err(|e| format!("snapshot file: {e}"))?;
            inner.kv = serde_json::from_slice(&snap.data).map_err(|e| format!("snapshot data: {e}"))?;
            inner.last_applied = snap.meta.last_log_id;
            inner.last_membership = snap.meta.last_membership.clone();
            inner.snapshot = Some(snap);
        }
        Ok(StateMachine { node, inner: Arc::new(Mutex::new(inner)), obs })
    }

    fn lock(&self) -> MutexGuard<'_, SmInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The map as applied so far (for checks).
    pub fn kv(&self) -> KvMap {
        self.lock().kv.clone()
    }

    pub fn last_applied(&self) -> Option<LogId> {
        self.lock().last_applied
    }

    /// (applied index, digest of the map at it), read together.
    pub fn applied_and_digest(&self) -> (u64, u64) {
        let g = self.lock();
        (g.last_applied.map_or(0, |l| l.index), digest(&g.kv))
    }

    /// The index the durable snapshot covers (0: none).
    pub fn snapshot_index(&self) -> u64 {
        self.lock().snapshot.as_ref().and_then(|s| s.meta.last_log_id).map_or(0, |l| l.index)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let mut g = self.lock();
        g.snapshots_built += 1;
        let data = serde_json::to_vec(&g.kv).expect("kv encodes");
        let meta = SnapshotMeta {
            last_log_id: g.last_applied,
            last_membership: g.last_membership.clone(),
            snapshot_id: format!("n{}-{}-{}", self.node, g.last_applied.map(|l| l.index).unwrap_or(0), g.snapshots_built),
        };
        let stored = StoredSnapshot { meta: meta.clone(), data: data.clone() };
        let bytes = serde_json::to_vec(&stored).expect("snapshot encodes");
        g.disk.replace(SNAPSHOT_FILE, &bytes).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        g.disk.sync(SNAPSHOT_FILE).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        g.snapshot = Some(stored);
        drop(g);
        // Not an install: the node's own state, captured (a trace line, not checked).
        self.obs.emit(HostedEvent::Note(format!("snapshot built {}", meta.snapshot_id)));
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, openraft::BasicNode>), StorageError> {
        let g = self.lock();
        Ok((g.last_applied, g.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<KvResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut applied = Vec::new();
        {
            let mut g = self.lock();
            for e in entries {
                g.last_applied = Some(e.log_id);
                let op = match e.payload {
                    EntryPayload::Blank => {
                        out.push(KvResponse::default());
                        String::new()
                    }
                    EntryPayload::Normal(req) => {
                        out.push(apply_op(&mut g.kv, &req.op));
                        req.to_string()
                    }
                    EntryPayload::Membership(m) => {
                        g.last_membership = StoredMembership::new(Some(e.log_id), m);
                        out.push(KvResponse::default());
                        String::new()
                    }
                };
                applied.push(HostedEvent::Applied { index: e.log_id.index, term: e.log_id.leader_id.term, op });
            }
        }
        for ev in applied {
            self.obs.emit(ev);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let kv: KvMap =
            serde_json::from_slice(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let mut g = self.lock();
        let stored = StoredSnapshot { meta: meta.clone(), data };
        let bytes = serde_json::to_vec(&stored).expect("snapshot encodes");
        g.disk.replace(SNAPSHOT_FILE, &bytes).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        g.disk.sync(SNAPSHOT_FILE).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        g.kv = kv;
        g.last_applied = meta.last_log_id;
        g.last_membership = meta.last_membership.clone();
        g.snapshot = Some(stored);
        drop(g);
        if let Some(l) = meta.last_log_id {
            self.obs.emit(HostedEvent::SnapshotInstalled { index: l.index, term: l.leader_id.term });
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let g = self.lock();
        Ok(g.snapshot.as_ref().map(|s| Snapshot { meta: s.meta.clone(), snapshot: Box::new(Cursor::new(s.data.clone())) }))
    }
}
