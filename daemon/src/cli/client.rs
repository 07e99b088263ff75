//! The CLI's HTTP client: address and token from flags or the environment
//! (`COFFER_*`, falling back to `VAULT_*`), Vault's error bodies turned into plain
//! messages.

use std::fmt;

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use zeroize::Zeroizing;

pub const DEFAULT_ADDRESS: &str = "http://127.0.0.1:8200";

/// The first of `COFFER_<name>` and `VAULT_<name>` that is set and not empty.
pub fn env_setting(name: &str) -> Option<String> {
    [format!("COFFER_{name}"), format!("VAULT_{name}")]
        .iter()
        .find_map(|key| std::env::var(key).ok().filter(|value| !value.is_empty()))
}

/// A failed API call, printed the way operators of Vault expect to read it.
#[derive(Debug)]
pub struct ApiFailure {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub errors: Vec<String>,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "Error making API request.\n\nURL: {} {}\nCode: {}.",
            self.method, self.url, self.status
        )?;
        if self.errors.is_empty() {
            write!(formatter, " No error details were returned.")
        } else {
            writeln!(formatter, " Errors:")?;
            for error in &self.errors {
                write!(formatter, "\n* {error}")?;
            }
            Ok(())
        }
    }
}

impl std::error::Error for ApiFailure {}

pub struct Client {
    http: reqwest::Client,
    /// The server as the user named it (`http(s)://host:port` or
    /// `unix:///path/to/socket`), for messages.
    address: String,
    /// What URLs start with: the address, or `http://localhost` over a socket.
    base: String,
    token: Option<Zeroizing<String>>,
}

impl Client {
    pub fn new(address: Option<String>) -> anyhow::Result<Client> {
        let address = address
            .or_else(|| env_setting("ADDR"))
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_owned());
        let address = address.trim_end_matches('/').to_owned();
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
        let base = match address.strip_prefix("unix://") {
            Some(socket) => {
                if !socket.starts_with('/') {
                    anyhow::bail!(
                        "{address}: a socket address is unix:// followed by an absolute path, as in unix:///run/coffer/coffer.sock"
                    );
                }
                builder = builder.unix_socket(std::path::PathBuf::from(socket));
                "http://localhost".to_owned()
            }
            None => address.clone(),
        };
        if let Some(path) = env_setting("CACERT") {
            let pem =
                std::fs::read(&path).with_context(|| format!("cannot read CA file {path}"))?;
            let certificate = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{path} is not a PEM certificate"))?;
            builder = builder.add_root_certificate(certificate);
        } else if !base.starts_with("https://") {
            // Plain HTTP or a socket needs no roots: a host without
            // ca-certificates (a minimal image) must still reach its server.
            builder = builder.tls_certs_only(Vec::new());
        }
        if env_setting("SKIP_VERIFY").is_some_and(|value| value == "1" || value == "true") {
            builder = builder.danger_accept_invalid_certs(true);
        }
        Ok(Client {
            http: builder.build().context("cannot build the HTTP client")?,
            address,
            base,
            token: env_setting("TOKEN").map(Zeroizing::new),
        })
    }

    /// Calls `/v1/<path>` with a byte body (or none) and returns the body as
    /// bytes: snapshots.
    pub async fn call_bytes(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}/v1/{}", self.base, path.trim_start_matches('/'));
        let http_method = Method::from_bytes(method.as_bytes()).context("bad HTTP method")?;
        let mut request = self
            .http
            .request(http_method, &url)
            .timeout(std::time::Duration::from_secs(600));
        if let Some(token) = &self.token {
            request = request.header("X-Vault-Token", token.as_str());
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/octet-stream")
                .body(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach coffer at {}", self.address))?;
        let status = response.status();
        let bytes = response.bytes().await.context("cannot read the response")?;
        if status.is_client_error() || status.is_server_error() {
            return Err(failure(method, url, status, &bytes).into());
        }
        Ok(bytes.to_vec())
    }

    /// Calls `/v1/<path>`; `Ok(None)` for 204, `Err(ApiFailure)` for any error
    /// status.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Option<Value>> {
        let url = format!("{}/v1/{}", self.base, path.trim_start_matches('/'));
        let http_method = Method::from_bytes(method.as_bytes()).context("bad HTTP method")?;
        let mut request = self.http.request(http_method, &url);
        if let Some(token) = &self.token {
            request = request.header("X-Vault-Token", token.as_str());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach coffer at {}", self.address))?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let text = response.text().await.context("cannot read the response")?;
        if status.is_client_error() || status.is_server_error() {
            return Err(failure(method, url, status, text.as_bytes()).into());
        }
        Ok(serde_json::from_str(&text).ok())
    }
}

/// An error answer as an [`ApiFailure`], with the messages of Vault's
/// `{"errors": [...]}` body.
fn failure(method: &str, url: String, status: StatusCode, body: &[u8]) -> ApiFailure {
    let document: Option<Value> = serde_json::from_slice(body).ok();
    let errors = document
        .as_ref()
        .and_then(|document| document.get("errors"))
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    ApiFailure {
        method: method.to_owned(),
        url,
        status: status.as_u16(),
        errors,
    }
}
