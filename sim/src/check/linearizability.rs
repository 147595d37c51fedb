//! Linearizability of a key-value client history: Wing & Gong's search with Lowe's memoization
//! (the algorithm of Porcupine and Knossos). Keys are independent registers, so a history is
//! linearizable iff each key's sub-history is (P-compositionality); checking key by key keeps
//! every search small.
//!
//! Deterministic by construction: step budgets instead of wall-clock time, hash sets used only
//! for membership, results built in invoke order.

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
    NotLinearizable { minimal: Vec<usize>, explain: String },
    /// The search used up its step budget without deciding (never hang: report this instead).
    Undecided { steps: u64 },
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

/// Minimization may spend this many times the checking budget, summed over its re-checks.
const MINIMIZE_BUDGET_FACTOR: u64 = 20;

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

/// Checks one key's history. `budget_steps` bounds the search (every step of the search loop
/// counts, a cheap deterministic measure). Minimization of a violation gets 20× that in total.
pub fn check_key(ops: &[KvOp], budget_steps: u64) -> Verdict {
    let ops = prepare(ops);
    let all: Vec<usize> = (0..ops.len()).collect();
    // Cheap necessary condition first: a read of a value nothing could have produced.
    if let Some(r) = first_unproducible(&ops, &all) {
        let o = &ops[r];
        let Act::Read(got) = &o.act else { unreachable!("only reads are unproducible") };
        let explain = format!(
            "{} returned {}, which no write or append invoked before its ack can produce",
            describe(o),
            show(got)
        );
        return Verdict::NotLinearizable { minimal: vec![o.id], explain };
    }
    match search(&ops, &all, None, budget_steps) {
        (Outcome::Linearizable, _) => Verdict::Linearizable,
        (Outcome::OutOfBudget, steps) => Verdict::Undecided { steps },
        (Outcome::Violation | Outcome::Observed(_), _) => {
            let min = minimize(&ops, all, budget_steps.saturating_mul(MINIMIZE_BUDGET_FACTOR));
            let explain = explain(&ops, &min, budget_steps);
            Verdict::NotLinearizable { minimal: min.iter().map(|&i| ops[i].id).collect(), explain }
        }
    }
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
}

#[derive(Debug, Clone)]
enum Act {
    Write(Option<Vec<u8>>),
    Append(Vec<u8>),
    /// An acknowledged read and what it returned.
    Read(Option<Vec<u8>>),
}

/// Drops reads that constrain nothing (unknown outcome, or no recorded result) and sorts by
/// invoke time (stable, so ties keep the caller's order). A completion before the invoke is
/// clamped to the invoke rather than trusted.
fn prepare(ops: &[KvOp]) -> Vec<Op> {
    let mut out: Vec<Op> = ops
        .iter()
        .filter_map(|o| {
            let act = match (&o.kind, o.complete_us, &o.read) {
                (KvKind::Read, Some(_), Some(v)) => Act::Read(v.clone()),
                (KvKind::Read, _, _) => return None,
                (KvKind::Write(v), _, _) => Act::Write(v.clone()),
                (KvKind::Append(b), _, _) => Act::Append(b.clone()),
            };
            Some(Op {
                id: o.id,
                client: o.client,
                call: o.invoke_us,
                ret: o.complete_us.map_or(u64::MAX, |c| c.max(o.invoke_us)),
                required: o.complete_us.is_some(),
                act,
            })
        })
        .collect();
    out.sort_by_key(|o| o.call);
    out
}

/// The first read (in invoke order) of `sel` whose value cannot be built from the writes and
/// appends of `sel` invoked before the read's ack — a necessary condition for linearizability,
/// relaxed (order and use-once ignored) so that it stays cheap.
fn first_unproducible(ops: &[Op], sel: &[usize]) -> Option<usize> {
    sel.iter().copied().find(|&r| match &ops[r].act {
        Act::Read(Some(v)) => {
            let before = sel.iter().map(|&i| &ops[i]).filter(|o| o.call <= ops[r].ret);
            !producible(v, before)
        }
        _ => false,
    })
}

/// Can `v` be the value of the register: some write's value (or the empty start of an absent
/// register) followed by appended chunks?
fn producible<'a>(v: &[u8], cands: impl Iterator<Item = &'a Op>) -> bool {
    let (mut writes, mut appends) = (Vec::new(), Vec::new());
    for o in cands {
        match &o.act {
            Act::Write(Some(w)) => writes.push(w.as_slice()),
            Act::Append(b) => appends.push(b.as_slice()),
            _ => {}
        }
    }
    if v.is_empty() {
        return writes.iter().chain(&appends).any(|b| b.is_empty());
    }
    let mut reach = vec![false; v.len() + 1];
    reach[0] = true;
    for w in writes.iter().filter(|w| v.starts_with(w)) {
        reach[w.len()] = true;
    }
    for pos in 0..v.len() {
        if reach[pos] {
            for b in appends.iter().filter(|b| !b.is_empty() && v[pos..].starts_with(b)) {
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

/// Search state: the register as an interned value and, when enumerating, what the observed
/// read saw (`UNSEEN` otherwise).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct State {
    reg: u32,
    seen: u32,
}
const UNSEEN: u32 = u32::MAX;

/// The register's sequential specification over interned values. Interning keeps memo keys
/// small and turns a repeated append into a table look-up.
struct Model<'a> {
    ops: Vec<&'a Op>,
    /// Interned value of each write / read; unused for appends.
    fixed: Vec<u32>,
    observe: Option<usize>,
    vals: Vec<Option<Vec<u8>>>,
    index: HashMap<Option<Vec<u8>>, u32>,
    appended: HashMap<(u32, u32), u32>,
}

impl<'a> Model<'a> {
    fn new(ops: Vec<&'a Op>, observe: Option<usize>) -> Self {
        let mut m = Model {
            ops,
            fixed: Vec::new(),
            observe,
            vals: Vec::new(),
            index: HashMap::new(),
            appended: HashMap::new(),
        };
        m.intern(None); // id 0: every key starts absent
        for p in 0..m.ops.len() {
            let id = match &m.ops[p].act {
                Act::Write(v) | Act::Read(v) => m.intern(v.clone()),
                Act::Append(_) => 0,
            };
            m.fixed.push(id);
        }
        m
    }

    fn intern(&mut self, v: Option<Vec<u8>>) -> u32 {
        if let Some(&id) = self.index.get(&v) {
            return id;
        }
        let id = self.vals.len() as u32;
        self.vals.push(v.clone());
        self.index.insert(v, id);
        id
    }

    /// Applies op `p` (a list position); `None` if it cannot happen in state `st`.
    fn apply(&mut self, p: usize, st: State) -> Option<State> {
        let op: &'a Op = self.ops[p];
        if self.observe == Some(p) {
            return Some(State { reg: st.reg, seen: st.reg });
        }
        match &op.act {
            Act::Write(_) => Some(State { reg: self.fixed[p], ..st }),
            Act::Read(_) => (st.reg == self.fixed[p]).then_some(st),
            Act::Append(bytes) => {
                let key = (st.reg, p as u32);
                let reg = match self.appended.get(&key) {
                    Some(&r) => r,
                    None => {
                        let mut v = self.vals[st.reg as usize].clone().unwrap_or_default();
                        v.extend_from_slice(bytes);
                        let r = self.intern(Some(v));
                        self.appended.insert(key, r);
                        r
                    }
                };
                Some(State { reg, ..st })
            }
        }
    }
}

/// WGL's doubly linked list of call and return entries, sorted by time. Node 0 is the head
/// sentinel and the last node the tail sentinel, so links never dangle.
struct List {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Position (in the searched selection) of each node's op; calls flagged in `call`.
    op: Vec<usize>,
    call: Vec<bool>,
    /// For a call node, its return node.
    partner: Vec<usize>,
}

const HEAD: usize = 0;

impl List {
    /// Calls sort before returns at equal times, so `a.ret == b.call` leaves them concurrent.
    fn new(ops: &[&Op]) -> Self {
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (p, o) in ops.iter().enumerate() {
            events.push((o.call, false, p));
            events.push((o.ret, true, p));
        }
        events.sort_unstable();
        let nodes = events.len() + 2;
        let mut l = List {
            next: (1..=nodes).collect(),
            prev: (0..nodes).map(|k| k.saturating_sub(1)).collect(),
            op: vec![usize::MAX; nodes],
            call: vec![false; nodes],
            partner: vec![0; nodes],
        };
        let mut call_node = vec![0; ops.len()];
        for (i, &(_, is_ret, p)) in events.iter().enumerate() {
            let k = i + 1;
            l.op[k] = p;
            if is_ret {
                l.partner[call_node[p]] = k;
            } else {
                l.call[k] = true;
                call_node[p] = k;
            }
        }
        l
    }

    fn unlink(&mut self, k: usize) {
        let (p, n) = (self.prev[k], self.next[k]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, k: usize) {
        let (p, n) = (self.prev[k], self.next[k]);
        self.next[p] = k;
        self.prev[n] = k;
    }

    /// Removes a call and its return; `unlift` undoes it (links restored in reverse order).
    fn lift(&mut self, k: usize) {
        self.unlink(k);
        self.unlink(self.partner[k]);
    }

    fn unlift(&mut self, k: usize) {
        self.relink(self.partner[k]);
        self.relink(k);
    }
}

/// WGL search over the ops `sel` (indices into `ops`). With `observe` (an acknowledged read),
/// that read is unconstrained and the search enumerates every value it can see in a complete
/// linearization instead of stopping at the first one. Also returns the steps spent.
fn search(ops: &[Op], sel: &[usize], observe: Option<usize>, budget: u64) -> (Outcome, u64) {
    let picked: Vec<&Op> = sel.iter().map(|&i| &ops[i]).collect();
    let mut list = List::new(&picked);
    let enumerate = observe.is_some();
    let mut model = Model::new(picked, observe.and_then(|o| sel.iter().position(|&i| i == o)));
    let mut linearized = vec![0u64; sel.len().div_ceil(64).max(1)];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state = State { reg: 0, seen: UNSEEN };
    let mut pending = model.ops.iter().filter(|o| o.required).count();
    let mut seen: Vec<u32> = Vec::new();
    let mut steps = 0u64;
    let mut cur = list.next[HEAD];
    loop {
        // Unknown-outcome ops may stay un-linearized: done once every acknowledged op is placed.
        if pending == 0 {
            if !enumerate {
                return (Outcome::Linearizable, steps);
            }
            if !seen.contains(&state.seen) {
                seen.push(state.seen);
            }
        }
        if steps >= budget {
            return (Outcome::OutOfBudget, steps);
        }
        steps += 1;
        if pending > 0 && list.call[cur] {
            let p = list.op[cur];
            if let Some(next) = model.apply(p, state) {
                linearized[p / 64] |= 1 << (p % 64);
                if cache.insert((linearized.clone(), next)) {
                    stack.push((cur, state));
                    state = next;
                    pending -= usize::from(model.ops[p].required);
                    list.lift(cur);
                    cur = list.next[HEAD];
                    continue;
                }
                linearized[p / 64] &= !(1 << (p % 64));
            }
            cur = list.next[cur];
            continue;
        }
        // A pending op's return (or the end) was reached, or a linearization recorded: backtrack.
        let Some((k, prev)) = stack.pop() else {
            if !enumerate {
                return (Outcome::Violation, steps);
            }
            let mut vals: Vec<_> = seen.iter().map(|&s| model.vals[s as usize].clone()).collect();
            vals.sort();
            return (Outcome::Observed(vals), steps);
        };
        let p = list.op[k];
        linearized[p / 64] &= !(1 << (p % 64));
        pending += usize::from(model.ops[p].required);
        state = prev;
        list.unlift(k);
        cur = list.next[k];
    }
}

/// Greedy reduction, ddmin style: drop chunks of halving size, then single ops until nothing
/// more can go. A candidate is kept only if it is still non-linearizable *and* every read in it
/// remains producible, so the result shows the writes a stale read saw instead of degenerating
/// into "a read of a value never written". Out of budget: the smallest found so far.
fn minimize(ops: &[Op], mut cur: Vec<usize>, budget: u64) -> Vec<usize> {
    let mut left = budget;
    let mut chunk = (cur.len() / 2).max(1);
    loop {
        let mut changed = false;
        let mut i = 0;
        while i < cur.len() {
            if left == 0 {
                return cur;
            }
            let end = (i + chunk).min(cur.len());
            let cand: Vec<usize> = cur[..i].iter().chain(&cur[end..]).copied().collect();
            if still_fails(ops, &cand, &mut left) {
                cur = cand;
                changed = true;
            } else {
                i = end;
            }
        }
        if chunk > 1 {
            chunk /= 2;
        } else if !changed {
            return cur;
        }
    }
}

/// Is `cand` (non-empty, producible) decidedly non-linearizable? Charges the steps to `left`.
fn still_fails(ops: &[Op], cand: &[usize], left: &mut u64) -> bool {
    if cand.is_empty() || first_unproducible(ops, cand).is_some() {
        return false;
    }
    let (outcome, steps) = search(ops, cand, None, *left);
    *left = left.saturating_sub(steps.max(1));
    matches!(outcome, Outcome::Violation)
}

/// One line naming a read of `sel` whose value no linearization allows, with the values that
/// linearizations of the rest would let it see (latest read first: usually the one that broke).
fn explain(ops: &[Op], sel: &[usize], budget: u64) -> String {
    let ids: Vec<usize> = sel.iter().map(|&i| ops[i].id).collect();
    for &r in sel.iter().rev() {
        let Act::Read(got) = &ops[r].act else { continue };
        let (Outcome::Observed(vals), _) = search(ops, sel, Some(r), budget) else { continue };
        if vals.is_empty() || vals.contains(got) {
            continue;
        }
        let mut allowed: Vec<String> = vals.iter().take(6).map(show).collect();
        if vals.len() > 6 {
            allowed.push(format!("… ({} values)", vals.len()));
        }
        return format!(
            "{} returned {}, but linearizations of ops {:?} allow only {}",
            describe(&ops[r]),
            show(got),
            ids,
            allowed.join(" | ")
        );
    }
    format!("no linearization of ops {ids:?} agrees with the values they read")
}

fn describe(o: &Op) -> String {
    format!("read #{} (client {}, {}..{}us)", o.id, o.client, o.call, o.ret)
}

/// A register value for humans: quoted if printable, hex otherwise, long values cut.
fn show(v: &Option<Vec<u8>>) -> String {
    const CUT: usize = 32;
    let Some(b) = v else { return "absent".to_string() };
    let head = &b[..b.len().min(CUT)];
    let body = if head.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        format!("{:?}", String::from_utf8_lossy(head))
    } else {
        let hex: String = head.iter().map(|c| format!("{c:02x}")).collect();
        format!("0x{hex}")
    };
    if b.len() > CUT {
        format!("{body}… ({} bytes)", b.len())
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: usize, inv: u64, cmp: Option<u64>, kind: KvKind, read: Option<&str>) -> KvOp {
        let read = matches!(kind, KvKind::Read).then(|| read.map(|s| s.as_bytes().to_vec()));
        KvOp { id, client: id as u64, invoke_us: inv, complete_us: cmp, kind, read }
    }
    fn put(id: usize, inv: u64, cmp: Option<u64>, v: &str) -> KvOp {
        op(id, inv, cmp, KvKind::Write(Some(v.as_bytes().to_vec())), None)
    }
    fn del(id: usize, inv: u64, cmp: Option<u64>) -> KvOp {
        op(id, inv, cmp, KvKind::Write(None), None)
    }
    fn app(id: usize, inv: u64, cmp: Option<u64>, v: &str) -> KvOp {
        op(id, inv, cmp, KvKind::Append(v.as_bytes().to_vec()), None)
    }
    fn get(id: usize, inv: u64, cmp: u64, v: Option<&str>) -> KvOp {
        op(id, inv, Some(cmp), KvKind::Read, v)
    }
    fn minimal(v: Verdict) -> Vec<usize> {
        match v {
            Verdict::NotLinearizable { minimal, .. } => minimal,
            other => panic!("expected a violation, got {other:?}"),
        }
    }
    const B: u64 = 100_000;

    /// Exhaustive reference: try every order that respects real time (tiny histories only).
    fn brute(ops: &[KvOp]) -> bool {
        fn go(ops: &[&KvOp], done: &mut [bool], reg: Option<Vec<u8>>) -> bool {
            if ops.iter().zip(done.iter()).all(|(o, d)| *d || o.complete_us.is_none()) {
                return true;
            }
            for i in 0..ops.len() {
                let blocked = |j: usize| {
                    !done[j] && ops[j].complete_us.is_some_and(|c| c < ops[i].invoke_us)
                };
                if done[i] || (0..ops.len()).any(blocked) {
                    continue;
                }
                let next = match &ops[i].kind {
                    KvKind::Write(v) => v.clone(),
                    KvKind::Append(b) => Some([reg.clone().unwrap_or_default(), b.clone()].concat()),
                    KvKind::Read if ops[i].read.as_ref() == Some(&reg) => reg.clone(),
                    KvKind::Read => continue,
                };
                done[i] = true;
                if go(ops, done, next) {
                    return true;
                }
                done[i] = false;
            }
            false
        }
        let kept: Vec<&KvOp> =
            ops.iter().filter(|o| o.kind != KvKind::Read || o.complete_us.is_some()).collect();
        go(&kept, &mut vec![false; kept.len()], None)
    }

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// A linearizable history by construction: op i takes effect at 100·i (unknown writes maybe
    /// never) inside a random interval around that point; values are unique.
    fn random_linearizable(seed: u64, n: usize, spread: u64) -> Vec<KvOp> {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut reg: Option<Vec<u8>> = None;
        let mut out = Vec::new();
        for i in 0..n {
            let t = 1_000 + 100 * i as u64;
            let (inv, cmp) = (t - rng.below(spread), t + rng.below(spread));
            let unknown = rng.below(10) == 0;
            let effect = !unknown || rng.below(2) == 0;
            let kind = match rng.below(10) {
                0..=3 => KvKind::Read,
                4..=6 => KvKind::Write(Some(format!("v{i}").into_bytes())),
                7 => KvKind::Write(None),
                _ => KvKind::Append(format!("[{i}]").into_bytes()),
            };
            match &kind {
                KvKind::Write(v) if effect => reg = v.clone(),
                KvKind::Append(b) if effect => reg = Some([reg.unwrap_or_default(), b.clone()].concat()),
                _ => {}
            }
            let read = matches!(kind, KvKind::Read).then(|| reg.clone());
            let complete_us = (!unknown).then_some(cmp);
            out.push(KvOp { id: i, client: i as u64 % 5, invoke_us: inv, complete_us, kind, read });
        }
        out.sort_by_key(|o| o.invoke_us);
        out
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = [put(1, 0, Some(10), "a"), get(2, 20, 30, Some("a")), del(3, 40, Some(50)),
            get(4, 60, 70, None), app(5, 80, Some(90), "x"), app(6, 100, Some(110), "y"),
            get(7, 120, 130, Some("xy"))];
        assert_eq!(check_key(&h, B), Verdict::Linearizable);
        assert_eq!(check_key(&[], B), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_writes_allow_either_value() {
        for v in ["a", "b"] {
            let h = [put(1, 0, Some(50), "a"), put(2, 10, Some(60), "b"), get(3, 70, 80, Some(v))];
            assert_eq!(check_key(&h, B), Verdict::Linearizable, "read {v}");
        }
        // Touching endpoints (ack == invoke) count as concurrent.
        let h = [put(1, 0, Some(10), "a"), put(2, 10, Some(20), "b"), get(3, 30, 40, Some("a"))];
        assert_eq!(check_key(&h, B), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_acknowledged_overwrite() {
        let h = [put(1, 0, Some(10), "a"), get(2, 11, 12, Some("a")), put(3, 20, Some(30), "b"),
            get(4, 31, 35, Some("b")), get(5, 40, 50, Some("a")), put(6, 60, Some(70), "c")];
        let v = check_key(&h, B);
        let Verdict::NotLinearizable { minimal, explain } = &v else { panic!("{v:?}") };
        assert_eq!(minimal, &[1, 3, 5]);
        assert!(explain.contains("read #5") && explain.contains("allow only \"b\""), "{explain}");
    }

    #[test]
    fn read_of_a_value_never_written() {
        let h = [put(1, 0, Some(10), "a"), get(2, 20, 30, Some("zzz"))];
        assert_eq!(minimal(check_key(&h, B)), [2]);
        // Written only after the read was acknowledged: just as impossible.
        let h = [get(1, 0, 10, Some("a")), put(2, 11, Some(20), "a")];
        assert_eq!(minimal(check_key(&h, B)), [1]);
    }

    #[test]
    fn lost_append_is_detected() {
        let h = [app(1, 0, Some(10), "x"), app(2, 20, Some(30), "y"), get(3, 40, 50, Some("x"))];
        assert_eq!(minimal(check_key(&h, B)), [2, 3]);
        let h = [app(1, 0, Some(10), "x"), get(2, 20, 30, None)];
        assert_eq!(minimal(check_key(&h, B)), [1, 2]);
    }

    #[test]
    fn duplicated_append_is_detected() {
        let h = [app(1, 0, Some(10), "x"), app(2, 20, Some(30), "y"), get(3, 40, 50, Some("xyy"))];
        let v = check_key(&h, B);
        let Verdict::NotLinearizable { minimal, explain } = &v else { panic!("{v:?}") };
        assert_eq!(minimal, &[2, 3]);
        assert!(explain.contains("allow only \"y\""), "{explain}");
    }

    #[test]
    fn unknown_outcome_write_may_explain_a_read() {
        let h = [put(1, 0, Some(10), "a"), put(2, 20, None, "b"), get(3, 30, 40, Some("b")),
            get(4, 50, 60, Some("b"))];
        assert_eq!(check_key(&h, B), Verdict::Linearizable);
        // ...or never have happened.
        let h = [put(1, 0, Some(10), "a"), put(2, 20, None, "b"), get(3, 30, 40, Some("a"))];
        assert_eq!(check_key(&h, B), Verdict::Linearizable);
        // ...but cannot take effect before it was invoked.
        let h = [put(1, 0, Some(10), "a"), get(2, 20, 30, Some("b")), put(3, 31, None, "b")];
        assert_eq!(minimal(check_key(&h, B)), [2]);
        // Once seen, it happened: a later read cannot go back to the old value.
        let h = [put(1, 0, Some(10), "a"), put(2, 20, None, "b"), get(3, 30, 40, Some("b")),
            get(4, 50, 60, Some("a"))];
        assert_eq!(minimal(check_key(&h, B)), [1, 2, 3, 4]);
    }

    #[test]
    fn unknown_outcome_reads_are_ignored() {
        let mut r = get(2, 20, 30, Some("nonsense"));
        r.complete_us = None;
        assert_eq!(check_key(&[put(1, 0, Some(10), "a"), r], B), Verdict::Linearizable);
    }

    #[test]
    fn read_of_old_value_after_acknowledged_delete() {
        let h = [put(1, 0, Some(10), "a"), del(2, 20, Some(30)), get(3, 40, 50, Some("a"))];
        let v = check_key(&h, B);
        let Verdict::NotLinearizable { minimal, explain } = &v else { panic!("{v:?}") };
        assert_eq!(minimal, &[1, 2, 3]);
        assert!(explain.contains("allow only absent"), "{explain}");
    }

    /// Everything concurrent with reads no order satisfies: exponential without the budget.
    fn hard_history(n: usize) -> Vec<KvOp> {
        let mut h: Vec<KvOp> = (0..n).map(|i| put(i, 0, Some(1_000), &format!("v{i}"))).collect();
        h.extend((0..n).map(|i| get(n + i, 0, 1_000, Some(&format!("v{}", (i * 7) % n)))));
        h.push(get(2 * n, 0, 1_000, None));
        h.push(app(2 * n + 1, 0, Some(1_000), "x"));
        h
    }

    #[test]
    fn tiny_budget_gives_undecided_not_a_hang() {
        let h = hard_history(20);
        assert_eq!(check_key(&h, 500), Verdict::Undecided { steps: 500 });
        assert!(matches!(check_key(&h, 200_000), Verdict::Undecided { steps: 200_000 }));
    }

    #[test]
    fn verdicts_are_deterministic() {
        let mut h = random_linearizable(7, 120, 250);
        let r = h.iter().rposition(|o| o.kind == KvKind::Read && o.complete_us.is_some()).unwrap();
        h[r].read = Some(Some(b"v0".to_vec()));
        let first = check_key(&h, B);
        assert!(matches!(first, Verdict::NotLinearizable { .. }), "{first:?}");
        assert_eq!(first, check_key(&h, B));
    }

    #[test]
    fn long_mostly_sequential_history_decides_quickly() {
        let h = random_linearizable(42, 300, 60);
        assert_eq!(check_key(&h, 20_000), Verdict::Linearizable);
        let h = random_linearizable(43, 300, 150);
        assert_eq!(check_key(&h, 50_000), Verdict::Linearizable);
    }

    #[test]
    fn random_linearizable_histories_pass_and_mutated_reads_fail() {
        for seed in 0..200 {
            let mut h = random_linearizable(seed, 40, 180);
            assert_eq!(check_key(&h, B), Verdict::Linearizable, "seed {seed}");
            let reads: Vec<usize> = (0..h.len())
                .filter(|&i| h[i].kind == KvKind::Read && h[i].complete_us.is_some())
                .collect();
            let Some(&r) = reads.get(seed as usize % reads.len().max(1)) else { continue };
            let honest = h[r].read.clone();
            h[r].read = Some(Some(b"fresh".to_vec()));
            assert_eq!(minimal(check_key(&h, B)), [h[r].id], "seed {seed}");
            // A stale value: overwritten by an acked op that began after the writer's ack and
            // ended before the read began. Only the search can reject this one.
            let rd = h[r].invoke_us;
            let stale = h.iter().find(|w| {
                matches!(&w.kind, KvKind::Write(Some(_))) && w.complete_us.is_some_and(|c| {
                    h.iter().any(|o| o.kind != KvKind::Read && o.invoke_us > c
                        && o.complete_us.is_some_and(|oc| oc < rd))
                })
            });
            let Some(KvKind::Write(stale)) = stale.map(|w| w.kind.clone()) else { continue };
            h[r].read = Some(stale);
            let m = minimal(check_key(&h, B));
            assert!(m.len() >= 3 && m.contains(&h[r].id), "seed {seed}: {m:?}");
            h[r].read = honest;
            assert_eq!(check_key(&h, B), Verdict::Linearizable, "seed {seed}");
        }
    }

    /// Random small histories, linearizable or not, against exhaustive search; violations'
    /// `minimal` must fail on its own and lose that property when any single op is removed.
    #[test]
    fn agrees_with_brute_force_on_small_histories() {
        let vals = [None, Some("a"), Some("b"), Some("x"), Some("xy"), Some("yx"), Some("ax")];
        let (mut bad, mut rng) = (0, Rng(0x2545_F491_4F6C_DD1D));
        for _ in 0..1_500 {
            let h: Vec<KvOp> = (0..3 + rng.below(5) as usize)
                .map(|id| {
                    let inv = rng.below(60);
                    let cmp = (rng.below(8) != 0).then(|| inv + rng.below(40));
                    match rng.below(6) {
                        0 => put(id, inv, cmp, ["a", "b"][rng.below(2) as usize]),
                        1 => del(id, inv, cmp),
                        2 => app(id, inv, cmp, ["x", "y"][rng.below(2) as usize]),
                        _ => get(id, inv, inv + rng.below(40), vals[rng.below(7) as usize]),
                    }
                })
                .collect();
            let v = check_key(&h, B);
            assert_eq!(v == Verdict::Linearizable, brute(&h), "{h:?} -> {v:?}");
            let Verdict::NotLinearizable { minimal, .. } = v else { continue };
            bad += 1;
            let sub = |skip: Option<usize>| -> Vec<KvOp> {
                h.iter().filter(|o| minimal.contains(&o.id) && Some(o.id) != skip).cloned().collect()
            };
            assert!(!brute(&sub(None)), "{h:?} -> {minimal:?}");
            for &id in &minimal {
                let rest = sub(Some(id));
                let prepared = prepare(&rest);
                let all: Vec<usize> = (0..prepared.len()).collect();
                assert!(brute(&rest) || first_unproducible(&prepared, &all).is_some(), "{h:?}");
            }
        }
        assert!(bad > 300, "too few violations generated: {bad}");
    }

    #[test]
    fn check_all_reports_per_key() {
        let mut by_key = BTreeMap::new();
        by_key.insert("ok".to_string(), vec![put(1, 0, Some(10), "a"), get(2, 20, 30, Some("a"))]);
        by_key.insert("bad".to_string(), vec![put(3, 0, Some(10), "a"), get(4, 20, 30, None)]);
        by_key.insert("hard".to_string(), hard_history(12));
        let s = check_all(&by_key, 1_000);
        assert_eq!(s.keys_checked, 3);
        assert_eq!(s.undecided, [("hard".to_string(), 1_000)]);
        assert_eq!(s.violations.len(), 1);
        assert_eq!((s.violations[0].0.as_str(), &s.violations[0].1[..]), ("bad", &[3, 4][..]));
    }
}
