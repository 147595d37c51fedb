use super::*;

impl World {
    /// Heals everything, brings every non-aborted replica back, and waits for convergence.
    pub(super) async fn liveness_phase(&self) -> bool {
        self.record(
            "controller",
            "phase",
            "liveness: heal all faults, restart down replicas".into(),
        );
        self.heal_all();
        self.failpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.start(PAGE_SERVICE_NODE);
        self.start(KMS_NODE);
        for id in self.replicas() {
            self.start(id);
        }
        let deadline =
            madsim::time::Instant::now() + Duration::from_millis(self.scn.liveness_timeout_ms);
        loop {
            madsim::time::sleep(Duration::from_millis(100)).await;
            if Profile::time(self.profile.as_deref(), Bucket::EndChecks, || {
                self.converged()
            }) {
                self.record("controller", "phase", "converged".into());
                return true;
            }
            if madsim::time::Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// One leader, every live replica on its term and fully applied to its log end, storage at
    /// rest (the leader stepped up and checkpointed everything, with its current keystore; the
    /// page service holds that checkpoint; every follower picked it up).
    pub(super) fn converged(&self) -> bool {
        self.convergence_gaps().is_empty()
    }

    /// What stands between the cluster and convergence, node by node (empty when converged).
    pub(super) fn convergence_gaps(&self) -> Vec<String> {
        let (live, down): (Vec<NodeId>, Vec<NodeId>) = {
            let st = self.lock();
            let ids = st
                .slots
                .iter()
                .filter(|(id, s)| s.aborted.is_none() && !is_service(**id));
            let live = ids.clone().map(|(id, _)| *id).collect();
            let down = ids.filter(|(_, s)| !s.up).map(|(id, _)| *id).collect();
            (live, down)
        };
        let statuses = self.statuses();
        let published = {
            let st = self.lock();
            st.pages.as_ref().map(|p| p.latest().map(|l| l.id))
        };
        check::liveness::gaps(&live, &down, &statuses, published)
    }

    pub(super) fn liveness_violations(&self, converged: bool) -> Vec<Violation> {
        let at_ms = self.now_ms();
        let mut out = Vec::new();
        let aborted: Vec<(NodeId, u64, String)> = {
            let st = self.lock();
            st.slots
                .iter()
                .filter(|(_, s)| !s.retired)
                .filter_map(|(id, s)| s.aborted.clone().map(|(t, r)| (*id, t, r)))
                .collect()
        };
        for (id, t, reason) in aborted {
            out.push(violation(
                ViolationKind::Liveness,
                Some(node_name(id)),
                at_ms,
                format!(
                    "n{id} unreachable for dbhash and validate: aborted at {}.{:03}s: {reason}",
                    t / 1000,
                    t % 1000
                ),
            ));
        }
        if !converged {
            out.push(violation(
                ViolationKind::Liveness,
                None,
                at_ms,
                format!(
                    "cluster did not converge within {} ms after faults stopped: {}",
                    self.scn.liveness_timeout_ms,
                    self.convergence_gaps().join("; ")
                ),
            ));
        }
        out
    }
}

pub(super) async fn supervise(w: Arc<World>) {
    w.lock().start = Some(madsim::time::Instant::now());
    let bugs: Vec<String> = w.knobs.iter().map(|b| b.to_string()).collect();
    w.record(
        "controller",
        "run",
        format!(
            "scenario {} seed {} replicas {} bugs [{}]",
            w.scn.name,
            w.seed,
            w.scn.replicas,
            bugs.join(",")
        ),
    );
    w.build_page_service();
    w.build_kms();
    w.build_replicas();
    workload::start(w.clone());

    // Faults run on a node of their own, killed at the end: a fault still waiting then (a
    // restart's downtime, say) is dropped with it. A task left pending when the runtime is
    // dropped leaks madsim's state for the whole seed (~0.8 MB), and sweeps grew without bound.
    let controller = Handle::current().create_node().name("controller").build();
    w.lock().controller = Some(controller.clone());
    for item in w.scn.timeline.clone() {
        let w2 = w.clone();
        controller.spawn(async move {
            madsim::time::sleep(Duration::from_millis(item.at_ms())).await;
            w2.apply(item).await;
        });
    }
    if let Some(chaos) = w.scn.chaos.clone() {
        controller.spawn(crate::chaos::run(w.clone(), chaos));
    }
    madsim::time::sleep(Duration::from_millis(w.scn.duration_ms)).await;
    w.workload_stop.store(true, Ordering::Relaxed);
    w.record("controller", "phase", "faults stop".into());
    // Before the liveness phase makes every replica a copy of the leader's checkpoint.
    if w.scn.has_check(Check::Model) {
        Profile::time(w.profile.as_deref(), Bucket::Samples, || {
            w.compare_with_model(None, "at the end of the fault phase")
        });
    }

    let converged = w.liveness_phase().await;
    let at_ms = w.now_ms();
    let found = Profile::time(w.profile.as_deref(), Bucket::EndChecks, || {
        w.end_checks(converged, at_ms)
    });
    w.record(
        "controller",
        "checks",
        format!("{} violation(s) at the end", found.len()),
    );
    w.lock().violations.extend(found);

    // Tear down so no task outlives the run (madsim leaks pending tasks otherwise).
    let handle = Handle::current();
    handle.kill(controller.id());
    for id in w.replicas() {
        handle.kill(w.madsim_id(id));
    }
    handle.kill(w.madsim_id(PAGE_SERVICE_NODE));
    handle.kill(w.madsim_id(KMS_NODE));
    if let Some(c) = w.client_node() {
        handle.kill(c);
    }
    madsim::time::sleep(Duration::from_millis(1)).await;
}
