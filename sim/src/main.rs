//! The `faultline` binary: a thin shell over the `sim` library. Exit codes: 0 all seeds passed,
//! 1 a violation found (or an expectation missed), 2 bad input or usage.

fn main() {
    std::process::exit(sim::cli::main());
}
