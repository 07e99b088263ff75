//! The mount table: which secrets engine serves which path prefix. Stored behind
//! the barrier at [`TABLE_PATH`]; each mount keeps its data under
//! `logical/<uuid>/`, so unmounting deletes one prefix and a remount elsewhere
//! never sees old data.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::barrier::{self, Barrier, Batch};
use crate::crypto;
use crate::tokens::now_seconds;

pub const TABLE_PATH: &str = "core/mounts";
/// Where every mount's data lives: `logical/<uuid>/`.
pub const DATA_PREFIX: &str = "logical/";

/// Paths that belong to the core and cannot be mounted over.
const RESERVED: [&str; 5] = ["sys/", "auth/", "cubbyhole/", "identity/", "audit/"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct MountConfig {
    /// Seconds; 0 means the system default.
    pub default_lease_ttl: u64,
    /// Seconds; 0 means the system default.
    pub max_lease_ttl: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountEntry {
    /// With a trailing slash: `secret/`.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    pub uuid: String,
    pub accessor: String,
    pub config: MountConfig,
    pub options: BTreeMap<String, String>,
    pub local: bool,
    pub seal_wrap: bool,
    pub created_time: u64,
}

impl MountEntry {
    /// Where this mount's data lives in storage.
    pub fn data_prefix(&self) -> String {
        format!("{DATA_PREFIX}{}/", self.uuid)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid mount path {0:?}: use letters, digits and '-', '_', '.', '/' segments")]
    InvalidPath(String),
    #[error("cannot mount at {0:?}: the path is reserved")]
    Reserved(String),
    #[error("path is already in use at {0}")]
    Conflict(String),
    #[error("no mount at {0:?}")]
    NotMounted(String),
    #[error(transparent)]
    Barrier(#[from] barrier::Error),
    #[error(transparent)]
    Random(#[from] crypto::RandomError),
}

pub struct MountTable {
    barrier: Arc<Barrier>,
    entries: RwLock<Arc<Vec<MountEntry>>>,
    changes: Mutex<()>,
}

/// Normalizes a mount path to `a/b/` form, refusing what cannot be one.
pub fn normalize_path(path: &str) -> Result<String, Error> {
    let trimmed = path.trim_matches('/');
    let valid = !trimmed.is_empty()
        && trimmed.len() <= 256
        && trimmed.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .chars()
                    .all(|character| character.is_ascii_alphanumeric() || "-_.".contains(character))
        });
    if valid {
        Ok(format!("{trimmed}/"))
    } else {
        Err(Error::InvalidPath(path.chars().take(64).collect()))
    }
}

impl MountTable {
    pub fn load(barrier: Arc<Barrier>) -> Result<Self, barrier::Error> {
        let entries: Vec<MountEntry> = barrier.get_json(TABLE_PATH)?.unwrap_or_default();
        Ok(MountTable {
            barrier,
            entries: RwLock::new(Arc::new(entries)),
            changes: Mutex::new(()),
        })
    }

    /// Re-reads the table from storage (another node changed it).
    pub fn reload(&self) -> Result<(), barrier::Error> {
        let entries: Vec<MountEntry> = self.barrier.get_json(TABLE_PATH)?.unwrap_or_default();
        self.replace(entries);
        Ok(())
    }

    /// Adds an empty table to a new cluster's first batch.
    pub fn add_empty(batch: &mut Batch) -> Result<(), barrier::Error> {
        batch.put_json(TABLE_PATH, &Vec::<MountEntry>::new())
    }

    pub fn entries(&self) -> Arc<Vec<MountEntry>> {
        self.entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The mount point and engine type serving `path`, without copying the entry
    /// (for audit entries).
    pub fn point_and_type(&self, path: &str) -> Option<(String, String)> {
        self.entries()
            .iter()
            .filter(|entry| {
                path.starts_with(entry.path.as_str()) || entry.path.trim_end_matches('/') == path
            })
            .max_by_key(|entry| entry.path.len())
            .map(|entry| (entry.path.clone(), entry.kind.clone()))
    }

    /// The mount serving `path` (longest prefix) and the path inside it. A request
    /// for the mount path without its slash (`secret`) resolves to the mount too.
    pub fn resolve(&self, path: &str) -> Option<(MountEntry, String)> {
        let entries = self.entries();
        entries
            .iter()
            .filter(|entry| {
                path.starts_with(entry.path.as_str()) || entry.path.trim_end_matches('/') == path
            })
            .max_by_key(|entry| entry.path.len())
            .map(|entry| {
                let rest = path.get(entry.path.len()..).unwrap_or("").to_owned();
                (entry.clone(), rest)
            })
    }

    pub fn get(&self, path: &str) -> Option<MountEntry> {
        self.entries()
            .iter()
            .find(|entry| entry.path == path)
            .cloned()
    }

    /// Mounts a new engine at `path` (already normalized).
    pub async fn mount(
        &self,
        path: String,
        kind: String,
        description: String,
        config: MountConfig,
        options: BTreeMap<String, String>,
    ) -> Result<MountEntry, Error> {
        let _guard = self.changes.lock().await;
        if RESERVED.iter().any(|reserved| path.starts_with(reserved)) {
            return Err(Error::Reserved(path));
        }
        let current = self.entries();
        if let Some(existing) = current
            .iter()
            .find(|entry| path.starts_with(entry.path.as_str()) || entry.path.starts_with(&path))
        {
            return Err(Error::Conflict(existing.path.clone()));
        }
        let uuid = uuid_v4()?;
        let entry = MountEntry {
            accessor: format!("{kind}_{}", &uuid[..8]),
            path,
            kind,
            description,
            uuid,
            config,
            options,
            local: false,
            seal_wrap: false,
            created_time: now_seconds(),
        };
        let mut next = current.as_ref().clone();
        next.push(entry.clone());
        self.save(next).await?;
        Ok(entry)
    }

    /// Removes the mount at `path` and deletes all of its data, atomically.
    pub async fn unmount(&self, path: &str) -> Result<MountEntry, Error> {
        let _guard = self.changes.lock().await;
        let current = self.entries();
        let removed = current
            .iter()
            .find(|entry| entry.path == path)
            .cloned()
            .ok_or_else(|| Error::NotMounted(path.into()))?;
        let next: Vec<MountEntry> = current
            .iter()
            .filter(|entry| entry.path != path)
            .cloned()
            .collect();
        let mut batch = self.barrier.batch();
        batch.put_json(TABLE_PATH, &next)?;
        batch.delete_prefix(&removed.data_prefix());
        self.barrier.commit(batch).await?;
        self.replace(next);
        Ok(removed)
    }

    /// Applies `change` to the mount at `path`.
    pub async fn update(
        &self,
        path: &str,
        change: impl FnOnce(&mut MountEntry),
    ) -> Result<MountEntry, Error> {
        let _guard = self.changes.lock().await;
        let mut next = self.entries().as_ref().clone();
        let entry = next
            .iter_mut()
            .find(|entry| entry.path == path)
            .ok_or_else(|| Error::NotMounted(path.into()))?;
        change(entry);
        let updated = entry.clone();
        self.save(next).await?;
        Ok(updated)
    }

    async fn save(&self, next: Vec<MountEntry>) -> Result<(), Error> {
        self.barrier.put_json(TABLE_PATH, &next).await?;
        self.replace(next);
        Ok(())
    }

    fn replace(&self, next: Vec<MountEntry>) {
        *self
            .entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(next);
    }
}

/// A random version-4 UUID from the system RNG.
pub fn uuid_v4() -> Result<String, crypto::RandomError> {
    let mut bytes = [0u8; 16];
    crypto::fill_random(&mut bytes)?;
    Ok(uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_normalized_and_checked() {
        assert_eq!(normalize_path("secret").unwrap(), "secret/");
        assert_eq!(normalize_path("/team/kv/").unwrap(), "team/kv/");
        for bad in ["", "/", "a//b", "a/../b", "a/./b", "a b", "a\0b", "é"] {
            assert!(normalize_path(bad).is_err(), "{bad:?}");
        }
    }
}
