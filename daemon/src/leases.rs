//! Leases: every secret with a TTL gets one, stored replicated and encrypted, so
//! that what was handed out is taken back on time whatever happens to the node
//! that handed it out.
//!
//! A lease lives at `sys/expire/id/<lease id>` (the id is the request path and a
//! random suffix, as in Vault) with an index entry per creating token at
//! `sys/expire/token/<token hash>/<hash of the id>`, so revoking a token finds its
//! leases without a scan. What is due when lives in memory, on the leader only
//! (the leader owns time): [`Manager::load`] builds that schedule from storage
//! when a node becomes leader or unseals as leader, [`Manager::unload`] drops it
//! when it stops leading. The schedule holds ids and times only.
//!
//! Revoking and renewing need the engine that issued the lease; the core passes
//! one in ([`Engines`]). Failed revocations are retried with a growing delay,
//! and after [`MAX_ATTEMPTS`] the lease is marked irrevocable: kept and listed,
//! never dropped silently.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::barrier::{self, Barrier};
use crate::crypto;

/// Where leases are stored, by id.
pub const PREFIX: &str = "sys/expire/id/";
/// Leases by creating token.
const TOKEN_INDEX: &str = "sys/expire/token/";
/// Revocation attempts before a lease is marked irrevocable.
pub const MAX_ATTEMPTS: u32 = 20;
/// The longest wait between two attempts.
const MAX_RETRY_DELAY: u64 = 30;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The engines that issue leases: they undo (revoke) and extend (renew) what
/// they issued. Errors are messages safe to show (no secret values).
pub trait Engines: Send + Sync {
    fn revoke<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), String>>;
    fn renew<'a>(&'a self, lease: &'a Lease, expire_time: u64)
    -> BoxFuture<'a, Result<(), String>>;
}

/// How revocation has gone so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub attempts: u32,
    /// Unix seconds of the next attempt (0: at expiry).
    pub next_attempt: u64,
    pub last_error: String,
    /// Attempts ran out: the lease waits for an operator (`revoke-force`, or a
    /// manual revoke once the backend is fixed).
    pub irrevocable: bool,
}

/// One lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// `<request path>/<random>`, e.g. `database/creds/app/4fKx...`.
    pub id: String,
    /// The mount that issued it (`database/`).
    pub mount: String,
    pub issue_time: u64,
    pub expire_time: u64,
    pub last_renewal: Option<u64>,
    /// Renewals never reach past this (issue time + max TTL).
    pub max_expire_time: u64,
    /// The TTL a renewal grants when it asks for none.
    pub ttl: u64,
    pub renewable: bool,
    /// The hash of the token that created it; revoking the token revokes it.
    pub token: Option<String>,
    /// What the engine needs to renew or revoke (role, user name): no secrets.
    pub internal: Value,
    #[serde(default)]
    pub revocation: Revocation,
}

impl Lease {
    /// A lease for a secret read at `path`, from `now`, for `ttl` seconds, never
    /// renewable past `max_ttl` seconds.
    pub fn new(
        path: &str,
        mount: &str,
        now: u64,
        ttl: u64,
        max_ttl: u64,
        token: Option<String>,
        internal: Value,
    ) -> Result<Lease, crypto::RandomError> {
        let suffix = crypto::random_base62(24)?;
        Ok(Lease {
            id: format!("{}/{suffix}", path.trim_end_matches('/')),
            mount: mount.to_owned(),
            issue_time: now,
            expire_time: now.saturating_add(ttl.min(max_ttl)),
            last_renewal: None,
            max_expire_time: now.saturating_add(max_ttl),
            ttl,
            renewable: true,
            token,
            internal,
            revocation: Revocation::default(),
        })
    }

    /// When the schedule should look at it next.
    fn due_at(&self) -> u64 {
        if self.revocation.next_attempt > 0 {
            self.revocation.next_attempt
        } else {
            self.expire_time
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Barrier(#[from] barrier::Error),
    #[error("lease not found")]
    NotFound,
    #[error("lease is not renewable")]
    NotRenewable,
    #[error("lease has expired")]
    Expired,
    #[error("lease is past its max TTL and cannot be renewed")]
    PastMaxTtl,
    #[error("the engine could not renew the lease: {0}")]
    Engine(String),
}

/// What is due when, on the leader.
#[derive(Default)]
struct Schedule {
    due: BTreeSet<(u64, Arc<str>)>,
    at: HashMap<Arc<str>, u64>,
    /// Ids written by another node (a write forwarded as a command) that the
    /// schedule does not hold yet: read and planned on the next round.
    unplanned: HashSet<String>,
}

impl Schedule {
    fn insert(&mut self, id: &str, time: u64) {
        let id: Arc<str> = match self.at.get_key_value(id) {
            Some((existing, old)) => {
                let existing = existing.clone();
                let old = *old;
                self.due.remove(&(old, existing.clone()));
                existing
            }
            None => Arc::from(id),
        };
        self.due.insert((time, id.clone()));
        self.at.insert(id, time);
    }

    fn remove(&mut self, id: &str) {
        if let Some((id, time)) = self.at.remove_entry(id) {
            self.due.remove(&(time, id));
        }
    }

    /// Takes up to `limit` ids due at `now`.
    fn take_due(&mut self, now: u64, limit: usize) -> Vec<Arc<str>> {
        let mut taken = Vec::new();
        while taken.len() < limit {
            let Some(first) = self.due.first().cloned() else {
                break;
            };
            if first.0 > now {
                break;
            }
            self.due.remove(&first);
            self.at.remove(&first.1);
            taken.push(first.1);
        }
        taken
    }

    fn len(&self) -> usize {
        self.at.len()
    }
}

/// Figures of one [`Manager::load`].
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    pub leases: usize,
    pub irrevocable: usize,
    pub elapsed: Duration,
}

/// The lease store and, on the leader, the schedule.
pub struct Manager {
    barrier: Arc<Barrier>,
    schedule: Mutex<Option<Schedule>>,
}

fn token_key(token: &str, id: &str) -> String {
    format!("{TOKEN_INDEX}{token}/{}", crypto::sha256_hex(id.as_bytes()))
}

/// The delay before attempt `attempts + 1`: 1 s doubling to 30 s.
fn retry_delay(attempts: u32) -> u64 {
    1u64.checked_shl(attempts.saturating_sub(1).min(16))
        .unwrap_or(MAX_RETRY_DELAY)
        .min(MAX_RETRY_DELAY)
}

impl Manager {
    pub fn new(barrier: Arc<Barrier>) -> Manager {
        Manager {
            barrier,
            schedule: Mutex::new(None),
        }
    }

    fn schedule(&self) -> std::sync::MutexGuard<'_, Option<Schedule>> {
        self.schedule
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn plan(&self, lease: &Lease) {
        if let Some(schedule) = self.schedule().as_mut() {
            if lease.revocation.irrevocable {
                schedule.remove(&lease.id);
            } else {
                schedule.insert(&lease.id, lease.due_at());
            }
        }
    }

    /// Whether this node holds the schedule (it leads and has loaded it).
    pub fn is_loaded(&self) -> bool {
        self.schedule().is_some()
    }

    /// How many leases the schedule holds.
    pub fn scheduled(&self) -> usize {
        self.schedule().as_ref().map_or(0, Schedule::len)
    }

    /// Builds the schedule from storage: every lease that is not irrevocable.
    /// The (empty) schedule is in place from the start, so leases registered
    /// while the scan runs are planned too; the scan never overrides them, since
    /// what this node wrote meanwhile is newer than what it read.
    pub fn load(&self) -> Result<Loaded, Error> {
        let started = Instant::now();
        *self.schedule() = Some(Schedule::default());
        let scanned = self.scan_due();
        let mut guard = self.schedule();
        let (found, irrevocable) = match scanned {
            Ok(scanned) => scanned,
            Err(error) => {
                *guard = None;
                return Err(error);
            }
        };
        let schedule = guard.get_or_insert_with(Schedule::default);
        for (id, time) in found {
            if !schedule.at.contains_key(id.as_str()) {
                schedule.insert(&id, time);
            }
        }
        Ok(Loaded {
            leases: schedule.len(),
            irrevocable,
            elapsed: started.elapsed(),
        })
    }

    /// Every schedulable lease's id and due time, and how many are irrevocable.
    #[allow(clippy::type_complexity)]
    fn scan_due(&self) -> Result<(Vec<(String, u64)>, usize), Error> {
        let mut found = Vec::new();
        let mut irrevocable = 0;
        for key in self.barrier.scan(PREFIX)? {
            let Some(lease) = self.barrier.get_json::<Lease>(&key)? else {
                continue;
            };
            if lease.revocation.irrevocable {
                irrevocable += 1;
            } else {
                let due = lease.due_at();
                found.push((lease.id, due));
            }
        }
        Ok((found, irrevocable))
    }

    /// Drops the schedule (this node no longer leads).
    pub fn unload(&self) {
        *self.schedule() = None;
    }

    /// Stores a new lease (and its token index entry) and schedules it.
    pub async fn register(&self, lease: &Lease) -> Result<(), Error> {
        let mut batch = self.barrier.batch();
        batch.put_json(&format!("{PREFIX}{}", lease.id), lease)?;
        if let Some(token) = &lease.token {
            batch.put_json(&token_key(token, &lease.id), &lease.id)?;
        }
        // Planned before the write applies, so the apply observer knows it as
        // this node's own; a failed write leaves an id that reads as gone.
        self.plan(lease);
        self.barrier.commit(batch).await?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<Lease>, Error> {
        if id.is_empty() || id.ends_with('/') {
            return Ok(None);
        }
        Ok(self.barrier.get_json(&format!("{PREFIX}{id}"))?)
    }

    /// The ids (or id segments ending in `/`) directly under `prefix`.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        Ok(self.barrier.list(&format!("{PREFIX}{prefix}"))?)
    }

    /// Every lease id under `prefix` (recursively).
    pub fn ids_under(&self, prefix: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .barrier
            .scan(&format!("{PREFIX}{prefix}"))?
            .into_iter()
            .map(|key| key[PREFIX.len()..].to_owned())
            .collect())
    }

    /// How many leases there are under `prefix`.
    pub fn count_under(&self, prefix: &str) -> Result<u64, Error> {
        Ok(self.barrier.scan(&format!("{PREFIX}{prefix}"))?.len() as u64)
    }

    /// The leases a token created.
    pub fn token_leases(&self, token: &str) -> Result<Vec<String>, Error> {
        let mut ids = Vec::new();
        for key in self.barrier.scan(&format!("{TOKEN_INDEX}{token}/"))? {
            if let Some(id) = self.barrier.get_json::<String>(&key)? {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Every irrevocable lease.
    pub fn irrevocable(&self) -> Result<Vec<Lease>, Error> {
        let mut leases = Vec::new();
        for key in self.barrier.scan(PREFIX)? {
            if let Some(lease) = self.barrier.get_json::<Lease>(&key)?
                && lease.revocation.irrevocable
            {
                leases.push(lease);
            }
        }
        Ok(leases)
    }

    async fn store(&self, lease: &Lease) -> Result<(), Error> {
        self.plan(lease);
        self.barrier
            .put_json(&format!("{PREFIX}{}", lease.id), lease)
            .await?;
        Ok(())
    }

    /// A replicated write touched `key`: when this node holds the schedule and
    /// the lease is not in it, it was written elsewhere and is planned on the
    /// next [`Manager::plan_unplanned`].
    pub fn observe(&self, key: &str) {
        let Some(id) = key.strip_prefix(PREFIX) else {
            return;
        };
        if let Some(schedule) = self.schedule().as_mut()
            && !schedule.at.contains_key(id)
        {
            schedule.unplanned.insert(id.to_owned());
        }
    }

    /// Reads and schedules the leases [`Manager::observe`] found unplanned.
    pub fn plan_unplanned(&self) {
        let unplanned = match self.schedule().as_mut() {
            Some(schedule) if !schedule.unplanned.is_empty() => {
                std::mem::take(&mut schedule.unplanned)
            }
            _ => return,
        };
        for id in unplanned {
            match self.get(&id) {
                Ok(Some(lease)) => self.plan(&lease),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(lease = %id, %error, "cannot read a lease written elsewhere");
                    if let Some(schedule) = self.schedule().as_mut() {
                        schedule.unplanned.insert(id);
                    }
                }
            }
        }
    }

    /// Deletes a lease and its index entry (after revocation, or by force).
    pub async fn remove(&self, lease: &Lease) -> Result<(), Error> {
        let mut batch = self.barrier.batch();
        batch.delete(&format!("{PREFIX}{}", lease.id));
        if let Some(token) = &lease.token {
            batch.delete(&token_key(token, &lease.id));
        }
        self.barrier.commit(batch).await?;
        if let Some(schedule) = self.schedule().as_mut() {
            schedule.remove(&lease.id);
        }
        Ok(())
    }

    /// Makes a lease due now: the leader revokes it on its next round (the
    /// asynchronous revocation of `sys/leases/revoke` and of revoked tokens).
    pub async fn expire_now(&self, id: &str, now: u64) -> Result<bool, Error> {
        let Some(mut lease) = self.get(id)? else {
            return Ok(false);
        };
        lease.expire_time = lease.expire_time.min(now);
        lease.revocation.next_attempt = 0;
        lease.revocation.irrevocable = false;
        self.store(&lease).await?;
        Ok(true)
    }

    /// Revokes a lease now through its engine, then forgets it. A lease that is
    /// already gone is fine (revocation is idempotent).
    pub async fn revoke(&self, id: &str, engines: &dyn Engines) -> Result<(), String> {
        let lease = match self.get(id) {
            Ok(Some(lease)) => lease,
            Ok(None) => return Ok(()),
            Err(error) => return Err(error.to_string()),
        };
        engines.revoke(&lease).await?;
        self.remove(&lease).await.map_err(|error| error.to_string())
    }

    /// Renews a lease by `increment` seconds (default: its TTL), capped by its max
    /// TTL; returns the lease and a warning when it was capped.
    pub async fn renew(
        &self,
        id: &str,
        increment: Option<u64>,
        now: u64,
        engines: &dyn Engines,
    ) -> Result<(Lease, Option<String>), Error> {
        let mut lease = self.get(id)?.ok_or(Error::NotFound)?;
        if !lease.renewable {
            return Err(Error::NotRenewable);
        }
        // Times are whole seconds, as on the schedule: a lease has expired once
        // its last second has passed, not when that second begins.
        if lease.expire_time < now {
            return Err(Error::Expired);
        }
        if lease.max_expire_time <= now {
            return Err(Error::PastMaxTtl);
        }
        let wanted = increment
            .filter(|seconds| *seconds > 0)
            .unwrap_or(lease.ttl);
        let expire_time = now.saturating_add(wanted).min(lease.max_expire_time);
        let warning = (expire_time < now.saturating_add(wanted)).then(|| {
            format!(
                "TTL of {wanted}s exceeded the effective max_ttl of the lease; TTL value is capped to {}s",
                expire_time - now
            )
        });
        engines
            .renew(&lease, expire_time)
            .await
            .map_err(Error::Engine)?;
        lease.expire_time = expire_time;
        lease.last_renewal = Some(now);
        self.store(&lease).await?;
        Ok((lease, warning))
    }

    /// Takes up to `limit` leases due at `now` off the schedule (the caller
    /// revokes each and reports with [`Manager::finish`]).
    pub fn take_due(&self, now: u64, limit: usize) -> Vec<Arc<str>> {
        self.schedule()
            .as_mut()
            .map(|schedule| schedule.take_due(now, limit))
            .unwrap_or_default()
    }

    /// Revokes one due lease; on failure, schedules the next attempt or marks it
    /// irrevocable. Called on the leader.
    pub async fn revoke_due(&self, id: &str, now: u64, engines: &dyn Engines) {
        let lease = match self.get(id) {
            Ok(Some(lease)) => lease,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(lease = %id, %error, "cannot read a due lease");
                // Look again later rather than lose it.
                if let Some(schedule) = self.schedule().as_mut() {
                    schedule.insert(id, now + MAX_RETRY_DELAY);
                }
                return;
            }
        };
        if lease.due_at() > now {
            // Renewed meanwhile.
            self.plan(&lease);
            return;
        }
        let error = match engines.revoke(&lease).await {
            Ok(()) => match self.remove(&lease).await {
                Ok(()) => {
                    tracing::info!(lease = %lease.id, "revoked an expired lease");
                    return;
                }
                Err(error) => error.to_string(),
            },
            Err(error) => error,
        };
        let mut failed = lease;
        failed.revocation.attempts += 1;
        failed.revocation.last_error = error.clone();
        if failed.revocation.attempts >= MAX_ATTEMPTS {
            failed.revocation.irrevocable = true;
            tracing::error!(lease = %failed.id, attempts = failed.revocation.attempts, %error, "lease is irrevocable: revoke it by hand once the backend is fixed, or revoke-force it");
        } else {
            let delay = retry_delay(failed.revocation.attempts);
            failed.revocation.next_attempt = now + delay;
            tracing::warn!(lease = %failed.id, attempt = failed.revocation.attempts, retry_in = delay, %error, "revocation failed; retrying");
        }
        if let Err(error) = self.store(&failed).await {
            tracing::error!(lease = %failed.id, %error, "cannot record a failed revocation");
            if let Some(schedule) = self.schedule().as_mut() {
                schedule.insert(&failed.id, now + MAX_RETRY_DELAY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::barrier::Keyring;
    use crate::storage::memory::MemoryBackend;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// An engine that records what it was asked and can be made to fail.
    #[derive(Default)]
    struct Recorder {
        revoked: Mutex<Vec<String>>,
        renewed: AtomicUsize,
        down: AtomicBool,
    }

    impl Engines for Recorder {
        fn revoke<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                if self.down.load(Ordering::Relaxed) {
                    return Err("connection refused".into());
                }
                self.revoked.lock().unwrap().push(lease.id.clone());
                Ok(())
            })
        }

        fn renew<'a>(&'a self, _: &'a Lease, _: u64) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                self.renewed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
        }
    }

    fn manager() -> Manager {
        let backend = Arc::new(MemoryBackend::default());
        let keyring = Keyring::generate(crypto::random_key::<32>().unwrap()).unwrap();
        Manager::new(Arc::new(Barrier::new(backend, keyring)))
    }

    fn lease(ttl: u64, max_ttl: u64, token: Option<&str>) -> Lease {
        Lease::new(
            "database/creds/app",
            "database/",
            1000,
            ttl,
            max_ttl,
            token.map(str::to_owned),
            serde_json::json!({"username": "v-app-1"}),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn leases_are_stored_scheduled_and_revoked_when_due() {
        let manager = manager();
        manager.load().unwrap();
        let engine = Recorder::default();
        let short = lease(10, 100, Some("token-a"));
        let long = lease(50, 100, Some("token-a"));
        manager.register(&short).await.unwrap();
        manager.register(&long).await.unwrap();
        assert!(short.id.starts_with("database/creds/app/"));
        assert_eq!(manager.get(&short.id).unwrap().unwrap(), short);
        assert_eq!(manager.list("database/creds/app/").unwrap().len(), 2);
        let mut by_token = manager.token_leases("token-a").unwrap();
        by_token.sort();
        let mut expected = vec![short.id.clone(), long.id.clone()];
        expected.sort();
        assert_eq!(by_token, expected);

        assert!(manager.take_due(1009, 10).is_empty());
        let due = manager.take_due(1010, 10);
        assert_eq!(due.len(), 1);
        manager.revoke_due(&due[0], 1010, &engine).await;
        assert_eq!(*engine.revoked.lock().unwrap(), vec![short.id.clone()]);
        assert!(manager.get(&short.id).unwrap().is_none());
        assert_eq!(
            manager.token_leases("token-a").unwrap(),
            vec![long.id.clone()]
        );

        // A fresh load (a new leader) schedules what is left.
        manager.unload();
        assert!(manager.take_due(u64::MAX, 10).is_empty());
        let loaded = manager.load().unwrap();
        assert_eq!(loaded.leases, 1);
        assert_eq!(&*manager.take_due(1050, 10)[0], long.id.as_str());
    }

    #[tokio::test]
    async fn renewals_are_capped_by_max_ttl_and_refused_past_it() {
        let manager = manager();
        manager.load().unwrap();
        let engine = Recorder::default();
        let lease = lease(10, 30, None);
        manager.register(&lease).await.unwrap();
        let (renewed, warning) = manager
            .renew(&lease.id, Some(5), 1005, &engine)
            .await
            .unwrap();
        assert_eq!(renewed.expire_time, 1010);
        assert!(warning.is_none());
        // In its last second a lease has not expired yet.
        let (renewed, _) = manager
            .renew(&lease.id, Some(5), 1010, &engine)
            .await
            .unwrap();
        assert_eq!(renewed.expire_time, 1015);
        let (renewed, warning) = manager
            .renew(&lease.id, Some(3600), 1012, &engine)
            .await
            .unwrap();
        assert_eq!(renewed.expire_time, 1030, "capped at issue + max_ttl");
        assert!(warning.unwrap().contains("capped"));
        assert!(matches!(
            manager.renew(&lease.id, None, 1031, &engine).await,
            Err(Error::Expired)
        ));
        assert_eq!(engine.renewed.load(Ordering::Relaxed), 3);
        // The schedule follows renewals.
        assert!(manager.take_due(1029, 10).is_empty());
        assert_eq!(manager.take_due(1030, 10).len(), 1);
        assert!(matches!(
            manager
                .renew("database/creds/app/none", None, 1000, &engine)
                .await,
            Err(Error::NotFound)
        ));
    }

    #[tokio::test]
    async fn failed_revocations_back_off_and_end_irrevocable() {
        let manager = manager();
        manager.load().unwrap();
        let engine = Recorder::default();
        engine.down.store(true, Ordering::Relaxed);
        let lease = lease(10, 100, None);
        manager.register(&lease).await.unwrap();
        let mut now = 1010;
        let mut delays = Vec::new();
        for _ in 0..MAX_ATTEMPTS {
            let due = manager.take_due(now, 10);
            assert_eq!(due.len(), 1, "at {now}");
            manager.revoke_due(&due[0], now, &engine).await;
            let stored = manager.get(&lease.id).unwrap().unwrap();
            if stored.revocation.irrevocable {
                break;
            }
            delays.push(stored.revocation.next_attempt - now);
            assert!(manager.take_due(now, 10).is_empty(), "retried at once");
            now = stored.revocation.next_attempt;
        }
        assert_eq!(&delays[..6], &[1, 2, 4, 8, 16, 30]);
        let stored = manager.get(&lease.id).unwrap().unwrap();
        assert!(stored.revocation.irrevocable);
        assert_eq!(stored.revocation.last_error, "connection refused");
        assert_eq!(manager.irrevocable().unwrap().len(), 1);
        assert!(manager.take_due(u64::MAX, 10).is_empty());
        assert_eq!(manager.load().unwrap().irrevocable, 1);

        // The backend is back: a manual revocation goes through.
        engine.down.store(false, Ordering::Relaxed);
        manager.revoke(&lease.id, &engine).await.unwrap();
        assert!(manager.get(&lease.id).unwrap().is_none());
    }

    #[tokio::test]
    async fn a_database_back_before_the_attempts_run_out_gets_the_lease_revoked() {
        let manager = manager();
        manager.load().unwrap();
        let engine = Recorder::default();
        engine.down.store(true, Ordering::Relaxed);
        let lease = lease(10, 100, None);
        manager.register(&lease).await.unwrap();
        for now in [1010, 1011] {
            let due = manager.take_due(now, 10);
            manager.revoke_due(&due[0], now, &engine).await;
        }
        engine.down.store(false, Ordering::Relaxed);
        let due = manager.take_due(1013, 10);
        manager.revoke_due(&due[0], 1013, &engine).await;
        assert!(manager.get(&lease.id).unwrap().is_none());
        assert_eq!(engine.revoked.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn expiring_now_and_revoking_twice_are_safe() {
        let manager = manager();
        manager.load().unwrap();
        let engine = Recorder::default();
        let lease = lease(3600, 7200, None);
        manager.register(&lease).await.unwrap();
        assert!(manager.expire_now(&lease.id, 1001).await.unwrap());
        let due = manager.take_due(1001, 10);
        assert_eq!(due.len(), 1);
        manager.revoke_due(&due[0], 1001, &engine).await;
        manager.revoke(&lease.id, &engine).await.unwrap();
        assert_eq!(engine.revoked.lock().unwrap().len(), 1);
        assert!(!manager.expire_now(&lease.id, 1002).await.unwrap());
    }

    #[test]
    fn the_schedule_keeps_one_entry_per_lease() {
        let mut schedule = Schedule::default();
        schedule.insert("a", 5);
        schedule.insert("b", 3);
        schedule.insert("a", 1);
        assert_eq!(schedule.len(), 2);
        let due: Vec<String> = schedule
            .take_due(4, 10)
            .iter()
            .map(|id| id.to_string())
            .collect();
        assert_eq!(due, vec!["a", "b"]);
        schedule.remove("b");
        assert_eq!(schedule.len(), 0);
    }
}
