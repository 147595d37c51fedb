//! The simulator's floor for `faultline bench`: a message-only cluster on the same madsim
//! world as a seed — as many nodes, the same datagrams per simulated second, the same replica
//! ticks and client pacing, the same link latency — and no engine, harness or checker work.
//! The engine's speed is printed as a fraction of it, so the figure says how much of what the
//! substrate allows the engine uses, measured on the same machine at the same moment.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use madsim::net::Endpoint;
use madsim::runtime::{Handle, Runtime};

/// The load a floor run reproduces.
#[derive(Debug, Clone, PartialEq)]
pub struct FloorLoad {
    pub replicas: u32,
    /// Nodes besides the replicas (page service, KMS); they only receive.
    pub services: u32,
    pub clients: u32,
    pub ops_per_sec: u32,
    /// Datagrams per simulated second, measured on the seeds compared with the floor.
    pub datagrams_per_sim_s: f64,
    pub tick_ms: u64,
    pub duration_ms: u64,
    pub latency_ms: [u64; 2],
}

const TAG: u64 = 0x666c_6f6f;
const PORT: u16 = 7000;

fn addr(i: u32) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 9, (i / 250) as u8, (i % 250 + 1) as u8)),
        PORT,
    )
}

/// Runs `load` once on a fresh thread (as seeds run) and returns the datagrams delivered.
pub fn run(load: &FloorLoad, seed: u64) -> u64 {
    let load = load.clone();
    std::thread::Builder::new()
        .name(format!("faultline-floor-{seed}"))
        .stack_size(16 << 20)
        .spawn(move || run_here(&load, seed))
        .expect("spawn a floor thread")
        .join()
        .expect("the floor does not panic")
}

fn run_here(load: &FloorLoad, seed: u64) -> u64 {
    let mut cfg = madsim::Config::default();
    let [lo, hi] = load.latency_ms;
    cfg.net.send_latency = Duration::from_millis(lo)..Duration::from_millis(hi + 1);
    let rt = Runtime::with_seed_and_config(seed, cfg);
    let received = Arc::new(AtomicU64::new(0));
    let got = received.clone();
    let load = load.clone();
    rt.block_on(async move {
        let handle = Handle::current();
        let nodes = load.replicas + load.services;
        // What the replicas send each tick between them (clients send the rest, one request per
        // operation), spread over all links round-robin.
        let replica_rate = (load.datagrams_per_sim_s - load.ops_per_sec as f64).max(0.0);
        let per_tick = replica_rate * load.tick_ms as f64 / 1000.0 / load.replicas.max(1) as f64;
        let mut killed = Vec::new();
        for i in 0..nodes {
            let got = got.clone();
            let ticking = i < load.replicas;
            let tick = Duration::from_millis(load.tick_ms);
            let node = handle
                .create_node()
                .name(format!("floor{i}"))
                .ip(addr(i).ip())
                .init(move || {
                    let got = got.clone();
                    async move {
                        let ep = Arc::new(Endpoint::bind(addr(i)).await.expect("free port"));
                        let rx = ep.clone();
                        madsim::task::spawn(async move {
                            while rx.recv_from_raw(TAG).await.is_ok() {
                                got.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                        if !ticking {
                            return futures::future::pending::<()>().await;
                        }
                        let (mut owed, mut next) = (0.0f64, i + 1);
                        let mut ticks = madsim::time::interval(tick);
                        loop {
                            ticks.tick().await;
                            owed += per_tick;
                            while owed >= 1.0 {
                                owed -= 1.0;
                                next = (next + 1) % nodes;
                                if next == i {
                                    next = (next + 1) % nodes;
                                }
                                let _ = ep.send_to_raw(addr(next), TAG, Box::new(0u64)).await;
                            }
                        }
                    }
                })
                .build();
            killed.push(node.id());
        }
        let gap = Duration::from_micros(
            1_000_000 * load.clients.max(1) as u64 / load.ops_per_sec.max(1) as u64,
        );
        let clients = handle
            .create_node()
            .name("floor-clients")
            .ip(addr(nodes).ip())
            .build();
        killed.push(clients.id());
        for c in 0..load.clients {
            let replicas = load.replicas.max(1);
            clients.spawn(async move {
                let ep = Endpoint::bind(SocketAddr::new(addr(nodes).ip(), PORT + 1 + c as u16))
                    .await
                    .expect("free port");
                let mut k = c;
                loop {
                    madsim::time::sleep(gap).await;
                    k += 1;
                    let _ = ep
                        .send_to_raw(addr(k % replicas), TAG, Box::new(0u64))
                        .await;
                }
            });
        }
        madsim::time::sleep(Duration::from_millis(load.duration_ms)).await;
        for id in killed {
            handle.kill(id);
        }
        madsim::time::sleep(Duration::from_millis(1)).await;
    });
    received.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_delivers_about_the_load_it_was_given() {
        let load = FloorLoad {
            replicas: 3,
            services: 2,
            clients: 2,
            ops_per_sec: 100,
            datagrams_per_sim_s: 1_000.0,
            tick_ms: 10,
            duration_ms: 2_000,
            latency_ms: [1, 10],
        };
        let got = run(&load, 7) as f64;
        // 1,000 per simulated second for 2 s, less those still in flight at the end.
        assert!((1_900.0..=2_000.0).contains(&got), "delivered {got}");
    }
}
