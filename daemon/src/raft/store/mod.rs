//! Raft's log and state machine on one RocksDB database.
//!
//! Column families: `default` holds the state machine's data (the store the core
//! reads: ciphertext under the barrier's paths); `raft_log` holds log entries by
//! big-endian index; `raft_meta` holds the vote, purge point, committed id and the
//! state machine's applied id and membership.
//!
//! Durability, openraft's contract versus our choice:
//! - appended entries must be readable when `append` returns and durable when its
//!   callback runs: entries are written at once (unsynced) and a syncer thread
//!   calls `flush_wal(true)` once for every callback queued meanwhile, so
//!   concurrent writes share one fsync (group commit);
//! - the vote and truncations are synced before returning;
//! - applying to the state machine is not synced by itself: its writes reach the
//!   shared WAL, which the next appended entry's sync makes durable, and a purge
//!   syncs first, so no entry is purged before the state it produced is on disk.
//!   After a crash, openraft re-applies the log from the stored applied id.

// openraft's `StorageError` is the error type its traits require; it is large,
// and boxing it would only move the cost into every trait method.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, mpsc};

use openraft::storage::LogFlushed;
use openraft::{AnyError, LogId, StorageError, StorageIOError, StoredMembership, Vote};
use rocksdb::{
    ColumnFamilyDescriptor, DB, DBCompressionType, Direction, IteratorMode, Options, ReadOptions,
    WriteBatch,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

mod log;
mod state_machine;
mod sync;

pub use log::LogStore;
pub use state_machine::StateMachine;

use super::snapshot;
use super::{NodeInfo, TypeConfig};
use crate::storage::{self, prefix_end};

const CF_LOG: &str = "raft_log";
const CF_META: &str = "raft_meta";
const KEY_VOTE: &str = "vote";
const KEY_PURGED: &str = "last_purged";
const KEY_APPLIED: &str = "sm_applied";
const KEY_MEMBERSHIP: &str = "sm_membership";
const SNAPSHOT_FILE: &str = "raft-snapshot.bin";

type NodeId = u64;
type StorageResult<T> = Result<T, StorageError<NodeId>>;
type Membership = StoredMembership<NodeId, NodeInfo>;

/// What one apply changed, for the core's caches (mount table, policies, keyring).
#[derive(Debug)]
pub struct Applied<'a> {
    pub index: u64,
    /// Keys (or deleted prefixes) that changed and that the observer
    /// [watches](ApplyObserver::watches).
    pub touched: &'a [String],
    /// Client writes this apply carried, with the index of their entry.
    pub changes: &'a [(u64, crate::changes::Change)],
    /// The whole data set was replaced (a snapshot was installed or restored).
    pub replaced: bool,
    /// An operator restored a snapshot: the seal and keys may be another cluster's.
    pub restored: bool,
}

/// Told about every apply, synchronously, before the applied index advances; so a
/// reader that waits for an index sees caches that already reflect it. Must not
/// block.
pub trait ApplyObserver: Send + Sync {
    fn applied(&self, change: &Applied<'_>);

    /// Whether a write to `key` (or a delete of the prefix `key`) goes into
    /// [`Applied::touched`]: the observer names what it caches, the store
    /// knows nothing of the layout above it.
    fn watches(&self, key: &str) -> bool;
}

/// The RocksDB database with Raft's log, metadata and state machine.
pub struct Storage {
    db: Arc<DB>,
    directory: PathBuf,
    applied: watch::Sender<u64>,
    observer: RwLock<Option<Arc<dyn ApplyObserver>>>,
    syncer: Mutex<Option<mpsc::Sender<LogFlushed<TypeConfig>>>>,
    syncer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Storage {
    /// Stops the sync thread and waits for it, so the database is closed (and its
    /// lock released) when the storage is gone.
    fn drop(&mut self) {
        let sender = self
            .syncer
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        drop(sender);
        let thread = self
            .syncer_thread
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

fn engine_error(error: rocksdb::Error) -> storage::Error {
    storage::Error::Engine(error.into_string())
}

impl Storage {
    pub fn open(directory: &Path) -> Result<Arc<Storage>, storage::Error> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // Values are AES-GCM ciphertext: compression would cost CPU for nothing.
        options.set_compression_type(DBCompressionType::None);
        options.increase_parallelism(2);
        options.set_max_background_jobs(2);
        options.set_keep_log_file_num(4);
        let families = ["default", CF_LOG, CF_META]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&options, directory, families).map_err(|error| {
            storage::Error::Open {
                path: directory.display().to_string(),
                reason: error.into_string(),
            }
        })?;
        let db = Arc::new(db);
        let (sender, receiver) = mpsc::channel::<LogFlushed<TypeConfig>>();
        let syncer_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || sync::run_syncer(&syncer_db, &receiver))
            .map_err(|error| storage::Error::Engine(error.to_string()))?;
        let storage = Storage {
            db,
            directory: directory.to_path_buf(),
            applied: watch::channel(0).0,
            observer: RwLock::new(None),
            syncer: Mutex::new(Some(sender)),
            syncer_thread: Mutex::new(Some(thread)),
        };
        let applied = storage
            .meta::<LogId<NodeId>>(KEY_APPLIED)
            .ok()
            .flatten()
            .map(|log_id| log_id.index)
            .unwrap_or(0);
        storage.applied.send_replace(applied);
        Ok(Arc::new(storage))
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, storage::Error> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| storage::Error::Engine(format!("column family {name} is missing")))
    }

    pub fn set_observer(&self, observer: Option<Arc<dyn ApplyObserver>>) {
        *self
            .observer
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = observer;
    }

    /// The index of the last entry applied to this replica.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Whether this node has ever been part of a cluster (has a vote or log).
    pub fn has_raft_state(&self) -> bool {
        let vote = self.meta::<Vote<NodeId>>(KEY_VOTE).ok().flatten().is_some();
        let log = self
            .cf(CF_LOG)
            .ok()
            .and_then(|cf| self.db.iterator_cf(cf, IteratorMode::Start).next())
            .is_some();
        vote || log || self.applied_index() > 0
    }

    /// The membership this replica last applied.
    pub fn membership(&self) -> Membership {
        self.meta::<Membership>(KEY_MEMBERSHIP)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, storage::Error> {
        match self
            .db
            .get_cf(self.cf(CF_META)?, key)
            .map_err(engine_error)?
        {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|error| storage::Error::Engine(format!("raft metadata {key}: {error}"))),
            None => Ok(None),
        }
    }

    fn put_meta<T: Serialize>(
        &self,
        batch: &mut WriteBatch,
        key: &str,
        value: &T,
    ) -> Result<(), storage::Error> {
        let bytes =
            serde_json::to_vec(value).map_err(|error| storage::Error::Engine(error.to_string()))?;
        batch.put_cf(self.cf(CF_META)?, key, bytes);
        Ok(())
    }

    fn sync(&self) -> Result<(), storage::Error> {
        self.db.flush_wal(true).map_err(engine_error)
    }

    // --- The state machine's data, as the core reads it. ---

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, storage::Error> {
        self.db.get(key.as_bytes()).map_err(engine_error)
    }

    pub fn list(&self, prefix: &str) -> Result<Vec<String>, storage::Error> {
        let mut children = Vec::new();
        let mut read_options = ReadOptions::default();
        if let Some(end) = prefix_end(prefix.as_bytes()) {
            read_options.set_iterate_upper_bound(end);
        }
        let mut iterator = self.db.raw_iterator_opt(read_options);
        iterator.seek(prefix.as_bytes());
        while iterator.valid() {
            let Some(key) = iterator.key() else { break };
            let Some(rest) = key.strip_prefix(prefix.as_bytes()) else {
                break;
            };
            let rest = String::from_utf8_lossy(rest).into_owned();
            match rest.find('/') {
                Some(slash) => {
                    let directory = &rest[..=slash];
                    children.push(directory.to_owned());
                    // Skip every descendant of this directory in one seek.
                    let mut next = prefix.as_bytes().to_vec();
                    next.extend_from_slice(&directory.as_bytes()[..slash]);
                    next.push(b'/' + 1);
                    iterator.seek(&next);
                }
                None => {
                    children.push(rest);
                    iterator.next();
                }
            }
        }
        iterator.status().map_err(engine_error)?;
        children.dedup();
        Ok(children)
    }

    pub fn scan(&self, prefix: &str) -> Result<Vec<String>, storage::Error> {
        let mut read_options = ReadOptions::default();
        if let Some(end) = prefix_end(prefix.as_bytes()) {
            read_options.set_iterate_upper_bound(end);
        }
        let mut keys = Vec::new();
        for entry in self.db.iterator_opt(
            IteratorMode::From(prefix.as_bytes(), Direction::Forward),
            read_options,
        ) {
            let (key, _) = entry.map_err(engine_error)?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            keys.push(String::from_utf8_lossy(&key).into_owned());
        }
        Ok(keys)
    }

    /// The current data set as an operator snapshot (also what Raft sends to a
    /// follower that is too far behind the log).
    pub fn export(&self, raft_meta: serde_json::Value) -> Result<Vec<u8>, storage::Error> {
        let view = self.db.snapshot();
        let mut writer = snapshot::Writer::new(&snapshot::Header {
            raft: raft_meta,
            created: crate::tokens::now_seconds(),
        });
        for entry in view.iterator(IteratorMode::Start) {
            let (key, value) = entry.map_err(engine_error)?;
            writer.pair(&key, &value);
        }
        Ok(writer.finish())
    }

    /// Writes `pairs` as the whole data set into `batch` (replacing what is there).
    fn replace_data(&self, batch: &mut WriteBatch, pairs: &[(Vec<u8>, Vec<u8>)]) {
        // Keys are UTF-8 paths, so none starts with 0xff.
        batch.delete_range(&[][..], &[0xffu8][..]);
        for (key, value) in pairs {
            batch.put(key, value);
        }
    }

    fn observer(&self) -> Option<Arc<dyn ApplyObserver>> {
        self.observer
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn notify(&self, change: &Applied<'_>) {
        if let Some(observer) = self.observer() {
            observer.applied(change);
        }
        self.applied.send_replace(change.index);
    }
}

fn io<E: std::error::Error + 'static>(
    make: fn(AnyError) -> StorageIOError<NodeId>,
) -> impl FnOnce(E) -> StorageError<NodeId> {
    move |error| make(AnyError::new(&error)).into()
}

fn storage_io(
    make: fn(AnyError) -> StorageIOError<NodeId>,
) -> impl FnOnce(storage::Error) -> StorageError<NodeId> {
    move |error| make(AnyError::error(error.to_string())).into()
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Pairs of the current data set, for tests.
#[cfg(test)]
pub fn dump(storage: &Storage) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    storage
        .db
        .iterator(IteratorMode::Start)
        .map(|item| {
            let (key, value) = item.unwrap();
            (key.to_vec(), value.to_vec())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use openraft::storage::{RaftLogStorage, RaftStateMachine};
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{
        CommittedLeaderId, Entry, EntryPayload, Membership as RaftMembership, RaftLogReader,
        RaftSnapshotBuilder,
    };

    use super::*;
    use crate::storage::Op;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> StorageResult<(tempfile::TempDir, LogStore, StateMachine)> {
            let directory = tempfile::tempdir().expect("temp dir");
            let storage = Storage::open(directory.path()).expect("open storage");
            Ok((
                directory,
                LogStore::new(storage.clone()),
                StateMachine::new(storage),
            ))
        }
    }

    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }

    /// Log entries as version 1 writes them, checked in: every later version
    /// must read a log this one left behind.
    const LOG_V1: &str = include_str!("../../../tests/fixtures/raft-log-v1.jsonl");

    #[test]
    fn a_log_written_by_version_one_is_read_and_written_the_same() {
        let mut payloads = Vec::new();
        for line in LOG_V1.lines() {
            let entry: Entry<TypeConfig> = serde_json::from_str(line).unwrap();
            // This version writes exactly what the fixture holds.
            let written = serde_json::to_value(&entry).unwrap();
            let fixture: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(written, fixture);
            payloads.push(entry.payload);
        }
        let [
            EntryPayload::Blank,
            EntryPayload::Membership(membership),
            EntryPayload::Normal(writes),
            EntryPayload::Normal(restore),
        ] = payloads.as_slice()
        else {
            panic!("the fixture's entries are not as written: {payloads:?}");
        };
        assert_eq!(membership.nodes().count(), 1);
        assert_eq!(
            writes.ops,
            vec![
                put("logical/u/a", "1"),
                Op::Delete {
                    key: "logical/u/b".into()
                },
                Op::DeletePrefix {
                    prefix: "logical/v/".into()
                },
            ]
        );
        assert_eq!(writes.changes[0].path, "secret/data/a");
        assert_eq!(writes.changes[0].version, 2);
        assert_eq!(
            restore.ops,
            vec![Op::Restore {
                snapshot: vec![0, 1]
            }]
        );
    }

    #[test]
    fn commands_without_a_version_are_version_one_and_newer_ones_are_refused() {
        let legacy = r#"{"ops":[{"Delete":{"key":"k"}}]}"#;
        let command: storage::Command = serde_json::from_str(legacy).unwrap();
        assert_eq!(command.ops, vec![Op::Delete { key: "k".into() }]);
        let written = serde_json::to_value(&command).unwrap();
        assert_eq!(written["v"], storage::COMMAND_VERSION);
        let newer = format!(
            r#"{{"v":{},"ops":[{{"Delete":{{"key":"k"}}}}]}}"#,
            storage::COMMAND_VERSION + 1
        );
        let refusal = serde_json::from_str::<storage::Command>(&newer).unwrap_err();
        assert!(refusal.to_string().contains("newer coffer"), "{refusal}");
    }

    fn entry(index: u64, ops: Vec<Op>) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(storage::Command {
                ops,
                ..Default::default()
            }),
        }
    }

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    struct Recorder(Mutex<Vec<(u64, Vec<String>, bool)>>);

    impl ApplyObserver for Recorder {
        fn applied(&self, change: &Applied<'_>) {
            self.0
                .lock()
                .unwrap()
                .push((change.index, change.touched.to_vec(), change.restored));
        }

        fn watches(&self, _key: &str) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn apply_snapshot_and_restore() {
        let first_directory = tempfile::tempdir().unwrap();
        let first = Storage::open(first_directory.path()).unwrap();
        let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
        first.set_observer(Some(recorder.clone()));
        let mut machine = StateMachine::new(first.clone());
        let membership = Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
            payload: EntryPayload::Membership(RaftMembership::new(
                vec![std::collections::BTreeSet::from([1])],
                None,
            )),
        };
        machine
            .apply(vec![
                membership,
                entry(
                    2,
                    vec![
                        put("core/mounts", "m"),
                        put("logical/a/x", "1"),
                        put("logical/a/y", "2"),
                    ],
                ),
                entry(
                    3,
                    vec![
                        Op::Delete {
                            key: "logical/a/y".into(),
                        },
                        put("sys/policy/p", "P"),
                    ],
                ),
            ])
            .await
            .unwrap();
        assert_eq!(first.get("logical/a/x").unwrap(), Some(b"1".to_vec()));
        assert_eq!(first.get("logical/a/y").unwrap(), None);
        assert_eq!(first.list("logical/").unwrap(), vec!["a/"]);
        assert_eq!(first.applied_index(), 3);
        assert_eq!(
            recorder.0.lock().unwrap().last().unwrap(),
            &(
                3,
                [
                    "core/mounts",
                    "logical/a/x",
                    "logical/a/y",
                    "logical/a/y",
                    "sys/policy/p"
                ]
                .map(str::to_owned)
                .to_vec(),
                false
            )
        );

        // A snapshot of the first store installs into a second, identically.
        let snapshot = machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let second_directory = tempfile::tempdir().unwrap();
        let second = Storage::open(second_directory.path()).unwrap();
        let mut other = StateMachine::new(second.clone());
        other
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        assert_eq!(dump(&first), dump(&second));
        assert_eq!(second.applied_index(), 3);
        let (applied, membership) = other.applied_state().await.unwrap();
        assert_eq!(applied.map(|id| id.index), Some(3));
        assert_eq!(membership.voter_ids().collect::<Vec<_>>(), vec![1]);
        let current = other.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id.map(|id| id.index), Some(3));

        // An operator restore replaces the data wholesale; a corrupt one changes nothing.
        let mut exported = second.export(serde_json::Value::Null).unwrap();
        machine
            .apply(vec![entry(4, vec![put("logical/a/z", "3")])])
            .await
            .unwrap();
        let before_bad = dump(&first);
        let last = exported.len() - 1;
        let mut corrupt = exported.clone();
        corrupt[last] ^= 1;
        machine
            .apply(vec![entry(5, vec![Op::Restore { snapshot: corrupt }])])
            .await
            .unwrap();
        assert_eq!(dump(&first), before_bad);
        machine
            .apply(vec![entry(
                6,
                vec![Op::Restore {
                    snapshot: std::mem::take(&mut exported),
                }],
            )])
            .await
            .unwrap();
        assert_eq!(first.get("logical/a/z").unwrap(), None);
        assert_eq!(first.get("logical/a/x").unwrap(), Some(b"1".to_vec()));
        assert!(
            recorder.0.lock().unwrap().last().unwrap().2,
            "restore reported"
        );
    }

    #[tokio::test]
    async fn appended_entries_are_readable_and_survive_reopen() {
        let directory = tempfile::tempdir().unwrap();
        {
            let storage = Storage::open(directory.path()).unwrap();
            let mut log = LogStore::new(storage.clone());
            let entries = vec![entry(1, vec![put("a", "1")]), entry(2, vec![put("b", "2")])];
            // Write through the same path append uses, then read back at once.
            let mut batch = WriteBatch::default();
            for entry in &entries {
                batch.put_cf(
                    storage.cf(CF_LOG).unwrap(),
                    index_key(entry.log_id.index),
                    serde_json::to_vec(entry).unwrap(),
                );
            }
            storage.db.write(batch).unwrap();
            storage.sync().unwrap();
            assert_eq!(log.try_get_log_entries(1..3).await.unwrap().len(), 2);
            assert!(storage.has_raft_state());
        }
        let storage = Storage::open(directory.path()).unwrap();
        let mut log = LogStore::new(storage);
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|id| id.index), Some(2));
    }
}
