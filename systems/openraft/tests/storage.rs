//! The crash model of the log store: an append that openraft has not been told is flushed is
//! lost on a kill; what was flushed, voted, truncated survives.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faultline_openraft::disk::SimDisk;
use faultline_openraft::kv::{Entry, KvOp, KvRequest};
use faultline_openraft::store::{decode_log, replay, LogStore, StateMachine, LOG_FILE};
use faultline_openraft::trace::Trace;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::log_id;
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftLogReader, Vote};

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id::<u64>(term, 1, index),
        payload: EntryPayload::Normal(KvRequest {
            client: 100,
            seq: index,
            op: KvOp::Put { key: format!("k{index}"), value: format!("v{index}") },
        }),
    }
}

fn sim<F: std::future::Future + 'static>(f: F) -> F::Output {
    madsim::runtime::Runtime::with_seed_and_config(5, madsim::Config::default()).block_on(f)
}

/// Append as `RaftLogStorage::append` does, with a callback we can watch (openraft's
/// `LogFlushed::new` is private to openraft). Returns the "flushed" flag the callback sets.
fn append(store: &mut LogStore, entries: Vec<Entry>) -> Arc<AtomicBool> {
    let flushed = Arc::new(AtomicBool::new(false));
    let f = flushed.clone();
    store
        .append_with(entries, Box::new(move |res| {
            res.unwrap();
            f.store(true, Ordering::SeqCst)
        }))
        .unwrap();
    flushed
}

#[test]
fn unflushed_append_is_lost_after_crash() {
    sim(async {
        let disk = SimDisk::new();
        disk.set_fsync_delay_us(5_000..5_001);
        let mut store = LogStore::open(1, disk.open(), Trace::default());
        let flushed = append(&mut store, vec![entry(1, 1), entry(1, 2)]);
        // Not yet durable: the flusher waits its fsync latency.
        assert!(!flushed.load(Ordering::SeqCst));
        assert_eq!(store.try_get_log_entries(1..3).await.unwrap().len(), 2, "the running node sees its writes");
        assert!(decode_log(&disk.durable(LOG_FILE)).is_empty());
        madsim::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(decode_log(&disk.durable(LOG_FILE)).len(), 2, "flushed after the fsync delay");
        assert!(flushed.load(Ordering::SeqCst), "callback after the sync");

        // A second append, held: the harness delays the flush, then the node is killed.
        disk.hold_flushes(true);
        let flushed = append(&mut store, vec![entry(1, 3)]);
        madsim::time::sleep(Duration::from_millis(50)).await;
        assert!(!flushed.load(Ordering::SeqCst), "no callback while the flush is held");
        assert_eq!(decode_log(&disk.durable(LOG_FILE)).len(), 2, "held flush");
        assert!(disk.unsynced_len(LOG_FILE) > 0);
        disk.crash();
        disk.hold_flushes(false);

        let mut store = LogStore::open(1, disk.open(), Trace::default());
        let st = store.get_log_state().await.unwrap();
        assert_eq!(st.last_log_id, Some(log_id::<u64>(1, 1, 2)), "entry 3 was never flushed: gone");
        assert_eq!(store.try_get_log_entries(0..10).await.unwrap().len(), 2);
    });
}

#[test]
fn vote_truncate_and_purge_are_durable_on_return() {
    sim(async {
        let disk = SimDisk::new();
        let mut store = LogStore::open(1, disk.open(), Trace::default());
        append(&mut store, (1..=5).map(|i| entry(1, i)).collect());
        madsim::time::sleep(Duration::from_millis(10)).await;
        let vote = Vote::new_committed(2, 3);
        store.save_vote(&vote).await.unwrap();
        store.truncate(log_id::<u64>(1, 1, 4)).await.unwrap();
        store.purge(log_id::<u64>(1, 1, 1)).await.unwrap();
        disk.crash();
        let mut store = LogStore::open(1, disk.open(), Trace::default());
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
        let st = store.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(LogId::new(CommittedLeaderId::new(1, 1), 1)));
        assert_eq!(st.last_log_id.map(|l| l.index), Some(3));
        let (log, _) = replay(decode_log(&disk.durable(LOG_FILE)));
        assert_eq!(log.keys().copied().collect::<Vec<_>>(), vec![2, 3]);
    });
}

#[test]
fn state_machine_applies_and_snapshot_survives_crash() {
    sim(async {
        let disk = SimDisk::new();
        let mut sm = StateMachine::open(1, disk.open(), Trace::default(), None);
        let resp = sm.apply((1..=3).map(|i| entry(1, i)).collect::<Vec<_>>()).await.unwrap();
        assert_eq!(resp.len(), 3);
        assert_eq!(sm.kv().len(), 3);
        let mut b = sm.get_snapshot_builder().await;
        use openraft::RaftSnapshotBuilder;
        let snap = b.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(3));
        sm.apply(vec![entry(1, 4)]).await.unwrap();
        disk.crash();
        // Volatile state machine: back to the snapshot; openraft re-applies 4 from the log.
        let mut sm = StateMachine::open(1, disk.open(), Trace::default(), None);
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(3));
        assert_eq!(sm.kv().len(), 3);
    });
}
