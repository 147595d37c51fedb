//! Failpoints: named, seeded, per-mille injection points in engine code (BUGGIFY style). The
//! harness owns the rates (scenarios and chaos switch them on and off while a run goes on);
//! each node incarnation draws from its own seeded stream, so a run stays reproducible.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A checkpoint's address-cookie packing sees a stale base LSN (incident 001's trigger).
pub const ADDR_PACK: &str = "addr-pack";
/// A page-service `put` fails before it is sent.
pub const PAGE_PUT: &str = "page-put";

/// The leader's keystore flush is slow (a loaded node): checkpoints published meanwhile carry
/// the previous keystore page (incident 000's window).
pub const KEYSTORE_FLUSH_SLOW: &str = "keystore-flush-slow";

/// A step-up drain worker is slow between batches (a loaded node): a forced drop has longer
/// to arrive in the middle of a table's copy (incident 002's window).
pub const DRAIN_SLOW: &str = "drain-slow";

/// Failpoints the engine has; scenarios naming any other are refused.
pub const IMPLEMENTED: [&str; 4] = [ADDR_PACK, PAGE_PUT, KEYSTORE_FLUSH_SLOW, DRAIN_SLOW];

/// Per-mille rate of each failpoint that is on, shared by the harness and every node.
pub type FailpointRates = Arc<Mutex<BTreeMap<String, u32>>>;

pub struct Failpoints {
    rates: FailpointRates,
    rng: Mutex<ChaCha8Rng>,
}

impl Failpoints {
    pub fn new(rates: FailpointRates, seed: u64) -> Self {
        Failpoints {
            rates,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// Whether the failpoint fires now. Draws only when it is on, so switching one failpoint
    /// does not reshuffle the others.
    pub fn hit(&self, name: &str) -> bool {
        let rate = self
            .rates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
            .unwrap_or(0);
        rate > 0
            && self
                .rng
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .gen_range(0..1000)
                < rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_mille_and_seeded() {
        let rates: FailpointRates = Default::default();
        let fp = Failpoints::new(rates.clone(), 7);
        assert!(!(0..1000).any(|_| fp.hit(ADDR_PACK)), "off by default");
        rates.lock().unwrap().insert(ADDR_PACK.into(), 250);
        let hits = (0..4000).filter(|_| fp.hit(ADDR_PACK)).count();
        assert!((800..1200).contains(&hits), "{hits}");
        let again = Failpoints::new(rates.clone(), 7);
        let a: Vec<bool> = (0..50).map(|_| again.hit(ADDR_PACK)).collect();
        let b = Failpoints::new(rates, 7);
        assert_eq!(a, (0..50).map(|_| b.hit(ADDR_PACK)).collect::<Vec<_>>());
    }
}
