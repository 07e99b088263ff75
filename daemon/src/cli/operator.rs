//! `coffer operator`: init, unseal, seal, key status, rotation, joining a
//! cluster, root generation and rekey.

use super::client::Client;
use super::output;
use super::output::Format;
use super::quorum::{GenerateRoot, Rekey, generate_root, key_or_stdin, rekey};
use super::raft::{Raft, raft};
use super::status;
use clap::Subcommand;
use serde_json::Value;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum Operator {
    /// Initialize a new server and print its unseal keys (or, under an auto
    /// seal, its recovery keys) and root token.
    Init {
        #[arg(long, default_value_t = 5)]
        key_shares: u8,
        #[arg(long, default_value_t = 3)]
        key_threshold: u8,
        /// Under an auto seal: recovery key shares (0: none).
        #[arg(long, default_value_t = 5)]
        recovery_shares: u8,
        #[arg(long, default_value_t = 3)]
        recovery_threshold: u8,
    },
    /// Submit one unseal key share (read from stdin when not given).
    Unseal {
        key: Option<String>,
        /// Discard the shares submitted so far.
        #[arg(long)]
        reset: bool,
        /// The shares also authorize a pending seal migration.
        #[arg(long)]
        migrate: bool,
    },
    /// Seal the server.
    Seal,
    /// Add a new encryption key term.
    Rotate,
    /// Manage the Raft cluster.
    #[command(subcommand)]
    Raft(Raft),
    /// Make a new root token with a quorum of unseal key shares.
    GenerateRoot(GenerateRoot),
    /// Replace the unseal key shares with a quorum of the current ones.
    Rekey(Rekey),
}

/// `operator init -format=json` in the vault CLI's shape (scripts read
/// `.unseal_keys_b64[]` and `.root_token`): OpenBao 2.7.2 prints these keys,
/// `null` for an empty key list.
fn init_json(answer: &Value, request: &Value) -> Value {
    let keys = |field: &str| match answer.get(field) {
        Some(Value::Array(keys)) if !keys.is_empty() => Value::Array(keys.clone()),
        _ => Value::Null,
    };
    let count = |field: &str| request.get(field).cloned().unwrap_or(json!(0));
    json!({
        "unseal_keys_b64": keys("keys_base64"),
        "unseal_keys_hex": keys("keys"),
        "unseal_shares": count("secret_shares"),
        "unseal_threshold": count("secret_threshold"),
        "recovery_keys_b64": keys("recovery_keys_base64"),
        "recovery_keys_hex": keys("recovery_keys"),
        "recovery_keys_shares": count("recovery_shares"),
        "recovery_keys_threshold": count("recovery_threshold"),
        "root_token": answer.get("root_token").cloned().unwrap_or(Value::Null),
    })
}

pub(super) async fn operator(
    client: &Client,
    format: Format,
    command: Operator,
) -> anyhow::Result<i32> {
    match command {
        Operator::Init {
            key_shares,
            key_threshold,
            recovery_shares,
            recovery_threshold,
        } => {
            // As Vault's CLI: under an auto seal, the shares asked for are
            // recovery key shares.
            let recovery_seal = client
                .call("GET", "sys/seal-status", None)
                .await?
                .and_then(|status| status.get("recovery_seal").and_then(Value::as_bool))
                .unwrap_or(false);
            let request = if recovery_seal {
                let threshold = if recovery_shares == 0 {
                    0
                } else {
                    recovery_threshold
                };
                json!({"recovery_shares": recovery_shares, "recovery_threshold": threshold})
            } else {
                json!({"secret_shares": key_shares, "secret_threshold": key_threshold})
            };
            let answer = client
                .call("PUT", "sys/init", Some(&request))
                .await?
                .unwrap_or(Value::Null);
            if format == Format::Json {
                output::json(&init_json(&answer, &request));
                return Ok(0);
            }
            let root_token = answer
                .get("root_token")
                .map(output::cell)
                .unwrap_or_default();
            if recovery_seal {
                output::shares_of(&answer, "recovery_keys_base64", "Recovery Key");
                println!("\nInitial Root Token: {root_token}\n");
                println!(
                    "coffer initialized with its auto seal: it is unsealed, and unseals itself at start."
                );
                if recovery_shares > 0 {
                    println!(
                        "{recovery_shares} recovery key shares, threshold {recovery_threshold}: they authorize operations (unseal after a seal, root generation); without the seal's key they decrypt nothing."
                    );
                }
                return Ok(0);
            }
            output::key_shares(&answer, "Unseal Key");
            println!("\nInitial Root Token: {root_token}\n");
            println!(
                "coffer initialized with {key_shares} key shares and a key threshold of {key_threshold}."
            );
            println!("Distribute the key shares to trusted operators; the server starts sealed:");
            println!("unseal it with `coffer operator unseal` and {key_threshold} of the keys.");
            Ok(0)
        }
        Operator::Unseal {
            key,
            reset,
            migrate,
        } => {
            let current = client.call("GET", "sys/seal-status", None).await?;
            let already_unsealed = current
                .as_ref()
                .and_then(|status| status.get("sealed"))
                .and_then(Value::as_bool)
                == Some(false);
            if already_unsealed && !reset {
                println!("coffer is already unsealed.");
                return status(client, format).await;
            }
            let body = if reset {
                json!({"reset": true})
            } else {
                json!({"key": key_or_stdin(key)?, "migrate": migrate})
            };
            client.call("PUT", "sys/unseal", Some(&body)).await?;
            status(client, format).await
        }
        Operator::Seal => {
            client.call("PUT", "sys/seal", None).await?;
            println!("Success! coffer is sealed.");
            Ok(0)
        }
        Operator::Raft(command) => raft(client, format, command).await,
        Operator::GenerateRoot(command) => generate_root(client, format, command).await,
        Operator::Rekey(command) => rekey(client, format, command).await,
        Operator::Rotate => {
            client.call("PUT", "sys/rotate", None).await?;
            let key_status = client
                .call("GET", "sys/key-status", None)
                .await?
                .unwrap_or(Value::Null);
            match format {
                Format::Json => output::json(&key_status),
                Format::Table => {
                    println!("Success! Rotated key\n");
                    let data = key_status.get("data").cloned().unwrap_or(Value::Null);
                    output::table(&[
                        (
                            "Key Term".into(),
                            data.get("term").map(output::cell).unwrap_or_default(),
                        ),
                        (
                            "Install Time".into(),
                            data.get("install_time")
                                .map(output::cell)
                                .unwrap_or_default(),
                        ),
                    ]);
                }
            }
            Ok(0)
        }
    }
}
