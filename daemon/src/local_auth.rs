//! `auth/local`: roles that give a caller on this host policies from what the
//! kernel says about it (uid, gid and supplementary groups, systemd unit), so FUSE
//! readers and Unix-socket clients need no token.
//!
//! Roles live behind the barrier at `auth/local/role/<name>` and replicate like any
//! data; this node keeps them parsed in memory and drops the copy whenever a
//! replicated write touches `auth/local/`. A role matches when every binding it
//! sets matches (a role must set at least one); a caller gets the policies of every
//! role it matches, and nothing when it matches none.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use coffer_protocols::LocalPeer;
use serde::{Deserialize, Serialize};

use crate::barrier::{self, Barrier};

pub const PREFIX: &str = "auth/local/";
const ROLE_PREFIX: &str = "auth/local/role/";

/// One role: who it binds and what it grants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    #[serde(default)]
    pub bound_uids: Vec<u32>,
    #[serde(default)]
    pub bound_gids: Vec<u32>,
    /// systemd unit names (`app.service`), read from the caller's cgroup.
    #[serde(default)]
    pub bound_units: Vec<String>,
    pub policies: Vec<String>,
    /// Seconds; 0: the system default. For tokens from `auth/local/login`.
    #[serde(default)]
    pub token_ttl: u64,
    #[serde(default)]
    pub token_max_ttl: u64,
    /// Leave out the `default` policy.
    #[serde(default)]
    pub token_no_default_policy: bool,
}

impl Role {
    /// Whether `peer` satisfies every binding this role sets. A role that sets
    /// none matches nobody (they are refused when written).
    pub fn matches(&self, peer: &LocalPeer) -> bool {
        if self.bound_uids.is_empty() && self.bound_gids.is_empty() && self.bound_units.is_empty() {
            return false;
        }
        let uid = self.bound_uids.is_empty() || self.bound_uids.contains(&peer.uid);
        let gid = self.bound_gids.is_empty()
            || self
                .bound_gids
                .iter()
                .any(|gid| *gid == peer.gid || peer.groups.contains(gid));
        let unit = self.bound_units.is_empty()
            || peer
                .unit
                .as_ref()
                .is_some_and(|unit| self.bound_units.contains(unit));
        uid && gid && unit
    }
}

/// The roles a local caller matched, and what they grant together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub roles: Vec<String>,
    /// Sorted, without duplicates; `default` included unless every role leaves it out.
    pub policies: Vec<String>,
    /// The shortest non-zero token TTL and max TTL of the roles (0: system default).
    pub token_ttl: u64,
    pub token_max_ttl: u64,
}

/// Every role, by name.
pub type Named = Arc<Vec<(String, Role)>>;

/// This node's view of the roles.
pub struct Roles {
    barrier: Arc<Barrier>,
    cached: RwLock<Option<Named>>,
    /// Bumped by every invalidation, so a load that raced one is not kept.
    generation: AtomicU64,
}

impl Roles {
    pub fn new(barrier: Arc<Barrier>) -> Self {
        Roles {
            barrier,
            cached: RwLock::new(None),
            generation: AtomicU64::new(0),
        }
    }

    /// Drops the parsed copy; the next use reads the store again.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        *self
            .cached
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// Every role, by name.
    pub fn all(&self) -> Result<Named, barrier::Error> {
        if let Some(roles) = &*self
            .cached
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
        {
            return Ok(roles.clone());
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let mut roles = Vec::new();
        for name in self.barrier.list(ROLE_PREFIX)? {
            if name.ends_with('/') {
                continue;
            }
            match self
                .barrier
                .get_json::<Role>(&format!("{ROLE_PREFIX}{name}"))
            {
                Ok(Some(role)) => roles.push((name, role)),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(role = %name, %error, "cannot read a local auth role");
                }
            }
        }
        let roles = Arc::new(roles);
        let mut cached = self
            .cached
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.generation.load(Ordering::SeqCst) == generation {
            *cached = Some(roles.clone());
        }
        Ok(roles)
    }

    pub fn get(&self, name: &str) -> Result<Option<Role>, barrier::Error> {
        Ok(self
            .all()?
            .iter()
            .find(|(role, _)| role == name)
            .map(|(_, role)| role.clone()))
    }

    pub async fn put(&self, name: &str, role: &Role) -> Result<(), barrier::Error> {
        self.barrier
            .put_json(&format!("{ROLE_PREFIX}{name}"), role)
            .await?;
        self.invalidate();
        Ok(())
    }

    pub async fn delete(&self, name: &str) -> Result<(), barrier::Error> {
        self.barrier.delete(&format!("{ROLE_PREFIX}{name}")).await?;
        self.invalidate();
        Ok(())
    }

    /// What the roles need to know beyond uid and gid: (supplementary groups,
    /// systemd unit). Doors read `/proc` only for what some role binds.
    pub fn needs(&self) -> (bool, bool) {
        self.all().map_or((false, false), |roles| {
            (
                roles.iter().any(|(_, role)| !role.bound_gids.is_empty()),
                roles.iter().any(|(_, role)| !role.bound_units.is_empty()),
            )
        })
    }

    /// What `peer` is granted: `None` when it matches no role (or not `only`,
    /// when a role is named).
    pub fn identify(
        &self,
        peer: &LocalPeer,
        only: Option<&str>,
    ) -> Result<Option<Identity>, barrier::Error> {
        let roles = self.all()?;
        let matched: Vec<&(String, Role)> = roles
            .iter()
            .filter(|(name, role)| only.is_none_or(|only| only == name) && role.matches(peer))
            .collect();
        if matched.is_empty() {
            return Ok(None);
        }
        let mut policies: BTreeSet<String> = BTreeSet::new();
        let mut with_default = false;
        for (_, role) in &matched {
            policies.extend(role.policies.iter().cloned());
            with_default |= !role.token_no_default_policy;
        }
        if with_default {
            policies.insert(crate::policy::DEFAULT_POLICY.to_owned());
        }
        let shortest = |pick: fn(&Role) -> u64| {
            matched
                .iter()
                .map(|(_, role)| pick(role))
                .filter(|ttl| *ttl > 0)
                .min()
                .unwrap_or(0)
        };
        Ok(Some(Identity {
            roles: matched.iter().map(|(name, _)| name.clone()).collect(),
            policies: policies.into_iter().collect(),
            token_ttl: shortest(|role| role.token_ttl),
            token_max_ttl: shortest(|role| role.token_max_ttl),
        }))
    }
}

/// The caller's supplementary groups, from `/proc/<pid>/status`. The caller is
/// blocked in its request while this runs, so the pid is still its own.
pub fn supplementary_groups(pid: u32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_whitespace()
                .filter_map(|gid| gid.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The systemd unit the caller runs in, from `/proc/<pid>/cgroup`: the innermost
/// cgroup that is not a slice (`app.service`, `session-3.scope`).
pub fn systemd_unit(pid: u32) -> Option<String> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    unit_of(&cgroups)
}

fn unit_of(cgroups: &str) -> Option<String> {
    // cgroup v2 is the line `0::/path`; v1 hierarchies name systemd's own.
    let path = cgroups
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .or_else(|| {
            cgroups
                .lines()
                .find_map(|line| line.split_once(":name=systemd:").map(|(_, path)| path))
        })?;
    path.split('/')
        .rev()
        .find(|part| {
            part.contains('.')
                && !part.ends_with(".slice")
                && !part.is_empty()
                && (part.ends_with(".service")
                    || part.ends_with(".scope")
                    || part.ends_with(".socket"))
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: &[u32], unit: Option<&str>) -> LocalPeer {
        LocalPeer {
            uid,
            gid,
            pid: 1,
            executable: None,
            groups: groups.to_vec(),
            unit: unit.map(str::to_owned),
        }
    }

    #[test]
    fn every_binding_a_role_sets_must_match() {
        let role = Role {
            bound_uids: vec![1000, 1001],
            bound_gids: vec![50],
            policies: vec!["app".into()],
            ..Role::default()
        };
        assert!(role.matches(&peer(1000, 50, &[], None)));
        assert!(
            role.matches(&peer(1001, 7, &[50], None)),
            "supplementary group"
        );
        assert!(!role.matches(&peer(1000, 7, &[8], None)), "no group");
        assert!(!role.matches(&peer(1002, 50, &[], None)), "other uid");

        let unit = Role {
            bound_units: vec!["app.service".into()],
            ..Role::default()
        };
        assert!(unit.matches(&peer(5, 5, &[], Some("app.service"))));
        assert!(!unit.matches(&peer(5, 5, &[], Some("other.service"))));
        assert!(!unit.matches(&peer(5, 5, &[], None)));

        assert!(
            !Role::default().matches(&peer(0, 0, &[], None)),
            "binds nobody"
        );
    }

    #[test]
    fn units_come_from_the_innermost_non_slice_cgroup() {
        assert_eq!(
            unit_of("0::/system.slice/app.service\n").as_deref(),
            Some("app.service")
        );
        assert_eq!(
            unit_of("0::/user.slice/user-1000.slice/user@1000.service/app.slice/job.service\n")
                .as_deref(),
            Some("job.service")
        );
        assert_eq!(
            unit_of("0::/user.slice/user-1000.slice/session-4.scope\n").as_deref(),
            Some("session-4.scope")
        );
        assert_eq!(
            unit_of("12:cpu:/x\n1:name=systemd:/system.slice/old.service\n").as_deref(),
            Some("old.service")
        );
        assert_eq!(unit_of("0::/\n"), None);
        assert_eq!(unit_of(""), None);
    }
}
