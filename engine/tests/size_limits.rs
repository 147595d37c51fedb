//! The engine stays readable: no source file over 800 lines and no function over 100 lines in
//! `engine/src`, tests apart (`tests.rs` files and everything from a `#[cfg(test)]` line on).

mod source;
use source::code_only;

use std::fs;
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 100;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("tests.rs") {
            out.push(p);
        }
    }
}

/// The file's lines up to its first `#[cfg(test)]`, with comments, strings and char literals
/// blanked (so braces inside them do not count).
fn code_lines(text: &str) -> Vec<String> {
    let text = match text.find("\n#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    code_only(text).lines().map(str::to_string).collect()
}

/// Each function's name and length in lines (its signature through its closing brace).
fn functions(lines: &[String]) -> Vec<(String, usize, usize)> {
    let mut found = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "fn") else {
            continue;
        };
        let before_ok = words[..at]
            .iter()
            .all(|w| ["pub", "async", "const", "unsafe"].contains(w) || w.starts_with("pub("));
        if !before_ok || at + 1 >= words.len() {
            continue;
        }
        let name: String = words[at + 1]
            .chars()
            .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
            .collect();
        let (mut depth, mut opened) = (0i32, false);
        for (end, l) in lines.iter().enumerate().skip(start) {
            for ch in l.chars() {
                match ch {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    ';' if !opened && depth == 0 => break,
                    _ => {}
                }
            }
            if opened && depth == 0 {
                found.push((name.clone(), start + 1, end - start + 1));
                break;
            }
            if !opened && l.trim_end().ends_with(';') {
                break; // a declaration without a body
            }
        }
    }
    found
}

#[test]
fn no_engine_file_or_function_is_too_long() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for f in files {
        let text = fs::read_to_string(&f).unwrap();
        let rel = f.strip_prefix(&src).unwrap().display().to_string();
        let total = text.lines().count();
        let lines = code_lines(&text);
        if lines.len() > MAX_FILE_LINES {
            problems.push(format!("src/{rel}: {total} lines"));
        }
        for (name, at, len) in functions(&lines) {
            if len > MAX_FN_LINES {
                problems.push(format!("src/{rel}:{at}: fn {name} is {len} lines"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "over {MAX_FILE_LINES} lines per file or {MAX_FN_LINES} per function:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_scanner_measures_functions() {
    let src = "fn a() {\n    let s = \"}\";\n    if x { y(); }\n}\n\npub(crate) async fn b(\n    x: u8,\n) -> u8 {\n    x\n}\nfn c();\n";
    let lines = code_lines(src);
    let found = functions(&lines);
    assert_eq!(
        found,
        vec![("a".to_string(), 1, 4), ("b".to_string(), 6, 5)],
        "{lines:?}"
    );
}
