//! The event trace of one run: (simulated time, node, kind, detail) lines, hashed as they are
//! recorded. Same binary + scenario + seed ⇒ same hash; that is the determinism contract.

use std::collections::VecDeque;

use reports::TraceEvent;

/// How many trailing events a failure report keeps when the full trace is not requested.
pub const TAIL_EVENTS: usize = 400;

/// Event kinds that change what the cluster is (faults, crashes, leadership, truncation,
/// failed or abandoned storage steps, DDL, key rotations): the causal excerpt of a failure is made of these,
/// not of the routine applies, commits, checkpoints and pick-ups around them.
pub const CAUSAL_KINDS: [&str; 22] = [
    "fault",
    "kill",
    "restart",
    "straggler",
    "leader",
    "truncate",
    "abort",
    "crash",
    "step-up",
    "step-down",
    "sweep",
    "checkpoint-failed",
    "pickup-failed",
    "ddl",
    "admin",
    "rotate",
    "keystore",
    "keystore-flush",
    "pickup-skipped",
    "drop-busy",
    "leader-step-down",
    "retired",
];
const CAUSAL_KEPT: usize = 2_000;

pub struct Trace {
    hasher: xxhash_rust::xxh3::Xxh3,
    /// Node names seen, so a kept line holds an index, not a copy of its node's name.
    names: Vec<String>,
    tail: VecDeque<Line>,
    causal: VecDeque<Line>,
    full: Option<Vec<Line>>,
    count: u64,
}

/// A kept trace line: what a `TraceEvent` says, without the two strings per line that only
/// a failure report reads.
#[derive(Clone)]
struct Line {
    at_us: u64,
    node: u16,
    kind: &'static str,
    detail: String,
}

impl Trace {
    pub fn new(keep_full: bool) -> Self {
        Trace {
            hasher: xxhash_rust::xxh3::Xxh3::new(),
            names: Vec::new(),
            tail: VecDeque::new(),
            causal: VecDeque::new(),
            full: keep_full.then(Vec::new),
            count: 0,
        }
    }

    pub fn record(&mut self, at_us: u64, node: &str, kind: &'static str, detail: String) {
        self.hasher.update(&at_us.to_le_bytes());
        for part in [node, kind, detail.as_str()] {
            self.hasher.update(&(part.len() as u32).to_le_bytes());
            self.hasher.update(part.as_bytes());
        }
        self.count += 1;
        let node = match self.names.iter().position(|n| n == node) {
            Some(i) => i as u16,
            None => {
                self.names.push(node.to_string());
                (self.names.len() - 1) as u16
            }
        };
        let line = Line {
            at_us,
            node,
            kind,
            detail,
        };
        if let Some(full) = &mut self.full {
            full.push(line.clone());
        }
        if CAUSAL_KINDS.contains(&kind) {
            if self.causal.len() == CAUSAL_KEPT {
                self.causal.pop_front();
            }
            self.causal.push_back(line.clone());
        }
        if self.tail.len() == TAIL_EVENTS {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    fn event(&self, l: &Line) -> TraceEvent {
        TraceEvent {
            at_us: l.at_us,
            node: self.names[l.node as usize].clone(),
            kind: l.kind.to_string(),
            detail: l.detail.clone(),
        }
    }

    pub fn hash_hex(&self) -> String {
        format!("{:016x}", self.hasher.digest())
    }
    pub fn count(&self) -> u64 {
        self.count
    }
    pub fn tail(&self, n: usize) -> Vec<TraceEvent> {
        let skip = self.tail.len().saturating_sub(n);
        self.tail.iter().skip(skip).map(|l| self.event(l)).collect()
    }
    /// The last `n` causal events at or before `at_us`, oldest first.
    pub fn causal_before(&self, at_us: u64, n: usize) -> Vec<TraceEvent> {
        let upto: Vec<&Line> = self.causal.iter().filter(|e| e.at_us <= at_us).collect();
        upto[upto.len().saturating_sub(n)..]
            .iter()
            .map(|l| self.event(l))
            .collect()
    }
    pub fn take_full(&mut self) -> Option<Vec<TraceEvent>> {
        let full = self.full.take()?;
        Some(full.iter().map(|l| self.event(l)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_covers_time_node_kind_and_detail() {
        let mk = |t: u64, n: &str, k: &'static str, d: &str| {
            let mut tr = Trace::new(false);
            tr.record(t, n, k, d.to_string());
            tr.hash_hex()
        };
        let base = mk(1, "n1", "leader", "term 2");
        assert_eq!(base, mk(1, "n1", "leader", "term 2"));
        assert_ne!(base, mk(2, "n1", "leader", "term 2"));
        assert_ne!(base, mk(1, "n2", "leader", "term 2"));
        assert_ne!(base, mk(1, "n1", "leaderx", "term 2"));
        assert_ne!(base, mk(1, "n1", "leader", "term 3"));
        // field boundaries matter
        assert_ne!(mk(1, "n1", "ab", "c"), mk(1, "n1", "a", "bc"));
    }

    #[test]
    fn keeps_a_bounded_tail_and_optionally_everything() {
        let mut tr = Trace::new(true);
        for i in 0..(TAIL_EVENTS as u64 + 10) {
            tr.record(i, "n1", "e", String::new());
        }
        assert_eq!(tr.tail(5).last().unwrap().at_us, TAIL_EVENTS as u64 + 9);
        assert_eq!(tr.tail(usize::MAX).len(), TAIL_EVENTS);
        assert_eq!(tr.take_full().unwrap().len(), TAIL_EVENTS + 10);
        assert_eq!(tr.count(), TAIL_EVENTS as u64 + 10);
    }
}

/// The trace line (kind, detail) of an engine observation: text derived from the typed event,
/// never parsed back.
pub fn describe(ev: &engine::observe::Event) -> (&'static str, String) {
    use engine::observe::Event;
    use engine::raft::RaftEvent;
    match ev {
        Event::Started {
            term,
            voted_for,
            log_len,
            commit,
            torn_bytes,
        } => (
            "start",
            format!("term {term} vote {voted_for:?} log {log_len} commit {commit} torn {torn_bytes}"),
        ),
        Event::Raft(r) => match r {
            RaftEvent::BecameLeader { term, .. } => ("leader", format!("term {term}")),
            RaftEvent::BecameCandidate { term } => ("candidate", format!("term {term}")),
            RaftEvent::BecameFollower { term, leader } => {
                ("follower", format!("term {term} leader {leader:?}"))
            }
            RaftEvent::VoteGranted {
                term,
                candidate,
                candidate_last_term,
                own_last_term,
                candidate_last_index,
                own_last_index,
            } => (
                "vote",
                format!(
                    "term {term} for n{candidate} (its log {candidate_last_index}@t{candidate_last_term}, ours {own_last_index}@t{own_last_term})"
                ),
            ),
            RaftEvent::Committed { index, term, .. } => ("commit", format!("{index} term {term}")),
            RaftEvent::Truncated {
                from,
                removed_last,
                last_applied,
                commit,
                ..
            } => (
                "truncate",
                format!("{from}..={removed_last} (last_applied {last_applied}, commit {commit})"),
            ),
        },
        Event::Applied {
            index,
            term,
            ts,
            digest,
            executed,
            ..
        } => {
            let dup = if *executed {
                ""
            } else {
                " (duplicate client op, skipped)"
            };
            (
                "apply",
                format!("{index} term {term} ts {ts} {digest:016x}{dup}"),
            )
        }
        Event::Warn(w) => ("warn", w.to_string()),
        Event::Keystore {
            ts,
            kek_version,
            cmk_version,
            why,
            ..
        } => (
            "keystore",
            format!("now kek v{kek_version} cmk v{cmk_version} ts {ts}: {why}"),
        ),
        Event::Storage(s) => (s.kind(), s.to_string()),
        Event::Sealed { key, nonce, .. } => {
            let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
            ("seal", format!("key {key:016x} nonce {hex}"))
        }
    }
}
