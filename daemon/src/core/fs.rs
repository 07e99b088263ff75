//! `sys/internal/fs/<path>`: what the `/secrets` filesystem may show its caller.
//!
//! The filesystem's paths are logical paths without KV v2's `data/` and
//! `metadata/`. READ describes one node (a folder, a KV secret and its field
//! names, a dynamic or static credential) with the logical path to read for its
//! content; LIST names a mount's folders as LIST on their metadata path would
//! (`list` needed, deny wins), and above mounts the mounts the caller may use.
//! As everywhere else, a path the caller has no access under answers 403 whether
//! it exists or not, and 404 means "permitted, but nothing there". Values never
//! travel through here: the filesystem reads them at open, through the ordinary
//! (audited, authorized) read of `read_path`.

use coffer_protocols::Operation;
use serde_json::{Map, Value, json};

use super::{Caller, Routed, Unsealed};
use crate::api::error::{ApiError, ApiResult};
use crate::api::reply::Reply;
use crate::kv::Kv;
use crate::mounts::MountEntry;
use crate::policy::acl::Capability;

/// A mount the filesystem shows, and its view of a path inside it.
enum Place {
    /// The root, or a folder made by the first segments of nested mount paths.
    Above(String),
    Kv(MountEntry, String),
    Database(MountEntry, String),
}

pub(super) async fn route(
    unsealed: &Unsealed,
    caller: &Caller,
    operation: Operation,
    path: &str,
    data: &Map<String, Value>,
) -> ApiResult<Routed> {
    let path = path.trim_matches('/');
    let place = locate(unsealed, path);
    let reply = match operation {
        Operation::Read => Reply::data(describe(unsealed, caller, place, data).await?),
        Operation::List => Reply::List(children(unsealed, caller, place).await?),
        Operation::Write => Reply::data(act(unsealed, caller, place, data).await?),
        _ => {
            return Err(ApiError::unsupported(
                &format!("sys/internal/fs/{path}"),
                operation.as_str(),
            ));
        }
    };
    Ok(Routed {
        reply,
        mount_type: "system",
        flatten: false,
    })
}

fn shown(mount: &MountEntry) -> bool {
    mount.kind == "kv" || mount.kind == "database"
}

fn locate(unsealed: &Unsealed, path: &str) -> Place {
    if path.is_empty() {
        return Place::Above(String::new());
    }
    match unsealed.mounts.resolve(&format!("{path}/")) {
        Some((mount, rest)) if mount.kind == "kv" => {
            Place::Kv(mount, rest.trim_end_matches('/').to_owned())
        }
        Some((mount, rest)) if mount.kind == "database" => {
            Place::Database(mount, rest.trim_end_matches('/').to_owned())
        }
        _ => Place::Above(path.to_owned()),
    }
}

/// Whether the caller may do anything under a mount the filesystem shows.
fn mount_visible(caller: &Caller, mount: &MountEntry) -> bool {
    if mount.kind == "database" {
        ["creds/", "static-creds/"].iter().any(|section| {
            caller
                .acl
                .has_access_under(&format!("{}{section}", mount.path))
        })
    } else {
        caller.acl.has_access_under(&mount.path)
    }
}

fn may_read(caller: &Caller, path: &str) -> bool {
    caller
        .acl
        .check(path, Capability::Read, &Map::new())
        .allowed
}

/// KV paths of a secret and of its folder: (data path, metadata path) bases.
fn kv_bases(mount: &MountEntry) -> (String, String) {
    if mount.kv_version() == Some(2) {
        (
            format!("{}data/", mount.path),
            format!("{}metadata/", mount.path),
        )
    } else {
        (mount.path.clone(), mount.path.clone())
    }
}

fn kv_under(caller: &Caller, mount: &MountEntry, folder: &str) -> bool {
    let (data, metadata) = kv_bases(mount);
    caller.acl.has_access_under(&format!("{data}{folder}"))
        || caller.acl.has_access_under(&format!("{metadata}{folder}"))
}

async fn describe(
    unsealed: &Unsealed,
    caller: &Caller,
    place: Place,
    data: &Map<String, Value>,
) -> ApiResult<Value> {
    let folder = json!({"kind": "folder"});
    match place {
        Place::Above(prefix) => {
            let mounts = unsealed.mounts.entries();
            let below: Vec<&MountEntry> = mounts
                .iter()
                .filter(|mount| shown(mount) && mount.path.starts_with(&format!("{prefix}/")))
                .collect();
            if prefix.is_empty() || below.iter().any(|mount| mount_visible(caller, mount)) {
                Ok(folder)
            } else {
                Err(ApiError::denied())
            }
        }
        Place::Kv(mount, sub) if sub.is_empty() => {
            if mount_visible(caller, &mount) {
                Ok(folder)
            } else {
                Err(ApiError::denied())
            }
        }
        Place::Kv(mount, sub) => {
            let (data_base, _) = kv_bases(&mount);
            let read_path = format!("{data_base}{sub}");
            let readable = may_read(caller, &read_path);
            let under = kv_under(caller, &mount, &format!("{sub}/"));
            if !readable && !under {
                return Err(ApiError::denied());
            }
            let kv = unsealed
                .kv(&mount)
                .ok_or_else(|| ApiError::no_route(&mount.path))?;
            if readable && let Some(secret) = read_secret(&kv, &mount, &sub).await? {
                return Ok(json!({
                    "kind": "secret",
                    "read_path": read_path,
                    "version": mount.kv_version().unwrap_or(1),
                    "fields": secret.keys().collect::<Vec<_>>(),
                }));
            }
            if under && !kv_list(&kv, &mount, &sub).await?.is_empty() {
                return Ok(folder);
            }
            Err(ApiError::not_found())
        }
        Place::Database(mount, sub) => {
            let (section, role) = sub.split_once('/').unwrap_or((&sub, ""));
            match (section, role) {
                ("", _) if mount_visible(caller, &mount) => Ok(folder),
                ("creds" | "static-creds", "")
                    if caller
                        .acl
                        .has_access_under(&format!("{}{section}/", mount.path)) =>
                {
                    Ok(folder)
                }
                ("creds" | "static-creds", role) if !role.is_empty() && !role.contains('/') => {
                    let read_path = format!("{}{section}/{role}", mount.path);
                    if !may_read(caller, &read_path) {
                        return Err(ApiError::denied());
                    }
                    let database = unsealed.database(&mount);
                    let dynamic = section == "creds";
                    if !database.has_role(!dynamic, role)? {
                        return Err(ApiError::not_found());
                    }
                    let mut node = json!({
                        "kind": if dynamic { "credential" } else { "static" },
                        "read_path": read_path,
                    });
                    if dynamic && let Some(id) = data.get("lease_id").and_then(Value::as_str) {
                        node["lease"] = lease_of(unsealed, &read_path, id)?;
                    }
                    Ok(node)
                }
                _ if mount_visible(caller, &mount) => Err(ApiError::not_found()),
                _ => Err(ApiError::denied()),
            }
        }
    }
}

/// Renews or gives back a lease the filesystem took for a credential:
/// `{"lease_id": .., "action": "renew" | "revoke"}`, for local callers only.
/// Authorized, like the lease itself, by `read` on the credential's path, so a
/// role needs no rights on `sys/leases/`.
async fn act(
    unsealed: &Unsealed,
    caller: &Caller,
    place: Place,
    data: &Map<String, Value>,
) -> ApiResult<Value> {
    if caller.local.is_none() {
        return Err(ApiError::invalid(
            "only the filesystem manages its leases here: token holders use sys/leases/",
        ));
    }
    let fields = crate::api::fields::Fields::new(data);
    fields.only(&["lease_id", "action"])?;
    let (Some(id), Some(action)) = (fields.string("lease_id")?, fields.string("action")?) else {
        return Err(ApiError::invalid("give lease_id and action"));
    };
    let Place::Database(mount, sub) = place else {
        return Err(ApiError::invalid(
            "only a credential's lease can be renewed or revoked here",
        ));
    };
    let read_path = format!("{}{sub}", mount.path);
    if !sub.starts_with("creds/") || !may_read(caller, &read_path) {
        return Err(ApiError::denied());
    }
    lease_of(unsealed, &read_path, &id)?;
    let failed = |error: crate::leases::Error| match error {
        crate::leases::Error::Barrier(error) => error.into(),
        crate::leases::Error::NotFound => {
            ApiError::new(coffer_protocols::ErrorCode::NotFound, "lease not found")
        }
        other => ApiError::new(coffer_protocols::ErrorCode::Upstream, other.to_string()),
    };
    match action.as_str() {
        "renew" => {
            unsealed
                .leases
                .renew(&id, None, crate::tokens::now_seconds(), unsealed)
                .await
                .map_err(failed)?;
            lease_of(unsealed, &read_path, &id)
        }
        "revoke" => {
            unsealed
                .leases
                .revoke(&id, unsealed)
                .await
                .map_err(|message| {
                    ApiError::new(
                        coffer_protocols::ErrorCode::Upstream,
                        format!("the lease could not be revoked: {message}"),
                    )
                })?;
            Ok(json!({"revoked": id}))
        }
        _ => Err(ApiError::invalid("action is \"renew\" or \"revoke\"")),
    }
}

/// A lease the filesystem holds for `read_path`, if it is still alive: so a
/// cached credential is served only while its lease exists (an operator may
/// have revoked it).
fn lease_of(unsealed: &Unsealed, read_path: &str, id: &str) -> ApiResult<Value> {
    let gone = || ApiError::new(coffer_protocols::ErrorCode::NotFound, "lease not found");
    if !id.starts_with(&format!("{read_path}/")) {
        return Err(gone());
    }
    let lease = unsealed
        .leases
        .get(id)
        .map_err(|error| ApiError::internal(&error))?
        .ok_or_else(gone)?;
    let now = crate::tokens::now_seconds();
    if lease.expire_time <= now {
        return Err(gone());
    }
    Ok(json!({
        "id": lease.id,
        "ttl": lease.expire_time - now,
        "expire_time": lease.expire_time,
        "max_expire_time": lease.max_expire_time,
    }))
}

/// The secret's data, or `None` if there is none (deleted, destroyed, absent).
async fn read_secret(
    kv: &Kv<'_>,
    mount: &MountEntry,
    sub: &str,
) -> ApiResult<Option<Map<String, Value>>> {
    let v2 = mount.kv_version() == Some(2);
    let path = if v2 {
        format!("data/{sub}")
    } else {
        sub.to_owned()
    };
    let reply = match kv.handle(Operation::Read, &path, &Map::new()).await {
        Ok(reply) => reply,
        Err(error) if error.code == coffer_protocols::ErrorCode::NotFound => return Ok(None),
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

async fn kv_list(kv: &Kv<'_>, mount: &MountEntry, sub: &str) -> ApiResult<Vec<String>> {
    let folder = if sub.is_empty() {
        String::new()
    } else {
        format!("{sub}/")
    };
    let path = if mount.kv_version() == Some(2) {
        format!("metadata/{folder}")
    } else {
        folder
    };
    match kv.handle(Operation::List, &path, &Map::new()).await? {
        Reply::List(keys) => Ok(keys),
        _ => Ok(Vec::new()),
    }
}

async fn children(unsealed: &Unsealed, caller: &Caller, place: Place) -> ApiResult<Vec<String>> {
    match place {
        Place::Above(prefix) => {
            let start = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            };
            let mut names: Vec<String> = unsealed
                .mounts
                .entries()
                .iter()
                .filter(|mount| shown(mount) && mount_visible(caller, mount))
                .filter_map(|mount| {
                    let rest = mount.path.strip_prefix(&start)?;
                    let first = rest.split('/').next()?;
                    Some(format!("{first}/"))
                })
                .collect();
            if names.is_empty() && !prefix.is_empty() {
                return Err(ApiError::denied());
            }
            names.sort();
            names.dedup();
            Ok(names)
        }
        Place::Kv(mount, sub) => {
            let folder = if sub.is_empty() {
                String::new()
            } else {
                format!("{sub}/")
            };
            // Exactly what LIST on the folder's metadata path shows this
            // caller: `list` is needed there, and a deny there wins.
            let (_, metadata_base) = kv_bases(&mount);
            if !caller
                .acl
                .check(
                    &format!("{metadata_base}{folder}"),
                    Capability::List,
                    &Map::new(),
                )
                .allowed
            {
                return Err(ApiError::denied());
            }
            let kv = unsealed
                .kv(&mount)
                .ok_or_else(|| ApiError::no_route(&mount.path))?;
            kv_list(&kv, &mount, &sub).await
        }
        Place::Database(mount, sub) => {
            let database = unsealed.database(&mount);
            match sub.as_str() {
                "" => Ok(["creds/", "static-creds/"]
                    .into_iter()
                    .filter(|section| {
                        caller
                            .acl
                            .has_access_under(&format!("{}{section}", mount.path))
                    })
                    .map(str::to_owned)
                    .collect()),
                "creds" | "static-creds" => {
                    if !caller
                        .acl
                        .has_access_under(&format!("{}{sub}/", mount.path))
                    {
                        return Err(ApiError::denied());
                    }
                    Ok(database
                        .role_names(sub == "static-creds")?
                        .into_iter()
                        .filter(|role| may_read(caller, &format!("{}{sub}/{role}", mount.path)))
                        .collect())
                }
                _ if mount_visible(caller, &mount) => Err(ApiError::not_found()),
                _ => Err(ApiError::denied()),
            }
        }
    }
}
