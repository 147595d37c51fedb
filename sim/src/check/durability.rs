//! Durability: every acknowledged write is visible at the end on every replica, unless a write
//! that may have come after it (not acknowledged before it was issued) replaced it.

use std::collections::BTreeMap;

use reports::{Violation, ViolationKind};

use super::violation;
use crate::world::NodeSnapshot;

/// One client operation and what the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRecord {
    pub client: u32,
    pub collection: String,
    pub kind: OpKind,
    pub invoked_us: u64,
    /// `None`: not acknowledged (timed out; it may or may not have committed).
    pub acked_us: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// Values are unique per operation, so a final value names the write that produced it.
    Put {
        key: String,
        value: Vec<u8>,
    },
    DropCollection,
    /// Changes no document; recorded so the history is complete.
    CreateCollection,
}

impl OpRecord {
    /// Whether `self` certainly happened before `other` began (so it cannot have replaced it).
    fn before(&self, other: &OpRecord) -> bool {
        self.acked_us.is_some_and(|a| a < other.invoked_us)
    }
}

pub fn check(ops: &[OpRecord], snaps: &[NodeSnapshot], at_ms: u64) -> Vec<Violation> {
    let mut by_value: BTreeMap<(&str, &str, &[u8]), &OpRecord> = BTreeMap::new();
    let mut drops: BTreeMap<&str, Vec<&OpRecord>> = BTreeMap::new();
    for op in ops {
        match &op.kind {
            OpKind::Put { key, value } => {
                by_value.insert((&op.collection, key, value), op);
            }
            OpKind::DropCollection => drops.entry(&op.collection).or_default().push(op),
            OpKind::CreateCollection => {}
        }
    }
    let mut out = Vec::new();
    for snap in snaps {
        let mut lost = 0u64;
        let mut examples = Vec::new();
        for w in ops.iter().filter(|o| o.acked_us.is_some()) {
            let OpKind::Put { key, value } = &w.kind else {
                continue;
            };
            let current = snap.data.get(&w.collection).and_then(|c| c.get(key));
            let explained = match current {
                Some(v) if v == value => true,
                Some(v) => by_value
                    .get(&(w.collection.as_str(), key.as_str(), v.as_slice()))
                    .is_some_and(|w2| !w2.before(w)),
                None => drops
                    .get(w.collection.as_str())
                    .is_some_and(|ds| ds.iter().any(|d| !d.before(w))),
            };
            if !explained {
                lost += 1;
                if examples.len() < 3 {
                    let now = match current {
                        None => "<absent>".to_string(),
                        Some(v) => format!("{:?}", String::from_utf8_lossy(v)),
                    };
                    examples.push(format!(
                        "{}/{} = {:?} (client {}, acked at {}us) now {}",
                        w.collection,
                        key,
                        String::from_utf8_lossy(value),
                        w.client,
                        w.acked_us.unwrap_or(0),
                        now
                    ));
                }
            }
        }
        if lost > 0 {
            let node = format!("n{}", snap.status.id);
            let msg = format!(
                "{lost} acknowledged write(s) lost on {node}: {}",
                examples.join("; ")
            );
            out.push(violation(ViolationKind::Durability, Some(node), at_ms, msg));
        }
    }
    out
}
