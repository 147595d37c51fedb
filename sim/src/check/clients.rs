//! What clients observed, checked three ways:
//! - every acknowledgement's (index, term) names that operation's own entry in the canonical
//!   committed history (a reply that acknowledges another client's entry, or an entry that
//!   never committed, is a lie to the client);
//! - the key-value history is linearizable (Wing–Gong/Lowe search per key, see
//!   `linearizability`), with unknown outcomes that may or may not have taken effect — this
//!   sees stale and lost reads and lost or duplicated appends without looking at the log;
//! - durability: on every live replica, each acknowledged write is still what a reader sees,
//!   unless an operation the committed history places after it changed the document.
//!
//! None of them sees a bug no client operation touches (a wrong follower read path: the model
//! check) or a race the workload never enters.

use std::collections::BTreeMap;

use engine::raft::{Index, Session, Term};
use engine::state::Collection;
use reports::{Violation, ViolationKind};

use super::linearizability::{self, KvKind, KvOp};
use super::model::{show, Model};
use super::record::{AtRest, Cluster};
use super::snapshot::node_name;
use super::violation;

/// Acknowledged writes: committed as acknowledged, and still what readers see on every live
/// replica unless the committed history changed them since.
pub struct Durability;

impl AtRest for Durability {
    fn check(&self, c: &Cluster<'_>, _: &mut Vec<String>) -> Vec<Violation> {
        let (mut out, named) = check_acks(c.ops, c.model, c.at_ms, ViolationKind::Durability);
        c.name_ops(named, ViolationKind::Durability);
        let acked = acked_writes(c.ops);
        for n in c.nodes {
            let name = node_name(n.status.id);
            let applied = n.status.last_applied;
            let (found, named) =
                check_durability(&acked, c.model, &name, applied, &n.data, c.at_ms);
            out.extend(found);
            c.name_ops(named, ViolationKind::Durability);
        }
        out
    }
}

/// Reads answered from their own entries, and a linearizable key-value history.
pub struct Linearizability;

impl AtRest for Linearizability {
    fn check(&self, c: &Cluster<'_>, notes: &mut Vec<String>) -> Vec<Violation> {
        let kind = ViolationKind::Linearizability;
        let (mut out, named) = check_acks(c.ops, c.model, c.at_ms, kind);
        c.name_ops(named, kind);
        let (lin, named, undecided) = check_linearizable(c.ops, c.at_ms);
        out.extend(lin);
        c.name_ops(named, kind);
        if undecided > 0 {
            notes.push(format!(
                "linearizability: {undecided} key history(ies) undecided within the search budget"
            ));
        }
        out
    }
}

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKind {
    /// Values are unique per operation, so a value names the write that produced it.
    Put(Vec<u8>),
    Append(Vec<u8>),
    Delete,
    Get,
    DropCollection,
    /// Changes no document; recorded so the history is complete.
    CreateCollection,
}

impl ClientKind {
    pub fn name(&self) -> &'static str {
        match self {
            ClientKind::Put(_) => "put",
            ClientKind::Append(_) => "append",
            ClientKind::Delete => "delete",
            ClientKind::Get => "get",
            ClientKind::DropCollection => "drop",
            ClientKind::CreateCollection => "create",
        }
    }
}

/// One client operation and what the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOp {
    /// The workload's client number (`u32::MAX` for one-off DDL clients).
    pub client: u32,
    pub session: Session,
    pub collection: String,
    /// The document, for document operations.
    pub key: Option<String>,
    pub kind: ClientKind,
    pub invoked_us: u64,
    /// `None`: no acknowledgement (timed out; it may or may not have taken effect).
    pub acked_us: Option<u64>,
    /// When the client's call returned, acknowledged or not (`None`: still in flight). Only
    /// for the timeline: to the checkers an operation without an acknowledgement never ends.
    pub returned_us: Option<u64>,
    /// The entry the acknowledgement named.
    pub ack: Option<(Index, Term)>,
    /// What an acknowledged read returned.
    pub read: Option<Option<Vec<u8>>>,
    /// The system told the client it certainly did not take effect (a hosted system's
    /// `Failed` outcome; the checkers hold it to that). Never set for the engine, whose client
    /// retries until acknowledged or out of time.
    pub failed: bool,
}

impl ClientOp {
    /// `put kv/k5 (client 3, op 17)`.
    pub(super) fn describe(&self) -> String {
        let doc = match &self.key {
            Some(k) => format!("{}/{k}", self.collection),
            None => self.collection.clone(),
        };
        let client = if self.client == u32::MAX {
            "a DDL client".to_string()
        } else {
            format!("client {}", self.client)
        };
        format!(
            "{} {doc} ({client}, op {})",
            self.kind.name(),
            self.session.seq
        )
    }
}

/// Every acknowledgement names its own operation's entry in the canonical history. A write
/// acknowledged with an entry that is not its own was never committed: `durability`. A read
/// likewise answered from no entry of its own: `linearizability`. Returns the finding of `kind`
/// (one of those two) and the operations (indices into `ops`) it names.
pub fn check_acks(
    ops: &[ClientOp],
    model: &Model,
    at_ms: u64,
    kind: ViolationKind,
) -> (Vec<Violation>, Vec<usize>) {
    let (mut bad, mut named) = (Vec::new(), Vec::new());
    for (i, op) in ops.iter().enumerate() {
        let is_read = matches!(op.kind, ClientKind::Get);
        if is_read != (kind == ViolationKind::Linearizability) {
            continue;
        }
        let Some((index, term)) = op.ack else {
            continue;
        };
        let problem = match model.entry_at(index) {
            // Beyond what any replica applied: never committed, or the model could not follow.
            None if index > model.applied() => Some(format!(
                "no replica ever applied index {index} (applied up to {})",
                model.applied()
            )),
            None => None,
            Some((t, s)) if t == term && s == Some(op.session) => None,
            Some((t, s)) => Some(format!(
                "the committed entry at index {index} is term {t} {}",
                match s {
                    Some(s) => format!("client {} op {}", s.client, s.seq),
                    None => "without a client session".to_string(),
                }
            )),
        };
        if let Some(p) = problem {
            let line = format!(
                "{} acknowledged as index {index} term {term} at {}us, but {p}",
                op.describe(),
                op.acked_us.unwrap_or(0)
            );
            bad.push(line);
            named.push(i);
        }
    }
    let what = if kind == ViolationKind::Linearizability {
        "read(s) answered from an entry not their own"
    } else {
        "acknowledged write(s) never committed"
    };
    (summarize(kind, None, at_ms, what, bad), named)
}

/// One violation per check with the first examples, so a broken run does not flood the report.
pub(super) fn summarize(
    kind: ViolationKind,
    node: Option<String>,
    at_ms: u64,
    what: &str,
    bad: Vec<String>,
) -> Vec<Violation> {
    if bad.is_empty() {
        return vec![];
    }
    let shown: Vec<&str> = bad.iter().take(3).map(String::as_str).collect();
    let more = bad.len().saturating_sub(shown.len());
    let tail = if more > 0 {
        format!(" (and {more} more)")
    } else {
        String::new()
    };
    let msg = format!("{} {what}: {}{tail}", bad.len(), shown.join("; "));
    vec![violation(kind, node, at_ms, msg)]
}

/// Steps of the Wing–Gong search per key before a key's history is reported undecided.
pub const LINEARIZABILITY_BUDGET: u64 = 200_000;

/// The per-key register histories the client operations make (a drop writes "absent" to every
/// document of its collection the history mentions).
pub fn per_key(ops: &[ClientOp]) -> BTreeMap<String, Vec<KvOp>> {
    let mut keys_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for op in ops {
        if let Some(k) = &op.key {
            keys_of.entry(&op.collection).or_default().push(k);
        }
    }
    for ks in keys_of.values_mut() {
        ks.sort_unstable();
        ks.dedup();
    }
    // Keyed by (collection, key) while filling: one name formatted per document, not per op.
    let mut by_key: BTreeMap<(&str, &str), Vec<KvOp>> = BTreeMap::new();
    for (id, op) in ops.iter().enumerate() {
        let kind = match &op.kind {
            ClientKind::Put(v) => KvKind::Write(Some(v.clone())),
            ClientKind::Append(v) => KvKind::Append(v.clone()),
            ClientKind::Delete | ClientKind::DropCollection => KvKind::Write(None),
            ClientKind::Get => KvKind::Read,
            ClientKind::CreateCollection => continue,
        };
        let keys: Vec<&str> = match &op.key {
            Some(k) => vec![k],
            None => keys_of
                .get(op.collection.as_str())
                .cloned()
                .unwrap_or_default(),
        };
        for k in keys {
            by_key
                .entry((op.collection.as_str(), k))
                .or_default()
                .push(KvOp {
                    id,
                    client: op.session.client,
                    invoke_us: op.invoked_us,
                    complete_us: op.acked_us,
                    kind: kind.clone(),
                    read: op.read.clone(),
                });
        }
    }
    by_key
        .into_iter()
        .map(|((c, k), ops)| (format!("{c}/{k}"), ops))
        .collect()
}

/// The linearizability verdicts, one violation naming the smallest failing sub-history.
/// Returns the violations, the operations they name (that sub-history) and the number of keys
/// whose search ran out of budget.
pub fn check_linearizable(ops: &[ClientOp], at_ms: u64) -> (Vec<Violation>, Vec<usize>, usize) {
    let summary = linearizability::check_all(&per_key(ops), LINEARIZABILITY_BUDGET);
    let mut out = Vec::new();
    let mut named = Vec::new();
    if let Some((key, ids, explain)) = summary.violations.first() {
        named.clone_from(ids);
        let sub: Vec<String> = ids
            .iter()
            .filter_map(|i| ops.get(*i))
            .map(|op| {
                let result = match (&op.kind, &op.read) {
                    (ClientKind::Get, Some(v)) => format!(" -> {}", show(v.as_ref())),
                    (ClientKind::Put(v) | ClientKind::Append(v), _) => {
                        format!(" {}", show(Some(v)))
                    }
                    _ => String::new(),
                };
                let done = op
                    .acked_us
                    .map_or("never acknowledged".to_string(), |t| format!("acked {t}us"));
                format!(
                    "[{}{result}: invoked {}us, {done}]",
                    op.describe(),
                    op.invoked_us
                )
            })
            .collect();
        let more = summary.violations.len() - 1;
        out.push(violation(
            ViolationKind::Linearizability,
            None,
            at_ms,
            format!(
                "history of {key} is not linearizable: {explain}; smallest failing sub-history: {}{}",
                sub.join(" "),
                if more > 0 {
                    format!(" ({more} more key(s) fail)")
                } else {
                    String::new()
                }
            ),
        ));
    }
    (out, named, summary.undecided.len())
}

/// Durability on one live replica applied to `applied`: each acknowledged write at or below
/// that index is what a reader sees, unless the committed history changed the document after it.
/// Returns the finding and the lost writes (indices into `ops`).
/// Acknowledged writes per document, in history order: (operation number, operation).
pub type AckedWrites<'a> = BTreeMap<(&'a str, &'a str), Vec<(usize, &'a ClientOp)>>;

/// The acknowledged writes of a history, by document (built once for every replica checked).
pub fn acked_writes(ops: &[ClientOp]) -> AckedWrites<'_> {
    let mut acked: AckedWrites<'_> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        let (Some(k), Some(_)) = (&op.key, op.ack) else {
            continue;
        };
        if !matches!(op.kind, ClientKind::Get) {
            acked.entry((&op.collection, k)).or_default().push((i, op));
        }
    }
    acked
}

pub fn check_durability(
    acked: &AckedWrites<'_>,
    model: &Model,
    node: &str,
    applied: Index,
    data: &BTreeMap<String, Collection>,
    at_ms: u64,
) -> (Vec<Violation>, Vec<usize>) {
    // The last acknowledged write per document at or below `applied` (the first in history
    // order among writes acknowledged at the same index).
    let index = |w: &ClientOp| w.ack.map_or(0, |a| a.0);
    let last = acked.iter().filter_map(|(doc, writes)| {
        let mut below = writes.iter().filter(|(_, w)| index(w) <= applied);
        let first = below.next()?;
        let latest = below.fold(first, |l, w| if index(w.1) > index(l.1) { w } else { l });
        Some((*doc, *latest))
    });
    let (mut bad, mut named) = (Vec::new(), Vec::new());
    for ((c, k), (i, w)) in last {
        let seen = data.get(c).and_then(|col| col.get(k));
        let expected = model.value_at(c, k, applied);
        if seen != expected {
            bad.push(format!(
                "{} (acknowledged at index {}) is gone: {node} reads {} where the committed history leaves {}",
                w.describe(),
                w.ack.map_or(0, |a| a.0),
                show(seen),
                show(expected)
            ));
            named.push(i);
        }
    }
    let found = summarize(
        ViolationKind::Durability,
        Some(node.to_string()),
        at_ms,
        &format!("acknowledged write(s) lost on {node} at applied index {applied}"),
        bad,
    );
    (found, named)
}

/// The history as the report's timeline draws it: `named` lists (operation, violation kind)
/// pairs the checkers' findings name. Only a hosted system's operations end definitely refused
/// (`failed`): the engine's client retries until acknowledged or out of time.
pub fn for_report(ops: &[ClientOp], named: &[(usize, ViolationKind)]) -> Vec<reports::ClientOp> {
    let mut by_op: BTreeMap<usize, Vec<ViolationKind>> = BTreeMap::new();
    for (i, kind) in named {
        let kinds = by_op.entry(*i).or_default();
        if !kinds.contains(kind) {
            kinds.push(*kind);
        }
    }
    ops.iter()
        .enumerate()
        .map(|(i, op)| reports::ClientOp {
            client: (op.client != u32::MAX).then_some(op.client),
            seq: op.session.seq,
            op: op.kind.name().to_string(),
            collection: op.collection.clone(),
            key: op.key.clone(),
            value: match &op.kind {
                ClientKind::Put(v) | ClientKind::Append(v) => Some(show(Some(v))),
                _ => None,
            },
            invoked_us: op.invoked_us,
            completed_us: op.acked_us.or(op.returned_us),
            outcome: if op.acked_us.is_some() {
                reports::OpOutcome::Ok
            } else if op.failed {
                reports::OpOutcome::Failed
            } else {
                reports::OpOutcome::Unknown
            },
            index: op.ack.map(|(index, _)| index),
            term: op.ack.map(|(_, term)| term),
            read: op.read.as_ref().map(|v| show(v.as_ref())),
            named_by: by_op.remove(&i).unwrap_or_default(),
        })
        .collect()
}
