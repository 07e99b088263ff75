//! Evaluating policies: the ACL built from a token's policies answers whether one
//! operation on one path is allowed, following Vault's precedence exactly:
//!
//! 1. an exact pattern wins over everything (for `list`, the path without its
//!    trailing `/` also counts as exact);
//! 2. otherwise, among the glob (`*`) and segment-wildcard (`+`) patterns that
//!    match, the most specific wins: the later its first `*` or `+`, then a
//!    non-glob over a glob, then fewer `+` segments, then the longer pattern;
//! 3. equal patterns from several policies are merged first, and `deny` in any of
//!    them wins.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use super::{Capabilities, Permissions, Policy};

/// What an operation needs from the ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    Create,
    Read,
    Update,
    Patch,
    Delete,
    List,
}

impl Capability {
    fn bit(self) -> Capabilities {
        match self {
            Capability::Create => Capabilities::CREATE,
            Capability::Read => Capabilities::READ,
            Capability::Update => Capabilities::UPDATE,
            Capability::Patch => Capabilities::PATCH,
            Capability::Delete => Capabilities::DELETE,
            Capability::List => Capabilities::LIST,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Create => "create",
            Capability::Read => "read",
            Capability::Update => "update",
            Capability::Patch => "patch",
            Capability::Delete => "delete",
            Capability::List => "list",
        }
    }
}

/// The ACL's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision {
    pub allowed: bool,
    /// The matching rule also grants `sudo` (or the token is root).
    pub sudo: bool,
}

#[derive(Debug, Clone)]
struct WildcardRule {
    /// The pattern without its trailing `*`.
    path: String,
    segments: Vec<String>,
    is_prefix: bool,
    first_wildcard: usize,
    wildcards: usize,
    permissions: Permissions,
}

/// A candidate match among non-exact rules, ranked by [`compare_priority`].
struct Candidate<'a> {
    first_wildcard: usize,
    is_prefix: bool,
    wildcards: usize,
    path: &'a str,
    permissions: &'a Permissions,
}

/// The compiled rules of a set of policies.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    root: bool,
    exact: HashMap<String, Permissions>,
    /// Glob rules without `+`, longest first.
    prefix: Vec<(String, Permissions)>,
    /// Rules with a `+` segment (with or without a trailing glob).
    wildcard: Vec<WildcardRule>,
}

impl Acl {
    /// Compiles `policies`; `root` grants everything regardless of rules.
    pub fn new<'a>(root: bool, policies: impl IntoIterator<Item = &'a Policy>) -> Acl {
        let mut exact: HashMap<String, Permissions> = HashMap::new();
        let mut prefix: HashMap<String, Permissions> = HashMap::new();
        let mut wildcard: HashMap<String, (bool, Permissions)> = HashMap::new();
        for policy in policies {
            for rule in &policy.rules {
                let target = if rule.has_segment_wildcard {
                    &mut wildcard
                        .entry(rule.pattern())
                        .or_insert_with(|| (rule.is_prefix, Permissions::default()))
                        .1
                } else if rule.is_prefix {
                    prefix.entry(rule.path.clone()).or_default()
                } else {
                    exact.entry(rule.path.clone()).or_default()
                };
                target.merge(&rule.permissions);
            }
        }
        let mut prefix: Vec<(String, Permissions)> = prefix.into_iter().collect();
        prefix.sort_by(|left, right| right.0.len().cmp(&left.0.len()).then(left.0.cmp(&right.0)));
        let mut wildcard: Vec<WildcardRule> = wildcard
            .into_iter()
            .map(|(pattern, (is_prefix, permissions))| {
                let path = if is_prefix {
                    pattern[..pattern.len() - 1].to_owned()
                } else {
                    pattern.clone()
                };
                WildcardRule {
                    segments: path.split('/').map(str::to_owned).collect(),
                    first_wildcard: pattern.find('+').unwrap_or(pattern.len()),
                    wildcards: path.split('/').filter(|segment| *segment == "+").count(),
                    path,
                    is_prefix,
                    permissions,
                }
            })
            .collect();
        wildcard.sort_by(|left, right| left.path.cmp(&right.path));
        Acl {
            root,
            exact,
            prefix,
            wildcard,
        }
    }

    pub fn is_root(&self) -> bool {
        self.root
    }

    /// The permissions of the rule that governs `path`, if any.
    pub fn permissions(&self, path: &str, listing: bool) -> Option<&Permissions> {
        if let Some(permissions) = self.exact.get(path) {
            return Some(permissions);
        }
        if listing
            && let Some(trimmed) = path.strip_suffix('/')
            && let Some(permissions) = self.exact.get(trimmed)
        {
            return Some(permissions);
        }
        self.non_exact(path)
    }

    fn non_exact(&self, path: &str) -> Option<&Permissions> {
        let mut best: Option<Candidate<'_>> = self
            .prefix
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(prefix, permissions)| Candidate {
                first_wildcard: prefix.len(),
                is_prefix: true,
                wildcards: 0,
                path: prefix,
                permissions,
            });
        if !self.wildcard.is_empty() {
            let parts: Vec<&str> = path.split('/').collect();
            for rule in &self.wildcard {
                if !wildcard_matches(rule, &parts) {
                    continue;
                }
                let candidate = Candidate {
                    first_wildcard: rule.first_wildcard,
                    is_prefix: rule.is_prefix,
                    wildcards: rule.wildcards,
                    path: &rule.path,
                    permissions: &rule.permissions,
                };
                best = match best {
                    Some(current) if compare_priority(&current, &candidate) != Ordering::Less => {
                        Some(current)
                    }
                    _ => Some(candidate),
                };
            }
        }
        best.map(|candidate| candidate.permissions)
    }

    /// The capability names a token holds on `path`, as `sys/capabilities-self`
    /// reports them: `["root"]` for root, `["deny"]` when nothing is granted.
    pub fn capabilities(&self, path: &str) -> Vec<&'static str> {
        if self.root {
            return vec!["root"];
        }
        self.permissions(path, true)
            .map(|permissions| permissions.capabilities)
            .unwrap_or_default()
            .names()
    }

    /// Whether `capability` on `path` with request `data` is allowed.
    /// The bounds the rule matching `path` sets on a wrapping TTL, as (min,
    /// max) in seconds, 0 for none; root has none.
    pub fn wrapping_bounds(&self, path: &str) -> (u64, u64) {
        if self.root {
            return (0, 0);
        }
        self.permissions(path, false).map_or((0, 0), |permissions| {
            (permissions.min_wrapping_ttl, permissions.max_wrapping_ttl)
        })
    }

    pub fn check(&self, path: &str, capability: Capability, data: &Map<String, Json>) -> Decision {
        if self.root {
            return Decision {
                allowed: true,
                sudo: true,
            };
        }
        let Some(permissions) = self.permissions(path, capability == Capability::List) else {
            return Decision::default();
        };
        let granted = permissions.capabilities;
        if granted.is_deny() || !granted.contains(capability.bit()) {
            return Decision::default();
        }
        let sudo = granted.contains(Capabilities::SUDO);
        let checks_parameters = matches!(
            capability,
            Capability::Read | Capability::Create | Capability::Update | Capability::Patch
        );
        let allowed = !checks_parameters || parameters_allowed(permissions, data);
        Decision { allowed, sudo }
    }

    /// Whether the token may do anything at all under `prefix` (a mount path):
    /// used to decide which mounts `sys/internal/ui/mounts` reveals.
    pub fn has_access_under(&self, prefix: &str) -> bool {
        if self.root {
            return true;
        }
        let grants = |permissions: &Permissions| {
            !permissions.capabilities.is_deny() && permissions.capabilities != Capabilities::NONE
        };
        if self.permissions(prefix, true).is_some_and(grants) {
            return true;
        }
        self.exact
            .iter()
            .any(|(path, permissions)| path.starts_with(prefix) && grants(permissions))
            // A glob broader than `prefix` matches `prefix` itself, so the
            // most specific rule there (checked above) already decided for it:
            // a deny on `prefix` shadows a broader grant.
            || self
                .prefix
                .iter()
                .any(|(path, permissions)| path.starts_with(prefix) && grants(permissions))
            || self.wildcard.iter().any(|rule| {
                let mount_segments: Vec<&str> = prefix.trim_end_matches('/').split('/').collect();
                mount_segments.iter().enumerate().all(|(index, segment)| {
                    rule.segments
                        .get(index)
                        .is_some_and(|rule_segment| rule_segment == "+" || rule_segment == segment)
                }) && grants(&rule.permissions)
            })
    }
}

fn wildcard_matches(rule: &WildcardRule, parts: &[&str]) -> bool {
    if parts.len() < rule.segments.len() {
        return false;
    }
    if !rule.is_prefix && parts.len() != rule.segments.len() {
        return false;
    }
    let last = rule.segments.len() - 1;
    rule.segments.iter().enumerate().all(|(index, segment)| {
        segment == "+"
            || segment == parts[index]
            || (rule.is_prefix && index == last && parts[index].starts_with(segment.as_str()))
    })
}

/// `Greater` when `left` is the more specific pattern.
fn compare_priority(left: &Candidate<'_>, right: &Candidate<'_>) -> Ordering {
    left.first_wildcard
        .cmp(&right.first_wildcard)
        .then_with(|| right.is_prefix.cmp(&left.is_prefix))
        .then_with(|| right.wildcards.cmp(&left.wildcards))
        .then_with(|| left.path.len().cmp(&right.path.len()))
        .then_with(|| right.path.cmp(left.path))
}

fn parameters_allowed(permissions: &Permissions, data: &Map<String, Json>) -> bool {
    let lowered = |key: &String| key.to_ascii_lowercase();
    for required in &permissions.required_parameters {
        if !data.keys().any(|key| lowered(key) == *required) {
            return false;
        }
    }
    if data.is_empty() {
        return true;
    }
    if !permissions.denied_parameters.is_empty() {
        if permissions.denied_parameters.contains_key("*") {
            return false;
        }
        for (key, value) in data {
            if let Some(denied) = permissions.denied_parameters.get(&lowered(key))
                && value_in_list(value, denied)
            {
                return false;
            }
        }
    }
    if permissions.allowed_parameters.is_empty() {
        return true;
    }
    let allows_all = permissions.allowed_parameters.contains_key("*");
    if allows_all && permissions.allowed_parameters.len() == 1 {
        return true;
    }
    for (key, value) in data {
        match permissions.allowed_parameters.get(&lowered(key)) {
            None if !allows_all => return false,
            Some(allowed) if !value_in_list(value, allowed) => return false,
            _ => {}
        }
    }
    true
}

/// An empty list holds every value; strings match with a leading or trailing `*`.
fn value_in_list(value: &Json, list: &[Json]) -> bool {
    list.is_empty()
        || list.iter().any(|item| match (item, value) {
            (Json::String(pattern), Json::String(text)) => glob_matches(pattern, text),
            _ => item == value,
        })
}

fn glob_matches(pattern: &str, text: &str) -> bool {
    if pattern.len() > 1 && pattern.starts_with('*') && pattern.ends_with('*') {
        text.contains(&pattern[1..pattern.len() - 1])
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        text.ends_with(suffix)
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        text.starts_with(prefix)
    } else {
        pattern == text
    }
}
