//! Group commit above Raft: concurrent writes share one log entry.
//!
//! openraft 0.9 handles client writes one entry at a time (an append, a
//! replication step, a commit and an apply per entry), which caps a node at a few
//! thousand entries per second however many clients wait. The batcher keeps at
//! most [`MAX_IN_FLIGHT`] entries in flight; writes that arrive meanwhile queue
//! and go out together as one entry whose ops are theirs, in arrival order. An
//! entry is applied atomically, so each command still is; every waiter learns
//! the same log index. When writes are rare, each goes out alone at once.

use std::sync::{Arc, Weak};

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::cluster::Cluster;
use crate::storage::{self, Command, Op};

/// Entries in flight at once; more would only make smaller entries.
const MAX_IN_FLIGHT: usize = 2;
/// At most this many commands share an entry.
const MAX_COMMANDS: usize = 512;
/// A batch stops growing past this many value bytes; a larger command (a
/// restored snapshot) goes alone.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

struct Pending {
    command: Command,
    done: oneshot::Sender<Result<u64, storage::Error>>,
}

/// The queue in front of [`Cluster`]'s writes.
pub struct Batcher {
    sender: mpsc::UnboundedSender<Pending>,
}

fn size(command: &Command) -> usize {
    command
        .ops
        .iter()
        .map(|op| match op {
            Op::Put { key, value } => key.len() + value.len(),
            Op::Delete { key } => key.len(),
            Op::DeletePrefix { prefix } => prefix.len(),
            Op::Restore { snapshot } => snapshot.len(),
        })
        .sum()
}

impl Batcher {
    /// Starts the batching task; it ends when `cluster` is dropped.
    pub fn start(cluster: Weak<Cluster>) -> Batcher {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(receiver, cluster));
        Batcher { sender }
    }

    /// Commits `command` (with whatever else is waiting) and returns its index.
    pub async fn submit(&self, command: Command) -> Result<u64, storage::Error> {
        let (done, answer) = oneshot::channel();
        self.sender
            .send(Pending { command, done })
            .map_err(|_| storage::Error::Unavailable("this node is shutting down".into()))?;
        answer
            .await
            .map_err(|_| storage::Error::Unavailable("this node is shutting down".into()))?
    }
}

async fn run(mut receiver: mpsc::UnboundedReceiver<Pending>, cluster: Weak<Cluster>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(pending) => pending,
            None => match receiver.recv().await {
                Some(pending) => pending,
                None => return,
            },
        };
        // Waiting for a slot is what lets a batch grow.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = size(&first.command);
        let mut batch = vec![first];
        while batch.len() < MAX_COMMANDS && bytes < MAX_BATCH_BYTES {
            let Ok(next) = receiver.try_recv() else { break };
            let next_size = size(&next.command);
            if bytes + next_size > MAX_BATCH_BYTES {
                carried = Some(next);
                break;
            }
            bytes += next_size;
            batch.push(next);
        }
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let mut merged = Command::default();
            let mut waiters = Vec::with_capacity(batch.len());
            for pending in batch {
                merged.ops.extend(pending.command.ops);
                merged.changes.extend(pending.command.changes);
                waiters.push(pending.done);
            }
            let result = cluster.write(merged).await;
            drop(permit);
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        });
    }
}
