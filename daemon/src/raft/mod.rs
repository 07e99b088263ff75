//! Replication: every durable write is a Raft log entry (openraft), applied to a
//! state machine in RocksDB on every node. A one-member cluster is the default.
//!
//! - [`store`]: the log and state machine on RocksDB;
//! - [`snapshot`]: the snapshot format (Raft's and operators');
//! - [`cluster`]: the Raft instance's lifecycle and the [`crate::storage::Backend`]
//!   the core writes through;
//! - [`batcher`]: group commit: concurrent writes share a log entry;
//! - [`network`], [`transport`], [`tls`]: Raft RPCs between nodes over mutual TLS;
//! - [`join`]: how a new node proves it holds the unseal keys and is let in.

pub mod archive;
pub mod batcher;
pub mod cluster;
pub mod join;
pub mod network;
pub mod snapshot;
pub mod store;
pub mod tls;
pub mod transport;

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::storage::Command;

openraft::declare_raft_types!(
    /// openraft's type configuration for coffer.
    pub TypeConfig:
        D = Command,
        R = (),
        NodeId = u64,
        Node = NodeInfo,
);

pub type Raft = openraft::Raft<TypeConfig>;

/// What the cluster knows about a member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The operator's name for the node (`node_id` in the config).
    pub name: String,
    /// The node's client API address (`api_addr`), for redirects.
    pub api_addr: String,
    /// The node's cluster address (`cluster_addr`): host:port of its Raft listener.
    pub cluster_addr: String,
    /// A non-voter replicates but is never promoted and never counts for quorum.
    #[serde(default)]
    pub non_voter: bool,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} ({})", self.name, self.cluster_addr)
    }
}

/// The Raft id of a node: the first 8 bytes of SHA-256 of its name. Names are what
/// operators see; the id is what Raft and certificates carry.
pub fn node_id(name: &str) -> u64 {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(bytes).max(1)
}

/// Raft timing. Heartbeats every 100 ms. openraft lets a follower campaign only
/// once the leader's lease (`election_timeout_max`) and its own election timeout
/// (random in `min..max`) have passed without a heartbeat: 0.9 to 1.2 s here,
/// about etcd's default. Without pre-vote, the first campaign is often wasted
/// (the follower with the shorter log times out first and is refused, and its
/// own vote then holds a lease), so a dead leader is replaced in 1 to 2.5 s. A
/// live leader would have to miss 9 heartbeats in a row before anyone campaigns.
pub fn config() -> openraft::Config {
    openraft::Config {
        cluster_name: "coffer".into(),
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        install_snapshot_timeout: 30_000,
        max_payload_entries: 512,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5_000),
        max_in_snapshot_log_to_keep: 1_000,
        purge_batch_size: 512,
        ..openraft::Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_stable_and_distinct() {
        assert_eq!(node_id("n1"), node_id("n1"));
        assert_ne!(node_id("n1"), node_id("n2"));
        assert_ne!(node_id(""), 0);
    }

    #[test]
    fn the_raft_config_is_valid() {
        config().validate().unwrap();
    }
}
