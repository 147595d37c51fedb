//! The one way engine code puts a datagram on the wire, the one serve loop of the service
//! nodes (KMS, page service), and the one way it stops at a crash point. The harness owns the network and the disk, so both ask it (through the
//! [`Observer`]): how a datagram is delivered (now, later, twice), and whether the node dies at
//! a named moment.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use madsim::net::Endpoint;

use crate::observe::{CrashPoint, Delivery, Event, Observer, Warning};
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

/// Binds an endpoint at `addr` for `node`; a failure is reported as a warning of `node`.
pub async fn bind(obs: &dyn Observer, node: NodeId, addr: SocketAddr) -> Option<Arc<Endpoint>> {
    match Endpoint::bind(addr).await {
        Ok(ep) => Some(Arc::new(ep)),
        Err(e) => {
            cannot_bind(obs, node, addr, &e);
            None
        }
    }
}

/// Reports that `node` could not bind `addr`.
pub fn cannot_bind(obs: &dyn Observer, node: NodeId, addr: SocketAddr, e: &std::io::Error) {
    let w = Warning::CannotBind {
        addr: addr.to_string(),
        error: e.to_string(),
    };
    obs.event(node, Event::Warn(w));
}

/// A service node's serve loop: requests are handled one at a time, in arrival order. Each
/// datagram `request` takes out of its envelope (others are ignored) goes to `handle`, whose
/// reply is sent back to the requester; `handle` answering `None` stops the service (its
/// incarnation's disk is gone). Returns when the endpoint closes.
pub async fn serve<Q, R>(
    ep: &Arc<Endpoint>,
    obs: &dyn Observer,
    request: fn(Wire) -> Option<Q>,
    mut handle: impl FnMut(Q) -> R,
) where
    R: std::future::Future<Output = Option<Wire>>,
{
    loop {
        let Ok((payload, from)) = ep.recv_from_raw(TAG).await else {
            return;
        };
        let Ok(w) = payload.downcast::<Wire>() else {
            continue;
        };
        let Some(req) = request(*w) else { continue };
        let Some(reply) = handle(req).await else {
            return;
        };
        send(ep, obs, from, reply);
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
