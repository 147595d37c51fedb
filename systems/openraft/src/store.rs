//! openraft 0.9 storage (v2 API: `RaftLogStorage` + `RaftStateMachine`) on a [`SimDisk`].
//!
//! Log: one append-only file `log` of length-prefixed JSON records (append an entry, truncate
//! from an index, purge up to a log id), replayed on open. `append` writes the entries unsynced
//! and queues openraft's `LogFlushed` callback on a flusher task, which waits while the harness
//! holds flushes, takes a drawn fsync latency, syncs, and only then reports the entries flushed:
//! openraft counts an entry towards a quorum (and acknowledges it) only after that callback, so a
//! kill before it loses exactly what openraft has not relied on. `truncate`, `purge` and
//! `save_vote` sync before they return (openraft 0.9 expects them durable on return).
//!
//! State machine: volatile, rebuilt on restart from the durable snapshot (if any) and then by
//! openraft re-applying committed entries from the log (0.9 does that when `applied_state` is
//! behind). Snapshots are written and synced to the file `snapshot` when built or installed.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership,
};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::disk::{DiskHandle, StaleIncarnation};
use crate::kv::{apply_op, Entry, KvResponse, LogId, NodeId, StorageError, TypeConfig, Vote};
use crate::trace::Trace;

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

fn frame(rec: &LogRecord) -> Vec<u8> {
    let body = serde_json::to_vec(rec).expect("log record encodes");
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// Decode every whole record of a log file (a torn tail, if any, is ignored).
pub fn decode_log(bytes: &[u8]) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let n = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if at + 4 + n > bytes.len() {
            break;
        }
        match serde_json::from_slice(&bytes[at + 4..at + 4 + n]) {
            Ok(r) => out.push(r),
            Err(_) => break,
        }
        at += 4 + n;
    }
    out
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

fn io_err(e: StaleIncarnation) -> std::io::Error {
    std::io::Error::other(e)
}

#[derive(Debug)]
struct LogInner {
    disk: DiskHandle,
    log: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
}

/// What to do once an append is durable (or failed to be): openraft's `LogFlushed` callback,
/// or a test's closure (`LogFlushed::new` is private to openraft).
pub type FlushDone = Box<dyn FnOnce(Result<(), std::io::Error>) + Send>;

/// The log store of one incarnation. Clones share it (the reader is a clone).
#[derive(Debug, Clone)]
pub struct LogStore {
    node: NodeId,
    inner: Arc<Mutex<LogInner>>,
    flush_tx: tokio::sync::mpsc::UnboundedSender<(u64, FlushDone)>,
    trace: Trace,
}

impl LogStore {
    /// Open from what the disk holds. Spawns the flusher on the current (node's) task context,
    /// so a kill drops it along with every flush it had not done.
    pub fn open(node: NodeId, disk: DiskHandle, trace: Trace) -> Self {
        let (log, last_purged) = replay(decode_log(&disk.read(LOG_FILE).expect("fresh handle")));
        let vote_bytes = disk.read(VOTE_FILE).expect("fresh handle");
        let vote = if vote_bytes.is_empty() { None } else { Some(serde_json::from_slice(&vote_bytes).expect("vote decodes")) };
        trace.record(
            node,
            format!(
                "log-open last={:?} purged={:?} vote={}",
                log.keys().next_back(),
                last_purged.map(|l: LogId| l.index),
                vote.as_ref().map(|v: &Vote| v.to_string()).unwrap_or_default()
            ),
        );
        let (flush_tx, mut flush_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, FlushDone)>();
        let flusher_disk = disk.clone();
        let flusher_trace = trace.clone();
        madsim::task::spawn(async move {
            while let Some((upto, cb)) = flush_rx.recv().await {
                while flusher_disk.disk().flushes_held() {
                    madsim::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                let range = flusher_disk.disk().fsync_delay_us();
                let us = madsim::rand::thread_rng().gen_range(range);
                madsim::time::sleep(std::time::Duration::from_micros(us)).await;
                let res = flusher_disk.sync(LOG_FILE).map_err(io_err);
                if res.is_ok() {
                    flusher_trace.record(node, format!("log-flushed upto={upto}"));
                }
                cb(res);
            }
        });
        LogStore { node, inner: Arc::new(Mutex::new(LogInner { disk, log, last_purged, vote })), flush_tx, trace }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write `entries` unsynced and queue `done` for when they are durable: what
    /// `RaftLogStorage::append` does with openraft's callback.
    pub fn append_with(&self, entries: impl IntoIterator<Item = Entry>, done: FlushDone) -> Result<(), StorageError> {
        let mut g = self.lock();
        let mut last = 0;
        for e in entries {
            g.disk.append(LOG_FILE, &frame(&LogRecord::Append(e.clone()))).map_err(|err| StorageIOError::write_logs(&err))?;
            last = e.log_id.index;
            g.log.insert(e.log_id.index, e);
        }
        drop(g);
        // The flusher owns the callback: it fires only once the bytes are durable.
        let _ = self.flush_tx.send((last, done));
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let g = self.lock();
        let start = match range.start_bound() {
            Bound::Included(&s) => Bound::Included(s),
            Bound::Excluded(&s) => Bound::Excluded(s),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&s) => Bound::Included(s),
            Bound::Excluded(&s) => Bound::Excluded(s),
            Bound::Unbounded => Bound::Unbounded,
        };
        Ok(g.log.range((start, end)).map(|(_, e)| e.clone()).collect())
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
        self.trace.record(self.node, format!("vote-saved {vote}"));
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
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
        self.trace.record(self.node, format!("log-truncated since={}", log_id.index));
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
        self.trace.record(self.node, format!("log-purged upto={}", log_id.index));
        Ok(())
    }
}

/// A stored snapshot: its meta and the serialized map.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    pub data: Vec<u8>,
}

#[derive(Debug)]
struct SmInner {
    disk: DiskHandle,
    last_applied: Option<LogId>,
    last_membership: StoredMembership<NodeId, openraft::BasicNode>,
    kv: BTreeMap<String, String>,
    snapshot: Option<StoredSnapshot>,
    snapshots_built: u64,
}

/// Something the harness wants told about every applied entry: (node, log id, operation text).
pub type ApplyHook = Arc<dyn Fn(NodeId, LogId, &str) + Send + Sync>;

/// The key-value state machine of one incarnation. Clones share it (the snapshot builder is one).
#[derive(Clone)]
pub struct StateMachine {
    node: NodeId,
    inner: Arc<Mutex<SmInner>>,
    on_apply: Option<ApplyHook>,
    trace: Trace,
}

impl StateMachine {
    pub fn open(node: NodeId, disk: DiskHandle, trace: Trace, on_apply: Option<ApplyHook>) -> Self {
        let bytes = disk.read(SNAPSHOT_FILE).expect("fresh handle");
        let mut inner = SmInner {
            disk,
            last_applied: None,
            last_membership: StoredMembership::default(),
            kv: BTreeMap::new(),
            snapshot: None,
            snapshots_built: 0,
        };
        if !bytes.is_empty() {
            let snap: StoredSnapshot = serde_json::from_slice(&bytes).expect("snapshot decodes");
            inner.kv = serde_json::from_slice(&snap.data).expect("snapshot data decodes");
            inner.last_applied = snap.meta.last_log_id;
            inner.last_membership = snap.meta.last_membership.clone();
            inner.snapshot = Some(snap);
        }
        StateMachine { node, inner: Arc::new(Mutex::new(inner)), on_apply, trace }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SmInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The map as applied so far (for checks).
    pub fn kv(&self) -> BTreeMap<String, String> {
        self.lock().kv.clone()
    }

    pub fn last_applied(&self) -> Option<LogId> {
        self.lock().last_applied
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
        self.trace.record(self.node, format!("snapshot-built {}", meta.snapshot_id));
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
                match e.payload {
                    EntryPayload::Blank => {
                        out.push(KvResponse::default());
                        applied.push((e.log_id, "blank".to_string()));
                    }
                    EntryPayload::Normal(req) => {
                        out.push(apply_op(&mut g.kv, &req.op));
                        applied.push((e.log_id, req.to_string()));
                    }
                    EntryPayload::Membership(m) => {
                        g.last_membership = StoredMembership::new(Some(e.log_id), m);
                        out.push(KvResponse::default());
                        applied.push((e.log_id, "membership".to_string()));
                    }
                }
            }
        }
        if let Some(hook) = &self.on_apply {
            for (id, what) in &applied {
                hook(self.node, *id, what);
            }
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
        let kv: BTreeMap<String, String> = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
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
        self.trace.record(self.node, format!("snapshot-installed {}", meta.snapshot_id));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let g = self.lock();
        Ok(g.snapshot.as_ref().map(|s| Snapshot { meta: s.meta.clone(), snapshot: Box::new(Cursor::new(s.data.clone())) }))
    }
}
