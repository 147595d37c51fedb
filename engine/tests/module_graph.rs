//! The engine's modules form a graph without cycles, so it can be read bottom-up; and
//! ARCHITECTURE.md's layer list says which module sits on which.
//!
//! A module is `src/<name>.rs` together with everything under `src/<name>/` (its test and
//! child modules). Module A uses module B when A's code (comments and string literals removed)
//! names a `crate::B` path — `use crate::B::..`, `use crate::{B, ..}`, an inline
//! `crate::B::x` — or calls a macro B exports (`invariant!`). A name the crate root re-exports
//! (`crate::Abort`) counts as a use of the module that defines it. Re-exports inside modules do
//! not launder anything: a use of `crate::a::X` is a use of `a`, wherever `X` was defined.

mod source;
use source::code_only;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Where one module uses another: the first file and line that does.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// Module name -> its files (`src/<name>.rs`, then `src/<name>/**.rs`).
fn modules(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut mods: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for p in fs::read_dir(src).unwrap().map(|e| e.unwrap().path()) {
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            mods.entry(name).or_default().extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") && name != "lib" {
            mods.entry(name).or_default().insert(0, p);
        }
    }
    for (name, files) in &mods {
        assert!(
            files.iter().any(|f| f.parent() == Some(src)),
            "src/{name}/ has no src/{name}.rs"
        );
    }
    mods
}

/// The identifiers a `crate::` path starts with: `a` for `crate::a::..`, `a`, `b` for
/// `crate::{a::.., b}`.
fn path_heads(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    if let Some(group) = rest.strip_prefix('{') {
        let mut heads = Vec::new();
        let (mut depth, mut start) = (0, true);
        for (k, ch) in group.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => start = true,
                c if c.is_whitespace() => {}
                _ if start => {
                    heads.push(word(&group[k..]));
                    start = false;
                }
                _ => {}
            }
        }
        heads
    } else {
        vec![word(rest)]
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// The names the crate root re-exports, and the module each comes from (`pub use m::X;`,
/// `pub use m::{X, Y};`).
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stmt in code_only(lib).split(';') {
        let Some(path) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let (module, names) = path.split_once("::").expect("pub use m::..");
        for name in names
            .trim_matches(|c| c == '{' || c == '}' || c == ' ')
            .split(',')
        {
            let name = name.trim().rsplit(" as ").next().unwrap().trim();
            if !name.is_empty() {
                out.insert(name.to_string(), module.trim().to_string());
            }
        }
    }
    out
}

fn build_graph() -> Graph {
    let src = src_dir();
    let mods = modules(&src);
    let reexports = root_reexports(&fs::read_to_string(src.join("lib.rs")).unwrap());
    let code: BTreeMap<&String, Vec<(String, String)>> = mods
        .iter()
        .map(|(m, files)| {
            let texts = files
                .iter()
                .map(|f| {
                    let rel = f.strip_prefix(src.parent().unwrap()).unwrap();
                    (
                        rel.display().to_string(),
                        code_only(&fs::read_to_string(f).unwrap()),
                    )
                })
                .collect();
            (m, texts)
        })
        .collect();
    // Macros a module exports, by name.
    let mut macros = BTreeMap::new();
    for (m, files) in &code {
        for (_, text) in files {
            for (at, _) in text.match_indices("macro_rules!") {
                let name: String = text[at + "macro_rules!".len()..]
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                macros.insert(name, (*m).clone());
            }
        }
    }
    let mut graph = Graph::new();
    for (m, files) in &code {
        let uses = graph.entry((*m).clone()).or_default();
        for (file, text) in files {
            let mut add = |to: &str, offset: usize| {
                if to != m.as_str() {
                    uses.entry(to.to_string())
                        .or_insert_with(|| format!("{file}:{}", line_of(text, offset)));
                }
            };
            assert!(
                !text.contains("super::super"),
                "{file}: reach other modules through crate::, not super::super::"
            );
            for (at, _) in text.match_indices("crate::") {
                let before = text[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue; // `mycrate::`
                }
                for head in path_heads(&text[at + "crate::".len()..]) {
                    if mods.contains_key(&head) {
                        add(&head, at);
                    } else if let Some(def) = reexports.get(&head) {
                        add(def, at);
                    } else {
                        panic!("{file}:{}: crate::{head} is no module", line_of(text, at));
                    }
                }
            }
            for (name, def) in &macros {
                let call = format!("{name}!");
                for (at, _) in text.match_indices(&call) {
                    let before = text[..at].chars().next_back();
                    if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                        add(def, at);
                    }
                }
            }
        }
    }
    graph
}

/// The modules on some cycle, as components (modules that reach each other), each with the
/// shortest cycle through each of its modules (rotated to start at its first module, repeats
/// dropped).
fn cycles(graph: &Graph) -> Vec<(BTreeSet<String>, Vec<Vec<String>>)> {
    // Reachability by DFS is plenty for a few dozen modules.
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(m) = stack.pop() {
            for to in graph.get(&m).into_iter().flat_map(|u| u.keys()) {
                if seen.insert(to.clone()) {
                    stack.push(to.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> = graph.keys().map(|m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for m in graph.keys() {
        if done.contains(m) || !reach[m].contains(m) {
            continue;
        }
        let scc: BTreeSet<String> = reach[m]
            .iter()
            .filter(|o| reach[*o].contains(m))
            .cloned()
            .collect();
        done.extend(scc.iter().cloned());
        let mut found: Vec<Vec<String>> = Vec::new();
        for start in &scc {
            let cycle = shortest_cycle(graph, &scc, start);
            let first = cycle[..cycle.len() - 1]
                .iter()
                .enumerate()
                .min_by_key(|(_, x)| *x)
                .map(|(i, _)| i)
                .unwrap();
            let mut rotated: Vec<String> = cycle[first..cycle.len() - 1]
                .iter()
                .chain(&cycle[..first])
                .cloned()
                .collect();
            rotated.push(rotated[0].clone());
            if !found.contains(&rotated) {
                found.push(rotated);
            }
        }
        found.sort_by_key(|c| c.len());
        out.push((scc, found));
    }
    out
}

/// A shortest cycle from `start` back to it inside `scc` (breadth first), `start` at both ends.
fn shortest_cycle(graph: &Graph, scc: &BTreeSet<String>, start: &String) -> Vec<String> {
    let mut prev: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.clone()]);
    'bfs: while let Some(x) = queue.pop_front() {
        for to in graph[&x].keys().filter(|t| scc.contains(*t)) {
            if to == start {
                prev.insert(start.clone(), x.clone());
                break 'bfs;
            }
            if !prev.contains_key(to) {
                prev.insert(to.clone(), x.clone());
                queue.push_back(to.clone());
            }
        }
    }
    let mut cycle = vec![start.clone()];
    let mut x = prev[start].clone();
    while &x != start {
        cycle.push(x.clone());
        x = prev[&x].clone();
    }
    cycle.push(start.clone());
    cycle.reverse();
    cycle
}

/// Layers from the bottom: each module one above the highest module it uses.
fn layers(graph: &Graph) -> Vec<Vec<String>> {
    let mut level: BTreeMap<&String, usize> = BTreeMap::new();
    while level.len() < graph.len() {
        let before = level.len();
        for (m, uses) in graph {
            if !level.contains_key(m) && uses.keys().all(|u| level.contains_key(u)) {
                let l = uses.keys().map(|u| level[u] + 1).max().unwrap_or(0);
                level.insert(m, l);
            }
        }
        assert!(level.len() > before, "layers of a graph with a cycle");
    }
    let mut out = vec![Vec::new(); level.values().max().map_or(0, |l| l + 1)];
    for (m, l) in level {
        out[l].push(m.clone());
    }
    out
}

#[test]
fn engine_modules_have_no_import_cycle() {
    let graph = build_graph();
    let found = cycles(&graph);
    let mut report = String::new();
    for (scc, cycles) in &found {
        let members: Vec<&str> = scc.iter().map(String::as_str).collect();
        report += &format!("these modules reach each other: {}\n", members.join(", "));
        for cycle in cycles {
            report += &format!("  cycle: {}\n", cycle.join(" -> "));
            for pair in cycle.windows(2) {
                report += &format!(
                    "      {} -> {}  ({})\n",
                    pair[0], pair[1], graph[&pair[0]][&pair[1]]
                );
            }
        }
    }
    assert!(
        found.is_empty(),
        "engine modules import each other:\n{report}"
    );
}

/// ARCHITECTURE.md lists the engine's layers, bottom first, one line each in the block after
/// the line `Engine module layers`; every module is on exactly one line and uses only modules
/// on lines above it.
#[test]
fn architecture_md_lists_the_layers() {
    let graph = build_graph();
    assert!(
        cycles(&graph).is_empty(),
        "see engine_modules_have_no_import_cycle"
    );
    let computed = layers(&graph)
        .iter()
        .map(|l| l.join(", "))
        .collect::<Vec<_>>()
        .join("\n");
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md"))
        .unwrap();
    let block: Vec<&str> = doc
        .lines()
        .skip_while(|l| !l.contains("Engine module layers"))
        .skip_while(|l| !l.trim_start().starts_with("```"))
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with("```"))
        .collect();
    let hint = format!("a layering of today's graph, bottom first:\n{computed}");
    assert!(
        !block.is_empty(),
        "no layer block in ARCHITECTURE.md; {hint}"
    );
    let mut layer_of = BTreeMap::new();
    for (i, line) in block.iter().enumerate() {
        for m in line.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            assert!(
                graph.contains_key(m),
                "ARCHITECTURE.md lists `{m}`, no engine module"
            );
            assert!(
                layer_of.insert(m, i).is_none(),
                "ARCHITECTURE.md lists `{m}` twice"
            );
        }
    }
    for (m, uses) in &graph {
        let Some(&l) = layer_of.get(m.as_str()) else {
            panic!("ARCHITECTURE.md's layers leave out `{m}`; {hint}");
        };
        for (u, at) in uses {
            assert!(
                layer_of[u.as_str()] < l,
                "`{m}` uses `{u}` ({at}), which ARCHITECTURE.md does not list below it; {hint}"
            );
        }
    }
}

#[test]
fn comments_and_literals_do_not_count() {
    let text = "use crate::a; // crate::b\n/* crate::c /* crate::d */ */ let s = \"crate::e\";\n\
                let r = r#\"crate::f\"#; let c = '\"'; fn g<'x>(_: &'x crate::h::T) {}";
    let code = code_only(text);
    let heads: Vec<_> = code
        .match_indices("crate::")
        .flat_map(|(at, _)| path_heads(&code[at + 7..]))
        .collect();
    assert_eq!(heads, ["a", "h"]);
    assert_eq!(path_heads("{a::{X, Y}, b, self}"), ["a", "b", "self"]);
}
