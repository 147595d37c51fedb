//! The key-management service: holds the CMK versions and wraps or unwraps KEKs for the
//! replicas; key material never leaves it. [`Kms`] is the pure core; [`run`] serves it as its
//! own node, which the harness kills and restarts (callers retry, like any RPC). CMK versions
//! derive from the service's seed, as an HSM's keys survive a restart of the front end. Its
//! requests and results ([`KmsOp`], [`KmsResult`]) travel in the wire envelope, so they are
//! defined there.

use std::net::SocketAddr;
use std::sync::Arc;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::guard::guarded;
use crate::keystore::{fresh_key, nonce, open, seal, KeyBytes};
use crate::observe::{Event, Observer, StorageEvent};
use crate::raft::NodeId;
use crate::wire::{KmsOp, KmsRequest, KmsResult, Wire};

/// The node id the KMS reports events under.
pub const KMS_NODE: NodeId = 255;
/// CMK versions the service holds: 1..=MAX_CMK_VERSION.
pub const MAX_CMK_VERSION: u32 = 1_000;

/// The KMS's keys: every CMK version, derived from one secret seed.
#[derive(Clone)]
pub struct Kms {
    seed: u64,
}

impl Kms {
    pub fn new(seed: u64) -> Self {
        Kms { seed }
    }

    fn cmk(&self, version: u32) -> Option<KeyBytes> {
        if version == 0 || version > MAX_CMK_VERSION {
            return None;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ (version as u64).rotate_left(32));
        Some(fresh_key(&mut rng))
    }

    /// Executes one request; `rng` supplies the nonces of wraps.
    pub fn handle(&self, op: &KmsOp, rng: &mut impl RngCore) -> KmsResult {
        match op {
            KmsOp::Wrap {
                cmk_version,
                aad,
                plaintext,
            } => match self.cmk(*cmk_version) {
                Some(k) => KmsResult::Wrapped(seal(&k, nonce(rng), aad, plaintext)),
                None => KmsResult::Refused(format!("no cmk version {cmk_version}")),
            },
            KmsOp::Unwrap {
                cmk_version,
                aad,
                ciphertext,
            } => match self.cmk(*cmk_version) {
                Some(k) => match open(&k, aad, ciphertext, &format!("cmk v{cmk_version} unwrap")) {
                    Ok(p) => KmsResult::Unwrapped(p),
                    Err(e) => KmsResult::Refused(e.to_string()),
                },
                None => KmsResult::Refused(format!("no cmk version {cmk_version}")),
            },
        }
    }

    /// Wraps directly (provisioning and checkers, which stand where an operator would).
    pub fn wrap(
        &self,
        cmk_version: u32,
        aad: &[u8],
        plaintext: &[u8],
        rng: &mut impl RngCore,
    ) -> Vec<u8> {
        let op = KmsOp::Wrap {
            cmk_version,
            aad: aad.to_vec(),
            plaintext: plaintext.to_vec(),
        };
        match self.handle(&op, rng) {
            KmsResult::Wrapped(w) => w,
            other => panic!("provisioning wrap under cmk v{cmk_version} failed: {other:?}"),
        }
    }

    /// Unwraps directly (checkers).
    pub fn unwrap_key(
        &self,
        cmk_version: u32,
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, String> {
        let op = KmsOp::Unwrap {
            cmk_version,
            aad: aad.to_vec(),
            ciphertext: ciphertext.to_vec(),
        };
        match self.handle(&op, &mut rand::rngs::mock::StepRng::new(0, 1)) {
            KmsResult::Unwrapped(p) => Ok(p),
            KmsResult::Refused(why) => Err(why),
            KmsResult::Wrapped(_) => unreachable!("an unwrap answers with a key"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct KmsConfig {
    pub addr: SocketAddr,
    /// The service's secret: every CMK version derives from it.
    pub seed: u64,
    /// Seed of this incarnation's wrap nonces.
    pub nonce_seed: u64,
}

/// Starts a KMS incarnation and serves until the node is killed.
pub async fn run(cfg: KmsConfig, obs: Arc<dyn Observer>) {
    guarded(obs.clone(), KMS_NODE, run_inner(cfg, obs)).await;
    futures::future::pending::<()>().await
}

async fn run_inner(cfg: KmsConfig, obs: Arc<dyn Observer>) {
    let Some(ep) = crate::net::bind(&*obs, KMS_NODE, cfg.addr).await else {
        return;
    };
    obs.event(
        KMS_NODE,
        Event::Storage(StorageEvent::KmsStarted {
            cmk_versions: MAX_CMK_VERSION,
        }),
    );
    let kms = Kms::new(cfg.seed);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.nonce_seed);
    let request = |w| match w {
        Wire::Kms(req) => Some(req),
        _ => None,
    };
    crate::net::serve(&ep, &*obs, request, |req: KmsRequest| {
        let result = kms.handle(&req.op, &mut rng);
        let req_id = req.req_id;
        std::future::ready(Some(Wire::KmsReply { req_id, result }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_open_only_under_the_same_cmk_version_and_aad() {
        let kms = Kms::new(42);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let w = kms.wrap(3, b"kek v1", b"secret key bytes", &mut rng);
        assert_eq!(
            kms.unwrap_key(3, b"kek v1", &w).unwrap(),
            b"secret key bytes"
        );
        assert!(
            kms.unwrap_key(4, b"kek v1", &w).is_err(),
            "another cmk version"
        );
        assert!(kms.unwrap_key(3, b"kek v2", &w).is_err(), "another binding");
        assert!(
            Kms::new(43).unwrap_key(3, b"kek v1", &w).is_err(),
            "another kms"
        );
        assert!(kms
            .unwrap_key(0, b"kek v1", &w)
            .unwrap_err()
            .contains("no cmk version 0"));
        // The same seed serves the same keys after a restart.
        assert_eq!(
            Kms::new(42).unwrap_key(3, b"kek v1", &w).unwrap(),
            b"secret key bytes"
        );
    }
}
