//! `jwt`: CI jobs and workloads that hold a JWT from an issuer the operator
//! trusts (GitHub Actions, GitLab, any OIDC provider). The keys come from
//! exactly one of PEM public keys, a JWKS URL or an OIDC discovery URL; a
//! role binds audiences, subject and claims (exact or glob) and maps claims
//! into the token's metadata. Errors are 400 with Vault's texts.
//!
//! Remote keys are fetched when the config is written (a bad URL is refused
//! there), kept per node, and fetched again when a token names a `kid` the
//! node does not know (at most once per [`REFETCH_EVERY`]: unauthenticated
//! callers cannot make the node hammer the issuer) or when they are older
//! than [`KEYS_MAX_AGE`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coffer_protocols::Operation;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::jws::{self, Key, Leeway, SignatureError};
use super::token_fields::TokenFields;
use super::{AuthMethod, BoxFuture, Environment, Login, LoginRequest, Mount, data_prefix};
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::barrier::Barrier;

const CONFIG: &str = "config";
const ROLES: &str = "role/";

/// The least time between two fetches of a JWKS for unknown `kid`s.
const REFETCH_EVERY: Duration = Duration::from_secs(5);
/// Keys older than this are fetched again at the next login.
const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);

pub struct JwtMethod {
    barrier: Arc<Barrier>,
    /// Each mount's keys, by its data prefix.
    keys: Mutex<HashMap<String, Arc<KeySource>>>,
    /// Configs and roles kept parsed (public keys and bindings: nothing
    /// secret), by storage key.
    configs: crate::cache::Parsed<Config>,
    roles: crate::cache::Parsed<Role>,
}

/// The registry's factory.
pub fn method(environment: &Environment) -> Arc<dyn AuthMethod> {
    Arc::new(JwtMethod {
        barrier: environment.barrier.clone(),
        keys: Mutex::new(HashMap::new()),
        configs: crate::cache::Parsed::default(),
        roles: crate::cache::Parsed::default(),
    })
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Config {
    jwt_validation_pubkeys: Vec<String>,
    jwks_url: String,
    jwks_ca_pem: String,
    oidc_discovery_url: String,
    oidc_discovery_ca_pem: String,
    bound_issuer: String,
    jwt_supported_algs: Vec<String>,
    default_role: String,
}

impl Config {
    fn algorithms(&self) -> Vec<Algorithm> {
        self.jwt_supported_algs
            .iter()
            .filter_map(|name| name.parse().ok())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Role {
    role_type: String,
    user_claim: String,
    user_claim_json_pointer: bool,
    bound_audiences: Vec<String>,
    bound_subject: String,
    /// Claim name (or JSON pointer) -> a string or a list of strings.
    bound_claims: Map<String, Value>,
    /// `string` or `glob`.
    bound_claims_type: String,
    /// Claim -> metadata key.
    claim_mappings: BTreeMap<String, String>,
    groups_claim: String,
    /// Seconds; 0 takes the default, -1 none.
    clock_skew_leeway: i64,
    expiration_leeway: i64,
    not_before_leeway: i64,
    token: TokenFields,
}

impl Default for Role {
    fn default() -> Self {
        Role {
            role_type: "oidc".to_owned(),
            user_claim: String::new(),
            user_claim_json_pointer: false,
            bound_audiences: Vec::new(),
            bound_subject: String::new(),
            bound_claims: Map::new(),
            bound_claims_type: "string".to_owned(),
            claim_mappings: BTreeMap::new(),
            groups_claim: String::new(),
            clock_skew_leeway: 0,
            expiration_leeway: 0,
            not_before_leeway: 0,
            token: TokenFields::default(),
        }
    }
}

impl Role {
    fn leeway(&self) -> Leeway {
        let pick = |value: i64, default: u64| match value {
            0 => default,
            value if value < 0 => 0,
            value => value.unsigned_abs(),
        };
        Leeway {
            clock_skew: pick(self.clock_skew_leeway, Leeway::default().clock_skew),
            expiration: pick(self.expiration_leeway, 0),
            not_before: pick(self.not_before_leeway, 0),
        }
    }
}

/// Where a mount's keys come from, parsed.
struct KeySource {
    /// The config they were made from: a change is seen by comparing.
    config: Config,
    kind: SourceKind,
}

enum SourceKind {
    Fixed(Vec<Key>),
    Remote(Remote),
}

/// A JWKS this node fetches.
struct Remote {
    url: String,
    client: reqwest::Client,
    /// The keys and when they were fetched.
    keys: Mutex<(Arc<Vec<Key>>, Instant)>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

impl Remote {
    fn current(&self) -> (Arc<Vec<Key>>, Instant) {
        let guard = jws::lock(&self.keys);
        (guard.0.clone(), guard.1)
    }

    /// Fetches the keys again unless another fetch finished after `seen`
    /// or one ran less than [`REFETCH_EVERY`] ago.
    async fn refresh(&self, seen: Instant) -> Arc<Vec<Key>> {
        let _one = self.fetching.lock().await;
        let (keys, fetched) = self.current();
        if fetched > seen || fetched.elapsed() < REFETCH_EVERY {
            return keys;
        }
        match fetch_jwks(&self.client, &self.url).await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *jws::lock(&self.keys) = (fresh.clone(), Instant::now());
                fresh
            }
            Err(error) => {
                tracing::warn!(url = %self.url, %error, "jwt: fetching the JWKS failed; keeping the keys it had");
                // Wait the full interval before trying again.
                jws::lock(&self.keys).1 = Instant::now();
                keys
            }
        }
    }
}

async fn fetch_jwks(client: &reqwest::Client, url: &str) -> Result<Vec<Key>, String> {
    jws::jwks_keys(&jws::get_json(client, url).await?)
}

/// The JWKS URL an OIDC discovery document at `issuer` names.
async fn discover(client: &reqwest::Client, issuer: &str) -> Result<String, String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let document = jws::get_json(client, &url).await?;
    let announced = document["issuer"].as_str().unwrap_or_default();
    if announced.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(format!(
            "issuer did not match the issuer returned by provider, expected {issuer:?} got {announced:?}"
        ));
    }
    document["jwks_uri"]
        .as_str()
        .filter(|uri| !uri.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| "the discovery document has no jwks_uri".to_owned())
}

/// Parses or fetches the keys `config` names; errors are the config write's.
async fn load(config: &Config) -> Result<KeySource, String> {
    let kind = if !config.jwt_validation_pubkeys.is_empty() {
        SourceKind::Fixed(jws::pem_keys(&config.jwt_validation_pubkeys)?)
    } else if !config.jwks_url.is_empty() {
        let client = jws::http_client(Some(&config.jwks_ca_pem))
            .map_err(|error| format!("error checking jwks_ca_pem: {error}"))?;
        let keys = fetch_jwks(&client, &config.jwks_url).await.map_err(|error| {
            tracing::info!(url = %config.jwks_url, %error, "jwt: the JWKS could not be fetched");
            "error checking jwks URL".to_owned()
        })?;
        SourceKind::Remote(Remote {
            url: config.jwks_url.clone(),
            client,
            keys: Mutex::new((Arc::new(keys), Instant::now())),
            fetching: tokio::sync::Mutex::new(()),
        })
    } else {
        let client = jws::http_client(Some(&config.oidc_discovery_ca_pem))
            .map_err(|error| format!("error checking oidc_discovery_ca_pem: {error}"))?;
        let checking = |error: String| format!("error checking oidc discovery URL: {error}");
        let url = discover(&client, &config.oidc_discovery_url)
            .await
            .map_err(checking)?;
        let keys = fetch_jwks(&client, &url).await.map_err(checking)?;
        SourceKind::Remote(Remote {
            url,
            client,
            keys: Mutex::new((Arc::new(keys), Instant::now())),
            fetching: tokio::sync::Mutex::new(()),
        })
    };
    Ok(KeySource {
        config: config.clone(),
        kind,
    })
}

fn valid_name(name: &str) -> ApiResult<()> {
    if crate::policy::is_name(name, "-_.@") {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "invalid role name {:?}",
            name.chars().take(64).collect::<String>()
        )))
    }
}

/// A claim's value as metadata or a user name: strings, numbers and booleans.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// Whether the token's claims meet the role's `bound_claims`.
fn check_bound_claims(role: &Role, claims: &Map<String, Value>) -> Result<(), String> {
    let globbing = role.bound_claims_type == "glob";
    for (name, expected) in &role.bound_claims {
        let actual =
            jws::claim(claims, name).ok_or_else(|| format!("claim {name:?} is missing"))?;
        let actual: Vec<&Value> = match actual {
            Value::Array(items) => items.iter().collect(),
            value => vec![value],
        };
        let expected: Vec<&Value> = match expected {
            Value::Array(items) => items.iter().collect(),
            value => vec![value],
        };
        let matched = expected.iter().any(|wanted| {
            actual.iter().any(|value| match (wanted, value) {
                (Value::String(pattern), Value::String(text)) if globbing => {
                    jws::glob(pattern, text)
                }
                (wanted, value) => wanted == value,
            })
        });
        if !matched {
            return Err(format!(
                "claim {name:?} does not match any associated bound claim values"
            ));
        }
    }
    Ok(())
}

impl JwtMethod {
    fn config(&self, mount: &Mount<'_>) -> ApiResult<Option<Arc<Config>>> {
        let key = format!("{}{CONFIG}", data_prefix(mount));
        Ok(self
            .configs
            .get_or_load(&key, || self.barrier.get_json(&key))?)
    }

    fn role(&self, mount: &Mount<'_>, name: &str) -> ApiResult<Option<Arc<Role>>> {
        valid_name(name)?;
        let key = format!("{}{ROLES}{name}", data_prefix(mount));
        Ok(self
            .roles
            .get_or_load(&key, || self.barrier.get_json(&key))?)
    }

    /// This node's keys for `config`, loaded when the config changed.
    async fn source(&self, mount: &Mount<'_>, config: &Config) -> ApiResult<Arc<KeySource>> {
        let prefix = data_prefix(mount);
        if let Some(source) = jws::lock(&self.keys).get(&prefix)
            && source.config == *config
        {
            return Ok(source.clone());
        }
        let source = Arc::new(load(config).await.map_err(|error| {
            tracing::warn!(mount = %mount.entry.path, %error, "jwt: the configured keys are unusable");
            ApiError::invalid(format!("error validating token: {error}"))
        })?);
        jws::lock(&self.keys).insert(prefix, source.clone());
        Ok(source)
    }

    async fn write_config(&self, mount: &Mount<'_>, data: &Map<String, Value>) -> ApiResult<Reply> {
        let fields = Fields::new(data);
        let text = |key: &str| -> ApiResult<String> { Ok(fields.string(key)?.unwrap_or_default()) };
        let config = Config {
            jwt_validation_pubkeys: fields
                .string_list("jwt_validation_pubkeys")?
                .unwrap_or_default(),
            jwks_url: text("jwks_url")?,
            jwks_ca_pem: text("jwks_ca_pem")?,
            oidc_discovery_url: text("oidc_discovery_url")?,
            oidc_discovery_ca_pem: text("oidc_discovery_ca_pem")?,
            bound_issuer: text("bound_issuer")?,
            jwt_supported_algs: fields
                .string_list("jwt_supported_algs")?
                .unwrap_or_default(),
            default_role: text("default_role")?,
        };
        let sources = [
            !config.jwt_validation_pubkeys.is_empty(),
            !config.jwks_url.is_empty(),
            !config.oidc_discovery_url.is_empty(),
        ];
        if sources.iter().filter(|set| **set).count() != 1 {
            return Err(ApiError::invalid(
                "exactly one of 'jwt_validation_pubkeys', 'jwks_url' or 'oidc_discovery_url' must be set",
            ));
        }
        for name in &config.jwt_supported_algs {
            let supported = name
                .parse::<Algorithm>()
                .is_ok_and(|algorithm| jws::SUPPORTED.contains(&algorithm));
            if !supported {
                return Err(ApiError::invalid(format!(
                    "invalid jwt_supported_algs: unsupported signing algorithm {:?}",
                    name.chars().take(32).collect::<String>()
                )));
            }
        }
        let source = load(&config).await.map_err(ApiError::invalid)?;
        self.barrier
            .put_json(&format!("{}{CONFIG}", data_prefix(mount)), &config)
            .await?;
        jws::lock(&self.keys).insert(data_prefix(mount), Arc::new(source));
        Ok(Reply::NoContent)
    }

    fn read_config(&self, mount: &Mount<'_>) -> ApiResult<Reply> {
        let config = self.config(mount)?.ok_or_else(ApiError::not_found)?;
        Ok(Reply::data(json!({
            "jwt_validation_pubkeys": config.jwt_validation_pubkeys,
            "jwks_url": config.jwks_url,
            "jwks_ca_pem": config.jwks_ca_pem,
            "oidc_discovery_url": config.oidc_discovery_url,
            "oidc_discovery_ca_pem": config.oidc_discovery_ca_pem,
            "bound_issuer": config.bound_issuer,
            "jwt_supported_algs": config.jwt_supported_algs,
            "default_role": config.default_role,
            "status": "valid",
        })))
    }

    async fn write_role(
        &self,
        mount: &Mount<'_>,
        name: &str,
        data: &Map<String, Value>,
    ) -> ApiResult<Reply> {
        let fields = Fields::new(data);
        let mut role = self
            .role(mount, name)?
            .map(|role| role.as_ref().clone())
            .unwrap_or_default();
        if let Some(kind) = fields.string("role_type")? {
            role.role_type = kind;
        }
        let redirects = fields
            .string_list("allowed_redirect_uris")?
            .unwrap_or_default();
        match role.role_type.as_str() {
            "jwt" => {}
            "oidc" if redirects.is_empty() => {
                return Err(ApiError::invalid(
                    "'allowed_redirect_uris' must be set if 'role_type' is 'oidc' or unspecified.",
                ));
            }
            "oidc" => {
                return Err(ApiError::invalid(
                    "coffer serves role_type \"jwt\" only: the OIDC browser login is not built",
                ));
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "invalid 'role_type': {}",
                    other.chars().take(32).collect::<String>()
                )));
            }
        }
        if let Some(claim) = fields.string("user_claim")? {
            role.user_claim = claim;
        }
        if let Some(flag) = fields.bool("user_claim_json_pointer")? {
            role.user_claim_json_pointer = flag;
        }
        if let Some(audiences) = fields.string_list("bound_audiences")? {
            role.bound_audiences = audiences;
        }
        if let Some(subject) = fields.string("bound_subject")? {
            role.bound_subject = subject;
        }
        if let Some(bound) = fields.object("bound_claims")? {
            for (claim, value) in bound {
                let valid = match value {
                    Value::String(_) => true,
                    Value::Array(items) => items.iter().all(Value::is_string),
                    _ => false,
                };
                if !valid {
                    return Err(ApiError::invalid(format!(
                        "bound claim {:?} must be a string or a list of strings",
                        claim.chars().take(64).collect::<String>()
                    )));
                }
            }
            role.bound_claims = bound.clone();
        }
        if let Some(kind) = fields
            .string("bound_claims_type")?
            .filter(|kind| !kind.is_empty())
        {
            if kind != "string" && kind != "glob" {
                return Err(ApiError::invalid(format!(
                    "invalid 'bound_claims_type': {}",
                    kind.chars().take(32).collect::<String>()
                )));
            }
            role.bound_claims_type = kind;
        }
        if let Some(mappings) = fields.string_map("claim_mappings")? {
            let mut targets = std::collections::BTreeSet::new();
            for target in mappings.values() {
                if target == "role" {
                    return Err(ApiError::invalid(
                        "metadata key \"role\" is reserved and may not be a mapping destination",
                    ));
                }
                if !targets.insert(target) {
                    return Err(ApiError::invalid(format!(
                        "multiple keys are mapped to metadata key {target:?}"
                    )));
                }
            }
            role.claim_mappings = mappings;
        }
        if let Some(claim) = fields.string("groups_claim")? {
            role.groups_claim = claim;
        }
        for (key, slot) in [
            ("clock_skew_leeway", &mut role.clock_skew_leeway),
            ("expiration_leeway", &mut role.expiration_leeway),
            ("not_before_leeway", &mut role.not_before_leeway),
        ] {
            match fields.raw(key) {
                None => {}
                Some(Value::Number(number)) if number.as_i64().is_some_and(|n| n >= -1) => {
                    *slot = number.as_i64().unwrap_or(0);
                }
                Some(_) => {
                    *slot = fields
                        .duration(key)?
                        .map_or(0, |seconds| i64::try_from(seconds).unwrap_or(i64::MAX))
                }
            }
        }
        role.token.update(&fields)?;
        if role.user_claim.is_empty() {
            return Err(ApiError::invalid(
                "a user claim must be defined on the role",
            ));
        }
        if role.bound_audiences.is_empty()
            && role.bound_subject.is_empty()
            && role.bound_claims.is_empty()
            && role.token.bound_cidrs.is_empty()
        {
            return Err(ApiError::invalid(
                "must have at least one bound constraint when creating/updating a role",
            ));
        }
        self.barrier
            .put_json(&format!("{}{ROLES}{name}", data_prefix(mount)), &role)
            .await?;
        Ok(Reply::NoContent)
    }

    fn describe(role: &Role) -> Value {
        let mut data = Map::new();
        role.token.describe(&mut data);
        for (key, value) in [
            ("role_type", json!(role.role_type)),
            ("user_claim", json!(role.user_claim)),
            (
                "user_claim_json_pointer",
                json!(role.user_claim_json_pointer),
            ),
            ("bound_audiences", json!(role.bound_audiences)),
            ("bound_subject", json!(role.bound_subject)),
            ("bound_claims", Value::Object(role.bound_claims.clone())),
            ("bound_claims_type", json!(role.bound_claims_type)),
            ("claim_mappings", json!(role.claim_mappings)),
            ("groups_claim", json!(role.groups_claim)),
            ("clock_skew_leeway", json!(role.clock_skew_leeway)),
            ("expiration_leeway", json!(role.expiration_leeway)),
            ("not_before_leeway", json!(role.not_before_leeway)),
            ("allowed_redirect_uris", Value::Null),
        ] {
            data.insert(key.to_owned(), value);
        }
        Value::Object(data)
    }

    /// Verifies the token's signature with the mount's keys, fetching a
    /// JWKS again for a `kid` it does not know.
    async fn verify(
        &self,
        mount: &Mount<'_>,
        config: &Config,
        token: &str,
    ) -> ApiResult<Map<String, Value>> {
        let source = self.source(mount, config).await?;
        let algorithms = config.algorithms();
        let result = match &source.kind {
            SourceKind::Fixed(keys) => jws::verify(token, keys, &algorithms),
            SourceKind::Remote(remote) => {
                let (mut keys, fetched) = remote.current();
                if fetched.elapsed() > KEYS_MAX_AGE {
                    keys = remote.refresh(fetched).await;
                }
                match jws::verify(token, &keys, &algorithms) {
                    Err(SignatureError::UnknownKid) => {
                        let keys = remote.refresh(fetched).await;
                        jws::verify(token, &keys, &algorithms)
                    }
                    other => other,
                }
            }
        };
        result.map_err(|error| {
            ApiError::invalid(format!(
                "error validating token: error verifying token signature: {error}"
            ))
        })
    }

    async fn login_checked(&self, request: &LoginRequest<'_>) -> ApiResult<Login> {
        let fields = Fields::new(request.data);
        let config = self
            .config(request.mount)?
            .ok_or_else(|| ApiError::invalid("could not load configuration"))?;
        let role_name = fields
            .string("role")?
            .filter(|name| !name.is_empty())
            .or_else(|| Some(config.default_role.clone()).filter(|name| !name.is_empty()))
            .ok_or_else(|| ApiError::invalid("missing role"))?;
        let not_found = || {
            ApiError::invalid(format!(
                "role {:?} could not be found",
                role_name.chars().take(64).collect::<String>()
            ))
        };
        let role = match valid_name(&role_name) {
            Ok(()) => self
                .role(request.mount, &role_name)?
                .ok_or_else(not_found)?,
            Err(_) => return Err(not_found()),
        };
        if role.role_type != "jwt" {
            return Err(ApiError::invalid("role with oidc role_type is not allowed"));
        }
        let token = fields
            .string("jwt")?
            .filter(|token| !token.is_empty())
            .ok_or_else(|| ApiError::invalid("missing token"))?;
        if !role.token.bound_cidrs.is_empty() {
            let address = request.remote_address.and_then(super::token_fields::ip_of);
            let allowed = address.is_some_and(|ip| {
                role.token
                    .bound_cidrs
                    .iter()
                    .any(|block| super::token_fields::cidr_contains(block, ip))
            });
            if !allowed {
                return Err(ApiError::denied());
            }
        }
        let claims = self.verify(request.mount, &config, &token).await?;
        let invalid = |text: &str| ApiError::invalid(format!("error validating token: {text}"));
        for name in ["iss", "sub"] {
            if claims
                .get(name)
                .is_some_and(|value| !value.is_string() && !value.is_null())
            {
                return Err(invalid(&format!("claim {name:?} is not a string")));
            }
        }
        if !config.bound_issuer.is_empty()
            && claims.get("iss").and_then(Value::as_str) != Some(config.bound_issuer.as_str())
        {
            return Err(invalid("invalid issuer (iss) claim"));
        }
        if !role.bound_subject.is_empty()
            && claims.get("sub").and_then(Value::as_str) != Some(role.bound_subject.as_str())
        {
            return Err(invalid("invalid subject (sub) claim"));
        }
        if !role.bound_audiences.is_empty()
            && !jws::audience_matches(&claims, &role.bound_audiences)
        {
            return Err(invalid(
                "invalid audience (aud) claim: audience claim does not match any expected audience",
            ));
        }
        jws::check_times(&claims, crate::clock::now_seconds(), role.leeway())
            .map_err(|text| invalid(&text))?;
        check_bound_claims(&role, &claims)
            .map_err(|text| ApiError::invalid(format!("error validating claims: {text}")))?;
        let user_claim = if role.user_claim_json_pointer && !role.user_claim.starts_with('/') {
            format!("/{}", role.user_claim)
        } else {
            role.user_claim.clone()
        };
        let user = jws::claim(&claims, &user_claim)
            .and_then(as_text)
            .filter(|user| !user.is_empty())
            .ok_or_else(|| {
                ApiError::invalid(format!("claim {:?} not found in token", role.user_claim))
            })?;
        if !role.groups_claim.is_empty() {
            match jws::claim(&claims, &role.groups_claim) {
                None => {
                    return Err(ApiError::invalid(format!(
                        "failed to fetch groups: {:?} claim not found in token",
                        role.groups_claim
                    )));
                }
                Some(Value::String(_)) => {}
                Some(Value::Array(items)) => {
                    if let Some(bad) = items.iter().find(|item| !item.is_string()) {
                        return Err(ApiError::invalid(format!(
                            "value {bad} in groups claim could not be parsed as string"
                        )));
                    }
                }
                Some(other) => {
                    return Err(ApiError::invalid(format!(
                        "value {other} in groups claim could not be parsed as string"
                    )));
                }
            }
        }
        let mut metadata = BTreeMap::new();
        for (claim, target) in &role.claim_mappings {
            if let Some(value) = jws::claim(&claims, claim) {
                let text = as_text(value).ok_or_else(|| {
                    ApiError::invalid(format!("error converting claim '{claim}' to string"))
                })?;
                metadata.insert(target.clone(), text);
            }
        }
        metadata.insert("role".to_owned(), role_name);
        let mut login = role.token.login(user);
        login.metadata = metadata;
        Ok(login)
    }
}

impl AuthMethod for JwtMethod {
    fn type_name(&self) -> &'static str {
        "jwt"
    }

    fn observe(&self, key: &str) {
        self.configs.forget(key);
        self.roles.forget(key);
    }

    fn forget_all(&self) {
        self.configs.clear();
        self.roles.clear();
        jws::lock(&self.keys).clear();
    }

    fn description(&self) -> &'static str {
        "CI jobs and workloads, by a JWT from a trusted issuer"
    }

    fn is_login(&self, path: &str) -> bool {
        path == "login"
    }

    fn login<'a>(&'a self, request: &'a LoginRequest<'a>) -> BoxFuture<'a, ApiResult<Login>> {
        Box::pin(self.login_checked(request))
    }

    fn exists(&self, mount: &Mount<'_>, path: &str) -> ApiResult<bool> {
        match path.strip_prefix("role/") {
            Some(name) if !name.contains('/') => Ok(self.role(mount, name)?.is_some()),
            _ if path == CONFIG => Ok(self.config(mount)?.is_some()),
            _ => Ok(true),
        }
    }

    fn handle<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        operation: Operation,
        path: &'a str,
        data: &'a Map<String, Value>,
    ) -> BoxFuture<'a, ApiResult<Reply>> {
        Box::pin(async move {
            let unsupported = || ApiError::unsupported(path, operation.as_str());
            let path = path.trim_end_matches('/');
            if path == CONFIG {
                return match operation {
                    Operation::Read => self.read_config(mount),
                    Operation::Write => self.write_config(mount, data).await,
                    _ => Err(unsupported()),
                };
            }
            if path == "role" {
                return match operation {
                    Operation::List => {
                        let prefix = format!("{}{ROLES}", data_prefix(mount));
                        Ok(Reply::List(self.barrier.list(&prefix)?))
                    }
                    _ => Err(unsupported()),
                };
            }
            let Some(name) = path
                .strip_prefix("role/")
                .filter(|name| !name.contains('/'))
            else {
                return Err(ApiError::no_route(path));
            };
            match operation {
                Operation::Read => {
                    let role = self.role(mount, name)?.ok_or_else(ApiError::not_found)?;
                    Ok(Reply::data(Self::describe(&role)))
                }
                Operation::Write => self.write_role(mount, name, data).await,
                Operation::Delete => {
                    valid_name(name)?;
                    self.barrier
                        .delete(&format!("{}{ROLES}{name}", data_prefix(mount)))
                        .await?;
                    Ok(Reply::NoContent)
                }
                _ => Err(unsupported()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn bound_claims_match_strings_globs_and_lists() {
        let mut role = Role {
            bound_claims: claims(json!({
                "repository": "acme/app",
                "ref": ["refs/heads/main", "refs/tags/*"],
            })),
            ..Role::default()
        };
        let token = |reference: &str| claims(json!({"repository": "acme/app", "ref": reference}));
        // Exact: the glob is a literal.
        assert!(check_bound_claims(&role, &token("refs/heads/main")).is_ok());
        assert!(check_bound_claims(&role, &token("refs/tags/v1")).is_err());
        role.bound_claims_type = "glob".to_owned();
        assert!(check_bound_claims(&role, &token("refs/tags/v1")).is_ok());
        assert_eq!(
            check_bound_claims(&role, &token("refs/heads/dev")).unwrap_err(),
            "claim \"ref\" does not match any associated bound claim values"
        );
        assert_eq!(
            check_bound_claims(&role, &claims(json!({"ref": "refs/heads/main"}))).unwrap_err(),
            "claim \"repository\" is missing"
        );
        // A list claim matches when any element does.
        let listed = claims(json!({"repository": ["x", "acme/app"], "ref": "refs/heads/main"}));
        assert!(check_bound_claims(&role, &listed).is_ok());
    }

    #[test]
    fn leeways_default_and_disable() {
        let mut role = Role::default();
        assert_eq!(role.leeway(), Leeway::default());
        role.clock_skew_leeway = -1;
        role.expiration_leeway = 30;
        assert_eq!(
            role.leeway(),
            Leeway {
                clock_skew: 0,
                expiration: 30,
                not_before: 0
            }
        );
    }
}
