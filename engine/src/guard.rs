//! How a node's tasks end on a panic. Every node (replica, page service, KMS) runs its tasks
//! through [`guarded`]: a failed engine invariant ([`crate::invariant`]) becomes an abort of that
//! node, any other panic a crash, both reported through the [`Observer`]; the harness, never the
//! engine, then kills the node.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;

use crate::invariant::classify_panic;
use crate::observe::Observer;
use crate::raft::NodeId;

/// Runs a future as one of the node's tasks: an engine invariant failure becomes an abort of
/// this node (reported, then the task parks until the harness kills the node); any other panic
/// is reported as a crash.
pub async fn guarded<F: std::future::Future<Output = ()>>(
    obs: Arc<dyn Observer>,
    node: NodeId,
    fut: F,
) {
    if let Err(payload) = AssertUnwindSafe(fut).catch_unwind().await {
        match classify_panic(payload.as_ref()) {
            Ok(abort) => obs.abort(node, abort),
            Err(msg) => obs.crash(node, msg),
        }
        futures::future::pending::<()>().await;
    }
}
