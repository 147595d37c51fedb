//! Known-bug knobs: each restores the original faulty code path of one reference incident.
//! A knob never triggers a failure by itself; the failure happens only when the simulated
//! interleaving enters the race window.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KnownBug {
    /// Incident 000: pick-up treats `StaleKeystore` as an invariant ⇒ the standby aborts.
    StaleKeystoreAbort,
    /// Incident 001: `bytes_total` incremented before the address cookie is packed.
    BytesTotalLeak,
    /// Incident 002: drain pins the ingest table with an in-use count only.
    DropDrainRace,
    /// Incident 003: raft term and vote not persisted; truncation unguarded.
    VolatileRaftTerm,
}

impl KnownBug {
    pub const ALL: [KnownBug; 4] = [
        KnownBug::StaleKeystoreAbort,
        KnownBug::BytesTotalLeak,
        KnownBug::DropDrainRace,
        KnownBug::VolatileRaftTerm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KnownBug::StaleKeystoreAbort => "stale-keystore-abort",
            KnownBug::BytesTotalLeak => "bytes-total-leak",
            KnownBug::DropDrainRace => "drop-drain-race",
            KnownBug::VolatileRaftTerm => "volatile-raft-term",
        }
    }

    /// Whether the engine models this incident yet (a knob that changes nothing would let a
    /// "known-bug" scenario pass vacuously, so the harness refuses it).
    pub fn implemented(self) -> bool {
        // Every incident is modelled; kept so a future knob starts out refused.
        KnownBug::ALL.contains(&self)
    }
}

impl fmt::Display for KnownBug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KnownBug {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        KnownBug::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = KnownBug::ALL.iter().map(|b| b.name()).collect();
                format!(
                    "unknown known-bug knob `{s}` (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// The set of knobs switched on for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Knobs(BTreeSet<KnownBug>);

impl Knobs {
    pub fn new(bugs: impl IntoIterator<Item = KnownBug>) -> Self {
        Knobs(bugs.into_iter().collect())
    }
    pub fn on(&self, bug: KnownBug) -> bool {
        self.0.contains(&bug)
    }
    pub fn iter(&self) -> impl Iterator<Item = KnownBug> + '_ {
        self.0.iter().copied()
    }
}
