//! Linearizability of a key-value client history: Wing & Gong's search with Lowe's memoization
//! (the algorithm of Porcupine and Knossos). Keys are independent registers, so a history is
//! linearizable iff each key's sub-history is (P-compositionality): keys are checked one by one.
//! Deterministic: step budgets instead of wall-clock time, hash sets only for membership.

use std::collections::{BTreeMap, HashMap, HashSet};

/// What a client asked of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvKind {
    /// put (Some(value)) or delete / a dropped collection (None): sets the register.
    Write(Option<Vec<u8>>),
    /// List-append: the register becomes its current bytes (empty if absent) followed by these.
    Append(Vec<u8>),
    /// A read; `KvOp::read` holds what it returned when acknowledged.
    Read,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvOp {
    /// Caller's identifier of the operation (returned in verdicts).
    pub id: usize,
    pub client: u64,
    pub invoke_us: u64,
    /// `Some(t)`: acknowledged at t (took effect exactly once between invoke and t).
    /// `None`: unknown outcome — may have taken effect at any point after invoke, or never.
    pub complete_us: Option<u64>,
    pub kind: KvKind,
    /// For an acknowledged Read: the value it returned. Ignored otherwise.
    pub read: Option<Option<Vec<u8>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// Not linearizable. `minimal` is a small sub-history (ids, in invoke order) that is already
    /// non-linearizable on its own (obtained by greedily removing ops while the remainder stays
    /// non-linearizable, within the budget), `explain` a one-line human explanation, e.g. which
    /// read returned a value no linearization allows and what values were possible.
    NotLinearizable {
        minimal: Vec<usize>,
        explain: String,
    },
    /// The search used up its step budget without deciding (never hang: report this instead).
    Undecided {
        steps: u64,
    },
}

/// Verdicts of a whole history, per key in `BTreeMap` order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    pub keys_checked: usize,
    /// Keys whose search ran out of budget, with the steps spent.
    pub undecided: Vec<(String, u64)>,
    /// Non-linearizable keys: key, minimal sub-history (op ids), explanation.
    pub violations: Vec<(String, Vec<usize>, String)>,
}

/// All keys of a history at once: `by_key` maps a key name to its ops.
pub fn check_all(by_key: &BTreeMap<String, Vec<KvOp>>, budget_steps_per_key: u64) -> Summary {
    let mut summary = Summary::default();
    for (key, ops) in by_key {
        summary.keys_checked += 1;
        match check_key(ops, budget_steps_per_key) {
            Verdict::Linearizable => {}
            Verdict::Undecided { steps } => summary.undecided.push((key.clone(), steps)),
            Verdict::NotLinearizable { minimal, explain } => {
                summary.violations.push((key.clone(), minimal, explain))
            }
        }
    }
    summary
}

/// Checks one key's history. `budget_steps` bounds the search (each step of its loop counts: a
/// cheap, deterministic measure). Minimizing a violation may spend 20× that over its re-checks.
pub fn check_key(ops: &[KvOp], budget_steps: u64) -> Verdict {
    let ops = prepare(ops);
    let all: Vec<usize> = (0..ops.len()).collect();
    // Cheap necessary condition first: a read of a value no op could build is its own witness.
    if let Some(r) = all.iter().copied().find(|&r| !justified(&ops, &all, r)) {
        let (read, got) = (describe(&ops[r]), show(read_value(&ops[r])));
        let explain = format!("{read} returned {got}, which no op invoked by its ack can build");
        let minimal = vec![ops[r].id];
        return Verdict::NotLinearizable { minimal, explain };
    }
    // A stale read is just as plain, whatever the concurrency around it; else: the search.
    let witness = match stale_read(&ops) {
        Some(witness) => witness,
        None => match search(&ops, &all, None, budget_steps) {
            (Outcome::Linearizable, _) => return Verdict::Linearizable,
            (Outcome::OutOfBudget, steps) => return Verdict::Undecided { steps },
            (Outcome::Violation | Outcome::Observed(_), _) => {
                let sources: Vec<Vec<usize>> = all.iter().map(|&r| sources(&ops, r)).collect();
                minimize(&ops, &sources, all, budget_steps)
            }
        },
    };
    let explain = explain(&ops, &witness, budget_steps);
    let minimal = witness.iter().map(|&i| ops[i].id).collect();
    Verdict::NotLinearizable { minimal, explain }
}

/// An operation ready for the search. Unknown outcomes return at +infinity and are optional.
#[derive(Debug, Clone)]
struct Op {
    id: usize,
    client: u64,
    call: u64,
    ret: u64,
    required: bool,
    act: Act,
    /// For an unknown outcome: `(ack, read)` for each read that cannot do without it, by ack.
    forced: Vec<(u64, usize)>,
}

#[derive(Debug, Clone)]
enum Act {
    Write(Option<Vec<u8>>),
    Append(Vec<u8>),
    /// An acknowledged read and what it returned.
    Read(Option<Vec<u8>>),
}

fn read_value(o: &Op) -> &Option<Vec<u8>> {
    match &o.act {
        Act::Read(v) => v,
        _ => &None,
    }
}

/// Drops reads that constrain nothing (unknown outcome, or no recorded result), sorts by invoke
/// time (stable: ties keep the caller's order), clamps an ack before its invoke to the invoke,
/// and settles what it can of unknown outcomes.
fn prepare(ops: &[KvOp]) -> Vec<Op> {
    let mut out = Vec::with_capacity(ops.len());
    for o in ops {
        let act = match (&o.kind, o.complete_us, &o.read) {
            (KvKind::Read, Some(_), Some(v)) => Act::Read(v.clone()),
            (KvKind::Read, _, _) => continue,
            (KvKind::Write(v), _, _) => Act::Write(v.clone()),
            (KvKind::Append(b), _, _) => Act::Append(b.clone()),
        };
        let ret = o.complete_us.map_or(u64::MAX, |c| c.max(o.invoke_us));
        let (id, client, call, required) = (o.id, o.client, o.invoke_us, ret != u64::MAX);
        let forced = Vec::new();
        out.push(Op {
            id,
            client,
            call,
            ret,
            required,
            act,
            forced,
        });
    }
    out.sort_by_key(|o| o.call);
    settle_unknown(out)
}

/// Unknown outcomes cost the search most: optional, and concurrent with all that follows. Two
/// sound reductions. One no read can have observed (a write of a value no read starts with, an
/// append whose bytes no read contains, a delete with no absent read and no appends) changes
/// no read if left out: dropped. One without which a read's value cannot be built must precede
/// that read: `forced` records it for `deadline`.
fn settle_unknown(mut ops: Vec<Op>) -> Vec<Op> {
    let any_appends = ops.iter().any(|o| matches!(o.act, Act::Append(_)));
    let mentions = |x: &Act, read: &Op| match (x, read_value(read)) {
        _ if !matches!(read.act, Act::Read(_)) => false,
        (Act::Write(None), None) => true,
        (Act::Write(None), Some(_)) => any_appends,
        (Act::Write(Some(w)), Some(v)) => v.starts_with(w),
        (Act::Append(b), Some(v)) => b.is_empty() || contains(v, b),
        _ => false,
    };
    let unknown = |o: &Op| !o.required && !matches!(o.act, Act::Read(_));
    let seen = |x: &Op| ops.iter().any(|read| mentions(&x.act, read));
    let keep: Vec<bool> = ops.iter().map(|x| !unknown(x) || seen(x)).collect();
    let mut keep = keep.into_iter();
    ops.retain(|_| keep.next().unwrap_or(true));
    for x in 0..ops.len() {
        if !unknown(&ops[x]) {
            continue;
        }
        let mut forced = Vec::new();
        for (r, read) in ops.iter().enumerate() {
            let Some(v) = read_value(read) else { continue };
            if ops[x].call > read.ret || !mentions(&ops[x].act, read) {
                continue;
            }
            let before = ops.partition_point(|o| o.call <= read.ret);
            let others = ops[..before].iter().enumerate().filter(|&(i, _)| i != x);
            if !producible(v, others.map(|(_, o)| o), true) {
                forced.push((read.ret, r));
            }
        }
        ops[x].forced = forced;
    }
    ops
}

/// When op `i` returns and whether it must be linearized, among the ops `kept`: an unknown
/// outcome counts as acknowledged at the first kept read that cannot do without it.
fn deadline(ops: &[Op], kept: &[bool], i: usize) -> (u64, bool) {
    match ops[i].forced.iter().find(|&&(_, r)| kept[r]) {
        Some(&(ack, _)) => (ack, true),
        None => (ops[i].ret, ops[i].required),
    }
}

/// Could read `r` have returned its value given only the ops of `sel` (sorted by invoke)
/// invoked by its ack? A relaxation (order and use-once ignored): `false` proves a violation.
fn justified(ops: &[Op], sel: &[usize], r: usize) -> bool {
    let before = &sel[..sel.partition_point(|&i| ops[i].call <= ops[r].ret)];
    let before = before.iter().map(|&i| &ops[i]);
    !matches!(read_value(&ops[r]), Some(v) if !producible(v, before, true))
}

/// A stale read, as `[w, b, r]`: read `r` returned a value only write `w` can build, though an
/// acknowledged op `b` that replaces it certainly came between (after `w`'s ack, before `r`).
fn stale_read(ops: &[Op]) -> Option<Vec<usize>> {
    let replaces = |o: &Op| match &o.act {
        Act::Write(_) => true,
        Act::Append(b) => !b.is_empty(),
        Act::Read(_) => false,
    };
    for (r, read) in ops.iter().enumerate() {
        let Act::Read(Some(v)) = &read.act else {
            continue;
        };
        let before = &ops[..ops.partition_point(|o| o.call <= read.ret)];
        let writes_v = |o: &Op| matches!(&o.act, Act::Write(Some(x)) if x == v);
        let Some(w) = before.iter().position(writes_v) else {
            continue;
        };
        let others = before.iter().enumerate().filter(|&(i, _)| i != w);
        if producible(v, others.map(|(_, o)| o), true) {
            continue;
        }
        let between = |o: &Op| o.required && ops[w].ret < o.call && o.ret < read.call;
        if let Some(b) = before.iter().position(|o| between(o) && replaces(o)) {
            return Some(vec![w, b, r]);
        }
    }
    None
}

/// The ops that may have produced what read `r` saw: deletes (an absent value, or the base of
/// appends) and writes of a prefix of the value, unless an acknowledged op that would hide them
/// certainly came between; appends whose bytes occur in it. Minimization keeps these beside
/// the read, so a witness never owes its "violation" to the removal of the read's explanation.
fn sources(ops: &[Op], r: usize) -> Vec<usize> {
    let (read, got) = (&ops[r], read_value(&ops[r]));
    if !matches!(read.act, Act::Read(_)) {
        return Vec::new();
    }
    let hides = |o: &Op| match o.act {
        Act::Write(_) => true,
        Act::Append(_) => got.is_none(),
        Act::Read(_) => false,
    };
    let hidden = ops
        .iter()
        .filter(|o| o.required && o.ret < read.call && hides(o));
    let horizon = hidden.map(|o| o.call).max().unwrap_or(0);
    let before = &ops[..ops.partition_point(|o| o.call <= read.ret)];
    let on_absent = !matches!(got, Some(v) if !producible(v, before.iter(), false));
    let source = |o: &Op| match (&o.act, got) {
        (Act::Write(None), _) => on_absent && o.ret >= horizon,
        (Act::Write(Some(w)), Some(v)) => v.starts_with(w) && o.ret >= horizon,
        (Act::Append(b), Some(v)) => !b.is_empty() && contains(v, b),
        _ => false,
    };
    (0..before.len()).filter(|&i| source(&ops[i])).collect()
}

fn contains(v: &[u8], b: &[u8]) -> bool {
    v.windows(b.len()).any(|c| c == b)
}

/// Can `v` be the register's value: a write's value (if `writes_too`) or the absent start,
/// followed by appended chunks?
fn producible<'a>(v: &[u8], cands: impl Iterator<Item = &'a Op>, writes_too: bool) -> bool {
    let (mut reach, mut appends) = (vec![false; v.len() + 1], Vec::new());
    for o in cands {
        match &o.act {
            Act::Write(Some(w)) if writes_too && v.starts_with(w) => reach[w.len()] = true,
            Act::Append(b) if b.is_empty() => reach[0] = true,
            Act::Append(b) => appends.push(b.as_slice()),
            _ => {}
        }
    }
    if v.is_empty() {
        return reach[0]; // an empty write, or an empty append (absent is not empty)
    }
    reach[0] = true;
    for pos in 0..v.len() {
        if reach[pos] {
            for b in appends.iter().filter(|b| v[pos..].starts_with(b)) {
                reach[pos + b.len()] = true;
            }
        }
    }
    reach[v.len()]
}

enum Outcome {
    Linearizable,
    Violation,
    OutOfBudget,
    /// Enumeration answer: every value the observed read can see in some linearization.
    Observed(Vec<Option<Vec<u8>>>),
}

/// Search state: the register (an interned value) and, when enumerating, what the observed
/// read saw (`UNSEEN` before it).
type State = (u32, u32);
const UNSEEN: u32 = u32::MAX;

/// The register's sequential specification over interned values: interning keeps memo keys
/// small and turns a repeated append into a table look-up.
#[derive(Default)]
struct Model<'a> {
    ops: Vec<&'a Op>,
    observe: Option<usize>,
    vals: Vec<Option<Vec<u8>>>,
    index: HashMap<Option<Vec<u8>>, u32>,
    /// Interned value of each write and read (by position in the selection).
    fixed: Vec<u32>,
    appended: HashMap<(u32, usize), u32>,
}

impl<'a> Model<'a> {
    fn new(ops: &'a [Op], sel: &[usize], observe: Option<usize>) -> Self {
        let ops: Vec<&Op> = sel.iter().map(|&i| &ops[i]).collect();
        let observe = observe.and_then(|o| sel.iter().position(|&i| i == o));
        let mut m = Model {
            ops,
            observe,
            ..Default::default()
        };
        m.intern(&None); // 0: every key starts absent
        for p in 0..m.ops.len() {
            let op: &Op = m.ops[p];
            let v = match &op.act {
                Act::Write(v) | Act::Read(v) => m.intern(v),
                Act::Append(_) => 0,
            };
            m.fixed.push(v);
        }
        m
    }

    fn intern(&mut self, v: &Option<Vec<u8>>) -> u32 {
        if let Some(&id) = self.index.get(v) {
            return id;
        }
        let id = self.vals.len() as u32;
        self.vals.push(v.clone());
        self.index.insert(v.clone(), id);
        id
    }

    /// Applies the op at position `p`; `None` if it cannot happen in that state.
    fn apply(&mut self, p: usize, (reg, seen): State) -> Option<State> {
        let op: &'a Op = self.ops[p];
        match &op.act {
            _ if self.observe == Some(p) => Some((reg, reg)),
            Act::Write(_) => Some((self.fixed[p], seen)),
            Act::Read(_) => (reg == self.fixed[p]).then_some((reg, seen)),
            Act::Append(bytes) => {
                if let Some(&next) = self.appended.get(&(reg, p)) {
                    return Some((next, seen));
                }
                let base = self.vals[reg as usize].as_deref().unwrap_or_default();
                let next = self.intern(&Some([base, bytes].concat()));
                self.appended.insert((reg, p), next);
                Some((next, seen))
            }
        }
    }
}

/// WGL search over the ops `sel` (indices into `ops`, sorted). With `observe` (an acknowledged
/// read), that read is unconstrained and the search enumerates every value it can see in a
/// complete linearization instead of stopping at the first. Also returns the steps spent.
fn search(ops: &[Op], sel: &[usize], observe: Option<usize>, budget: u64) -> (Outcome, u64) {
    let mut kept = vec![false; ops.len()];
    sel.iter().for_each(|&i| kept[i] = true);
    // What the observed read returned is no constraint, so it forces no unknown outcome.
    observe.into_iter().for_each(|r| kept[r] = false);
    let (rets, required): (Vec<u64>, Vec<bool>) =
        sel.iter().map(|&i| deadline(ops, &kept, i)).unzip();
    // Calls sort before returns at equal times, so `a.ret == b.call` leaves a and b concurrent.
    let entry = |p: usize| [(ops[sel[p]].call, false, p), (rets[p], true, p)];
    let mut entries: Vec<(u64, bool, usize)> = (0..sel.len()).flat_map(entry).collect();
    entries.sort_unstable();
    let mut model = Model::new(ops, sel, observe);
    // The linearized ops, as a bitset over positions in `sel`.
    let mut done = vec![0u64; sel.len().div_ceil(64).max(1)];
    let flip = |done: &mut [u64], p: usize| done[p / 64] ^= 1 << (p % 64);
    let live = |done: &[u64], k: usize| done[entries[k].2 / 64] >> (entries[k].2 % 64) & 1 == 0;
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    // Per linearized op: its call entry, and the state and first live entry before it.
    let mut stack: Vec<(usize, State, usize)> = Vec::new();
    let (mut state, mut head, mut cur, mut steps) = ((0, UNSEEN), 0, 0, 0);
    let mut pending = required.iter().filter(|&&r| r).count();
    let mut seen: Vec<u32> = Vec::new();
    loop {
        // Unknown-outcome ops may stay un-linearized: done once every acknowledged op is placed.
        if pending == 0 {
            if observe.is_none() {
                return (Outcome::Linearizable, steps);
            }
            if !seen.contains(&state.1) {
                seen.push(state.1);
            }
        }
        if steps >= budget {
            return (Outcome::OutOfBudget, steps);
        }
        steps += 1;
        while cur < entries.len() && !live(&done, cur) {
            cur += 1;
        }
        if let Some(&(_, false, p)) = entries.get(cur).filter(|_| pending > 0) {
            cur += 1;
            let Some(next) = model.apply(p, state) else {
                continue;
            };
            flip(&mut done, p);
            if !cache.insert((done.clone(), next)) {
                flip(&mut done, p);
                continue;
            }
            stack.push((cur - 1, state, head));
            (state, pending) = (next, pending - usize::from(required[p]));
            while head < entries.len() && !live(&done, head) {
                head += 1;
            }
            cur = head;
            continue;
        }
        // A pending op's return (or the end) was reached, or a linearization recorded: backtrack.
        let Some((k, prev, h)) = stack.pop() else {
            if observe.is_none() {
                return (Outcome::Violation, steps);
            }
            let mut vals: Vec<_> = seen
                .iter()
                .map(|&s| model.vals[s as usize].clone())
                .collect();
            vals.sort();
            return (Outcome::Observed(vals), steps);
        };
        let p = entries[k].2;
        flip(&mut done, p);
        (state, pending, head, cur) = (prev, pending + usize::from(required[p]), h, k + 1);
    }
}

/// Greedy reduction, ddmin style: drop chunks of halving size, then single ops until none can
/// go; each check gets at most `per_check` steps, all together 20× that (when they run out: the
/// smallest found so far). Dropping an op also drops the reads that relied on it (`close`), so
/// every read kept keeps its `sources` and stays `justified` — a witness never shows a stale
/// read without the write it saw — and stretches of appends go together with their readers.
fn minimize(ops: &[Op], sources: &[Vec<usize>], mut cur: Vec<usize>, per_check: u64) -> Vec<usize> {
    let (mut left, mut chunk) = (per_check.saturating_mul(20), (cur.len() / 2).max(1));
    loop {
        let (mut changed, mut i) = (false, 0);
        while i < cur.len() && left > 0 {
            let end = (i + chunk).min(cur.len());
            let cand = close(ops, sources, [&cur[..i], &cur[end..]].concat());
            let (outcome, steps) = match cand.is_empty() {
                true => (Outcome::Linearizable, 0),
                false => search(ops, &cand, None, per_check.min(left)),
            };
            left = left.saturating_sub(steps.max(1));
            if matches!(outcome, Outcome::Violation) {
                (cur, changed) = (cand, true);
            } else {
                i = end;
            }
        }
        if left == 0 || (chunk == 1 && !changed) {
            return cur;
        }
        chunk = (chunk / 2).max(1);
    }
}

/// `cand` less the reads that lost a source or became unproducible.
fn close(ops: &[Op], sources: &[Vec<usize>], mut cand: Vec<usize>) -> Vec<usize> {
    let mut kept = vec![false; ops.len()];
    cand.iter().for_each(|&i| kept[i] = true);
    let keeps = |r: usize| sources[r].iter().all(|&s| kept[s]) && justified(ops, &cand, r);
    let keep: Vec<bool> = cand.iter().map(|&r| keeps(r)).collect();
    let mut keep = keep.into_iter();
    cand.retain(|_| keep.next().unwrap_or(true));
    cand
}

/// One line naming a read of `sel` whose value no linearization allows, with the values that
/// linearizations of the rest would let it see (latest read first: usually the one that broke).
/// The enumerations share `budget` steps.
fn explain(ops: &[Op], sel: &[usize], mut budget: u64) -> String {
    let ids: Vec<usize> = sel.iter().map(|&i| ops[i].id).collect();
    for &r in sel.iter().rev() {
        let Act::Read(got) = &ops[r].act else {
            continue;
        };
        let (outcome, steps) = search(ops, sel, Some(r), budget);
        budget -= steps;
        let Outcome::Observed(vals) = outcome else {
            continue;
        };
        if vals.is_empty() || vals.contains(got) {
            continue;
        }
        let mut allowed: Vec<String> = vals.iter().take(6).map(show).collect();
        if vals.len() > 6 {
            allowed.push(format!("… ({} values)", vals.len()));
        }
        let (read, got, allowed) = (describe(&ops[r]), show(got), allowed.join(" | "));
        return format!(
            "{read} returned {got}, but linearizations of ops {ids:?} allow only {allowed}"
        );
    }
    format!("no linearization of ops {ids:?} agrees with the values they read")
}

fn describe(o: &Op) -> String {
    format!(
        "read #{} (client {}, {}..{}us)",
        o.id, o.client, o.call, o.ret
    )
}

/// A register value for humans: quoted and escaped, long values cut.
fn show(v: &Option<Vec<u8>>) -> String {
    match v {
        None => "absent".to_string(),
        Some(b) if b.len() > 32 => {
            format!("{}… ({} bytes)", show(&Some(b[..32].to_vec())), b.len())
        }
        Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u64 = 100_000;

    /// A history from tokens `<kind><id>[=<value>]@<invoke>-<ack>`: kind `p` put, `d` delete,
    /// `a` append, `r` read (value `-`: absent); ack `?` (or none): unknown outcome.
    fn h(s: &str) -> Vec<KvOp> {
        let parse = |t: &str| {
            let (head, times) = t.split_once('@').unwrap();
            let (inv, ack) = times.split_once('-').unwrap();
            let (name, val) = head.split_once('=').unwrap_or((head, ""));
            let (id, bytes) = (name[1..].parse().unwrap(), val.as_bytes().to_vec());
            let (kind, read) = match &name[..1] {
                "p" => (KvKind::Write(Some(bytes)), None),
                "d" => (KvKind::Write(None), None),
                "a" => (KvKind::Append(bytes), None),
                _ => (KvKind::Read, Some((val != "-").then_some(bytes))),
            };
            let (invoke_us, complete_us, client) = (inv.parse().unwrap(), ack.parse().ok(), 0);
            KvOp {
                id,
                client,
                invoke_us,
                complete_us,
                kind,
                read,
            }
        };
        s.split_whitespace().map(parse).collect()
    }

    /// The minimal sub-history and explanation of a violation.
    fn bad(ops: &[KvOp]) -> (Vec<usize>, String) {
        match check_key(ops, B) {
            Verdict::NotLinearizable { minimal, explain } => (minimal, explain),
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    fn ok(ops: &[KvOp]) -> bool {
        check_key(ops, B) == Verdict::Linearizable
    }

    /// Exhaustive reference: every order that respects real time (tiny histories only).
    fn brute(ops: &[KvOp], done: &mut [bool], reg: Option<Vec<u8>>) -> bool {
        // Is an acknowledged op not yet placed acknowledged before `t`?
        let due = |done: &[bool], t| {
            (0..ops.len()).any(|j| !done[j] && ops[j].complete_us.is_some_and(|c| c < t))
        };
        if !due(done, u64::MAX) {
            return true;
        }
        for i in 0..ops.len() {
            let next = match &ops[i].kind {
                _ if done[i] || due(done, ops[i].invoke_us) => continue,
                KvKind::Write(v) => v.clone(),
                KvKind::Append(b) => Some([reg.as_deref().unwrap_or_default(), b].concat()),
                KvKind::Read if ops[i].read.as_ref() == Some(&reg) => reg.clone(),
                KvKind::Read => continue,
            };
            done[i] = true;
            if brute(ops, done, next) {
                return true;
            }
            done[i] = false;
        }
        false
    }

    fn brute_ok(ops: &[KvOp]) -> bool {
        brute(ops, &mut vec![false; ops.len()], None)
    }

    /// xorshift64: a tiny deterministic generator.
    fn below(state: &mut u64, n: u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state % n
    }

    /// Linearizable by construction: op i takes effect at 1000 + 100·i (an unknown outcome
    /// perhaps never) inside a random interval around that point; values and elements unique.
    fn random_linearizable(seed: u64, n: u64, spread: u64) -> Vec<KvOp> {
        let rng = &mut (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let (mut reg, mut tokens) = (None::<String>, Vec::new());
        for i in 0..n {
            let t = 1_000 + 100 * i;
            let (inv, ack) = (t - below(rng, spread), t + below(rng, spread));
            let elem = format!("[{i}]");
            let read = format!("r{i}={}", reg.as_deref().unwrap_or("-"));
            let (op, value) = match below(rng, 10) {
                0..=3 => (read, reg.clone()),
                4..=6 => (format!("p{i}=v{i}"), Some(format!("v{i}"))),
                7 => (format!("d{i}"), None),
                _ => (
                    format!("a{i}={elem}"),
                    Some(reg.clone().unwrap_or_default() + &elem),
                ),
            };
            let (ack, effect) = match below(rng, 20) {
                0 => ("?".to_string(), false),
                1 => ("?".to_string(), true),
                _ => (ack.to_string(), true),
            };
            tokens.push(format!("{op}@{inv}-{ack}"));
            if effect {
                reg = value;
            }
        }
        h(&tokens.join(" "))
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let ops = h("p1=a@0-1 r2=a@2-3 d3@4-5 r4=-@6-7 a5=x@8-9 a6=y@10-11 r7=xy@12-13");
        assert!(ok(&ops));
        assert!(ok(&[]));
    }

    #[test]
    fn concurrent_writes_allow_either_value() {
        assert!(ok(&h("p1=a@0-50 p2=b@10-60 r3=a@70-80")));
        assert!(ok(&h("p1=a@0-50 p2=b@10-60 r3=b@70-80")));
        // Touching endpoints (ack == invoke) count as concurrent.
        assert!(ok(&h("p1=a@0-10 p2=b@10-20 r3=a@30-40")));
    }

    #[test]
    fn stale_read_after_acknowledged_overwrite() {
        let (min, why) = bad(&h("p1=a@0-9 r2=a@11-12 p3=b@20-30 r4=b@31-35 r5=a@40-50"));
        assert_eq!(min, [1, 3, 5]);
        assert!(why.starts_with("read #5 "), "{why}");
        assert!(why.ends_with("allow only \"b\""), "{why}");
    }

    #[test]
    fn read_of_a_value_never_written() {
        assert_eq!(bad(&h("p1=a@0-10 r2=zzz@20-30")).0, [2]);
        // Written only after the read was acknowledged: just as impossible.
        assert_eq!(bad(&h("r1=a@0-10 p2=a@11-20")).0, [1]);
    }

    #[test]
    fn lost_and_duplicated_appends_are_detected() {
        assert_eq!(bad(&h("a1=x@0-10 a2=y@20-30 r3=x@40-50")).0, [1, 2, 3]);
        assert_eq!(bad(&h("a1=x@0-10 r2=-@20-30")).0, [1, 2]);
        let (min, why) = bad(&h("a1=x@0-10 a2=y@20-30 r3=xyy@40-50"));
        assert_eq!(min, [1, 2, 3]);
        assert!(why.ends_with("allow only \"xy\""), "{why}");
    }

    #[test]
    fn unknown_outcome_write_may_explain_a_read() {
        // It may have happened, or not...
        assert!(ok(&h("p1=a@0-10 p2=b@20-? r3=b@30-40 r4=b@50-60")));
        assert!(ok(&h("p1=a@0-10 p2=b@20-? r3=a@30-40")));
        // ...but not before it was invoked, nor un-happen once seen.
        assert_eq!(bad(&h("p1=a@0-10 r2=b@20-30 p3=b@31-?")).0, [2]);
        let (min, _) = bad(&h("p1=a@0-10 p2=b@20-? r3=b@30-40 r4=a@50-60"));
        assert_eq!(min, [1, 2, 3, 4]);
        // Reads with unknown outcome say nothing.
        assert!(ok(&h("p1=a@0-10 r2=nonsense@20-?")));
    }

    #[test]
    fn read_of_old_value_after_acknowledged_delete() {
        let (min, why) = bad(&h("p1=a@0-10 d2@20-30 r3=a@40-50"));
        assert_eq!(min, [1, 2, 3]);
        assert!(why.ends_with("allow only absent"), "{why}");
    }

    /// All concurrent, with reads no order satisfies: exponential without the budget.
    fn hard_history(n: usize) -> Vec<KvOp> {
        let ops = (0..n).map(|i| format!("p{i}=v{i}@0-9 r{}=v{}@0-9", n + i, i * 7 % n));
        h(&(ops.collect::<Vec<_>>().join(" ") + &format!(" r{}=-@0-9", 2 * n)))
    }

    #[test]
    fn tiny_budget_gives_undecided_not_a_hang() {
        let hard = hard_history(20);
        for steps in [500, 200_000] {
            assert_eq!(check_key(&hard, steps), Verdict::Undecided { steps });
        }
    }

    #[test]
    fn verdicts_are_deterministic() {
        let mut ops = random_linearizable(7, 120, 250);
        let acked = |o: &&mut KvOp| o.complete_us.is_some();
        let read = ops
            .iter_mut()
            .filter(acked)
            .rfind(|o| o.kind == KvKind::Read)
            .unwrap();
        read.read = Some(Some(b"v2".to_vec())); // op 2: an acked put, long overwritten
        let first = bad(&ops);
        assert!(first.0.len() >= 3, "{first:?}");
        assert_eq!(first, bad(&ops));
    }

    #[test]
    fn long_mostly_sequential_history_decides_quickly() {
        for (seed, spread) in [(42, 60), (43, 150)] {
            let ops = random_linearizable(seed, 300, spread);
            assert_eq!(check_key(&ops, 50_000), Verdict::Linearizable);
        }
    }

    #[test]
    fn random_linearizable_histories_pass_and_mutated_reads_fail() {
        for seed in 0..200 {
            let mut ops = random_linearizable(seed, 40, 180);
            assert!(ok(&ops), "seed {seed}");
            let acked = |o: &&KvOp| o.complete_us.is_some() && o.kind == KvKind::Read;
            let mut reads = ops.iter().filter(acked).map(|o| o.id);
            let Some(id) = reads.nth(seed as usize % 12) else {
                continue;
            };
            ops[id].read = Some(Some(b"fresh".to_vec()));
            assert_eq!(bad(&ops).0, [id], "seed {seed}");
            // A stale value: overwritten by an acked op that began after the writer's ack and
            // ended before the read began. `stale_read` spots it; the search must agree.
            let before_read = |a| a < ops[id].invoke_us;
            let later = |o: &KvOp, c| o.invoke_us > c && o.complete_us.is_some_and(before_read);
            let overwritten = |c| ops.iter().any(|o| o.read.is_none() && later(o, c));
            let stale = |w: &&KvOp| w.read.is_none() && w.complete_us.is_some_and(overwritten);
            let stale = ops.iter().find(stale);
            if let Some(KvKind::Write(Some(v))) = stale.map(|w| w.kind.clone()) {
                ops[id].read = Some(Some(v));
                let (min, _) = bad(&ops);
                assert!(min.len() == 3 && min.contains(&id), "seed {seed}: {min:?}");
                let ops = prepare(&ops);
                let all: Vec<usize> = (0..ops.len()).collect();
                assert!(matches!(search(&ops, &all, None, B).0, Outcome::Violation));
            }
        }
    }

    /// Random small histories against exhaustive search; a violation's `minimal` fails alone.
    #[test]
    fn agrees_with_brute_force_on_small_histories() {
        let kinds = [
            "p=a", "p=b", "d", "a=x", "a=y", "r=-", "r=a", "r=b", "r=x", "r=xy", "r=yx",
        ];
        let (mut violations, rng) = (0, &mut 0x2545_F491_4F6C_DD1D_u64);
        for _ in 0..1_500 {
            let token = |id, rng: &mut u64| {
                let (k, v) = kinds[below(rng, kinds.len() as u64) as usize].split_at(1);
                let (inv, len) = (below(rng, 60), below(rng, 40));
                let ack = Some(inv + len).filter(|_| below(rng, 8) > 0);
                let ack = ack.map_or("?".into(), |t| t.to_string());
                format!("{k}{id}{v}@{inv}-{ack}")
            };
            let tokens: Vec<String> = (0..3 + below(rng, 5)).map(|id| token(id, rng)).collect();
            let ops = h(&tokens.join(" "));
            let verdict = check_key(&ops, B);
            let linearizable = verdict == Verdict::Linearizable;
            assert_eq!(linearizable, brute_ok(&ops), "{tokens:?}");
            let Verdict::NotLinearizable { minimal, .. } = verdict else {
                continue;
            };
            violations += 1;
            let sub: Vec<KvOp> = ops
                .iter()
                .filter(|o| minimal.contains(&o.id))
                .cloned()
                .collect();
            assert!(!brute_ok(&sub), "{tokens:?}: {minimal:?}");
        }
        assert!(violations > 300, "too few violations: {violations}");
    }

    #[test]
    fn check_all_reports_per_key() {
        let mut by_key = BTreeMap::new();
        by_key.insert("ok".to_string(), h("p1=a@0-10 r2=a@20-30"));
        by_key.insert("bad".to_string(), h("p3=a@0-10 r4=-@20-30"));
        by_key.insert("hard".to_string(), hard_history(12));
        let s = check_all(&by_key, 1_000);
        assert_eq!(s.keys_checked, 3);
        assert_eq!(s.undecided, [("hard".into(), 1_000)]);
        let [(key, ids, _)] = &s.violations[..] else {
            panic!("{s:?}")
        };
        assert_eq!((key.as_str(), &ids[..]), ("bad", &[3, 4][..]));
    }
}
