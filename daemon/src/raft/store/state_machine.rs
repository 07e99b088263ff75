//! The state machine half of the store: applies committed commands to the
//! data the core reads, tells the apply observer, and builds and installs
//! snapshots (openraft's `RaftStateMachine`).

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError,
};
use rocksdb::{IteratorMode, WriteBatch};

use super::{
    Applied, ApplyObserver, CF_META, KEY_APPLIED, KEY_MEMBERSHIP, Membership, NodeId,
    SNAPSHOT_FILE, Storage, StorageResult, engine_error, io, storage_io,
};
use crate::raft::{NodeInfo, TypeConfig, snapshot};
use crate::storage::{self, Op, prefix_end};

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
