//! `faultline-openraft`: faultline's CLI with openraft registered as a system under test
//! (`"system": "openraft"` in a scenario). Built per openraft version by `run.sh`.

use std::sync::Arc;

fn main() {
    // As sim/src/main.rs: a reader that has gone (`| head`) ends the process quietly.
    // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // This directory's scenarios are the named ones unless the caller chose others.
    if std::env::var_os("FAULTLINE_SCENARIOS").is_none() {
        std::env::set_var("FAULTLINE_SCENARIOS", concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios"));
    }
    sim::sut::register(Arc::new(faultline_openraft::OpenraftSystem::default()));
    std::process::exit(sim::cli::main());
}
