//! A one-node Raft store (RocksDB, fsync on) with its barrier, opened in
//! process, for benchmarks that drive the daemon's parts directly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_daemon::barrier::{Barrier, Keyring};
use coffer_daemon::raft::cluster::{Cluster, Settings};
use zeroize::Zeroizing;

fn settings() -> Settings {
    Settings {
        name: "bench".into(),
        api_addr: String::new(),
        cluster_addr: String::new(),
    }
}

/// Opens (or creates, when `sealed` is `None`) the store in `directory`
/// under the root key `root`, and waits until the node leads. Returns the
/// cluster, its barrier and the sealed keyring to open it again with.
pub async fn open(
    directory: &std::path::Path,
    root: &[u8; 32],
    sealed: Option<&[u8]>,
) -> (Arc<Cluster>, Arc<Barrier>, Vec<u8>) {
    let cluster = Cluster::open(directory, settings(), None).expect("open the store");
    let keyring = match sealed {
        Some(sealed) => Keyring::open(Zeroizing::new(*root), sealed).expect("keyring"),
        None => Keyring::generate(Zeroizing::new(*root)).expect("keyring"),
    };
    let sealed = keyring.seal().expect("seal the keyring");
    if cluster.has_state() {
        cluster.start(None).await.expect("start raft");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster.is_leader() {
            assert!(Instant::now() < deadline, "the node did not lead again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else {
        cluster.bootstrap().await.expect("bootstrap");
    }
    let backend: Arc<dyn coffer_daemon::storage::Backend> = cluster.clone();
    (cluster, Arc::new(Barrier::new(backend, keyring)), sealed)
}
