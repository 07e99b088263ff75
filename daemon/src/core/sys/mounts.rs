//! `sys/mounts`, `sys/auth` and `sys/internal/ui/mounts`: the tables of
//! secrets engines and auth methods, enabled, disabled, tuned and listed as
//! Vault does.

use crate::auth::lockout::LockoutConfig;
use std::collections::BTreeMap;

use coffer_protocols::Operation;
use serde_json::{Map, Value, json};

use super::super::{Caller, Routed, Unsealed};
use super::{leases, system};
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::build_info::VERSION;
use crate::mounts::{self, MountConfig, MountEntry, MountTable};

/// A mount as `sys/mounts` and `sys/auth` list it.
fn mount_json(entry: &MountEntry) -> Value {
    let mut listed = json!({
        "type": entry.kind,
        "description": entry.description,
        "accessor": entry.accessor,
        "uuid": entry.uuid,
        "config": {
            "default_lease_ttl": entry.config.default_lease_ttl,
            "max_lease_ttl": entry.config.max_lease_ttl,
            "force_no_cache": false,
        },
        "options": if entry.options.is_empty() { Value::Null } else { json!(entry.options) },
        "local": false,
        "seal_wrap": entry.seal_wrap,
        "external_entropy_access": false,
        "plugin_version": "",
        "running_plugin_version": format!("v{VERSION}+builtin.coffer"),
        "running_sha256": "",
    });
    if let Some(lockout) = entry.config.user_lockout {
        listed["config"]["user_lockout_config"] = json!({
            "user_lockout_threshold": lockout.threshold,
            "user_lockout_duration": lockout.duration,
            "user_lockout_counter_reset_duration": lockout.counter_reset,
            "user_lockout_disable": lockout.disable,
        });
    }
    listed
}

/// The core's own entries, which no table stores.
fn built_in_entry(path: &str, kind: &str, description: &str, accessor: &str) -> MountEntry {
    MountEntry {
        path: path.to_owned(),
        kind: kind.to_owned(),
        description: description.to_owned(),
        uuid: String::new(),
        accessor: accessor.to_owned(),
        config: MountConfig::default(),
        options: BTreeMap::new(),
        local: false,
        seal_wrap: false,
        created_time: 0,
    }
}

fn system_entry() -> MountEntry {
    let mut entry = built_in_entry(
        "sys/",
        "system",
        "system endpoints used for control, policy and debugging",
        "system",
    );
    entry.seal_wrap = true;
    entry
}

/// Each token's private store, built into the core (`core/cubbyhole.rs`).
fn cubbyhole_entry() -> MountEntry {
    built_in_entry(
        "cubbyhole/",
        "cubbyhole",
        "per-token private secret storage",
        "cubbyhole",
    )
}

/// The token store's mount: built in, with what `sys/auth/token/tune` stored.
pub(in crate::core) fn token_entry(unsealed: &Unsealed) -> ApiResult<MountEntry> {
    Ok(unsealed
        .barrier
        .get_json(TOKEN_MOUNT_PATH)?
        .unwrap_or_else(|| {
            built_in_entry("token/", "token", "token based credentials", "auth_token")
        }))
}

/// Where the token store's tuned mount entry is kept.
const TOKEN_MOUNT_PATH: &str = "core/auth-token";

/// Every auth mount: the token store, the built-in methods, the enabled ones.
fn auth_entries(unsealed: &Unsealed) -> ApiResult<Vec<MountEntry>> {
    let mut entries = vec![token_entry(unsealed)?];
    entries.extend(unsealed.auth_methods.entries());
    Ok(entries)
}

/// Mount settings Vault has and coffer does not implement; clients send them with
/// default values, which are accepted.
const UNIMPLEMENTED_MOUNT_SETTINGS: [&str; 12] = [
    "force_no_cache",
    "audit_non_hmac_request_keys",
    "audit_non_hmac_response_keys",
    "listing_visibility",
    "passthrough_request_headers",
    "allowed_response_headers",
    "token_type",
    "allowed_managed_keys",
    "plugin_version",
    "delegated_auth_accessors",
    "identity_token_key",
    "plugin_name",
];

/// Checks a mount's settings (the `config` object of an enable, or a tune body):
/// the TTLs are applied, Vault's other settings are accepted only when empty,
/// and fields Vault does not know are ignored, as Vault does.
fn mount_settings(fields: &Fields<'_>) -> ApiResult<(Option<u64>, Option<u64>)> {
    fields.refuse_unless_empty(&UNIMPLEMENTED_MOUNT_SETTINGS)?;
    let (default_ttl, max_ttl) = (
        fields.duration("default_lease_ttl")?,
        fields.duration("max_lease_ttl")?,
    );
    check_ttls(default_ttl.unwrap_or(0), max_ttl.unwrap_or(0))?;
    Ok((default_ttl, max_ttl))
}

/// `user_lockout_config` (`lockout_threshold`, `lockout_duration`,
/// `lockout_counter_reset`, `disable_lockout`), over `current` (Vault's
/// defaults when unset); `None` when the body has none.
fn lockout_setting(
    fields: &Fields<'_>,
    current: Option<LockoutConfig>,
) -> ApiResult<Option<LockoutConfig>> {
    let Some(object) = fields.object("user_lockout_config")? else {
        return Ok(None);
    };
    let given = Fields::new(object);
    let mut config = current.unwrap_or_default();
    if let Some(threshold) = given.u64("lockout_threshold")? {
        config.threshold = threshold;
    }
    if let Some(duration) = given.duration("lockout_duration")? {
        config.duration = duration;
    }
    if let Some(reset) = given.duration("lockout_counter_reset")? {
        config.counter_reset = reset;
    }
    if let Some(disable) = given.bool("disable_lockout")? {
        config.disable = disable;
    }
    Ok(Some(config))
}

/// A maximum below the default is refused (as Vault does) when both are set.
fn check_ttls(default_ttl: u64, max_ttl: u64) -> ApiResult<()> {
    if default_ttl != 0 && max_ttl != 0 && max_ttl < default_ttl {
        return Err(ApiError::invalid(format!(
            "backend max lease TTL of {max_ttl} would be less than backend default lease TTL of {default_ttl}"
        )));
    }
    Ok(())
}

/// What an enable (`sys/mounts/<path>`, `sys/auth/<path>`) asks for.
struct Enable {
    kind: String,
    description: String,
    config: MountConfig,
    options: BTreeMap<String, String>,
}

/// Fields Vault does not know are ignored, as Vault does.
fn parse_enable(fields: &Fields<'_>) -> ApiResult<Enable> {
    fields.refuse_unless_empty(&[
        "local",
        "seal_wrap",
        "external_entropy_access",
        "plugin_name",
        "plugin_version",
    ])?;
    let kind = fields
        .string("type")?
        .ok_or_else(|| ApiError::invalid("missing type"))?;
    let mut config = MountConfig::default();
    if let Some(object) = fields.object("config")? {
        let (default_ttl, max_ttl) = mount_settings(&Fields::new(object))?;
        config.default_lease_ttl = default_ttl.unwrap_or(0);
        config.max_lease_ttl = max_ttl.unwrap_or(0);
        config.user_lockout = lockout_setting(&Fields::new(object), None)?;
    }
    Ok(Enable {
        kind,
        description: fields.string("description")?.unwrap_or_default(),
        config,
        options: fields.string_map("options")?.unwrap_or_default(),
    })
}

fn mount_error(error: mounts::Error) -> ApiError {
    match error {
        mounts::Error::Barrier(inner) => ApiError::from(inner),
        mounts::Error::Random(inner) => ApiError::from(inner),
        other => ApiError::invalid(other.to_string()),
    }
}

/// `GET .../tune`: the settings in effect (the system's where the mount sets
/// none).
fn tune_read(unsealed: &Unsealed, entry: &MountEntry, auth: bool) -> Routed {
    let (system_default, system_max) = unsealed.lease_ttls;
    let effective = |ttl: u64, system: u64| if ttl == 0 { system } else { ttl };
    let mut reply = json!({
        "default_lease_ttl": effective(entry.config.default_lease_ttl, system_default),
        "max_lease_ttl": effective(entry.config.max_lease_ttl, system_max),
        "force_no_cache": false,
        "description": entry.description,
    });
    if auth {
        reply["token_type"] = json!("default-service");
        if let Some(lockout) = entry.config.user_lockout {
            reply["user_lockout_threshold"] = json!(lockout.threshold);
            reply["user_lockout_duration"] = json!(lockout.duration);
            reply["user_lockout_counter_reset_duration"] = json!(lockout.counter_reset);
            reply["user_lockout_disable"] = json!(lockout.disable);
        }
    } else {
        reply["options"] = if entry.options.is_empty() {
            Value::Null
        } else {
            json!(entry.options)
        };
    }
    system(Reply::data(reply))
}

/// `POST .../tune`: new TTLs and description for the mount at `path` of `table`.
async fn tune_write(table: &MountTable, path: &str, fields: &Fields<'_>) -> ApiResult<()> {
    let (default_ttl, max_ttl) = mount_settings(fields)?;
    let description = fields.string("description")?;
    let current = table
        .get(path)
        .ok_or_else(|| ApiError::invalid(format!("no mount at {path:?}")))?;
    check_ttls(
        default_ttl.unwrap_or(current.config.default_lease_ttl),
        max_ttl.unwrap_or(current.config.max_lease_ttl),
    )?;
    let lockout = lockout_setting(fields, current.config.user_lockout)?;
    table
        .update(path, |entry| {
            if lockout.is_some() {
                entry.config.user_lockout = lockout;
            }
            if let Some(ttl) = default_ttl {
                entry.config.default_lease_ttl = ttl;
            }
            if let Some(ttl) = max_ttl {
                entry.config.max_lease_ttl = ttl;
            }
            if let Some(description) = description {
                entry.description = description;
            }
        })
        .await
        .map_err(mount_error)?;
    Ok(())
}

/// `sys/auth/token/tune`: the token store's TTLs (the defaults and ceiling of
/// the tokens `auth/token/create` makes) and description.
async fn tune_token_store(
    unsealed: &Unsealed,
    mut entry: MountEntry,
    fields: &Fields<'_>,
) -> ApiResult<()> {
    if fields
        .string_map("options")?
        .is_some_and(|options| !options.is_empty())
    {
        return Err(ApiError::invalid("the token auth method takes no options"));
    }
    let (default_ttl, max_ttl) = mount_settings(fields)?;
    let default_ttl = default_ttl.unwrap_or(entry.config.default_lease_ttl);
    let max_ttl = max_ttl.unwrap_or(entry.config.max_lease_ttl);
    check_ttls(default_ttl, max_ttl)?;
    entry.config.default_lease_ttl = default_ttl;
    entry.config.max_lease_ttl = max_ttl;
    if let Some(description) = fields.string("description")? {
        entry.description = description;
    }
    unsealed.barrier.put_json(TOKEN_MOUNT_PATH, &entry).await?;
    Ok(())
}

/// Splits `<path>/tune` from `<path>`.
fn tune_target(target: &str) -> (&str, bool) {
    match target.strip_suffix("/tune") {
        Some(path) => (path, true),
        None => (target, false),
    }
}

/// `sys/mounts` and `sys/mounts/<path>[/tune]` (`rest` is past `sys/`); also
/// `sys/mounts/auth/<path>/tune`, which tunes an auth method as Vault allows.
pub(super) async fn mounts_route(
    unsealed: &Unsealed,
    rest: &str,
    operation: Operation,
    data: &Map<String, Value>,
) -> ApiResult<Routed> {
    let target = rest
        .strip_prefix("mounts")
        .unwrap_or("")
        .trim_start_matches('/');
    if target.is_empty() {
        return match operation {
            Operation::Read => {
                let mut listing = Map::new();
                for entry in unsealed.mounts.entries().iter() {
                    listing.insert(entry.path.clone(), mount_json(entry));
                }
                listing.insert("sys/".into(), mount_json(&system_entry()));
                listing.insert("cubbyhole/".into(), mount_json(&cubbyhole_entry()));
                Ok(system(Reply::Data(listing)))
            }
            _ => Err(ApiError::unsupported("sys/mounts", operation.as_str())),
        };
    }
    let (mount_path, tune) = tune_target(target);
    if tune && let Some(auth_path) = mount_path.strip_prefix("auth/") {
        return auth_tune(unsealed, auth_path, operation, data).await;
    }
    let mount_path = mounts::normalize_path(mount_path).map_err(mount_error)?;
    let fields = Fields::new(data);
    let entry = || {
        unsealed
            .mounts
            .get(&mount_path)
            .ok_or_else(|| ApiError::invalid(format!("no mount at {mount_path:?}")))
    };
    match (tune, operation) {
        (false, Operation::Write) => {
            let enable = parse_enable(&fields)?;
            let (kind, options) = unsealed.engines.configure(&enable.kind, enable.options)?;
            unsealed
                .mounts
                .mount(
                    mount_path,
                    kind.to_owned(),
                    enable.description,
                    enable.config,
                    options,
                )
                .await
                .map_err(mount_error)?;
            Ok(system(Reply::NoContent))
        }
        (false, Operation::Delete) => {
            leases::revoke_mount(unsealed, &mount_path).await?;
            match unsealed.mounts.unmount(&mount_path).await {
                Ok(_) | Err(mounts::Error::NotMounted(_)) => Ok(system(Reply::NoContent)),
                Err(error) => Err(mount_error(error)),
            }
        }
        (false, Operation::Read) => Ok(system(Reply::data(mount_json(&entry()?)))),
        (true, Operation::Read) => Ok(tune_read(unsealed, &entry()?, false)),
        (true, Operation::Write) => {
            let current = entry()?;
            if let Some(options) = fields.string_map("options")?
                && let Some(version) = options.get("version")
                && current.options.get("version") != Some(version)
            {
                return Err(ApiError::invalid(
                    "changing a kv mount's version is not supported by coffer",
                ));
            }
            tune_write(&unsealed.mounts, &mount_path, &fields).await?;
            Ok(system(Reply::NoContent))
        }
        _ => Err(ApiError::unsupported(rest, operation.as_str())),
    }
}

/// Where `sys/remount` records each move, for `sys/remount/status/<id>`.
const MIGRATIONS_PREFIX: &str = "core/remount/";

/// `sys/remount {from, to}`: moves a secrets engine. Its data stays where it
/// is (under the mount's uuid), so the move is one table write, done when
/// this answers. A mount with leases is not moved: their ids name the old
/// path.
pub(super) async fn remount(unsealed: &Unsealed, data: &Map<String, Value>) -> ApiResult<Routed> {
    let fields = Fields::new(data);
    let (Some(from), Some(to)) = (fields.string("from")?, fields.string("to")?) else {
        return Err(ApiError::invalid(
            "both 'from' and 'to' path must be specified as a string",
        ));
    };
    if [&from, &to]
        .iter()
        .any(|path| path.trim_start_matches('/').starts_with("auth/"))
    {
        return Err(ApiError::invalid(
            "coffer moves secrets engines only, not auth methods",
        ));
    }
    let from = mounts::normalize_path(&from).map_err(mount_error)?;
    let to = mounts::normalize_path(&to).map_err(mount_error)?;
    if unsealed.mounts.get(&from).is_none() {
        return Err(ApiError::invalid(format!("no matching mount at {from:?}")));
    }
    let leases = unsealed
        .leases
        .ids_under(&from)
        .map_err(super::super::leasing::lease_error)?;
    if !leases.is_empty() {
        return Err(ApiError::invalid(format!(
            "the mount {from:?} has {} leases, whose ids name its path: revoke them first (sys/leases/revoke-prefix/{from})",
            leases.len()
        )));
    }
    let id = mounts::uuid_v4()?;
    let status = json!({"source_mount": from, "target_mount": to, "status": "success"});
    unsealed
        .mounts
        .remount(&from, to, |batch| {
            batch.put_json(&format!("{MIGRATIONS_PREFIX}{id}"), &status)
        })
        .await
        .map_err(mount_error)?;
    Ok(system(Reply::data(json!({"migration_id": id}))))
}

/// `sys/remount/status/<id>`.
pub(super) fn remount_status(unsealed: &Unsealed, id: &str) -> ApiResult<Routed> {
    let valid =
        !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    let status: Option<Value> = if valid {
        unsealed
            .barrier
            .get_json(&format!("{MIGRATIONS_PREFIX}{id}"))?
    } else {
        None
    };
    let status = status.ok_or_else(ApiError::not_found)?;
    Ok(system(Reply::data(
        json!({"migration_id": id, "migration_info": status}),
    )))
}

/// `sys/auth` and `sys/auth/<path>[/tune]` (`rest` is past `sys/`): the auth
/// methods, the token store among them.
pub(super) async fn auth_route(
    unsealed: &Unsealed,
    rest: &str,
    operation: Operation,
    data: &Map<String, Value>,
) -> ApiResult<Routed> {
    let target = rest.strip_prefix("auth").unwrap_or("").trim_matches('/');
    if target.is_empty() {
        return match operation {
            Operation::Read => {
                let mut listing = Map::new();
                for entry in auth_entries(unsealed)? {
                    listing.insert(entry.path.clone(), mount_json(&entry));
                }
                Ok(system(Reply::Data(listing)))
            }
            _ => Err(ApiError::unsupported("sys/auth", operation.as_str())),
        };
    }
    let (mount_path, tune) = tune_target(target);
    if tune {
        return auth_tune(unsealed, mount_path, operation, data).await;
    }
    let mount_path = mounts::normalize_path(mount_path).map_err(mount_error)?;
    let built_in = unsealed.auth_methods.built_in(&mount_path).is_some() || mount_path == "token/";
    match operation {
        Operation::Write => {
            let enable = parse_enable(&Fields::new(data))?;
            let kind = unsealed.auth_methods.enable_able(&enable.kind)?;
            if built_in {
                return Err(ApiError::invalid(format!(
                    "path is already in use at {mount_path}"
                )));
            }
            if !enable.options.is_empty() {
                return Err(ApiError::invalid(format!(
                    "the {kind} auth method takes no options"
                )));
            }
            unsealed
                .auth_methods
                .table()
                .mount(
                    mount_path,
                    kind.to_owned(),
                    enable.description,
                    enable.config,
                    BTreeMap::new(),
                )
                .await
                .map_err(mount_error)?;
            Ok(system(Reply::NoContent))
        }
        Operation::Delete => {
            if built_in {
                return Err(ApiError::invalid(format!(
                    "the auth method at {mount_path} is built in and cannot be disabled"
                )));
            }
            disable_auth(unsealed, &mount_path).await?;
            Ok(system(Reply::NoContent))
        }
        Operation::Read => {
            let entry = auth_entries(unsealed)?
                .into_iter()
                .find(|entry| entry.path == mount_path)
                .ok_or_else(|| ApiError::invalid(format!("no auth method at {mount_path:?}")))?;
            Ok(system(Reply::data(mount_json(&entry))))
        }
        _ => Err(ApiError::unsupported(rest, operation.as_str())),
    }
}

/// Disables the auth method at `path`: revokes every token its logins made
/// (with their children and leases), then deletes the mount and its data. A
/// second sweep catches a login that raced the removal.
async fn disable_auth(unsealed: &Unsealed, path: &str) -> ApiResult<()> {
    if unsealed.auth_methods.table().get(path).is_none() {
        return Ok(());
    }
    let issued_under = format!("auth/{path}");
    unsealed.revoke_tokens_issued_under(&issued_under).await?;
    match unsealed.auth_methods.table().unmount(path).await {
        Ok(_) | Err(mounts::Error::NotMounted(_)) => {}
        Err(error) => return Err(mount_error(error)),
    }
    unsealed.revoke_tokens_issued_under(&issued_under).await?;
    Ok(())
}

/// `sys/auth/<path>/tune`. The built-in methods show the system's settings
/// and are not tuned.
async fn auth_tune(
    unsealed: &Unsealed,
    path: &str,
    operation: Operation,
    data: &Map<String, Value>,
) -> ApiResult<Routed> {
    let path = mounts::normalize_path(path).map_err(mount_error)?;
    let entry = auth_entries(unsealed)?
        .into_iter()
        .find(|entry| entry.path == path)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "tune of path \"auth/{path}\" failed: no mount entry found"
            ))
        })?;
    match operation {
        Operation::Read => Ok(tune_read(unsealed, &entry, true)),
        Operation::Write if entry.kind == "token" => {
            tune_token_store(unsealed, entry, &Fields::new(data)).await?;
            Ok(system(Reply::NoContent))
        }
        Operation::Write if entry.uuid.is_empty() => Err(ApiError::invalid(format!(
            "the built-in {} auth method is not tuned: its tokens take the system's TTLs",
            entry.kind
        ))),
        Operation::Write => {
            let fields = Fields::new(data);
            if fields
                .string_map("options")?
                .is_some_and(|options| !options.is_empty())
            {
                return Err(ApiError::invalid(format!(
                    "the {} auth method takes no options",
                    entry.kind
                )));
            }
            tune_write(unsealed.auth_methods.table(), &path, &fields).await?;
            Ok(system(Reply::NoContent))
        }
        _ => Err(ApiError::unsupported(
            &format!("sys/auth/{path}tune"),
            operation.as_str(),
        )),
    }
}

/// `sys/internal/ui/mounts[/<path>]`: the mounts the caller may use (the CLI
/// asks for a KV mount's version here).
pub(super) fn ui_mounts(unsealed: &Unsealed, caller: &Caller, path: &str) -> ApiResult<Routed> {
    if path.is_empty() {
        let mut secret = Map::new();
        for entry in unsealed.mounts.entries().iter() {
            if caller.acl.has_access_under(&entry.path) {
                secret.insert(entry.path.clone(), mount_json(entry));
            }
        }
        if caller.acl.has_access_under("cubbyhole/") {
            secret.insert("cubbyhole/".into(), mount_json(&cubbyhole_entry()));
        }
        let mut auth = Map::new();
        for entry in auth_entries(unsealed)? {
            if caller.acl.has_access_under(&format!("auth/{}", entry.path)) {
                auth.insert(entry.path.clone(), mount_json(&entry));
            }
        }
        return Ok(system(Reply::data(json!({"secret": secret, "auth": auth}))));
    }
    let Some((entry, _)) = unsealed.mounts.resolve(path) else {
        return Err(ApiError::denied());
    };
    if !caller.acl.has_access_under(&entry.path) {
        return Err(ApiError::denied());
    }
    let mut info = mount_json(&entry);
    if let Value::Object(object) = &mut info {
        object.insert("path".into(), json!(entry.path));
    }
    Ok(system(Reply::data(info)))
}

/// `sys/locked-users` (the users locked out now, by mount, as Vault shapes
/// it; `mount_accessor` narrows it to one mount) and
/// `sys/locked-users/<accessor>/unlock/<user>`. Runs on the leader, which
/// keeps the counters.
pub(super) fn locked_users_route(
    unsealed: &Unsealed,
    rest: &str,
    operation: Operation,
    data: &Map<String, Value>,
) -> ApiResult<Routed> {
    let target = rest
        .strip_prefix("locked-users")
        .unwrap_or("")
        .trim_matches('/');
    let lockouts = &unsealed.auth_methods.lockouts;
    if target.is_empty() {
        if operation != Operation::Read {
            return Err(ApiError::unsupported(
                "sys/locked-users",
                operation.as_str(),
            ));
        }
        let only = Fields::new(data)
            .string("mount_accessor")?
            .filter(|accessor| !accessor.is_empty());
        let entries = unsealed.auth_methods.entries();
        let config_of = |accessor: &str| {
            entries
                .iter()
                .find(|entry| entry.accessor == accessor)
                .map(|entry| entry.config.user_lockout.unwrap_or_default())
        };
        let locked = lockouts.locked_users(crate::clock::now_seconds(), config_of);
        let mut total = 0;
        let mounts: Vec<Value> = locked
            .into_iter()
            .filter(|(accessor, _)| only.as_ref().is_none_or(|only| only == accessor))
            .map(|(accessor, users)| {
                total += users.len();
                json!({"mount_accessor": accessor, "counts": users.len(), "alias_identifiers": users})
            })
            .collect();
        return Ok(system(Reply::data(json!({
            "by_namespace": [{
                "namespace_id": "root",
                "namespace_path": "",
                "counts": total,
                "mount_accessors": mounts,
            }],
            "total": total,
        }))));
    }
    let Some((accessor, user)) = target
        .split_once("/unlock/")
        .filter(|(accessor, user)| !accessor.is_empty() && !user.is_empty() && !user.contains('/'))
    else {
        return Err(ApiError::no_route(&format!("sys/{rest}")));
    };
    if operation != Operation::Write {
        return Err(ApiError::unsupported(
            "sys/locked-users",
            operation.as_str(),
        ));
    }
    // As Vault: unlocking someone who is not locked out (or a mount that
    // does not exist) succeeds and changes nothing.
    lockouts.unlock(accessor, user);
    Ok(system(Reply::NoContent))
}
