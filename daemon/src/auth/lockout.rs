//! Vault's user lockout: after `threshold` failed logins of one user (a
//! userpass name, an AppRole role ID) on one mount within `counter_reset`,
//! the user's logins are refused (403 `permission denied`, the password not
//! even checked) for `duration`. Counted on the node that runs logins (the
//! leader: a login is a write); a new leader starts with no failures.
//! At most [`LIMIT`] users are tracked; past that the oldest are forgotten.
//! `sys/locked-users` lists and unlocks them (on the leader, which counts).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Users tracked at most, over every mount.
const LIMIT: usize = 65_536;

/// A mount's `user_lockout_config`, as tuned (Vault's defaults when unset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutConfig {
    pub threshold: u64,
    /// Seconds.
    pub duration: u64,
    /// Seconds.
    pub counter_reset: u64,
    pub disable: bool,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            threshold: 5,
            duration: 15 * 60,
            counter_reset: 15 * 60,
            disable: false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u64,
    first: u64,
    last: u64,
}

#[derive(Default)]
pub struct Lockouts {
    users: Mutex<HashMap<(String, String), Failures>>,
}

impl Lockouts {
    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Failures>> {
        self.users
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `user` of the mount `accessor` is locked out at `now`.
    pub fn locked(&self, accessor: &str, user: &str, config: &LockoutConfig, now: u64) -> bool {
        if config.disable || config.threshold == 0 {
            return false;
        }
        self.users()
            .get(&(accessor.to_owned(), user.to_owned()))
            .is_some_and(|failures| {
                failures.count >= config.threshold && now < failures.last + config.duration
            })
    }

    /// A failed login of `user`.
    pub fn failed(&self, accessor: &str, user: &str, config: &LockoutConfig, now: u64) {
        if config.disable || config.threshold == 0 {
            return;
        }
        let mut users = self.users();
        if users.len() >= LIMIT {
            let oldest = users
                .iter()
                .min_by_key(|(_, failures)| failures.last)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                users.remove(&oldest);
            }
        }
        let failures = users
            .entry((accessor.to_owned(), user.to_owned()))
            .or_insert(Failures {
                count: 0,
                first: now,
                last: now,
            });
        let locked_out_ended =
            failures.count >= config.threshold && now >= failures.last + config.duration;
        if locked_out_ended || now >= failures.first + config.counter_reset {
            *failures = Failures {
                count: 0,
                first: now,
                last: now,
            };
        }
        failures.count += 1;
        failures.last = now;
    }

    /// A successful login of `user`: its failures are forgotten.
    pub fn succeeded(&self, accessor: &str, user: &str) {
        self.users().remove(&(accessor.to_owned(), user.to_owned()));
    }

    /// `sys/locked-users/<accessor>/unlock/<user>`: the user may log in again.
    pub fn unlock(&self, accessor: &str, user: &str) {
        self.succeeded(accessor, user);
    }

    /// The users locked out at `now`, by mount accessor (sorted), each
    /// mount's config given by `config_of` (`None`: the mount is gone).
    pub fn locked_users(
        &self,
        now: u64,
        config_of: impl Fn(&str) -> Option<LockoutConfig>,
    ) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut locked: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for ((accessor, user), failures) in self.users().iter() {
            let Some(config) = config_of(accessor) else {
                continue;
            };
            if !config.disable
                && config.threshold > 0
                && failures.count >= config.threshold
                && now < failures.last + config.duration
            {
                locked
                    .entry(accessor.clone())
                    .or_default()
                    .push(user.clone());
            }
        }
        for users in locked.values_mut() {
            users.sort();
        }
        locked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_after_the_threshold_until_the_duration_passes() {
        let lockouts = Lockouts::default();
        let config = LockoutConfig {
            threshold: 3,
            duration: 60,
            counter_reset: 30,
            disable: false,
        };
        for second in 0..3 {
            assert!(!lockouts.locked("m", "alice", &config, second));
            lockouts.failed("m", "alice", &config, second);
        }
        assert!(lockouts.locked("m", "alice", &config, 3));
        assert!(!lockouts.locked("m", "bob", &config, 3), "per user");
        assert!(!lockouts.locked("other", "alice", &config, 3), "per mount");
        assert!(lockouts.locked("m", "alice", &config, 61));
        assert!(!lockouts.locked("m", "alice", &config, 62));
        // Failures spread past the counter reset never add up.
        lockouts.failed("m", "carol", &config, 0);
        lockouts.failed("m", "carol", &config, 10);
        lockouts.failed("m", "carol", &config, 40);
        assert!(!lockouts.locked("m", "carol", &config, 41));
        let listed = lockouts.locked_users(3, |_| Some(config));
        assert_eq!(listed.get("m"), Some(&vec!["alice".to_owned()]));
        assert!(lockouts.locked_users(3, |_| None).is_empty(), "gone mounts");
        lockouts.unlock("m", "alice");
        assert!(!lockouts.locked("m", "alice", &config, 10));
        assert!(lockouts.locked_users(3, |_| Some(config)).is_empty());
        let off = LockoutConfig {
            disable: true,
            ..config
        };
        for second in 0..10 {
            lockouts.failed("m", "dave", &off, second);
        }
        assert!(!lockouts.locked("m", "dave", &off, 10));
    }
}
