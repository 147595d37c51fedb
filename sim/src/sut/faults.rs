//! Timeline and chaos items on a hosted system: kills and restarts through madsim and the
//! disk's crash model, everything on the network through [`super::Links`]. Items the harness
//! cannot apply to a hosted system (the engine's storage and key actions) are refused by
//! scenario validation before a run starts.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::world::HWorld;
use super::CLIENTS;
use crate::scenario::{Chaos, Selector, TimelineItem};
use crate::world::derive_seed;

fn names(ids: &[u8]) -> String {
    ids.iter()
        .map(|i| format!("n{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl HWorld {
    fn fault(&self, detail: String) {
        self.record("controller", "fault", detail);
    }

    fn draw(&self, [lo, hi]: [u64; 2]) -> u64 {
        self.lock().chaos_rng.gen_range(lo..=hi)
    }

    /// The voters a selector means now.
    pub(super) fn resolve(&self, sel: &Selector) -> Vec<u8> {
        let up: Vec<u8> = self
            .voters()
            .into_iter()
            .filter(|&n| self.is_up(n))
            .collect();
        let leader = || {
            self.leader().or_else(|| {
                // No leader right now: the fault still lands, on a node the seed picks.
                let mut st = self.lock();
                (!up.is_empty()).then(|| up[st.chaos_rng.gen_range(0..up.len())])
            })
        };
        let draw = |lo: usize, hi: usize| self.lock().chaos_rng.gen_range(lo..hi);
        // The page service and the KMS are refused by validation for hosted systems.
        sel.replicas(self.voters(), &up, leader, draw)
            .unwrap_or_default()
    }

    /// After `for_ms`, runs `undo` unless the liveness phase has healed everything already.
    fn later(self: &Arc<Self>, for_ms: u64, undo: impl FnOnce(&HWorld) + Send + 'static) {
        let w = self.clone();
        madsim::task::spawn(async move {
            madsim::time::sleep(Duration::from_millis(for_ms)).await;
            if !w.lock().healed {
                undo(&w);
            }
        });
    }

    /// Clogs every directed link in `pairs` for `for_ms`.
    fn clog_for(self: &Arc<Self>, pairs: Vec<(u8, u8)>, for_ms: u64) {
        for &(a, b) in &pairs {
            self.links.clog(a, b);
        }
        self.later(for_ms, move |w| {
            for (a, b) in pairs {
                w.links.unclog(a, b);
            }
        });
    }

    pub(super) async fn apply(self: Arc<Self>, item: TimelineItem) {
        match item {
            TimelineItem::Restart {
                nodes,
                down_ms,
                straggler_ms,
                ..
            } => {
                let ids = self.resolve(&nodes);
                self.fault(format!("restart {nodes} = [{}]", names(&ids)));
                if ids.len() == self.voters().len() {
                    self.window("all-replicas-restarted");
                }
                for &id in &ids {
                    self.kill(id, false);
                }
                let straggler = straggler_ms.and_then(|_| {
                    (!ids.is_empty()).then(|| ids[self.lock().chaos_rng.gen_range(0..ids.len())])
                });
                for id in ids {
                    let mut delay = self.draw(down_ms);
                    if Some(id) == straggler {
                        delay += self.draw(straggler_ms.unwrap_or([0, 0]));
                    }
                    let w = self.clone();
                    madsim::task::spawn(async move {
                        madsim::time::sleep(Duration::from_millis(delay)).await;
                        if !w.stop.load(Ordering::Relaxed) {
                            w.record(&format!("n{id}"), "restart", format!("after {delay} ms"));
                            w.restart(id);
                        }
                    });
                }
            }
            TimelineItem::Kill {
                nodes, permanent, ..
            } => {
                let ids = self.resolve(&nodes);
                self.fault(format!(
                    "kill {nodes} = [{}]{}",
                    names(&ids),
                    if permanent { " for good" } else { "" }
                ));
                if ids.len() == self.voters().len() {
                    self.window("all-replicas-restarted");
                }
                if permanent {
                    self.window("node-killed-for-good");
                }
                for id in ids {
                    self.kill(id, permanent);
                }
            }
            TimelineItem::Start { nodes, .. } => {
                let ids = self.resolve(&nodes);
                self.fault(format!("start {nodes} = [{}]", names(&ids)));
                for id in ids {
                    self.restart(id);
                }
            }
            TimelineItem::Partition { nodes, for_ms, .. } => {
                let inside = self.resolve(&nodes);
                self.fault(format!(
                    "partition {nodes} = [{}] for {for_ms} ms",
                    names(&inside)
                ));
                let mut outside: Vec<u8> = self
                    .voters()
                    .into_iter()
                    .filter(|n| !inside.contains(n))
                    .collect();
                outside.push(CLIENTS);
                let mut pairs = vec![];
                for &a in &inside {
                    for &b in &outside {
                        pairs.extend([(a, b), (b, a)]);
                    }
                }
                self.clog_for(pairs, for_ms);
            }
            TimelineItem::ClogLink {
                from, to, for_ms, ..
            } => {
                let (f, t) = (self.resolve(&from), self.resolve(&to));
                self.fault(format!(
                    "clog {from} = [{}] -> {to} = [{}] for {for_ms} ms",
                    names(&f),
                    names(&t)
                ));
                let pairs = f
                    .iter()
                    .flat_map(|&a| t.iter().filter(move |&&b| b != a).map(move |&b| (a, b)))
                    .collect();
                self.clog_for(pairs, for_ms);
            }
            TimelineItem::Latency {
                latency_ms, for_ms, ..
            } => {
                self.fault(format!("latency {latency_ms:?} ms for {for_ms} ms"));
                let before = self.links.set_latency_ms(latency_ms);
                self.later(for_ms, move |w| w.links.restore_latency_us(before));
            }
            TimelineItem::LinkLatency {
                from,
                to,
                latency_ms,
                for_ms,
                ..
            } => {
                let (f, t) = (self.resolve(&from), self.resolve(&to));
                self.fault(format!(
                    "link latency {from} = [{}] -> {to} = [{}] {latency_ms:?} ms for {for_ms} ms",
                    names(&f),
                    names(&t)
                ));
                let pairs: Vec<(u8, u8)> = f
                    .iter()
                    .flat_map(|&a| t.iter().filter(move |&&b| b != a).map(move |&b| (a, b)))
                    .collect();
                for &(a, b) in &pairs {
                    self.links.set_link_latency_ms(a, b, Some(latency_ms));
                }
                self.later(for_ms, move |w| {
                    for (a, b) in pairs {
                        w.links.set_link_latency_ms(a, b, None);
                    }
                });
            }
            TimelineItem::Loss {
                per_mille, for_ms, ..
            } => {
                self.fault(format!("loss {per_mille}‰ for {for_ms} ms"));
                let before = self.links.set_loss_per_mille(per_mille);
                self.later(for_ms, move |w| {
                    w.links.set_loss_per_mille(before);
                });
            }
            TimelineItem::HoldFlushes { nodes, for_ms, .. } => {
                let ids = self.resolve(&nodes);
                self.fault(format!(
                    "hold flushes {nodes} = [{}] for {for_ms} ms",
                    names(&ids)
                ));
                for &id in &ids {
                    self.links.hold_flushes(id);
                }
                self.later(for_ms, move |w| {
                    for id in ids {
                        w.links.release_flushes(id);
                    }
                });
            }
            TimelineItem::Heal { .. } => {
                self.fault("heal".into());
                self.links.heal();
            }
            other => {
                // Scenario validation refuses these for hosted systems.
                self.note(format!(
                    "{} ignored: not available for hosted systems",
                    other.action()
                ));
            }
        }
    }
}

/// The chaos controller for a hosted system: the same swarm draw and fault items as the
/// engine's (`chaos::draw_item`), applied here.
pub(super) async fn chaos(w: Arc<HWorld>, chaos: Chaos) {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(w.seed, "chaos-controller", 0));
    let swarm = crate::chaos::draw_swarm(&chaos, &mut rng);
    w.note(format!(
        "chaos{}: faults [{}], mean interval {} ms, bursts {}‰",
        if chaos.swarm { " (swarm)" } else { "" },
        swarm.faults.join(", "),
        swarm.mean_interval_ms,
        swarm.burst_per_mille,
    ));
    let end_ms = w.scn.duration_ms;
    loop {
        let gap = crate::chaos::next_gap_ms(&swarm, &mut rng);
        madsim::time::sleep(Duration::from_millis(gap)).await;
        if w.stop.load(Ordering::Relaxed) || w.sim_now_us() / 1000 >= end_ms {
            return;
        }
        let kind = swarm.faults[rng.gen_range(0..swarm.faults.len())].as_str();
        let Some(item) = crate::chaos::draw_item(kind, &mut rng, w.scn.replicas, 1) else {
            continue;
        };
        {
            let mut st = w.lock();
            let at_ms = HWorld::now_us(&st) / 1000;
            st.chaos_schedule
                .push(crate::scenario::retimed(&item, at_ms));
        }
        madsim::task::spawn(w.clone().apply(item));
    }
}
