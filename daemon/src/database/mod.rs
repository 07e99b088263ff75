//! The database secrets engine: short-lived users for PostgreSQL and
//! MySQL/MariaDB, each behind a lease, and static roles whose password coffer
//! rotates. Vault's paths and shapes: `config/<name>`, `reset/<name>`,
//! `rotate-root/<name>`, `roles/<name>`, `creds/<role>`, `static-roles/<name>`,
//! `static-creds/<name>`, `rotate-role/<name>`.
//!
//! Connections, roles and static roles live under the mount's storage prefix,
//! behind the barrier (connection and static passwords included). Reads never
//! return a password but a static role's current one (that is what it is for);
//! errors carry the database's message with any password removed.

mod engine;
pub mod names;
pub mod plugin;
pub mod test_hook;

use std::collections::HashMap;
use std::sync::Arc;

use coffer_protocols::{LogicalResponse, Operation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::barrier::Barrier;
pub use crate::engine::Requester;
use crate::leases::{self, Lease};
use crate::mounts::MountEntry;
use crate::password_policy;
use crate::tokens::{now_seconds, rfc3339};
pub use engine::{DatabaseEngine, engine};
use plugin::{Plugin, Pool, Values};

/// The shortest rotation period of a static role, as in Vault.
const MIN_ROTATION_PERIOD: u64 = 5;
const DEFAULT_MAX_OPEN_CONNECTIONS: u32 = 4;

/// A connection, as stored.
#[derive(Clone, Serialize, Deserialize)]
pub struct Connection {
    pub plugin_name: String,
    pub connection_url: String,
    pub username: String,
    #[serde(with = "crate::crypto::zeroizing_string")]
    pub password: Zeroizing<String>,
    pub allowed_roles: Vec<String>,
    pub verify_connection: bool,
    pub max_open_connections: u32,
    pub root_rotation_statements: Vec<String>,
    /// A `sys/policies/password/<name>` for the passwords this connection makes
    /// (empty: Vault's default policy).
    #[serde(default)]
    pub password_policy: String,
    /// The root password a rotation is setting (empty: none under way). It is
    /// stored before the database is changed, so a crash or a failed store
    /// between the two leaves both passwords known: the next use tries the new
    /// one, then the old ([`Database::resolve_rotation`]).
    #[serde(default, with = "crate::crypto::zeroizing_string")]
    pub pending_password: Zeroizing<String>,
}

impl Connection {
    fn plugin(&self) -> ApiResult<Plugin> {
        Plugin::parse(&self.plugin_name)
            .ok_or_else(|| ApiError::invalid(format!("unknown plugin_name {:?}", self.plugin_name)))
    }

    fn allows(&self, role: &str) -> bool {
        self.allowed_roles
            .iter()
            .any(|allowed| allowed == "*" || allowed == role)
    }

    /// Changes whenever anything the pool is built from changes.
    fn fingerprint(&self) -> String {
        crate::crypto::sha256_hex(
            format!(
                "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
                self.plugin_name,
                self.connection_url,
                self.username,
                self.password.as_str(),
                self.max_open_connections
            )
            .as_bytes(),
        )
    }
}

/// A dynamic role, as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Role {
    pub db_name: String,
    pub creation_statements: Vec<String>,
    pub revocation_statements: Vec<String>,
    pub renew_statements: Vec<String>,
    pub rollback_statements: Vec<String>,
    pub default_ttl: u64,
    pub max_ttl: u64,
}

/// A static role, as stored (with the current password, behind the barrier).
#[derive(Clone, Serialize, Deserialize)]
pub struct StaticRole {
    pub db_name: String,
    pub username: String,
    pub rotation_period: u64,
    pub rotation_statements: Vec<String>,
    #[serde(with = "crate::crypto::zeroizing_string")]
    pub password: Zeroizing<String>,
    pub last_rotation: u64,
    /// A rotation is under way (its new password is being set): a role found
    /// so after a crash is rotated again at once, which sets a password both
    /// the database and storage know.
    #[serde(default)]
    pub rotating: bool,
}

/// What a lease of this engine keeps to renew or revoke the user it stands for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseData {
    pub db_name: String,
    pub role: String,
    pub username: String,
    pub revocation_statements: Vec<String>,
    pub renew_statements: Vec<String>,
}

/// Open pools by (mount uuid, connection name), rebuilt when a connection's
/// configuration changes.
#[derive(Default)]
pub struct Pools {
    open: tokio::sync::Mutex<HashMap<(String, String), (String, Pool)>>,
    /// One rotation at a time per (mount uuid, connection or static role).
    rotations: std::sync::Mutex<HashMap<(String, String), RotationLock>>,
}

type RotationLock = Arc<tokio::sync::Mutex<()>>;

impl Pools {
    /// Holds the rotation lock of `what` (`connection/<name>` or
    /// `static-role/<name>`) in `mount`.
    async fn rotation(&self, mount: &MountEntry, what: String) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .rotations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry((mount.uuid.clone(), what))
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    async fn get(
        &self,
        mount: &MountEntry,
        name: &str,
        connection: &Connection,
        verify: bool,
    ) -> Result<Pool, String> {
        let key = (mount.uuid.clone(), name.to_owned());
        let fingerprint = connection.fingerprint();
        let mut open = self.open.lock().await;
        if let Some((known, pool)) = open.get(&key)
            && *known == fingerprint
            && !verify
        {
            return Ok(pool.clone());
        }
        let plugin = Plugin::parse(&connection.plugin_name)
            .ok_or_else(|| format!("unknown plugin_name {:?}", connection.plugin_name))?;
        let pool = Pool::open(
            plugin,
            &connection.connection_url,
            &connection.username,
            &connection.password,
            connection.max_open_connections,
            verify,
        )
        .await?;
        if let Some((_, old)) = open.insert(key, (fingerprint, pool.clone())) {
            old.close().await;
        }
        Ok(pool)
    }

    /// Closes the pool of a connection (deleted, reset, or its password rotated).
    pub async fn forget(&self, mount_uuid: &str, name: &str) {
        let removed = self
            .open
            .lock()
            .await
            .remove(&(mount_uuid.to_owned(), name.to_owned()));
        if let Some((_, pool)) = removed {
            pool.close().await;
        }
    }
}

/// Statements as clients send them: one string, or a list of strings.
fn statements(fields: &Fields<'_>, key: &str) -> ApiResult<Option<Vec<String>>> {
    match fields.raw(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(Some(Vec::new())),
        Some(Value::String(text)) => Ok(Some(vec![text.clone()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                _ => Err(ApiError::invalid(format!(
                    "{key} must be a list of strings"
                ))),
            })
            .filter(|item| !matches!(item, Ok(text) if text.trim().is_empty()))
            .collect::<ApiResult<Vec<_>>>()
            .map(Some),
        Some(_) => Err(ApiError::invalid(format!(
            "{key} must be a string or a list of strings"
        ))),
    }
}

/// `2006-01-02 15:04:05-0700`, the format Vault fills `{{expiration}}` with (in
/// UTC).
fn expiration(unix: u64) -> String {
    let text = rfc3339(unix);
    format!("{} {}+0000", &text[..10], text[11..].trim_end_matches('Z'))
}

/// The engine serving one `database` mount, for one request.
pub struct Database<'a> {
    pub barrier: &'a Barrier,
    pub mount: &'a MountEntry,
    pub pools: &'a Pools,
    pub leases: &'a leases::Manager,
    /// The mount's effective default and max TTL (system defaults applied).
    pub default_ttl: u64,
    pub max_ttl: u64,
}

fn upstream(message: String) -> ApiError {
    ApiError::new(coffer_protocols::ErrorCode::Upstream, message)
}

impl Database<'_> {
    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}/{name}", self.mount.data_prefix())
    }

    fn connection(&self, name: &str) -> ApiResult<Option<Connection>> {
        Ok(self.barrier.get_json(&self.key("config", name))?)
    }

    fn role(&self, name: &str) -> ApiResult<Option<Role>> {
        Ok(self.barrier.get_json(&self.key("role", name))?)
    }

    fn static_role(&self, name: &str) -> ApiResult<Option<StaticRole>> {
        Ok(self.barrier.get_json(&self.key("static-role", name))?)
    }

    /// A new password under the connection's policy.
    fn password(&self, connection: &Connection) -> ApiResult<String> {
        let generated = if connection.password_policy.is_empty() {
            names::password()
        } else {
            password_policy::load(self.barrier, &connection.password_policy)?.generate()
        };
        generated.map_err(|error| ApiError::internal(&error))
    }

    async fn pool(&self, name: &str, connection: &Connection) -> ApiResult<Pool> {
        if !connection.pending_password.is_empty() {
            let _rotation = self
                .pools
                .rotation(self.mount, format!("connection/{name}"))
                .await;
            let resolved = self.resolve_rotation(name).await?;
            return self
                .pools
                .get(self.mount, name, &resolved, false)
                .await
                .map_err(upstream);
        }
        self.pools
            .get(self.mount, name, connection, false)
            .await
            .map_err(upstream)
    }

    /// Settles a root rotation that was interrupted (the connection holds a
    /// pending password): the pending password if the database takes it, else
    /// the old one, stored as the connection's password. Neither logging in
    /// leaves the record as it is and fails. Call with the connection's
    /// rotation lock held; returns the connection as it now stands.
    async fn resolve_rotation(&self, name: &str) -> ApiResult<Connection> {
        let mut connection = self
            .connection(name)?
            .ok_or_else(|| ApiError::invalid(format!("no connection named {name:?}")))?;
        if connection.pending_password.is_empty() {
            return Ok(connection);
        }
        let plugin = connection.plugin()?;
        let logs_in = |password: Zeroizing<String>| {
            let connection = &connection;
            async move {
                match Pool::open(
                    plugin,
                    &connection.connection_url,
                    &connection.username,
                    &password,
                    1,
                    true,
                )
                .await
                {
                    Ok(pool) => {
                        pool.close().await;
                        true
                    }
                    Err(_) => false,
                }
            }
        };
        let (outcome, password) = if logs_in(connection.pending_password.clone()).await {
            ("the new root password", connection.pending_password.clone())
        } else if logs_in(connection.password.clone()).await {
            ("the old root password", connection.password.clone())
        } else {
            return Err(upstream(format!(
                "a root rotation of {name:?} was interrupted and neither the old nor the new \
                 password logs in yet; it is retried at the next use"
            )));
        };
        self.store_root_password(name, &mut connection, password)
            .await?;
        tracing::warn!(mount = %self.mount.path, connection = %name, "an interrupted root rotation was settled: the database has {outcome}");
        Ok(connection)
    }

    /// Stores `password` as the connection's root password, with no rotation
    /// pending, and closes the pool that logged in with the old one.
    async fn store_root_password(
        &self,
        name: &str,
        connection: &mut Connection,
        password: Zeroizing<String>,
    ) -> ApiResult<()> {
        connection.password = password;
        connection.pending_password = Zeroizing::default();
        self.barrier
            .put_json(&self.key("config", name), connection)
            .await?;
        self.pools.forget(&self.mount.uuid, name).await;
        Ok(())
    }

    /// The names of the mount's roles (static roles when `static_roles`).
    pub fn role_names(&self, static_roles: bool) -> ApiResult<Vec<String>> {
        let kind = if static_roles { "static-role" } else { "role" };
        Ok(self
            .barrier
            .list(&format!("{}{kind}/", self.mount.data_prefix()))?
            .into_iter()
            .filter(|name| !name.ends_with('/'))
            .collect())
    }

    /// Whether the mount has a role (a static role when `static_roles`) `name`.
    pub fn has_role(&self, static_roles: bool, name: &str) -> ApiResult<bool> {
        let kind = if static_roles { "static-role" } else { "role" };
        Ok(names::validate_name("role", name).is_ok()
            && self.barrier.get(&self.key(kind, name))?.is_some())
    }

    /// Whether a write to `path` updates something that exists (for the
    /// `create` / `update` capability).
    pub fn exists(&self, path: &str) -> ApiResult<bool> {
        let Some((section, name)) = path.split_once('/') else {
            return Ok(true);
        };
        let kind = match section {
            "config" => "config",
            "roles" => "role",
            "static-roles" => "static-role",
            _ => return Ok(true),
        };
        Ok(!name.is_empty() && self.barrier.get(&self.key(kind, name))?.is_some())
    }

    pub async fn handle(
        &self,
        operation: Operation,
        path: &str,
        request_path: &str,
        data: &Map<String, Value>,
        requester: &Requester<'_>,
    ) -> ApiResult<Reply> {
        let (section, name) = path.split_once('/').unwrap_or((path, ""));
        let listing = operation == Operation::List && (name.is_empty() || name == "/");
        if listing {
            let kind = match section {
                "config" => "config",
                "roles" => "role",
                "static-roles" => "static-role",
                _ => return Err(ApiError::unsupported(path, operation.as_str())),
            };
            return Ok(Reply::List(
                self.barrier
                    .list(&format!("{}{kind}/", self.mount.data_prefix()))?,
            ));
        }
        let kind = match section {
            "config" | "reset" | "rotate-root" => "connection",
            "roles" | "creds" => "role",
            "static-roles" | "static-creds" | "rotate-role" => "static role",
            _ => return Err(ApiError::no_route(path)),
        };
        names::validate_name(kind, name).map_err(ApiError::invalid)?;
        let unsupported = || ApiError::unsupported(path, operation.as_str());
        match (section, operation) {
            ("config", Operation::Write) => self.write_connection(name, data).await,
            ("config", Operation::Read) => self.read_connection(name),
            ("config", Operation::Delete) => {
                self.barrier.delete(&self.key("config", name)).await?;
                self.pools.forget(&self.mount.uuid, name).await;
                Ok(Reply::NoContent)
            }
            ("reset", Operation::Write) => {
                let _rotation = self
                    .pools
                    .rotation(self.mount, format!("connection/{name}"))
                    .await;
                let connection = self.resolve_rotation(name).await?;
                self.pools.forget(&self.mount.uuid, name).await;
                self.pools
                    .get(self.mount, name, &connection, connection.verify_connection)
                    .await
                    .map_err(upstream)?;
                Ok(Reply::NoContent)
            }
            ("rotate-root", Operation::Write) => self.rotate_root(name).await,
            ("roles", Operation::Write) => self.write_role(name, data).await,
            ("roles", Operation::Read) => {
                let role = self.role(name)?.ok_or_else(ApiError::not_found)?;
                Ok(Reply::data(json!({
                    "db_name": role.db_name,
                    "creation_statements": role.creation_statements,
                    "revocation_statements": role.revocation_statements,
                    "renew_statements": role.renew_statements,
                    "rollback_statements": role.rollback_statements,
                    "default_ttl": role.default_ttl,
                    "max_ttl": role.max_ttl,
                    "credential_type": "password",
                })))
            }
            ("roles", Operation::Delete) => {
                self.barrier.delete(&self.key("role", name)).await?;
                Ok(Reply::NoContent)
            }
            ("creds", Operation::Read) => self.issue(name, request_path, requester).await,
            ("static-roles", Operation::Write) => self.write_static_role(name, data).await,
            ("static-roles", Operation::Read) => {
                let role = self.static_role(name)?.ok_or_else(ApiError::not_found)?;
                Ok(Reply::data(json!({
                    "db_name": role.db_name,
                    "username": role.username,
                    "rotation_period": role.rotation_period,
                    "rotation_statements": role.rotation_statements,
                    "last_vault_rotation": rfc3339(role.last_rotation),
                    "credential_type": "password",
                })))
            }
            ("static-roles", Operation::Delete) => {
                self.barrier.delete(&self.key("static-role", name)).await?;
                Ok(Reply::NoContent)
            }
            ("static-creds", Operation::Read) => {
                let role = self.static_role(name)?.ok_or_else(ApiError::not_found)?;
                let now = now_seconds();
                let next = role.last_rotation + role.rotation_period;
                Ok(Reply::data(json!({
                    "username": role.username,
                    "password": role.password.as_str(),
                    "last_vault_rotation": rfc3339(role.last_rotation),
                    "rotation_period": role.rotation_period,
                    "ttl": next.saturating_sub(now),
                })))
            }
            ("rotate-role", Operation::Write) => {
                let role = self
                    .static_role(name)?
                    .ok_or_else(|| ApiError::invalid(format!("no static role named {name:?}")))?;
                self.rotate_static(name, role).await?;
                Ok(Reply::NoContent)
            }
            _ => Err(unsupported()),
        }
    }

    async fn write_connection(&self, name: &str, data: &Map<String, Value>) -> ApiResult<Reply> {
        let fields = Fields::new(data);
        let existing = self.connection(name)?;
        let plugin_name = match (fields.string("plugin_name")?, &existing) {
            (Some(plugin_name), _) => plugin_name,
            (None, Some(existing)) => existing.plugin_name.clone(),
            (None, None) => return Err(ApiError::invalid("plugin_name is required")),
        };
        let plugin = Plugin::parse(&plugin_name).ok_or_else(|| {
            ApiError::invalid(format!(
                "unknown plugin_name {:?}: coffer has postgresql-database-plugin and mysql-database-plugin",
                plugin_name.chars().take(64).collect::<String>()
            ))
        })?;
        let pick = |key: &str, old: Option<String>| -> ApiResult<String> {
            Ok(fields.string(key)?.or(old).unwrap_or_default())
        };
        let connection = Connection {
            connection_url: pick(
                "connection_url",
                existing.as_ref().map(|old| old.connection_url.clone()),
            )?,
            username: pick(
                "username",
                existing.as_ref().map(|old| old.username.clone()),
            )?,
            password: Zeroizing::new(pick(
                "password",
                existing.as_ref().map(|old| old.password.to_string()),
            )?),
            allowed_roles: match fields.string_list("allowed_roles")? {
                Some(roles) => roles,
                None => existing
                    .as_ref()
                    .map(|old| old.allowed_roles.clone())
                    .unwrap_or_default(),
            },
            verify_connection: fields.bool("verify_connection")?.unwrap_or(true),
            max_open_connections: match fields.u64("max_open_connections")? {
                Some(count) => u32::try_from(count.clamp(1, 1000)).unwrap_or(1000),
                None => existing
                    .as_ref()
                    .map_or(DEFAULT_MAX_OPEN_CONNECTIONS, |old| old.max_open_connections),
            },
            root_rotation_statements: match statements(&fields, "root_rotation_statements")? {
                Some(statements) => statements,
                None => existing
                    .as_ref()
                    .map(|old| old.root_rotation_statements.clone())
                    .unwrap_or_default(),
            },
            password_policy: match fields.string("password_policy")? {
                Some(name) => name,
                None => existing
                    .as_ref()
                    .map(|old| old.password_policy.clone())
                    .unwrap_or_default(),
            },
            // A password the operator gives settles any rotation under way.
            pending_password: match (fields.string("password")?, &existing) {
                (None, Some(old)) => old.pending_password.clone(),
                _ => Zeroizing::default(),
            },
            plugin_name,
        };
        if !connection.password_policy.is_empty() {
            password_policy::load(self.barrier, &connection.password_policy)?;
        }
        if connection.connection_url.is_empty() {
            return Err(ApiError::invalid("connection_url is required"));
        }
        if connection.connection_url.contains("{{password}}") && connection.password.is_empty() {
            return Err(ApiError::invalid(
                "connection_url has {{password}}, but no password was given",
            ));
        }
        let _ = plugin;
        // Connect now (verify_connection): a wrong address or password is the
        // operator's answer, not a later failure.
        self.pools
            .get(self.mount, name, &connection, connection.verify_connection)
            .await
            .map_err(|message| {
                ApiError::invalid(format!("error verifying the connection: {message}"))
            })?;
        self.barrier
            .put_json(&self.key("config", name), &connection)
            .await?;
        Ok(Reply::NoContent)
    }

    fn read_connection(&self, name: &str) -> ApiResult<Reply> {
        let connection = self.connection(name)?.ok_or_else(ApiError::not_found)?;
        Ok(Reply::data(json!({
            "plugin_name": connection.plugin_name,
            "connection_details": {
                "connection_url": plugin::redact_url(&connection.connection_url),
                "username": connection.username,
                "max_open_connections": connection.max_open_connections,
            },
            "allowed_roles": connection.allowed_roles,
            "verify_connection": connection.verify_connection,
            "root_credentials_rotate_statements": connection.root_rotation_statements,
            "password_policy": connection.password_policy,
        })))
    }

    async fn rotate_root(&self, name: &str) -> ApiResult<Reply> {
        let _rotation = self
            .pools
            .rotation(self.mount, format!("connection/{name}"))
            .await;
        let mut connection = self.resolve_rotation(name).await?;
        if connection.username.is_empty() {
            return Err(ApiError::invalid(
                "the connection has no username: its root credentials cannot be rotated",
            ));
        }
        let plugin = connection.plugin()?;
        let password = self.password(&connection)?;
        let statements = if connection.root_rotation_statements.is_empty() {
            plugin.default_rotation()
        } else {
            connection.root_rotation_statements.clone()
        };
        let rendered = plugin::render(
            &statements,
            &Values {
                name: &connection.username,
                password: Some(&password),
                expiration: None,
            },
        );
        let pool = self.pool(name, &connection).await?;
        // The new password is stored (replicated, encrypted) before the
        // database changes: whatever happens next, one of the two stored
        // passwords is the database's.
        let password = Zeroizing::new(password);
        connection.pending_password = password.clone();
        self.barrier
            .put_json(&self.key("config", name), &connection)
            .await?;
        test_hook::after_pending_stored().await;
        if let Err(failure) = pool
            .run(&rendered, &[&password, connection.password.as_str()])
            .await
        {
            // The change may or may not have reached the database (a
            // connection lost after its commit): settle it by logging in.
            let settled = self.resolve_rotation(name).await;
            return Err(match settled {
                Ok(_) => upstream(failure.message),
                Err(error) => error,
            });
        }
        test_hook::after_database_changed().await;
        self.store_root_password(name, &mut connection, password)
            .await?;
        tracing::info!(mount = %self.mount.path, connection = %name, "rotated the root credentials");
        Ok(Reply::NoContent)
    }

    async fn write_role(&self, name: &str, data: &Map<String, Value>) -> ApiResult<Reply> {
        let fields = Fields::new(data);
        let existing = self.role(name)?.unwrap_or_default();
        let role = Role {
            db_name: fields.string("db_name")?.unwrap_or(existing.db_name),
            creation_statements: statements(&fields, "creation_statements")?
                .unwrap_or(existing.creation_statements),
            revocation_statements: statements(&fields, "revocation_statements")?
                .unwrap_or(existing.revocation_statements),
            renew_statements: statements(&fields, "renew_statements")?
                .unwrap_or(existing.renew_statements),
            rollback_statements: statements(&fields, "rollback_statements")?
                .unwrap_or(existing.rollback_statements),
            default_ttl: fields
                .duration("default_ttl")?
                .unwrap_or(existing.default_ttl),
            max_ttl: fields.duration("max_ttl")?.unwrap_or(existing.max_ttl),
        };
        if role.db_name.is_empty() {
            return Err(ApiError::invalid("db_name is required"));
        }
        if role.creation_statements.is_empty() {
            return Err(ApiError::invalid("creation_statements are required"));
        }
        if self.connection(&role.db_name)?.is_none() {
            return Err(ApiError::invalid(format!(
                "db_name {:?} names no connection of this mount",
                role.db_name.chars().take(64).collect::<String>()
            )));
        }
        if role.max_ttl > 0 && role.default_ttl > role.max_ttl {
            return Err(ApiError::invalid("default_ttl must not exceed max_ttl"));
        }
        self.barrier
            .put_json(&self.key("role", name), &role)
            .await?;
        Ok(Reply::NoContent)
    }

    /// The role's TTL and max TTL, with the mount's and system's defaults.
    fn ttls(&self, role: &Role) -> (u64, u64) {
        let max_ttl = if role.max_ttl > 0 {
            role.max_ttl.min(self.max_ttl)
        } else {
            self.max_ttl
        };
        let ttl = if role.default_ttl > 0 {
            role.default_ttl
        } else {
            self.default_ttl
        };
        (ttl.min(max_ttl), max_ttl)
    }

    /// `creds/<role>`: a new user, its password, and the lease that will drop it.
    async fn issue(
        &self,
        role_name: &str,
        request_path: &str,
        requester: &Requester<'_>,
    ) -> ApiResult<Reply> {
        let role = self
            .role(role_name)?
            .ok_or_else(|| ApiError::invalid(format!("unknown role {role_name:?}")))?;
        let connection = self.connection(&role.db_name)?.ok_or_else(|| {
            ApiError::invalid(format!(
                "role {role_name:?} uses the connection {:?}, which does not exist",
                role.db_name
            ))
        })?;
        if !connection.allows(role_name) {
            return Err(ApiError::invalid(format!(
                "role {role_name:?} is not in the allowed_roles of connection {:?}",
                role.db_name
            )));
        }
        let plugin = connection.plugin()?;
        let pool = self.pool(&role.db_name, &connection).await?;
        let now = now_seconds();
        let (ttl, max_ttl) = self.ttls(&role);
        let username = names::username(
            requester.display_name,
            role_name,
            now,
            plugin.username_limit(),
        )
        .map_err(|error| ApiError::internal(&error))?;
        let password = self.password(&connection)?;
        let values = Values {
            name: &username,
            password: Some(&password),
            expiration: Some(&expiration(now + ttl)),
        };
        let creation = plugin::render(&role.creation_statements, &values);
        if let Err(failure) = pool.run(&creation, &[&password]).await {
            self.roll_back(&pool, &role, &username).await;
            // The statements' fault is the client's (400); an unreachable
            // database is not (502).
            return Err(if failure.refused {
                ApiError::invalid(format!(
                    "the database refused the creation statements: {}",
                    failure.message
                ))
            } else {
                upstream(format!("cannot reach the database: {}", failure.message))
            });
        }
        let internal = LeaseData {
            db_name: role.db_name.clone(),
            role: role_name.to_owned(),
            username: username.clone(),
            revocation_statements: role.revocation_statements.clone(),
            renew_statements: role.renew_statements.clone(),
        };
        let lease = Lease::new(
            request_path,
            &self.mount.path,
            now,
            ttl,
            max_ttl,
            requester.token_hash.map(str::to_owned),
            serde_json::to_value(&internal).map_err(|error| ApiError::internal(&error))?,
        )
        .map_err(|error| ApiError::internal(&error))?;
        if let Err(error) = self.leases.register(&lease).await {
            // Without a lease nobody would ever drop the user: drop it now.
            self.roll_back(&pool, &role, &username).await;
            return Err(match error {
                leases::Error::Barrier(barrier) => barrier.into(),
                other => ApiError::internal(&other),
            });
        }
        tracing::info!(mount = %self.mount.path, role = %role_name, lease = %lease.id, "issued database credentials");
        let mut envelope = LogicalResponse::with_data(
            json!({"username": username, "password": password})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        envelope.lease_id = lease.id;
        envelope.lease_duration = lease.expire_time - now;
        envelope.renewable = true;
        Ok(Reply::Envelope(Box::new(envelope)))
    }

    /// Undoes a half-made user: the role's rollback statements, or Vault's
    /// default (drop the user if it exists).
    async fn roll_back(&self, pool: &Pool, role: &Role, username: &str) {
        let outcome = if role.rollback_statements.is_empty() {
            pool.drop_user(username).await
        } else {
            let rendered = plugin::render(
                &role.rollback_statements,
                &Values {
                    name: username,
                    password: None,
                    expiration: None,
                },
            );
            pool.run(&rendered, &[]).await.map_err(String::from)
        };
        if let Err(message) = outcome {
            tracing::error!(mount = %self.mount.path, user = %username, %message, "rolling back a failed user creation failed");
        }
    }

    async fn write_static_role(&self, name: &str, data: &Map<String, Value>) -> ApiResult<Reply> {
        let fields = Fields::new(data);
        let existing = self.static_role(name)?;
        let db_name = fields
            .string("db_name")?
            .or_else(|| existing.as_ref().map(|role| role.db_name.clone()))
            .ok_or_else(|| ApiError::invalid("db_name is required"))?;
        let username = fields
            .string("username")?
            .or_else(|| existing.as_ref().map(|role| role.username.clone()))
            .ok_or_else(|| ApiError::invalid("username is required"))?;
        if let Some(old) = &existing
            && old.username != username
        {
            return Err(ApiError::invalid("a static role's username cannot change"));
        }
        // The existing user's name goes into statements: it must be as safe as
        // the names coffer makes.
        if username.is_empty()
            || username.len() > 63
            || !username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ApiError::invalid(
                "username may hold only letters, digits, '-', '_' and '.', up to 63",
            ));
        }
        let rotation_period = fields
            .duration("rotation_period")?
            .or_else(|| existing.as_ref().map(|role| role.rotation_period))
            .ok_or_else(|| ApiError::invalid("rotation_period is required"))?;
        if rotation_period < MIN_ROTATION_PERIOD {
            return Err(ApiError::invalid(format!(
                "rotation_period must be at least {MIN_ROTATION_PERIOD}s"
            )));
        }
        let rotation_statements = statements(&fields, "rotation_statements")?
            .or_else(|| {
                existing
                    .as_ref()
                    .map(|role| role.rotation_statements.clone())
            })
            .unwrap_or_default();
        let connection = self
            .connection(&db_name)?
            .ok_or_else(|| ApiError::invalid(format!("no connection named {db_name:?}")))?;
        if !connection.allows(name) {
            return Err(ApiError::invalid(format!(
                "static role {name:?} is not in the allowed_roles of connection {db_name:?}"
            )));
        }
        let role = StaticRole {
            db_name,
            username,
            rotation_period,
            rotation_statements,
            password: existing
                .as_ref()
                .map(|role| role.password.clone())
                .unwrap_or_default(),
            last_rotation: existing.as_ref().map_or(0, |role| role.last_rotation),
            rotating: existing.as_ref().is_some_and(|role| role.rotating),
        };
        if existing.is_none() {
            // As Vault: a new static role takes over the user's password at once.
            self.rotate_static(name, role).await?;
        } else {
            self.barrier
                .put_json(&self.key("static-role", name), &role)
                .await?;
        }
        Ok(Reply::NoContent)
    }

    /// Sets a new password on a static role's user and stores it.
    async fn rotate_static(&self, name: &str, role: StaticRole) -> ApiResult<()> {
        let _rotation = self
            .pools
            .rotation(self.mount, format!("static-role/{name}"))
            .await;
        // What is stored now wins over what the caller read before the lock.
        let mut role = match self.static_role(name)? {
            Some(stored) if stored.db_name == role.db_name => StaticRole {
                rotation_period: role.rotation_period,
                rotation_statements: role.rotation_statements,
                ..stored
            },
            _ => role,
        };
        let connection = self
            .connection(&role.db_name)?
            .ok_or_else(|| ApiError::invalid(format!("no connection named {:?}", role.db_name)))?;
        let plugin = connection.plugin()?;
        let password = self.password(&connection)?;
        let statements = if role.rotation_statements.is_empty() {
            plugin.default_rotation()
        } else {
            role.rotation_statements.clone()
        };
        let rendered = plugin::render(
            &statements,
            &Values {
                name: &role.username,
                password: Some(&password),
                expiration: None,
            },
        );
        let pool = self.pool(&role.db_name, &connection).await?;
        // Marked before the database changes: a crash in between leaves a
        // role that the leader rotates again at once.
        role.rotating = true;
        self.barrier
            .put_json(&self.key("static-role", name), &role)
            .await?;
        pool.run(&rendered, &[&password, role.password.as_str()])
            .await
            .map_err(|failure| {
                let message = format!("the database refused the rotation: {}", failure.message);
                if failure.refused {
                    ApiError::invalid(message)
                } else {
                    upstream(message)
                }
            })?;
        test_hook::after_static_changed().await;
        role.password = Zeroizing::new(password);
        role.last_rotation = now_seconds();
        role.rotating = false;
        self.barrier
            .put_json(&self.key("static-role", name), &role)
            .await?;
        tracing::info!(mount = %self.mount.path, role = %name, "rotated a static role's password");
        Ok(())
    }

    /// Rotates every static role whose period has passed (the leader calls this).
    pub async fn rotate_due(&self, now: u64) {
        let names = match self
            .barrier
            .list(&format!("{}static-role/", self.mount.data_prefix()))
        {
            Ok(names) => names,
            Err(error) => {
                tracing::error!(mount = %self.mount.path, %error, "cannot list static roles");
                return;
            }
        };
        for name in names {
            let Ok(Some(role)) = self.static_role(&name) else {
                continue;
            };
            if role.last_rotation + role.rotation_period > now && !role.rotating {
                continue;
            }
            if let Err(error) = self.rotate_static(&name, role).await {
                tracing::warn!(mount = %self.mount.path, role = %name, error = %error.messages.join("; "), "scheduled rotation failed; retrying");
            }
        }
    }

    fn lease_data(lease: &Lease) -> Result<LeaseData, String> {
        serde_json::from_value(lease.internal.clone())
            .map_err(|_| "the lease's engine data is malformed".to_owned())
    }

    async fn lease_pool(&self, data: &LeaseData) -> Result<(Pool, Connection), String> {
        let connection = self
            .connection(&data.db_name)
            .map_err(|error| error.messages.join("; "))?
            .ok_or_else(|| format!("the connection {:?} no longer exists", data.db_name))?;
        let pool = self
            .pools
            .get(self.mount, &data.db_name, &connection, false)
            .await?;
        Ok((pool, connection))
    }

    /// Drops the user a lease stands for: the role's revocation statements, or
    /// Vault's default (end its sessions, take back its rights, drop it).
    pub async fn revoke(&self, lease: &Lease) -> Result<(), String> {
        let data = Self::lease_data(lease)?;
        let (pool, _) = self.lease_pool(&data).await?;
        if data.revocation_statements.is_empty() {
            pool.drop_user(&data.username).await
        } else {
            let rendered = plugin::render(
                &data.revocation_statements,
                &Values {
                    name: &data.username,
                    password: None,
                    expiration: None,
                },
            );
            pool.run(&rendered, &[]).await.map_err(String::from)
        }
    }

    /// Extends the user a lease stands for until `expire_time`.
    pub async fn renew(&self, lease: &Lease, expire_time: u64) -> Result<(), String> {
        let data = Self::lease_data(lease)?;
        let (pool, connection) = self.lease_pool(&data).await?;
        let plugin = Plugin::parse(&connection.plugin_name)
            .ok_or_else(|| format!("unknown plugin_name {:?}", connection.plugin_name))?;
        let statements = if data.renew_statements.is_empty() {
            plugin.default_renew()
        } else {
            data.renew_statements.clone()
        };
        if statements.is_empty() {
            return Ok(());
        }
        let rendered = plugin::render(
            &statements,
            &Values {
                name: &data.username,
                password: None,
                expiration: Some(&expiration(expire_time)),
            },
        );
        pool.run(&rendered, &[]).await.map_err(String::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_is_in_vaults_format() {
        assert_eq!(expiration(0), "1970-01-01 00:00:00+0000");
        assert_eq!(expiration(1_800_000_000), "2027-01-15 08:00:00+0000");
    }

    #[test]
    fn statements_come_as_a_string_or_a_list() {
        let data = json!({
            "one": "CREATE ROLE x; GRANT SELECT ON t TO x;",
            "many": ["CREATE ROLE x", "", "GRANT SELECT, INSERT ON t TO x"],
            "bad": [1],
        });
        let map = data.as_object().unwrap();
        let fields = Fields::new(map);
        assert_eq!(
            statements(&fields, "one").unwrap().unwrap(),
            vec!["CREATE ROLE x; GRANT SELECT ON t TO x;"]
        );
        assert_eq!(
            statements(&fields, "many").unwrap().unwrap(),
            vec!["CREATE ROLE x", "GRANT SELECT, INSERT ON t TO x"]
        );
        assert!(statements(&fields, "bad").is_err());
        assert!(statements(&fields, "missing").unwrap().is_none());
    }
}
