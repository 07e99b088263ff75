//! The snapshot format, for Raft's own snapshots and for operators' save/restore:
//! the state machine's key-value pairs (ciphertext, exactly as stored) with the
//! Raft metadata they reflect, closed by a SHA-256 checksum so a damaged or
//! truncated file is refused before anything is changed.
//!
//! Layout: `MAGIC | meta length (u32 BE) | meta (JSON) | (key length (u32 BE) |
//! key | value length (u32 BE) | value)* | END (u32 0xffffffff) | SHA-256 of all
//! preceding bytes (32)`.

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 12] = b"COFFERSNAP1\n";
const END: u32 = u32::MAX;
const CHECKSUM_LEN: usize = 32;
/// No key or meta block is this large; a larger length means corruption.
const MAX_FIELD_LEN: usize = 1 << 30;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("not a coffer snapshot (bad header)")]
    Magic,
    #[error("the snapshot is truncated")]
    Truncated,
    #[error("the snapshot's checksum does not match: it is corrupt")]
    Checksum,
    #[error("the snapshot is malformed: {0}")]
    Malformed(&'static str),
}

/// What a snapshot's pairs reflect: opaque Raft metadata (JSON) written by the
/// state machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The Raft `SnapshotMeta`, as JSON (null in operator snapshots' consumers'
    /// eyes: restore ignores it and keeps the cluster's own membership).
    pub raft: serde_json::Value,
    /// Unix seconds when the snapshot was taken.
    pub created: u64,
}

/// Builds a snapshot from pairs given in any order.
pub struct Writer {
    buffer: Vec<u8>,
}

impl Writer {
    pub fn new(header: &Header) -> Writer {
        let meta = serde_json::to_vec(header).unwrap_or_default();
        let mut buffer = Vec::with_capacity(1024 + meta.len());
        buffer.extend_from_slice(MAGIC);
        buffer.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        buffer.extend_from_slice(&meta);
        Writer { buffer }
    }

    pub fn pair(&mut self, key: &[u8], value: &[u8]) {
        self.buffer
            .extend_from_slice(&(key.len() as u32).to_be_bytes());
        self.buffer.extend_from_slice(key);
        self.buffer
            .extend_from_slice(&(value.len() as u32).to_be_bytes());
        self.buffer.extend_from_slice(value);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buffer.extend_from_slice(&END.to_be_bytes());
        let checksum = digest::digest(&digest::SHA256, &self.buffer);
        self.buffer.extend_from_slice(checksum.as_ref());
        self.buffer
    }
}

/// A decoded snapshot: its header and pairs.
#[derive(Debug)]
pub struct Decoded {
    pub header: Header,
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn read_u32(bytes: &[u8], at: &mut usize) -> Result<u32, Error> {
    let field = bytes.get(*at..*at + 4).ok_or(Error::Truncated)?;
    *at += 4;
    Ok(u32::from_be_bytes([field[0], field[1], field[2], field[3]]))
}

fn read_field<'a>(bytes: &'a [u8], at: &mut usize) -> Result<&'a [u8], Error> {
    let length = read_u32(bytes, at)? as usize;
    if length > MAX_FIELD_LEN {
        return Err(Error::Malformed("a field is impossibly long"));
    }
    let field = bytes.get(*at..*at + length).ok_or(Error::Truncated)?;
    *at += length;
    Ok(field)
}

/// Checks and decodes a snapshot.
pub fn decode(bytes: &[u8]) -> Result<Decoded, Error> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Error::Magic);
    }
    if bytes.len() < MAGIC.len() + 8 + CHECKSUM_LEN {
        return Err(Error::Truncated);
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if digest::digest(&digest::SHA256, body).as_ref() != checksum {
        return Err(Error::Checksum);
    }
    let mut at = MAGIC.len();
    let meta = read_field(body, &mut at)?;
    let header: Header =
        serde_json::from_slice(meta).map_err(|_| Error::Malformed("the header is not JSON"))?;
    let mut pairs = Vec::new();
    loop {
        let length = read_u32(body, &mut at)?;
        if length == END {
            break;
        }
        at -= 4;
        let key = read_field(body, &mut at)?.to_vec();
        let value = read_field(body, &mut at)?.to_vec();
        pairs.push((key, value));
    }
    if at != body.len() {
        return Err(Error::Malformed("trailing bytes after the end marker"));
    }
    Ok(Decoded { header, pairs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut writer = Writer::new(&Header {
            raft: serde_json::json!({"last": 7}),
            created: 1,
        });
        writer.pair(b"core/keyring", b"\x01sealed");
        writer.pair(b"logical/a", b"");
        writer.finish()
    }

    #[test]
    fn round_trips() {
        let decoded = decode(&sample()).unwrap();
        assert_eq!(decoded.header.raft["last"], 7);
        assert_eq!(
            decoded.pairs,
            vec![
                (b"core/keyring".to_vec(), b"\x01sealed".to_vec()),
                (b"logical/a".to_vec(), Vec::new())
            ]
        );
    }

    #[test]
    fn damage_is_detected() {
        let good = sample();
        assert_eq!(decode(b"garbage").unwrap_err(), Error::Magic);
        assert_eq!(decode(&good[..20]).unwrap_err(), Error::Truncated);
        for index in [12, 20, good.len() / 2, good.len() - 40, good.len() - 1] {
            let mut bad = good.clone();
            bad[index] ^= 0x20;
            assert!(
                decode(&bad).is_err(),
                "flipped byte {index} was not detected"
            );
        }
        let mut extended = good[..good.len() - 32].to_vec();
        extended.extend_from_slice(b"xx");
        assert!(decode(&extended).is_err());
    }
}
