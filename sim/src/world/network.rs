//! The harness's side of every datagram and every crash point. The engine asks before each
//! send ([`Observer::sending`]) and at each named crash point ([`Observer::crash_point`]); the
//! rules come from timeline and chaos items (`delay`, `duplicate`, `crash_points`) and hold for
//! a while. Each has a random stream of its own, drawn only while a rule is on, so a scenario
//! without them draws nothing and runs as before.

use engine::observe::{CrashPoint, Delivery};
use engine::wire::Wire;

use super::*;

/// Which datagrams a network rule touches; `None` on a side: any sender or receiver (clients
/// included).
#[derive(Debug, Clone)]
pub(super) struct NetRule {
    id: u64,
    from: Option<Vec<NodeId>>,
    to: Option<Vec<NodeId>>,
    per_mille: u32,
    effect: NetEffect,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum NetEffect {
    /// Held back for a time drawn from this range (reordering within a link).
    Delay { delay_ms: [u64; 2] },
    /// Delivered twice, the copy 1..=500 ms later.
    Duplicate,
}

#[derive(Debug, Clone)]
pub(super) struct CrashRule {
    id: u64,
    /// `None`: every crash point.
    point: Option<CrashPoint>,
    per_mille: u32,
    down_ms: [u64; 2],
}

/// The network and crash-point state of a world.
pub(super) struct Rules {
    net: Vec<NetRule>,
    crash: Vec<CrashRule>,
    next_id: u64,
    net_rng: ChaCha8Rng,
    crash_rng: ChaCha8Rng,
}

impl Rules {
    pub(super) fn new(seed: u64) -> Self {
        Rules {
            net: vec![],
            crash: vec![],
            next_id: 0,
            net_rng: ChaCha8Rng::seed_from_u64(derive_seed(seed, "network-rules", 0)),
            crash_rng: ChaCha8Rng::seed_from_u64(derive_seed(seed, "crash-points", 0)),
        }
    }

    pub(super) fn clear(&mut self) {
        self.net.clear();
        self.crash.clear();
    }
}

/// The node behind an address; `None` for clients.
fn node_of(addr: SocketAddr) -> Option<NodeId> {
    let IpAddr::V4(ip) = addr.ip() else {
        return None;
    };
    match ip.octets() {
        [10, 0, 0, id] => Some(id),
        [10, 0, 2, 1] => Some(PAGE_SERVICE_NODE),
        [10, 0, 3, 1] => Some(KMS_NODE),
        _ => None,
    }
}

fn matches(side: &Option<Vec<NodeId>>, node: Option<NodeId>) -> bool {
    match side {
        None => true,
        Some(ids) => node.is_some_and(|n| ids.contains(&n)),
    }
}

impl World {
    /// How one datagram travels, and the persistence check on raft messages.
    pub(super) fn delivery(&self, from: SocketAddr, to: SocketAddr, msg: &Wire) -> Delivery {
        let (src, dst) = (node_of(from), node_of(to));
        let mut st = self.lock();
        st.datagrams += 1;
        if let (Wire::Raft { from: f, msg }, Some(t)) = (msg, dst) {
            if self.scn.has_check(Check::Raft) {
                Profile::time_sampled(self.profile.as_deref(), Bucket::Messages, || {
                    self.check_persisted(&mut st, *f, t, msg)
                });
            }
        }
        if st.rules.net.is_empty() {
            return Delivery::Now;
        }
        let rules = &mut st.rules;
        let mut out = Delivery::Now;
        for rule in &rules.net {
            if !matches(&rule.from, src) || !matches(&rule.to, dst) {
                continue;
            }
            if rules.net_rng.gen_range(0..1000) >= rule.per_mille {
                continue;
            }
            out = match rule.effect {
                NetEffect::Delay { delay_ms: [lo, hi] } => Delivery::After {
                    delay_ms: rules.net_rng.gen_range(lo..=hi),
                },
                NetEffect::Duplicate => Delivery::Twice {
                    again_ms: rules.net_rng.gen_range(1..=500),
                },
            };
            break;
        }
        if matches!(out, Delivery::Twice { .. }) {
            st.datagrams += 1;
        }
        out
    }

    /// Holds a raft message to what its sender's disk would keep through a power cut now.
    fn check_persisted(
        &self,
        st: &mut State,
        from: NodeId,
        to: NodeId,
        msg: &engine::raft::Message,
    ) {
        use engine::log_store::{HARD_FILE, LOG_FILE};
        let p = &mut st.persistence;
        // The files are read only when something durable changed since the last message, and
        // then only as far as they changed.
        if p.stale(from, self.disk.durable_changes(from)) {
            self.disk.durable(from, HARD_FILE, |b, replaced| {
                p.read_hard(from, b, replaced)
            });
            self.disk
                .durable(from, LOG_FILE, |b, replaced| p.read_log(from, b, replaced));
        }
        // A disk the harness made lie proves nothing (the node must notice at recovery).
        let lied = st.slots.get(&from).is_some_and(|s| s.disk_faulted) || st.persistence.found >= 3;
        if let Some(why) = st.persistence.check(from, to, msg, lied) {
            st.persistence.found += 1;
            let at_ms = Self::now_us(st) / 1000;
            st.violations.push(violation(
                ViolationKind::RaftSafety,
                Some(node_name(from)),
                at_ms,
                format!("persistence before messages: {why}"),
            ));
        }
    }

    /// Whether the node dies at this crash point (a rule on, the draw hits, and the cluster
    /// can lose it: at most a minority of replicas down at once). Kills it and schedules the
    /// restart from the controller node (the dying node's own tasks never run again).
    pub(super) fn crash_here(&self, node: NodeId, point: CrashPoint) -> bool {
        if self.workload_stop.load(Ordering::Relaxed) {
            return false;
        }
        let down_ms = {
            let mut st = self.lock();
            // Every rule that covers this point draws; the first hit decides the downtime.
            let rules = &mut st.rules;
            let mut hit = None;
            for rule in rules
                .crash
                .iter()
                .filter(|r| r.point.is_none_or(|p| p == point))
            {
                if rules.crash_rng.gen_range(0..1000) < rule.per_mille {
                    hit = Some(rule.down_ms);
                    break;
                }
            }
            let Some([lo, hi]) = hit else {
                return false;
            };
            if !is_service(node) {
                let down = st
                    .slots
                    .iter()
                    .filter(|(id, s)| !is_service(**id) && !s.up)
                    .count();
                if down + 1 > (self.scn.replicas as usize - 1) / 2 {
                    return false;
                }
            }
            if !st.slots.get(&node).is_some_and(|s| s.up) {
                return false;
            }
            st.rules.crash_rng.gen_range(lo..=hi)
        };
        self.lock().windows.insert(crash_point_window(point));
        self.kill(node, &format!("crash point {}", point.name()));
        let controller = self.lock().controller.clone();
        if let (Some(c), Some(w)) = (controller, self.me.upgrade()) {
            c.spawn(async move {
                madsim::time::sleep(Duration::from_millis(down_ms)).await;
                if !w.workload_stop.load(Ordering::Relaxed) {
                    w.start(node);
                }
            });
        }
        true
    }

    /// Turns a network rule on for `for_ms`.
    pub(super) async fn timed_net_rule(
        &self,
        from: Option<Vec<NodeId>>,
        to: Option<Vec<NodeId>>,
        per_mille: u32,
        effect: NetEffect,
        for_ms: u64,
    ) {
        self.rule_for(for_ms, |rules, id| {
            rules.net.push(NetRule {
                id,
                from,
                to,
                per_mille,
                effect,
            })
        })
        .await
    }

    /// Turns crash points on for `for_ms`.
    pub(super) async fn timed_crash_rule(
        &self,
        point: Option<CrashPoint>,
        per_mille: u32,
        down_ms: [u64; 2],
        for_ms: u64,
    ) {
        self.rule_for(for_ms, |rules, id| {
            rules.crash.push(CrashRule {
                id,
                point,
                per_mille,
                down_ms,
            })
        })
        .await
    }

    /// Adds a rule (`add` gets a fresh id) and removes it again after `for_ms`.
    async fn rule_for(&self, for_ms: u64, add: impl FnOnce(&mut Rules, u64)) {
        let id = {
            let mut st = self.lock();
            let id = st.rules.next_id;
            st.rules.next_id += 1;
            add(&mut st.rules, id);
            id
        };
        madsim::time::sleep(Duration::from_millis(for_ms)).await;
        let mut st = self.lock();
        st.rules.net.retain(|r| r.id != id);
        st.rules.crash.retain(|r| r.id != id);
    }

    /// The node set a selector names for a network rule: `all` means anyone (clients too).
    pub(super) fn rule_side(&self, sel: &Selector) -> Option<Vec<NodeId>> {
        match sel {
            Selector::All => None,
            other => Some(self.resolve(other)),
        }
    }
}
