//! The test world's (time, node, text) trace: what its determinism tests compare. faultline's
//! own runs keep the harness's trace instead.

use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// Simulated microseconds since the runtime started.
    pub at_us: u64,
    /// Raft node id; 0 for the harness and clients.
    pub node: u64,
    pub what: String,
}

impl std::fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:>10.3}ms n{} {}", self.at_us as f64 / 1000.0, self.node, self.what)
    }
}

/// Shared, append-only. Every component of one run holds a clone.
#[derive(Debug, Clone, Default)]
pub struct Trace(Arc<Mutex<Vec<TraceEvent>>>);

/// Simulated time since the runtime started, in microseconds (0 outside a simulation).
pub fn now_us() -> u64 {
    madsim::time::TimeHandle::try_current().map(|h| h.elapsed().as_micros() as u64).unwrap_or(0)
}

impl Trace {
    pub fn record(&self, node: u64, what: impl Into<String>) {
        let ev = TraceEvent { at_us: now_us(), node, what: what.into() };
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(ev);
    }

    pub fn events(&self) -> Vec<TraceEvent> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// FNV-1a over every event's text: equal traces, equal hashes.
pub fn hash_events(events: &[TraceEvent]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for e in events {
        for b in e.to_string().bytes().chain(std::iter::once(b'\n')) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

/// The first index at which two traces differ, with both events (None if equal).
pub fn first_divergence(a: &[TraceEvent], b: &[TraceEvent]) -> Option<(usize, Option<TraceEvent>, Option<TraceEvent>)> {
    let n = a.len().max(b.len());
    (0..n).find(|&i| a.get(i) != b.get(i)).map(|i| (i, a.get(i).cloned(), b.get(i).cloned()))
}
