//! Parsing and validation: a scenario the harness cannot run as written is refused with the
//! file, line, column and field, never run into a harness crash or a silent pass.

use super::*;

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
        self.validate_system()?;
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

pub(super) fn too_long(ms: u64) -> String {
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

pub(super) fn check_failpoint(name: &str, per_mille: u32) -> Result<(), String> {
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

impl Scenario {
    /// What the named system can run: the shipped engine has no `link_latency`,
    /// `hold_flushes` or permanent kills (yet); a hosted system has none of the engine's
    /// storage, key or DDL actions, knobs, failpoints or engine-only checks, and must be
    /// registered in this binary.
    fn validate_system(&self) -> Result<(), (Vec<PathSeg>, String)> {
        use PathSeg::{Idx, Key};
        let Some(system) = &self.system else {
            for (i, item) in self.timeline.iter().enumerate() {
                let hosted_only = matches!(
                    item,
                    TimelineItem::LinkLatency { .. }
                        | TimelineItem::HoldFlushes { .. }
                        | TimelineItem::Kill {
                            permanent: true,
                            ..
                        }
                );
                if hosted_only {
                    return Err((
                        vec![Key("timeline"), Idx(i)],
                        format!(
                            "`{}`{} is available for hosted systems only, not the shipped engine",
                            item.action(),
                            if item.action() == "kill" {
                                " with `permanent`"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
            }
            if let Some(c) = &self.chaos {
                if let Some(i) = c
                    .faults
                    .iter()
                    .position(|f| f == "link_latency" || f == "hold_flushes")
                {
                    return Err((
                        vec![Key("chaos"), Key("faults"), Idx(i)],
                        format!("`{}` is available for hosted systems only", c.faults[i]),
                    ));
                }
            }
            return Ok(());
        };
        if crate::sut::find(system).is_none() {
            let have = crate::sut::registered();
            return Err((
                vec![Key("system")],
                format!(
                    "system `{system}` is not built into this binary ({}); hosted systems run \
                     through their own build, e.g. `systems/openraft/run.sh VERSION run SCENARIO`",
                    if have.is_empty() {
                        "it has only the shipped engine".to_string()
                    } else {
                        format!("it has: {}", have.join(", "))
                    }
                ),
            ));
        }
        let refuse = |path: Vec<PathSeg>, what: &str| {
            Err((
                path,
                format!("{what} is not available for hosted system `{system}`"),
            ))
        };
        if !self.known_bugs.is_empty() {
            return refuse(vec![Key("known_bugs")], "an engine knob");
        }
        if !self.failpoints.is_empty() {
            return refuse(vec![Key("failpoints")], "an engine failpoint");
        }
        if self.checkpoint_interval_ms.is_some() {
            return refuse(
                vec![Key("checkpoint_interval_ms")],
                "the engine's checkpoints",
            );
        }
        if self.drain_workers.is_some() {
            return refuse(vec![Key("drain_workers")], "the engine's step-up drain");
        }
        for (i, c) in self.checks.iter().enumerate() {
            if matches!(c, Check::Validate | Check::Model) {
                return refuse(
                    vec![Key("checks"), Idx(i)],
                    &format!(
                        "the engine-only check `{}` (hosted systems take raft, durability, \
                         linearizability, dbhash, liveness; list `checks` explicitly)",
                        serde_json::to_value(c)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default()
                    ),
                );
            }
        }
        if self.workload.mix.is_some_and(|m| m.appends_per_mille > 0) {
            return refuse(
                vec![Key("workload"), Key("mix"), Key("appends_per_mille")],
                "list-append",
            );
        }
        if let Some(c) = &self.chaos {
            if c.swarm_world {
                return refuse(
                    vec![Key("chaos"), Key("swarm_world")],
                    "a swarm-drawn engine world",
                );
            }
            if let Some(i) = c
                .faults
                .iter()
                .position(|f| !HOSTED_CHAOS_FAULTS.contains(&f.as_str()))
            {
                return Err((
                    vec![Key("chaos"), Key("faults"), Idx(i)],
                    format!(
                        "fault `{}` is not available for hosted system `{system}` (available: {})",
                        c.faults[i],
                        HOSTED_CHAOS_FAULTS.join(", ")
                    ),
                ));
            }
        }
        for (i, item) in self.timeline.iter().enumerate() {
            if !HOSTED_ACTIONS.contains(&item.action()) {
                return Err((
                    vec![Key("timeline"), Idx(i), Key("action")],
                    format!(
                        "`{}` is not available for hosted system `{system}` (available: {})",
                        item.action(),
                        HOSTED_ACTIONS.join(", ")
                    ),
                ));
            }
            for (field, sel) in item.selectors() {
                if matches!(sel, Selector::PageService | Selector::Kms) {
                    return refuse(
                        vec![Key("timeline"), Idx(i), Key(field)],
                        &format!("`{sel}`"),
                    );
                }
            }
            if let TimelineItem::LinkLatency {
                latency_ms: [a, b], ..
            } = item
            {
                if *a == 0 || a > b || *b > 60_000 {
                    return Err((
                        vec![Key("timeline"), Idx(i), Key("latency_ms")],
                        "need 1 <= min <= max <= 60000".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}
