//! Durable raft state on a [`Storage`]: an append-only log file of checksummed records (entries
//! and truncation markers) and a small hard-state file. A torn tail (a record cut by a crash) is
//! detected by its checksum and cut off on load.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::raft::{Entry, HardState, Index, LogOp};
use crate::storage::{Storage, StorageError};

pub const LOG_FILE: &str = "raft.log";
pub const HARD_FILE: &str = "raft.hard";

/// One record of the log file. Public so that a harness that owns the disk can read what is
/// durable (it checks that nothing is promised before it is).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Record {
    Entry(Entry),
    TruncateFrom(Index),
    Hard(HardState),
}

/// What recovery found, for the trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    pub hard: HardState,
    pub entries: Vec<Entry>,
    /// Bytes of a torn or corrupt tail that were cut off.
    pub torn_bytes: u64,
}

pub struct LogStore {
    disk: Arc<dyn Storage>,
    /// Planted bug (tests only): damage anywhere is cut off like a torn tail, and a log shorter
    /// than the synced commit is trusted.
    cuts_damage: bool,
}

fn encode_record(out: &mut Vec<u8>, rec: &Record) {
    crate::frames::encode(out, rec)
}

/// The whole records at the start of `bytes` and how many bytes they take.
pub fn decode_records(bytes: &[u8]) -> (Vec<Record>, usize) {
    crate::frames::decode(bytes)
}

/// What a log record says about the log's shape (an entry's index and term, a truncation),
/// without decoding the entry's operation: enough for a reader that only follows what is
/// durable, at a fraction of the cost. Variant order and the leading fields match [`Record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RecordHead {
    Entry(EntryHead),
    TruncateFrom(Index),
    Hard(HardState),
}

/// An entry's first two fields (the rest of the record is not read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct EntryHead {
    pub term: crate::raft::Term,
    pub index: Index,
}

/// The heads of the whole records at the start of `bytes` and how many bytes they take.
pub fn decode_heads(bytes: &[u8]) -> (Vec<RecordHead>, usize) {
    crate::frames::decode(bytes)
}

/// The hard state in a hard-state file's bytes (`None`: empty or unreadable).
pub fn decode_hard(bytes: &[u8]) -> Option<HardState> {
    match decode_records(bytes).0.into_iter().next() {
        Some(Record::Hard(h)) => Some(h),
        _ => None,
    }
}

impl LogStore {
    pub fn new(disk: Arc<dyn Storage>) -> Self {
        LogStore {
            disk,
            cuts_damage: false,
        }
    }

    /// With the planted bug that treats damage at rest like a torn tail (tests only).
    pub fn cutting_damage(mut self, on: bool) -> Self {
        self.cuts_damage = on;
        self
    }

    /// Loads the hard state and log, cutting off a torn tail durably.
    pub fn load(&self) -> Result<Recovered, StorageError> {
        let hard_bytes = self.disk.read(HARD_FILE)?;
        let hard = if hard_bytes.is_empty() {
            HardState::default()
        } else {
            match decode_records(&hard_bytes).0.into_iter().next() {
                Some(Record::Hard(h)) => h,
                _ => {
                    return Err(StorageError::Corrupt {
                        file: HARD_FILE.into(),
                        detail: "unreadable hard state".into(),
                    })
                }
            }
        };
        let bytes = self.disk.read(LOG_FILE)?;
        let (recs, valid) = decode_records(&bytes);
        if let Some(next) = crate::frames::next_valid(&bytes, valid).filter(|_| !self.cuts_damage) {
            // Cutting here would silently drop synced entries this node may have acknowledged.
            return Err(StorageError::Corrupt {
                file: LOG_FILE.into(),
                detail: format!(
                    "the record at byte {valid} fails its checksum but a whole record follows \
                     at byte {next}: damaged at rest, not a torn write"
                ),
            });
        }
        let torn_bytes = (bytes.len() - valid) as u64;
        if torn_bytes > 0 {
            self.disk.replace(LOG_FILE, &bytes[..valid])?;
            self.disk.sync(LOG_FILE)?;
        }
        let mut entries: Vec<Entry> = Vec::new();
        for rec in recs {
            match rec {
                Record::Entry(e) => {
                    if e.index != entries.len() as Index + 1 {
                        return Err(StorageError::Corrupt {
                            file: LOG_FILE.into(),
                            detail: format!("entry {} after log end {}", e.index, entries.len()),
                        });
                    }
                    entries.push(e)
                }
                Record::TruncateFrom(i) => entries.truncate(i.saturating_sub(1) as usize),
                Record::Hard(_) => {
                    return Err(StorageError::Corrupt {
                        file: LOG_FILE.into(),
                        detail: "hard state in the log".into(),
                    })
                }
            }
        }
        if hard.commit > entries.len() as Index && !self.cuts_damage {
            // The hard state is synced after the log: a shorter log lost a write it was told
            // was durable.
            return Err(StorageError::Corrupt {
                file: LOG_FILE.into(),
                detail: format!(
                    "the hard state commits through {} but the log ends at {}: a synced write \
                     was lost",
                    hard.commit,
                    entries.len()
                ),
            });
        }
        Ok(Recovered {
            hard,
            entries,
            torn_bytes,
        })
    }

    /// Makes log changes and then the hard state durable (log first: a hard state never
    /// points at entries that could be lost).
    pub fn persist(&self, hard: Option<HardState>, ops: &[LogOp]) -> Result<(), StorageError> {
        let written = self.write(hard, ops)?;
        self.sync(written)
    }

    /// Buffers the changes (not yet durable); returns what must be synced.
    pub fn write(&self, hard: Option<HardState>, ops: &[LogOp]) -> Result<Written, StorageError> {
        if !ops.is_empty() {
            let mut buf = Vec::new();
            for op in ops {
                match op {
                    LogOp::TruncateFrom(i) => encode_record(&mut buf, &Record::TruncateFrom(*i)),
                    LogOp::Append(es) => {
                        for e in es {
                            encode_record(&mut buf, &Record::Entry(e.clone()))
                        }
                    }
                }
            }
            self.disk.append(LOG_FILE, &buf)?;
        }
        if let Some(h) = hard {
            let mut buf = Vec::new();
            encode_record(&mut buf, &Record::Hard(h));
            self.disk.replace(HARD_FILE, &buf)?;
        }
        Ok(Written {
            log: !ops.is_empty(),
            hard: hard.is_some(),
        })
    }

    /// The fsync: log first, then the hard state.
    pub fn sync(&self, w: Written) -> Result<(), StorageError> {
        if w.log {
            self.disk.sync(LOG_FILE)?;
        }
        if w.hard {
            self.disk.sync(HARD_FILE)?;
        }
        Ok(())
    }
}

/// Which files a [`LogStore::write`] dirtied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub log: bool,
    pub hard: bool,
}

impl Written {
    pub fn any(&self) -> bool {
        self.log || self.hard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Op;
    use crate::storage::MemDisk;

    fn e(term: u64, index: u64) -> Entry {
        Entry {
            term,
            index,
            ts: index,
            op: Op::Noop,
            session: None,
        }
    }

    #[test]
    fn round_trips_entries_truncations_and_hard_state() {
        let disk = Arc::new(MemDisk::default());
        let s = LogStore::new(disk.clone());
        let h = HardState {
            term: 5,
            voted_for: Some(2),
            commit: 2,
        };
        s.persist(Some(h), &[LogOp::Append(vec![e(1, 1), e(1, 2), e(1, 3)])])
            .unwrap();
        s.persist(
            None,
            &[LogOp::TruncateFrom(3), LogOp::Append(vec![e(5, 3)])],
        )
        .unwrap();
        let r = s.load().unwrap();
        assert_eq!(r.hard, h);
        assert_eq!(r.entries, vec![e(1, 1), e(1, 2), e(5, 3)]);
        assert_eq!(r.torn_bytes, 0);
    }

    #[test]
    fn torn_tail_is_cut_off_durably() {
        let disk = Arc::new(MemDisk::default());
        let s = LogStore::new(disk.clone());
        s.persist(None, &[LogOp::Append(vec![e(1, 1), e(1, 2)])])
            .unwrap();
        let mut bytes = disk.read(LOG_FILE).unwrap();
        let full = bytes.len();
        bytes.truncate(full - 3); // the last record lost its last bytes
        disk.replace(LOG_FILE, &bytes).unwrap();
        let r = s.load().unwrap();
        assert_eq!(r.entries, vec![e(1, 1)]);
        assert!(r.torn_bytes > 0);
        // Appends after recovery are readable (the garbage was removed).
        s.persist(None, &[LogOp::Append(vec![e(2, 2)])]).unwrap();
        assert_eq!(s.load().unwrap().entries, vec![e(1, 1), e(2, 2)]);
    }

    #[test]
    /// A damaged last record looks exactly like a torn write (nothing valid follows it), so it
    /// is cut like one; the harness never damages a log's last record at rest for that reason.
    fn flipped_bit_in_the_last_record_is_cut_like_a_torn_tail() {
        let disk = Arc::new(MemDisk::default());
        let s = LogStore::new(disk.clone());
        s.persist(None, &[LogOp::Append(vec![e(1, 1), e(1, 2)])])
            .unwrap();
        let mut bytes = disk.read(LOG_FILE).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        disk.replace(LOG_FILE, &bytes).unwrap();
        assert_eq!(s.load().unwrap().entries, vec![e(1, 1)]);
    }

    #[test]
    fn a_damaged_record_with_whole_records_after_it_refuses_to_load() {
        let disk = Arc::new(MemDisk::default());
        let s = LogStore::new(disk.clone());
        s.persist(None, &[LogOp::Append(vec![e(1, 1), e(1, 2), e(1, 3)])])
            .unwrap();
        let mut bytes = disk.read(LOG_FILE).unwrap();
        let one = bytes.len() / 3;
        bytes[one + 12] ^= 0x02;
        disk.replace(LOG_FILE, &bytes).unwrap();
        let err = s.load().unwrap_err().to_string();
        assert!(err.contains("damaged at rest, not a torn write"), "{err}");
        assert_eq!(disk.read(LOG_FILE).unwrap(), bytes, "nothing was cut");
    }

    #[test]
    fn a_log_shorter_than_the_synced_commit_refuses_to_load() {
        let disk = Arc::new(MemDisk::default());
        let s = LogStore::new(disk.clone());
        let hard = HardState {
            term: 1,
            voted_for: None,
            commit: 2,
        };
        s.persist(Some(hard), &[LogOp::Append(vec![e(1, 1), e(1, 2)])])
            .unwrap();
        let mut one = Vec::new();
        encode_record(&mut one, &Record::Entry(e(1, 1)));
        disk.replace(LOG_FILE, &one).unwrap(); // the second entry's write was lost
        let err = s.load().unwrap_err().to_string();
        assert!(err.contains("a synced write was lost"), "{err}");
    }

    #[test]
    fn record_heads_agree_with_whole_records() {
        let mut bytes = Vec::new();
        for rec in [
            Record::Entry(e(2, 1)),
            Record::TruncateFrom(1),
            Record::Entry(Entry {
                op: Op::Put {
                    collection: "c".into(),
                    key: "k".into(),
                    value: vec![7; 300],
                },
                ..e(3, 1)
            }),
            Record::Hard(HardState {
                term: 3,
                voted_for: Some(2),
                commit: 1,
            }),
        ] {
            encode_record(&mut bytes, &rec);
        }
        let (heads, n) = decode_heads(&bytes);
        assert_eq!(n, bytes.len());
        assert_eq!(
            heads,
            vec![
                RecordHead::Entry(EntryHead { term: 2, index: 1 }),
                RecordHead::TruncateFrom(1),
                RecordHead::Entry(EntryHead { term: 3, index: 1 }),
                RecordHead::Hard(HardState {
                    term: 3,
                    voted_for: Some(2),
                    commit: 1
                }),
            ]
        );
    }

    #[test]
    fn empty_disk_is_a_fresh_node() {
        let s = LogStore::new(Arc::new(MemDisk::default()));
        assert_eq!(s.load().unwrap(), Recovered::default());
    }
}
