//! PKI roles: Vault's fields and defaults (as OpenBao 2.7.2 reads them back),
//! and the name, IP and TTL checks a request meets, with Vault's error texts.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::keys::KeySpec;
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;

/// One role, as stored. A write replaces it whole: fields left out take
/// their defaults, as in Vault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub ttl: u64,
    pub max_ttl: u64,
    pub allow_localhost: bool,
    pub allowed_domains: Vec<String>,
    pub allow_bare_domains: bool,
    pub allow_subdomains: bool,
    pub allow_glob_domains: bool,
    pub allow_wildcard_certificates: bool,
    pub allow_any_name: bool,
    pub enforce_hostnames: bool,
    pub allow_ip_sans: bool,
    pub allowed_uri_sans: Vec<String>,
    pub server_flag: bool,
    pub client_flag: bool,
    pub code_signing_flag: bool,
    pub email_protection_flag: bool,
    /// `rsa`, `ec`, `ed25519` or `any` (for signing only).
    pub key_type: String,
    pub key_bits: u32,
    pub key_usage: Vec<String>,
    pub ext_key_usage: Vec<String>,
    pub ou: Vec<String>,
    pub organization: Vec<String>,
    pub country: Vec<String>,
    pub locality: Vec<String>,
    pub province: Vec<String>,
    pub street_address: Vec<String>,
    pub postal_code: Vec<String>,
    pub generate_lease: bool,
    pub no_store: bool,
    pub require_cn: bool,
    pub use_csr_common_name: bool,
    pub use_csr_sans: bool,
    pub not_before_duration: u64,
    pub issuer_ref: String,
}

/// Reads a list field (array or comma string), or its default.
fn list(fields: &Fields<'_>, key: &str, default: &[&str]) -> ApiResult<Vec<String>> {
    Ok(fields
        .string_list(key)?
        .unwrap_or_else(|| default.iter().map(|item| (*item).to_owned()).collect()))
}

impl Role {
    /// A role from a write's body.
    pub fn parse(data: &Map<String, Value>) -> ApiResult<Role> {
        let fields = Fields::new(data);
        let flag = |key: &str, default: bool| -> ApiResult<bool> {
            Ok(fields.bool(key)?.unwrap_or(default))
        };
        let key_type = fields
            .string("key_type")?
            .unwrap_or_else(|| "rsa".to_owned());
        let requested_bits = fields.u64("key_bits")?.unwrap_or(0);
        let key_bits = if key_type == "any" {
            0
        } else {
            KeySpec::parse(&key_type, requested_bits)?.bits()
        };
        let ttl = fields.duration("ttl")?.unwrap_or(0);
        let max_ttl = fields.duration("max_ttl")?.unwrap_or(0);
        if max_ttl > 0 && ttl > max_ttl {
            return Err(ApiError::invalid(
                "\"ttl\" value must be less than \"max_ttl\" value",
            ));
        }
        let role = Role {
            ttl,
            max_ttl,
            allow_localhost: flag("allow_localhost", true)?,
            allowed_domains: list(&fields, "allowed_domains", &[])?,
            allow_bare_domains: flag("allow_bare_domains", false)?,
            allow_subdomains: flag("allow_subdomains", false)?,
            allow_glob_domains: flag("allow_glob_domains", false)?,
            allow_wildcard_certificates: flag("allow_wildcard_certificates", true)?,
            allow_any_name: flag("allow_any_name", false)?,
            enforce_hostnames: flag("enforce_hostnames", true)?,
            allow_ip_sans: flag("allow_ip_sans", true)?,
            allowed_uri_sans: list(&fields, "allowed_uri_sans", &[])?,
            server_flag: flag("server_flag", true)?,
            client_flag: flag("client_flag", true)?,
            code_signing_flag: flag("code_signing_flag", false)?,
            email_protection_flag: flag("email_protection_flag", false)?,
            key_type,
            key_bits,
            key_usage: list(
                &fields,
                "key_usage",
                &["DigitalSignature", "KeyAgreement", "KeyEncipherment"],
            )?,
            ext_key_usage: list(&fields, "ext_key_usage", &[])?,
            ou: list(&fields, "ou", &[])?,
            organization: list(&fields, "organization", &[])?,
            country: list(&fields, "country", &[])?,
            locality: list(&fields, "locality", &[])?,
            province: list(&fields, "province", &[])?,
            street_address: list(&fields, "street_address", &[])?,
            postal_code: list(&fields, "postal_code", &[])?,
            generate_lease: flag("generate_lease", false)?,
            no_store: flag("no_store", false)?,
            require_cn: flag("require_cn", true)?,
            use_csr_common_name: flag("use_csr_common_name", true)?,
            use_csr_sans: flag("use_csr_sans", true)?,
            not_before_duration: fields.duration("not_before_duration")?.unwrap_or(30),
            issuer_ref: fields
                .string("issuer_ref")?
                .filter(|reference| !reference.is_empty())
                .unwrap_or_else(|| "default".to_owned()),
        };
        for usage in &role.key_usage {
            key_usage(usage)?;
        }
        for usage in &role.ext_key_usage {
            ext_key_usage(usage)?;
        }
        Ok(role)
    }

    /// The role as `GET` shows it (durations in seconds).
    pub fn describe(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(object) = &mut value {
            object.insert("allow_token_displayname".into(), json!(false));
            object.insert("signature_bits".into(), json!(0));
            object.insert("use_pss".into(), json!(false));
            object.insert("cn_validations".into(), json!(["email", "hostname"]));
        }
        value
    }

    /// The key a certificate issued under this role gets.
    pub fn key_spec(&self) -> ApiResult<KeySpec> {
        if self.key_type == "any" {
            return Err(ApiError::invalid(
                "role key type \"any\" not allowed for issuing certificates without providing key_type and/or key_bits request parameters",
            ));
        }
        KeySpec::parse(&self.key_type, u64::from(self.key_bits))
    }

    /// Checks a DNS name (the CN or a SAN) against the role; `what` names it
    /// in the error as Vault does.
    pub fn check_name(&self, name: &str, what: &str) -> ApiResult<()> {
        let refuse = || {
            ApiError::invalid(format!(
                "{what} {} not allowed by this role",
                name.chars().take(256).collect::<String>()
            ))
        };
        let lowered = name.to_ascii_lowercase();
        let (wildcard, base) = match lowered.strip_prefix("*.") {
            Some(base) => (true, base),
            None => (false, lowered.as_str()),
        };
        if wildcard && !self.allow_wildcard_certificates {
            return Err(refuse());
        }
        if self.enforce_hostnames && !lowered.contains('@') && !is_hostname(base) {
            return Err(refuse());
        }
        if self.allow_any_name {
            return Ok(());
        }
        if self.allow_localhost && !wildcard && (base == "localhost" || base == "localdomain") {
            return Ok(());
        }
        let allowed = self.allowed_domains.iter().any(|domain| {
            let domain = domain.to_ascii_lowercase();
            (self.allow_bare_domains && !wildcard && base == domain)
                || (self.allow_subdomains
                    && (base.ends_with(&format!(".{domain}")) || (wildcard && base == domain)))
                || (self.allow_glob_domains && glob_match(&domain, &lowered))
        });
        if allowed { Ok(()) } else { Err(refuse()) }
    }

    /// Checks an IP SAN's text.
    pub fn check_ip(&self, text: &str) -> ApiResult<IpAddr> {
        let address: IpAddr = text.trim().parse().map_err(|_| {
            ApiError::invalid(format!(
                "the value {:?} is not a valid IP address",
                text.chars().take(64).collect::<String>()
            ))
        })?;
        if !self.allow_ip_sans {
            return Err(ApiError::invalid(format!(
                "IP Subject Alternative Names are not allowed in this role, but was provided {address}"
            )));
        }
        Ok(address)
    }
}

/// A DNS host name: labels of letters, digits and inner hyphens.
fn is_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|character| character.is_ascii_alphanumeric() || character == '-')
        })
}

/// `*` matches any run of characters, as Vault's glob domains do.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, rest)) => {
            let Some(after) = name.strip_prefix(prefix) else {
                return false;
            };
            (0..=after.len())
                .filter(|cut| after.is_char_boundary(*cut))
                .any(|cut| glob_match(rest, &after[cut..]))
        }
    }
}

/// A role's `key_usage` entry.
pub fn key_usage(name: &str) -> ApiResult<rcgen::KeyUsagePurpose> {
    use rcgen::KeyUsagePurpose as Usage;
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "digitalsignature" => Usage::DigitalSignature,
        "contentcommitment" | "nonrepudiation" => Usage::ContentCommitment,
        "keyencipherment" => Usage::KeyEncipherment,
        "dataencipherment" => Usage::DataEncipherment,
        "keyagreement" => Usage::KeyAgreement,
        "certsign" | "keycertsign" => Usage::KeyCertSign,
        "crlsign" => Usage::CrlSign,
        "encipheronly" => Usage::EncipherOnly,
        "decipheronly" => Usage::DecipherOnly,
        _ => {
            return Err(ApiError::invalid(format!(
                "unknown key usage {:?}",
                name.chars().take(64).collect::<String>()
            )));
        }
    })
}

/// A role's `ext_key_usage` entry.
pub fn ext_key_usage(name: &str) -> ApiResult<rcgen::ExtendedKeyUsagePurpose> {
    use rcgen::ExtendedKeyUsagePurpose as Usage;
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "any" => Usage::Any,
        "serverauth" => Usage::ServerAuth,
        "clientauth" => Usage::ClientAuth,
        "codesigning" => Usage::CodeSigning,
        "emailprotection" => Usage::EmailProtection,
        "timestamping" => Usage::TimeStamping,
        "ocspsigning" => Usage::OcspSigning,
        _ => {
            return Err(ApiError::invalid(format!(
                "unknown extended key usage {:?}",
                name.chars().take(64).collect::<String>()
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(body: Value) -> Role {
        Role::parse(body.as_object().unwrap()).unwrap()
    }

    #[test]
    fn defaults_are_vaults() {
        let role = role(json!({}));
        assert!(role.allow_localhost && role.allow_ip_sans && role.enforce_hostnames);
        assert!(role.server_flag && role.client_flag && role.require_cn);
        assert!(!role.allow_any_name && !role.allow_subdomains && !role.generate_lease);
        assert_eq!((role.key_type.as_str(), role.key_bits), ("rsa", 2048));
        assert_eq!(role.not_before_duration, 30);
        assert_eq!(role.issuer_ref, "default");
        assert_eq!(
            role.key_usage,
            ["DigitalSignature", "KeyAgreement", "KeyEncipherment"]
        );
        let refused = Role::parse(
            json!({"key_type": "ec", "key_bits": 2048})
                .as_object()
                .unwrap(),
        );
        assert_eq!(
            refused.unwrap_err().messages,
            ["unsupported bit length for EC key: 2048"]
        );
        let refused = Role::parse(json!({"ttl": "2h", "max_ttl": "1h"}).as_object().unwrap());
        assert_eq!(
            refused.unwrap_err().messages,
            ["\"ttl\" value must be less than \"max_ttl\" value"]
        );
    }

    fn check(body: Value, name: &str, allowed: bool) {
        let result = role(body.clone()).check_name(name, "common name");
        assert_eq!(result.is_ok(), allowed, "{name} under {body}");
        if let Err(error) = result {
            assert_eq!(
                error.messages,
                [format!("common name {name} not allowed by this role")]
            );
        }
    }

    #[test]
    fn names_are_checked_as_vault_does() {
        let subdomains = json!({"allowed_domains": "example.com", "allow_subdomains": true});
        check(subdomains.clone(), "www.example.com", true);
        check(subdomains.clone(), "a.b.example.com", true);
        check(subdomains.clone(), "*.example.com", true);
        check(subdomains.clone(), "example.com", false);
        check(subdomains.clone(), "www.evil.com", false);
        check(subdomains.clone(), "wwwexample.com", false);
        check(subdomains.clone(), "localhost", true);
        check(
            json!({"allowed_domains": ["example.com"], "allow_bare_domains": true}),
            "example.com",
            true,
        );
        check(
            json!({"allowed_domains": "*.svc.local", "allow_glob_domains": true}),
            "db.svc.local",
            true,
        );
        check(json!({"allow_any_name": true}), "anything.test", true);
        check(json!({"allow_any_name": true}), "bad_name!", false);
        check(
            json!({"allow_any_name": true, "enforce_hostnames": false}),
            "bad_name!",
            true,
        );
        check(json!({"allow_localhost": false}), "localhost", false);
    }

    #[test]
    fn ip_sans_are_parsed_and_may_be_refused() {
        assert!(role(json!({})).check_ip("127.0.0.1").is_ok());
        assert_eq!(
            role(json!({})).check_ip("notanip").unwrap_err().messages,
            ["the value \"notanip\" is not a valid IP address"]
        );
        assert!(
            role(json!({"allow_ip_sans": false}))
                .check_ip("::1")
                .is_err()
        );
    }
}
