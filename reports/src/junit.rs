//! JUnit XML (the common Jenkins/Surefire schema) for `faultline ci`, so CI systems show each
//! scenario's expectation as its own test, under a name that stays the same from run to run.

use std::fmt::Write as _;

use crate::text::{join_kinds, secs_ms, violation_line};
use crate::{CiCase, CiReport, SeedReport};

/// Renders `report` as a JUnit XML document.
///
/// One `<testcase>` per CI case, named by its scenario alone: a CI dashboard tracks a test by
/// name, so the name must not depend on which seeds failed this time or on the wording of the
/// expectation (both are in the body). A failed case carries a `<failure type="expectation">`
/// whose body states the expectation and lists the failing seeds with replay commands and, for
/// a `pass` expectation, each failing seed's violations. The `tests`/`failures` attributes are
/// computed from the elements actually emitted.
pub fn render(report: &CiReport) -> String {
    let cases: Vec<Case> = report.cases.iter().flat_map(cases_for).collect();
    let tests = cases.len();
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let time = secs(report.wall_ms);

    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"faultline\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{time}\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"faultline-ci\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{time}\">"
    );
    for case in &cases {
        let _ = write!(
            out,
            "    <testcase classname=\"faultline.ci\" name=\"{}\" time=\"{}\"",
            escape_attr(&case.name),
            secs(case.wall_ms)
        );
        if case.failure.is_none() && case.system_out.is_none() {
            out.push_str("/>\n");
            continue;
        }
        out.push_str(">\n");
        if let Some(f) = &case.failure {
            let _ = writeln!(
                out,
                "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                escape_attr(&f.message),
                escape_attr(f.kind),
                escape_text(&f.body)
            );
        }
        if let Some(s) = &case.system_out {
            let _ = writeln!(out, "      <system-out>{}</system-out>", escape_text(s));
        }
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n");
    out.push_str("</testsuites>\n");
    out
}

struct Case {
    name: String,
    wall_ms: u64,
    failure: Option<Failure>,
    system_out: Option<String>,
}

struct Failure {
    message: String,
    kind: &'static str,
    body: String,
}

fn cases_for(case: &CiCase) -> Vec<Case> {
    let mut cases = Vec::with_capacity(1 + case.failing_seeds.len());
    let seeds_text = seeds_listing(&case.failing_seeds);

    let (failure, system_out) = if case.passed {
        // Expected failures found: keep the reproducers visible without failing the test.
        let out = (!case.failing_seeds.is_empty()).then(|| seeds_text.clone());
        (None, out)
    } else {
        let message = if case.message.trim().is_empty() {
            "expectation not met".to_string()
        } else {
            case.message.clone()
        };
        let mut body = format!(
            "{message}\nexpectation: {}\nseeds run: {}\n",
            case.expectation, case.seeds_run
        );
        body.push_str(&seeds_text);
        if case.expects_pass() {
            for seed in &case.failing_seeds {
                body.push('\n');
                body.push_str(&seed_detail(seed));
            }
        }
        (
            Some(Failure {
                message,
                kind: "expectation",
                body,
            }),
            None,
        )
    };
    let system_out = match system_out {
        Some(seeds) => Some(format!("expectation: {}\n{seeds}", case.expectation)),
        None if failure.is_none() => Some(format!("expectation: {}\n", case.expectation)),
        None => None,
    };
    cases.push(Case {
        name: case.scenario.clone(),
        wall_ms: case.wall_ms,
        failure,
        system_out,
    });

    cases
}

fn seeds_listing(seeds: &[SeedReport]) -> String {
    if seeds.is_empty() {
        return "failing seeds: none\n".to_string();
    }
    let mut s = format!("failing seeds ({}):\n", seeds.len());
    for seed in seeds {
        let kinds = seed.kinds();
        let kinds = if kinds.is_empty() {
            "no violations recorded".to_string()
        } else {
            join_kinds(&kinds)
        };
        let _ = writeln!(
            s,
            "  seed {} [{}] trace {}\n    replay: {}",
            seed.seed, kinds, seed.trace_hash, seed.replay
        );
    }
    s
}

fn seed_detail(seed: &SeedReport) -> String {
    let mut s = format!(
        "seed {} trace {} (simulated {}, {} events, {} ops acked)\n",
        seed.seed,
        seed.trace_hash,
        secs_ms(seed.sim_ms),
        seed.events,
        seed.ops_acked
    );
    for v in &seed.violations {
        let _ = writeln!(s, "  {}", violation_line(v));
    }
    let _ = writeln!(s, "replay: {}", seed.replay);
    s
}

/// Seconds with 3 decimals, without the unit suffix JUnit does not allow.
fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// XML 1.0 only allows TAB, LF, CR and chars >= 0x20 except U+FFFE/U+FFFF (surrogates cannot
/// occur in a Rust `str`); anything else makes the whole document unparseable, so drop it.
fn xml_allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Escapes an attribute value. Whitespace control chars are written as character references
/// because parsers normalize literal ones in attributes to spaces, losing line breaks.
pub(crate) fn escape_attr(s: &str) -> String {
    escape(s, true)
}

/// Escapes element text. CR is a character reference so it survives line-ending normalization.
pub(crate) fn escape_text(s: &str) -> String {
    escape(s, false)
}

fn escape(s: &str, attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|&c| xml_allowed(c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attr => out.push_str("&#10;"),
            '\t' if attr => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}
