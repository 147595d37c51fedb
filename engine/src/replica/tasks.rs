//! The storage tasks of a replica. Each executes the commands of the storage-role core
//! (`crate::storage_role`) in order and feeds it the replies; the decisions are the core's.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::keys::{load_keystore, load_view};
use super::{lock, sim_clock_us, Node, Pending};
use crate::failpoints;
use crate::guard::guarded;
use crate::keystore;
use crate::knobs::planted;
use crate::layered::{CheckpointMeta, Mode};
use crate::observe::{CrashPoint, Event, StorageEvent};
use crate::page_store::{PsOp, PsResult};
use crate::ps_client::PsClient;
use crate::raft::ProposeError;
use crate::storage_role::checkpoint::{CheckpointRun, Input};
use crate::storage_role::drain::{Batch, Pass};
use crate::storage_role::keystore_flush::{self, FlushReply};
use crate::storage_role::pickup::Target;
use crate::storage_role::step_up::{Claimed, DrainStats, LogAt};
use crate::storage_role::{Command, Lease, StorageRole};
use crate::wire::{AdminAction, ClientResult};

type Still<'a> = &'a (dyn Fn() -> bool + Sync);

impl Node {
    /// Executes a command that needs no reply (without the node's lock for `Reclaim`).
    pub(super) fn exec(self: &Arc<Self>, cmd: Command) {
        match cmd {
            Command::Note(e) => self.obs.event(self.id, e),
            Command::Abort(why) => invariant!(false, "{why}"),
            Command::StepUp(lease) => {
                let n = self.clone();
                madsim::task::spawn(guarded(self.obs.clone(), self.id, async move {
                    n.step_up(lease).await
                }));
            }
            Command::FlushKeystore { lease, epoch } => self.spawn_flush(lease, epoch),
            Command::Reclaim(lease, why) => self.reclaim(lease, why),
            other => invariant!(false, "storage command {other:?} outside a task"),
        }
    }

    pub(super) fn exec_all(self: &Arc<Self>, cmds: Vec<Command>) {
        for c in cmds {
            self.exec(c);
        }
    }

    /// Executes a task's commands in order: the reply to its request, if it made one; `Err`
    /// when the request failed (leadership lost while retrying: the task ends).
    async fn perform(
        self: &Arc<Self>,
        cmds: Vec<Command>,
        ps: &PsClient,
        epoch: u64,
        still: Still<'_>,
    ) -> Result<Option<PsResult>, ()> {
        let mut reply = None;
        for cmd in cmds {
            match cmd {
                Command::Crash(p) => self.crash_point(p).await,
                Command::Request(op) => match ps.request(epoch, op, still).await {
                    Ok(r) => reply = Some(r),
                    Err(_) => return Err(()),
                },
                Command::Discard(lsns) => {
                    let _ = ps.request(epoch, PsOp::Discard { lsns }, still).await;
                }
                other => self.exec(other),
            }
        }
        Ok(reply)
    }

    fn reclaim(self: &Arc<Self>, lease: Lease, why: String) {
        let cmds = {
            let mut c = lock(&self.core);
            let (role, term) = (c.raft.role(), c.raft.term());
            let c = &mut *c;
            c.role.reclaim(&mut c.store, lease, role, term, why)
        };
        self.exec_all(cmds);
    }

    /// Whether the storage leadership `lease` still holds.
    fn leading(&self, lease: Lease) -> bool {
        let c = lock(&self.core);
        c.role.holds(lease, c.raft.role(), c.raft.term())
    }

    /// Step-up (see `storage_role::step_up`): claim, move onto the newest checkpoint, sweep,
    /// keystore page, drain, and a forced checkpoint.
    async fn step_up(self: Arc<Self>, lease: Lease) {
        let still = || self.leading(lease);
        let (claiming, fence) = StorageRole::step_up_claiming(lease);
        self.exec(claiming);
        let Ok(reply) = self.ps.request(0, fence, &still).await else {
            return;
        };
        let (epoch, next_lsn) = match &reply {
            PsResult::Claimed {
                epoch, next_lsn, ..
            } => (*epoch, *next_lsn),
            _ => (0, 0),
        };
        if epoch > 0 {
            self.crash_point(CrashPoint::StepUpFenced).await;
        }
        let claimed = {
            let c = lock(&self.core);
            c.role.step_up_claimed(&c.store, lease, reply)
        };
        match claimed {
            Claimed::Stop(cmds) => return self.exec_all(cmds),
            Claimed::Install(meta) => {
                if !self.step_up_onto(lease, epoch, meta, &still).await {
                    return;
                }
            }
            Claimed::Sweep => {}
        }
        if !self.sweep(lease, epoch, next_lsn, &still).await {
            return;
        }
        let needs_flush = {
            let mut c = lock(&self.core);
            let c = &mut *c;
            c.role.step_up_keystore_page(&c.store, lease)
        };
        match needs_flush {
            None => return,
            Some(true) if !self.flush_keystore(lease, epoch).await => return,
            Some(_) => {}
        }
        {
            let mut c = lock(&self.core);
            let (role, term) = (c.raft.role(), c.raft.term());
            if !c.role.step_up_epoch(lease, role, term, epoch) {
                return;
            }
        }
        let Some(stats) = self.drain(lease).await else {
            return; // leadership lost meanwhile
        };
        let done = {
            let c = lock(&self.core);
            c.role.step_up_done(&c.store, lease, epoch, stats)
        };
        self.exec(done);
        self.checkpoint_once(true).await;
    }

    /// Step-up onto a newer checkpoint than this node's base: check the log holds its cut,
    /// catch up to it, load it and install it. Returns whether the step-up goes on.
    async fn step_up_onto(
        self: &Arc<Self>,
        lease: Lease,
        epoch: u64,
        meta: CheckpointMeta,
        still: Still<'_>,
    ) -> bool {
        let log = {
            let c = lock(&self.core);
            LogAt {
                last_index: c.raft.last_index(),
                term_there: c.raft.entry(meta.applied_index).map(|e| e.term),
            }
        };
        if !still() {
            return false; // no longer leader: the log may rightly lack newer entries
        }
        let lost = lock(&self.core).role.step_up_log_check(&meta, log);
        if !lost.is_empty() {
            self.exec_all(lost);
            return false;
        }
        // The newest checkpoint may be ahead of what this node applied: catch up first.
        loop {
            if !still() {
                return false;
            }
            if lock(&self.core).store.applied_index() >= meta.applied_index {
                break;
            }
            madsim::time::sleep(Duration::from_millis(5)).await;
        }
        let (base, ks) = {
            let c = lock(&self.core);
            (c.store.base.clone(), c.store.keystore.clone())
        };
        let id = meta.id;
        // The data key is the same under every KEK: this leader's committed keystore (at least
        // as new as any checkpoint's) opens the pages.
        let key = match self.keys.data_key(&ks, still, u32::MAX).await {
            Ok(k) => k,
            Err(_) if !still() => return false,
            Err(e) => {
                let abort = lock(&self.core).role.step_up_no_keys(id, &e);
                self.exec_all(abort);
                return false;
            }
        };
        let view = match load_view(&self.ps, meta, &base, &key, still, u32::MAX).await {
            Ok(v) => v,
            Err(_) if !still() => return false,
            Err(e) => {
                // (An empty discard is the cheapest write: it only checks the epoch.)
                let check = PsOp::Discard { lsns: vec![] };
                let fenced = match self.ps.request(epoch, check, still).await {
                    Ok(PsResult::Fenced { epoch: t }) => Some(t),
                    _ => None,
                };
                let holds = still();
                let cmds = lock(&self.core)
                    .role
                    .step_up_load_failed(lease, epoch, id, e, fenced, holds);
                self.exec_all(cmds);
                return false;
            }
        };
        let cmds = {
            let mut c = lock(&self.core);
            let c = &mut *c;
            c.role.step_up_install(&mut c.store, lease, view)
        };
        let installed = !cmds.is_empty();
        self.exec_all(cmds);
        installed
    }

    /// The sweep: free the blocks below the claim's LSN that the base does not reference.
    async fn sweep(
        self: &Arc<Self>,
        lease: Lease,
        epoch: u64,
        below: u64,
        still: Still<'_>,
    ) -> bool {
        let listed = match self.ps.request(epoch, PsOp::List { below }, still).await {
            Ok(PsResult::Blocks(lsns)) => lsns,
            Ok(_) | Err(_) => return false,
        };
        let (orphans, cmds) = {
            let c = lock(&self.core);
            c.role.step_up_orphans(&c.store, listed)
        };
        self.exec_all(cmds);
        if orphans.is_empty() {
            return true;
        }
        let op = PsOp::Discard { lsns: orphans };
        let Ok(reply) = self.ps.request(epoch, op, still).await else {
            return false;
        };
        let swept = lock(&self.core).role.step_up_swept(lease, epoch, reply);
        match swept {
            Ok(()) => true,
            Err(cmds) => {
                self.exec_all(cmds);
                false
            }
        }
    }

    /// Step-up drain (see `storage_role::drain`): passes of `drain_workers` tasks until ingest
    /// is empty. `None` when leadership was lost (the workers release what they hold and stop).
    async fn drain(self: &Arc<Self>, lease: Lease) -> Option<DrainStats> {
        let stats = Arc::new(Mutex::new(DrainStats::default()));
        loop {
            let pass = {
                let mut c = lock(&self.core);
                let c = &mut *c;
                c.role.drain_pass(&mut c.store, lease)
            };
            let tables = match pass {
                Pass::Lost => return None,
                Pass::Finished => return Some(*stats.lock().unwrap_or_else(|e| e.into_inner())),
                Pass::Tables(t) => t,
            };
            stats.lock().unwrap_or_else(|e| e.into_inner()).passes += 1;
            let queue = Arc::new(Mutex::new(tables.into_iter().collect::<VecDeque<_>>()));
            let workers: Vec<_> = (0..self.cfg.drain_workers.max(1))
                .map(|w| {
                    let (n, q, st) = (self.clone(), queue.clone(), stats.clone());
                    madsim::task::spawn(guarded(self.obs.clone(), self.id, async move {
                        n.drain_worker(w, lease, &q, &st).await
                    }))
                })
                .collect();
            for h in workers {
                let _ = h.await;
            }
        }
    }

    /// One drain worker: takes ingest tables off the queue and copies each in batches, with a
    /// yield point between batches (`drain-slow` makes it a loaded node's).
    async fn drain_worker(
        self: &Arc<Self>,
        w: usize,
        lease: Lease,
        queue: &Mutex<VecDeque<String>>,
        stats: &Mutex<DrainStats>,
    ) {
        loop {
            let Some(t) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front() else {
                return;
            };
            let (id, cmds) = {
                let mut c = lock(&self.core);
                let c = &mut *c;
                c.role.drain_take(&mut c.store, lease, w, &t)
            };
            self.exec_all(cmds);
            let Some(id) = id else { return };
            let mut after: Option<String> = None;
            let mut docs = 0;
            loop {
                let pause_ms = if self.failpoints.hit(failpoints::DRAIN_SLOW) {
                    let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                    rng.gen_range(20..=200)
                } else {
                    1
                };
                madsim::time::sleep(Duration::from_millis(pause_ms)).await;
                let (batch, cmds) = {
                    let mut c = lock(&self.core);
                    let c = &mut *c;
                    c.role
                        .drain_batch(&mut c.store, lease, w, (&t, id), after.as_deref())
                };
                self.exec_all(cmds);
                match batch {
                    Batch::Stop => return,
                    Batch::More { after: k, n } => {
                        docs += n;
                        after = Some(k);
                    }
                    Batch::Finished { n } => {
                        docs += n;
                        break;
                    }
                }
            }
            let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
            s.tables += 1;
            s.docs += docs;
        }
    }

    /// One leader checkpoint (see `storage_role::checkpoint`). `force` publishes even when
    /// nothing changed.
    pub(super) async fn checkpoint_once(self: &Arc<Self>, force: bool) {
        let (cmds, start) = {
            let mut c = lock(&self.core);
            let c = &mut *c;
            c.role.begin_checkpoint(&mut c.store, force)
        };
        self.exec_all(cmds);
        let Some(start) = start else { return };
        let (lease, epoch) = (start.lease, start.epoch);
        let still = || self.leading(lease);
        let key = match self.keys.data_key(&start.keystore, &still, 3).await {
            Ok(k) => k,
            Err(e) => {
                let cmds = {
                    let mut c = lock(&self.core);
                    let c = &mut *c;
                    c.role.checkpoint_without_key(&mut c.store, &start, e)
                };
                return self.exec_all(cmds);
            }
        };
        // The planted bug's stream only exists when it is planted (test builds).
        let mut per_checkpoint = planted!(self.cfg.knobs, NonceRestartsPerCheckpoint)
            .then(|| ChaCha8Rng::seed_from_u64(self.cfg.rng_seed));
        let (mut run, sealed) =
            CheckpointRun::new(
                &self.cfg.knobs,
                start,
                &key,
                &mut || match per_checkpoint.as_mut() {
                    Some(rng) => keystore::nonce(rng),
                    None => {
                        keystore::nonce(&mut *self.rng.lock().unwrap_or_else(|e| e.into_inner()))
                    }
                },
            );
        let fingerprint = key.fingerprint();
        for (nonce, message) in sealed {
            let key = fingerprint;
            let sealed = Event::Sealed {
                key,
                nonce,
                message,
            };
            self.obs.event(self.id, sealed);
        }
        let fp = |name: &str| self.failpoints.hit(name);
        let mut cmds = {
            let mut c = lock(&self.core);
            let c = &mut *c;
            run.first(&mut c.role, &mut c.store, &fp)
        };
        loop {
            let Ok(reply) = self.perform(cmds, &self.ps, epoch, &still).await else {
                return; // leadership lost
            };
            if reply.is_none() && run.done() {
                return;
            }
            let input = reply.map_or(Input::Resume, Input::Reply);
            cmds = {
                let mut c = lock(&self.core);
                let c = &mut *c;
                run.step(&mut c.role, &mut c.store, input, &fp)
            };
        }
    }

    fn spawn_flush(self: &Arc<Self>, lease: Lease, epoch: u64) {
        let n = self.clone();
        madsim::task::spawn(guarded(self.obs.clone(), self.id, async move {
            if n.failpoints.hit(failpoints::KEYSTORE_FLUSH_SLOW) {
                let every = n.cfg.checkpoint_interval_ms;
                let delay = n
                    .rng
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .gen_range(every..=4 * every);
                n.note(StorageEvent::KeystoreFlushSlow { delay_ms: delay });
                madsim::time::sleep(Duration::from_millis(delay)).await;
            }
            n.flush_keystore(lease, epoch).await;
            lock(&n.core).role.flush_ended(lease);
        }));
    }

    /// Writes the committed keystore as a keystore page (see `storage_role::keystore_flush`).
    /// Returns whether it was written.
    async fn flush_keystore(self: &Arc<Self>, lease: Lease, epoch: u64) -> bool {
        let still = || self.leading(lease);
        let ks = lock(&self.core).store.keystore.clone();
        // A keystore is persisted only once its keys open (this also warms the KEK cache).
        if let Err(e) = self.keys.data_key(&ks, &still, u32::MAX).await {
            let holds = still();
            let cmds = lock(&self.core).role.keystore_does_not_open(holds, &ks, &e);
            self.exec_all(cmds);
            return false;
        }
        let op = keystore_flush::put(&ks);
        let Ok(reply) = self.ps_keys.request(epoch, op, &still).await else {
            return false;
        };
        let next = lock(&self.core)
            .role
            .keystore_put_reply(lease, epoch, &ks, reply);
        match next {
            FlushReply::Ended(cmds) => {
                self.exec_all(cmds);
                false
            }
            FlushReply::Written(lsn) => {
                self.crash_point(CrashPoint::KeystorePut).await;
                let (written, cmds) = lock(&self.core).role.keystore_written(lease, lsn, &ks);
                self.exec_all(cmds);
                written
            }
        }
    }

    /// Follower pick-up (see `storage_role::pickup`). A failed load leaves the node on its
    /// previous checkpoint.
    pub(super) async fn pick_up(self: &Arc<Self>) {
        if lock(&self.core).store.mode() != Mode::Follower {
            return;
        }
        let latest = match self.ps.request_limited(0, PsOp::Latest, &|| true, 1).await {
            Ok(PsResult::Latest(l)) => l,
            _ => return,
        };
        let target = {
            let c = lock(&self.core);
            c.role.pickup_target(&c.store, latest.as_ref())
        };
        let (meta, kref, base) = match target {
            Target::Wait => return,
            Target::Fail(cmds) => return self.exec_all(cmds),
            Target::Keys { meta, kref, base } => (meta, kref, base),
        };
        let id = meta.id;
        let follower = || lock(&self.core).store.mode() == Mode::Follower;
        let failed = |e: String| {
            let cmds = {
                let c = lock(&self.core);
                c.role.pickup_failed(&c.store, id, e)
            };
            self.exec_all(cmds)
        };
        // Keys first, before any state changes.
        let persisted = match load_keystore(&self.ps, &kref, &follower, 2).await {
            Ok(ks) => ks,
            Err(e) => return failed(e),
        };
        let checked = {
            let c = lock(&self.core);
            c.role.pickup_keys(&c.store, &meta, &persisted)
        };
        if let Err(cmds) = checked {
            return self.exec_all(cmds);
        }
        let key = match self.keys.data_key(&persisted, &follower, 2).await {
            Ok(k) => k,
            Err(e) => return failed(e),
        };
        match load_view(&self.ps, meta, &base, &key, &follower, 2).await {
            Ok(view) => {
                self.crash_point(CrashPoint::PickupLoaded).await;
                self.obs.installing(self.id, id, false);
                let (installed, cmds) = {
                    let mut c = lock(&self.core);
                    let c = &mut *c;
                    c.role.pickup_install(&mut c.store, view)
                };
                if installed {
                    self.obs.installing(self.id, id, true);
                }
                self.exec_all(cmds);
            }
            Err(e) => failed(e),
        }
    }

    pub(super) async fn rotate(
        self: Arc<Self>,
        client: SocketAddr,
        id: u64,
        session: Option<crate::raft::Session>,
        action: AdminAction,
        lease: Lease,
    ) {
        let still = || self.leading(lease);
        let ks = lock(&self.core).store.keystore.clone();
        let prepared = async {
            let kek = self.keys.kek(&ks, &still, u32::MAX).await?;
            match action {
                AdminAction::RotateKek => {
                    let (new_kek, nonce) = {
                        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                        (keystore::fresh_key(&mut *rng), keystore::nonce(&mut *rng))
                    };
                    let aad = keystore::kek_aad(ks.kek_version + 1);
                    let wrapped = self
                        .keys
                        .wrap(ks.cmk_version, aad, new_kek.to_vec(), &still)
                        .await?;
                    ks.rotate_kek(&kek, &new_kek, wrapped, nonce)
                        .map_err(|e| e.to_string())
                }
                AdminAction::RotateCmk => {
                    let v = ks.cmk_version + 1;
                    let aad = keystore::kek_aad(ks.kek_version);
                    let wrapped = self.keys.wrap(v, aad, kek.to_vec(), &still).await?;
                    Ok(keystore::Rotation::Cmk {
                        kek_version: ks.kek_version,
                        cmk_version: v,
                        wrapped_kek: wrapped,
                    })
                }
                AdminAction::StepDown => Err("a step-down is not a rotation".to_string()),
            }
        };
        let rotation: Result<keystore::Rotation, String> = prepared.await;
        let mut c = lock(&self.core);
        let rotation = match c
            .role
            .rotation_prepared(lease, rotation, &format!("{action:?}"))
        {
            Ok(r) => r,
            Err(cmds) => {
                let leader = c.raft.leader();
                drop(c);
                self.exec_all(cmds);
                self.reply(client, id, ClientResult::NotLeader { leader });
                return;
            }
        };
        let summary = rotation.summary();
        match c
            .raft
            .propose(crate::raft::Op::Rotate(rotation), session, sim_clock_us())
        {
            Ok((index, term)) => {
                c.pending.insert(index, Pending { client, id, term });
                drop(c);
                self.note(StorageEvent::Rotation {
                    detail: format!("{summary} proposed at index {index}"),
                });
            }
            Err(ProposeError::NotLeader { leader }) => {
                drop(c);
                self.reply(client, id, ClientResult::NotLeader { leader });
            }
        }
    }
}
