//! Golden-script tests of the pure raft core (`engine::raft`). Each script under
//! `tests/golden/raft/` drives an in-memory cluster of `Raft` cores command by command, and holds
//! below each block of commands what they did. The test reruns the commands and diffs the output;
//! `UPDATE_GOLDEN=1 cargo test -p faultline-engine --test raft_golden` rewrites it instead.
//!
//! # Format
//!
//! Lines starting with `#` are comments; blank lines separate blocks. A block is one or more
//! command lines, a `---` line, then the output up to the next blank line (`ok` if the commands
//! printed nothing). A command written `(cmd)` runs without printing. A new block may leave out
//! `---` and the output: the update writes them. Node ids are numbers; `[N..]` means any number
//! of them, none meaning every node.
//!
//!   cluster nodes=N [election=T] [heartbeat=H] [max_append=M] [volatile_term]
//!                          a fresh cluster of nodes 1..=N, all up. Every election timeout is
//!                          exactly T ticks (default 10; after a step-down, 2T), a leader's
//!                          heartbeat every H ticks (default 3), at most M entries per append
//!                          (default 64). `volatile_term` sets RaftConfig::volatile_term, the
//!                          faulty path of incident 003.
//!   tick [N..] [count=K]   K clock ticks (default 1) on each node (default: every node up)
//!   campaign N..           ticks node N until its election timeout fires
//!   heartbeat [N..]        ticks leader N until it sends its heartbeat (default: every leader)
//!   put N key=value        proposes a put on node N
//!   step-down N..          an admin step-down of leader N
//!   deliver [N..] [from=M] delivers, in the order sent, the messages in flight to N.. (from M);
//!                          what they cause is left in flight
//!   drop [N..] [from=M]    loses the messages in flight to N.. (from M)
//!   stabilize [heartbeat]  delivers until nothing is in flight (after a heartbeat from leaders)
//!   partition N..          cuts every link between the nodes listed and the others: a message
//!                          is lost if its link is cut when it would arrive
//!   heal                   restores every link
//!   stop N.. | start N.. | restart N..
//!                          a crash loses the node's memory and the messages in flight to it; a
//!                          start restores the node from its store (hard state and log) and
//!                          rebuilds its state machine from the entries committed there
//!   status [N..] | log [N..] | kv [N..]
//!                          role, term, vote and indexes (in memory | in the store), the stored
//!                          log, the state machine
//!
//! Output lines name the node and its term after the input (`n1@2`); entries are `index@term`.
//! After each input, the node's `Ready` is handled as the replica does: its hard state and log
//! operations go to the node's store first (`persist`, `log append`, `log truncate`), then its
//! messages go in flight (`n1@2 → n2 Append ...`), then committed entries are applied
//! (`apply`). Its events (`becomes leader`, `votes for`, `commits through`, `truncates`) print
//! before all that. Lines starting with `!!` are safety violations the runner notices by itself:
//! two leaders of one term (across restarts too), a cut of an entry some node applied, and two
//! different entries applied at one index.

#[macro_use]
mod golden_script;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};

use engine::invariant::classify_panic;
use engine::raft::{
    Entry, HardState, Index, LogOp, Message, NodeId, Op, ProposeError, Raft, RaftConfig, RaftEvent,
    Role, Term,
};
use golden_script::{Cmd, Script};

struct Node {
    raft: Option<Raft>, // None while the node is down
    hard: HardState,    // the store: what a start comes back with
    log: Vec<Entry>,
    kv: BTreeMap<String, String>, // the state machine
}

#[derive(Default)]
struct Cluster {
    election: u32,
    heartbeat: u32,
    max_append: usize,
    volatile_term: bool,
    nodes: BTreeMap<NodeId, Node>,
    in_flight: VecDeque<(NodeId, NodeId, Message)>,
    cut: BTreeSet<(NodeId, NodeId)>,
    /// For the `!!` lines: the first leader of each term, the first entry applied at each index.
    leaders: BTreeMap<Term, NodeId>,
    applied: BTreeMap<Index, (Entry, BTreeSet<NodeId>)>,
    out: Vec<String>,
}

fn names<'a>(nodes: impl IntoIterator<Item = &'a NodeId>) -> String {
    let names: Vec<_> = nodes.into_iter().map(|n| format!("n{n}")).collect();
    names.join(" ")
}

fn node_or_dash(n: Option<NodeId>) -> String {
    n.map_or("-".into(), |n| format!("n{n}"))
}

fn pos(e: &Entry) -> String {
    format!("{}@{}", e.index, e.term)
}

fn entry(e: &Entry) -> String {
    match &e.op {
        Op::Noop => format!("{} noop", pos(e)),
        Op::Put { key, value, .. } => {
            format!("{} put {key}={}", pos(e), String::from_utf8_lossy(value))
        }
        other => format!("{} {other:?}", pos(e)),
    }
}

fn hard(h: &HardState) -> String {
    format!(
        "term={} vote={} commit={}",
        h.term,
        node_or_dash(h.voted_for),
        h.commit
    )
}

fn message(from: NodeId, to: NodeId, m: &Message) -> String {
    let what = match m {
        Message::RequestVote {
            last_index: i,
            last_term: t,
            ..
        } => format!("RequestVote last={i}@{t}"),
        Message::Vote { granted: true, .. } => "Vote granted".into(),
        Message::Vote { granted: false, .. } => "Vote refused".into(),
        Message::Append {
            prev_index: i,
            prev_term: t,
            entries,
            commit,
            ..
        } => {
            let ids: Vec<_> = entries.iter().map(pos).collect();
            format!("Append prev={i}@{t} [{}] commit={commit}", ids.join(" "))
        }
        Message::AppendResp {
            success: true,
            match_index: i,
            ..
        } => format!("AppendResp ok match={i}"),
        Message::AppendResp {
            success: false,
            match_index: i,
            ..
        } => format!("AppendResp reject hint={i}"),
    };
    format!("n{from}@{} → n{to} {what}", m.term())
}

/// `me` is the node and its term after the input (every event of one input is in that term).
fn event(me: &str, ev: &RaftEvent) -> String {
    match ev {
        RaftEvent::BecameCandidate { .. } => format!("{me} becomes candidate"),
        RaftEvent::BecameLeader {
            last_index: i,
            last_term: t,
            ..
        } => {
            format!("{me} becomes leader (log ends at {i}@{t})")
        }
        RaftEvent::BecameFollower { leader: None, .. } => format!("{me} becomes follower"),
        RaftEvent::BecameFollower {
            leader: Some(l), ..
        } => format!("{me} becomes follower of n{l}"),
        RaftEvent::VoteGranted {
            candidate: c,
            candidate_last_index: ci,
            candidate_last_term: ct,
            own_last_index: oi,
            own_last_term: ot,
            ..
        } => {
            format!("{me} votes for n{c} (its last {ci}@{ct}, own last {oi}@{ot})")
        }
        RaftEvent::Committed {
            index, entry_term, ..
        } => {
            format!("{me} commits through {index} (entry of term {entry_term})")
        }
        RaftEvent::Truncated {
            from,
            removed_last,
            last_applied,
            commit,
            removed,
        } => {
            let cut: Vec<_> = (*from..)
                .zip(removed)
                .map(|(i, (t, _))| format!("{i}@{t}"))
                .collect();
            let cut = cut.join(" ");
            format!("{me} truncates {from}..={removed_last} [{cut}] (applied {last_applied}, commit {commit})")
        }
    }
}

impl Cluster {
    fn up(&mut self, id: NodeId) -> Result<&mut Raft, String> {
        let node = self.nodes.get_mut(&id).ok_or(format!("no node {id}"))?;
        node.raft.as_mut().ok_or(format!("n{id} is down"))
    }

    fn is(&self, id: NodeId, role: Role) -> bool {
        self.nodes[&id]
            .raft
            .as_ref()
            .is_some_and(|r| r.role() == role)
    }

    fn start(&mut self, id: NodeId) {
        let mut cfg = RaftConfig::new(id, self.nodes.keys().copied().collect(), id as u64);
        (cfg.election_ticks_min, cfg.election_ticks_max) = (self.election, self.election);
        cfg.heartbeat_ticks = self.heartbeat;
        cfg.max_append_entries = self.max_append;
        cfg.volatile_term = self.volatile_term;
        let node = self.nodes.get_mut(&id).unwrap();
        node.kv.clear();
        node.raft = Some(Raft::new(cfg, node.hard, node.log.clone()));
        self.process(id);
        self.status(id);
    }

    fn stop(&mut self, id: NodeId) {
        self.nodes.get_mut(&id).unwrap().raft = None;
        let (lost, kept) = self.in_flight.drain(..).partition(|(_, to, _)| *to == id);
        self.in_flight = kept;
        for (from, to, m) in lost {
            self.out
                .push(format!("{} lost: n{to} down", message(from, to, &m)));
        }
    }

    /// Handles the node's Ready as the replica does: the store first, then the messages, then
    /// applying; the events are printed first. Returns how many messages it sent.
    fn process(&mut self, id: NodeId) -> usize {
        let Some(raft) = self.nodes.get_mut(&id).unwrap().raft.as_mut() else {
            return 0;
        };
        let ready = raft.take_ready();
        let me = format!("n{id}@{}", raft.term());
        for ev in &ready.events {
            self.out.push(event(&me, ev));
            self.safety(id, ev);
        }
        let node = self.nodes.get_mut(&id).unwrap();
        if let Some(h) = ready.hard_state {
            node.hard = h;
            self.out.push(format!("{me} persist {}", hard(&h)));
        }
        for op in ready.log_ops {
            match op {
                LogOp::TruncateFrom(i) => {
                    node.log.truncate(i as usize - 1);
                    self.out.push(format!("{me} log truncate from {i}"));
                }
                LogOp::Append(es) => {
                    let shown: Vec<_> = es.iter().map(entry).collect();
                    self.out
                        .push(format!("{me} log append {}", shown.join(", ")));
                    node.log.extend(es);
                }
            }
        }
        let sent = ready.messages.len();
        for (to, m) in ready.messages {
            self.out.push(message(id, to, &m));
            self.in_flight.push_back((id, to, m));
        }
        for e in ready.committed {
            self.out.push(format!("{me} apply {}", entry(&e)));
            if let Op::Put { key, value, .. } = &e.op {
                node.kv
                    .insert(key.clone(), String::from_utf8_lossy(value).into());
            }
            let (first, on) = self
                .applied
                .entry(e.index)
                .or_insert((e.clone(), BTreeSet::new()));
            if first.digest() == e.digest() {
                on.insert(id);
            } else {
                let (on, first) = (names(on.iter()), pos(first));
                self.out.push(format!(
                    "!! n{id} applies {} where {on} applied {first}",
                    pos(&e)
                ));
            }
        }
        sent
    }

    /// The safety lines an event can cause: a second leader in a term, a cut of applied entries.
    fn safety(&mut self, id: NodeId, ev: &RaftEvent) {
        match ev {
            RaftEvent::BecameLeader { term, .. } => {
                let first = *self.leaders.entry(*term).or_insert(id);
                if first != id {
                    self.out
                        .push(format!("!! two leaders in term {term}: n{first} and n{id}"));
                }
            }
            RaftEvent::Truncated { from, removed, .. } => {
                let (mut lost, mut on) = (vec![], BTreeSet::new());
                for (i, (_, digest)) in (*from..).zip(removed) {
                    if let Some((e, by)) =
                        self.applied.get(&i).filter(|(e, _)| e.digest() == *digest)
                    {
                        lost.push(pos(e));
                        on.extend(by);
                    }
                }
                if !lost.is_empty() {
                    let (lost, on) = (lost.join(" "), names(&on));
                    self.out.push(format!(
                        "!! n{id} cuts applied entries {lost} (applied on {on})"
                    ));
                }
            }
            _ => {}
        }
    }

    fn deliver(&mut self, (from, to, m): (NodeId, NodeId, Message)) {
        let line = message(from, to, &m);
        if self.cut.contains(&(from, to)) {
            return self.out.push(format!("{line} lost: partition"));
        }
        let Ok(raft) = self.up(to) else {
            return self.out.push(format!("{line} lost: n{to} down"));
        };
        // A failed engine invariant aborts the node, as the replica's task guard would.
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| raft.step(from, m))) {
            let why = classify_panic(p.as_ref()).map_or_else(|s| s, |a| a.message);
            self.out.push(format!("n{to} aborts: {why}"));
            return self.stop(to);
        }
        self.process(to);
    }

    fn status(&mut self, id: NodeId) {
        let n = &self.nodes[&id];
        let last = n.log.last().map_or("0@0".into(), pos);
        let store = format!("store {} last={last}", hard(&n.hard));
        let Some(r) = &n.raft else {
            return self.out.push(format!("n{id} down | {store}"));
        };
        let role = match (r.role(), r.leader()) {
            (Role::Leader, _) => "leader".to_string(),
            (Role::Candidate, _) => "candidate".to_string(),
            (Role::Follower, None) => "follower".to_string(),
            (Role::Follower, Some(l)) => format!("follower of n{l}"),
        };
        let (vote, last) = (
            node_or_dash(r.voted_for()),
            format!("{}@{}", r.last_index(), r.last_term()),
        );
        let (commit, applied) = (r.commit_index(), r.last_applied());
        let line = format!(
            "n{id}@{} {role} vote={vote} last={last} commit={commit} applied={applied} | {store}",
            r.term()
        );
        self.out.push(line);
    }
}

fn run(c: &mut Cluster, line: &str) -> Result<(), String> {
    let mut cmd = Cmd::parse(line);
    if cmd.name != "cluster" && c.nodes.is_empty() {
        return Err("no cluster yet".into());
    }
    let all: Vec<NodeId> = c.nodes.keys().copied().collect();
    let nodes = if cmd.nodes.is_empty() {
        all.clone()
    } else {
        cmd.nodes.clone()
    };
    let from: NodeId = cmd.num("from", 0)?; // 0: from anyone
    match cmd.name.as_str() {
        "cluster" => {
            let n: NodeId = cmd.num("nodes", 0)?;
            *c = Cluster {
                out: std::mem::take(&mut c.out),
                election: cmd.num("election", 10)?,
                heartbeat: cmd.num("heartbeat", 3)?,
                max_append: cmd.num("max_append", 64)?,
                volatile_term: cmd.flags.remove("volatile_term"),
                ..Cluster::default()
            };
            for id in 1..=n {
                let node = Node {
                    raft: None,
                    hard: HardState::default(),
                    log: vec![],
                    kv: BTreeMap::new(),
                };
                c.nodes.insert(id, node);
            }
            (1..=n).for_each(|id| c.start(id));
        }
        "tick" => {
            let up = |id: &NodeId| !cmd.nodes.is_empty() || c.nodes[id].raft.is_some();
            let nodes: Vec<_> = nodes.into_iter().filter(up).collect();
            for _ in 0..cmd.num("count", 1)? {
                for &id in &nodes {
                    c.up(id)?.tick();
                    c.process(id);
                }
            }
        }
        "campaign" => {
            for &id in &cmd.nodes {
                let term = c.up(id)?.term();
                if c.is(id, Role::Leader) {
                    return Err(format!("n{id} leads: it never times out"));
                }
                let ticks = (1..=4 * c.election).find(|_| {
                    let r = c.up(id).unwrap();
                    r.tick();
                    r.term() > term
                });
                let ticks = ticks.ok_or(format!("n{id} did not time out"))?;
                c.out
                    .push(format!("n{id}@{term} election timeout after {ticks} ticks"));
                c.process(id);
            }
        }
        "heartbeat" => {
            let leaders = all
                .into_iter()
                .filter(|id| c.is(*id, Role::Leader))
                .collect();
            for id in if cmd.nodes.is_empty() { leaders } else { nodes } {
                if !c.is(id, Role::Leader) {
                    c.out.push(format!("n{id} is not leader"));
                    continue;
                }
                for _ in 0..c.heartbeat {
                    c.up(id)?.tick();
                    if c.process(id) > 0 {
                        break;
                    }
                }
            }
        }
        "put" => {
            let (&[id], Some((key, value))) = (cmd.nodes.as_slice(), cmd.args.pop_first()) else {
                return Err("usage: put N key=value".into());
            };
            let op = Op::Put {
                collection: "c".into(),
                key,
                value: value.into_bytes(),
            };
            match c.up(id)?.propose(op, None, 0) {
                Ok(_) => _ = c.process(id),
                Err(ProposeError::NotLeader { leader }) => {
                    let leader =
                        leader.map_or("no leader known".into(), |l| format!("the leader is n{l}"));
                    c.out
                        .push(format!("n{id} refuses the put: not leader, {leader}"));
                }
            }
        }
        "step-down" => {
            for &id in &cmd.nodes {
                if c.up(id)?.step_down() {
                    c.process(id);
                } else {
                    c.out.push(format!("n{id} is not leader"));
                }
            }
        }
        "deliver" | "drop" => {
            let wanted = |(f, to, _): &(NodeId, NodeId, Message)| {
                nodes.contains(to) && (from == 0 || from == *f)
            };
            let (picked, kept) = std::mem::take(&mut c.in_flight)
                .into_iter()
                .partition(wanted);
            c.in_flight = kept;
            for (f, to, m) in picked {
                if cmd.name == "deliver" {
                    c.deliver((f, to, m));
                } else {
                    c.out.push(format!("{} dropped", message(f, to, &m)));
                }
            }
        }
        "stabilize" => {
            if cmd.flags.remove("heartbeat") {
                run(c, "heartbeat")?;
            }
            for _ in 0..10_000 {
                let Some(msg) = c.in_flight.pop_front() else {
                    break;
                };
                c.deliver(msg);
            }
            if !c.in_flight.is_empty() {
                return Err("messages still in flight after 10000 deliveries".into());
            }
        }
        "partition" => {
            let (inside, outside): (Vec<_>, Vec<_>) =
                all.iter().partition(|n| cmd.nodes.contains(n));
            for (&a, &b) in inside
                .iter()
                .flat_map(|a| outside.iter().map(move |b| (a, b)))
            {
                c.cut.extend([(a, b), (b, a)]);
            }
            c.out
                .push(format!("{} | {}", names(&inside), names(&outside)));
        }
        "heal" => {
            c.cut.clear();
            c.out.push("healed".into());
        }
        "stop" | "start" | "restart" => {
            for &id in &cmd.nodes {
                match (cmd.name.as_str(), c.up(id).is_ok()) {
                    ("start", true) => return Err(format!("n{id} is up")),
                    ("stop", false) => return Err(format!("n{id} is down")),
                    ("start", false) => c.start(id),
                    ("stop", true) => c.stop(id),
                    _ => {
                        c.stop(id);
                        c.start(id);
                    }
                }
            }
        }
        "status" => nodes.iter().for_each(|id| c.status(*id)),
        "log" => {
            for id in nodes {
                let log: Vec<_> = c.nodes[&id].log.iter().map(entry).collect();
                c.out.push(format!("n{id} log: {}", log.join(", ")));
            }
        }
        "kv" => {
            for id in nodes {
                let n = &c.nodes[&id];
                let kv: Vec<_> = n.kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let kv = if n.raft.is_some() {
                    kv.join(" ")
                } else {
                    "down".into()
                };
                c.out.push(format!("n{id} kv: {kv}"));
            }
        }
        other => return Err(format!("unknown command {other:?}")),
    }
    match cmd.args.into_keys().chain(cmd.flags).next() {
        None => Ok(()),
        Some(extra) => Err(format!("{} does not take {extra:?}", cmd.name)),
    }
}

impl Script for Cluster {
    fn run(&mut self, line: &str) -> Result<(), String> {
        run(self, line)
    }
    fn out(&mut self) -> &mut Vec<String> {
        &mut self.out
    }
}

golden_scripts!(
    Cluster,
    "raft",
    election,
    replication,
    figure8,
    incident003,
    step_down
);
