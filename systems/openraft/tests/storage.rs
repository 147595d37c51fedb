//! The log store and state machine on the harness's disk: an append openraft has not been told
//! is flushed is lost on a kill; what was flushed, voted, truncated survives; a torn last record
//! is dropped (durably), damage refuses to open; and each step is reported as its HostedEvent,
//! at its boundary.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faultline_openraft::kv::{Entry, KvOp, KvRequest};
use faultline_openraft::store::{decode_log, frame, replay, LogRecord, LogStore, StateMachine, LOG_FILE};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::log_id;
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, Vote};
use sim::disk::SimDisk;
use sim::sut::{HostedEvent, Links, Obs, Storage};

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id::<u64>(term, 1, index),
        payload: EntryPayload::Normal(KvRequest {
            client: 3,
            seq: index,
            op: KvOp::Put { key: format!("k{index}"), value: format!("v{index}").into_bytes() },
        }),
    }
}

fn sim<F: std::future::Future + 'static>(f: F) -> F::Output {
    madsim::runtime::Runtime::with_seed_and_config(5, madsim::Config::default()).block_on(f)
}

/// An observation sink that keeps what it is told.
fn recorder() -> (Obs, Arc<Mutex<Vec<HostedEvent>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    (Obs::with(1, move |_, _, ev| s.lock().unwrap().push(ev)), seen)
}

fn open(disk: &Arc<SimDisk>, links: &Links, obs: Obs) -> LogStore {
    LogStore::open(1, Arc::new(disk.open(1)), links.flush_gate(1), obs).expect("opens")
}

fn durable_records(disk: &SimDisk) -> usize {
    disk.durable(1, LOG_FILE, |b, _| decode_log(b).unwrap().records.len())
}

/// Append as `RaftLogStorage::append` does, with a callback we can watch (openraft's
/// `LogFlushed::new` is private to openraft). Returns the "flushed" flag the callback sets (a
/// crashed incarnation's flusher, still running here where no madsim node is killed, is
/// refused by the disk: not flushed).
fn append(store: &LogStore, entries: Vec<Entry>) -> Arc<AtomicBool> {
    let flushed = Arc::new(AtomicBool::new(false));
    let f = flushed.clone();
    store
        .append_with(
            entries,
            Box::new(move |res| f.store(res.is_ok(), Ordering::SeqCst)),
        )
        .unwrap();
    flushed
}

#[test]
fn unflushed_append_is_lost_after_crash() {
    sim(async {
        let disk = SimDisk::new(5, false);
        let links = Links::new(5, [1, 1]);
        // `Flushed` must be reported before openraft's callback: the sink checks the flag.
        let flag: Arc<Mutex<Option<Arc<AtomicBool>>>> = Arc::new(Mutex::new(None));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (f2, s2) = (flag.clone(), seen.clone());
        let obs = Obs::with(1, move |_, _, ev| {
            if let HostedEvent::Flushed { .. } = ev {
                let called = f2.lock().unwrap().as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
                assert!(!called, "Flushed reported after the callback");
            }
            s2.lock().unwrap().push(ev);
        });
        let mut store = open(&disk, &links, obs.clone());
        let flushed = append(&store, vec![entry(1, 1), entry(1, 2)]);
        *flag.lock().unwrap() = Some(flushed.clone());
        // Not yet durable: the flusher waits for the gate's fsync latency (0.5-1.5 ms).
        assert!(!flushed.load(Ordering::SeqCst));
        assert_eq!(store.try_get_log_entries(1..3).await.unwrap().len(), 2, "the running node sees its writes");
        assert_eq!(durable_records(&disk), 0);
        madsim::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(durable_records(&disk), 2, "flushed after the fsync latency");
        assert!(flushed.load(Ordering::SeqCst), "callback after the sync");
        assert_eq!(
            *seen.lock().unwrap(),
            vec![HostedEvent::Appended { entries: vec![(1, 1), (2, 1)] }, HostedEvent::Flushed { upto: 2 }]
        );

        // A second append, held: the harness delays the flush, then the node is killed.
        links.hold_flushes(1);
        let flushed = append(&store, vec![entry(1, 3)]);
        madsim::time::sleep(Duration::from_millis(50)).await;
        assert!(!flushed.load(Ordering::SeqCst), "no callback while the flush is held");
        assert_eq!(durable_records(&disk), 2, "held flush");
        assert_eq!(seen.lock().unwrap().len(), 3, "appended, not flushed");
        disk.crash(1);
        links.release_flushes(1);

        let (obs, _) = recorder();
        let mut store = open(&disk, &links, obs);
        let st = store.get_log_state().await.unwrap();
        assert_eq!(st.last_log_id, Some(log_id::<u64>(1, 1, 2)), "entry 3 was never flushed: gone");
        assert_eq!(store.entry_ids(), vec![(1, 1), (2, 1)]);
    });
}

#[test]
fn vote_truncate_purge_and_commit_are_reported_and_durable() {
    sim(async {
        let disk = SimDisk::new(5, true);
        let links = Links::new(5, [1, 1]);
        let (obs, seen) = recorder();
        let mut store = open(&disk, &links, obs);
        append(&store, (1..=5).map(|i| entry(1, i)).collect());
        madsim::time::sleep(Duration::from_millis(10)).await;
        seen.lock().unwrap().clear();
        store.save_vote(&Vote::new(2, 3)).await.unwrap();
        let own = Vote::new_committed(2, 1);
        store.save_vote(&own).await.unwrap();
        store.truncate(log_id::<u64>(1, 1, 4)).await.unwrap();
        store.purge(log_id::<u64>(1, 1, 1)).await.unwrap();
        store.save_committed(Some(log_id::<u64>(1, 1, 3))).await.unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                HostedEvent::Vote { term: 2, voted_for: Some(3), committed: false },
                HostedEvent::Vote { term: 2, voted_for: Some(1), committed: true },
                HostedEvent::Leader { term: 2 },
                HostedEvent::Truncated { from: 4 },
                HostedEvent::Purged { upto: 1 },
                HostedEvent::Committed { index: 3, term: 1 },
            ]
        );
        disk.crash(1);
        let (obs, _) = recorder();
        let mut store = open(&disk, &links, obs);
        assert_eq!(store.read_vote().await.unwrap(), Some(own));
        assert_eq!(store.read_committed().await.unwrap(), None, "the commit index is not persisted");
        let st = store.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(LogId::new(CommittedLeaderId::new(1, 1), 1)));
        assert_eq!(st.last_log_id.map(|l| l.index), Some(3));
        let (log, _) = disk.durable(1, LOG_FILE, |b, _| replay(decode_log(b).unwrap().records));
        assert_eq!(log.keys().copied().collect::<Vec<_>>(), vec![2, 3]);
    });
}

/// A crash may keep a sector-aligned prefix of an unsynced append: the last record can be cut
/// anywhere. Opening drops it, rewrites the file without it (durably), and later appends are
/// read back after the next restart.
#[test]
fn torn_last_record_is_dropped_and_the_log_stays_appendable() {
    sim(async {
        let disk = SimDisk::new(5, false);
        let links = Links::new(5, [1, 1]);
        let h = disk.open(1);
        let whole: Vec<u8> = (1..=3).flat_map(|i| frame(&LogRecord::Append(entry(1, i)))).collect();
        let fourth = frame(&LogRecord::Append(entry(1, 4)));
        for cut in [1, 7, 8, 9, fourth.len() - 1] {
            h.replace(LOG_FILE, &[whole.as_slice(), &fourth[..cut]].concat()).unwrap();
            h.sync(LOG_FILE).unwrap();
            let d = decode_log(&h.read(LOG_FILE).unwrap()).unwrap();
            assert_eq!((d.records.len(), d.valid_len), (3, whole.len()), "cut at {cut}");
        }
        disk.crash(1);
        let (obs, seen) = recorder();
        let store = open(&disk, &links, obs);
        assert_eq!(store.entry_ids(), vec![(1, 1), (2, 1), (3, 1)]);
        assert!(matches!(&seen.lock().unwrap()[0], HostedEvent::Note(n) if n.contains("torn")));
        assert_eq!(disk.durable(1, LOG_FILE, |b, _| b.len()), whole.len(), "rewritten durably");
        append(&store, vec![entry(2, 4)]);
        madsim::time::sleep(Duration::from_millis(10)).await;
        disk.crash(1);
        let (obs, _) = recorder();
        let store = open(&disk, &links, obs);
        assert_eq!(store.entry_ids(), vec![(1, 1), (2, 1), (3, 1), (4, 2)]);
    });
}

/// The same through the harness's tearing disk: many crashes with unsynced appends of entries
/// longer than a sector; every reopen gives a prefix of what was appended, never an error.
#[test]
fn tearing_disk_reopens_to_a_prefix() {
    sim(async {
        let disk = SimDisk::new(9, true);
        let links = Links::new(9, [1, 1]);
        let big = |i: u64| Entry {
            log_id: log_id::<u64>(1, 1, i),
            payload: EntryPayload::Normal(KvRequest {
                client: 1,
                seq: i,
                op: KvOp::Put { key: format!("k{i}"), value: vec![b'x'; 300 + (i as usize * 37) % 900] },
            }),
        };
        let mut kept: Vec<u64> = Vec::new();
        let (mut torn_kept, mut torn_dropped) = (0, 0);
        for _ in 0..40 {
            let (obs, seen) = recorder();
            let store = open(&disk, &links, obs);
            torn_dropped += seen.lock().unwrap().iter().filter(|e| matches!(e, HostedEvent::Note(n) if n.contains("torn"))).count();
            let ids: Vec<u64> = store.entry_ids().iter().map(|&(i, _)| i).collect();
            assert!(ids.len() >= kept.len() && ids[..kept.len()] == kept[..], "lost synced entries: {ids:?} vs {kept:?}");
            assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "a prefix");
            let next = ids.len() as u64 + 1;
            kept = ids;
            append(&store, (next..next + 2).map(big).collect());
            madsim::time::sleep(Duration::from_millis(10)).await;
            kept.extend([next, next + 1]);
            links.hold_flushes(1);
            append(&store, (next + 2..next + 5).map(big).collect());
            madsim::time::sleep(Duration::from_millis(1)).await;
            torn_kept += disk.crash(1).bytes_torn_kept;
            links.release_flushes(1);
        }
        assert!(kept.len() >= 80);
        assert!(torn_kept > 0 && torn_dropped > 0, "the disk tore appends ({torn_kept} bytes kept, {torn_dropped} partial records)");
    });
}

#[test]
fn damaged_record_refuses_to_open() {
    sim(async {
        let disk = SimDisk::new(5, false);
        let links = Links::new(5, [1, 1]);
        let h = disk.open(1);
        let mut bytes: Vec<u8> = (1..=3).flat_map(|i| frame(&LogRecord::Append(entry(1, i)))).collect();
        bytes[20] ^= 0x10;
        h.append(LOG_FILE, &bytes).unwrap();
        h.sync(LOG_FILE).unwrap();
        disk.crash(1);
        let (obs, _) = recorder();
        let err = LogStore::open(1, Arc::new(disk.open(1)), links.flush_gate(1), obs).err().expect("refuses");
        assert!(err.contains("checksum"), "{err}");
    });
}

#[test]
fn state_machine_applies_reports_and_snapshot_survives_crash() {
    sim(async {
        let disk = SimDisk::new(5, false);
        let (obs, seen) = recorder();
        let mut sm = StateMachine::open(1, Arc::new(disk.open(1)), obs).unwrap();
        let mut entries: Vec<Entry> = (1..=3).map(|i| entry(1, i)).collect();
        entries.insert(0, Entry { log_id: log_id::<u64>(1, 1, 0), payload: EntryPayload::Blank });
        let resp = sm.apply(entries).await.unwrap();
        assert_eq!(resp.len(), 4);
        assert_eq!(sm.kv().len(), 3);
        let applied: Vec<HostedEvent> = seen.lock().unwrap().clone();
        assert_eq!(applied[0], HostedEvent::Applied { index: 0, term: 1, op: String::new() });
        assert_eq!(applied[1], HostedEvent::Applied { index: 1, term: 1, op: "c3#1 put k1=v1".into() });
        let (idx, digest) = sm.applied_and_digest();
        assert_eq!(idx, 3);
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(3));
        sm.apply(vec![entry(1, 4)]).await.unwrap();
        assert_ne!(sm.applied_and_digest().1, digest);
        disk.crash(1);
        // Volatile state machine: back to the snapshot; openraft re-applies 4 from the log.
        let (obs, seen) = recorder();
        let mut sm = StateMachine::open(1, Arc::new(disk.open(1)), obs.clone()).unwrap();
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(3));
        assert_eq!(sm.applied_and_digest(), (3, digest), "same state, same digest");
        assert_eq!(sm.snapshot_index(), 3);

        // Another node installs that snapshot: reported once durable.
        let mut other = StateMachine::open(2, Arc::new(disk.open(2)), obs).unwrap();
        let data = sm.get_current_snapshot().await.unwrap().unwrap();
        other.install_snapshot(&data.meta, data.snapshot).await.unwrap();
        assert_eq!(seen.lock().unwrap().last(), Some(&HostedEvent::SnapshotInstalled { index: 3, term: 1 }));
        assert_eq!(other.applied_and_digest(), (3, digest));
    });
}

/// openraft 0.9.14 asks a stale-log leader's store for an inverted range (#1236): empty, not a
/// panic.
#[test]
fn inverted_range_reads_empty() {
    sim(async {
        let disk = SimDisk::new(5, false);
        let links = Links::new(5, [1, 1]);
        let (obs, _) = recorder();
        let mut store = open(&disk, &links, obs);
        append(&store, (1..=5).map(|i| entry(1, i)).collect());
        assert!(store.try_get_log_entries(4..2).await.unwrap().is_empty());
        assert!(store.try_get_log_entries(4..=3).await.unwrap().is_empty());
        assert_eq!(store.try_get_log_entries(2..=3).await.unwrap().len(), 2);
        assert_eq!(store.try_get_log_entries(4..).await.unwrap().len(), 2);
    });
}
