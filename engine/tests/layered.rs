//! The layered store (layered.rs) through whole checkpoints (checkpoint.rs, which sits above
//! it), so these run from outside the crate.

use engine::checkpoint::{plan, Reconciliation};
use engine::layered::*;
use engine::pages::Lsn;
use engine::raft::{Entry, Index, Op, Term};
use engine::state::{Collection, StateMachine};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

fn entry(index: Index, op: Op) -> Entry {
    Entry {
        term: 1,
        index,
        ts: index * 10,
        op,
        session: None,
    }
}

fn put(c: &str, k: &str, v: &str) -> Op {
    Op::Put {
        collection: c.into(),
        key: k.into(),
        value: v.as_bytes().to_vec(),
    }
}

/// Runs a whole checkpoint against an in-memory "page service" (LSNs from a counter).
fn checkpoint(store: &mut Store, next_lsn: &mut u64, term: Term) -> Vec<Lsn> {
    let cut = store
        .begin_checkpoint()
        .expect("leader with no checkpoint running");
    let mut r = Reconciliation::new(plan(&store.base, &cut), false);
    for i in 0..r.plan.writes.len() {
        *next_lsn += 1;
        r.written(i, *next_lsn, &mut store.bytes_total);
        r.pack(i, false).unwrap();
    }
    let id = store.base.meta.id + 1;
    let (view, frees) = r.wrap_up(&cut, id, term, None, &mut store.bytes_total);
    store.complete_checkpoint(view);
    frees.into_iter().map(|(_, c)| c.lsn).collect()
}

#[test]
fn ingest_reads_over_stable_and_is_pruned_at_pickup() {
    // Leader: writes go to stable, a checkpoint publishes them.
    let mut leader = Store::default();
    leader.drain_into_stable();
    leader.apply(&entry(1, put("a", "k1", "v1")));
    leader.apply(&entry(2, put("a", "k2", "v2")));
    let mut lsn = 0;
    checkpoint(&mut leader, &mut lsn, 1);
    assert!(leader.ingest.is_empty() && leader.dirty.is_empty());
    assert_eq!(leader.base.meta.applied_index, 2);
    // Follower: applies the same entries and more to ingest, then picks the checkpoint up.
    let mut f = Store::default();
    f.apply(&entry(1, put("a", "k1", "v1")));
    f.apply(&entry(2, put("a", "k2", "v2")));
    f.apply(&entry(
        3,
        Op::Delete {
            collection: "a".into(),
            key: "k1".into(),
        },
    ));
    let before = f.read_all();
    assert!(f.can_install(&leader.base.meta));
    f.install(leader.base.clone());
    assert_eq!(
        f.read_all(),
        before,
        "pick-up changes what is stored, not what is read"
    );
    assert_eq!(
        f.ingest.len(),
        1,
        "only the entry after the checkpoint stays"
    );
    assert!(f.ingest.min_ts().unwrap() > leader.base.meta.ts);
    assert_eq!(f.get("a", "k1"), None);
    assert_eq!(f.get("a", "k2"), Some(b"v2".to_vec()));
}

#[test]
fn a_checkpoint_ahead_of_the_follower_is_not_installed() {
    let mut leader = Store::default();
    leader.drain_into_stable();
    leader.apply(&entry(1, put("a", "k", "v")));
    leader.apply(&entry(2, put("a", "k", "w")));
    checkpoint(&mut leader, &mut 0, 1);
    let mut f = Store::default();
    f.apply(&entry(1, put("a", "k", "v")));
    assert!(!f.can_install(&leader.base.meta));
}

#[test]
fn drops_mask_the_stable_table_until_a_checkpoint_reflects_them() {
    let mut leader = Store::default();
    leader.drain_into_stable();
    leader.apply(&entry(1, put("a", "k", "v")));
    let mut lsn = 0;
    checkpoint(&mut leader, &mut lsn, 1);
    let mut f = Store::from_checkpoint(leader.base.clone(), Default::default());
    // Drop, re-create, write: all in ingest over a stable table that still has "a".
    let ops = [
        Op::DropCollection { name: "a".into() },
        Op::CreateCollection { name: "a".into() },
        put("a", "k2", "x"),
    ];
    for (i, op) in ops.iter().enumerate() {
        f.apply(&entry(2 + i as Index, op.clone()));
        leader.apply(&entry(2 + i as Index, op.clone()));
    }
    let want: Collection = [("k2".to_string(), b"x".to_vec())].into_iter().collect();
    assert_eq!(f.read("a"), Some(want.clone()));
    assert_eq!(leader.read("a"), Some(want.clone()));
    // A checkpoint after the drop only: the mask is pruned, the re-creation stays in ingest.
    let frees = checkpoint(&mut leader, &mut lsn, 1);
    assert_eq!(frees.len(), 1, "the dropped table's block is freed");
    f.install(leader.base.clone());
    assert_eq!(f.read("a"), Some(want));
    assert!(f.ingest.is_empty());
}

#[test]
fn step_down_keeps_unpublished_changes_as_ingest() {
    let mut s = Store::default();
    s.drain_into_stable();
    s.apply(&entry(1, put("a", "k", "v")));
    checkpoint(&mut s, &mut 0, 1);
    s.apply(&entry(2, put("a", "k2", "v2")));
    let _cut = s.begin_checkpoint().unwrap(); // in flight when leadership is lost
    s.apply(&entry(3, put("b", "k", "v3")));
    let before = s.read_all();
    s.step_down();
    assert_eq!(s.mode(), Mode::Follower);
    assert!(s.dirty.is_empty() && s.in_flight.is_none());
    assert_eq!(s.read_all(), before);
    assert_eq!(s.ingest.len(), 2);
}

/// The layered store reads exactly like the plain state machine, whatever the mix of
/// checkpoints, pick-ups, step-ups and step-downs — the property `dbhash` relies on.
#[test]
fn layered_reads_match_the_plain_state_machine() {
    for seed in 0..40u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut model = StateMachine::default();
        let mut leader = Store::default();
        leader.drain_into_stable();
        let mut follower = Store::default();
        let mut lsn = 0;
        let mut pending = None;
        for i in 1..=300u64 {
            let c = format!("c{}", rng.gen_range(0..3));
            let k = format!("k{}", rng.gen_range(0..20));
            let op = match rng.gen_range(0..100) {
                0..=59 => put(&c, &k, &format!("v{i}")),
                60..=84 => Op::Delete {
                    collection: c,
                    key: k,
                },
                85..=92 => Op::DropCollection { name: c },
                _ => Op::CreateCollection { name: c },
            };
            let e = entry(i, op);
            model.apply(&e);
            leader.apply(&e);
            follower.apply(&e);
            // Checkpoints run while entries keep being applied; some fail before wrap-up.
            match pending.take() {
                None if rng.gen_ratio(1, 8) => {
                    let cut = leader.begin_checkpoint().expect("leader, none running");
                    pending = Some(cut);
                }
                Some(cut) if rng.gen_ratio(1, 3) => {
                    let mut r = Reconciliation::new(plan(&leader.base, &cut), false);
                    let fail = rng.gen_ratio(1, 4);
                    let mut bt = leader.bytes_total.clone();
                    for w in 0..r.plan.writes.len() {
                        lsn += 1;
                        r.written(w, lsn, &mut bt);
                        r.pack(w, false).unwrap();
                    }
                    if fail {
                        r.fail(&mut bt);
                        leader.fail_checkpoint();
                    } else {
                        let id = leader.base.meta.id + 1;
                        let (view, _) = r.wrap_up(&cut, id, 1, None, &mut bt);
                        leader.bytes_total = bt;
                        leader.complete_checkpoint(view);
                    }
                }
                p => pending = p,
            }
            if rng.gen_ratio(1, 10) && follower.can_install(&leader.base.meta) {
                follower.install(leader.base.clone());
            }
            if rng.gen_ratio(1, 60) {
                pending = None; // abandoned with the leadership
                                // Swap roles: the leader steps down, the follower steps up onto the newest base.
                leader.step_down();
                if follower.can_install(&leader.base.meta) {
                    follower.install(leader.base.clone());
                }
                follower.drain_into_stable();
                std::mem::swap(&mut leader, &mut follower);
            }
            assert_eq!(
                leader.read_all(),
                *model.collections(),
                "seed {seed} at {i}"
            );
            assert_eq!(
                follower.read_all(),
                *model.collections(),
                "seed {seed} at {i}"
            );
            // Point reads agree with whole-collection reads, on every layer combination.
            for s in [&leader, &follower] {
                for c in ["c0", "c1", "c2", "zz"] {
                    let col = s.read(c);
                    assert_eq!(
                        s.has_collection(c),
                        col.is_some(),
                        "seed {seed} at {i}: {c}"
                    );
                    for k in ["k0", "k1", "k2", "k3", "k7", "k13", "k19", "k99"] {
                        let want = col.as_ref().and_then(|d| d.get(k)).cloned();
                        assert_eq!(s.get(c, k), want, "seed {seed} at {i}: {c}/{k}");
                    }
                }
                // The in-place walk the harness compares with its model agrees too.
                assert_eq!(visited(s), s.read_all(), "seed {seed} at {i}");
            }
        }
        // Published accounting matches the blocks referenced.
        for (t, root) in &leader.base.meta.tables {
            assert_eq!(root.bytes_total, root.live_bytes(), "seed {seed} table {t}");
        }
    }
}

/// What `Visible` shows of a store, copied (each document must be shown once).
fn visited(s: &Store) -> BTreeMap<String, Collection> {
    use engine::state::Visible;
    let mut out = BTreeMap::new();
    for c in s.collections() {
        let mut col = Collection::new();
        s.docs(c, &mut |k, v| {
            let again = col.insert(k.to_string(), v.to_vec());
            assert!(again.is_none(), "{c}/{k} shown twice");
        });
        out.insert(c.to_string(), col);
    }
    out
}

/// A follower's store with tables c0 (in its base checkpoint) and c1 (ingest only), stepping up.
fn stepping_up() -> (Store, StateMachine, u64) {
    let mut leader = Store::default();
    leader.set_mode(Mode::Leader);
    let mut model = StateMachine::default();
    let mut idx = 0;
    let mut next_lsn = 1;
    let apply_both = |s: &mut Store, m: &mut StateMachine, op: Op, idx: &mut u64| {
        *idx += 1;
        let e = entry(*idx, op);
        s.apply(&e);
        m.apply(&e);
    };
    for k in 0..10 {
        apply_both(
            &mut leader,
            &mut model,
            put("c0", &format!("k{k}"), "base"),
            &mut idx,
        );
    }
    checkpoint(&mut leader, &mut next_lsn, 1);
    let mut f = Store::from_checkpoint(leader.base.clone(), Default::default());
    for k in 0..40 {
        let (c, v) = if k % 2 == 0 {
            ("c0", "new")
        } else {
            ("c1", "one")
        };
        apply_both(&mut f, &mut model, put(c, &format!("k{k}"), v), &mut idx);
    }
    f.set_mode(Mode::SteppingUp);
    (f, model, idx)
}

/// A drain in batches, with the applier writing behind and ahead of the cursor meanwhile, ends
/// with ingest empty, the node a leader, and reads equal to the plain state machine throughout.
#[test]
fn drain_in_batches_moves_ingest_to_stable_with_applies_in_between() {
    let (mut s, mut model, mut idx) = stepping_up();
    let before = s.read_all();
    assert_eq!(before, model.collections().clone());
    for t in s.ingest_tables() {
        let mut after: Option<String> = None;
        let mut batches = 0;
        loop {
            let (n, next) = s.drain_copy_batch(&t, after.as_deref(), 4);
            assert!(n <= 4);
            // Reads never change because of a copy.
            assert_eq!(
                s.read_all(),
                *model.collections(),
                "table {t} batch {batches}"
            );
            // The applier goes on: a key behind the cursor and one ahead of it change.
            idx += 1;
            let e = entry(idx, put(&t, "k0", &format!("v{idx}")));
            s.apply(&e);
            model.apply(&e);
            batches += 1;
            match next {
                Some(k) => after = Some(k),
                None => break,
            }
        }
        assert!(batches >= 3, "{t}: {batches} batches");
        s.drain_finish(&t);
        assert_eq!(s.read_all(), *model.collections());
    }
    s.finish_step_up();
    assert_eq!(s.mode(), Mode::Leader);
    assert!(s.ingest.is_empty());
    assert_eq!(s.read_all(), *model.collections());
}

/// A drop applied while stepping up (after its table was drained, as the fixed path orders it)
/// reaches the stable changes through the next drain pass: the table is fully dropped.
#[test]
fn a_drop_after_the_copy_is_drained_as_a_drop() {
    let (mut s, mut model, mut idx) = stepping_up();
    s.drain_finish("c1");
    idx += 1;
    let e = entry(idx, Op::DropCollection { name: "c1".into() });
    assert_eq!(s.handles.try_drop("c1"), Ok(()));
    s.apply(&e);
    model.apply(&e);
    assert_eq!(s.ingest_tables(), vec!["c0".to_string(), "c1".to_string()]);
    for t in s.ingest_tables() {
        s.drain_finish(&t);
    }
    s.finish_step_up();
    assert_eq!(s.read_all(), *model.collections());
    assert!(s.read("c1").is_none());
    assert!(
        s.dirty.tables["c1"].masked_ts.is_some(),
        "the drop reaches stable"
    );
}
