//! `coffer audit`: list, enable and disable audit devices.

use super::client::Client;
use super::output;
use super::output::Format;
use super::parse_pairs;
use clap::Subcommand;
use serde_json::Value;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum Audit {
    /// Enable a device: `file file_path=/var/log/coffer/audit.log`,
    /// `syslog tag=coffer facility=AUTH`, `socket address=host:port socket_type=tcp`.
    Enable {
        /// file, syslog or socket.
        kind: String,
        /// The device's options, as KEY=VALUE.
        options: Vec<String>,
        /// Where the device is mounted (default: its type).
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        local: bool,
    },
    /// Disable the device at PATH.
    Disable { path: String },
    /// List the devices.
    List {
        /// Show each device's options too.
        #[arg(long)]
        detailed: bool,
    },
}

pub(super) async fn audit(client: &Client, format: Format, command: Audit) -> anyhow::Result<i32> {
    match command {
        Audit::Enable {
            kind,
            options,
            path,
            description,
            local,
        } => {
            let path = path.unwrap_or_else(|| kind.clone());
            let path = path.trim_matches('/');
            let body = json!({
                "type": kind,
                "description": description.unwrap_or_default(),
                "local": local,
                "options": parse_pairs(&options)?,
            });
            client
                .call("PUT", &format!("sys/audit/{path}"), Some(&body))
                .await?;
            println!("Success! Enabled the {kind} audit device at: {path}/");
            Ok(0)
        }
        Audit::Disable { path } => {
            let path = path.trim_matches('/');
            client
                .call("DELETE", &format!("sys/audit/{path}"), None)
                .await?;
            println!("Success! Disabled audit device (if it was enabled) at: {path}/");
            Ok(0)
        }
        Audit::List { detailed } => {
            let answer = client
                .call("GET", "sys/audit", None)
                .await?
                .unwrap_or(Value::Null);
            let devices = answer
                .get("data")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if format == Format::Json {
                output::json(&Value::Object(devices));
                return Ok(0);
            }
            if devices.is_empty() {
                println!("No audit devices are enabled.");
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = devices
                .iter()
                .map(|(path, device)| {
                    let cell = |key: &str| device.get(key).map(output::cell).unwrap_or_default();
                    let mut row = vec![path.clone(), cell("type"), cell("description")];
                    if detailed {
                        row.push(cell("options"));
                        row.push(cell("healthy"));
                    }
                    row
                })
                .collect();
            let header: &[&str] = if detailed {
                &["Path", "Type", "Description", "Options", "Healthy"]
            } else {
                &["Path", "Type", "Description"]
            };
            output::columns(header, &rows);
            Ok(0)
        }
    }
}
