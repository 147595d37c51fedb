//! Exposes the openraft version this build links as `OPENRAFT_VERSION`, read from the lock file
//! cargo resolved it with. `run.sh VERSION` moves the lock of its own copy of this crate, so
//! `describe()` must read the resolved version, not the requirement in Cargo.toml.

use std::path::Path;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let lock = Path::new(&dir).join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_else(|e| panic!("read {}: {e}", lock.display()));
    let version = locked_version(&text, "openraft").unwrap_or_else(|| panic!("no openraft package in {}", lock.display()));
    println!("cargo:rustc-env=OPENRAFT_VERSION={version}");
}

/// The `version` of the `[[package]]` named `name` (a lock file holds one openraft).
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let want = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == want {
            let v = lines.next()?.trim().strip_prefix("version = \"")?.strip_suffix('"')?;
            return Some(v.to_string());
        }
    }
    None
}
