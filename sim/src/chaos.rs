//! The chaos controller: randomized faults drawn from the seed's chaos stream. With `swarm`,
//! each seed first draws which fault kinds are enabled and how often faults come (TigerBeetle's
//! swarm testing), so different seeds stress different mixes; the choices go into the report.
//! Every fault is one a correct cluster must survive: killed nodes come back with their disks
//! (synced data intact), partitions and stalls end, and the liveness phase heals the rest.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::{Chaos, Scenario, Selector, TimelineItem};
use crate::world::{derive_seed, World};

/// What one seed's swarm draw enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmChoice {
    pub faults: Vec<String>,
    pub mean_interval_ms: u64,
    /// Per mille of faults that follow the previous one within 10–300 ms instead of the usual
    /// gap: clustered faults (a leader change, then a drop during the new leader's step-up)
    /// reach interleavings that evenly spaced ones almost never do.
    pub burst_per_mille: u32,
    /// Failpoints on for the whole fault phase (name, per mille), drawn when the `failpoint`
    /// fault is enabled: a slow drain or flaky page puts under every other fault.
    pub background_failpoints: Vec<(String, u32)>,
}

/// Draws the seed's fault mix: each kind kept with probability 1/2 (at least one), the
/// interval scaled by 1/2..2, on half the seeds bursts of clustered faults, and with the
/// `failpoint` fault each failpoint on in the background with probability 1/2.
pub fn draw_swarm(chaos: &Chaos, rng: &mut ChaCha8Rng) -> SwarmChoice {
    if !chaos.swarm {
        return SwarmChoice {
            faults: chaos.faults.clone(),
            mean_interval_ms: chaos.mean_interval_ms,
            burst_per_mille: 0,
            background_failpoints: vec![],
        };
    }
    let mut faults: Vec<String> = chaos
        .faults
        .iter()
        .filter(|_| rng.gen_bool(0.5))
        .cloned()
        .collect();
    if faults.is_empty() {
        faults.push(chaos.faults[rng.gen_range(0..chaos.faults.len())].clone());
    }
    let mean_interval_ms = chaos.mean_interval_ms * rng.gen_range(50..=200) / 100;
    let burst_per_mille = if rng.gen_bool(0.5) {
        rng.gen_range(100..=500)
    } else {
        0
    };
    let mut background_failpoints = vec![];
    if faults.iter().any(|f| f == "failpoint") {
        for name in engine::failpoints::IMPLEMENTED {
            if rng.gen_bool(0.5) {
                background_failpoints.push((name.to_string(), rng.gen_range(20..=300)));
            }
        }
    }
    SwarmChoice {
        faults,
        mean_interval_ms,
        burst_per_mille,
        background_failpoints,
    }
}

/// The scenario one seed runs: with `chaos.swarm_world`, the seed draws its cluster size (3 or
/// 5), latency, client load and checkpoint interval from a stream of its own, so the rest of
/// the seed's draws stay put; the result is a plain scenario (the draw is baked in, so a shrunk
/// file reproduces it without the chaos block). Otherwise the scenario as written.
pub fn world_for_seed(scn: &Scenario, seed: u64) -> Scenario {
    let mut s = scn.clone();
    if !scn.chaos.as_ref().is_some_and(|c| c.swarm && c.swarm_world) {
        return s;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "swarm-world", 0));
    s.replicas = if rng.gen_bool(0.5) { 3 } else { 5 };
    s.network.latency_ms = [[1, 10], [1, 30], [5, 60], [1, 120]][rng.gen_range(0..4)];
    let w = &mut s.workload;
    w.ops_per_sec = (w.ops_per_sec * [50, 100, 200][rng.gen_range(0..3)] / 100).max(1);
    s.checkpoint_interval_ms = Some([200, 500, 1_000, 2_000][rng.gen_range(0..4)]);
    s
}

/// One line for the report: what `world_for_seed` drew.
pub fn world_note(s: &Scenario) -> String {
    format!(
        "swarm world: {} replicas, latency {}..{} ms, {} ops/s, checkpoint every {} ms",
        s.replicas,
        s.network.latency_ms[0],
        s.network.latency_ms[1],
        s.workload.ops_per_sec,
        s.checkpoint_interval_ms.unwrap_or(1_000)
    )
}

pub async fn run(w: Arc<World>, chaos: Chaos) {
    // A stream of its own: the controller's draws do not shift the timeline's or workload's.
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(w.seed, "chaos-controller", 0));
    let swarm = draw_swarm(&chaos, &mut rng);
    if chaos.swarm && chaos.swarm_world {
        w.note(world_note(&w.scn));
    }
    let background: Vec<String> = swarm
        .background_failpoints
        .iter()
        .map(|(name, rate)| format!("{name} {rate}‰"))
        .collect();
    w.note(format!(
        "chaos{}: faults [{}], mean interval {} ms, bursts {}‰, background failpoints [{}]",
        if chaos.swarm { " (swarm)" } else { "" },
        swarm.faults.join(", "),
        swarm.mean_interval_ms,
        swarm.burst_per_mille,
        background.join(", ")
    ));
    let replicas = w.scn.replicas;
    let end_ms = w.scn.duration_ms;
    for (name, per_mille) in &swarm.background_failpoints {
        w.set_background_failpoint(name, *per_mille);
        let item = TimelineItem::Failpoint {
            at_ms: 0,
            name: name.clone(),
            per_mille: *per_mille,
            for_ms: end_ms,
        };
        w.record_chaos(&item);
        madsim::task::spawn(w.clone().apply(item));
    }
    loop {
        madsim::time::sleep(Duration::from_millis(next_gap_ms(&swarm, &mut rng))).await;
        if w.workload_stop.load(Ordering::Relaxed) || w.sim_now_us() / 1000 >= end_ms {
            return;
        }
        let kind = swarm.faults[rng.gen_range(0..swarm.faults.len())].as_str();
        let collections = w.scn.workload.collections;
        let Some(item) = draw_item(kind, &mut rng, replicas, collections) else {
            unreachable!("fault `{kind}` rejected by scenario validation")
        };
        w.record_chaos(&item);
        madsim::task::spawn(w.clone().apply(item));
    }
}

/// The wait before the next random fault: within a burst 10–300 ms, else about the swarm's
/// mean interval (half to one and a half of it).
pub fn next_gap_ms(swarm: &SwarmChoice, rng: &mut ChaCha8Rng) -> u64 {
    if rng.gen_range(0..1000) < swarm.burst_per_mille {
        rng.gen_range(10..=300)
    } else {
        rng.gen_range(swarm.mean_interval_ms / 2..=swarm.mean_interval_ms * 3 / 2)
    }
    .max(1)
}

/// One random fault of kind `kind` (a name from `Chaos::faults`), as a timeline item at 0 ms;
/// `None` for an unknown kind. Pure: the controllers of the engine's world and of hosted
/// systems draw the same items from the same stream.
pub fn draw_item(
    kind: &str,
    rng: &mut ChaCha8Rng,
    replicas: u8,
    collections: u32,
) -> Option<TimelineItem> {
    let for_ms = rng.gen_range(200..=3_000);
    let one = |rng: &mut ChaCha8Rng| match rng.gen_range(0..3) {
        0 => Selector::Leader,
        1 => Selector::Standby,
        _ => Selector::Node(rng.gen_range(1..=replicas)),
    };
    Some(match kind {
        // One node per fault, back within seconds with its disk.
        "kill" => TimelineItem::Restart {
            at_ms: 0,
            nodes: one(rng),
            down_ms: [100, 3_000],
            straggler_ms: None,
        },
        "restart_all" => TimelineItem::Restart {
            at_ms: 0,
            nodes: Selector::All,
            down_ms: [100, 800],
            straggler_ms: Some([200, 3_000]),
        },
        "partition" => TimelineItem::Partition {
            at_ms: 0,
            nodes: one(rng),
            for_ms,
        },
        "split" => TimelineItem::Partition {
            at_ms: 0,
            nodes: Selector::Minority,
            for_ms,
        },
        "one_way" => TimelineItem::ClogLink {
            at_ms: 0,
            from: one(rng),
            to: one(rng),
            for_ms,
        },
        "loss" => TimelineItem::Loss {
            at_ms: 0,
            per_mille: rng.gen_range(50..=300),
            for_ms,
        },
        "latency_spike" => {
            let hi = rng.gen_range(50..=500);
            TimelineItem::Latency {
                at_ms: 0,
                latency_ms: [hi / 4, hi],
                for_ms,
            }
        }
        "pause" => TimelineItem::Pause {
            at_ms: 0,
            nodes: one(rng),
            for_ms: for_ms.min(1_500),
        },
        "create_collection" => TimelineItem::CreateCollection {
            at_ms: 0,
            name: format!("c{}", rng.gen_range(0..collections.max(1))),
        },
        "drop_collection" => TimelineItem::DropCollection {
            at_ms: 0,
            name: format!("c{}", rng.gen_range(0..collections.max(1))),
        },
        // The page service crashes and comes back with its disk; clients retry meanwhile.
        "kill_page_service" => TimelineItem::Restart {
            at_ms: 0,
            nodes: Selector::PageService,
            down_ms: [100, 3_000],
            straggler_ms: None,
        },
        // The KMS goes away for a while: key unwraps wait, pick-ups retry later.
        "kill_kms" => TimelineItem::Restart {
            at_ms: 0,
            nodes: Selector::Kms,
            down_ms: [100, 3_000],
            straggler_ms: None,
        },
        "rotate_kek" => TimelineItem::RotateKek { at_ms: 0 },
        "rotate_cmk" => TimelineItem::RotateCmk { at_ms: 0 },
        // The leader hands over: step-up races (drain, drops) without any crash.
        "step_down" => TimelineItem::StepDown { at_ms: 0 },
        "failpoint" => {
            let names = engine::failpoints::IMPLEMENTED;
            TimelineItem::Failpoint {
                at_ms: 0,
                name: names[rng.gen_range(0..names.len())].to_string(),
                per_mille: rng.gen_range(20..=200),
                for_ms,
            }
        }
        // One message held back on a link (a reply overtaken by later traffic).
        "delay" => TimelineItem::Delay {
            at_ms: 0,
            from: if rng.gen_bool(0.5) {
                Selector::All
            } else {
                one(rng)
            },
            to: if rng.gen_bool(0.5) {
                Selector::PageService
            } else {
                Selector::All
            },
            per_mille: rng.gen_range(50..=500),
            delay_ms: [50, rng.gen_range(200..=3_000)],
            for_ms,
        },
        "duplicate" => TimelineItem::Duplicate {
            at_ms: 0,
            from: Selector::All,
            to: Selector::All,
            per_mille: rng.gen_range(50..=300),
            for_ms,
        },
        // Crashes exactly where they matter (between a write and its fsync, an fsync and
        // the message it allows, the steps of a checkpoint).
        "crash_point" => {
            // One point per fault; the ones passed hundreds of times a second (every raft
            // write, every page-service request) at a low rate, the storage steps that come
            // once a checkpoint at a high one, so each gets its crashes.
            use engine::observe::CrashPoint;
            let points = CrashPoint::ALL;
            let point = points[rng.gen_range(0..points.len())];
            let frequent = matches!(
                point,
                CrashPoint::RaftWritten
                    | CrashPoint::RaftSynced
                    | CrashPoint::PagesWritten
                    | CrashPoint::PagesSynced
            );
            TimelineItem::CrashPoints {
                at_ms: 0,
                point: Some(point.name().to_string()),
                per_mille: if frequent {
                    rng.gen_range(5..=40)
                } else {
                    rng.gen_range(200..=800)
                },
                down_ms: [100, 2_000],
                // Long enough for a checkpoint or a step-up to come by.
                for_ms: for_ms * 3,
            }
        }
        // One replica's disk lies once (at most a minority per run); it must notice.
        "disk_fault" => {
            let kinds = crate::scenario::DiskFaultKind::ALL;
            TimelineItem::DiskFault {
                at_ms: 0,
                nodes: one(rng),
                kind: kinds[rng.gen_range(0..kinds.len())],
                down_ms: [100, 2_000],
            }
        }
        "link_latency" => {
            let hi = rng.gen_range(20..=200);
            TimelineItem::LinkLatency {
                at_ms: 0,
                from: one(rng),
                to: one(rng),
                latency_ms: [hi / 4, hi],
                for_ms,
            }
        }
        "hold_flushes" => TimelineItem::HoldFlushes {
            at_ms: 0,
            nodes: one(rng),
            for_ms: for_ms.min(1_500),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chaos(swarm: bool) -> Chaos {
        Chaos {
            swarm_world: false,
            faults: vec!["kill".into(), "partition".into(), "loss".into()],
            mean_interval_ms: 1000,
            swarm,
        }
    }

    #[test]
    fn without_swarm_everything_is_enabled() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let c = draw_swarm(&chaos(false), &mut rng);
        assert_eq!(c.faults.len(), 3);
        assert_eq!(c.mean_interval_ms, 1000);
    }

    #[test]
    fn swarm_varies_the_mix_by_seed_and_never_enables_nothing() {
        let mut mixes = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let c = draw_swarm(&chaos(true), &mut rng);
            assert!(!c.faults.is_empty());
            assert!((500..=2000).contains(&c.mean_interval_ms));
            mixes.insert(c.faults);
        }
        assert!(
            mixes.len() >= 5,
            "swarm explores different mixes: {mixes:?}"
        );
    }

    #[test]
    fn swarm_draws_bursts_and_background_failpoints_only_where_enabled() {
        let mut with_failpoint = chaos(true);
        with_failpoint.faults.push("failpoint".into());
        let (mut bursts, mut backgrounds) = (0, 0);
        for seed in 0..64 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let c = draw_swarm(&with_failpoint, &mut rng);
            assert!(c.burst_per_mille == 0 || (100..=500).contains(&c.burst_per_mille));
            bursts += usize::from(c.burst_per_mille > 0);
            if !c.faults.iter().any(|f| f == "failpoint") {
                assert!(c.background_failpoints.is_empty(), "{c:?}");
            }
            for (name, rate) in &c.background_failpoints {
                assert!(engine::failpoints::IMPLEMENTED.contains(&name.as_str()));
                assert!((20..=300).contains(rate));
            }
            backgrounds += usize::from(!c.background_failpoints.is_empty());
        }
        assert!(
            (16..=48).contains(&bursts),
            "about half the seeds burst: {bursts}"
        );
        assert!(
            backgrounds >= 10,
            "background failpoints drawn: {backgrounds}"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let fixed = draw_swarm(&chaos(false), &mut rng);
        assert_eq!(fixed.burst_per_mille, 0, "no swarm, no bursts");
        assert!(fixed.background_failpoints.is_empty());
    }
}
