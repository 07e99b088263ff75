//! The storage trait the core reads and writes through, and the commands that are
//! its only write path.
//!
//! Every durable write is a [`Command`]: an ordered list of [`Op`]s applied
//! atomically. A command is plain serde data: the Raft layer (`crate::raft`) puts
//! it in a log entry, replicates it, and applies it to every replica's state
//! machine. There is no other writer. Reads are local, from this node's replica.
//! This module knows nothing about RocksDB or Raft, and nothing about encryption:
//! the barrier sits above it, so values here are ciphertext (except the few seal
//! records that must be read before unsealing).

#[cfg(test)]
pub mod memory;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use coffer_protocols::request::base64_bytes;
use serde::{Deserialize, Serialize};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("storage engine error: {0}")]
    Engine(String),
    #[error("cannot open storage at {path}: {reason}")]
    Open { path: String, reason: String },
    /// The write could not be committed now (no leader, no quorum, not running);
    /// it may be retried. Maps to 503.
    #[error("{0}")]
    Unavailable(String),
}

/// One change to the store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Put {
        key: String,
        #[serde(with = "base64_bytes")]
        value: Vec<u8>,
    },
    Delete {
        key: String,
    },
    /// Deletes every key that starts with `prefix`.
    DeletePrefix {
        prefix: String,
    },
    /// Replaces the whole store with a snapshot's contents (an operator's restore).
    Restore {
        #[serde(with = "base64_bytes")]
        snapshot: Vec<u8>,
    },
}

impl fmt::Debug for Op {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values never appear in debug output, not even as ciphertext.
        match self {
            Op::Put { key, value } => write!(formatter, "Put({key}, {} bytes)", value.len()),
            Op::Delete { key } => write!(formatter, "Delete({key})"),
            Op::DeletePrefix { prefix } => write!(formatter, "DeletePrefix({prefix})"),
            Op::Restore { snapshot } => write!(formatter, "Restore({} bytes)", snapshot.len()),
        }
    }
}

/// The version of [`Command`] this build writes. A node reads commands up to
/// this version and refuses newer ones: a log entry it cannot apply stops it
/// rather than letting its replica diverge. Commands from before the field
/// existed read as version 1.
pub const COMMAND_VERSION: u32 = 1;

/// A durable write: all of its ops are applied, in order, or none are. On the
/// wire and in the Raft log it is JSON with a version (`"v"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "VersionedCommand")]
pub struct Command {
    pub ops: Vec<Op>,
    /// What the client writes behind these ops did, for watchers on every node
    /// (paths and versions only, never values). Merged commands keep all of
    /// theirs.
    pub changes: Vec<crate::changes::Change>,
}

impl Command {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// [`Command`] as it is read.
#[derive(Deserialize)]
struct VersionedCommand {
    #[serde(rename = "v", default = "first_version")]
    version: u32,
    ops: Vec<Op>,
    #[serde(default)]
    changes: Vec<crate::changes::Change>,
}

fn first_version() -> u32 {
    1
}

/// Written by hand rather than through [`VersionedCommand`], so the ops (and
/// their values) are not copied for every log entry.
impl Serialize for Command {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let fields = if self.changes.is_empty() { 2 } else { 3 };
        let mut state = serializer.serialize_struct("Command", fields)?;
        state.serialize_field("v", &COMMAND_VERSION)?;
        state.serialize_field("ops", &self.ops)?;
        if !self.changes.is_empty() {
            state.serialize_field("changes", &self.changes)?;
        }
        state.end()
    }
}

impl TryFrom<VersionedCommand> for Command {
    type Error = String;

    fn try_from(versioned: VersionedCommand) -> Result<Self, String> {
        if versioned.version > COMMAND_VERSION {
            return Err(format!(
                "a command of version {} was written by a newer coffer; this one reads up to \
                 version {COMMAND_VERSION}: upgrade this node",
                versioned.version
            ));
        }
        Ok(Command {
            ops: versioned.ops,
            changes: versioned.changes,
        })
    }
}

impl fmt::Display for Command {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} ops", self.ops.len())
    }
}

/// A key-value store with one write path.
pub trait Backend: Send + Sync + 'static {
    /// The value at `key` in this node's replica.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error>;

    /// The immediate children of `prefix`, as Vault's physical list: names relative
    /// to `prefix`, with a trailing `/` for a child that has children of its own,
    /// sorted and without duplicates.
    fn list(&self, prefix: &str) -> Result<Vec<String>, Error>;

    /// Every full key that starts with `prefix`, sorted.
    fn scan(&self, prefix: &str) -> Result<Vec<String>, Error>;

    /// Applies `command` atomically and durably (committed by a quorum and applied
    /// to this node's replica), and returns the log index it was committed at.
    fn apply(&self, command: Command) -> BoxFuture<'_, Result<u64, Error>>;
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

    #[test]
    fn commands_round_trip_through_json_with_base64_values() {
        let command = Command {
            ops: vec![
                Op::Put {
                    key: "a".into(),
                    value: vec![0, 255, 7],
                },
                Op::DeletePrefix {
                    prefix: "b/".into(),
                },
            ],
            ..Default::default()
        };
        let json = serde_json::to_string(&command).unwrap();
        assert!(json.contains("\"AP8H\""), "{json}");
        assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), command);
    }
}
