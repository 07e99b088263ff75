//! KV version 2: versioned secrets with metadata, as Vault's `kv-v2` plugin.
//!
//! Storage under the mount's prefix:
//! - `config`: [`Config`] (mount-wide `max_versions`, `cas_required`,
//!   `delete_version_after`);
//! - `metadata/<path>`: [`KeyMetadata`], also what LIST walks;
//! - `versions/<sha256(path)>/<version, 20 digits>`: one version's data. Hashing
//!   the path keeps the versions of `a` apart from those of `a/b`.
//!
//! Writes to one path are serialized by a striped lock, so check-and-set holds
//! under concurrency.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use coffer_protocols::{ErrorCode, LogicalResponse, Operation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{list_prefix, secret_path};
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::barrier::Barrier;
use crate::crypto;
use crate::duration;
use crate::locks::Stripes;
use crate::mounts::MountEntry;

/// Versions kept when neither the key nor the mount sets `max_versions`.
pub const DEFAULT_MAX_VERSIONS: u64 = 10;
/// Vault's limits on custom metadata.
const CUSTOM_METADATA_MAX_KEYS: usize = 64;
const CUSTOM_METADATA_MAX_KEY_LEN: usize = 128;
const CUSTOM_METADATA_MAX_VALUE_LEN: usize = 512;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Config {
    pub max_versions: u64,
    pub cas_required: bool,
    pub delete_version_after: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionMetadata {
    /// Unix nanoseconds.
    pub created_time: u64,
    /// Unix nanoseconds; the version reads as deleted from then on.
    pub deletion_time: Option<u64>,
    pub destroyed: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyMetadata {
    pub versions: BTreeMap<u64, VersionMetadata>,
    pub current_version: u64,
    pub oldest_version: u64,
    pub max_versions: u64,
    pub cas_required: bool,
    pub delete_version_after: u64,
    pub custom_metadata: BTreeMap<String, String>,
    pub created_time: u64,
    pub updated_time: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct VersionData {
    data: Map<String, Value>,
}

use crate::clock::now_nanos;

fn format_time(nanos: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(nanos)).to_string()
}

impl VersionMetadata {
    fn is_deleted_at(&self, now: u64) -> bool {
        self.deletion_time.is_some_and(|deletion| deletion <= now)
    }

    /// Built field by field: `json!` would serialize each value again.
    fn to_json(&self, version: u64, custom: &BTreeMap<String, String>) -> Value {
        let mut json = Map::new();
        json.insert(
            "created_time".to_owned(),
            Value::String(format_time(self.created_time)),
        );
        json.insert("custom_metadata".to_owned(), custom_json(custom));
        json.insert(
            "deletion_time".to_owned(),
            Value::String(self.deletion_time.map(format_time).unwrap_or_default()),
        );
        json.insert("destroyed".to_owned(), Value::Bool(self.destroyed));
        json.insert("version".to_owned(), Value::from(version));
        Value::Object(json)
    }
}

fn custom_json(custom: &BTreeMap<String, String>) -> Value {
    if custom.is_empty() {
        Value::Null
    } else {
        json!(custom)
    }
}

pub struct KvV2<'a> {
    pub barrier: &'a Barrier,
    pub mount: &'a MountEntry,
    pub locks: &'a Stripes,
    pub cache: &'a MetadataCache,
}

/// Key metadata (version numbers, times, custom metadata: nothing secret) kept
/// parsed for reads, by storage key (see [`crate::cache`]). Writes never use
/// it: check-and-set reads storage under the path's lock.
pub type MetadataCache = crate::cache::Parsed<KeyMetadata>;

impl KvV2<'_> {
    fn metadata_key(&self, path: &str) -> String {
        format!("{}metadata/{path}", self.mount.data_prefix())
    }

    fn version_key(&self, path: &str, version: u64) -> String {
        format!(
            "{}versions/{}/{version:020}",
            self.mount.data_prefix(),
            crypto::sha256_hex(path.as_bytes())
        )
    }

    fn versions_prefix(&self, path: &str) -> String {
        format!(
            "{}versions/{}/",
            self.mount.data_prefix(),
            crypto::sha256_hex(path.as_bytes())
        )
    }

    fn config_key(&self) -> String {
        format!("{}config", self.mount.data_prefix())
    }

    fn config(&self) -> ApiResult<Config> {
        Ok(self
            .barrier
            .get_json(&self.config_key())?
            .unwrap_or_default())
    }

    fn metadata(&self, path: &str) -> ApiResult<Option<KeyMetadata>> {
        Ok(self.barrier.get_json(&self.metadata_key(path))?)
    }

    /// The metadata for a read: parsed once, until a write touches it.
    fn cached_metadata(&self, path: &str) -> ApiResult<Option<std::sync::Arc<KeyMetadata>>> {
        let key = self.metadata_key(path);
        self.cache
            .get_or_load(&key, || self.barrier.get_json::<KeyMetadata>(&key))
            .map_err(Into::into)
    }

    /// Whether a write updates (true) or creates (false): Vault's existence check
    /// for `data/` and `metadata/` is "does the key have metadata".
    pub fn exists(&self, path: &str) -> ApiResult<bool> {
        let (section, rest) = split_section(path);
        match section {
            "data" | "metadata" if !rest.is_empty() => Ok(self.metadata(rest)?.is_some()),
            _ => Ok(true),
        }
    }

    pub async fn handle(
        &self,
        operation: Operation,
        path: &str,
        data: &Map<String, Value>,
    ) -> ApiResult<Reply> {
        let (section, rest) = split_section(path);
        let unsupported = || ApiError::unsupported(path, operation.as_str());
        match (section, operation) {
            ("config", Operation::Read) if rest.is_empty() => self.read_config(),
            ("config", Operation::Write) if rest.is_empty() => self.write_config(data).await,
            ("data", Operation::Read) => self.read(secret_path(rest)?, data),
            ("data", Operation::Write) => self.write(secret_path(rest)?, data).await,
            ("data", Operation::Patch) => self.patch(secret_path(rest)?, data).await,
            ("data", Operation::Delete) => self.delete_latest(secret_path(rest)?).await,
            ("delete", Operation::Write) => {
                self.mark_versions(secret_path(rest)?, data, Mark::Delete)
                    .await
            }
            ("undelete", Operation::Write) => {
                self.mark_versions(secret_path(rest)?, data, Mark::Undelete)
                    .await
            }
            ("destroy", Operation::Write) => {
                self.mark_versions(secret_path(rest)?, data, Mark::Destroy)
                    .await
            }
            ("metadata", Operation::List) | ("data", Operation::List) => {
                Ok(Reply::List(self.barrier.list(&format!(
                    "{}metadata/{}",
                    self.mount.data_prefix(),
                    list_prefix(rest)
                ))?))
            }
            ("metadata", Operation::Read) => self.read_metadata(secret_path(rest)?),
            ("metadata", Operation::Write) => {
                self.write_metadata(secret_path(rest)?, data, false).await
            }
            ("metadata", Operation::Patch) => {
                self.write_metadata(secret_path(rest)?, data, true).await
            }
            ("metadata", Operation::Delete) => self.delete_metadata(secret_path(rest)?).await,
            ("subkeys", Operation::Read) => self.subkeys(secret_path(rest)?, data),
            ("config" | "delete" | "undelete" | "destroy" | "subkeys", _) => Err(unsupported()),
            _ => Err(ApiError::no_route(&format!("{}{path}", self.mount.path))),
        }
    }

    fn read_config(&self) -> ApiResult<Reply> {
        let config = self.config()?;
        Ok(Reply::data(json!({
            "cas_required": config.cas_required,
            "delete_version_after": duration::format_go(config.delete_version_after),
            "max_versions": config.max_versions,
        })))
    }

    async fn write_config(&self, data: &Map<String, Value>) -> ApiResult<Reply> {
        let fields = Fields::new(data);
        fields.only(&["max_versions", "cas_required", "delete_version_after"])?;
        let mut config = self.config()?;
        if let Some(max_versions) = fields.u64("max_versions")? {
            config.max_versions = max_versions;
        }
        if let Some(cas_required) = fields.bool("cas_required")? {
            config.cas_required = cas_required;
        }
        if let Some(after) = fields.duration("delete_version_after")? {
            config.delete_version_after = after;
        }
        self.barrier.put_json(&self.config_key(), &config).await?;
        Ok(Reply::NoContent)
    }

    /// The version a read asks for (`?version=N`, 0 or absent for the latest).
    fn requested_version(data: &Map<String, Value>, metadata: &KeyMetadata) -> ApiResult<u64> {
        match Fields::new(data).u64("version")? {
            Some(0) | None => Ok(metadata.current_version),
            Some(version) => Ok(version),
        }
    }

    /// The data of a live version, or the 404 Vault gives for a missing, deleted or
    /// destroyed one (the latter two still carry `data.metadata`).
    /// The live version asked for; `for_write` reads the metadata from storage
    /// (the caller holds the path's lock), reads may use the cache.
    fn live_version(
        &self,
        path: &str,
        data: &Map<String, Value>,
        for_write: bool,
    ) -> ApiResult<(std::sync::Arc<KeyMetadata>, u64, Map<String, Value>)> {
        let metadata = if for_write {
            self.metadata(path)?.map(std::sync::Arc::new)
        } else {
            self.cached_metadata(path)?
        }
        .ok_or_else(ApiError::not_found)?;
        let version = Self::requested_version(data, &metadata)?;
        let version_metadata = metadata
            .versions
            .get(&version)
            .ok_or_else(ApiError::not_found)?;
        if version_metadata.destroyed || version_metadata.is_deleted_at(now_nanos()) {
            let envelope = LogicalResponse::with_data(
                json!({
                    "data": null,
                    "metadata": version_metadata.to_json(version, &metadata.custom_metadata),
                })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            );
            return Err(ApiError {
                code: ErrorCode::NotFound,
                messages: Vec::new(),
                data: Some(Box::new(envelope)),
            });
        }
        let stored: VersionData = self
            .barrier
            .get_json(&self.version_key(path, version))?
            .ok_or_else(ApiError::not_found)?;
        Ok((metadata, version, stored.data))
    }

    fn read(&self, path: &str, data: &Map<String, Value>) -> ApiResult<Reply> {
        let (metadata, version, secret) = self.live_version(path, data, false)?;
        let version_metadata = metadata
            .versions
            .get(&version)
            .map(|meta| meta.to_json(version, &metadata.custom_metadata))
            .unwrap_or(Value::Null);
        // The secret moves into the reply: `json!` would copy it value by value.
        let mut body = Map::new();
        body.insert("data".to_owned(), Value::Object(secret));
        body.insert("metadata".to_owned(), version_metadata);
        Ok(Reply::data(Value::Object(body)))
    }

    async fn write(&self, path: &str, data: &Map<String, Value>) -> ApiResult<Reply> {
        let (secret, cas) = write_body(data)?;
        let _guard = self.locks.lock(&self.metadata_key(path)).await;
        self.store_version(path, secret, cas).await
    }

    async fn patch(&self, path: &str, data: &Map<String, Value>) -> ApiResult<Reply> {
        let (patch, cas) = write_body(data)?;
        let _guard = self.locks.lock(&self.metadata_key(path)).await;
        let (_, _, mut current) = self.live_version(path, &Map::new(), true)?;
        merge_patch(&mut current, &patch);
        self.store_version(path, current, cas).await
    }

    /// Writes `secret` as the next version; the caller holds the path's lock.
    async fn store_version(
        &self,
        path: &str,
        secret: Map<String, Value>,
        cas: Option<u64>,
    ) -> ApiResult<Reply> {
        let config = self.config()?;
        let now = now_nanos();
        let mut metadata = self.metadata(path)?.unwrap_or_else(|| KeyMetadata {
            created_time: now,
            ..KeyMetadata::default()
        });
        match cas {
            Some(expected) if expected != metadata.current_version => {
                return Err(ApiError::invalid(
                    "check-and-set parameter did not match the current version",
                ));
            }
            None if metadata.cas_required || config.cas_required => {
                return Err(ApiError::invalid(
                    "check-and-set parameter required for this call",
                ));
            }
            _ => {}
        }
        let version = metadata.current_version + 1;
        let delete_after = effective_delete_after(&metadata, &config);
        let version_metadata = VersionMetadata {
            created_time: now,
            deletion_time: (delete_after > 0)
                .then(|| now.saturating_add(delete_after.saturating_mul(1_000_000_000))),
            destroyed: false,
        };
        metadata.versions.insert(version, version_metadata.clone());
        metadata.current_version = version;
        crate::changes::set_version(version);
        metadata.updated_time = now;

        let mut batch = self.barrier.batch();
        batch.put_json(
            &self.version_key(path, version),
            &VersionData { data: secret },
        )?;
        let keep = effective_max_versions(&metadata, &config);
        while metadata.versions.len() as u64 > keep {
            let Some((&oldest, _)) = metadata.versions.iter().next() else {
                break;
            };
            metadata.versions.remove(&oldest);
            batch.delete(&self.version_key(path, oldest));
        }
        metadata.oldest_version = metadata.versions.keys().next().copied().unwrap_or(0);
        batch.put_json(&self.metadata_key(path), &metadata)?;
        self.barrier.commit(batch).await?;
        Ok(Reply::data(
            version_metadata.to_json(version, &metadata.custom_metadata),
        ))
    }

    async fn delete_latest(&self, path: &str) -> ApiResult<Reply> {
        let _guard = self.locks.lock(&self.metadata_key(path)).await;
        let Some(mut metadata) = self.metadata(path)? else {
            return Ok(Reply::NoContent);
        };
        let now = now_nanos();
        let current = metadata.current_version;
        if let Some(version) = metadata.versions.get_mut(&current)
            && !version.destroyed
            && !version.is_deleted_at(now)
        {
            version.deletion_time = Some(now);
            self.barrier
                .put_json(&self.metadata_key(path), &metadata)
                .await?;
        }
        Ok(Reply::NoContent)
    }

    async fn mark_versions(
        &self,
        path: &str,
        data: &Map<String, Value>,
        mark: Mark,
    ) -> ApiResult<Reply> {
        let fields = Fields::new(data);
        fields.only(&["versions"])?;
        let versions = fields
            .u64_list("versions")?
            .filter(|versions| !versions.is_empty())
            .ok_or_else(|| ApiError::invalid("no version number provided"))?;
        let _guard = self.locks.lock(&self.metadata_key(path)).await;
        let Some(mut metadata) = self.metadata(path)? else {
            return Ok(Reply::NoContent);
        };
        let now = now_nanos();
        let mut batch = self.barrier.batch();
        for number in versions {
            let Some(version) = metadata.versions.get_mut(&number) else {
                continue;
            };
            match mark {
                Mark::Delete if !version.destroyed && !version.is_deleted_at(now) => {
                    version.deletion_time = Some(now)
                }
                Mark::Undelete if !version.destroyed => version.deletion_time = None,
                Mark::Destroy if !version.destroyed => {
                    version.destroyed = true;
                    batch.delete(&self.version_key(path, number));
                }
                _ => {}
            }
        }
        batch.put_json(&self.metadata_key(path), &metadata)?;
        self.barrier.commit(batch).await?;
        Ok(Reply::NoContent)
    }

    fn read_metadata(&self, path: &str) -> ApiResult<Reply> {
        let metadata = self
            .cached_metadata(path)?
            .ok_or_else(ApiError::not_found)?;
        let versions: Map<String, Value> = metadata
            .versions
            .iter()
            .map(|(number, version)| {
                (
                    number.to_string(),
                    json!({
                        "created_time": format_time(version.created_time),
                        "deletion_time": version.deletion_time.map(format_time).unwrap_or_default(),
                        "destroyed": version.destroyed,
                    }),
                )
            })
            .collect();
        Ok(Reply::data(json!({
            "cas_required": metadata.cas_required,
            "created_time": format_time(metadata.created_time),
            "current_version": metadata.current_version,
            "custom_metadata": custom_json(&metadata.custom_metadata),
            "delete_version_after": duration::format_go(metadata.delete_version_after),
            "max_versions": metadata.max_versions,
            "oldest_version": metadata.oldest_version,
            "updated_time": format_time(metadata.updated_time),
            "versions": versions,
        })))
    }

    async fn write_metadata(
        &self,
        path: &str,
        data: &Map<String, Value>,
        patch: bool,
    ) -> ApiResult<Reply> {
        let fields = Fields::new(data);
        fields.only(&[
            "max_versions",
            "cas_required",
            "delete_version_after",
            "custom_metadata",
        ])?;
        let _guard = self.locks.lock(&self.metadata_key(path)).await;
        let now = now_nanos();
        let existing = self.metadata(path)?;
        if patch && existing.is_none() {
            return Err(ApiError::not_found());
        }
        let mut metadata = existing.unwrap_or_else(|| KeyMetadata {
            created_time: now,
            ..KeyMetadata::default()
        });
        if let Some(max_versions) = fields.u64("max_versions")? {
            metadata.max_versions = max_versions;
        }
        if let Some(cas_required) = fields.bool("cas_required")? {
            metadata.cas_required = cas_required;
        }
        if let Some(after) = fields.duration("delete_version_after")? {
            metadata.delete_version_after = after;
        }
        if patch {
            if let Some(changes) = fields.object("custom_metadata")? {
                for (key, value) in changes {
                    match value {
                        Value::Null => {
                            metadata.custom_metadata.remove(key);
                        }
                        Value::String(text) => {
                            metadata.custom_metadata.insert(key.clone(), text.clone());
                        }
                        _ => {
                            return Err(ApiError::invalid(
                                "invalid value for \"custom_metadata\": expected string values",
                            ));
                        }
                    }
                }
            }
        } else if let Some(custom) = fields.string_map("custom_metadata")? {
            metadata.custom_metadata = custom;
        }
        check_custom_metadata(&metadata.custom_metadata)?;
        metadata.updated_time = now;
        self.barrier
            .put_json(&self.metadata_key(path), &metadata)
            .await?;
        Ok(Reply::NoContent)
    }

    async fn delete_metadata(&self, path: &str) -> ApiResult<Reply> {
        let _guard = self.locks.lock(&self.metadata_key(path)).await;
        let mut batch = self.barrier.batch();
        batch.delete(&self.metadata_key(path));
        batch.delete_prefix(&self.versions_prefix(path));
        self.barrier.commit(batch).await?;
        Ok(Reply::NoContent)
    }

    fn subkeys(&self, path: &str, data: &Map<String, Value>) -> ApiResult<Reply> {
        let depth = Fields::new(data).u64("depth")?.unwrap_or(0);
        let (metadata, version, secret) = self.live_version(path, data, false)?;
        let version_metadata = metadata.versions.get(&version).cloned();
        Ok(Reply::data(json!({
            "subkeys": subkeys(&secret, depth, 1),
            "metadata": version_metadata
                .map(|meta| meta.to_json(version, &metadata.custom_metadata))
                .unwrap_or(Value::Null),
        })))
    }
}

#[derive(Clone, Copy)]
enum Mark {
    Delete,
    Undelete,
    Destroy,
}

/// The `data` object and the optional `options.cas` of a write or patch.
fn write_body(data: &Map<String, Value>) -> ApiResult<(Map<String, Value>, Option<u64>)> {
    let fields = Fields::new(data);
    fields.only(&["data", "options"])?;
    let secret = fields
        .object("data")?
        .ok_or_else(|| ApiError::invalid("no data provided"))?
        .clone();
    let cas = match fields.object("options")? {
        // A negative version matches none (Vault's answer to `cas=-1` is a
        // mismatch, not a malformed request).
        Some(options) if options.get("cas").is_some_and(is_negative) => Some(u64::MAX),
        Some(options) => Fields::new(options).u64("cas")?,
        None => None,
    };
    Ok((secret, cas))
}

fn is_negative(value: &Value) -> bool {
    match value {
        Value::Number(number) => number.as_i64().is_some_and(|number| number < 0),
        Value::String(text) => text.trim().parse::<i64>().is_ok_and(|number| number < 0),
        _ => false,
    }
}

/// `data/app/db` -> (`data`, `app/db`).
fn split_section(path: &str) -> (&str, &str) {
    path.split_once('/').unwrap_or((path, ""))
}

fn effective_max_versions(metadata: &KeyMetadata, config: &Config) -> u64 {
    if metadata.max_versions > 0 {
        metadata.max_versions
    } else if config.max_versions > 0 {
        config.max_versions
    } else {
        DEFAULT_MAX_VERSIONS
    }
}

/// The key's `delete_version_after` unless the mount's is shorter (Vault's rule).
fn effective_delete_after(metadata: &KeyMetadata, config: &Config) -> u64 {
    match (metadata.delete_version_after, config.delete_version_after) {
        (0, mount) => mount,
        (key, 0) => key,
        (key, mount) => key.min(mount),
    }
}

fn check_custom_metadata(custom: &BTreeMap<String, String>) -> ApiResult<()> {
    if custom.len() > CUSTOM_METADATA_MAX_KEYS {
        return Err(ApiError::invalid(format!(
            "custom_metadata may hold at most {CUSTOM_METADATA_MAX_KEYS} keys"
        )));
    }
    for (key, value) in custom {
        if key.is_empty() || key.len() > CUSTOM_METADATA_MAX_KEY_LEN {
            return Err(ApiError::invalid(format!(
                "custom_metadata keys must be 1 to {CUSTOM_METADATA_MAX_KEY_LEN} bytes"
            )));
        }
        if value.len() > CUSTOM_METADATA_MAX_VALUE_LEN {
            return Err(ApiError::invalid(format!(
                "custom_metadata values must be at most {CUSTOM_METADATA_MAX_VALUE_LEN} bytes"
            )));
        }
    }
    Ok(())
}

/// RFC 7386 JSON merge patch of objects: `null` removes a key, objects merge.
fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                let entry = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(existing) = entry {
                    merge_patch(existing, inner);
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

/// The secret's structure with every leaf replaced by null, down to `depth`
/// levels (0: no limit).
fn subkeys(object: &Map<String, Value>, depth: u64, level: u64) -> Value {
    Value::Object(
        object
            .iter()
            .map(|(key, value)| {
                let shape = match value {
                    Value::Object(inner) if depth == 0 || level < depth => {
                        subkeys(inner, depth, level + 1)
                    }
                    _ => Value::Null,
                };
                (key.clone(), shape)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": 4})
            .as_object()
            .cloned()
            .unwrap();
        let patch = json!({"a": null, "b": {"c": 9}, "f": [1]})
            .as_object()
            .cloned()
            .unwrap();
        merge_patch(&mut target, &patch);
        assert_eq!(
            Value::Object(target),
            json!({"b": {"c": 9, "d": 3}, "e": 4, "f": [1]})
        );
    }

    #[test]
    fn subkeys_hide_values() {
        let secret = json!({"a": "x", "b": {"c": "y", "d": {"e": 1}}})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(
            subkeys(&secret, 0, 1),
            json!({"a": null, "b": {"c": null, "d": {"e": null}}})
        );
        assert_eq!(subkeys(&secret, 1, 1), json!({"a": null, "b": null}));
    }

    #[test]
    fn effective_settings() {
        let metadata = KeyMetadata::default();
        let config = Config::default();
        assert_eq!(effective_max_versions(&metadata, &config), 10);
        let config = Config {
            max_versions: 3,
            delete_version_after: 60,
            ..Config::default()
        };
        assert_eq!(effective_max_versions(&metadata, &config), 3);
        let metadata = KeyMetadata {
            max_versions: 5,
            delete_version_after: 30,
            ..KeyMetadata::default()
        };
        assert_eq!(effective_max_versions(&metadata, &config), 5);
        assert_eq!(effective_delete_after(&metadata, &config), 30);
    }
}
