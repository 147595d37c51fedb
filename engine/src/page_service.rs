//! The page service node: serves [`PageStore`] over the network. Requests are handled one at a
//! time; a change is made durable (fsync) before its reply goes out, so whatever the service
//! acknowledged survives a crash.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::guard::guarded;
use crate::observe::{CrashPoint, Event, InspectPages, Observer, StorageEvent, Warning};
use crate::page_store::{BlockInfo, PageStore, PsRequest, Published, PAGES_FILE};
use crate::pages::Lsn;
use crate::raft::NodeId;
use crate::storage::Storage;
use crate::wire::Wire;

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
    let Some(ep) = crate::net::bind(&*obs, id, cfg.addr).await else {
        return;
    };
    let request = |w| match w {
        Wire::Ps(req) => Some(req),
        _ => None,
    };
    let (cfg, disk, obs) = (&cfg, &disk, &obs);
    crate::net::serve(&ep, &**obs, request, |req: PsRequest| {
        let req_id = req.req_id;
        let (result, records) = store.lock().unwrap_or_else(|e| e.into_inner()).handle(req);
        async move {
            if !records.is_empty() {
                durable(cfg, &**disk, &**obs, &records).await?;
            }
            Some(Wire::PsReply { req_id, result })
        }
    })
    .await
}

/// Makes a request's records durable before its reply goes out; `None` when the disk is gone.
async fn durable(
    cfg: &PageServiceConfig,
    disk: &dyn Storage,
    obs: &dyn Observer,
    records: &[u8],
) -> Option<()> {
    let id = PAGE_SERVICE_NODE;
    disk.append(PAGES_FILE, records).ok()?;
    crate::net::crash_point(obs, id, CrashPoint::PagesWritten).await;
    if cfg.fsync_ms > 0 {
        madsim::time::sleep(Duration::from_millis(cfg.fsync_ms)).await;
    }
    disk.sync(PAGES_FILE).ok()?;
    crate::net::crash_point(obs, id, CrashPoint::PagesSynced).await;
    Some(())
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use madsim::net::Endpoint;
    use madsim::runtime::{Handle, Runtime};

    use super::*;
    use crate::observe::Inspect;
    use crate::page_store::{PsOp, PsResult};
    use crate::storage::MemDisk;
    use crate::wire::{Wire, PAGE_SERVICE_PORT, TAG};

    const PS_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
    const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);

    /// What the service reported, and any abort or crash.
    #[derive(Default)]
    struct Seen {
        events: Mutex<Vec<Event>>,
        failures: Mutex<Vec<String>>,
    }

    impl Observer for Seen {
        fn event(&self, _: NodeId, e: Event) {
            self.events.lock().unwrap().push(e);
        }
        fn attach(&self, _: NodeId, _: Arc<dyn Inspect>) {}
        fn abort(&self, _: NodeId, abort: crate::Abort) {
            self.failures.lock().unwrap().push(abort.message);
        }
        fn crash(&self, _: NodeId, message: String) {
            self.failures.lock().unwrap().push(message);
        }
    }

    fn request(req_id: u64, op: PsOp) -> PsRequest {
        PsRequest {
            writer: 1,
            session: 1,
            req_id,
            epoch: 0,
            op,
        }
    }

    fn put(req_id: u64, bytes: &[u8]) -> PsRequest {
        let op = PsOp::Put {
            table: "t".into(),
            page_id: 0,
            base_lsn: 0,
            bytes: bytes.to_vec(),
        };
        request(req_id, op)
    }

    /// Runs a page service on `disk` in a fresh simulation and sends it `requests` one after
    /// the other from a client node. Returns each reply with the simulated milliseconds from
    /// its request, and what the service reported.
    fn serve(
        disk: Arc<dyn Storage>,
        fsync_ms: u64,
        requests: Vec<PsRequest>,
    ) -> (Vec<(PsResult, u128)>, Arc<Seen>) {
        let seen = Arc::new(Seen::default());
        let obs: Arc<dyn Observer> = seen.clone();
        let rt = Runtime::with_seed_and_config(1, madsim::Config::default());
        let replies = rt.block_on(async move {
            let addr = SocketAddr::new(IpAddr::V4(PS_IP), PAGE_SERVICE_PORT);
            let h = Handle::current();
            let ps = h.create_node().name("ps").ip(IpAddr::V4(PS_IP)).build();
            ps.spawn(run(PageServiceConfig { addr, fsync_ms }, disk, obs));
            let client = h
                .create_node()
                .name("client")
                .ip(IpAddr::V4(CLIENT_IP))
                .build();
            let replies = client.spawn(async move {
                let ep = Endpoint::bind((CLIENT_IP, 9000)).await.unwrap();
                madsim::time::sleep(Duration::from_millis(10)).await; // the service is up
                let mut replies = vec![];
                for req in requests {
                    let sent = madsim::time::Instant::now();
                    ep.send_to_raw(addr, TAG, Box::new(Wire::Ps(req)))
                        .await
                        .unwrap();
                    let (payload, _) = ep.recv_from_raw(TAG).await.unwrap();
                    match *payload.downcast::<Wire>().unwrap() {
                        Wire::PsReply { result, .. } => {
                            replies.push((result, sent.elapsed().as_millis()))
                        }
                        other => panic!("not a page-service reply: {other:?}"),
                    }
                }
                replies
            });
            replies.await.unwrap()
        });
        let failures = seen.failures.lock().unwrap().clone();
        assert!(failures.is_empty(), "{failures:?}");
        (replies, seen)
    }

    /// Recovery cuts a torn tail off the block log before anything is appended to it: a block
    /// acknowledged after recovering from a torn write survives the next recovery. (Appended
    /// behind the torn bytes, its record would follow one that never decodes, and be lost.)
    #[test]
    fn a_write_acknowledged_after_a_torn_tail_survives_the_next_recovery() {
        // Block 1's record whole, then block 2's torn three bytes short.
        let (mut s, _) = PageStore::recover(&[]);
        let mut file = s.handle(put(1, b"one")).1;
        let whole = file.len();
        let next = s.handle(put(2, b"two")).1;
        file.extend_from_slice(&next[..next.len() - 3]);
        let disk = Arc::new(MemDisk::default());
        disk.append(PAGES_FILE, &file).unwrap();

        let (replies, seen) = serve(disk.clone(), 0, vec![put(3, b"three")]);
        let cut = seen.events.lock().unwrap().iter().find_map(|e| match e {
            Event::Storage(StorageEvent::PageServiceStarted { torn, .. }) => Some(*torn),
            _ => None,
        });
        assert_eq!(
            cut,
            Some(file.len() - whole),
            "the service found the torn bytes"
        );
        assert_eq!(replies[0].0, PsResult::Lsn(2), "the torn block 2 never was");

        let file = disk.read(PAGES_FILE).unwrap();
        let (recovered, valid) = PageStore::recover(&file);
        assert_eq!(valid, file.len(), "no torn bytes left in the file");
        assert_eq!(
            recovered.blocks().keys().copied().collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(recovered.block(2).unwrap().as_slice(), b"three");
    }

    /// A write is acknowledged only after its simulated fsync (`fsync_ms`), the window in
    /// which a crash loses it unacknowledged; a read, which writes nothing, does not wait.
    #[test]
    fn a_write_is_acknowledged_only_after_its_fsync_time() {
        let disk = Arc::new(MemDisk::default());
        let get = request(2, PsOp::Get { lsn: 1 });
        let (replies, _) = serve(disk, 200, vec![put(1, b"one"), get]);
        assert_eq!(replies[0].0, PsResult::Lsn(1));
        assert!(
            replies[0].1 >= 200,
            "acknowledged after {} ms",
            replies[0].1
        );
        assert!(matches!(replies[1].0, PsResult::Block(_)));
        assert!(
            replies[1].1 < 200,
            "read answered after {} ms",
            replies[1].1
        );
    }
}
