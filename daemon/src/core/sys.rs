//! The `sys/` endpoints: seal lifecycle, health, mounts, policies, capabilities,
//! key rotation and metrics.

use base64::Engine as _;
use coffer_protocols::{Operation, Request};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::{Caller, Core, Routed, Unsealed, capability_for};
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::policy::{self, DEFAULT_POLICY, ROOT_POLICY};
use crate::policy_store;
use crate::tokens::now_seconds;
pub(super) use endpoint::{Access, Endpoint};

mod audit;
pub(super) mod endpoint;
mod leases;
pub(super) mod mounts;
mod password;
pub(super) mod quorum;
pub(super) mod quotas;
mod raft;
pub(super) mod rotation;

fn raw(status: u16, body: Value) -> Routed {
    Routed {
        reply: Reply::Raw(status, body),
        mount_type: "system",
        flatten: false,
    }
}

fn system(reply: Reply) -> Routed {
    Routed {
        reply,
        mount_type: "system",
        flatten: true,
    }
}

/// The endpoints that answer without a token and while sealed
/// ([`Access::Open`]).
pub(super) async fn unauthenticated(
    core: &Core,
    request: &Request,
    path: &str,
    endpoint: Endpoint<'_>,
) -> ApiResult<Routed> {
    let operation = request.operation;
    let data = &request.data;
    match (endpoint, operation) {
        (Endpoint::Health, Operation::Read) => health(core, data),
        (Endpoint::SealStatus, Operation::Read) => Ok(raw(200, seal_status(core))),
        (Endpoint::Init, Operation::Read) => {
            Ok(raw(200, json!({"initialized": core.status().initialized})))
        }
        (Endpoint::Init, Operation::Write) => init(core, data).await,
        (Endpoint::Unseal, Operation::Write) => unseal(core, data).await,
        (Endpoint::Leader, Operation::Read) => leader(core),
        (Endpoint::RaftJoin, Operation::Write) => raft::join(core, data).await,
        (Endpoint::BootstrapChallenge, Operation::Write) => raft::challenge(core, data),
        (Endpoint::BootstrapAnswer, Operation::Write) => raft::answer(core, data).await,
        (Endpoint::Metrics, Operation::Read) => metrics(core, data),
        _ => Err(ApiError::unsupported(path, operation.as_str())),
    }
}

fn health(core: &Core, data: &Map<String, Value>) -> ApiResult<Routed> {
    let fields = Fields::new(data);
    let code = |key: &str, default: u16| -> ApiResult<u16> {
        match fields.u64(key)? {
            Some(code) if (100..600).contains(&code) => Ok(code as u16),
            Some(_) => Err(ApiError::invalid(format!(
                "{key} must be an HTTP status code"
            ))),
            None => Ok(default),
        }
    };
    let status = core.status();
    // An unsealed node that does not lead is a standby (it serves reads and
    // forwards writes), as in Vault.
    let standby = !status.sealed && !core.replica.is_leader();
    let http_status = if !status.initialized {
        code("uninitcode", 501)?
    } else if status.sealed {
        code("sealedcode", 503)?
    } else if standby && !Fields::new(data).bool("standbyok")?.unwrap_or(false) {
        code("standbycode", 429)?
    } else {
        code("activecode", 200)?
    };
    let cluster = status.cluster.as_ref();
    Ok(raw(
        http_status,
        json!({
            "initialized": status.initialized,
            "sealed": status.sealed,
            "standby": standby,
            "performance_standby": false,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": now_seconds(),
            "version": crate::build_info::version(),
            "enterprise": false,
            "cluster_name": cluster.map(|cluster| cluster.name.as_str()).unwrap_or(""),
            "cluster_id": cluster.map(|cluster| cluster.id.as_str()).unwrap_or(""),
        }),
    ))
}

fn seal_status(core: &Core) -> Value {
    let status = core.status();
    let mut body = json!({
        "type": status.seal_type,
        "initialized": status.initialized,
        "sealed": status.sealed,
        "t": status.threshold,
        "n": status.shares,
        "progress": status.progress,
        "nonce": status.nonce,
        "version": crate::build_info::version(),
        "build_date": crate::build_info::DATE,
        "migration": status.migration,
        "recovery_seal": status.recovery_seal,
        "storage_type": "raft",
    });
    if let Value::Object(object) = &mut body {
        if status.recovery_seal {
            object.insert("recovery_seal_type".into(), json!("shamir"));
        }
        if let Some(cluster) = &status.cluster {
            object.insert("cluster_name".into(), json!(cluster.name));
            object.insert("cluster_id".into(), json!(cluster.id));
        }
    }
    body
}

async fn init(core: &Core, data: &Map<String, Value>) -> ApiResult<Routed> {
    let fields = Fields::new(data);
    // The CLI always sends these, empty.
    fields.refuse_unless_empty(&["pgp_keys", "root_token_pgp_key", "recovery_pgp_keys"])?;
    // As Vault: the parameters of the other kind of key are refused by name.
    let given = |keys: &[&'static str]| -> ApiResult<Vec<&'static str>> {
        let mut given = Vec::new();
        for key in keys {
            if fields.u64(key)?.unwrap_or(0) > 0 {
                given.push(*key);
            }
        }
        Ok(given)
    };
    let secret = given(&["secret_shares", "secret_threshold", "stored_shares"])?;
    let recovery = given(&["recovery_shares", "recovery_threshold"])?;
    let seal_type = core.status().seal_type;
    let auto = core.settings().seal.is_some();
    let refused = if auto { &secret } else { &recovery };
    if !refused.is_empty() {
        return Err(ApiError::invalid(format!(
            "parameters {} not applicable to seal type {seal_type}",
            refused.join(",")
        )));
    }
    let (shares, threshold) = if auto {
        (
            optional_share_count(&fields, "recovery_shares")?,
            optional_share_count(&fields, "recovery_threshold")?,
        )
    } else {
        (
            share_count(&fields, "secret_shares")?,
            share_count(&fields, "secret_threshold")?,
        )
    };
    let output = core.initialize(shares, threshold, None).await?;
    let base64 = base64::engine::general_purpose::STANDARD;
    let hex_keys: Vec<String> = output.shares.iter().map(hex::encode).collect();
    let base64_keys: Vec<String> = output
        .shares
        .iter()
        .map(|share| base64.encode(share.as_slice()))
        .collect();
    let body = if auto {
        let mut body = json!({
            "keys": [],
            "keys_base64": [],
            "root_token": output.root_token.as_str(),
        });
        if !hex_keys.is_empty() {
            body["recovery_keys"] = json!(hex_keys);
            body["recovery_keys_base64"] = json!(base64_keys);
        }
        body
    } else {
        json!({
            "keys": hex_keys,
            "keys_base64": base64_keys,
            "root_token": output.root_token.as_str(),
        })
    };
    Ok(raw(200, body))
}

/// A recovery share count or threshold: 0 when absent, at most 255.
fn optional_share_count(fields: &Fields<'_>, key: &str) -> ApiResult<u8> {
    let value = fields.u64(key)?.unwrap_or(0);
    u8::try_from(value).map_err(|_| ApiError::invalid(format!("{key} must be at most 255")))
}

/// A share count or threshold (`secret_shares`, `secret_threshold`): required,
/// at most 255.
fn share_count(fields: &Fields<'_>, key: &str) -> ApiResult<u8> {
    let value = fields
        .u64(key)?
        .ok_or_else(|| ApiError::invalid(format!("{key} is required")))?;
    u8::try_from(value).map_err(|_| ApiError::invalid(format!("{key} must be at most 255")))
}

/// A key share as operators type it: hex or base64.
fn decode_share(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let text = text.trim();
    if let Ok(bytes) = hex::decode(text) {
        return Some(Zeroizing::new(bytes));
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .map(Zeroizing::new)
}

async fn unseal(core: &Core, data: &Map<String, Value>) -> ApiResult<Routed> {
    let fields = Fields::new(data);
    let migrate = fields.bool("migrate")?.unwrap_or(false);
    if fields.bool("reset")?.unwrap_or(false) {
        core.reset_unseal();
    } else {
        let key = fields.string("key")?.ok_or_else(|| {
            ApiError::invalid(
                "'key' must be specified in request body as JSON, or 'reset' set to true",
            )
        })?;
        let share = decode_share(&key)
            .ok_or_else(|| ApiError::invalid("'key' must be a valid hex or base64 string"))?;
        core.submit_unseal_share(share, migrate).await?;
    }
    Ok(raw(200, seal_status(core)))
}

fn leader(core: &Core) -> ApiResult<Routed> {
    if core.is_sealed() {
        return Err(ApiError::sealed());
    }
    let cluster = &core.replica;
    let leader = cluster.leader();
    let (address, cluster_address) = leader
        .as_ref()
        .map(|(_, node)| (node.api_addr.clone(), node.cluster_addr.clone()))
        .unwrap_or_default();
    let indexes = cluster.indexes();
    Ok(raw(
        200,
        json!({
            "ha_enabled": true,
            "is_self": leader.as_ref().is_some_and(|(id, _)| *id == cluster.id()),
            "active_time": active_time(core.active_since()),
            "leader_address": address,
            "leader_cluster_address": cluster_address,
            "performance_standby": false,
            "performance_standby_last_remote_wal": 0,
            "raft_committed_index": indexes.committed,
            "raft_applied_index": indexes.applied,
        }),
    ))
}

/// `sys/leader`'s `active_time`: RFC 3339, and Go's zero time when the node
/// is not active (clients parse it).
fn active_time(since_ms: u64) -> String {
    if since_ms == 0 {
        return "0001-01-01T00:00:00Z".to_owned();
    }
    humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(since_ms),
    )
    .to_string()
}

fn metrics(core: &Core, data: &Map<String, Value>) -> ApiResult<Routed> {
    match Fields::new(data).string("format")?.as_deref() {
        Some("prometheus") => Ok(Routed {
            reply: Reply::Text(
                "text/plain; version=0.0.4; charset=utf-8",
                core.render_metrics(),
            ),
            mount_type: "system",
            flatten: false,
        }),
        _ => Err(ApiError::invalid(
            "unsupported format: coffer serves metrics with ?format=prometheus",
        )),
    }
}

/// The `sys/` endpoints that need a token.
pub(super) async fn handle(
    core: &Core,
    unsealed: &Unsealed,
    request: &Request,
    path: &str,
    endpoint: Endpoint<'_>,
    caller: &Caller,
) -> ApiResult<Routed> {
    let operation = request.operation;
    let data = &request.data;
    let sudo = match endpoint.access(core.settings.unauthenticated_metrics_access) {
        Access::Token { sudo } => sudo,
        // These authorize each path they stand for by its own rules.
        Access::ByTarget => {
            return match endpoint {
                Endpoint::UiMounts(mount_path) if operation == Operation::Read => {
                    mounts::ui_mounts(unsealed, caller, mount_path)
                }
                Endpoint::Files(fs_path) => {
                    super::fs::route(unsealed, caller, operation, fs_path, data).await
                }
                _ => Err(ApiError::unsupported(path, operation.as_str())),
            };
        }
        Access::Possession => {
            let Endpoint::Wrapping(action) = endpoint else {
                return Err(ApiError::unsupported(path, operation.as_str()));
            };
            let wrap_ttl = super::wrapping::requested_ttl(request)?;
            return super::wrapping::route(unsealed, request, action, wrap_ttl).await;
        }
        Access::KeyHolders => {
            if !caller.key_holder {
                caller.authorize(path, capability_for(operation, true), data, true)?;
            }
            let (Endpoint::GenerateRoot(rest) | Endpoint::Rekey(rest)) = endpoint else {
                return Err(ApiError::unsupported(path, operation.as_str()));
            };
            return quorum::route(core, unsealed, request, rest).await;
        }
        Access::Open => return Err(ApiError::unsupported(path, operation.as_str())),
    };
    caller.authorize(path, capability_for(operation, true), data, sudo)?;
    let unsupported = || ApiError::unsupported(path, operation.as_str());
    match endpoint {
        Endpoint::Seal if operation == Operation::Write => {
            core.seal().await;
            Ok(system(Reply::NoContent))
        }
        Endpoint::RotateConfig => {
            rotation::route(
                unsealed,
                operation,
                data,
                core.settings().min_rotation_operations,
            )
            .await
        }
        Endpoint::Rotate if operation == Operation::Write => {
            unsealed.barrier.rotate().await?;
            Ok(system(Reply::NoContent))
        }
        Endpoint::KeyStatus if operation == Operation::Read => {
            let (term, installed) = unsealed.barrier.key_status();
            Ok(system(Reply::data(json!({
                "term": term,
                "install_time": humantime::format_rfc3339_nanos(installed).to_string(),
                "encryptions": unsealed.barrier.encryptions()?,
            }))))
        }
        Endpoint::Mounts(rest) => mounts::mounts_route(unsealed, rest, operation, data).await,
        Endpoint::Remount if operation == Operation::Write => mounts::remount(unsealed, data).await,
        Endpoint::RemountStatus(id) if operation == Operation::Read => {
            mounts::remount_status(unsealed, id)
        }
        Endpoint::Wrapping(action) => {
            let wrap_ttl = super::wrapping::requested_ttl(request)?;
            super::wrapping::route(unsealed, request, action, wrap_ttl).await
        }
        Endpoint::Auth(rest) => mounts::auth_route(unsealed, rest, operation, data).await,
        Endpoint::PasswordPolicies(rest) => password::route(unsealed, rest, operation, data).await,
        Endpoint::Policies(rest) => policies_route(unsealed, rest, operation, data, false).await,
        Endpoint::Policy(rest) => policies_route(unsealed, rest, operation, data, true).await,
        Endpoint::CapabilitiesSelf if operation == Operation::Write => {
            capabilities(&caller.acl, data).map(system)
        }
        Endpoint::Capabilities if operation == Operation::Write => {
            let token = Fields::new(data)
                .string("token")?
                .ok_or_else(|| ApiError::invalid("missing token"))?;
            let entry = unsealed
                .tokens
                .lookup(&token)?
                .ok_or_else(|| ApiError::invalid("invalid token"))?;
            capabilities(acl_of(unsealed, &entry.policies)?.as_ref(), data).map(system)
        }
        Endpoint::CapabilitiesAccessor if operation == Operation::Write => {
            let accessor = Fields::new(data)
                .string("accessor")?
                .ok_or_else(|| ApiError::invalid("missing accessor"))?;
            let entry = unsealed
                .tokens
                .lookup_accessor(&accessor)?
                .ok_or_else(|| ApiError::invalid("invalid accessor"))?;
            capabilities(acl_of(unsealed, &entry.policies)?.as_ref(), data).map(system)
        }
        Endpoint::Metrics if operation == Operation::Read => metrics(core, data),
        Endpoint::Storage(rest) => raft::route(core, unsealed, request, rest).await,
        Endpoint::Audit(rest) | Endpoint::AuditHash(rest) => {
            audit::route(unsealed, request, rest, core.settings().api_audit_creation).await
        }
        Endpoint::Leases(rest) => leases::route(unsealed, request, rest).await,
        Endpoint::Quotas(rest) => quotas::route(unsealed, rest, operation, data).await,
        Endpoint::LockedUsers(rest) => mounts::locked_users_route(unsealed, rest, operation, data),
        Endpoint::Raw | Endpoint::Unknown | Endpoint::UiMounts(_) | Endpoint::Files(_) => {
            Err(ApiError::no_route(path))
        }
        _ => Err(unsupported()),
    }
}

fn acl_of(unsealed: &Unsealed, policies: &[String]) -> ApiResult<std::sync::Arc<policy::Acl>> {
    unsealed
        .policies
        .acl(policies)
        .map_err(|error| ApiError::internal(&error))
}

fn capabilities(acl: &policy::Acl, data: &Map<String, Value>) -> ApiResult<Reply> {
    let fields = Fields::new(data);
    let mut paths = fields.string_list("paths")?.unwrap_or_default();
    if let Some(path) = fields.string("path")? {
        paths.push(path);
    }
    if paths.is_empty() {
        return Err(ApiError::invalid("missing path or paths"));
    }
    let mut answer = Map::new();
    for path in &paths {
        answer.insert(path.clone(), json!(acl.capabilities(path)));
    }
    if let Some(first) = paths.first() {
        answer.insert("capabilities".into(), json!(acl.capabilities(first)));
    }
    Ok(Reply::Data(answer))
}

fn policy_error(error: policy_store::Error) -> ApiError {
    match error {
        policy_store::Error::Barrier(inner) => ApiError::from(inner),
        other => ApiError::invalid(other.to_string()),
    }
}

/// `sys/policies/acl[/<name>]`, and the older `sys/policy[/<name>]` (`legacy`),
/// which hvac's `create_or_update_policy` still uses.
async fn policies_route(
    unsealed: &Unsealed,
    rest: &str,
    operation: Operation,
    data: &Map<String, Value>,
    legacy: bool,
) -> ApiResult<Routed> {
    let name = if legacy {
        rest.strip_prefix("policy")
    } else {
        rest.strip_prefix("policies/acl")
    };
    let Some(name) = name else {
        return Err(ApiError::no_route(&format!("sys/{rest}")));
    };
    let name = name.trim_start_matches('/');
    if name.is_empty() {
        let names = unsealed.policies.list().map_err(policy_error)?;
        return match operation {
            Operation::List => Ok(system(Reply::List(names))),
            Operation::Read if legacy => Ok(system(Reply::data(
                json!({"keys": names, "policies": names}),
            ))),
            Operation::Read => Ok(system(Reply::List(names))),
            _ => Err(ApiError::unsupported(rest, operation.as_str())),
        };
    }
    let name =
        policy::normalize_name(name).map_err(|error| ApiError::invalid(error.to_string()))?;
    match operation {
        Operation::Read => {
            let found = unsealed.policies.get(&name).map_err(policy_error)?;
            let Some(found) = found else {
                return Err(ApiError::not_found());
            };
            let text_key = if legacy { "rules" } else { "policy" };
            let mut answer = Map::new();
            answer.insert("name".into(), json!(found.name));
            answer.insert(text_key.into(), json!(found.raw));
            Ok(system(Reply::Data(answer)))
        }
        Operation::Write => {
            let fields = Fields::new(data);
            let text = match fields.string("policy")? {
                Some(text) => text,
                None => fields
                    .string("rules")?
                    .ok_or_else(|| ApiError::invalid("'policy' parameter not supplied or empty"))?,
            };
            let text = decode_policy_text(text);
            if name == ROOT_POLICY {
                return Err(ApiError::invalid("cannot update the root policy"));
            }
            let parsed = policy::parse(&name, &text)
                .map_err(|error| ApiError::invalid(error.to_string()))?;
            unsealed.policies.put(&parsed).await.map_err(policy_error)?;
            Ok(system(Reply::NoContent))
        }
        Operation::Delete => {
            if name == DEFAULT_POLICY || name == ROOT_POLICY {
                return Err(ApiError::invalid(format!(
                    "cannot delete the {name} policy"
                )));
            }
            unsealed
                .policies
                .delete(&name)
                .await
                .map_err(policy_error)?;
            Ok(system(Reply::NoContent))
        }
        _ => Err(ApiError::unsupported(rest, operation.as_str())),
    }
}

/// Vault accepts a policy body base64-encoded; plain text is used as is.
fn decode_policy_text(text: String) -> String {
    let trimmed = text.trim();
    if !trimmed.is_empty()
        && !trimmed.contains(char::is_whitespace)
        && !trimmed.starts_with('{')
        && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(trimmed)
        && let Ok(decoded) = String::from_utf8(bytes)
    {
        return decoded;
    }
    text
}
