//! The auth-method boundary: what a method mounted under `auth/<path>/` must do
//! ([`AuthMethod`]), what its login answers ([`Login`]), and the methods an
//! unsealed node serves ([`Methods`]).
//!
//! A method checks a login and says who the caller is and what the token may
//! do; the core makes the token, so every method gets TTL limits, renewal and
//! audit the same way. Its other paths (roles, config) are authorized by the
//! core with the caller's ACL like any request. `auth/token/` stays built into
//! the core: it is the token store itself.

pub mod local;

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_protocols::{LocalPeer, Operation};
use serde_json::{Map, Value};

use crate::api::error::ApiResult;
use crate::api::reply::Reply;
use crate::barrier::Barrier;
use crate::engine::BoxFuture;

/// The methods mounted on every node, by mount path (under `auth/`).
pub const BUILT_IN: &[(&str, Factory)] = &[("local/", local::method)];

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
}

/// An auth method: serves one mount under `auth/`.
pub trait AuthMethod: Send + Sync {
    /// The type `sys/auth` lists and the envelope reports as `mount_type`.
    fn type_name(&self) -> &'static str;

    /// What `sys/auth` says the method is.
    fn description(&self) -> &'static str;

    /// Whether `path` (inside the mount) is a login: it needs no token.
    fn is_login(&self, path: &str) -> bool;

    /// Checks a login.
    fn login<'a>(&'a self, request: &'a LoginRequest<'a>) -> BoxFuture<'a, ApiResult<Login>>;

    /// Whether a write to `path` changes something that exists (`update`
    /// rather than `create` in the ACL).
    fn exists(&self, path: &str) -> ApiResult<bool>;

    /// Serves one authorized request to a path other than a login.
    fn handle<'a>(
        &'a self,
        operation: Operation,
        path: &'a str,
        data: &'a Map<String, Value>,
    ) -> BoxFuture<'a, ApiResult<Reply>>;
}

/// The methods of one unsealed node, by mount path.
pub struct Methods {
    mounted: Vec<(String, Arc<dyn AuthMethod>)>,
}

impl Methods {
    pub fn new(mounts: &[(&str, Factory)], environment: &Environment) -> Methods {
        Methods {
            mounted: mounts
                .iter()
                .map(|(path, factory)| ((*path).to_owned(), factory(environment)))
                .collect(),
        }
    }

    /// The method mounted at `auth/<mount>` serving `path`, its mount path
    /// (`local/`) and the path inside it.
    pub fn resolve<'p>(&self, path: &'p str) -> Option<(&str, &dyn AuthMethod, &'p str)> {
        let below = path.strip_prefix("auth/")?;
        self.mounted.iter().find_map(|(mount, method)| {
            let rest = match below.strip_prefix(mount.as_str()) {
                Some(rest) => rest,
                None if below == mount.trim_end_matches('/') => "",
                None => return None,
            };
            Some((mount.as_str(), method.as_ref(), rest))
        })
    }

    /// Whether `path` is a login of a mounted method.
    pub fn is_login(&self, path: &str) -> bool {
        self.resolve(path)
            .is_some_and(|(_, method, rest)| method.is_login(rest))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &dyn AuthMethod)> {
        self.mounted
            .iter()
            .map(|(mount, method)| (mount.as_str(), method.as_ref()))
    }
}
