//! Golden-script tests of the storage-role core (`engine::storage_role`). Each script under
//! `tests/golden/storage/` drives replicas' storage roles (a `Store` and a `StorageRole` each)
//! against one in-memory page service (the pure `PageStore`) and KMS (the pure `Kms`), command by
//! command, executing the core's commands the way the replica's tasks do, and holds below each
//! block what happened. `UPDATE_GOLDEN=1 cargo test -p faultline-engine --test storage_golden`
//! rewrites the expected output. The format is the raft scripts' (see `golden_script`).
//!
//!   cluster nodes=N [KNOB..]  fresh nodes 1..=N, followers in term 0 on the provisioned
//!                             keystore, an empty page service; KNOB is a known-bug name
//!   lead N term=T             raft makes N leader of term T; its storage role follows
//!   follow N.. term=T         raft makes N a follower in term T; its storage role follows
//!   step-up N                 runs N's pending step-up: claim, newest checkpoint, sweep,
//!                             keystore page, epoch (the drain is `drain`)
//!   drain N                   runs the drain passes to the end (one worker)
//!   drain-take N TABLE        a drain worker takes the ingest table (read lock, or pin)
//!   drain-batch N TABLE       that worker copies one batch (opening a cursor first)
//!   apply N.. OP              commits one entry on the nodes: `create T`, `put T k=v`,
//!                             `drop T`, `rotate-kek`; a drop refused `Busy` waits in the
//!                             node's backlog, as do the entries behind it
//!   backlog N..               retries the nodes' backlogs
//!   checkpoint N [force] [fail=FAILPOINT] [crash=POINT]
//!                             one leader checkpoint; a failpoint (`page-put`, `addr-pack`) is hit
//!                             once; at the crash point (`checkpoint-put`, `checkpoint-wrapped`,
//!                             `checkpoint-published`) N crashes
//!   flush N                   runs N's pending keystore flush
//!   pickup N                  one follower pick-up
//!   restart N                 a crashed node comes back with its applied entries, from nothing
//!   status N.. | ps | accounting N
//!                             the storage role and store | the page service's blocks and
//!                             newest checkpoint | bytes_total against the service's live blocks
//!
//! Output: `nN: <kind> <detail>` for the core's observations, `nN → ps ...`/`nN ← ps ...` for
//! its page-service requests and their replies, `nN: ABORT ...` when the core aborts the node.

#[macro_use]
mod golden_script;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use engine::handles::HandleId;
use engine::keystore::{self, DataKey, Keystore};
use engine::kms::Kms;
use engine::knobs::{Knobs, KnownBug};
use engine::layered::{CheckpointMeta, StableView, Store};
use engine::observe::{CrashPoint, Event};
use engine::page_store::{PageStore, PsOp, PsRequest, PsResult};
use engine::pages::{self, Docs};
use engine::raft::{Entry, Op, Role, Term};
use engine::storage_role::checkpoint::{CheckpointRun, Input};
use engine::storage_role::drain::{Batch, Pass};
use engine::storage_role::keystore_flush::{self, FlushReply};
use engine::storage_role::pickup::Target;
use engine::storage_role::step_up::{Claimed, DrainStats, LogAt};
use engine::storage_role::{rotation, Command, Lease, StorageRole};
use golden_script::{Cmd, Script};

use engine::raft::NodeId;

struct Node {
    store: Store,
    role: StorageRole,
    raft: (Role, Term),
    /// Committed entries not applied yet (behind a drop that waits).
    backlog: VecDeque<Entry>,
    /// Every entry applied: a restart replays them.
    applied: Vec<Entry>,
    /// The step-up and keystore flush the core asked for, not run yet.
    step_up: Option<Lease>,
    flush: Option<(Lease, u64)>,
    /// The epoch the running step-up claimed.
    claimed: Option<(Lease, u64)>,
    /// Drain workers' tables: the handle and the last key copied.
    workers: BTreeMap<String, (Lease, HandleId, Option<String>)>,
    drain: DrainStats,
    req_id: u64,
    /// A restart is a new incarnation: a new page-service session.
    incarnation: u64,
    down: bool,
}

#[derive(Default)]
struct World {
    nodes: BTreeMap<NodeId, Node>,
    ps: Option<PageStore>,
    kms: Option<Kms>,
    genesis: Keystore,
    knobs: Knobs,
    index: u64,
    nonces: u64,
    out: Vec<String>,
}

fn short_op(op: &PsOp) -> String {
    match op {
        PsOp::Put {
            table,
            page_id,
            base_lsn,
            bytes,
        } => format!(
            "Put {table} page {page_id} base {base_lsn} ({} bytes)",
            bytes.len()
        ),
        PsOp::Publish { id, .. } => format!("Publish checkpoint {id}"),
        PsOp::Get { lsn } => format!("Get {lsn}"),
        other => format!("{other:?}"),
    }
}

fn short_reply(r: &PsResult) -> String {
    match r {
        PsResult::Claimed {
            epoch,
            next_lsn,
            latest,
        } => {
            let latest = latest.as_ref().map_or("-".into(), |p| p.id.to_string());
            format!("Claimed epoch {epoch} next_lsn {next_lsn} newest checkpoint {latest}")
        }
        PsResult::Block(b) => format!("Block ({} bytes)", b.len()),
        PsResult::Latest(p) => format!("Latest {:?}", p.as_ref().map(|p| p.id)),
        other => format!("{other:?}"),
    }
}

impl World {
    fn node(&mut self, n: NodeId) -> Result<&mut Node, String> {
        let node = self.nodes.get_mut(&n).ok_or(format!("no node {n}"))?;
        if node.down {
            return Err(format!("n{n} is down"));
        }
        Ok(node)
    }

    fn say(&mut self, line: String) {
        self.out.push(line);
    }

    fn said(&mut self, line: String) -> Result<(), String> {
        self.say(line);
        Ok(())
    }

    /// Prints (and executes what needs no reply of) the core's commands. Returns false when
    /// the node aborted.
    fn show(&mut self, n: NodeId, cmds: Vec<Command>) -> bool {
        for cmd in cmds {
            match cmd {
                Command::Note(Event::Storage(e)) => self.say(format!("n{n}: {} {e}", e.kind())),
                Command::Note(Event::Keystore {
                    ts,
                    kek_version,
                    cmk_version,
                    why,
                    ..
                }) => self.say(format!(
                    "n{n}: keystore kek v{kek_version} cmk v{cmk_version} ts {ts}: {why}"
                )),
                Command::Note(other) => self.say(format!("n{n}: {other:?}")),
                Command::Abort(why) => {
                    self.say(format!("n{n}: ABORT {why}"));
                    self.nodes.get_mut(&n).unwrap().down = true;
                    return false;
                }
                Command::StepUp(l) => {
                    self.say(format!(
                        "n{n}: start step-up (term {}, gen {})",
                        l.term, l.gen
                    ));
                    self.nodes.get_mut(&n).unwrap().step_up = Some(l);
                }
                Command::FlushKeystore { lease, epoch } => {
                    self.say(format!("n{n}: start keystore flush (epoch {epoch})"));
                    self.nodes.get_mut(&n).unwrap().flush = Some((lease, epoch));
                }
                Command::Reclaim(lease, why) => {
                    self.say(format!("n{n}: fenced: {why}"));
                    let node = self.nodes.get_mut(&n).unwrap();
                    let (role, term) = node.raft;
                    let again = node.role.reclaim(&mut node.store, lease, role, term, why);
                    if !again.is_empty() {
                        node.claimed = None;
                    }
                    self.show(n, again);
                }
                Command::Discard(lsns) => {
                    let epoch = self.epoch_of(n);
                    self.request(n, epoch, PsOp::Discard { lsns });
                }
                Command::Crash(p) => self.say(format!("n{n}: crash point {p:?}")),
                Command::Request(op) => self.say(format!("n{n}: unexpected request {op:?}")),
            }
        }
        true
    }

    fn epoch_of(&self, n: NodeId) -> u64 {
        let node = &self.nodes[&n];
        node.claimed.map_or(node.role.lead_epoch, |(_, e)| e)
    }

    /// One page-service request of node `n`, printed with its reply.
    fn request(&mut self, n: NodeId, epoch: u64, op: PsOp) -> PsResult {
        let node = self.nodes.get_mut(&n).unwrap();
        node.req_id += 1;
        let req = PsRequest {
            writer: n,
            session: (n as u64) << 32 | node.incarnation,
            req_id: node.req_id,
            epoch,
            op: op.clone(),
        };
        let quiet = matches!(op, PsOp::Get { .. } | PsOp::Latest);
        let (reply, _) = self.ps.as_mut().unwrap().handle(req);
        if !quiet {
            self.say(format!("n{n} → ps {}", short_op(&op)));
            self.say(format!("n{n} ← ps {}", short_reply(&reply)));
        }
        reply
    }

    fn data_key(&self, ks: &Keystore) -> DataKey {
        let kms = self.kms.as_ref().unwrap();
        let kek = kms
            .unwrap_key(
                ks.cmk_version,
                &keystore::kek_aad(ks.kek_version),
                &ks.wrapped_kek,
            )
            .expect("the KMS opens the KEK");
        let kek = keystore::kek_from(kek, ks.kek_version).unwrap();
        ks.data_key(&kek).unwrap()
    }

    /// Loads a checkpoint's pages from the page service.
    fn load_view(&mut self, meta: CheckpointMeta, key: &DataKey) -> Result<StableView, String> {
        let ps = self.ps.as_ref().unwrap();
        let mut pages = BTreeMap::new();
        for (table, root) in &meta.tables {
            let mut loaded = BTreeMap::new();
            for (p, chain) in &root.pages {
                let mut blocks = vec![];
                for c in chain {
                    let b = ps
                        .block(c.lsn)
                        .ok_or(format!("block {} not found", c.lsn))?;
                    blocks.push((*c, b.to_vec()));
                }
                let docs: Docs =
                    keystore::rebuild(table, &blocks, key).map_err(|e| e.to_string())?;
                loaded.insert(*p, Arc::new(docs));
            }
            pages.insert(table.clone(), loaded);
        }
        Ok(StableView {
            meta: Arc::new(meta),
            pages,
        })
    }

    fn cluster(&mut self, mut cmd: Cmd) -> Result<(), String> {
        let n: NodeId = cmd.num("nodes", 1)?;
        let mut bugs = vec![];
        for f in std::mem::take(&mut cmd.flags) {
            bugs.push(f.parse::<KnownBug>()?);
        }
        let kms = Kms::new(7);
        let (mut rng, mut krng) = (ChaCha8Rng::seed_from_u64(9), ChaCha8Rng::seed_from_u64(10));
        let genesis = Keystore::genesis(&mut rng, |kek, aad| kms.wrap(1, aad, kek, &mut krng));
        *self = World {
            ps: Some(PageStore::recover(&[]).0),
            kms: Some(kms),
            knobs: Knobs::new(bugs),
            genesis,
            ..World::default()
        };
        for id in 1..=n {
            let node = self.fresh_node();
            self.nodes.insert(id, node);
        }
        Ok(())
    }

    fn fresh_node(&self) -> Node {
        let mut store = Store::default();
        store.keystore = self.genesis.clone();
        Node {
            store,
            role: StorageRole::new(self.knobs.clone()),
            raft: (Role::Follower, 0),
            backlog: VecDeque::new(),
            applied: vec![],
            step_up: None,
            flush: None,
            claimed: None,
            workers: BTreeMap::new(),
            drain: DrainStats::default(),
            req_id: 0,
            incarnation: 0,
            down: false,
        }
    }

    fn set_role(&mut self, n: NodeId, role: Role, term: Term) -> Result<(), String> {
        let node = self.node(n)?;
        node.raft = (role, term);
        let cmds = node.role.follow_role(&mut node.store, role, term);
        if role != Role::Leader {
            node.claimed = None;
        }
        self.show(n, cmds);
        Ok(())
    }

    fn step_up(&mut self, n: NodeId) -> Result<(), String> {
        let node = self.node(n)?;
        let lease = node.step_up.take().ok_or("no step-up pending")?;
        let (claiming, fence) = StorageRole::step_up_claiming(lease);
        self.show(n, vec![claiming]);
        let reply = self.request(n, 0, fence);
        let (epoch, next_lsn) = match &reply {
            PsResult::Claimed {
                epoch, next_lsn, ..
            } => (*epoch, *next_lsn),
            _ => (0, 0),
        };
        let node = self.node(n)?;
        match node.role.step_up_claimed(&node.store, lease, reply) {
            Claimed::Stop(cmds) => {
                self.show(n, cmds);
                return Ok(());
            }
            Claimed::Install(meta) => {
                if !self.step_up_onto(n, lease, meta)? {
                    return Ok(());
                }
            }
            Claimed::Sweep => {}
        }
        let Some(listed) = (match self.request(n, epoch, PsOp::List { below: next_lsn }) {
            PsResult::Blocks(l) => Some(l),
            _ => None,
        }) else {
            return Ok(());
        };
        let node = self.node(n)?;
        let (orphans, cmds) = node.role.step_up_orphans(&node.store, listed);
        self.show(n, cmds);
        if !orphans.is_empty() {
            let reply = self.request(n, epoch, PsOp::Discard { lsns: orphans });
            if let Err(cmds) = self.node(n)?.role.step_up_swept(lease, epoch, reply) {
                self.show(n, cmds);
                return Ok(());
            }
        }
        let node = self.node(n)?;
        match node.role.step_up_keystore_page(&node.store, lease) {
            None => return self.said(format!("n{n}: step-up ends: its generation is gone")),
            Some(true) => {
                if !self.flush_keystore(n, lease, epoch)? {
                    return Ok(());
                }
            }
            Some(false) => {}
        }
        let node = self.node(n)?;
        let (role, term) = node.raft;
        if node.role.step_up_epoch(lease, role, term, epoch) {
            node.claimed = Some((lease, epoch));
            node.drain = DrainStats::default();
            self.say(format!(
                "n{n}: epoch {epoch} is this leadership's; drain next"
            ));
        }
        Ok(())
    }

    fn step_up_onto(
        &mut self,
        n: NodeId,
        lease: Lease,
        meta: CheckpointMeta,
    ) -> Result<bool, String> {
        let node = self.node(n)?;
        let at = meta.applied_index as usize;
        let log = LogAt {
            last_index: node.applied.len() as u64,
            term_there: at
                .checked_sub(1)
                .and_then(|i| node.applied.get(i))
                .map(|e| e.term),
        };
        let lost = node.role.step_up_log_check(&meta, log);
        if !lost.is_empty() {
            self.show(n, lost);
            return Ok(false);
        }
        if node.store.applied_index() < meta.applied_index {
            return Err("the checkpoint is ahead of what this node applied".into());
        }
        let key = self.data_key(&self.nodes[&n].store.keystore.clone());
        let view = self.load_view(meta, &key)?;
        let node = self.node(n)?;
        let cmds = node.role.step_up_install(&mut node.store, lease, view);
        let installed = !cmds.is_empty();
        self.show(n, cmds);
        Ok(installed)
    }

    fn flush_keystore(&mut self, n: NodeId, lease: Lease, epoch: u64) -> Result<bool, String> {
        let ks = self.node(n)?.store.keystore.clone();
        let reply = self.request(n, epoch, keystore_flush::put(&ks));
        let node = self.node(n)?;
        match node.role.keystore_put_reply(lease, epoch, &ks, reply) {
            FlushReply::Ended(cmds) => {
                self.show(n, cmds);
                Ok(false)
            }
            FlushReply::Written(lsn) => {
                self.say(format!("n{n}: crash point {:?}", CrashPoint::KeystorePut));
                let (written, cmds) = self.node(n)?.role.keystore_written(lease, lsn, &ks);
                self.show(n, cmds);
                Ok(written)
            }
        }
    }

    fn flush(&mut self, n: NodeId) -> Result<(), String> {
        let (lease, epoch) = self
            .node(n)?
            .flush
            .take()
            .ok_or("no keystore flush pending")?;
        self.flush_keystore(n, lease, epoch)?;
        self.node(n)?.role.flush_ended(lease);
        Ok(())
    }

    fn drain(&mut self, n: NodeId) -> Result<(), String> {
        let (lease, epoch) = self.node(n)?.claimed.ok_or("no step-up claimed")?;
        // Workers already on a table finish it first.
        let held: Vec<String> = self.node(n)?.workers.keys().cloned().collect();
        for t in held {
            while self.node(n)?.workers.contains_key(&t) {
                if !self.drain_batch(n, &t)? {
                    return Ok(());
                }
            }
        }
        loop {
            let node = self.node(n)?;
            let tables = match node.role.drain_pass(&mut node.store, lease) {
                Pass::Lost => return self.said(format!("n{n}: drain: lease lost, stops")),
                Pass::Finished => break,
                Pass::Tables(t) => t,
            };
            node.drain.passes += 1;
            for t in tables {
                if !self.drain_take(n, &t)? {
                    return Ok(());
                }
                while self.node(n)?.workers.contains_key(&t) {
                    if !self.drain_batch(n, &t)? {
                        return Ok(());
                    }
                }
            }
        }
        let node = self.node(n)?;
        let done = node
            .role
            .step_up_done(&node.store, lease, epoch, node.drain);
        node.claimed = None;
        self.show(n, vec![done]);
        Ok(())
    }

    fn drain_take(&mut self, n: NodeId, t: &str) -> Result<bool, String> {
        let node = self.node(n)?;
        let (lease, _) = node.claimed.ok_or("no step-up claimed")?;
        let (id, cmds) = node.role.drain_take(&mut node.store, lease, 0, t);
        if let Some(id) = id {
            node.workers.insert(t.to_string(), (lease, id, None));
            let how = match self.knobs.on(KnownBug::DropDrainRace) {
                true => "pins",
                false => "read-locks",
            };
            self.say(format!("n{n}: drain worker {how} {t}"));
        }
        Ok(self.show(n, cmds) && id.is_some())
    }

    fn drain_batch(&mut self, n: NodeId, t: &str) -> Result<bool, String> {
        let node = self.node(n)?;
        let (lease, id, after) = node
            .workers
            .get(t)
            .cloned()
            .ok_or("no worker on that table")?;
        let (batch, cmds) =
            node.role
                .drain_batch(&mut node.store, lease, 0, (t, id), after.as_deref());
        let shown = format!("{batch:?}");
        let go_on = match batch {
            Batch::Stop => {
                node.workers.remove(t);
                false
            }
            Batch::More { after, n: docs } => {
                node.drain.docs += docs;
                node.workers.insert(t.to_string(), (lease, id, Some(after)));
                true
            }
            Batch::Finished { n: docs } => {
                node.drain.docs += docs;
                node.drain.tables += 1;
                node.workers.remove(t);
                true
            }
        };
        self.say(format!("n{n}: drain batch on {t}: {shown}"));
        Ok(self.show(n, cmds) && go_on)
    }

    /// `apply N.. OP [TABLE] [k=v]` (read from the line: the order of words matters).
    fn apply(&mut self, line: &str) -> Result<(), String> {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        let nodes: Vec<NodeId> = words.iter().map_while(|w| w.parse().ok()).collect();
        let mut rest = words[nodes.len()..].iter();
        let what = rest.next().ok_or("apply what?")?;
        let mut table = || rest.next().map(|t| t.to_string()).ok_or("which table?");
        let op = match *what {
            "create" => Op::CreateCollection { name: table()? },
            "drop" => Op::DropCollection { name: table()? },
            "put" => {
                let t = table()?;
                let kv = table()?;
                let (k, v) = kv.split_once('=').ok_or("put TABLE k=v")?;
                Op::Put {
                    collection: t,
                    key: k.to_string(),
                    value: v.as_bytes().to_vec(),
                }
            }
            "rotate-kek" => Op::Rotate(self.prepare_rotation(nodes[0])?),
            other => return Err(format!("unknown op {other}")),
        };
        self.index += 1;
        let e = Entry {
            term: self.nodes[&nodes[0]].raft.1,
            index: self.index,
            ts: self.index * 10,
            op,
            session: None,
        };
        for &n in &nodes {
            self.node(n)?.backlog.push_back(e.clone());
            self.backlog(n)?;
        }
        Ok(())
    }

    fn prepare_rotation(&mut self, n: NodeId) -> Result<keystore::Rotation, String> {
        let ks = self.node(n)?.store.keystore.clone();
        let kms = self.kms.as_ref().unwrap();
        let kek = kms.unwrap_key(
            ks.cmk_version,
            &keystore::kek_aad(ks.kek_version),
            &ks.wrapped_kek,
        )?;
        let kek = keystore::kek_from(kek, ks.kek_version).map_err(|e| e.to_string())?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.index);
        let new_kek = keystore::fresh_key(&mut rng);
        let wrapped = kms.wrap(
            ks.cmk_version,
            &keystore::kek_aad(ks.kek_version + 1),
            &new_kek,
            &mut rng,
        );
        ks.rotate_kek(&kek, &new_kek, wrapped, keystore::nonce(&mut rng))
            .map_err(|e| e.to_string())
    }

    fn backlog(&mut self, n: NodeId) -> Result<(), String> {
        loop {
            let node = self.node(n)?;
            let Some(e) = node.backlog.front().cloned() else {
                return Ok(());
            };
            if let Op::DropCollection { name } = &e.op {
                if let Err(cmds) = node.role.admit_drop(&mut node.store, name, e.index) {
                    let waiting = node.backlog.len();
                    self.show(n, cmds);
                    return self.said(format!("n{n}: {waiting} entries wait"));
                }
            }
            node.backlog.pop_front();
            node.store.apply(&e);
            node.applied.push(e.clone());
            let what = match &e.op {
                Op::Rotate(r) => {
                    let follower = node.raft.0 != Role::Leader;
                    let applied = rotation::applied(&node.store.keystore, r, &e, follower);
                    self.show(n, vec![applied]);
                    continue;
                }
                Op::DropCollection { name } => format!("drop {name}"),
                _ => continue,
            };
            self.say(format!("n{n}: applied {}: {what}", e.index));
        }
    }

    fn checkpoint(&mut self, n: NodeId, cmd: &mut Cmd) -> Result<(), String> {
        let force = cmd.flag("force");
        let armed = RefCell::new(cmd.args.remove("fail").into_iter().collect::<BTreeSet<_>>());
        let crash_at = cmd.args.remove("crash");
        let node = self.node(n)?;
        let (cmds, start) = node.role.begin_checkpoint(&mut node.store, force);
        self.show(n, cmds);
        let Some(start) = start else {
            return self.said(format!("n{n}: no checkpoint"));
        };
        let epoch = start.epoch;
        let key = self.data_key(&start.keystore);
        let nonces = &mut self.nonces;
        let knobs = self.knobs.clone();
        let (mut run, _sealed) = CheckpointRun::new(&knobs, start, &key, &mut || {
            *nonces += 1;
            let mut n = [0; 12];
            n[..8].copy_from_slice(&nonces.to_le_bytes());
            n
        });
        let fp = |name: &str| armed.borrow_mut().remove(name);
        let node = self.node(n)?;
        let mut cmds = run.first(&mut node.role, &mut node.store, &fp);
        loop {
            let mut reply = None;
            for c in cmds {
                match c {
                    Command::Request(op) => reply = Some(self.request(n, epoch, op)),
                    Command::Crash(p) => {
                        self.say(format!("n{n}: crash point {p:?}"));
                        if crash_at.as_deref() == Some(kebab(p).as_str()) {
                            self.say(format!("n{n}: crashes"));
                            self.nodes.get_mut(&n).unwrap().down = true;
                            return Ok(());
                        }
                    }
                    other => {
                        if !self.show(n, vec![other]) {
                            return Ok(());
                        }
                    }
                }
            }
            if reply.is_none() && run.done() {
                return Ok(());
            }
            let node = self.node(n)?;
            let input = reply.map_or(Input::Resume, Input::Reply);
            cmds = run.step(&mut node.role, &mut node.store, input, &fp);
        }
    }

    fn pickup(&mut self, n: NodeId) -> Result<(), String> {
        let latest = self.ps.as_ref().unwrap().latest();
        let node = self.node(n)?;
        let (meta, kref, _base) = match node.role.pickup_target(&node.store, latest.as_ref()) {
            Target::Wait => return self.said(format!("n{n}: nothing to pick up")),
            Target::Fail(cmds) => {
                self.show(n, cmds);
                return Ok(());
            }
            Target::Keys { meta, kref, base } => (meta, kref, base),
        };
        let bytes = self
            .ps
            .as_ref()
            .unwrap()
            .block(kref.cookie.lsn)
            .ok_or("no keystore page")?;
        pages::verify(&kref.cookie, &bytes).map_err(|e| e.to_string())?;
        let persisted = Keystore::decode(&bytes).map_err(|e| e.to_string())?;
        self.say(format!(
            "n{n}: checkpoint {}'s keystore page: {}",
            meta.id,
            persisted.summary()
        ));
        let node = self.node(n)?;
        if let Err(cmds) = node.role.pickup_keys(&node.store, &meta, &persisted) {
            self.show(n, cmds);
            return Ok(());
        }
        let key = self.data_key(&persisted);
        let view = self.load_view(meta, &key)?;
        let node = self.node(n)?;
        let (_, cmds) = node.role.pickup_install(&mut node.store, view);
        self.show(n, cmds);
        Ok(())
    }

    fn restart(&mut self, n: NodeId) -> Result<(), String> {
        let old = self.nodes.remove(&n).ok_or("no such node")?;
        let mut node = self.fresh_node();
        for e in &old.applied {
            node.store.apply(e);
        }
        node.applied = old.applied;
        node.incarnation = old.incarnation + 1;
        self.nodes.insert(n, node);
        self.say(format!("n{n}: restarted from its log alone"));
        Ok(())
    }

    fn status(&mut self, n: NodeId) -> Result<(), String> {
        let node = self.nodes.get(&n).ok_or("no such node")?;
        let (s, r) = (&node.store, &node.role);
        let ks_page = r
            .ks_page
            .map_or("-".into(), |k| format!("lsn {} ts {}", k.cookie.lsn, k.ts));
        let base = &s.base.meta;
        let line = format!(
            "n{n}: {}{:?} gen {} lead term {} epoch {} | base checkpoint {} (applied {}, keystore page {}) | \
             keystore {} | keystore page {ks_page} | dirty {} ingest {} | bytes_total {:?}",
            if node.down { "DOWN " } else { "" },
            s.mode(),
            r.generation,
            r.lead_term,
            r.lead_epoch,
            base.id,
            base.applied_index,
            base.keystore.map_or("-".into(), |k| format!("lsn {}", k.cookie.lsn)),
            s.keystore.summary(),
            s.dirty.len(),
            s.ingest.len(),
            s.bytes_total,
        );
        self.say(line);
        Ok(())
    }

    fn ps_status(&mut self) {
        let ps = self.ps.as_ref().unwrap();
        let latest = ps
            .latest()
            .map_or("-".into(), |p| format!("{} at lsn {}", p.id, p.lsn));
        let mut lines = vec![format!(
            "ps: epoch {} newest checkpoint {latest}",
            ps.epoch()
        )];
        for (lsn, b) in ps.blocks() {
            lines.push(format!(
                "ps: block {lsn} {} page {} base {} ({} bytes)",
                b.table, b.page_id, b.base_lsn, b.size
            ));
        }
        self.out.extend(lines);
    }

    /// bytes_total per table against the page service's live blocks of that table.
    fn accounting(&mut self, n: NodeId) -> Result<(), String> {
        let node = self.nodes.get(&n).ok_or("no such node")?;
        let meta = &node.store.base.meta;
        let mut lines = vec![];
        let mut tables: BTreeSet<&String> = meta.tables.keys().collect();
        tables.extend(node.store.bytes_total.keys());
        for t in tables {
            let bt = node.store.bytes_total.get(t).copied().unwrap_or(0);
            let live = meta.tables.get(t).map_or(0, |r| r.live_bytes());
            let verdict = if bt == live { "agree" } else { "DRIFT" };
            lines.push(format!(
                "n{n}: {t}: bytes_total {bt}, blocks of checkpoint {} {live}: {verdict}",
                meta.id
            ));
        }
        let referenced: BTreeSet<u64> = meta
            .tables
            .values()
            .flat_map(|r| r.cookies().map(|c| c.lsn))
            .chain(meta.keystore.map(|k| k.cookie.lsn))
            .collect();
        let orphans: Vec<u64> = (self.ps.as_ref().unwrap().blocks().keys())
            .filter(|l| !referenced.contains(l))
            .copied()
            .collect();
        lines.push(format!(
            "n{n}: blocks no checkpoint of its references: {orphans:?}"
        ));
        self.out.extend(lines);
        Ok(())
    }
}

/// `CheckpointPut` -> `checkpoint-put`.
fn kebab(p: CrashPoint) -> String {
    let mut s = String::new();
    for (i, ch) in format!("{p:?}").chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            s.push('-');
        }
        s.push(ch.to_ascii_lowercase());
    }
    s
}

impl Script for World {
    fn out(&mut self) -> &mut Vec<String> {
        &mut self.out
    }

    fn run(&mut self, line: &str) -> Result<(), String> {
        let mut cmd = Cmd::parse(line);
        if cmd.name != "cluster" && self.nodes.is_empty() {
            return Err("no cluster yet".into());
        }
        let nodes = cmd.nodes.clone();
        let one = || nodes.first().copied().ok_or("which node?");
        match cmd.name.as_str() {
            "cluster" => self.cluster(std::mem::replace(&mut cmd, Cmd::parse("cluster")))?,
            "lead" => {
                let term = cmd.num("term", 1)?;
                self.set_role(one()?, Role::Leader, term)?
            }
            "follow" => {
                let term = cmd.num("term", 1)?;
                for &n in &nodes {
                    self.set_role(n, Role::Follower, term)?;
                }
            }
            "step-up" => self.step_up(one()?)?,
            "drain" => self.drain(one()?)?,
            "drain-take" | "drain-batch" => {
                let t = cmd.flags.pop_first().ok_or("which table?")?;
                if cmd.name == "drain-take" {
                    self.drain_take(one()?, &t)?;
                } else {
                    self.drain_batch(one()?, &t)?;
                }
            }
            "apply" => return self.apply(line),
            "backlog" => {
                for &n in &nodes {
                    self.backlog(n)?;
                }
            }
            "checkpoint" => self.checkpoint(one()?, &mut cmd)?,
            "flush" => self.flush(one()?)?,
            "pickup" => self.pickup(one()?)?,
            "restart" => self.restart(one()?)?,
            "status" => {
                for &n in &nodes {
                    self.status(n)?;
                }
            }
            "ps" => self.ps_status(),
            "accounting" => self.accounting(one()?)?,
            other => return Err(format!("unknown command {other}")),
        }
        cmd.done()
    }
}

golden_scripts!(
    World,
    "storage",
    incident000,
    incident001,
    incident002,
    step_down_mid_step_up,
    crash_mid_checkpoint,
    fencing
);
