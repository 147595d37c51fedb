//! Like MongoDB's CheckReplDBHash: among replicas that applied the same commit index, compare
//! the collection sets and per-collection hashes; on a mismatch, name the first differing keys
//! with each node's value and each node's last log entries.

use std::collections::BTreeSet;

use reports::{Violation, ViolationKind};

use super::snapshot::NodeSnapshot;
use super::violation;

const MAX_KEYS_SHOWN: usize = 3;
const LOG_ENTRIES_SHOWN: usize = 4;

/// Replica comparison at the highest applied index, as an at-rest checker.
pub struct Dbhash;

impl super::record::AtRest for Dbhash {
    fn check(&self, c: &super::record::Cluster<'_>, _: &mut Vec<String>) -> Vec<Violation> {
        check(c.nodes, c.at_ms)
    }
}

pub fn check(snaps: &[NodeSnapshot], at_ms: u64) -> Vec<Violation> {
    let Some(max_applied) = snaps.iter().map(|s| s.status.last_applied).max() else {
        return vec![];
    };
    let peers: Vec<&NodeSnapshot> = snaps
        .iter()
        .filter(|s| s.status.last_applied == max_applied)
        .collect();
    let Some(reference) = peers
        .iter()
        .find(|s| s.status.role == engine::raft::Role::Leader)
        .or_else(|| peers.first())
        .copied()
    else {
        return vec![];
    };
    let mut out = Vec::new();
    for s in peers.iter().filter(|s| s.status.id != reference.status.id) {
        if s.hashes == reference.hashes {
            continue;
        }
        let (r, n) = (reference.status.id, s.status.id);
        let mut msg = format!("n{n} differs from n{r} at applied index {max_applied}:");
        let names: BTreeSet<&String> = reference.hashes.keys().chain(s.hashes.keys()).collect();
        let mut keys_shown = 0;
        for name in names {
            match (reference.hashes.get(name), s.hashes.get(name)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(_), None) => msg.push_str(&format!(" collection {name} only on n{r};")),
                (None, Some(_)) => msg.push_str(&format!(" collection {name} only on n{n};")),
                (Some(a), Some(b)) => {
                    msg.push_str(&format!(
                        " {name}: hash {:016x} vs {:016x} ({} vs {} docs);",
                        a.hash, b.hash, a.count, b.count
                    ));
                    let (ra, rb) = (&reference.data[name], &s.data[name]);
                    let keys: BTreeSet<&String> = ra.keys().chain(rb.keys()).collect();
                    for k in keys {
                        if keys_shown == MAX_KEYS_SHOWN {
                            break;
                        }
                        let (va, vb) = (ra.get(k), rb.get(k));
                        if va != vb {
                            keys_shown += 1;
                            msg.push_str(&format!(
                                " key {name}/{k}: n{r}={} n{n}={};",
                                show(va),
                                show(vb)
                            ));
                        }
                    }
                }
                (None, None) => unreachable!("name came from one of the maps"),
            }
        }
        for snap in [reference, *s] {
            let tail: Vec<String> = snap
                .log_tail
                .iter()
                .rev()
                .take(LOG_ENTRIES_SHOWN)
                .rev()
                .map(|e| {
                    format!(
                        "{}@t{}:{}",
                        e.index,
                        e.term,
                        super::snapshot::op_summary(&e.op)
                    )
                })
                .collect();
            msg.push_str(&format!(
                " last log n{}: [{}];",
                snap.status.id,
                tail.join(", ")
            ));
        }
        out.push(violation(
            ViolationKind::DbhashMismatch,
            Some(format!("n{n}")),
            at_ms,
            msg,
        ));
    }
    out
}

fn show(v: Option<&Vec<u8>>) -> String {
    match v {
        None => "<absent>".into(),
        Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
    }
}
