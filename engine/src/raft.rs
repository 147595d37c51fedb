//! Raft consensus as a pure, message-driven state machine.
//!
//! The core does no I/O. Callers feed it messages ([`Raft::step`]), clock ticks ([`Raft::tick`])
//! and proposals ([`Raft::propose`]), then drain a [`Ready`]: first persist its hard state and
//! log operations (fsync), then send its messages, then apply its committed entries. That order
//! is what makes "persist before any message reflecting it is sent" hold.
//!
//! With the `volatile-raft-term` knob (incident 003) the core restores the faulty path: term and
//! vote are not part of the persisted hard state, truncation of applied entries is not guarded,
//! and `last_applied` is never rewound.

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod types;
pub use types::*;

pub struct Raft {
    cfg: RaftConfig,
    term: Term,
    voted_for: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    log: Vec<Entry>,
    commit: Index,
    last_applied: Index,
    election_elapsed: u32,
    election_timeout: u32,
    heartbeat_elapsed: u32,
    votes: BTreeSet<NodeId>,
    next_index: BTreeMap<NodeId, Index>,
    match_index: BTreeMap<NodeId, Index>,
    rng: ChaCha8Rng,
    ready: Ready,
    persisted: HardState,
}

impl Raft {
    /// Restores a node from its durable state. Fixed path: `term = max(persisted, last log
    /// term)` and `commit` clamped to the log end. Faulty path: term and vote start from zero
    /// (they were never written) and the commit hint is taken as is.
    pub fn new(cfg: RaftConfig, hard: HardState, log: Vec<Entry>) -> Self {
        Self::restore(cfg, hard, log, 0)
    }

    /// Like [`Raft::new`] for a node whose state machine was restored from a checkpoint that
    /// includes the entries up to `applied`: those are committed (a leader checkpointed them
    /// after applying them) and are not handed out again.
    pub fn restore(cfg: RaftConfig, hard: HardState, log: Vec<Entry>, applied: Index) -> Self {
        assert!(
            applied <= log.len() as Index,
            "restored applied index {applied} beyond the log end {}",
            log.len()
        );
        assert!(
            cfg.members.contains(&cfg.id),
            "node {} is not a member",
            cfg.id
        );
        assert!(
            cfg.election_ticks_min > cfg.heartbeat_ticks,
            "election timeout must exceed heartbeat"
        );
        for (i, e) in log.iter().enumerate() {
            assert_eq!(
                e.index,
                i as u64 + 1,
                "log entries must be contiguous from 1"
            );
        }
        let last_log_term = log.last().map_or(0, |e| e.term);
        let (term, voted_for, commit) = if cfg.volatile_term {
            (0, None, hard.commit)
        } else {
            let term = hard.term.max(last_log_term);
            let voted_for = if term == hard.term {
                hard.voted_for
            } else {
                None
            };
            (term, voted_for, hard.commit.min(log.len() as Index))
        };
        let rng = ChaCha8Rng::seed_from_u64(cfg.rng_seed);
        let mut raft = Raft {
            term,
            voted_for,
            role: Role::Follower,
            leader: None,
            log,
            commit: commit.max(applied),
            last_applied: applied,
            election_elapsed: 0,
            election_timeout: 0,
            heartbeat_elapsed: 0,
            votes: BTreeSet::new(),
            next_index: BTreeMap::new(),
            match_index: BTreeMap::new(),
            rng,
            ready: Ready::default(),
            persisted: HardState {
                term,
                voted_for,
                commit,
            },
            cfg,
        };
        raft.reset_election_timeout();
        raft.emit_committed();
        raft
    }

    // ----- accessors -----

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit_index(&self) -> Index {
        self.commit
    }
    pub fn last_applied(&self) -> Index {
        self.last_applied
    }
    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }
    pub fn last_index(&self) -> Index {
        self.log.len() as Index
    }
    pub fn last_term(&self) -> Term {
        self.log.last().map_or(0, |e| e.term)
    }
    pub fn last_ts(&self) -> u64 {
        self.log.last().map_or(0, |e| e.ts)
    }
    pub fn entries(&self) -> &[Entry] {
        &self.log
    }
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        if index == 0 {
            return None;
        }
        self.log.get(index as usize - 1)
    }
    fn term_at(&self, index: Index) -> Option<Term> {
        if index == 0 {
            Some(0)
        } else {
            self.entry(index).map(|e| e.term)
        }
    }
    fn quorum(&self) -> usize {
        self.cfg.members.len() / 2 + 1
    }
    fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        let id = self.cfg.id;
        self.cfg.members.iter().copied().filter(move |m| *m != id)
    }

    /// Takes everything the driver must do now.
    pub fn take_ready(&mut self) -> Ready {
        let hard = HardState {
            term: if self.cfg.volatile_term { 0 } else { self.term },
            voted_for: if self.cfg.volatile_term {
                None
            } else {
                self.voted_for
            },
            commit: self.commit,
        };
        if hard != self.persisted {
            self.persisted = hard;
            self.ready.hard_state = Some(hard);
        }
        std::mem::take(&mut self.ready)
    }

    // ----- inputs -----

    /// One clock tick: elections on followers and candidates, heartbeats on the leader.
    pub fn tick(&mut self) {
        match self.role {
            Role::Leader => {
                self.heartbeat_elapsed += 1;
                if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
                    self.heartbeat_elapsed = 0;
                    self.broadcast_append(true);
                }
            }
            Role::Follower | Role::Candidate => {
                self.election_elapsed += 1;
                if self.election_elapsed >= self.election_timeout {
                    self.campaign();
                }
            }
        }
    }

    /// Appends an operation on the leader; it is acknowledged once committed.
    pub fn propose(
        &mut self,
        op: Op,
        session: Option<Session>,
        now_ts: u64,
    ) -> Result<(Index, Term), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        let (index, term) = self.append_local(op, session, now_ts);
        self.broadcast_append(false);
        Ok((index, term))
    }

    /// A voluntary step-down (an operator's or a balancer's request): the leader becomes a
    /// follower in its term and stands aside for longer than any election timeout, so another
    /// node wins the next term. Returns false if this node was not leading.
    pub fn step_down(&mut self) -> bool {
        if self.role != Role::Leader {
            return false;
        }
        self.become_follower(self.term, None);
        self.election_elapsed = 0;
        self.election_timeout = self.cfg.election_ticks_max * 2;
        true
    }

    /// Processes one message from a peer.
    pub fn step(&mut self, from: NodeId, msg: Message) {
        if !self.cfg.members.contains(&from) || from == self.cfg.id {
            return; // not a member: ignore rather than trust
        }
        let msg_term = msg.term();
        if msg_term > self.term {
            let leader = matches!(msg, Message::Append { .. }).then_some(from);
            self.become_follower(msg_term, leader);
        }
        match msg {
            Message::RequestVote {
                term,
                last_index,
                last_term,
            } => self.on_request_vote(from, term, last_index, last_term),
            Message::Vote { term, granted } => self.on_vote(from, term, granted),
            Message::Append {
                term,
                prev_index,
                prev_term,
                entries,
                commit,
            } => self.on_append(from, term, prev_index, prev_term, entries, commit),
            Message::AppendResp {
                term,
                success,
                match_index,
            } => self.on_append_resp(from, term, success, match_index),
        }
    }

    // ----- elections -----

    fn reset_election_timeout(&mut self) {
        self.election_elapsed = 0;
        self.election_timeout = self
            .rng
            .gen_range(self.cfg.election_ticks_min..=self.cfg.election_ticks_max);
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        let changed = term != self.term || self.role != Role::Follower || leader != self.leader;
        if term > self.term {
            self.term = term;
            self.voted_for = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        if changed {
            self.ready.events.push(RaftEvent::BecameFollower {
                term: self.term,
                leader,
            });
        }
    }

    fn campaign(&mut self) {
        self.term += 1;
        self.role = Role::Candidate;
        self.leader = None;
        self.voted_for = Some(self.cfg.id);
        self.votes = BTreeSet::from([self.cfg.id]);
        self.reset_election_timeout();
        self.ready
            .events
            .push(RaftEvent::BecameCandidate { term: self.term });
        if self.votes.len() >= self.quorum() {
            self.become_leader();
            return;
        }
        let (last_index, last_term) = (self.last_index(), self.last_term());
        let peers: Vec<_> = self.peers().collect();
        for p in peers {
            self.send(
                p,
                Message::RequestVote {
                    term: self.term,
                    last_index,
                    last_term,
                },
            );
        }
    }

    fn on_request_vote(&mut self, from: NodeId, term: Term, last_index: Index, last_term: Term) {
        let up_to_date = last_term > self.last_term()
            || (last_term == self.last_term()
                && (last_index >= self.last_index() || self.cfg.vote_ignores_log_length));
        let free = self.voted_for.is_none() || self.voted_for == Some(from);
        let granted = term == self.term && free && up_to_date && self.role == Role::Follower;
        if granted {
            self.voted_for = Some(from);
            self.reset_election_timeout();
            self.ready.events.push(RaftEvent::VoteGranted {
                term,
                candidate: from,
                candidate_last_term: last_term,
                own_last_term: self.last_term(),
                candidate_last_index: last_index,
                own_last_index: self.last_index(),
            });
        }
        self.send(
            from,
            Message::Vote {
                term: self.term,
                granted,
            },
        );
    }

    fn on_vote(&mut self, from: NodeId, term: Term, granted: bool) {
        if self.role != Role::Candidate || term != self.term || !granted {
            return;
        }
        self.votes.insert(from);
        if self.votes.len() >= self.quorum() {
            self.become_leader();
        }
    }

    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        self.heartbeat_elapsed = 0;
        let next = self.last_index() + 1;
        let peers: Vec<_> = self.peers().collect();
        self.next_index = peers.iter().map(|p| (*p, next)).collect();
        self.match_index = peers.iter().map(|p| (*p, 0)).collect();
        self.ready.events.push(RaftEvent::BecameLeader {
            term: self.term,
            last_index: self.last_index(),
            last_term: self.last_term(),
        });
        // A no-op in the new term lets the leader commit everything before it.
        let ts = self.last_ts() + 1;
        self.append_local(Op::Noop, None, ts);
        self.broadcast_append(false);
        self.maybe_commit();
    }

    // ----- replication -----

    fn append_local(&mut self, op: Op, session: Option<Session>, now_ts: u64) -> (Index, Term) {
        debug_assert_eq!(self.role, Role::Leader);
        let entry = Entry {
            term: self.term,
            index: self.last_index() + 1,
            ts: now_ts.max(self.last_ts() + 1),
            op,
            session,
        };
        let at = (entry.index, entry.term);
        self.log.push(entry.clone());
        self.push_log_op(LogOp::Append(vec![entry]));
        self.maybe_commit(); // single-node clusters commit on append
        at
    }

    fn push_log_op(&mut self, op: LogOp) {
        if let (Some(LogOp::Append(prev)), LogOp::Append(new)) =
            (self.ready.log_ops.last_mut(), &op)
        {
            prev.extend(new.iter().cloned());
            return;
        }
        self.ready.log_ops.push(op);
    }

    /// Sends appends to peers that are behind (or to everyone, as a heartbeat).
    fn broadcast_append(&mut self, heartbeat: bool) {
        let peers: Vec<_> = self.peers().collect();
        for p in peers {
            let next = self.next_index[&p];
            if heartbeat || next <= self.last_index() {
                self.send_append(p);
            }
        }
    }

    fn send_append(&mut self, to: NodeId) {
        let next = self.next_index[&to].clamp(1, self.last_index() + 1);
        let prev_index = next - 1;
        let prev_term = self.term_at(prev_index).expect("prev index within the log");
        let end = (prev_index as usize + self.cfg.max_append_entries).min(self.log.len());
        let entries = self.log[prev_index as usize..end].to_vec();
        // Pipelining: assume the entries arrive, so the next proposal sends only what is new
        // rather than everything still in flight. A lost append shows up as a rejection of
        // the next one (its `prev_index` is missing) and the leader backs off from there.
        self.next_index.insert(to, end as Index + 1);
        let msg = Message::Append {
            term: self.term,
            prev_index,
            prev_term,
            entries,
            commit: self.commit,
        };
        self.send(to, msg);
    }

    fn on_append(
        &mut self,
        from: NodeId,
        term: Term,
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        leader_commit: Index,
    ) {
        if term < self.term {
            self.send(
                from,
                Message::AppendResp {
                    term: self.term,
                    success: false,
                    match_index: 0,
                },
            );
            return;
        }
        // term == self.term here (a higher term made us a follower in `step`).
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(term, Some(from));
        }
        self.reset_election_timeout();
        if self.term_at(prev_index) != Some(prev_term) {
            // Hint: retry from our log end if we are short, else one before the conflict.
            let hint = prev_index.min(self.last_index() + 1).saturating_sub(1);
            self.send(
                from,
                Message::AppendResp {
                    term: self.term,
                    success: false,
                    match_index: hint,
                },
            );
            return;
        }
        // Everything up to the end of this message matches the leader once it is processed.
        let verified_end = prev_index + entries.len() as Index;
        let mut new_entries = Vec::new();
        for e in entries {
            if !new_entries.is_empty() {
                new_entries.push(e);
                continue;
            }
            match self.term_at(e.index) {
                Some(t) if t == e.term => continue, // already have it
                Some(_) => {
                    self.truncate_from(e.index);
                    new_entries.push(e);
                }
                None => new_entries.push(e),
            }
        }
        let cut = verified_end.max(self.commit) + 1;
        if self.cfg.append_truncates_unconditionally
            && new_entries.is_empty()
            && self.last_index() >= cut
        {
            self.truncate_from(cut);
        }
        if !new_entries.is_empty() {
            invariant!(
                new_entries[0].index == self.last_index() + 1,
                "raft: append would leave a gap: first new index {} after log end {}",
                new_entries[0].index,
                self.last_index()
            );
            self.log.extend(new_entries.iter().cloned());
            self.push_log_op(LogOp::Append(new_entries));
        }
        // Only what this message proved matches the leader may be committed.
        let new_commit = leader_commit.min(verified_end);
        if new_commit > self.commit {
            self.commit = new_commit;
            self.emit_committed();
        }
        self.send(
            from,
            Message::AppendResp {
                term: self.term,
                success: true,
                match_index: verified_end,
            },
        );
    }

    /// Cuts the log at `from`. Fixed path: cutting an applied (hence committed) entry is a fatal
    /// invariant, and `commit` can never point past the log end. Faulty path: the cut happens,
    /// `commit` and `last_applied` stay where they were.
    fn truncate_from(&mut self, from: Index) {
        let removed_last = self.last_index();
        let removed = self.log[from as usize - 1..]
            .iter()
            .map(|e| (e.term, e.digest()))
            .collect();
        if !self.cfg.volatile_term {
            invariant!(
                from > self.last_applied,
                "raft: truncating log at {} at or below last_applied {} (commit {}, term {})",
                from,
                self.last_applied,
                self.commit,
                self.term
            );
            invariant!(
                from > self.commit,
                "raft: truncating committed entries from {} (commit {}, term {})",
                from,
                self.commit,
                self.term
            );
        }
        self.log.truncate(from as usize - 1);
        self.push_log_op(LogOp::TruncateFrom(from));
        if !self.cfg.volatile_term {
            self.commit = self.commit.min(self.last_index());
        }
        self.ready.events.push(RaftEvent::Truncated {
            from,
            removed_last,
            last_applied: self.last_applied,
            commit: self.commit,
            removed,
        });
    }

    fn on_append_resp(&mut self, from: NodeId, term: Term, success: bool, match_index: Index) {
        if self.role != Role::Leader || term != self.term {
            return;
        }
        if success {
            let m = match_index.min(self.last_index());
            if m > self.match_index[&from] {
                self.match_index.insert(from, m);
            }
            let next = self.next_index[&from].max(m + 1);
            self.next_index.insert(from, next);
            self.maybe_commit();
            if self.next_index[&from] <= self.last_index() {
                self.send_append(from);
            }
        } else {
            // Back off to the follower's hint (never below 1) and retry at once.
            let next = (match_index + 1)
                .min(self.next_index[&from].saturating_sub(1))
                .max(1);
            self.next_index.insert(from, next);
            self.send_append(from);
        }
    }

    /// Commits the highest index replicated on a quorum whose entry is from the current term.
    fn maybe_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let mut matched: Vec<Index> = self.match_index.values().copied().collect();
        matched.push(self.last_index());
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let n = matched[self.quorum() - 1];
        if n > self.commit && self.term_at(n) == Some(self.term) {
            self.commit = n;
            self.ready.events.push(RaftEvent::Committed {
                index: n,
                term: self.term,
                entry_term: self.term_at(n).unwrap_or(0),
            });
            self.emit_committed();
        }
    }

    /// Hands committed, not yet applied entries to the driver.
    fn emit_committed(&mut self) {
        let end = self.commit.min(self.last_index());
        while self.last_applied < end {
            self.last_applied += 1;
            let e = self
                .entry(self.last_applied)
                .expect("committed entry in the log")
                .clone();
            self.ready.committed.push(e);
        }
    }

    fn send(&mut self, to: NodeId, msg: Message) {
        self.ready.messages.push((to, msg));
    }
}

#[cfg(test)]
mod tests;
