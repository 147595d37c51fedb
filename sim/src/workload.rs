//! The client node: workload clients that write to the cluster and record every operation with
//! its outcome for the durability checker. All choices come from the seed's workload stream.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use engine::client::{Client, ClientConfig, Outcome};
use engine::raft::{NodeId, Op};
use madsim::runtime::Handle;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::check::durability::{OpKind, OpRecord};
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
    if wl.clients > 0 {
        w.note(format!(
            "workload: {} clients, {} ops/s, {} collections x {} keys",
            wl.clients, wl.ops_per_sec, wl.collections, wl.keys
        ));
    }
    for c in 0..wl.clients {
        node.spawn(client_loop(w.clone(), c));
    }
}

async fn client_loop(w: Arc<World>, c: u32) {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(w.seed, "workload", c as u64));
    let bind = SocketAddr::new(IpAddr::V4(CLIENT_IP), CLIENT_PORT_BASE + c as u16);
    let mut client = Client::connect(bind, replicas(&w), ClientConfig::default())
        .await
        .expect("client port is free");
    let wl = w.scn.workload.clone();
    // Mean gap between one client's operations, jittered ±50%.
    let gap_us = 1_000_000u64 * wl.clients as u64 / wl.ops_per_sec as u64;
    let mut seq = 0u64;
    loop {
        let pause = rng.gen_range(gap_us / 2..=gap_us + gap_us / 2).max(1_000);
        madsim::time::sleep(Duration::from_micros(pause)).await;
        if w.workload_stop.load(Ordering::Relaxed) {
            return;
        }
        seq += 1;
        let collection = format!("c{}", rng.gen_range(0..wl.collections));
        let key = format!("k{}", rng.gen_range(0..wl.keys));
        let value = format!("w{c}-{seq}").into_bytes();
        let invoked_us = w.sim_now_us();
        let op = Op::Put {
            collection: collection.clone(),
            key: key.clone(),
            value: value.clone(),
        };
        let outcome = client.write(op).await;
        let acked_us = matches!(outcome, Outcome::Acked { .. }).then(|| w.sim_now_us());
        w.record_op(OpRecord {
            client: c,
            collection,
            kind: OpKind::Put { key, value },
            invoked_us,
            acked_us,
        });
    }
}

/// Issues one DDL operation from a fresh client on the client node.
pub fn spawn_ddl(w: Arc<World>, op: Op) {
    let Some(node) = w.client_node() else { return };
    let Some(h) = Handle::current().get_node(node) else {
        return;
    };
    let port = DDL_PORT_BASE + w.ddl_clients.fetch_add(1, Ordering::Relaxed) % 10_000;
    h.spawn(async move {
        let bind = SocketAddr::new(IpAddr::V4(CLIENT_IP), port);
        let Ok(mut client) = Client::connect(bind, replicas(&w), ClientConfig::default()).await
        else {
            return;
        };
        let invoked_us = w.sim_now_us();
        let outcome = client.write(op.clone()).await;
        let acked_us = matches!(outcome, Outcome::Acked { .. }).then(|| w.sim_now_us());
        w.record_client("ddl", format!("{op:?} -> {outcome:?}"));
        if let Op::DropCollection { name } = op {
            w.record_op(OpRecord {
                client: u32::MAX,
                collection: name,
                kind: OpKind::DropCollection,
                invoked_us,
                acked_us,
            });
        }
    });
}
