//! `coffer policy`: list, read, write and delete ACL policies.

use super::client::Client;
use super::output;
use super::output::Format;
use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;
use serde_json::json;
use std::io::Read as _;

#[derive(Debug, Subcommand)]
pub enum Policy {
    /// Upload a policy from a file (or - for stdin).
    Write { name: String, file: String },
    /// Print a policy's text.
    Read { name: String },
    /// List the policies.
    List,
    /// Delete a policy.
    Delete { name: String },
}

pub(super) async fn policy(
    client: &Client,
    format: Format,
    command: Policy,
) -> anyhow::Result<i32> {
    match command {
        Policy::Write { name, file } => {
            let text = if file == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("cannot read stdin")?;
                text
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {file}"))?
            };
            client
                .call(
                    "PUT",
                    &format!("sys/policies/acl/{name}"),
                    Some(&json!({"policy": text})),
                )
                .await?;
            println!("Success! Uploaded policy: {name}");
            Ok(0)
        }
        Policy::Read { name } => {
            let answer = client
                .call("GET", &format!("sys/policies/acl/{name}"), None)
                .await?
                .unwrap_or(Value::Null);
            match format {
                Format::Json => output::json(&answer),
                Format::Table => println!(
                    "{}",
                    answer
                        .pointer("/data/policy")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                ),
            }
            Ok(0)
        }
        Policy::List => {
            let answer = client.call("LIST", "sys/policies/acl", None).await?;
            match (format, answer) {
                (Format::Json, Some(answer)) => {
                    output::json(answer.pointer("/data/keys").unwrap_or(&Value::Null))
                }
                (_, Some(answer)) => {
                    for key in answer
                        .pointer("/data/keys")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        println!("{}", output::cell(key));
                    }
                }
                (_, None) => {}
            }
            Ok(0)
        }
        Policy::Delete { name } => {
            client
                .call("DELETE", &format!("sys/policies/acl/{name}"), None)
                .await?;
            println!("Success! Deleted policy: {name}");
            Ok(0)
        }
    }
}
