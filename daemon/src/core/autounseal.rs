//! Auto-unseal: a node whose data an auto seal protects unseals itself at
//! start, and a joining node once it holds the leader's challenge, retrying
//! with backoff while the KMS is unreachable or refuses. Each attempt makes
//! one KMS call.
//!
//! Seal migration, Vault's way: the configuration names the new seal (and the
//! old one with `disabled = "true"`); the node starts sealed with a migration
//! pending, and the operators' keys sent with `migrate` unseal it and
//! authorize the move. The new records are written by the leader: at once on
//! a node that leads, or by a migrated node once it leads.

use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::Core;
use super::lifecycle::{Joining, State};
use crate::api::error::{ApiError, ApiResult};
use crate::autoseal::{self, UNSEAL_KEY_PATH, Wrapper};
use crate::seal::{self, SealConfig};

/// The first retry comes after this long; each failure doubles it.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// How often an uninitialized node looks whether it has started joining.
const WAITING_POLL: Duration = Duration::from_millis(200);

/// What one auto-unseal attempt found.
#[derive(Debug, PartialEq, Eq)]
pub enum AutoUnseal {
    /// The node is unsealed.
    Done,
    /// Not initialized and not joining yet: nothing to unseal.
    Waiting,
    /// The stored seal is not the configured one: operators unseal with
    /// `migrate`.
    MigrationPending,
}

impl Core {
    /// The configured seal, if it is the one that sealed `config`'s data.
    pub(super) fn wrapper_for(&self, config: &SealConfig) -> ApiResult<Arc<dyn Wrapper>> {
        match &self.settings.seal {
            Some(wrapper) if wrapper.kind() == config.kind => Ok(wrapper.clone()),
            Some(wrapper) => Err(ApiError::invalid(format!(
                "the data is sealed by a {} seal, but the configuration names a {} seal",
                config.kind,
                wrapper.kind()
            ))),
            None => Err(ApiError::invalid(format!(
                "the data is sealed by a {} seal, but the configuration has no seal block for it",
                config.kind
            ))),
        }
    }

    /// The unseal key, unwrapped by the seal: from storage, or for a joining
    /// node from the leader's challenge. One KMS call.
    pub(super) async fn unwrap_unseal_key(
        &self,
        config: &SealConfig,
        joining: Option<&Joining>,
    ) -> ApiResult<Zeroizing<Vec<u8>>> {
        let wrapper = self.wrapper_for(config)?;
        let key = match joining {
            None => seal::unwrap_unseal_key(self.backend.as_ref(), wrapper.as_ref()).await,
            Some(joining) => {
                let sealed = joining.sealed_unseal_key.as_deref().ok_or_else(|| {
                    ApiError::invalid("the leader's challenge holds no wrapped unseal key")
                })?;
                autoseal::open_record(wrapper.as_ref(), UNSEAL_KEY_PATH, sealed)
                    .await
                    .map_err(seal::Error::from)
            }
        };
        Ok(key?)
    }

    /// The seal type the configuration asks for: the active seal's, or Shamir.
    pub(super) fn target_seal(&self) -> &'static str {
        self.settings
            .seal
            .as_ref()
            .map_or(seal::SHAMIR, |wrapper| wrapper.kind())
    }

    /// Whether data sealed as `config` is to move to another seal.
    pub(super) fn migration_pending(&self, config: &SealConfig) -> bool {
        config.kind != self.target_seal()
    }

    /// With the operators' combined `key` (unseal key under Shamir, recovery
    /// key under an auto seal): checks it against the old seal, unseals with
    /// the old unseal key, and prepares the records of the new seal, written
    /// now if this node leads, else when it does (see
    /// [`Core::finish_migration`]). The old seal's unseal path stays valid
    /// until then, so a node restarted mid-migration loses nothing.
    pub(super) async fn migrate_seal(&self, config: SealConfig, key: &[u8]) -> ApiResult<()> {
        let unseal_key = if config.is_auto() {
            let old = match &self.settings.disabled_seal {
                Some(old) if old.kind() == config.kind => old.clone(),
                _ => {
                    return Err(ApiError::invalid(format!(
                        "the data is sealed by a {} seal: keep its seal block, with disabled = \"true\", to migrate away from it",
                        config.kind
                    )));
                }
            };
            seal::check_recovery_key(self.backend.as_ref(), old.as_ref(), key).await?;
            seal::unwrap_unseal_key(self.backend.as_ref(), old.as_ref()).await?
        } else {
            Zeroizing::new(key.to_vec())
        };
        let migration = seal::migration(
            self.backend.as_ref(),
            &config,
            &unseal_key,
            key,
            self.settings.seal.as_deref(),
        )
        .await?;
        self.unseal_member(config.clone(), &unseal_key).await?;
        tracing::info!(
            from = config.kind,
            to = migration.config.kind,
            "seal migration authorized: the leader writes it"
        );
        *self.lock_migration() = Some(migration);
        self.finish_migration().await;
        Ok(())
    }

    pub(super) fn lock_migration(&self) -> std::sync::MutexGuard<'_, Option<seal::Migration>> {
        self.migration
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes the migration this node holds, if it leads and no node has
    /// migrated the data yet; called after the unseal and by each lease
    /// round (so a node that unsealed as a follower writes once it leads).
    pub(super) async fn finish_migration(&self) {
        if self.lock_migration().is_none() {
            return;
        }
        let Ok(unsealed) = self.unsealed() else {
            return;
        };
        if !self.replica.is_leader() {
            return;
        }
        let Some(migration) = self.lock_migration().take() else {
            return;
        };
        if let Ok(Some(stored)) = seal::read_config(self.backend.as_ref())
            && stored.kind == migration.config.kind
        {
            tracing::info!(
                seal = stored.kind,
                "the seal migration was written by another node"
            );
            self.set_seal_config(stored);
            return;
        }
        let mut batch = unsealed.barrier.batch();
        let config_bytes = match serde_json::to_vec(&migration.config) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(%error, "seal migration failed");
                return;
            }
        };
        batch.put_raw(seal::CONFIG_PATH, config_bytes);
        for (path, value) in &migration.records {
            batch.put_raw(path, value.clone());
        }
        for path in &migration.removed {
            batch.delete(path);
        }
        match unsealed.barrier.commit(batch).await {
            Ok(_) => {
                tracing::info!(seal = migration.config.kind, "seal migration complete");
                self.set_seal_config(migration.config);
            }
            Err(error) => {
                tracing::warn!(%error, "writing the seal migration failed: retrying");
                *self.lock_migration() = Some(migration);
            }
        }
    }

    /// One attempt to unseal with the configured seal.
    pub async fn auto_unseal(&self) -> ApiResult<AutoUnseal> {
        let _transition = self.transitions.lock().await;
        let (config, joining) = match &*self.read_state() {
            State::Uninitialized => return Ok(AutoUnseal::Waiting),
            State::Unsealed(..) => return Ok(AutoUnseal::Done),
            State::Sealed(config) => (config.clone(), None),
            State::Joining(joining) => (joining.config.clone(), Some(joining.clone())),
        };
        if self.migration_pending(&config) {
            return Ok(AutoUnseal::MigrationPending);
        }
        let key = self.unwrap_unseal_key(&config, joining.as_deref()).await?;
        match joining {
            None => self.unseal_member(config, &key).await?,
            Some(joining) => self.complete_join(config, &joining, &key).await?,
        }
        Ok(AutoUnseal::Done)
    }

    /// Unseals with the configured seal as soon as there is something to
    /// unseal, retrying with backoff (1 s doubling to 30 s) and logging each
    /// failure; returns once unsealed, or at once when the data is sealed by
    /// Shamir keys.
    pub async fn run_auto_unseal(self: Arc<Self>) {
        let Some(wrapper) = self.settings.seal.clone() else {
            return;
        };
        // A new node checks its key before anyone initializes it (AWS's
        // DescribeKey); an initialized one learns as much from its one
        // unwrap call.
        if !self.status().initialized
            && let Err(error) = wrapper.check().await
        {
            tracing::error!(%error, seal = wrapper.kind(), "the seal's key is not usable");
        }
        let mut delay = FIRST_RETRY;
        loop {
            match self.auto_unseal().await {
                Ok(AutoUnseal::Done) => {
                    tracing::info!(seal = wrapper.kind(), "unsealed with the stored key");
                    return;
                }
                Ok(AutoUnseal::MigrationPending) => {
                    tracing::warn!(
                        seal = wrapper.kind(),
                        "seal migration pending: unseal with the current keys and migrate set (coffer operator unseal -migrate)"
                    );
                    return;
                }
                Ok(AutoUnseal::Waiting) => {
                    tokio::time::sleep(WAITING_POLL).await;
                    continue;
                }
                Err(error) => tracing::warn!(
                    error = %error.messages.join("; "),
                    seal = wrapper.kind(),
                    retry_in_seconds = delay.as_secs(),
                    "failed to unseal with the seal: staying sealed"
                ),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY);
        }
    }
}
