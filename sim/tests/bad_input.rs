//! Bad input never crashes faultline: the scenario parser under a deterministic fuzz loop, and
//! the binary on bad scenarios, seeds, filters, output directories and closed pipes. Every
//! rejection is exit 2 with a message naming what was wrong and where.

mod common;

use common::{faultline, stderr, stdout, tmpdir};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use sim::scenario::Scenario;

/// Exit 2 with one `faultline: error:` line containing each of `needles`, and no panic.
fn assert_usage_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}{}", stdout(o));
    assert!(err.starts_with("faultline: error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

fn shipped_scenarios() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    assert!(v.len() >= 20, "the shipped scenarios");
    v
}

/// Characters people paste from documents and editors: no-break space, curly quotes, a dash,
/// a byte-order mark, a line separator, accented letters, an emoji, the replacement character.
const PASTED: [char; 10] = [
    '\u{a0}', '\u{201c}', '\u{201d}', '\u{2019}', '\u{2014}', '\u{feff}', '\u{2028}', 'é', '😀',
    '\u{fffd}',
];

/// A char boundary of `s` near `at` (at or before it).
fn boundary(s: &str, mut at: usize) -> usize {
    at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// One textual mutation: a flipped bit, a pasted character, a truncation or a deleted span.
fn mutate_text(text: &mut String, rng: &mut ChaCha8Rng) {
    let at = boundary(text, rng.gen_range(0..=text.len()));
    match rng.gen_range(0..4) {
        0 if !text.is_empty() => {
            let mut bytes = std::mem::take(text).into_bytes();
            let i = rng.gen_range(0..bytes.len());
            bytes[i] ^= 1 << rng.gen_range(0..8);
            *text = String::from_utf8_lossy(&bytes).into_owned();
        }
        1 => text.insert(at, PASTED[rng.gen_range(0..PASTED.len())]),
        2 => text.truncate(at),
        _ => {
            let end = boundary(text, at + rng.gen_range(1..40));
            text.replace_range(at..end, "");
        }
    }
}

/// A value of another type, or an extreme number.
fn other_value(rng: &mut ChaCha8Rng) -> Value {
    match rng.gen_range(0..10) {
        0 => Value::Null,
        1 => Value::Bool(true),
        2 => "n1".into(),
        3 => "\u{201c}leader\u{201d}".into(),
        4 => Value::from(u64::MAX),
        5 => Value::from(-1),
        6 => Value::from(0),
        7 => Value::from(1e300),
        8 => serde_json::json!([1]),
        _ => serde_json::json!({ "at_ms": 1 }),
    }
}

/// Sentinel key a duplicated field is written under, then renamed to the field it copies.
const DUP: &str = "\u{1}dup";

/// One structural mutation at a random node of the tree: a field removed, duplicated or given
/// another type. Returns the key to substitute for `DUP` after writing, if one was duplicated.
fn mutate_tree(v: &mut Value, rng: &mut ChaCha8Rng) -> Option<String> {
    // Walk down a random path, stopping at random.
    let mut node = v;
    loop {
        let n = match &*node {
            Value::Object(m) => m.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        };
        if n == 0 || rng.gen_range(0..3) == 0 {
            break;
        }
        let i = rng.gen_range(0..n);
        node = match node {
            Value::Object(m) => m.values_mut().nth(i).unwrap(),
            Value::Array(a) => &mut a[i],
            _ => unreachable!(),
        };
    }
    match node {
        Value::Object(m) if !m.is_empty() => {
            let key = m.keys().nth(rng.gen_range(0..m.len())).unwrap().clone();
            match rng.gen_range(0..3) {
                0 => {
                    m.remove(&key);
                }
                1 => {
                    let copy = m[&key].clone();
                    m.insert(DUP.into(), copy);
                    return Some(key);
                }
                _ => m[&key] = other_value(rng),
            }
        }
        Value::Array(a) if !a.is_empty() && rng.gen_bool(0.5) => {
            a.remove(rng.gen_range(0..a.len()));
        }
        other => *other = other_value(rng),
    }
    None
}

/// Input `i` of the fuzz loop: a shipped scenario with one to three mutations, textual or
/// structural, from a stream seeded by `i` alone (any failing input reproduces by its index).
fn fuzz_input(i: u64, files: &[(String, String)], trees: &[Value]) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(i);
    let f = rng.gen_range(0..files.len());
    // Textual mutations only (at least one), or a structural one with up to two textual.
    let (mut text, textual) = if rng.gen_bool(0.5) {
        (files[f].1.clone(), rng.gen_range(1..=3))
    } else {
        let mut tree = trees[f].clone();
        let dup = mutate_tree(&mut tree, &mut rng);
        let text = serde_json::to_string_pretty(&tree).unwrap();
        let text = match dup {
            Some(key) => text.replace(
                &serde_json::to_string(DUP).unwrap(),
                &serde_json::to_string(&key).unwrap(),
            ),
            None => text,
        };
        (text, rng.gen_range(0..=2))
    };
    for _ in 0..textual {
        mutate_text(&mut text, &mut rng);
    }
    text
}

/// Inputs the fuzz loop runs (two threads, half each): about 5 s of CPU per thread in the dev
/// profile, 16 s wall on this 2-core machine under a full build's load.
const FUZZ_INPUTS: u64 = 200_000;

/// Checks one input: the parser returns (never panics); a rejection names the file, a line and
/// column inside the text and, when the text is a JSON object, the field's path; an accepted
/// scenario writes back to JSON that parses to the same scenario (what `shrink` relies on).
fn check_input(i: u64, text: &str) -> Result<bool, String> {
    let parsed = std::panic::catch_unwind(|| Scenario::parse(text, "fuzz.json"))
        .map_err(|_| format!("input {i} panicked the parser:\n{text}"))?;
    match parsed {
        Ok(s) => {
            let back = serde_json::to_string(&s).unwrap();
            match Scenario::parse(&back, "back.json") {
                Ok(again) if again == s => Ok(true),
                other => Err(format!("input {i} does not round-trip: {other:?}\n{text}")),
            }
        }
        Err(e) => {
            let lines = text.split('\n').count();
            let shown = e.to_string();
            let ok = e.line >= 1
                && e.line <= lines
                && e.column >= 1
                && shown.starts_with(&format!("fuzz.json:{}:{}: ", e.line, e.column));
            let unnamed = || {
                e.field.is_none()
                    && serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object())
            };
            if !ok || unnamed() {
                return Err(format!("input {i}: bad error `{shown}` for:\n{text}"));
            }
            Ok(false)
        }
    }
}

#[test]
fn fuzzed_scenarios_are_rejected_with_a_position_never_a_panic() {
    let files = shipped_scenarios();
    let trees: Vec<Value> = files
        .iter()
        .map(|(_, t)| serde_json::from_str(t).unwrap())
        .collect();
    let start = std::time::Instant::now();
    let accepted: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2u64)
            .map(|w| {
                let (files, trees) = (&files, &trees);
                scope.spawn(move || {
                    let mut accepted = 0;
                    for i in (w..FUZZ_INPUTS).step_by(2) {
                        let text = fuzz_input(i, files, trees);
                        match check_input(i, &text) {
                            Ok(ok) => accepted += u64::from(ok),
                            Err(msg) => panic!("{msg}"),
                        }
                    }
                    accepted
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    eprintln!(
        "fuzz: {FUZZ_INPUTS} inputs, {accepted} accepted, in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    // Both ways are exercised: most mutations are refused, some survive.
    assert!(
        accepted > FUZZ_INPUTS / 50 && accepted < FUZZ_INPUTS / 2,
        "{accepted}"
    );
}

/// A scenario file in `dir`.
fn write_scenario(dir: &Path, file: &str, text: &str) -> String {
    let p = dir.join(file);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn pasted_characters_and_bad_items_are_exit_2_with_path_and_line() {
    let d = tmpdir("items");
    let nbsp = write_scenario(
        &d,
        "nbsp.json",
        "{\n  \"name\": \"nbsp\",\n  \"duration_ms\": 5000\u{a0}\n}\n",
    );
    assert_usage_error(&faultline(&["run", &nbsp]), &["nbsp.json:3:22: "]);
    let bom = write_scenario(
        &d,
        "bom.json",
        "\u{feff}{ \"name\": \"bom\", \"duration_ms\": 200, \"workload\": { \"clients\": 0 } }",
    );
    let o = faultline(&["run", &bom]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let items: Vec<String> = (1..=6)
        .map(|i| format!("    {{ \"at_ms\": {i}00, \"action\": \"partition\", \"nodes\": \"leader\", \"for_ms\": 50 }},\n"))
        .collect();
    let seventh = write_scenario(
        &d,
        "seventh.json",
        &format!(
            "{{\n  \"name\": \"seventh\",\n  \"duration_ms\": 5000,\n  \"timeline\": [\n{}    {{ \"at_ms\": 700, \"action\": \"partition\", \"nodes\": \"leader\" }}\n  ]\n}}\n",
            items.concat()
        ),
    );
    assert_usage_error(
        &faultline(&["run", &seventh]),
        &["seventh.json:11:5: field `timeline[6].for_ms`: missing field `for_ms`"],
    );
}

#[test]
fn one_bad_file_does_not_break_list_or_ci_for_the_others() {
    let d = tmpdir("folder");
    let mut steady: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/steady.json"),
        )
        .unwrap(),
    )
    .unwrap();
    steady["duration_ms"] = 2000.into();
    steady["expect"] = serde_json::json!({ "verdict": "pass", "ci_seeds": 1 });
    write_scenario(
        &d,
        "steady.json",
        &serde_json::to_string_pretty(&steady).unwrap(),
    );
    write_scenario(
        &d,
        "pasted.json",
        "{ \"name\": \"pasted\", \"duration_ms\": 100\u{a0}}",
    );
    let env = |cmd: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args(cmd)
            .env("FAULTLINE_SCENARIOS", &d)
            .output()
            .unwrap()
    };
    let o = env(&["list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("pasted") && out.contains("(invalid: ") && out.contains("pasted.json:1:39:"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("steady ") && !l.contains("invalid")),
        "{out}"
    );
    // `ci` runs the good scenario, fails the bad one's case, and exits 2: bad input.
    let o = env(&["ci", "--jobs", "1"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{}", stderr(&o));
    assert!(out.contains("ok   steady: all 1 seeds passed"), "{out}");
    assert!(
        out.contains("FAIL pasted: invalid scenario: ") && out.contains("pasted.json:1:39:"),
        "{out}"
    );
    assert!(stderr(&o).contains("faultline: error: ") && !stderr(&o).contains("panicked"));
    // A filter that matches nothing is a mistake, not a pass.
    assert_usage_error(
        &env(&["ci", "--filter", "stedy"]),
        &["--filter stedy: no named scenario"],
    );
}

#[test]
fn scenarios_the_harness_cannot_run_are_bad_input_not_engine_crashes() {
    let d = tmpdir("runnable");
    let cases = [
        (
            "minority.json",
            r#"{ "name": "minority", "replicas": 2, "duration_ms": 2000,
  "timeline": [ { "at_ms": 500, "action": "partition", "nodes": "minority", "for_ms": 100 } ] }"#,
            "minority.json:2:65: field `timeline[0].nodes`: `minority` needs at least 3 replicas",
        ),
        (
            "split.json",
            r#"{ "name": "split", "replicas": 1, "duration_ms": 2000,
  "chaos": { "faults": ["split"], "mean_interval_ms": 100 } }"#,
            "split.json:2:25: field `chaos.faults[0]`: `split` needs at least 3 replicas",
        ),
        (
            "at-end.json",
            r#"{ "name": "at-end", "duration_ms": 2000,
  "timeline": [ { "at_ms": 2000, "action": "kill", "nodes": "all" } ] }"#,
            "at-end.json:2:28: field `timeline[0].at_ms`: 2000 is not before duration_ms 2000",
        ),
        (
            "forever.json",
            r#"{ "name": "forever", "duration_ms": 2000,
  "timeline": [ { "at_ms": 5, "action": "pause", "nodes": "n1", "for_ms": 18446744073709551615 } ] }"#,
            "forever.json:2:75: field `timeline[0].for_ms`: 18446744073709551615 ms: must be at most 3600000",
        ),
        (
            "unchecked.json",
            r#"{ "name": "unchecked", "duration_ms": 2000, "checks": [] }"#,
            "unchecked.json:1:55: field `checks`: names no check",
        ),
        (
            "knob.json",
            r#"{ "name": "knob", "duration_ms": 2000, "known_bugs": ["bytes-total-leek"] }"#,
            "did you mean bytes-total-leak?",
        ),
    ];
    for (file, text, message) in cases {
        let p = write_scenario(&d, file, text);
        assert_usage_error(&faultline(&["run", &p]), &[message]);
    }
}

#[test]
fn seed_ranges_past_u64_are_usage_errors_and_big_ones_are_streamed() {
    assert_usage_error(
        &faultline(&[
            "run",
            "steady",
            "--seed",
            "18446744073709551615",
            "--seeds",
            "1",
        ]),
        &["overflows u64"],
    );
    assert_usage_error(
        &faultline(&[
            "run",
            "steady",
            "--seed",
            "18446744073709551000",
            "--seeds",
            "1000",
        ]),
        &["overflows u64"],
    );
    assert_usage_error(
        &faultline(&[
            "hunt",
            "steady",
            "--bug",
            "volatile-raft-term",
            "--max-seeds",
            "18446744073709551615",
        ]),
        &["--max-seeds 18446744073709551615", "overflows u64"],
    );
    assert_usage_error(
        &faultline(&[
            "hunt",
            "steady",
            "--bug",
            "volatile-raft-term",
            "--max-seeds",
            "0",
        ]),
        &["--max-seeds must be at least 1"],
    );
    assert_usage_error(
        &faultline(&["ci", "--seeds", "18446744073709551615"]),
        &["overflows u64"],
    );
    // A billion seeds (8 GB as a list) run under a 3 GB address-space limit: the seeds are
    // computed one by one. Seed 1 fails, so --fail-fast and hunt stop there.
    let limited = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
        cmd.args(args)
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
        // SAFETY: setrlimit is async-signal-safe; the child only calls it before exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                let lim = libc::rlimit {
                    rlim_cur: 3 << 30,
                    rlim_max: 3 << 30,
                };
                libc::setrlimit(libc::RLIMIT_AS, &lim);
                Ok(())
            });
        }
        cmd.output().unwrap()
    };
    let scn = "simultaneous-restart-volatile-term";
    let o = limited(&[
        "run",
        scn,
        "--seeds",
        "1000000000",
        "--fail-fast",
        "--jobs",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("FAIL: 1 of 1 seeds failed"),
        "{}",
        stdout(&o)
    );
    let o = limited(&[
        "hunt",
        "simultaneous-restart",
        "--bug",
        "volatile-raft-term",
        "--max-seeds",
        "1000000000",
        "--jobs",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("found after 1 seed(s)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn misspelled_names_get_a_suggestion() {
    assert_usage_error(&faultline(&["run", "stedy"]), &["did you mean steady?"]);
    assert_usage_error(
        &faultline(&["run", "kek-rotaton", "--seeds", "2"]),
        &["did you mean kek-rotation?"],
    );
    assert_usage_error(
        &faultline(&["run", "steady", "--bug", "volatile-raft-trem"]),
        &["did you mean volatile-raft-term?"],
    );
    let o = faultline(&["run", "no-such-thing-at-all"]);
    assert_usage_error(&o, &["no such scenario"]);
    assert!(
        !stderr(&o).contains("did you mean"),
        "nothing close: {}",
        stderr(&o)
    );
}

#[test]
fn out_dir_is_checked_before_the_sweep() {
    let d = tmpdir("out");
    let file = d.join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = file.join("reports");
    let o = faultline(&[
        "run",
        "steady",
        "--seeds",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_usage_error(&o, &["--out ", "a-file/reports"]);
    assert!(stdout(&o).is_empty(), "nothing ran: {}", stdout(&o));
}

/// Runs faultline with stdout on a pipe whose reader is already gone.
fn to_closed_pipe(args: &[&str]) -> Output {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe() writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned here, once each.
    let (reader, writer) = unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    for args in [
        &["list"][..],
        &["run", "steady", "--seeds", "3", "--trace"],
        &["run", "steady", "--json"],
    ] {
        let o = to_closed_pipe(args);
        let err = stderr(&o);
        assert!(
            o.status.code() == Some(0) || o.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?} {err}",
            o.status
        );
        assert!(
            !err.contains("Broken pipe") && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
}
