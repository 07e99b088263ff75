//! `sys/quotas/config`, `sys/quotas/rate-limit/<name>` and
//! `sys/quotas/lease-count/<name>`: Vault's quota API (shapes and error texts
//! as OpenBao 2.7.2 answers; lease counts, which only Vault Enterprise has,
//! in its documented shape). A write replaces the whole rule or config, as in
//! Vault: a field left out takes its default.

use coffer_protocols::Operation;
use serde_json::{Map, Value, json};

use super::super::{Routed, Unsealed};
use super::system;
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::quotas::{self, Config, Kind, Limit, Rule};

/// `rest` is the path after `sys/`: `quotas/config`, `quotas/<kind>[/<name>]`.
pub(super) async fn route(
    unsealed: &Unsealed,
    rest: &str,
    operation: Operation,
    data: &Map<String, Value>,
) -> ApiResult<Routed> {
    let below = rest
        .strip_prefix("quotas/")
        .unwrap_or("")
        .trim_end_matches('/');
    let (kind, name) = below.split_once('/').unwrap_or((below, ""));
    let unsupported = || ApiError::unsupported(&format!("sys/{rest}"), operation.as_str());
    if kind == "config" && name.is_empty() {
        return match operation {
            Operation::Read => Ok(system(Reply::data(json!(read_config(unsealed)?)))),
            Operation::Write => {
                let config = parse_config(data)?;
                unsealed
                    .barrier
                    .put_json(quotas::CONFIG_PATH, &config)
                    .await?;
                Ok(system(Reply::NoContent))
            }
            _ => Err(unsupported()),
        };
    }
    let kind = Kind::parse(kind).ok_or_else(|| ApiError::no_route(&format!("sys/{rest}")))?;
    if name.is_empty() {
        return match operation {
            Operation::List | Operation::Read => {
                let names = unsealed.barrier.list(&kind.prefix())?;
                if names.is_empty() {
                    return Err(ApiError::not_found());
                }
                Ok(system(Reply::List(names)))
            }
            _ => Err(unsupported()),
        };
    }
    if !crate::policy::is_name(name, "-_.") {
        return Err(ApiError::invalid(format!(
            "invalid quota name {:?}: letters, digits, '-', '_' and '.' only",
            name.chars().take(64).collect::<String>()
        )));
    }
    let key = format!("{}{name}", kind.prefix());
    match operation {
        Operation::Read => {
            let rule: Rule = unsealed
                .barrier
                .get_json(&key)?
                .ok_or_else(ApiError::not_found)?;
            Ok(system(Reply::data(describe(unsealed, &rule)?)))
        }
        Operation::Write => {
            let rule = parse_rule(unsealed, kind, name, data)?;
            for other in rules(unsealed, kind)? {
                if other.name != rule.name && other.overlaps(&rule) {
                    return Err(ApiError::invalid(format!(
                        "quota rule with similar properties exists under the name {:?}",
                        other.name
                    )));
                }
            }
            unsealed.barrier.put_json(&key, &rule).await?;
            Ok(system(Reply::NoContent))
        }
        Operation::Delete => {
            unsealed.barrier.delete(&key).await?;
            Ok(system(Reply::NoContent))
        }
        _ => Err(unsupported()),
    }
}

/// The stored config, or the default one.
pub(in crate::core) fn read_config(unsealed: &Unsealed) -> ApiResult<Config> {
    Ok(unsealed
        .barrier
        .get_json(quotas::CONFIG_PATH)?
        .unwrap_or_default())
}

/// Every stored rule of `kind`.
pub(in crate::core) fn rules(unsealed: &Unsealed, kind: Kind) -> ApiResult<Vec<Rule>> {
    let prefix = kind.prefix();
    let mut rules = Vec::new();
    for name in unsealed.barrier.list(&prefix)? {
        if let Some(rule) = unsealed.barrier.get_json(&format!("{prefix}{name}"))? {
            rules.push(rule);
        }
    }
    Ok(rules)
}

fn parse_config(data: &Map<String, Value>) -> ApiResult<Config> {
    let fields = Fields::new(data);
    Ok(Config {
        enable_rate_limit_audit_logging: fields
            .bool("enable_rate_limit_audit_logging")?
            .unwrap_or(false),
        enable_rate_limit_response_headers: fields
            .bool("enable_rate_limit_response_headers")?
            .unwrap_or(false),
        rate_limit_exempt_paths: fields
            .string_list("rate_limit_exempt_paths")?
            .unwrap_or_default()
            .into_iter()
            .map(|path| quotas::normalize_path(&path))
            .collect(),
    })
}

fn parse_rule(
    unsealed: &Unsealed,
    kind: Kind,
    name: &str,
    data: &Map<String, Value>,
) -> ApiResult<Rule> {
    let fields = Fields::new(data);
    let path = scope_of(
        unsealed,
        &quotas::normalize_path(&fields.string("path")?.unwrap_or_default()),
    )?;
    let role = fields.string("role")?.unwrap_or_default();
    if !role.is_empty() {
        return Err(role_refusal(unsealed, &path));
    }
    let limit = match kind {
        Kind::RateLimit => {
            let rate = positive_number(&fields, "rate")?;
            Limit::RateLimit {
                rate,
                interval: fields.duration("interval")?.unwrap_or(1).max(1),
                block_interval: fields.duration("block_interval")?.unwrap_or(0),
            }
        }
        Kind::LeaseCount => {
            let max_leases = fields
                .u64("max_leases")
                .ok()
                .flatten()
                .filter(|max| *max > 0)
                .ok_or_else(|| ApiError::invalid("'max_leases' is invalid"))?;
            Limit::LeaseCount { max_leases }
        }
    };
    Ok(Rule {
        name: name.to_owned(),
        inheritable: fields.bool("inheritable")?.unwrap_or(path.is_empty()),
        path,
        role,
        limit,
    })
}

/// `rate`: a positive number, or its text.
fn positive_number(fields: &Fields<'_>, key: &str) -> ApiResult<f64> {
    let number = match fields.raw(key) {
        Some(Value::Number(number)) => number.as_f64(),
        Some(Value::String(text)) => text.trim().parse::<f64>().ok(),
        _ => None,
    };
    number
        .filter(|number| number.is_finite() && *number > 0.0)
        .ok_or_else(|| ApiError::invalid(format!("'{key}' is invalid")))
}

/// The mount a rule's `path` is in, as Vault checks it: empty (everything),
/// the mount itself (with its trailing slash), or a path or `*` prefix inside
/// a mount that exists.
fn scope_of(unsealed: &Unsealed, path: &str) -> ApiResult<String> {
    if path.is_empty() {
        return Ok(String::new());
    }
    let probe = path.trim_end_matches('*');
    let mount = mount_of(unsealed, probe)
        .ok_or_else(|| ApiError::invalid(format!("invalid mount path {path:?}")))?;
    if !path.ends_with('*') && probe.trim_end_matches('/') == mount.trim_end_matches('/') {
        return Ok(mount);
    }
    if path.ends_with('*') {
        Ok(path.to_owned())
    } else {
        Ok(path.trim_end_matches('/').to_owned())
    }
}

/// The mount `path` falls in: a secrets engine, an auth method, or one of
/// the mounts every node has (`sys/`, `cubbyhole/`, `auth/token/`).
fn mount_of(unsealed: &Unsealed, path: &str) -> Option<String> {
    for fixed in ["sys/", "cubbyhole/", "auth/token/"] {
        if path.starts_with(fixed) || fixed.trim_end_matches('/') == path {
            return Some(fixed.to_owned());
        }
    }
    if path.starts_with("auth/") {
        return unsealed
            .auth_methods
            .resolve(path)
            .map(|(entry, _, _)| format!("auth/{}", entry.path));
    }
    unsealed.mounts.resolve(path).map(|(entry, _)| entry.path)
}

/// Why a rule may not name a role: no method mounted here has roles a quota
/// can follow yet.
fn role_refusal(unsealed: &Unsealed, path: &str) -> ApiError {
    let is_auth_mount =
        path.starts_with("auth/") && mount_of(unsealed, path).is_some_and(|mount| mount == path);
    ApiError::invalid(if is_auth_mount {
        format!("Mount path {path:?} does not support use with role-based quotas")
    } else {
        format!(
            "Mount path {path:?} is not a valid auth method and therefore unsuitable for use with role-based quotas"
        )
    })
}

/// A rule as `GET` shows it.
fn describe(unsealed: &Unsealed, rule: &Rule) -> ApiResult<Value> {
    let mut data = json!({
        "name": rule.name,
        "path": rule.path,
        "role": rule.role,
        "type": rule.kind().as_str(),
        "inheritable": rule.inheritable,
    });
    match &rule.limit {
        Limit::RateLimit {
            rate,
            interval,
            block_interval,
        } => {
            // Whole rates print as integers, as Vault's do.
            data["rate"] = if rate.fract() == 0.0 && *rate <= u64::MAX as f64 {
                json!(*rate as u64)
            } else {
                json!(rate)
            };
            data["interval"] = json!(interval);
            data["block_interval"] = json!(block_interval);
        }
        Limit::LeaseCount { max_leases } => {
            data["max_leases"] = json!(max_leases);
            data["counter"] = json!(
                unsealed
                    .leases
                    .count_under(&quotas::lease_prefix(&rule.path))
                    .map_err(|error| ApiError::internal(&error))?
            );
        }
    }
    Ok(data)
}
