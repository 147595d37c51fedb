//! The end-of-run checks of a hosted system: client outcomes against the canonical applied
//! history, state agreement between live nodes, and the liveness verdict.

use std::collections::BTreeMap;

use reports::{Violation, ViolationKind};

use super::super::clients::{summarize, ClientKind, ClientOp};
use super::super::hosted::HostedStatus;
use super::{ms, HostedChecks};

/// The call label an applied operation starts with (`c3#17` of `c3#17 put k5`; empty for an
/// entry without a client operation).
fn label_of(op: &str) -> &str {
    op.split(' ').next().unwrap_or("")
}

/// The label of a client operation's call: `c{client}#{seq}` of its session.
fn call_label(op: &ClientOp) -> String {
    format!("c{}#{}", op.session.client, op.session.seq)
}

fn shown(op: &str) -> String {
    if op.is_empty() {
        "without a client operation".to_string()
    } else {
        format!("`{op}`")
    }
}

/// Where an operation was applied: (index, term, node, at_us).
type AppliedAt = (u64, u64, u8, u64);

impl HostedChecks {
    /// End: every acknowledged client op names its own entry (ack (index, term) == the
    /// canonical applied entry at index, whose op label is the op's `c{client}#{seq}` of its
    /// session), and an op the client was told Failed was never applied on any node.
    ///
    /// A wrong write acknowledgement is `Durability` (the write the client trusts is not the
    /// committed one), a wrong read acknowledgement and an applied refused operation are
    /// `Linearizability`. Misses a read answered without a log entry of its own (a read-index or
    /// lease read must be acknowledged without an entry: `ack: None`, judged by
    /// linearizability alone), and a refused operation applied only on a node that never
    /// reported it (a snapshot carries it).
    pub fn check_acks(&self, ops: &[ClientOp], at_ms: u64) -> Vec<Violation> {
        let labels = if ops.iter().any(|o| o.failed) {
            self.applied_labels()
        } else {
            BTreeMap::new()
        };
        let (mut writes, mut reads, mut refused) = (Vec::new(), Vec::new(), Vec::new());
        for op in ops {
            let label = call_label(op);
            if let Some((index, term)) = op.ack {
                if let Some(p) = self.ack_problem(&label, index, term) {
                    let line = format!(
                        "{} acknowledged as index {index} term {term} at {}, but {p}",
                        op.describe(),
                        ms(op.acked_us.unwrap_or(0))
                    );
                    match op.kind {
                        ClientKind::Get => reads.push(line),
                        _ => writes.push(line),
                    }
                }
            }
            if let (true, Some(&(i, t, n, at))) = (op.failed, labels.get(label.as_str())) {
                refused.push(format!(
                    "{} was told it failed at {}, but n{n} applied it as index {i} term {t} at {}",
                    op.describe(),
                    ms(op.returned_us.unwrap_or(0)),
                    ms(at)
                ));
            }
        }
        let mut out = summarize(
            ViolationKind::Durability,
            None,
            at_ms,
            "acknowledged write(s) not applied as their own entry",
            writes,
        );
        out.extend(summarize(
            ViolationKind::Linearizability,
            None,
            at_ms,
            "read(s) acknowledged with an entry not their own",
            reads,
        ));
        out.extend(summarize(
            ViolationKind::Linearizability,
            None,
            at_ms,
            "operation(s) refused to their client but applied",
            refused,
        ));
        out
    }

    /// What is wrong with acknowledging the call `label` as entry `(index, term)`.
    fn ack_problem(&self, label: &str, index: u64, term: u64) -> Option<String> {
        match self.canonical.get(&index) {
            Some(a) if a.term == term && label_of(&a.op) == label => None,
            Some(a) => Some(format!(
                "the entry applied at index {index} is term {} {} (n{} applied it at {})",
                a.term,
                shown(&a.op),
                a.node,
                ms(a.at_us)
            )),
            None if index > self.applied_through() => Some(format!(
                "no node applied index {index} (applied through {})",
                self.applied_through()
            )),
            None => Some(format!(
                "no node reported applying index {index} (applied through {})",
                self.applied_through()
            )),
        }
    }

    /// Every client call any node applied, canonically or not: its first application.
    fn applied_labels(&self) -> BTreeMap<&str, AppliedAt> {
        let mut labels = BTreeMap::new();
        for (i, a) in &self.canonical {
            let l = label_of(&a.op);
            if !l.is_empty() {
                labels.entry(l).or_insert((*i, a.term, a.node, a.at_us));
            }
        }
        for d in &self.divergent {
            let l = label_of(&d.op);
            if !l.is_empty() {
                labels
                    .entry(l)
                    .or_insert((d.index, d.term, d.node, d.at_us));
            }
        }
        labels
    }

    /// End: live nodes at equal applied index have equal state digests (`DbhashMismatch`, one
    /// per disagreeing index). Misses nodes that diverge only at indexes where no two of them
    /// stop, and a divergence the adapter's digest does not cover.
    pub fn check_agreement(statuses: &BTreeMap<u8, HostedStatus>, at_ms: u64) -> Vec<Violation> {
        let mut at: BTreeMap<u64, BTreeMap<u64, Vec<u8>>> = BTreeMap::new();
        for (n, s) in statuses {
            at.entry(s.applied)
                .or_default()
                .entry(s.state_digest)
                .or_default()
                .push(*n);
        }
        at.into_iter()
            .filter(|(_, digests)| digests.len() > 1)
            .map(|(applied, digests)| {
                let groups: Vec<String> = digests
                    .iter()
                    .map(|(d, nodes)| {
                        let names: Vec<String> = nodes.iter().map(|n| format!("n{n}")).collect();
                        format!("{} state digest {d:#018x}", names.join(" and "))
                    })
                    .collect();
                super::violation(
                    ViolationKind::DbhashMismatch,
                    None,
                    at_ms,
                    format!(
                        "live nodes applied through index {applied} hold different states: {}",
                        groups.join("; ")
                    ),
                )
            })
            .collect()
    }

    /// What stands between the cluster and convergence (empty = converged): `statuses` has
    /// every voter (`None` = down or not started). Converged means: some node leads a term,
    /// every live node reports that term and that leader, and every live node applied through
    /// the leader's last log index. Without a leader, the one gap names the elections since
    /// `since_us` from the saved votes (the last few terms: who voted for whom, and whether the
    /// vote split).
    pub fn liveness_gaps(
        &self,
        statuses: &BTreeMap<u8, Option<HostedStatus>>,
        now_us: u64,
        since_us: u64,
    ) -> Vec<String> {
        let live: Vec<(u8, &HostedStatus)> = statuses
            .iter()
            .filter_map(|(n, s)| s.as_ref().map(|s| (*n, s)))
            .collect();
        let down: Vec<u8> = statuses
            .iter()
            .filter(|(_, s)| s.is_none())
            .map(|(n, _)| *n)
            .collect();
        let leading = |(n, s): &&(u8, &HostedStatus)| s.leader == Some(*n);
        let Some(&(l, ls)) = live
            .iter()
            .filter(leading)
            .max_by_key(|(n, s)| (s.term, std::cmp::Reverse(*n)))
        else {
            let why = self
                .elections
                .no_leader(self.voters, &down, now_us, since_us);
            return vec![why];
        };
        let mut gaps = Vec::new();
        for &(n, s) in &live {
            if n == l {
                continue;
            }
            if s.leader == Some(n) {
                gaps.push(format!(
                    "n{n} still leads term {}, and n{l} leads term {}",
                    s.term, ls.term
                ));
            } else if s.term != ls.term || s.leader != Some(l) {
                let follows = s
                    .leader
                    .map_or("no leader".to_string(), |x| format!("n{x}"));
                gaps.push(format!(
                    "n{n} in term {} following {follows}, not n{l} of term {}",
                    s.term, ls.term
                ));
            }
        }
        for &(n, s) in &live {
            if s.applied < ls.last_log {
                let whose = if n == l {
                    "its own".to_string()
                } else {
                    format!("leader n{l}'s")
                };
                gaps.push(format!(
                    "n{n} applied through {} (committed {}) of {whose} log through {}",
                    s.applied, s.committed, ls.last_log
                ));
            }
        }
        gaps
    }
}
