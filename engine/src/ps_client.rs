//! A replica's client of the page service: request ids that stay the same across retries (the
//! service answers a retry with its first result), per-attempt timeouts, and retrying for as
//! long as the caller's condition holds (e.g. "still leader in this term").

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::oneshot;
use madsim::net::Endpoint;

use crate::page_store::{PsOp, PsRequest, PsResult};
use crate::raft::NodeId;
use crate::wire::{Wire, TAG};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The caller's condition stopped holding before an answer came.
    #[error("abandoned (no longer wanted)")]
    Abandoned,
    #[error("page service unreachable after {attempts} attempts")]
    Unreachable { attempts: u32 },
}

pub struct PsClient {
    ep: Arc<Endpoint>,
    service: SocketAddr,
    me: NodeId,
    session: u64,
    next_id: AtomicU64,
    waiters: Mutex<BTreeMap<u64, oneshot::Sender<PsResult>>>,
    attempt_timeout: Duration,
    retry_pause: Duration,
}

impl PsClient {
    /// Binds the client's endpoint and starts its reply router (a task of the calling node).
    /// `session` must differ between incarnations of the node (the service keeps request ids
    /// per session): callers pass a number drawn from the incarnation's seed.
    pub async fn bind(
        bind: SocketAddr,
        service: SocketAddr,
        me: NodeId,
        session: u64,
    ) -> std::io::Result<Arc<PsClient>> {
        let ep = Arc::new(Endpoint::bind(bind).await?);
        let c = Arc::new(PsClient {
            ep: ep.clone(),
            service,
            me,
            session,
            next_id: AtomicU64::new(1),
            waiters: Mutex::new(BTreeMap::new()),
            attempt_timeout: Duration::from_millis(300),
            retry_pause: Duration::from_millis(50),
        });
        let weak = Arc::downgrade(&c);
        madsim::task::spawn(async move {
            while let Ok((payload, _)) = ep.recv_from_raw(TAG).await {
                let Some(c) = weak.upgrade() else { return };
                if let Ok(w) = payload.downcast::<Wire>() {
                    if let Wire::PsReply { req_id, result } = *w {
                        let tx = c
                            .waiters
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&req_id);
                        if let Some(tx) = tx {
                            let _ = tx.send(result);
                        }
                    }
                }
            }
        });
        Ok(c)
    }

    /// Sends `op` (as a writer of `epoch`; readers pass 0) until answered, retrying with the same request id while `keep_going()` holds.
    pub async fn request(
        &self,
        epoch: u64,
        op: PsOp,
        keep_going: &(dyn Fn() -> bool + Sync),
    ) -> Result<PsResult, RpcError> {
        self.request_limited(epoch, op, keep_going, u32::MAX).await
    }

    /// Like [`PsClient::request`], giving up after `max_attempts`.
    pub async fn request_limited(
        &self,
        epoch: u64,
        op: PsOp,
        keep_going: &(dyn Fn() -> bool + Sync),
        max_attempts: u32,
    ) -> Result<PsResult, RpcError> {
        let req_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(req_id, tx);
        let req = PsRequest {
            writer: self.me,
            session: self.session,
            req_id,
            epoch,
            op,
        };
        let mut attempts = 0;
        let out = loop {
            if !keep_going() {
                break Err(RpcError::Abandoned);
            }
            if attempts == max_attempts {
                break Err(RpcError::Unreachable { attempts });
            }
            attempts += 1;
            let _ = self
                .ep
                .send_to_raw(self.service, TAG, Box::new(Wire::Ps(req.clone())))
                .await;
            match madsim::time::timeout(self.attempt_timeout, &mut rx).await {
                Ok(Ok(result)) => break Ok(result),
                Ok(Err(_)) => break Err(RpcError::Abandoned), // router gone: node shutting down
                Err(_) => madsim::time::sleep(self.retry_pause).await,
            }
        };
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&req_id);
        out
    }
}
