//! `coffer auth` (enable, disable, list auth methods) and `coffer login`,
//! which logs in with a method and prints the token as the vault CLI does.
//! The token is printed, not written to `~/.vault-token`: a token in a file
//! in plaintext is left to the operator's choice (`export VAULT_TOKEN=...`).

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::client::Client;
use super::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum Auth {
    /// Enable an auth method: userpass, approle, jwt, kubernetes.
    Enable {
        method: String,
        /// Where (below auth/); default: the method's name.
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Default TTL of its tokens, e.g. `1h`.
        #[arg(long)]
        default_lease_ttl: Option<String>,
        /// Maximum TTL of its tokens, e.g. `24h`.
        #[arg(long)]
        max_lease_ttl: Option<String>,
    },
    /// Disable an auth method; the tokens its logins made are revoked.
    Disable { path: String },
    /// List the enabled auth methods.
    List,
}

pub(super) async fn auth(client: &Client, format: Format, command: Auth) -> anyhow::Result<i32> {
    match command {
        Auth::Enable {
            method,
            path,
            description,
            default_lease_ttl,
            max_lease_ttl,
        } => {
            let path = path.unwrap_or_else(|| method.clone());
            let path = path.trim_matches('/');
            let mut config = Map::new();
            for (key, value) in [
                ("default_lease_ttl", default_lease_ttl),
                ("max_lease_ttl", max_lease_ttl),
            ] {
                if let Some(value) = value {
                    config.insert(key.into(), json!(value));
                }
            }
            let body = json!({
                "type": method,
                "description": description.unwrap_or_default(),
                "config": config,
            });
            client
                .call("POST", &format!("sys/auth/{path}"), Some(&body))
                .await?;
            println!("Success! Enabled {method} auth method at: {path}/");
            Ok(0)
        }
        Auth::Disable { path } => {
            let path = path.trim_matches('/');
            client
                .call("DELETE", &format!("sys/auth/{path}"), None)
                .await?;
            println!("Success! Disabled the auth method (if it existed) at: {path}/");
            Ok(0)
        }
        Auth::List => {
            let answer = client
                .call("GET", "sys/auth", None)
                .await?
                .unwrap_or(Value::Null);
            let methods = answer
                .get("data")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if format == Format::Json {
                output::json(&Value::Object(methods));
                return Ok(0);
            }
            println!(
                "{:<16} {:<10} {:<28} Description",
                "Path", "Type", "Accessor"
            );
            println!(
                "{:<16} {:<10} {:<28} -----------",
                "----", "----", "--------"
            );
            for (path, info) in methods {
                let field = |key: &str| info.get(key).map(output::cell).unwrap_or_default();
                println!(
                    "{path:<16} {:<10} {:<28} {}",
                    field("type"),
                    field("accessor"),
                    field("description")
                );
            }
            Ok(0)
        }
    }
}

/// `coffer login -method=<type> [-path=<mount>] KEY=VALUE...`: userpass
/// (`username`, `password`), approle (`role_id`, `secret_id`), jwt and
/// kubernetes (`role`, `jwt=@FILE`), and any
/// method whose login takes its fields at `auth/<path>/login`.
pub(super) async fn login(
    client: &Client,
    format: Format,
    method: &str,
    path: Option<&str>,
    pairs: &[String],
) -> anyhow::Result<i32> {
    let Value::Object(mut data) = super::parse_pairs(pairs)? else {
        bail!("the login fields are KEY=VALUE pairs");
    };
    // A value read from stdin (`password=-`) ends with the newline typed.
    for value in data.values_mut() {
        if let Value::String(text) = value {
            let trimmed = text.trim_end_matches(['\n', '\r']).len();
            text.truncate(trimmed);
        }
    }
    let mount = path.unwrap_or(method).trim_matches('/').to_owned();
    let login_path = match method {
        "userpass" => {
            let username = data
                .remove("username")
                .and_then(|value| value.as_str().map(str::to_owned))
                .context(
                    "userpass needs username=NAME (and password=... or password=- for stdin)",
                )?;
            format!("auth/{mount}/login/{username}")
        }
        "token" => bail!("a token needs no login: export VAULT_TOKEN (or COFFER_TOKEN)"),
        _ => format!("auth/{mount}/login"),
    };
    let answer = client
        .call("POST", &login_path, Some(&Value::Object(data)))
        .await?
        .context("the server answered the login without a token")?;
    let auth = answer
        .get("auth")
        .and_then(Value::as_object)
        .context("the server answered the login without a token")?;
    if format == Format::Json {
        output::json(&answer);
        return Ok(0);
    }
    println!(
        "Success! You are now authenticated. coffer does not store the token:\nexport VAULT_TOKEN=<token> (or COFFER_TOKEN) to use it.\n"
    );
    let cell = |key: &str| auth.get(key).map(output::cell).unwrap_or_default();
    let mut rows = vec![
        ("token".to_owned(), cell("client_token")),
        ("token_accessor".to_owned(), cell("accessor")),
        (
            "token_duration".to_owned(),
            auth.get("lease_duration")
                .and_then(Value::as_u64)
                .map(coffer_daemon::duration::format_go)
                .unwrap_or_default(),
        ),
        ("token_renewable".to_owned(), cell("renewable")),
        ("token_policies".to_owned(), cell("token_policies")),
        ("identity_policies".to_owned(), "[]".to_owned()),
        ("policies".to_owned(), cell("policies")),
    ];
    if let Some(meta) = auth.get("metadata").and_then(Value::as_object) {
        for (key, value) in meta {
            rows.push((format!("token_meta_{key}"), output::cell(value)));
        }
    }
    output::table(&rows);
    Ok(0)
}
