//! The timeline of one seed, derived from its full trace: per-node role segments, fault windows
//! and markers, and (when the client history is given) one lane of operations per client. Built
//! once and shared by the HTML and Perfetto renderers so both tell the same story. Events that
//! are neither role changes nor markers (`apply`, `commit`, ...) are only counted per time
//! bucket: a 100k-event trace becomes a few hundred shapes, not 100k.
//!
//! Only reads the trace; nothing here can change it or its hash.

use std::collections::BTreeMap;

use crate::text::secs_us;
use crate::{ClientOp, OpOutcome, SeedReport, TraceEvent, ViolationKind};

/// The lane for controller markers and violations that belong to no single node.
pub const CLUSTER_LANE: &str = "cluster";

/// Trace kinds drawn as point markers, with what they mean. Any node may emit them; kinds the
/// engine does not emit yet (`checkpoint`, `pickup`, `rotate`, `step-up`, `drop`) light up as
/// soon as it does.
pub const MARKER_KINDS: &[(&str, &str)] = &[
    ("leader", "won an election"),
    ("truncate", "log truncated"),
    ("vote", "vote granted"),
    ("abort", "node aborted"),
    ("crash", "node crashed"),
    ("straggler", "restart delayed"),
    ("checkpoint", "checkpoint taken"),
    ("pickup", "checkpoint picked up"),
    ("rotate", "key rotated"),
    ("ddl", "DDL"),
    ("step-up", "step-up"),
    ("drop", "drop"),
    ("step-down", "storage stepped down"),
    ("leader-step-down", "leader asked to step down"),
    ("keystore", "keystore advanced"),
    ("drop-busy", "drop waits for a drain"),
    ("warn", "warning"),
    ("phase", "harness phase"),
];

/// Whether events of `kind` are drawn as markers.
pub fn is_marker_kind(kind: &str) -> bool {
    MARKER_KINDS.iter().any(|(k, _)| *k == kind)
}

/// Buckets of the per-lane activity histogram over the whole run.
pub const ACTIVITY_BUCKETS: usize = 400;

/// Above this many non-violation markers, same-kind markers on a lane that are close in time are
/// merged into one (with a count), keeping big traces light.
pub const MAX_MARKERS: usize = 4000;
/// The finest merge grid, as a fraction of the run; coarsened until the markers fit.
const THIN_BUCKETS: u64 = 2000;

/// Fault windows are packed into at most this many rows; more overlap share the last row.
pub const MAX_FAULT_ROWS: usize = 6;

/// Above this many client operations, the HTML's operation bars of one client with one outcome
/// that start in the same time slice are merged into one bar (with a count). The Perfetto
/// export keeps every operation.
pub const MAX_OP_BARS: usize = 2000;
/// Operations a violation names stay single bars when merging, up to this many.
pub const MAX_NAMED_OP_BARS: usize = 500;

/// What a node is doing over a stretch of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Running, role unknown (booting after a restart, or a node without raft roles).
    Up,
    Follower,
    Candidate,
    Leader,
    /// Killed (by a fault or a restart); may come back.
    Down,
    /// Ended on its own (abort or panic); stays down for the rest of the run.
    Aborted,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Up => "up",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Down => "down",
            Role::Aborted => "aborted",
        }
    }

    pub const ALL: [Role; 6] = [
        Role::Leader,
        Role::Follower,
        Role::Candidate,
        Role::Up,
        Role::Down,
        Role::Aborted,
    ];
}

/// One role over `[start_us, end_us)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub start_us: u64,
    pub end_us: u64,
    pub role: Role,
    /// Raft term, when the event that started the segment named one.
    pub term: Option<u64>,
    /// The detail of the event that started the segment (e.g. the kill's lost bytes).
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lane {
    pub name: String,
    /// False for the cluster lane, which holds markers only.
    pub is_node: bool,
    pub segments: Vec<Segment>,
    /// Events per bucket that are neither role changes nor markers (applies, commits, ...);
    /// [`ACTIVITY_BUCKETS`] buckets over `[0, end_us]`.
    pub activity: Vec<u32>,
}

/// A controller fault, from its `fault` trace line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultWindow {
    pub start_us: u64,
    /// Equal to `start_us` for a fault without a duration (`restart`, `heal`).
    pub end_us: u64,
    /// First word of the detail: `partition`, `restart`, `clog`, `pause`, `loss`, ...
    pub label: String,
    pub detail: String,
    /// Lanes it names (`[n1,n2]` or `n1->n2`); empty means the whole cluster (loss, latency).
    pub nodes: Vec<String>,
    /// Row in the fault band, so overlapping windows stay readable.
    pub row: usize,
}

impl FaultWindow {
    pub fn is_instant(&self) -> bool {
        self.end_us == self.start_us
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub at_us: u64,
    /// Index into [`Timeline::lanes`].
    pub lane: usize,
    /// The trace kind, or the violation kind for violations.
    pub kind: String,
    pub detail: String,
    /// Markers merged into this one by thinning (1 when not thinned).
    pub count: u32,
    pub violation: bool,
}

/// What the HTML draws of client operations: one operation, or several merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpBar {
    /// Index into [`Timeline::op_lanes`].
    pub lane: usize,
    pub start_us: u64,
    /// When the client's call returned, clamped to the run; the run's end for an operation still
    /// in flight. An unknown outcome stays open after this (drawn to the run's end).
    pub end_us: u64,
    pub outcome: OpOutcome,
    /// A violation names it (or one of the operations merged into it).
    pub named: bool,
    /// Operations merged into this bar (1 when not merged).
    pub count: u32,
    /// `put c0/k3`, or `12 ops` for a merged bar.
    pub title: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// End of the drawn time range (at least 1 µs).
    pub end_us: u64,
    /// Replicas in numeric order, then the page service, KMS, other nodes, clients, cluster.
    pub lanes: Vec<Lane>,
    pub faults: Vec<FaultWindow>,
    pub fault_rows: usize,
    /// Sorted by time; violations included (`violation: true`).
    pub markers: Vec<Marker>,
    /// Non-violation markers merged away by thinning (0 for ordinary traces).
    pub thinned: usize,
    /// Client-operation lanes, `client N` in client order then `ddl`; empty without a client
    /// history (see [`Timeline::with_client_ops`]).
    pub op_lanes: Vec<String>,
    /// Every client operation with its lane, by invocation time (Perfetto draws them all).
    pub ops: Vec<(usize, ClientOp)>,
    /// What the HTML draws of them: one bar per operation, merged past [`MAX_OP_BARS`]; named
    /// operations last, so they are drawn on top.
    pub op_bars: Vec<OpBar>,
    /// Operations merged into other bars (0 for ordinary histories).
    pub ops_merged: usize,
}

impl Timeline {
    /// Builds the timeline of `seed` from its full `trace`. Tolerates any input: unsorted
    /// events, unknown kinds and nodes, violations on nodes the trace never mentions.
    pub fn build(seed: &SeedReport, trace: &[TraceEvent]) -> Timeline {
        let mut order: Vec<&TraceEvent> = trace.iter().collect();
        order.sort_by_key(|e| e.at_us); // stable: equal times keep trace order

        let mut names: Vec<String> = trace
            .iter()
            .filter(|e| e.node != "controller")
            .map(|e| e.node.clone())
            .chain(seed.violations.iter().filter_map(|v| v.node.clone()))
            .filter(|n| n != CLUSTER_LANE)
            .collect();
        names.sort_by(|a, b| lane_key(a).cmp(&lane_key(b)));
        names.dedup();
        names.push(CLUSTER_LANE.to_string());
        let index: BTreeMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let cluster = names.len() - 1;

        let end_us = order
            .last()
            .map_or(0, |e| e.at_us)
            .max(seed.sim_ms.saturating_mul(1000))
            .max(
                seed.violations
                    .iter()
                    .map(|v| v.at_ms.saturating_mul(1000))
                    .max()
                    .unwrap_or(0),
            )
            .max(1);

        let mut states: Vec<LaneState> = names.iter().map(|_| LaneState::default()).collect();
        let mut lanes: Vec<Lane> = names
            .iter()
            .enumerate()
            .map(|(i, n)| Lane {
                name: n.clone(),
                is_node: i != cluster,
                segments: Vec::new(),
                activity: vec![0; ACTIVITY_BUCKETS],
            })
            .collect();
        let mut faults = Vec::new();
        let mut markers = Vec::new();

        for e in order {
            let lane = if e.node == "controller" {
                if e.kind == "fault" {
                    faults.push(parse_fault(e.at_us, &e.detail, end_us));
                    continue;
                }
                cluster
            } else {
                index.get(e.node.as_str()).copied().unwrap_or(cluster)
            };
            let role = role_change(&e.kind, is_replica(&e.node));
            let marker = is_marker_kind(&e.kind);
            if let Some(role) = role {
                if lane != cluster {
                    states[lane].enter(&mut lanes[lane], e.at_us, role, &e.detail);
                }
            }
            if marker {
                markers.push(Marker {
                    at_us: e.at_us,
                    lane,
                    kind: e.kind.clone(),
                    detail: e.detail.clone(),
                    count: 1,
                    violation: false,
                });
            }
            if role.is_none() && !marker {
                let bucket = bucket_of(e.at_us, end_us, ACTIVITY_BUCKETS as u64);
                let slot = &mut lanes[lane].activity[bucket];
                *slot = slot.saturating_add(1);
                // A node that shows activity before any role event is up.
                if lane != cluster && e.node != "clients" && states[lane].role.is_none() {
                    states[lane].enter(&mut lanes[lane], e.at_us, Role::Up, "");
                }
            }
        }
        for (state, lane) in states.iter().zip(lanes.iter_mut()) {
            state.close(lane, end_us);
        }

        let thinned = thin(&mut markers, end_us);
        for v in &seed.violations {
            let lane = v
                .node
                .as_deref()
                .and_then(|n| index.get(n).copied())
                .unwrap_or(cluster);
            markers.push(Marker {
                at_us: v.at_ms.saturating_mul(1000),
                lane,
                kind: v.kind.as_str().to_string(),
                detail: v.message.clone(),
                count: 1,
                violation: true,
            });
        }
        markers.sort_by_key(|m| (m.at_us, m.violation));

        let fault_rows = pack_rows(&mut faults, end_us);
        Timeline {
            end_us,
            lanes,
            faults,
            fault_rows,
            markers,
            thinned,
            op_lanes: Vec::new(),
            ops: Vec::new(),
            op_bars: Vec::new(),
            ops_merged: 0,
        }
    }

    /// Adds the seed's client history: one lane per client, each operation a bar from its
    /// invocation to its completion. Times are clamped to the run; the time range is unchanged.
    pub fn with_client_ops(mut self, ops: &[ClientOp]) -> Timeline {
        let mut clients: Vec<Option<u32>> = ops.iter().map(|o| o.client).collect();
        clients.sort_by_key(|c| (c.is_none(), *c));
        clients.dedup();
        self.op_lanes = clients.iter().map(|c| op_lane_name(*c)).collect();
        let lane_of: BTreeMap<Option<u32>, usize> =
            clients.iter().enumerate().map(|(i, c)| (*c, i)).collect();
        let mut laned: Vec<(usize, ClientOp)> = ops
            .iter()
            .map(|o| (lane_of.get(&o.client).copied().unwrap_or(0), o.clone()))
            .collect();
        laned.sort_by_key(|(_, o)| o.invoked_us); // stable: equal times keep history order
        let mut bars: Vec<OpBar> = laned
            .iter()
            .map(|(lane, o)| {
                let (start_us, end_us) = op_span(o, self.end_us);
                OpBar {
                    lane: *lane,
                    start_us,
                    end_us,
                    outcome: o.outcome,
                    named: !o.named_by.is_empty(),
                    count: 1,
                    title: op_title(o),
                    detail: op_detail(o),
                }
            })
            .collect();
        self.ops_merged = thin_ops(&mut bars, self.end_us);
        bars.sort_by_key(|b| (b.named, outcome_rank(b.outcome), b.start_us, b.lane));
        self.ops = laned;
        self.op_bars = bars;
        self
    }

    /// Node lanes (everything but the cluster lane).
    pub fn node_lanes(&self) -> usize {
        self.lanes.iter().filter(|l| l.is_node).count()
    }

    pub fn violations(&self) -> impl Iterator<Item = &Marker> {
        self.markers.iter().filter(|m| m.violation)
    }
}

#[derive(Default)]
struct LaneState {
    role: Option<Role>,
    start_us: u64,
    term: Option<u64>,
    detail: String,
}

impl LaneState {
    fn enter(&mut self, lane: &mut Lane, at_us: u64, role: Role, detail: &str) {
        if self.role == Some(Role::Aborted) {
            return; // an aborted process stays down: the abort is the finding
        }
        let term = parse_term(detail);
        // A new term of the same role is a new segment (hovering shows which term); a repeat
        // of the same role and term (e.g. follower learning its leader) is not.
        if self.role == Some(role) && (term.is_none() || term == self.term) {
            return;
        }
        self.close(lane, at_us);
        self.role = Some(role);
        self.start_us = at_us;
        self.term = term;
        self.detail = detail.to_string();
    }

    fn close(&self, lane: &mut Lane, end_us: u64) {
        if let Some(role) = self.role {
            if end_us > self.start_us {
                lane.segments.push(Segment {
                    start_us: self.start_us,
                    end_us,
                    role,
                    term: self.term,
                    detail: self.detail.clone(),
                });
            }
        }
    }
}

/// The role a trace kind switches a node to, if any.
fn role_change(kind: &str, replica: bool) -> Option<Role> {
    Some(match kind {
        "leader" => Role::Leader,
        "candidate" => Role::Candidate,
        "follower" => Role::Follower,
        // A raft replica starts as a follower; other services are simply up.
        "start" if replica => Role::Follower,
        "start" | "restart" => Role::Up,
        "kill" => Role::Down,
        "abort" | "crash" => Role::Aborted,
        _ => return None,
    })
}

/// `n` followed by digits: a raft replica.
fn is_replica(node: &str) -> bool {
    node.strip_prefix('n')
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Sort key: replicas by number, then page service, KMS, others by name, clients last.
fn lane_key(node: &str) -> (u8, u64, &str) {
    if is_replica(node) {
        let n = node[1..].parse().unwrap_or(u64::MAX);
        return (0, n, node);
    }
    match node {
        "ps" => (1, 0, node),
        "kms" => (2, 0, node),
        "clients" => (4, 0, node),
        _ => (3, 0, node),
    }
}

/// `term N` anywhere in a detail.
fn parse_term(detail: &str) -> Option<u64> {
    let mut words = detail.split_whitespace();
    while let Some(w) = words.next() {
        if w == "term" {
            return words.next().and_then(|n| n.parse().ok());
        }
    }
    None
}

fn bucket_of(at_us: u64, end_us: u64, buckets: u64) -> usize {
    let b = u128::from(at_us) * u128::from(buckets) / (u128::from(end_us) + 1);
    (b as usize).min(buckets as usize - 1)
}

/// `partition leader = [n2] for 4000 ms`, `restart all = [n1,n2,n3]`, `clog n1->n2 for 500 ms`,
/// `pause [n1] for 300 ms`, `loss 100/1000 for 2000 ms`, `heal`.
fn parse_fault(at_us: u64, detail: &str, end_us: u64) -> FaultWindow {
    let label = detail
        .split_whitespace()
        .next()
        .unwrap_or("fault")
        .to_string();
    let words: Vec<&str> = detail.split_whitespace().collect();
    let dur_ms = words
        .windows(3)
        .find(|w| w[0] == "for" && w[2] == "ms")
        .and_then(|w| w[1].parse::<u64>().ok());
    let end = dur_ms.map_or(at_us, |d| {
        at_us.saturating_add(d.saturating_mul(1000)).min(end_us)
    });
    let nodes: Vec<String> = match (detail.find('['), detail.find(']')) {
        (Some(a), Some(b)) if a < b => detail[a + 1..b]
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        _ => detail
            .split(|c: char| !(c.is_ascii_alphanumeric()))
            .filter(|w| is_replica(w))
            .map(str::to_string)
            .collect(),
    };
    FaultWindow {
        start_us: at_us,
        end_us: end.max(at_us),
        label,
        detail: detail.to_string(),
        nodes,
        row: 0,
    }
}

/// Greedy row packing; an instant fault is given a sliver of width so labels do not collide.
fn pack_rows(faults: &mut [FaultWindow], end_us: u64) -> usize {
    let min_w = end_us / 100;
    let mut row_ends: Vec<u64> = Vec::new();
    for f in faults.iter_mut() {
        let end = f.end_us.max(f.start_us.saturating_add(min_w));
        let row = match row_ends.iter().position(|&e| e <= f.start_us) {
            Some(r) => r,
            None if row_ends.len() < MAX_FAULT_ROWS => {
                row_ends.push(0);
                row_ends.len() - 1
            }
            None => MAX_FAULT_ROWS - 1,
        };
        row_ends[row] = row_ends[row].max(end);
        f.row = row;
    }
    row_ends.len()
}

/// The lane of a client's operations.
pub fn op_lane_name(client: Option<u32>) -> String {
    match client {
        Some(c) => format!("client {c}"),
        None => "ddl".to_string(),
    }
}

/// `[start, end]` of an operation within `[0, end_us]`: from invocation to the client's answer
/// (or the run's end when it never came).
pub fn op_span(o: &ClientOp, end_us: u64) -> (u64, u64) {
    let start = o.invoked_us.min(end_us);
    let end = o.completed_us.unwrap_or(end_us).clamp(start, end_us);
    (start, end)
}

/// `put c0/k3`; `drop c1` for collection operations.
pub fn op_title(o: &ClientOp) -> String {
    match &o.key {
        Some(k) => format!("{} {}/{k}", o.op, o.collection),
        None => format!("{} {}", o.op, o.collection),
    }
}

/// Its number, how it ended, what it wrote or read, and which violations name it (the lane
/// names the client).
pub fn op_detail(o: &ClientOp) -> String {
    let mut d = format!("op {}: ", o.seq);
    match (o.outcome, o.completed_us) {
        (OpOutcome::Ok, _) => {
            d.push_str("acknowledged");
            if let (Some(i), Some(t)) = (o.index, o.term) {
                d.push_str(&format!(" as index {i} term {t}"));
            }
        }
        (OpOutcome::Failed, _) => d.push_str("failed (did not take effect)"),
        (OpOutcome::Unknown, Some(t)) => d.push_str(&format!(
            "outcome unknown: the client gave up at {}; it may take effect any time after its \
             invocation, or never",
            secs_us(t)
        )),
        (OpOutcome::Unknown, None) => d.push_str("still in flight when the run ended"),
    }
    if let Some(v) = &o.value {
        d.push_str(&format!("\nvalue {v}"));
    }
    if let Some(r) = &o.read {
        d.push_str(&format!("\nread {r}"));
    }
    if !o.named_by.is_empty() {
        let kinds: Vec<&str> = o.named_by.iter().map(ViolationKind::as_str).collect();
        d.push_str(&format!("\nNAMED BY the {} violation", kinds.join(" and ")));
    }
    d
}

/// Drawing order: failures and unknown outcomes over acknowledged operations.
fn outcome_rank(o: OpOutcome) -> u8 {
    match o {
        OpOutcome::Ok => 0,
        OpOutcome::Failed => 1,
        OpOutcome::Unknown => 2,
    }
}

/// Merges operation bars of one lane and outcome that start in one time slice when there are
/// more than [`MAX_OP_BARS`], coarsening the slices until they fit; named operations stay
/// single (up to [`MAX_NAMED_OP_BARS`]). Returns how many operations were merged away.
fn thin_ops(bars: &mut Vec<OpBar>, end_us: u64) -> usize {
    if bars.len() <= MAX_OP_BARS {
        return 0;
    }
    let before = bars.len();
    let (mut kept, mut rest) = (Vec::new(), Vec::new());
    for b in bars.drain(..) {
        if b.named && kept.len() < MAX_NAMED_OP_BARS {
            kept.push(b);
        } else {
            rest.push(b);
        }
    }
    let budget = MAX_OP_BARS - kept.len();
    let mut buckets = THIN_BUCKETS;
    let groups = loop {
        // Per (lane, outcome, slice): the merged bar and how many of each operation it holds.
        type Group = (OpBar, BTreeMap<String, u32>);
        let mut groups: BTreeMap<(usize, u8, usize), Group> = BTreeMap::new();
        for b in &rest {
            let op = b.title.split(' ').next().unwrap_or("op").to_string();
            let key = (
                b.lane,
                outcome_rank(b.outcome),
                bucket_of(b.start_us, end_us, buckets),
            );
            match groups.get_mut(&key) {
                Some((g, kinds)) => {
                    g.start_us = g.start_us.min(b.start_us);
                    g.end_us = g.end_us.max(b.end_us);
                    g.named |= b.named;
                    g.count = g.count.saturating_add(b.count);
                    *kinds.entry(op).or_default() += 1;
                }
                None => {
                    groups.insert(key, (b.clone(), BTreeMap::from([(op, 1)])));
                }
            }
        }
        if groups.len() <= budget || buckets == 1 {
            break groups;
        }
        buckets /= 2;
    };
    for (mut g, kinds) in groups.into_values() {
        if g.count > 1 {
            let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
            g.title = format!("{} ops", g.count);
            g.detail = format!(
                "{} {} operations of this client merged to keep the page light: {}{}\n\
                 zoom in the Perfetto export to see each one",
                g.count,
                g.outcome.as_str(),
                kinds.join(", "),
                if g.named {
                    "\nincludes operations a violation names"
                } else {
                    ""
                }
            );
        }
        kept.push(g);
    }
    *bars = kept;
    before - bars.len()
}

/// Merges same-kind markers of a lane that fall into one time bucket when there are too many
/// to draw, coarsening the buckets until they fit. Returns how many markers were merged away.
fn thin(markers: &mut Vec<Marker>, end_us: u64) -> usize {
    let before = markers.len();
    let mut buckets = THIN_BUCKETS;
    while markers.len() > MAX_MARKERS && buckets > 1 {
        let mut groups: BTreeMap<(usize, String, usize), Marker> = BTreeMap::new();
        for m in markers.drain(..) {
            let key = (m.lane, m.kind.clone(), bucket_of(m.at_us, end_us, buckets));
            match groups.get_mut(&key) {
                Some(g) => g.count = g.count.saturating_add(m.count),
                None => {
                    groups.insert(key, m);
                }
            }
        }
        markers.extend(groups.into_values());
        buckets /= 2;
    }
    if markers.len() < before {
        for m in markers.iter_mut().filter(|m| m.count > 1) {
            m.detail = format!("{} (and {} more like it)", m.detail, m.count - 1);
        }
        markers.sort_by_key(|m| m.at_us);
    }
    before - markers.len()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Violation, ViolationKind};

    pub(crate) fn ev(at_ms: u64, node: &str, kind: &str, detail: &str) -> TraceEvent {
        TraceEvent {
            at_us: at_ms * 1000,
            node: node.into(),
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    /// Three replicas, an election, a partition, a full restart and one node that aborts.
    pub(crate) fn sample() -> (SeedReport, Vec<TraceEvent>) {
        let mut trace = vec![
            ev(0, "controller", "run", "scenario x seed 7"),
            ev(0, "n1", "start", "term 0 vote None log 0 commit 0 torn 0"),
            ev(0, "n2", "start", "term 0"),
            ev(0, "n3", "start", "term 0"),
            ev(150, "n1", "candidate", "term 1"),
            ev(160, "n1", "leader", "term 1"),
            ev(170, "n2", "follower", "term 1 leader Some(1)"),
            ev(
                1500,
                "controller",
                "fault",
                "partition leader = [n1] for 1200 ms",
            ),
            ev(1800, "n2", "leader", "term 2"),
            ev(2700, "n1", "follower", "term 2 leader Some(2)"),
            ev(3000, "controller", "fault", "restart all = [n1,n2,n3]"),
            ev(3000, "n1", "kill", "restart; unsynced bytes lost 0"),
            ev(3000, "n2", "kill", "restart"),
            ev(3000, "n3", "kill", "restart"),
            ev(3400, "n1", "restart", ""),
            ev(3401, "n1", "start", "term 2"),
            ev(3500, "n2", "restart", ""),
            ev(3501, "n2", "start", "term 2"),
            ev(3600, "n3", "restart", ""),
            ev(3601, "n3", "start", "term 2"),
            ev(4000, "n3", "abort", "truncate below commit <boom> & more"),
            ev(4000, "n3", "kill", "abort"),
            ev(4500, "n3", "restart", ""),
            ev(5000, "clients", "ddl", "Create -> Ok"),
            ev(6000, "controller", "phase", "faults stop"),
        ];
        for i in 0..200 {
            trace.push(ev(200 + i * 10, "n1", "apply", &format!("{i} term 1")));
        }
        trace.sort_by_key(|e| e.at_us);
        let seed = SeedReport {
            seed: 7,
            trace_hash: "00112233aabbccdd".into(),
            passed: false,
            violations: vec![
                Violation {
                    kind: ViolationKind::NodeAbort,
                    node: Some("n3".into()),
                    at_ms: 4000,
                    message: "truncate below commit <boom>".into(),
                },
                Violation {
                    kind: ViolationKind::Durability,
                    node: None,
                    at_ms: 6100,
                    message: "acked write k1 lost".into(),
                },
            ],
            replay: "faultline run x --seed 7".into(),
            sim_ms: 6100,
            events: trace.len() as u64,
            ..Default::default()
        };
        (seed, trace)
    }

    pub(crate) fn op(
        client: Option<u32>,
        seq: u64,
        op: &str,
        invoked_ms: u64,
        completed_ms: Option<u64>,
        outcome: OpOutcome,
    ) -> ClientOp {
        ClientOp {
            client,
            seq,
            op: op.into(),
            collection: "c0".into(),
            key: client.map(|_| format!("k{}", seq % 3)),
            value: matches!(op, "put" | "append").then(|| format!("\"w{seq}\"")),
            invoked_us: invoked_ms * 1000,
            completed_us: completed_ms.map(|t| t * 1000),
            outcome,
            index: (outcome == OpOutcome::Ok).then_some(10 + seq),
            term: (outcome == OpOutcome::Ok).then_some(1),
            read: (op == "get" && outcome == OpOutcome::Ok).then(|| "\"w1\"".into()),
            named_by: vec![],
        }
    }

    /// Two workload clients and a DDL client: acknowledged, failed, given-up and in-flight
    /// operations; client 1's stale read and the put it missed are named by a violation.
    pub(crate) fn sample_ops() -> Vec<ClientOp> {
        use OpOutcome::*;
        let mut ops = vec![
            op(Some(0), 1, "put", 100, Some(120), Ok),
            op(Some(1), 1, "put", 110, Some(130), Ok),
            op(Some(0), 2, "append", 200, Some(210), Ok),
            op(Some(1), 2, "get", 1600, Some(1900), Ok),
            op(Some(0), 3, "delete", 1550, Some(2600), Unknown),
            op(Some(0), 4, "put", 2700, Some(2720), Failed),
            op(None, 1, "create", 5000, Some(5050), Ok),
            op(Some(1), 3, "put", 6000, None, Unknown),
        ];
        ops[1].named_by = vec![ViolationKind::Linearizability];
        ops[3].named_by = vec![ViolationKind::Linearizability, ViolationKind::Durability];
        ops
    }

    #[test]
    fn client_ops_get_a_lane_per_client_and_a_bar_per_op() {
        let (seed, trace) = sample();
        let t = Timeline::build(&seed, &trace);
        assert!(t.op_lanes.is_empty() && t.op_bars.is_empty());
        let t = t.with_client_ops(&sample_ops());
        assert_eq!(t.op_lanes, ["client 0", "client 1", "ddl"]);
        assert_eq!((t.ops.len(), t.op_bars.len(), t.ops_merged), (8, 8, 0));
        let starts: Vec<u64> = t.ops.iter().map(|(_, o)| o.invoked_us / 1000).collect();
        assert!(starts.windows(2).all(|w| w[0] <= w[1]), "by invocation");
        // Named operations come last, so the HTML draws them on top.
        let named: Vec<bool> = t.op_bars.iter().map(|b| b.named).collect();
        assert_eq!(
            named,
            [false, false, false, false, false, false, true, true]
        );
        let bar = |lane: usize, start_ms: u64| {
            t.op_bars
                .iter()
                .find(|b| b.lane == lane && b.start_us == start_ms * 1000)
                .unwrap()
        };
        let read = bar(1, 1600);
        assert_eq!(read.title, "get c0/k2");
        assert_eq!(read.end_us, 1_900_000);
        assert!(read.detail.contains("acknowledged as index 12 term 1"));
        assert!(read.detail.contains("read \"w1\""));
        assert!(read
            .detail
            .contains("NAMED BY the linearizability and durability violation"));
        assert!(bar(1, 110).detail.contains("value \"w1\""));
        let gave_up = bar(0, 1550);
        assert_eq!(gave_up.outcome, OpOutcome::Unknown);
        assert_eq!(gave_up.end_us, 2_600_000);
        assert!(
            gave_up.detail.contains("gave up at 2.600000s"),
            "{}",
            gave_up.detail
        );
        assert!(bar(0, 2700).detail.contains("failed"));
        let ddl = bar(2, 5000);
        assert_eq!(ddl.title, "create c0");
        assert!(ddl.detail.starts_with("op 1: acknowledged"));
        // Still in flight when the run ended: drawn to the end.
        let open = bar(1, 6000);
        assert_eq!(open.end_us, t.end_us);
        assert!(open.detail.contains("still in flight"));
    }

    #[test]
    fn a_huge_history_is_merged_but_named_ops_stay_single() {
        let mut ops = Vec::new();
        for i in 0..30_000u64 {
            let outcome = if i % 50 == 0 {
                OpOutcome::Unknown
            } else {
                OpOutcome::Ok
            };
            let mut o = op(
                Some((i % 4) as u32),
                i,
                "put",
                i * 2,
                Some(i * 2 + 1),
                outcome,
            );
            if i % 1000 == 7 {
                o.named_by = vec![ViolationKind::Linearizability];
            }
            ops.push(o);
        }
        let seed = SeedReport {
            sim_ms: 60_000,
            ..Default::default()
        };
        let t = Timeline::build(&seed, &[]).with_client_ops(&ops);
        assert_eq!(t.ops.len(), 30_000, "every op is kept for Perfetto");
        assert!(t.op_bars.len() <= MAX_OP_BARS, "{}", t.op_bars.len());
        assert_eq!(
            t.op_bars.iter().map(|b| b.count as usize).sum::<usize>(),
            30_000
        );
        assert_eq!(t.ops_merged, 30_000 - t.op_bars.len());
        let single_named = t.op_bars.iter().filter(|b| b.named && b.count == 1);
        assert_eq!(single_named.count(), 30);
        // Merged bars keep one outcome and one lane, and say what they hold.
        let merged = t.op_bars.iter().find(|b| b.count > 1).unwrap();
        assert_eq!(merged.title, format!("{} ops", merged.count));
        assert!(merged.detail.contains("put "), "{}", merged.detail);
        assert!(t
            .op_bars
            .iter()
            .any(|b| b.count > 1 && b.outcome == OpOutcome::Unknown));
    }

    fn roles(t: &Timeline, lane: &str) -> Vec<(u64, Role)> {
        let l = t.lanes.iter().find(|l| l.name == lane).unwrap();
        l.segments
            .iter()
            .map(|s| (s.start_us / 1000, s.role))
            .collect()
    }

    #[test]
    fn lanes_in_node_order_with_a_cluster_lane_last() {
        let (seed, trace) = sample();
        let t = Timeline::build(&seed, &trace);
        let names: Vec<&str> = t.lanes.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["n1", "n2", "n3", "clients", "cluster"]);
        assert_eq!(t.node_lanes(), 4);
        assert_eq!(t.end_us, 6_100_000);
    }

    #[test]
    fn roles_follow_the_trace_and_an_abort_sticks() {
        let (seed, trace) = sample();
        let t = Timeline::build(&seed, &trace);
        use Role::*;
        assert_eq!(
            roles(&t, "n1"),
            [
                (0, Follower),
                (150, Candidate),
                (160, Leader),
                (2700, Follower),
                (3000, Down),
                (3400, Up),
                (3401, Follower)
            ]
        );
        // n3 aborts at 4 s; the kill and the later restart do not revive it.
        let n3 = roles(&t, "n3");
        assert_eq!(n3.last(), Some(&(4000, Aborted)));
        let last = t.lanes[2].segments.last().unwrap();
        assert_eq!(last.end_us, t.end_us);
        // The clients lane has no roles, only markers.
        assert!(roles(&t, "clients").is_empty());
    }

    #[test]
    fn faults_parse_duration_and_nodes() {
        let (seed, trace) = sample();
        let t = Timeline::build(&seed, &trace);
        assert_eq!(t.faults.len(), 2);
        let p = &t.faults[0];
        assert_eq!(
            (p.label.as_str(), p.start_us, p.end_us),
            ("partition", 1_500_000, 2_700_000)
        );
        assert_eq!(p.nodes, ["n1"]);
        let r = &t.faults[1];
        assert!(r.is_instant());
        assert_eq!(r.nodes, ["n1", "n2", "n3"]);
        let f = parse_fault(0, "clog n1->n2 for 500 ms", 10_000_000);
        assert_eq!((f.nodes.len(), f.end_us), (2, 500_000));
        let f = parse_fault(0, "loss 100/1000 for 2000 ms", 1_000_000);
        assert!(f.nodes.is_empty());
        assert_eq!(f.end_us, 1_000_000, "clamped to the run's end");
        let f = parse_fault(5, "latency 50..200 ms for 1000 ms", 10_000_000);
        assert_eq!(f.end_us, 1_000_005);
        assert!(parse_fault(5, "", 10).is_instant());
    }

    #[test]
    fn markers_and_violations_land_on_their_lanes() {
        let (seed, trace) = sample();
        let t = Timeline::build(&seed, &trace);
        let kinds: Vec<(&str, &str)> = t
            .markers
            .iter()
            .map(|m| (t.lanes[m.lane].name.as_str(), m.kind.as_str()))
            .collect();
        assert!(kinds.contains(&("n1", "leader")));
        assert!(kinds.contains(&("n3", "abort")));
        assert!(kinds.contains(&("clients", "ddl")));
        assert!(kinds.contains(&("cluster", "phase")));
        let v: Vec<(&str, &str)> = t
            .violations()
            .map(|m| (t.lanes[m.lane].name.as_str(), m.kind.as_str()))
            .collect();
        assert_eq!(v, [("n3", "node-abort"), ("cluster", "durability")]);
        // Applies are counted, not drawn.
        assert!(!kinds.iter().any(|(_, k)| *k == "apply"));
        assert_eq!(t.lanes[0].activity.iter().sum::<u32>(), 200);
    }

    #[test]
    fn a_huge_trace_is_thinned_and_stays_small() {
        let mut trace = Vec::new();
        for i in 0..100_000u64 {
            let node = format!("n{}", i % 3 + 1);
            let kind = match i % 10 {
                0 => "checkpoint",
                1 => "commit",
                _ => "apply",
            };
            trace.push(TraceEvent {
                at_us: i * 600,
                node,
                kind: kind.into(),
                detail: format!("{i}"),
            });
        }
        let seed = SeedReport::default();
        let t = Timeline::build(&seed, &trace);
        assert!(t.markers.len() <= MAX_MARKERS, "{}", t.markers.len());
        assert_eq!(
            t.markers.iter().map(|m| m.count as usize).sum::<usize>(),
            10_000
        );
        assert!(t.thinned > 0);
        let activity: u32 = t.lanes.iter().flat_map(|l| &l.activity).sum();
        assert_eq!(activity, 90_000);
    }

    #[test]
    fn empty_input_does_not_panic() {
        let t = Timeline::build(&SeedReport::default(), &[]);
        assert_eq!(t.lanes.len(), 1);
        assert_eq!(t.end_us, 1);
    }
}
