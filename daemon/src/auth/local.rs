//! `auth/local`: callers on this host, known by the uid, gid and unit the
//! kernel reports. Its roles (`role/<name>`, LIST `role`) bind those; `login`
//! gives a caller on the Unix socket a token for the roles it matches. A
//! request with a local caller and no token is matched against the same roles
//! by the core, without a login.

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_protocols::Operation;
use serde_json::{Map, Value, json};

use super::{AuthMethod, BoxFuture, Environment, Login, LoginRequest, Mount};
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::local_auth::{Role, Roles};
use crate::policy::{self, ROOT_POLICY};

/// The login path's full logical path, which tokens it makes record.
pub const LOGIN_PATH: &str = "auth/local/login";

pub struct LocalMethod {
    roles: Arc<Roles>,
}

/// The registry's factory.
pub fn method(environment: &Environment) -> Arc<dyn AuthMethod> {
    Arc::new(LocalMethod {
        roles: environment.local_roles.clone(),
    })
}

impl AuthMethod for LocalMethod {
    fn type_name(&self) -> &'static str {
        "local"
    }

    fn description(&self) -> &'static str {
        "callers on this host, by the uid, gid and unit the kernel reports"
    }

    fn built_in_path(&self) -> Option<&'static str> {
        Some("local/")
    }

    fn is_login(&self, path: &str) -> bool {
        path == "login"
    }

    fn login<'a>(&'a self, request: &'a LoginRequest<'a>) -> BoxFuture<'a, ApiResult<Login>> {
        Box::pin(async move {
            let Some(peer) = request.peer else {
                return Err(ApiError::invalid(
                    "auth/local/login needs a caller on this host: call it over the Unix socket",
                ));
            };
            let only = Fields::new(request.data).string("role")?;
            let identity = self
                .roles
                .identify(peer, only.as_deref())?
                .ok_or_else(ApiError::denied)?;
            let mut metadata = BTreeMap::new();
            metadata.insert("role".to_owned(), identity.roles.join(","));
            metadata.insert("uid".to_owned(), peer.uid.to_string());
            Ok(Login {
                policies: identity.policies,
                metadata,
                display_name: identity.roles.join("-"),
                ttl: identity.token_ttl,
                max_ttl: identity.token_max_ttl,
                num_uses: 0,
                renewable: true,
                ..Login::default()
            })
        })
    }

    fn exists(&self, _mount: &Mount<'_>, path: &str) -> ApiResult<bool> {
        match path.strip_prefix("role/") {
            Some(name) => Ok(self.roles.get(name)?.is_some()),
            None => Ok(true),
        }
    }

    fn handle<'a>(
        &'a self,
        _mount: &'a Mount<'a>,
        operation: Operation,
        path: &'a str,
        data: &'a Map<String, Value>,
    ) -> BoxFuture<'a, ApiResult<Reply>> {
        Box::pin(async move {
            let unsupported = || ApiError::unsupported(path, operation.as_str());
            match (path.trim_end_matches('/'), operation) {
                ("role", Operation::List) => Ok(Reply::List(
                    self.roles
                        .all()?
                        .iter()
                        .map(|(name, _)| name.clone())
                        .collect(),
                )),
                (role, _) if role.starts_with("role/") => {
                    let name = &role["role/".len()..];
                    validate_name(name)?;
                    match operation {
                        Operation::Read => {
                            let role = self.roles.get(name)?.ok_or_else(ApiError::not_found)?;
                            Ok(Reply::data(role_json(&role)))
                        }
                        Operation::Write => {
                            let existing = self.roles.get(name)?.unwrap_or_default();
                            let role = parse_role(existing, &Fields::new(data))?;
                            self.roles.put(name, &role).await?;
                            Ok(Reply::NoContent)
                        }
                        Operation::Delete => {
                            self.roles.delete(name).await?;
                            Ok(Reply::NoContent)
                        }
                        _ => Err(unsupported()),
                    }
                }
                ("login", _) => Err(unsupported()),
                _ => Err(ApiError::no_route(&format!("auth/local/{path}"))),
            }
        })
    }
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
