//! The sync thread: makes appended entries durable, one `flush_wal(true)` for
//! every callback queued meanwhile, so concurrent writes share an fsync.

use std::sync::mpsc;

use openraft::storage::LogFlushed;
use rocksdb::DB;

use crate::raft::TypeConfig;

pub(super) fn run_syncer(db: &DB, receiver: &mpsc::Receiver<LogFlushed<TypeConfig>>) {
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
