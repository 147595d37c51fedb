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
    }
}
