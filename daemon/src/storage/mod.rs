//! The storage trait the core reads and writes through, and the commands that are
//! its only write path.
//!
//! Every durable write is a [`Command`]: an ordered list of [`Op`]s applied
//! atomically. A command is plain data (serde), so the Raft issue can put it in a
//! log entry and apply it to each replica's state machine; nothing else writes.
//! Reads are local. This module knows nothing about RocksDB ([`rocks`] does) and
//! nothing about encryption (the barrier sits above it: values here are
//! ciphertext, except the few seal records that must be read before unsealing).

pub mod rocks;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

pub use rocks::RocksBackend;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage engine error: {0}")]
    Engine(#[from] rocksdb::Error),
    #[error("storage task failed: {0}")]
    Task(String),
    #[error("cannot open storage at {path}: {reason}")]
    Open { path: String, reason: String },
}

/// One change to the store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
    },
    Delete {
        key: String,
    },
    /// Deletes every key that starts with `prefix`.
    DeletePrefix {
        prefix: String,
    },
}

impl fmt::Debug for Op {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values never appear in debug output, not even as ciphertext.
        match self {
            Op::Put { key, value } => write!(formatter, "Put({key}, {} bytes)", value.len()),
            Op::Delete { key } => write!(formatter, "Delete({key})"),
            Op::DeletePrefix { prefix } => write!(formatter, "DeletePrefix({prefix})"),
        }
    }
}

/// A durable write: all of its ops are applied, in order, or none are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub ops: Vec<Op>,
}

impl Command {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A key-value store with one write path.
pub trait Backend: Send + Sync + 'static {
    /// The value at `key`.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error>;

    /// The immediate children of `prefix`, as Vault's physical list: names relative
    /// to `prefix`, with a trailing `/` for a child that has children of its own,
    /// sorted and without duplicates.
    fn list(&self, prefix: &str) -> Result<Vec<String>, Error>;

    /// Every full key that starts with `prefix`, sorted.
    fn scan(&self, prefix: &str) -> Result<Vec<String>, Error>;

    /// Applies `command` atomically and durably; returns once it would survive a
    /// crash.
    fn apply(&self, command: Command) -> BoxFuture<'_, Result<(), Error>>;
}

/// The smallest key greater than every key that starts with `prefix`, or `None`
/// when no such key exists (the prefix is all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix_range() {
        assert_eq!(prefix_end(b"abc/"), Some(b"abc0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn op_debug_hides_values() {
        let op = Op::Put {
            key: "k".into(),
            value: b"secret".to_vec(),
        };
        assert_eq!(format!("{op:?}"), "Put(k, 6 bytes)");
    }
}
