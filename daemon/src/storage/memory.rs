//! An in-memory [`Backend`] for unit tests of the layers above storage (barrier,
//! tokens, seal). Production has one backend: Raft over RocksDB.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Backend, BoxFuture, Command, Error, Op};

#[derive(Default)]
pub struct MemoryBackend {
    entries: Mutex<BTreeMap<String, Vec<u8>>>,
    index: Mutex<u64>,
}

impl MemoryBackend {
    /// Stores `value` at `key` directly, as a record laid down before the test.
    pub fn insert(&self, key: &str, value: Vec<u8>) {
        self.entries().insert(key.to_owned(), value);
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Backend for MemoryBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.entries().get(key).cloned())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let mut children: Vec<String> = self
            .entries()
            .keys()
            .filter_map(|key| key.strip_prefix(prefix))
            .map(|rest| match rest.find('/') {
                Some(slash) => rest[..=slash].to_owned(),
                None => rest.to_owned(),
            })
            .collect();
        children.dedup();
        Ok(children)
    }

    fn scan(&self, prefix: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .entries()
            .keys()
            .filter(|key| key.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn apply(&self, command: Command) -> BoxFuture<'_, Result<u64, Error>> {
        let mut entries = self.entries();
        for op in command.ops {
            match op {
                Op::Put { key, value } => {
                    entries.insert(key, value);
                }
                Op::Delete { key } => {
                    entries.remove(&key);
                }
                Op::DeletePrefix { prefix } => entries.retain(|key, _| !key.starts_with(&prefix)),
                Op::Restore { .. } => entries.clear(),
            }
        }
        drop(entries);
        let mut index = self
            .index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *index += 1;
        let applied = *index;
        Box::pin(async move { Ok(applied) })
    }
}
