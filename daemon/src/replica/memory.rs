//! An in-memory [`Replica`] for the core's unit tests: one node that leads (or,
//! when told, follows a leader that answers forwarded requests with a canned
//! response), applies writes at once and tells its observer, and can be made
//! to fail reads like a broken disk.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_protocols::{ErrorCode, Request, Response};

use super::Replica;
use crate::raft::NodeInfo;
use crate::raft::cluster::{Indexes, Member, Settings};
use crate::raft::store::{Applied, ApplyObserver};
use crate::raft::tls::Identity;
use crate::storage::memory::MemoryBackend;
use crate::storage::{self, Backend, BoxFuture, Command, Op};

pub struct MemoryReplica {
    store: MemoryBackend,
    settings: Settings,
    observer: Mutex<Option<Arc<dyn ApplyObserver>>>,
    running: AtomicBool,
    /// This node follows: requests that must run on the leader are forwarded.
    follower: AtomicBool,
    /// Reads fail as a broken disk's would.
    broken: AtomicBool,
    /// The requests this node forwarded to the leader.
    pub forwarded: Mutex<Vec<Request>>,
    applied: Mutex<u64>,
}

impl Default for MemoryReplica {
    fn default() -> Self {
        MemoryReplica {
            store: MemoryBackend::default(),
            settings: Settings {
                name: "memory".into(),
                api_addr: String::new(),
                cluster_addr: String::new(),
            },
            observer: Mutex::new(None),
            running: AtomicBool::new(false),
            follower: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            forwarded: Mutex::new(Vec::new()),
            applied: Mutex::new(0),
        }
    }
}

impl MemoryReplica {
    pub fn set_follower(&self, follower: bool) {
        self.follower.store(follower, Ordering::SeqCst);
    }

    pub fn set_broken(&self, broken: bool) {
        self.broken.store(broken, Ordering::SeqCst);
    }

    fn fault(&self) -> Result<(), storage::Error> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(storage::Error::Engine("injected read fault".into()));
        }
        Ok(())
    }
}

impl Backend for MemoryReplica {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, storage::Error> {
        self.fault()?;
        self.store.get(key)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, storage::Error> {
        self.fault()?;
        self.store.list(prefix)
    }

    fn scan(&self, prefix: &str) -> Result<Vec<String>, storage::Error> {
        self.fault()?;
        self.store.scan(prefix)
    }

    fn apply(&self, command: Command) -> BoxFuture<'_, Result<u64, storage::Error>> {
        Box::pin(async move {
            let observer = self.observer.lock().unwrap().clone();
            let touched: Vec<String> = command
                .ops
                .iter()
                .filter_map(|op| match op {
                    Op::Put { key, .. } | Op::Delete { key } => Some(key.clone()),
                    Op::DeletePrefix { prefix } => Some(prefix.clone()),
                    Op::Restore { .. } => None,
                })
                .filter(|key| {
                    observer
                        .as_ref()
                        .is_some_and(|observer| observer.watches(key))
                })
                .collect();
            let changes: Vec<_> = command.changes.clone();
            self.store.apply(command).await?;
            let mut applied = self.applied.lock().unwrap();
            *applied += 1;
            let index = *applied;
            let changes: Vec<_> = changes.into_iter().map(|change| (index, change)).collect();
            if let Some(observer) = observer {
                observer.applied(&Applied {
                    index,
                    touched: &touched,
                    changes: &changes,
                    replaced: false,
                    restored: false,
                });
            }
            Ok(index)
        })
    }
}

impl Replica for MemoryReplica {
    fn id(&self) -> u64 {
        1
    }

    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn set_observer(&self, observer: Option<Arc<dyn ApplyObserver>>) {
        *self.observer.lock().unwrap() = observer;
    }

    fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    fn start<'a>(
        self: Arc<Self>,
        _identity: Option<&'a Identity>,
    ) -> BoxFuture<'a, Result<(), storage::Error>> {
        self.running.store(true, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        self.running.store(false, Ordering::SeqCst);
        Box::pin(async {})
    }

    fn bootstrap(self: Arc<Self>) -> BoxFuture<'static, Result<(), storage::Error>> {
        self.running.store(true, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }

    fn is_leader(&self) -> bool {
        !self.follower.load(Ordering::SeqCst)
    }

    fn leader(&self) -> Option<(u64, NodeInfo)> {
        let id = if self.is_leader() { 1 } else { 2 };
        Some((
            id,
            NodeInfo {
                name: format!("node-{id}"),
                api_addr: format!("https://127.0.0.{id}:8200"),
                cluster_addr: String::new(),
                non_voter: false,
            },
        ))
    }

    fn indexes(&self) -> Indexes {
        let applied = self.applied_index();
        Indexes {
            committed: applied,
            applied,
        }
    }

    fn wait_applied(
        &self,
        _index: u64,
        _timeout: Duration,
    ) -> BoxFuture<'_, Result<(), storage::Error>> {
        Box::pin(async { Ok(()) })
    }

    fn forward_request<'a>(
        &'a self,
        request: &'a Request,
    ) -> BoxFuture<'a, Result<Option<Response>, storage::Error>> {
        Box::pin(async move {
            if self.is_leader() {
                return Ok(None);
            }
            self.forwarded.lock().unwrap().push(request.clone());
            Ok(Some(Response::error(
                ErrorCode::RateLimited,
                "answered by the leader",
            )))
        })
    }

    fn members(&self) -> Vec<Member> {
        Vec::new()
    }

    fn add_member(&self, _id: u64, _node: NodeInfo) -> BoxFuture<'_, Result<(), storage::Error>> {
        Box::pin(async { Err(storage::Error::Unavailable("one node only".into())) })
    }

    fn remove_member(&self, _id: u64) -> BoxFuture<'_, Result<(), storage::Error>> {
        Box::pin(async { Err(storage::Error::Unavailable("one node only".into())) })
    }

    fn export(&self, _raft_meta: serde_json::Value) -> Result<Vec<u8>, storage::Error> {
        Err(storage::Error::Unavailable("no snapshots in memory".into()))
    }

    fn applied_index(&self) -> u64 {
        *self.applied.lock().unwrap()
    }
}
