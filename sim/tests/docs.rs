//! The documentation's examples are tests, so a README line that stops working fails
//! `cargo test` (issue 17).
//!
//! - Every ```` ```console ```` block of `README.md` and `docs/*.md` runs through `trycmd`: each
//!   `$ faultline …` line is run (the debug binary of this build), its exit code checked against
//!   the `? N` line (default 0), and its stdout and stderr (merged) against the lines below. `...`
//!   on a line of its own stands for lines not shown, `[..]` for the rest of a line; `[SCENARIOS]`
//!   is the shipped scenarios folder. `TRYCMD=overwrite cargo test -p faultline --test docs`
//!   rewrites the outputs in place.
//! - A fenced block whose info string names a file (```` ```json file=bad.json ````) is written
//!   into the example's working folder first, so the files the commands read are shown too.
//! - Every command block is a `console` block: a plain ```` ``` ```` block would be read by trycmd
//!   as commands, and an `sh` block holding `faultline` would go untested (both refused here).
//! - The README's set-up is two commands: the first runs a named scenario (run here with this
//!   build's binary), the second is the test command CI runs.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository root")
}

/// The documents whose examples are tests.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![repo().join("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "md"))
                .collect()
        })
        .unwrap_or_default();
    more.sort();
    docs.extend(more);
    docs
}

/// A fenced block: its opening line's info string, its first line number (1-based) and its text.
struct Block {
    info: String,
    line: usize,
    text: String,
}

fn blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize, String)> = None;
    for (i, line) in md.lines().enumerate() {
        let fence = line.starts_with("```");
        match (&mut open, fence) {
            (None, true) => open = Some((line[3..].trim().to_string(), i + 1, String::new())),
            (Some(_), true) => {
                let (info, line, text) = open.take().unwrap();
                out.push(Block { info, line, text });
            }
            (Some((_, _, text)), false) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, false) => {}
        }
    }
    out
}

/// Writes each block whose info string has `file=NAME` into `dir`.
fn write_example_files(md: &str, dir: &Path) {
    for b in blocks(md) {
        if let Some(name) = b
            .info
            .split_whitespace()
            .find_map(|w| w.strip_prefix("file="))
        {
            assert!(
                !name.contains("..") && !name.starts_with('/'),
                "file={name}: a plain relative name, please"
            );
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, &b.text).unwrap();
        }
    }
}

/// Runs every `console` block of one document in a fresh working folder.
fn run_examples(doc: &Path) {
    let md = std::fs::read_to_string(doc).unwrap();
    let stem = doc.file_stem().unwrap().to_string_lossy().into_owned();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("docs-{stem}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write_example_files(&md, &dir);
    // trycmd runs a document's commands in the process's working folder (a document has no
    // `.in/` folder): one document at a time, so this test owns the working folder meanwhile.
    std::env::set_current_dir(&dir).unwrap();
    let scenarios = repo().join("scenarios");
    let cases = trycmd::TestCases::new();
    cases
        .register_bin("faultline", PathBuf::from(env!("CARGO_BIN_EXE_faultline")))
        .env("FAULTLINE_SCENARIOS", scenarios.display().to_string())
        .insert_var("[SCENARIOS]", scenarios.display().to_string())
        .unwrap()
        .case(doc);
    cases.run();
}

#[test]
fn documented_commands_run_as_shown() {
    for doc in documents() {
        let md = std::fs::read_to_string(&doc).unwrap();
        for b in blocks(&md) {
            let lang = b.info.split([' ', ',']).next().unwrap_or("");
            assert!(
                !lang.is_empty(),
                "{}:{}: a fenced block without a language is run by trycmd as commands; \
                 say `console` (commands and output) or `text`",
                doc.display(),
                b.line
            );
            if lang == "sh" || lang == "bash" || lang == "shell" {
                let untested = b
                    .text
                    .lines()
                    .any(|l| l.trim_start().starts_with("faultline "));
                assert!(
                    !untested,
                    "{}:{}: a `faultline` command in a `{lang}` block is not tested; \
                     write it as a `console` block with `$ ` and its output",
                    doc.display(),
                    b.line
                );
            }
        }
        run_examples(&doc);
    }
}

/// The README's set-up: exactly two commands; the first runs a named scenario (run here with this
/// build's binary: it must pass), the second is the test command `.ci/run` runs.
#[test]
fn readme_setup_is_two_working_commands() {
    let md = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let setup = md
        .split("\n## ")
        .find(|s| s.starts_with("Set-up"))
        .expect("a `## Set-up` section");
    let block = blocks(setup)
        .into_iter()
        .next()
        .expect("a code block in the set-up");
    let commands: Vec<&str> = block
        .text
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands.len(), 2, "two set-up commands: {commands:?}");
    let args = commands[0]
        .strip_prefix("cargo run --release -- ")
        .expect("the first set-up command is `cargo run --release -- ...`");
    let args: Vec<&str> = args.split_whitespace().collect();
    assert_eq!(args[0], "run", "the first set-up command runs a scenario");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(&args)
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "`faultline {}` should pass:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(commands[1], "cargo test --workspace");
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == commands[1]),
        ".ci/run runs the README's test command"
    );
}

/// docs/scenarios.md's reference part is the rendering of the scenario types' JSON Schema: a
/// field, action, checker or name added to the types fails here until the document is
/// regenerated (`UPDATE_DOCS=1 cargo test -p faultline --test docs`), and every field must carry
/// a description (a doc comment on the type).
#[test]
fn scenario_reference_is_current() {
    let undocumented = sim::reference::undocumented();
    assert!(
        undocumented.is_empty(),
        "scenario fields without a doc comment (the reference's description): {undocumented:?}"
    );
    let path = repo().join("docs/scenarios.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (head, rest) = doc
        .split_once(sim::reference::BEGIN)
        .expect("docs/scenarios.md has the BEGIN line");
    let (_, tail) = rest
        .split_once(sim::reference::END)
        .expect("docs/scenarios.md has the END line");
    let want = format!(
        "{head}{}\n\n{}\n{}{tail}",
        sim::reference::BEGIN,
        sim::reference::markdown(),
        sim::reference::END
    );
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    if doc != want {
        let line = doc
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(doc.lines().count().min(want.lines().count()));
        panic!(
            "docs/scenarios.md is stale from line {}: the scenario types changed. \
             Run `UPDATE_DOCS=1 cargo test -p faultline --test docs` and review the diff.\n\
             document: {:?}\nnow:      {:?}",
            line + 1,
            doc.lines().nth(line),
            want.lines().nth(line)
        );
    }
}

/// `faultline schema` prints the same schema the reference is rendered from, and every shipped
/// scenario uses only fields, actions and names the schema knows.
#[test]
fn schema_command_prints_the_schema_and_shipped_scenarios_fit_it() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("schema")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let schema = sim::scenario::json_schema();
    assert_eq!(printed, schema);
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("scenarios")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let mut errors = Vec::new();
        fits(&schema, &schema, &v, "", &mut errors);
        assert!(errors.is_empty(), "{}: {errors:?}", p.display());
        checked += 1;
    }
    assert!(checked >= 10, "checked {checked} scenario files");
}

/// A small structural validator for the schema's subset: `$ref`, `anyOf`, `oneOf` (the timeline
/// items, told apart by their `action` const), objects with `properties` and
/// `additionalProperties: false`, `required`, arrays, `enum`, `const`, `pattern`-free types.
fn fits(
    root: &serde_json::Value,
    s: &serde_json::Value,
    v: &serde_json::Value,
    at: &str,
    errors: &mut Vec<String>,
) {
    use serde_json::Value;
    if let Some(r) = s["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        return fits(root, &root["$defs"][name], v, at, errors);
    }
    if let Some(any) = s["anyOf"].as_array() {
        let ok = any.iter().any(|alt| {
            let mut e = Vec::new();
            fits(root, alt, v, at, &mut e);
            e.is_empty()
        });
        if !ok {
            errors.push(format!("{at}: fits none of anyOf"));
        }
        return;
    }
    if let Some(one) = s["oneOf"].as_array() {
        let fitting = one
            .iter()
            .filter(|alt| {
                let mut e = Vec::new();
                fits(root, alt, v, at, &mut e);
                e.is_empty()
            })
            .count();
        if fitting != 1 {
            errors.push(format!("{at}: fits {fitting} of oneOf, not 1: {v}"));
        }
        return;
    }
    if let Some(c) = s.get("const") {
        if c != v {
            errors.push(format!("{at}: {v} is not {c}"));
        }
    }
    if let Some(e) = s["enum"].as_array() {
        if !e.contains(v) {
            errors.push(format!("{at}: {v} is not one of {e:?}"));
        }
    }
    let types: Vec<&str> = match &s["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if !types.is_empty() && !types.contains(&kind) {
        errors.push(format!("{at}: a {kind}, expected {types:?}"));
        return;
    }
    match v {
        Value::Object(m) => {
            for r in s["required"].as_array().into_iter().flatten() {
                if !m.contains_key(r.as_str().unwrap()) {
                    errors.push(format!("{at}: missing {r}"));
                }
            }
            for (k, x) in m {
                let path = format!("{at}.{k}");
                match s["properties"].get(k) {
                    Some(p) => fits(root, p, x, &path, errors),
                    None => match s.get("additionalProperties") {
                        Some(Value::Bool(false)) => errors.push(format!("{path}: unknown field")),
                        Some(extra) if extra.is_object() => {
                            if let Some(names) = s["propertyNames"]["enum"].as_array() {
                                if !names.contains(&Value::from(k.as_str())) {
                                    errors.push(format!("{path}: not a known name"));
                                }
                            }
                            fits(root, extra, x, &path, errors)
                        }
                        _ => {}
                    },
                }
            }
        }
        Value::Array(xs) => {
            for (i, x) in xs.iter().enumerate() {
                fits(root, &s["items"], x, &format!("{at}[{i}]"), errors);
            }
        }
        _ => {}
    }
}

const PARSE_ONLY: &str = "parse-only";

/// A hosted system registered only so scenarios naming it parse; never run.
struct ParseOnly;

impl sim::sut::System for ParseOnly {
    fn name(&self) -> &'static str {
        PARSE_ONLY
    }
    fn describe(&self) -> String {
        "a system for parsing examples only".into()
    }
    fn cluster(&self, _: sim::sut::ClusterSpec) -> std::sync::Arc<dyn sim::sut::Cluster> {
        unreachable!("parse-only: never run")
    }
}

/// `faultline explain` answers for every field and action of the schema, and each action's
/// example item is a valid timeline item.
#[test]
fn explain_covers_every_field_and_action() {
    let terms = sim::reference::explainable();
    assert!(terms.len() > 50, "{terms:?}");
    for term in &terms {
        let text = sim::reference::explain(term).unwrap_or_else(|e| panic!("{term}: {e}"));
        assert!(!text.trim().is_empty(), "{term}");
        if let Some(example) = text.split("\nexample:\n").nth(1) {
            let scenario = format!(
                r#"{{"name": "x", "duration_ms": 10000, "timeline": [{}]}}"#,
                example.trim()
            );
            let parsed = sim::scenario::Scenario::parse(&scenario, "example.json");
            // Actions for hosted systems only: the example must fit a hosted scenario.
            let hosted = format!(
                r#"{{"name": "x", "system": "{PARSE_ONLY}", "checks": ["raft"], "duration_ms": 10000, "timeline": [{}]}}"#,
                example.trim()
            );
            parsed
                .or_else(|e| {
                    if !e.message.contains("hosted systems only") {
                        return Err(e);
                    }
                    sim::sut::register(std::sync::Arc::new(ParseOnly));
                    sim::scenario::Scenario::parse(&hosted, "example.json")
                })
                .unwrap_or_else(|e| panic!("{term}: its example does not parse: {e}"));
        }
    }
    assert!(sim::reference::explain("partiton")
        .unwrap_err()
        .contains("did you mean partition?"));
}
