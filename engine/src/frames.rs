//! Checksummed record framing shared by every append-only file the engine writes (the raft log,
//! the page service's block log): `len u32 | crc32 u32 | bincode payload`. A torn or corrupt
//! tail ends decoding; the caller learns how many bytes were valid and cuts the rest.

use serde::de::DeserializeOwned;
use serde::Serialize;

pub fn encode<T: Serialize>(out: &mut Vec<u8>, rec: &T) {
    let payload = bincode::serialize(rec).expect("records serialize");
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// Decodes records until the end or the first torn/corrupt one; returns them and the valid length.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> (Vec<T>, usize) {
    let mut recs = Vec::new();
    let mut pos = 0;
    while bytes.len() - pos >= 8 {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap());
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Ok(rec) = bincode::deserialize::<T>(payload) else {
            break;
        };
        recs.push(rec);
        pos += 8 + len;
    }
    (recs, pos)
}

/// Where the next whole, checksum-valid record starts after `from`, if any. A torn write leaves
/// nothing valid after its cut (it keeps a prefix of one append), so a valid record after a bad
/// one means the bad one was damaged at rest: media corruption, not a crash.
pub fn next_valid(bytes: &[u8], from: usize) -> Option<usize> {
    let frame_at = |p: usize| -> bool {
        let Some(head) = bytes.get(p..p + 8) else {
            return false;
        };
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().unwrap());
        len > 0
            && bytes
                .get(p + 8..p + 8 + len)
                .is_some_and(|payload| crc32fast::hash(payload) == crc)
    };
    // The damaged record's own length field is usually intact: try just past it first.
    if let Some(head) = bytes.get(from..from + 4) {
        let skip = from + 8 + u32::from_le_bytes(head.try_into().unwrap()) as usize;
        if frame_at(skip) {
            return Some(skip);
        }
    }
    (from + 1..bytes.len().saturating_sub(8)).find(|&p| frame_at(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_tail_ends_decoding_at_the_last_whole_record() {
        let mut buf = Vec::new();
        encode(&mut buf, &(1u32, "a".to_string()));
        let whole = buf.len();
        encode(&mut buf, &(2u32, "b".to_string()));
        buf.truncate(buf.len() - 1);
        let (recs, valid) = decode::<(u32, String)>(&buf);
        assert_eq!(recs, vec![(1, "a".to_string())]);
        assert_eq!(valid, whole);
        assert_eq!(
            next_valid(&buf, valid),
            None,
            "a torn tail has nothing valid after it"
        );
    }

    #[test]
    fn a_damaged_record_followed_by_whole_ones_is_told_from_a_torn_tail() {
        let mut buf = Vec::new();
        encode(&mut buf, &(1u32, "a".to_string()));
        let second = buf.len();
        encode(&mut buf, &(2u32, "b".to_string()));
        let third = buf.len();
        encode(&mut buf, &(3u32, "c".to_string()));
        // A flipped payload bit: the length field still leads to the next record.
        let mut flipped = buf.clone();
        flipped[second + 9] ^= 0x10;
        let (recs, valid) = decode::<(u32, String)>(&flipped);
        assert_eq!((recs.len(), valid), (1, second));
        assert_eq!(next_valid(&flipped, valid), Some(third));
        // A flipped length field: found by scanning.
        let mut bad_len = buf.clone();
        bad_len[second + 1] ^= 0x01;
        assert_eq!(next_valid(&bad_len, second), Some(third));
    }
}
