//! The Raft instance's lifecycle and the [`Backend`] the core writes through.
//!
//! Raft runs while the node is unsealed, as Vault's does: its network identity is
//! issued from the cluster CA, which lives behind the barrier. A sealed node reads
//! its own replica (the seal records) and takes part in nothing. Writes go to Raft;
//! a follower forwards them to the leader over mutual TLS and waits until its own
//! replica has applied them, so a read after a write on the same node sees it.
//! Every write is bounded in time: without a quorum it fails with `Unavailable`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use coffer_protocols::{Request, Response};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use super::batcher::Batcher;
use super::network::{self, Network, Peers};
use super::store::{ApplyObserver, LogStore, StateMachine, Storage};
use super::tls::Identity;
use super::transport::{self, BoxFuture, RpcHandler};
use super::{NodeInfo, Raft, node_id};
use crate::storage::{self, Backend, Command};

/// How long a write may wait for a leader and a quorum.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a forwarded request may take beyond the leader's own write timeout.
const FORWARD_GRACE: Duration = Duration::from_secs(2);
/// A learner this close to the leader's last log index is promoted to voter.
const PROMOTION_LAG: u64 = 100;
/// How often the leader looks for learners to promote.
const PROMOTION_INTERVAL: Duration = Duration::from_millis(500);

/// Where this node is and what it is called.
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    pub api_addr: String,
    /// Advertised to other members, `https://host:port`; empty without a cluster
    /// listener (a dev server).
    pub cluster_addr: String,
}

/// Runs forwarded client requests on this node (the leader): the core.
pub trait ForwardHandler: Send + Sync {
    fn forward(&self, request: Request) -> BoxFuture<'_, Response>;
}

/// The version of the forwarding request this build sends. A leader runs
/// requests up to its own version and refuses newer ones; a request from
/// before versions existed reads as version 1.
pub const FORWARD_VERSION: u32 = 1;

/// A client request as a standby forwards it: the request's own JSON with a
/// version (`"v"`) beside its fields.
#[derive(Serialize)]
struct ForwardedRequest<'a> {
    #[serde(rename = "v")]
    version: u32,
    #[serde(flatten)]
    request: &'a Request,
}

/// The version of a forwarded request's body.
#[derive(Deserialize)]
struct WireVersion {
    #[serde(rename = "v", default = "first_version")]
    version: u32,
}

fn first_version() -> u32 {
    1
}

/// Reads a forwarded request, refusing one from a newer coffer.
fn decode_forwarded(body: &[u8]) -> Result<Request, String> {
    let malformed = |_| "malformed RPC body".to_owned();
    let WireVersion { version } = serde_json::from_slice(body).map_err(malformed)?;
    if version > FORWARD_VERSION {
        return Err(format!(
            "the request was forwarded by a newer coffer (version {version}; this leader reads up \
             to {FORWARD_VERSION}): upgrade this node"
        ));
    }
    serde_json::from_slice(body).map_err(malformed)
}

/// A forwarded request's answer and the leader's applied index after it.
#[derive(Serialize, Deserialize)]
pub struct Forwarded {
    pub response: Response,
    pub index: u64,
}

#[derive(Serialize, Deserialize)]
enum ApplyAnswer {
    Applied(u64),
    Unavailable(String),
}

struct Running {
    raft: Raft,
    listener: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
    promoter: tokio::task::JoinHandle<()>,
}

pub struct Cluster {
    storage: Arc<Storage>,
    settings: Settings,
    /// Bound at startup (so a port conflict fails early); served while unsealed.
    listener: Option<std::net::TcpListener>,
    id: u64,
    peers: Arc<Peers>,
    running: RwLock<Option<Arc<Running>>>,
    lifecycle: Mutex<()>,
    forwarder: RwLock<Option<Weak<dyn ForwardHandler>>>,
    batcher: Batcher,
}

fn unavailable(message: impl Into<String>) -> storage::Error {
    storage::Error::Unavailable(message.into())
}

impl Cluster {
    pub fn open(
        directory: &std::path::Path,
        settings: Settings,
        listener: Option<std::net::TcpListener>,
    ) -> Result<Arc<Cluster>, storage::Error> {
        let storage = Storage::open(directory)?;
        Ok(Arc::new_cyclic(|cluster| Cluster {
            storage,
            listener,
            id: node_id(&settings.name),
            settings,
            peers: Arc::new(Peers::default()),
            running: RwLock::new(None),
            lifecycle: Mutex::new(()),
            forwarder: RwLock::new(None),
            batcher: Batcher::start(cluster.clone()),
        }))
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn node_info(&self) -> NodeInfo {
        NodeInfo {
            name: self.settings.name.clone(),
            api_addr: self.settings.api_addr.clone(),
            cluster_addr: self.settings.cluster_addr.clone(),
            non_voter: false,
        }
    }

    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    pub fn set_forwarder(&self, forwarder: Weak<dyn ForwardHandler>) {
        *self
            .forwarder
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(forwarder);
    }

    pub fn set_observer(&self, observer: Option<Arc<dyn ApplyObserver>>) {
        self.storage.set_observer(observer);
    }

    fn running(&self) -> Option<Arc<Running>> {
        self.running
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn raft(&self) -> Option<Raft> {
        self.running().map(|running| running.raft.clone())
    }

    /// Whether this node has been part of a cluster (initialized or joined).
    pub fn has_state(&self) -> bool {
        self.storage.has_raft_state()
    }

    /// Starts Raft (and, with an identity, the cluster listener and RPC clients).
    pub async fn start(
        self: &Arc<Self>,
        identity: Option<&Identity>,
    ) -> Result<(), storage::Error> {
        let _lifecycle = self.lifecycle.lock().await;
        if self.running().is_some() {
            return Ok(());
        }
        self.peers
            .set_identity(identity)
            .map_err(|error| unavailable(error.to_string()))?;
        let config = Arc::new(super::config());
        let raft = Raft::new(
            self.id,
            config,
            Network {
                peers: self.peers.clone(),
            },
            LogStore::new(self.storage.clone()),
            StateMachine::new(self.storage.clone()),
        )
        .await
        .map_err(|error| storage::Error::Engine(format!("cannot start raft: {error}")))?;
        let listener = match (identity, &self.listener) {
            (Some(identity), Some(listener)) => {
                let tcp = listener
                    .try_clone()
                    .and_then(TcpListener::from_std)
                    .map_err(|error| {
                        storage::Error::Engine(format!("cluster listener: {error}"))
                    })?;
                let address = self.settings.cluster_addr.clone();
                let server_config = identity
                    .server_config()
                    .map_err(|error| storage::Error::Engine(error.to_string()))?;
                let (stop, stopped) = watch::channel(false);
                let handler: Arc<dyn RpcHandler> = self.clone();
                let task = tokio::spawn(transport::serve(tcp, server_config, handler, stopped));
                tracing::info!(%address, "cluster listener started");
                Some((stop, task))
            }
            _ => None,
        };
        // A one-member cluster need not wait out an election timeout.
        let membership = self.storage.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        if voters == [self.id] {
            let _ = raft.trigger().elect().await;
            // Serve writes as soon as unsealing returns.
            let _ = raft
                .wait(Some(WRITE_TIMEOUT))
                .current_leader(self.id, "single-member cluster")
                .await;
        }
        let promoter = {
            let cluster = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(PROMOTION_INTERVAL);
                loop {
                    interval.tick().await;
                    let Some(cluster) = cluster.upgrade() else {
                        return;
                    };
                    cluster.promote_caught_up_learners().await;
                }
            })
        };
        *self
            .running
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(Running {
            raft,
            listener,
            promoter,
        }));
        Ok(())
    }

    /// Stops Raft and the cluster listener (sealing).
    pub async fn stop(&self) {
        let _lifecycle = self.lifecycle.lock().await;
        let running = self
            .running
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(running) = running {
            running.promoter.abort();
            if let Err(error) = running.raft.shutdown().await {
                tracing::warn!(%error, "raft did not shut down cleanly");
            }
            if let Some((stop, task)) = &running.listener {
                let _ = stop.send(true);
                task.abort();
            }
        }
        let _ = self.peers.set_identity(None);
    }

    /// Creates a one-member cluster of this node and waits until it leads.
    pub async fn bootstrap(self: &Arc<Self>) -> Result<(), storage::Error> {
        self.start(None).await?;
        let raft = self
            .raft()
            .ok_or_else(|| unavailable("raft did not start"))?;
        let mut members = BTreeMap::new();
        members.insert(self.id, self.node_info());
        raft.initialize(members)
            .await
            .map_err(|error| storage::Error::Engine(format!("cannot initialize raft: {error}")))?;
        raft.wait(Some(Duration::from_secs(10)))
            .current_leader(self.id, "bootstrap")
            .await
            .map_err(|error| unavailable(format!("this node did not become leader: {error}")))?;
        Ok(())
    }

    pub fn is_leader(&self) -> bool {
        self.raft()
            .map(|raft| raft.metrics().borrow().state == ServerState::Leader)
            .unwrap_or(false)
    }

    /// The current leader and what the cluster knows of it.
    pub fn leader(&self) -> Option<(u64, NodeInfo)> {
        let raft = self.raft()?;
        let metrics = raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        // A restarted node remembers its own old term's vote and names itself
        // until it hears from the cluster; it leads only in the Leader state.
        if leader == self.id && metrics.state != ServerState::Leader {
            return None;
        }
        let node = metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned()?;
        Some((leader, node))
    }

    /// This node's log positions: what it knows is committed and what its replica
    /// has applied.
    pub fn indexes(&self) -> Indexes {
        let applied = self.storage.applied_index();
        let committed = self
            .raft()
            .and_then(|raft| raft.metrics().borrow().last_log_index)
            .unwrap_or(applied)
            .max(applied);
        Indexes { committed, applied }
    }

    /// Whether `id` is a voter or learner in the membership this node knows.
    fn is_member(&self, id: u64) -> bool {
        let membership = match self.raft() {
            Some(raft) => raft.metrics().borrow().membership_config.clone(),
            None => Arc::new(self.storage.membership()),
        };
        let membership = membership.membership();
        membership.get_node(&id).is_some()
    }

    /// Whether this node knows of any membership (a fresh joiner does not yet).
    fn knows_membership(&self) -> bool {
        match self.raft() {
            Some(raft) => raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .nodes()
                .next()
                .is_some(),
            None => self.storage.membership().nodes().next().is_some(),
        }
    }

    /// Waits until this replica has applied `index` (bounded).
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), storage::Error> {
        let mut applied = self.storage.watch_applied();
        let reached =
            tokio::time::timeout(timeout, applied.wait_for(|current| *current >= index)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(unavailable(format!(
                "this node did not apply index {index} within {timeout:?}"
            ))),
        }
    }

    /// Commits `command` here, as the leader; never forwards.
    async fn write_as_leader(
        &self,
        command: Command,
        deadline: Instant,
    ) -> Result<u64, storage::Error> {
        let raft = self
            .raft()
            .ok_or_else(|| unavailable("this node is sealed: its Raft is not running"))?;
        match tokio::time::timeout_at(deadline, raft.client_write(command)).await {
            Err(_) => Err(unavailable(format!(
                "the write was not committed within {WRITE_TIMEOUT:?}: the cluster has no quorum"
            ))),
            Ok(Ok(response)) => Ok(response.log_id.index),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Err(unavailable("this node is no longer the leader"))
            }
            Ok(Err(error)) => Err(unavailable(format!("raft: {error}"))),
        }
    }

    /// Commits `command` through the leader, wherever it is, and waits until this
    /// replica has applied it. The core's writes come here through the batcher.
    pub(super) async fn write(&self, command: Command) -> Result<u64, storage::Error> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        loop {
            let raft = self
                .raft()
                .ok_or_else(|| unavailable("this node is sealed: its Raft is not running"))?;
            let attempt =
                tokio::time::timeout_at(deadline, raft.client_write(command.clone())).await;
            match attempt {
                Err(_) => {
                    return Err(unavailable(format!(
                        "the write was not committed within {WRITE_TIMEOUT:?}: the cluster has no quorum"
                    )));
                }
                Ok(Ok(response)) => return Ok(response.log_id.index),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
                    if let (Some(leader), Some(node)) = (forward.leader_id, forward.leader_node)
                        && leader != self.id
                    {
                        return self.forward_command(leader, &node, command, deadline).await;
                    }
                }
                Ok(Err(error)) => return Err(unavailable(format!("raft: {error}"))),
            }
            if Instant::now() >= deadline {
                return Err(unavailable(format!(
                    "no leader was elected within {WRITE_TIMEOUT:?}: the cluster has no quorum"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn forward_command(
        &self,
        leader: u64,
        node: &NodeInfo,
        command: Command,
        deadline: Instant,
    ) -> Result<u64, storage::Error> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let answer: ApplyAnswer = self
            .peers
            .call(leader, node, "/v1/cluster/apply", &command, remaining)
            .await
            .map_err(|error| {
                unavailable(format!(
                    "forwarding the write to the leader failed: {error}"
                ))
            })?;
        match answer {
            ApplyAnswer::Applied(index) => {
                self.wait_applied(index, deadline.saturating_duration_since(Instant::now()))
                    .await?;
                Ok(index)
            }
            ApplyAnswer::Unavailable(message) => Err(unavailable(message)),
        }
    }

    /// Sends a client request to the leader and waits until this replica has
    /// applied what it wrote. `None` when this node became the leader meanwhile:
    /// the caller runs the request itself.
    pub async fn forward_request(
        &self,
        request: &Request,
    ) -> Result<Option<Response>, storage::Error> {
        // The leader bounds its own write by WRITE_TIMEOUT; the grace covers the
        // trip there and back.
        let deadline = Instant::now() + WRITE_TIMEOUT + FORWARD_GRACE;
        loop {
            let (leader, node) = match self.leader() {
                Some((leader, _)) if leader == self.id => return Ok(None),
                Some(leader) => leader,
                None if Instant::now() >= deadline => {
                    return Err(unavailable(
                        "there is no leader to forward the request to: the cluster has no quorum",
                    ));
                }
                None => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let answer: Result<Forwarded, _> = self
                .peers
                .call(
                    leader,
                    &node,
                    "/v1/cluster/forward",
                    &ForwardedRequest {
                        version: FORWARD_VERSION,
                        request,
                    },
                    remaining,
                )
                .await;
            match answer {
                Ok(forwarded) => {
                    self.wait_applied(forwarded.index, WRITE_TIMEOUT).await?;
                    return Ok(Some(forwarded.response));
                }
                // The request never left: the leader may have changed; try again.
                Err(network::Error::Connect(..)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error @ network::Error::Timeout(..)) => {
                    return Err(unavailable(format!(
                        "forwarding to the leader failed: {error}; the cluster may have lost its quorum"
                    )));
                }
                Err(error) => {
                    return Err(unavailable(format!(
                        "forwarding to the leader failed: {error}"
                    )));
                }
            }
        }
    }

    /// Adds `node` as a learner; the leader's promotion duty makes it a voter once
    /// it has caught up (unless it is a non-voter). Adding a member twice is a
    /// no-op, so a node may retry its join.
    pub async fn add_member(&self, id: u64, node: NodeInfo) -> Result<(), storage::Error> {
        let raft = self
            .raft()
            .ok_or_else(|| unavailable("this node is sealed"))?;
        if self.is_member(id) {
            return Ok(());
        }
        let added = tokio::time::timeout(WRITE_TIMEOUT, raft.add_learner(id, node, false)).await;
        match added {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(unavailable(format!("cannot add the node: {error}"))),
            Err(_) => Err(unavailable(format!(
                "the membership change was not committed within {WRITE_TIMEOUT:?}"
            ))),
        }
    }

    /// On the leader: makes every learner that has caught up (within
    /// [`PROMOTION_LAG`] entries) and is not a non-voter a voter. Run
    /// periodically, so a promotion survives a leader change.
    async fn promote_caught_up_learners(&self) {
        let Some(raft) = self.raft() else { return };
        let metrics = raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            return;
        }
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let (Some(replication), Some(last)) = (&metrics.replication, metrics.last_log_index) else {
            return;
        };
        let ready: BTreeSet<u64> = membership
            .nodes()
            .filter(|(id, node)| !voters.contains(id) && !node.non_voter)
            .filter(|(id, _)| {
                replication
                    .get(id)
                    .and_then(|matched| *matched)
                    .is_some_and(|matched| matched.index + PROMOTION_LAG >= last)
            })
            .map(|(id, _)| *id)
            .collect();
        if ready.is_empty() {
            return;
        }
        let change = raft.change_membership(ChangeMembers::AddVoterIds(ready.clone()), false);
        match tokio::time::timeout(WRITE_TIMEOUT, change).await {
            Ok(Ok(_)) => tracing::info!(nodes = ?ready, "promoted caught-up members to voters"),
            Ok(Err(error)) => tracing::warn!(%error, "promotion to voter failed"),
            Err(_) => tracing::warn!("promotion to voter timed out"),
        }
    }

    /// Removes a member from the cluster.
    pub async fn remove_member(&self, id: u64) -> Result<(), storage::Error> {
        let raft = self
            .raft()
            .ok_or_else(|| unavailable("this node is sealed"))?;
        let membership = raft.metrics().borrow().membership_config.clone();
        if membership.membership().get_node(&id).is_none() {
            return Err(storage::Error::Unavailable(format!(
                "no member with id {id}"
            )));
        }
        let is_voter = membership.voter_ids().any(|voter| voter == id);
        let change = if is_voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        raft.change_membership(change, false)
            .await
            .map_err(|error| unavailable(format!("cannot remove the member: {error}")))?;
        if is_voter
            && let Some(raft) = self.raft()
            && raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&id)
                .is_some()
        {
            let _ = raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await;
        }
        Ok(())
    }

    /// The members as `sys/storage/raft/configuration` lists them.
    pub fn members(&self) -> Vec<Member> {
        let (membership, leader) = match self.raft() {
            Some(raft) => {
                let metrics = raft.metrics().borrow().clone();
                (metrics.membership_config.clone(), metrics.current_leader)
            }
            None => (Arc::new(self.storage.membership()), None),
        };
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .membership()
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                node: node.clone(),
                voter: voters.contains(id),
                leader: leader == Some(*id),
            })
            .collect()
    }

    fn json<T: Serialize>(value: &T) -> (u16, Vec<u8>) {
        match serde_json::to_vec(value) {
            Ok(bytes) => (200, bytes),
            Err(error) => (500, error.to_string().into_bytes()),
        }
    }

    async fn handle_rpc(&self, path: &str, sender: u64, body: Bytes) -> (u16, Vec<u8>) {
        // Raft RPCs come from members only; a fresh joiner knows no membership
        // yet and accepts the leader that is bringing it in.
        if self.knows_membership() && !self.is_member(sender) {
            return (
                403,
                b"{\"errors\":[\"not a member of this cluster\"]}".to_vec(),
            );
        }
        let Some(raft) = self.raft() else {
            return (503, b"{\"errors\":[\"this node is sealed\"]}".to_vec());
        };
        fn decode<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, (u16, Vec<u8>)> {
            serde_json::from_slice(body)
                .map_err(|_| (400, b"{\"errors\":[\"malformed RPC body\"]}".to_vec()))
        }
        match path {
            "/v1/raft/append" => match decode(&body) {
                Ok(request) => Self::json(&raft.append_entries(request).await),
                Err(refusal) => refusal,
            },
            "/v1/raft/vote" => match decode(&body) {
                Ok(request) => Self::json(&raft.vote(request).await),
                Err(refusal) => refusal,
            },
            "/v1/raft/snapshot" => match decode(&body) {
                Ok(request) => Self::json(&raft.install_snapshot(request).await),
                Err(refusal) => refusal,
            },
            "/v1/cluster/apply" => match decode::<Command>(&body) {
                Ok(command) => {
                    let deadline = Instant::now() + WRITE_TIMEOUT;
                    match self.write_as_leader(command, deadline).await {
                        Ok(index) => Self::json(&ApplyAnswer::Applied(index)),
                        Err(error) => Self::json(&ApplyAnswer::Unavailable(error.to_string())),
                    }
                }
                Err(refusal) => refusal,
            },
            "/v1/cluster/forward" => match decode_forwarded(&body).map_err(|message| {
                (
                    400,
                    serde_json::json!({"errors": [message]})
                        .to_string()
                        .into_bytes(),
                )
            }) {
                Ok(request) => {
                    let forwarder = self
                        .forwarder
                        .read()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .as_ref()
                        .and_then(Weak::upgrade);
                    let Some(forwarder) = forwarder else {
                        return (
                            503,
                            b"{\"errors\":[\"this node is shutting down\"]}".to_vec(),
                        );
                    };
                    let response = forwarder.forward(request).await;
                    Self::json(&Forwarded {
                        response,
                        index: self.storage.applied_index(),
                    })
                }
                Err(refusal) => refusal,
            },
            _ => (404, b"{\"errors\":[\"no such cluster RPC\"]}".to_vec()),
        }
    }
}

/// A node's log positions.
#[derive(Debug, Clone, Copy)]
pub struct Indexes {
    pub committed: u64,
    pub applied: u64,
}

/// One member as operators see it.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: u64,
    pub node: NodeInfo,
    pub voter: bool,
    pub leader: bool,
}

impl RpcHandler for Cluster {
    fn handle(&self, path: String, sender: u64, body: Bytes) -> BoxFuture<'_, (u16, Vec<u8>)> {
        Box::pin(async move { self.handle_rpc(&path, sender, body).await })
    }
}

impl Backend for Cluster {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, storage::Error> {
        self.storage.get(key)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, storage::Error> {
        self.storage.list(prefix)
    }

    fn scan(&self, prefix: &str) -> Result<Vec<String>, storage::Error> {
        self.storage.scan(prefix)
    }

    fn apply(&self, command: Command) -> storage::BoxFuture<'_, Result<u64, storage::Error>> {
        Box::pin(async move {
            if command.is_empty() {
                return Ok(self.storage.applied_index());
            }
            self.batcher.submit(command).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Op;

    /// A forwarded request as version 1 sends it, checked in: every later
    /// version must read it.
    const FORWARDED_V1: &str = include_str!("../../tests/fixtures/forwarded-request-v1.json");

    #[test]
    fn a_forwarded_request_of_version_one_is_read_and_written_the_same() {
        let request = decode_forwarded(FORWARDED_V1.as_bytes()).unwrap();
        assert_eq!(request.path, "secret/data/app");
        assert_eq!(request.operation, coffer_protocols::Operation::Write);
        assert_eq!(request.token.as_ref().unwrap().expose(), "hvs.example");
        assert_eq!(request.data["data"]["password"], "s3cr3t");
        assert!(request.forwarded);
        // This version writes exactly the fixture (so the fixture is what the
        // next version must read).
        let written = serde_json::to_value(ForwardedRequest {
            version: FORWARD_VERSION,
            request: &request,
        })
        .unwrap();
        let fixture: serde_json::Value = serde_json::from_str(FORWARDED_V1).unwrap();
        assert_eq!(written, fixture);
        // Before versions existed, a request had no "v": it is version 1.
        let mut legacy = fixture.clone();
        legacy.as_object_mut().unwrap().remove("v");
        assert!(decode_forwarded(legacy.to_string().as_bytes()).is_ok());
        // A newer coffer's request is refused, not half understood.
        let mut newer = fixture;
        newer["v"] = serde_json::json!(FORWARD_VERSION + 1);
        let refusal = decode_forwarded(newer.to_string().as_bytes()).unwrap_err();
        assert!(refusal.contains("newer coffer"), "{refusal}");
        assert_eq!(decode_forwarded(b"{").unwrap_err(), "malformed RPC body");
    }

    fn settings() -> Settings {
        Settings {
            name: "n1".into(),
            api_addr: String::new(),
            cluster_addr: String::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_log_entries_and_all_apply() {
        let directory = tempfile::tempdir().unwrap();
        let cluster = Cluster::open(directory.path(), settings(), None).unwrap();
        cluster.bootstrap().await.unwrap();
        let writes = 200;
        let tasks: Vec<_> = (0..writes)
            .map(|index| {
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    let command = Command {
                        ops: vec![
                            Op::Put {
                                key: format!("k/{index}/a"),
                                value: vec![1],
                            },
                            Op::Put {
                                key: format!("k/{index}/b"),
                                value: vec![2],
                            },
                        ],
                        ..Default::default()
                    };
                    cluster.apply(command).await
                })
            })
            .collect();
        let mut indexes = BTreeSet::new();
        for task in tasks {
            indexes.insert(task.await.unwrap().unwrap());
        }
        assert_eq!(cluster.scan("k/").unwrap().len(), writes * 2);
        assert!(
            indexes.len() < writes,
            "200 concurrent writes took {} log entries: nothing was batched",
            indexes.len()
        );
        // Each write's index is applied here when it returns.
        let highest = *indexes.last().unwrap();
        assert!(cluster.storage().applied_index() >= highest);
        cluster.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_raft_running_writes_fail_as_unavailable() {
        let directory = tempfile::tempdir().unwrap();
        let cluster = Cluster::open(directory.path(), settings(), None).unwrap();
        let error = cluster
            .apply(Command {
                ops: vec![Op::Delete { key: "x".into() }],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(error, storage::Error::Unavailable(_)), "{error}");
    }
}
