//! The one way engine code puts a datagram on the wire, and the one way it stops at a crash
//! point. The harness owns the network and the disk, so both ask it (through the
//! [`Observer`]): how a datagram is delivered (now, later, twice), and whether the node dies at
//! a named moment.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use madsim::net::Endpoint;

use crate::observe::{CrashPoint, Delivery, Observer};
use crate::raft::NodeId;
use crate::wire::{Wire, TAG};

/// Sends `w` from `ep` to `to` in a task of its own (the caller never waits on the network),
/// delivered as the harness decides.
pub fn send(ep: &Arc<Endpoint>, obs: &dyn Observer, to: SocketAddr, w: Wire) {
    let from = ep.local_addr().expect("a bound endpoint has an address");
    let delivery = obs.sending(from, to, &w);
    let ep = ep.clone();
    madsim::task::spawn(async move {
        deliver(&ep, to, w, delivery).await;
    });
}

/// Sends `w` now from the calling task when the harness says so (the common case costs no
/// task); a held-back or duplicated datagram goes out from a task of its own.
pub async fn send_inline(ep: &Arc<Endpoint>, obs: &dyn Observer, to: SocketAddr, w: Wire) {
    let from = ep.local_addr().expect("a bound endpoint has an address");
    match obs.sending(from, to, &w) {
        Delivery::Now => {
            let _ = ep.send_to_raw(to, TAG, Box::new(w)).await;
        }
        delivery => {
            let ep = ep.clone();
            madsim::task::spawn(async move { deliver(&ep, to, w, delivery).await });
        }
    }
}

async fn deliver(ep: &Endpoint, to: SocketAddr, w: Wire, delivery: Delivery) {
    match delivery {
        Delivery::Now => {
            let _ = ep.send_to_raw(to, TAG, Box::new(w)).await;
        }
        Delivery::After { delay_ms } => {
            madsim::time::sleep(Duration::from_millis(delay_ms)).await;
            let _ = ep.send_to_raw(to, TAG, Box::new(w)).await;
        }
        Delivery::Twice { again_ms } => {
            let _ = ep.send_to_raw(to, TAG, Box::new(w.clone())).await;
            madsim::time::sleep(Duration::from_millis(again_ms)).await;
            let _ = ep.send_to_raw(to, TAG, Box::new(w)).await;
        }
    }
}

/// A crash point: when the harness kills the node here, the calling task never takes another
/// step (the simulator drops it with the rest of the node).
pub async fn crash_point(obs: &dyn Observer, node: NodeId, point: CrashPoint) {
    if obs.crash_point(node, point) {
        futures::future::pending::<()>().await;
    }
}
