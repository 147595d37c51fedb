//! Persistence before messages, checked from outside. The harness owns the disk and the
//! network, so it can read what a power cut would leave of a node's raft files at the moment the
//! node sends a message, and hold the message to it: a vote grant, a vote request, an append
//! acknowledgement or any message in a term all promise state that must already be durable.
//! The violation shows when the promise is made, not when a crash later exploits it (which
//! needs a kill in the few milliseconds between the send and the fsync).
//!
//! It also remembers what each node acknowledged and holds every later incarnation to it: a node
//! that restarts with a log shorter than what it acknowledged (less any suffix a leader made it
//! truncate since) forgot a promise, whatever its disk did — recovery must refuse to start on
//! damage it cannot repair rather than come back on less.
//!
//! What it cannot see: promises that do not travel as raft messages (a leader counting its own
//! unsynced entries towards a commit), and durability of anything but the raft files.

use std::collections::BTreeMap;

use engine::log_store::{decode_hard, decode_heads, RecordHead};
use engine::observe::Event;
use engine::raft::{HardState, Index, Message, NodeId, RaftEvent, Term};
use reports::{Violation, ViolationKind};

use super::record::{Online, Record as Observed};
use super::violation;

/// One node's durable log as far as it was read: the term of every entry.
#[derive(Debug, Default)]
struct DurableLog {
    /// The file's replacement count when it was read (a replace means start over).
    replaced: u64,
    /// Bytes of whole records read so far.
    read: usize,
    terms: Vec<Term>,
}

impl DurableLog {
    /// Catches up with the durable bytes, reading only what was appended since last time.
    fn catch_up(&mut self, bytes: &[u8], replaced: u64) {
        if replaced != self.replaced || bytes.len() < self.read {
            *self = DurableLog {
                replaced,
                ..DurableLog::default()
            };
        }
        if bytes.len() == self.read {
            return;
        }
        let (recs, valid) = decode_heads(&bytes[self.read..]);
        self.read += valid;
        for rec in recs {
            match rec {
                RecordHead::Entry(e) => {
                    self.terms.truncate(e.index.saturating_sub(1) as usize);
                    self.terms.push(e.term);
                }
                RecordHead::TruncateFrom(i) => self.terms.truncate(i.saturating_sub(1) as usize),
                RecordHead::Hard(_) => {}
            }
        }
    }

    fn last_index(&self) -> Index {
        self.terms.len() as Index
    }
}

#[derive(Debug, Default)]
pub struct Persistence {
    logs: BTreeMap<NodeId, DurableLog>,
    /// Violations reported (the first few are kept: one bug repeats on every message).
    pub found: u32,
    /// Per node: the log index it has acknowledged through, less what it truncated since.
    acked: BTreeMap<NodeId, Index>,
    /// Per node: the durable hard state as last read, with the file's replacement count.
    hard: BTreeMap<NodeId, (u64, HardState)>,
    /// Per node: the disk's change count when its files were last read.
    read_at: BTreeMap<NodeId, u64>,
    forgotten: Vec<Violation>,
}

impl Persistence {
    /// Whether `node`'s durable files changed since they were last read (`changes`: the
    /// disk's change count for the node); records the count as read.
    pub fn stale(&mut self, node: NodeId, changes: u64) -> bool {
        self.read_at.insert(node, changes) != Some(changes)
    }

    /// Catches up with `node`'s durable hard-state file (decoded only when it was replaced
    /// since the last look: every hard-state write is a replace).
    pub fn read_hard(&mut self, node: NodeId, bytes: &[u8], replaced: u64) {
        match self.hard.get(&node) {
            Some((seen, _)) if *seen == replaced => {}
            _ => {
                let h = decode_hard(bytes).unwrap_or_default();
                self.hard.insert(node, (replaced, h));
            }
        }
    }

    /// Catches up with `node`'s durable log file (only the bytes appended since the last look
    /// are read, and only entry heads).
    pub fn read_log(&mut self, node: NodeId, bytes: &[u8], replaced: u64) {
        self.logs.entry(node).or_default().catch_up(bytes, replaced);
    }

    /// Checks one raft message `from` → `to` against the sender's durable state as last read
    /// (`read_hard`, `read_log`). `Some(why)` is a violation. With `disk_lies` (the harness made
    /// this disk lie) the durable bytes prove nothing and only the acknowledgement is
    /// remembered.
    pub fn check(
        &mut self,
        from: NodeId,
        to: NodeId,
        msg: &Message,
        disk_lies: bool,
    ) -> Option<String> {
        if let Message::AppendResp {
            success: true,
            match_index,
            ..
        } = msg
        {
            let a = self.acked.entry(from).or_default();
            *a = (*a).max(*match_index);
        }
        if disk_lies {
            return None;
        }
        let durable = self.hard.get(&from).map(|(_, h)| *h).unwrap_or_default();
        let t = msg.term();
        // Described only when reported: this runs on every raft message.
        let what = || describe(msg, to);
        if durable.term < t {
            return Some(format!(
                "n{from} sent {} in term {t} while its durable term was {}: a crash now \
                 would forget the term it spoke in",
                what(),
                durable.term
            ));
        }
        let voted = |who: NodeId| durable.term > t || durable.voted_for == Some(who);
        match msg {
            Message::Vote { granted: true, .. } if !voted(to) => Some(format!(
                "n{from} sent {} before the vote was durable (durable: term {}, voted for \
                 {}): after a crash it could vote again in term {t}",
                what(),
                durable.term,
                durable
                    .voted_for
                    .map_or("nobody".to_string(), |v| format!("n{v}"))
            )),
            Message::RequestVote { .. } if !voted(from) => Some(format!(
                "n{from} sent {} before its vote for itself was durable (durable voted for \
                 {})",
                what(),
                durable
                    .voted_for
                    .map_or("nobody".to_string(), |v| format!("n{v}"))
            )),
            Message::AppendResp {
                success: true,
                match_index,
                ..
            } => {
                let last = self.logs.get(&from).map_or(0, DurableLog::last_index);
                (last < *match_index).then(|| {
                    format!(
                        "n{from} sent {} while its durable log ended at {last}: a crash \
                         now would lose entries the leader counts towards a quorum",
                        what()
                    )
                })
            }
            _ => None,
        }
    }
}

impl Online for Persistence {
    fn record(&mut self, r: &Observed<'_>) {
        match r.event {
            Event::Raft(RaftEvent::Truncated { from, .. }) => {
                if let Some(a) = self.acked.get_mut(&r.node) {
                    *a = (*a).min(from.saturating_sub(1));
                }
            }
            Event::Started { log_len, .. } => {
                let acked = self.acked.get(&r.node).copied().unwrap_or(0);
                if *log_len < acked && self.forgotten.len() < 3 {
                    self.forgotten.push(violation(
                        ViolationKind::RaftSafety,
                        Some(format!("n{}", r.node)),
                        r.at_ms(),
                        format!(
                            "n{} restarted with a log ending at {log_len}, but it had \
                             acknowledged the log through {acked}: it forgot entries a leader \
                             counted towards a quorum",
                            r.node
                        ),
                    ));
                }
            }
            _ => {}
        }
    }

    fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.forgotten)
    }
}

fn describe(msg: &Message, to: NodeId) -> String {
    match msg {
        Message::RequestVote { .. } => format!("a vote request to n{to}"),
        Message::Vote { granted: true, .. } => format!("a vote grant to n{to}"),
        Message::Vote { .. } => format!("a vote refusal to n{to}"),
        Message::Append { entries, .. } => {
            format!("an append of {} entries to n{to}", entries.len())
        }
        Message::AppendResp {
            success: true,
            match_index,
            ..
        } => format!("an acknowledgement of the log through {match_index} to n{to}"),
        Message::AppendResp { .. } => format!("an append refusal to n{to}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::log_store::Record;
    use engine::raft::{Entry, Op};

    /// Reads the durable files as the world does (the hard state as freshly replaced each
    /// time), then checks the message.
    #[allow(clippy::too_many_arguments)]
    fn run(
        p: &mut Persistence,
        from: NodeId,
        to: NodeId,
        msg: &Message,
        hard: &[u8],
        log: &[u8],
        log_replaced: u64,
        lies: bool,
    ) -> Option<String> {
        thread_local!(static REPLACED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
        let replaced = REPLACED.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        p.read_hard(from, hard, replaced);
        p.read_log(from, log, log_replaced);
        p.check(from, to, msg, lies)
    }

    fn hard(term: Term, voted_for: Option<NodeId>) -> Vec<u8> {
        let mut b = Vec::new();
        engine::frames::encode(
            &mut b,
            &Record::Hard(HardState {
                term,
                voted_for,
                commit: 0,
            }),
        );
        b
    }

    fn log(terms: &[Term]) -> Vec<u8> {
        let mut b = Vec::new();
        for (i, t) in terms.iter().enumerate() {
            let e = Entry {
                index: i as Index + 1,
                term: *t,
                ts: 0,
                session: None,
                op: Op::Noop,
            };
            engine::frames::encode(&mut b, &Record::Entry(e));
        }
        b
    }

    #[test]
    fn a_vote_grant_needs_the_durable_vote() {
        let mut p = Persistence::default();
        let grant = Message::Vote {
            term: 3,
            granted: true,
        };
        assert_eq!(
            run(&mut p, 1, 2, &grant, &hard(3, Some(2)), &[], 0, false),
            None
        );
        let v = run(&mut p, 1, 2, &grant, &hard(3, None), &[], 0, false).unwrap();
        assert!(v.contains("before the vote was durable"), "{v}");
        let v = run(&mut p, 1, 2, &grant, &hard(2, Some(2)), &[], 0, false).unwrap();
        assert!(v.contains("durable term was 2"), "{v}");
        let refusal = Message::Vote {
            term: 3,
            granted: false,
        };
        assert_eq!(
            run(&mut p, 1, 2, &refusal, &hard(3, None), &[], 0, false),
            None
        );
    }

    #[test]
    fn a_restart_must_keep_what_the_node_acknowledged_less_what_it_truncated_since() {
        let mut p = Persistence::default();
        let ack = Message::AppendResp {
            term: 1,
            success: true,
            match_index: 5,
        };
        // Acknowledged on a disk that lied: nothing to compare now, but the promise counts.
        assert_eq!(run(&mut p, 1, 2, &ack, &[], &[], 0, true), None);
        let started = |log_len| Event::Started {
            term: 1,
            voted_for: None,
            log_len,
            commit: 0,
            torn_bytes: 0,
        };
        let ev = started(5);
        p.record(&Observed {
            at_us: 0,
            node: 1,
            incarnation: 2,
            event: &ev,
        });
        assert!(p.take_violations().is_empty());
        let ev = started(3);
        p.record(&Observed {
            at_us: 0,
            node: 1,
            incarnation: 3,
            event: &ev,
        });
        let v = p.take_violations();
        assert!(
            v[0].message.contains("acknowledged the log through 5"),
            "{v:?}"
        );
        // A leader made it truncate from 4: a log of 3 is all it still owes.
        let ev = Event::Raft(RaftEvent::Truncated {
            from: 4,
            removed_last: 5,
            last_applied: 0,
            commit: 0,
            removed: vec![],
        });
        p.record(&Observed {
            at_us: 0,
            node: 1,
            incarnation: 3,
            event: &ev,
        });
        let ev = started(3);
        p.record(&Observed {
            at_us: 0,
            node: 1,
            incarnation: 4,
            event: &ev,
        });
        assert!(p.take_violations().is_empty());
    }

    #[test]
    fn a_vote_request_needs_the_candidates_own_vote() {
        let mut p = Persistence::default();
        let req = Message::RequestVote {
            term: 4,
            last_index: 0,
            last_term: 0,
        };
        assert_eq!(
            run(&mut p, 2, 1, &req, &hard(4, Some(2)), &[], 0, false),
            None
        );
        assert!(run(&mut p, 2, 1, &req, &hard(4, Some(1)), &[], 0, false).is_some());
    }

    #[test]
    fn an_acknowledgement_needs_the_durable_entries_read_incrementally() {
        let mut p = Persistence::default();
        let ack = |m| Message::AppendResp {
            term: 1,
            success: true,
            match_index: m,
        };
        let h = hard(1, None);
        let two = log(&[1, 1]);
        assert_eq!(run(&mut p, 1, 2, &ack(2), &h, &two, 0, false), None);
        let v = run(&mut p, 1, 2, &ack(3), &h, &two, 0, false).unwrap();
        assert!(v.contains("durable log ended at 2"), "{v}");
        // Appended later: only the new bytes are read; a truncation marker shortens the log.
        let mut more = log(&[1, 1, 1]);
        assert_eq!(run(&mut p, 1, 2, &ack(3), &h, &more, 0, false), None);
        engine::frames::encode(&mut more, &Record::TruncateFrom(2));
        assert!(run(&mut p, 1, 2, &ack(2), &h, &more, 0, false).is_some());
        // A replaced file (a torn tail cut on load) is read again from the start.
        assert_eq!(run(&mut p, 1, 2, &ack(2), &h, &two, 1, false), None);
        let refusal = Message::AppendResp {
            term: 1,
            success: false,
            match_index: 9,
        };
        assert_eq!(run(&mut p, 1, 2, &refusal, &h, &[], 2, false), None);
    }
}
