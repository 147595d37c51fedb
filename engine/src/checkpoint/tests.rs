use super::*;
use crate::layered::{Mode, Store};
use crate::raft::{Entry, Index, Op};

fn put(index: Index, c: &str, k: &str, v: &str) -> Entry {
    Entry {
        term: 1,
        index,
        ts: index,
        op: Op::Put {
            collection: c.into(),
            key: k.into(),
            value: v.repeat(10).into_bytes(),
        },
        session: None,
    }
}

fn leader_with(n: u64) -> Store {
    let mut s = Store::default();
    s.drain_into_stable();
    assert_eq!(s.mode(), Mode::Leader);
    for i in 1..=n {
        s.apply(&put(
            i,
            if i % 2 == 0 { "a" } else { "b" },
            &format!("k{i}"),
            "v",
        ));
    }
    s
}

/// Writes every block of a reconciliation, packing with the given injected failures.
fn write_all(
    r: &mut Reconciliation,
    bt: &mut BytesTotal,
    lsn: &mut Lsn,
    fail_pack_at: Option<usize>,
) -> Result<(), PageError> {
    for i in 0..r.plan.writes.len() {
        *lsn += 1;
        r.written(i, *lsn, bt);
        r.pack(i, Some(i) == fail_pack_at)?;
    }
    Ok(())
}

fn publish(s: &mut Store, leak: bool, lsn: &mut Lsn) -> Vec<(String, Cookie)> {
    let cut = s.begin_checkpoint().unwrap();
    let mut r = Reconciliation::new(plan(&s.base, &cut), leak);
    let mut bt = std::mem::take(&mut s.bytes_total);
    write_all(&mut r, &mut bt, lsn, None).unwrap();
    let (view, frees) = r.wrap_up(&cut, s.base.meta.id + 1, 1, None, &mut bt);
    s.bytes_total = bt;
    s.complete_checkpoint(view);
    frees
}

#[test]
fn bytes_total_tracks_live_blocks_through_deltas_and_rewrites() {
    let mut s = leader_with(40);
    let mut lsn = 0;
    assert!(publish(&mut s, false, &mut lsn).is_empty());
    let mut freed = 0;
    for round in 0..(MAX_DELTAS as u64 + 3) {
        s.apply(&put(41 + round, "a", "k2", &format!("r{round}")));
        freed += publish(&mut s, false, &mut lsn).len();
        for (t, root) in &s.base.meta.tables {
            assert_eq!(
                root.bytes_total,
                root.live_bytes(),
                "table {t} round {round}"
            );
            assert_eq!(s.bytes_total[t], root.bytes_total);
            assert!(root.pages.values().all(|c| c.len() <= MAX_DELTAS + 1));
        }
    }
    assert!(
        freed > 0,
        "a long chain is rewritten as a full image and its blocks freed"
    );
    let m = &s.base.meta;
    assert_eq!(
        m.database_size,
        m.tables.values().map(|t| t.bytes_total).sum::<u64>() + DATABASE_SIZE_BUFFER
    );
    assert_eq!(m.tables["a"].record_count + m.tables["b"].record_count, 40);
}

#[test]
fn a_delta_is_based_on_the_last_block_of_its_page() {
    let mut s = leader_with(4);
    let mut lsn = 0;
    publish(&mut s, false, &mut lsn);
    s.apply(&put(5, "a", "k2", "new"));
    let cut = s.begin_checkpoint().unwrap();
    let p = plan(&s.base, &cut);
    assert_eq!(p.writes.len(), 1, "one page changed");
    let w = &p.writes[0];
    let chain = &s.base.meta.tables["a"].pages[&w.page_id];
    assert_eq!(w.base_lsn, chain.last().unwrap().lsn);
    assert!(matches!(
        PageImage::decode(&w.bytes).unwrap(),
        PageImage::Delta(_)
    ));
}

#[test]
fn fixed_path_failed_pack_discards_every_written_block_and_keeps_bytes_total() {
    let mut s = leader_with(30);
    let mut lsn = 0;
    publish(&mut s, false, &mut lsn);
    let before = s.bytes_total.clone();
    for i in 31..=60 {
        s.apply(&put(i, "a", &format!("k{i}"), "w"));
    }
    let cut = s.begin_checkpoint().unwrap();
    let mut r = Reconciliation::new(plan(&s.base, &cut), false);
    let n = r.plan.writes.len();
    assert!(n >= 3);
    let mut bt = s.bytes_total.clone();
    let first_lsn = lsn + 1;
    let err = write_all(&mut r, &mut bt, &mut lsn, Some(2)).unwrap_err();
    assert!(matches!(err, PageError::LsnOrder { .. }));
    let cleanup = r.fail(&mut bt);
    assert_eq!(
        cleanup.discard,
        (first_lsn..=lsn).collect::<Vec<_>>(),
        "packed and unpacked"
    );
    assert!(cleanup.orphaned.is_empty());
    assert_eq!(bt, before, "nothing was applied before wrap-up");
    // The changes are dirty again and the next checkpoint publishes them.
    s.fail_checkpoint();
    assert!(!s.dirty.is_empty());
    publish(&mut s, false, &mut lsn);
    for root in s.base.meta.tables.values() {
        assert_eq!(root.bytes_total, root.live_bytes());
    }
}

#[test]
fn faulty_path_failed_pack_leaks_the_block_and_inflates_bytes_total() {
    let mut s = leader_with(30);
    let mut lsn = 0;
    publish(&mut s, true, &mut lsn);
    for i in 31..=60 {
        s.apply(&put(i, "a", &format!("k{i}"), "w"));
    }
    let cut = s.begin_checkpoint().unwrap();
    let mut r = Reconciliation::new(plan(&s.base, &cut), true);
    let failed_size = r.plan.writes[2].bytes.len() as u64;
    let table = r.plan.writes[2].table.clone();
    let mut bt = s.bytes_total.clone();
    let before = bt[&table];
    write_all(&mut r, &mut bt, &mut lsn, Some(2)).unwrap_err();
    let cleanup = r.fail(&mut bt);
    assert_eq!(
        cleanup.orphaned,
        vec![lsn],
        "the unpacked block cannot be freed"
    );
    assert_eq!(cleanup.discard.len(), 2);
    assert_eq!(
        bt[&table],
        before + failed_size,
        "inflated by the orphan's size"
    );
    // The leak survives the next successful checkpoint, which publishes the drift.
    s.bytes_total = bt;
    s.fail_checkpoint();
    publish(&mut s, true, &mut lsn);
    let root = &s.base.meta.tables[&table];
    assert_eq!(root.bytes_total, root.live_bytes() + failed_size);
}

#[test]
#[should_panic]
fn wrap_up_with_an_unpacked_block_is_fatal() {
    let mut s = leader_with(10);
    let cut = s.begin_checkpoint().unwrap();
    let r = Reconciliation::new(plan(&s.base, &cut), false);
    let mut bt = BytesTotal::new();
    let _ = r.wrap_up(&cut, 1, 1, None, &mut bt);
}
