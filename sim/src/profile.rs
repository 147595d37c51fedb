//! CPU-time accounting for `faultline bench`: how much of a seed's run goes to the checkers and
//! to the trace. It reads the thread's CPU clock with a raw syscall, because madsim replaces
//! libc's `clock_gettime` with simulated time inside a runtime (and panics on CPU clocks).
//! The figures only feed the bench; they never reach the simulation, so a profiled run has the
//! same trace hash as any other.

use std::sync::atomic::{AtomicU64, Ordering};

/// This thread's CPU time in nanoseconds (0 where the clock is unavailable).
pub fn thread_cpu_ns() -> u64 {
    cpu_clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// A CPU clock by raw syscall (madsim replaces libc's `clock_gettime` inside a runtime).
fn cpu_clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clock_gettime,
            clock,
            &mut ts as *mut libc::timespec,
        )
    };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A cycle counter for short stretches (the time-stamp counter where there is one: no system
/// call). Wall time, not CPU time: fine for microseconds, not for stretches a preemption can
/// fall into often.
fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions on x86_64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        thread_cpu_ns()
    }
}

/// This process's CPU time in nanoseconds, all threads (0 where the clock is unavailable).
pub fn process_cpu_ns() -> u64 {
    cpu_clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
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
    /// The simulated disk's file operations.
    pub disk_ns: u64,
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
            disk_ns: self.disk_ns + o.disk_ns,
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
    /// The simulated disk's file operations (not a checker: the substrate the engine runs on).
    Disk,
}

/// Accumulators a profiled world adds to; a world without one pays nothing.
#[derive(Debug, Default)]
pub struct Profile {
    online_ns: AtomicU64,
    samples_ns: AtomicU64,
    end_ns: AtomicU64,
    observe_ns: AtomicU64,
    messages_ns: AtomicU64,
    disk_ns: AtomicU64,
    /// Sampled calls so far per bucket (which of them are measured): one counter each, so two
    /// kinds of call that alternate cannot alias with the sampling period.
    sampled_calls: [AtomicU64; 6],
    /// What an empty timed stretch measures (the two clock reads' own cost), taken off every
    /// measurement: per event it is of the order of the online checks themselves.
    clock_ns: u64,
    /// The same for the cycle counter that times short stretches, in cycles.
    cycles_empty: u64,
    /// Nanoseconds per cycle of that counter (0 until calibrated: short stretches count 0).
    ns_per_cycle: f64,
}

/// A `time_short` sample longer than this was preempted and is dropped.
pub const SHORT_STRETCH_MAX_NS: u64 = 1_000_000;

/// `time_sampled` measures one call in this many.
pub const SAMPLE_EVERY: u64 = 32;

impl Profile {
    /// A profile that knows the cost of its own clock reads (the median of many empty
    /// measurements on this thread).
    pub fn calibrated() -> Profile {
        let median = |mut v: Vec<u64>| {
            v.sort_unstable();
            v[v.len() / 2]
        };
        let clock_ns = median(
            (0..201)
                .map(|_| {
                    let a = thread_cpu_ns();
                    thread_cpu_ns().saturating_sub(a)
                })
                .collect(),
        );
        let cycles_empty = median(
            (0..201)
                .map(|_| {
                    let a = cycles();
                    cycles().saturating_sub(a)
                })
                .collect(),
        );
        // Nanoseconds per cycle over short busy stretches of this thread; a preempted stretch
        // counts cycles without CPU time, so the largest ratio is the true one.
        let ns_per_cycle = (0..7)
            .map(|_| {
                let (t0, c0) = (thread_cpu_ns(), cycles());
                let mut x = 0u64;
                // Bounded, in case the clock is unavailable (it then reads 0 throughout).
                for _ in 0..10_000 {
                    if thread_cpu_ns() >= t0 + 300_000 {
                        break;
                    }
                    for i in 0..200u64 {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                    }
                }
                let (t1, c1) = (thread_cpu_ns(), cycles());
                t1.saturating_sub(t0) as f64 / (c1.saturating_sub(c0)).max(1) as f64
            })
            .fold(0.0, f64::max);
        Profile {
            clock_ns,
            cycles_empty,
            ns_per_cycle,
            ..Profile::default()
        }
    }

    /// Like `time`, for code that runs on every datagram or event: timing each call costs
    /// more than the call (two clock reads, each a system call), so one call in `SAMPLE_EVERY`
    /// is timed and counted that many times over.
    pub fn time_sampled<T>(p: Option<&Profile>, bucket: Bucket, f: impl FnOnce() -> T) -> T {
        match p {
            Some(prof) if prof.take_sample(bucket) => prof.time_short(bucket, SAMPLE_EVERY, f),
            _ => f(),
        }
    }

    /// Whether this call is the one in `SAMPLE_EVERY` to time (`time_sampled`, or an event
    /// whose nested buckets are all timed with `time_short`).
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

    /// Runs `f`, charging `scale` times its time to `bucket` (one sampled call standing for
    /// `scale` calls). For stretches of a microsecond or so, so timed with the cycle counter:
    /// a thread-clock read is a system call, and the kernel entry slows the stretch after it
    /// (it flushes what the CPU had warmed up) by as much as the stretch itself costs.
    pub fn time_short<T>(&self, bucket: Bucket, scale: u64, f: impl FnOnce() -> T) -> T {
        let start = cycles();
        let out = f();
        let spent = cycles()
            .saturating_sub(start)
            .saturating_sub(self.cycles_empty);
        let ns = (spent as f64 * self.ns_per_cycle) as u64;
        // The counter runs on while the thread is preempted; a stretch this long was (a
        // microsecond-sized one scaled up would swamp the split), so the sample is dropped.
        if ns < SHORT_STRETCH_MAX_NS {
            self.account(bucket, ns * scale);
        }
        out
    }

    /// Runs `f`, charging its CPU time (by the thread clock: for long stretches, whole
    /// phases) to `bucket` when profiling.
    pub fn time<T>(p: Option<&Profile>, bucket: Bucket, f: impl FnOnce() -> T) -> T {
        let Some(prof) = p else { return f() };
        let start = thread_cpu_ns();
        let out = f();
        let spent = thread_cpu_ns().saturating_sub(start);
        prof.account(bucket, spent.saturating_sub(prof.clock_ns));
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
            Bucket::Disk => &p.disk_ns,
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
            disk_ns: load(&self.disk_ns),
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
    fn short_stretches_are_timed_by_the_calibrated_cycle_counter() {
        let p = Profile::calibrated();
        assert!(
            p.ns_per_cycle > 0.05 && p.ns_per_cycle < 5.0,
            "a counter between 0.2 and 20 GHz: {} ns per cycle",
            p.ns_per_cycle
        );
        let work = || std::hint::black_box((0..20_000u64).map(|i| i ^ 7).sum::<u64>());
        // Twenty stretches: a preempted one is dropped, not all twenty.
        for _ in 0..20 {
            p.time_short(Bucket::Disk, 1, work);
        }
        let disk_ns = p.split(u64::MAX).disk_ns;
        assert!(
            disk_ns > 0 && disk_ns < 20 * SHORT_STRETCH_MAX_NS,
            "{disk_ns}"
        );
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
