//! Records read through the barrier, kept parsed in memory by storage key until
//! a replicated write touches them. Only for records that are not secret (KV
//! key metadata, token entries): plaintext secrets are never cached.
//!
//! The apply observer ([`crate::core`]) calls [`Parsed::forget`] for every
//! applied write under a cached prefix after the write reaches this node's
//! replica and before the write is acknowledged, so a read after a write never
//! sees the old record. A load that raced such a write is not kept: loads note
//! a generation counter before reading storage and keep their result only if no
//! write came in between.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Records kept at most; the cache starts over when full.
const LIMIT: usize = 65_536;

pub struct Parsed<T> {
    entries: RwLock<HashMap<String, Arc<T>>>,
    generation: AtomicU64,
}

impl<T> Default for Parsed<T> {
    fn default() -> Self {
        Parsed {
            entries: RwLock::default(),
            generation: AtomicU64::new(0),
        }
    }
}

impl<T> Parsed<T> {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, Arc<T>>> {
        self.entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, Arc<T>>> {
        self.entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The record at `key`: from memory, or from `load` (which reads storage),
    /// kept unless a write touched the cache while it ran. `None` (absent) is
    /// not kept.
    pub fn get_or_load<E>(
        &self,
        key: &str,
        load: impl FnOnce() -> Result<Option<T>, E>,
    ) -> Result<Option<Arc<T>>, E> {
        if let Some(hit) = self.read().get(key) {
            return Ok(Some(hit.clone()));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let Some(loaded) = load()? else {
            return Ok(None);
        };
        let loaded = Arc::new(loaded);
        let mut entries = self.write();
        if self.generation.load(Ordering::SeqCst) == generation {
            if entries.len() >= LIMIT {
                entries.clear();
            }
            entries.insert(key.to_owned(), loaded.clone());
        }
        Ok(Some(loaded))
    }

    /// An applied write touched `key` (every key under it when it ends in `/`).
    pub fn forget(&self, key: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut entries = self.write();
        if key.ends_with('/') {
            entries.retain(|cached, _| !cached.starts_with(key));
        } else {
            entries.remove(key);
        }
    }

    /// The whole data set changed (a snapshot was installed).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.write().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(value: u32) -> impl FnOnce() -> Result<Option<u32>, ()> {
        move || Ok(Some(value))
    }

    #[test]
    fn records_are_kept_until_a_write_touches_them() {
        let cache = Parsed::default();
        assert_eq!(*cache.get_or_load("a/1", load(1)).unwrap().unwrap(), 1);
        assert_eq!(*cache.get_or_load("a/1", load(2)).unwrap().unwrap(), 1);
        cache.forget("a/1");
        assert_eq!(*cache.get_or_load("a/1", load(3)).unwrap().unwrap(), 3);
        cache.get_or_load("a/2", load(4)).unwrap();
        cache.get_or_load("b/1", load(5)).unwrap();
        cache.forget("a/");
        assert_eq!(*cache.get_or_load("a/1", load(6)).unwrap().unwrap(), 6);
        assert_eq!(*cache.get_or_load("a/2", load(7)).unwrap().unwrap(), 7);
        assert_eq!(*cache.get_or_load("b/1", load(8)).unwrap().unwrap(), 5);
        cache.clear();
        assert_eq!(*cache.get_or_load("b/1", load(9)).unwrap().unwrap(), 9);
    }

    #[test]
    fn a_load_that_raced_a_write_is_not_kept_and_absence_is_not_kept() {
        let cache = Parsed::default();
        let raced = cache.get_or_load("k", || {
            // A write is applied while storage is read: what was read may be old.
            cache.forget("k");
            Ok::<_, ()>(Some(1))
        });
        assert_eq!(*raced.unwrap().unwrap(), 1);
        assert_eq!(*cache.get_or_load("k", load(2)).unwrap().unwrap(), 2);
        assert!(
            cache
                .get_or_load("n", || Ok::<_, ()>(None))
                .unwrap()
                .is_none()
        );
        assert_eq!(*cache.get_or_load("n", load(3)).unwrap().unwrap(), 3);
        assert!(
            cache
                .get_or_load("e", || Err::<Option<u32>, _>("storage"))
                .is_err()
        );
    }
}
