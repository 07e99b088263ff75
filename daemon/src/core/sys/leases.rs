//! `sys/leases/*` (and Vault's older `sys/renew`, `sys/revoke`,
//! `sys/revoke-prefix`, `sys/revoke-force`): look up, list, renew and revoke
//! leases; list the irrevocable ones.

use coffer_protocols::{ErrorCode, LogicalResponse, Operation, Request};
use serde_json::{Map, Value, json};

use super::super::leasing::lease_error;
use super::super::{Routed, Unsealed};
use super::{raw, system};
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::leases::{self, Lease};
use crate::tokens::{now_seconds, rfc3339};

/// The `leases` routes, and the older top-level names (`rest` is past `sys/`).
pub(super) async fn route(unsealed: &Unsealed, request: &Request, rest: &str) -> ApiResult<Routed> {
    let operation = request.operation;
    let data = &request.data;
    let unsupported = || ApiError::unsupported(&format!("sys/{rest}"), operation.as_str());
    let inner = rest.strip_prefix("leases/").unwrap_or(rest);
    let (action, tail) = inner.split_once('/').unwrap_or((inner, ""));
    match (action, operation) {
        ("leases", Operation::Read) => irrevocable(unsealed, data),
        ("lookup", Operation::Write) => lookup(unsealed, &lease_id(data, tail)?),
        ("lookup", Operation::List) => Ok(system(Reply::List(
            unsealed.leases.list(tail).map_err(lease_error)?,
        ))),
        ("renew", Operation::Write) => renew(unsealed, &lease_id(data, tail)?, data).await,
        ("revoke", Operation::Write) => {
            let id = lease_id(data, tail)?;
            revoke(unsealed, vec![id], sync(data)?).await
        }
        ("revoke-prefix", Operation::Write) => {
            let ids = under_prefix(unsealed, tail)?;
            let revoked = revoke(unsealed, ids, sync(data)?).await?;
            // Tokens are leases too, in Vault: a prefix under `auth/` also
            // revokes the tokens made there (a method's logins, a role's).
            let prefix = tail.trim_matches('/');
            if prefix.starts_with("auth/") {
                unsealed.revoke_tokens_issued_under(prefix).await?;
            }
            Ok(revoked)
        }
        ("revoke-force", Operation::Write) => {
            for id in under_prefix(unsealed, tail)? {
                if let Some(lease) = unsealed.leases.get(&id).map_err(lease_error)? {
                    unsealed.leases.remove(&lease).await.map_err(lease_error)?;
                    tracing::warn!(lease = %id, "lease removed by revoke-force; what it stood for was not revoked");
                }
            }
            Ok(system(Reply::NoContent))
        }
        ("lookup" | "renew" | "revoke" | "revoke-prefix" | "revoke-force" | "leases", _) => {
            Err(unsupported())
        }
        _ => Err(ApiError::no_route(&format!("sys/{rest}"))),
    }
}

/// The lease id from the body, or from the path after the action.
fn lease_id(data: &Map<String, Value>, tail: &str) -> ApiResult<String> {
    let from_body = Fields::new(data)
        .string("lease_id")?
        .filter(|id| !id.is_empty());
    let id = match from_body {
        Some(id) => id,
        None if !tail.is_empty() => tail.to_owned(),
        None => return Err(ApiError::invalid("missing lease_id")),
    };
    if id.ends_with('/') || id.len() > 1024 {
        return Err(ApiError::invalid("invalid lease_id"));
    }
    Ok(id)
}

/// `sync` (default true, as in Vault): revoke before answering.
fn sync(data: &Map<String, Value>) -> ApiResult<bool> {
    Ok(Fields::new(data).bool("sync")?.unwrap_or(true))
}

/// The ids under `prefix`: the lease itself when the prefix is one, otherwise
/// every lease below it as a directory (`database/creds/app` does not take
/// `database/creds/app2/...`).
fn under_prefix(unsealed: &Unsealed, prefix: &str) -> ApiResult<Vec<String>> {
    let prefix = prefix.trim_start_matches('/');
    if prefix.is_empty() {
        return Err(ApiError::invalid("missing prefix"));
    }
    if unsealed.leases.get(prefix).map_err(lease_error)?.is_some() {
        return Ok(vec![prefix.to_owned()]);
    }
    let directory = format!("{}/", prefix.trim_end_matches('/'));
    unsealed.leases.ids_under(&directory).map_err(lease_error)
}

fn found(unsealed: &Unsealed, id: &str) -> ApiResult<Lease> {
    unsealed
        .leases
        .get(id)
        .map_err(lease_error)?
        .ok_or_else(|| ApiError::invalid("invalid lease"))
}

fn lookup(unsealed: &Unsealed, id: &str) -> ApiResult<Routed> {
    let lease = found(unsealed, id)?;
    let now = now_seconds();
    Ok(system(Reply::data(json!({
        "id": lease.id,
        "issue_time": rfc3339(lease.issue_time),
        "expire_time": rfc3339(lease.expire_time),
        "last_renewal": lease.last_renewal.map(rfc3339),
        "renewable": lease.renewable && !lease.revocation.irrevocable,
        "ttl": lease.expire_time.saturating_sub(now),
    }))))
}

async fn renew(unsealed: &Unsealed, id: &str, data: &Map<String, Value>) -> ApiResult<Routed> {
    let increment = Fields::new(data).duration("increment")?;
    // One reading of the clock: the TTL granted is measured from the instant
    // the renewal was computed at, never a second short.
    let now = now_seconds();
    let (lease, warning) = unsealed
        .leases
        .renew(id, increment, now, unsealed)
        .await
        .map_err(|error| match error {
            leases::Error::Barrier(error) => error.into(),
            leases::Error::Engine(message) => ApiError::new(
                ErrorCode::Upstream,
                format!("the lease could not be renewed: {message}"),
            ),
            leases::Error::NotFound => ApiError::invalid("lease not found"),
            other => ApiError::invalid(other.to_string()),
        })?;
    let envelope = LogicalResponse {
        lease_id: lease.id.clone(),
        renewable: lease.renewable,
        lease_duration: lease.expire_time.saturating_sub(now),
        warnings: warning.map(|warning| vec![warning]),
        ..Default::default()
    };
    Ok(Routed {
        reply: Reply::Envelope(Box::new(envelope)),
        mount_type: "system",
        flatten: false,
    })
}

/// Revokes `ids` now (`sync`), or makes them due for the leader's next round
/// (202, as Vault answers an asynchronous revocation).
async fn revoke(unsealed: &Unsealed, ids: Vec<String>, sync: bool) -> ApiResult<Routed> {
    if !sync {
        let now = now_seconds();
        for id in &ids {
            unsealed
                .leases
                .expire_now(id, now)
                .await
                .map_err(lease_error)?;
        }
        return Ok(raw(202, Value::Null));
    }
    let mut failures = Vec::new();
    for id in &ids {
        if let Err(message) = unsealed.leases.revoke(id, unsealed).await {
            failures.push(format!("failed to revoke {id}: {message}"));
        }
    }
    if failures.is_empty() {
        Ok(system(Reply::NoContent))
    } else {
        Err(ApiError {
            code: ErrorCode::Upstream,
            messages: failures,
            data: None,
        })
    }
}

/// `GET sys/leases?type=irrevocable`: the leases whose revocation ran out of
/// attempts, with the last error.
fn irrevocable(unsealed: &Unsealed, data: &Map<String, Value>) -> ApiResult<Routed> {
    let kind = Fields::new(data).string("type")?;
    if kind.as_deref() != Some("irrevocable") {
        return Err(ApiError::invalid(
            "coffer lists leases by type: use ?type=irrevocable (and LIST sys/leases/lookup/<prefix> for the rest)",
        ));
    }
    let leases = unsealed.leases.irrevocable().map_err(lease_error)?;
    let listed: Vec<Value> = leases
        .iter()
        .map(|lease| {
            json!({
                "lease_id": lease.id,
                "mount": lease.mount,
                "expire_time": rfc3339(lease.expire_time),
                "attempts": lease.revocation.attempts,
                "error": lease.revocation.last_error,
            })
        })
        .collect();
    Ok(system(Reply::data(json!({
        "lease_count": listed.len(),
        "leases": listed,
    }))))
}

/// Before a mount goes: revokes every lease it issued (as Vault does), so no user
/// outlives the engine that could drop it. Any failure keeps the mount.
pub(super) async fn revoke_mount(unsealed: &Unsealed, mount_path: &str) -> ApiResult<()> {
    let prefix = format!("{}/", mount_path.trim_end_matches('/'));
    let ids = unsealed.leases.ids_under(&prefix).map_err(lease_error)?;
    if ids.is_empty() {
        return Ok(());
    }
    revoke(unsealed, ids, true)
        .await
        .map(drop)
        .map_err(|mut error| {
            error.messages.insert(
                0,
                format!("the mount {mount_path:?} was kept: its leases could not all be revoked"),
            );
            error
        })
}
