//! The barrier: every value the core stores is encrypted here, and nothing above
//! the storage trait sees ciphertext.
//!
//! Each entry is sealed with AES-256-GCM under the keyring's active term, with a
//! fresh random 96-bit nonce and the storage path as associated data, so a value
//! copied to another path fails to decrypt. The layout of a sealed value is
//! `version (1) | term (4, big-endian) | nonce (12) | ciphertext | tag (16)`.
//!
//! The keyring holds one key per term; `sys/rotate` adds a term and new writes use
//! it, while older terms stay to decrypt older entries. The keyring itself is
//! sealed by the root key at [`KEYRING_PATH`]; the root key is sealed by the unseal
//! key (see `seal`). Key bytes live in zeroizing buffers, and aws-lc wipes its key
//! schedules when they are freed, so sealing (dropping the keyring) erases them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::crypto::{self, RandomError};
use crate::storage::{self, Backend, Command, Op};

/// Where the sealed keyring is stored.
pub const KEYRING_PATH: &str = "core/keyring";

const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
const TAG_LEN: usize = 16;
pub const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the value at {path} failed to decrypt (tampered, moved, or sealed by another key)")]
    Decrypt { path: String },
    #[error("the value at {path} is sealed with unknown key term {term}")]
    UnknownTerm { path: String, term: u32 },
    #[error("encryption failed")]
    Encrypt,
    #[error("the stored keyring is malformed")]
    MalformedKeyring,
    #[error("the value at {path} is not valid JSON for its type: {reason}")]
    Decode { path: String, reason: String },
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error(transparent)]
    Storage(#[from] storage::Error),
}

/// Seals `plaintext` with `key` (one 256-bit key, no keyring), binding it to `path`.
pub fn seal_with_key(
    key: &[u8],
    term: u32,
    path: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| Error::Encrypt)?);
    seal_with(&key, term, path, plaintext)
}

fn seal_with(key: &LessSafeKey, term: u32, path: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let mut nonce = [0u8; NONCE_LEN];
    crypto::fill_random(&mut nonce)?;
    let mut output = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    output.push(FORMAT_VERSION);
    output.extend_from_slice(&term.to_be_bytes());
    output.extend_from_slice(&nonce);
    output.extend_from_slice(plaintext);
    let mut body = output.split_off(HEADER_LEN);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(path.as_bytes()),
        &mut body,
    )
    .map_err(|_| Error::Encrypt)?;
    output.append(&mut body);
    Ok(output)
}

/// The key term a sealed value was written with.
fn term_of(path: &str, sealed: &[u8]) -> Result<u32, Error> {
    if sealed.len() < HEADER_LEN + TAG_LEN || sealed[0] != FORMAT_VERSION {
        return Err(Error::Decrypt { path: path.into() });
    }
    Ok(u32::from_be_bytes([
        sealed[1], sealed[2], sealed[3], sealed[4],
    ]))
}

/// Opens a value sealed by [`seal_with_key`] with the same key and path.
pub fn open_with_key(key: &[u8], path: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key).map_err(|_| Error::Decrypt { path: path.into() })?,
    );
    term_of(path, sealed)?;
    open_with(&key, path, sealed)
}

fn open_with(key: &LessSafeKey, path: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[5..HEADER_LEN]);
    let mut buffer = Zeroizing::new(sealed[HEADER_LEN..].to_vec());
    let plaintext_len = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(path.as_bytes()),
            &mut buffer,
        )
        .map_err(|_| Error::Decrypt { path: path.into() })?
        .len();
    buffer.truncate(plaintext_len);
    Ok(buffer)
}

struct TermKey {
    key: LessSafeKey,
    raw: Zeroizing<[u8; KEY_LEN]>,
    installed: SystemTime,
}

/// The encryption keys by term, and the root key that seals them.
pub struct Keyring {
    terms: BTreeMap<u32, TermKey>,
    active: u32,
    root_key: Zeroizing<[u8; KEY_LEN]>,
}

impl Keyring {
    /// A keyring with one fresh term, sealed by `root_key`.
    pub fn generate(root_key: Zeroizing<[u8; KEY_LEN]>) -> Result<Self, Error> {
        let mut keyring = Keyring {
            terms: BTreeMap::new(),
            active: 0,
            root_key,
        };
        keyring.add_term(crate::clock::now())?;
        Ok(keyring)
    }

    fn add_term(&mut self, installed: SystemTime) -> Result<u32, Error> {
        let term = self.active + 1;
        let raw = crypto::random_key::<KEY_LEN>()?;
        self.insert(term, raw, installed)?;
        self.active = term;
        Ok(term)
    }

    fn insert(
        &mut self,
        term: u32,
        raw: Zeroizing<[u8; KEY_LEN]>,
        installed: SystemTime,
    ) -> Result<(), Error> {
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, raw.as_ref()).map_err(|_| Error::MalformedKeyring)?,
        );
        self.terms.insert(
            term,
            TermKey {
                key,
                raw,
                installed,
            },
        );
        Ok(())
    }

    pub fn active_term(&self) -> u32 {
        self.active
    }

    pub fn installed(&self, term: u32) -> Option<SystemTime> {
        self.terms.get(&term).map(|entry| entry.installed)
    }

    /// The keyring sealed by its root key, ready to store at [`KEYRING_PATH`].
    /// Plain layout before sealing: `active (4) | count (4) | (term (4) |
    /// installed unix seconds (8) | key (32))*`.
    pub fn seal(&self) -> Result<Vec<u8>, Error> {
        let mut plain = Zeroizing::new(Vec::with_capacity(8 + self.terms.len() * 44));
        plain.extend_from_slice(&self.active.to_be_bytes());
        plain.extend_from_slice(&(self.terms.len() as u32).to_be_bytes());
        for (term, entry) in &self.terms {
            let seconds = entry
                .installed
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            plain.extend_from_slice(&term.to_be_bytes());
            plain.extend_from_slice(&seconds.to_be_bytes());
            plain.extend_from_slice(entry.raw.as_ref());
        }
        seal_with_key(self.root_key.as_ref(), 0, KEYRING_PATH, &plain)
    }

    /// Opens a keyring stored by [`Keyring::seal`].
    pub fn open(root_key: Zeroizing<[u8; KEY_LEN]>, sealed: &[u8]) -> Result<Self, Error> {
        let plain = open_with_key(root_key.as_ref(), KEYRING_PATH, sealed)?;
        let read_u32 = |at: usize| -> Result<u32, Error> {
            plain
                .get(at..at + 4)
                .and_then(|bytes| bytes.try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or(Error::MalformedKeyring)
        };
        let active = read_u32(0)?;
        let count = read_u32(4)? as usize;
        if plain.len() != 8 + count * 44 {
            return Err(Error::MalformedKeyring);
        }
        let mut keyring = Keyring {
            terms: BTreeMap::new(),
            active,
            root_key,
        };
        for index in 0..count {
            let at = 8 + index * 44;
            let term = read_u32(at)?;
            let mut seconds = [0u8; 8];
            seconds.copy_from_slice(&plain[at + 4..at + 12]);
            let mut raw = Zeroizing::new([0u8; KEY_LEN]);
            raw.copy_from_slice(&plain[at + 12..at + 44]);
            let installed = UNIX_EPOCH + Duration::from_secs(u64::from_be_bytes(seconds));
            keyring.insert(term, raw, installed)?;
        }
        if !keyring.terms.contains_key(&active) {
            return Err(Error::MalformedKeyring);
        }
        Ok(keyring)
    }

    /// Encrypts `plaintext` under the active term, bound to `path`.
    pub(crate) fn encrypt(&self, path: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let active = self
            .terms
            .get(&self.active)
            .ok_or(Error::MalformedKeyring)?;
        seal_with(&active.key, self.active, path, plaintext)
    }

    /// Decrypts what [`Keyring::encrypt`] made for `path`, with any term.
    pub(crate) fn decrypt(&self, path: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let term = term_of(path, sealed)?;
        let entry = self.terms.get(&term).ok_or_else(|| Error::UnknownTerm {
            path: path.into(),
            term,
        })?;
        open_with(&entry.key, path, sealed)
    }

    /// A copy of this keyring with one more term, as the next active one.
    fn rotated(&self) -> Result<Keyring, Error> {
        let mut next = Keyring {
            terms: BTreeMap::new(),
            active: self.active,
            root_key: self.root_key.clone(),
        };
        for (term, entry) in &self.terms {
            next.insert(*term, entry.raw.clone(), entry.installed)?;
        }
        next.add_term(crate::clock::now())?;
        Ok(next)
    }
}

/// The encrypted view of the store.
pub struct Barrier {
    backend: Arc<dyn Backend>,
    /// The keyring as stored: replaced only from storage (the apply observer's
    /// reload, or a rotation's, after its write is applied).
    keyring: RwLock<Arc<Keyring>>,
    /// One rotation at a time: two built from the same keyring would each add
    /// a different key under the same term.
    rotation: tokio::sync::Mutex<()>,
    /// Encryptions made here and not yet added to [`USAGE_PATH`].
    pending_encryptions: Arc<AtomicU64>,
}

/// Where the count of encryptions under the active term is kept (replicated,
/// behind the barrier): `{"term": .., "encryptions": ..}`.
pub const USAGE_PATH: &str = "core/key-usage";

/// Encryptions counted under one term, as stored at [`USAGE_PATH`].
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct KeyUsage {
    pub term: u32,
    pub encryptions: u64,
}

impl Barrier {
    pub fn new(backend: Arc<dyn Backend>, keyring: Keyring) -> Self {
        Barrier {
            backend,
            keyring: RwLock::new(Arc::new(keyring)),
            rotation: tokio::sync::Mutex::new(()),
            pending_encryptions: Arc::new(AtomicU64::new(0)),
        }
    }

    fn keyring(&self) -> Arc<Keyring> {
        match self.keyring.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The decrypted value at `path`.
    pub fn get(&self, path: &str) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
        match self.backend.get(path)? {
            Some(sealed) => Ok(Some(self.keyring().decrypt(path, &sealed)?)),
            None => Ok(None),
        }
    }

    /// The value at `path`, decoded from JSON.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, Error> {
        match self.get(path)? {
            Some(plain) => {
                serde_json::from_slice(&plain)
                    .map(Some)
                    .map_err(|error| Error::Decode {
                        path: path.into(),
                        reason: error.classify_reason(),
                    })
            }
            None => Ok(None),
        }
    }

    pub fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        Ok(self.backend.list(prefix)?)
    }

    pub fn scan(&self, prefix: &str) -> Result<Vec<String>, Error> {
        Ok(self.backend.scan(prefix)?)
    }

    /// A batch of changes to commit atomically.
    pub fn batch(&self) -> Batch {
        Batch {
            keyring: self.keyring(),
            command: Command::default(),
            encryptions: self.pending_encryptions.clone(),
        }
    }

    /// Encryptions under the active term: what storage counted plus what this
    /// node has made since it last added its count.
    pub fn encryptions(&self) -> Result<u64, Error> {
        let term = self.keyring().active_term();
        let stored = self
            .get_json::<KeyUsage>(USAGE_PATH)?
            .filter(|usage| usage.term == term)
            .map_or(0, |usage| usage.encryptions);
        Ok(stored + self.pending_encryptions.load(Ordering::Relaxed))
    }

    /// Adds this node's pending count to the stored one (the leader does, about
    /// once a second, so the count costs one small write a second, not one per
    /// encryption). Returns the active term's total.
    pub async fn flush_encryptions(&self) -> Result<u64, Error> {
        let pending = self.pending_encryptions.swap(0, Ordering::Relaxed);
        if pending == 0 {
            return self.encryptions();
        }
        let result = async {
            let _rotation = self.rotation.lock().await;
            let term = self.keyring().active_term();
            let stored = self
                .get_json::<KeyUsage>(USAGE_PATH)?
                .filter(|usage| usage.term == term)
                .unwrap_or(KeyUsage {
                    term,
                    encryptions: 0,
                });
            let usage = KeyUsage {
                term,
                encryptions: stored.encryptions + pending,
            };
            self.put_json(USAGE_PATH, &usage).await?;
            Ok(usage.encryptions)
        }
        .await;
        if result.is_err() {
            self.pending_encryptions
                .fetch_add(pending, Ordering::Relaxed);
        }
        result
    }

    /// Commits the batch; returns the log index it was committed at.
    /// Commits `batch`; the first commit of a client's write request carries
    /// that request's change event (`crate::changes`).
    pub async fn commit(&self, batch: Batch) -> Result<u64, Error> {
        let mut command = batch.command;
        if !command.ops.is_empty()
            && let Some(change) = crate::changes::take()
        {
            command.changes.push(change);
        }
        Ok(self.backend.apply(command).await?)
    }

    /// Commits a command of ops that are already below the barrier (a restored
    /// snapshot's ciphertext).
    pub async fn commit_command(&self, command: Command) -> Result<u64, Error> {
        Ok(self.backend.apply(command).await?)
    }

    pub async fn put_json<T: Serialize>(&self, path: &str, value: &T) -> Result<u64, Error> {
        let mut batch = self.batch();
        batch.put_json(path, value)?;
        self.commit(batch).await
    }

    pub async fn delete(&self, path: &str) -> Result<u64, Error> {
        let mut batch = self.batch();
        batch.delete(path);
        self.commit(batch).await
    }

    /// Adds a key term and makes it active; returns the new term. Entries sealed
    /// under older terms still decrypt.
    ///
    /// Rotations run one at a time, each from the keyring as stored, and this
    /// node's copy is then read back from storage, never set from memory: the
    /// key a node encrypts under is always one that storage, and so every
    /// replica, holds.
    pub async fn rotate(&self) -> Result<u32, Error> {
        let _rotation = self.rotation.lock().await;
        let next = self.stored_keyring()?.rotated()?;
        // What was counted belongs to the key being retired.
        self.pending_encryptions.store(0, Ordering::Relaxed);
        let sealed = next.seal()?;
        self.backend
            .apply(Command {
                ops: vec![Op::Put {
                    key: KEYRING_PATH.into(),
                    value: sealed,
                }],
                ..Default::default()
            })
            .await?;
        self.reload_keyring()?;
        Ok(self.keyring().active_term())
    }

    /// Encrypts a value that is not stored (a join challenge) under the active
    /// term, bound to `label`.
    pub fn encrypt_blob(&self, label: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        self.pending_encryptions.fetch_add(1, Ordering::Relaxed);
        self.keyring().encrypt(label, plaintext)
    }

    /// Opens what [`Self::encrypt_blob`] made under `label`, with any term of
    /// this node's keyring.
    pub fn decrypt_blob(&self, label: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.keyring().decrypt(label, sealed)
    }

    /// The keyring as stored now, opened with the root key this node holds; fails
    /// when the stored keyring is sealed by another root key (a restored snapshot
    /// of another cluster).
    pub fn stored_keyring(&self) -> Result<Keyring, Error> {
        let sealed = self
            .backend
            .get(KEYRING_PATH)?
            .ok_or(Error::MalformedKeyring)?;
        Keyring::open(self.keyring().root_key.clone(), &sealed)
    }

    /// Whether `sealed_keyring` (from a snapshot) opens with this node's root key.
    pub fn opens_keyring(&self, sealed_keyring: &[u8]) -> bool {
        Keyring::open(self.keyring().root_key.clone(), sealed_keyring).is_ok()
    }

    /// Re-reads the keyring from storage (another node rotated it), opening it with
    /// the root key this node already holds.
    pub fn reload_keyring(&self) -> Result<(), Error> {
        let reloaded = self.stored_keyring()?;
        match self.keyring.write() {
            Ok(mut guard) => *guard = Arc::new(reloaded),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(reloaded),
        }
        Ok(())
    }

    /// The active term and when it was installed.
    pub fn key_status(&self) -> (u32, SystemTime) {
        let keyring = self.keyring();
        let term = keyring.active_term();
        (term, keyring.installed(term).unwrap_or(UNIX_EPOCH))
    }
}

/// Changes collected for one atomic [`Command`]; values are encrypted as they are
/// added.
pub struct Batch {
    keyring: Arc<Keyring>,
    command: Command,
    /// The barrier's count of encryptions not yet stored.
    encryptions: Arc<AtomicU64>,
}

impl Batch {
    pub fn put(&mut self, path: &str, plaintext: &[u8]) -> Result<(), Error> {
        let value = self.keyring.encrypt(path, plaintext)?;
        self.encryptions.fetch_add(1, Ordering::Relaxed);
        self.command.ops.push(Op::Put {
            key: path.into(),
            value,
        });
        Ok(())
    }

    pub fn put_json<T: Serialize>(&mut self, path: &str, value: &T) -> Result<(), Error> {
        let plain = Zeroizing::new(serde_json::to_vec(value).map_err(|error| Error::Decode {
            path: path.into(),
            reason: error.classify_reason(),
        })?);
        self.put(path, &plain)
    }

    /// Stores `value` as is, below the barrier: only for the seal's own records,
    /// which are read before the keyring exists and are sealed by their own keys.
    pub fn put_raw(&mut self, path: &str, value: Vec<u8>) {
        self.command.ops.push(Op::Put {
            key: path.into(),
            value,
        });
    }

    pub fn delete(&mut self, path: &str) {
        self.command.ops.push(Op::Delete { key: path.into() });
    }

    pub fn delete_prefix(&mut self, prefix: &str) {
        self.command.ops.push(Op::DeletePrefix {
            prefix: prefix.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.command.is_empty()
    }
}

/// serde_json's error text can quote the input; keep only its class and position.
trait ClassifyReason {
    fn classify_reason(&self) -> String;
}

impl ClassifyReason for serde_json::Error {
    fn classify_reason(&self) -> String {
        format!(
            "{:?} error at line {} column {}",
            self.classify(),
            self.line(),
            self.column()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryBackend;

    fn keyring() -> Keyring {
        Keyring::generate(crypto::random_key::<KEY_LEN>().unwrap()).unwrap()
    }

    fn barrier() -> (Arc<dyn Backend>, Barrier) {
        let memory = Arc::new(MemoryBackend::default());
        let keyring = keyring();
        memory.insert(KEYRING_PATH, keyring.seal().unwrap());
        let backend: Arc<dyn Backend> = memory;
        let barrier = Barrier::new(backend.clone(), keyring);
        (backend, barrier)
    }

    #[tokio::test]
    async fn values_round_trip_and_are_ciphertext_below() {
        let (backend, barrier) = barrier();
        barrier
            .put_json(
                "logical/a",
                &serde_json::json!({"password": "hunter2-plaintext"}),
            )
            .await
            .unwrap();
        let stored = backend.get("logical/a").unwrap().unwrap();
        assert!(
            !stored
                .windows(b"hunter2".len())
                .any(|window| window == b"hunter2")
        );
        let value: serde_json::Value = barrier.get_json("logical/a").unwrap().unwrap();
        assert_eq!(value["password"], "hunter2-plaintext");
    }

    #[tokio::test]
    async fn tampering_fails_to_decrypt() {
        let (backend, barrier) = barrier();
        barrier.put_json("logical/a", &"secret").await.unwrap();
        let mut stored = backend.get("logical/a").unwrap().unwrap();
        let last = stored.len() - 1;
        stored[last] ^= 1;
        backend
            .apply(Command {
                ops: vec![Op::Put {
                    key: "logical/a".into(),
                    value: stored,
                }],
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(matches!(
            barrier.get("logical/a"),
            Err(Error::Decrypt { .. })
        ));
    }

    #[tokio::test]
    async fn ciphertext_moved_to_another_path_fails_to_decrypt() {
        let (backend, barrier) = barrier();
        barrier.put_json("logical/a", &"secret").await.unwrap();
        let stored = backend.get("logical/a").unwrap().unwrap();
        backend
            .apply(Command {
                ops: vec![Op::Put {
                    key: "logical/b".into(),
                    value: stored,
                }],
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(matches!(
            barrier.get("logical/b"),
            Err(Error::Decrypt { .. })
        ));
    }

    #[tokio::test]
    async fn rotation_keeps_old_entries_readable_and_persists() {
        let (backend, barrier) = barrier();
        barrier.put_json("old", &"before").await.unwrap();
        assert_eq!(barrier.key_status().0, 1);
        assert_eq!(barrier.rotate().await.unwrap(), 2);
        barrier.put_json("new", &"after").await.unwrap();
        assert_eq!(
            term_of("new", &backend.get("new").unwrap().unwrap()).unwrap(),
            2
        );
        assert_eq!(
            term_of("old", &backend.get("old").unwrap().unwrap()).unwrap(),
            1
        );
        let old: String = barrier.get_json("old").unwrap().unwrap();
        assert_eq!(old, "before");

        // The stored keyring holds both terms.
        let root = barrier.keyring().root_key.clone();
        let stored = backend.get(KEYRING_PATH).unwrap().unwrap();
        let reopened = Keyring::open(root, &stored).unwrap();
        assert_eq!(reopened.active_term(), 2);
        assert_eq!(
            reopened
                .decrypt("old", &backend.get("old").unwrap().unwrap())
                .unwrap()
                .as_slice(),
            b"\"before\""
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_rotations_leave_one_keyring_everywhere() {
        let (backend, barrier) = barrier();
        let barrier = Arc::new(barrier);
        let mut tasks = Vec::new();
        for index in 0..8 {
            let rotating = barrier.clone();
            tasks.push(tokio::spawn(
                async move { rotating.rotate().await.map(drop) },
            ));
            let writing = barrier.clone();
            tasks.push(tokio::spawn(async move {
                writing
                    .put_json(&format!("value/{index}"), &index)
                    .await
                    .map(drop)
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        barrier.put_json("value/after", &"after").await.unwrap();
        // What this node encrypts under is what storage holds.
        let stored = barrier.stored_keyring().unwrap();
        assert_eq!(stored.active_term(), 9, "eight rotations, eight new terms");
        assert_eq!(barrier.keyring().active_term(), 9);
        for key in backend.scan("value/").unwrap() {
            let sealed = backend.get(&key).unwrap().unwrap();
            assert!(stored.decrypt(&key, &sealed).is_ok(), "{key}");
        }
    }

    #[test]
    fn keyring_does_not_open_with_another_root_key() {
        let sealed = keyring().seal().unwrap();
        let other = crypto::random_key::<KEY_LEN>().unwrap();
        assert!(Keyring::open(other, &sealed).is_err());
    }

    #[test]
    fn unknown_term_is_reported() {
        let ring = keyring();
        let mut sealed = ring.encrypt("p", b"x").unwrap();
        sealed[4] = 9;
        assert!(matches!(
            ring.decrypt("p", &sealed),
            Err(Error::UnknownTerm { term: 9, .. })
        ));
    }

    #[test]
    fn short_or_foreign_values_are_rejected() {
        let ring = keyring();
        assert!(ring.decrypt("p", b"").is_err());
        assert!(ring.decrypt("p", &[2u8; 64]).is_err());
    }
}
