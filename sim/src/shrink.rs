//! `faultline shrink`: keep a failing seed, minimize the scenario around it.
//!
//! The predicate is "this scenario, run at the same seed with the same knobs, still has a
//! violation of kind K". Every step only proposes candidates and keeps the first that holds:
//!
//! 1. materialize: the chaos controller's faults, recorded with their firing times
//!    ([`crate::world::SeedResult::chaos_schedule`]), join the scripted timeline and the chaos
//!    block goes. Not an exact replay (madsim's scheduler draws shift once the controller task
//!    is gone), so this step is checked like any other; when it does not hold, the chaos block
//!    stays and the rest below still shrinks.
//! 2. [`ddmin`] over the timeline items;
//! 3. shorten each remaining fault: drop a straggler, halve `for_ms`, `down_ms`,
//!    `straggler_ms`, `per_mille`, `latency_ms` (whichever the item has, read through its JSON
//!    form, so a new action with those fields shrinks without changes here);
//! 4. cut `duration_ms` to just past the last fault, move the faults earlier (halving the
//!    quiet time before the first), cut again, halve;
//! 5. halve clients and ops/s; drop or halve the scenario's failpoints;
//! 6. again from 2 until a round changes nothing.
//!
//! Each candidate is one seed run; results are cached by the candidate's JSON, and `jobs`
//! candidates of an ordered list run at once, keeping the first that holds in list order, so
//! the result does not depend on `jobs` (only the number of runs spent does).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use engine::Knobs;
use reports::ViolationKind;
use serde_json::Value;

use crate::scenario::{retimed, Expect, Scenario, TimelineItem, Verdict};
use crate::world::{run_seed, SeedOptions};

/// The run budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

/// Tests candidates in order and returns the index of the first one that holds.
pub type FirstHolding<'a, T> = dyn FnMut(&[Vec<T>]) -> Result<Option<usize>, Exhausted> + 'a;

/// Delta debugging (Zeller's ddmin) with subsets and complements: returns a subsequence of
/// `items` for which the predicate holds and from which no single item can be removed (when the
/// budget lasts; the bool says whether it did). `first_holding` is asked about whole rounds of
/// candidates: the empty list, then the chunks (only when there are more than two) and the
/// complements of the chunks at the current granularity. The predicate is assumed to hold for
/// `items`.
pub fn ddmin<T: Clone>(items: Vec<T>, first_holding: &mut FirstHolding<'_, T>) -> (Vec<T>, bool) {
    let mut cur = items;
    if cur.is_empty() {
        return (cur, true);
    }
    match first_holding(&[vec![]]) {
        Err(Exhausted) => return (cur, false),
        Ok(Some(_)) => return (vec![], true),
        Ok(None) => {}
    }
    let mut n = 2usize;
    while cur.len() >= 2 {
        let len = cur.len();
        let chunks: Vec<&[T]> = (0..n)
            .map(|k| &cur[k * len / n..(k + 1) * len / n])
            .collect();
        // With two chunks each subset is the other's complement: try complements only.
        let subsets: Vec<Vec<T>> = if n > 2 {
            chunks.iter().map(|c| c.to_vec()).collect()
        } else {
            vec![]
        };
        let n_subsets = subsets.len();
        let mut cands = subsets;
        for k in 0..n {
            cands.push(
                chunks
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != k)
                    .flat_map(|(_, c)| c.iter().cloned())
                    .collect(),
            );
        }
        match first_holding(&cands) {
            Err(Exhausted) => return (cur, false),
            Ok(Some(i)) => {
                cur = cands.swap_remove(i);
                n = if i < n_subsets { 2 } else { (n - 1).max(2) };
            }
            Ok(None) => {
                if n >= len {
                    break;
                }
                n = (2 * n).min(len);
            }
        }
    }
    (cur, true)
}

/// The scenario with the chaos controller's recorded faults in its timeline instead of the
/// chaos block (sorted by firing time; scripted items first at equal times).
pub fn materialize(scn: &Scenario, chaos_schedule: &[TimelineItem]) -> Scenario {
    let mut m = scn.clone();
    m.chaos = None;
    m.timeline.extend(chaos_schedule.iter().cloned());
    m.timeline.sort_by_key(TimelineItem::at_ms);
    m
}

/// Fields of a timeline item that [`shorten`] halves, with the least value it goes down to.
pub const SHORTEN_FIELDS: [(&str, u64); 5] = [
    ("for_ms", 10),
    ("down_ms", 10),
    ("straggler_ms", 10),
    ("per_mille", 1),
    ("latency_ms", 1),
];

/// Optional fields of a timeline item that shrinking tries to remove.
pub const OPTIONAL_FIELDS: [&str; 1] = ["straggler_ms"];

/// The item with `field` halved (a number, or both ends of a `[min, max]` range), not below
/// `floor`; `None` when the item has no such field or it is already at the floor.
pub fn shorten(item: &TimelineItem, field: &str, floor: u64) -> Option<TimelineItem> {
    let mut v = serde_json::to_value(item).ok()?;
    let halve = |x: u64| (x / 2).max(floor).min(x);
    let new = match v.get(field)? {
        Value::Number(n) => Value::from(halve(n.as_u64()?)),
        Value::Array(a) => Value::from(
            a.iter()
                .map(|x| x.as_u64().map(halve))
                .collect::<Option<Vec<u64>>>()?,
        ),
        _ => return None,
    };
    if v[field] == new {
        return None;
    }
    v[field] = new;
    serde_json::from_value(v).ok()
}

/// The item without the optional `field`; `None` when it does not have it.
pub fn without(item: &TimelineItem, field: &str) -> Option<TimelineItem> {
    let mut v = serde_json::to_value(item).ok()?;
    v.as_object_mut()?.remove(field)?;
    serde_json::from_value(v).ok()
}

/// When an item's effect is over: `at_ms` plus its longest window (`for_ms`, or a restart's
/// `down_ms` max plus `straggler_ms` max). Instant actions end when they fire.
pub fn effect_end_ms(item: &TimelineItem) -> u64 {
    let v = serde_json::to_value(item).unwrap_or_default();
    let max_of = |f: &str| {
        v.get(f)
            .and_then(|x| x.as_array())
            .and_then(|a| a.last())
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let for_ms = v.get("for_ms").and_then(Value::as_u64).unwrap_or(0);
    item.at_ms() + for_ms.max(max_of("down_ms") + max_of("straggler_ms"))
}

/// Time kept after the last fault's effect when `duration_ms` is first cut.
pub const DURATION_MARGIN_MS: u64 = 2_000;

pub struct Options {
    pub seed: u64,
    pub kind: ViolationKind,
    /// Kinds the original failure had beside `kind`: the shrunk scenario's expectation allows
    /// them (they come with the finding), and no others.
    pub also: Vec<ViolationKind>,
    pub knobs: Knobs,
    pub max_runs: usize,
    pub jobs: usize,
    /// Name and description of the minimal scenario (set on every candidate, so the file that
    /// is written is exactly what ran).
    pub name: String,
    pub description: String,
}

/// What a shrink produced.
pub struct Outcome {
    /// Faults the chaos controller fired in the original run.
    pub chaos_faults: usize,
    /// Whether the materialized schedule still failed (else the chaos block was kept).
    pub materialized: bool,
    pub minimal: Scenario,
    pub runs: usize,
    /// The run budget ran out before every step finished.
    pub exhausted: bool,
}

/// The original seed does not fail with the kind any more.
#[derive(Debug)]
pub struct NotReproduced {
    pub found: Vec<ViolationKind>,
    pub trace_hash: String,
}

type Reducer = Box<dyn Fn(&Scenario) -> Option<Scenario>>;

/// What one run of a candidate showed.
pub struct RunOutcome {
    pub kinds: Vec<ViolationKind>,
    pub trace_hash: String,
    pub chaos_schedule: Vec<TimelineItem>,
    /// The scenario the seed ran (a swarm-drawn cluster baked in).
    pub ran: Scenario,
}

/// Runs a candidate at the seed with the knobs.
pub fn run_candidate(opts: &Options, scn: &Scenario) -> RunOutcome {
    let r = run_seed(
        Arc::new(scn.clone()),
        opts.seed,
        opts.knobs.clone(),
        SeedOptions::default(),
        String::new(),
    );
    RunOutcome {
        kinds: r.report.kinds(),
        trace_hash: r.report.trace_hash,
        chaos_schedule: r.chaos_schedule,
        ran: (*r.scenario).clone(),
    }
}

struct Shrinker<'a> {
    opts: &'a Options,
    runs: usize,
    cache: BTreeMap<String, bool>,
    progress: &'a mut dyn FnMut(String),
}

impl Shrinker<'_> {
    fn say(&mut self, what: String) {
        let line = format!("[run {}/{}] {what}", self.runs, self.opts.max_runs);
        (self.progress)(line);
    }

    /// Whether each candidate still fails with the kind, `jobs` at a time; stops at the first
    /// that does (in list order) and returns its index. Candidates that do not load as a
    /// scenario file (validation) count as not holding without a run.
    fn first_holding(&mut self, cands: &[Scenario]) -> Result<Option<usize>, Exhausted> {
        let keys: Vec<String> = cands
            .iter()
            .map(|s| serde_json::to_string(s).expect("a scenario serializes"))
            .collect();
        for k in &keys {
            if !self.cache.contains_key(k) && Scenario::parse(k, "candidate").is_err() {
                self.cache.insert(k.clone(), false);
            }
        }
        let mut i = 0;
        while i < cands.len() {
            if let Some(&holds) = self.cache.get(&keys[i]) {
                if holds {
                    return Ok(Some(i));
                }
                i += 1;
                continue;
            }
            let room = self.opts.max_runs.saturating_sub(self.runs);
            if room == 0 {
                return Err(Exhausted);
            }
            let width = self.opts.jobs.max(1).min(room);
            let mut batch = vec![i];
            while batch.len() < width {
                let j = batch[batch.len() - 1] + 1;
                if j >= cands.len() || self.cache.contains_key(&keys[j]) {
                    break;
                }
                batch.push(j);
            }
            let opts = self.opts;
            let kinds: Vec<Vec<ViolationKind>> = if batch.len() == 1 {
                vec![run_candidate(opts, &cands[i]).kinds]
            } else {
                std::thread::scope(|s| {
                    let hs: Vec<_> = batch
                        .iter()
                        .map(|&b| s.spawn(move || run_candidate(opts, &cands[b]).kinds))
                        .collect();
                    hs.into_iter()
                        .map(|h| h.join().expect("a seed run catches its own panics"))
                        .collect()
                })
            };
            self.runs += batch.len();
            let mut first = None;
            for (&b, found) in batch.iter().zip(&kinds) {
                let holds = found.contains(&self.opts.kind);
                self.cache.insert(keys[b].clone(), holds);
                if holds && first.is_none() {
                    first = Some(b);
                }
            }
            if first.is_some() {
                return Ok(first);
            }
            i = batch[batch.len() - 1] + 1;
        }
        Ok(None)
    }

    /// ddmin over the timeline of `cur`.
    fn ddmin_timeline(&mut self, cur: &mut Scenario, label: &str) -> Result<(), Exhausted> {
        let base = cur.clone();
        let before = base.timeline.len();
        let (min, complete) = ddmin(base.timeline.clone(), &mut |sets: &[Vec<
            TimelineItem,
        >]| {
            let scns: Vec<Scenario> = sets
                .iter()
                .map(|t| Scenario {
                    timeline: t.clone(),
                    ..base.clone()
                })
                .collect();
            let r = self.first_holding(&scns)?;
            if let Some(i) = r {
                let left = sets[i].len();
                self.say(format!("{label}: {left} of {before} timeline items left"));
            }
            Ok(r)
        });
        cur.timeline = min;
        if complete {
            Ok(())
        } else {
            Err(Exhausted)
        }
    }

    /// Tries the reducers' candidates in order and keeps the first that holds, again and again.
    /// A reducer whose candidate did not hold is not asked again in this pass.
    fn pass(
        &mut self,
        cur: &mut Scenario,
        label: &str,
        reducers: Vec<(String, Reducer)>,
    ) -> Result<(), Exhausted> {
        let mut active = reducers;
        loop {
            let cands: Vec<(usize, Scenario)> = active
                .iter()
                .enumerate()
                .filter_map(|(k, (_, r))| r(cur).filter(|s| s != cur).map(|s| (k, s)))
                .collect();
            if cands.is_empty() {
                return Ok(());
            }
            let scns: Vec<Scenario> = cands.iter().map(|(_, s)| s.clone()).collect();
            let Some(i) = self.first_holding(&scns)? else {
                return Ok(());
            };
            let k = cands[i].0;
            *cur = scns[i].clone();
            self.say(format!("{label}: {} holds", active[k].0));
            let failed: BTreeSet<usize> = cands[..i].iter().map(|(k, _)| *k).collect();
            active = active
                .into_iter()
                .enumerate()
                .filter(|(k, _)| !failed.contains(k))
                .map(|(_, r)| r)
                .collect();
        }
    }
}

/// One item of the timeline replaced by `f(item)`, if that gives one.
fn replace_item(
    idx: usize,
    f: impl Fn(&TimelineItem) -> Option<TimelineItem> + 'static,
) -> Reducer {
    Box::new(move |s: &Scenario| {
        let item = f(s.timeline.get(idx)?)?;
        let mut c = s.clone();
        c.timeline[idx] = item;
        Some(c)
    })
}

fn shorten_reducers(scn: &Scenario) -> Vec<(String, Reducer)> {
    let mut out: Vec<(String, Reducer)> = Vec::new();
    for (idx, item) in scn.timeline.iter().enumerate() {
        let what = format!("#{idx} {}@{}ms", item.action(), item.at_ms());
        for field in OPTIONAL_FIELDS {
            if without(item, field).is_some() {
                out.push((
                    format!("{what}: drop {field}"),
                    replace_item(idx, move |i| without(i, field)),
                ));
            }
        }
        for (field, floor) in SHORTEN_FIELDS {
            if shorten(item, field, floor).is_some() {
                out.push((
                    format!("{what}: halve {field}"),
                    replace_item(idx, move |i| shorten(i, field, floor)),
                ));
            }
        }
    }
    out
}

/// The least duration that still lets every timeline item fire.
fn min_duration(s: &Scenario) -> u64 {
    s.timeline.iter().map(|i| i.at_ms() + 1).max().unwrap_or(1)
}

fn duration_reducers() -> Vec<(String, Reducer)> {
    let cut: Reducer = Box::new(|s: &Scenario| {
        if s.chaos.is_some() {
            return None; // the controller's faults run until the end
        }
        let end = s.timeline.iter().map(effect_end_ms).max().unwrap_or(0);
        let d = (end + DURATION_MARGIN_MS).max(min_duration(s));
        (d < s.duration_ms).then(|| Scenario {
            duration_ms: d,
            ..s.clone()
        })
    });
    let halve: Reducer = Box::new(|s: &Scenario| {
        let d = (s.duration_ms / 2).max(min_duration(s));
        (d < s.duration_ms).then(|| Scenario {
            duration_ms: d,
            ..s.clone()
        })
    });
    // Faults late in a long run keep the duration long: move the whole timeline earlier, all
    // the way to the start or by half the quiet time before the first fault, keeping the
    // faults' spacing.
    let earlier = |whole: bool| -> Reducer {
        Box::new(move |s: &Scenario| {
            let first = s.timeline.iter().map(TimelineItem::at_ms).min()?;
            let by = if whole { first } else { first / 2 };
            (by > 0).then(|| Scenario {
                timeline: s
                    .timeline
                    .iter()
                    .map(|i| retimed(i, i.at_ms() - by))
                    .collect(),
                ..s.clone()
            })
        })
    };
    vec![
        ("cut duration to the last fault + margin".into(), cut),
        ("move the faults to the start".into(), earlier(true)),
        ("move the faults earlier".into(), earlier(false)),
        ("halve duration".into(), halve),
    ]
}

fn load_reducers(scn: &Scenario) -> Vec<(String, Reducer)> {
    let mut out: Vec<(String, Reducer)> = vec![
        (
            "halve clients".into(),
            Box::new(|s: &Scenario| {
                let mut c = s.clone();
                c.workload.clients = s.workload.clients / 2;
                (s.workload.clients > 0).then_some(c)
            }),
        ),
        (
            "halve ops/s".into(),
            Box::new(|s: &Scenario| {
                let mut c = s.clone();
                c.workload.ops_per_sec = (s.workload.ops_per_sec / 2).max(1);
                (s.workload.clients > 0 && s.workload.ops_per_sec > 1).then_some(c)
            }),
        ),
    ];
    for f in &scn.failpoints {
        let name = f.name.clone();
        out.push((
            format!("drop failpoint {name}"),
            Box::new(move |s: &Scenario| {
                let mut c = s.clone();
                c.failpoints.retain(|f| f.name != name);
                (c.failpoints.len() < s.failpoints.len()).then_some(c)
            }),
        ));
        let name = f.name.clone();
        out.push((
            format!("halve failpoint {name}"),
            Box::new(move |s: &Scenario| {
                let mut c = s.clone();
                let f = c.failpoints.iter_mut().find(|f| f.name == name)?;
                (f.per_mille > 1).then(|| f.per_mille /= 2)?;
                Some(c)
            }),
        ));
    }
    out
}

/// Shrinks `scn` at `opts.seed` while it still fails with `opts.kind`. Progress lines go to
/// `progress`. Fails only when the original does not reproduce; a spent budget returns the
/// smallest scenario found so far.
pub fn shrink(
    scn: &Scenario,
    opts: &Options,
    progress: &mut dyn FnMut(String),
) -> Result<Outcome, NotReproduced> {
    let mut sh = Shrinker {
        opts,
        runs: 0,
        cache: BTreeMap::new(),
        progress,
    };
    let mut base = scn.clone();
    base.name = opts.name.clone();
    base.description = opts.description.clone();
    base.known_bugs = opts.knobs.iter().map(|b| b.to_string()).collect();
    base.expect = Expect {
        verdict: Verdict::Fail,
        kinds: vec![opts.kind],
        also: opts.also.clone(),
        ci_seeds: None,
        ..Expect::default()
    };
    let RunOutcome {
        kinds: found,
        trace_hash,
        chaos_schedule,
        ran,
    } = run_candidate(opts, &base);
    sh.runs += 1;
    if !found.contains(&opts.kind) {
        return Err(NotReproduced { found, trace_hash });
    }
    sh.cache
        .insert(serde_json::to_string(&base).expect("serializes"), true);
    sh.say(format!(
        "seed {} fails with {}; {} scripted item(s), {} chaos fault(s) fired",
        opts.seed,
        opts.kind,
        scn.timeline.len(),
        chaos_schedule.len()
    ));
    let mut cur = base.clone();
    let mut materialized = scn.chaos.is_none();
    if scn.chaos.is_some() {
        // The drawn cluster (if any) stays; the chaos block and its draw go.
        let mut m = materialize(&base, &chaos_schedule);
        m.replicas = ran.replicas;
        m.network = ran.network.clone();
        m.workload = ran.workload.clone();
        m.checkpoint_interval_ms = ran.checkpoint_interval_ms;
        match sh.first_holding(std::slice::from_ref(&m)) {
            Ok(Some(_)) => {
                materialized = true;
                cur = m;
                sh.say(format!(
                    "materialized: {} timeline items, no chaos block: still fails",
                    cur.timeline.len()
                ));
            }
            Ok(None) => sh.say(format!(
                "the materialized schedule does not fail with {} at this seed; keeping the chaos block (scripted items, duration, load and failpoints still shrink)",
                opts.kind
            )),
            Err(Exhausted) => {}
        }
    }
    // Rounds until one changes nothing: a shorter run or less load can make a fault
    // unnecessary, and a dropped fault can let the rest move earlier.
    let steps = |sh: &mut Shrinker<'_>, cur: &mut Scenario| -> Result<(), Exhausted> {
        for round in 1.. {
            let before = cur.clone();
            sh.ddmin_timeline(cur, &format!("round {round}: ddmin"))?;
            let label = |step: &str| format!("round {round}: {step}");
            sh.pass(cur, &label("shorten"), shorten_reducers(cur))?;
            sh.pass(cur, &label("duration"), duration_reducers())?;
            sh.pass(cur, &label("load"), load_reducers(cur))?;
            if *cur == before {
                break;
            }
        }
        Ok(())
    };
    let exhausted = steps(&mut sh, &mut cur).is_err();
    if exhausted {
        sh.say("run budget spent: keeping the smallest failing scenario so far".into());
    }
    Ok(Outcome {
        chaos_faults: chaos_schedule.len(),
        materialized,
        minimal: cur,
        runs: sh.runs,
        exhausted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Selector;

    #[test]
    fn shorten_halves_numbers_and_ranges_down_to_the_floor() {
        let r = TimelineItem::Restart {
            at_ms: 5,
            nodes: Selector::All,
            down_ms: [100, 800],
            straggler_ms: Some([200, 3000]),
        };
        let s = shorten(&r, "down_ms", 10).unwrap();
        assert!(matches!(
            s,
            TimelineItem::Restart {
                down_ms: [50, 400],
                at_ms: 5,
                ..
            }
        ));
        assert!(shorten(&r, "for_ms", 10).is_none(), "no such field");
        let w = without(&r, "straggler_ms").unwrap();
        assert!(matches!(
            w,
            TimelineItem::Restart {
                straggler_ms: None,
                ..
            }
        ));
        assert!(without(&w, "straggler_ms").is_none());
        let p = TimelineItem::Partition {
            at_ms: 0,
            nodes: Selector::Leader,
            for_ms: 15,
        };
        let p = shorten(&p, "for_ms", 10).unwrap();
        assert_eq!(effect_end_ms(&p), 10);
        assert!(shorten(&p, "for_ms", 10).is_none(), "at the floor");
        assert_eq!(effect_end_ms(&r), 5 + 800 + 3000);
    }
}
