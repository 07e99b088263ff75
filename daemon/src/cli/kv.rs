//! `coffer kv`: KV v1 and v2 secrets by mount-relative path, as the vault CLI's `kv`.

use super::client::Client;
use super::output;
use super::output::Format;
use super::parse_pairs;
use super::print_answer;
use super::print_keys;
use anyhow::Context;
use anyhow::bail;
use clap::Args;
use clap::Subcommand;
use serde_json::Map;
use serde_json::Value;
use serde_json::json;

#[derive(Debug, Args)]
pub struct KvTarget {
    /// A path including its mount (`secret/app`), or relative to -mount.
    pub path: String,
    /// The mount, when the path does not include it.
    #[arg(long)]
    pub mount: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Kv {
    /// Write a new version: KEY=VALUE pairs (VALUE may be @file or -).
    Put {
        #[command(flatten)]
        target: KvTarget,
        pairs: Vec<String>,
        /// Check-and-set: the version this write expects to replace (0: new key).
        #[arg(long)]
        cas: Option<u64>,
    },
    /// Merge KEY=VALUE pairs into the latest version (v2).
    Patch {
        #[command(flatten)]
        target: KvTarget,
        pairs: Vec<String>,
    },
    /// Read a secret.
    Get {
        #[command(flatten)]
        target: KvTarget,
        #[arg(long)]
        version: Option<u64>,
        #[arg(long)]
        field: Option<String>,
    },
    /// List the keys under a path.
    List {
        #[command(flatten)]
        target: KvTarget,
    },
    /// Soft-delete the latest version (or -versions).
    Delete {
        #[command(flatten)]
        target: KvTarget,
        #[arg(long, value_delimiter = ',')]
        versions: Vec<u64>,
    },
    /// Restore soft-deleted versions.
    Undelete {
        #[command(flatten)]
        target: KvTarget,
        #[arg(long, value_delimiter = ',', required = true)]
        versions: Vec<u64>,
    },
    /// Permanently destroy versions.
    Destroy {
        #[command(flatten)]
        target: KvTarget,
        #[arg(long, value_delimiter = ',', required = true)]
        versions: Vec<u64>,
    },
    /// Read, write or delete a secret's metadata.
    #[command(subcommand)]
    Metadata(KvMetadata),
}

#[derive(Debug, Subcommand)]
pub enum KvMetadata {
    /// Print a secret's metadata and the state of its versions.
    Get {
        #[command(flatten)]
        target: KvTarget,
    },
    /// Set a secret's metadata (versions kept, check-and-set, custom fields).
    Put {
        #[command(flatten)]
        target: KvTarget,
        #[arg(long)]
        max_versions: Option<u64>,
        #[arg(long)]
        cas_required: Option<bool>,
        #[arg(long)]
        delete_version_after: Option<String>,
        /// KEY=VALUE; repeat for several.
        #[arg(long)]
        custom_metadata: Vec<String>,
    },
    /// Delete all versions and the metadata.
    Delete {
        #[command(flatten)]
        target: KvTarget,
    },
}

/// A KV path resolved against its mount: the mount (`secret/`), the path inside
/// it, and the engine version.
struct KvPath {
    mount: String,
    path: String,
    version: u8,
}

impl KvPath {
    fn v2(&self, section: &str) -> String {
        format!("{}{section}/{}", self.mount, self.path)
    }

    fn v1(&self) -> String {
        format!("{}{}", self.mount, self.path)
    }
}

async fn resolve_kv(client: &Client, target: &KvTarget) -> anyhow::Result<KvPath> {
    let full = match &target.mount {
        Some(mount) => format!(
            "{}/{}",
            mount.trim_matches('/'),
            target.path.trim_start_matches('/')
        ),
        None => target.path.trim_start_matches('/').to_owned(),
    };
    let answer = client
        .call("GET", &format!("sys/internal/ui/mounts/{full}"), None)
        .await?
        .unwrap_or(Value::Null);
    let mount = answer
        .pointer("/data/path")
        .and_then(Value::as_str)
        .with_context(|| format!("no kv mount serves {full:?}"))?
        .to_owned();
    if answer.pointer("/data/type").and_then(Value::as_str) != Some("kv") {
        bail!("{mount} is not a kv mount");
    }
    let version = match answer
        .pointer("/data/options/version")
        .and_then(Value::as_str)
    {
        Some("2") => 2,
        _ => 1,
    };
    let path = full
        .strip_prefix(mount.as_str())
        .unwrap_or_else(|| full.strip_prefix(mount.trim_end_matches('/')).unwrap_or(""))
        .to_owned();
    Ok(KvPath {
        mount,
        path,
        version,
    })
}

fn versions_body(versions: &[u64]) -> Value {
    json!({"versions": versions})
}

pub(super) async fn kv(client: &Client, format: Format, command: Kv) -> anyhow::Result<i32> {
    match command {
        Kv::Put { target, pairs, cas } => {
            let at = resolve_kv(client, &target).await?;
            let data = parse_pairs(&pairs)?;
            if at.version == 2 {
                let mut body = json!({"data": data, "options": {}});
                if let Some(cas) = cas {
                    body["options"]["cas"] = json!(cas);
                }
                let answer = client.call("POST", &at.v2("data"), Some(&body)).await?;
                print_answer(format, answer.as_ref(), None)
            } else {
                client.call("PUT", &at.v1(), Some(&data)).await?;
                println!("Success! Data written to: {}", at.v1());
                Ok(0)
            }
        }
        Kv::Patch { target, pairs } => {
            let at = resolve_kv(client, &target).await?;
            if at.version != 2 {
                bail!("kv patch needs a v2 mount");
            }
            let body = json!({"data": parse_pairs(&pairs)?});
            let answer = client.call("PATCH", &at.v2("data"), Some(&body)).await?;
            print_answer(format, answer.as_ref(), None)
        }
        Kv::Get {
            target,
            version,
            field,
        } => {
            let at = resolve_kv(client, &target).await?;
            if at.version == 1 {
                let answer = client.call("GET", &at.v1(), None).await?;
                return print_answer(format, answer.as_ref(), field.as_deref());
            }
            let mut path = at.v2("data");
            if let Some(version) = version {
                path = format!("{path}?version={version}");
            }
            let answer = client
                .call("GET", &path, None)
                .await?
                .unwrap_or(Value::Null);
            if let Some(field) = field {
                let value = answer
                    .pointer(&format!("/data/data/{field}"))
                    .with_context(|| format!("field {field:?} is not present in the secret"))?;
                print!("{}", output::cell(value));
                return Ok(0);
            }
            match format {
                Format::Json => output::json(&answer),
                Format::Table => {
                    if let Some(metadata) =
                        answer.pointer("/data/metadata").and_then(Value::as_object)
                    {
                        output::header("Secret Path");
                        println!("{}\n", at.v2("data"));
                        output::header("Metadata");
                        output::map_table(metadata);
                        println!();
                    }
                    output::header("Data");
                    if let Some(data) = answer.pointer("/data/data").and_then(Value::as_object) {
                        output::map_table(data);
                    }
                }
            }
            Ok(0)
        }
        Kv::List { target } => {
            let at = resolve_kv(client, &target).await?;
            let path = if at.version == 2 {
                at.v2("metadata")
            } else {
                at.v1()
            };
            let answer = client.call("LIST", &path, None).await?;
            print_keys(format, answer.as_ref())
        }
        Kv::Delete { target, versions } => {
            let at = resolve_kv(client, &target).await?;
            if at.version == 1 {
                client.call("DELETE", &at.v1(), None).await?;
            } else if versions.is_empty() {
                client.call("DELETE", &at.v2("data"), None).await?;
            } else {
                client
                    .call("POST", &at.v2("delete"), Some(&versions_body(&versions)))
                    .await?;
            }
            println!(
                "Success! Data deleted (if it existed) at: {}{}",
                at.mount, at.path
            );
            Ok(0)
        }
        Kv::Undelete { target, versions } => {
            let at = resolve_kv(client, &target).await?;
            client
                .call("POST", &at.v2("undelete"), Some(&versions_body(&versions)))
                .await?;
            println!("Success! Data written to: {}", at.v2("undelete"));
            Ok(0)
        }
        Kv::Destroy { target, versions } => {
            let at = resolve_kv(client, &target).await?;
            client
                .call("PUT", &at.v2("destroy"), Some(&versions_body(&versions)))
                .await?;
            println!("Success! Data written to: {}", at.v2("destroy"));
            Ok(0)
        }
        Kv::Metadata(KvMetadata::Get { target }) => {
            let at = resolve_kv(client, &target).await?;
            let answer = client.call("GET", &at.v2("metadata"), None).await?;
            print_answer(format, answer.as_ref(), None)
        }
        Kv::Metadata(KvMetadata::Put {
            target,
            max_versions,
            cas_required,
            delete_version_after,
            custom_metadata,
        }) => {
            let at = resolve_kv(client, &target).await?;
            let mut body = Map::new();
            if let Some(max_versions) = max_versions {
                body.insert("max_versions".into(), json!(max_versions));
            }
            if let Some(cas_required) = cas_required {
                body.insert("cas_required".into(), json!(cas_required));
            }
            if let Some(after) = delete_version_after {
                body.insert("delete_version_after".into(), json!(after));
            }
            if !custom_metadata.is_empty() {
                body.insert("custom_metadata".into(), parse_pairs(&custom_metadata)?);
            }
            client
                .call("POST", &at.v2("metadata"), Some(&Value::Object(body)))
                .await?;
            println!("Success! Data written to: {}", at.v2("metadata"));
            Ok(0)
        }
        Kv::Metadata(KvMetadata::Delete { target }) => {
            let at = resolve_kv(client, &target).await?;
            client.call("DELETE", &at.v2("metadata"), None).await?;
            println!(
                "Success! Data deleted (if it existed) at: {}",
                at.v2("metadata")
            );
            Ok(0)
        }
    }
}
