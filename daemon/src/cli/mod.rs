//! The `coffer` command line: `coffer server`, and client subcommands in the
//! vault CLI's shapes (`status`, `operator`, `kv`, `read`/`write`/`list`/`delete`,
//! `token`, `policy`, `secrets`). Like the vault CLI, long flags take one dash
//! (`-format=json`); two dashes work too.

mod client;
mod output;

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value, json};

pub use client::ApiFailure;
use client::Client;
use output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "coffer",
    version,
    about = "coffer: a secrets appliance for Linux hosts"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Output format of client commands.
    #[arg(long, global = true, value_enum, default_value = "table")]
    pub format: Format,
    /// Server address (default: $COFFER_ADDR, $VAULT_ADDR, http://127.0.0.1:8200).
    #[arg(long, global = true)]
    pub address: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Server(ServerArgs),
    /// Print the seal status (exit code 2 when sealed).
    Status,
    /// Initialize, unseal, seal and rotate.
    #[command(subcommand)]
    Operator(Operator),
    /// Read and write key-value secrets (v1 and v2 mounts).
    #[command(subcommand)]
    Kv(Kv),
    /// Read any path.
    Read {
        path: String,
        /// Print only this field's value.
        #[arg(long)]
        field: Option<String>,
    },
    /// Write KEY=VALUE pairs to any path (VALUE may be @file or - for stdin).
    Write { path: String, pairs: Vec<String> },
    /// List the keys under a path.
    List { path: String },
    /// Delete a path.
    Delete { path: String },
    /// Create, look up, renew and revoke tokens.
    #[command(subcommand)]
    Token(Token),
    /// Manage ACL policies.
    #[command(subcommand)]
    Policy(Policy),
    /// Enable, disable and list secrets engines.
    #[command(subcommand)]
    Secrets(Secrets),
    /// Enable, disable and list audit devices.
    #[command(subcommand)]
    Audit(Audit),
    /// Look up, renew and revoke leases.
    #[command(subcommand)]
    Lease(Lease),
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The HCL configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run an initialized, unsealed development server with KV v2 at secret/.
    #[arg(long)]
    pub dev: bool,
    /// The dev server's root token (default: random).
    #[arg(long, requires = "dev")]
    pub dev_root_token: Option<String>,
    /// The dev server's listen address (default 127.0.0.1:8200).
    #[arg(long, requires = "dev")]
    pub dev_listen: Option<String>,
    /// Mount the dev server's /secrets filesystem at this empty directory.
    #[arg(long, requires = "dev", value_name = "PATH")]
    pub dev_fuse: Option<PathBuf>,
    /// Also serve the dev server's API on a Unix socket at this path (mode 0666;
    /// callers without a token are authenticated by their uid through
    /// `auth/local` roles).
    #[arg(long, requires = "dev", value_name = "PATH")]
    pub dev_unix: Option<PathBuf>,
    /// Let the dev server's `sys/audit` enable devices, as a config file's
    /// `unsafe_allow_api_audit_creation = true` does.
    #[arg(long, requires = "dev")]
    pub dev_unsafe_allow_api_audit_creation: bool,
    /// Also serve the dev server's gRPC API (plain HTTP/2) at this host:port.
    #[arg(long, requires = "dev", value_name = "ADDR")]
    pub dev_grpc_listen: Option<String>,
    /// Data directory (dev: default a throwaway temporary directory; with
    /// --config: overrides storage "raft" path).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// trace, debug, info, warn or error (default: the config's log_level, or info).
    #[arg(long)]
    pub log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Operator {
    /// Initialize a new server and print its unseal keys and root token.
    Init {
        #[arg(long, default_value_t = 5)]
        key_shares: u8,
        #[arg(long, default_value_t = 3)]
        key_threshold: u8,
    },
    /// Submit one unseal key share (read from stdin when not given).
    Unseal {
        key: Option<String>,
        /// Discard the shares submitted so far.
        #[arg(long)]
        reset: bool,
    },
    /// Seal the server.
    Seal,
    /// Add a new encryption key term.
    Rotate,
    /// Manage the Raft cluster.
    #[command(subcommand)]
    Raft(Raft),
}

#[derive(Debug, Subcommand)]
pub enum Raft {
    /// Join this node (COFFER_ADDR) to the cluster that LEADER_API_ADDR belongs to;
    /// then unseal it with that cluster's key shares.
    Join {
        leader_api_addr: String,
        /// A PEM file with the CA that signed the leader's API certificate.
        #[arg(long)]
        leader_ca_cert: Option<PathBuf>,
        /// Join as a non-voter: it replicates but never counts for quorum.
        #[arg(long)]
        non_voter: bool,
    },
    /// List the cluster's members.
    ListPeers,
    /// Remove a member from the cluster.
    RemovePeer { server_id: String },
    /// Save or restore a snapshot of the whole store.
    #[command(subcommand)]
    Snapshot(Snapshot),
}

#[derive(Debug, Subcommand)]
pub enum Snapshot {
    /// Save a snapshot (ciphertext, as stored) to FILE.
    Save { file: PathBuf },
    /// Replace the whole store with the snapshot in FILE.
    Restore {
        file: PathBuf,
        /// Restore a snapshot of another cluster; the servers seal and must be
        /// unsealed with that cluster's key shares.
        #[arg(long)]
        force: bool,
    },
}

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
    Get {
        #[command(flatten)]
        target: KvTarget,
    },
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

#[derive(Debug, Subcommand)]
pub enum Policy {
    /// Upload a policy from a file (or - for stdin).
    Write {
        name: String,
        file: String,
    },
    Read {
        name: String,
    },
    List,
    Delete {
        name: String,
    },
}

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
    Disable {
        path: String,
    },
    List,
}

#[derive(Debug, Subcommand)]
pub enum Lease {
    /// Show a lease's times and TTL.
    Lookup { lease_id: String },
    /// Extend a lease (within its max TTL).
    Renew {
        lease_id: String,
        /// How much to extend it by, e.g. `1h` (default: the lease's TTL).
        #[arg(long)]
        increment: Option<String>,
    },
    /// Revoke a lease, or every lease under a prefix.
    Revoke {
        lease_id: String,
        /// Revoke every lease under LEASE_ID as a prefix.
        #[arg(long)]
        prefix: bool,
        /// Remove the leases without revoking what they stand for (with
        /// --prefix; for irrevocable leases).
        #[arg(long, requires = "prefix")]
        force: bool,
        /// Return at once; the leader revokes in the background.
        #[arg(long)]
        no_sync: bool,
    },
}

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

/// Rewrites vault-style single-dash long flags (`-format=json`) to clap's
/// double-dash form. Arguments after `--` are left alone.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut normalized = Vec::new();
    let mut passthrough = false;
    for (index, argument) in args.into_iter().enumerate() {
        if index == 0 || passthrough {
            normalized.push(argument);
            continue;
        }
        if argument == "--" {
            passthrough = true;
            normalized.push(argument);
            continue;
        }
        let name = argument
            .strip_prefix('-')
            .filter(|rest| !rest.starts_with('-'))
            .map(|rest| rest.split('=').next().unwrap_or(rest));
        match name {
            Some(name)
                if name.len() > 1
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    && name.starts_with(|c: char| c.is_ascii_alphabetic()) =>
            {
                normalized.push(format!("-{argument}"))
            }
            _ => normalized.push(argument),
        }
    }
    normalized
}

/// Runs a client subcommand. Returns the process exit code.
pub async fn run_client(cli: Cli) -> anyhow::Result<i32> {
    let client = Client::new(cli.address.clone())?;
    let format = cli.format;
    match cli.command {
        Command::Server(_) => bail!("`coffer server` is not a client command"),
        Command::Status => status(&client, format).await,
        Command::Operator(command) => operator(&client, format, command).await,
        Command::Kv(command) => kv(&client, format, command).await,
        Command::Read { path, field } => {
            let answer = client.call("GET", &path, None).await?;
            print_answer(format, answer.as_ref(), field.as_deref())
        }
        Command::Write { path, pairs } => {
            let data = parse_pairs(&pairs)?;
            let answer = client.call("PUT", &path, Some(&data)).await?;
            match answer {
                Some(answer) => print_answer(format, Some(&answer), None),
                None => {
                    println!("Success! Data written to: {path}");
                    Ok(0)
                }
            }
        }
        Command::List { path } => {
            let answer = client.call("LIST", &path, None).await?;
            print_keys(format, answer.as_ref())
        }
        Command::Delete { path } => {
            client.call("DELETE", &path, None).await?;
            println!("Success! Data deleted (if it existed) at: {path}");
            Ok(0)
        }
        Command::Token(command) => token(&client, format, command).await,
        Command::Policy(command) => policy(&client, format, command).await,
        Command::Secrets(command) => secrets(&client, format, command).await,
        Command::Audit(command) => audit(&client, format, command).await,
        Command::Lease(command) => lease(&client, format, command).await,
    }
}

fn print_answer(
    format: Format,
    answer: Option<&Value>,
    field: Option<&str>,
) -> anyhow::Result<i32> {
    let Some(answer) = answer else {
        println!("Success!");
        return Ok(0);
    };
    if let Some(field) = field {
        let value = answer
            .pointer(&format!("/data/{field}"))
            .or_else(|| answer.pointer(&format!("/auth/{field}")))
            .with_context(|| format!("field {field:?} is not present in the answer"))?;
        print!("{}", output::cell(value));
        return Ok(0);
    }
    match format {
        Format::Json => output::json(answer),
        Format::Table => {
            if let Some(auth) = answer.get("auth").and_then(Value::as_object) {
                output::map_table(auth);
            } else if let Some(data) = answer.get("data").and_then(Value::as_object) {
                output::map_table(data);
            } else {
                output::json(answer);
            }
        }
    }
    Ok(0)
}

fn print_keys(format: Format, answer: Option<&Value>) -> anyhow::Result<i32> {
    match (format, answer) {
        (Format::Json, Some(answer)) => {
            output::json(answer.pointer("/data/keys").unwrap_or(&Value::Null))
        }
        (Format::Table, Some(answer)) => output::keys(answer),
        (_, None) => {}
    }
    Ok(0)
}

/// `KEY=VALUE` pairs into a JSON object; `VALUE` may be `@file` or `-` (stdin).
fn parse_pairs(pairs: &[String]) -> anyhow::Result<Value> {
    let mut data = Map::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("{pair:?} is not KEY=VALUE"))?;
        let value = if value == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read stdin")?;
            text
        } else if let Some(path) = value.strip_prefix('@') {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
        } else {
            value.to_owned()
        };
        data.insert(key.to_owned(), Value::String(value));
    }
    Ok(Value::Object(data))
}

async fn status(client: &Client, format: Format) -> anyhow::Result<i32> {
    let status = client
        .call("GET", "sys/seal-status", None)
        .await?
        .unwrap_or(Value::Null);
    let sealed = status
        .get("sealed")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    match format {
        Format::Json => output::json(&status),
        Format::Table => {
            let field = |key: &str| status.get(key).map(output::cell).unwrap_or_default();
            let mut rows = vec![
                ("Seal Type".to_owned(), field("type")),
                ("Initialized".to_owned(), field("initialized")),
                ("Sealed".to_owned(), field("sealed")),
                ("Total Shares".to_owned(), field("n")),
                ("Threshold".to_owned(), field("t")),
            ];
            if sealed {
                rows.push((
                    "Unseal Progress".to_owned(),
                    format!("{}/{}", field("progress"), field("t")),
                ));
                rows.push(("Unseal Nonce".to_owned(), field("nonce")));
            }
            rows.push(("Version".to_owned(), field("version")));
            rows.push(("Storage Type".to_owned(), field("storage_type")));
            if !sealed {
                rows.push(("Cluster Name".to_owned(), field("cluster_name")));
                rows.push(("Cluster ID".to_owned(), field("cluster_id")));
            }
            output::table(&rows);
        }
    }
    Ok(if sealed { 2 } else { 0 })
}

async fn operator(client: &Client, format: Format, command: Operator) -> anyhow::Result<i32> {
    match command {
        Operator::Init {
            key_shares,
            key_threshold,
        } => {
            let answer = client
                .call(
                    "PUT",
                    "sys/init",
                    Some(&json!({"secret_shares": key_shares, "secret_threshold": key_threshold})),
                )
                .await?
                .unwrap_or(Value::Null);
            if format == Format::Json {
                output::json(&answer);
                return Ok(0);
            }
            let keys = answer
                .get("keys_base64")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (index, key) in keys.iter().enumerate() {
                println!("Unseal Key {}: {}", index + 1, output::cell(key));
            }
            println!();
            println!(
                "Initial Root Token: {}",
                answer
                    .get("root_token")
                    .map(output::cell)
                    .unwrap_or_default()
            );
            println!();
            println!(
                "coffer initialized with {key_shares} key shares and a key threshold of {key_threshold}."
            );
            println!("Distribute the key shares to trusted operators; the server starts sealed:");
            println!("unseal it with `coffer operator unseal` and {key_threshold} of the keys.");
            Ok(0)
        }
        Operator::Unseal { key, reset } => {
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
                let key = match key {
                    Some(key) => key,
                    None => {
                        eprint!("Unseal Key (read from stdin): ");
                        let mut line = String::new();
                        std::io::stdin()
                            .read_line(&mut line)
                            .context("cannot read the key from stdin")?;
                        line.trim().to_owned()
                    }
                };
                json!({"key": key})
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

async fn raft(client: &Client, format: Format, command: Raft) -> anyhow::Result<i32> {
    match command {
        Raft::Join {
            leader_api_addr,
            leader_ca_cert,
            non_voter,
        } => {
            let mut body = json!({"leader_api_addr": leader_api_addr, "non_voter": non_voter});
            if let Some(path) = leader_ca_cert {
                let pem = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                body["leader_ca_cert"] = Value::String(pem);
            }
            let answer = client
                .call("PUT", "sys/storage/raft/join", Some(&body))
                .await?
                .unwrap_or(Value::Null);
            match format {
                Format::Json => output::json(&answer),
                Format::Table => output::table(&[(
                    "Joined".into(),
                    answer.get("joined").map(output::cell).unwrap_or_default(),
                )]),
            }
            Ok(0)
        }
        Raft::ListPeers => {
            let answer = client
                .call("GET", "sys/storage/raft/configuration", None)
                .await?
                .unwrap_or(Value::Null);
            if format == Format::Json {
                output::json(&answer);
                return Ok(0);
            }
            let servers = answer
                .pointer("/data/config/servers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let rows: Vec<Vec<String>> = servers
                .iter()
                .map(|server| {
                    let leader = server.get("leader").and_then(Value::as_bool) == Some(true);
                    vec![
                        server.get("node_id").map(output::cell).unwrap_or_default(),
                        server.get("address").map(output::cell).unwrap_or_default(),
                        if leader { "leader" } else { "follower" }.to_owned(),
                        server.get("voter").map(output::cell).unwrap_or_default(),
                    ]
                })
                .collect();
            output::columns(&["Node", "Address", "State", "Voter"], &rows);
            Ok(0)
        }
        Raft::RemovePeer { server_id } => {
            client
                .call(
                    "POST",
                    "sys/storage/raft/remove-peer",
                    Some(&json!({"server_id": server_id})),
                )
                .await?;
            println!("Peer removed successfully!");
            Ok(0)
        }
        Raft::Snapshot(Snapshot::Save { file }) => {
            let bytes = client
                .call_bytes("GET", "sys/storage/raft/snapshot", None)
                .await?;
            write_private_file(&file, &bytes)?;
            Ok(0)
        }
        Raft::Snapshot(Snapshot::Restore { file, force }) => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let path = if force {
                "sys/storage/raft/snapshot-force"
            } else {
                "sys/storage/raft/snapshot"
            };
            client.call_bytes("POST", path, Some(bytes)).await?;
            Ok(0)
        }
    }
}

/// Writes `bytes` to `path` readable by this user only (a snapshot holds the
/// sealed keys), replacing it atomically.
fn write_private_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let temporary = path.with_extension("partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot create {}", temporary.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
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

async fn kv(client: &Client, format: Format, command: Kv) -> anyhow::Result<i32> {
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

async fn token(client: &Client, format: Format, command: Token) -> anyhow::Result<i32> {
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

fn print_token_auth(format: Format, answer: Option<&Value>) -> anyhow::Result<i32> {
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

async fn policy(client: &Client, format: Format, command: Policy) -> anyhow::Result<i32> {
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

async fn lease(client: &Client, format: Format, command: Lease) -> anyhow::Result<i32> {
    match command {
        Lease::Lookup { lease_id } => {
            let body = json!({ "lease_id": lease_id });
            let answer = client.call("PUT", "sys/leases/lookup", Some(&body)).await?;
            print_answer(format, answer.as_ref(), None)
        }
        Lease::Renew {
            lease_id,
            increment,
        } => {
            let body = json!({ "lease_id": lease_id, "increment": increment });
            let answer = client.call("PUT", "sys/leases/renew", Some(&body)).await?;
            let answer = answer.unwrap_or(Value::Null);
            if format == Format::Json {
                output::json(&answer);
                return Ok(0);
            }
            let cell = |key: &str| answer.get(key).map(output::cell).unwrap_or_default();
            output::table(&[
                ("lease_id".into(), cell("lease_id")),
                ("lease_duration".into(), cell("lease_duration")),
                ("lease_renewable".into(), cell("renewable")),
            ]);
            Ok(0)
        }
        Lease::Revoke {
            lease_id,
            prefix,
            force,
            no_sync,
        } => {
            let body = json!({ "sync": !no_sync });
            let (path, body) = match (prefix, force) {
                (true, true) => (format!("sys/leases/revoke-force/{lease_id}"), None),
                (true, false) => (format!("sys/leases/revoke-prefix/{lease_id}"), Some(&body)),
                _ => (
                    "sys/leases/revoke".to_owned(),
                    Some(&json!({ "lease_id": lease_id, "sync": !no_sync })),
                ),
            };
            client.call("PUT", &path, body).await?;
            match (no_sync, prefix) {
                (true, _) => println!("Success! Revocation queued for: {lease_id}"),
                (false, true) => println!("Success! Revoked any leases with prefix: {lease_id}"),
                (false, false) => println!("Success! Revoked lease: {lease_id}"),
            }
            Ok(0)
        }
    }
}

async fn audit(client: &Client, format: Format, command: Audit) -> anyhow::Result<i32> {
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

async fn secrets(client: &Client, format: Format, command: Secrets) -> anyhow::Result<i32> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        normalize_args(list.iter().map(|arg| arg.to_string()))
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            args(&[
                "coffer",
                "kv",
                "get",
                "-format=json",
                "-mount",
                "secret",
                "app"
            ]),
            vec![
                "coffer",
                "kv",
                "get",
                "--format=json",
                "--mount",
                "secret",
                "app"
            ]
        );
        assert_eq!(
            args(&["coffer", "write", "x", "-"]),
            vec!["coffer", "write", "x", "-"]
        );
        assert_eq!(
            args(&["coffer", "--format=json"]),
            vec!["coffer", "--format=json"]
        );
        assert_eq!(args(&["coffer", "-h"]), vec!["coffer", "-h"]);
        assert_eq!(
            args(&["coffer", "--", "-x-y"]),
            vec!["coffer", "--", "-x-y"]
        );
        assert_eq!(args(&["coffer", "-5"]), vec!["coffer", "-5"]);
    }

    #[test]
    fn the_command_line_parses() {
        let cli = Cli::try_parse_from(args(&[
            "coffer",
            "token",
            "create",
            "-policy=a",
            "-policy=b",
            "-ttl=1h",
            "-format=json",
        ]))
        .unwrap();
        assert_eq!(cli.format, Format::Json);
        let Command::Token(Token::Create { policies, ttl, .. }) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!(policies, vec!["a", "b"]);
        assert_eq!(ttl.as_deref(), Some("1h"));
    }

    #[test]
    fn pairs_become_an_object() {
        assert_eq!(
            parse_pairs(&["a=1".into(), "b=x=y".into()]).unwrap(),
            json!({"a": "1", "b": "x=y"})
        );
        assert!(parse_pairs(&["novalue".into()]).is_err());
    }
}
