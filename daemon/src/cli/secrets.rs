//! `coffer secrets`: list, enable, tune and disable secrets engines.

use super::client::Client;
use super::output;
use super::output::Format;
use clap::Subcommand;
use serde_json::Value;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum Secrets {
    /// Enable an engine: kv, kv-v2.
    Enable {
        engine: String,
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// KV version (1 or 2).
        #[arg(long)]
        version: Option<u8>,
    },
    /// Disable the engine mounted at a path, deleting its data.
    Disable { path: String },
    /// List the mounted engines.
    List,
}

pub(super) async fn secrets(
    client: &Client,
    format: Format,
    command: Secrets,
) -> anyhow::Result<i32> {
    match command {
        Secrets::Enable {
            engine,
            path,
            description,
            version,
        } => {
            let path = path.unwrap_or_else(|| engine.clone());
            let mut body = json!({"type": engine, "description": description.unwrap_or_default()});
            if let Some(version) = version {
                body["options"] = json!({"version": version.to_string()});
            }
            let path = path.trim_matches('/');
            client
                .call("POST", &format!("sys/mounts/{path}"), Some(&body))
                .await?;
            println!("Success! Enabled the {engine} secrets engine at: {path}/");
            Ok(0)
        }
        Secrets::Disable { path } => {
            let path = path.trim_matches('/');
            client
                .call("DELETE", &format!("sys/mounts/{path}"), None)
                .await?;
            println!("Success! Disabled the secrets engine (if it existed) at: {path}/");
            Ok(0)
        }
        Secrets::List => {
            let answer = client
                .call("GET", "sys/mounts", None)
                .await?
                .unwrap_or(Value::Null);
            match format {
                Format::Json => output::json(answer.get("data").unwrap_or(&Value::Null)),
                Format::Table => {
                    let mounts = answer
                        .get("data")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    println!(
                        "{:<20} {:<10} {:<24} Description",
                        "Path", "Type", "Accessor"
                    );
                    println!(
                        "{:<20} {:<10} {:<24} -----------",
                        "----", "----", "--------"
                    );
                    for (path, info) in mounts {
                        let field = |key: &str| info.get(key).map(output::cell).unwrap_or_default();
                        println!(
                            "{path:<20} {:<10} {:<24} {}",
                            field("type"),
                            field("accessor"),
                            field("description")
                        );
                    }
                }
            }
            Ok(0)
        }
    }
}
