//! The `faultline` binary: a thin shell over the `sim` library. Exit codes: 0 all seeds passed,
//! 1 a violation found (or an expectation missed), 2 bad input or usage.

fn main() {
    // Rust ignores SIGPIPE, so printing to a closed pipe (`faultline list | head -1`) fails and
    // `println!` panics. A command-line tool whose reader has gone should end quietly, as the
    // shell's own tools do: take the default action (exit by the signal, 141 in a shell).
    // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(sim::cli::main());
}
