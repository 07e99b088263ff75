//! The mount tables: which secrets engine serves which path prefix
//! ([`SECRETS`]), and which auth method serves which path under `auth/`
//! ([`AUTH`]). Each is stored behind the barrier; each mount keeps its data
//! under its own `<prefix><uuid>/`, so unmounting deletes one prefix and a
//! remount elsewhere never sees old data.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::barrier::{self, Barrier, Batch};
use crate::crypto;
use crate::tokens::now_seconds;

/// Where a table lives and what its mounts may be.
pub struct Layout {
    pub table_path: &'static str,
    /// Where every mount's data lives: `<data_prefix><uuid>/`.
    pub data_prefix: &'static str,
    /// Paths that belong to the core and cannot be mounted over.
    reserved: &'static [&'static str],
    /// Before the type in an accessor: `auth_userpass_1a2b3c4d`.
    accessor_prefix: &'static str,
}

impl Layout {
    /// Where the data of `entry`, a mount of this table, lives in storage.
    pub fn data_of(&self, entry: &MountEntry) -> String {
        format!("{}{}/", self.data_prefix, entry.uuid)
    }
}

/// The secrets engines' table; paths are request paths (`secret/`).
pub const SECRETS: Layout = Layout {
    table_path: "core/mounts",
    data_prefix: "logical/",
    reserved: &["sys/", "auth/", "cubbyhole/", "identity/", "audit/"],
    accessor_prefix: "",
};

/// The auth methods' table; paths are below `auth/` (`userpass/`). The token
/// store is built in at `token/`.
pub const AUTH: Layout = Layout {
    table_path: "core/auth",
    data_prefix: "auth/",
    reserved: &["token/"],
    accessor_prefix: "auth_",
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct MountConfig {
    /// Seconds; 0 means the system default.
    pub default_lease_ttl: u64,
    /// Seconds; 0 means the system default.
    pub max_lease_ttl: u64,
    /// An auth method's `user_lockout_config`; `None`: Vault's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_lockout: Option<crate::auth::lockout::LockoutConfig>,
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
    /// Where this secrets engine mount's data lives in storage.
    pub fn data_prefix(&self) -> String {
        SECRETS.data_of(self)
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
    layout: &'static Layout,
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
    /// The table of `layout` as stored (empty when it never was).
    pub fn load(layout: &'static Layout, barrier: Arc<Barrier>) -> Result<Self, barrier::Error> {
        let entries: Vec<MountEntry> = barrier.get_json(layout.table_path)?.unwrap_or_default();
        Ok(MountTable {
            layout,
            barrier,
            entries: RwLock::new(Arc::new(entries)),
            changes: Mutex::new(()),
        })
    }

    /// Re-reads the table from storage (another node changed it).
    pub fn reload(&self) -> Result<(), barrier::Error> {
        let entries: Vec<MountEntry> = self
            .barrier
            .get_json(self.layout.table_path)?
            .unwrap_or_default();
        self.replace(entries);
        Ok(())
    }

    /// Adds an empty table of `layout` to a new cluster's first batch.
    pub fn add_empty(layout: &Layout, batch: &mut Batch) -> Result<(), barrier::Error> {
        batch.put_json(layout.table_path, &Vec::<MountEntry>::new())
    }

    pub fn layout(&self) -> &'static Layout {
        self.layout
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
        let current = self.entries();
        self.check_free(&current, &path, None)?;
        let uuid = uuid_v4()?;
        let entry = MountEntry {
            accessor: format!("{}{kind}_{}", self.layout.accessor_prefix, &uuid[..8]),
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

    /// Moves the mount at `from` to `to` (both normalized). Only its path
    /// changes: its data stays under its uuid. `record` adds to the same
    /// command (the migration's status).
    pub async fn remount(
        &self,
        from: &str,
        to: String,
        record: impl FnOnce(&mut Batch) -> Result<(), barrier::Error>,
    ) -> Result<MountEntry, Error> {
        let _guard = self.changes.lock().await;
        let mut next = self.entries().as_ref().clone();
        self.check_free(&next, &to, Some(from))?;
        let entry = next
            .iter_mut()
            .find(|entry| entry.path == from)
            .ok_or_else(|| Error::NotMounted(from.into()))?;
        entry.path = to;
        let moved = entry.clone();
        let mut batch = self.barrier.batch();
        batch.put_json(self.layout.table_path, &next)?;
        record(&mut batch)?;
        self.barrier.commit(batch).await?;
        self.replace(next);
        Ok(moved)
    }

    /// Refuses `path` when it is reserved, or above or below a mount of
    /// `entries` other than `moving` (the mount a remount takes away).
    fn check_free(
        &self,
        entries: &[MountEntry],
        path: &str,
        moving: Option<&str>,
    ) -> Result<(), Error> {
        if self
            .layout
            .reserved
            .iter()
            .any(|reserved| path.starts_with(reserved))
        {
            return Err(Error::Reserved(path.to_owned()));
        }
        match entries.iter().find(|entry| {
            Some(entry.path.as_str()) != moving
                && (path.starts_with(entry.path.as_str()) || entry.path.starts_with(path))
        }) {
            Some(existing) => Err(Error::Conflict(existing.path.clone())),
            None => Ok(()),
        }
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
        batch.put_json(self.layout.table_path, &next)?;
        batch.delete_prefix(&self.layout.data_of(&removed));
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
        self.barrier.put_json(self.layout.table_path, &next).await?;
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
