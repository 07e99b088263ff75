//! How a `pki` mount appears under `/secrets`: `issue/<role>/<name>/` is a
//! certificate for `<name>` issued on first read (the filesystem holds it
//! per caller and re-issues it at 2/3 of its TTL). Names are asked for, not
//! listed: `issue/<role>/` lists nothing, and a name the role does not
//! allow is not there (404).

use serde_json::Map;

use super::PkiEngine;
use crate::api::error::{ApiError, ApiResult};
use crate::engine::{BoxFuture, Files, Mount, Node};
use crate::policy::acl::{Acl, Capability};

/// `issue/<role>` needs `update`, as a write to it does.
fn may_issue(mount: &Mount<'_>, acl: &Acl, role: &str) -> bool {
    acl.check(
        &mount.logical(&format!("issue/{role}")),
        Capability::Update,
        &Map::new(),
    )
    .allowed
}

impl Files for PkiEngine {
    fn visible(&self, mount: &Mount<'_>, acl: &Acl) -> bool {
        acl.has_access_under(&mount.logical("issue/"))
    }

    fn node<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        acl: &'a Acl,
        sub: &'a str,
    ) -> BoxFuture<'a, ApiResult<Node>> {
        Box::pin(async move {
            if !self.visible(mount, acl) {
                return Err(ApiError::denied());
            }
            let mut parts = sub.splitn(3, '/');
            let (section, role, name) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            match (section, role, name) {
                ("", "", "") | ("issue", "", "") => Ok(Node::Folder),
                ("issue", role, name) if !name.contains('/') => {
                    if !may_issue(mount, acl, role) {
                        return Err(ApiError::denied());
                    }
                    let role_entry = self
                        .store(mount)
                        .role(role)?
                        .ok_or_else(ApiError::not_found)?;
                    if name.is_empty() {
                        return Ok(Node::Folder);
                    }
                    role_entry
                        .check_name(name, "common name")
                        .map_err(|_| ApiError::not_found())?;
                    Ok(Node::Certificate {
                        issue_path: mount.logical(&format!("issue/{role}")),
                        common_name: name.to_owned(),
                    })
                }
                _ => Err(ApiError::not_found()),
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
            if !self.visible(mount, acl) {
                return Err(ApiError::denied());
            }
            match sub {
                "" => Ok(vec!["issue/".to_owned()]),
                "issue" => Ok(self
                    .store(mount)
                    .list(super::ROLES)?
                    .into_iter()
                    .filter(|role| may_issue(mount, acl, role))
                    .map(|role| format!("{role}/"))
                    .collect()),
                _ => match self.node(mount, acl, sub).await? {
                    // A role's certificates are asked for by name.
                    Node::Folder => Ok(Vec::new()),
                    _ => Err(ApiError::not_found()),
                },
            }
        })
    }
}
