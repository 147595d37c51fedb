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

/// Ordinary one-line bugs of the kinds storage engineers write, planted by the harness's own
/// tests to prove each checker catches what it claims to (no incident, no scenario, no CLI
/// name: only with the `planted-bugs` feature, which only test builds enable).
#[cfg(feature = "planted-bugs")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Planted {
    /// Followers apply a delete to nothing (the ingest layer drops tombstones).
    FollowerDropsDeletes,
    /// The leader answers a read from its checkpoint, ignoring changes not yet checkpointed.
    ReadFromCheckpoint,
    /// Pending proposals outlive a lost leadership and are acknowledged by index alone: a
    /// proposal whose slot another leader's entry took is acknowledged as committed.
    AckOverwrittenProposal,
    /// Followers skip the session check: a retried client operation executes twice.
    FollowerIgnoresSessions,
    /// The leader acknowledges a write when proposed, before it commits.
    AckBeforeCommit,
    /// Raft grants a vote to a candidate whose log has the same last term but is shorter.
    VoteIgnoresLogLength,
    /// Page nonces restart from the same seed at every checkpoint (a per-checkpoint RNG).
    NonceRestartsPerCheckpoint,
    /// Raft messages go out before the fsync of the state they promise (vote grants, append
    /// acknowledgements): persist-before-send broken.
    SendsBeforeSync,
    /// A follower cuts its log after every append's entries even when they all match (a late
    /// or duplicated append then removes entries it already acknowledged).
    AppendTruncatesUnconditionally,
    /// A checkpoint or keystore put refused as a stale duplicate aborts the leader, whatever
    /// its leadership (the engine's behaviour before the fix of a latent bug).
    StalePutAborts,
    /// A checkpoint frees the blocks it replaces before it is published, not after: a crash in
    /// between leaves the published checkpoint pointing at freed blocks.
    FreesBeforePublish,
    /// Recovery trusts whatever decodes: the raft log is cut at the first bad record even when
    /// whole records follow (damage at rest treated like a torn write), and a log shorter than
    /// the synced commit is accepted. Synced entries silently disappear.
    CutsDamageLikeATornTail,
}

/// The set of knobs switched on for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Knobs {
    bugs: BTreeSet<KnownBug>,
    #[cfg(feature = "planted-bugs")]
    planted: BTreeSet<Planted>,
}

impl Knobs {
    pub fn new(bugs: impl IntoIterator<Item = KnownBug>) -> Self {
        Knobs {
            bugs: bugs.into_iter().collect(),
            ..Knobs::default()
        }
    }
    pub fn on(&self, bug: KnownBug) -> bool {
        self.bugs.contains(&bug)
    }
    pub fn iter(&self) -> impl Iterator<Item = KnownBug> + '_ {
        self.bugs.iter().copied()
    }
    /// With a planted bug (tests of the checkers only).
    #[cfg(feature = "planted-bugs")]
    pub fn with_planted(mut self, bug: Planted) -> Self {
        self.planted.insert(bug);
        self
    }
    /// Whether a planted bug is on; always false outside test builds.
    #[cfg(feature = "planted-bugs")]
    pub fn planted(&self, bug: Planted) -> bool {
        self.planted.contains(&bug)
    }
}

/// `knobs.planted(Planted::X)`, compiled to `false` without the `planted-bugs` feature.
macro_rules! planted {
    ($knobs:expr, $bug:ident) => {{
        #[cfg(feature = "planted-bugs")]
        let on = $knobs.planted($crate::knobs::Planted::$bug);
        #[cfg(not(feature = "planted-bugs"))]
        let on = {
            let _ = &$knobs;
            false
        };
        on
    }};
}
pub(crate) use planted;
