//! Plain-text renderers for the terminal.
//!
//! Messages come from the system under test and may contain newlines or escape sequences;
//! they are flattened / stripped so a report cannot garble the terminal or its own layout.

use std::fmt::Write as _;

use crate::{RunReport, SeedReport, TraceEvent, Violation, ViolationKind};

/// Failures shown in detail by [`run_summary`]; the rest are listed by seed only.
pub const MAX_DETAILED_FAILURES: usize = 10;
/// Violations shown per seed by [`run_summary`]; the dossier shows all.
pub const MAX_VIOLATIONS_PER_SEED: usize = 5;
/// Seeds listed in the "... and K more" line before it is cut short.
const MAX_LISTED_SEEDS: usize = 20;

/// Compact terminal summary of a run: header, failing seeds with violations and replay
/// commands, and a final `PASS:`/`FAIL:` verdict line that scripts may grep for.
pub fn run_summary(report: &RunReport) -> String {
    let mut out = String::new();

    let _ = write!(out, "scenario {}", one_line(&report.scenario));
    if let Some(file) = &report.scenario_file {
        let _ = write!(out, " ({})", one_line(file));
    }
    let bugs = if report.bugs.is_empty() {
        "none".to_string()
    } else {
        one_line(&report.bugs.join(", "))
    };
    let _ = writeln!(
        out,
        ": {} seeds run, {} passed (first seed {}), bugs: {}, wall {}",
        report.seeds_run,
        report.seeds_passed,
        report.first_seed,
        bugs,
        secs_ms(report.wall_ms)
    );

    if !report.failures.is_empty() {
        out.push('\n');
    }
    for failure in report.failures.iter().take(MAX_DETAILED_FAILURES) {
        let _ = writeln!(
            out,
            "seed {}  trace {}",
            failure.seed,
            one_line(&failure.trace_hash)
        );
        if failure.violations.is_empty() {
            out.push_str("  (no violations recorded)\n");
        }
        for v in failure.violations.iter().take(MAX_VIOLATIONS_PER_SEED) {
            let _ = writeln!(out, "  {}", violation_line(v));
        }
        let hidden = failure
            .violations
            .len()
            .saturating_sub(MAX_VIOLATIONS_PER_SEED);
        if hidden > 0 {
            let _ = writeln!(out, "  ... and {hidden} more violations");
        }
        let _ = writeln!(out, "  replay: {}", replay_or_placeholder(&failure.replay));
    }
    let rest: Vec<&SeedReport> = report.failures.iter().skip(MAX_DETAILED_FAILURES).collect();
    if !rest.is_empty() {
        let mut seeds: Vec<String> = rest
            .iter()
            .take(MAX_LISTED_SEEDS)
            .map(|f| f.seed.to_string())
            .collect();
        if rest.len() > MAX_LISTED_SEEDS {
            seeds.push("...".to_string());
        }
        let _ = writeln!(
            out,
            "... and {} more failing seeds: {}",
            rest.len(),
            seeds.join(", ")
        );
    }

    out.push('\n');
    out.push_str(&verdict(report));
    out.push('\n');
    out
}

/// The last line of [`run_summary`]: `PASS: N/N seeds` or
/// `FAIL: K of N seeds failed (kinds: a, b)`.
///
/// An interrupted sweep never reads as a pass: `INTERRUPTED (SIGINT) after K of N seeds: ...`.
pub fn verdict(report: &RunReport) -> String {
    if report.interrupted {
        let signals: Vec<&str> =
            report
                .completed
                .iter()
                .map(|c| c.signal.as_str())
                .fold(Vec::new(), |mut v, s| {
                    if !v.contains(&s) {
                        v.push(s);
                    }
                    v
                });
        let planned = report.seeds_planned();
        let found = if report.failures.is_empty() && report.seeds_failed() == 0 {
            "none of them failed".to_string()
        } else {
            format!(
                "{} failed (kinds: {})",
                report.seeds_failed(),
                join_kinds(&report.all_kinds())
            )
        };
        return format!(
            "INTERRUPTED ({}) after {} of {planned} seeds: {found}; the other {} did not run",
            if signals.is_empty() {
                "signal".to_string()
            } else {
                signals.join(", ")
            },
            report.seeds_run,
            planned.saturating_sub(report.seeds_run)
        );
    }
    if report.passed() {
        format!("PASS: {}/{} seeds", report.seeds_run, report.seeds_run)
    } else {
        let kinds = report.all_kinds();
        let kinds = if kinds.is_empty() {
            "none recorded".to_string()
        } else {
            join_kinds(&kinds)
        };
        format!(
            "FAIL: {} of {} seeds failed (kinds: {})",
            report.seeds_failed(),
            report.seeds_run,
            kinds
        )
    }
}

/// Detailed view of one seed for debugging: metrics, every violation with its full message,
/// notes, the trace tail and the replay command.
pub fn seed_dossier(seed: &SeedReport) -> String {
    let mut out = String::new();
    let status = if seed.failed() { "FAILED" } else { "passed" };
    let _ = writeln!(
        out,
        "seed {}  {}  trace {}",
        seed.seed,
        status,
        one_line(&seed.trace_hash)
    );
    let _ = writeln!(
        out,
        "simulated {}, {} events, {} ops acked, wall {}",
        secs_ms(seed.sim_ms),
        seed.events,
        seed.ops_acked,
        secs_ms(seed.wall_ms)
    );

    if !seed.violations.is_empty() {
        let _ = writeln!(out, "\nviolations ({}):", seed.violations.len());
        for v in &seed.violations {
            let mut lines = v.message.lines();
            let first = lines.next().unwrap_or("");
            let _ = writeln!(
                out,
                "  [{}] {} @ {}: {}",
                v.kind,
                node_or_dash(v.node.as_deref()),
                secs_ms(v.at_ms),
                one_line(first)
            );
            // Multi-line messages (e.g. diffs) keep their shape, indented under the violation.
            for line in lines {
                let _ = writeln!(out, "      {}", one_line(line).trim_end());
            }
        }
    }

    if !seed.notes.is_empty() {
        out.push_str("\nnotes:\n");
        for note in &seed.notes {
            let _ = writeln!(out, "  - {}", one_line(note));
        }
    }

    if !seed.causal.is_empty() {
        let _ = writeln!(
            out,
            "\ncausal excerpt (faults, crashes, leaders, truncations, failed storage steps up to the first violation):"
        );
        for e in &seed.causal {
            let _ = writeln!(
                out,
                "  {:>12} {:<10} {:<17} {}",
                secs_us(e.at_us),
                one_line(&e.node),
                one_line(&e.kind),
                one_line(&e.detail)
            );
        }
    }

    if !seed.trace_tail.is_empty() {
        let _ = writeln!(out, "\ntrace tail (last {} events):", seed.trace_tail.len());
        let rows: Vec<(String, String, String, String)> = seed
            .trace_tail
            .iter()
            .map(|e| {
                (
                    secs_us(e.at_us),
                    one_line(&e.node),
                    one_line(&e.kind),
                    one_line(&e.detail),
                )
            })
            .collect();
        let w_time = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
        let w_node = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
        let w_kind = rows.iter().map(|r| r.2.chars().count()).max().unwrap_or(0);
        for (time, node, kind, detail) in rows {
            let line = format!("  {time:>w_time$} {node:<w_node$}  {kind:<w_kind$}  {detail}");
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }

    let _ = writeln!(out, "\nreplay:\n  {}", replay_or_placeholder(&seed.replay));
    out
}

/// One line per trace event: `   10.191796s n1         leader     term 2`. The same lines
/// `run --trace` prints and `run --out` writes to `*.trace.txt`; control characters are
/// flattened so one event is always one line (grep-able, diff-able).
pub fn trace_lines<'a>(events: impl IntoIterator<Item = &'a TraceEvent>) -> String {
    let mut out = String::new();
    for e in events {
        let line = format!(
            "{:>13} {:<10} {:<10} {}",
            secs_us(e.at_us),
            one_line(&e.node),
            one_line(&e.kind),
            one_line(&e.detail)
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `[kind] node @ 12.345s: message`, the one-line form used in summaries and JUnit bodies.
pub fn violation_line(v: &Violation) -> String {
    format!(
        "[{}] {} @ {}: {}",
        v.kind,
        node_or_dash(v.node.as_deref()),
        secs_ms(v.at_ms),
        one_line(&v.message)
    )
}

/// `a, b, c`.
pub fn join_kinds(kinds: &[ViolationKind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Milliseconds as `12.345s`; integer arithmetic so it is exact for any `u64`.
pub fn secs_ms(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

/// Microseconds as `12.345678s`.
pub fn secs_us(us: u64) -> String {
    format!("{}.{:06}s", us / 1_000_000, us % 1_000_000)
}

fn node_or_dash(node: Option<&str>) -> String {
    match node {
        Some(n) if !n.trim().is_empty() => one_line(n),
        _ => "-".to_string(),
    }
}

fn replay_or_placeholder(replay: &str) -> String {
    if replay.trim().is_empty() {
        "(not available)".to_string()
    } else {
        one_line(replay)
    }
}

/// Replaces control characters (newlines, tabs, ESC, ...) with spaces so a value stays on one
/// line and cannot inject terminal escape sequences.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
