//! The token store. A token is stored only as an HMAC-SHA256 of it under a
//! per-cluster salt (the entry's key); its accessor is a separate random id,
//! indexed by its own HMAC. Children are indexed under their parent so revoking a
//! parent revokes the whole tree. All records live behind the barrier.
//!
//! Storage layout:
//! - `sys/token/id/<hmac(token)>`: the [`TokenEntry`]
//! - `sys/token/accessor/<hmac("accessor:" + accessor)>`: [`AccessorIndex`]
//! - `sys/token/parent/<parent hmac>/<child hmac>`: an empty marker

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::barrier::{self, Barrier, Batch};
use crate::locks::Stripes;
use crate::{cache, crypto};

pub const SALT_PATH: &str = "core/token-salt";
const ID_PREFIX: &str = "sys/token/id/";
const ACCESSOR_PREFIX: &str = "sys/token/accessor/";
const PARENT_PREFIX: &str = "sys/token/parent/";
/// Each token's cubbyhole: `sys/cubbyhole/<token hash>/<path>`, gone with the
/// token.
const CUBBYHOLE_PREFIX: &str = "sys/cubbyhole/";

/// Where `path` of the cubbyhole of the token with `hash` is stored.
pub fn cubbyhole_key(hash: &str, path: &str) -> String {
    format!("{CUBBYHOLE_PREFIX}{hash}/{path}")
}

/// Service tokens carry Vault's prefix so tools that recognise Vault tokens (secret
/// scanners, clients) treat them alike.
pub const TOKEN_PREFIX: &str = "hvs.";
const TOKEN_RANDOM_LEN: usize = 32;
/// The length of every service token (root generation's OTP has it too).
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + TOKEN_RANDOM_LEN;
const ACCESSOR_LEN: usize = 24;

pub use crate::clock::now_seconds;

/// Unix seconds as RFC 3339 (`2026-11-22T10:00:00Z`), as Vault shows times.
pub fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(unix)).to_string()
}

/// A stored token. The token itself is not here: only its HMAC.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenEntry {
    pub hash: String,
    pub accessor: String,
    /// The parent's hash; `None` for orphans.
    pub parent: Option<String>,
    pub policies: Vec<String>,
    pub meta: BTreeMap<String, String>,
    pub display_name: String,
    /// Uses left; 0 means unlimited.
    pub num_uses: u64,
    /// The last use was taken: the token is revoked when that request ends.
    #[serde(default)]
    pub exhausted: bool,
    pub creation_time: u64,
    /// The TTL the token was created with, in seconds (0: none).
    pub creation_ttl: u64,
    /// Unix seconds after which the token is invalid; `None`: never.
    pub expire_time: Option<u64>,
    pub explicit_max_ttl: u64,
    pub period: u64,
    pub renewable: bool,
    pub path: String,
    /// CIDR blocks the token may be used from (empty: anywhere); a caller
    /// with no address (Unix socket, FUSE) is refused when there are any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound_cidrs: Vec<String>,
}

impl TokenEntry {
    /// Whether `address` (a socket address or an IP; `None` for a caller
    /// with none) may use this token.
    pub fn allows_address(&self, address: Option<&str>) -> bool {
        if self.bound_cidrs.is_empty() {
            return true;
        }
        let Some(ip) = address.and_then(crate::auth::token_fields::ip_of) else {
            return false;
        };
        self.bound_cidrs
            .iter()
            .any(|block| crate::auth::token_fields::cidr_contains(block, ip))
    }

    /// An entry made for one request and stored nowhere (no hash, no
    /// accessor, no expiry): a local caller's, or a login's before it has a
    /// token.
    pub fn unstored(
        policies: Vec<String>,
        meta: BTreeMap<String, String>,
        display_name: String,
        path: String,
    ) -> TokenEntry {
        TokenEntry {
            hash: String::new(),
            accessor: String::new(),
            parent: None,
            policies,
            meta,
            display_name,
            num_uses: 0,
            exhausted: false,
            creation_time: now_seconds(),
            creation_ttl: 0,
            expire_time: None,
            explicit_max_ttl: 0,
            period: 0,
            renewable: false,
            path,
            bound_cidrs: Vec::new(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.policies
            .iter()
            .any(|policy| policy == crate::policy::ROOT_POLICY)
    }

    pub fn is_valid_at(&self, now: u64) -> bool {
        !self.exhausted && self.expire_time.is_none_or(|expiry| expiry > now)
    }

    /// Seconds left, 0 when the token never expires.
    pub fn ttl_at(&self, now: u64) -> u64 {
        self.expire_time
            .map(|expiry| expiry.saturating_sub(now))
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessorIndex {
    pub accessor: String,
    pub token_hash: String,
}

/// What a new token should be.
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    pub policies: Vec<String>,
    pub meta: BTreeMap<String, String>,
    pub display_name: String,
    pub num_uses: u64,
    /// Seconds; 0 for a token that never expires.
    pub ttl: u64,
    pub explicit_max_ttl: u64,
    pub period: u64,
    pub renewable: bool,
    pub parent: Option<String>,
    pub path: String,
    /// CIDR blocks the token may be used from (empty: anywhere).
    pub bound_cidrs: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("token is not renewable")]
    NotRenewable,
    #[error(transparent)]
    Barrier(#[from] barrier::Error),
}

/// What renewing did: the new entry and, when the requested TTL was cut, why.
pub struct Renewed {
    pub entry: TokenEntry,
    pub warning: Option<String>,
    /// Seconds granted from the renewal on (0: the token never expires).
    pub ttl: u64,
}

pub struct TokenStore {
    barrier: Arc<Barrier>,
    /// The per-cluster salt, as a prepared HMAC key.
    salt: crypto::HmacKey,
    locks: Stripes,
    /// Entries for lookups (by `sys/token/id/` key), forgotten by the apply
    /// observer when a replicated write touches them.
    cache: cache::Parsed<TokenEntry>,
}

impl TokenStore {
    pub fn new(barrier: Arc<Barrier>, salt: Zeroizing<Vec<u8>>) -> Self {
        TokenStore {
            barrier,
            salt: crypto::HmacKey::new(&salt),
            locks: Stripes::new(),
            cache: cache::Parsed::default(),
        }
    }

    /// An applied write touched `key`: a cached entry under it is stale.
    pub fn forget(&self, key: &str) {
        if key.starts_with(ID_PREFIX) {
            self.cache.forget(key);
        } else if ID_PREFIX.starts_with(key) {
            // A deleted prefix that holds every entry.
            self.forget_all();
        }
    }

    /// The whole data set was replaced: no cached entry is known to hold.
    pub fn forget_all(&self) {
        self.cache.clear();
    }

    /// A fresh salt for a new cluster.
    pub fn new_salt() -> Result<Zeroizing<Vec<u8>>, crypto::RandomError> {
        Ok(Zeroizing::new(crypto::random_key::<32>()?.to_vec()))
    }

    pub fn hash(&self, token: &str) -> String {
        self.salt.sign_hex(token.as_bytes())
    }

    fn accessor_key(&self, accessor: &str) -> String {
        let hashed = self
            .salt
            .sign_hex(format!("accessor:{accessor}").as_bytes());
        format!("{ACCESSOR_PREFIX}{hashed}")
    }

    /// Makes a token (or uses `id`, for the dev server's chosen root token) and adds
    /// its records to `batch`. Returns the token, which is never stored.
    pub fn prepare(
        &self,
        new: NewToken,
        id: Option<String>,
        batch: &mut Batch,
    ) -> Result<(Zeroizing<String>, TokenEntry), barrier::Error> {
        let token = match id {
            Some(id) => Zeroizing::new(id),
            None => Zeroizing::new(format!(
                "{TOKEN_PREFIX}{}",
                crypto::random_base62(TOKEN_RANDOM_LEN)?
            )),
        };
        let now = now_seconds();
        let entry = TokenEntry {
            hash: self.hash(&token),
            accessor: crypto::random_base62(ACCESSOR_LEN)?,
            parent: new.parent,
            policies: new.policies,
            meta: new.meta,
            display_name: new.display_name,
            num_uses: new.num_uses,
            exhausted: false,
            creation_time: now,
            creation_ttl: new.ttl,
            expire_time: (new.ttl > 0).then(|| now + new.ttl),
            explicit_max_ttl: new.explicit_max_ttl,
            period: new.period,
            renewable: new.renewable,
            path: new.path,
            bound_cidrs: new.bound_cidrs,
        };
        self.add_records(&entry, batch)?;
        Ok((token, entry))
    }

    fn add_records(&self, entry: &TokenEntry, batch: &mut Batch) -> Result<(), barrier::Error> {
        batch.put_json(&format!("{ID_PREFIX}{}", entry.hash), entry)?;
        batch.put_json(
            &self.accessor_key(&entry.accessor),
            &AccessorIndex {
                accessor: entry.accessor.clone(),
                token_hash: entry.hash.clone(),
            },
        )?;
        if let Some(parent) = &entry.parent {
            batch.put(&format!("{PARENT_PREFIX}{parent}/{}", entry.hash), b"")?;
        }
        Ok(())
    }

    pub async fn create(
        &self,
        new: NewToken,
    ) -> Result<(Zeroizing<String>, TokenEntry), barrier::Error> {
        let mut batch = self.barrier.batch();
        let created = self.prepare(new, None, &mut batch)?;
        self.barrier.commit(batch).await?;
        Ok(created)
    }

    /// The valid entry for `token`; `None` if unknown, expired or used up, or
    /// if any token above it is: a child dies with its parent at once, not at
    /// the next tidy.
    pub fn lookup(&self, token: &str) -> Result<Option<TokenEntry>, barrier::Error> {
        let hash = self.hash(token);
        let now = now_seconds();
        let Some(entry) = self
            .cached_entry(&hash)?
            // The key lookup already matched; compare again in constant time so no
            // code path compares a token-derived value by early exit.
            .filter(|entry| crypto::constant_time_eq(entry.hash.as_bytes(), hash.as_bytes()))
            .filter(|entry| entry.is_valid_at(now))
        else {
            return Ok(None);
        };
        Ok(self.ancestors_valid(&entry, now)?.then_some(entry))
    }

    /// Whether every token above `entry` is still there and valid at `now`.
    /// Token trees are shallow; a chain deeper than any real one (or a loop,
    /// which cannot be made) counts as invalid.
    fn ancestors_valid(&self, entry: &TokenEntry, now: u64) -> Result<bool, barrier::Error> {
        const MAX_DEPTH: usize = 256;
        let mut parent = entry.parent.clone();
        for _ in 0..MAX_DEPTH {
            let Some(hash) = parent else {
                return Ok(true);
            };
            match self.cached_entry(&hash)? {
                Some(above) if above.is_valid_at(now) => parent = above.parent,
                _ => return Ok(false),
            }
        }
        Ok(false)
    }

    /// The stored entry by hash, whatever its validity.
    pub fn entry(&self, hash: &str) -> Result<Option<TokenEntry>, barrier::Error> {
        self.barrier.get_json(&format!("{ID_PREFIX}{hash}"))
    }

    /// [`Self::entry`] for a lookup: parsed once, until a write touches it.
    /// Writes read storage (under the token's lock) instead.
    fn cached_entry(&self, hash: &str) -> Result<Option<TokenEntry>, barrier::Error> {
        let key = format!("{ID_PREFIX}{hash}");
        let cached = self
            .cache
            .get_or_load(&key, || self.barrier.get_json(&key))?;
        Ok(cached.map(|entry| TokenEntry::clone(&entry)))
    }

    pub fn lookup_accessor(&self, accessor: &str) -> Result<Option<TokenEntry>, barrier::Error> {
        let Some(index) = self
            .barrier
            .get_json::<AccessorIndex>(&self.accessor_key(accessor))?
        else {
            return Ok(None);
        };
        let now = now_seconds();
        let Some(entry) = self
            .entry(&index.token_hash)?
            .filter(|entry| entry.is_valid_at(now))
        else {
            return Ok(None);
        };
        Ok(self.ancestors_valid(&entry, now)?.then_some(entry))
    }

    /// Every accessor, for `auth/token/accessors`.
    pub fn accessors(&self) -> Result<Vec<String>, barrier::Error> {
        let mut accessors = Vec::new();
        for key in self.barrier.scan(ACCESSOR_PREFIX)? {
            if let Some(index) = self.barrier.get_json::<AccessorIndex>(&key)? {
                accessors.push(index.accessor);
            }
        }
        accessors.sort();
        Ok(accessors)
    }

    /// Takes one use of a limited-use token. Returns the entry as it now stands
    /// (`exhausted` when that was the last use); `None` if the token went invalid
    /// in the meantime.
    pub async fn take_use(&self, hash: &str) -> Result<Option<TokenEntry>, barrier::Error> {
        let _guard = self.locks.lock(hash).await;
        let Some(mut entry) = self.entry(hash)? else {
            return Ok(None);
        };
        if !entry.is_valid_at(now_seconds()) {
            return Ok(None);
        }
        if entry.num_uses == 0 {
            return Ok(Some(entry));
        }
        entry.num_uses -= 1;
        if entry.num_uses == 0 {
            entry.exhausted = true;
        }
        self.barrier
            .put_json(&format!("{ID_PREFIX}{hash}"), &entry)
            .await?;
        Ok(Some(entry))
    }

    /// Revokes the token and all its descendants, atomically. Their leases are
    /// the caller's business (the core expires them first).
    pub async fn revoke_tree(&self, hash: &str) -> Result<(), barrier::Error> {
        let mut batch = self.barrier.batch();
        for current in self.tree(hash)? {
            self.delete_records(&current, &mut batch)?;
        }
        self.barrier.commit(batch).await.map(drop)
    }

    /// Revokes only the token; its children become orphans.
    pub async fn revoke_orphan(&self, hash: &str) -> Result<(), barrier::Error> {
        let mut batch = self.barrier.batch();
        for child in self.barrier.list(&format!("{PARENT_PREFIX}{hash}/"))? {
            let child = child.trim_end_matches('/');
            if let Some(mut entry) = self.entry(child)? {
                entry.parent = None;
                batch.put_json(&format!("{ID_PREFIX}{child}"), &entry)?;
            }
        }
        self.delete_records(hash, &mut batch)?;
        self.barrier.commit(batch).await.map(drop)
    }

    fn delete_records(&self, hash: &str, batch: &mut Batch) -> Result<(), barrier::Error> {
        if let Some(entry) = self.entry(hash)? {
            batch.delete(&self.accessor_key(&entry.accessor));
            if let Some(parent) = &entry.parent {
                batch.delete(&format!("{PARENT_PREFIX}{parent}/{hash}"));
            }
        }
        batch.delete(&format!("{ID_PREFIX}{hash}"));
        batch.delete_prefix(&format!("{PARENT_PREFIX}{hash}/"));
        batch.delete_prefix(&cubbyhole_key(hash, ""));
        Ok(())
    }

    /// Extends a token's life by `increment` seconds (default: its creation TTL),
    /// never past its explicit max TTL or the system's `max_ttl` from creation.
    /// A periodic token gets its period again.
    pub async fn renew(
        &self,
        hash: &str,
        increment: Option<u64>,
        max_ttl: u64,
    ) -> Result<Option<Renewed>, RenewError> {
        let _guard = self.locks.lock(hash).await;
        let now = now_seconds();
        let Some(mut entry) = self.entry(hash)?.filter(|entry| entry.is_valid_at(now)) else {
            return Ok(None);
        };
        if entry.expire_time.is_none() {
            return Ok(Some(Renewed {
                entry,
                warning: None,
                ttl: 0,
            }));
        }
        if !entry.renewable {
            return Err(RenewError::NotRenewable);
        }
        let wanted = if entry.period > 0 {
            entry.period
        } else {
            increment
                .filter(|seconds| *seconds > 0)
                .unwrap_or(entry.creation_ttl)
        };
        let limit = if entry.explicit_max_ttl > 0 {
            entry.explicit_max_ttl
        } else if entry.period > 0 {
            u64::MAX
        } else {
            max_ttl
        };
        let latest_expiry = entry.creation_time.saturating_add(limit);
        let expiry = now.saturating_add(wanted).min(latest_expiry);
        let warning = (expiry < now.saturating_add(wanted)).then(|| {
            format!(
                "TTL of {wanted}s exceeded the effective max_ttl; TTL value is capped to {}s",
                expiry.saturating_sub(now)
            )
        });
        entry.expire_time = Some(expiry);
        self.barrier
            .put_json(&format!("{ID_PREFIX}{hash}"), &entry)
            .await?;
        Ok(Some(Renewed {
            entry,
            warning,
            ttl: expiry.saturating_sub(now),
        }))
    }

    /// The hashes of every expired or used-up token, for the caller to revoke
    /// (with their descendants and leases).
    pub fn expired(&self) -> Result<Vec<String>, barrier::Error> {
        let now = now_seconds();
        let mut expired = Vec::new();
        for key in self.barrier.scan(ID_PREFIX)? {
            let hash = &key[ID_PREFIX.len()..];
            if let Some(entry) = self.entry(hash)?
                && !entry.is_valid_at(now)
            {
                expired.push(hash.to_owned());
            }
        }
        Ok(expired)
    }

    /// The hashes of every token made by a request at or below `directory`
    /// (`auth/userpass/`: the logins of one auth mount; `auth/token/create/ci/`:
    /// the tokens of one role), for the caller to revoke.
    pub fn issued_under(&self, directory: &str) -> Result<Vec<String>, barrier::Error> {
        let exact = directory.trim_end_matches('/');
        let below = format!("{exact}/");
        let mut issued = Vec::new();
        for key in self.barrier.scan(ID_PREFIX)? {
            let hash = &key[ID_PREFIX.len()..];
            if let Some(entry) = self.entry(hash)?
                && (entry.path == exact || entry.path.starts_with(&below))
            {
                issued.push(hash.to_owned());
            }
        }
        Ok(issued)
    }

    /// The token and all its descendants, the token first.
    pub fn tree(&self, hash: &str) -> Result<Vec<String>, barrier::Error> {
        let mut tree = Vec::new();
        let mut pending = vec![hash.to_owned()];
        while let Some(current) = pending.pop() {
            for child in self.barrier.list(&format!("{PARENT_PREFIX}{current}/"))? {
                pending.push(child.trim_end_matches('/').to_owned());
            }
            tree.push(current);
        }
        Ok(tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::barrier::Keyring;
    use crate::storage::Backend;
    use crate::storage::memory::MemoryBackend;

    fn store() -> (Arc<dyn Backend>, TokenStore) {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        let keyring = Keyring::generate(crypto::random_key::<32>().unwrap()).unwrap();
        let barrier = Arc::new(Barrier::new(backend.clone(), keyring));
        let store = TokenStore::new(barrier, TokenStore::new_salt().unwrap());
        (backend, store)
    }

    fn new_token(ttl: u64, parent: Option<String>) -> NewToken {
        NewToken {
            policies: vec!["default".into()],
            ttl,
            renewable: true,
            parent,
            path: "auth/token/create".into(),
            ..NewToken::default()
        }
    }

    #[tokio::test]
    async fn tokens_are_stored_only_as_salted_hashes() {
        let (backend, store) = store();
        let (token, entry) = store.create(new_token(60, None)).await.unwrap();
        assert!(token.starts_with(TOKEN_PREFIX));
        assert_eq!(entry.hash, store.hash(&token));
        assert_ne!(entry.hash, crypto::sha256_hex(token.as_bytes()));
        for key in backend.scan("").unwrap() {
            assert!(!key.contains(token.as_str()));
            assert!(!key.contains(&entry.accessor));
            let value = backend.get(&key).unwrap().unwrap();
            assert!(
                !value
                    .windows(token.len())
                    .any(|window| window == token.as_bytes())
            );
        }
        assert_eq!(
            store.lookup(&token).unwrap().unwrap().accessor,
            entry.accessor
        );
        assert!(store.lookup("hvs.not-a-token").unwrap().is_none());
        assert_eq!(
            store
                .lookup_accessor(&entry.accessor)
                .unwrap()
                .unwrap()
                .hash,
            entry.hash
        );
        // Another salt gives another hash for the same token.
        let (_other_backend, other) = self::store();
        assert_ne!(other.hash(&token), entry.hash);
    }

    #[tokio::test]
    async fn revoking_a_parent_revokes_descendants_and_orphans_survive() {
        let (_backend, store) = store();
        let (parent, parent_entry) = store.create(new_token(600, None)).await.unwrap();
        let (child, child_entry) = store
            .create(new_token(600, Some(parent_entry.hash.clone())))
            .await
            .unwrap();
        let (grandchild, _) = store
            .create(new_token(600, Some(child_entry.hash.clone())))
            .await
            .unwrap();
        let (orphan, _) = store.create(new_token(600, None)).await.unwrap();
        store.revoke_tree(&parent_entry.hash).await.unwrap();
        for revoked in [&parent, &child, &grandchild] {
            assert!(store.lookup(revoked).unwrap().is_none());
        }
        assert!(
            store
                .lookup_accessor(&child_entry.accessor)
                .unwrap()
                .is_none()
        );
        assert!(store.lookup(&orphan).unwrap().is_some());
    }

    #[tokio::test]
    async fn revoke_orphan_keeps_children() {
        let (_backend, store) = store();
        let (_, parent_entry) = store.create(new_token(600, None)).await.unwrap();
        let (child, _) = store
            .create(new_token(600, Some(parent_entry.hash.clone())))
            .await
            .unwrap();
        store.revoke_orphan(&parent_entry.hash).await.unwrap();
        let survivor = store.lookup(&child).unwrap().unwrap();
        assert_eq!(survivor.parent, None);
    }

    #[tokio::test]
    async fn uses_run_out() {
        let (_backend, store) = store();
        let mut new = new_token(600, None);
        new.num_uses = 2;
        let (token, entry) = store.create(new).await.unwrap();
        let first = store.take_use(&entry.hash).await.unwrap().unwrap();
        assert_eq!((first.num_uses, first.exhausted), (1, false));
        let last = store.take_use(&entry.hash).await.unwrap().unwrap();
        assert!(last.exhausted);
        assert!(store.lookup(&token).unwrap().is_none());
        assert!(store.take_use(&entry.hash).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn expired_tokens_are_refused_and_tidied() {
        let (backend, store) = store();
        let (token, entry) = store.create(new_token(600, None)).await.unwrap();
        let mut expired = entry.clone();
        expired.expire_time = Some(now_seconds() - 1);
        let mut batch = store.barrier.batch();
        batch
            .put_json(&format!("{ID_PREFIX}{}", entry.hash), &expired)
            .unwrap();
        store.barrier.commit(batch).await.unwrap();
        assert!(store.lookup(&token).unwrap().is_none());
        assert_eq!(store.expired().unwrap(), vec![entry.hash.clone()]);
        store.revoke_tree(&entry.hash).await.unwrap();
        assert!(backend.scan("sys/token/").unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_child_of_an_expired_parent_is_refused_at_once() {
        let (_backend, store) = store();
        let (_, parent_entry) = store.create(new_token(600, None)).await.unwrap();
        let (child, child_entry) = store
            .create(new_token(600, Some(parent_entry.hash.clone())))
            .await
            .unwrap();
        let (grandchild, _) = store
            .create(new_token(600, Some(child_entry.hash.clone())))
            .await
            .unwrap();
        let mut expired = parent_entry.clone();
        expired.expire_time = Some(now_seconds() - 1);
        let mut batch = store.barrier.batch();
        batch
            .put_json(&format!("{ID_PREFIX}{}", parent_entry.hash), &expired)
            .unwrap();
        store.barrier.commit(batch).await.unwrap();
        assert!(store.lookup(&child).unwrap().is_none(), "child");
        assert!(store.lookup(&grandchild).unwrap().is_none(), "grandchild");
        assert!(
            store
                .lookup_accessor(&child_entry.accessor)
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn renew_is_capped_by_max_ttl() {
        let (_backend, store) = store();
        let (_, entry) = store.create(new_token(100, None)).await.unwrap();
        let renewed = store
            .renew(&entry.hash, Some(50), 1000)
            .await
            .unwrap()
            .unwrap();
        assert!(renewed.entry.ttl_at(now_seconds()) <= 50);
        assert!(renewed.warning.is_none());
        let capped = store
            .renew(&entry.hash, Some(5000), 1000)
            .await
            .unwrap()
            .unwrap();
        assert!(capped.entry.ttl_at(now_seconds()) <= 1000);
        assert!(capped.warning.is_some());

        let mut fixed = new_token(100, None);
        fixed.renewable = false;
        let (_, fixed_entry) = store.create(fixed).await.unwrap();
        assert!(matches!(
            store.renew(&fixed_entry.hash, None, 1000).await,
            Err(RenewError::NotRenewable)
        ));
    }
}
