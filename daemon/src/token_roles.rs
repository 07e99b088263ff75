//! Token roles (`auth/token/roles/<name>`): what a token made with
//! `auth/token/create/<role>` may hold (allowed and disallowed policies, with
//! globs) and how it lives (orphan, period, explicit max TTL, renewable, uses).
//! Stored behind the barrier at `sys/token/role/<name>`; read on use, never
//! cached.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::barrier::{self, Barrier};
use crate::policy::DEFAULT_POLICY;

const PREFIX: &str = "sys/token/role/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenRole {
    pub name: String,
    pub allowed_policies: Vec<String>,
    pub disallowed_policies: Vec<String>,
    pub allowed_policies_glob: Vec<String>,
    pub disallowed_policies_glob: Vec<String>,
    pub allowed_entity_aliases: Vec<String>,
    pub orphan: bool,
    pub renewable: bool,
    pub path_suffix: String,
    /// Seconds; 0 for none.
    pub token_period: u64,
    pub token_explicit_max_ttl: u64,
    pub token_num_uses: u64,
    pub token_no_default_policy: bool,
}

impl Default for TokenRole {
    fn default() -> Self {
        TokenRole {
            name: String::new(),
            allowed_policies: Vec::new(),
            disallowed_policies: Vec::new(),
            allowed_policies_glob: Vec::new(),
            disallowed_policies_glob: Vec::new(),
            allowed_entity_aliases: Vec::new(),
            orphan: false,
            renewable: true,
            path_suffix: String::new(),
            token_period: 0,
            token_explicit_max_ttl: 0,
            token_num_uses: 0,
            token_no_default_policy: false,
        }
    }
}

/// A role name: letters, digits, `-`, `_`, `.`, 1 to 128 of them.
pub fn check_name(name: &str) -> ApiResult<()> {
    if crate::policy::is_name(name, "-_.") {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "invalid role name {:?}: use 1 to 128 letters, digits, '-', '_' or '.'",
            name.chars().take(64).collect::<String>()
        )))
    }
}

/// Lowercased, trimmed, sorted policy names, without empties or repeats.
pub fn policy_names(names: Vec<String>) -> Vec<String> {
    let mut names: Vec<String> = names
        .into_iter()
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Whether `name` matches `pattern`, where `*` stands for any run of
/// characters.
fn glob_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = parts.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

impl TokenRole {
    /// Applies a write's fields to the role (a new one starts from Vault's
    /// defaults). The legacy `period` and `explicit_max_ttl` are taken too.
    pub fn update(&mut self, fields: &Fields<'_>) -> ApiResult<()> {
        let list = |key: &str| -> ApiResult<Option<Vec<String>>> {
            Ok(fields.string_list(key)?.map(policy_names))
        };
        if let Some(names) = list("allowed_policies")? {
            self.allowed_policies = names;
        }
        if let Some(names) = list("disallowed_policies")? {
            self.disallowed_policies = names;
        }
        if let Some(names) = list("allowed_policies_glob")? {
            self.allowed_policies_glob = names;
        }
        if let Some(names) = list("disallowed_policies_glob")? {
            self.disallowed_policies_glob = names;
        }
        if let Some(aliases) = fields.string_list("allowed_entity_aliases")? {
            self.allowed_entity_aliases = aliases;
        }
        if let Some(orphan) = fields.bool("orphan")? {
            self.orphan = orphan;
        }
        if let Some(renewable) = fields.bool("renewable")? {
            self.renewable = renewable;
        }
        if let Some(suffix) = fields.string("path_suffix")? {
            if suffix.contains("..") || suffix.chars().any(char::is_control) {
                return Err(ApiError::invalid("path_suffix cannot contain '..'"));
            }
            self.path_suffix = suffix;
        }
        if let Some(period) = match fields.duration("token_period")? {
            Some(period) => Some(period),
            None => fields.duration("period")?,
        } {
            self.token_period = period;
        }
        if let Some(ttl) = match fields.duration("token_explicit_max_ttl")? {
            Some(ttl) => Some(ttl),
            None => fields.duration("explicit_max_ttl")?,
        } {
            self.token_explicit_max_ttl = ttl;
        }
        if let Some(uses) = fields.u64("token_num_uses")? {
            self.token_num_uses = uses;
        }
        if let Some(no_default) = fields.bool("token_no_default_policy")? {
            self.token_no_default_policy = no_default;
        }
        if let Some(kind) = fields.string("token_type")?
            && !matches!(
                kind.as_str(),
                "" | "service" | "default" | "default-service"
            )
        {
            return Err(ApiError::invalid(
                "coffer issues service tokens only: token_type must be \"service\" or \"default\"",
            ));
        }
        fields.refuse_unless_empty(&["token_bound_cidrs", "bound_cidrs"])?;
        Ok(())
    }

    /// The role as `auth/token/roles/<name>` reads it.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "allowed_policies": self.allowed_policies,
            "disallowed_policies": self.disallowed_policies,
            "allowed_policies_glob": self.allowed_policies_glob,
            "disallowed_policies_glob": self.disallowed_policies_glob,
            "allowed_entity_aliases": if self.allowed_entity_aliases.is_empty() {
                Value::Null
            } else {
                json!(self.allowed_entity_aliases)
            },
            "orphan": self.orphan,
            "renewable": self.renewable,
            "path_suffix": self.path_suffix,
            "token_period": self.token_period,
            "period": 0,
            "token_explicit_max_ttl": self.token_explicit_max_ttl,
            "explicit_max_ttl": 0,
            "token_num_uses": self.token_num_uses,
            "token_no_default_policy": self.token_no_default_policy,
            "token_type": "default-service",
        })
    }

    /// Whether the role names the policies a token may have (otherwise the
    /// parent's policies bound it, as without a role).
    pub fn limits_policies(&self) -> bool {
        !self.allowed_policies.is_empty() || !self.allowed_policies_glob.is_empty()
    }

    /// The policies a token made with the role gets: those `requested`, or the
    /// allowed ones when none are. `default` is counted among the allowed
    /// unless the token goes without it. Texts are Vault's.
    pub fn policies(
        &self,
        requested: Option<Vec<String>>,
        with_default: bool,
    ) -> ApiResult<Option<Vec<String>>> {
        let mut allowed = self.allowed_policies.clone();
        if with_default && self.limits_policies() {
            allowed.push(DEFAULT_POLICY.into());
        }
        let allowed = policy_names(allowed);
        let chosen = match requested {
            Some(requested) if !requested.is_empty() => {
                let mut with = requested.clone();
                if with_default {
                    with.push(DEFAULT_POLICY.into());
                }
                let with = policy_names(with);
                if self.limits_policies()
                    && !with.iter().all(|name| {
                        allowed.contains(name)
                            || self
                                .allowed_policies_glob
                                .iter()
                                .any(|glob| glob_matches(glob, name))
                    })
                {
                    return Err(ApiError::invalid(format!(
                        "token policies ({}) must be subset of the role's allowed policies ({}) or glob policies ({})",
                        quoted(&with),
                        quoted(&allowed),
                        quoted(&self.allowed_policies_glob)
                    )));
                }
                Some(requested)
            }
            _ if !self.allowed_policies.is_empty() => Some(self.allowed_policies.clone()),
            _ => None,
        };
        if let Some(chosen) = &chosen {
            self.check_disallowed(chosen)?;
        }
        Ok(chosen)
    }

    /// Refuses a policy the role disallows by name or glob.
    pub fn check_disallowed(&self, policies: &[String]) -> ApiResult<()> {
        for name in policies {
            if self.disallowed_policies.contains(name)
                || self
                    .disallowed_policies_glob
                    .iter()
                    .any(|glob| glob_matches(glob, name))
            {
                return Err(ApiError::invalid(format!(
                    "token policy {name:?} is disallowed by this role"
                )));
            }
        }
        Ok(())
    }

    /// The path a token made with the role records.
    pub fn token_path(&self) -> String {
        match self.path_suffix.as_str() {
            "" => format!("auth/token/create/{}", self.name),
            suffix => format!("auth/token/create/{}/{suffix}", self.name),
        }
    }
}

/// `["a" "b"]`, as Go prints a list of strings.
fn quoted(names: &[String]) -> String {
    let inner: Vec<String> = names.iter().map(|name| format!("{name:?}")).collect();
    format!("[{}]", inner.join(" "))
}

pub fn get(barrier: &Barrier, name: &str) -> Result<Option<TokenRole>, barrier::Error> {
    barrier.get_json(&format!("{PREFIX}{name}"))
}

pub async fn put(barrier: &Barrier, role: &TokenRole) -> Result<(), barrier::Error> {
    barrier
        .put_json(&format!("{PREFIX}{}", role.name), role)
        .await
        .map(drop)
}

pub async fn delete(barrier: &Barrier, name: &str) -> Result<(), barrier::Error> {
    barrier.delete(&format!("{PREFIX}{name}")).await.map(drop)
}

pub fn names(barrier: &Barrier) -> Result<Vec<String>, barrier::Error> {
    barrier.list(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_vaults() {
        for (pattern, name, matches) in [
            ("team-*", "team-ops", true),
            ("team-*", "team-", true),
            ("team-*", "other", false),
            ("*-admin", "db-admin", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("exact", "exact", true),
            ("exact", "exact2", false),
            ("*", "anything", true),
        ] {
            assert_eq!(glob_matches(pattern, name), matches, "{pattern} {name}");
        }
    }

    #[test]
    fn a_role_bounds_the_policies_and_names_the_refusal_as_vault_does() {
        let role = TokenRole {
            name: "r".into(),
            allowed_policies: vec!["a".into(), "b".into()],
            allowed_policies_glob: vec!["team-*".into()],
            disallowed_policies: vec!["bad".into()],
            ..TokenRole::default()
        };
        assert_eq!(
            role.policies(None, true).unwrap(),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(
            role.policies(Some(vec!["team-x".into()]), true).unwrap(),
            Some(vec!["team-x".to_owned()])
        );
        let refused = role.policies(Some(vec!["c".into()]), true).unwrap_err();
        assert_eq!(
            refused.messages,
            [
                "token policies ([\"c\" \"default\"]) must be subset of the role's allowed policies ([\"a\" \"b\" \"default\"]) or glob policies ([\"team-*\"])"
            ]
        );
        let open = TokenRole {
            disallowed_policies_glob: vec!["*-admin".into()],
            ..TokenRole::default()
        };
        assert_eq!(open.policies(None, true).unwrap(), None);
        let refused = open
            .policies(Some(vec!["db-admin".into()]), true)
            .unwrap_err();
        assert_eq!(
            refused.messages,
            ["token policy \"db-admin\" is disallowed by this role"]
        );
    }
}
