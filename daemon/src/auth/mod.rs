//! The auth-method boundary: what a method mounted under `auth/<path>/` must do
//! ([`AuthMethod`]), what its login answers ([`Login`]), and the methods an
//! unsealed node serves ([`Methods`]): built-in mounts and the table
//! `sys/auth` enables methods in.
//!
//! A method checks a login and says who the caller is and what the token may
//! do; the core makes the token, so every method gets TTL limits, renewal and
//! audit the same way. Its other paths (roles, config) are authorized by the
//! core with the caller's ACL like any request. `auth/token/` stays built into
//! the core: it is the token store itself.

pub mod approle;
pub mod jws;
pub mod jwt;
pub mod kubernetes;
pub mod local;
pub mod lockout;
pub mod token_fields;
pub mod userpass;

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_protocols::{LocalPeer, Operation};
use serde_json::{Map, Value};

use crate::api::error::{ApiError, ApiResult};
use crate::api::reply::Reply;
use crate::barrier::Barrier;
use crate::engine::{BoxFuture, Mount};
use crate::mounts::{self, MountConfig, MountEntry, MountTable};

/// The method types a node serves: enabled with `sys/auth`, or mounted at a
/// fixed path on every node ([`AuthMethod::built_in_path`]).
pub const BUILT_IN: &[Factory] = &[
    local::method,
    userpass::method,
    approle::method,
    jwt::method,
    kubernetes::method,
];

/// Makes a method for an unsealed node.
pub type Factory = fn(&Environment) -> Arc<dyn AuthMethod>;

/// What a method may use: the barrier, and the `auth/local` roles the core
/// also matches callers on this host against.
pub struct Environment {
    pub barrier: Arc<Barrier>,
    pub local_roles: Arc<crate::local_auth::Roles>,
}

/// A login request as a method sees it.
pub struct LoginRequest<'a> {
    /// The mount it came to.
    pub mount: &'a Mount<'a>,
    /// The path inside the mount (`login`, `login/<name>`).
    pub path: &'a str,
    pub data: &'a Map<String, Value>,
    /// The caller on this host, when it came through the Unix socket or FUSE.
    pub peer: Option<&'a LocalPeer>,
    /// The client's address, when it came over TCP.
    pub remote_address: Option<&'a str>,
}

/// Who logged in and what their token may do; the core makes the token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Login {
    pub policies: Vec<String>,
    /// Token metadata (`role`, `username`, mapped claims): shown in lookups and
    /// the login's `auth.metadata`.
    pub metadata: BTreeMap<String, String>,
    /// Goes into the token's display name as `<mount type>-<display_name>`.
    pub display_name: String,
    /// Seconds; 0 takes the mount's (or the system's) default.
    pub ttl: u64,
    /// Seconds; 0 takes the mount's (or the system's) maximum.
    pub max_ttl: u64,
    pub num_uses: u64,
    pub renewable: bool,
    /// Seconds; 0 for none. Bounds the token's life, renewals included.
    pub explicit_max_ttl: u64,
    /// Seconds; a periodic token is renewed by its period, with no maximum
    /// but its explicit one.
    pub period: u64,
    /// CIDR blocks the token may be used from.
    pub bound_cidrs: Vec<String>,
}

/// An auth method type: serves every mount of its type under `auth/`. Its
/// data lives under the mount's prefix ([`data_prefix`]).
pub trait AuthMethod: Send + Sync {
    /// The type `sys/auth` enables and lists, and the envelope reports as
    /// `mount_type`.
    fn type_name(&self) -> &'static str;

    /// What `sys/auth` says the method is.
    fn description(&self) -> &'static str;

    /// The path (below `auth/`) where every node mounts the method, for one
    /// that is built in: it is neither enabled elsewhere nor disabled.
    fn built_in_path(&self) -> Option<&'static str> {
        None
    }

    /// Whether `path` (inside the mount) is a login: it needs no token.
    fn is_login(&self, path: &str) -> bool;

    /// Checks a login.
    fn login<'a>(&'a self, request: &'a LoginRequest<'a>) -> BoxFuture<'a, ApiResult<Login>>;

    /// Whether a write to `path` changes something that exists (`update`
    /// rather than `create` in the ACL).
    fn exists(&self, mount: &Mount<'_>, path: &str) -> ApiResult<bool>;

    /// Who a login is for, when the method locks users out after failed
    /// logins (Vault's `user_lockout_config`): a user name, a role ID.
    fn lockout_user(&self, _request: &LoginRequest<'_>) -> Option<String> {
        None
    }

    /// A replicated write touched storage `key` on this node: a method that
    /// keeps records parsed forgets them (see [`crate::cache`]).
    fn observe(&self, _key: &str) {}

    /// The data was replaced (a snapshot): forget every parsed record.
    fn forget_all(&self) {}

    /// Serves one authorized request to a path other than a login.
    fn handle<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        operation: Operation,
        path: &'a str,
        data: &'a Map<String, Value>,
    ) -> BoxFuture<'a, ApiResult<Reply>>;
}

/// Where the data of `mount`, an auth method's mount, lives in storage.
pub fn data_prefix(mount: &Mount<'_>) -> String {
    mounts::AUTH.data_of(mount.entry)
}

/// The auth methods of one unsealed node: the types it serves, the built-in
/// mounts and the table of enabled ones.
pub struct Methods {
    types: Vec<Arc<dyn AuthMethod>>,
    /// The built-in mounts' entries, made up (they are not stored).
    built_in: Vec<MountEntry>,
    table: MountTable,
    /// Failed logins by user, for the methods that lock users out.
    pub lockouts: lockout::Lockouts,
}

impl Methods {
    pub fn new(factories: &[Factory], environment: &Environment, table: MountTable) -> Methods {
        let types: Vec<Arc<dyn AuthMethod>> = factories
            .iter()
            .map(|factory| factory(environment))
            .collect();
        let built_in = types
            .iter()
            .filter_map(|method| {
                let path = method.built_in_path()?;
                Some(MountEntry {
                    path: path.to_owned(),
                    kind: method.type_name().to_owned(),
                    description: method.description().to_owned(),
                    uuid: String::new(),
                    accessor: format!("auth_{}", method.type_name()),
                    config: MountConfig::default(),
                    options: BTreeMap::new(),
                    local: false,
                    seal_wrap: false,
                    created_time: 0,
                })
            })
            .collect();
        Methods {
            types,
            built_in,
            table,
            lockouts: lockout::Lockouts::default(),
        }
    }

    /// Tells every method type that a replicated write touched `key`.
    pub fn observe(&self, key: &str) {
        for method in &self.types {
            method.observe(key);
        }
    }

    /// Tells every method type that the data was replaced.
    pub fn forget_all(&self) {
        for method in &self.types {
            method.forget_all();
        }
    }

    /// The table of enabled methods.
    pub fn table(&self) -> &MountTable {
        &self.table
    }

    /// The method of type `type_name`.
    pub fn get(&self, type_name: &str) -> Option<&dyn AuthMethod> {
        self.types
            .iter()
            .find(|method| method.type_name() == type_name)
            .map(|method| method.as_ref())
    }

    /// The type `requested` as `sys/auth` may enable it.
    pub fn enable_able(&self, requested: &str) -> ApiResult<&'static str> {
        let mut served = self
            .types
            .iter()
            .filter(|method| method.built_in_path().is_none());
        if let Some(method) = served
            .clone()
            .find(|method| method.type_name() == requested)
        {
            return Ok(method.type_name());
        }
        let names: Vec<&str> = served.by_ref().map(|method| method.type_name()).collect();
        let built_in = self.built_in.iter().find(|entry| entry.kind == requested);
        Err(ApiError::invalid(match built_in {
            Some(entry) => format!(
                "the {requested} auth method is built in at auth/{}; it cannot be enabled elsewhere",
                entry.path
            ),
            None if names.is_empty() => format!(
                "unsupported auth method type {:?}; this build of coffer enables none",
                requested.chars().take(64).collect::<String>()
            ),
            None => format!(
                "unsupported auth method type {:?}; coffer enables {}",
                requested.chars().take(64).collect::<String>(),
                names.join(", ")
            ),
        }))
    }

    /// The built-in mount at `path` (below `auth/`, with its slash).
    pub fn built_in(&self, path: &str) -> Option<&MountEntry> {
        self.built_in.iter().find(|entry| entry.path == path)
    }

    /// Every mounted method's entry: the built-in ones, then the table's.
    pub fn entries(&self) -> Vec<MountEntry> {
        let mut entries = self.built_in.clone();
        entries.extend(self.table.entries().iter().cloned());
        entries
    }

    /// The mount serving `path` (a request path, `auth/<mount>/...`), its
    /// method and the path inside it. A mount whose type this build does not
    /// serve (stored by a newer one) resolves to nothing.
    pub fn resolve<'p>(&self, path: &'p str) -> Option<(MountEntry, &dyn AuthMethod, &'p str)> {
        let below = path.strip_prefix("auth/")?;
        let (entry, rest) = match self.built_in.iter().find(|entry| {
            below.starts_with(&entry.path) || entry.path.trim_end_matches('/') == below
        }) {
            Some(entry) => (entry.clone(), below.get(entry.path.len()..).unwrap_or("")),
            None => {
                let (entry, _) = self.table.resolve(below)?;
                let rest = below.get(entry.path.len()..).unwrap_or("");
                (entry, rest)
            }
        };
        let method = self.get(&entry.kind)?;
        Some((entry, method, rest))
    }

    /// Whether `path` is a login of a mounted method.
    pub fn is_login(&self, path: &str) -> bool {
        self.resolve(path)
            .is_some_and(|(_, method, rest)| method.is_login(rest))
    }
}
