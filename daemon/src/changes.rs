//! Change events: what a client's write did (path, operation, KV version,
//! time; never a value), carried in the replicated log beside the write's ops,
//! so every node learns of every write as its replica applies it, and watchers
//! (`Core::watch`) on any node see writes made through any other.
//!
//! The core marks a write request with [`scope`]; the first command that
//! request commits through the barrier takes the event along ([`take`]); an
//! engine that knows more (a KV v2 version) adds it with [`set_version`].

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Changes a slow watcher may fall behind by before it is told it lagged.
const BACKLOG: usize = 4096;

/// One write, as the log carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The logical path written (`secret/data/app/db`).
    pub path: String,
    /// `write`, `patch` or `delete`.
    pub operation: String,
    /// The KV v2 version the write made; 0 when the path has none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
    /// When the request ran, in milliseconds since the Unix epoch.
    pub time_ms: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// A change as a node applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub change: Change,
}

tokio::task_local! {
    static PENDING: RefCell<Option<Change>>;
}

/// Runs `future` (one write request) with `change` pending: the first command
/// it commits carries it.
pub async fn scope<F: Future>(change: Change, future: F) -> F::Output {
    PENDING.scope(RefCell::new(Some(change)), future).await
}

/// Takes the pending change, if this task runs a write that has not committed
/// yet.
pub fn take() -> Option<Change> {
    PENDING
        .try_with(|pending| pending.borrow_mut().take())
        .ok()
        .flatten()
}

/// Records the KV version the pending change makes.
pub fn set_version(version: u64) {
    let _ = PENDING.try_with(|pending| {
        if let Some(change) = pending.borrow_mut().as_mut() {
            change.version = version;
        }
    });
}

pub use crate::clock::now_ms;

/// Where applied changes are announced on this node.
#[derive(Clone)]
pub struct Hub {
    sender: broadcast::Sender<Arc<Applied>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            sender: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Hub {
    /// Announces changes an apply made; nobody listening is fine.
    pub fn publish(&self, index: u64, changes: &[Change]) {
        for change in changes {
            let _ = self.sender.send(Arc::new(Applied {
                index,
                change: change.clone(),
            }));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Applied>> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn change(path: &str) -> Change {
        Change {
            path: path.into(),
            operation: "write".into(),
            version: 0,
            time_ms: 1,
        }
    }

    #[tokio::test]
    async fn the_first_commit_of_a_scope_takes_the_change_once() {
        assert_eq!(take(), None, "no scope, no change");
        let taken = scope(change("secret/data/a"), async {
            set_version(3);
            (take(), take())
        })
        .await;
        let mut expected = change("secret/data/a");
        expected.version = 3;
        assert_eq!(taken, (Some(expected), None));
    }

    #[tokio::test]
    async fn subscribers_hear_published_changes_in_order() {
        let hub = Hub::default();
        let mut receiver = hub.subscribe();
        hub.publish(7, &[change("a"), change("b")]);
        assert_eq!(receiver.recv().await.unwrap().change.path, "a");
        let second = receiver.recv().await.unwrap();
        assert_eq!((second.index, second.change.path.as_str()), (7, "b"));
    }
}
