//! The `auth/token/` endpoints: create, look up, renew and revoke tokens.

use coffer_protocols::{Auth, LogicalResponse, Operation, Request};
use serde_json::{Map, Value, json};

use super::{Caller, Core, Routed, Unsealed, capability_for};
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::duration;
use crate::policy::{self, DEFAULT_POLICY, ROOT_POLICY};
use crate::token_roles::{self, TokenRole};
use crate::tokens::{NewToken, RenewError, TokenEntry, now_seconds, rfc3339};

fn routed(reply: Reply) -> Routed {
    Routed {
        reply,
        mount_type: "token",
        flatten: false,
    }
}

/// The `data` of a token lookup. `id` is the token itself, only when the caller
/// presented it.
fn lookup_data(entry: &TokenEntry, id: Option<&str>) -> Map<String, Value> {
    let now = now_seconds();
    let mut data = json!({
        "accessor": entry.accessor,
        "creation_time": entry.creation_time,
        "creation_ttl": entry.creation_ttl,
        "display_name": entry.display_name,
        "entity_id": "",
        "expire_time": entry.expire_time.map(rfc3339),
        "explicit_max_ttl": entry.explicit_max_ttl,
        "id": id.unwrap_or(""),
        "issue_time": rfc3339(entry.creation_time),
        "meta": if entry.meta.is_empty() { Value::Null } else { json!(entry.meta) },
        "num_uses": entry.num_uses,
        "orphan": entry.parent.is_none(),
        "path": entry.path,
        "policies": entry.policies,
        "renewable": entry.renewable && entry.expire_time.is_some(),
        "ttl": entry.ttl_at(now),
        "type": "service",
    });
    if let Value::Object(object) = &mut data {
        if entry.period > 0 {
            object.insert("period".into(), json!(entry.period));
        }
        // As Vault: only a CIDR-bound token shows its blocks.
        if !entry.bound_cidrs.is_empty() {
            object.insert("bound_cidrs".into(), json!(entry.bound_cidrs));
        }
    }
    match data {
        Value::Object(object) => object,
        _ => Map::new(),
    }
}

/// The `auth` block for `token`; `lease_duration` is the TTL just granted (read
/// from the clock when the token was made or renewed, not again now, so it is
/// never a second short).
pub(super) fn auth_block(entry: &TokenEntry, token: &str, lease_duration: u64) -> Auth {
    Auth {
        client_token: token.to_owned(),
        accessor: entry.accessor.clone(),
        policies: entry.policies.clone(),
        token_policies: entry.policies.clone(),
        identity_policies: None,
        metadata: (!entry.meta.is_empty()).then(|| {
            entry
                .meta
                .iter()
                .map(|(key, value)| (key.clone(), json!(value)))
                .collect()
        }),
        lease_duration,
        renewable: entry.renewable && entry.expire_time.is_some(),
        entity_id: String::new(),
        token_type: "service".into(),
        orphan: entry.parent.is_none(),
        mfa_requirement: None,
        num_uses: entry.num_uses,
    }
}

pub(super) fn with_auth(auth: Auth, warnings: Option<Vec<String>>) -> Reply {
    Reply::Envelope(Box::new(LogicalResponse {
        auth: Some(auth),
        warnings,
        ..LogicalResponse::default()
    }))
}

pub(super) async fn handle(
    core: &Core,
    unsealed: &Unsealed,
    request: &Request,
    path: &str,
    caller: &Caller,
) -> ApiResult<Routed> {
    let endpoint = path
        .strip_prefix("auth/token")
        .unwrap_or("")
        .trim_start_matches('/');
    let operation = request.operation;
    let data = &request.data;
    let sudo = matches!(endpoint, "revoke-orphan" | "accessors" | "tidy");
    // A role written for the first time is a `create` in the ACL.
    let exists = match endpoint.strip_prefix("roles/") {
        Some(name) if operation == Operation::Write => {
            token_roles::check_name(name)?;
            token_roles::get(&unsealed.barrier, name)?.is_some()
        }
        _ => true,
    };
    let decision = caller.authorize(path, capability_for(operation, exists), data, sudo)?;
    if caller.local.is_some()
        && matches!(
            endpoint,
            "create" | "create-orphan" | "lookup-self" | "renew-self" | "revoke-self"
        )
    {
        return Err(ApiError::invalid(
            "this request was authenticated by auth/local, not by a token: log in at auth/local/login for a token",
        ));
    }
    let fields = Fields::new(data);
    let unsupported = || ApiError::unsupported(path, operation.as_str());
    let reply = match (endpoint, operation) {
        ("create" | "create-orphan", Operation::Write) => {
            create(core, unsealed, caller, decision.sudo, endpoint, data, None).await?
        }
        (create_with, Operation::Write) if create_with.starts_with("create/") => {
            let name = &create_with["create/".len()..];
            token_roles::check_name(name)?;
            let role = token_roles::get(&unsealed.barrier, name)?
                .ok_or_else(|| ApiError::invalid(format!("unknown role {name}")))?;
            create(
                core,
                unsealed,
                caller,
                decision.sudo,
                "create",
                data,
                Some(&role),
            )
            .await?
        }
        ("roles" | "roles/", Operation::List) => {
            Reply::List(token_roles::names(&unsealed.barrier)?)
        }
        (role, _) if role.starts_with("roles/") => {
            let name = &role["roles/".len()..];
            token_roles::check_name(name)?;
            match operation {
                Operation::Read => Reply::data(
                    token_roles::get(&unsealed.barrier, name)?
                        .ok_or_else(ApiError::not_found)?
                        .to_json(),
                ),
                Operation::Write => {
                    let mut role =
                        token_roles::get(&unsealed.barrier, name)?.unwrap_or_else(|| TokenRole {
                            name: name.to_owned(),
                            ..Default::default()
                        });
                    role.update(&fields)?;
                    token_roles::put(&unsealed.barrier, &role).await?;
                    Reply::NoContent
                }
                Operation::Delete => {
                    token_roles::delete(&unsealed.barrier, name).await?;
                    Reply::NoContent
                }
                _ => return Err(unsupported()),
            }
        }
        // POST only: a token in a query string ends up in proxy and access logs.
        ("lookup", Operation::Write) => {
            let token = required(&fields, "token")?;
            let entry = unsealed.tokens.lookup(&token)?.ok_or_else(bad_token)?;
            Reply::Data(lookup_data(&entry, Some(&token)))
        }
        ("lookup-self", Operation::Read | Operation::Write) => {
            let token = request.token.as_ref().map(|token| token.expose());
            Reply::Data(lookup_data(&caller.token, token))
        }
        ("lookup-accessor", Operation::Write) => {
            let accessor = required(&fields, "accessor")?;
            // Vault answers an unknown or revoked accessor with 400.
            let entry = unsealed
                .tokens
                .lookup_accessor(&accessor)?
                .ok_or_else(|| ApiError::invalid("invalid accessor"))?;
            Reply::Data(lookup_data(&entry, None))
        }
        ("renew", Operation::Write) => {
            let token = required(&fields, "token")?;
            let hash = unsealed.tokens.hash(&token);
            renew(core, unsealed, &hash, &fields, &token).await?
        }
        ("renew-self", Operation::Write) => {
            let token = request
                .token
                .as_ref()
                .map(|token| token.expose().to_owned())
                .unwrap_or_default();
            renew(core, unsealed, &caller.token.hash, &fields, &token).await?
        }
        ("renew-accessor", Operation::Write) => {
            let accessor = required(&fields, "accessor")?;
            let entry = unsealed
                .tokens
                .lookup_accessor(&accessor)?
                .ok_or_else(bad_token)?;
            renew(core, unsealed, &entry.hash, &fields, "").await?
        }
        ("revoke", Operation::Write) => {
            let token = required(&fields, "token")?;
            let hash = unsealed.tokens.hash(&token);
            unsealed.revoke_token(&hash, false).await?;
            Reply::NoContent
        }
        ("revoke-self", Operation::Write) => {
            unsealed.revoke_token(&caller.token.hash, false).await?;
            Reply::NoContent
        }
        ("revoke-accessor", Operation::Write) => {
            let accessor = required(&fields, "accessor")?;
            if let Some(entry) = unsealed.tokens.lookup_accessor(&accessor)? {
                unsealed.revoke_token(&entry.hash, false).await?;
            }
            Reply::NoContent
        }
        ("revoke-orphan", Operation::Write) => {
            let token = required(&fields, "token")?;
            let hash = unsealed.tokens.hash(&token);
            unsealed.revoke_token(&hash, true).await?;
            Reply::NoContent
        }
        ("accessors", Operation::List) => Reply::List(unsealed.tokens.accessors()?),
        ("tidy", Operation::Write) => {
            unsealed.tidy_tokens().await?;
            Reply::NoContent
        }
        (
            "create" | "create-orphan" | "lookup" | "lookup-self" | "lookup-accessor" | "renew"
            | "renew-self" | "renew-accessor" | "revoke" | "revoke-self" | "revoke-accessor"
            | "revoke-orphan" | "accessors" | "tidy" | "roles",
            _,
        ) => return Err(unsupported()),
        _ => return Err(ApiError::no_route(path)),
    };
    Ok(routed(reply))
}

fn bad_token() -> ApiError {
    ApiError::new(coffer_protocols::ErrorCode::PermissionDenied, "bad token")
}

fn required(fields: &Fields<'_>, key: &str) -> ApiResult<String> {
    fields
        .string(key)?
        .filter(|value| !value.is_empty())
        .ok_or_else(|| ApiError::invalid(format!("missing {key}")))
}

/// `auth/token/create`, `create-orphan` and `create/<role>`. Fields Vault does
/// not know are ignored, as Vault does.
async fn create(
    core: &Core,
    unsealed: &Unsealed,
    caller: &Caller,
    sudo: bool,
    endpoint: &str,
    data: &Map<String, Value>,
    role: Option<&TokenRole>,
) -> ApiResult<Reply> {
    let fields = Fields::new(data);
    fields.refuse_unless_empty(&["entity_alias"])?;
    let parent = &caller.token;
    let privileged = parent.is_root() || sudo;
    if let Some(kind) = fields.string("type")?
        && kind != "service"
        && kind != "default"
    {
        return Err(ApiError::invalid(
            "only service tokens are supported by coffer",
        ));
    }
    if fields.string("id")?.is_some() {
        return Err(ApiError::invalid(
            "choosing a token's value is not supported: tokens are generated",
        ));
    }
    // A role decides orphanhood; without one, `no_parent` needs privilege.
    let orphan = match role {
        Some(role) => role.orphan,
        None => endpoint == "create-orphan" || fields.bool("no_parent")?.unwrap_or(false),
    };
    if role.is_none() && endpoint != "create-orphan" && orphan && !privileged {
        return Err(ApiError::invalid(
            "root or sudo privileges required to create orphan token",
        ));
    }

    let no_default = fields.bool("no_default_policy")?.unwrap_or(false)
        || role.is_some_and(|role| role.token_no_default_policy);
    let requested = fields
        .string_list("policies")?
        .map(token_roles::policy_names);
    let parent_policies: Vec<String> = parent
        .policies
        .iter()
        .filter(|policy| *policy != DEFAULT_POLICY)
        .cloned()
        .collect();
    // A role that names its policies grants them whatever the parent holds.
    let (mut policies, granted_by_role) = match role {
        Some(role) => match role.policies(requested, !no_default)? {
            Some(chosen) => (chosen, role.limits_policies()),
            None => (parent_policies.clone(), false),
        },
        None => (requested.unwrap_or_else(|| parent_policies.clone()), false),
    };
    if let Some(role) = role {
        role.check_disallowed(&policies)?;
    }
    for name in &policies {
        policy::normalize_name(name).map_err(|error| ApiError::invalid(error.to_string()))?;
    }
    if !parent.is_root() {
        if policies.iter().any(|name| name == ROOT_POLICY) {
            return Err(ApiError::invalid(
                "root tokens may only be created by a root token",
            ));
        }
        if !granted_by_role
            && let Some(extra) = policies
                .iter()
                .find(|name| *name != DEFAULT_POLICY && !parent_policies.contains(name))
        {
            return Err(ApiError::invalid(format!(
                "child policies must be a subset of the parent's: {extra:?} is not"
            )));
        }
    }
    if policies.iter().any(|name| name == ROOT_POLICY) {
        policies = vec![ROOT_POLICY.into()];
    } else if !no_default {
        policies.push(DEFAULT_POLICY.into());
    }
    let policies = token_roles::policy_names(policies);

    // A role's period needs no privilege: the role's author had it.
    let period = match role {
        Some(role) if role.token_period > 0 => role.token_period,
        _ => {
            let period = fields.duration("period")?.unwrap_or(0);
            if period > 0 && !privileged {
                return Err(ApiError::invalid(
                    "root or sudo privileges required to create periodic token",
                ));
            }
            period
        }
    };
    let requested_max = fields.duration("explicit_max_ttl")?.unwrap_or(0);
    let explicit_max_ttl = match role.map_or(0, |role| role.token_explicit_max_ttl) {
        0 => requested_max,
        by_role if requested_max == 0 => by_role,
        by_role => by_role.min(requested_max),
    };
    let (default_ttl, max_ttl) = token_store_ttls(core, unsealed)?;
    let requested_ttl = match fields.duration("ttl")? {
        Some(ttl) => Some(ttl),
        None => fields.duration("lease")?,
    };
    let mut ttl = match requested_ttl {
        Some(ttl) if ttl > 0 => ttl,
        _ if period > 0 => period,
        // A root parent making a root token without a TTL makes one that does not
        // expire, as in Vault.
        _ if parent.is_root() && policies == [ROOT_POLICY] && explicit_max_ttl == 0 => 0,
        _ => default_ttl,
    };
    if explicit_max_ttl > 0 && (ttl == 0 || ttl > explicit_max_ttl) {
        ttl = explicit_max_ttl;
    }
    let mut warnings = None;
    if period == 0 && ttl > max_ttl {
        warnings = Some(vec![format!(
            "TTL of {:?} exceeded the effective max_ttl of {:?}; TTL value is capped accordingly",
            duration::format_short(ttl),
            duration::format_short(max_ttl)
        )]);
        ttl = max_ttl;
    }
    let display_name = match fields.string("display_name")? {
        Some(name) if !name.is_empty() => {
            let full: String = format!("token-{name}")
                .chars()
                .map(|character| {
                    if character.is_ascii_alphanumeric() || character == '-' {
                        character
                    } else {
                        '-'
                    }
                })
                .collect();
            full.trim_end_matches('-').to_owned()
        }
        _ => "token".to_owned(),
    };
    let num_uses = match (fields.u64("num_uses")?.unwrap_or(0), role) {
        (requested, Some(role))
            if role.token_num_uses > 0 && (requested == 0 || requested > role.token_num_uses) =>
        {
            role.token_num_uses
        }
        (requested, _) => requested,
    };
    let new = NewToken {
        bound_cidrs: Vec::new(),
        policies,
        meta: fields.string_map("meta")?.unwrap_or_default(),
        display_name,
        num_uses,
        ttl,
        explicit_max_ttl,
        period,
        renewable: fields.bool("renewable")?.unwrap_or(true)
            && role.is_none_or(|role| role.renewable),
        parent: (!orphan).then(|| parent.hash.clone()),
        path: match role {
            Some(role) => role.token_path(),
            None => format!("auth/token/{endpoint}"),
        },
    };
    let (token, entry) = unsealed.tokens.create(new).await?;
    let granted = if entry.expire_time.is_some() {
        entry.creation_ttl
    } else {
        0
    };
    Ok(with_auth(auth_block(&entry, &token, granted), warnings))
}

/// The default and maximum TTL of the tokens the token store makes: as
/// `sys/auth/token/tune` set them, else the system's.
fn token_store_ttls(core: &Core, unsealed: &Unsealed) -> ApiResult<(u64, u64)> {
    let config = super::sys::mounts::token_entry(unsealed)?.config;
    let settings = core.settings();
    let or_system = |ttl: u64, system: u64| if ttl == 0 { system } else { ttl };
    Ok((
        or_system(config.default_lease_ttl, settings.default_lease_ttl),
        or_system(config.max_lease_ttl, settings.max_lease_ttl),
    ))
}

async fn renew(
    core: &Core,
    unsealed: &Unsealed,
    hash: &str,
    fields: &Fields<'_>,
    token: &str,
) -> ApiResult<Reply> {
    let increment = fields.duration("increment")?;
    // The token store's ceiling is for its own tokens; a method's login
    // tokens carry their mount's as their explicit maximum.
    let issued_here = unsealed
        .tokens
        .entry(hash)?
        .is_some_and(|entry| entry.path.starts_with("auth/token/"));
    let max_ttl = if issued_here {
        token_store_ttls(core, unsealed)?.1
    } else {
        core.settings().max_lease_ttl
    };
    match unsealed.tokens.renew(hash, increment, max_ttl).await {
        Ok(Some(renewed)) => Ok(with_auth(
            auth_block(&renewed.entry, token, renewed.ttl),
            renewed.warning.map(|warning| vec![warning]),
        )),
        Ok(None) => Err(bad_token()),
        Err(RenewError::NotRenewable) => Err(ApiError::invalid("token is not renewable")),
        Err(RenewError::Barrier(error)) => Err(error.into()),
    }
}
