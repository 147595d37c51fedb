//! CPU-time accounting for `faultline bench`: how much of a seed's run goes to the checkers and
//! to the trace. It reads the thread's CPU clock with a raw syscall, because madsim replaces
//! libc's `clock_gettime` with simulated time inside a runtime (and panics on CPU clocks).
//! The figures only feed the bench; they never reach the simulation, so a profiled run has the
//! same trace hash as any other.

use std::sync::atomic::{AtomicU64, Ordering};

/// This thread's CPU time in nanoseconds (0 where the clock is unavailable).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clock_gettime,
            libc::CLOCK_THREAD_CPUTIME_ID,
            &mut ts as *mut libc::timespec,
        )
    };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Where one seed's CPU time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSplit {
    /// The whole seed: runtime, engine, network, disk, harness.
    pub total_ns: u64,
    /// Online history checks (raft safety, keystore order) and the end-of-run checkers.
    pub checkers_ns: u64,
    /// Formatting and hashing trace events.
    pub trace_ns: u64,
}

/// What a stretch of harness code is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Checks run as events arrive (raft history, the reference model, keystores, nonces); they
    /// also count under `Observe`, since they run inside it.
    OnlineChecks,
    /// The reference model's comparisons while faults run (outside `Observe`).
    Samples,
    /// The checkers after the liveness phase, and the liveness phase's convergence probes.
    EndChecks,
    /// Handling one engine event: its online checks plus formatting and hashing the trace.
    Observe,
    /// Checks on datagrams as they are sent (persistence before messages; outside `Observe`).
    Messages,
}

/// Accumulators a profiled world adds to; a world without one pays nothing.
#[derive(Debug, Default)]
pub struct Profile {
    online_ns: AtomicU64,
    samples_ns: AtomicU64,
    end_ns: AtomicU64,
    observe_ns: AtomicU64,
    messages_ns: AtomicU64,
    /// Calls of `time_sampled` so far (which of them are measured).
    sampled_calls: AtomicU64,
}

/// `time_sampled` measures one call in this many.
pub const SAMPLE_EVERY: u64 = 32;

impl Profile {
    /// Like `time`, for a check that runs on every datagram: timing each call costs more than
    /// the call (two clock reads), so one call in `SAMPLE_EVERY` is timed and counted that many
    /// times over.
    pub fn time_sampled<T>(p: Option<&Profile>, bucket: Bucket, f: impl FnOnce() -> T) -> T {
        let Some(prof) = p else { return f() };
        if prof.sampled_calls.fetch_add(1, Ordering::Relaxed) % SAMPLE_EVERY != 0 {
            return f();
        }
        let start = thread_cpu_ns();
        let out = f();
        let spent = thread_cpu_ns().saturating_sub(start) * SAMPLE_EVERY;
        prof.account(bucket, spent);
        out
    }

    /// Runs `f`, charging its CPU time to `bucket` when profiling.
    pub fn time<T>(p: Option<&Profile>, bucket: Bucket, f: impl FnOnce() -> T) -> T {
        let Some(p) = p else { return f() };
        let start = thread_cpu_ns();
        let out = f();
        let spent = thread_cpu_ns().saturating_sub(start);
        p.account(bucket, spent);
        out
    }

    fn account(&self, bucket: Bucket, spent: u64) {
        let p = self;
        let acc = match bucket {
            Bucket::OnlineChecks => &p.online_ns,
            Bucket::Samples => &p.samples_ns,
            Bucket::EndChecks => &p.end_ns,
            Bucket::Observe => &p.observe_ns,
            Bucket::Messages => &p.messages_ns,
        };
        acc.fetch_add(spent, Ordering::Relaxed);
    }

    /// The split of a seed that took `total_ns`.
    pub fn split(&self, total_ns: u64) -> CpuSplit {
        let online = self.online_ns.load(Ordering::Relaxed);
        CpuSplit {
            total_ns,
            checkers_ns: online
                + self.messages_ns.load(Ordering::Relaxed)
                + self.samples_ns.load(Ordering::Relaxed)
                + self.end_ns.load(Ordering::Relaxed),
            trace_ns: self
                .observe_ns
                .load(Ordering::Relaxed)
                .saturating_sub(online),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_cpu_clock_advances_with_work() {
        let a = thread_cpu_ns();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu_ns() > a, "CPU time moves forward");
    }

    #[test]
    fn online_checks_count_as_checkers_and_not_as_trace() {
        let p = Profile::default();
        let work = || std::hint::black_box((0..300_000u64).map(|i| i ^ 7).sum::<u64>());
        Profile::time(Some(&p), Bucket::Observe, || {
            Profile::time(Some(&p), Bucket::OnlineChecks, work)
        });
        let s = p.split(u64::MAX);
        assert!(s.checkers_ns > 0);
        assert!(
            s.trace_ns < s.checkers_ns,
            "the observe time was all checks: {s:?}"
        );
        assert_eq!(Profile::time(None, Bucket::EndChecks, || 7), 7);
    }
}
