//! Elections as the nodes' saved votes and leader reports show them: one leader per term, one
//! vote per voter per term, votes that never go backwards, and — for the liveness verdict — an
//! account of the recent elections when no node leads.

use std::collections::BTreeMap;

use reports::ViolationKind;

use super::{ms, Reporter};

/// One vote as a node saved it.
#[derive(Debug, Clone, Copy)]
struct Cast {
    candidate: u8,
    at_us: u64,
    incarnation: u64,
}

/// Who voted for whom in one term.
#[derive(Debug, Default)]
struct TermVotes {
    last_at: u64,
    /// Uncommitted votes: the grant each voter gave first in the term.
    grants: BTreeMap<u8, Cast>,
    /// Committed votes: the leader each node accepted first in the term.
    accepts: BTreeMap<u8, Cast>,
}

/// What shows a node leads a term.
#[derive(Debug, Clone)]
struct Claim {
    node: u8,
    at_us: u64,
    how: String,
}

/// A node's highest saved vote so far, in any incarnation.
#[derive(Debug, Clone, Copy)]
struct Saved {
    term: u64,
    voted_for: Option<u8>,
    at_us: u64,
    incarnation: u64,
}

/// The election checks.
///
/// One leader per term (`two-leaders`): from committed votes (a node's own: it won; another
/// node's: it accepted that leader) and `Leader` reports. Misses two leaders whose terms never
/// show in any record (a leader that never saves its committed vote nor reports itself), and
/// leadership a node claims only in messages.
///
/// One vote per voter per term (`double-vote`): two uncommitted votes of one node for different
/// candidates in one term, in any incarnations (a committed vote is no grant: a node that voted
/// for n1 may accept n2, elected without it). Misses a grant the system never saves (a vote
/// counted by the candidate but not persisted by the voter: openraft #1236's shape, which the
/// truncation and quorum checks see instead).
///
/// Votes never go backwards (`vote-regression`): a node's saved vote term never decreases, in
/// one incarnation or across restarts, and a vote cast in a term is not forgotten in it. Misses
/// a regression to a vote the node never reports (e.g. a lost vote file that the system
/// replaces with its newest term before saying anything).
#[derive(Debug, Default)]
pub(super) struct Elections {
    terms: BTreeMap<u64, TermVotes>,
    leaders: BTreeMap<u64, Claim>,
    saved: BTreeMap<u8, Saved>,
}

fn who(n: Option<u8>) -> String {
    n.map_or("nobody".to_string(), |n| format!("n{n}"))
}

fn incarnation_note(a: u64, b: u64) -> String {
    if a == b {
        format!("in incarnation {a}")
    } else {
        format!("in incarnation {a}, then incarnation {b}")
    }
}

impl Elections {
    /// `node` (incarnation `inc`) saved its vote.
    pub fn vote(
        &mut self,
        rep: &mut Reporter,
        (node, inc, at_us): (u8, u64, u64),
        term: u64,
        voted_for: Option<u8>,
        committed: bool,
    ) {
        self.regression(rep, (node, inc, at_us), term, voted_for);
        let Some(candidate) = voted_for else {
            return;
        };
        let cast = Cast {
            candidate,
            at_us,
            incarnation: inc,
        };
        let tv = self.terms.entry(term).or_default();
        tv.last_at = tv.last_at.max(at_us);
        if committed {
            tv.accepts.entry(node).or_insert(cast);
            let how = if candidate == node {
                "saved its own committed vote".to_string()
            } else {
                format!("n{node} accepted it as leader")
            };
            self.claim(rep, term, candidate, at_us, how);
            return;
        }
        match tv.grants.get(&node).copied() {
            None => {
                tv.grants.insert(node, cast);
            }
            Some(first) if first.candidate != candidate => {
                let msg = format!(
                    "n{node} voted twice in term {term}: for n{} at {} and for n{candidate} at {} ({})",
                    first.candidate,
                    ms(first.at_us),
                    ms(at_us),
                    incarnation_note(first.incarnation, inc)
                );
                rep.report("double-vote", ViolationKind::RaftSafety, node, at_us, msg);
            }
            Some(_) => {}
        }
    }

    fn regression(
        &mut self,
        rep: &mut Reporter,
        (node, inc, at_us): (u8, u64, u64),
        term: u64,
        voted_for: Option<u8>,
    ) {
        let now = Saved {
            term,
            voted_for,
            at_us,
            incarnation: inc,
        };
        let Some(before) = self.saved.get(&node).copied() else {
            self.saved.insert(node, now);
            return;
        };
        let problem = if term < before.term {
            Some("its vote term went backwards")
        } else if term == before.term && before.voted_for.is_some() && voted_for.is_none() {
            Some("it forgot the vote it had cast in that term")
        } else {
            None
        };
        if let Some(p) = problem {
            let across = if inc != before.incarnation {
                " across a restart"
            } else {
                ""
            };
            let msg = format!(
                "n{node} saved a vote for {} in term {term} at {} (incarnation {inc}), but it had saved a vote for {} in term {} at {} (incarnation {}): {p}{across}",
                who(voted_for),
                ms(at_us),
                who(before.voted_for),
                before.term,
                ms(before.at_us),
                before.incarnation
            );
            rep.report(
                "vote-regression",
                ViolationKind::RaftSafety,
                node,
                at_us,
                msg,
            );
        } else if term > before.term || before.voted_for.is_none() {
            self.saved.insert(node, now);
        }
    }

    /// `node` reported itself leader of `term`.
    pub fn leader(&mut self, rep: &mut Reporter, node: u8, term: u64, at_us: u64) {
        self.claim(rep, term, node, at_us, "reported itself leader".into());
    }

    fn claim(&mut self, rep: &mut Reporter, term: u64, node: u8, at_us: u64, how: String) {
        match self.leaders.get(&term) {
            None => {
                self.leaders.insert(term, Claim { node, at_us, how });
            }
            Some(first) if first.node != node => {
                let msg = format!(
                    "two leaders in term {term}: n{} ({} at {}) and n{node} ({how} at {})",
                    first.node,
                    first.how,
                    ms(first.at_us),
                    ms(at_us)
                );
                rep.report_once(
                    ("two-leaders", term),
                    ViolationKind::RaftSafety,
                    node,
                    at_us,
                    msg,
                );
            }
            Some(_) => {}
        }
    }

    /// Why no node leads: the last leader known since `since_us`, and the recent elections.
    pub fn no_leader(&self, voters: u8, down: &[u8], now_us: u64, since_us: u64) -> String {
        let mut head = match self.leaders.iter().rev().find(|(_, c)| c.at_us >= since_us) {
            Some((term, c)) => format!(
                "no leader now (the last elected since {}: n{} in term {term} at {})",
                ms(since_us),
                c.node,
                ms(c.at_us)
            ),
            None => format!(
                "no leader since {} (for {})",
                ms(since_us),
                ms(now_us.saturating_sub(since_us))
            ),
        };
        if !down.is_empty() {
            let names: Vec<String> = down.iter().map(|n| format!("n{n}")).collect();
            head.push_str(&format!(" ({} down)", names.join(", ")));
        }
        let recent: Vec<(&u64, &TermVotes)> = self
            .terms
            .iter()
            .filter(|(_, tv)| tv.last_at >= since_us)
            .collect();
        if recent.is_empty() {
            return format!("{head}: no node saved a vote since");
        }
        let lines: Vec<String> = recent
            .iter()
            .rev()
            .take(SHOWN_TERMS)
            .rev()
            .map(|(term, tv)| self.term_line(**term, tv, voters, down))
            .collect();
        if recent.len() <= SHOWN_TERMS {
            return format!("{head}: {}", lines.join("; "));
        }
        let majority = usize::from(voters) / 2 + 1;
        let failed = recent
            .iter()
            .filter(|(term, tv)| !self.leaders.contains_key(term) && best(tv).1 < majority)
            .count();
        format!(
            "{head}: {} elections since, {failed} without a majority; the last {SHOWN_TERMS}: {}",
            recent.len(),
            lines.join("; ")
        )
    }

    /// `term 7: n1 voted n1, n2 voted n2, n3 no vote (split vote: no candidate has 2 of 3)`.
    fn term_line(&self, term: u64, tv: &TermVotes, voters: u8, down: &[u8]) -> String {
        let majority = usize::from(voters) / 2 + 1;
        let mut parts = Vec::new();
        for v in 1..=voters {
            let mut part = match (tv.grants.get(&v), tv.accepts.get(&v)) {
                (Some(g), Some(a)) => {
                    format!("n{v} voted n{}, accepted n{}", g.candidate, a.candidate)
                }
                (Some(g), None) => format!("n{v} voted n{}", g.candidate),
                (None, Some(a)) => format!("n{v} accepted n{}", a.candidate),
                (None, None) => format!("n{v} no vote"),
            };
            if down.contains(&v) {
                part.push_str(" (down now)");
            }
            parts.push(part);
        }
        let candidates = tv.grants.iter().filter(|(v, c)| **v == c.candidate).count();
        let (top, votes) = best(tv);
        let outcome = match self.leaders.get(&term) {
            Some(c) => format!("n{} elected", c.node),
            None if votes >= majority => {
                format!("n{top} had {votes} of {voters} votes but never led")
            }
            None if candidates >= 2 => {
                format!("split vote: no candidate has {majority} of {voters}")
            }
            None if votes == 0 => "no candidate".to_string(),
            None => format!("no majority: n{top} has {votes} of {voters}, needs {majority}"),
        };
        format!("term {term}: {} ({outcome})", parts.join(", "))
    }
}

/// The elections shown by name when no node leads; older ones are counted.
const SHOWN_TERMS: usize = 4;

/// The candidate with the most grants in a term, and its count (lowest id on a tie).
fn best(tv: &TermVotes) -> (u8, usize) {
    let mut count: BTreeMap<u8, usize> = BTreeMap::new();
    for g in tv.grants.values() {
        *count.entry(g.candidate).or_default() += 1;
    }
    count
        .into_iter()
        .fold((0, 0), |b, (c, n)| if n > b.1 { (c, n) } else { b })
}
