//! The token fields every role of a login method carries (`token_policies`,
//! `token_ttl`, `token_max_ttl`, `token_explicit_max_ttl`, `token_period`,
//! `token_num_uses`, `token_no_default_policy`, `token_type`,
//! `token_bound_cidrs`, and the legacy `policies`), parsed with Vault's
//! coercions and turned into a [`Login`].

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::Login;
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::policy::{DEFAULT_POLICY, ROOT_POLICY};

/// The names this module reads, for methods that refuse unknown fields.
pub const NAMES: &[&str] = &[
    "token_policies",
    "policies",
    "token_ttl",
    "token_max_ttl",
    "token_explicit_max_ttl",
    "token_period",
    "token_num_uses",
    "token_no_default_policy",
    "token_type",
    "token_bound_cidrs",
    "token_strictly_bind_ip",
    "ttl",
    "max_ttl",
    "period",
];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenFields {
    pub policies: Vec<String>,
    pub ttl: u64,
    pub max_ttl: u64,
    pub explicit_max_ttl: u64,
    pub period: u64,
    pub num_uses: u64,
    pub no_default_policy: bool,
    /// CIDR blocks, normalized (`10.0.0.0/8`; a single address without `/32`).
    pub bound_cidrs: Vec<String>,
}

/// `text` as a CIDR block (or a single address), normalized as Vault reads
/// it back: a host block without its prefix length.
pub fn parse_cidr(text: &str) -> ApiResult<String> {
    let invalid = || {
        ApiError::invalid(format!(
            "invalid CIDR block {:?}",
            text.chars().take(64).collect::<String>()
        ))
    };
    let text = text.trim();
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let address: std::net::IpAddr = address.parse().map_err(|_| invalid())?;
    let full = if address.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = match prefix {
        Some(prefix) => prefix.parse().map_err(|_| invalid())?,
        None => full,
    };
    if prefix > full {
        return Err(invalid());
    }
    Ok(if prefix == full {
        address.to_string()
    } else {
        format!("{address}/{prefix}")
    })
}

/// The IP of a client's address as the doors report it (`ip:port`, or a
/// bare IP).
pub fn ip_of(address: &str) -> Option<std::net::IpAddr> {
    address
        .parse::<std::net::SocketAddr>()
        .map(|socket| socket.ip())
        .or_else(|_| address.parse())
        .ok()
}

/// Whether `address` lies in the block `cidr` (as [`parse_cidr`] wrote it).
pub fn cidr_contains(cidr: &str, address: std::net::IpAddr) -> bool {
    let (network, prefix) = match cidr.split_once('/') {
        Some((network, prefix)) => (network, prefix.parse::<u32>().ok()),
        None => (cidr, None),
    };
    let Ok(network) = network.parse::<std::net::IpAddr>() else {
        return false;
    };
    match (network, address) {
        (std::net::IpAddr::V4(network), std::net::IpAddr::V4(address)) => {
            let prefix = prefix.unwrap_or(32).min(32);
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            u32::from(network) & mask == u32::from(address) & mask
        }
        (std::net::IpAddr::V6(network), std::net::IpAddr::V6(address)) => {
            let prefix = prefix.unwrap_or(128).min(128);
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            u128::from(network) & mask == u128::from(address) & mask
        }
        // An IPv4 client on an IPv6 socket shows as ::ffff:a.b.c.d.
        (std::net::IpAddr::V4(_), std::net::IpAddr::V6(address)) => address
            .to_ipv4_mapped()
            .is_some_and(|mapped| cidr_contains(cidr, std::net::IpAddr::V4(mapped))),
        _ => false,
    }
}

impl TokenFields {
    /// Applies the token fields present in `fields` (a write changes what
    /// it names and keeps the rest).
    pub fn update(&mut self, fields: &Fields<'_>) -> ApiResult<()> {
        if let Some(policies) = fields.string_list("token_policies")? {
            self.policies = policies;
        } else if let Some(policies) = fields.string_list("policies")? {
            self.policies = policies;
        }
        for policy in &self.policies {
            if policy == ROOT_POLICY {
                return Err(ApiError::invalid(
                    "a login method cannot grant the root policy",
                ));
            }
        }
        // Vault's older names (`ttl`, `max_ttl`, `period`), which clients
        // such as hvac's Kubernetes role call still send, count when the
        // current one is absent.
        for (key, legacy, slot) in [
            ("token_ttl", "ttl", &mut self.ttl),
            ("token_max_ttl", "max_ttl", &mut self.max_ttl),
            ("token_explicit_max_ttl", "", &mut self.explicit_max_ttl),
            ("token_period", "period", &mut self.period),
        ] {
            let given = match fields.duration(key)? {
                Some(seconds) => Some(seconds),
                None if !legacy.is_empty() => fields.duration(legacy)?,
                None => None,
            };
            if let Some(seconds) = given {
                *slot = seconds;
            }
        }
        if self.max_ttl > 0 && self.ttl > self.max_ttl {
            return Err(ApiError::invalid(
                "\"token_ttl\" value must be less than \"token_max_ttl\" value",
            ));
        }
        if let Some(uses) = fields.u64("token_num_uses")? {
            self.num_uses = uses;
        }
        if let Some(flag) = fields.bool("token_no_default_policy")? {
            self.no_default_policy = flag;
        }
        if let Some(kind) = fields.string("token_type")?
            && !matches!(
                kind.as_str(),
                "" | "default" | "service" | "default-service"
            )
        {
            return Err(ApiError::invalid(format!(
                "token_type {:?} is not supported by coffer: its tokens are service tokens",
                kind.chars().take(32).collect::<String>()
            )));
        }
        if let Some(blocks) = fields.string_list("token_bound_cidrs")? {
            self.bound_cidrs = blocks
                .iter()
                .map(|block| parse_cidr(block))
                .collect::<ApiResult<_>>()?;
        }
        Ok(())
    }

    /// The fields as a role read shows them.
    pub fn describe(&self, data: &mut Map<String, Value>) {
        data.insert("token_policies".into(), json!(self.policies));
        data.insert("policies".into(), json!(self.policies));
        data.insert("token_ttl".into(), json!(self.ttl));
        data.insert("token_max_ttl".into(), json!(self.max_ttl));
        data.insert(
            "token_explicit_max_ttl".into(),
            json!(self.explicit_max_ttl),
        );
        data.insert("token_period".into(), json!(self.period));
        data.insert("token_num_uses".into(), json!(self.num_uses));
        data.insert(
            "token_no_default_policy".into(),
            json!(self.no_default_policy),
        );
        data.insert("token_type".into(), json!("default"));
        data.insert("token_bound_cidrs".into(), json!(self.bound_cidrs));
        data.insert("token_strictly_bind_ip".into(), json!(false));
    }

    /// A login with these fields: the policies (with `default` unless
    /// refused), sorted and unique, and the token's limits.
    pub fn login(&self, display_name: String) -> Login {
        let mut policies: BTreeSet<String> = self
            .policies
            .iter()
            .filter(|policy| !policy.is_empty())
            .cloned()
            .collect();
        if !self.no_default_policy {
            policies.insert(DEFAULT_POLICY.to_owned());
        }
        Login {
            policies: policies.into_iter().collect(),
            display_name,
            ttl: self.ttl,
            max_ttl: self.max_ttl,
            explicit_max_ttl: self.explicit_max_ttl,
            period: self.period,
            num_uses: self.num_uses,
            renewable: true,
            bound_cidrs: self.bound_cidrs.clone(),
            ..Login::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_normalized_and_matched() {
        assert_eq!(parse_cidr("127.0.0.1/32").unwrap(), "127.0.0.1");
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap(), "10.0.0.0/8");
        assert_eq!(parse_cidr("::1").unwrap(), "::1");
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("nope").is_err());
        let local: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        assert!(cidr_contains("127.0.0.1", local));
        assert!(cidr_contains("127.0.0.0/8", local));
        assert!(!cidr_contains("10.0.0.0/8", local));
        assert!(cidr_contains("0.0.0.0/0", local));
        assert!(cidr_contains(
            "127.0.0.0/8",
            "::ffff:127.0.0.9".parse().unwrap()
        ));
        assert!(!cidr_contains("::1", local));
        assert_eq!(ip_of("127.0.0.1:8200"), Some(local));
        assert_eq!(ip_of("[::1]:8200"), "::1".parse().ok());
        assert_eq!(ip_of("10.1.2.3"), "10.1.2.3".parse().ok());
        assert_eq!(ip_of("a-socket"), None);
    }

    #[test]
    fn fields_update_and_make_a_login() {
        let mut token = TokenFields::default();
        let data = json!({"policies": "app,db", "token_ttl": "1h", "token_max_ttl": 7200,
                          "token_bound_cidrs": ["127.0.0.1/32"], "token_num_uses": "3"});
        token
            .update(&Fields::new(data.as_object().unwrap()))
            .unwrap();
        let login = token.login("alice".into());
        assert_eq!(login.policies, ["app", "db", "default"]);
        assert_eq!((login.ttl, login.max_ttl, login.num_uses), (3600, 7200, 3));
        assert_eq!(login.bound_cidrs, ["127.0.0.1"]);
        let data = json!({"token_policies": ["root"]});
        assert!(
            token
                .update(&Fields::new(data.as_object().unwrap()))
                .is_err()
        );
        let data = json!({"token_ttl": "3h"});
        assert!(
            token
                .update(&Fields::new(data.as_object().unwrap()))
                .is_err()
        );
        let data = json!({"token_no_default_policy": true, "token_policies": ""});
        token
            .update(&Fields::new(data.as_object().unwrap()))
            .unwrap();
        assert!(token.login(String::new()).policies.is_empty());
    }
}
