//! Stored policies and the compiled ACLs built from them. Policies live behind the
//! barrier at `sys/policy/<name>`; parsed policies and the ACL of each distinct
//! set of policy names are cached, and every change clears the caches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::barrier::{self, Barrier, Batch};
use crate::policy::{
    self, Acl, DEFAULT_POLICY, DEFAULT_POLICY_TEXT, Policy, ROOT_POLICY, WRAPPING_POLICY,
};

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

/// Entries each cache keeps at most (misses for unknown names included); a
/// full cache starts over.
const LIMIT: usize = 4096;

pub struct PolicyStore {
    barrier: Arc<Barrier>,
    caches: RwLock<Caches>,
    /// Bumped by every invalidation: a load that raced a policy write is not
    /// kept, so a stale grant cannot outlive the write.
    generation: AtomicU64,
}

impl PolicyStore {
    pub fn new(barrier: Arc<Barrier>) -> Self {
        PolicyStore {
            barrier,
            caches: RwLock::new(Caches::default()),
            generation: AtomicU64::new(0),
        }
    }

    /// Keeps what a load that began at `generation` found, unless the caches
    /// were invalidated since.
    fn remember(&self, generation: u64, keep: impl FnOnce(&mut Caches)) {
        let mut caches = self.write_caches();
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if caches.policies.len() >= LIMIT {
            caches.policies.clear();
        }
        if caches.acls.len() >= LIMIT {
            caches.acls.clear();
        }
        keep(&mut caches);
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
        let generation = self.generation.load(Ordering::SeqCst);
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
        let kept = loaded.clone();
        self.remember(generation, |caches| {
            caches.policies.insert(name.to_owned(), kept);
        });
        Ok(loaded)
    }

    /// Forgets every parsed policy and ACL (a policy changed, maybe elsewhere).
    pub fn invalidate(&self) {
        let mut caches = self.write_caches();
        self.generation.fetch_add(1, Ordering::SeqCst);
        *caches = Caches::default();
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
        if policy.name == ROOT_POLICY || policy.name == WRAPPING_POLICY {
            return Err(policy::ParseError::BuiltIn(policy.name.clone()).into());
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
        self.invalidate();
        Ok(())
    }

    pub async fn delete(&self, name: &str) -> Result<(), Error> {
        if name == ROOT_POLICY || name == DEFAULT_POLICY {
            return Err(Error::Undeletable(name.into()));
        }
        self.barrier
            .delete(&format!("{POLICY_PREFIX}{name}"))
            .await?;
        self.invalidate();
        Ok(())
    }

    /// The ACL of a token with these policies; unknown names are ignored, as in
    /// Vault.
    pub fn acl(&self, names: &[String]) -> Result<Arc<Acl>, Error> {
        if let Some(acl) = self.read_caches().acls.get(names) {
            return Ok(acl.clone());
        }
        let generation = self.generation.load(Ordering::SeqCst);
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
        let kept = acl.clone();
        self.remember(generation, |caches| {
            caches.acls.insert(names.to_vec(), kept);
        });
        Ok(acl)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::barrier::Keyring;
    use crate::storage::Backend;
    use crate::storage::memory::MemoryBackend;

    fn store() -> PolicyStore {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        let keyring = Keyring::generate(crate::crypto::random_key::<32>().unwrap()).unwrap();
        PolicyStore::new(Arc::new(Barrier::new(backend, keyring)))
    }

    #[test]
    fn a_load_that_raced_a_write_is_not_kept() {
        let store = store();
        let stale =
            Arc::new(policy::parse("app", r#"path "x" { capabilities = ["read"] }"#).unwrap());
        let began = store.generation.load(Ordering::SeqCst);
        store.invalidate(); // a write landed while the load ran
        store.remember(began, |caches| {
            caches.policies.insert("app".into(), Some(stale.clone()));
            caches.acls.insert(
                vec!["app".into()],
                Arc::new(Acl::new(false, [stale.as_ref()])),
            );
        });
        assert!(store.read_caches().policies.is_empty());
        assert!(store.read_caches().acls.is_empty());
        let now = store.generation.load(Ordering::SeqCst);
        store.remember(now, |caches| {
            caches.policies.insert("app".into(), None);
        });
        assert_eq!(store.read_caches().policies.len(), 1);
    }

    #[test]
    fn misses_for_made_up_names_are_bounded() {
        let store = store();
        for index in 0..(LIMIT * 2 + 10) {
            assert!(store.get(&format!("made-up-{index}")).unwrap().is_none());
            store.acl(&[format!("made-up-{index}")]).unwrap();
        }
        assert!(store.read_caches().policies.len() <= LIMIT);
        assert!(store.read_caches().acls.len() <= LIMIT);
    }
}
