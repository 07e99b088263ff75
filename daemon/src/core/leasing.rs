//! Where the core meets leases: the engines that revoke and renew them, token
//! revocation that takes their leases along, and the leader's round that revokes
//! what is due and rotates static database passwords.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Core, Unsealed};
use crate::api::error::{ApiError, ApiResult};
use crate::engine::SecretEngine;
use crate::leases::{self, BoxFuture, Lease};
use crate::mounts::MountEntry;
use crate::tokens::now_seconds;

/// Revocations running at once on the leader.
pub(super) const CONCURRENT_REVOCATIONS: usize = 16;
/// Due leases taken off the schedule per round (the rest wait for the next).
const TAKEN_PER_ROUND: usize = 1024;

impl Unsealed {
    /// The mount that issued `lease`, if it is still there.
    fn lease_mount(&self, lease: &Lease) -> Result<MountEntry, String> {
        self.mounts.get(&lease.mount).ok_or_else(|| {
            format!(
                "the mount {:?} that issued the lease is gone",
                lease.mount.trim_end_matches('/')
            )
        })
    }

    fn lease_engine(&self, mount: &MountEntry) -> Result<&dyn SecretEngine, String> {
        self.engine_of(mount)
            .map_err(|error| error.messages.join("; "))
    }

    /// Revokes a token (with its descendants unless `orphan`), after making
    /// every lease they created due now: the leader revokes those next. The
    /// leases go first so that a failure midway leaves a token to retry with,
    /// never leases without one.
    pub(super) async fn revoke_token(&self, hash: &str, orphan: bool) -> ApiResult<()> {
        let tokens = if orphan {
            vec![hash.to_owned()]
        } else {
            self.tokens.tree(hash)?
        };
        let now = now_seconds();
        for token in &tokens {
            for id in self.leases.token_leases(token).map_err(lease_error)? {
                self.leases
                    .expire_now(&id, now)
                    .await
                    .map_err(lease_error)?;
            }
        }
        if orphan {
            self.tokens.revoke_orphan(hash).await?;
        } else {
            self.tokens.revoke_tree(hash).await?;
        }
        Ok(())
    }

    /// Revokes every token made at or below `directory` (an auth mount's
    /// logins, a token role's tokens), with its descendants and leases;
    /// returns how many.
    pub(super) async fn revoke_tokens_issued_under(&self, directory: &str) -> ApiResult<usize> {
        let issued = self.tokens.issued_under(directory)?;
        for hash in &issued {
            self.revoke_token(hash, false).await?;
        }
        Ok(issued.len())
    }

    /// Revokes every expired or used-up token and its leases; returns how many.
    pub(super) async fn tidy_tokens(&self) -> ApiResult<usize> {
        let expired = self.tokens.expired()?;
        for hash in &expired {
            self.revoke_token(hash, false).await?;
        }
        Ok(expired.len())
    }
}

pub(super) fn lease_error(error: leases::Error) -> ApiError {
    match error {
        leases::Error::Barrier(error) => error.into(),
        other => ApiError::internal(&other),
    }
}

impl leases::Engines for Unsealed {
    fn revoke<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let entry = self.lease_mount(lease)?;
            let engine = self.lease_engine(&entry)?;
            engine.revoke(&self.mount(&entry), lease).await
        })
    }

    fn renew<'a>(
        &'a self,
        lease: &'a Lease,
        expire_time: u64,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let entry = self.lease_mount(lease)?;
            let engine = self.lease_engine(&entry)?;
            engine.renew(&self.mount(&entry), lease, expire_time).await
        })
    }
}

impl Core {
    /// One round of the leader's lease duties (every 250 ms): hold the schedule
    /// while leading, drop it otherwise; revoke what is due; rotate static
    /// passwords whose period has passed.
    pub(super) async fn lease_round(&self) {
        let Ok(unsealed) = self.unsealed() else {
            self.active_since.store(0, Ordering::Relaxed);
            return;
        };
        if self.replica.is_leader() {
            let _ = self.active_since.compare_exchange(
                0,
                crate::clock::now_ms(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        } else {
            self.active_since.store(0, Ordering::Relaxed);
        }
        if !self.replica.is_leader() {
            if unsealed.leases.is_loaded() {
                unsealed.leases.unload();
                tracing::info!("no longer leading: lease expiry stops here");
            }
            return;
        }
        self.finish_migration().await;
        if !unsealed.leases.is_loaded() {
            // Off the async workers: requests go on being served meanwhile.
            let loading = unsealed.clone();
            let loaded = tokio::task::spawn_blocking(move || loading.leases.load())
                .await
                .unwrap_or_else(|error| {
                    Err(leases::Error::Engine(format!(
                        "the load task failed: {error}"
                    )))
                });
            match loaded {
                Ok(loaded) => tracing::info!(
                    leases = loaded.leases,
                    irrevocable = loaded.irrevocable,
                    elapsed_ms = loaded.elapsed.as_millis() as u64,
                    "leading: loaded the lease schedule"
                ),
                Err(error) => {
                    tracing::error!(%error, "cannot load the lease schedule; retrying");
                    return;
                }
            }
        }
        unsealed.leases.plan_unplanned();
        // Times are whole seconds: a lease is due once its last second has
        // passed, so one of `ttl` seconds lasts at least that long.
        let now = now_seconds().saturating_sub(1);
        for id in unsealed.leases.take_due(now, TAKEN_PER_ROUND) {
            let unsealed = unsealed.clone();
            let Ok(permit) = unsealed.revocations.clone().acquire_owned().await else {
                return;
            };
            tokio::spawn(async move {
                unsealed
                    .leases
                    .revoke_due(&id, now, unsealed.as_ref())
                    .await;
                drop(permit);
            });
        }
        if unsealed.last_rotation_round.load(Ordering::Relaxed) < now
            && !unsealed.rotating.swap(true, Ordering::AcqRel)
        {
            unsealed.last_rotation_round.store(now, Ordering::Relaxed);
            let unsealed = unsealed.clone();
            tokio::spawn(async move {
                super::sys::rotation::key_round(&unsealed, now).await;
                engine_rounds(&unsealed, now).await;
                unsealed.rotating.store(false, Ordering::Release);
            });
        }
    }
}

/// Each mount's engine does its periodic duty (static password rotation).
async fn engine_rounds(unsealed: &Arc<Unsealed>, now: u64) {
    let mounts = unsealed.mounts.entries();
    for entry in mounts.iter() {
        if let Some(engine) = unsealed.engines.get(&entry.kind) {
            engine.leader_round(&unsealed.mount(entry), now).await;
        }
    }
}
