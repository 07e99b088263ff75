//! `sys/internal/fs/<path>`: what the `/secrets` filesystem may show its caller.
//!
//! The filesystem's paths are logical paths without KV v2's `data/` and
//! `metadata/`. READ describes one node (a folder, a KV secret and its field
//! names, a dynamic or static credential, a certificate) with the logical path
//! to read (or, for a certificate, write) for its content; LIST names a mount's folders as LIST on their metadata path would
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
use crate::engine::{Files, Node, SecretEngine};
use crate::mounts::MountEntry;
use crate::policy::acl::Capability;

/// Where a path of the filesystem is.
enum Place {
    /// The root, or a folder made by the first segments of nested mount paths.
    Above(String),
    /// Inside a mount the filesystem shows: the mount and the path in it.
    Mount(Box<MountEntry>, String),
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

/// The engine of a mount the filesystem shows, and its view.
fn shown<'a>(
    unsealed: &'a Unsealed,
    mount: &MountEntry,
) -> Option<(&'a dyn SecretEngine, &'a dyn Files)> {
    let engine = unsealed.engines.get(&mount.kind)?;
    Some((engine, engine.files()?))
}

fn locate(unsealed: &Unsealed, path: &str) -> Place {
    if path.is_empty() {
        return Place::Above(String::new());
    }
    match unsealed.mounts.resolve(&format!("{path}/")) {
        Some((mount, rest)) if shown(unsealed, &mount).is_some() => {
            Place::Mount(Box::new(mount), rest.trim_end_matches('/').to_owned())
        }
        _ => Place::Above(path.to_owned()),
    }
}

/// Whether the caller may do anything under a mount the filesystem shows.
fn mount_visible(unsealed: &Unsealed, caller: &Caller, mount: &MountEntry) -> bool {
    shown(unsealed, mount)
        .is_some_and(|(_, files)| files.visible(&unsealed.mount(mount), &caller.acl))
}

fn may_read(caller: &Caller, path: &str) -> bool {
    caller
        .acl
        .check(path, Capability::Read, &Map::new())
        .allowed
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
            let below = format!("{prefix}/");
            if prefix.is_empty()
                || mounts.iter().any(|mount| {
                    mount.path.starts_with(&below) && mount_visible(unsealed, caller, mount)
                })
            {
                Ok(folder)
            } else {
                Err(ApiError::denied())
            }
        }
        Place::Mount(entry, sub) => {
            let (_, files) =
                shown(unsealed, &entry).ok_or_else(|| ApiError::no_route(&entry.path))?;
            let mount = unsealed.mount(&entry);
            Ok(match files.node(&mount, &caller.acl, &sub).await? {
                Node::Folder => folder,
                Node::Secret {
                    read_path,
                    version,
                    fields,
                } => json!({
                    "kind": "secret",
                    "read_path": read_path,
                    "version": version,
                    "fields": fields,
                }),
                Node::Credential { read_path } => {
                    let mut node = json!({"kind": "credential", "read_path": read_path});
                    if let Some(id) = data.get("lease_id").and_then(Value::as_str) {
                        node["lease"] = lease_of(unsealed, &read_path, id)?;
                    }
                    node
                }
                Node::Static { read_path } => json!({"kind": "static", "read_path": read_path}),
                Node::Certificate {
                    issue_path,
                    common_name,
                } => {
                    let mut node = json!({
                        "kind": "certificate",
                        "issue_path": issue_path,
                        "common_name": common_name,
                    });
                    if let Some(id) = data.get("lease_id").and_then(Value::as_str) {
                        node["lease"] = lease_of(unsealed, &issue_path, id)?;
                    }
                    node
                }
            })
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
    let not_a_lease =
        || ApiError::invalid("only a credential's lease can be renewed or revoked here");
    let Place::Mount(mount, sub) = place else {
        return Err(not_a_lease());
    };
    if !shown(unsealed, &mount).is_some_and(|(engine, _)| engine.issues_leases(&sub)) {
        return Err(not_a_lease());
    }
    let read_path = format!("{}{sub}", mount.path);
    if !may_read(caller, &read_path) {
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
                .filter(|mount| mount_visible(unsealed, caller, mount))
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
        Place::Mount(entry, sub) => {
            let (_, files) =
                shown(unsealed, &entry).ok_or_else(|| ApiError::no_route(&entry.path))?;
            files
                .children(&unsealed.mount(&entry), &caller.acl, &sub)
                .await
        }
    }
}
