//! `SimDisk`: per-node files owned by the harness, so they outlive a node's tasks. Writes are
//! buffered until `sync`; a crash keeps only synced data, optionally plus a sector-aligned
//! prefix of an unsynced append (a torn write). Handles are fenced by incarnation, so a dead
//! incarnation can never write to its successor's disk.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use engine::raft::NodeId;

use crate::profile::{Bucket, Profile};
use engine::storage::{Storage, StorageError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const SECTOR_BYTES: usize = 512;

/// A file as the durable bytes plus what is still in the page cache. Keeping the unsynced part
/// apart makes `sync` cost what was written since the last one, not the file's size (the raft
/// log syncs on every append).
#[derive(Debug, Default, Clone)]
struct File {
    durable: Vec<u8>,
    pending: Pending,
    /// Bumped whenever `durable` is replaced rather than appended to (readers that parse the
    /// durable bytes incrementally start over).
    replaced: u64,
    /// A lie the disk tells at the next sync of an append.
    next_sync: Option<SyncFault>,
}

/// How a sync can fail silently (the disk reports success).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncFault {
    /// The appended bytes never reach the medium.
    Lost,
    /// The appended bytes land at this earlier offset (clamped to the file), overwriting what
    /// was there, instead of at the end.
    Misdirected { offset: usize },
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum Pending {
    #[default]
    Clean,
    /// Bytes appended after `durable`.
    Append(Vec<u8>),
    /// A whole new content (an atomic replace), plus anything appended after it.
    Replace(Vec<u8>),
}

impl File {
    fn current(&self) -> Vec<u8> {
        match &self.pending {
            Pending::Clean => self.durable.clone(),
            Pending::Append(tail) => [self.durable.as_slice(), tail].concat(),
            Pending::Replace(all) => all.clone(),
        }
    }

    fn append(&mut self, data: &[u8]) {
        match &mut self.pending {
            Pending::Clean => self.pending = Pending::Append(data.to_vec()),
            Pending::Append(buf) | Pending::Replace(buf) => buf.extend_from_slice(data),
        }
    }

    fn sync(&mut self) {
        match std::mem::take(&mut self.pending) {
            Pending::Clean => {}
            Pending::Append(tail) => match self.next_sync.take() {
                None => self.durable.extend_from_slice(&tail),
                Some(SyncFault::Lost) => {}
                Some(SyncFault::Misdirected { offset }) => {
                    let at = offset.min(self.durable.len());
                    let end = (at + tail.len()).max(self.durable.len());
                    self.durable.resize(end, 0);
                    self.durable[at..at + tail.len()].copy_from_slice(&tail);
                    self.replaced += 1;
                }
            },
            Pending::Replace(all) => {
                self.durable = all;
                self.replaced += 1;
            }
        }
    }
}

#[derive(Debug, Default)]
struct NodeDisk {
    incarnation: u64,
    /// Bumped whenever any durable byte of the node may have changed (a sync, a torn write
    /// kept at a crash, a flipped bit): readers of durable state skip re-reading otherwise.
    durable_changes: u64,
    files: BTreeMap<String, File>,
}

pub struct SimDisk {
    nodes: Mutex<BTreeMap<NodeId, NodeDisk>>,
    rng: Mutex<ChaCha8Rng>,
    tear_writes: bool,
}

/// What a crash did to a node's disk, for the trace.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CrashLoss {
    pub files_reverted: u32,
    pub bytes_lost: u64,
    pub bytes_torn_kept: u64,
}

impl SimDisk {
    pub fn new(seed: u64, tear_writes: bool) -> Arc<Self> {
        Arc::new(SimDisk {
            nodes: Mutex::new(BTreeMap::new()),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            tear_writes,
        })
    }

    /// Starts a new incarnation of `node` and returns its storage handle.
    pub fn open(self: &Arc<Self>, node: NodeId) -> DiskHandle {
        let mut nodes = self.nodes.lock().unwrap();
        let d = nodes.entry(node).or_default();
        d.incarnation += 1;
        DiskHandle {
            disk: self.clone(),
            node,
            incarnation: d.incarnation,
            profile: None,
        }
    }

    /// A power cut for `node`: unsynced data is lost (or torn), older handles are fenced.
    pub fn crash(&self, node: NodeId) -> CrashLoss {
        let mut nodes = self.nodes.lock().unwrap();
        let Some(d) = nodes.get_mut(&node) else {
            return CrashLoss::default();
        };
        d.incarnation += 1;
        d.durable_changes += 1;
        let mut loss = CrashLoss::default();
        let mut rng = self.rng.lock().unwrap();
        for f in d.files.values_mut() {
            let lost_bytes = match std::mem::take(&mut f.pending) {
                Pending::Clean => continue,
                // An unsynced append may survive in part, cut at a sector boundary.
                Pending::Append(tail) if self.tear_writes => {
                    let keep = rng.gen_range(0..=tail.len() / SECTOR_BYTES) * SECTOR_BYTES;
                    f.durable.extend_from_slice(&tail[..keep]);
                    loss.bytes_torn_kept += keep as u64;
                    tail.len() - keep
                }
                Pending::Append(tail) => tail.len(),
                // A replace is a rename: all or nothing.
                Pending::Replace(all) => all.len().abs_diff(f.durable.len()),
            };
            loss.files_reverted += 1;
            loss.bytes_lost += lost_bytes as u64;
        }
        loss
    }

    /// What a power cut would leave of one file right now: its durable bytes, and how many
    /// times they were replaced rather than appended to. For checkers that hold the engine to
    /// "nothing is promised before it is durable".
    pub fn durable<T>(&self, node: NodeId, file: &str, f: impl FnOnce(&[u8], u64) -> T) -> T {
        let nodes = self.nodes.lock().unwrap();
        match nodes.get(&node).and_then(|d| d.files.get(file)) {
            Some(file) => f(&file.durable, file.replaced),
            None => f(&[], 0),
        }
    }

    /// Damage at rest: flips bit `bit` of durable byte `offset` of `file` (clamped to the file;
    /// nothing on an empty file). Returns whether anything was flipped.
    pub fn flip_bit(&self, node: NodeId, file: &str, offset: usize, bit: u8) -> bool {
        let mut nodes = self.nodes.lock().unwrap();
        let Some(f) = nodes.get_mut(&node).and_then(|d| d.files.get_mut(file)) else {
            return false;
        };
        if f.durable.is_empty() {
            return false;
        }
        let at = offset.min(f.durable.len() - 1);
        f.durable[at] ^= 1 << (bit % 8);
        f.replaced += 1;
        if let Some(d) = nodes.get_mut(&node) {
            d.durable_changes += 1;
        }
        true
    }

    /// The next sync of an append to `file` fails silently this way.
    pub fn fail_next_sync(&self, node: NodeId, file: &str, fault: SyncFault) {
        let mut nodes = self.nodes.lock().unwrap();
        let d = nodes.entry(node).or_default();
        d.files.entry(file.to_string()).or_default().next_sync = Some(fault);
    }

    /// How many times the node's durable bytes may have changed (see `NodeDisk`).
    pub fn durable_changes(&self, node: NodeId) -> u64 {
        let nodes = self.nodes.lock().unwrap();
        nodes.get(&node).map_or(0, |d| d.durable_changes)
    }

    /// Total durable bytes of a node (for reports and tests).
    pub fn durable_bytes(&self, node: NodeId) -> u64 {
        let nodes = self.nodes.lock().unwrap();
        nodes.get(&node).map_or(0, |d| {
            d.files.values().map(|f| f.durable.len() as u64).sum()
        })
    }

    fn with_file<T>(
        &self,
        node: NodeId,
        incarnation: u64,
        name: &str,
        f: impl FnOnce(&mut File) -> T,
    ) -> Result<T, StorageError> {
        let mut nodes = self.nodes.lock().unwrap();
        let d = nodes.entry(node).or_default();
        if d.incarnation != incarnation {
            return Err(StorageError::Fenced);
        }
        Ok(f(d.files.entry(name.to_string()).or_default()))
    }
}

/// One incarnation's view of its node's disk.
pub struct DiskHandle {
    disk: Arc<SimDisk>,
    node: NodeId,
    incarnation: u64,
    /// Charged with the time of every file operation when the seed is profiled.
    profile: Option<Arc<Profile>>,
}

impl DiskHandle {
    /// The same handle, charging its file operations to `profile`'s disk bucket.
    pub fn profiled(self, profile: Option<Arc<Profile>>) -> DiskHandle {
        DiskHandle { profile, ..self }
    }

    fn timed<T>(&self, f: impl FnOnce() -> T) -> T {
        Profile::time_sampled(self.profile.as_deref(), Bucket::Disk, f)
    }
}

impl Storage for DiskHandle {
    fn read(&self, file: &str) -> Result<Vec<u8>, StorageError> {
        self.timed(|| {
            self.disk
                .with_file(self.node, self.incarnation, file, |f| f.current())
        })
    }
    fn append(&self, file: &str, data: &[u8]) -> Result<(), StorageError> {
        self.timed(|| {
            self.disk
                .with_file(self.node, self.incarnation, file, |f| f.append(data))
        })
    }
    fn replace(&self, file: &str, data: &[u8]) -> Result<(), StorageError> {
        self.timed(|| {
            self.disk.with_file(self.node, self.incarnation, file, |f| {
                f.pending = Pending::Replace(data.to_vec())
            })
        })
    }
    fn sync(&self, file: &str) -> Result<(), StorageError> {
        self.timed(|| {
            self.disk
                .with_file(self.node, self.incarnation, file, |f| f.sync())?;
            let mut nodes = self.disk.nodes.lock().unwrap();
            if let Some(d) = nodes.get_mut(&self.node) {
                d.durable_changes += 1;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_data_survives_a_crash_and_unsynced_data_does_not() {
        let disk = SimDisk::new(1, false);
        let h = disk.open(1);
        h.append("log", b"durable").unwrap();
        h.sync("log").unwrap();
        h.append("log", b"-lost").unwrap();
        h.replace("meta", b"new").unwrap();
        assert_eq!(
            h.read("log").unwrap(),
            b"durable-lost",
            "reads see the page cache"
        );
        let loss = disk.crash(1);
        assert_eq!(loss.files_reverted, 2);
        let h2 = disk.open(1);
        assert_eq!(h2.read("log").unwrap(), b"durable");
        assert_eq!(h2.read("meta").unwrap(), b"");
    }

    #[test]
    fn a_dead_incarnation_is_fenced() {
        let disk = SimDisk::new(1, false);
        let old = disk.open(1);
        disk.crash(1);
        let new = disk.open(1);
        assert_eq!(old.append("log", b"zombie"), Err(StorageError::Fenced));
        assert_eq!(old.read("log"), Err(StorageError::Fenced));
        new.append("log", b"ok").unwrap();
    }

    #[test]
    fn replace_is_atomic_across_a_crash() {
        let disk = SimDisk::new(1, true);
        let h = disk.open(2);
        h.replace("hard", b"v1").unwrap();
        h.sync("hard").unwrap();
        h.replace("hard", b"v2-longer").unwrap();
        disk.crash(2);
        assert_eq!(disk.open(2).read("hard").unwrap(), b"v1");
    }

    #[test]
    fn torn_appends_keep_a_sector_aligned_prefix() {
        let mut saw_partial = false;
        for seed in 0..32 {
            let disk = SimDisk::new(seed, true);
            let h = disk.open(1);
            h.append("log", &[7u8; 100]).unwrap();
            h.sync("log").unwrap();
            h.append("log", &[9u8; 3 * SECTOR_BYTES + 17]).unwrap();
            let loss = disk.crash(1);
            let len = disk.open(1).read("log").unwrap().len();
            assert_eq!((len - 100) % SECTOR_BYTES, 0, "cut at a sector boundary");
            assert!(len <= 100 + 3 * SECTOR_BYTES);
            assert_eq!(loss.bytes_torn_kept as usize, len - 100);
            saw_partial |= len > 100;
        }
        assert!(saw_partial, "some seeds keep part of the torn write");
    }

    #[test]
    fn silent_sync_faults_lose_or_misplace_an_append_and_bit_flips_damage_at_rest() {
        let disk = SimDisk::new(1, false);
        let h = disk.open(1);
        h.append("log", b"aaaa").unwrap();
        h.sync("log").unwrap();
        disk.fail_next_sync(1, "log", SyncFault::Lost);
        h.append("log", b"bb").unwrap();
        h.sync("log").unwrap();
        h.append("log", b"cc").unwrap();
        h.sync("log").unwrap();
        disk.crash(1);
        assert_eq!(
            disk.open(1).read("log").unwrap(),
            b"aaaacc",
            "bb never landed"
        );
        let h = disk.open(1);
        disk.fail_next_sync(1, "log", SyncFault::Misdirected { offset: 1 });
        h.append("log", b"XY").unwrap();
        h.sync("log").unwrap();
        assert!(disk.flip_bit(1, "log", 0, 0));
        disk.crash(1);
        assert_eq!(disk.open(1).read("log").unwrap(), b"`XYacc");
        disk.durable(1, "log", |_, replaced| assert_eq!(replaced, 2));
    }

    #[test]
    fn nodes_do_not_share_files() {
        let disk = SimDisk::new(1, false);
        let a = disk.open(1);
        let b = disk.open(2);
        a.append("log", b"a").unwrap();
        assert_eq!(b.read("log").unwrap(), b"");
        disk.crash(2);
        assert_eq!(
            a.read("log").unwrap(),
            b"a",
            "a crash of n2 leaves n1 alone"
        );
    }
}
