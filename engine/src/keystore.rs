//! Encryption at rest: the key hierarchy and the keystore, as pure functions.
//!
//! Page images are sealed with the **data key** (ChaCha20-Poly1305). The data key is stored
//! wrapped by the **KEK**, and the KEK wrapped by a **CMK** version that only the KMS node holds.
//! A [`Keystore`] is that pair of wrapped keys with their versions and the timestamp of the
//! oplog entry that made it current. Rotations are oplog entries: a KEK rotation re-wraps the
//! same data key under a new KEK, a CMK rotation re-wraps the same KEK under a new CMK version,
//! so pages written before a rotation stay readable after it.
//!
//! Each node applies rotations to its in-memory keystore as it applies the log; the keystore is
//! persisted (as the keystore page of a checkpoint) only by a later leader checkpoint.
//! [`load_key`] refuses a persisted keystore older than the one the node has committed
//! (`StaleKeystore`): incident 000 turns on what a standby does with that error.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::pages::{apply_image, verify, Cookie, Docs, Lsn, PageError, PageId, PageImage};

pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub type KeyBytes = [u8; KEY_LEN];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Authentication failed: the wrong key, the wrong place (associated data) or tampering.
    #[error("AEAD open failed for {what}: wrong key or tampered data")]
    Decrypt { what: String },
    #[error("sealed {what} is {len} bytes, shorter than a nonce and tag")]
    Truncated { what: String, len: usize },
    #[error("unwrapped {what} is {len} bytes, not a {KEY_LEN}-byte key")]
    KeyLength { what: String, len: usize },
    #[error(
        "StaleKeystore: persisted keystore timestamp {persisted_ts} is behind last committed \
         timestamp {committed_ts}"
    )]
    StaleKeystore {
        persisted_ts: u64,
        committed_ts: u64,
    },
    #[error("undecodable keystore page: {0}")]
    Undecodable(String),
}

/// Seals `plaintext` under `key` with `nonce`, binding `aad`: `nonce ‖ ciphertext ‖ tag`.
/// Callers draw nonces from their seeded streams, so no two seals under one key share one.
pub fn seal(key: &KeyBytes, nonce: [u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("ChaCha20-Poly1305 encrypts any message that fits in memory");
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Opens what [`seal`] produced. Any failure is an error, never garbage data.
pub fn open(key: &KeyBytes, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>, KeyError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(KeyError::Truncated {
            what: what.to_string(),
            len: sealed.len(),
        });
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| KeyError::Decrypt {
            what: what.to_string(),
        })
}

/// A fresh nonce from a seeded stream.
pub fn nonce(rng: &mut impl RngCore) -> [u8; NONCE_LEN] {
    let mut n = [0; NONCE_LEN];
    rng.fill_bytes(&mut n);
    n
}

/// A fresh key from a seeded stream.
pub fn fresh_key(rng: &mut impl RngCore) -> KeyBytes {
    let mut k = [0; KEY_LEN];
    rng.fill_bytes(&mut k);
    k
}

fn to_key(bytes: Vec<u8>, what: &str) -> Result<KeyBytes, KeyError> {
    let len = bytes.len();
    bytes.try_into().map_err(|_| KeyError::KeyLength {
        what: what.to_string(),
        len,
    })
}

/// What a KEK is bound to when the KMS wraps it: its own version.
pub fn kek_aad(kek_version: u32) -> Vec<u8> {
    format!("faultline kek v{kek_version}").into_bytes()
}

fn data_key_aad(kek_version: u32) -> Vec<u8> {
    format!("faultline data key under kek v{kek_version}").into_bytes()
}

/// Unwraps a KEK the KMS returned as plaintext bytes.
pub fn kek_from(bytes: Vec<u8>, kek_version: u32) -> Result<KeyBytes, KeyError> {
    to_key(bytes, &format!("kek v{kek_version}"))
}

/// The key that seals page images. A block is bound to its place (table, page, base LSN), so
/// a block served for the wrong page fails authentication as surely as a flipped bit.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey(KeyBytes);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)") // key material stays out of traces
    }
}

fn page_aad(table: &str, page_id: PageId, base_lsn: Lsn) -> Vec<u8> {
    format!("faultline page {table}/{page_id} base {base_lsn}").into_bytes()
}

/// A digest of one page seal's message (associated data and plaintext): two seals under one
/// (key, nonce) must carry the same message, or the keystream is reused.
pub fn page_digest(table: &str, page_id: PageId, base_lsn: Lsn, plaintext: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let aad = page_aad(table, page_id, base_lsn);
    h.update(&(aad.len() as u64).to_le_bytes());
    h.update(&aad);
    h.update(plaintext);
    h.digest()
}

impl DataKey {
    pub fn new(bytes: KeyBytes) -> Self {
        DataKey(bytes)
    }
    /// Names the key in observations without revealing it.
    pub fn fingerprint(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&self.0)
    }
    pub fn seal_page(
        &self,
        table: &str,
        page_id: PageId,
        base_lsn: Lsn,
        plaintext: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Vec<u8> {
        seal(
            &self.0,
            nonce,
            &page_aad(table, page_id, base_lsn),
            plaintext,
        )
    }
    pub fn open_page(
        &self,
        table: &str,
        cookie: &Cookie,
        sealed: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        open(
            &self.0,
            &page_aad(table, cookie.page_id, cookie.base_lsn),
            sealed,
            &format!("block {} of {table} page {}", cookie.lsn, cookie.page_id),
        )
    }
}

/// Why a block of a page chain does not load: its format (size, checksum, image, chain order)
/// or its seal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error(transparent)]
    Page(#[from] PageError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Verifies one block of `table`'s page chain, opens it with the data key, and applies it on
/// top of the page as of the block before it. The first block of a chain must be a full image.
pub fn apply_block(
    docs: &mut Docs,
    table: &str,
    cookie: &Cookie,
    bytes: &[u8],
    first_of_chain: bool,
    key: &DataKey,
) -> Result<(), BlockError> {
    verify(cookie, bytes)?;
    let plain = key.open_page(table, cookie, bytes)?;
    apply_image(docs, PageImage::decode(&plain)?, first_of_chain, cookie.lsn)?;
    Ok(())
}

/// Rebuilds a page of `table` from its chain of (cookie, block bytes), oldest first.
pub fn rebuild(
    table: &str,
    chain: &[(Cookie, Vec<u8>)],
    key: &DataKey,
) -> Result<Docs, BlockError> {
    let mut docs = Docs::new();
    for (i, (c, bytes)) in chain.iter().enumerate() {
        apply_block(&mut docs, table, c, bytes, i == 0, key)?;
    }
    Ok(docs)
}

/// A node's keystore: the wrapped keys, their versions, and the timestamp of the oplog entry
/// that made them current (0 for the keys the cluster was provisioned with).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keystore {
    pub ts: u64,
    pub kek_version: u32,
    pub cmk_version: u32,
    /// The KEK sealed by CMK `cmk_version` (only the KMS can open it).
    pub wrapped_kek: Vec<u8>,
    /// The data key sealed by the KEK.
    pub wrapped_data_key: Vec<u8>,
}

/// A rotation as it travels through the oplog: the new wrapped key material, prepared by the
/// leader (with the KMS) before it proposed the entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rotation {
    /// A new KEK (sealed by the current CMK) and the data key re-sealed under it.
    Kek {
        kek_version: u32,
        cmk_version: u32,
        wrapped_kek: Vec<u8>,
        wrapped_data_key: Vec<u8>,
    },
    /// The same KEK (version `kek_version`) sealed by a new CMK version.
    Cmk {
        kek_version: u32,
        cmk_version: u32,
        wrapped_kek: Vec<u8>,
    },
}

impl Rotation {
    pub fn summary(&self) -> String {
        match self {
            Rotation::Kek { kek_version, .. } => format!("rotate kek to v{kek_version}"),
            Rotation::Cmk { cmk_version, .. } => format!("rotate cmk to v{cmk_version}"),
        }
    }
}

impl Keystore {
    /// The keystore a cluster is provisioned with: a fresh KEK and data key from `rng`, the KEK
    /// wrapped by CMK version 1 (`wrap_kek` is the KMS doing it).
    pub fn genesis(
        rng: &mut impl RngCore,
        wrap_kek: impl FnOnce(&KeyBytes, &[u8]) -> Vec<u8>,
    ) -> Keystore {
        let kek = fresh_key(rng);
        let data_key = fresh_key(rng);
        Keystore {
            ts: 0,
            kek_version: 1,
            cmk_version: 1,
            wrapped_kek: wrap_kek(&kek, &kek_aad(1)),
            wrapped_data_key: seal(&kek, nonce(rng), &data_key_aad(1), &data_key),
        }
    }

    /// Applies a committed rotation at `ts`. A rotation prepared against an older keystore (two
    /// raced; the other committed first) does not fit and changes nothing: returns false.
    pub fn apply(&mut self, r: &Rotation, ts: u64) -> bool {
        match r {
            Rotation::Kek {
                kek_version,
                cmk_version,
                wrapped_kek,
                wrapped_data_key,
            } => {
                if *kek_version != self.kek_version + 1 || *cmk_version != self.cmk_version {
                    return false;
                }
                self.kek_version = *kek_version;
                self.wrapped_kek = wrapped_kek.clone();
                self.wrapped_data_key = wrapped_data_key.clone();
            }
            Rotation::Cmk {
                kek_version,
                cmk_version,
                wrapped_kek,
            } => {
                // Prepared for the KEK it wraps: after a KEK rotation it no longer fits.
                if *cmk_version != self.cmk_version + 1 || *kek_version != self.kek_version {
                    return false;
                }
                self.cmk_version = *cmk_version;
                self.wrapped_kek = wrapped_kek.clone();
            }
        }
        self.ts = ts;
        true
    }

    /// Opens the data key with the (KMS-unwrapped) KEK of this keystore.
    pub fn data_key(&self, kek: &KeyBytes) -> Result<DataKey, KeyError> {
        let what = format!("data key under kek v{}", self.kek_version);
        let bytes = open(
            kek,
            &data_key_aad(self.kek_version),
            &self.wrapped_data_key,
            &what,
        )?;
        to_key(bytes, &what).map(DataKey)
    }

    /// Prepares a KEK rotation to `new_kek`, which the KMS has wrapped under the current CMK
    /// (`wrapped_new_kek`): the data key, opened with the current `kek`, re-sealed under it.
    pub fn rotate_kek(
        &self,
        kek: &KeyBytes,
        new_kek: &KeyBytes,
        wrapped_new_kek: Vec<u8>,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Rotation, KeyError> {
        let data_key = self.data_key(kek)?;
        let v = self.kek_version + 1;
        Ok(Rotation::Kek {
            kek_version: v,
            cmk_version: self.cmk_version,
            wrapped_kek: wrapped_new_kek,
            wrapped_data_key: seal(new_kek, nonce, &data_key_aad(v), &data_key.0),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("keystores serialize")
    }
    pub fn decode(bytes: &[u8]) -> Result<Keystore, KeyError> {
        bincode::deserialize(bytes).map_err(|e| KeyError::Undecodable(e.to_string()))
    }

    pub fn summary(&self) -> String {
        format!(
            "kek v{} cmk v{} ts {}",
            self.kek_version, self.cmk_version, self.ts
        )
    }
}

/// Loads a persisted keystore (a checkpoint's keystore page) on a node whose committed
/// in-memory keystore is `committed`. A persisted keystore older than the committed one would
/// take the node's keys backwards: refused, before anything changes.
pub fn load_key(persisted: &Keystore, committed: &Keystore) -> Result<(), KeyError> {
    if persisted.ts < committed.ts {
        return Err(KeyError::StaleKeystore {
            persisted_ts: persisted.ts,
            committed_ts: committed.ts,
        });
    }
    Ok(())
}

/// Where a checkpoint's keystore page is, and the timestamp of the keystore it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeystoreRef {
    pub cookie: Cookie,
    pub ts: u64,
}
