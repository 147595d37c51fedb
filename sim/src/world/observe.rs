use super::*;
use crate::check::record::{Online, Record};
use crate::profile::SAMPLE_EVERY;
use engine::observe::{CrashPoint, Delivery};

impl Observer for World {
    fn event(&self, node: NodeId, ev: Event) {
        // One event in `SAMPLE_EVERY` is timed (with its online checks), standing for that
        // many: timing every event would cost more than the events.
        match self.profile.as_deref() {
            Some(prof) if prof.take_sample(Bucket::Observe) => {
                prof.time_short(Bucket::Observe, SAMPLE_EVERY, || {
                    self.observe(node, ev, Some(prof))
                })
            }
            _ => self.observe(node, ev, None),
        }
    }

    fn attach_pages(&self, inspect: Arc<dyn InspectPages>) {
        self.lock().pages = Some(inspect);
    }

    fn attach(&self, node: NodeId, inspect: Arc<dyn Inspect>) {
        self.lock().slots.entry(node).or_default().inspect = Some(inspect);
    }

    fn abort(&self, node: NodeId, abort: Abort) {
        self.aborted(node, abort)
    }

    fn crash(&self, node: NodeId, message: String) {
        self.crashed(node, message)
    }

    fn sending(&self, from: SocketAddr, to: SocketAddr, msg: &engine::wire::Wire) -> Delivery {
        self.delivery(from, to, msg)
    }

    fn crash_point(&self, node: NodeId, point: CrashPoint) -> bool {
        self.crash_here(node, point)
    }

    fn installing(&self, node: NodeId, id: u64, after: bool) {
        if self.scn.has_check(Check::Model) {
            let when = if after { "right after" } else { "right before" };
            let why = format!("{when} installing checkpoint {id}");
            Profile::time(self.profile.as_deref(), Bucket::Samples, || {
                self.compare_with_model(Some(node), &why)
            });
        }
    }
}

impl World {
    /// One engine observation: a typed record for the online checkers and the race windows,
    /// then a line in the trace.
    /// `timed`: the profile when this event is one of the sampled ones.
    pub(super) fn observe(&self, node: NodeId, ev: Event, timed: Option<&Profile>) {
        let mut st = self.lock();
        let at_us = Self::now_us(&st);
        let incarnation = st.slots.get(&node).map_or(0, |s| s.incarnation);
        let r = Record {
            at_us,
            node,
            incarnation,
            event: &ev,
        };
        // A checker the scenario does not run costs nothing (and a run without checks
        // measures what the checkers cost, by difference).
        let runs = |c: Check| self.scn.has_check(c);
        let online = |st: &mut State| {
            if runs(Check::Raft) {
                st.history.record(&r);
                st.persistence.record(&r);
            }
            if runs(Check::Model) || runs(Check::Linearizability) || runs(Check::Durability) {
                st.model.record(&r);
            }
            if runs(Check::Validate) {
                st.keystores.record(&r);
            }
            st.nonces.record(&r);
        };
        match timed {
            Some(prof) => prof.time_short(Bucket::OnlineChecks, SAMPLE_EVERY, || online(&mut st)),
            None => online(&mut st),
        }
        if matches!(ev, Event::Sealed { .. }) {
            return; // checked above; one per page written would crowd the trace
        }
        if let Some(w) = crate::check::windows::entered(&ev) {
            st.windows.insert(w);
        }
        let (kind, detail) = crate::trace::describe(&ev);
        st.trace.record(
            at_us,
            &crate::check::snapshot::node_label(node),
            kind,
            detail,
        );
    }

    pub(super) fn aborted(&self, node: NodeId, abort: Abort) {
        let reason = abort.to_string();
        if self.expected_abort(node, &abort) {
            {
                let mut st = self.lock();
                let at_us = Self::now_us(&st);
                let slot = st.slots.entry(node).or_default();
                slot.aborted = Some((at_us / 1000, reason.clone()));
                slot.retired = true;
                st.trace.record(at_us, &node_name(node), "retired", reason);
            }
            self.kill(node, "retired");
            return;
        }
        self.node_died(
            node,
            ViolationKind::NodeAbort,
            "abort",
            reason.clone(),
            reason,
        );
    }

    pub(super) fn crashed(&self, node: NodeId, message: String) {
        let finding = format!("unexpected panic in engine code: {message}");
        self.node_died(
            node,
            ViolationKind::Crash,
            "crash",
            format!("panic: {message}"),
            finding,
        );
    }
}

impl World {
    /// A node process ended on its own (abort or panic): record the finding, keep it down.
    pub(super) fn node_died(
        &self,
        node: NodeId,
        kind: ViolationKind,
        event: &'static str,
        reason: String,
        finding: String,
    ) {
        {
            let mut st = self.lock();
            let at_us = Self::now_us(&st);
            let at_ms = at_us / 1000;
            st.slots.entry(node).or_default().aborted = Some((at_ms, reason.clone()));
            st.trace.record(at_us, &node_name(node), event, reason);
            st.violations
                .push(violation(kind, Some(node_name(node)), at_ms, finding));
        }
        self.kill(node, event);
    }
}
