//! The page service's state machine: blocks addressed by one global, increasing LSN, and the
//! published checkpoints' metadata pages. It is durable (every change is a checksummed record
//! made durable before the reply), fences writers by epoch (every new leader claims a fresh,
//! higher epoch; a deposed leader cannot write, free or publish once a newer one has claimed the
//! service), and answers a retried request with the result of its first execution, so a lost
//! reply never duplicates a block.
//!
//! The epoch is the service's own counter rather than the raft term, so the storage fencing
//! does not depend on raft's persistence being right (incident 003 breaks exactly that).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::pages::{Lsn, PageId};
use crate::raft::NodeId;

pub const PAGES_FILE: &str = "pages.log";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PsOp {
    /// A new leader claims the service: a fresh epoch; lower epochs can no longer write.
    Fence,
    Put {
        table: String,
        page_id: PageId,
        base_lsn: Lsn,
        bytes: Vec<u8>,
    },
    Get {
        lsn: Lsn,
    },
    Discard {
        lsns: Vec<Lsn>,
    },
    /// Publishes a checkpoint's metadata page; `id` must be above the newest published one.
    Publish {
        id: u64,
        meta: Vec<u8>,
    },
    Latest,
    /// Blocks below an LSN (a new leader sweeps what earlier leaders left unreferenced).
    List {
        below: Lsn,
    },
}

impl PsOp {
    fn writes(&self) -> bool {
        matches!(
            self,
            PsOp::Fence | PsOp::Put { .. } | PsOp::Discard { .. } | PsOp::Publish { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PsResult {
    /// The writer's epoch is below the newest claim.
    Fenced {
        epoch: u64,
    },
    Lsn(Lsn),
    Claimed {
        epoch: u64,
        next_lsn: Lsn,
        latest: Option<Published>,
    },
    Block(Arc<Vec<u8>>),
    NotFound,
    Done,
    Latest(Option<Published>),
    Blocks(Vec<Lsn>),
    Rejected(String),
    /// A late duplicate of a request the session has long moved past: not executed.
    Stale,
}

/// A published checkpoint: its LSN, id and metadata page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub lsn: Lsn,
    pub id: u64,
    pub meta: Arc<Vec<u8>>,
}

/// One request as the service sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsRequest {
    pub writer: NodeId,
    /// The writer incarnation's session: a number drawn afresh by every incarnation.
    pub session: u64,
    /// Identifies the request across retries; increasing within a session.
    pub req_id: u64,
    /// The epoch the writer claimed (readers send 0).
    pub epoch: u64,
    pub op: PsOp,
}

/// What the harness may see of a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    pub table: String,
    pub page_id: PageId,
    pub base_lsn: Lsn,
    pub size: u32,
    pub writer: NodeId,
    pub epoch: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Record {
    Fence(u64),
    Put {
        lsn: Lsn,
        info: BlockInfo,
        bytes: Arc<Vec<u8>>,
        session: u64,
        req_id: u64,
    },
    Discard(Vec<Lsn>),
    Publish {
        published: Published,
        writer: NodeId,
        session: u64,
        req_id: u64,
    },
}

#[derive(Debug, Clone)]
pub struct PageStore {
    next_lsn: Lsn,
    epoch: u64,
    blocks: BTreeMap<Lsn, (BlockInfo, Arc<Vec<u8>>)>,
    latest: Option<Published>,
    /// Last put or publish per writer session and its result: a retry gets the same answer,
    /// and a late duplicate of an older request is refused rather than executed twice.
    dedup: BTreeMap<(NodeId, u64), (u64, PsResult)>,
}

impl PageStore {
    /// Rebuilds the store from its file; returns it and the length of the valid prefix.
    pub fn recover(bytes: &[u8]) -> (PageStore, usize) {
        let (recs, valid) = crate::frames::decode::<Record>(bytes);
        // LSN 0 means "no base" in a cookie: the first block gets 1.
        let mut s = PageStore {
            next_lsn: 1,
            epoch: 0,
            blocks: BTreeMap::new(),
            latest: None,
            dedup: BTreeMap::new(),
        };
        for r in recs {
            s.redo(r);
        }
        (s, valid)
    }

    fn redo(&mut self, r: Record) {
        match r {
            Record::Fence(e) => self.epoch = self.epoch.max(e),
            Record::Put {
                lsn,
                info,
                bytes,
                session,
                req_id,
            } => {
                self.next_lsn = self.next_lsn.max(lsn + 1);
                self.dedup
                    .insert((info.writer, session), (req_id, PsResult::Lsn(lsn)));
                self.blocks.insert(lsn, (info, bytes));
            }
            Record::Discard(lsns) => {
                for l in lsns {
                    self.blocks.remove(&l);
                }
            }
            Record::Publish {
                published,
                writer,
                session,
                req_id,
            } => {
                self.next_lsn = self.next_lsn.max(published.lsn + 1);
                self.dedup
                    .insert((writer, session), (req_id, PsResult::Lsn(published.lsn)));
                self.latest = Some(published);
            }
        }
    }

    /// A retry gets its first result, a late duplicate is refused (`Stale`), and writes below the
    /// newest claim are refused (`Fenced`; a claim itself always goes through).
    fn answered_without_executing(&self, req: &PsRequest) -> Option<PsResult> {
        if matches!(req.op, PsOp::Put { .. } | PsOp::Publish { .. }) {
            if let Some((id, res)) = self.dedup.get(&(req.writer, req.session)) {
                if *id == req.req_id {
                    return Some(res.clone());
                }
                if *id > req.req_id {
                    return Some(PsResult::Stale);
                }
            }
        }
        if req.op.writes() && !matches!(req.op, PsOp::Fence) && req.epoch < self.epoch {
            return Some(PsResult::Fenced { epoch: self.epoch });
        }
        None
    }

    /// Executes a request; returns the reply and the records to make durable before sending it.
    pub fn handle(&mut self, req: PsRequest) -> (PsResult, Vec<u8>) {
        if let Some(answer) = self.answered_without_executing(&req) {
            return (answer, vec![]);
        }
        let mut out = Vec::new();
        let mut log = |s: &mut PageStore, r: Record| {
            crate::frames::encode(&mut out, &r);
            s.redo(r);
        };
        let res = match req.op {
            PsOp::Fence => {
                log(self, Record::Fence(self.epoch + 1));
                PsResult::Claimed {
                    epoch: self.epoch,
                    next_lsn: self.next_lsn,
                    latest: self.latest.clone(),
                }
            }
            PsOp::Put {
                table,
                page_id,
                base_lsn,
                bytes,
            } => {
                let lsn = self.next_lsn;
                let info = BlockInfo {
                    table,
                    page_id,
                    base_lsn,
                    size: bytes.len() as u32,
                    writer: req.writer,
                    epoch: req.epoch,
                };
                log(
                    self,
                    Record::Put {
                        lsn,
                        info,
                        bytes: Arc::new(bytes),
                        session: req.session,
                        req_id: req.req_id,
                    },
                );
                PsResult::Lsn(lsn)
            }
            PsOp::Get { lsn } => match self.blocks.get(&lsn) {
                Some((_, b)) => PsResult::Block(b.clone()),
                None => PsResult::NotFound,
            },
            PsOp::Discard { lsns } => {
                let present: Vec<Lsn> = lsns
                    .into_iter()
                    .filter(|l| self.blocks.contains_key(l))
                    .collect();
                if !present.is_empty() {
                    log(self, Record::Discard(present));
                }
                PsResult::Done
            }
            PsOp::Publish { id, meta } => {
                if let Some(p) = &self.latest {
                    if id <= p.id {
                        return (
                            PsResult::Rejected(format!(
                                "checkpoint {id} is not newer than published {}",
                                p.id
                            )),
                            vec![],
                        );
                    }
                }
                let published = Published {
                    lsn: self.next_lsn,
                    id,
                    meta: Arc::new(meta),
                };
                let lsn = published.lsn;
                log(
                    self,
                    Record::Publish {
                        published,
                        writer: req.writer,
                        session: req.session,
                        req_id: req.req_id,
                    },
                );
                PsResult::Lsn(lsn)
            }
            PsOp::Latest => PsResult::Latest(self.latest.clone()),
            PsOp::List { below } => {
                PsResult::Blocks(self.blocks.range(..below).map(|(l, _)| *l).collect())
            }
        };
        (res, out)
    }

    pub fn blocks(&self) -> BTreeMap<Lsn, BlockInfo> {
        self.blocks
            .iter()
            .map(|(l, (i, _))| (*l, i.clone()))
            .collect()
    }
    pub fn block(&self, lsn: Lsn) -> Option<Arc<Vec<u8>>> {
        self.blocks.get(&lsn).map(|(_, b)| b.clone())
    }
    pub fn latest(&self) -> Option<Published> {
        self.latest.clone()
    }
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(writer: NodeId, req_id: u64, epoch: u64, op: PsOp) -> PsRequest {
        PsRequest {
            writer,
            session: 9,
            req_id,
            epoch,
            op,
        }
    }

    fn put(bytes: &[u8]) -> PsOp {
        PsOp::Put {
            table: "t".into(),
            page_id: 0,
            base_lsn: 0,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn lsns_increase_and_retries_do_not_duplicate_blocks() {
        let (mut s, _) = PageStore::recover(&[]);
        let mut file = Vec::new();
        let (r1, w) = s.handle(req(1, 1, 1, put(b"a")));
        file.extend(w);
        let (r1b, w) = s.handle(req(1, 1, 1, put(b"a")));
        assert!(w.is_empty(), "a retry writes nothing");
        assert_eq!(r1, r1b);
        let (r2, w) = s.handle(req(1, 2, 1, put(b"b")));
        file.extend(w);
        assert_eq!((r1, r2), (PsResult::Lsn(1), PsResult::Lsn(2)));
        let (p, w) = s.handle(req(
            1,
            3,
            1,
            PsOp::Publish {
                id: 1,
                meta: b"m".to_vec(),
            },
        ));
        file.extend(w);
        assert_eq!(p, PsResult::Lsn(3));
        // Recovery from the file gives the same state, including the dedup of the last request.
        let (mut r, valid) = PageStore::recover(&file);
        assert_eq!(valid, file.len());
        assert_eq!(r.blocks(), s.blocks());
        assert_eq!(r.latest(), s.latest());
        assert_eq!(
            r.handle(req(
                1,
                3,
                1,
                PsOp::Publish {
                    id: 1,
                    meta: b"m".to_vec()
                }
            ))
            .0,
            PsResult::Lsn(3)
        );
        assert_eq!(r.handle(req(2, 1, 1, put(b"c"))).0, PsResult::Lsn(4));
    }

    #[test]
    fn a_late_duplicate_is_refused_not_executed_twice() {
        let (mut s, _) = PageStore::recover(&[]);
        assert_eq!(s.handle(req(1, 5, 1, put(b"a"))).0, PsResult::Lsn(1));
        assert_eq!(s.handle(req(1, 6, 1, put(b"b"))).0, PsResult::Lsn(2));
        // Attempt 1 of request 5 arrives after request 6 ran.
        assert_eq!(s.handle(req(1, 5, 1, put(b"a"))).0, PsResult::Stale);
        assert_eq!(s.blocks().len(), 2);
        // A new incarnation (another session) starts its ids afresh.
        let mut r = req(1, 1, 1, put(b"c"));
        r.session = 10;
        assert_eq!(s.handle(r).0, PsResult::Lsn(3));
    }

    #[test]
    fn a_claim_shuts_out_lower_epochs() {
        let (mut s, _) = PageStore::recover(&[]);
        let (c1, _) = s.handle(req(1, 1, 0, PsOp::Fence));
        assert!(matches!(c1, PsResult::Claimed { epoch: 1, .. }));
        s.handle(req(1, 2, 1, put(b"a")));
        let (claimed, w) = s.handle(req(2, 1, 0, PsOp::Fence));
        assert!(!w.is_empty(), "the claim is durable");
        assert!(matches!(
            claimed,
            PsResult::Claimed {
                epoch: 2,
                next_lsn: 2,
                ..
            }
        ));
        assert_eq!(
            s.handle(req(1, 3, 1, put(b"b"))).0,
            PsResult::Fenced { epoch: 2 }
        );
        assert_eq!(
            s.handle(req(1, 4, 1, PsOp::Discard { lsns: vec![1] })).0,
            PsResult::Fenced { epoch: 2 }
        );
        assert_eq!(
            s.handle(req(2, 2, 2, PsOp::Discard { lsns: vec![1] })).0,
            PsResult::Done
        );
        assert!(s.blocks().is_empty());
        // Reads are not fenced.
        assert_eq!(
            s.handle(req(1, 5, 0, PsOp::Get { lsn: 1 })).0,
            PsResult::NotFound
        );
        // The epoch survives a restart of the service.
        let mut file = Vec::new();
        let (mut t, _) = PageStore::recover(&[]);
        for r in [req(1, 1, 0, PsOp::Fence), req(2, 1, 0, PsOp::Fence)] {
            file.extend(t.handle(r).1);
        }
        assert_eq!(PageStore::recover(&file).0.epoch(), 2);
    }

    #[test]
    fn publish_requires_a_newer_checkpoint_id() {
        let (mut s, _) = PageStore::recover(&[]);
        s.handle(req(
            1,
            1,
            1,
            PsOp::Publish {
                id: 2,
                meta: vec![],
            },
        ));
        assert!(matches!(
            s.handle(req(
                1,
                2,
                1,
                PsOp::Publish {
                    id: 2,
                    meta: vec![]
                }
            ))
            .0,
            PsResult::Rejected(_)
        ));
        assert!(matches!(
            s.handle(req(1, 3, 1, PsOp::Latest)).0,
            PsResult::Latest(Some(Published { id: 2, .. }))
        ));
    }
}
