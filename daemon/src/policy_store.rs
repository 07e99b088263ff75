//! Stored policies and the compiled ACLs built from them. Policies live behind the
//! barrier at `sys/policy/<name>`; parsed policies and the ACL of each distinct
//! set of policy names are cached, and every change clears the caches.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::barrier::{self, Barrier, Batch};
use crate::policy::{self, Acl, DEFAULT_POLICY, DEFAULT_POLICY_TEXT, Policy, ROOT_POLICY};

const POLICY_PREFIX: &str = "sys/policy/";

#[derive(Debug, Serialize, Deserialize)]
struct StoredPolicy {
    name: String,
    policy: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Parse(#[from] policy::ParseError),
    #[error("cannot delete the {0:?} policy")]
    Undeletable(String),
    #[error(transparent)]
    Barrier(#[from] barrier::Error),
}

#[derive(Default)]
struct Caches {
    policies: HashMap<String, Option<Arc<Policy>>>,
    acls: HashMap<Vec<String>, Arc<Acl>>,
}

pub struct PolicyStore {
    barrier: Arc<Barrier>,
    caches: RwLock<Caches>,
}

impl PolicyStore {
    pub fn new(barrier: Arc<Barrier>) -> Self {
        PolicyStore {
            barrier,
            caches: RwLock::new(Caches::default()),
        }
    }

    /// Adds the built-in `default` policy to a new cluster's first batch.
    pub fn add_default(batch: &mut Batch) -> Result<(), barrier::Error> {
        batch.put_json(
            &format!("{POLICY_PREFIX}{DEFAULT_POLICY}"),
            &StoredPolicy {
                name: DEFAULT_POLICY.into(),
                policy: DEFAULT_POLICY_TEXT.into(),
            },
        )
    }

    fn read_caches(&self) -> std::sync::RwLockReadGuard<'_, Caches> {
        self.caches
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_caches(&self) -> std::sync::RwLockWriteGuard<'_, Caches> {
        self.caches
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The policy called `name`; `root` has no rules of its own (it is handled by
    /// the ACL) and reads as an empty policy.
    pub fn get(&self, name: &str) -> Result<Option<Arc<Policy>>, Error> {
        if let Some(cached) = self.read_caches().policies.get(name) {
            return Ok(cached.clone());
        }
        let loaded = match self
            .barrier
            .get_json::<StoredPolicy>(&format!("{POLICY_PREFIX}{name}"))?
        {
            Some(stored) => Some(Arc::new(policy::parse(&stored.name, &stored.policy)?)),
            None if name == ROOT_POLICY => Some(Arc::new(Policy {
                name: ROOT_POLICY.into(),
                raw: String::new(),
                rules: Vec::new(),
            })),
            None => None,
        };
        self.write_caches()
            .policies
            .insert(name.to_owned(), loaded.clone());
        Ok(loaded)
    }

    /// Forgets every parsed policy and ACL (a policy changed, maybe elsewhere).
    pub fn invalidate(&self) {
        *self.write_caches() = Caches::default();
    }

    /// Policy names, including the built-in ones.
    pub fn list(&self) -> Result<Vec<String>, Error> {
        let mut names = self.barrier.list(POLICY_PREFIX)?;
        names.push(ROOT_POLICY.into());
        names.sort();
        names.dedup();
        Ok(names)
    }

    pub async fn put(&self, policy: &Policy) -> Result<(), Error> {
        if policy.name == ROOT_POLICY {
            return Err(policy::ParseError::BuiltIn(ROOT_POLICY.into()).into());
        }
        self.barrier
            .put_json(
                &format!("{POLICY_PREFIX}{}", policy.name),
                &StoredPolicy {
                    name: policy.name.clone(),
                    policy: policy.raw.clone(),
                },
            )
            .await?;
        *self.write_caches() = Caches::default();
        Ok(())
    }

    pub async fn delete(&self, name: &str) -> Result<(), Error> {
        if name == ROOT_POLICY || name == DEFAULT_POLICY {
            return Err(Error::Undeletable(name.into()));
        }
        self.barrier
            .delete(&format!("{POLICY_PREFIX}{name}"))
            .await?;
        *self.write_caches() = Caches::default();
        Ok(())
    }

    /// The ACL of a token with these policies; unknown names are ignored, as in
    /// Vault.
    pub fn acl(&self, names: &[String]) -> Result<Arc<Acl>, Error> {
        if let Some(acl) = self.read_caches().acls.get(names) {
            return Ok(acl.clone());
        }
        let root = names.iter().any(|name| name == ROOT_POLICY);
        let mut policies = Vec::new();
        for name in names {
            if let Some(policy) = self.get(name)? {
                policies.push(policy);
            }
        }
        let acl = Arc::new(Acl::new(
            root,
            policies.iter().map(|policy| policy.as_ref()),
        ));
        self.write_caches().acls.insert(names.to_vec(), acl.clone());
        Ok(acl)
    }
}
