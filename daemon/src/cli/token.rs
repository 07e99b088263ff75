//! `coffer token`: create, look up, renew and revoke tokens.

use super::client::Client;
use super::output;
use super::output::Format;
use super::parse_pairs;
use super::print_answer;
use anyhow::bail;
use clap::Subcommand;
use serde_json::Map;
use serde_json::Value;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum Token {
    /// Create a token (a child of the current one unless -orphan).
    Create {
        /// A policy; repeat for several.
        #[arg(long = "policy")]
        policies: Vec<String>,
        #[arg(long)]
        ttl: Option<String>,
        #[arg(long)]
        explicit_max_ttl: Option<String>,
        #[arg(long)]
        period: Option<String>,
        #[arg(long)]
        orphan: bool,
        #[arg(long)]
        renewable: Option<bool>,
        #[arg(long)]
        use_limit: Option<u64>,
        #[arg(long)]
        display_name: Option<String>,
        /// KEY=VALUE; repeat for several.
        #[arg(long)]
        metadata: Vec<String>,
        #[arg(long)]
        no_default_policy: bool,
    },
    /// Look up a token (the current one when none is given).
    Lookup {
        token: Option<String>,
        /// The argument is an accessor.
        #[arg(long)]
        accessor: bool,
    },
    /// Renew a token (the current one when none is given).
    Renew {
        token: Option<String>,
        #[arg(long)]
        increment: Option<String>,
    },
    /// Revoke a token and its children.
    Revoke {
        token: Option<String>,
        #[arg(long = "self")]
        current: bool,
        #[arg(long)]
        accessor: bool,
        /// "orphan" keeps the token's children.
        #[arg(long)]
        mode: Option<String>,
    },
}

pub(super) async fn token(client: &Client, format: Format, command: Token) -> anyhow::Result<i32> {
    match command {
        Token::Create {
            policies,
            ttl,
            explicit_max_ttl,
            period,
            orphan,
            renewable,
            use_limit,
            display_name,
            metadata,
            no_default_policy,
        } => {
            let mut body = Map::new();
            if !policies.is_empty() {
                body.insert("policies".into(), json!(policies));
            }
            for (key, value) in [
                ("ttl", ttl),
                ("explicit_max_ttl", explicit_max_ttl),
                ("period", period),
                ("display_name", display_name),
            ] {
                if let Some(value) = value {
                    body.insert(key.into(), json!(value));
                }
            }
            if let Some(renewable) = renewable {
                body.insert("renewable".into(), json!(renewable));
            }
            if let Some(uses) = use_limit {
                body.insert("num_uses".into(), json!(uses));
            }
            if !metadata.is_empty() {
                body.insert("meta".into(), parse_pairs(&metadata)?);
            }
            if no_default_policy {
                body.insert("no_default_policy".into(), json!(true));
            }
            let path = if orphan {
                "auth/token/create-orphan"
            } else {
                "auth/token/create"
            };
            let answer = client
                .call("POST", path, Some(&Value::Object(body)))
                .await?;
            print_token_auth(format, answer.as_ref())
        }
        Token::Lookup { token, accessor } => {
            let answer = match (token, accessor) {
                (None, _) => client.call("GET", "auth/token/lookup-self", None).await?,
                (Some(value), true) => {
                    client
                        .call(
                            "POST",
                            "auth/token/lookup-accessor",
                            Some(&json!({"accessor": value})),
                        )
                        .await?
                }
                (Some(value), false) => {
                    client
                        .call("POST", "auth/token/lookup", Some(&json!({"token": value})))
                        .await?
                }
            };
            print_answer(format, answer.as_ref(), None)
        }
        Token::Renew { token, increment } => {
            let mut body = Map::new();
            if let Some(increment) = increment {
                body.insert("increment".into(), json!(increment));
            }
            let path = match token {
                Some(value) => {
                    body.insert("token".into(), json!(value));
                    "auth/token/renew"
                }
                None => "auth/token/renew-self",
            };
            let answer = client
                .call("POST", path, Some(&Value::Object(body)))
                .await?;
            print_token_auth(format, answer.as_ref())
        }
        Token::Revoke {
            token,
            current,
            accessor,
            mode,
        } => {
            let orphan = mode.as_deref() == Some("orphan");
            match (token, current) {
                (_, true) => client.call("POST", "auth/token/revoke-self", None).await?,
                (Some(value), false) if accessor => {
                    client
                        .call(
                            "POST",
                            "auth/token/revoke-accessor",
                            Some(&json!({"accessor": value})),
                        )
                        .await?
                }
                (Some(value), false) => {
                    let path = if orphan {
                        "auth/token/revoke-orphan"
                    } else {
                        "auth/token/revoke"
                    };
                    client
                        .call("POST", path, Some(&json!({"token": value})))
                        .await?
                }
                (None, false) => bail!("give a token, -accessor with an accessor, or -self"),
            };
            println!("Success! Revoked token (if it existed)");
            Ok(0)
        }
    }
}

pub(super) fn print_token_auth(format: Format, answer: Option<&Value>) -> anyhow::Result<i32> {
    let Some(answer) = answer else {
        println!("Success!");
        return Ok(0);
    };
    if format == Format::Json {
        output::json(answer);
        return Ok(0);
    }
    let auth = answer.get("auth").cloned().unwrap_or(Value::Null);
    let field = |key: &str| auth.get(key).map(output::cell).unwrap_or_default();
    output::table(&[
        ("token".into(), field("client_token")),
        ("token_accessor".into(), field("accessor")),
        (
            "token_duration".into(),
            format!("{}s", field("lease_duration")),
        ),
        ("token_renewable".into(), field("renewable")),
        ("token_policies".into(), field("token_policies")),
        ("policies".into(), field("policies")),
    ]);
    if let Some(warnings) = answer.get("warnings").and_then(Value::as_array) {
        for warning in warnings {
            eprintln!("WARNING! {}", output::cell(warning));
        }
    }
    Ok(0)
}
