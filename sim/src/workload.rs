//! The client node: workload clients that write to the cluster and record every operation with
//! its outcome for the durability checker. All choices come from the seed's workload stream.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use engine::client::{Client, ClientConfig, Outcome};
use engine::raft::{NodeId, Op};
use engine::wire::AdminAction;
use madsim::runtime::Handle;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::check::clients::{ClientKind, ClientOp};
use crate::world::{derive_seed, replica_addr, World, CLIENT_IP};

const CLIENT_PORT_BASE: u16 = 9000;
const DDL_PORT_BASE: u16 = 20000;

fn replicas(w: &World) -> BTreeMap<NodeId, SocketAddr> {
    (1..=w.scn.replicas).map(|i| (i, replica_addr(i))).collect()
}

pub fn start(w: Arc<World>) {
    let node = Handle::current()
        .create_node()
        .name("clients")
        .ip(IpAddr::V4(CLIENT_IP))
        .build();
    w.set_client_node(node.id());
    let wl = &w.scn.workload;
    let mix = Mix::for_seed(&w);
    if wl.clients > 0 {
        w.note(format!(
            "workload: {} clients, {} ops/s, {} collections x {} keys; mix per mille: {} reads, {} deletes, {} appends, {} on hot keys",
            wl.clients, wl.ops_per_sec, wl.collections, wl.keys, mix.reads, mix.deletes, mix.appends, mix.hot
        ));
    }
    for c in 0..wl.clients {
        node.spawn(client_loop(w.clone(), c, mix));
    }
}

/// The operation mix of one seed, in per-mille of all operations (puts take the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub reads: u32,
    pub deletes: u32,
    pub appends: u32,
    /// Share of operations aimed at a small hot set of keys (10 per collection), so reads and
    /// appends meet concurrent writers instead of scattering over the whole key space.
    pub hot: u32,
}

impl Mix {
    /// The scenario's mix, or one the seed draws (swarm testing: each seed explores its own).
    pub fn for_seed(w: &World) -> Mix {
        if let Some(m) = w.scn.workload.mix {
            return Mix {
                reads: m.reads_per_mille,
                deletes: m.deletes_per_mille,
                appends: m.appends_per_mille,
                hot: m.hot_per_mille,
            };
        }
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(w.seed, "workload-mix", 0));
        Mix {
            reads: rng.gen_range(50..=300),
            deletes: rng.gen_range(0..=80),
            appends: rng.gen_range(0..=250),
            hot: rng.gen_range(0..=700),
        }
    }
}

async fn client_loop(w: Arc<World>, c: u32, mix: Mix) {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(w.seed, "workload", c as u64));
    let bind = SocketAddr::new(IpAddr::V4(CLIENT_IP), CLIENT_PORT_BASE + c as u16);
    let mut client = Client::connect(c as u64 + 1, bind, replicas(&w), ClientConfig::default())
        .await
        .expect("client port is free")
        .with_network(w.clone());
    let wl = w.scn.workload.clone();
    // Open schedule: operation k is due at k x gap (jittered ±50%); a slow write delays the
    // next one but the client catches up, so the offered rate holds while latency allows.
    let gap_us = 1_000_000u64 * wl.clients as u64 / wl.ops_per_sec as u64;
    let mut seq = 0u64;
    let mut due_us = w.sim_now_us();
    loop {
        due_us += rng.gen_range(gap_us / 2..=gap_us + gap_us / 2).max(1_000);
        let now = w.sim_now_us();
        // After an outage, do not replay a backlog of more than a second.
        due_us = due_us.max(now.saturating_sub(1_000_000));
        if due_us > now {
            madsim::time::sleep(Duration::from_micros(due_us - now)).await;
        }
        if w.workload_stop.load(Ordering::Relaxed) {
            return;
        }
        seq += 1;
        let collection = format!("c{}", rng.gen_range(0..wl.collections));
        let hot = rng.gen_range(0..1000) < mix.hot;
        let key = format!(
            "k{}",
            rng.gen_range(0..if hot { wl.keys.min(10) } else { wl.keys })
        );
        let roll = rng.gen_range(0..1000u32);
        let (kind, op) = if roll < mix.reads {
            let op = Op::Get {
                collection: collection.clone(),
                key: key.clone(),
            };
            (ClientKind::Get, op)
        } else if roll < mix.reads + mix.deletes {
            let op = Op::Delete {
                collection: collection.clone(),
                key: key.clone(),
            };
            (ClientKind::Delete, op)
        } else if roll < mix.reads + mix.deletes + mix.appends {
            // Elements are unique, so a lost or duplicated append shows in what readers see.
            let value = format!("a{c}.{seq};").into_bytes();
            let op = Op::Append {
                collection: collection.clone(),
                key: key.clone(),
                value: value.clone(),
            };
            (ClientKind::Append(value), op)
        } else {
            let value = format!("w{c}-{seq}").into_bytes();
            let op = Op::Put {
                collection: collection.clone(),
                key: key.clone(),
                value: value.clone(),
            };
            (ClientKind::Put(value), op)
        };
        tracked(&w, &mut client, c, collection, Some(key), kind, op).await;
        w.sample_model("sampled while faults run");
    }
}

/// Runs one operation through `client`, recording it before it is sent and its outcome.
async fn tracked(
    w: &World,
    client: &mut Client,
    client_no: u32,
    collection: String,
    key: Option<String>,
    kind: ClientKind,
    op: Op,
) -> Outcome {
    let handle = w.begin_op(ClientOp {
        client: client_no,
        session: client.next_session(),
        collection,
        key,
        kind,
        invoked_us: w.sim_now_us(),
        acked_us: None,
        returned_us: None,
        ack: None,
        read: None,
        failed: false,
    });
    let outcome = client.write(op).await;
    w.complete_op(handle, &outcome);
    outcome
}

/// Connects a one-off client (DDL, key rotations) on the client node and runs `f` with it.
fn spawn_oneoff<F, Fut>(w: Arc<World>, f: F)
where
    F: FnOnce(Arc<World>, Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(node) = w.client_node() else { return };
    let Some(h) = Handle::current().get_node(node) else {
        return;
    };
    let port = DDL_PORT_BASE + w.ddl_clients.fetch_add(1, Ordering::Relaxed) % 10_000;
    h.spawn(async move {
        let bind = SocketAddr::new(IpAddr::V4(CLIENT_IP), port);
        let Ok(client) = Client::connect(
            1_000_000 + port as u64,
            bind,
            replicas(&w),
            ClientConfig::default(),
        )
        .await
        else {
            return;
        };
        let client = client.with_network(w.clone());
        f(w, client).await
    });
}

/// Issues one key rotation (an administrative command) from a fresh client.
pub fn spawn_admin(w: Arc<World>, action: AdminAction) {
    spawn_oneoff(w, move |w, mut client| async move {
        let outcome = client.admin(action).await;
        w.record_client("admin", format!("{action:?} -> {outcome:?}"));
    });
}

/// Issues one DDL operation from a fresh client on the client node.
pub fn spawn_ddl(w: Arc<World>, op: Op) {
    spawn_oneoff(w, move |w, mut client| async move {
        let (collection, kind) = match &op {
            Op::DropCollection { name } => (name.clone(), ClientKind::DropCollection),
            Op::CreateCollection { name } => (name.clone(), ClientKind::CreateCollection),
            _ => unreachable!("only DDL goes through here"),
        };
        let outcome = tracked(
            &w,
            &mut client,
            u32::MAX,
            collection,
            None,
            kind,
            op.clone(),
        )
        .await;
        w.record_client("ddl", format!("{op:?} -> {outcome:?}"));
    });
}
