//! The core's view of the replicated store: [`Replica`], the storage
//! [`Backend`] plus what the core asks of the cluster (leadership, forwarding,
//! membership, lifecycle). `raft::Cluster` implements it over Raft and RocksDB;
//! [`memory::MemoryReplica`] implements it in memory, so the core's pipeline is
//! unit-tested without either.

#[cfg(test)]
pub mod memory;

use std::sync::Arc;
use std::time::Duration;

use coffer_protocols::{Request, Response};

use crate::raft::NodeInfo;
use crate::raft::cluster::{Cluster, Indexes, Member, Settings};
use crate::raft::store::ApplyObserver;
use crate::raft::tls::Identity;
use crate::storage::{self, Backend, BoxFuture};

/// A node's replica of the store and its place in the cluster.
pub trait Replica: Backend {
    /// This node's id in the cluster.
    fn id(&self) -> u64;

    /// This node's name and addresses.
    fn settings(&self) -> &Settings;

    /// Who hears of every applied write, before the applied index advances.
    fn set_observer(&self, observer: Option<Arc<dyn ApplyObserver>>);

    /// Whether replication runs (a sealed member's does not).
    fn is_running(&self) -> bool;

    /// Starts replication, with the identity peers know this node by.
    fn start<'a>(
        self: Arc<Self>,
        identity: Option<&'a Identity>,
    ) -> BoxFuture<'a, Result<(), storage::Error>>;

    /// Stops replication; the replica stays readable.
    fn stop(&self) -> BoxFuture<'_, ()>;

    /// Makes this node a one-member cluster (initialization).
    fn bootstrap(self: Arc<Self>) -> BoxFuture<'static, Result<(), storage::Error>>;

    fn is_leader(&self) -> bool;

    /// The leader's id and addresses, when there is one.
    fn leader(&self) -> Option<(u64, NodeInfo)>;

    fn indexes(&self) -> Indexes;

    /// Waits until this replica has applied `index`.
    fn wait_applied(
        &self,
        index: u64,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<(), storage::Error>>;

    /// Runs `request` on the leader; `None` when this node leads now.
    fn forward_request<'a>(
        &'a self,
        request: &'a Request,
    ) -> BoxFuture<'a, Result<Option<Response>, storage::Error>>;

    fn members(&self) -> Vec<Member>;

    fn add_member(&self, id: u64, node: NodeInfo) -> BoxFuture<'_, Result<(), storage::Error>>;

    fn remove_member(&self, id: u64) -> BoxFuture<'_, Result<(), storage::Error>>;

    /// The whole replica as a snapshot file (`raft_meta` goes into its header).
    fn export(&self, raft_meta: serde_json::Value) -> Result<Vec<u8>, storage::Error>;

    /// The index of the last write this replica applied.
    fn applied_index(&self) -> u64;
}

impl Replica for Cluster {
    fn id(&self) -> u64 {
        Cluster::id(self)
    }

    fn settings(&self) -> &Settings {
        Cluster::settings(self)
    }

    fn set_observer(&self, observer: Option<Arc<dyn ApplyObserver>>) {
        Cluster::set_observer(self, observer);
    }

    fn is_running(&self) -> bool {
        self.raft().is_some()
    }

    fn start<'a>(
        self: Arc<Self>,
        identity: Option<&'a Identity>,
    ) -> BoxFuture<'a, Result<(), storage::Error>> {
        Box::pin(async move { Cluster::start(&self, identity).await })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(Cluster::stop(self))
    }

    fn bootstrap(self: Arc<Self>) -> BoxFuture<'static, Result<(), storage::Error>> {
        Box::pin(async move { Cluster::bootstrap(&self).await })
    }

    fn is_leader(&self) -> bool {
        Cluster::is_leader(self)
    }

    fn leader(&self) -> Option<(u64, NodeInfo)> {
        Cluster::leader(self)
    }

    fn indexes(&self) -> Indexes {
        Cluster::indexes(self)
    }

    fn wait_applied(
        &self,
        index: u64,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<(), storage::Error>> {
        Box::pin(Cluster::wait_applied(self, index, timeout))
    }

    fn forward_request<'a>(
        &'a self,
        request: &'a Request,
    ) -> BoxFuture<'a, Result<Option<Response>, storage::Error>> {
        Box::pin(Cluster::forward_request(self, request))
    }

    fn members(&self) -> Vec<Member> {
        Cluster::members(self)
    }

    fn add_member(&self, id: u64, node: NodeInfo) -> BoxFuture<'_, Result<(), storage::Error>> {
        Box::pin(Cluster::add_member(self, id, node))
    }

    fn remove_member(&self, id: u64) -> BoxFuture<'_, Result<(), storage::Error>> {
        Box::pin(Cluster::remove_member(self, id))
    }

    fn export(&self, raft_meta: serde_json::Value) -> Result<Vec<u8>, storage::Error> {
        self.storage().export(raft_meta)
    }

    fn applied_index(&self) -> u64 {
        self.storage().applied_index()
    }
}
