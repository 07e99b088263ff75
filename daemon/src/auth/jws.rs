//! JSON Web Tokens as the `jwt` and `kubernetes` methods read them: public
//! keys from PEM or a JWKS, signature checks (jsonwebtoken on aws-lc-rs, the
//! workspace's one crypto provider), Vault's claim checks and texts, glob
//! matching, and the small HTTP client that fetches a JWKS, an OIDC discovery
//! document or a TokenReview.
//!
//! A token is verified only with an asymmetric key of the family its `alg`
//! names: `none` does not parse, and HMAC is never offered (a public key is
//! not a secret).

use std::str::FromStr as _;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::error_chain;

/// The signature algorithms a token may use: Vault's list without HMAC.
pub const SUPPORTED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The most a fetched document (JWKS, discovery, TokenReview) may hold.
const MAX_BODY: usize = 1 << 20;

/// Vault's text when no key verifies a token (also for `alg: none`).
pub const NO_KEY: &str = "no known key successfully validated the token signature";

/// One public key a token may be signed with.
#[derive(Clone)]
pub struct Key {
    /// The JWK's `kid`, when it came from a JWKS.
    pub kid: Option<String>,
    /// The JWK's `alg`, when it names one: the only algorithm it verifies.
    pub algorithm: Option<Algorithm>,
    key: DecodingKey,
}

/// PEM public keys (SPKI `PUBLIC KEY`, PKCS#1 `RSA PUBLIC KEY`, or a
/// certificate, whose key is taken), one per entry.
pub fn pem_keys(entries: &[String]) -> Result<Vec<Key>, String> {
    let invalid =
        || "error parsing public key: data does not contain any valid public keys".to_owned();
    entries
        .iter()
        .map(|entry| {
            let pem = entry.as_bytes();
            let key = DecodingKey::from_rsa_pem(pem)
                .or_else(|_| DecodingKey::from_ec_pem(pem))
                .or_else(|_| DecodingKey::from_ed_pem(pem))
                .map_err(|_| invalid())?;
            Ok(Key {
                kid: None,
                algorithm: None,
                key,
            })
        })
        .collect()
}

/// The signing keys of a JWKS document. Keys for encryption, symmetric keys
/// and keys of a type this build does not know are left out; a set with no
/// usable key is an error.
pub fn jwks_keys(document: &Value) -> Result<Vec<Key>, String> {
    let entries = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWKS has no \"keys\" list")?;
    let keys: Vec<Key> = entries
        .iter()
        .filter_map(|entry| serde_json::from_value::<Jwk>(entry.clone()).ok())
        .filter(|jwk| !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .filter(|jwk| !matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)))
        .filter_map(|jwk| {
            let algorithm = match jwk.common.key_algorithm {
                Some(named) => Some(Algorithm::from_str(&named.to_string()).ok()?),
                None => None,
            };
            Some(Key {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key: DecodingKey::from_jwk(&jwk).ok()?,
            })
        })
        .collect();
    if keys.is_empty() {
        return Err("the JWKS holds no signing key coffer can use".to_owned());
    }
    Ok(keys)
}

/// Why a token's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// Not a compact JWS: its text says how.
    Malformed(String),
    /// The token names a `kid` no key has: a JWKS may have rotated.
    UnknownKid,
    /// No key verified it.
    NoKey,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureError::Malformed(text) => formatter.write_str(text),
            SignatureError::UnknownKid | SignatureError::NoKey => formatter.write_str(NO_KEY),
        }
    }
}

/// A compact JWS split in its segments, with the header's `alg` and `kid`
/// (read without verifying anything).
struct Parts<'a> {
    algorithm: Option<Algorithm>,
    kid: Option<String>,
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, SignatureError> {
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(SignatureError::Malformed(
            "compact JWS format must have three parts".to_owned(),
        ));
    };
    let bytes = decode_segment(header)
        .ok_or_else(|| SignatureError::Malformed("illegal base64 data in the header".to_owned()))?;
    let fields: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| SignatureError::Malformed("the header is not a JSON object".to_owned()))?;
    Ok(Parts {
        algorithm: fields
            .get("alg")
            .and_then(Value::as_str)
            .and_then(|name| Algorithm::from_str(name).ok()),
        kid: fields.get("kid").and_then(Value::as_str).map(str::to_owned),
        header,
        payload,
        signature,
    })
}

fn decode_segment(segment: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .ok()
}

/// The claims of `token`, verified with one of `keys` under one of
/// `allowed` (a subset of [`SUPPORTED`]). Only the signature is checked
/// here; the claims are the caller's ([`check_times`], [`audience_matches`]).
pub fn verify(
    token: &str,
    keys: &[Key],
    allowed: &[Algorithm],
) -> Result<Map<String, Value>, SignatureError> {
    let Parts {
        algorithm,
        kid,
        header,
        payload,
        signature,
    } = split(token)?;
    let Some(algorithm) = algorithm.filter(|algorithm| {
        SUPPORTED.contains(algorithm) && (allowed.is_empty() || allowed.contains(algorithm))
    }) else {
        return Err(SignatureError::NoKey);
    };
    let named = kid
        .as_deref()
        .filter(|kid| keys.iter().any(|key| key.kid.as_deref() == Some(*kid)));
    if kid.is_some() && named.is_none() && keys.iter().any(|key| key.kid.is_some()) {
        return Err(SignatureError::UnknownKid);
    }
    let message = &token.as_bytes()[..header.len() + 1 + payload.len()];
    let verified = keys
        .iter()
        .filter(|key| {
            key.key.family() == algorithm.family()
                && key.algorithm.is_none_or(|only| only == algorithm)
                && named.is_none_or(|kid| key.kid.as_deref() == Some(kid))
        })
        .any(|key| {
            jsonwebtoken::crypto::verify(signature, message, &key.key, algorithm).unwrap_or(false)
        });
    if !verified {
        return Err(SignatureError::NoKey);
    }
    decode_segment(payload)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| SignatureError::Malformed("the claims are not a JSON object".to_owned()))
}

/// The claims of `token` without checking its signature: what Kubernetes
/// auth matches its bindings against before asking the API server.
pub fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return None;
    }
    serde_json::from_slice(&decode_segment(parts[1])?).ok()
}

/// A claim by name, or by JSON pointer when the name starts with `/`
/// (Vault's syntax for nested claims).
pub fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if name.starts_with('/') {
        let mut value = claims.get(
            name.split('/')
                .nth(1)?
                .replace("~1", "/")
                .replace("~0", "~")
                .as_str(),
        )?;
        for part in name.split('/').skip(2) {
            let part = part.replace("~1", "/").replace("~0", "~");
            value = match value {
                Value::Object(map) => map.get(&part)?,
                Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(value)
    } else {
        claims.get(name).filter(|value| !value.is_null())
    }
}

/// Whether the token's `aud` (a string or a list) has one of `expected`.
pub fn audience_matches(claims: &Map<String, Value>, expected: &[String]) -> bool {
    match claims.get("aud") {
        Some(Value::String(audience)) => expected.contains(audience),
        Some(Value::Array(audiences)) => audiences
            .iter()
            .filter_map(Value::as_str)
            .any(|audience| expected.iter().any(|wanted| wanted == audience)),
        _ => false,
    }
}

/// Leeways in seconds, as a role sets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leeway {
    /// Added to every time claim: clocks differ.
    pub clock_skew: u64,
    /// Added to `exp` besides the clock skew.
    pub expiration: u64,
    /// Added to `nbf` besides the clock skew.
    pub not_before: u64,
}

impl Default for Leeway {
    fn default() -> Self {
        Leeway {
            clock_skew: 60,
            expiration: 0,
            not_before: 0,
        }
    }
}

fn seconds(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, String> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_i64()
            .or_else(|| number.as_f64().map(|float| float as i64))
            .map(Some)
            .ok_or_else(|| format!("claim {name:?} is not a number of seconds")),
        Some(_) => Err(format!("claim {name:?} is not a number of seconds")),
    }
}

/// Checks `exp`, `nbf` and `iat` (each optional) at `now`, with Vault's texts.
pub fn check_times(claims: &Map<String, Value>, now: u64, leeway: Leeway) -> Result<(), String> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let skew = i64::try_from(leeway.clock_skew).unwrap_or(i64::MAX);
    if let Some(expires) = seconds(claims, "exp")? {
        let grace = skew.saturating_add(i64::try_from(leeway.expiration).unwrap_or(0));
        if now > expires.saturating_add(grace) {
            return Err("invalid expiration time (exp) claim: token is expired".to_owned());
        }
    }
    if let Some(not_before) = seconds(claims, "nbf")? {
        let grace = skew.saturating_add(i64::try_from(leeway.not_before).unwrap_or(0));
        if now.saturating_add(grace) < not_before {
            return Err("invalid not before (nbf) claim: token not yet valid".to_owned());
        }
    }
    if let Some(issued) = seconds(claims, "iat")?
        && now.saturating_add(skew) < issued
    {
        return Err("invalid issued at (iat) claim: token issued in the future".to_owned());
    }
    Ok(())
}

/// Vault's glob: `*` matches any run of characters, nothing else is special.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// `mutex`'s guard; a panic elsewhere while it was held leaves data that is
/// still whole (caches of parsed keys and clients).
pub fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An HTTP client for a URL an operator configured: `ca_pem`, when given,
/// is the only trust anchor (else the system's roots); short timeouts, a
/// few redirects.
pub fn http_client(ca_pem: Option<&str>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(3))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    if let Some(pem) = ca_pem.filter(|pem| !pem.trim().is_empty()) {
        let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .ok()
            .filter(|certificates| !certificates.is_empty())
            .ok_or("the CA PEM holds no certificate")?;
        builder = builder.tls_certs_only(certificates);
    }
    builder
        .build()
        .map_err(|error| error_chain::describe(&error))
}

/// The status and JSON body of an answer, read up to [`MAX_BODY`] bytes.
pub async fn read_json(mut response: reqwest::Response) -> Result<(u16, Value), String> {
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| error_chain::describe(&error))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("the answer is larger than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let document = serde_json::from_slice(&body)
        .map_err(|_| format!("status {status}: the answer is not JSON"))?;
    Ok((status, document))
}

/// GETs `url` and reads a JSON document (any 2xx).
pub async fn get_json(client: &reqwest::Client, url: &str) -> Result<Value, String> {
    let response = client
        .get(url)
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|error| error_chain::describe(&error))?;
    let (status, document) = read_json(response).await?;
    if !(200..300).contains(&status) {
        return Err(format!("{url} answered status {status}"));
    }
    Ok(document)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_vault() {
        let check = |pattern: &str, text: &str, expected: bool| {
            assert_eq!(glob(pattern, text), expected, "{pattern} ~ {text}");
        };
        check("refs/heads/main", "refs/heads/main", true);
        check("refs/heads/main", "refs/heads/mainx", false);
        check("refs/tags/*", "refs/tags/v1", true);
        check("refs/tags/*", "refs/heads/v1", false);
        check("*", "", true);
        check("a*b*c", "aXXbYYc", true);
        check("a*b*c", "aXXcYYb", false);
        check("*-prod", "eu-prod", true);
        check("ab*ba", "aba", false);
    }

    #[test]
    fn times_have_a_leeway() {
        let claims = |value: Value| value.as_object().cloned().unwrap_or_default();
        let now = 1_000_000;
        let leeway = Leeway::default();
        assert!(check_times(&claims(serde_json::json!({"exp": now - 30})), now, leeway).is_ok());
        let expired = check_times(&claims(serde_json::json!({"exp": now - 100})), now, leeway);
        assert_eq!(
            expired.unwrap_err(),
            "invalid expiration time (exp) claim: token is expired"
        );
        assert!(check_times(&claims(serde_json::json!({"nbf": now + 30})), now, leeway).is_ok());
        assert!(check_times(&claims(serde_json::json!({"nbf": now + 100})), now, leeway).is_err());
        assert!(check_times(&claims(serde_json::json!({"iat": now + 100})), now, leeway).is_err());
        assert!(check_times(&claims(serde_json::json!({"exp": "soon"})), now, leeway).is_err());
        assert!(check_times(&claims(serde_json::json!({})), now, leeway).is_ok());
    }

    #[test]
    fn claims_by_name_and_pointer() {
        let claims = serde_json::json!({"a": {"b/c": [1, "x"]}, "n": null})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(claim(&claims, "/a/b~1c/1"), Some(&Value::from("x")));
        assert_eq!(claim(&claims, "/a/zz"), None);
        assert_eq!(claim(&claims, "n"), None);
        assert!(claim(&claims, "a").is_some());
    }

    #[test]
    fn malformed_tokens_are_refused_without_keys() {
        assert!(matches!(
            verify("abc", &[], &[]),
            Err(SignatureError::Malformed(_))
        ));
        // alg none: never a key for it.
        let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
        assert_eq!(verify(none, &[], &[]), Err(SignatureError::NoKey));
        assert!(unverified_claims(none).is_some_and(|claims| claims["sub"] == "x"));
        assert!(pem_keys(&["garbage".to_owned()]).is_err());
    }
}
