//! The `database` secrets engine on the engine trait: connection pools shared
//! by its mounts, leases revoked and renewed through them, static roles
//! rotated on the leader, and its `/secrets` view (`creds/<role>` files that
//! lease a user when read, `static-creds/<role>` files that do not).

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_protocols::Operation;
use serde_json::{Map, Value};

use super::{Database, Pools};
use crate::api::error::{ApiError, ApiResult};
use crate::api::reply::Reply;
use crate::barrier::Barrier;
use crate::engine::{BoxFuture, Environment, Files, Mount, Node, Requester, SecretEngine};
use crate::leases::{self, Lease};
use crate::policy::Acl;
use crate::policy::acl::Capability;

/// The sections of a database mount that hold credentials.
const SECTIONS: [&str; 2] = ["creds/", "static-creds/"];

/// Serves every `database` mount of an unsealed node.
pub struct DatabaseEngine {
    barrier: Arc<Barrier>,
    pools: Pools,
    leases: Arc<leases::Manager>,
}

/// The registry's factory.
pub fn engine(environment: &Environment) -> Arc<dyn SecretEngine> {
    Arc::new(DatabaseEngine {
        barrier: environment.barrier.clone(),
        pools: Pools::default(),
        leases: environment.leases.clone(),
    })
}

impl DatabaseEngine {
    fn of<'a>(&'a self, mount: &'a Mount<'a>) -> Database<'a> {
        Database {
            barrier: &self.barrier,
            mount: mount.entry,
            pools: &self.pools,
            leases: &self.leases,
            default_ttl: mount.default_ttl,
            max_ttl: mount.max_ttl,
        }
    }
}

impl SecretEngine for DatabaseEngine {
    fn type_name(&self) -> &'static str {
        "database"
    }

    fn configure(
        &self,
        requested: &str,
        options: BTreeMap<String, String>,
    ) -> Option<ApiResult<BTreeMap<String, String>>> {
        (requested == "database").then_some(Ok(options))
    }

    fn exists(&self, mount: &Mount<'_>, path: &str) -> ApiResult<bool> {
        self.of(mount).exists(path)
    }

    fn handle<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        operation: Operation,
        path: &'a str,
        data: &'a Map<String, Value>,
        requester: &'a Requester<'a>,
    ) -> BoxFuture<'a, ApiResult<Reply>> {
        Box::pin(async move {
            let logical = mount.logical(path);
            self.of(mount)
                .handle(operation, path, &logical, data, requester)
                .await
        })
    }

    fn issues_leases(&self, path: &str) -> bool {
        path.starts_with("creds/")
    }

    fn revoke<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.of(mount).revoke(lease).await })
    }

    fn renew<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        lease: &'a Lease,
        expire_time: u64,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.of(mount).renew(lease, expire_time).await })
    }

    fn leader_round<'a>(&'a self, mount: &'a Mount<'a>, now: u64) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.of(mount).rotate_due(now).await })
    }

    fn files(&self) -> Option<&dyn Files> {
        Some(self)
    }
}

impl Files for DatabaseEngine {
    fn visible(&self, mount: &Mount<'_>, acl: &Acl) -> bool {
        SECTIONS
            .iter()
            .any(|section| acl.has_access_under(&mount.logical(section)))
    }

    fn node<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        acl: &'a Acl,
        sub: &'a str,
    ) -> BoxFuture<'a, ApiResult<Node>> {
        Box::pin(async move {
            let (section, role) = sub.split_once('/').unwrap_or((sub, ""));
            match (section, role) {
                ("", _) if self.visible(mount, acl) => Ok(Node::Folder),
                ("creds" | "static-creds", "")
                    if acl.has_access_under(&mount.logical(&format!("{section}/"))) =>
                {
                    Ok(Node::Folder)
                }
                ("creds" | "static-creds", role) if !role.is_empty() && !role.contains('/') => {
                    let read_path = mount.logical(&format!("{section}/{role}"));
                    if !acl.check(&read_path, Capability::Read, &Map::new()).allowed {
                        return Err(ApiError::denied());
                    }
                    let dynamic = section == "creds";
                    if !self.of(mount).has_role(!dynamic, role)? {
                        return Err(ApiError::not_found());
                    }
                    Ok(if dynamic {
                        Node::Credential { read_path }
                    } else {
                        Node::Static { read_path }
                    })
                }
                _ if self.visible(mount, acl) => Err(ApiError::not_found()),
                _ => Err(ApiError::denied()),
            }
        })
    }

    fn children<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        acl: &'a Acl,
        sub: &'a str,
    ) -> BoxFuture<'a, ApiResult<Vec<String>>> {
        Box::pin(async move {
            match sub {
                "" => Ok(SECTIONS
                    .into_iter()
                    .filter(|section| acl.has_access_under(&mount.logical(section)))
                    .map(str::to_owned)
                    .collect()),
                "creds" | "static-creds" => {
                    if !acl.has_access_under(&mount.logical(&format!("{sub}/"))) {
                        return Err(ApiError::denied());
                    }
                    Ok(self
                        .of(mount)
                        .role_names(sub == "static-creds")?
                        .into_iter()
                        .filter(|role| {
                            let read_path = mount.logical(&format!("{sub}/{role}"));
                            acl.check(&read_path, Capability::Read, &Map::new()).allowed
                        })
                        .collect())
                }
                _ if self.visible(mount, acl) => Err(ApiError::not_found()),
                _ => Err(ApiError::denied()),
            }
        })
    }
}
