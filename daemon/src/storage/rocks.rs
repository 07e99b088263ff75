//! [`Backend`] on RocksDB: one column family, synced writes (RocksDB groups
//! concurrent writers into one WAL sync), prefix scans by bounded iterators.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{DB, DBCompressionType, Direction, IteratorMode, Options, ReadOptions, WriteBatch};

use super::{Backend, BoxFuture, Command, Error, Op, prefix_end};

/// RocksDB holding the whole store in its default column family.
#[derive(Clone)]
pub struct RocksBackend {
    db: Arc<DB>,
}

impl RocksBackend {
    pub fn open(path: &Path) -> Result<Self, Error> {
        let mut options = Options::default();
        options.create_if_missing(true);
        // Values are AES-GCM ciphertext: compression would cost CPU for nothing.
        options.set_compression_type(DBCompressionType::None);
        options.increase_parallelism(2);
        options.set_max_background_jobs(2);
        options.set_keep_log_file_num(4);
        let db = DB::open(&options, path).map_err(|error| Error::Open {
            path: path.display().to_string(),
            reason: error.into_string(),
        })?;
        Ok(RocksBackend { db: Arc::new(db) })
    }

    fn bounded_iterator(&self, prefix: &str) -> rocksdb::DBIteratorWithThreadMode<'_, DB> {
        let mut read_options = ReadOptions::default();
        if let Some(end) = prefix_end(prefix.as_bytes()) {
            read_options.set_iterate_upper_bound(end);
        }
        self.db.iterator_opt(
            IteratorMode::From(prefix.as_bytes(), Direction::Forward),
            read_options,
        )
    }

    fn write(db: &DB, command: Command) -> Result<(), Error> {
        let mut batch = WriteBatch::default();
        for op in command.ops {
            match op {
                Op::Put { key, value } => batch.put(key.as_bytes(), value),
                Op::Delete { key } => batch.delete(key.as_bytes()),
                Op::DeletePrefix { prefix } => match prefix_end(prefix.as_bytes()) {
                    Some(end) => batch.delete_range(prefix.as_bytes(), &end),
                    None => {
                        for entry in db.prefix_iterator(prefix.as_bytes()) {
                            let (key, _) = entry?;
                            if !key.starts_with(prefix.as_bytes()) {
                                break;
                            }
                            batch.delete(key);
                        }
                    }
                },
            }
        }
        let mut write_options = rocksdb::WriteOptions::default();
        write_options.set_sync(true);
        db.write_opt(batch, &write_options)?;
        Ok(())
    }
}

impl Backend for RocksBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.db.get(key.as_bytes())?)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let mut children = Vec::new();
        let mut iterator = self.db.raw_iterator_opt({
            let mut read_options = ReadOptions::default();
            if let Some(end) = prefix_end(prefix.as_bytes()) {
                read_options.set_iterate_upper_bound(end);
            }
            read_options
        });
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
        iterator.status()?;
        children.dedup();
        Ok(children)
    }

    fn scan(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        for entry in self.bounded_iterator(prefix) {
            let (key, _) = entry?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            keys.push(String::from_utf8_lossy(&key).into_owned());
        }
        Ok(keys)
    }

    fn apply(&self, command: Command) -> BoxFuture<'_, Result<(), Error>> {
        let db = self.db.clone();
        Box::pin(async move {
            if command.is_empty() {
                return Ok(());
            }
            tokio::task::spawn_blocking(move || Self::write(&db, command))
                .await
                .map_err(|error| Error::Task(error.to_string()))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    #[tokio::test]
    async fn put_get_list_scan_delete() {
        let directory = tempfile::tempdir().unwrap();
        let backend = RocksBackend::open(directory.path()).unwrap();
        backend
            .apply(Command {
                ops: vec![
                    put("a/x", "1"),
                    put("a/y/z", "2"),
                    put("a/y/w", "3"),
                    put("a/yy", "4"),
                    put("b", "5"),
                ],
            })
            .await
            .unwrap();
        assert_eq!(backend.get("a/x").unwrap(), Some(b"1".to_vec()));
        assert_eq!(backend.get("a/nope").unwrap(), None);
        assert_eq!(backend.list("a/").unwrap(), vec!["x", "y/", "yy"]);
        assert_eq!(backend.list("").unwrap(), vec!["a/", "b"]);
        assert_eq!(backend.list("c/").unwrap(), Vec::<String>::new());
        assert_eq!(backend.scan("a/y").unwrap(), vec!["a/y/w", "a/y/z", "a/yy"]);

        backend
            .apply(Command {
                ops: vec![
                    Op::DeletePrefix {
                        prefix: "a/y/".into(),
                    },
                    Op::Delete { key: "b".into() },
                ],
            })
            .await
            .unwrap();
        assert_eq!(backend.list("a/").unwrap(), vec!["x", "yy"]);
        assert_eq!(backend.get("b").unwrap(), None);
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let directory = tempfile::tempdir().unwrap();
        {
            let backend = RocksBackend::open(directory.path()).unwrap();
            backend
                .apply(Command {
                    ops: vec![put("k", "v")],
                })
                .await
                .unwrap();
        }
        let backend = RocksBackend::open(directory.path()).unwrap();
        assert_eq!(backend.get("k").unwrap(), Some(b"v".to_vec()));
    }
}
