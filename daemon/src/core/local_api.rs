//! `auth/local/` endpoints: roles (`role/<name>`, LIST `role`) and `login`, which
//! gives a caller on this host (Unix socket, FUSE) a token for the roles its uid,
//! gid and unit match.

use std::collections::BTreeMap;

use coffer_protocols::{Operation, Request};
use serde_json::{Value, json};

use super::token_api::{auth_block, with_auth};
use super::{Caller, Core, Routed, Unsealed, capability_for};
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::local_auth::Role;
use crate::policy::{self, ROOT_POLICY};
use crate::tokens::NewToken;

pub(super) const LOGIN_PATH: &str = "auth/local/login";

pub(super) async fn handle(
    core: &Core,
    unsealed: &Unsealed,
    request: &Request,
    path: &str,
    caller: &Caller,
) -> ApiResult<Routed> {
    let endpoint = path
        .strip_prefix("auth/local")
        .unwrap_or("")
        .trim_start_matches('/');
    let operation = request.operation;
    let unsupported = || ApiError::unsupported(path, operation.as_str());
    let reply = if endpoint == "login" {
        // Authentication already matched the caller's roles: nothing to authorize.
        if operation != Operation::Write {
            return Err(unsupported());
        }
        login(core, unsealed, request, caller).await?
    } else {
        let exists = match endpoint.strip_prefix("role/") {
            Some(name) if operation == Operation::Write => {
                unsealed.local_roles.get(name)?.is_some()
            }
            _ => true,
        };
        caller.authorize(
            path,
            capability_for(operation, exists),
            &request.data,
            false,
        )?;
        match (endpoint.trim_end_matches('/'), operation) {
            ("role", Operation::List) => Reply::List(
                unsealed
                    .local_roles
                    .all()?
                    .iter()
                    .map(|(name, _)| name.clone())
                    .collect(),
            ),
            (role, _) if role.starts_with("role/") => {
                let name = &role["role/".len()..];
                validate_name(name)?;
                match operation {
                    Operation::Read => {
                        let role = unsealed
                            .local_roles
                            .get(name)?
                            .ok_or_else(ApiError::not_found)?;
                        Reply::data(role_json(&role))
                    }
                    Operation::Write => {
                        let existing = unsealed.local_roles.get(name)?.unwrap_or_default();
                        let role = parse_role(existing, &Fields::new(&request.data))?;
                        unsealed.local_roles.put(name, &role).await?;
                        Reply::NoContent
                    }
                    Operation::Delete => {
                        unsealed.local_roles.delete(name).await?;
                        Reply::NoContent
                    }
                    _ => return Err(unsupported()),
                }
            }
            _ => return Err(ApiError::no_route(path)),
        }
    };
    Ok(Routed {
        reply,
        mount_type: "local",
        flatten: false,
    })
}

fn validate_name(name: &str) -> ApiResult<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "-_.".contains(character))
        && !name.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "a role name is 1 to 64 letters, digits, '-', '_' or '.'",
        ))
    }
}

fn role_json(role: &Role) -> Value {
    json!({
        "bound_uids": role.bound_uids,
        "bound_gids": role.bound_gids,
        "bound_units": role.bound_units,
        "policies": role.policies,
        "token_policies": role.policies,
        "token_ttl": role.token_ttl,
        "token_max_ttl": role.token_max_ttl,
        "token_no_default_policy": role.token_no_default_policy,
    })
}

fn ids(fields: &Fields<'_>, key: &str) -> ApiResult<Option<Vec<u32>>> {
    let Some(list) = fields.u64_list(key).map_err(|_| {
        ApiError::invalid(format!(
            "invalid value for {key:?}: expected a list of numeric ids"
        ))
    })?
    else {
        return Ok(None);
    };
    list.into_iter()
        .map(|id| {
            u32::try_from(id)
                .ok()
                .filter(|id| *id != u32::MAX)
                .ok_or_else(|| ApiError::invalid(format!("invalid id in {key:?}")))
        })
        .collect::<ApiResult<Vec<u32>>>()
        .map(Some)
}

/// `existing` updated with the request's fields, as Vault updates roles.
fn parse_role(existing: Role, fields: &Fields<'_>) -> ApiResult<Role> {
    fields.only(&[
        "bound_uids",
        "bound_gids",
        "bound_units",
        "policies",
        "token_policies",
        "token_ttl",
        "token_max_ttl",
        "token_no_default_policy",
    ])?;
    let mut role = existing;
    if let Some(uids) = ids(fields, "bound_uids")? {
        role.bound_uids = uids;
    }
    if let Some(gids) = ids(fields, "bound_gids")? {
        role.bound_gids = gids;
    }
    if let Some(units) = fields.string_list("bound_units")? {
        if !units
            .iter()
            .all(|unit| crate::local_auth::valid_unit_binding(unit))
        {
            return Err(ApiError::invalid(
                "bound_units holds systemd unit names such as \"app.service\", slices \
                 (\"shop.slice\") or unit cgroup paths (\"/system.slice/app.service\")",
            ));
        }
        role.bound_units = units;
    }
    let policies = match fields.string_list("token_policies")? {
        Some(policies) => Some(policies),
        None => fields.string_list("policies")?,
    };
    if let Some(policies) = policies {
        let mut normalized = Vec::new();
        for name in policies {
            let name = name.trim().to_ascii_lowercase();
            policy::normalize_name(&name).map_err(|error| ApiError::invalid(error.to_string()))?;
            normalized.push(name);
        }
        if normalized.iter().any(|name| name == ROOT_POLICY) {
            return Err(ApiError::invalid(
                "a local role cannot grant the root policy",
            ));
        }
        normalized.sort();
        normalized.dedup();
        role.policies = normalized;
    }
    if let Some(ttl) = fields.duration("token_ttl")? {
        role.token_ttl = ttl;
    }
    if let Some(ttl) = fields.duration("token_max_ttl")? {
        role.token_max_ttl = ttl;
    }
    if let Some(flag) = fields.bool("token_no_default_policy")? {
        role.token_no_default_policy = flag;
    }
    if role.bound_uids.is_empty() && role.bound_gids.is_empty() && role.bound_units.is_empty() {
        return Err(ApiError::invalid(
            "a local role must bind at least one of bound_uids, bound_gids or bound_units",
        ));
    }
    if role.token_max_ttl > 0 && role.token_ttl > role.token_max_ttl {
        return Err(ApiError::invalid(
            "token_ttl must not be longer than token_max_ttl",
        ));
    }
    Ok(role)
}

/// A token for the roles the caller matched (authentication did the matching).
async fn login(
    core: &Core,
    unsealed: &Unsealed,
    request: &Request,
    caller: &Caller,
) -> ApiResult<Reply> {
    let Some(identity) = &caller.local else {
        return Err(ApiError::invalid(
            "auth/local/login needs a caller on this host: call it over the Unix socket",
        ));
    };
    let settings = core.settings();
    let max_ttl = match identity.token_max_ttl {
        0 => settings.max_lease_ttl,
        ttl => ttl.min(settings.max_lease_ttl),
    };
    let ttl = match identity.token_ttl {
        0 => settings.default_lease_ttl,
        ttl => ttl,
    }
    .min(max_ttl);
    let mut meta = BTreeMap::new();
    meta.insert("role".to_owned(), identity.roles.join(","));
    if let Some(peer) = &request.peer {
        meta.insert("uid".to_owned(), peer.uid.to_string());
    }
    let new = NewToken {
        policies: identity.policies.clone(),
        meta,
        display_name: format!("local-{}", identity.roles.join("-")),
        num_uses: 0,
        ttl,
        explicit_max_ttl: identity.token_max_ttl.min(max_ttl),
        period: 0,
        renewable: true,
        parent: None,
        path: LOGIN_PATH.to_owned(),
    };
    let (token, entry) = unsealed.tokens.create(new).await?;
    Ok(with_auth(
        auth_block(&entry, &token, entry.creation_ttl),
        None,
    ))
}
