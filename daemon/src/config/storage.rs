//! The `storage "raft"` block: where the replica lives, this node's name, and the peers `retry_join` asks to join.

use std::path::PathBuf;

use super::{single_label, string, unknown};
use crate::hcl;

/// `node_id` when the host has no name to give.
pub const FALLBACK_NODE_ID: &str = "node1";

#[derive(Debug, Clone, PartialEq)]
pub struct Storage {
    /// `path`: the data directory (created with mode 0700 if missing).
    pub path: PathBuf,
    /// `node_id`: this node's name in the cluster (default: the host name).
    pub node_id: String,
    /// `retry_join { ... }` blocks: leaders to join through when this node has no
    /// cluster yet (tried in turn until one answers).
    pub retry_join: Vec<RetryJoin>,
}

/// One `retry_join` block.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryJoin {
    /// `leader_api_addr`: the client API address of a member, `http(s)://host:port`.
    pub leader_api_addr: String,
    /// `leader_ca_cert_file`: a PEM CA to trust for that API's TLS.
    pub leader_ca_cert_file: Option<PathBuf>,
}

pub(super) fn parse_storage(block: &hcl::Block) -> Result<Storage, hcl::Error> {
    let kind = single_label(block, "storage")?;
    if kind != "raft" {
        return Err(hcl::Error::new(
            block.line,
            format!("unsupported storage type {kind:?}: coffer stores through \"raft\""),
        ));
    }
    let mut path = None;
    let mut node_id = None;
    for attribute in &block.body.attributes {
        match attribute.key.as_str() {
            "path" => path = Some(PathBuf::from(string(&attribute.value, "path")?)),
            "node_id" => node_id = Some(string(&attribute.value, "node_id")?),
            other => return Err(unknown(attribute.line, other, "storage \"raft\"")),
        }
    }
    let mut retry_join = Vec::new();
    for nested in &block.body.blocks {
        if nested.ident != "retry_join" || !nested.labels.is_empty() {
            return Err(hcl::Error::new(
                nested.line,
                format!("unknown block {:?} in storage \"raft\"", nested.ident),
            ));
        }
        let mut leader_api_addr = None;
        let mut leader_ca_cert_file = None;
        for attribute in &nested.body.attributes {
            match attribute.key.as_str() {
                "leader_api_addr" => {
                    let address = string(&attribute.value, "leader_api_addr")?;
                    if !address.starts_with("http://") && !address.starts_with("https://") {
                        return Err(hcl::Error::new(
                            attribute.line,
                            "leader_api_addr must start with http:// or https://",
                        ));
                    }
                    leader_api_addr = Some(address);
                }
                "leader_ca_cert_file" => {
                    leader_ca_cert_file = Some(PathBuf::from(string(
                        &attribute.value,
                        "leader_ca_cert_file",
                    )?))
                }
                other => return Err(unknown(attribute.line, other, "retry_join")),
            }
        }
        retry_join.push(RetryJoin {
            leader_api_addr: leader_api_addr.ok_or_else(|| {
                hcl::Error::new(nested.line, "retry_join needs a leader_api_addr")
            })?,
            leader_ca_cert_file,
        });
    }
    let path = path.ok_or_else(|| hcl::Error::new(block.line, "storage \"raft\" needs a path"))?;
    let node_id = match node_id {
        Some(node_id) if !node_id.is_empty() => node_id,
        Some(_) => return Err(hcl::Error::new(block.line, "node_id must not be empty")),
        None => default_node_id(),
    };
    Ok(Storage {
        path,
        node_id,
        retry_join,
    })
}

pub(super) fn default_node_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| FALLBACK_NODE_ID.to_owned())
}
