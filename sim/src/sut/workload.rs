//! The hosted workload: closed-loop clients, each on its own madsim node, drawing puts (unique
//! values), deletes and reads from a stream of their own; every call is recorded when issued
//! and completed with what the client saw.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::world::HWorld;
use super::{client_ip, KvCall, KvOp};
use crate::check::clients::ClientKind;
use crate::scenario::WorkloadMix;
use crate::world::derive_seed;

/// The seed's mix: the scenario's, or one drawn per seed.
fn mix(w: &HWorld) -> WorkloadMix {
    if let Some(m) = w.scn.workload.mix {
        return m;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(w.seed, "workload-mix", 0));
    WorkloadMix {
        reads_per_mille: rng.gen_range(100..=400),
        deletes_per_mille: rng.gen_range(0..=100),
        appends_per_mille: 0,
        hot_per_mille: rng.gen_range(0..=500),
    }
}

pub(super) fn spawn_client(w: &Arc<HWorld>, c: u32) -> madsim::runtime::NodeHandle {
    let node = w
        .handle
        .create_node()
        .name(format!("client{c}"))
        .ip(client_ip(c))
        .build();
    let w2 = w.clone();
    node.spawn(async move { run_client(w2, c).await });
    node
}

async fn run_client(w: Arc<HWorld>, c: u32) {
    let mix = mix(&w);
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(w.seed, "workload", c as u64));
    let mut kv = w.cluster.client(c);
    let keys = w.scn.workload.keys.max(1);
    let period_us = 1_000_000 / w.scn.workload.ops_per_sec.max(1) as u64;
    let mut seq = 0u64;
    // Staggered starts: clients do not move in lock step.
    madsim::time::sleep(Duration::from_micros(rng.gen_range(0..=period_us))).await;
    while !w.stop.load(Ordering::Relaxed) {
        seq += 1;
        let key = if rng.gen_range(0..1000) < mix.hot_per_mille {
            format!("k{}", rng.gen_range(0..keys.min(10)))
        } else {
            format!("k{}", rng.gen_range(0..keys))
        };
        let roll = rng.gen_range(0..1000);
        let (op, kind) = if roll < mix.reads_per_mille {
            (KvOp::Get { key: key.clone() }, ClientKind::Get)
        } else if roll < mix.reads_per_mille + mix.deletes_per_mille {
            (KvOp::Delete { key: key.clone() }, ClientKind::Delete)
        } else {
            let value = format!("c{c}-{seq}").into_bytes();
            (
                KvOp::Put {
                    key: key.clone(),
                    value: value.clone(),
                },
                ClientKind::Put(value),
            )
        };
        let h = w.begin_op(c, seq, &key, kind);
        let out = kv.execute(KvCall { client: c, seq, op }).await;
        w.complete_op(h, &out);
        let pause = rng.gen_range(period_us / 2..=period_us * 3 / 2);
        madsim::time::sleep(Duration::from_micros(pause)).await;
    }
}
