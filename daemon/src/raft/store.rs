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
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, mpsc};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use rocksdb::{
    ColumnFamilyDescriptor, DB, DBCompressionType, Direction, IteratorMode, Options, ReadOptions,
    WriteBatch,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::snapshot;
use super::{NodeInfo, TypeConfig};
use crate::storage::{self, Op, prefix_end};

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
            .spawn(move || run_syncer(&syncer_db, &receiver))
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

fn run_syncer(db: &DB, receiver: &mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = receiver.recv() {
        let mut waiting = vec![first];
        while let Ok(more) = receiver.try_recv() {
            waiting.push(more);
        }
        let result = db.flush_wal(true);
        for callback in waiting {
            let outcome = match &result {
                Ok(()) => Ok(()),
                Err(error) => Err(std::io::Error::other(error.to_string())),
            };
            callback.log_io_completed(outcome);
        }
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

/// The log half of the store.
#[derive(Clone)]
pub struct LogStore {
    storage: Arc<Storage>,
}

impl LogStore {
    pub fn new(storage: Arc<Storage>) -> Self {
        LogStore { storage }
    }

    fn last_entry(&self) -> StorageResult<Option<Entry<TypeConfig>>> {
        let cf = self
            .storage
            .cf(CF_LOG)
            .map_err(storage_io(StorageIOError::read_logs))?;
        match self.storage.db.iterator_cf(cf, IteratorMode::End).next() {
            Some(item) => {
                let (_, bytes) = item.map_err(io(StorageIOError::read_logs))?;
                Ok(Some(
                    serde_json::from_slice(&bytes).map_err(io(StorageIOError::read_logs))?,
                ))
            }
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(index) => *index,
            Bound::Excluded(index) => index.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let cf = self
            .storage
            .cf(CF_LOG)
            .map_err(storage_io(StorageIOError::read_logs))?;
        let mut entries = Vec::new();
        for item in self.storage.db.iterator_cf(
            cf,
            IteratorMode::From(&index_key(start), Direction::Forward),
        ) {
            let (key, bytes) = item.map_err(io(StorageIOError::read_logs))?;
            let index = u64::from_be_bytes(key.as_ref().try_into().unwrap_or([0xff; 8]));
            if !range.contains(&index) {
                break;
            }
            entries.push(serde_json::from_slice(&bytes).map_err(io(StorageIOError::read_logs))?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id = self
            .storage
            .meta::<LogId<NodeId>>(KEY_PURGED)
            .map_err(storage_io(StorageIOError::read_logs))?;
        let last_log_id = self
            .last_entry()?
            .map(|entry| entry.log_id)
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let mut batch = WriteBatch::default();
        self.storage
            .put_meta(&mut batch, KEY_VOTE, vote)
            .map_err(storage_io(StorageIOError::write_vote))?;
        self.storage
            .db
            .write(batch)
            .map_err(io(StorageIOError::write_vote))?;
        self.storage
            .sync()
            .map_err(storage_io(StorageIOError::write_vote))
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.storage
            .meta(KEY_VOTE)
            .map_err(storage_io(StorageIOError::read_vote))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = self
            .storage
            .cf(CF_LOG)
            .map_err(storage_io(StorageIOError::write_logs))?;
        let mut batch = WriteBatch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(io(StorageIOError::write_logs))?;
            batch.put_cf(cf, index_key(entry.log_id.index), bytes);
        }
        // Visible to readers now; durable when the syncer has flushed the WAL.
        self.storage
            .db
            .write(batch)
            .map_err(io(StorageIOError::write_logs))?;
        self.storage
            .syncer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .ok_or(())
            .and_then(|sender| sender.send(callback).map_err(drop))
            .map_err(|_| {
                StorageError::from(StorageIOError::write_logs(AnyError::error(
                    "the log sync thread has stopped",
                )))
            })
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let cf = self
            .storage
            .cf(CF_LOG)
            .map_err(storage_io(StorageIOError::write_logs))?;
        self.storage
            .db
            .delete_range_cf(cf, index_key(log_id.index), index_key(u64::MAX))
            .map_err(io(StorageIOError::write_logs))?;
        self.storage
            .sync()
            .map_err(storage_io(StorageIOError::write_logs))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        // The state machine's applies are not synced on their own: make them
        // durable before the entries that produced them disappear.
        self.storage
            .sync()
            .map_err(storage_io(StorageIOError::write_logs))?;
        let cf = self
            .storage
            .cf(CF_LOG)
            .map_err(storage_io(StorageIOError::write_logs))?;
        let mut batch = WriteBatch::default();
        self.storage
            .put_meta(&mut batch, KEY_PURGED, &log_id)
            .map_err(storage_io(StorageIOError::write_logs))?;
        batch.delete_range_cf(cf, index_key(0), index_key(log_id.index.saturating_add(1)));
        self.storage
            .db
            .write(batch)
            .map_err(io(StorageIOError::write_logs))
    }
}

/// The state machine half of the store.
#[derive(Clone)]
pub struct StateMachine {
    storage: Arc<Storage>,
}

impl StateMachine {
    pub fn new(storage: Arc<Storage>) -> Self {
        StateMachine { storage }
    }

    fn snapshot_path(&self) -> PathBuf {
        self.storage.directory.join(SNAPSHOT_FILE)
    }

    /// Keeps `bytes` as the current snapshot, atomically (write, sync, rename).
    fn save_snapshot_file(&self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        let path = self.snapshot_path();
        let temporary = path.with_extension("tmp");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(&self.storage.directory)?.sync_all()
    }

    fn apply_ops(
        &self,
        batch: &mut WriteBatch,
        ops: Vec<Op>,
        touched: &mut Vec<String>,
        restored: &mut bool,
        observer: Option<&dyn ApplyObserver>,
    ) {
        let watched = |key: &str| observer.is_some_and(|observer| observer.watches(key));
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    batch.put(key.as_bytes(), value);
                    if watched(&key) {
                        touched.push(key);
                    }
                }
                Op::Delete { key } => {
                    batch.delete(key.as_bytes());
                    if watched(&key) {
                        touched.push(key);
                    }
                }
                Op::DeletePrefix { prefix } => {
                    match prefix_end(prefix.as_bytes()) {
                        Some(end) => batch.delete_range(prefix.as_bytes(), &end),
                        None => batch.delete_range(prefix.as_bytes(), &[0xffu8][..]),
                    }
                    if watched(&prefix) {
                        touched.push(prefix);
                    }
                }
                Op::Restore { snapshot } => match snapshot::decode(&snapshot) {
                    Ok(decoded) => {
                        self.storage.replace_data(batch, &decoded.pairs);
                        *restored = true;
                    }
                    // Every replica decodes the same bytes the same way, so
                    // skipping keeps them identical. The leader checked them.
                    Err(error) => tracing::error!(%error, "ignoring a restore with a bad snapshot"),
                },
            }
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let view = self.storage.db.snapshot();
        let read_meta = |key: &str| -> StorageResult<Option<Vec<u8>>> {
            let cf = self
                .storage
                .cf(CF_META)
                .map_err(storage_io(StorageIOError::read_state_machine))?;
            view.get_cf(cf, key)
                .map_err(io(StorageIOError::read_state_machine))
        };
        let last_log_id: Option<LogId<NodeId>> = match read_meta(KEY_APPLIED)? {
            Some(bytes) => Some(
                serde_json::from_slice(&bytes).map_err(io(StorageIOError::read_state_machine))?,
            ),
            None => None,
        };
        let last_membership: Membership = match read_meta(KEY_MEMBERSHIP)? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(io(StorageIOError::read_state_machine))?
            }
            None => Membership::default(),
        };
        let snapshot_id = format!(
            "{}-{}",
            last_log_id.map(|id| id.index).unwrap_or(0),
            crate::tokens::now_seconds()
        );
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let raft_meta =
            serde_json::to_value(&meta).map_err(io(StorageIOError::read_state_machine))?;
        let mut writer = snapshot::Writer::new(&snapshot::Header {
            raft: raft_meta,
            created: crate::tokens::now_seconds(),
        });
        for entry in view.iterator(IteratorMode::Start) {
            let (key, value) = entry.map_err(io(StorageIOError::read_state_machine))?;
            writer.pair(&key, &value);
        }
        let bytes = writer.finish();
        self.save_snapshot_file(&bytes).map_err(|error| {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&error))
        })?;
        tracing::info!(snapshot = %meta.snapshot_id, bytes = bytes.len(), "built a snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<NodeId>>, Membership)> {
        let applied = self
            .storage
            .meta(KEY_APPLIED)
            .map_err(storage_io(StorageIOError::read_state_machine))?;
        let membership = self
            .storage
            .meta(KEY_MEMBERSHIP)
            .map_err(storage_io(StorageIOError::read_state_machine))?
            .unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<()>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let mut responses = Vec::new();
        let mut touched = Vec::new();
        let mut changes = Vec::new();
        let mut restored = false;
        let mut last = None;
        let observer = self.storage.observer();
        for entry in entries {
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(command) => {
                    let index = entry.log_id.index;
                    changes.extend(command.changes.into_iter().map(|change| (index, change)));
                    self.apply_ops(
                        &mut batch,
                        command.ops,
                        &mut touched,
                        &mut restored,
                        observer.as_deref(),
                    )
                }
                EntryPayload::Membership(membership) => {
                    let stored = Membership::new(Some(entry.log_id), membership);
                    self.storage
                        .put_meta(&mut batch, KEY_MEMBERSHIP, &stored)
                        .map_err(storage_io(StorageIOError::write_state_machine))?;
                }
            }
            last = Some(entry.log_id);
            responses.push(());
        }
        let Some(last) = last else {
            return Ok(responses);
        };
        self.storage
            .put_meta(&mut batch, KEY_APPLIED, &last)
            .map_err(storage_io(StorageIOError::write_state_machine))?;
        self.storage
            .db
            .write(batch)
            .map_err(io(StorageIOError::write_state_machine))?;
        if restored {
            // A restore must survive a crash before anyone is told it happened.
            self.storage
                .sync()
                .map_err(storage_io(StorageIOError::write_state_machine))?;
        }
        self.storage.notify(&Applied {
            index: last.index,
            touched: &touched,
            changes: &changes,
            replaced: restored,
            restored,
        });
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let bytes = snapshot.into_inner();
        let decoded = snapshot::decode(&bytes).map_err(|error| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&error))
        })?;
        tracing::info!(
            snapshot = %meta.snapshot_id,
            pairs = decoded.pairs.len(),
            "installing a snapshot from the leader"
        );
        let mut batch = WriteBatch::default();
        self.storage.replace_data(&mut batch, &decoded.pairs);
        let write_error = |error: storage::Error| {
            StorageError::from(StorageIOError::write_snapshot(
                Some(meta.signature()),
                AnyError::error(error.to_string()),
            ))
        };
        if let Some(last) = meta.last_log_id {
            self.storage
                .put_meta(&mut batch, KEY_APPLIED, &last)
                .map_err(write_error)?;
        }
        self.storage
            .put_meta(&mut batch, KEY_MEMBERSHIP, &meta.last_membership)
            .map_err(write_error)?;
        self.storage
            .db
            .write(batch)
            .map_err(|error| write_error(engine_error(error)))?;
        self.storage.sync().map_err(write_error)?;
        self.save_snapshot_file(&bytes).map_err(|error| {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&error))
        })?;
        self.storage.notify(&Applied {
            index: meta.last_log_id.map(|id| id.index).unwrap_or(0),
            touched: &[],
            changes: &[],
            replaced: true,
            restored: false,
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let bytes = match std::fs::read(self.snapshot_path()) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(StorageIOError::read_snapshot(None, AnyError::new(&error)).into());
            }
        };
        let decoded = snapshot::decode(&bytes)
            .map_err(|error| StorageIOError::read_snapshot(None, AnyError::new(&error)))?;
        let meta: SnapshotMeta<NodeId, NodeInfo> = serde_json::from_value(decoded.header.raft)
            .map_err(|error| StorageIOError::read_snapshot(None, AnyError::new(&error)))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
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
    use super::*;
    use openraft::testing::{StoreBuilder, Suite};

    use openraft::{CommittedLeaderId, Membership as RaftMembership};

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
    const LOG_V1: &str = include_str!("../../tests/fixtures/raft-log-v1.jsonl");

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
