//! Clusters of real `coffer` processes, each node on its own loopback address
//! (`127.0.<net>.<n>`) with its client API and cluster listener on fixed ports, so
//! a node restarted on the same data directory comes back where its peers expect
//! it. The first node initializes; the others join through `retry_join` and are
//! unsealed with the first node's key shares, as an operator would (or, with a
//! `seal` block, unseal themselves).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Api, Server};

/// A port nobody listens on at `ip` right now.
pub fn free_port(ip: &str) -> u16 {
    let listener = std::net::TcpListener::bind((ip, 0)).expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// The cluster's key shares and root token.
#[derive(Debug, Clone)]
pub struct Keys {
    pub shares: Vec<String>,
    pub threshold: usize,
    pub root_token: String,
}

/// One member.
pub struct Node {
    pub name: String,
    pub server: Server,
    /// `http://127.0.<net>.<n>:<port>`
    pub api_addr: String,
    /// `127.0.<net>.<n>:<port>` of the cluster listener.
    pub cluster_address: String,
}

impl Node {
    pub fn api(&self, token: Option<&str>) -> Api {
        self.server.client(token)
    }

    /// A client that gives up after `timeout` (for nodes that may hang).
    pub fn api_with_timeout(&self, token: Option<&str>, timeout: Duration) -> Api {
        self.server.client_with_timeout(token, timeout)
    }
}

pub struct Cluster {
    pub net: u8,
    pub nodes: Vec<Node>,
    pub keys: Keys,
    /// Where the nodes' data directories go (the system's temp dir if `None`).
    parent: Option<std::path::PathBuf>,
    /// A `seal` block every node has: nodes unseal themselves, and `keys`
    /// are recovery keys.
    seal: Option<String>,
}

/// Polls `check` every 100 ms until it is `Some`, or panics after `timeout` with
/// `what`.
#[track_caller]
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The configuration of node `index` (1-based) on `127.0.<net>.<index>`.
fn node_config(
    net: u8,
    index: usize,
    retry_join: &[String],
    seal: Option<&str>,
) -> (String, String, String) {
    let ip = format!("127.0.{net}.{index}");
    let api_port = free_port(&ip);
    let cluster_port = free_port(&ip);
    let api_addr = format!("http://{ip}:{api_port}");
    let cluster_address = format!("{ip}:{cluster_port}");
    let joins: String = retry_join
        .iter()
        .map(|leader| format!("  retry_join {{\n    leader_api_addr = \"{leader}\"\n  }}\n"))
        .collect();
    let config = format!(
        r#"storage "raft" {{
  path    = "{{data_dir}}"
  node_id = "n{index}"
{joins}}}
listener "tcp" {{
  address     = "{ip}:{api_port}"
  tls_disable = true
}}
listener "grpc" {{
  address     = "{ip}:0"
  tls_disable = true
}}
api_addr     = "{api_addr}"
cluster_addr = "https://{cluster_address}"
{seal}
"#,
        seal = seal.unwrap_or("")
    );
    (config, api_addr, cluster_address)
}

impl Cluster {
    /// `size` nodes on `127.0.<net>.0/24`, all unsealed voters.
    pub fn start(net: u8, size: usize) -> Cluster {
        Cluster::start_in(net, size, None)
    }

    /// Like [`Cluster::start`], with the data directories under `parent`.
    pub fn start_in(net: u8, size: usize, parent: Option<&std::path::Path>) -> Cluster {
        Cluster::start_with(net, size, parent, None)
    }

    /// `size` nodes that all have the `seal` block: the first is initialized
    /// with 3 recovery shares (threshold 2), the others join and unseal
    /// themselves.
    pub fn start_sealed_by(net: u8, size: usize, seal: &str) -> Cluster {
        Cluster::start_with(net, size, None, Some(seal))
    }

    fn start_with(
        net: u8,
        size: usize,
        parent: Option<&std::path::Path>,
        seal: Option<&str>,
    ) -> Cluster {
        let (config, api_addr, cluster_address) = node_config(net, 1, &[], seal);
        let server = Server::with_config_in(&config, parent);
        let (request, field) = match seal {
            None => (json!({"secret_shares": 3, "secret_threshold": 2}), "keys"),
            Some(_) => (
                json!({"recovery_shares": 3, "recovery_threshold": 2}),
                "recovery_keys",
            ),
        };
        let init = server
            .client(None)
            .call("PUT", "sys/init", Some(request))
            .expect(200);
        let keys = Keys {
            shares: init.body[field]
                .as_array()
                .expect("keys")
                .iter()
                .map(|key| key.as_str().expect("key").to_owned())
                .collect(),
            threshold: 2,
            root_token: init.body["root_token"]
                .as_str()
                .expect("root token")
                .to_owned(),
        };
        let mut cluster = Cluster {
            net,
            nodes: vec![Node {
                name: "n1".into(),
                server,
                api_addr,
                cluster_address,
            }],
            keys,
            parent: parent.map(std::path::Path::to_path_buf),
            seal: seal.map(str::to_owned),
        };
        cluster.unseal_or_wait(0);
        for _ in 1..size {
            cluster.add_node();
        }
        cluster.wait_for_voters(size);
        cluster
    }

    /// Starts one more node that joins through `retry_join` (naming every current
    /// member), unseals it and waits until it serves; returns its index.
    pub fn add_node(&mut self) -> usize {
        let index = self.nodes.len() + 1;
        let leaders: Vec<String> = self
            .nodes
            .iter()
            .map(|node| node.api_addr.clone())
            .collect();
        let (config, api_addr, cluster_address) =
            node_config(self.net, index, &leaders, self.seal.as_deref());
        let server = Server::with_config_in(&config, self.parent.as_deref());
        self.nodes.push(Node {
            name: format!("n{index}"),
            server,
            api_addr,
            cluster_address,
        });
        let position = self.nodes.len() - 1;
        // retry_join has fetched a challenge once the node reports itself
        // initialized (and sealed).
        wait_for(
            Duration::from_secs(30),
            "the new node to find a leader",
            || {
                let status = self.nodes[position].api(None).get("sys/seal-status");
                (status.body["initialized"] == true).then_some(())
            },
        );
        self.unseal_or_wait(position);
        position
    }

    /// Unseals node `index` with the key shares, or under a seal waits for it
    /// to unseal itself.
    pub fn unseal_or_wait(&self, index: usize) {
        if self.seal.is_none() {
            return self.unseal(index);
        }
        self.wait_self_unsealed(index);
    }

    /// Waits for node `index` to unseal itself (a node whose configuration
    /// gained a seal after the cluster started).
    pub fn wait_self_unsealed(&self, index: usize) {
        let api = self.nodes[index].api(None);
        wait_for(Duration::from_secs(60), "the node to unseal itself", || {
            let status = api.get("sys/seal-status");
            (status.body["sealed"] == false).then_some(())
        });
    }

    pub fn root(&self, index: usize) -> Api {
        self.nodes[index].api(Some(&self.keys.root_token))
    }

    /// Submits threshold shares to node `index` and waits until it is unsealed.
    pub fn unseal(&self, index: usize) {
        let api = self.nodes[index].api(None);
        for share in &self.keys.shares[..self.keys.threshold] {
            let answer = api.post("sys/unseal", json!({"key": share}));
            assert_eq!(
                answer.status,
                200,
                "unseal {}: {:?}",
                index + 1,
                answer.body
            );
        }
        wait_for(Duration::from_secs(60), "the node to unseal", || {
            let status = api.get("sys/seal-status");
            (status.body["sealed"] == false).then_some(())
        });
    }

    /// The index of the node that leads now, asked of the nodes in `among`.
    pub fn leader_among(&self, among: &[usize]) -> Option<usize> {
        for &index in among {
            let api = self.nodes[index].api_with_timeout(None, Duration::from_secs(2));
            let Ok(answer) = api.try_call("GET", "sys/leader", None) else {
                continue;
            };
            let address = answer.body["leader_address"].as_str().unwrap_or("");
            if let Some(leader) = self.nodes.iter().position(|node| node.api_addr == address)
                && among.contains(&leader)
            {
                return Some(leader);
            }
        }
        None
    }

    /// Waits until some node leads and returns its index.
    pub fn leader(&self) -> usize {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        wait_for(Duration::from_secs(15), "a leader", || {
            self.leader_among(&all)
        })
    }

    /// The indexes of the nodes that do not lead.
    pub fn followers(&self) -> Vec<usize> {
        let leader = self.leader();
        (0..self.nodes.len())
            .filter(|index| *index != leader)
            .collect()
    }

    /// The members as the leader lists them: (name, voter).
    pub fn members(&self) -> Vec<(String, bool)> {
        let answer = self
            .root(self.leader())
            .get("sys/storage/raft/configuration")
            .expect(200);
        answer.body["data"]["config"]["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .map(|server| {
                (
                    server["node_id"].as_str().unwrap_or("").to_owned(),
                    server["voter"] == true,
                )
            })
            .collect()
    }

    /// Waits until `count` members are voters.
    pub fn wait_for_voters(&self, count: usize) {
        wait_for(Duration::from_secs(60), "members to become voters", || {
            let voters = self.members().iter().filter(|(_, voter)| *voter).count();
            (voters == count).then_some(())
        });
    }

    /// Mounts KV v2 at `secret/`.
    pub fn mount_kv(&self) {
        self.root(self.leader())
            .post(
                "sys/mounts/secret",
                json!({"type": "kv", "options": {"version": "2"}}),
            )
            .expect(204);
    }
}

/// A KV v2 secret's `data.data`, as node `api` sees it (404 gives `None`).
pub fn kv_read(api: &Api, path: &str) -> Option<Value> {
    let answer = api
        .try_call("GET", &format!("secret/data/{path}"), None)
        .ok()?;
    (answer.status == 200).then(|| answer.body["data"]["data"].clone())
}
