//! Scenario files: JSON parsed with serde (unknown fields rejected), then validated. Every error
//! names the file, line, column and field, so a typo never becomes a silently ignored option.

use std::fmt;
use std::path::{Path, PathBuf};

use engine::KnownBug;
use reports::ViolationKind;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted path of the offending field, e.g. `timeline[2].nodes`.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        }
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

fn d_replicas() -> u8 {
    3
}
fn d_liveness_ms() -> u64 {
    30_000
}
fn d_checks() -> Vec<Check> {
    vec![
        Check::Dbhash,
        Check::Validate,
        Check::Raft,
        Check::Durability,
        Check::Liveness,
        Check::Model,
        Check::Linearizability,
    ]
}

/// A scenario file: the cluster, its load, the faults (scripted and random), the checks and
/// what `faultline ci` expects. Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The scenario's name, used in reports and file names (a named scenario's file is
    /// `scenarios/<name>.json`).
    pub name: String,
    /// One line shown by `faultline list`.
    #[serde(default)]
    pub description: String,
    /// Raft replicas in the cluster (nodes `n1`..`nN`).
    #[serde(default = "d_replicas")]
    pub replicas: u8,
    /// Length of the fault phase in simulated ms; every timeline item fires before it ends.
    /// The liveness phase follows (see `liveness_timeout_ms`).
    pub duration_ms: u64,
    /// Leader checkpoint period (default 1000 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_interval_ms: Option<u64>,
    /// Drain workers a new leader's step-up runs (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_workers: Option<usize>,
    /// The client load.
    #[serde(default)]
    pub workload: Workload,
    /// The simulated network's latency and loss.
    #[serde(default)]
    pub network: Network,
    /// Known-bug knobs switched on for every run of this scenario (as `--bug NAME` would).
    #[serde(default)]
    #[schemars(schema_with = "knob_names")]
    pub known_bugs: Vec<String>,
    /// Failpoints on for the whole fault phase.
    #[serde(default)]
    pub failpoints: Vec<FailpointSpec>,
    /// Scripted faults, each at its `at_ms`.
    #[serde(default)]
    pub timeline: Vec<TimelineItem>,
    /// Random faults from the chaos controller, on top of the timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<Chaos>,
    /// The checkers that run (default: all); may not be empty.
    #[serde(default = "d_checks")]
    pub checks: Vec<Check>,
    /// What `faultline ci` requires of a sweep of this scenario (default: every seed passes).
    #[serde(default)]
    pub expect: Expect,
    /// How long the liveness phase may take to converge after every fault is healed.
    #[serde(default = "d_liveness_ms")]
    pub liveness_timeout_ms: u64,
}

/// The client load: closed-loop clients, each at about `ops_per_sec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Client tasks (0: no load).
    pub clients: u32,
    /// Operations per second per client (at most 100000).
    pub ops_per_sec: u32,
    /// Collections the clients write to (`c0`, `c1`, ...).
    pub collections: u32,
    /// Keys per collection.
    pub keys: u32,
    /// The operation mix; without it each seed draws its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mix: Option<WorkloadMix>,
}

/// Shares of all client operations, per mille; puts take what is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadMix {
    /// Reads (through the log, answered with the document as of their entry).
    pub reads_per_mille: u32,
    /// Deletes.
    pub deletes_per_mille: u32,
    /// List appends.
    pub appends_per_mille: u32,
    /// Operations aimed at 10 hot keys per collection.
    pub hot_per_mille: u32,
}

impl Default for WorkloadMix {
    fn default() -> Self {
        WorkloadMix {
            reads_per_mille: 0,
            deletes_per_mille: 0,
            appends_per_mille: 0,
            hot_per_mille: 0,
        }
    }
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            clients: 2,
            ops_per_sec: 50,
            collections: 4,
            keys: 200,
            mix: None,
        }
    }
}

/// The simulated network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// One-way latency range `[min, max]`, drawn per datagram.
    pub latency_ms: [u64; 2],
    /// Datagrams lost, per mille.
    pub loss_per_mille: u32,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            latency_ms: [1, 10],
            loss_per_mille: 0,
        }
    }
}

/// A failpoint on for the whole fault phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailpointSpec {
    /// The failpoint: one the engine models.
    #[schemars(schema_with = "failpoint_name")]
    pub name: String,
    /// How often it fires when reached, per mille (0..=1000).
    pub per_mille: u32,
}

/// Fault kinds the chaos controller can inject with this engine.
pub const CHAOS_FAULTS: [&str; 20] = [
    "kill",
    "restart_all",
    "partition",
    "split",
    "one_way",
    "loss",
    "latency_spike",
    "pause",
    "create_collection",
    "drop_collection",
    "kill_page_service",
    "failpoint",
    "kill_kms",
    "rotate_kek",
    "rotate_cmk",
    "step_down",
    "delay",
    "duplicate",
    "crash_point",
    "disk_fault",
];

/// The chaos controller: random faults of the listed kinds throughout the fault phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Chaos {
    /// The fault kinds it may inject.
    #[schemars(schema_with = "chaos_fault_names")]
    pub faults: Vec<String>,
    /// Mean simulated time between two faults.
    pub mean_interval_ms: u64,
    /// Each seed draws its own subset of `faults` and its own rate; on half the seeds faults
    /// come in bursts 10-300 ms apart, and when `failpoint` is drawn, failpoints stay on in the
    /// background for the whole fault phase (the draw is printed in the report).
    #[serde(default)]
    pub swarm: bool,
    /// With `swarm`, each seed also draws its cluster: 3 or 5 replicas, a latency range, the
    /// client load and the checkpoint interval.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub swarm_world: bool,
}

/// A checker.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Replicas at the highest applied index hash alike (CheckReplDBHash).
    Dbhash,
    /// Per-node bookkeeping: block accounting against the page service, keystores, pages.
    Validate,
    /// Raft safety: one canonical applied history, one leader per term, terms and votes
    /// persisted before messages reflect them.
    Raft,
    /// Every acknowledged write stays visible unless a later committed entry changed it.
    Durability,
    /// After the faults heal, the cluster converges within `liveness_timeout_ms`.
    Liveness,
    /// Every replica's visible state against the reference model (`check::model`).
    Model,
    /// The client history: acknowledgements, at-most-once, linearizability (`check::clients`).
    Linearizability,
}

/// The verdict `faultline ci` expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every seed passes.
    Pass,
    /// Seeds find the named violation (`kinds`, `message`).
    Fail,
}

/// What `faultline ci` requires of a sweep of this scenario. Strict on purpose: a `fail`
/// expectation names the finding (kind and message), so another failure cannot meet it by
/// accident; a `pass` expectation requires progress under faults and race-window coverage, so a
/// change that stops the workload or never reaches the race cannot pass quietly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `pass` or `fail`.
    pub verdict: Verdict,
    /// With `fail` (required, non-empty): the finding's kinds. A failing seed has found it when
    /// one of its violations has one of these kinds and its message matches `message`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "violation_kinds")]
    pub kinds: Vec<ViolationKind>,
    /// With `fail`: a pattern the finding's message must match: a plain substring, where `*`
    /// stands for any run of characters (no other metacharacters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// With `fail`: other kinds that may accompany the finding (e.g. `liveness` after a
    /// `node-abort`). A failing seed with a kind in neither `kinds` nor `also` fails the
    /// expectation; `crash` and `hang` are tolerated only when listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "violation_kinds")]
    pub also: Vec<ViolationKind>,
    /// With `fail`: seeds (of `ci_seeds`) that must find it; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_found: Option<u64>,
    /// With `pass`: client operations every seed must have acknowledged while faults ran
    /// (default 1 when the workload has clients, else 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ops_acked_fault_phase: Option<u64>,
    /// Race window (see Names below) -> seeds (of `ci_seeds`) that must enter it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schemars(schema_with = "window_minimums")]
    pub windows: std::collections::BTreeMap<String, u64>,
    /// Seeds `faultline ci` runs for this scenario (its budget to meet the expectation; default
    /// 10). `min_found` and `windows` count seeds of this budget; `ci --seeds N` scales them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_seeds: Option<u64>,
}

/// `ci_seeds` when a scenario does not set it.
pub const DEFAULT_CI_SEEDS: u64 = 10;

/// The most `ci_seeds` a scenario may ask for.
pub const MAX_CI_SEEDS: u64 = 1_000_000;

impl Default for Expect {
    fn default() -> Self {
        Expect {
            verdict: Verdict::Pass,
            kinds: vec![],
            message: None,
            also: vec![],
            min_found: None,
            min_ops_acked_fault_phase: None,
            windows: Default::default(),
            ci_seeds: None,
        }
    }
}

impl Expect {
    /// The seed budget `ci` runs by default.
    pub fn ci_seeds(&self) -> u64 {
        self.ci_seeds.unwrap_or(DEFAULT_CI_SEEDS).max(1)
    }

    /// A minimum stated for `ci_seeds` seeds, for a sweep of `seeds_run` seeds: proportional,
    /// rounded down (a smaller `ci --seeds` budget asks for less, never for more than it ran).
    pub fn scaled(&self, min: u64, seeds_run: u64) -> u64 {
        let ci = self.ci_seeds();
        if seeds_run == ci {
            return min;
        }
        u64::try_from(u128::from(min) * u128::from(seeds_run) / u128::from(ci)).unwrap_or(u64::MAX)
    }

    /// Whether `v` is the finding of a `fail` expectation: one of `kinds`, message matching.
    pub fn is_finding(&self, kind: ViolationKind, message: &str) -> bool {
        self.kinds.contains(&kind)
            && self
                .message
                .as_deref()
                .is_none_or(|p| message_matches(p, message))
    }

    /// Whether a failing seed of a `fail` expectation may carry this kind.
    pub fn tolerates(&self, kind: ViolationKind) -> bool {
        self.kinds.contains(&kind) || self.also.contains(&kind)
    }
}

/// `pattern` as a substring of `text`, `*` matching any run of characters: each `*`-separated
/// piece must occur, in order, without overlapping. An empty pattern matches everything.
pub fn message_matches(pattern: &str, text: &str) -> bool {
    let mut rest = text;
    for piece in pattern.split('*').filter(|p| !p.is_empty()) {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Which nodes an action targets, resolved when the action fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Node(u8),
    Leader,
    Followers,
    /// One follower, chosen by the seed.
    Standby,
    /// A minority of the replicas (at least one), chosen by the seed.
    Minority,
    All,
    PageService,
    Kms,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Node(i) => write!(f, "n{i}"),
            Selector::Leader => f.write_str("leader"),
            Selector::Followers => f.write_str("followers"),
            Selector::Standby => f.write_str("standby"),
            Selector::Minority => f.write_str("minority"),
            Selector::All => f.write_str("all"),
            Selector::PageService => f.write_str("page-service"),
            Selector::Kms => f.write_str("kms"),
        }
    }
}

impl std::str::FromStr for Selector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "leader" => Selector::Leader,
            "followers" => Selector::Followers,
            "standby" => Selector::Standby,
            "minority" => Selector::Minority,
            "all" => Selector::All,
            "page-service" => Selector::PageService,
            "kms" => Selector::Kms,
            _ => match s.strip_prefix('n').and_then(|n| n.parse::<u8>().ok()) {
                Some(i) if i >= 1 => Selector::Node(i),
                _ => {
                    return Err(format!(
                        "unknown node selector `{s}` (expected n1.., leader, followers, standby, minority, all, page-service, kms)"
                    ))
                }
            },
        })
    }
}

impl Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Selector {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Selector".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A node selector, resolved when the action fires: `n1`.. (a replica), \
                `leader`, `followers`, `standby` (one follower chosen by the seed), `minority` (a \
                seed-chosen minority of the replicas, at least one; needs 3 or more), `all`, \
                `page-service`, `kms`.",
            "type": "string",
            "pattern": "^(n[1-9][0-9]*|leader|followers|standby|minority|all|page-service|kms)$"
        })
    }
}

/// A list of strings, each one of `names`.
fn list_of(names: &[&str], description: &str) -> schemars::Schema {
    schemars::json_schema!({
        "description": description,
        "type": "array",
        "items": { "type": "string", "enum": names }
    })
}

fn knob_names(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = KnownBug::ALL.iter().map(|b| b.name()).collect();
    list_of(
        &names,
        "Known-bug knobs switched on for every run of this scenario (as `--bug NAME` would).",
    )
}

fn failpoint_name(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "The failpoint: one the engine models.",
        "type": "string",
        "enum": engine::failpoints::IMPLEMENTED
    })
}

fn chaos_fault_names(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    list_of(&CHAOS_FAULTS, "The fault kinds it may inject.")
}

fn violation_kinds(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = ViolationKind::ALL.iter().map(|k| k.as_str()).collect();
    list_of(&names, "Violation kinds.")
}

fn window_minimums(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Race window -> seeds (of `ci_seeds`) that must enter it.",
        "type": "object",
        "propertyNames": { "enum": crate::world::WINDOWS },
        "additionalProperties": { "type": "integer", "minimum": 0 }
    })
}

/// The JSON Schema of a scenario file (`faultline schema`), generated from these types.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Scenario)).expect("a schema is JSON")
}

/// Defines [`TimelineItem`] and, from the same variant list, [`ByAction`]: the same items
/// externally tagged (`{"partition": {"at_ms": ...}}`). serde buffers an internally tagged enum
/// before it reads the variant's fields, so a path-tracking deserializer loses the path there
/// and serde_json can only point at the end of the object; `ByAction` is read from the buffered
/// item with its own path tracking, which names the field (`timeline[6].for_ms`).
macro_rules! timeline_items {
    (
        $(#[$emeta:meta])*
        pub enum TimelineItem {
            $(
                $(#[$vmeta:meta])*
                $variant:ident { $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* $(,)? }
            ),* $(,)?
        }
    ) => {
        $(#[$emeta])*
        pub enum TimelineItem {
            $( $(#[$vmeta])* $variant { $( $(#[$fmeta])* $field : $ty ),* } ),*
        }

        #[derive(Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case", deny_unknown_fields)]
        #[allow(dead_code)] // only its Deserialize is used; JsonSchema for the field attributes
        enum ByAction {
            $( $variant { $( $(#[$fmeta])* $field : $ty ),* } ),*
        }

        impl From<ByAction> for TimelineItem {
            fn from(b: ByAction) -> Self {
                match b {
                    $( ByAction::$variant { $( $field ),* } => TimelineItem::$variant { $( $field ),* } ),*
                }
            }
        }
    };
}

timeline_items! {
// Each variant carries its own `at_ms` so unknown fields stay rejected. Serialized with its
// `action` as a tag; deserialized through [`ByAction`] (see `timeline_items!`), which rejects
// unknown and duplicate fields alike.
/// One scripted fault: an `action` and its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum TimelineItem {
    /// Kill the nodes at once; each comes back after a delay drawn from `down_ms`, and with
    /// `straggler_ms` one of them (chosen by the seed) comes back that much later still.
    Restart {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The nodes it targets (one node selector).
        nodes: Selector,
        #[serde(default = "d_down_ms")]
        /// How long each node stays down, `[min, max]` ms (default `[200, 1000]`).
        down_ms: [u64; 2],
        #[serde(default, skip_serializing_if = "Option::is_none")]
        /// One node (chosen by the seed) comes back this much later still, `[min, max]` ms.
        straggler_ms: Option<[u64; 2]>,
    },
    /// Kill the nodes; they stay down until `start` or the liveness phase.
    Kill {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The nodes it targets (one node selector).
        nodes: Selector,
    },
    /// Start the nodes again (those a `kill` left down).
    Start {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The nodes it targets (one node selector).
        nodes: Selector,
    },
    /// Cut the nodes off from every other node (both directions) for `for_ms`.
    Partition {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The nodes it targets (one node selector).
        nodes: Selector,
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// Drop traffic from one node to another (one direction) for `for_ms`.
    ClogLink {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The sending side (a node selector).
        from: Selector,
        /// The receiving side (a node selector).
        to: Selector,
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// Stop the nodes' tasks (a GC or VM stall) for `for_ms`; messages queue meanwhile.
    Pause {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The nodes it targets (one node selector).
        nodes: Selector,
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// Change the one-way latency range for `for_ms` (a latency spike).
    Latency {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The one-way latency range `[min, max]` meanwhile.
        latency_ms: [u64; 2],
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// Raise packet loss for `for_ms`.
    Loss {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// Datagrams lost meanwhile, per mille.
        per_mille: u32,
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// Remove every partition, clog and extra loss now.
    Heal {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
    },
    /// Create a collection (a DDL entry through the leader).
    CreateCollection {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The collection to create.
        name: String,
    },
    /// Drop a collection (a DDL entry through the leader).
    DropCollection {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The collection to drop (forced: it may reach a table a drain is copying).
        name: String,
    },
    /// Switch a failpoint on at `per_mille` for `for_ms` (then back to the scenario's rate).
    Failpoint {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The failpoint: `addr-pack`, `page-put`, `keystore-flush-slow` or `drain-slow`.
        name: String,
        /// How often it fires meanwhile, per mille.
        per_mille: u32,
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// Rotate the KEK: an administrative command to the leader, applied as an oplog entry.
    RotateKek {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
    },
    /// Rotate the CMK held by the KMS, the same way.
    RotateCmk {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
    },
    /// Ask the leader to step down (it stands aside while another node takes over).
    StepDown {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
    },
    /// For `for_ms`, each datagram from `from` to `to` is held back, with probability
    /// `per_mille`/1000, for a time drawn from `delay_ms`: one message overtaken by later ones
    /// on the same link. `all` on a side means anyone, clients included.
    Delay {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The sending side (a node selector).
        from: Selector,
        /// The receiving side (a node selector).
        to: Selector,
        /// Share of datagrams held back, per mille.
        per_mille: u32,
        /// How long a held-back datagram waits, `[min, max]` ms.
        delay_ms: [u64; 2],
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// For `for_ms`, each datagram from `from` to `to` is delivered twice (the copy 1–500 ms
    /// later) with probability `per_mille`/1000.
    Duplicate {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The sending side (a node selector).
        from: Selector,
        /// The receiving side (a node selector).
        to: Selector,
        /// Share of datagrams delivered twice, per mille.
        per_mille: u32,
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// For `for_ms`, a node reaching one of the engine's crash points (`point`, or any when
    /// omitted) is killed right there with probability `per_mille`/1000 and comes back after
    /// `down_ms`; never more than a minority of replicas at once.
    CrashPoints {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        /// The crash point (any when omitted): `raft-written`, `raft-synced`, `pages-written`,
        /// `pages-synced`, `checkpoint-put`, `checkpoint-wrapped`, `checkpoint-published`,
        /// `pickup-loaded`, `step-up-fenced`, `keystore-put`.
        point: Option<String>,
        /// Chance that a node reaching the point is killed there, per mille.
        per_mille: u32,
        #[serde(default = "d_down_ms")]
        /// How long each node stays down, `[min, max]` ms (default `[200, 1000]`).
        down_ms: [u64; 2],
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// The disk of each node lies once in `kind`'s way (a bit flipped in synced raft log data,
    /// or the next sync of a log append lost or written at the wrong offset); the node is
    /// restarted soon after so recovery meets the damage. The engine must detect it (a node
    /// that refuses to start on a damaged disk is retired, not a finding); silent wrong data is
    /// a finding. At most a minority of replicas per run.
    DiskFault {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The nodes it targets (one node selector).
        nodes: Selector,
        /// How the disk lies.
        kind: DiskFaultKind,
        #[serde(default = "d_down_ms")]
        /// How long each node stays down, `[min, max]` ms (default `[200, 1000]`).
        down_ms: [u64; 2],
    },
}
}

/// Prefix of an error inside a timeline item that names the field within the item
/// (``field `for_ms`: missing field `for_ms` ``); `Scenario::parse` moves it into the path.
const ITEM_FIELD: &str = "field `";

impl<'de> Deserialize<'de> for TimelineItem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        use serde_json::Value;
        let mut fields = d.deserialize_map(ItemFields)?;
        let action = match fields.remove("action") {
            Some(Value::String(a)) => a,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "{ITEM_FIELD}action`: {other} is not an action name"
                )))
            }
            None => return Err(D::Error::missing_field("action")),
        };
        let tagged = Value::Object([(action, Value::Object(fields))].into_iter().collect());
        serde_path_to_error::deserialize::<_, ByAction>(tagged)
            .map(TimelineItem::from)
            .map_err(|e| {
                use serde_path_to_error::Segment;
                let mut segments = e.path().iter();
                // The first segment is the variant; without one, the action was unknown.
                let within = match segments.next() {
                    None => "action".to_string(),
                    Some(_) => segments
                        .map(|s| match s {
                            Segment::Seq { index } => format!("[{index}]"),
                            s => format!(".{s}"),
                        })
                        .collect::<String>()
                        .trim_start_matches('.')
                        .to_string(),
                };
                // A missing field is named by the message alone; `json_error` reads it there.
                if within.is_empty() {
                    D::Error::custom(e.inner())
                } else {
                    D::Error::custom(format!("{ITEM_FIELD}{within}`: {}", e.inner()))
                }
            })
    }
}

/// A timeline item's fields, read as JSON values; a field given twice is refused (a JSON object
/// with a repeated key is legal, but which value would win is anyone's guess).
struct ItemFields;

impl<'de> serde::de::Visitor<'de> for ItemFields {
    type Value = serde_json::Map<String, serde_json::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a timeline item: an object with an `action` and its fields")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if fields.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "{ITEM_FIELD}{key}`: duplicate field `{key}`"
                )));
            }
            let value = map.next_value()?;
            fields.insert(key, value);
        }
        Ok(fields)
    }
}

/// How a disk lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiskFaultKind {
    /// A bit flipped in synced raft log data at rest.
    BitFlip,
    /// The next sync of a log append is lost.
    LostWrite,
    /// The next log append is written at the wrong offset.
    MisdirectedWrite,
}

impl DiskFaultKind {
    pub const ALL: [DiskFaultKind; 3] = [
        DiskFaultKind::BitFlip,
        DiskFaultKind::LostWrite,
        DiskFaultKind::MisdirectedWrite,
    ];
}

impl std::fmt::Display for DiskFaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DiskFaultKind::BitFlip => "bit flip",
            DiskFaultKind::LostWrite => "lost write",
            DiskFaultKind::MisdirectedWrite => "misdirected write",
        })
    }
}

fn d_down_ms() -> [u64; 2] {
    [200, 1_000]
}

impl TimelineItem {
    pub fn at_ms(&self) -> u64 {
        match self {
            TimelineItem::Restart { at_ms, .. }
            | TimelineItem::Kill { at_ms, .. }
            | TimelineItem::Start { at_ms, .. }
            | TimelineItem::Partition { at_ms, .. }
            | TimelineItem::ClogLink { at_ms, .. }
            | TimelineItem::Pause { at_ms, .. }
            | TimelineItem::Loss { at_ms, .. }
            | TimelineItem::Latency { at_ms, .. }
            | TimelineItem::Heal { at_ms }
            | TimelineItem::Failpoint { at_ms, .. }
            | TimelineItem::CreateCollection { at_ms, .. }
            | TimelineItem::DropCollection { at_ms, .. }
            | TimelineItem::RotateKek { at_ms }
            | TimelineItem::RotateCmk { at_ms }
            | TimelineItem::StepDown { at_ms }
            | TimelineItem::Delay { at_ms, .. }
            | TimelineItem::Duplicate { at_ms, .. }
            | TimelineItem::CrashPoints { at_ms, .. }
            | TimelineItem::DiskFault { at_ms, .. } => *at_ms,
        }
    }
    pub fn action(&self) -> &'static str {
        match self {
            TimelineItem::Restart { .. } => "restart",
            TimelineItem::Kill { .. } => "kill",
            TimelineItem::Start { .. } => "start",
            TimelineItem::Partition { .. } => "partition",
            TimelineItem::ClogLink { .. } => "clog_link",
            TimelineItem::Pause { .. } => "pause",
            TimelineItem::Loss { .. } => "loss",
            TimelineItem::Latency { .. } => "latency",
            TimelineItem::Heal { .. } => "heal",
            TimelineItem::Failpoint { .. } => "failpoint",
            TimelineItem::CreateCollection { .. } => "create_collection",
            TimelineItem::DropCollection { .. } => "drop_collection",
            TimelineItem::RotateKek { .. } => "rotate_kek",
            TimelineItem::RotateCmk { .. } => "rotate_cmk",
            TimelineItem::StepDown { .. } => "step_down",
            TimelineItem::Delay { .. } => "delay",
            TimelineItem::Duplicate { .. } => "duplicate",
            TimelineItem::CrashPoints { .. } => "crash_points",
            TimelineItem::DiskFault { .. } => "disk_fault",
        }
    }
    /// The item's spans of simulated time (the largest of a range), by field.
    fn spans(&self) -> Vec<(&'static str, u64)> {
        match self {
            TimelineItem::Restart {
                down_ms,
                straggler_ms,
                ..
            } => {
                let mut v = vec![("down_ms", down_ms[0].max(down_ms[1]))];
                v.extend(straggler_ms.map(|s| ("straggler_ms", s[0].max(s[1]))));
                v
            }
            TimelineItem::CrashPoints {
                down_ms, for_ms, ..
            } => vec![("down_ms", down_ms[0].max(down_ms[1])), ("for_ms", *for_ms)],
            TimelineItem::DiskFault { down_ms, .. } => {
                vec![("down_ms", down_ms[0].max(down_ms[1]))]
            }
            TimelineItem::Partition { for_ms, .. }
            | TimelineItem::ClogLink { for_ms, .. }
            | TimelineItem::Pause { for_ms, .. }
            | TimelineItem::Latency { for_ms, .. }
            | TimelineItem::Loss { for_ms, .. }
            | TimelineItem::Failpoint { for_ms, .. }
            | TimelineItem::Delay { for_ms, .. }
            | TimelineItem::Duplicate { for_ms, .. } => vec![("for_ms", *for_ms)],
            _ => vec![],
        }
    }

    fn selectors(&self) -> Vec<(&'static str, &Selector)> {
        match self {
            TimelineItem::Restart { nodes, .. }
            | TimelineItem::Kill { nodes, .. }
            | TimelineItem::Start { nodes, .. }
            | TimelineItem::Partition { nodes, .. }
            | TimelineItem::Pause { nodes, .. }
            | TimelineItem::DiskFault { nodes, .. } => vec![("nodes", nodes)],
            TimelineItem::ClogLink { from, to, .. }
            | TimelineItem::Delay { from, to, .. }
            | TimelineItem::Duplicate { from, to, .. } => vec![("from", from), ("to", to)],
            _ => vec![],
        }
    }
}

impl Scenario {
    /// Knobs named by the scenario (validated on load).
    pub fn bugs(&self) -> Vec<KnownBug> {
        self.known_bugs
            .iter()
            .filter_map(|b| b.parse().ok())
            .collect()
    }

    pub fn has_check(&self, c: Check) -> bool {
        self.checks.contains(&c)
    }

    /// Parses and validates a scenario; `file` names it in errors. Never panics, whatever the
    /// text: every error carries a line and column, and the JSON path of the field it is about.
    pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
        // Editors on Windows start UTF-8 files with a byte-order mark; it is not JSON.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let error = |path: &[PathSeg], (line, column), message| ScenarioError {
            file: file.to_string(),
            line,
            column,
            field: (!path.is_empty()).then(|| path_string(path)),
            message,
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let scn: Scenario = match serde_path_to_error::deserialize(&mut de) {
            Ok(scn) => scn,
            Err(e) => {
                let path = path_of(e.path());
                let (path, pos, message) = json_error(text, path, e.into_inner());
                return Err(error(&path, pos, message));
            }
        };
        if let Err(e) = de.end() {
            let (path, pos, message) = json_error(text, vec![], e);
            return Err(error(&path, pos, message));
        }
        // A missing field (e.g. `expect.kinds`) points at the nearest enclosing one.
        scn.validate()
            .map_err(|(path, message)| error(&path, locate_nearest(text, &path), message))?;
        Ok(scn)
    }

    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: file.clone(),
            line: 0,
            column: 0,
            field: None,
            message: format!("cannot read scenario: {e}"),
        })?;
        Scenario::parse(&text, &file)
    }

    /// Semantic checks serde cannot express; errors carry the JSON path of the field.
    fn validate(&self) -> Result<(), (Vec<PathSeg>, String)> {
        use PathSeg::{Idx, Key};
        let err = |path: Vec<PathSeg>, msg: String| Err((path, msg));
        if self.name.trim().is_empty() {
            return err(vec![Key("name")], "must not be empty".into());
        }
        self.validate_runnable()?;
        if !(1..=7).contains(&self.replicas) {
            return err(
                vec![Key("replicas")],
                format!("{} replicas: must be 1..=7", self.replicas),
            );
        }
        if self.duration_ms == 0 || self.duration_ms > 3_600_000 {
            return err(vec![Key("duration_ms")], "must be 1..=3600000".into());
        }
        let [lo, hi] = self.network.latency_ms;
        if lo == 0 || lo > hi || hi > 10_000 {
            return err(
                vec![Key("network"), Key("latency_ms")],
                format!("[{lo}, {hi}]: need 1 <= min <= max <= 10000"),
            );
        }
        if self.network.loss_per_mille > 1000 {
            return err(
                vec![Key("network"), Key("loss_per_mille")],
                "must be 0..=1000".into(),
            );
        }
        let w = &self.workload;
        if w.clients > 64
            || (w.clients > 0 && (w.collections == 0 || w.keys == 0 || w.ops_per_sec == 0))
        {
            return err(
                vec![Key("workload")],
                "clients must be 0..=64; with clients, collections, keys and ops_per_sec must be > 0".into(),
            );
        }
        if let Some(m) = &w.mix {
            let sum = m.reads_per_mille + m.deletes_per_mille + m.appends_per_mille;
            if sum > 1000 || m.hot_per_mille > 1000 {
                return err(
                    vec![Key("workload"), Key("mix")],
                    format!("reads + deletes + appends must be at most 1000 per mille (is {sum}), hot_per_mille at most 1000"),
                );
            }
        }
        for (i, b) in self.known_bugs.iter().enumerate() {
            match parse_knob(b) {
                Err(e) => return err(vec![Key("known_bugs"), Idx(i)], e),
                Ok(bug) if !bug.implemented() => {
                    return err(
                        vec![Key("known_bugs"), Idx(i)],
                        format!("knob `{bug}` is not modelled by this engine yet"),
                    )
                }
                Ok(_) => {}
            }
        }
        for (i, f) in self.failpoints.iter().enumerate() {
            if let Err(msg) = check_failpoint(&f.name, f.per_mille) {
                return err(vec![Key("failpoints"), Idx(i)], msg);
            }
        }
        if let Some(n) = self.drain_workers {
            if !(1..=16).contains(&n) {
                return err(vec![Key("drain_workers")], format!("{n}: must be 1..=16"));
            }
        }
        if let Some(ms) = self.checkpoint_interval_ms {
            if !(50..=600_000).contains(&ms) {
                return err(
                    vec![Key("checkpoint_interval_ms")],
                    format!("{ms}: must be 50..=600000"),
                );
            }
        }
        if let Some(c) = &self.chaos {
            if c.mean_interval_ms < 50 {
                return err(
                    vec![Key("chaos"), Key("mean_interval_ms")],
                    "must be at least 50".into(),
                );
            }
            if c.faults.is_empty() {
                return err(
                    vec![Key("chaos"), Key("faults")],
                    "name at least one fault kind".into(),
                );
            }
            for (i, f) in c.faults.iter().enumerate() {
                if !CHAOS_FAULTS.contains(&f.as_str()) {
                    return err(
                        vec![Key("chaos"), Key("faults"), Idx(i)],
                        format!(
                            "unknown or not yet modelled fault `{f}` (available: {})",
                            CHAOS_FAULTS.join(", ")
                        ),
                    );
                }
            }
        }
        for (i, item) in self.timeline.iter().enumerate() {
            let at = vec![Key("timeline"), Idx(i)];
            let with = |k: &'static str| {
                let mut p = at.clone();
                p.push(Key(k));
                p
            };
            if item.at_ms() >= self.duration_ms {
                // The end-of-run recovery (restart, heal) happens at duration_ms; a fault from
                // then on would land in the liveness phase and fail a correct engine.
                return err(
                    with("at_ms"),
                    format!(
                        "{} is not before duration_ms {}: faults must fire during the fault phase",
                        item.at_ms(),
                        self.duration_ms
                    ),
                );
            }
            for (field, sel) in item.selectors() {
                match sel {
                    Selector::Node(n) if *n > self.replicas => {
                        return err(
                            with(field),
                            format!("`n{n}` but the cluster has {} replicas", self.replicas),
                        )
                    }
                    _ => {}
                }
            }
            match item {
                TimelineItem::Restart {
                    down_ms: [a, b],
                    straggler_ms,
                    ..
                } => {
                    if a > b {
                        return err(with("down_ms"), "min exceeds max".into());
                    }
                    if let Some([a, b]) = straggler_ms {
                        if a > b {
                            return err(with("straggler_ms"), "min exceeds max".into());
                        }
                    }
                }
                TimelineItem::Latency {
                    latency_ms: [a, b], ..
                } if *a == 0 || a > b || *b > 60_000 => {
                    return err(with("latency_ms"), "need 1 <= min <= max <= 60000".into())
                }
                TimelineItem::Loss { per_mille, .. }
                | TimelineItem::Duplicate { per_mille, .. }
                | TimelineItem::CrashPoints { per_mille, .. }
                    if *per_mille > 1000 =>
                {
                    return err(with("per_mille"), "must be 0..=1000".into())
                }
                TimelineItem::Delay {
                    per_mille,
                    delay_ms: [a, b],
                    ..
                } => {
                    if *per_mille > 1000 {
                        return err(with("per_mille"), "must be 0..=1000".into());
                    }
                    if a > b || *b > 60_000 {
                        return err(with("delay_ms"), "need min <= max <= 60000".into());
                    }
                }
                TimelineItem::Failpoint {
                    name, per_mille, ..
                } => {
                    if let Err(msg) = check_failpoint(name, *per_mille) {
                        return err(with("name"), msg);
                    }
                }
                TimelineItem::DiskFault {
                    down_ms: [a, b], ..
                } if a > b => return err(with("down_ms"), "min exceeds max".into()),
                TimelineItem::CrashPoints {
                    point,
                    down_ms: [a, b],
                    ..
                } => {
                    if let Some(p) = point {
                        if engine::observe::CrashPoint::parse(p).is_none() {
                            let names: Vec<_> = engine::observe::CrashPoint::ALL
                                .iter()
                                .map(|p| p.name())
                                .collect();
                            return err(
                                with("point"),
                                format!(
                                    "unknown crash point `{p}` (available: {})",
                                    names.join(", ")
                                ),
                            );
                        }
                    }
                    if a > b {
                        return err(with("down_ms"), "min exceeds max".into());
                    }
                }
                _ => {}
            }
        }
        self.expect.validate()
    }
}

/// The longest span of simulated time a scenario may ask for (a run, a fault, a liveness
/// timeout): an hour. Far beyond it, times overflow the simulated clock.
pub const MAX_SPAN_MS: u64 = 3_600_000;

/// Client operations per second a workload may ask for (the swarm doubles it).
pub const MAX_OPS_PER_SEC: u32 = 100_000;

impl Scenario {
    /// The rules that keep a scenario from testing the harness instead of the engine: a
    /// scenario the harness cannot run as written must be refused here (exit 2), never become
    /// a `crash` finding against the engine or a pass that checked nothing.
    fn validate_runnable(&self) -> Result<(), (Vec<PathSeg>, String)> {
        use PathSeg::{Idx, Key};
        if self.checks.is_empty() {
            return Err((
                vec![Key("checks")],
                "names no check, so every seed would pass having checked nothing (leave \
                 `checks` out to run them all)"
                    .into(),
            ));
        }
        if self.liveness_timeout_ms > MAX_SPAN_MS {
            return Err((
                vec![Key("liveness_timeout_ms")],
                too_long(self.liveness_timeout_ms),
            ));
        }
        if self.workload.ops_per_sec > MAX_OPS_PER_SEC {
            return Err((
                vec![Key("workload"), Key("ops_per_sec")],
                format!(
                    "{}: must be at most {MAX_OPS_PER_SEC}",
                    self.workload.ops_per_sec
                ),
            ));
        }
        // A minority of one or two replicas is none: the harness cannot pick one.
        let swarm_world = self
            .chaos
            .as_ref()
            .is_some_and(|c| c.swarm && c.swarm_world);
        let minority = |what: &str| {
            format!(
                "{what} needs at least 3 replicas (a minority of {} is no replica)",
                self.replicas
            )
        };
        if let Some(c) = &self.chaos {
            if c.mean_interval_ms > MAX_SPAN_MS {
                return Err((
                    vec![Key("chaos"), Key("mean_interval_ms")],
                    too_long(c.mean_interval_ms),
                ));
            }
            if let Some(i) = c.faults.iter().position(|f| f == "split") {
                if self.replicas < 3 && !swarm_world {
                    return Err((
                        vec![Key("chaos"), Key("faults"), Idx(i)],
                        minority("`split`"),
                    ));
                }
            }
        }
        for (i, item) in self.timeline.iter().enumerate() {
            let at = |k: &'static str| vec![Key("timeline"), Idx(i), Key(k)];
            if let Some((field, ms)) = item.spans().into_iter().find(|(_, ms)| *ms > MAX_SPAN_MS) {
                return Err((at(field), too_long(ms)));
            }
            for (field, sel) in item.selectors() {
                if *sel == Selector::Minority && self.replicas < 3 && !swarm_world {
                    return Err((at(field), minority("`minority`")));
                }
            }
        }
        Ok(())
    }
}

fn too_long(ms: u64) -> String {
    format!("{ms} ms: must be at most {MAX_SPAN_MS} (an hour of simulated time)")
}

impl Expect {
    /// The `expect` block's own rules; paths start at `expect`.
    fn validate(&self) -> Result<(), (Vec<PathSeg>, String)> {
        use PathSeg::Key;
        let at = |k: &'static str| vec![Key("expect"), Key(k)];
        let ci = self.ci_seeds();
        if let Some(n) = self.ci_seeds {
            if !(1..=MAX_CI_SEEDS).contains(&n) {
                return Err((at("ci_seeds"), format!("{n}: must be 1..={MAX_CI_SEEDS}")));
            }
        }
        match self.verdict {
            Verdict::Pass => {
                let fail_only = [
                    ("kinds", !self.kinds.is_empty()),
                    ("message", self.message.is_some()),
                    ("also", !self.also.is_empty()),
                    ("min_found", self.min_found.is_some()),
                ];
                if let Some((field, _)) = fail_only.iter().find(|(_, set)| *set) {
                    return Err((
                        at(field),
                        format!("`{field}` only goes with verdict `fail`"),
                    ));
                }
            }
            Verdict::Fail => {
                if self.kinds.is_empty() {
                    return Err((
                        at("kinds"),
                        format!(
                            "verdict `fail` must name the kinds of the finding (one or more of: {})",
                            ViolationKind::ALL.map(|k| k.as_str()).join(", ")
                        ),
                    ));
                }
                if self.message.as_deref().is_some_and(|m| m.trim().is_empty()) {
                    return Err((
                        at("message"),
                        "must not be empty (leave it out to accept any message)".into(),
                    ));
                }
                if let Some((i, k)) = self
                    .also
                    .iter()
                    .enumerate()
                    .find(|(_, k)| self.kinds.contains(k))
                {
                    return Err((
                        vec![Key("expect"), Key("also"), PathSeg::Idx(i)],
                        format!("`{k}` is one of `kinds` already"),
                    ));
                }
                if let Some(n) = self.min_found {
                    if n == 0 || n > ci {
                        return Err((at("min_found"), format!("{n}: must be 1..={ci} (ci_seeds)")));
                    }
                }
                if self.min_ops_acked_fault_phase.is_some() {
                    return Err((
                        at("min_ops_acked_fault_phase"),
                        "`min_ops_acked_fault_phase` only goes with verdict `pass`".into(),
                    ));
                }
            }
        }
        for (name, &n) in &self.windows {
            let key = match crate::world::WINDOWS.iter().find(|w| **w == name.as_str()) {
                Some(w) => *w,
                None => {
                    return Err((
                        vec![Key("expect"), Key("windows"), PathSeg::Field(name.clone())],
                        format!(
                            "unknown race window `{name}` (windows: {})",
                            crate::world::WINDOWS.join(", ")
                        ),
                    ));
                }
            };
            if n == 0 || n > ci {
                return Err((
                    vec![Key("expect"), Key("windows"), Key(key)],
                    format!("{n}: must be 1..={ci} (seeds of ci_seeds that enter `{name}`)"),
                ));
            }
        }
        Ok(())
    }
}

fn check_failpoint(name: &str, per_mille: u32) -> Result<(), String> {
    if !engine::failpoints::IMPLEMENTED.contains(&name) {
        return Err(format!(
            "unknown or not yet modelled failpoint `{name}` (available: {})",
            engine::failpoints::IMPLEMENTED.join(", ")
        ));
    }
    if per_mille > 1000 {
        return Err(format!("per_mille {per_mille}: must be 0..=1000"));
    }
    Ok(())
}

/// A serde_json error as (path, line and column, message). The path is where deserializing
/// stopped, plus the field an error inside a timeline item names (`ITEM_FIELD`) or a missing or
/// unknown field's name. The position is where the value at that path starts (a missing field:
/// its object), so an error inside a timeline item points at that item and not at the end of
/// it; a syntax error or a repeated key is where serde_json stopped.
fn json_error(
    text: &str,
    mut path: Vec<PathSeg>,
    e: serde_json::Error,
) -> (Vec<PathSeg>, (usize, usize), String) {
    let full = e.to_string();
    // serde_json appends " at line L column C"; we print the position ourselves.
    let mut message = match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    };
    if let Some((field, rest)) = message
        .strip_prefix(ITEM_FIELD)
        .and_then(|m| m.split_once("`: "))
    {
        path.extend(parse_item_path(field));
        message = rest.to_string();
    }
    let named = ["missing field `", "unknown field `", "duplicate field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p)?.split('`').next());
    if let Some(name) = named {
        if path.last().is_none_or(|last| last.name() != Some(name)) {
            path.push(PathSeg::Field(name.to_string()));
        }
    }
    let stopped = json_offset(text, e.line(), e.column());
    let pos = if message.starts_with("duplicate field") {
        // serde_json stopped on the repeated key's closing quote: point at the key.
        let key = format!("\"{}\"", named.unwrap_or_default());
        let through = text[stopped..]
            .chars()
            .next()
            .map_or(stopped, |c| stopped + c.len_utf8());
        line_col(text, text[..through].rfind(&key).unwrap_or(stopped))
    } else if e.classify() == serde_json::error::Category::Data {
        locate_nearest(text, &path)
    } else {
        line_col(text, stopped)
    };
    (path, pos, message)
}

/// A field path inside a timeline item (`for_ms`, `down_ms[1]`) as segments.
fn parse_item_path(field: &str) -> Vec<PathSeg> {
    let mut path = Vec::new();
    for part in field.split('.') {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            path.push(PathSeg::Field(key.to_string()));
        }
        for idx in pieces {
            match idx.trim_end_matches(']').parse() {
                Ok(i) => path.push(PathSeg::Idx(i)),
                Err(_) => path.push(PathSeg::Field(idx.to_string())),
            }
        }
    }
    path
}

/// serde_path_to_error's path as ours; it stops at a segment it could not name.
fn path_of(p: &serde_path_to_error::Path) -> Vec<PathSeg> {
    use serde_path_to_error::Segment;
    p.iter()
        .map_while(|seg| match seg {
            Segment::Seq { index } => Some(PathSeg::Idx(*index)),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                Some(PathSeg::Field(key.clone()))
            }
            _ => None,
        })
        .collect()
}

/// A JSON path into a scenario. `Key` is a field named in code, `Field` one read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    Key(&'static str),
    Field(String),
    Idx(usize),
}

impl PathSeg {
    fn name(&self) -> Option<&str> {
        match self {
            PathSeg::Key(k) => Some(k),
            PathSeg::Field(k) => Some(k),
            PathSeg::Idx(_) => None,
        }
    }
}

fn path_string(path: &[PathSeg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            PathSeg::Idx(i) => s.push_str(&format!("[{i}]")),
            _ => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(seg.name().unwrap_or_default());
            }
        }
    }
    s
}

/// Where the value at `path` starts, or the nearest enclosing value that is there (a missing
/// field points at its object); the start of the text at worst.
fn locate_nearest(text: &str, path: &[PathSeg]) -> (usize, usize) {
    (0..=path.len())
        .rev()
        .find_map(|n| locate(text, &path[..n]))
        .unwrap_or((1, 1))
}

/// Finds the (line, column) where the value at `path` starts in a JSON text. A tiny scanner:
/// enough for error messages, not a parser. The text may be malformed further on (serde stops
/// at the first error), so it reads bytes only and gives up (`None`) rather than guess.
fn locate(text: &str, path: &[PathSeg]) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    for seg in path {
        skip_ws(bytes, &mut pos);
        match seg {
            PathSeg::Key(_) | PathSeg::Field(_) => {
                let k = seg.name().unwrap_or_default();
                if bytes.get(pos) != Some(&b'{') {
                    return None;
                }
                pos += 1;
                loop {
                    skip_ws(bytes, &mut pos);
                    if bytes.get(pos) == Some(&b'}') {
                        return None;
                    }
                    let key = read_string(bytes, &mut pos)?;
                    skip_ws(bytes, &mut pos);
                    if bytes.get(pos) != Some(&b':') {
                        return None;
                    }
                    pos += 1;
                    skip_ws(bytes, &mut pos);
                    if key == k {
                        break;
                    }
                    skip_value(bytes, &mut pos)?;
                    skip_ws(bytes, &mut pos);
                    if bytes.get(pos) == Some(&b',') {
                        pos += 1;
                    }
                }
            }
            PathSeg::Idx(i) => {
                if bytes.get(pos) != Some(&b'[') {
                    return None;
                }
                pos += 1;
                for _ in 0..*i {
                    skip_ws(bytes, &mut pos);
                    skip_value(bytes, &mut pos)?;
                    skip_ws(bytes, &mut pos);
                    if bytes.get(pos) != Some(&b',') {
                        return None;
                    }
                    pos += 1;
                }
                skip_ws(bytes, &mut pos);
            }
        }
    }
    Some(line_col(text, pos))
}

/// 1-based line and column of a byte offset; the column counts characters, as editors do.
fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let before = &text[..floor_char_boundary(text, pos)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The byte offset of serde_json's 1-based line and column (its columns count bytes, so the
/// offset may fall inside a character: it is moved back to that character's start).
fn json_offset(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    floor_char_boundary(text, start + column.saturating_sub(1))
}

/// The largest char boundary at or before `pos` (clamped to the text).
fn floor_char_boundary(text: &str, pos: usize) -> usize {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    pos
}

fn skip_ws(b: &[u8], pos: &mut usize) {
    while matches!(b.get(*pos), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        *pos += 1;
    }
}

fn read_string(b: &[u8], pos: &mut usize) -> Option<String> {
    if b.get(*pos) != Some(&b'"') {
        return None;
    }
    let start = *pos + 1;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => {
                *pos = i + 1;
                return Some(String::from_utf8_lossy(&b[start..i]).into_owned());
            }
            _ => i += 1,
        }
    }
    None
}

fn skip_value(b: &[u8], pos: &mut usize) -> Option<()> {
    match b.get(*pos)? {
        b'"' => read_string(b, pos).map(|_| ()),
        b'{' | b'[' => {
            let mut depth = 0usize;
            while *pos < b.len() {
                match b[*pos] {
                    b'"' => {
                        read_string(b, pos)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            *pos += 1;
                            return Some(());
                        }
                    }
                    _ => {}
                }
                *pos += 1;
            }
            None
        }
        _ => {
            while *pos < b.len()
                && !matches!(b[*pos], b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
            {
                *pos += 1;
            }
            Some(())
        }
    }
}

/// The candidate closest to `word`, if it is close enough to be what was meant (a typo: a
/// few characters dropped, added, changed or swapped).
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 4);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

/// `"; did you mean x?"` when a candidate is close to `word`, else nothing.
fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(word, candidates).map_or(String::new(), |c| format!("; did you mean {c}?"))
}

/// A known-bug knob by name; a misspelled one is refused with the name it is closest to.
pub fn parse_knob(name: &str) -> Result<KnownBug, String> {
    name.parse::<KnownBug>()
        .map_err(|e| e + &suggestion(name, KnownBug::ALL.iter().map(|b| b.name())))
}

/// Where named scenarios live: `$FAULTLINE_SCENARIOS`, `./scenarios`, then the source tree's.
pub fn scenario_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(d) = std::env::var("FAULTLINE_SCENARIOS") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("scenarios"));
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios"));
    dirs
}

/// Resolves a scenario argument: an existing file path, or the name of a named scenario.
pub fn resolve(arg: &str) -> Result<PathBuf, ScenarioError> {
    let p = Path::new(arg);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    for d in scenario_dirs() {
        let f = d.join(format!("{arg}.json"));
        if f.is_file() {
            return Ok(f);
        }
    }
    let names = named();
    Err(ScenarioError {
        file: arg.to_string(),
        line: 0,
        column: 0,
        field: None,
        message: format!(
            "no such scenario file or named scenario (see `faultline list`){}",
            suggestion(arg, names.iter().map(|(n, _)| n.as_str()))
        ),
    })
}

/// Every named scenario (file stem, path), sorted by name.
pub fn named() -> Vec<(String, PathBuf)> {
    for d in scenario_dirs() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut v: Vec<(String, PathBuf)> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| Some((p.file_stem()?.to_string_lossy().into_owned(), p)))
            .collect();
        if !v.is_empty() {
            v.sort();
            return v;
        }
    }
    vec![]
}

/// The same item at another time. Through its JSON form, so it works for every action without
/// listing them: only the shared `at_ms` field changes.
pub fn retimed(item: &TimelineItem, at_ms: u64) -> TimelineItem {
    let mut v = serde_json::to_value(item).expect("a timeline item serializes");
    v["at_ms"] = serde_json::Value::from(at_ms);
    serde_json::from_value(v).expect("an item with another at_ms is still an item")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
  "name": "t",
  "duration_ms": 5000,
  "timeline": [
    { "at_ms": 1000, "action": "restart", "nodes": "all", "straggler_ms": [100, 200] },
    { "at_ms": 2000, "action": "partition", "nodes": "leader", "for_ms": 500 }
  ],
  "expect": { "verdict": "fail", "kinds": ["raft-safety", "dbhash-mismatch"] }
}"#;

    #[test]
    fn parses_a_good_scenario_with_defaults() {
        let s = Scenario::parse(GOOD, "t.json").unwrap();
        assert_eq!(s.replicas, 3);
        assert_eq!(s.timeline.len(), 2);
        assert_eq!(s.timeline[1].at_ms(), 2000);
        assert_eq!(
            s.expect.kinds,
            vec![ViolationKind::RaftSafety, ViolationKind::DbhashMismatch]
        );
        assert_eq!(s.checks.len(), 7);
    }

    #[test]
    fn syntax_error_names_file_line_and_column() {
        let bad = "{\n  \"name\": \"t\",\n  \"duration_ms\": 5000,,\n}";
        let e = Scenario::parse(bad, "bad.json").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("bad.json", 3));
        assert!(e.column > 0);
    }

    #[test]
    fn unknown_field_names_the_field_and_line() {
        let bad = GOOD.replace("\"for_ms\": 500", "\"for_ms\": 500, \"forr_ms\": 1");
        let e = Scenario::parse(&bad, "f.json").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("timeline[1].forr_ms"), "{e}");
        assert_eq!(e.line, 6, "{e}");
        let top = GOOD.replace("\"name\": \"t\",", "\"name\": \"t\", \"replics\": 3,");
        let e = Scenario::parse(&top, "f.json").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("replics"));
        assert_eq!(e.line, 2);
    }

    #[test]
    fn unknown_action_is_reported_with_its_line() {
        let bad = GOOD.replace("\"action\": \"partition\"", "\"action\": \"explode\"");
        let e = Scenario::parse(&bad, "a.json").unwrap_err();
        assert!(e.message.contains("explode"), "{e}");
        assert_eq!(e.field.as_deref(), Some("timeline[1].action"));
        assert_eq!(e.line, 6, "{e}");
    }

    #[test]
    fn semantic_errors_point_at_the_field() {
        let bad = GOOD.replace("\"nodes\": \"leader\"", "\"nodes\": \"n9\"");
        let e = Scenario::parse(&bad, "s.json").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("timeline[1].nodes"), "{e}");
        assert_eq!(e.line, 6);
        let bad = GOOD.replace("\"at_ms\": 2000", "\"at_ms\": 9000");
        let e = Scenario::parse(&bad, "s.json").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("timeline[1].at_ms"));
        let bad = GOOD.replace("\"nodes\": \"all\"", "\"nodes\": \"everyone\"");
        let e = Scenario::parse(&bad, "s.json").unwrap_err();
        assert!(e.message.contains("unknown node selector"), "{e}");
        assert_eq!(e.line, 5);
    }

    /// Seven partitions of the leader, one per line (the first item on line 5).
    fn seven_items(last: &str) -> String {
        let mut items: Vec<String> = (1..=6)
            .map(|i| {
                format!(
                    r#"    {{ "at_ms": {i}00, "action": "partition", "nodes": "leader", "for_ms": 50 }}"#
                )
            })
            .collect();
        items.push(format!("    {last}"));
        format!(
            "{{\n  \"name\": \"t\",\n  \"duration_ms\": 5000,\n  \"timeline\": [\n{}\n  ]\n}}\n",
            items.join(",\n")
        )
    }

    #[test]
    fn errors_inside_a_timeline_item_name_its_path_and_line() {
        let cases = [
            // A missing field: the item that lacks it, not another item that has it.
            (
                r#"{ "at_ms": 700, "action": "partition", "nodes": "leader" }"#,
                "timeline[6].for_ms",
                "missing field `for_ms`",
                5,
            ),
            // A wrong type: the field, at its value (not the end of the object).
            (
                r#"{ "at_ms": 700, "action": "partition", "nodes": "leader", "for_ms": "50" }"#,
                "timeline[6].for_ms",
                "invalid type: string \"50\", expected u64",
                73,
            ),
            (
                r#"{ "at_ms": 700, "action": "partition", "nodes": "the leader", "for_ms": 50 }"#,
                "timeline[6].nodes",
                "unknown node selector `the leader`",
                53,
            ),
            (
                r#"{ "at_ms": 700, "action": "restart", "nodes": "all", "down_ms": [1, -2] }"#,
                "timeline[6].down_ms[1]",
                "invalid value: integer `-2`, expected u64",
                73,
            ),
            (
                r#"{ "at_ms": 700, "action": "partition", "nodes": "leader", "for_ms": 5, "for_ms": 6 }"#,
                "timeline[6].for_ms",
                "duplicate field `for_ms`",
                76,
            ),
            (
                r#"{ "at_ms": 700, "action": "parition", "nodes": "leader", "for_ms": 5 }"#,
                "timeline[6].action",
                "unknown variant `parition`",
                31,
            ),
            (
                r#"{ "at_ms": 700, "nodes": "leader", "for_ms": 5 }"#,
                "timeline[6].action",
                "missing field `action`",
                5,
            ),
        ];
        for (item, field, message, column) in cases {
            let e = Scenario::parse(&seven_items(item), "t.json").unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{item}: {e}");
            assert!(e.message.starts_with(message), "{item}: {e}");
            assert_eq!((e.line, e.column), (11, column), "{item}: {e}");
        }
        let good = seven_items(r#"{ "at_ms": 700, "action": "kill", "nodes": "n1" }"#);
        assert_eq!(Scenario::parse(&good, "t.json").unwrap().timeline.len(), 7);
    }

    #[test]
    fn non_ascii_text_is_an_error_with_a_position_never_a_panic() {
        // A no-break space or curly quotes pasted from a document, right after a value.
        for (bad, line, column) in [
            (
                "{\n  \"name\": \"t\",\n  \"duration_ms\": 5000\u{a0}\n}",
                3,
                22,
            ),
            (
                "{\n  \"name\": \u{201c}t\u{201d},\n  \"duration_ms\": 5000\n}",
                2,
                11,
            ),
            (
                "{\n  \"name\": \"t\"\u{2019},\n  \"duration_ms\": 5000\n}",
                2,
                14,
            ),
            (
                "{ \"name\": \"\u{e9}t\u{e9}\", \"duration_ms\": 5000 }\u{2014}",
                1,
                39,
            ),
        ] {
            let e = Scenario::parse(bad, "u.json").unwrap_err();
            assert_eq!((e.line, e.column), (line, column), "{bad:?}: {e}");
        }
        // Columns count characters: the `é`s before the bad value count one each.
        let e = Scenario::parse(
            "{ \"name\": \"\u{e9}\u{e9}\", \"duration_ms\": \"x\" }",
            "u.json",
        )
        .unwrap_err();
        assert_eq!(
            (e.line, e.column, e.field.as_deref()),
            (1, 32, Some("duration_ms")),
            "{e}"
        );
    }

    #[test]
    fn a_byte_order_mark_is_accepted() {
        let s = Scenario::parse(&format!("\u{feff}{GOOD}"), "bom.json").unwrap();
        assert_eq!(s.timeline.len(), 2);
        let e = Scenario::parse("\u{feff}{\n  \"name\": 1 }", "bom.json").unwrap_err();
        assert_eq!(
            (e.line, e.column),
            (2, 11),
            "columns as an editor shows them: {e}"
        );
    }

    #[test]
    fn scenarios_the_harness_cannot_run_are_refused() {
        let with_timeline = |replicas: u8, item: &str| {
            format!(
                r#"{{ "name": "t", "replicas": {replicas}, "duration_ms": 5000, "timeline": [ {item} ] }}"#
            )
        };
        let partition = |nodes: &str| {
            format!(
                r#"{{ "at_ms": 100, "action": "partition", "nodes": "{nodes}", "for_ms": 50 }}"#
            )
        };
        let cases = [
            (with_timeline(2, &partition("minority")), "timeline[0].nodes", "needs at least 3 replicas"),
            (with_timeline(1, &partition("minority")), "timeline[0].nodes", "needs at least 3 replicas"),
            (
                r#"{ "name": "t", "replicas": 2, "duration_ms": 5000, "chaos": { "faults": ["kill", "split"], "mean_interval_ms": 500 } }"#.to_string(),
                "chaos.faults[1]",
                "needs at least 3 replicas",
            ),
            (
                with_timeline(3, r#"{ "at_ms": 5000, "action": "kill", "nodes": "n1" }"#),
                "timeline[0].at_ms",
                "not before duration_ms 5000",
            ),
            (
                with_timeline(3, r#"{ "at_ms": 10, "action": "partition", "nodes": "n1", "for_ms": 18446744073709551615 }"#),
                "timeline[0].for_ms",
                "must be at most 3600000",
            ),
            (
                with_timeline(3, r#"{ "at_ms": 10, "action": "restart", "nodes": "n1", "down_ms": [1, 4000000] }"#),
                "timeline[0].down_ms",
                "must be at most 3600000",
            ),
            (
                with_timeline(3, r#"{ "at_ms": 10, "action": "crash_points", "per_mille": 5, "for_ms": 1, "down_ms": [99999999999, 99999999999] }"#),
                "timeline[0].down_ms",
                "must be at most 3600000",
            ),
            (
                r#"{ "name": "t", "duration_ms": 18446744073709551615 }"#.to_string(),
                "duration_ms",
                "must be 1..=3600000",
            ),
            (
                r#"{ "name": "t", "duration_ms": 5000, "liveness_timeout_ms": 18446744073709551615 }"#.to_string(),
                "liveness_timeout_ms",
                "must be at most 3600000",
            ),
            (
                r#"{ "name": "t", "duration_ms": 5000, "chaos": { "faults": ["kill"], "mean_interval_ms": 18446744073709551615 } }"#.to_string(),
                "chaos.mean_interval_ms",
                "must be at most 3600000",
            ),
            (
                r#"{ "name": "t", "duration_ms": 5000, "checks": [] }"#.to_string(),
                "checks",
                "checked nothing",
            ),
        ];
        for (text, field, message) in cases {
            let e = Scenario::parse(&text, "r.json").unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{text}: {e}");
            assert!(e.message.contains(message), "{text}: {e}");
            assert!(e.line >= 1 && e.column >= 1, "{e}");
        }
        // What stays allowed: a minority of three, `split` where the swarm draws 3 or 5
        // replicas, the last millisecond of the fault phase.
        for ok in [
            with_timeline(3, &partition("minority")),
            r#"{ "name": "t", "replicas": 1, "duration_ms": 5000, "chaos": { "faults": ["split"], "mean_interval_ms": 500, "swarm": true, "swarm_world": true } }"#.to_string(),
            with_timeline(3, r#"{ "at_ms": 4999, "action": "kill", "nodes": "n1" }"#),
        ] {
            Scenario::parse(&ok, "ok.json").unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn bad_knob_and_kind_are_rejected() {
        let bad = GOOD.replace(
            "\"duration_ms\": 5000,",
            "\"duration_ms\": 5000, \"known_bugs\": [\"nope\"],",
        );
        let e = Scenario::parse(&bad, "k.json").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("known_bugs[0]"));
        assert!(
            e.message.contains("volatile-raft-term"),
            "lists the knobs: {e}"
        );
        let bad = GOOD.replace("raft-safety", "raft-oops");
        assert!(Scenario::parse(&bad, "k.json").is_err());
    }

    #[test]
    fn chaos_block_is_validated() {
        let with = |faults: &str| {
            GOOD.replace(
                "\"timeline\"",
                &format!("\"chaos\": {{ \"faults\": [{faults}], \"mean_interval_ms\": 1000, \"swarm\": true }},\n  \"timeline\""),
            )
        };
        let s = Scenario::parse(&with("\"kill\", \"split\""), "c.json").unwrap();
        assert_eq!(s.chaos.unwrap().faults.len(), 2);
        let e = Scenario::parse(&with("\"kill\", \"meteor\""), "c.json").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("chaos.faults[1]"), "{e}");
        assert!(e.message.contains("meteor"));
    }

    /// `GOOD` with its `expect` block replaced.
    fn with_expect(expect: &str) -> String {
        GOOD.replace(
            r#""expect": { "verdict": "fail", "kinds": ["raft-safety", "dbhash-mismatch"] }"#,
            &format!("\"expect\": {expect}"),
        )
    }

    #[test]
    fn strict_fail_expectation_parses_and_matches_kind_and_message() {
        let text = with_expect(
            r#"{ "verdict": "fail", "kinds": ["node-abort"], "message": "failed to step up*NotFound",
                "also": ["liveness"], "min_found": 3, "windows": { "drop-during-drain": 2 }, "ci_seeds": 20 }"#,
        );
        let s = Scenario::parse(&text, "e.json").unwrap();
        let e = &s.expect;
        assert_eq!(e.min_found, Some(3));
        assert_eq!(e.windows.get("drop-during-drain"), Some(&2));
        let abort = "invariant failed: failed to step up: drain worker 1: cursor on c2: NotFound";
        assert!(e.is_finding(ViolationKind::NodeAbort, abort));
        assert!(!e.is_finding(
            ViolationKind::NodeAbort,
            "failed to pick up checkpoint 8: StaleKeystore"
        ));
        assert!(
            !e.is_finding(ViolationKind::Liveness, abort),
            "`also` kinds are never the finding"
        );
        assert!(e.tolerates(ViolationKind::Liveness) && e.tolerates(ViolationKind::NodeAbort));
        assert!(!e.tolerates(ViolationKind::Crash) && !e.tolerates(ViolationKind::Hang));
        // Round-trips through JSON (shrink writes scenarios back).
        let back: Expect = serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap();
        assert_eq!(&back, e);
        // Minimums scale with the seeds run, rounded down.
        assert_eq!(e.scaled(10, 20), 10);
        assert_eq!(e.scaled(10, 4), 2);
        assert_eq!(e.scaled(1, 4), 0);
        assert_eq!(e.scaled(10, 40), 20);
    }

    #[test]
    fn message_patterns_are_substrings_with_star() {
        assert!(message_matches(
            "StaleKeystore",
            "load_key: StaleKeystore: behind"
        ));
        assert!(message_matches(
            "load_key*behind",
            "load_key: StaleKeystore: behind"
        ));
        assert!(!message_matches(
            "behind*load_key",
            "load_key: StaleKeystore: behind"
        ));
        assert!(message_matches("", "anything") && message_matches("*", "anything"));
        assert!(
            !message_matches("stalekeystore", "StaleKeystore"),
            "case matters"
        );
        assert!(!message_matches("a*a", "a"), "pieces do not overlap");
    }

    #[test]
    fn expect_errors_point_at_the_field() {
        let cases = [
            (r#"{ "verdict": "fail" }"#, "expect.kinds", "name the kinds"),
            (
                r#"{ "verdict": "fail", "kinds": [] }"#,
                "expect.kinds",
                "name the kinds",
            ),
            (
                r#"{ "verdict": "pass", "message": "x" }"#,
                "expect.message",
                "only goes with verdict `fail`",
            ),
            (
                r#"{ "verdict": "pass", "also": ["liveness"] }"#,
                "expect.also",
                "only goes with",
            ),
            (
                r#"{ "verdict": "pass", "min_found": 2 }"#,
                "expect.min_found",
                "only goes with",
            ),
            (
                r#"{ "verdict": "pass", "kinds": ["crash"] }"#,
                "expect.kinds",
                "only goes with",
            ),
            (
                r#"{ "verdict": "fail", "kinds": ["crash"], "min_ops_acked_fault_phase": 3 }"#,
                "expect.min_ops_acked_fault_phase",
                "only goes with verdict `pass`",
            ),
            (
                r#"{ "verdict": "fail", "kinds": ["crash"], "message": " " }"#,
                "expect.message",
                "must not be empty",
            ),
            (
                r#"{ "verdict": "fail", "kinds": ["crash"], "also": ["hang", "crash"] }"#,
                "expect.also[1]",
                "one of `kinds` already",
            ),
            (
                r#"{ "verdict": "fail", "kinds": ["crash"], "min_found": 0 }"#,
                "expect.min_found",
                "must be 1..=10",
            ),
            (
                r#"{ "verdict": "fail", "kinds": ["crash"], "min_found": 11 }"#,
                "expect.min_found",
                "must be 1..=10",
            ),
            (
                r#"{ "verdict": "pass", "windows": { "checkpoint-picked-up": 3, "nope": 1 } }"#,
                "expect.windows.nope",
                "unknown race window `nope`",
            ),
            (
                r#"{ "verdict": "pass", "windows": { "checkpoint-picked-up": 21 }, "ci_seeds": 20 }"#,
                "expect.windows.checkpoint-picked-up",
                "must be 1..=20",
            ),
        ];
        for (expect, field, msg) in cases {
            let text = with_expect(expect);
            let e = Scenario::parse(&text, "x.json").unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{expect}: {e}");
            assert!(e.message.contains(msg), "{expect}: {e}");
            assert_eq!(e.line, 8, "{expect}: points at the expect block: {e}");
        }
        let text = with_expect(r#"{ "verdict": "pass", "windows": { "nope": 1 } }"#);
        let e = Scenario::parse(&text, "x.json").unwrap_err();
        assert!(
            e.message.contains("all-replicas-restarted") && e.message.contains("drop-during-drain"),
            "lists the windows: {e}"
        );
        let text = with_expect(r#"{ "verdict": "pass", "minfound": 1 }"#);
        let e = Scenario::parse(&text, "x.json").unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("expect.minfound"),
            "unknown fields are rejected: {e}"
        );
    }

    #[test]
    fn every_shipped_scenario_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                let s = Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    Some(s.name.as_str()),
                    p.file_stem().and_then(|s| s.to_str()),
                    "name matches file"
                );
                n += 1;
            }
        }
        assert!(n >= 4, "the named scenarios ship with the repo");
    }
}
