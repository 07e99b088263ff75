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
    /// Units of the system's service manager: a unit name (`app.service`), a
    /// slice (`shop.slice`: any unit inside it) or a unit's whole cgroup path
    /// (`/system.slice/app.service`). Matched against the caller's unit as
    /// [`coffer_protocols::peer::unit_of`] finds it, so a unit a user starts
    /// under their own manager never matches.
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
            || peer.unit.as_deref().is_some_and(|unit| {
                self.bound_units
                    .iter()
                    .any(|binding| unit_matches(binding, unit))
            });
        uid && gid && unit
    }
}

/// Whether the caller's unit, as its cgroup path (`/system.slice/app.service`),
/// is what `binding` names: that whole path, a slice on it, or the unit's name.
pub fn unit_matches(binding: &str, unit_path: &str) -> bool {
    if binding.starts_with('/') {
        return binding == unit_path;
    }
    let mut parts = unit_path.rsplit('/');
    let name = parts.next().unwrap_or_default();
    if binding.ends_with(".slice") {
        return parts.any(|slice| slice == binding);
    }
    name == binding
}

/// Whether `binding` is a valid `bound_units` entry: a unit or slice name, or
/// an absolute cgroup path of slices ending in a unit.
pub fn valid_unit_binding(binding: &str) -> bool {
    let name_ok = |name: &str| {
        !name.is_empty()
            && name.contains('.')
            && name
                .chars()
                .all(|character| character.is_ascii_alphanumeric() || ":-_.\\@".contains(character))
    };
    if binding.len() > 256 {
        return false;
    }
    match binding.strip_prefix('/') {
        None => name_ok(binding),
        Some(path) => {
            let parts: Vec<&str> = path.split('/').collect();
            let (last, slices) = parts.split_last().unwrap_or((&"", &[]));
            name_ok(last)
                && !last.ends_with(".slice")
                && slices
                    .iter()
                    .all(|slice| name_ok(slice) && slice.ends_with(".slice"))
        }
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
        assert!(unit.matches(&peer(5, 5, &[], Some("/system.slice/app.service"))));
        assert!(!unit.matches(&peer(5, 5, &[], Some("/system.slice/other.service"))));
        assert!(!unit.matches(&peer(5, 5, &[], None)));

        assert!(
            !Role::default().matches(&peer(0, 0, &[], None)),
            "binds nobody"
        );
    }

    #[test]
    fn unit_bindings_name_a_unit_of_the_system_manager() {
        let check = |binding: &str, unit: &str, expected: bool| {
            assert_eq!(unit_matches(binding, unit), expected, "{binding} vs {unit}");
        };
        check("app.service", "/system.slice/app.service", true);
        check(
            "/system.slice/app.service",
            "/system.slice/app.service",
            true,
        );
        check("system.slice", "/system.slice/app.service", true);
        check("shop.slice", "/system.slice/shop.slice/app.service", true);
        check(
            "/system.slice/app.service",
            "/system.slice/shop.slice/app.service",
            false,
        );
        check("app.service", "/system.slice/other.service", false);
        // What a user runs under their own manager is that manager's.
        check(
            "app.service",
            "/user.slice/user-1001.slice/user@1001.service",
            false,
        );
        check(
            "app.slice",
            "/user.slice/user-1001.slice/user@1001.service",
            false,
        );

        for valid in [
            "app.service",
            "shop.slice",
            "/system.slice/app.service",
            "getty@tty1.service",
        ] {
            assert!(valid_unit_binding(valid), "{valid}");
        }
        for invalid in [
            "bad unit",
            "",
            "/",
            "/app.slice",
            "/system.slice/",
            "/x/app.service",
            "app",
        ] {
            assert!(!valid_unit_binding(invalid), "{invalid}");
        }
    }
}
