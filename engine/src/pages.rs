//! Pages of a stable table and their block format. A table's documents are split into a fixed
//! number of pages, each covering one contiguous range of the hashed key space. A page version
//! in the page service is either a full image or a delta over the previous version (`base_lsn`);
//! a page is read back by replaying its chain: the full image, then each delta in order.
//!
//! Blocks are sealed with the data key, so reading a chain back (verify, open, then
//! [`apply_image`]) is `keystore::rebuild`, one layer up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Log sequence number assigned by the page service: one global, increasing sequence.
pub type Lsn = u64;
pub type PageId = u16;

/// Pages per table. Few enough that a checkpoint writes a handful of blocks per table, enough
/// that most checkpoints write deltas of a few pages rather than whole tables.
pub const PAGES_PER_TABLE: PageId = 8;
/// A page chain is rewritten as one full image once it holds this many deltas.
pub const MAX_DELTAS: usize = 4;

pub type Docs = BTreeMap<String, Vec<u8>>;
/// Key changes since the previous page version: `None` deletes the key.
pub type Changes = BTreeMap<String, Option<Vec<u8>>>;

/// The page a key lives on: the top bits of its hash, so pages are ranges of the hashed key space.
pub fn page_of(key: &str) -> PageId {
    let bits = PAGES_PER_TABLE.trailing_zeros();
    debug_assert!(PAGES_PER_TABLE.is_power_of_two());
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) >> (64 - bits)) as PageId
}

/// What a block holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PageImage {
    Full(Docs),
    Delta(Changes),
}

impl PageImage {
    pub fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("page images serialize")
    }
    pub fn decode(bytes: &[u8]) -> Result<PageImage, PageError> {
        bincode::deserialize(bytes).map_err(|e| PageError::Undecodable(e.to_string()))
    }
}

/// The address cookie of one block, as stored in a table's root: enough to fetch and verify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cookie {
    pub page_id: PageId,
    pub lsn: Lsn,
    /// The version this one is a delta over; 0 for a full image.
    pub base_lsn: Lsn,
    pub size: u32,
    pub checksum: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("address cookie: lsn {lsn} not above base_lsn {base_lsn}")]
    LsnOrder { lsn: Lsn, base_lsn: Lsn },
    #[error("block {lsn}: checksum {found:08x}, cookie says {expected:08x}")]
    Checksum { lsn: Lsn, expected: u32, found: u32 },
    #[error("block {lsn}: size {found}, cookie says {expected}")]
    Size { lsn: Lsn, expected: u32, found: u32 },
    #[error("undecodable page image: {0}")]
    Undecodable(String),
    #[error("page chain must start with a full image (block {0} is a delta)")]
    ChainStart(Lsn),
}

/// Packs the address cookie of a block just written. Packing requires `lsn > base_lsn`: a delta
/// can only follow the version it is based on.
pub fn addr_pack(
    page_id: PageId,
    lsn: Lsn,
    base_lsn: Lsn,
    bytes: &[u8],
) -> Result<Cookie, PageError> {
    if lsn <= base_lsn {
        return Err(PageError::LsnOrder { lsn, base_lsn });
    }
    Ok(Cookie {
        page_id,
        lsn,
        base_lsn,
        size: bytes.len() as u32,
        checksum: crc32fast::hash(bytes),
    })
}

/// Verifies a fetched block's size and checksum against its cookie.
pub fn verify(cookie: &Cookie, bytes: &[u8]) -> Result<(), PageError> {
    if bytes.len() as u32 != cookie.size {
        return Err(PageError::Size {
            lsn: cookie.lsn,
            expected: cookie.size,
            found: bytes.len() as u32,
        });
    }
    let found = crc32fast::hash(bytes);
    if found != cookie.checksum {
        return Err(PageError::Checksum {
            lsn: cookie.lsn,
            expected: cookie.checksum,
            found,
        });
    }
    Ok(())
}

/// Applies one block's image on top of the page as of the block before it. The first block of
/// a chain (`lsn`) must be a full image.
pub fn apply_image(
    docs: &mut Docs,
    image: PageImage,
    first_of_chain: bool,
    lsn: Lsn,
) -> Result<(), PageError> {
    match image {
        PageImage::Full(d) => *docs = d,
        PageImage::Delta(_) if first_of_chain => return Err(PageError::ChainStart(lsn)),
        PageImage::Delta(changes) => {
            for (k, v) in changes {
                match v {
                    Some(v) => docs.insert(k, v),
                    None => docs.remove(&k),
                };
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(kv: &[(&str, &str)]) -> Docs {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn packing_requires_lsn_above_base() {
        let b = PageImage::Full(docs(&[("a", "1")])).encode();
        let c = addr_pack(3, 10, 0, &b).unwrap();
        assert_eq!(
            (c.page_id, c.lsn, c.base_lsn, c.size),
            (3, 10, 0, b.len() as u32)
        );
        assert_eq!(
            addr_pack(3, 10, 10, &b),
            Err(PageError::LsnOrder {
                lsn: 10,
                base_lsn: 10
            })
        );
        assert!(addr_pack(3, 9, 10, &b).is_err());
    }

    #[test]
    fn keys_spread_over_all_pages() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..200 {
            let p = page_of(&format!("k{i}"));
            assert!(p < PAGES_PER_TABLE);
            seen.insert(p);
        }
        assert_eq!(seen.len(), PAGES_PER_TABLE as usize);
    }
}
