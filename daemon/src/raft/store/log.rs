//! The log half of the store: entries by big-endian index in `raft_log`, the
//! vote and purge point in `raft_meta` (openraft's `RaftLogStorage`).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::{
    CF_LOG, KEY_PURGED, KEY_VOTE, NodeId, Storage, StorageResult, index_key, io, storage_io,
};
use crate::raft::TypeConfig;

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
