use super::*;

impl World {
    /// Sets a failpoint's rate (0 switches it off).
    pub(super) fn set_failpoint(&self, name: &str, per_mille: u32) {
        self.failpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), per_mille);
    }

    /// The failpoint's rate for the whole fault phase: the scenario's, or the chaos swarm's
    /// background rate if higher. A timed failpoint fault returns to it.
    pub(super) fn scenario_failpoint(&self, name: &str) -> u32 {
        let scripted = self
            .scn
            .failpoints
            .iter()
            .find(|f| f.name == name)
            .map_or(0, |f| f.per_mille);
        let background = self.lock().background_failpoints.get(name).copied();
        scripted.max(background.unwrap_or(0))
    }

    /// The chaos swarm switched `name` on for the whole fault phase.
    pub fn set_background_failpoint(&self, name: &str, per_mille: u32) {
        self.lock()
            .background_failpoints
            .insert(name.to_string(), per_mille);
    }

    // ----- faults -----

    pub(super) fn kill(&self, id: NodeId, why: &str) {
        let mid = self.madsim_id(id);
        // Coverage: a kill that lands while a leader's checkpoint is being written.
        let mid_checkpoint = self
            .statuses()
            .values()
            .any(|s| s.storage.checkpoint_in_flight && (id == PAGE_SERVICE_NODE || s.id == id));
        if mid_checkpoint {
            self.lock().windows.insert(if id == PAGE_SERVICE_NODE {
                WINDOW_PS_KILLED_MID_CHECKPOINT
            } else {
                WINDOW_LEADER_KILLED_MID_CHECKPOINT
            });
        }
        {
            let mut st = self.lock();
            let slot = st.slots.get_mut(&id).unwrap();
            if !slot.up {
                return;
            }
            slot.up = false;
            slot.inspect = None;
            if id == PAGE_SERVICE_NODE {
                st.pages = None;
            }
        }
        Handle::current().kill(mid);
        let loss = self.disk.crash(id);
        self.record(
            &node_name(id),
            "kill",
            format!(
                "{why}; unsynced bytes lost {} (torn kept {})",
                loss.bytes_lost, loss.bytes_torn_kept
            ),
        );
    }

    pub(super) fn start(&self, id: NodeId) {
        let (up, aborted) = {
            let st = self.lock();
            let s = &st.slots[&id];
            (s.up, s.aborted.is_some())
        };
        if up || aborted {
            return; // an aborted process stays down: the abort is the finding
        }
        self.record(&node_name(id), "restart", String::new());
        Handle::current().restart(self.madsim_id(id));
    }

    pub(super) fn clog(&self, a: madsim::task::NodeId, b: madsim::task::NodeId) {
        let mut st = self.lock();
        let n = st.clogs.entry((a, b)).or_default();
        *n += 1;
        if *n == 1 {
            NetSim::current().clog_link(a, b);
        }
    }

    pub(super) fn unclog(&self, a: madsim::task::NodeId, b: madsim::task::NodeId) {
        let mut st = self.lock();
        let key = (a, b);
        if let Some(n) = st.clogs.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                st.clogs.remove(&key);
                NetSim::current().unclog_link(a, b);
            }
        }
    }

    pub(super) fn heal_all(&self) {
        let mut st = self.lock();
        st.rules.clear();
        let net = NetSim::current();
        for (a, b) in std::mem::take(&mut st.clogs).into_keys() {
            net.unclog_link(a, b);
        }
        drop(st);
        self.set_loss(self.scn.network.loss_per_mille);
        self.set_latency(self.scn.network.latency_ms);
        for id in self.replicas() {
            Handle::current().resume(self.madsim_id(id));
        }
        Handle::current().resume(self.madsim_id(PAGE_SERVICE_NODE));
        Handle::current().resume(self.madsim_id(KMS_NODE));
    }

    /// Sets the network-wide latency range (madsim has one global setting), leaving loss alone.
    pub(super) fn set_latency(&self, latency_ms: [u64; 2]) {
        NetSim::current().update_config(|c| c.send_latency = latency_range(latency_ms));
    }

    /// Sets the network-wide packet loss, leaving latency alone.
    pub(super) fn set_loss(&self, per_mille: u32) {
        NetSim::current().update_config(|c| c.packet_loss_rate = loss_rate(per_mille));
    }

    /// Every madsim node other than the given replicas (other replicas and the client node).
    pub(super) fn others(&self, ids: &[NodeId]) -> Vec<madsim::task::NodeId> {
        let mut v: Vec<_> = self
            .replicas()
            .into_iter()
            .filter(|i| !ids.contains(i))
            .map(|i| self.madsim_id(i))
            .collect();
        if let Some(c) = *self.client_node.lock().unwrap() {
            v.push(c);
        }
        for service in [PAGE_SERVICE_NODE, KMS_NODE] {
            if !ids.contains(&service) {
                v.push(self.madsim_id(service));
            }
        }
        v
    }

    pub(super) fn resolve(&self, sel: &Selector) -> Vec<NodeId> {
        let up: Vec<NodeId> = {
            let st = self.lock();
            st.slots
                .iter()
                .filter(|(id, s)| s.up && !is_service(**id))
                .map(|(id, _)| *id)
                .collect()
        };
        let leader = || {
            self.current_leader().or_else(|| {
                // No leader right now: the fault still lands, on a node the seed picks.
                let mut st = self.lock();
                (!up.is_empty()).then(|| up[st.chaos_rng.gen_range(0..up.len())])
            })
        };
        let draw = |lo: usize, hi: usize| self.lock().chaos_rng.gen_range(lo..hi);
        match sel {
            Selector::PageService => vec![PAGE_SERVICE_NODE],
            Selector::Kms => vec![KMS_NODE],
            _ => sel
                .replicas(self.replicas(), &up, leader, draw)
                .unwrap_or_default(),
        }
    }

    pub(super) fn draw(&self, [lo, hi]: [u64; 2]) -> u64 {
        self.lock().chaos_rng.gen_range(lo..=hi)
    }

    pub async fn apply(self: Arc<Self>, item: TimelineItem) {
        let names = |ids: &[NodeId]| {
            ids.iter()
                .map(|i| node_name(*i))
                .collect::<Vec<_>>()
                .join(",")
        };
        match item {
            TimelineItem::Restart {
                nodes,
                down_ms,
                straggler_ms,
                ..
            } => {
                let ids = self.resolve(&nodes);
                self.fault(format!("restart {nodes} = [{}]", names(&ids)));
                if ids.len() == self.replicas().len() {
                    self.lock().windows.insert(WINDOW_ALL_RESTARTED);
                }
                for id in &ids {
                    self.kill(*id, "restart");
                }
                let straggler = straggler_ms.and_then(|_| {
                    (!ids.is_empty()).then(|| ids[self.lock().chaos_rng.gen_range(0..ids.len())])
                });
                for id in ids {
                    let mut delay = self.draw(down_ms);
                    if Some(id) == straggler {
                        delay += self.draw(straggler_ms.unwrap());
                        self.record(
                            &node_name(id),
                            "straggler",
                            format!("back after {delay} ms"),
                        );
                    }
                    let w = self.clone();
                    madsim::task::spawn(async move {
                        madsim::time::sleep(Duration::from_millis(delay)).await;
                        if !w.workload_stop.load(Ordering::Relaxed) {
                            w.start(id);
                        }
                    });
                }
            }
            TimelineItem::Kill { nodes, .. } => {
                for id in self.resolve(&nodes) {
                    self.kill(id, "kill");
                }
            }
            TimelineItem::Start { nodes, .. } => {
                for id in self.resolve(&nodes) {
                    self.start(id);
                }
            }
            TimelineItem::Partition { nodes, for_ms, .. } => {
                let ids = self.resolve(&nodes);
                let inside: Vec<_> = ids.iter().map(|i| self.madsim_id(*i)).collect();
                let outside = self.others(&ids);
                self.fault(format!(
                    "partition {nodes} = [{}] for {for_ms} ms",
                    names(&ids)
                ));
                let pairs: Vec<_> = inside
                    .iter()
                    .flat_map(|a| outside.iter().flat_map(move |b| [(*a, *b), (*b, *a)]))
                    .collect();
                self.timed_clogs(pairs, for_ms).await;
            }
            TimelineItem::ClogLink {
                from, to, for_ms, ..
            } => {
                let (f, t) = (self.resolve(&from), self.resolve(&to));
                let pairs: Vec<_> = f
                    .iter()
                    .flat_map(|a| t.iter().filter(move |b| *b != a).map(move |b| (*a, *b)))
                    .map(|(a, b)| (self.madsim_id(a), self.madsim_id(b)))
                    .collect();
                self.fault(format!("clog {from}->{to} for {for_ms} ms"));
                self.timed_clogs(pairs, for_ms).await;
            }
            TimelineItem::Delay {
                from,
                to,
                per_mille,
                delay_ms,
                for_ms,
                ..
            } => {
                self.fault(format!(
                    "delay {from}->{to} {per_mille}‰ by {}..{} ms for {for_ms} ms",
                    delay_ms[0], delay_ms[1]
                ));
                let (f, t) = (self.rule_side(&from), self.rule_side(&to));
                let effect = network::NetEffect::Delay { delay_ms };
                self.timed_net_rule(f, t, per_mille, effect, for_ms).await;
            }
            TimelineItem::Duplicate {
                from,
                to,
                per_mille,
                for_ms,
                ..
            } => {
                self.fault(format!(
                    "duplicate {from}->{to} {per_mille}‰ for {for_ms} ms"
                ));
                let (f, t) = (self.rule_side(&from), self.rule_side(&to));
                let effect = network::NetEffect::Duplicate;
                self.timed_net_rule(f, t, per_mille, effect, for_ms).await;
            }
            TimelineItem::DiskFault {
                nodes,
                kind,
                down_ms,
                ..
            } => {
                let ids = self.resolve(&nodes);
                let faults = ids.into_iter().map(|id| {
                    let w = self.clone();
                    async move { w.disk_fault(id, kind, down_ms).await }
                });
                futures::future::join_all(faults).await;
            }
            TimelineItem::CrashPoints {
                point,
                per_mille,
                down_ms,
                for_ms,
                ..
            } => {
                self.fault(format!(
                    "crash points {} {per_mille}‰ for {for_ms} ms",
                    point.as_deref().unwrap_or("(all)")
                ));
                let p = point
                    .as_deref()
                    .and_then(engine::observe::CrashPoint::parse);
                self.timed_crash_rule(p, per_mille, down_ms, for_ms).await;
            }
            TimelineItem::Pause { nodes, for_ms, .. } => {
                let ids = self.resolve(&nodes);
                self.fault(format!("pause [{}] for {for_ms} ms", names(&ids)));
                for id in &ids {
                    Handle::current().pause(self.madsim_id(*id));
                }
                madsim::time::sleep(Duration::from_millis(for_ms)).await;
                for id in &ids {
                    Handle::current().resume(self.madsim_id(*id));
                }
            }
            TimelineItem::Loss {
                per_mille, for_ms, ..
            } => {
                self.fault(format!("loss {per_mille}/1000 for {for_ms} ms"));
                self.set_loss(per_mille);
                madsim::time::sleep(Duration::from_millis(for_ms)).await;
                self.set_loss(self.scn.network.loss_per_mille);
            }
            TimelineItem::Latency {
                latency_ms: [lo, hi],
                for_ms,
                ..
            } => {
                self.fault(format!("latency {lo}..{hi} ms for {for_ms} ms"));
                self.set_latency([lo, hi]);
                madsim::time::sleep(Duration::from_millis(for_ms)).await;
                self.set_latency(self.scn.network.latency_ms);
            }
            // Refused for the engine by scenario validation (hosted systems only).
            other @ (TimelineItem::LinkLatency { .. } | TimelineItem::HoldFlushes { .. }) => {
                self.note(format!("{} ignored: hosted systems only", other.action()));
            }
            TimelineItem::Heal { .. } => {
                self.fault("heal".into());
                self.heal_all();
            }
            TimelineItem::CreateCollection { name, .. } => {
                self.record("controller", "ddl", format!("create {name}"));
                workload::spawn_ddl(self.clone(), Op::CreateCollection { name });
            }
            TimelineItem::DropCollection { name, .. } => {
                self.record("controller", "ddl", format!("drop {name}"));
                workload::spawn_ddl(self.clone(), Op::DropCollection { name });
            }
            TimelineItem::Failpoint {
                name,
                per_mille,
                for_ms,
                ..
            } => {
                self.fault(format!(
                    "failpoint {name} at {per_mille}/1000 for {for_ms} ms"
                ));
                self.set_failpoint(&name, per_mille);
                madsim::time::sleep(Duration::from_millis(for_ms)).await;
                // After the fault phase the liveness phase owns failpoints: all off.
                let rate = if self.workload_stop.load(Ordering::Relaxed) {
                    0
                } else {
                    self.scenario_failpoint(&name)
                };
                self.set_failpoint(&name, rate);
            }
            TimelineItem::RotateKek { .. } => {
                self.record("controller", "admin", "rotate kek".into());
                workload::spawn_admin(self.clone(), AdminAction::RotateKek);
            }
            TimelineItem::RotateCmk { .. } => {
                self.record("controller", "admin", "rotate cmk".into());
                workload::spawn_admin(self.clone(), AdminAction::RotateCmk);
            }
            TimelineItem::StepDown { .. } => {
                self.record("controller", "admin", "leader step-down".into());
                workload::spawn_admin(self.clone(), AdminAction::StepDown);
            }
        }
    }

    pub(super) async fn timed_clogs(
        &self,
        pairs: Vec<(madsim::task::NodeId, madsim::task::NodeId)>,
        for_ms: u64,
    ) {
        for (a, b) in &pairs {
            self.clog(*a, *b);
        }
        madsim::time::sleep(Duration::from_millis(for_ms)).await;
        for (a, b) in &pairs {
            self.unclog(*a, *b);
        }
    }
}
