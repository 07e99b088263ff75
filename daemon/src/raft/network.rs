//! The client side of Raft RPCs and of forwarding: HTTPS with this node's cluster
//! certificate, trusting only the cluster CA, to `https://node-<id>.coffer:<port>`
//! resolved to the member's `cluster_addr`. Until this node has an identity (it is
//! sealed), every peer is unreachable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::tls::{self, Identity};
use super::{NodeInfo, TypeConfig};

/// The header a client names itself with; the server checks it against the
/// client certificate.
pub const NODE_HEADER: &str = "x-coffer-node";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("this node has no cluster identity (it is sealed)")]
    NoIdentity,
    #[error("member {0} has an invalid cluster address {1:?}")]
    Address(u64, String),
    #[error("cannot connect to member {0}: {1}")]
    Connect(u64, String),
    #[error("member {0} did not answer within {1:?}")]
    Timeout(u64, Duration),
    #[error("cannot reach member {0}: {1}")]
    Transport(u64, String),
    #[error("member {0} answered {1}: {2}")]
    Status(u64, u16, String),
}

/// HTTPS clients to the other members, rebuilt when this node's identity changes.
#[derive(Default)]
pub struct Peers {
    identity: RwLock<Option<(u64, Arc<rustls::ClientConfig>)>>,
    /// One client per (member, cluster address), with the address it was
    /// resolved to once: a heartbeat never waits on DNS.
    clients: Mutex<HashMap<(u64, String), (reqwest::Client, SocketAddr)>>,
}

/// `host:port` from a cluster address that may carry a scheme (`https://a:8201`);
/// a host name is resolved (once per client).
/// Blocking: for the configuration at start-up only; request paths use
/// [`resolve`].
pub fn socket_address(cluster_addr: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    let without_scheme = host_port(cluster_addr);
    without_scheme
        .parse()
        .ok()
        .or_else(|| without_scheme.to_socket_addrs().ok()?.next())
}

/// [`socket_address`] without blocking a worker: an address literal as it is,
/// a host name through tokio's resolver.
pub async fn resolve(cluster_addr: &str) -> Option<SocketAddr> {
    let without_scheme = host_port(cluster_addr);
    if let Ok(address) = without_scheme.parse() {
        return Some(address);
    }
    tokio::net::lookup_host(without_scheme).await.ok()?.next()
}

/// `host:port` of a cluster address that may carry a scheme.
pub fn host_port(cluster_addr: &str) -> &str {
    cluster_addr
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(cluster_addr)
        .trim_end_matches('/')
}

/// Whether `cluster_addr` has the shape of `host:port` (with an optional
/// scheme), checked without resolving it.
pub fn well_formed(cluster_addr: &str) -> bool {
    let without_scheme = host_port(cluster_addr);
    if without_scheme.parse::<SocketAddr>().is_ok() {
        return true;
    }
    without_scheme.rsplit_once(':').is_some_and(|(host, port)| {
        port.parse::<u16>().is_ok_and(|port| port > 0)
            && !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|character| character.is_ascii_alphanumeric() || ".-_".contains(character))
    })
}

impl Peers {
    pub fn set_identity(&self, identity: Option<&Identity>) -> Result<(), tls::Error> {
        let next = match identity {
            Some(identity) => Some((identity.node_id, Arc::new(identity.client_config()?))),
            None => None,
        };
        *self
            .identity
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = next;
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
        Ok(())
    }

    /// (this node's id, a client for `target`, `target`'s address).
    async fn client(
        &self,
        target: u64,
        node: &NodeInfo,
    ) -> Result<(u64, reqwest::Client, SocketAddr), Error> {
        let identity = self
            .identity
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .ok_or(Error::NoIdentity)?;
        let key = (target, node.cluster_addr.clone());
        let cached = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&key)
            .cloned();
        if let Some((client, address)) = cached {
            return Ok((identity.0, client, address));
        }
        let address = resolve(&node.cluster_addr)
            .await
            .ok_or_else(|| Error::Address(target, node.cluster_addr.clone()))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured((*identity.1).clone())
            .resolve(&tls::dns_name(target), address)
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|error| Error::Transport(target, error.to_string()))?;
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key, (client.clone(), address));
        Ok((identity.0, client, address))
    }

    /// POSTs `body` as JSON to `path` on member `target` and decodes the answer.
    pub async fn call<Request: Serialize, Answer: DeserializeOwned>(
        &self,
        target: u64,
        node: &NodeInfo,
        path: &str,
        body: &Request,
        timeout: Duration,
    ) -> Result<Answer, Error> {
        let (me, client, address) = self.client(target, node).await?;
        let url = format!("https://{}:{}{path}", tls::dns_name(target), address.port());
        let response = client
            .post(url)
            .header(NODE_HEADER, me.to_string())
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|error| {
                if error.is_connect() {
                    Error::Connect(target, error.to_string())
                } else if error.is_timeout() {
                    Error::Timeout(target, timeout)
                } else {
                    Error::Transport(target, error.to_string())
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(Error::Status(target, status.as_u16(), text));
        }
        response
            .json()
            .await
            .map_err(|error| Error::Transport(target, error.to_string()))
    }
}

/// openraft's view of the network.
#[derive(Clone)]
pub struct Network {
    pub peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> Connection {
        Connection {
            peers: self.peers.clone(),
            target,
            node: node.clone(),
        }
    }
}

/// RPCs to one member.
pub struct Connection {
    peers: Arc<Peers>,
    target: u64,
    node: NodeInfo,
}

impl Connection {
    async fn rpc<Request, Answer, E>(
        &self,
        path: &str,
        request: &Request,
        option: &RPCOption,
    ) -> Result<Answer, RPCError<u64, NodeInfo, RaftError<u64, E>>>
    where
        Request: Serialize,
        Answer: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Answer, RaftError<u64, E>> = self
            .peers
            .call(self.target, &self.node, path, request, option.hard_ttl())
            .await
            .map_err(|error| match error {
                Error::Status(..) => RPCError::Network(NetworkError::new(&error)),
                other => RPCError::Unreachable(Unreachable::new(&other)),
            })?;
        answer.map_err(|error| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                error,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        self.rpc("/v1/raft/append", &request, &option).await
    }

    async fn install_snapshot(
        &mut self,
        request: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, NodeInfo, RaftError<u64, InstallSnapshotError>>,
    > {
        self.rpc("/v1/raft/snapshot", &request, &option).await
    }

    async fn vote(
        &mut self,
        request: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        self.rpc("/v1/raft/vote", &request, &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_addresses_with_or_without_scheme() {
        assert_eq!(
            socket_address("https://127.0.0.2:8201"),
            Some("127.0.0.2:8201".parse().unwrap())
        );
        assert_eq!(
            socket_address("127.0.0.1:8201/"),
            Some("127.0.0.1:8201".parse().unwrap())
        );
        assert_eq!(
            socket_address("http://localhost:8201").map(|address| address.port()),
            Some(8201)
        );
        assert_eq!(socket_address("no-port"), None);
        for (address, expected) in [
            ("https://node-2.example:8201", true),
            ("127.0.0.1:8201", true),
            ("[::1]:8201", true),
            ("no-port", false),
            ("host:0", false),
            ("bad host:8201", false),
            ("https://:8201", false),
        ] {
            assert_eq!(well_formed(address), expected, "{address}");
        }
    }
}
