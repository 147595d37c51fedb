//! The page service node: serves [`PageStore`] over the network. Requests are handled one at a
//! time; a change is made durable (fsync) before its reply goes out, so whatever the service
//! acknowledged survives a crash.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::Endpoint;

use crate::observe::{Event, InspectPages, Observer, StorageEvent, Warning};
use crate::page_store::{BlockInfo, PageStore, Published, PAGES_FILE};
use crate::pages::Lsn;
use crate::raft::NodeId;
use crate::replica::guarded;
use crate::storage::Storage;
use crate::wire::{Wire, TAG};

/// The node id the page service reports events under (replicas are 1..).
pub const PAGE_SERVICE_NODE: NodeId = 0;

#[derive(Debug, Clone)]
pub struct PageServiceConfig {
    pub addr: SocketAddr,
    /// Simulated fsync duration: a kill inside it loses the unsynced write.
    pub fsync_ms: u64,
}

struct Inspector(Arc<Mutex<PageStore>>);

impl InspectPages for Inspector {
    fn blocks(&self) -> BTreeMap<Lsn, BlockInfo> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).blocks()
    }
    fn block(&self, lsn: Lsn) -> Option<Arc<Vec<u8>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).block(lsn)
    }
    fn latest(&self) -> Option<Published> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).latest()
    }
}

/// Starts a page-service incarnation and runs it until the node is killed.
pub async fn run(cfg: PageServiceConfig, disk: Arc<dyn Storage>, obs: Arc<dyn Observer>) {
    let id = PAGE_SERVICE_NODE;
    guarded(obs.clone(), id, run_inner(cfg, disk, obs)).await;
    futures::future::pending::<()>().await
}

async fn run_inner(cfg: PageServiceConfig, disk: Arc<dyn Storage>, obs: Arc<dyn Observer>) {
    let id = PAGE_SERVICE_NODE;
    let bytes = match disk.read(PAGES_FILE) {
        Ok(b) => b,
        Err(e) => {
            let w = Warning::CannotLoad {
                what: PAGES_FILE.to_string(),
                error: e.to_string(),
            };
            obs.event(id, Event::Warn(w));
            return;
        }
    };
    let (store, valid) = PageStore::recover(&bytes);
    let torn = bytes.len() - valid;
    if torn > 0
        && (disk.replace(PAGES_FILE, &bytes[..valid]).is_err() || disk.sync(PAGES_FILE).is_err())
    {
        return; // a dead incarnation's handle
    }
    obs.event(
        id,
        Event::Storage(StorageEvent::PageServiceStarted {
            blocks: store.blocks().len(),
            newest: store.latest().map(|p| p.id),
            epoch: store.epoch(),
            torn,
        }),
    );
    let store = Arc::new(Mutex::new(store));
    obs.attach_pages(Arc::new(Inspector(store.clone())));
    let ep = match Endpoint::bind(cfg.addr).await {
        Ok(ep) => Arc::new(ep),
        Err(e) => {
            let w = Warning::CannotBind {
                addr: cfg.addr.to_string(),
                error: e.to_string(),
            };
            obs.event(id, Event::Warn(w));
            return;
        }
    };
    loop {
        let Ok((payload, from)) = ep.recv_from_raw(TAG).await else {
            return;
        };
        let Ok(w) = payload.downcast::<Wire>() else {
            continue;
        };
        let Wire::Ps(req) = *w else { continue };
        let req_id = req.req_id;
        let (result, records) = store.lock().unwrap_or_else(|e| e.into_inner()).handle(req);
        if !records.is_empty() {
            if disk.append(PAGES_FILE, &records).is_err() {
                return;
            }
            if cfg.fsync_ms > 0 {
                madsim::time::sleep(Duration::from_millis(cfg.fsync_ms)).await;
            }
            if disk.sync(PAGES_FILE).is_err() {
                return;
            }
        }
        let ep = ep.clone();
        madsim::task::spawn(async move {
            let _ = ep
                .send_to_raw(from, TAG, Box::new(Wire::PsReply { req_id, result }))
                .await;
        });
    }
}
