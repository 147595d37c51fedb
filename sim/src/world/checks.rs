use super::*;

/// How often (simulated) client tasks compare the replicas with the reference model while
/// faults run; installs and the end of the fault phase are compared besides.
const MODEL_SAMPLE_US: u64 = 500_000;

use crate::check::record::{AtRest, Cluster};

impl World {
    /// Compares every live replica's visible state with the reference model, at most every
    /// `MODEL_SAMPLE_US` of simulated time. Called from client tasks between operations: no task or timer
    /// of its own, so checking does not change the schedule it checks.
    pub fn sample_model(&self, when: &str) {
        if !self.scn.has_check(Check::Model) {
            return;
        }
        {
            let mut st = self.lock();
            let now = Self::now_us(&st);
            if st
                .model_sampled_us
                .is_some_and(|t| now < t + MODEL_SAMPLE_US)
            {
                return;
            }
            st.model_sampled_us = Some(now);
        }
        Profile::time(self.profile.as_deref(), Bucket::Samples, || {
            self.compare_with_model_since(when)
        });
    }

    /// Live replicas (or just `only`) and their incarnations.
    fn inspected(&self, only: Option<NodeId>) -> Vec<(NodeId, u64, Arc<dyn Inspect>)> {
        let st = self.lock();
        st.slots
            .iter()
            .filter(|(id, _)| !is_service(**id) && only.is_none_or(|o| o == **id))
            .filter_map(|(id, s)| Some((*id, s.incarnation, s.inspect.clone()?)))
            .collect()
    }

    /// Compares the whole visible state of live replicas (or just `only`) with the model.
    pub(super) fn compare_with_model(&self, only: Option<NodeId>, when: &str) {
        for (id, inc, inspect) in self.inspected(only) {
            // First on borrowed data (no copy of any document; the model decides under the
            // node's lock, so nothing here may call back into the node); on a difference, or
            // where that cannot tell, on a copy that also finds where they differ.
            let mut matched = None;
            inspect.visit_all(&mut |applied, view| {
                if self.lock().model.matches(applied, view) == Some(true) {
                    matched = Some(applied);
                }
            });
            if let Some(applied) = matched {
                self.lock().model_checked.insert(id, (inc, applied));
                continue;
            }
            // No await between these reads: the node cannot apply anything in between.
            let applied = inspect.status().last_applied;
            let data = inspect.read_all();
            let mut st = self.lock();
            match st.model.compare(applied, &data) {
                None if applied <= st.model.applied() => {
                    st.model_checked.insert(id, (inc, applied));
                }
                None => {}
                Some(m) => self.divergence(&mut st, id, applied, when, &m, &*inspect),
            }
        }
    }

    /// Compares what the committed history changed since each replica last matched the model
    /// (point reads: cheap enough to run every second); a replica never checked in this
    /// incarnation, or behind where it matched, gets the whole comparison.
    fn compare_with_model_since(&self, when: &str) {
        for (id, inc, inspect) in self.inspected(None) {
            let applied = inspect.status().last_applied;
            let since = {
                let st = self.lock();
                match st.model_checked.get(&id) {
                    Some(&(i, at))
                        if i == inc && at <= applied && applied <= st.model.applied() =>
                    {
                        Some(st.model.changed_between(at, applied))
                    }
                    _ => None,
                }
            };
            let Some((docs, tables)) = since else {
                self.compare_with_model(Some(id), when);
                continue;
            };
            let (now, values, exist) = inspect.read_docs(&docs, &tables);
            debug_assert_eq!(now, applied, "no await between the two reads");
            let mut st = self.lock();
            match st
                .model
                .compare_some(applied, &docs, &values, &tables, &exist)
            {
                None => {
                    st.model_checked.insert(id, (inc, applied));
                }
                Some(m) => self.divergence(&mut st, id, applied, when, &m, &*inspect),
            }
        }
    }

    fn divergence(
        &self,
        st: &mut State,
        id: NodeId,
        applied: engine::raft::Index,
        when: &str,
        m: &crate::check::model::Mismatch,
        inspect: &dyn Inspect,
    ) {
        let layer = match &m.key {
            Some(k) => inspect.layer_of(&m.collection, k),
            None => "its collection list".to_string(),
        };
        let at_ms = Self::now_us(st) / 1000;
        let v = crate::check::model::divergence(&node_name(id), applied, when, m, &layer, at_ms);
        let n = st.model_divergences;
        st.model_divergences += 1;
        if n < 3 {
            st.violations.push(v);
        }
    }

    /// The checkers after the liveness phase, over the converged (or not) cluster.
    pub(super) fn end_checks(&self, converged: bool, at_ms: u64) -> Vec<Violation> {
        let mut found = Vec::new();
        if self.scn.has_check(Check::Liveness) {
            found.extend(self.liveness_violations(converged));
        }
        if self.scn.has_check(Check::Model) {
            self.compare_with_model(None, "after the liveness phase");
        }
        let snaps = self.snapshots();
        let pages = self.pages_snapshot();
        let ops = std::mem::take(&mut self.lock().ops);
        let validate = check::validate::Validate { kms: &self.kms };
        let at_rest: [(Check, &dyn AtRest); 4] = [
            (Check::Dbhash, &check::dbhash::Dbhash),
            (Check::Validate, &validate),
            (Check::Durability, &check::clients::Durability),
            (Check::Linearizability, &check::clients::Linearizability),
        ];
        let mut notes = Vec::new();
        let named = std::cell::RefCell::new(Vec::new());
        {
            let st = self.lock();
            let cluster = Cluster {
                nodes: &snaps,
                pages: pages.as_ref(),
                ops: &ops,
                model: &st.model,
                at_ms,
                named: &named,
            };
            for (c, checker) in at_rest {
                if self.scn.has_check(c) {
                    found.extend(checker.check(&cluster, &mut notes));
                }
            }
        }
        let mut named = named.into_inner();
        let mut st = self.lock();
        if self.scn.has_check(Check::Linearizability) {
            // The model's execute/skip findings name operations by session.
            for (s, kind) in &st.model.named_sessions {
                let same = ops.iter().enumerate().filter(|(_, op)| op.session == *s);
                named.extend(same.map(|(i, _)| (i, *kind)));
            }
        }
        // Kept (a move, not a copy) for the report's timeline when the full trace is kept.
        st.checked_ops = Some((ops, named));
        drop(st);
        for n in notes {
            self.note(n);
        }
        if self.scn.has_check(Check::Raft) {
            let inspects: Vec<(NodeId, Arc<dyn Inspect>)> = {
                let st = self.lock();
                st.slots
                    .iter()
                    .filter(|(id, _)| !is_service(**id))
                    .filter_map(|(id, s)| Some((*id, s.inspect.clone()?)))
                    .collect()
            };
            let logs: Vec<(NodeId, Vec<(engine::raft::Index, engine::raft::Term, u64)>)> = inspects
                .iter()
                .map(|(id, i)| (*id, i.log_digests()))
                .collect();
            let leader = self.current_leader();
            self.lock().history.end_logs(&logs, leader, at_ms);
        }
        found
    }

    /// What the page service holds now (`None` when it is down).
    pub(super) fn pages_snapshot(&self) -> Option<PagesSnapshot> {
        let p = self.lock().pages.clone()?;
        Some(PagesSnapshot {
            blocks: p.blocks(),
            latest: p.latest().map(|l| (l.id, CheckpointMeta::decode(&l.meta))),
            fetch: p,
        })
    }

    pub(super) fn snapshots(&self) -> Vec<NodeSnapshot> {
        let inspects: Vec<Arc<dyn Inspect>> = {
            let st = self.lock();
            st.slots
                .values()
                .filter_map(|s| s.inspect.clone())
                .collect()
        };
        inspects
            .into_iter()
            .map(|i| NodeSnapshot {
                status: i.status(),
                hashes: i.hashes(),
                data: i.read_all(),
                log_tail: i.log_tail(8),
            })
            .collect()
    }
}
