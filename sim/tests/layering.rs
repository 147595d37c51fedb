//! The checkers never import the simulator: `sim/src/check/` sees the engine's types, the
//! report model and its own records and snapshots, nothing of madsim or the world. A check that
//! needs the simulator would tie every future system under test to this one.

use std::path::PathBuf;

#[test]
fn no_checker_imports_the_simulator() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/check");
    let forbidden = [
        "madsim",
        "crate::world",
        "crate::scenario",
        "crate::disk",
        "crate::chaos",
        "crate::runner",
        "crate::workload",
        "crate::cli",
    ];
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    let mut checked = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for f in forbidden {
            assert!(
                !text.contains(f),
                "{} mentions `{f}`: checkers must not import the simulator",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} checker files found");
}

/// The `.rs` files under `dir`, submodules' directories included.
fn rust_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("check/ exists") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}
