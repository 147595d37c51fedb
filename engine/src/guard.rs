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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::observe::{Event, Inspect, Observer};
    use crate::raft::NodeId;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl Observer for Seen {
        fn event(&self, _: NodeId, _: Event) {}
        fn attach(&self, _: NodeId, _: Arc<dyn Inspect>) {}
        fn abort(&self, node: NodeId, abort: crate::Abort) {
            self.0
                .lock()
                .unwrap()
                .push(format!("abort n{node}: {}", abort.message));
        }
        fn crash(&self, node: NodeId, message: String) {
            self.0
                .lock()
                .unwrap()
                .push(format!("crash n{node}: {message}"));
        }
    }

    /// An invariant failure inside a node task is reported as that node's abort and does not
    /// unwind into the runtime: other tasks keep running.
    #[test]
    fn invariant_failure_becomes_an_abort_and_the_runtime_goes_on() {
        let seen = Arc::new(Seen::default());
        let obs: Arc<dyn Observer> = seen.clone();
        let rt = madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
        let survived = rt.block_on(async move {
            madsim::task::spawn(guarded(obs.clone(), 2, async {
                madsim::time::sleep(Duration::from_millis(5)).await;
                invariant!(false, "boom at {}", 5);
            }));
            madsim::task::spawn(guarded(obs.clone(), 3, async { panic!("plain bug") }));
            madsim::time::sleep(Duration::from_millis(50)).await;
            true
        });
        assert!(survived);
        let seen = seen.0.lock().unwrap().clone();
        assert!(
            seen.contains(&"abort n2: boom at 5".to_string()),
            "{seen:?}"
        );
        assert!(
            seen.iter().any(|s| s.starts_with("crash n3: plain bug")),
            "{seen:?}"
        );
    }
}
