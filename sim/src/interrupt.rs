//! SIGINT and SIGTERM during a long sweep (`run`, `hunt`): the first one asks the sweep to stop
//! dispatching seeds; the seeds already running finish, and the command reports what it found
//! and exits 128 + the signal (130 for Ctrl-C, 143 for SIGTERM). The handler is installed with
//! `SA_RESETHAND`, so a second signal takes the default action and ends the process at once.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

const NOTICE: &[u8] = b"\nfaultline: interrupted: no new seeds; finishing the seeds in flight \
(interrupt again to quit at once, with no report)\n";

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: two atomic stores and write(2).
    SIGNAL.store(sig, Ordering::SeqCst);
    REQUESTED.store(true, Ordering::SeqCst);
    // SAFETY: write(2) is async-signal-safe; the buffer is a static.
    unsafe {
        libc::write(libc::STDERR_FILENO, NOTICE.as_ptr().cast(), NOTICE.len());
    }
}

/// Installs the handler for SIGINT and SIGTERM (idempotent). Call it only from commands that
/// report a partial result: elsewhere the default action (end the process) is right.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid starting value; the handler only touches
        // atomics and write(2); SA_RESETHAND restores the default for the next signal.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The flag a sweep watches (`runner::Control::cancel`).
pub fn flag() -> &'static AtomicBool {
    &REQUESTED
}

/// Whether a signal asked the process to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// The exit code of an interrupted command: 128 + the signal, as a shell reports a process the
/// signal ended (130 for SIGINT, 143 for SIGTERM).
pub fn exit_code() -> i32 {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => 128 + libc::SIGINT,
        s => 128 + s,
    }
}

/// The signal's name, for the report.
pub fn signal_name() -> &'static str {
    match SIGNAL.load(Ordering::SeqCst) {
        libc::SIGTERM => "SIGTERM",
        _ => "SIGINT",
    }
}
