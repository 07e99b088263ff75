//! The `kv` secrets engine on the engine trait: one engine for both versions,
//! told apart by the mount's `version` option, and its `/secrets` view (a
//! secret is a folder of field files; folders list as LIST on their metadata
//! path would).

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_protocols::{ErrorCode, Operation};
use serde_json::{Map, Value};

use super::{Kv, v1, v2};
use crate::api::error::{ApiError, ApiResult};
use crate::api::reply::Reply;
use crate::barrier::Barrier;
use crate::engine::{BoxFuture, Environment, Files, Mount, Node, Requester, SecretEngine};
use crate::locks::Stripes;
use crate::mounts::{self, MountEntry};
use crate::policy::Acl;
use crate::policy::acl::Capability;

/// Serves every `kv` mount of an unsealed node.
pub struct KvEngine {
    barrier: Arc<Barrier>,
    locks: Stripes,
    /// KV v2 metadata parsed for reads; forgotten on every replicated write.
    metadata: v2::MetadataCache,
}

/// The registry's factory.
pub fn engine(environment: &Environment) -> Arc<dyn SecretEngine> {
    Arc::new(KvEngine {
        barrier: environment.barrier.clone(),
        locks: Stripes::new(),
        metadata: Default::default(),
    })
}

/// The KV version of a `kv` mount: 2 when its options say so, else 1.
pub fn version(entry: &MountEntry) -> u8 {
    match entry.options.get("version").map(String::as_str) {
        Some("2") => 2,
        _ => 1,
    }
}

impl KvEngine {
    fn of<'a>(&'a self, entry: &'a MountEntry) -> Kv<'a> {
        match version(entry) {
            2 => Kv::V2(v2::KvV2 {
                barrier: &self.barrier,
                mount: entry,
                locks: &self.locks,
                cache: &self.metadata,
            }),
            _ => Kv::V1(v1::KvV1 {
                barrier: &self.barrier,
                mount: entry,
            }),
        }
    }
}

impl SecretEngine for KvEngine {
    fn type_name(&self) -> &'static str {
        "kv"
    }

    fn configure(
        &self,
        requested: &str,
        mut options: BTreeMap<String, String>,
    ) -> Option<ApiResult<BTreeMap<String, String>>> {
        let version = match requested {
            "kv" | "generic" => options
                .get("version")
                .cloned()
                .unwrap_or_else(|| "1".into()),
            "kv-v2" => "2".into(),
            "kv-v1" => "1".into(),
            _ => return None,
        };
        if version != "1" && version != "2" {
            return Some(Err(ApiError::invalid("kv version must be 1 or 2")));
        }
        options.insert("version".into(), version);
        Some(Ok(options))
    }

    fn exists(&self, mount: &Mount<'_>, path: &str) -> ApiResult<bool> {
        self.of(mount.entry).exists(path)
    }

    fn handle<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        operation: Operation,
        path: &'a str,
        data: &'a Map<String, Value>,
        _requester: &'a Requester<'a>,
    ) -> BoxFuture<'a, ApiResult<Reply>> {
        Box::pin(async move { self.of(mount.entry).handle(operation, path, data).await })
    }

    fn observe(&self, key: &str) {
        if key.starts_with(mounts::SECRETS.data_prefix) {
            self.metadata.forget(key);
        }
    }

    fn forget_all(&self) {
        self.metadata.clear();
    }

    fn files(&self) -> Option<&dyn Files> {
        Some(self)
    }
}

/// KV paths of a secret and of its folder: (data path, metadata path) bases.
fn bases(entry: &MountEntry) -> (String, String) {
    if version(entry) == 2 {
        (
            format!("{}data/", entry.path),
            format!("{}metadata/", entry.path),
        )
    } else {
        (entry.path.clone(), entry.path.clone())
    }
}

fn has_access_below(acl: &Acl, entry: &MountEntry, folder: &str) -> bool {
    let (data, metadata) = bases(entry);
    acl.has_access_under(&format!("{data}{folder}"))
        || acl.has_access_under(&format!("{metadata}{folder}"))
}

impl Files for KvEngine {
    fn visible(&self, mount: &Mount<'_>, acl: &Acl) -> bool {
        acl.has_access_under(&mount.entry.path)
    }

    fn node<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        acl: &'a Acl,
        sub: &'a str,
    ) -> BoxFuture<'a, ApiResult<Node>> {
        Box::pin(async move {
            if sub.is_empty() {
                return if self.visible(mount, acl) {
                    Ok(Node::Folder)
                } else {
                    Err(ApiError::denied())
                };
            }
            let entry = mount.entry;
            let (data_base, _) = bases(entry);
            let read_path = format!("{data_base}{sub}");
            let readable = acl.check(&read_path, Capability::Read, &Map::new()).allowed;
            let below = has_access_below(acl, entry, &format!("{sub}/"));
            if !readable && !below {
                return Err(ApiError::denied());
            }
            let kv = self.of(entry);
            if readable && let Some(secret) = read_secret(&kv, entry, sub).await? {
                return Ok(Node::Secret {
                    read_path,
                    version: version(entry),
                    fields: secret.keys().cloned().collect(),
                });
            }
            if below && !list(&kv, entry, sub).await?.is_empty() {
                return Ok(Node::Folder);
            }
            Err(ApiError::not_found())
        })
    }

    fn children<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        acl: &'a Acl,
        sub: &'a str,
    ) -> BoxFuture<'a, ApiResult<Vec<String>>> {
        Box::pin(async move {
            let folder = if sub.is_empty() {
                String::new()
            } else {
                format!("{sub}/")
            };
            // Exactly what LIST on the folder's metadata path shows this
            // caller: `list` is needed there, and a deny there wins.
            let (_, metadata_base) = bases(mount.entry);
            let listed = format!("{metadata_base}{folder}");
            if !acl.check(&listed, Capability::List, &Map::new()).allowed {
                return Err(ApiError::denied());
            }
            list(&self.of(mount.entry), mount.entry, sub).await
        })
    }
}

/// The secret's data, or `None` if there is none (deleted, destroyed, absent).
async fn read_secret(
    kv: &Kv<'_>,
    entry: &MountEntry,
    sub: &str,
) -> ApiResult<Option<Map<String, Value>>> {
    let v2 = version(entry) == 2;
    let path = if v2 {
        format!("data/{sub}")
    } else {
        sub.to_owned()
    };
    let reply = match kv.handle(Operation::Read, &path, &Map::new()).await {
        Ok(reply) => reply,
        Err(error) if error.code == ErrorCode::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let data = match reply {
        Reply::Data(data) => data,
        Reply::Envelope(envelope) => envelope.data.unwrap_or_default(),
        _ => return Ok(None),
    };
    if !v2 {
        return Ok(Some(data));
    }
    Ok(match data.get("data") {
        Some(Value::Object(fields)) => Some(fields.clone()),
        _ => None,
    })
}

/// The names in the folder `sub` (no access check).
async fn list(kv: &Kv<'_>, entry: &MountEntry, sub: &str) -> ApiResult<Vec<String>> {
    let folder = if sub.is_empty() {
        String::new()
    } else {
        format!("{sub}/")
    };
    let path = if version(entry) == 2 {
        format!("metadata/{folder}")
    } else {
        folder
    };
    match kv.handle(Operation::List, &path, &Map::new()).await? {
        Reply::List(keys) => Ok(keys),
        _ => Ok(Vec::new()),
    }
}
