//! The regression suite as one test, so `cargo mutants` runs it against every engine mutant:
//! `faultline ci --seeds N` (every named scenario against its expectation, N seeds each).
//! N comes from `FAULTLINE_MUTANTS_CI_SEEDS` (default 8); the test prints the ci output, whose
//! `FAIL <scenario>: ...` lines say which scenarios and seeds caught a mutant.
//!
//! Ignored in a plain `cargo test` (the suite already runs as `faultline ci`). Run it alone with
//! `cargo test -p faultline --test mutants_ci -- --include-ignored --nocapture`; for mutation
//! testing, `.cargo/mutants.toml` passes `--include-ignored`:
//!
//!     CARGO_PROFILE_DEV_DEBUG=0 nice -n 19 cargo mutants -j 1 -p faultline-engine
//!
//! (see .cargo/mutants.toml for the test command and the files mutated).

use std::path::Path;
use std::process::Command;

#[test]
#[ignore = "mutation testing only: run with --include-ignored (see the module docs)"]
fn mutants_ci() {
    let seeds = std::env::var("FAULTLINE_MUTANTS_CI_SEEDS").unwrap_or_else(|_| "8".into());
    // `ci` reads ./scenarios, so run it from the workspace root.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["ci", "--seeds", &seeds])
        .current_dir(&root)
        .output()
        .expect("run faultline ci");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "faultline ci --seeds {seeds}: {}",
        out.status
    );
}
