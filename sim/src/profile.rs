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

/// This process's CPU time in nanoseconds, all threads (0 where the clock is unavailable).
pub fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as in `thread_cpu_ns`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clock_gettime,
            libc::CLOCK_PROCESS_CPUTIME_ID,
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
    /// Every checker: the four parts below.
    pub checkers_ns: u64,
    /// Formatting and hashing trace events.
    pub trace_ns: u64,
    /// Checks run as events arrive (raft history, reference model, keystores, nonces).
    pub online_ns: u64,
    /// The reference model's comparisons with replicas while faults run.
    pub samples_ns: u64,
    /// The checkers after the liveness phase and its convergence probes.
    pub end_ns: u64,
    /// Checks on datagrams as they are sent (persistence before messages).
    pub messages_ns: u64,
}

impl CpuSplit {
    /// Two splits added (several seeds' worth).
    pub fn plus(&self, o: &CpuSplit) -> CpuSplit {
        CpuSplit {
            total_ns: self.total_ns + o.total_ns,
            checkers_ns: self.checkers_ns + o.checkers_ns,
            trace_ns: self.trace_ns + o.trace_ns,
            online_ns: self.online_ns + o.online_ns,
            samples_ns: self.samples_ns + o.samples_ns,
            end_ns: self.end_ns + o.end_ns,
            messages_ns: self.messages_ns + o.messages_ns,
        }
    }
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
    /// Sampled calls so far per bucket (which of them are measured): one counter each, so two
    /// kinds of call that alternate cannot alias with the sampling period.
    sampled_calls: [AtomicU64; 5],
    /// What an empty timed stretch measures (the two clock reads' own cost), taken off every
    /// measurement: per event it is of the order of the online checks themselves.
    clock_ns: u64,
}

/// `time_sampled` measures one call in this many.
pub const SAMPLE_EVERY: u64 = 32;

impl Profile {
    /// A profile that knows the cost of its own clock reads (the median of many empty
    /// measurements on this thread).
    pub fn calibrated() -> Profile {
        let mut empty: Vec<u64> = (0..201)
            .map(|_| {
                let a = thread_cpu_ns();
                thread_cpu_ns().saturating_sub(a)
            })
            .collect();
        empty.sort_unstable();
        Profile {
            clock_ns: empty[empty.len() / 2],
            ..Profile::default()
        }
    }

    /// Like `time`, for code that runs on every datagram or event: timing each call costs
    /// more than the call (two clock reads, each a system call), so one call in `SAMPLE_EVERY`
    /// is timed and counted that many times over.
    pub fn time_sampled<T>(p: Option<&Profile>, bucket: Bucket, f: impl FnOnce() -> T) -> T {
        match p {
            Some(prof) if prof.take_sample(bucket) => {
                Profile::time_scaled(prof, bucket, SAMPLE_EVERY, f)
            }
            _ => f(),
        }
    }

    /// Whether this call is the one in `SAMPLE_EVERY` to time (`time_sampled`, or an event
    /// whose nested buckets are all timed with `time_scaled`).
    pub fn take_sample(&self, bucket: Bucket) -> bool {
        // Pseudo-random, not every SAMPLE_EVERY-th call: the harness's events come in patterns
        // (a commit, its applies, its replies) that a fixed stride would alias with. The
        // stream is the profile's own; nothing in the simulation reads it.
        let n = self.sampled_calls[bucket as usize].fetch_add(1, Ordering::Relaxed);
        let mut x = n.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 31;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 29;
        x % SAMPLE_EVERY == 0
    }

    /// Runs `f`, charging `scale` times its CPU time to `bucket` (one sampled call standing for
    /// `scale` calls).
    pub fn time_scaled<T>(prof: &Profile, bucket: Bucket, scale: u64, f: impl FnOnce() -> T) -> T {
        let start = thread_cpu_ns();
        let out = f();
        let spent = (thread_cpu_ns().saturating_sub(start)).saturating_sub(prof.clock_ns) * scale;
        prof.account(bucket, spent);
        out
    }

    /// Runs `f`, charging its CPU time to `bucket` when profiling.
    pub fn time<T>(p: Option<&Profile>, bucket: Bucket, f: impl FnOnce() -> T) -> T {
        match p {
            Some(prof) => Profile::time_scaled(prof, bucket, 1, f),
            None => f(),
        }
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
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let online_ns = load(&self.online_ns);
        let samples_ns = load(&self.samples_ns);
        let end_ns = load(&self.end_ns);
        let messages_ns = load(&self.messages_ns);
        CpuSplit {
            total_ns,
            checkers_ns: online_ns + samples_ns + end_ns + messages_ns,
            trace_ns: load(&self.observe_ns).saturating_sub(online_ns),
            online_ns,
            samples_ns,
            end_ns,
            messages_ns,
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
