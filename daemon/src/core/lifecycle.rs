//! The seal state and its transitions: init, unseal (as a member or by
//! joining a cluster), seal, and reopening after a restored snapshot.

use std::sync::Arc;

use coffer_protocols::ErrorCode;
use zeroize::Zeroizing;

use super::{
    CLUSTER_PATH, ClusterInfo, Core, JOIN_CATCH_UP, RESTORE_SEAL_GRACE, Settings, Unsealed, leasing,
};
use crate::api::error::{ApiError, ApiResult};
use crate::audit::Broker;
use crate::barrier::{Barrier, Keyring};
use crate::mounts::MountTable;
use crate::policy::ROOT_POLICY;
use crate::policy_store::PolicyStore;
use crate::raft::join::LeaderClient;
use crate::raft::tls::{ClusterCa, Identity};
use crate::raft::{join, tls};
use crate::seal::{SealConfig, Submitted};
use crate::tokens::{NewToken, SALT_PATH, TokenStore};
use crate::{engine, seal};

/// A node that has a challenge from a member and waits for the operator's key
/// shares to answer it.
pub(crate) struct Joining {
    pub(super) config: SealConfig,
    /// Under an auto seal: the cluster's unseal key as the seal wrapped it.
    pub(super) sealed_unseal_key: Option<Vec<u8>>,
    leader: LeaderClient,
    challenge: Vec<u8>,
    sealed_root_key: Vec<u8>,
    sealed_keyring: Vec<u8>,
    non_voter: bool,
}

pub(super) enum State {
    Uninitialized,
    /// Joining a cluster: initialized and sealed as far as clients can tell.
    Joining(Arc<Joining>),
    Sealed(SealConfig),
    Unsealed(SealConfig, Arc<Unsealed>),
}

/// The seal state as `sys/seal-status` and `sys/health` report it.
#[derive(Debug, Clone)]
pub struct Status {
    pub initialized: bool,
    pub sealed: bool,
    /// `shamir`, or the auto seal's type.
    pub seal_type: String,
    /// Under an auto seal, operators hold recovery keys: `shares` and
    /// `threshold` are theirs.
    pub recovery_seal: bool,
    pub shares: u8,
    pub threshold: u8,
    /// The stored seal is not the configured one: the operators' keys with
    /// `migrate` move the data to the configured seal.
    pub migration: bool,
    pub progress: usize,
    pub nonce: String,
    pub cluster: Option<ClusterInfo>,
}

/// What `sys/init` returns to the operator, once.
pub struct InitOutput {
    pub shares: Vec<Zeroizing<Vec<u8>>>,
    pub root_token: Zeroizing<String>,
}

impl Core {
    /// After a snapshot replaced the data: opens the new data with the root key
    /// this node holds, or seals when it does not open it (a snapshot of another
    /// cluster was restored: unseal with that cluster's key shares).
    pub(super) async fn reopen(self: &Arc<Self>) {
        let _transition = self.transitions.lock().await;
        let (config, unsealed) = match &*self.read_state() {
            State::Unsealed(config, unsealed) => (config.clone(), unsealed.clone()),
            _ => return,
        };
        let reopened = unsealed
            .barrier
            .stored_keyring()
            .map_err(ApiError::from)
            .and_then(|keyring| self.open(keyring));
        match reopened {
            Ok(reopened) => {
                let reopened = Arc::new(reopened);
                self.replica.set_observer(Some(reopened.clone()));
                reopened.refresh();
                let config = seal::read_config(self.backend.as_ref())
                    .ok()
                    .flatten()
                    .unwrap_or(config);
                self.set_state(State::Unsealed(config, reopened));
                tracing::info!("reopened the store after a snapshot replaced it");
            }
            Err(_) => {
                tracing::warn!(
                    "the restored snapshot holds another cluster's keys: sealing; unseal with its key shares"
                );
                self.replica.set_observer(None);
                let config = seal::read_config(self.backend.as_ref())
                    .ok()
                    .flatten()
                    .unwrap_or(config);
                self.set_state(State::Sealed(config));
                self.lock_progress().reset();
                // Raft stops a moment later, so the restore's own answer (sent
                // after this apply) still reaches the operator who asked.
                let core = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(RESTORE_SEAL_GRACE).await;
                    let _transition = core.transitions.lock().await;
                    if matches!(&*core.read_state(), State::Sealed(_)) {
                        core.replica.stop().await;
                    }
                });
            }
        }
    }

    /// Whether this node has no cluster at all (neither initialized nor joining):
    /// the condition for `retry_join`.
    pub fn needs_join(&self) -> bool {
        matches!(&*self.read_state(), State::Uninitialized)
    }

    /// Not initialized, or joining already (a new join starts over).
    pub(super) fn may_join(&self) -> bool {
        matches!(
            &*self.read_state(),
            State::Uninitialized | State::Joining(_)
        )
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub(super) fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn set_state(&self, state: State) {
        // The quotas are read from behind the barrier; a node that is not
        // unsealed holds none.
        if !matches!(state, State::Unsealed(..)) {
            self.quotas.clear();
        }
        *self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
    }

    pub(super) fn lock_progress(&self) -> std::sync::MutexGuard<'_, seal::Progress> {
        self.progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn unsealed(&self) -> ApiResult<Arc<Unsealed>> {
        match &*self.read_state() {
            State::Unsealed(_, unsealed) => Ok(unsealed.clone()),
            _ => Err(ApiError::sealed()),
        }
    }

    /// The seal configuration (share count and threshold), once initialized.
    pub(crate) fn seal_config(&self) -> Option<SealConfig> {
        let (config, unsealed) = match &*self.read_state() {
            State::Uninitialized => return None,
            State::Joining(joining) => (joining.config.clone(), false),
            State::Sealed(config) => (config.clone(), false),
            State::Unsealed(config, _) => (config.clone(), true),
        };
        Some(if unsealed {
            self.stored_seal_config(config)
        } else {
            config
        })
    }

    /// While unsealed, the stored configuration is the truth: a rekey run
    /// on the leader reaches a standby's storage, not its memory.
    fn stored_seal_config(&self, held: SealConfig) -> SealConfig {
        match seal::read_config(self.backend.as_ref()) {
            Ok(Some(stored)) => stored,
            _ => held,
        }
    }

    /// After a rekey: the configuration this node reports and unseals with.
    pub(crate) fn set_seal_config(&self, config: SealConfig) {
        let unsealed = match &*self.read_state() {
            State::Unsealed(_, unsealed) => Some(unsealed.clone()),
            _ => None,
        };
        self.set_state(match unsealed {
            Some(unsealed) => State::Unsealed(config, unsealed),
            None => State::Sealed(config),
        });
    }

    /// The key holders' attempts in progress (root generation, rekey).
    pub(crate) fn lock_attempts(&self) -> std::sync::MutexGuard<'_, super::sys::quorum::Attempts> {
        self.attempts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Since when (Unix ms) this node has been the active one; 0 if it is not.
    pub(crate) fn active_since(&self) -> u64 {
        self.active_since.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn is_sealed(&self) -> bool {
        !matches!(&*self.read_state(), State::Unsealed(..))
    }

    pub fn status(&self) -> Status {
        let (initialized, sealed, config, cluster) = match &*self.read_state() {
            State::Uninitialized => (false, true, None, None),
            State::Joining(joining) => (true, true, Some(joining.config.clone()), None),
            State::Sealed(config) => (true, true, Some(config.clone()), None),
            State::Unsealed(config, unsealed) => (
                true,
                false,
                Some(config.clone()),
                Some(unsealed.cluster.clone()),
            ),
        };
        let config = match config {
            Some(config) if !sealed => Some(self.stored_seal_config(config)),
            config => config,
        };
        let progress = self.lock_progress();
        let (shares, threshold) = config.as_ref().map_or((0, 0), SealConfig::key_shares);
        let migration = config
            .as_ref()
            .is_some_and(|config| self.migration_pending(config));
        // During a migration, the type is the seal being migrated to (as
        // Vault), and t/n the keys that authorize it.
        let seal_type = match &config {
            Some(config) if !migration => config.kind.clone(),
            _ => self.target_seal().to_owned(),
        };
        Status {
            initialized,
            sealed,
            recovery_seal: seal_type != seal::SHAMIR,
            seal_type,
            shares,
            threshold,
            migration,
            progress: if sealed { progress.count() } else { 0 },
            nonce: if sealed {
                progress.nonce().to_owned()
            } else {
                String::new()
            },
            cluster,
        }
    }

    /// Initializes a new server: seal keys, keyring, the built-in policy, an empty
    /// mount table and a root token, all in one atomic write. `shares` and
    /// `threshold` are the operators' shares: of the unseal key (the server
    /// stays sealed, as Vault's does), or under an auto seal of the recovery key
    /// (the server unseals itself at once). `root_token` chooses the root
    /// token's value (the dev server's `--dev-root-token`).
    pub async fn initialize(
        &self,
        shares: u8,
        threshold: u8,
        root_token: Option<String>,
    ) -> ApiResult<InitOutput> {
        let _transition = self.transitions.lock().await;
        // Initializing a node that was about to join abandons the join.
        if !matches!(
            &*self.read_state(),
            State::Uninitialized | State::Joining(_)
        ) {
            return Err(ApiError::invalid("coffer is already initialized"));
        }
        let initialized = match &self.settings.seal {
            None => seal::initialize(shares, threshold)?,
            Some(wrapper) => seal::initialize_auto(wrapper.as_ref(), shares, threshold).await?,
        };
        let unseal_key = initialized.unseal_key.clone();
        self.replica.clone().bootstrap().await?;
        let result = self.write_initial_state(initialized, root_token).await;
        self.replica.stop().await;
        let (shares, token) = result?;
        let config = seal::read_config(self.backend.as_ref())?
            .ok_or_else(|| ApiError::internal(&"seal configuration missing after init"))?;
        self.set_state(State::Sealed(config.clone()));
        if config.is_auto() {
            self.unseal_member(config, unseal_key.as_ref()).await?;
        }
        Ok(InitOutput {
            shares,
            root_token: token,
        })
    }

    /// Writes the whole initial state as one command: seal records, salt, the
    /// `default` policy, an empty mount table, the cluster CA and the root token.
    pub(super) async fn write_initial_state(
        &self,
        initialized: seal::Initialized,
        root_token: Option<String>,
    ) -> ApiResult<(Vec<Zeroizing<Vec<u8>>>, Zeroizing<String>)> {
        let barrier = Arc::new(Barrier::new(self.backend.clone(), initialized.keyring));
        let mut batch = barrier.batch();
        for (path, value) in initialized.records {
            batch.put_raw(&path, value);
        }
        let salt = TokenStore::new_salt()?;
        batch.put(SALT_PATH, &salt)?;
        PolicyStore::add_default(&mut batch)?;
        MountTable::add_empty(&crate::mounts::SECRETS, &mut batch)?;
        MountTable::add_empty(&crate::mounts::AUTH, &mut batch)?;
        let cluster_id = crate::mounts::uuid_v4()?;
        let cluster_name = self
            .settings
            .cluster_name
            .clone()
            .unwrap_or_else(|| format!("coffer-cluster-{}", &cluster_id[..8]));
        let ca = ClusterCa::generate(&cluster_id).map_err(|error| ApiError::internal(&error))?;
        batch.put_json(tls::CA_PATH, &ca)?;
        batch.put_json(
            CLUSTER_PATH,
            &ClusterInfo {
                name: cluster_name,
                id: cluster_id,
            },
        )?;
        let tokens = TokenStore::new(barrier.clone(), salt);
        let (token, _) = tokens.prepare(
            NewToken {
                bound_cidrs: Vec::new(),
                policies: vec![ROOT_POLICY.into()],
                display_name: "root".into(),
                path: "auth/token/root".into(),
                ..NewToken::default()
            },
            root_token,
            &mut batch,
        )?;
        barrier.commit(batch).await?;
        Ok((initialized.shares, token))
    }

    /// Adds one key share; unseals once the threshold is reached. With
    /// `migrate`, the shares also authorize moving the data to the configured
    /// seal (see [`Core::migrate_seal`]).
    pub async fn submit_unseal_share(
        &self,
        share: Zeroizing<Vec<u8>>,
        migrate: bool,
    ) -> ApiResult<()> {
        let _transition = self.transitions.lock().await;
        let (config, joining) = match &*self.read_state() {
            State::Uninitialized => return Err(ApiError::invalid("coffer is not initialized")),
            // As in Vault: a share sent to an unsealed node changes nothing and
            // is answered with the status.
            State::Unsealed(..) => return Ok(()),
            State::Sealed(config) => (config.clone(), None),
            State::Joining(joining) => (joining.config.clone(), Some(joining.clone())),
        };
        if config.is_auto() && config.recovery_shares == 0 {
            return Err(seal::Error::NoRecoveryKey.into());
        }
        let pending = self.migration_pending(&config);
        if pending && !migrate {
            return Err(ApiError::invalid(
                "migrate option not provided and seal migration is pending",
            ));
        }
        if migrate && !pending {
            return Err(ApiError::invalid(
                "migrate option provided, but no seal migration is pending",
            ));
        }
        if pending && joining.is_some() {
            return Err(ApiError::invalid(
                "a node joining a cluster cannot migrate its seal: join with the cluster's seal",
            ));
        }
        let submitted = self
            .lock_progress()
            .submit(&config, share)
            .map_err(|error| ApiError::invalid(error.to_string()))?;
        let Submitted::Complete(key) = submitted else {
            return Ok(());
        };
        if pending {
            return self.migrate_seal(config, &key).await;
        }
        // Under an auto seal, the shares are the recovery key's: it proves
        // the operators' quorum, and the seal gives the unseal key.
        let key = if config.is_auto() {
            let wrapper = self.wrapper_for(&config)?;
            seal::check_recovery_key(self.backend.as_ref(), wrapper.as_ref(), &key).await?;
            self.unwrap_unseal_key(&config, joining.as_deref()).await?
        } else {
            key
        };
        match joining {
            None => self.unseal_member(config, &key).await,
            Some(joining) => self.complete_join(config, &joining, &key).await,
        }
    }

    /// Unseals a member from its own replica and starts its Raft with a fresh
    /// certificate from the cluster CA.
    pub(super) async fn unseal_member(&self, config: SealConfig, key: &[u8]) -> ApiResult<()> {
        let keyring = seal::open(self.backend.as_ref(), key)?;
        let unsealed = Arc::new(self.open(keyring)?);
        let ca: ClusterCa = unsealed
            .barrier
            .get_json(tls::CA_PATH)?
            .ok_or_else(|| ApiError::internal(&"the cluster CA is missing from storage"))?;
        let identity =
            Identity::issue_for_self(&ca, self.replica.id(), &self.replica.settings().name)
                .map_err(|error| ApiError::internal(&error))?;
        // A Raft still running from before a restore-induced seal has the old
        // CA's identity: start afresh.
        self.replica.stop().await;
        self.replica.set_observer(Some(unsealed.clone()));
        if let Err(error) = self.replica.clone().start(Some(&identity)).await {
            self.replica.set_observer(None);
            return Err(ApiError::internal(&error));
        }
        self.set_state(State::Unsealed(config, unsealed));
        tracing::info!("unsealed");
        Ok(())
    }

    /// Asks the member at `leader_api_addr` for a join challenge; the node then
    /// waits, sealed, for the cluster's key shares. On a node that is already a
    /// member of that cluster, changes nothing.
    pub async fn join(
        &self,
        leader_api_addr: &str,
        ca_pem: Option<&[u8]>,
        non_voter: bool,
    ) -> ApiResult<()> {
        // An initialized node (sealed or not) has its cluster: joining is a
        // no-op, as in Vault, and fetches nothing from the caller's address.
        if !self.may_join() {
            return Ok(());
        }
        let invalid = |error: join::Error| ApiError::invalid(error.to_string());
        let leader = LeaderClient::new(leader_api_addr, ca_pem).map_err(invalid)?;
        // The network call runs without the transition lock: a leader that
        // never answers holds up nothing else (seal, unseal, init).
        let name = self.replica.settings().name.clone();
        let answer = leader.challenge(&name).await.map_err(invalid)?;
        let _transition = self.transitions.lock().await;
        if !self.may_join() {
            return Ok(());
        }
        let malformed = || {
            ApiError::invalid(format!(
                "the leader at {} sent a malformed challenge",
                leader.address()
            ))
        };
        let joining = Joining {
            config: answer.seal_config,
            sealed_unseal_key: match answer.sealed_unseal_key.as_deref() {
                Some(encoded) => Some(join::decode(encoded).ok_or_else(malformed)?),
                None => None,
            },
            challenge: join::decode(&answer.challenge).ok_or_else(malformed)?,
            sealed_root_key: join::decode(&answer.sealed_root_key).ok_or_else(malformed)?,
            sealed_keyring: join::decode(&answer.sealed_keyring).ok_or_else(malformed)?,
            leader,
            non_voter,
        };
        tracing::info!(
            leader = joining.leader.address(),
            "joining a cluster: unseal this node with the cluster's key shares"
        );
        self.lock_progress().reset();
        self.set_state(State::Joining(Arc::new(joining)));
        Ok(())
    }

    /// Answers the join challenge with the keyring the key shares open, starts Raft
    /// with the certificate the leader issues, and unseals once this node's
    /// replica has caught up with the leader.
    pub(super) async fn complete_join(
        &self,
        config: SealConfig,
        joining: &Joining,
        key: &[u8],
    ) -> ApiResult<()> {
        let keyring = seal::open_records(&joining.sealed_root_key, &joining.sealed_keyring, key)?;
        let answer = keyring
            .decrypt(join::CHALLENGE_LABEL, &joining.challenge)
            .map_err(|_| ApiError::invalid("the key shares do not open the cluster's challenge"))?;
        let (key_pair, public_key) =
            tls::new_key_pair().map_err(|error| ApiError::internal(&error))?;
        let settings = self.replica.settings();
        let mut request = join::AnswerRequest {
            server_id: settings.name.clone(),
            answer: String::new(),
            public_key: join::encode(public_key.as_bytes()),
            cluster_addr: settings.cluster_addr.clone(),
            api_addr: settings.api_addr.clone(),
            non_voter: joining.non_voter,
        };
        request.answer = join::encode(&request.proof(&answer));
        let admission = match joining.leader.answer(&request).await {
            Ok(admission) => admission,
            Err(error @ join::Error::Unreachable { .. }) => {
                return Err(ApiError::new(ErrorCode::Unavailable, error.to_string()));
            }
            Err(error) => {
                // The challenge is spent: the node asks for a new one.
                self.set_state(State::Uninitialized);
                return Err(ApiError::invalid(format!(
                    "{error}; ask to join again, then unseal again"
                )));
            }
        };
        let identity = Identity::new(
            self.replica.id(),
            &admission.ca_cert,
            &admission.node_cert,
            &key_pair,
        )
        .map_err(|error| ApiError::internal(&error))?;
        self.replica
            .clone()
            .start(Some(&identity))
            .await
            .map_err(|error| ApiError::internal(&error))?;
        if let Err(error) = self
            .replica
            .wait_applied(admission.index, JOIN_CATCH_UP)
            .await
        {
            self.replica.stop().await;
            self.set_state(match seal::read_config(self.backend.as_ref())? {
                Some(config) => State::Sealed(config),
                None => State::Uninitialized,
            });
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("joined the cluster, but {error}; unseal again"),
            ));
        }
        let unsealed = Arc::new(self.open(keyring)?);
        self.replica.set_observer(Some(unsealed.clone()));
        // Anything applied between opening and observing is picked up here.
        unsealed.refresh();
        self.set_state(State::Unsealed(config, unsealed));
        tracing::info!(index = admission.index, "joined the cluster and unsealed");
        Ok(())
    }

    pub fn reset_unseal(&self) {
        self.lock_progress().reset();
    }

    pub(super) fn open(&self, keyring: Keyring) -> ApiResult<Unsealed> {
        let barrier = Arc::new(Barrier::new(self.backend.clone(), keyring));
        let salt = barrier
            .get(SALT_PATH)?
            .ok_or_else(|| ApiError::internal(&"token salt missing from storage"))?;
        let cluster: ClusterInfo = barrier
            .get_json(CLUSTER_PATH)?
            .ok_or_else(|| ApiError::internal(&"cluster info missing from storage"))?;
        let leases = Arc::new(crate::leases::Manager::new(barrier.clone()));
        let local_roles = Arc::new(crate::local_auth::Roles::new(barrier.clone()));
        let auth_methods = crate::auth::Methods::new(
            &self.settings.auth_methods,
            &crate::auth::Environment {
                barrier: barrier.clone(),
                local_roles: local_roles.clone(),
            },
            MountTable::load(&crate::mounts::AUTH, barrier.clone())?,
        );
        let engines = engine::Registry::new(
            &self.settings.engines,
            &engine::Environment {
                barrier: barrier.clone(),
                leases: leases.clone(),
            },
        );
        let unsealed = Unsealed {
            tokens: TokenStore::new(barrier.clone(), Zeroizing::new(salt.to_vec())),
            policies: PolicyStore::new(barrier.clone()),
            mounts: MountTable::load(&crate::mounts::SECRETS, barrier.clone())?,
            engines,
            cluster,
            audit: Broker::new(Zeroizing::new(salt.to_vec()), self.settings.audit.clone()),
            leases,
            local_roles,
            auth_methods,
            lease_ttls: (self.settings.default_lease_ttl, self.settings.max_lease_ttl),
            revocations: Arc::new(tokio::sync::Semaphore::new(leasing::CONCURRENT_REVOCATIONS)),
            rotating: Default::default(),
            last_rotation_round: Default::default(),
            barrier,
            reopen_requests: self.reopen_requests.clone(),
            changes: self.changes.clone(),
            quotas: self.quotas.clone(),
        };
        unsealed.reload_audit();
        unsealed.reload_quotas();
        Ok(unsealed)
    }

    /// Seals: forgets every key. Requests already running finish with the keys they
    /// hold; new ones get 503.
    pub async fn seal(&self) {
        let _transition = self.transitions.lock().await;
        let sealed = match &*self.read_state() {
            State::Unsealed(config, _) => Some(config.clone()),
            _ => None,
        };
        if let Some(config) = sealed {
            // The stored configuration: a rekey may have changed it since
            // this node unsealed.
            let config = self.stored_seal_config(config);
            self.replica.set_observer(None);
            self.set_state(State::Sealed(config));
            self.lock_progress().reset();
            self.replica.stop().await;
            tracing::info!("sealed");
        }
    }
}
