use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::ReportError;

/// Stable identifiers; scripts depend on them. serde: kebab-case strings.
///
/// The derived `Ord` (declaration order) is what `kinds_found` is sorted by, so it is stable too:
/// append new kinds at the end.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationKind {
    /// A node hit an internal assertion / abort.
    NodeAbort,
    /// A node process crashed unexpectedly (outside injected faults).
    Crash,
    /// The simulation stopped making progress within its time budget.
    Hang,
    /// Replicas' database hashes differ after quiescence.
    DbhashMismatch,
    /// The storage engine's own validation found corruption.
    Validate,
    /// A Raft safety property (e.g. two leaders in one term) was broken.
    RaftSafety,
    /// Replica state machines diverged.
    StateDivergence,
    /// An acknowledged write was lost.
    Durability,
    /// The cluster failed to recover service after faults healed.
    Liveness,
    /// What a replica's readers see differs from the reference model (the committed sequence
    /// replayed on the plain state machine) at the replica's applied index.
    ModelDivergence,
    /// The client history has no linearization, an acknowledgement names another operation's
    /// entry, or an operation took effect twice.
    Linearizability,
    /// One (key, nonce) pair sealed two different messages.
    NonceReuse,
}

impl ViolationKind {
    /// Every kind, in `Ord` order; for help texts and exhaustive iteration.
    pub const ALL: [ViolationKind; 12] = [
        ViolationKind::NodeAbort,
        ViolationKind::Crash,
        ViolationKind::Hang,
        ViolationKind::DbhashMismatch,
        ViolationKind::Validate,
        ViolationKind::RaftSafety,
        ViolationKind::StateDivergence,
        ViolationKind::Durability,
        ViolationKind::Liveness,
        ViolationKind::ModelDivergence,
        ViolationKind::Linearizability,
        ViolationKind::NonceReuse,
    ];

    /// The stable kebab-case identifier (identical to the serde form).
    pub fn as_str(&self) -> &'static str {
        match self {
            ViolationKind::NodeAbort => "node-abort",
            ViolationKind::Crash => "crash",
            ViolationKind::Hang => "hang",
            ViolationKind::DbhashMismatch => "dbhash-mismatch",
            ViolationKind::Validate => "validate",
            ViolationKind::RaftSafety => "raft-safety",
            ViolationKind::StateDivergence => "state-divergence",
            ViolationKind::Durability => "durability",
            ViolationKind::Liveness => "liveness",
            ViolationKind::ModelDivergence => "model-divergence",
            ViolationKind::Linearizability => "linearizability",
            ViolationKind::NonceReuse => "nonce-reuse",
        }
    }

    /// Parses the kebab-case identifier. Also accepts any ASCII case and `_` for `-`, because
    /// humans type these on command lines (`--expect NODE_ABORT`).
    pub fn parse(s: &str) -> Option<Self> {
        let norm: String = s
            .trim()
            .chars()
            .map(|c| {
                if c == '_' {
                    '-'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        Self::ALL.into_iter().find(|k| k.as_str() == norm)
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ViolationKind {
    type Err = ReportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| ReportError::UnknownKind(s.to_string()))
    }
}

/// One property violation observed in a seed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    /// The node it was observed on; `None` for cluster-wide checks (e.g. divergence).
    /// Always serialized (as `null` when absent) because it is part of the `--json` contract.
    #[serde(default)]
    pub node: Option<String>,
    /// Simulated time of detection.
    #[serde(default)]
    pub at_ms: u64,
    #[serde(default)]
    pub message: String,
}

/// One line of the simulated event trace.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// Simulated time; microseconds because many events share a millisecond.
    pub at_us: u64,
    pub node: String,
    pub kind: String,
    #[serde(default)]
    pub detail: String,
}

/// How a client operation ended, as the client saw it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum OpOutcome {
    /// Acknowledged: it took effect exactly once between invocation and completion.
    Ok,
    /// Definitely refused: it did not take effect.
    Failed,
    /// No answer (the client gave up, or the run ended first): it may take effect at any time
    /// after its invocation, or never.
    #[default]
    Unknown,
}

impl OpOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            OpOutcome::Ok => "ok",
            OpOutcome::Failed => "failed",
            OpOutcome::Unknown => "unknown",
        }
    }
}

/// One client operation and what its client saw: the history the durability and
/// linearizability checkers judge, for the timeline's client lanes. Only kept with a seed's full
/// trace (the replay and `--out` renderings), never in sweep reports.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientOp {
    /// The workload client that issued it; `None` for a one-off client (DDL).
    #[serde(default)]
    pub client: Option<u32>,
    /// The client's operation number (its session sequence).
    #[serde(default)]
    pub seq: u64,
    /// `put`, `get`, `delete`, `append`, `drop` or `create`.
    pub op: String,
    #[serde(default)]
    pub collection: String,
    /// The document, for document operations.
    #[serde(default)]
    pub key: Option<String>,
    /// What a put or append wrote, shown as the checkers' messages show it.
    #[serde(default)]
    pub value: Option<String>,
    /// Simulated µs, on the trace's clock.
    pub invoked_us: u64,
    /// When the client's call returned (acknowledged, refused or given up); `None`: still in
    /// flight when the run ended.
    #[serde(default)]
    pub completed_us: Option<u64>,
    #[serde(default)]
    pub outcome: OpOutcome,
    /// The entry the acknowledgement named.
    #[serde(default)]
    pub index: Option<u64>,
    #[serde(default)]
    pub term: Option<u64>,
    /// What an acknowledged read returned (`<absent>`: no document).
    #[serde(default)]
    pub read: Option<String>,
    /// The kinds of the violations whose findings name this operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub named_by: Vec<ViolationKind>,
}

/// Result of one seed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct SeedReport {
    pub seed: u64,
    /// 16 lowercase hex digits; equal hashes mean the replay reproduced the same execution.
    pub trace_hash: String,
    #[serde(default)]
    pub passed: bool,
    #[serde(default)]
    pub violations: Vec<Violation>,
    /// One-line shell command that replays this seed.
    #[serde(default)]
    pub replay: String,
    /// Simulated time covered.
    #[serde(default)]
    pub sim_ms: u64,
    /// Number of trace events.
    #[serde(default)]
    pub events: u64,
    /// Client ops acknowledged; a seed with 0 acked ops tested little.
    #[serde(default)]
    pub ops_acked: u64,
    /// Client ops acknowledged while faults ran (before the liveness phase): progress under
    /// faults, not only after they healed.
    #[serde(default)]
    pub ops_acked_fault_phase: u64,
    /// Reads acknowledged while faults ran; every one is checked by the linearizability checker.
    #[serde(default)]
    pub reads_acked_fault_phase: u64,
    /// Comparisons of a replica's visible state with the reference model.
    #[serde(default)]
    pub model_checks: u64,
    /// Datagrams the cluster put on the wire (each copy of a duplicated one counts): with
    /// `sim_ms`, the load the bench's simulator floor reproduces.
    #[serde(default)]
    pub datagrams: u64,
    #[serde(default)]
    pub wall_ms: u64,
    /// Last events, for the dossier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace_tail: Vec<TraceEvent>,
    /// The causal excerpt: the faults, crashes, leadership changes, truncations and failed
    /// storage steps up to the first violation, across nodes, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causal: Vec<TraceEvent>,
    /// Free-form notes, e.g. swarm choices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Named race windows this seed entered (coverage: a scenario that never enters its race
    /// cannot find the bug behind it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<String>,
}

impl SeedReport {
    /// Distinct violation kinds of this seed, sorted.
    pub fn kinds(&self) -> Vec<ViolationKind> {
        let mut kinds: Vec<ViolationKind> = self.violations.iter().map(|v| v.kind).collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }

    /// A seed counts as failed if it says so or if it carries any violation, so an
    /// inconsistent report can never hide a violation behind `passed: true`.
    pub fn failed(&self) -> bool {
        !self.passed || !self.violations.is_empty()
    }
}

/// A run of one scenario over many seeds. The JSON form is the CLI contract of `faultline run --json`:
/// it must contain at least `scenario`, `seeds_run`, `failures[]` each with `seed`, `trace_hash`, `replay`,
/// `violations[]` each with `kind`, `node`, `at_ms`, `message`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct RunReport {
    /// The report format's version ([`REPORT_SCHEMA_VERSION`]); 0 in reports written before it
    /// was recorded. Fields are only ever added; the version changes if one changes meaning.
    #[serde(default)]
    pub schema_version: u32,
    /// The faultline version that wrote the report (empty in older reports).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tool_version: String,
    pub scenario: String,
    #[serde(default)]
    pub scenario_file: Option<String>,
    /// Known-bug knobs that were on; a failure is expected when this is non-empty.
    #[serde(default)]
    pub bugs: Vec<String>,
    #[serde(default)]
    pub seeds_run: u64,
    #[serde(default)]
    pub seeds_passed: u64,
    #[serde(default)]
    pub first_seed: u64,
    #[serde(default)]
    pub wall_ms: u64,
    /// Failing seeds, in seed order.
    #[serde(default)]
    pub failures: Vec<SeedReport>,
    /// Sorted, deduplicated kinds over all failures.
    #[serde(default)]
    pub kinds_found: Vec<ViolationKind>,
    /// Race window name -> number of seeds (passing or failing) that entered it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub windows: std::collections::BTreeMap<String, u64>,
    /// Progress over every seed run, passing or failing (passing seeds are not stored, so this
    /// is what says whether they tested anything).
    #[serde(default)]
    pub progress: RunProgress,
    /// The shards of a sharded sweep (`run --shard I/N`) this report holds: one for a shard's
    /// run, several after `merge`; empty for an unsharded run. `merge` refuses a shard twice or
    /// shards of different sweeps, and names the missing ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<Shard>,
    /// True when a signal (SIGINT, SIGTERM) stopped the sweep before every seed it was asked
    /// for ran: the counts, windows and failures cover only the seeds `completed` names, and the
    /// report is no verdict on the rest. Absent from a sweep that ran to its end.
    #[serde(default, skip_serializing_if = "is_false")]
    pub interrupted: bool,
    /// With `interrupted`: the seeds that did complete, one entry per interrupted sweep (a
    /// `merge` keeps each interrupted shard's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub completed: Vec<Completed>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What an interrupted sweep completed: the first `seeds` of the `planned` seeds of its
/// sequence `first_seed`, `first_seed + step`, ... (seeds are handed out in that order and the
/// ones in flight when the signal came were finished, so the completed seeds are a prefix).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The signal that stopped it (`SIGINT`, `SIGTERM`).
    pub signal: String,
    /// The shard it was (`Shard::index`), for a sharded sweep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u64>,
    /// Seeds the sweep was asked to run.
    pub planned: u64,
    /// Seeds that completed.
    pub seeds: u64,
    pub first_seed: u64,
    /// 1, or the shard count of a sharded sweep.
    pub step: u64,
    /// The last seed that completed (`null` when none did).
    pub last_seed: Option<u64>,
    /// The first seed that did not run: where the sweep would resume.
    pub next_seed: Option<u64>,
}

/// The format version `RunReport::new` writes (`schema_version` in every JSON report).
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// One shard of a sweep: seed k of the sweep `first_seed..first_seed+seeds` runs in shard
/// `k mod count`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
    /// The whole sweep's first seed and seed count (all shards together).
    pub first_seed: u64,
    pub seeds: u64,
}

/// Run-level sums and minimum of the seeds' progress counters (`SeedReport`), kept by
/// [`RunReport::add`] and [`RunReport::merge`]; independent of the order seeds arrive in.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(default)]
pub struct RunProgress {
    /// Client ops acknowledged, summed over seeds.
    pub ops_acked: u64,
    /// Client ops acknowledged while faults ran, summed over seeds.
    pub ops_acked_fault_phase: u64,
    /// The fewest ops a single seed acknowledged while faults ran (0 with no seeds run).
    pub ops_acked_fault_phase_min: u64,
    /// The lowest seed with that fewest.
    pub ops_acked_fault_phase_min_seed: u64,
    /// Seeds that acknowledged no op while faults ran.
    pub seeds_without_fault_phase_acks: u64,
    /// Reads acknowledged (and checked) while faults ran, summed over seeds.
    pub reads_acked_fault_phase: u64,
    /// Comparisons of a replica's visible state with the reference model, summed over seeds.
    pub model_checks: u64,
}

impl RunProgress {
    /// Folds in `other`, which covers `other_seeds` seeds, into `self`, which covers `seeds`.
    fn absorb(&mut self, seeds: u64, other: &RunProgress, other_seeds: u64) {
        if other_seeds == 0 {
            return;
        }
        let other_min = (
            other.ops_acked_fault_phase_min,
            other.ops_acked_fault_phase_min_seed,
        );
        if seeds == 0
            || other_min
                < (
                    self.ops_acked_fault_phase_min,
                    self.ops_acked_fault_phase_min_seed,
                )
        {
            (
                self.ops_acked_fault_phase_min,
                self.ops_acked_fault_phase_min_seed,
            ) = other_min;
        }
        self.ops_acked = self.ops_acked.saturating_add(other.ops_acked);
        self.ops_acked_fault_phase = self
            .ops_acked_fault_phase
            .saturating_add(other.ops_acked_fault_phase);
        self.seeds_without_fault_phase_acks = self
            .seeds_without_fault_phase_acks
            .saturating_add(other.seeds_without_fault_phase_acks);
        self.reads_acked_fault_phase = self
            .reads_acked_fault_phase
            .saturating_add(other.reads_acked_fault_phase);
        self.model_checks = self.model_checks.saturating_add(other.model_checks);
    }

    /// One seed's counters.
    fn of_seed(s: &SeedReport) -> RunProgress {
        RunProgress {
            ops_acked: s.ops_acked,
            ops_acked_fault_phase: s.ops_acked_fault_phase,
            ops_acked_fault_phase_min: s.ops_acked_fault_phase,
            ops_acked_fault_phase_min_seed: s.seed,
            seeds_without_fault_phase_acks: u64::from(s.ops_acked_fault_phase == 0),
            reads_acked_fault_phase: s.reads_acked_fault_phase,
            model_checks: s.model_checks,
        }
    }
}

impl RunReport {
    /// An empty report for `scenario`; fill it with [`RunReport::add`].
    pub fn new(scenario: impl Into<String>) -> Self {
        RunReport {
            schema_version: REPORT_SCHEMA_VERSION,
            scenario: scenario.into(),
            ..Default::default()
        }
    }

    /// Records one seed's result, keeping counts, `first_seed`, seed order of `failures` and
    /// `kinds_found` consistent so callers can add results in any order (e.g. from workers).
    ///
    /// Passing seeds are only counted, not stored, to keep reports small. A seed with
    /// violations is stored as failed even if it claimed `passed`.
    pub fn add(&mut self, mut seed: SeedReport) {
        if self.seeds_run == 0 || seed.seed < self.first_seed {
            self.first_seed = seed.seed;
        }
        self.progress
            .absorb(self.seeds_run, &RunProgress::of_seed(&seed), 1);
        self.seeds_run = self.seeds_run.saturating_add(1);
        for w in &seed.windows {
            *self.windows.entry(w.clone()).or_default() += 1;
        }
        if !seed.failed() {
            self.seeds_passed = self.seeds_passed.saturating_add(1);
            return;
        }
        seed.passed = false;
        for kind in seed.kinds() {
            if let Err(pos) = self.kinds_found.binary_search(&kind) {
                self.kinds_found.insert(pos, kind);
            }
        }
        // Insert after any equal seeds so repeated seeds keep arrival order.
        let pos = self.failures.partition_point(|f| f.seed <= seed.seed);
        self.failures.insert(pos, seed);
    }

    /// Folds in the report of another shard of the same sweep (`faultline merge`). Shards run
    /// side by side, so the wall time is the longest of them. Refuses a different scenario or
    /// knob set, and a seed that failed in both (shards must not overlap).
    pub fn merge(&mut self, other: RunReport) -> Result<(), String> {
        if other.scenario != self.scenario || other.bugs != self.bugs {
            return Err(format!(
                "cannot merge `{}` [{}] into `{}` [{}]: different scenario or knobs",
                other.scenario,
                other.bugs.join(","),
                self.scenario,
                self.bugs.join(",")
            ));
        }
        // Shards: the same sweep, each shard once (a retried Kubernetes pod leaves two reports
        // of one shard; counting both would count its seeds twice).
        if self.shards.is_empty() != other.shards.is_empty() {
            return Err("cannot merge a shard's report with an unsharded one".into());
        }
        for s in &other.shards {
            if let Some(mine) = self.shards.first() {
                if (s.count, s.first_seed, s.seeds) != (mine.count, mine.first_seed, mine.seeds) {
                    return Err(format!(
                        "shard {}/{} of seeds {}..+{} is not from the sweep of the others \
                         (shards of {} over seeds {}..+{})",
                        s.index,
                        s.count,
                        s.first_seed,
                        s.seeds,
                        mine.count,
                        mine.first_seed,
                        mine.seeds
                    ));
                }
            }
            if self.shards.iter().any(|m| m.index == s.index) {
                return Err(format!("shard {}/{} appears twice", s.index, s.count));
            }
        }
        if let Some(dup) = other
            .failures
            .iter()
            .find(|f| self.failures.iter().any(|g| g.seed == f.seed))
        {
            return Err(format!("seed {} appears in two shards", dup.seed));
        }
        if other.seeds_run > 0 && (self.seeds_run == 0 || other.first_seed < self.first_seed) {
            self.first_seed = other.first_seed;
        }
        self.progress
            .absorb(self.seeds_run, &other.progress, other.seeds_run);
        self.seeds_run = self.seeds_run.saturating_add(other.seeds_run);
        self.seeds_passed = self.seeds_passed.saturating_add(other.seeds_passed);
        self.wall_ms = self.wall_ms.max(other.wall_ms);
        if self.scenario_file.is_none() {
            self.scenario_file = other.scenario_file;
        }
        for f in other.failures {
            let pos = self.failures.partition_point(|g| g.seed <= f.seed);
            self.failures.insert(pos, f);
        }
        for (w, n) in other.windows {
            *self.windows.entry(w).or_default() += n;
        }
        self.kinds_found.extend(other.kinds_found);
        self.kinds_found.sort();
        self.kinds_found.dedup();
        self.shards.extend(other.shards);
        self.shards.sort();
        self.interrupted |= other.interrupted;
        self.completed.extend(other.completed);
        self.completed.sort_by_key(|c| c.shard);
        Ok(())
    }

    /// The shard indexes of this report's sweep that it does not hold (empty when unsharded).
    pub fn missing_shards(&self) -> Vec<u64> {
        match self.shards.first() {
            None => vec![],
            Some(s) => (0..s.count)
                .filter(|i| !self.shards.iter().any(|m| m.index == *i))
                .collect(),
        }
    }

    /// Seeds the report's sweeps were asked to run: `seeds_run` plus those an interruption
    /// left unrun.
    pub fn seeds_planned(&self) -> u64 {
        self.completed.iter().fold(self.seeds_run, |n, c| {
            n.saturating_add(c.planned.saturating_sub(c.seeds))
        })
    }

    /// True when no seed failed. A run of zero seeds is vacuously passing; callers that need
    /// coverage should check `seeds_run` themselves.
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.seeds_passed >= self.seeds_run
    }

    /// Number of failed seeds, trusting whichever of the counters or the list is larger
    /// (deserialized reports may be inconsistent).
    pub fn seeds_failed(&self) -> u64 {
        let listed = u64::try_from(self.failures.len()).unwrap_or(u64::MAX);
        listed.max(self.seeds_run.saturating_sub(self.seeds_passed))
    }

    /// `kinds_found` merged with the kinds actually present in `failures`, sorted and deduped;
    /// used by renderers so a hand-edited report still renders truthfully.
    pub fn all_kinds(&self) -> Vec<ViolationKind> {
        let mut kinds = self.kinds_found.clone();
        kinds.extend(
            self.failures
                .iter()
                .flat_map(|f| f.violations.iter().map(|v| v.kind)),
        );
        kinds.sort();
        kinds.dedup();
        kinds
    }
}

/// `faultline ci`: one case per scenario expectation.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct CiCase {
    pub scenario: String,
    /// The expectation checked, e.g. `pass` or `fail:node-abort`.
    #[serde(default)]
    pub expectation: String,
    #[serde(default)]
    pub passed: bool,
    /// Why the case passed or failed, for humans.
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub seeds_run: u64,
    #[serde(default)]
    pub wall_ms: u64,
    /// Failing seeds observed (expected or not), with replay commands.
    #[serde(default)]
    pub failing_seeds: Vec<SeedReport>,
}

impl CiCase {
    /// Whether the expectation is "everything passes", so each failing seed is a bug on its own.
    pub fn expects_pass(&self) -> bool {
        self.expectation.trim().eq_ignore_ascii_case("pass")
    }
}

/// Result of `faultline ci`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct CiReport {
    #[serde(default)]
    pub cases: Vec<CiCase>,
    #[serde(default)]
    pub wall_ms: u64,
}

impl CiReport {
    /// True when every case met its expectation.
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|c| c.passed)
    }
}
