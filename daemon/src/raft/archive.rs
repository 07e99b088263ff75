//! Vault's snapshot archive, which the vault and bao CLIs check when they save
//! one: a gzip'd tar of `meta.json`, `state.bin`, `SHA256SUMS` (of those two)
//! and `SHA256SUMS.sealed`. `state.bin` is coffer's own snapshot
//! (`snapshot.rs`, already ciphertext with its own checksum); the sealed sums
//! are `SHA256SUMS` encrypted by the cluster's barrier, so a restore without
//! force knows the archive was made by this cluster and not changed since.

use std::io::{Read, Write};

use aws_lc_rs::digest;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde_json::json;

const META: &str = "meta.json";
const STATE: &str = "state.bin";
const SUMS: &str = "SHA256SUMS";
const SEALED_SUMS: &str = "SHA256SUMS.sealed";
/// What the barrier binds the sealed sums to.
pub const SEALED_SUMS_LABEL: &str = "snapshot/SHA256SUMS";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the snapshot archive is corrupt (its gzip checksum or structure does not match): {0}")]
    Corrupt(String),
    #[error("the snapshot archive holds an unexpected file {0:?}")]
    Unexpected(String),
    #[error("the snapshot archive lacks {0}")]
    Missing(&'static str),
    #[error("the snapshot's checksum does not match its SHA256SUMS: it is corrupt")]
    Checksum,
    #[error("the snapshot archive unpacks to more than {0} bytes")]
    TooLarge(u64),
}

/// Whether `bytes` look like an archive (gzip) rather than a bare coffer
/// snapshot, which older versions saved and restores still take.
pub fn is_archive(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes))
}

/// `SHA256SUMS` for `meta` and `state`, in `sha256sum`'s format.
fn sums_of(meta: &[u8], state: &[u8]) -> String {
    format!(
        "{}  {META}\n{}  {STATE}\n",
        sha256_hex(meta),
        sha256_hex(state)
    )
}

/// Packs `state` (a coffer snapshot taken at log `index`, `created` in Unix
/// seconds); `seal` encrypts the sums.
pub fn pack(
    state: &[u8],
    index: u64,
    created: u64,
    seal: impl FnOnce(&[u8]) -> std::io::Result<Vec<u8>>,
) -> std::io::Result<Vec<u8>> {
    let meta = serde_json::to_vec(&json!({
        "Version": 1,
        "ID": format!("coffer-{index}-{created}"),
        "Index": index,
        "Size": state.len(),
    }))
    .map_err(std::io::Error::other)?;
    let sums = sums_of(&meta, state);
    let sealed = seal(sums.as_bytes())?;
    // The state is ciphertext: compressing it would only cost time.
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::none()));
    for (name, data) in [
        (META, meta.as_slice()),
        (STATE, state),
        (SUMS, sums.as_bytes()),
        (SEALED_SUMS, sealed.as_slice()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(created);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, data)?;
    }
    let mut gzip = builder.into_inner()?;
    gzip.flush()?;
    gzip.finish()
}

/// What an archive holds, its `SHA256SUMS` checked.
#[derive(Debug)]
pub struct Unpacked {
    pub state: Vec<u8>,
    pub sums: Vec<u8>,
    /// Absent in archives made by a server that does not seal them.
    pub sealed_sums: Option<Vec<u8>>,
}

/// Unpacks an archive, reading at most `limit` bytes of content.
pub fn unpack(bytes: &[u8], limit: u64) -> Result<Unpacked, Error> {
    let corrupt = |error: std::io::Error| Error::Corrupt(error.to_string());
    let mut archive = tar::Archive::new(GzDecoder::new(bytes));
    let (mut meta, mut state, mut sums, mut sealed_sums) = (None, None, None, None);
    let mut budget = limit;
    for entry in archive.entries().map_err(corrupt)? {
        let entry = entry.map_err(corrupt)?;
        let name = entry
            .path()
            .map_err(corrupt)?
            .to_string_lossy()
            .into_owned();
        let slot = match name.as_str() {
            META => &mut meta,
            STATE => &mut state,
            SUMS => &mut sums,
            SEALED_SUMS => &mut sealed_sums,
            _ => return Err(Error::Unexpected(name.chars().take(64).collect())),
        };
        let size = entry.header().size().map_err(corrupt)?;
        if size > budget {
            return Err(Error::TooLarge(limit));
        }
        budget -= size;
        let mut data = Vec::with_capacity(size as usize);
        entry.take(size).read_to_end(&mut data).map_err(corrupt)?;
        *slot = Some(data);
    }
    // Read the gzip stream to its end, so its length and CRC are checked
    // (a cut-off archive may still hold every file whole).
    let mut rest = archive.into_inner().take(budget.saturating_add(1 << 16));
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(corrupt)?;
    if rest.limit() == 0 {
        return Err(Error::TooLarge(limit));
    }
    let meta = meta.ok_or(Error::Missing(META))?;
    let state = state.ok_or(Error::Missing(STATE))?;
    let sums_bytes = sums.ok_or(Error::Missing(SUMS))?;
    if sums_bytes != sums_of(&meta, &state).as_bytes() {
        return Err(Error::Checksum);
    }
    Ok(Unpacked {
        state,
        sums: sums_bytes,
        sealed_sums,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(state: &[u8]) -> Vec<u8> {
        pack(state, 7, 1_700_000_000, |sums| {
            Ok(sums.iter().rev().copied().collect())
        })
        .unwrap()
    }

    #[test]
    fn an_archive_holds_vaults_four_files_and_unpacks_to_its_state() {
        let state = b"COFFERSNAP1\nstate bytes".to_vec();
        let bytes = packed(&state);
        assert!(is_archive(&bytes));
        let mut names = Vec::new();
        let mut archive = tar::Archive::new(GzDecoder::new(bytes.as_slice()));
        for entry in archive.entries().unwrap() {
            names.push(entry.unwrap().path().unwrap().display().to_string());
        }
        assert_eq!(names, [META, STATE, SUMS, SEALED_SUMS]);
        let unpacked = unpack(&bytes, 1 << 20).unwrap();
        assert_eq!(unpacked.state, state);
        let sealed: Vec<u8> = unpacked.sums.iter().rev().copied().collect();
        assert_eq!(unpacked.sealed_sums, Some(sealed));
        assert!(
            String::from_utf8(unpacked.sums)
                .unwrap()
                .ends_with("  state.bin\n")
        );
    }

    #[test]
    fn damaged_archives_are_refused() {
        let bytes = packed(&[7u8; 4096]);
        let mut flipped = bytes.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 1;
        assert!(matches!(
            unpack(&flipped, 1 << 20),
            Err(Error::Corrupt(_) | Error::Checksum)
        ));
        assert!(unpack(&bytes[..bytes.len() - 50], 1 << 20).is_err());
        assert_eq!(unpack(&bytes, 1000).unwrap_err(), Error::TooLarge(1000));
        assert!(!is_archive(b"COFFERSNAP1\n"));
    }
}
