//! A crash-faithful in-memory disk, owned by the harness (it outlives the node's incarnations).
//!
//! Each named file has durable bytes and an unsynced part: an append tail, or a whole pending
//! replacement. The running node reads through both; `sync` makes the unsynced part durable;
//! `crash` (call it when the node is killed) drops every unsynced part and bumps the incarnation,
//! so a handle from a dead incarnation can no longer write. The harness also owns the fsync
//! latency and can hold every flush (`hold_flushes`): the log store's flusher asks the disk how
//! long each sync takes and waits while flushes are held, which delays openraft's `LogFlushed`
//! callbacks.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, Clone)]
enum Pending {
    #[default]
    None,
    /// Bytes appended after the durable content.
    Tail(Vec<u8>),
    /// A whole new content not yet synced.
    Replace(Vec<u8>),
}

#[derive(Debug, Default, Clone)]
struct File {
    durable: Vec<u8>,
    pending: Pending,
}

impl File {
    fn current(&self) -> Vec<u8> {
        match &self.pending {
            Pending::None => self.durable.clone(),
            Pending::Tail(t) => {
                let mut v = self.durable.clone();
                v.extend_from_slice(t);
                v
            }
            Pending::Replace(r) => r.clone(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    files: BTreeMap<String, File>,
    incarnation: u64,
    fsync_delay_us: Range<u64>,
    flushes_held: bool,
    syncs: u64,
    crashes: u64,
}

/// A stale handle (an incarnation that was crashed) tried to touch the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleIncarnation {
    pub handle: u64,
    pub current: u64,
}

impl std::fmt::Display for StaleIncarnation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "disk handle of incarnation {} used after a crash (now {})", self.handle, self.current)
    }
}
impl std::error::Error for StaleIncarnation {}

/// The disk of one node. Cloning shares it.
#[derive(Debug, Clone)]
pub struct SimDisk {
    inner: Arc<Mutex<Inner>>,
}

impl Default for SimDisk {
    fn default() -> Self {
        Self::new()
    }
}

impl SimDisk {
    pub fn new() -> Self {
        SimDisk {
            inner: Arc::new(Mutex::new(Inner {
                files: BTreeMap::new(),
                incarnation: 0,
                fsync_delay_us: 500..2_000,
                flushes_held: false,
                syncs: 0,
                crashes: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new incarnation opens the disk: handles of older incarnations are fenced off.
    pub fn open(&self) -> DiskHandle {
        let mut g = self.lock();
        g.incarnation += 1;
        DiskHandle { disk: self.clone(), incarnation: g.incarnation }
    }

    /// Power cut / kill: every unsynced write is lost, and the current handle is fenced.
    pub fn crash(&self) {
        let mut g = self.lock();
        for f in g.files.values_mut() {
            f.pending = Pending::None;
        }
        g.incarnation += 1;
        g.crashes += 1;
    }

    /// What a power cut right now would leave of `file`.
    pub fn durable(&self, file: &str) -> Vec<u8> {
        self.lock().files.get(file).map(|f| f.durable.clone()).unwrap_or_default()
    }

    /// Unsynced bytes of `file` (the tail, or the whole pending replacement).
    pub fn unsynced_len(&self, file: &str) -> usize {
        match self.lock().files.get(file).map(|f| &f.pending) {
            Some(Pending::Tail(t)) => t.len(),
            Some(Pending::Replace(r)) => r.len(),
            _ => 0,
        }
    }

    /// Harness hook: how long each fsync takes (drawn per sync, in simulated microseconds).
    pub fn set_fsync_delay_us(&self, range: Range<u64>) {
        assert!(range.start < range.end, "empty fsync delay range");
        self.lock().fsync_delay_us = range;
    }

    pub fn fsync_delay_us(&self) -> Range<u64> {
        self.lock().fsync_delay_us.clone()
    }

    /// Harness hook: hold every flush (and so every `LogFlushed` callback) until released.
    pub fn hold_flushes(&self, held: bool) {
        self.lock().flushes_held = held;
    }

    pub fn flushes_held(&self) -> bool {
        self.lock().flushes_held
    }

    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    pub fn crashes(&self) -> u64 {
        self.lock().crashes
    }
}

/// One incarnation's access to the disk.
#[derive(Debug, Clone)]
pub struct DiskHandle {
    disk: SimDisk,
    incarnation: u64,
}

impl DiskHandle {
    pub fn disk(&self) -> &SimDisk {
        &self.disk
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> Result<T, StaleIncarnation> {
        let mut g = self.disk.lock();
        if g.incarnation != self.incarnation {
            return Err(StaleIncarnation { handle: self.incarnation, current: g.incarnation });
        }
        Ok(f(&mut g))
    }

    /// Append to the file; not durable until `sync`.
    pub fn append(&self, file: &str, bytes: &[u8]) -> Result<(), StaleIncarnation> {
        self.with(|g| {
            let f = g.files.entry(file.to_string()).or_default();
            match &mut f.pending {
                Pending::None => f.pending = Pending::Tail(bytes.to_vec()),
                Pending::Tail(t) => t.extend_from_slice(bytes),
                Pending::Replace(r) => r.extend_from_slice(bytes),
            }
        })
    }

    /// Replace the whole content; not durable until `sync`.
    pub fn replace(&self, file: &str, bytes: &[u8]) -> Result<(), StaleIncarnation> {
        self.with(|g| {
            g.files.entry(file.to_string()).or_default().pending = Pending::Replace(bytes.to_vec());
        })
    }

    /// fsync: everything written to `file` so far becomes durable.
    pub fn sync(&self, file: &str) -> Result<(), StaleIncarnation> {
        self.with(|g| {
            g.syncs += 1;
            if let Some(f) = g.files.get_mut(file) {
                match std::mem::take(&mut f.pending) {
                    Pending::None => {}
                    Pending::Tail(t) => f.durable.extend_from_slice(&t),
                    Pending::Replace(r) => f.durable = r,
                }
            }
        })
    }

    /// The file as this incarnation sees it (durable plus unsynced).
    pub fn read(&self, file: &str) -> Result<Vec<u8>, StaleIncarnation> {
        self.with(|g| g.files.get(file).map(File::current).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_append_is_lost_on_crash() {
        let disk = SimDisk::new();
        let h = disk.open();
        h.append("log", b"one;").unwrap();
        h.sync("log").unwrap();
        h.append("log", b"two;").unwrap();
        assert_eq!(h.read("log").unwrap(), b"one;two;");
        assert_eq!(disk.durable("log"), b"one;");
        disk.crash();
        assert!(h.append("log", b"x").is_err(), "a crashed incarnation is fenced");
        let h2 = disk.open();
        assert_eq!(h2.read("log").unwrap(), b"one;");
    }

    #[test]
    fn pending_replace_is_lost_on_crash() {
        let disk = SimDisk::new();
        let h = disk.open();
        h.replace("vote", b"t1").unwrap();
        h.sync("vote").unwrap();
        h.replace("vote", b"t2").unwrap();
        h.append("vote", b"+").unwrap();
        assert_eq!(h.read("vote").unwrap(), b"t2+");
        disk.crash();
        assert_eq!(disk.open().read("vote").unwrap(), b"t1");
    }
}
