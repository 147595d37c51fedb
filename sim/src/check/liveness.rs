//! The liveness phase's verdict: after every fault is healed, the cluster must converge within
//! a bounded simulated time. [`gaps`] names, node by node, what still stands between the
//! cluster and convergence; the run polls it, and reports what is left when time runs out.

use std::collections::BTreeMap;

use engine::layered::Mode;
use engine::observe::NodeStatus;
use engine::raft::{NodeId, Role};

use super::snapshot::node_name;

/// Converged means: every live replica reachable; one leader; every replica in its term,
/// following it, with the whole log committed and applied; storage at rest (the leader stepped
/// up and checkpointed everything, with its current keystore; the page service holds that
/// checkpoint; every follower picked it up). `published` is the page service's newest
/// checkpoint id, `None` when the page service is unreachable.
pub fn gaps(
    live: &[NodeId],
    down: &[NodeId],
    statuses: &BTreeMap<NodeId, NodeStatus>,
    published: Option<Option<u64>>,
) -> Vec<String> {
    let mut gaps: Vec<String> = live
        .iter()
        .filter(|id| !statuses.contains_key(id))
        .map(|id| {
            let why = if down.contains(id) {
                "down"
            } else {
                "not serving yet"
            };
            format!("{} unreachable ({why})", node_name(*id))
        })
        .collect();
    let leaders: Vec<&NodeStatus> = statuses
        .values()
        .filter(|s| s.role == Role::Leader)
        .collect();
    let l = match leaders.as_slice() {
        [l] => *l,
        [] => {
            gaps.push("no leader".into());
            return gaps;
        }
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|s| format!("{} (term {})", node_name(s.id), s.term))
                .collect();
            gaps.push(format!("{} leaders: {}", many.len(), names.join(", ")));
            return gaps;
        }
    };
    let ls = &l.storage;
    let lname = node_name(l.id);
    if ls.mode != Mode::Leader {
        gaps.push(format!("leader {lname} still stepping up"));
    } else if ls.checkpoint_in_flight || !ls.dirty_empty {
        gaps.push(format!("leader {lname} has un-checkpointed changes"));
    }
    if ls.base.keystore.map(|k| k.ts) != Some(ls.keystore.ts) {
        gaps.push(format!(
            "leader {lname}'s newest checkpoint does not carry its keystore ({})",
            ls.keystore.summary()
        ));
    }
    match published {
        None => gaps.push("page service unreachable".into()),
        Some(Some(id)) if id == ls.base.id => {}
        Some(other) => gaps.push(format!(
            "page service's newest checkpoint is {other:?}, leader {lname} is on {}",
            ls.base.id
        )),
    }
    for s in statuses.values().filter(|s| s.id != l.id) {
        let name = node_name(s.id);
        if s.term != l.term || s.leader != Some(l.id) {
            gaps.push(format!(
                "{name} in term {} following {:?}, not {lname} of term {}",
                s.term, s.leader, l.term
            ));
        }
        if s.last_index != l.last_index
            || s.commit != l.last_index
            || s.last_applied != l.last_index
        {
            gaps.push(format!(
                "{name} lagging: log {} commit {} applied {}, leader's log ends at {}",
                s.last_index, s.commit, s.last_applied, l.last_index
            ));
        }
        if s.storage.base.id != ls.base.id {
            gaps.push(format!(
                "{name} on checkpoint {}, newest is {}",
                s.storage.base.id, ls.base.id
            ));
        }
    }
    if l.commit != l.last_index || l.last_applied != l.last_index {
        gaps.push(format!(
            "leader {lname}: log {} commit {} applied {}",
            l.last_index, l.commit, l.last_applied
        ));
    }
    gaps
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use engine::keystore::{Keystore, KeystoreRef};
    use engine::layered::CheckpointMeta;
    use engine::observe::StorageStatus;
    use engine::pages::Cookie;

    use super::*;

    fn keystore(ts: u64) -> Keystore {
        Keystore {
            ts,
            kek_version: 2,
            cmk_version: 1,
            ..Keystore::default()
        }
    }

    fn checkpoint(id: u64, keystore_ts: u64) -> Arc<CheckpointMeta> {
        Arc::new(CheckpointMeta {
            id,
            keystore: Some(KeystoreRef {
                cookie: Cookie {
                    page_id: 0,
                    lsn: 7,
                    base_lsn: 0,
                    size: 10,
                    checksum: 0,
                },
                ts: keystore_ts,
            }),
            keystore_ts,
            ..CheckpointMeta::default()
        })
    }

    /// A converged three-node cluster: n1 leads term 3, everything applied to 50, all on
    /// checkpoint 4 which carries the keystore of ts 900.
    fn cluster() -> BTreeMap<NodeId, NodeStatus> {
        (1..=3)
            .map(|id| {
                let leader = id == 1;
                let s = NodeStatus {
                    id,
                    term: 3,
                    role: if leader { Role::Leader } else { Role::Follower },
                    leader: Some(1),
                    commit: 50,
                    last_applied: 50,
                    last_index: 50,
                    last_term: 3,
                    storage: StorageStatus {
                        mode: if leader { Mode::Leader } else { Mode::Follower },
                        base: checkpoint(4, 900),
                        base_records: BTreeMap::new(),
                        checkpoint_in_flight: false,
                        dirty_empty: true,
                        ingest_min_ts: None,
                        bytes_total: BTreeMap::new(),
                        keystore: keystore(900),
                        keystore_flushed: None,
                    },
                };
                (id, s)
            })
            .collect()
    }

    const LIVE: [NodeId; 3] = [1, 2, 3];

    #[test]
    fn a_converged_cluster_has_no_gaps() {
        assert_eq!(
            gaps(&LIVE, &[], &cluster(), Some(Some(4))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn lagging_and_unreachable_nodes_are_named() {
        let mut c = cluster();
        c.get_mut(&3).unwrap().last_applied = 41;
        c.get_mut(&2).unwrap().storage.base = checkpoint(3, 900);
        let g = gaps(&LIVE, &[], &c, Some(Some(4)));
        assert_eq!(
            g,
            vec![
                "n2 on checkpoint 3, newest is 4".to_string(),
                "n3 lagging: log 50 commit 50 applied 41, leader's log ends at 50".to_string(),
            ]
        );
        c.remove(&3);
        let g = gaps(&LIVE, &[3], &c, Some(Some(4)));
        assert_eq!(g[0], "n3 unreachable (down)");
    }

    #[test]
    fn leadership_and_storage_at_rest_are_required() {
        let mut c = cluster();
        c.get_mut(&2).unwrap().role = Role::Leader;
        assert_eq!(
            gaps(&LIVE, &[], &c, Some(Some(4))),
            vec!["2 leaders: n1 (term 3), n2 (term 3)".to_string()]
        );
        let mut c = cluster();
        for s in c.values_mut() {
            s.role = Role::Candidate;
        }
        assert_eq!(gaps(&LIVE, &[], &c, Some(Some(4))), vec!["no leader"]);

        // The leader rotated its keys but its newest checkpoint carries the older keystore.
        let mut c = cluster();
        c.get_mut(&1).unwrap().storage.keystore = keystore(950);
        let g = gaps(&LIVE, &[], &c, Some(Some(4)));
        assert_eq!(g.len(), 1, "{g:?}");
        assert!(g[0].contains("does not carry its keystore"), "{g:?}");

        let mut c = cluster();
        c.get_mut(&1).unwrap().storage.dirty_empty = false;
        assert_eq!(
            gaps(&LIVE, &[], &c, Some(Some(4))),
            vec!["leader n1 has un-checkpointed changes"]
        );
        assert_eq!(
            gaps(&LIVE, &[], &cluster(), None),
            vec!["page service unreachable"]
        );
        assert!(
            gaps(&LIVE, &[], &cluster(), Some(Some(5)))[0].contains("newest checkpoint is Some(5)")
        );
    }
}
