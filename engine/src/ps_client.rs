//! A replica's clients of the page service and the KMS: request ids that stay the same across retries (the
//! service answers a retry with its first result), per-attempt timeouts, and retrying for as
//! long as the caller's condition holds (e.g. "still leader in this term").

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::oneshot;
use madsim::net::Endpoint;

use crate::observe::Observer;
use crate::page_store::{PsOp, PsRequest, PsResult};
use crate::pages::Lsn;
use crate::raft::NodeId;
use crate::wire::{KmsOp, KmsRequest, KmsResult, Wire, TAG};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The caller's condition stopped holding before an answer came.
    #[error("abandoned (no longer wanted)")]
    Abandoned,
    #[error("service unreachable after {attempts} attempts")]
    Unreachable { attempts: u32 },
}

/// One endpoint's request/reply plumbing, shared by the node's page-service lanes and its KMS
/// client: request ids come from one counter, and a router hands each reply to its waiter.
struct Rpc {
    ep: Arc<Endpoint>,
    obs: Arc<dyn Observer>,
    next_id: AtomicU64,
    waiters: Mutex<BTreeMap<u64, oneshot::Sender<Wire>>>,
    attempt_timeout: Duration,
    retry_pause: Duration,
}

impl Rpc {
    async fn bind(bind: SocketAddr, obs: Arc<dyn Observer>) -> std::io::Result<Arc<Rpc>> {
        let ep = Arc::new(Endpoint::bind(bind).await?);
        let rpc = Arc::new(Rpc {
            ep: ep.clone(),
            obs,
            next_id: AtomicU64::new(1),
            waiters: Mutex::new(BTreeMap::new()),
            attempt_timeout: Duration::from_millis(300),
            retry_pause: Duration::from_millis(50),
        });
        let weak = Arc::downgrade(&rpc);
        madsim::task::spawn(async move {
            while let Ok((payload, _)) = ep.recv_from_raw(TAG).await {
                let Some(rpc) = weak.upgrade() else { return };
                let Ok(w) = payload.downcast::<Wire>() else {
                    continue;
                };
                let req_id = match &*w {
                    Wire::PsReply { req_id, .. } | Wire::KmsReply { req_id, .. } => *req_id,
                    _ => continue,
                };
                let tx = rpc
                    .waiters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&req_id);
                if let Some(tx) = tx {
                    let _ = tx.send(*w);
                }
            }
        });
        Ok(rpc)
    }

    /// The one call-and-unwrap: sends the request `make(req_id)` to `to` until answered,
    /// retrying with the same request id while `keep_going()` holds, at most `max_attempts`
    /// times, and takes the service's result out of the reply with `reply`.
    async fn call<R>(
        &self,
        to: SocketAddr,
        make: &(dyn Fn(u64) -> Wire + Sync),
        keep_going: &(dyn Fn() -> bool + Sync),
        max_attempts: u32,
        reply: fn(Wire) -> Result<R, Wire>,
    ) -> Result<R, RpcError> {
        let req_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(req_id, tx);
        let req = make(req_id);
        let mut attempts = 0;
        let out = loop {
            if !keep_going() {
                break Err(RpcError::Abandoned);
            }
            if attempts == max_attempts {
                break Err(RpcError::Unreachable { attempts });
            }
            attempts += 1;
            crate::net::send_inline(&self.ep, &*self.obs, to, req.clone()).await;
            match madsim::time::timeout(self.attempt_timeout, &mut rx).await {
                Ok(Ok(reply)) => break Ok(reply),
                Ok(Err(_)) => break Err(RpcError::Abandoned), // router gone: node shutting down
                Err(_) => madsim::time::sleep(self.retry_pause).await,
            }
        };
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&req_id);
        out.map(|w| reply(w).unwrap_or_else(|w| unreachable!("the router hands a waiter {w:?}")))
    }
}

/// A page-service client: one session (lane) of requests. Writes within a session must not
/// overlap (the service refuses a request older than the session's newest), so a task that
/// writes concurrently with others takes its own [`PsClient::lane`].
pub struct PsClient {
    rpc: Arc<Rpc>,
    service: SocketAddr,
    me: NodeId,
    session: u64,
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
        obs: Arc<dyn Observer>,
    ) -> std::io::Result<Arc<PsClient>> {
        Ok(Arc::new(PsClient {
            rpc: Rpc::bind(bind, obs).await?,
            service,
            me,
            session,
        }))
    }

    /// Another session over the same endpoint, for a task whose writes run beside this one's.
    pub fn lane(&self, session: u64) -> PsClient {
        PsClient {
            rpc: self.rpc.clone(),
            service: self.service,
            me: self.me,
            session,
        }
    }

    /// A KMS client over the same endpoint.
    pub fn kms(&self, service: SocketAddr) -> KmsClient {
        KmsClient {
            rpc: self.rpc.clone(),
            service,
        }
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
        let make = |req_id| {
            Wire::Ps(PsRequest {
                writer: self.me,
                session: self.session,
                req_id,
                epoch,
                op: op.clone(),
            })
        };
        let reply = |w| match w {
            Wire::PsReply { result, .. } => Ok(result),
            other => Err(other),
        };
        let rpc = &self.rpc;
        rpc.call(self.service, &make, keep_going, max_attempts, reply)
            .await
    }

    /// Reads block `lsn` (as a reader): its bytes, or why not (`missing()` when the service
    /// has no such block).
    pub async fn get(
        &self,
        lsn: Lsn,
        keep_going: &(dyn Fn() -> bool + Sync),
        max_attempts: u32,
        missing: impl FnOnce() -> String,
    ) -> Result<Arc<Vec<u8>>, String> {
        let op = PsOp::Get { lsn };
        match self.request_limited(0, op, keep_going, max_attempts).await {
            Ok(PsResult::Block(b)) => Ok(b),
            Ok(PsResult::NotFound) => Err(missing()),
            Ok(other) => Err(format!("unexpected reply to get: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A KMS client: wraps and unwraps through the KMS node, retrying while it is down.
pub struct KmsClient {
    rpc: Arc<Rpc>,
    service: SocketAddr,
}

impl KmsClient {
    pub async fn request(
        &self,
        op: KmsOp,
        keep_going: &(dyn Fn() -> bool + Sync),
        max_attempts: u32,
    ) -> Result<KmsResult, RpcError> {
        let make = |req_id| {
            Wire::Kms(KmsRequest {
                req_id,
                op: op.clone(),
            })
        };
        let reply = |w| match w {
            Wire::KmsReply { result, .. } => Ok(result),
            other => Err(other),
        };
        let rpc = &self.rpc;
        rpc.call(self.service, &make, keep_going, max_attempts, reply)
            .await
    }

    /// Sends `op` and takes the result `want` accepts; any other result is an error naming
    /// `what()` was asked, as is no answer.
    pub async fn expect<T>(
        &self,
        op: KmsOp,
        keep_going: &(dyn Fn() -> bool + Sync),
        max_attempts: u32,
        what: impl FnOnce() -> String,
        want: fn(KmsResult) -> Result<T, KmsResult>,
    ) -> Result<T, String> {
        match self.request(op, keep_going, max_attempts).await {
            Ok(r) => want(r).map_err(|other| format!("kms: {}: {other:?}", what())),
            Err(e) => Err(format!("kms: {e}")),
        }
    }
}
