//! The golden-script runner shared by `raft_golden.rs` and `storage_golden.rs`.
//!
//! Lines starting with `#` are comments; blank lines separate blocks. A block is one or more
//! command lines, a `---` line, then the output up to the next blank line (`ok` if the commands
//! printed nothing). A command written `(cmd)` runs without printing. A new block may leave out
//! `---` and the output: the update writes them. The test reruns the commands and diffs the
//! output; `UPDATE_GOLDEN=1` rewrites the files instead.

#![allow(dead_code)] // each test crate uses its own part of it

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// What a script drives: it runs one command line at a time and collects output lines.
pub trait Script: Default {
    fn run(&mut self, line: &str) -> Result<(), String>;
    fn out(&mut self) -> &mut Vec<String>;
}

/// One command line: its name, numbers, `key=value` arguments and bare words. Each command
/// takes what it understands; anything left over is an error.
pub struct Cmd {
    pub name: String,
    pub nodes: Vec<u8>,
    pub args: BTreeMap<String, String>,
    pub flags: BTreeSet<String>,
}

impl Cmd {
    pub fn parse(line: &str) -> Cmd {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default().to_string();
        let mut cmd = Cmd {
            name,
            nodes: vec![],
            args: BTreeMap::new(),
            flags: BTreeSet::new(),
        };
        for w in words {
            if let Some((k, v)) = w.split_once('=') {
                cmd.args.insert(k.to_string(), v.to_string());
            } else if let Ok(n) = w.parse() {
                cmd.nodes.push(n);
            } else {
                cmd.flags.insert(w.to_string());
            }
        }
        cmd
    }

    pub fn num<T: std::str::FromStr>(&mut self, key: &str, default: T) -> Result<T, String> {
        match self.args.remove(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("bad {key}={v}")),
        }
    }

    /// Whether the bare word `flag` was given (and takes it).
    pub fn flag(&mut self, flag: &str) -> bool {
        self.flags.remove(flag)
    }

    /// An error if anything was left untaken.
    pub fn done(&self) -> Result<(), String> {
        if let Some(extra) = self.args.keys().next() {
            return Err(format!("{} does not take {extra}=", self.name));
        }
        match self.flags.iter().next() {
            None => Ok(()),
            Some(extra) => Err(format!("{} does not take {extra:?}", self.name)),
        }
    }
}

/// Runs a script and returns its text with every block's output made anew.
pub fn regenerate<S: Script>(name: &str, text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let (mut out, mut world, mut i) = (Vec::new(), S::default(), 0);
    while i < lines.len() {
        if lines[i].trim().is_empty() || lines[i].starts_with('#') {
            out.push(lines[i].to_string());
            i += 1;
            continue;
        }
        // A block: its commands up to `---` (or a blank line, in a block never run), then the
        // old output, which is skipped.
        while i < lines.len() && !lines[i].trim().is_empty() && lines[i] != "---" {
            let line = lines[i].trim();
            out.push(lines[i].to_string());
            i += 1;
            if line.starts_with('#') {
                continue;
            }
            let quiet = line.strip_prefix('(').and_then(|l| l.strip_suffix(')'));
            let printed = world.out().len();
            if let Err(e) = world.run(quiet.unwrap_or(line)) {
                panic!("{name}.txt:{i}: {line}: {e}");
            }
            if quiet.is_some() {
                world.out().truncate(printed);
            }
        }
        if lines.get(i) == Some(&"---") {
            i += 1;
            while i < lines.len() && !lines[i].trim().is_empty() {
                i += 1;
            }
        }
        out.push("---".into());
        if world.out().is_empty() {
            world.out().push("ok".into());
        }
        out.append(world.out());
    }
    out.join("\n") + "\n"
}

/// Runs `tests/golden/<dir>/<script>.txt` and diffs (or, with `UPDATE_GOLDEN=1`, rewrites) it.
pub fn check<S: Script>(dir: &str, script: &str) {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{dir}/{script}.txt"));
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let actual = regenerate::<S>(script, &expected);
    if actual == expected {
        return;
    }
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        return std::fs::write(&path, actual).unwrap();
    }
    let (e, a): (Vec<_>, Vec<_>) = (expected.lines().collect(), actual.lines().collect());
    let at = (0..).find(|i| e.get(*i) != a.get(*i)).unwrap();
    let around =
        |v: &[&str]| v[at.saturating_sub(3).min(v.len())..(at + 8).min(v.len())].join("\n");
    panic!(
        "{}: the output differs from line {}\n--- expected\n{}\n--- actual\n{}\n\
         (UPDATE_GOLDEN=1 rewrites the file)",
        path.display(),
        at + 1,
        around(&e),
        around(&a)
    );
}

/// One test per script of `tests/golden/<dir>/`, and a test that every script there is run.
macro_rules! golden_scripts {
    ($world:ty, $dir:literal, $($name:ident),*) => {
        $( #[test] fn $name() { golden_script::check::<$world>($dir, stringify!($name)); } )*

        #[test]
        fn every_script_is_run() {
            let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(concat!("tests/golden/", $dir));
            for f in std::fs::read_dir(dir).unwrap() {
                let name = f.unwrap().file_name().into_string().unwrap();
                let stem = name.strip_suffix(".txt").unwrap_or(&name);
                assert!([$(stringify!($name)),*].contains(&stem), "{name}: no test runs it");
            }
        }
    };
}
