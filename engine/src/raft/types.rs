//! The raft core's vocabulary: ids, operations and entries, messages, hard state, events, the
//! `Ready` a step leaves, and the configuration (with the volatile-raft-term knob's switch).

use serde::{Deserialize, Serialize};

pub type NodeId = u8;
pub type Term = u64;
pub type Index = u64;

/// A replicated operation. `ts` on the entry is the monotonic timestamp (the LSN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Noop,
    Put {
        collection: String,
        key: String,
        value: Vec<u8>,
    },
    Delete {
        collection: String,
        key: String,
    },
    CreateCollection {
        name: String,
    },
    DropCollection {
        name: String,
    },
    /// List-append: the document becomes its current bytes (empty if absent) followed by
    /// `value`. Not idempotent, so a duplicated or lost effect shows in what readers see.
    Append {
        collection: String,
        key: String,
        value: Vec<u8>,
    },
    /// A linearizable read: ordered through the log, answered by the leader with the document
    /// as of this entry. Changes nothing.
    Get {
        collection: String,
        key: String,
    },
    /// A key rotation, with the wrapped key material the leader prepared.
    Rotate(crate::keystore::Rotation),
}

/// Identifies one client operation across its retries, so a retried write that was already
/// applied is not applied again (raft thesis §6.3): a slow duplicate must not overwrite newer data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Session {
    pub client: u64,
    /// Per-client operation number, increasing; retries reuse it.
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: Term,
    pub index: Index,
    /// Monotonic timestamp assigned by the leader that created the entry.
    pub ts: u64,
    pub op: Op,
    #[serde(default)]
    pub session: Option<Session>,
}

impl Entry {
    /// A short fingerprint of the entry's content, for traces and the history checker.
    pub fn digest(&self) -> u64 {
        let bytes = bincode::serialize(&(self.term, self.index, self.ts, &self.op, &self.session))
            .expect("entries always serialize");
        xxhash_rust::xxh3::xxh3_64(&bytes)
    }
}

/// Raft's persistent state besides the log. `commit` is a hint (any durable value at or below
/// the true commit index is safe) that lets a restarted node re-apply without waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub voted_for: Option<NodeId>,
    pub commit: Index,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    RequestVote {
        term: Term,
        last_index: Index,
        last_term: Term,
    },
    Vote {
        term: Term,
        granted: bool,
    },
    Append {
        term: Term,
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    },
    AppendResp {
        term: Term,
        success: bool,
        match_index: Index,
    },
}

impl Message {
    pub fn term(&self) -> Term {
        match self {
            Message::RequestVote { term, .. }
            | Message::Vote { term, .. }
            | Message::Append { term, .. }
            | Message::AppendResp { term, .. } => *term,
        }
    }
    /// Responses travel back on the connection the request came in on; requests need the
    /// sender's own outbound connection to the peer (see `replica::PeerLinks`).
    pub fn is_response(&self) -> bool {
        matches!(self, Message::Vote { .. } | Message::AppendResp { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Follower,
    Candidate,
    Leader,
}

/// Something the core did that an observer may want to know (roles, votes, commits, truncation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaftEvent {
    BecameCandidate {
        term: Term,
    },
    BecameLeader {
        term: Term,
        /// The new leader's log end before its no-op: it must hold every committed entry.
        last_index: Index,
        last_term: Term,
    },
    BecameFollower {
        term: Term,
        leader: Option<NodeId>,
    },
    VoteGranted {
        term: Term,
        candidate: NodeId,
        candidate_last_term: Term,
        own_last_term: Term,
        candidate_last_index: Index,
        own_last_index: Index,
    },
    /// The leader advanced the commit index (entries up to `index` are committed).
    Committed {
        index: Index,
        term: Term,
        /// The term of the entry at `index`: a leader commits only through its own term's entries.
        entry_term: Term,
    },
    /// The log was cut at `from` (entries `from..` removed) on the leader's request.
    Truncated {
        from: Index,
        removed_last: Index,
        last_applied: Index,
        commit: Index,
        /// Term and digest of each removed entry, from `from` on: the harness checks none of
        /// them is an entry some node applied, in any incarnation.
        removed: Vec<(Term, u64)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOp {
    /// Remove every entry with index >= the given one.
    TruncateFrom(Index),
    Append(Vec<Entry>),
}

/// Everything the driver must do after feeding the core, in order.
#[derive(Debug, Default)]
pub struct Ready {
    /// New hard state to persist (before sending anything).
    pub hard_state: Option<HardState>,
    /// Log changes to persist (before sending anything).
    pub log_ops: Vec<LogOp>,
    /// Messages to send once the above is durable.
    pub messages: Vec<(NodeId, Message)>,
    /// Committed entries to apply to the state machine, in order.
    pub committed: Vec<Entry>,
    pub events: Vec<RaftEvent>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.log_ops.is_empty()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.events.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct RaftConfig {
    pub id: NodeId,
    /// Every member, including `id`.
    pub members: Vec<NodeId>,
    pub election_ticks_min: u32,
    pub election_ticks_max: u32,
    pub heartbeat_ticks: u32,
    pub max_append_entries: usize,
    /// Incident 003's faulty path.
    pub volatile_term: bool,
    /// A planted bug (the harness's own tests only, see `knobs::Planted`): votes compare only
    /// the last log terms, so a shorter log of the same last term wins.
    pub vote_ignores_log_length: bool,
    /// Planted bug (tests only): a follower cuts every entry after an append's end, even when
    /// they all match.
    pub append_truncates_unconditionally: bool,
    pub rng_seed: u64,
}

impl RaftConfig {
    pub fn new(id: NodeId, members: Vec<NodeId>, rng_seed: u64) -> Self {
        RaftConfig {
            id,
            members,
            election_ticks_min: 15,
            election_ticks_max: 30,
            heartbeat_ticks: 5,
            max_append_entries: 64,
            volatile_term: false,
            vote_ignores_log_length: false,
            append_truncates_unconditionally: false,
            rng_seed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposeError {
    NotLeader { leader: Option<NodeId> },
}
