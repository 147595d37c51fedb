//! A node's keystore never goes backwards within an incarnation (a rotation undone would make
//! pages sealed under the newer keys unreadable on it). Online, from `Keystore` observations.

use std::collections::BTreeMap;

use engine::observe::Event;
use engine::raft::NodeId;
use reports::{Violation, ViolationKind};

use super::record::{Online, Record};
use super::snapshot::node_name;
use super::violation;

#[derive(Default)]
pub struct Keystores {
    /// Each node incarnation's keystore timestamp.
    ts: BTreeMap<NodeId, u64>,
    violations: Vec<Violation>,
}

impl Online for Keystores {
    fn record(&mut self, r: &Record<'_>) {
        match r.event {
            Event::Started { .. } => {
                self.ts.remove(&r.node);
            }
            Event::Keystore { ts, why, .. } => {
                if let Some(&before) = self.ts.get(&r.node) {
                    if *ts < before {
                        let name = node_name(r.node);
                        self.violations.push(violation(
                            ViolationKind::Validate,
                            Some(name.clone()),
                            r.at_ms(),
                            format!(
                                "{name}'s keystore went backwards: ts {before} -> {ts} ({why})"
                            ),
                        ));
                    }
                }
                self.ts.insert(r.node, *ts);
            }
            _ => {}
        }
    }

    fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.violations)
    }
}
