//! The secrets-engine boundary: what a mount's type must do ([`SecretEngine`]),
//! what it may show under `/secrets` ([`Files`]), and the registry of types a
//! mount may have ([`Registry`]).
//!
//! The core knows engines only through this module: it resolves a path to a
//! mount, finds the mount's engine by its type name, asks it whether a write
//! creates or updates (for the ACL), and hands it the request. Adding an engine
//! is one module that implements the trait and one line in [`BUILT_IN`].

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_protocols::Operation;
use serde_json::{Map, Value};

use crate::api::error::{ApiError, ApiResult};
use crate::api::reply::Reply;
use crate::barrier::Barrier;
use crate::leases::{self, Lease};
use crate::mounts::MountEntry;
use crate::policy::Acl;

pub use crate::leases::BoxFuture;

/// The engines a mount may have, in the order `sys/mounts` names them.
pub const BUILT_IN: &[Factory] = &[
    crate::kv::engine,
    crate::database::engine,
    crate::pki::engine,
];

/// Makes an engine for an unsealed node; the engine keeps what it caches for
/// all of its mounts (pools, parsed metadata) until the node seals.
pub type Factory = fn(&Environment) -> Arc<dyn SecretEngine>;

/// What an engine may use: the barrier its mounts' data lives behind and the
/// lease manager its leases go to.
pub struct Environment {
    pub barrier: Arc<Barrier>,
    pub leases: Arc<leases::Manager>,
}

/// One mount as an engine sees it: its table entry and its effective TTLs
/// (the system's where the mount sets none).
pub struct Mount<'a> {
    pub entry: &'a MountEntry,
    pub default_ttl: u64,
    pub max_ttl: u64,
}

impl<'a> Mount<'a> {
    /// `entry` with its TTLs resolved against the system's `(default, max)`.
    pub fn new(entry: &'a MountEntry, system: (u64, u64)) -> Self {
        let (system_default, system_max) = system;
        let max_ttl = match entry.config.max_lease_ttl {
            0 => system_max,
            ttl => ttl,
        };
        let default_ttl = match entry.config.default_lease_ttl {
            0 => system_default,
            ttl => ttl,
        };
        Mount {
            entry,
            default_ttl: default_ttl.min(max_ttl),
            max_ttl,
        }
    }

    /// The logical path of `rest` inside this mount.
    pub fn logical(&self, rest: &str) -> String {
        format!("{}{rest}", self.entry.path)
    }
}

/// Who asks: the token's display name (it may go into generated user names)
/// and its hash, when there is a stored token (revoking it revokes the leases
/// its requests created).
pub struct Requester<'a> {
    pub display_name: &'a str,
    pub token_hash: Option<&'a str>,
}

/// A secrets engine: serves every mount of its type.
pub trait SecretEngine: Send + Sync {
    /// The type name mounts store and Vault's envelope reports as `mount_type`.
    fn type_name(&self) -> &'static str;

    /// The options a mount of this engine stores when enabled as `requested`
    /// (`kv-v2` is a `kv` mount with version 2); `None` when `requested` is
    /// not a name of this engine.
    fn configure(
        &self,
        requested: &str,
        options: BTreeMap<String, String>,
    ) -> Option<ApiResult<BTreeMap<String, String>>>;

    /// Whether a write to `path` changes something that exists: the ACL then
    /// asks for `update`, otherwise for `create`.
    fn exists(&self, mount: &Mount<'_>, path: &str) -> ApiResult<bool>;

    /// Serves one authorized request for `path` inside the mount.
    fn handle<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        operation: Operation,
        path: &'a str,
        data: &'a Map<String, Value>,
        requester: &'a Requester<'a>,
    ) -> BoxFuture<'a, ApiResult<Reply>>;

    /// Whether a read of `path` needs no token (a CA's certificate, a CRL):
    /// Vault's unauthenticated paths.
    fn public(&self, _path: &str) -> bool {
        false
    }

    /// Whether a read of `path` creates a lease (it then runs on the leader,
    /// which owns leases).
    fn issues_leases(&self, _path: &str) -> bool {
        false
    }

    /// Takes back what a lease of this engine stands for.
    fn revoke<'a>(
        &'a self,
        _mount: &'a Mount<'a>,
        _lease: &'a Lease,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Err("this engine issues no leases".to_owned()) })
    }

    /// Extends what a lease of this engine stands for until `expire_time`.
    fn renew<'a>(
        &'a self,
        _mount: &'a Mount<'a>,
        _lease: &'a Lease,
        _expire_time: u64,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Err("this engine issues no leases".to_owned()) })
    }

    /// The leader's periodic duty for one mount (static password rotation).
    fn leader_round<'a>(&'a self, _mount: &'a Mount<'a>, _now: u64) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// A replicated write touched `key`: forget what is cached about it.
    fn observe(&self, _key: &str) {}

    /// The data was replaced (a snapshot): forget everything cached.
    fn forget_all(&self) {}

    /// How this engine's mounts appear under `/secrets`; `None` hides them.
    fn files(&self) -> Option<&dyn Files> {
        None
    }
}

/// A node of the `/secrets` tree inside a mount.
#[derive(Debug, PartialEq, Eq)]
pub enum Node {
    Folder,
    /// A KV secret: its read path, KV version and field names.
    Secret {
        read_path: String,
        version: u8,
        fields: Vec<String>,
    },
    /// A dynamic credential: reading `read_path` issues a lease.
    Credential {
        read_path: String,
    },
    /// A static credential: reading `read_path` issues nothing.
    Static {
        read_path: String,
    },
    /// A certificate for `common_name`: a write to `issue_path` issues one.
    Certificate {
        issue_path: String,
        common_name: String,
    },
}

/// An engine's view for the filesystem. `sub` is a path inside the mount with
/// no slash at either end (empty for the mount itself). As everywhere, a path
/// the caller has no access under is 403 whether it exists or not, and 404
/// means "permitted, but nothing there".
pub trait Files: Send + Sync {
    /// Whether the caller may use anything under the mount.
    fn visible(&self, mount: &Mount<'_>, acl: &Acl) -> bool;

    /// The node at `sub`.
    fn node<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        acl: &'a Acl,
        sub: &'a str,
    ) -> BoxFuture<'a, ApiResult<Node>>;

    /// The names in the folder `sub`, as its own LIST would show them to the
    /// caller (folders end in `/`).
    fn children<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        acl: &'a Acl,
        sub: &'a str,
    ) -> BoxFuture<'a, ApiResult<Vec<String>>>;
}

/// The engines of one unsealed node, keyed by type name.
pub struct Registry {
    engines: Vec<Arc<dyn SecretEngine>>,
}

impl Registry {
    /// Every factory's engine over `environment`.
    pub fn new(factories: &[Factory], environment: &Environment) -> Registry {
        Registry {
            engines: factories
                .iter()
                .map(|factory| factory(environment))
                .collect(),
        }
    }

    /// The engine serving mounts of type `type_name`.
    pub fn get(&self, type_name: &str) -> Option<&dyn SecretEngine> {
        self.engines
            .iter()
            .find(|engine| engine.type_name() == type_name)
            .map(|engine| engine.as_ref())
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn SecretEngine> {
        self.engines.iter().map(|engine| engine.as_ref())
    }

    /// The stored type and options of a mount enabled as `requested`.
    pub fn configure(
        &self,
        requested: &str,
        options: BTreeMap<String, String>,
    ) -> ApiResult<(&'static str, BTreeMap<String, String>)> {
        for engine in &self.engines {
            if let Some(options) = engine.configure(requested, options.clone()) {
                return Ok((engine.type_name(), options?));
            }
        }
        let served: Vec<&str> = self
            .engines
            .iter()
            .map(|engine| engine.type_name())
            .collect();
        Err(ApiError::invalid(format!(
            "unsupported secrets engine type {:?}; coffer serves {}",
            requested.chars().take(64).collect::<String>(),
            served.join(", ")
        )))
    }
}
