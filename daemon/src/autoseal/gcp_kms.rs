//! `seal "gcpckms"`: Google Cloud KMS wraps the data keys, through its REST
//! API on the workspace's HTTP client (four calls: get the key, test the
//! permissions, encrypt, decrypt). The OAuth token comes from a service
//! account's key (the JWT-bearer grant) or the metadata server, and is kept
//! until a minute before it expires. Calls give up after 10 s.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{Error, WrappedKey, Wrapper};
use crate::config::GcpCkms;
use crate::error_chain;
use crate::leases::BoxFuture;

const KIND: &str = "gcpckms";
const TIMEOUT: Duration = Duration::from_secs(10);
const SCOPE: &str = "https://www.googleapis.com/auth/cloudkms";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const METADATA_TOKEN_URL: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";
const PERMISSIONS: [&str; 2] = [
    "cloudkms.cryptoKeyVersions.useToEncrypt",
    "cloudkms.cryptoKeyVersions.useToDecrypt",
];

pub struct GcpKmsWrapper {
    config: GcpCkms,
    /// The client, or why it could not be built (no system CA roots): said
    /// at every call, never a panic.
    http: Result<reqwest::Client, String>,
    /// The access token and when to stop using it.
    token: tokio::sync::Mutex<Option<(Zeroizing<String>, Instant)>>,
}

// The access token never reaches a log line through Debug.
impl std::fmt::Debug for GcpKmsWrapper {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.config.fmt(formatter)
    }
}

/// The fields of a service account key this seal uses.
#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    #[serde(default)]
    token_uri: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl GcpKmsWrapper {
    pub fn new(config: GcpCkms) -> GcpKmsWrapper {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|error| {
                format!(
                    "cannot build the HTTP client: {}",
                    error_chain::describe(&error)
                )
            });
        GcpKmsWrapper {
            config,
            http,
            token: tokio::sync::Mutex::new(None),
        }
    }

    fn http(&self, call: &str) -> Result<&reqwest::Client, Error> {
        self.http
            .as_ref()
            .map_err(|reason| self.failed(call, reason))
    }

    fn failed(&self, call: &str, message: impl std::fmt::Display) -> Error {
        Error::Kms {
            seal: KIND,
            message: format!("{call} with key {:?}: {message}", self.config.key_name),
        }
    }

    async fn access_token(&self) -> Result<Zeroizing<String>, Error> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let response = match &self.config.credentials {
            Some(credentials) => self.service_account_token(credentials).await?,
            None => self.metadata_token().await?,
        };
        let lifetime = Duration::from_secs(response.expires_in.unwrap_or(3600).saturating_sub(60));
        let token = Zeroizing::new(response.access_token);
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    /// The JWT-bearer grant with the service account's key.
    async fn service_account_token(&self, credentials: &str) -> Result<TokenResponse, Error> {
        let text = if credentials.trim_start().starts_with('{') {
            Zeroizing::new(credentials.to_owned())
        } else {
            Zeroizing::new(std::fs::read_to_string(credentials).map_err(|error| {
                self.failed("reading the credentials", format!("{credentials}: {error}"))
            })?)
        };
        let mut account: ServiceAccount = serde_json::from_str(&text).map_err(|_| {
            self.failed(
                "reading the credentials",
                "not a service account key (client_email, private_key)",
            )
        })?;
        let token_uri = account
            .token_uri
            .clone()
            .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
        let now = crate::clock::now_seconds();
        let claims = json!({
            "iss": account.client_email,
            "scope": SCOPE,
            "aud": token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let private_key = Zeroizing::new(std::mem::take(&mut account.private_key));
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes())
            .map_err(|_| self.failed("reading the credentials", "private_key is not an RSA key"))?;
        let assertion = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .map_err(|error| self.failed("signing the token request", error))?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let response = self
            .http("getting a token")?
            .post(&token_uri)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|error| self.failed("getting a token", error_chain::describe(&error)))?;
        self.token_from(response, &token_uri).await
    }

    async fn metadata_token(&self) -> Result<TokenResponse, Error> {
        let response = self
            .http("getting a token from the metadata server")?
            .get(METADATA_TOKEN_URL)
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|error| {
                self.failed(
                    "getting a token from the metadata server",
                    error_chain::describe(&error),
                )
            })?;
        self.token_from(response, METADATA_TOKEN_URL).await
    }

    async fn token_from(
        &self,
        response: reqwest::Response,
        from: &str,
    ) -> Result<TokenResponse, Error> {
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| self.failed("getting a token", error_chain::describe(&error)))?;
        if !status.is_success() {
            return Err(self.failed("getting a token", format!("{from} answered {status}")));
        }
        serde_json::from_slice(&body)
            .map_err(|_| self.failed("getting a token", format!("{from} sent no access_token")))
    }

    /// One call to Cloud KMS: `GET` when `body` is `None`, else `POST`.
    async fn call(&self, call: &str, url: String, body: Option<Value>) -> Result<Value, Error> {
        let token = self.access_token().await?;
        let http = self.http(call)?;
        let request = match body {
            Some(body) => http.post(&url).json(&body),
            None => http.get(&url),
        };
        let response = request
            .bearer_auth(token.as_str())
            .header(
                "x-goog-request-params",
                format!("name={}", self.config.key_name),
            )
            .send()
            .await
            .map_err(|error| self.failed(call, error_chain::describe(&error)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| self.failed(call, error_chain::describe(&error)))?;
        let document: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            if status == reqwest::StatusCode::UNAUTHORIZED {
                *self.token.lock().await = None;
            }
            let reason = document
                .pointer("/error/status")
                .and_then(Value::as_str)
                .unwrap_or("");
            let message = document
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(self.failed(call, format!("{status} {reason}: {message}")));
        }
        Ok(document)
    }

    fn url(&self, suffix: &str) -> String {
        format!(
            "{}/v1/{}{suffix}",
            self.config.endpoint, self.config.key_name
        )
    }
}

fn base64_field(document: &Value, field: &str) -> Option<Vec<u8>> {
    document
        .get(field)
        .and_then(Value::as_str)
        .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
}

impl Wrapper for GcpKmsWrapper {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn check(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let key = self.call("GetCryptoKey", self.url(""), None).await?;
            let state = key.pointer("/primary/state").and_then(Value::as_str);
            if !matches!(state, Some("ENABLED") | Some("1")) {
                return Err(self.failed(
                    "GetCryptoKey",
                    format!("the primary version is {}", state.unwrap_or("missing")),
                ));
            }
            let granted = self
                .call(
                    "TestIamPermissions",
                    self.url(":testIamPermissions"),
                    Some(json!({"permissions": PERMISSIONS})),
                )
                .await?;
            let granted: Vec<&str> = granted
                .get("permissions")
                .and_then(Value::as_array)
                .map(|list| list.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(missing) = PERMISSIONS.iter().find(|needed| !granted.contains(needed)) {
                return Err(self.failed("TestIamPermissions", format!("{missing} is not granted")));
            }
            Ok(())
        })
    }

    fn wrap<'a>(&'a self, data_key: &'a [u8]) -> BoxFuture<'a, Result<WrappedKey, Error>> {
        Box::pin(async move {
            let plaintext = base64::engine::general_purpose::STANDARD.encode(data_key);
            let encrypted = self
                .call(
                    "Encrypt",
                    self.url(":encrypt"),
                    Some(json!({"plaintext": plaintext})),
                )
                .await?;
            let ciphertext = base64_field(&encrypted, "ciphertext")
                .ok_or_else(|| self.failed("Encrypt", "the answer holds no ciphertext"))?;
            let version = encrypted
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&self.config.key_name);
            Ok(WrappedKey {
                key_id: version.to_owned(),
                ciphertext,
            })
        })
    }

    fn unwrap<'a>(
        &'a self,
        _key_id: &'a str,
        wrapped: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, Error>> {
        Box::pin(async move {
            let ciphertext = base64::engine::general_purpose::STANDARD.encode(wrapped);
            let decrypted = self
                .call(
                    "Decrypt",
                    self.url(":decrypt"),
                    Some(json!({"ciphertext": ciphertext})),
                )
                .await?;
            base64_field(&decrypted, "plaintext")
                .map(Zeroizing::new)
                .ok_or_else(|| self.failed("Decrypt", "the answer holds no plaintext"))
        })
    }
}
