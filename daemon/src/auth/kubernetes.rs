//! `kubernetes`: pods log in with their service account's JWT. The role's
//! audience and namespace/name bindings are matched against the token's
//! claims, unverified, before anything else (a bad binding costs no network
//! call); then the cluster's API server reviews the token (TokenReview,
//! `authentication.k8s.io/v1`, over TLS checked against the configured CA
//! only) and must say it is that service account. With `pem_keys` the
//! signature is also checked here; with `pem_keys` and no `kubernetes_host`
//! no API call is made at all (for clusters that let no reviewer in), and
//! the token's own `exp` and issuer are what is checked.
//!
//! Every failure after the bindings is a 403 `permission denied`; the reason
//! goes to the log, never the token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use coffer_protocols::{ErrorCode, Operation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::jws::{self, Key};
use super::token_fields::TokenFields;
use super::{AuthMethod, BoxFuture, Environment, Login, LoginRequest, Mount, data_prefix};
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::barrier::Barrier;

const CONFIG: &str = "config";
const ROLES: &str = "role/";

/// Where a pod finds its cluster's CA and its own token.
const LOCAL_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
const LOCAL_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The issuer of legacy (secret-based) service-account tokens.
const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

pub struct KubernetesMethod {
    barrier: Arc<Barrier>,
    /// Each mount's parsed config (client, keys), by its data prefix.
    clusters: Mutex<HashMap<String, Arc<Cluster>>>,
}

/// The registry's factory.
pub fn method(environment: &Environment) -> Arc<dyn AuthMethod> {
    Arc::new(KubernetesMethod {
        barrier: environment.barrier.clone(),
        clusters: Mutex::new(HashMap::new()),
    })
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Config {
    kubernetes_host: String,
    kubernetes_ca_cert: String,
    /// Sent as the reviewer's bearer token; never read back.
    token_reviewer_jwt: String,
    disable_local_ca_jwt: bool,
    pem_keys: Vec<String>,
    issuer: String,
    disable_iss_validation: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kubernetes_host: String::new(),
            kubernetes_ca_cert: String::new(),
            token_reviewer_jwt: String::new(),
            disable_local_ca_jwt: false,
            pem_keys: Vec::new(),
            issuer: String::new(),
            disable_iss_validation: true,
        }
    }
}

/// A config made ready to use.
struct Cluster {
    config: Config,
    client: Option<reqwest::Client>,
    keys: Vec<Key>,
}

impl Cluster {
    fn new(config: &Config) -> Result<Cluster, String> {
        let client = if config.kubernetes_host.is_empty() {
            None
        } else {
            Some(
                jws::http_client(Some(&config.kubernetes_ca_cert))
                    .map_err(|error| format!("kubernetes_ca_cert: {error}"))?,
            )
        };
        let keys = if config.pem_keys.is_empty() {
            Vec::new()
        } else {
            jws::pem_keys(&config.pem_keys)?
        };
        Ok(Cluster {
            config: config.clone(),
            client,
            keys,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Role {
    bound_service_account_names: Vec<String>,
    bound_service_account_namespaces: Vec<String>,
    audience: String,
    alias_name_source: String,
    token: TokenFields,
}

impl Default for Role {
    fn default() -> Self {
        Role {
            bound_service_account_names: Vec::new(),
            bound_service_account_namespaces: Vec::new(),
            audience: String::new(),
            alias_name_source: "serviceaccount_uid".to_owned(),
            token: TokenFields::default(),
        }
    }
}

/// The service account a token says it is, from projected or legacy claims.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServiceAccount {
    namespace: String,
    name: String,
    uid: String,
    /// The secret of a legacy token; empty for projected ones.
    secret_name: String,
}

impl ServiceAccount {
    fn from_claims(claims: &Map<String, Value>) -> Option<ServiceAccount> {
        let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
        if let Some(projected) = claims.get("kubernetes.io").and_then(Value::as_object) {
            let account = projected.get("serviceaccount")?;
            return Some(ServiceAccount {
                namespace: text(projected.get("namespace"))?,
                name: text(account.get("name"))?,
                uid: text(account.get("uid")).unwrap_or_default(),
                secret_name: String::new(),
            });
        }
        let legacy =
            |suffix: &str| text(claims.get(&format!("kubernetes.io/serviceaccount/{suffix}")));
        Some(ServiceAccount {
            namespace: legacy("namespace")?,
            name: legacy("service-account.name")?,
            uid: legacy("service-account.uid").unwrap_or_default(),
            secret_name: legacy("secret.name").unwrap_or_default(),
        })
    }

    fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

/// Whether `value` is one of `bound` (`*` or a glob in the list matches).
fn bound(bound: &[String], value: &str) -> bool {
    bound.iter().any(|pattern| jws::glob(pattern, value))
}

fn valid_name(name: &str) -> bool {
    crate::policy::is_name(name, "-_.@")
}

impl KubernetesMethod {
    fn config(&self, mount: &Mount<'_>) -> ApiResult<Option<Config>> {
        Ok(self
            .barrier
            .get_json(&format!("{}{CONFIG}", data_prefix(mount)))?)
    }

    fn role(&self, mount: &Mount<'_>, name: &str) -> ApiResult<Option<Role>> {
        if !valid_name(name) {
            return Err(ApiError::invalid(format!(
                "invalid role name {:?}",
                name.chars().take(64).collect::<String>()
            )));
        }
        Ok(self
            .barrier
            .get_json(&format!("{}{ROLES}{name}", data_prefix(mount)))?)
    }

    /// This node's ready form of `config`, made again when it changed.
    fn cluster(&self, mount: &Mount<'_>, config: &Config) -> ApiResult<Arc<Cluster>> {
        let prefix = data_prefix(mount);
        if let Some(cluster) = jws::lock(&self.clusters).get(&prefix)
            && cluster.config == *config
        {
            return Ok(cluster.clone());
        }
        let cluster = Arc::new(Cluster::new(config).map_err(|error| {
            tracing::warn!(mount = %mount.entry.path, %error, "kubernetes: the stored config is unusable");
            ApiError::denied()
        })?);
        jws::lock(&self.clusters).insert(prefix, cluster.clone());
        Ok(cluster)
    }

    async fn write_config(&self, mount: &Mount<'_>, data: &Map<String, Value>) -> ApiResult<Reply> {
        let fields = Fields::new(data);
        let text = |key: &str| -> ApiResult<String> { Ok(fields.string(key)?.unwrap_or_default()) };
        let mut config = Config {
            kubernetes_host: text("kubernetes_host")?
                .trim()
                .trim_end_matches('/')
                .to_owned(),
            kubernetes_ca_cert: text("kubernetes_ca_cert")?,
            token_reviewer_jwt: text("token_reviewer_jwt")?,
            disable_local_ca_jwt: fields.bool("disable_local_ca_jwt")?.unwrap_or(false),
            pem_keys: fields.string_list("pem_keys")?.unwrap_or_default(),
            issuer: text("issuer")?,
            disable_iss_validation: fields.bool("disable_iss_validation")?.unwrap_or(true),
        };
        if config.kubernetes_host.is_empty() && config.pem_keys.is_empty() {
            return Err(ApiError::invalid("no host provided"));
        }
        if !config.kubernetes_host.is_empty() {
            let url = reqwest::Url::parse(&config.kubernetes_host).ok();
            if !url.is_some_and(|url| {
                matches!(url.scheme(), "http" | "https") && url.host_str().is_some()
            }) {
                return Err(ApiError::invalid(
                    "kubernetes_host must be an http(s) URL such as https://10.0.0.1:6443",
                ));
            }
            if config.kubernetes_ca_cert.trim().is_empty() {
                if config.disable_local_ca_jwt {
                    return Err(ApiError::invalid(
                        "kubernetes_ca_cert must be given when disable_local_ca_jwt is true",
                    ));
                }
                config.kubernetes_ca_cert = std::fs::read_to_string(LOCAL_CA)
                    .map_err(|error| ApiError::invalid(format!("open {LOCAL_CA}: {error}")))?;
            }
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject as _;
            let certificates: Vec<_> =
                CertificateDer::pem_slice_iter(config.kubernetes_ca_cert.as_bytes()).collect();
            if certificates.is_empty() || certificates.iter().any(Result::is_err) {
                return Err(ApiError::invalid(
                    "kubernetes_ca_cert holds no PEM certificate",
                ));
            }
        }
        let cluster = Cluster::new(&config).map_err(ApiError::invalid)?;
        self.barrier
            .put_json(&format!("{}{CONFIG}", data_prefix(mount)), &config)
            .await?;
        jws::lock(&self.clusters).insert(data_prefix(mount), Arc::new(cluster));
        Ok(Reply::NoContent)
    }

    fn read_config(&self, mount: &Mount<'_>) -> ApiResult<Reply> {
        let config = self.config(mount)?.ok_or_else(ApiError::not_found)?;
        Ok(Reply::data(json!({
            "kubernetes_host": config.kubernetes_host,
            "kubernetes_ca_cert": config.kubernetes_ca_cert,
            "token_reviewer_jwt_set": !config.token_reviewer_jwt.is_empty(),
            "disable_local_ca_jwt": config.disable_local_ca_jwt,
            "pem_keys": config.pem_keys,
            "issuer": config.issuer,
            "disable_iss_validation": config.disable_iss_validation,
        })))
    }

    async fn write_role(
        &self,
        mount: &Mount<'_>,
        name: &str,
        data: &Map<String, Value>,
    ) -> ApiResult<Reply> {
        let fields = Fields::new(data);
        let mut role = self.role(mount, name)?.unwrap_or_default();
        if let Some(names) = fields.string_list("bound_service_account_names")? {
            role.bound_service_account_names = names;
        }
        if let Some(namespaces) = fields.string_list("bound_service_account_namespaces")? {
            role.bound_service_account_namespaces = namespaces;
        }
        if fields
            .string("bound_service_account_namespace_selector")?
            .is_some_and(|selector| !selector.is_empty())
        {
            return Err(ApiError::invalid(
                "coffer does not support bound_service_account_namespace_selector: list the namespaces",
            ));
        }
        if let Some(audience) = fields.string("audience")? {
            role.audience = audience;
        }
        if let Some(source) = fields
            .string("alias_name_source")?
            .filter(|source| !source.is_empty())
        {
            if source != "serviceaccount_uid" && source != "serviceaccount_name" {
                return Err(ApiError::invalid(
                    "invalid alias_name_source, must be one of: serviceaccount_uid, serviceaccount_name",
                ));
            }
            role.alias_name_source = source;
        }
        role.token.update(&fields)?;
        if role.bound_service_account_names.is_empty() {
            return Err(ApiError::invalid(
                "\"bound_service_account_names\" can not be empty",
            ));
        }
        if role.bound_service_account_namespaces.is_empty() {
            return Err(ApiError::invalid(
                "\"bound_service_account_namespaces\" can not be empty if \"bound_service_account_namespace_selector\" is not set",
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
            (
                "bound_service_account_names",
                json!(role.bound_service_account_names),
            ),
            (
                "bound_service_account_namespaces",
                json!(role.bound_service_account_namespaces),
            ),
            ("bound_service_account_namespace_selector", json!("")),
            ("audience", json!(role.audience)),
            ("alias_name_source", json!(role.alias_name_source)),
        ] {
            data.insert(key.to_owned(), value);
        }
        Value::Object(data)
    }

    async fn login_checked(&self, request: &LoginRequest<'_>) -> ApiResult<Login> {
        let fields = Fields::new(request.data);
        let role_name = fields
            .string("role")?
            .filter(|name| !name.is_empty())
            .ok_or_else(|| ApiError::invalid("missing role"))?;
        let token = fields
            .string("jwt")?
            .filter(|token| !token.is_empty())
            .ok_or_else(|| ApiError::invalid("missing jwt"))?;
        let invalid_role = || {
            ApiError::invalid(format!(
                "invalid role name {:?}",
                role_name.chars().take(64).collect::<String>()
            ))
        };
        if !valid_name(&role_name) {
            return Err(invalid_role());
        }
        let role = self
            .role(request.mount, &role_name)?
            .ok_or_else(invalid_role)?;
        let config = self
            .config(request.mount)?
            .ok_or_else(|| ApiError::invalid("could not load backend configuration"))?;
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
        // The bindings, from the claims as the token states them.
        let claims = jws::unverified_claims(&token).ok_or_else(ApiError::denied)?;
        if !role.audience.is_empty()
            && !jws::audience_matches(&claims, std::slice::from_ref(&role.audience))
        {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "invalid audience (aud) claim: audience claim does not match any expected audience",
            ));
        }
        let account = ServiceAccount::from_claims(&claims).ok_or_else(ApiError::denied)?;
        if !bound(&role.bound_service_account_namespaces, &account.namespace) {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "namespace not authorized",
            ));
        }
        if !bound(&role.bound_service_account_names, &account.name) {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "service account name not authorized",
            ));
        }
        // Then the proof.
        let cluster = self.cluster(request.mount, &config)?;
        let refuse = |reason: &str| {
            tracing::info!(
                mount = %request.mount.entry.path,
                role = %role_name,
                service_account = %account.username(),
                reason,
                "kubernetes: login refused"
            );
            ApiError::denied()
        };
        if !cluster.keys.is_empty() {
            jws::verify(&token, &cluster.keys, &[])
                .map_err(|error| refuse(&format!("signature: {error}")))?;
            if cluster.client.is_none() {
                jws::check_times(&claims, crate::clock::now_seconds(), jws::Leeway::default())
                    .map_err(|error| refuse(&error))?;
            }
            if !config.disable_iss_validation {
                let expected = if config.issuer.is_empty() {
                    LEGACY_ISSUER
                } else {
                    config.issuer.as_str()
                };
                if claims.get("iss").and_then(Value::as_str) != Some(expected) {
                    return Err(refuse("invalid issuer (iss) claim"));
                }
            }
        }
        if let Some(client) = &cluster.client {
            self.review(client, &config, &role, &token, &claims, &account)
                .await
                .map_err(|reason| refuse(&reason))?;
        }
        let mut login = role
            .token
            .login(format!("{}-{}", account.namespace, account.name));
        for (key, value) in [
            ("role", role_name.clone()),
            ("service_account_name", account.name.clone()),
            ("service_account_namespace", account.namespace.clone()),
            ("service_account_uid", account.uid.clone()),
            ("service_account_secret_name", account.secret_name.clone()),
        ] {
            login.metadata.insert(key.to_owned(), value);
        }
        Ok(login)
    }

    /// Asks the API server who `token` is; `Err` says why it is not the
    /// service account its claims name.
    async fn review(
        &self,
        client: &reqwest::Client,
        config: &Config,
        role: &Role,
        token: &str,
        claims: &Map<String, Value>,
        account: &ServiceAccount,
    ) -> Result<(), String> {
        let audiences: Vec<String> = if !role.audience.is_empty() {
            vec![role.audience.clone()]
        } else {
            match claims.get("aud") {
                Some(Value::String(audience)) => vec![audience.clone()],
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            }
        };
        let mut spec = Map::new();
        spec.insert("token".to_owned(), json!(token));
        if !audiences.is_empty() {
            spec.insert("audiences".to_owned(), json!(audiences));
        }
        let body = json!({"metadata": {}, "spec": spec, "status": {"user": {}}});
        let local_token;
        let bearer = if !config.token_reviewer_jwt.is_empty() {
            config.token_reviewer_jwt.as_str()
        } else if !config.disable_local_ca_jwt
            && let Ok(text) = std::fs::read_to_string(LOCAL_TOKEN)
        {
            local_token = text;
            local_token.trim()
        } else {
            token
        };
        let response = client
            .post(format!(
                "{}/apis/authentication.k8s.io/v1/tokenreviews",
                config.kubernetes_host
            ))
            .bearer_auth(bearer)
            .header("Accept", "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|error| format!("TokenReview: {}", crate::error_chain::describe(&error)))?;
        let (status, review) = jws::read_json(response)
            .await
            .map_err(|error| format!("TokenReview: {error}"))?;
        if status != 200 && status != 201 {
            return Err(format!("TokenReview answered status {status}"));
        }
        let status = &review["status"];
        if status["authenticated"] != Value::Bool(true) {
            return Err(format!(
                "the API server did not authenticate the token: {}",
                status["error"].as_str().unwrap_or("no reason given")
            ));
        }
        let username = status["user"]["username"].as_str().unwrap_or_default();
        if username != account.username() {
            return Err(format!(
                "the token is {username:?}, its claims say {:?}",
                account.username()
            ));
        }
        if !account.uid.is_empty() && status["user"]["uid"].as_str() != Some(account.uid.as_str()) {
            return Err("the reviewed uid differs from the token's".to_owned());
        }
        if !role.audience.is_empty() {
            let reviewed = status["audiences"].as_array();
            if !reviewed.is_some_and(|list| list.iter().any(|item| item == role.audience.as_str()))
            {
                return Err("the reviewed audiences lack the role's".to_owned());
            }
        }
        Ok(())
    }
}

impl AuthMethod for KubernetesMethod {
    fn type_name(&self) -> &'static str {
        "kubernetes"
    }

    fn description(&self) -> &'static str {
        "pods, by their service account's token"
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
                    self.role(mount, name)?;
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
    fn service_accounts_from_projected_and_legacy_tokens() {
        let projected = claims(json!({
            "aud": ["https://kubernetes.default.svc"],
            "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "app", "uid": "u-1"}},
            "sub": "system:serviceaccount:default:app",
        }));
        let account = ServiceAccount::from_claims(&projected).unwrap();
        assert_eq!(account.username(), "system:serviceaccount:default:app");
        assert_eq!(account.uid, "u-1");
        assert_eq!(account.secret_name, "");
        let legacy = claims(json!({
            "iss": "kubernetes/serviceaccount",
            "kubernetes.io/serviceaccount/namespace": "prod",
            "kubernetes.io/serviceaccount/secret.name": "app-token-x",
            "kubernetes.io/serviceaccount/service-account.name": "app",
            "kubernetes.io/serviceaccount/service-account.uid": "u-2",
        }));
        let account = ServiceAccount::from_claims(&legacy).unwrap();
        assert_eq!(
            (account.namespace.as_str(), account.secret_name.as_str()),
            ("prod", "app-token-x")
        );
        assert!(ServiceAccount::from_claims(&claims(json!({"sub": "x"}))).is_none());
    }

    #[test]
    fn bindings_take_stars_and_globs() {
        let names = vec!["app".to_owned(), "web-*".to_owned()];
        assert!(bound(&names, "app"));
        assert!(bound(&names, "web-1"));
        assert!(!bound(&names, "db"));
        assert!(bound(&["*".to_owned()], "anything"));
    }
}
