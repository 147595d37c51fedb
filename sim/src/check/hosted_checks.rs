//! The generic checkers of a hosted system, over its adapter's typed observations
//! (`hosted::HostedRecord`). Online, record by record, in time order:
//! - one leader per term, one vote per voter per term, votes that never go backwards
//!   (`votes`);
//! - every commit on a quorum of durable logs (`quorum`);
//! - one applied history: every node applies the same entry at an index, and commits agree
//!   with it (`applied`);
//! - no committed entry is ever truncated (`truncation`), nor lost from a node's disk across a
//!   restart (`restart-loss`).
//!
//! At the end (`end`): every acknowledgement names its own applied entry and no refused
//! operation took effect; live nodes at one applied index hold one state; and, while the
//! liveness phase runs, what stands between the cluster and convergence.
//!
//! Node ids are `u8` (`n1`..); voters are `1..=voters`. An index 0 names nothing (logs start at
//! 1). Each finding names nodes, terms, indexes and what each node held.

mod end;
mod logs;
mod votes;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use reports::{Violation, ViolationKind};

use super::hosted::{HostedEvent, HostedRecord};
use super::violation;
use logs::NodeLog;
use votes::Elections;

/// Findings per property before the rest of them are dropped (a broken run must not flood the
/// report, nor one property's flood hide another's).
const MAX_PER_PROPERTY: u32 = 5;

/// `5200 ms`.
fn ms(at_us: u64) -> String {
    format!("{} ms", at_us / 1000)
}

#[derive(Debug, Default)]
struct Reporter {
    violations: Vec<Violation>,
    counts: BTreeMap<&'static str, u32>,
    once: BTreeSet<(&'static str, u64)>,
}

impl Reporter {
    fn report(
        &mut self,
        property: &'static str,
        kind: ViolationKind,
        node: u8,
        at_us: u64,
        msg: String,
    ) {
        let n = self.counts.entry(property).or_default();
        *n += 1;
        if *n <= MAX_PER_PROPERTY {
            let msg = if *n == MAX_PER_PROPERTY {
                format!("{msg} (further {property} findings are not reported)")
            } else {
                msg
            };
            let name = Some(format!("n{node}"));
            self.violations
                .push(violation(kind, name, at_us / 1000, msg));
        }
    }

    /// Reports once per `key` (e.g. one two-leaders finding per term).
    fn report_once(
        &mut self,
        key: (&'static str, u64),
        kind: ViolationKind,
        node: u8,
        at_us: u64,
        msg: String,
    ) {
        if self.once.insert(key) {
            self.report(key.0, kind, node, at_us, msg);
        }
    }
}

/// One node as the checker follows it.
#[derive(Debug, Default)]
struct Node {
    incarnation: u64,
    up: bool,
    log: NodeLog,
    /// A restarted incarnation whose first record (its `Loaded`) is still to come.
    loading: bool,
}

/// The first applied entry at an index: the canonical history.
#[derive(Debug, Clone)]
struct Applied {
    term: u64,
    op: String,
    node: u8,
    at_us: u64,
}

/// The term an index was first committed with (the committing node's entry there).
#[derive(Debug, Clone, Copy)]
struct Commit {
    term: u64,
    node: u8,
    at_us: u64,
}

/// How a committed index's term is known (for findings: `n1 applied it at 5200 ms`).
#[derive(Debug, Clone, Copy)]
enum Known {
    Applied(u8, u64),
    Committed(u8, u64),
}

impl std::fmt::Display for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Known::Applied(n, at) => write!(f, "n{n} applied it at {}", ms(*at)),
            Known::Committed(n, at) => write!(f, "n{n} committed it at {}", ms(*at)),
        }
    }
}

/// An apply that disagreed with the canonical entry (kept so a refused operation applied only
/// there still counts as applied).
#[derive(Debug, Clone)]
struct Divergent {
    index: u64,
    term: u64,
    op: String,
    node: u8,
    at_us: u64,
}

/// The online checker of one run; see the module doc. Feed it `started` before an
/// incarnation's records, `killed` when the harness kills a node, and every record in time
/// order through `observe`.
///
/// Each property's doc names a bug it would still miss:
/// - `quorum` (committed on a quorum): a commit whose quorum held the entry durably but in a
///   log the system later ignores (e.g. a snapshot the adapter reports installed that the
///   system never reads), and indexes whose term the committing node's log no longer shows
///   (covered by its snapshot when it commits them): they are not checked.
/// - `applied` (one applied history): divergence no node applies (entries committed but never
///   applied: the end checks see what nodes serve instead), and a divergent state machine that
///   applies the right entries wrongly (`check_agreement` compares digests).
/// - `truncation` (committed entries never truncated): the truncation of a committed entry the
///   node held only unflushed, or whose term the checker never learned (committed under a
///   snapshot).
/// - `restart-loss` (what was durable survives a restart): the loss of a durable entry not
///   (yet) known committed, since a torn in-flight truncation may legitimately remove it.
#[derive(Debug)]
pub struct HostedChecks {
    voters: u8,
    nodes: BTreeMap<u8, Node>,
    elections: Elections,
    canonical: BTreeMap<u64, Applied>,
    commits: BTreeMap<u64, Commit>,
    /// Every index at or below has had its quorum checked (or could not be).
    quorum_checked: u64,
    divergent: Vec<Divergent>,
    reporter: Reporter,
}

/// Divergent applies kept for the end checks (the first ones; they are findings already).
const MAX_DIVERGENT: usize = 1000;

impl HostedChecks {
    pub fn new(voters: u8) -> Self {
        HostedChecks {
            voters,
            nodes: BTreeMap::new(),
            elections: Elections::default(),
            canonical: BTreeMap::new(),
            commits: BTreeMap::new(),
            quorum_checked: 0,
            divergent: Vec::new(),
            reporter: Reporter::default(),
        }
    }

    /// The harness started incarnation `incarnation` of `node` (called before its records: an
    /// unflushed tail of the previous incarnation is gone; its Loaded event then says what
    /// survived).
    pub fn started(&mut self, node: u8, incarnation: u64, _at_us: u64) {
        let n = self.nodes.entry(node).or_default();
        n.loading = n.incarnation > 0;
        n.incarnation = incarnation;
        n.up = true;
        n.log.drop_pending();
    }

    /// The harness killed `node` (its unflushed entries are lost on the next start).
    pub fn killed(&mut self, node: u8, _at_us: u64) {
        let n = self.nodes.entry(node).or_default();
        n.up = false;
        n.log.drop_pending();
    }

    /// The online findings so far (each returned once).
    pub fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.reporter.violations)
    }

    /// The highest index any node applied.
    pub fn applied_through(&self) -> u64 {
        self.canonical.last_key_value().map_or(0, |(i, _)| *i)
    }

    /// One record, in time order. A record of an older incarnation than the node's current one,
    /// or of a killed incarnation, is ignored; one of a newer incarnation starts it.
    pub fn observe(&mut self, rec: &HostedRecord) {
        let current = self.nodes.get(&rec.node).map(|n| (n.incarnation, n.up));
        match current {
            Some((inc, _)) if rec.incarnation < inc => return,
            Some((inc, false)) if rec.incarnation == inc => return,
            Some((inc, true)) if rec.incarnation == inc => {}
            _ => self.started(rec.node, rec.incarnation, rec.at_us),
        }
        let (node, at_us) = (rec.node, rec.at_us);
        let loading = std::mem::take(&mut self.nodes.get_mut(&node).expect("started").loading);
        match &rec.event {
            HostedEvent::Loaded { entries, covered } => {
                if loading {
                    self.restart_loss(node, rec.incarnation, at_us, entries, *covered);
                }
                self.log(node).load(entries, *covered);
            }
            HostedEvent::Vote {
                term,
                voted_for,
                committed,
            } => {
                let who = (node, rec.incarnation, at_us);
                let rep = &mut self.reporter;
                self.elections.vote(rep, who, *term, *voted_for, *committed);
            }
            HostedEvent::Leader { term } => {
                self.elections
                    .leader(&mut self.reporter, node, *term, at_us);
            }
            HostedEvent::Appended { entries } => self.log(node).append(entries),
            HostedEvent::Flushed { upto } => self.log(node).flush(*upto),
            HostedEvent::Truncated { from } => self.truncated(node, *from, at_us),
            HostedEvent::Purged { upto } => self.log(node).cover(*upto),
            HostedEvent::SnapshotInstalled { index, term } => {
                self.snapshot(node, *index, *term, at_us)
            }
            HostedEvent::Committed { index, term } => self.committed(node, *index, *term, at_us),
            HostedEvent::Applied { index, term, op } => {
                self.applied(node, *index, *term, op, at_us)
            }
            HostedEvent::Note(_) => {}
        }
    }

    fn log(&mut self, node: u8) -> &mut NodeLog {
        &mut self.nodes.entry(node).or_default().log
    }

    /// The term `index` is known committed with: applied, or committed by some node.
    fn committed_term(&self, index: u64) -> Option<(u64, Known)> {
        if let Some(a) = self.canonical.get(&index) {
            return Some((a.term, Known::Applied(a.node, a.at_us)));
        }
        let c = self.commits.get(&index)?;
        Some((c.term, Known::Committed(c.node, c.at_us)))
    }

    /// `node` learned everything through `(index, term)` is committed.
    fn committed(&mut self, node: u8, index: u64, term: u64, at_us: u64) {
        if index == 0 {
            return;
        }
        if let Some((t, how)) = self.committed_term(index) {
            if t != term {
                let msg = format!(
                    "n{node} committed through index {index} term {term}, but index {index} is term {t} ({how})"
                );
                self.reporter
                    .report("applied", ViolationKind::RaftSafety, node, at_us, msg);
            }
        }
        if index <= self.quorum_checked {
            return;
        }
        let from = self.quorum_checked + 1;
        self.quorum_checked = index;
        let mut short = Vec::new();
        for i in from..=index {
            let t = if i == index {
                term
            } else {
                match self.nodes.get(&node).and_then(|n| n.log.term_at(i)) {
                    Some(t) => t,
                    None => continue,
                }
            };
            self.commits.entry(i).or_insert(Commit {
                term: t,
                node,
                at_us,
            });
            let holders = (1..=self.voters)
                .filter(|v| self.nodes.get(v).is_some_and(|n| n.log.holds_durably(i, t)))
                .count();
            if holders < self.majority() {
                short.push((i, t, holders));
            }
        }
        if let Some(&(i, t, holders)) = short.first() {
            self.report_quorum(node, (index, term), (i, t, holders), short.len(), at_us);
        }
    }

    fn majority(&self) -> usize {
        usize::from(self.voters) / 2 + 1
    }

    /// `n1 committed through 9 term 2, but entry 8 term 2 is durable on 1 of 3 voters ...`.
    fn report_quorum(
        &mut self,
        node: u8,
        (index, term): (u64, u64),
        (i, t, holders): (u64, u64, usize),
        indexes: usize,
        at_us: u64,
    ) {
        let held: Vec<String> = (1..=self.voters)
            .map(|v| {
                let how = match self.nodes.get(&v) {
                    Some(n) => n.log.describe(i, t),
                    None => "has no log (never started)".to_string(),
                };
                format!("n{v} {how}")
            })
            .collect();
        let more = if indexes > 1 {
            format!(" ({} more index(es) through {index} likewise)", indexes - 1)
        } else {
            String::new()
        };
        let msg = format!(
            "n{node} committed through index {index} term {term} at {}, but entry {i} term {t} is durable on only {holders} of {} voters, a commit needs {}: {}{more}",
            ms(at_us),
            self.voters,
            self.majority(),
            held.join("; ")
        );
        self.reporter
            .report("quorum", ViolationKind::RaftSafety, node, at_us, msg);
    }

    /// `node` applied `(index, term)` carrying `op`.
    fn applied(&mut self, node: u8, index: u64, term: u64, op: &str, at_us: u64) {
        if let Some(a) = self.canonical.get(&index) {
            if a.term != term || a.op != op {
                let msg = format!(
                    "n{node} applied index {index} term {term} `{op}` at {}, but n{} applied index {index} term {} `{}` at {}",
                    ms(at_us),
                    a.node,
                    a.term,
                    a.op,
                    ms(a.at_us)
                );
                self.reporter
                    .report("applied", ViolationKind::StateDivergence, node, at_us, msg);
                if self.divergent.len() < MAX_DIVERGENT {
                    self.divergent.push(Divergent {
                        index,
                        term,
                        op: op.to_string(),
                        node,
                        at_us,
                    });
                }
            }
            return;
        }
        if let Some(c) = self.commits.get(&index).copied() {
            if c.term != term {
                let msg = format!(
                    "n{node} applied index {index} term {term} `{op}`, but n{} committed index {index} as term {} at {}",
                    c.node,
                    c.term,
                    ms(c.at_us)
                );
                self.reporter
                    .report("applied", ViolationKind::RaftSafety, node, at_us, msg);
            }
        }
        let op = op.to_string();
        self.canonical.insert(
            index,
            Applied {
                term,
                op,
                node,
                at_us,
            },
        );
    }

    /// `node` installed a snapshot through `(index, term)`: its log is covered through it.
    fn snapshot(&mut self, node: u8, index: u64, term: u64, at_us: u64) {
        self.log(node).cover(index);
        if let Some((t, how)) = self.committed_term(index) {
            if t != term {
                let msg = format!(
                    "n{node} installed a snapshot through index {index} term {term}, but index {index} is term {t} ({how})"
                );
                self.reporter
                    .report("applied", ViolationKind::StateDivergence, node, at_us, msg);
            }
        }
    }

    /// `node` removed its entries from `from` on: none of its durable ones may be committed.
    fn truncated(&mut self, node: u8, from: u64, at_us: u64) {
        let cut = self.log(node).truncate(from);
        let committed: Vec<(u64, u64, Known)> = cut
            .iter()
            .filter_map(|&(i, t)| match self.committed_term(i) {
                Some((ct, how)) if ct == t => Some((i, t, how)),
                _ => None,
            })
            .collect();
        let Some((i, t, how)) = committed.first() else {
            return;
        };
        let (last_i, last_t) = cut.last().copied().unwrap_or((*i, *t));
        let more = if committed.len() > 1 {
            format!(
                " and {} more committed entr(ies) through {}",
                committed.len() - 1,
                committed.last().map_or(0, |c| c.0)
            )
        } else {
            String::new()
        };
        let msg = format!(
            "n{node} truncated its log from index {from} at {}, cutting committed entry {i} term {t} ({how}){more}; it held {}..={last_i} durably (terms {}..={last_t})",
            ms(at_us),
            cut[0].0,
            cut[0].1
        );
        self.reporter
            .report("truncation", ViolationKind::RaftSafety, node, at_us, msg);
    }

    /// A restarted incarnation loaded `entries`: every committed entry its log held durably
    /// before (above what the load covers) must be among them.
    fn restart_loss(
        &mut self,
        node: u8,
        inc: u64,
        at_us: u64,
        entries: &[(u64, u64)],
        covered: u64,
    ) {
        let loaded: BTreeMap<u64, u64> = entries.iter().copied().collect();
        let Some(n) = self.nodes.get(&node) else {
            return;
        };
        let lost: Vec<(u64, u64, Option<u64>)> = n
            .log
            .durable()
            .filter(|&(i, t)| i > covered && loaded.get(&i) != Some(&t))
            .filter(|&(i, t)| self.committed_term(i).is_some_and(|(ct, _)| ct == t))
            .map(|(i, t)| (i, t, loaded.get(&i).copied()))
            .collect();
        let Some(&(i, t, instead)) = lost.first() else {
            return;
        };
        let instead = match instead {
            Some(x) => format!("term {x} at {i}"),
            None => "nothing there".to_string(),
        };
        let ends = match entries.last() {
            Some((li, lt)) => format!("its loaded log ends at {li} term {lt}"),
            None => "its loaded log is empty".to_string(),
        };
        let msg = format!(
            "n{node} restarted (incarnation {inc}) without committed entry {i} term {t}, durable before the restart: it loaded {instead} ({ends}, covered through {covered}); {} committed entr(ies) lost in all",
            lost.len()
        );
        self.reporter
            .report("restart-loss", ViolationKind::Durability, node, at_us, msg);
    }
}
