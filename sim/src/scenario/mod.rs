//! Scenario files: JSON parsed with serde (unknown fields rejected), then validated. Every error
//! names the file, line, column and field, so a typo never becomes a silently ignored option.

use std::fmt;
use std::path::{Path, PathBuf};

use engine::KnownBug;
use reports::ViolationKind;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod errors;
mod schema;
#[cfg(test)]
mod tests;
mod timeline;
mod validate;

pub use errors::PathSeg;
#[allow(unused_imports)]
use errors::*;
pub use schema::json_schema;
use schema::*;
#[allow(unused_imports)]
use timeline::*;
pub use timeline::{DiskFaultKind, Selector, TimelineItem};
#[allow(unused_imports)]
use validate::*;
pub use validate::{MAX_OPS_PER_SEC, MAX_SPAN_MS};

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
    /// The system under test: omitted for the shipped engine, or the name of a hosted system
    /// registered in this binary (`openraft` in `systems/openraft/run.sh`'s build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
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
pub const CHAOS_FAULTS: [&str; 22] = [
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
    "link_latency",
    "hold_flushes",
];

/// The chaos fault kinds a hosted system can take (network, kills, disk stalls).
pub const HOSTED_CHAOS_FAULTS: [&str; 9] = [
    "kill",
    "restart_all",
    "partition",
    "split",
    "one_way",
    "loss",
    "latency_spike",
    "link_latency",
    "hold_flushes",
];

/// The timeline actions a hosted system can take.
pub const HOSTED_ACTIONS: [&str; 10] = [
    "restart",
    "kill",
    "start",
    "partition",
    "clog_link",
    "latency",
    "link_latency",
    "loss",
    "heal",
    "hold_flushes",
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
