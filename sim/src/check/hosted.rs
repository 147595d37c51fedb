//! The observation vocabulary of a hosted system (any raft key-value system run through
//! `crate::sut`): what its adapter reports at its own boundaries, typed, so the generic
//! checkers match fields and never text. Plain data: no simulator here (a test greps for it).
//!
//! A node id is a `u8` (`n1`..`nN`); the harness stamps each observation with the node, its
//! incarnation and the simulated time (`HostedRecord`).

/// One thing a hosted node did, reported by its adapter exactly when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostedEvent {
    /// The node's vote is durable (returned from the system's "save vote"): `voted_for` is the
    /// candidate (itself when campaigning); `committed` means that candidate won the term
    /// (openraft's committed vote: a leader's own, or a follower's acceptance of that leader).
    Vote {
        term: u64,
        voted_for: Option<u8>,
        committed: bool,
    },
    /// What a starting incarnation found on its disk (all of it durable now): its log's
    /// entries `(index, term)` and what a snapshot or purge covers (`covered`: every index at
    /// or below it is held through a snapshot; 0 for none). The node's vote comes as a `Vote`.
    Loaded {
        entries: Vec<(u64, u64)>,
        covered: u64,
    },
    /// Entries written to the node's log (not yet durable): `(index, term)` in order.
    Appended { entries: Vec<(u64, u64)> },
    /// Every entry at or below `upto` that this incarnation appended is durable now (the
    /// system was told so: openraft's `LogFlushed` callback).
    Flushed { upto: u64 },
    /// Entries at and above `from` were removed (durable on return).
    Truncated { from: u64 },
    /// Entries at or below `upto` were purged behind a snapshot (durable on return).
    Purged { upto: u64 },
    /// A snapshot covering everything through `(index, term)` was installed and is durable.
    SnapshotInstalled { index: u64, term: u64 },
    /// The node learned that everything through `(index, term)` is committed (openraft:
    /// `save_committed`, right before applying).
    Committed { index: u64, term: u64 },
    /// The state machine applied entry `(index, term)`; `op` names the operation the entry
    /// carried (the same text on every node for the same entry, e.g. `c3#17 put k5`), empty
    /// for entries without a client operation (blank, membership). A client operation's text
    /// starts with `crate::sut::op_label` of its call (`c3#17`), so the checkers can match it
    /// to the client's history.
    Applied { index: u64, term: u64, op: String },
    /// The node is leader of `term` (as it reports it, e.g. from its metrics).
    Leader { term: u64 },
    /// Something else worth a trace line (not checked).
    Note(String),
}

impl HostedEvent {
    /// The trace kind of the event.
    pub fn kind(&self) -> &'static str {
        match self {
            HostedEvent::Vote { .. } => "vote",
            HostedEvent::Loaded { .. } => "load",
            HostedEvent::Appended { .. } => "append",
            HostedEvent::Flushed { .. } => "flush",
            HostedEvent::Truncated { .. } => "truncate",
            HostedEvent::Purged { .. } => "purge",
            HostedEvent::SnapshotInstalled { .. } => "snapshot",
            HostedEvent::Committed { .. } => "commit",
            HostedEvent::Applied { .. } => "apply",
            HostedEvent::Leader { .. } => "leader",
            HostedEvent::Note(_) => "note",
        }
    }

    /// The trace line's detail.
    pub fn detail(&self) -> String {
        match self {
            HostedEvent::Vote {
                term,
                voted_for,
                committed,
            } => format!(
                "term {term} for {} {}",
                voted_for.map_or("none".to_string(), |n| format!("n{n}")),
                if *committed {
                    "committed"
                } else {
                    "uncommitted"
                }
            ),
            HostedEvent::Loaded { entries, covered } => format!(
                "{} entries{}, covered through {covered}",
                entries.len(),
                entries
                    .last()
                    .map_or(String::new(), |(i, t)| format!(" to {i} term {t}"))
            ),
            HostedEvent::Appended { entries } => match (entries.first(), entries.last()) {
                (Some(a), Some(b)) => format!("{}..={} term {}..={}", a.0, b.0, a.1, b.1),
                _ => "none".to_string(),
            },
            HostedEvent::Flushed { upto } => format!("through {upto}"),
            HostedEvent::Truncated { from } => format!("from {from}"),
            HostedEvent::Purged { upto } => format!("through {upto}"),
            HostedEvent::SnapshotInstalled { index, term } => {
                format!("through {index} term {term}")
            }
            HostedEvent::Committed { index, term } => format!("through {index} term {term}"),
            HostedEvent::Applied { index, term, op } => format!("{index} term {term} {op}"),
            HostedEvent::Leader { term } => format!("term {term}"),
            HostedEvent::Note(s) => s.clone(),
        }
    }
}

/// An observation as the harness records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedRecord {
    pub at_us: u64,
    pub node: u8,
    pub incarnation: u64,
    pub event: HostedEvent,
}

/// What a live node says about itself at one moment (the system's inspection; `None` fields
/// where it cannot tell).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostedStatus {
    pub term: u64,
    /// The leader it follows (itself when leading).
    pub leader: Option<u8>,
    /// Last log index (0: empty).
    pub last_log: u64,
    pub committed: u64,
    pub applied: u64,
    /// A digest of the state machine's visible state at `applied` (equal states, equal
    /// digests; the adapter's choice of hash).
    pub state_digest: u64,
}
