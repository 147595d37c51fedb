//! Nonce uniqueness, checked at every seal: under one key, a nonce seals one message only.
//! ChaCha20-Poly1305 with a reused nonce leaks the XOR of two plaintexts and lets an attacker
//! forge tags — while every page still opens, so no read-path check would ever notice.
//! It sees page seals with the data key; it does not see the KMS's or the keystore's wraps.

use std::collections::BTreeMap;

use engine::observe::Event;
use reports::{Violation, ViolationKind};

use super::record::{Online, Record};
use super::snapshot::node_name;
use super::violation;

#[derive(Default)]
pub struct Nonces {
    /// (key, nonce) -> (message digest, who sealed it first, when).
    seen: BTreeMap<(u64, [u8; 12]), (u64, String, u64)>,
    /// Seals checked (coverage).
    pub seals: u64,
    violations: Vec<Violation>,
}

impl Online for Nonces {
    fn record(&mut self, r: &Record<'_>) {
        let Event::Sealed {
            key,
            nonce,
            message,
        } = r.event
        else {
            return;
        };
        self.seals += 1;
        let name = node_name(r.node);
        match self.seen.get(&(*key, *nonce)) {
            Some((m, _, _)) if m == message => {} // the same message again: same ciphertext
            Some((_, first, at)) => {
                if self.violations.len() < 3 {
                    let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
                    self.violations.push(violation(
                        ViolationKind::NonceReuse,
                        Some(name),
                        r.at_ms(),
                        format!(
                            "nonce {hex} sealed a second, different page under key {key:016x} (first sealed by {first} at {}.{:03}s): the keystream is reused",
                            at / 1000,
                            at % 1000
                        ),
                    ));
                }
            }
            None => {
                self.seen
                    .insert((*key, *nonce), (*message, name, r.at_ms()));
            }
        }
    }

    fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(n: &mut Nonces, nonce: u8, message: u64) {
        let ev = Event::Sealed {
            key: 7,
            nonce: [nonce; 12],
            message,
        };
        n.record(&Record {
            at_us: 1000,
            node: 1,
            incarnation: 1,
            event: &ev,
        });
    }

    #[test]
    fn a_nonce_may_seal_one_message_only() {
        let mut n = Nonces::default();
        seal(&mut n, 1, 10);
        seal(&mut n, 2, 11);
        seal(&mut n, 1, 10); // the same page again
        assert!(n.take_violations().is_empty());
        seal(&mut n, 1, 12);
        let v = n.take_violations();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].kind, ViolationKind::NonceReuse);
        assert_eq!(n.seals, 4);
    }
}
