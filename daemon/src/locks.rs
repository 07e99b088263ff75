//! Striped async locks for read-modify-write sequences on one key (a KV secret's
//! metadata, a token's use count): 256 mutexes chosen by a hash of the key, as
//! Vault's `locksutil` does, so unrelated keys rarely contend.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use tokio::sync::{Mutex, MutexGuard};

const STRIPES: usize = 256;

pub struct Stripes {
    locks: Vec<Mutex<()>>,
}

impl Default for Stripes {
    fn default() -> Self {
        Self::new()
    }
}

impl Stripes {
    pub fn new() -> Self {
        Stripes {
            locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    pub async fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        self.locks[(hasher.finish() as usize) % STRIPES]
            .lock()
            .await
    }
}
