//! Per-node validation of internal consistency. With the raft-only engine it checks the log
//! bookkeeping; the disaggregated-storage accounting (bytes_total, orphans) joins it there.

use reports::{Violation, ViolationKind};

use super::violation;
use crate::world::NodeSnapshot;

pub fn check(snaps: &[NodeSnapshot], at_ms: u64) -> Vec<Violation> {
    let mut out = Vec::new();
    for s in snaps {
        let st = &s.status;
        let node = Some(format!("n{}", st.id));
        let mut problems = Vec::new();
        if st.last_applied > st.commit {
            problems.push(format!(
                "last_applied {} beyond commit {}",
                st.last_applied, st.commit
            ));
        }
        if st.commit > st.last_index {
            problems.push(format!(
                "commit {} beyond log end {}",
                st.commit, st.last_index
            ));
        }
        if st.last_term > st.term {
            problems.push(format!(
                "last log term {} above current term {}",
                st.last_term, st.term
            ));
        }
        for (name, h) in &st.hashes {
            let docs = s.data.get(name).map_or(0, |c| c.len() as u64);
            if docs != h.count {
                problems.push(format!(
                    "{name}: {} documents but hash counted {}",
                    docs, h.count
                ));
            }
        }
        if !problems.is_empty() {
            out.push(violation(
                ViolationKind::Validate,
                node,
                at_ms,
                problems.join("; "),
            ));
        }
    }
    out
}
