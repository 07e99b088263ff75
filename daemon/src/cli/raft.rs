//! `coffer operator raft`: members, joining, removal and snapshots.

use super::client::Client;
use super::output;
use super::output::Format;
use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;
use serde_json::json;
use std::path::PathBuf;

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

pub(super) async fn raft(client: &Client, format: Format, command: Raft) -> anyhow::Result<i32> {
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
pub(super) fn write_private_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
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
