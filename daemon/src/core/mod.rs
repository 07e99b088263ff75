//! The core: the seal state and the one request pipeline every door calls.
//!
//! [`Core::handle`] (the doors' `Handler`) runs, for every request:
//! validate the path -> answer the unauthenticated `sys/` endpoints (health, seal
//! status, init, unseal, leader) -> refuse with 503 while sealed -> authenticate
//! the token -> authorize with the token's ACL (inside each route, which knows
//! whether a write is a `create` or an `update`) -> route to `sys/`, `auth/token/`
//! or a mount -> wrap the reply in Vault's envelope. The audit issue inserts its
//! request and response records around the authorize-and-route step.

mod fs;
mod leasing;
mod login;
#[cfg(test)]
mod pipeline_tests;
mod sys;

/// Vault's floor for `sys/rotate/config`'s `max_operations`.
pub const MIN_ROTATION_OPERATIONS: u64 = sys::rotation::MIN_OPERATIONS;
mod token_api;
mod watch;

use std::sync::{Arc, Mutex, RwLock};

use coffer_protocols::{
    ClientToken, ErrorCode, Handler, LocalPeer, LogicalResponse, Observation, Operation, Request,
    Response, ResponseBody, Transport, WatchStream,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::Instrument;
use zeroize::Zeroizing;

use crate::api::error::{ApiError, ApiResult};
use crate::api::fields;
use crate::api::reply::Reply;
use crate::audit::{self, Broker};
use crate::barrier::{Barrier, Keyring};
use crate::engine::{self, SecretEngine};
use crate::metrics::Metrics;
use crate::mounts::{MountEntry, MountTable};
use crate::policy::acl::Capability;
use crate::policy::{Acl, Decision, ROOT_POLICY};
use crate::policy_store::PolicyStore;
use crate::raft::cluster::ForwardHandler;
use crate::raft::join::{self, Challenges, LeaderClient};
use crate::raft::store::{Applied, ApplyObserver};
use crate::raft::tls::{self, ClusterCa, Identity};
use crate::replica::Replica;
use crate::seal::{self, SealConfig, Submitted};
use crate::storage::Backend;
use crate::tokens::{NewToken, SALT_PATH, TokenEntry, TokenStore};

/// The longest logical path accepted.
const MAX_PATH_LEN: usize = 4096;
const CLUSTER_PATH: &str = "core/cluster";
/// How long Raft keeps running after a restored snapshot sealed the node.
const RESTORE_SEAL_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a joining node waits for its replica to catch up before unsealing.
/// How often the leader looks for due leases.
const LEASE_ROUND: std::time::Duration = std::time::Duration::from_millis(250);
const JOIN_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(120);

/// Server-wide settings the core needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub cluster_name: Option<String>,
    pub api_addr: Option<String>,
    pub cluster_addr: Option<String>,
    pub default_lease_ttl: u64,
    pub max_lease_ttl: u64,
    pub unauthenticated_metrics_access: bool,
    /// Audit devices declared in the configuration file.
    pub audit: Vec<audit::DeviceConfig>,
    /// `sys/audit` may enable devices (`unsafe_allow_api_audit_creation`).
    pub api_audit_creation: bool,
    /// The floor of `sys/rotate/config`'s `max_operations`: Vault's 1,000,000,
    /// or `COFFER_MIN_ROTATION_OPERATIONS` from the environment, so tests can
    /// reach the limit with a few writes.
    pub min_rotation_operations: u64,
    /// The secrets engines mounts may have ([`engine::BUILT_IN`]).
    pub engines: Vec<engine::Factory>,
    /// The auth methods mounted under `auth/` ([`crate::auth::BUILT_IN`]).
    pub auth_methods: Vec<(&'static str, crate::auth::Factory)>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cluster_name: None,
            api_addr: None,
            cluster_addr: None,
            default_lease_ttl: crate::config::DEFAULT_LEASE_TTL,
            max_lease_ttl: crate::config::DEFAULT_LEASE_TTL,
            unauthenticated_metrics_access: false,
            audit: Vec::new(),
            api_audit_creation: false,
            min_rotation_operations: MIN_ROTATION_OPERATIONS,
            engines: engine::BUILT_IN.to_vec(),
            auth_methods: crate::auth::BUILT_IN.to_vec(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub name: String,
    pub id: String,
}

/// Everything that exists only while unsealed. Dropping it (sealing) drops the
/// keyring, whose keys are wiped.
pub(crate) struct Unsealed {
    pub barrier: Arc<Barrier>,
    pub tokens: TokenStore,
    pub policies: PolicyStore,
    pub mounts: MountTable,
    /// The secrets engines, by type name; they serve every mount.
    pub engines: engine::Registry,
    pub cluster: ClusterInfo,
    pub audit: Broker,
    pub leases: Arc<crate::leases::Manager>,
    /// `auth/local` roles, parsed.
    pub local_roles: Arc<crate::local_auth::Roles>,
    /// The auth methods mounted under `auth/` (besides the token store).
    pub auth_methods: crate::auth::Methods,
    /// The system's default and max lease TTL (for mounts that set none).
    pub lease_ttls: (u64, u64),
    /// Bounds the revocations the leader runs at once.
    pub revocations: Arc<tokio::sync::Semaphore>,
    /// A static-role rotation round is running; and when the last one started.
    pub rotating: std::sync::atomic::AtomicBool,
    pub last_rotation_round: std::sync::atomic::AtomicU64,
    /// Asks the core to reopen itself from the store (after a snapshot replaced
    /// the data).
    reopen_requests: tokio::sync::mpsc::UnboundedSender<()>,
    /// Where applied writes are announced to watchers (the core's hub).
    changes: crate::changes::Hub,
}

impl Unsealed {
    /// Re-reads what this node caches from the store: the keyring, the mount
    /// table, parsed policies.
    fn refresh(&self) {
        if let Err(error) = self.barrier.reload_keyring() {
            tracing::error!(%error, "cannot reload the keyring");
        }
        if let Err(error) = self.mounts.reload() {
            tracing::error!(%error, "cannot reload the mount table");
        }
        self.policies.invalidate();
        self.local_roles.invalidate();
        self.forget_engine_caches();
        self.reload_audit();
    }

    fn forget_engine_caches(&self) {
        for engine in self.engines.iter() {
            engine.forget_all();
        }
    }

    /// `entry` as its engine sees it, with the system's TTLs where it sets none.
    pub(crate) fn mount<'a>(&self, entry: &'a MountEntry) -> engine::Mount<'a> {
        engine::Mount::new(entry, self.lease_ttls)
    }

    /// The engine serving `entry`: every stored mount type has one, unless a
    /// newer version stored a type this one does not know.
    pub(crate) fn engine_of(&self, entry: &MountEntry) -> ApiResult<&dyn SecretEngine> {
        self.engines.get(&entry.kind).ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnsupportedOperation,
                format!(
                    "the mount {:?} has the type {:?}, which this version of coffer does not serve",
                    entry.path, entry.kind
                ),
            )
        })
    }

    /// Runs the devices of the audit table as stored now (and the configured ones).
    fn reload_audit(&self) {
        match self
            .barrier
            .get_json::<Vec<audit::DeviceConfig>>(audit::TABLE_PATH)
        {
            Ok(table) => self.audit.load(&table.unwrap_or_default()),
            Err(error) => tracing::error!(%error, "cannot read the audit table"),
        }
    }
}

/// The keys whose writes this node's caches depend on: the keyring and tables
/// under `core/`, policies, `auth/local` roles, tokens, leases, and the
/// engines' data (KV metadata).
const WATCHED: [&str; 6] = [
    "core/",
    "sys/policy/",
    "sys/token/id/",
    "sys/expire/id/",
    crate::local_auth::PREFIX,
    crate::mounts::DATA_PREFIX,
];

impl ApplyObserver for Unsealed {
    /// A key under a watched prefix, or a deleted prefix that holds one.
    fn watches(&self, key: &str) -> bool {
        WATCHED
            .iter()
            .any(|prefix| key.starts_with(prefix) || prefix.starts_with(key))
    }

    /// Keeps this node's caches true to replicated writes, before the applied index
    /// advances (so a read after a forwarded write sees them).
    fn applied(&self, change: &Applied<'_>) {
        if change.replaced {
            // A snapshot was installed or restored: the salt, the keys, even the
            // root key may be another's. The core reopens (or seals) itself.
            self.forget_engine_caches();
            self.tokens.forget_all();
            let _ = self.reopen_requests.send(());
            return;
        }
        let touched = |check: &dyn Fn(&str) -> bool| change.touched.iter().any(|key| check(key));
        if touched(&|key| key == crate::barrier::KEYRING_PATH || key == "core/")
            && let Err(error) = self.barrier.reload_keyring()
        {
            tracing::error!(%error, "cannot reload the keyring after a replicated rotation");
        }
        if touched(&|key| key == crate::mounts::TABLE_PATH || key == "core/")
            && let Err(error) = self.mounts.reload()
        {
            tracing::error!(%error, "cannot reload the mount table");
        }
        if touched(&|key| key.starts_with("sys/policy/")) {
            self.policies.invalidate();
        }
        if touched(&|key| key.starts_with(crate::local_auth::PREFIX)) {
            self.local_roles.invalidate();
        }
        if touched(&|key| key == audit::TABLE_PATH || key == "core/") {
            self.reload_audit();
        }
        for key in change.touched {
            self.leases.observe(key);
            self.tokens.forget(key);
            for engine in self.engines.iter() {
                engine.observe(key);
            }
        }
        for (index, applied) in change.changes {
            self.changes.publish(*index, std::slice::from_ref(applied));
        }
    }
}

/// A node that has a challenge from a member and waits for the operator's key
/// shares to answer it.
pub(crate) struct Joining {
    config: SealConfig,
    leader: LeaderClient,
    challenge: Vec<u8>,
    sealed_root_key: Vec<u8>,
    sealed_keyring: Vec<u8>,
    non_voter: bool,
}

/// Where a request runs.
enum Placement {
    /// On the leader (this node is a standby).
    Leader,
    /// Here, with the request's token entry if it was already looked up.
    Here(Option<Box<TokenEntry>>),
}

enum State {
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
    pub shares: u8,
    pub threshold: u8,
    pub progress: usize,
    pub nonce: String,
    pub cluster: Option<ClusterInfo>,
}

/// What `sys/init` returns to the operator, once.
pub struct InitOutput {
    pub shares: Vec<Zeroizing<Vec<u8>>>,
    pub root_token: Zeroizing<String>,
}

/// The authenticated caller of a request.
pub(crate) struct Caller {
    /// The token's entry; for a local caller authenticated by its roles, an
    /// entry made for this request and stored nowhere (empty hash and accessor).
    pub token: TokenEntry,
    pub acl: Arc<Acl>,
    /// Set when the caller was authenticated by `auth/local` roles, not a token.
    pub local: Option<crate::local_auth::Identity>,
    /// A login's caller: it has no token (yet).
    pub anonymous: bool,
}

impl Caller {
    /// The caller of a login: no token, no policies.
    fn anonymous() -> Caller {
        Caller {
            token: TokenEntry {
                hash: String::new(),
                accessor: String::new(),
                parent: None,
                policies: Vec::new(),
                meta: Default::default(),
                display_name: String::new(),
                num_uses: 0,
                exhausted: false,
                creation_time: 0,
                creation_ttl: 0,
                expire_time: None,
                explicit_max_ttl: 0,
                period: 0,
                renewable: false,
                path: String::new(),
            },
            acl: Arc::new(Acl::default()),
            local: None,
            anonymous: true,
        }
    }

    /// Checks `capability` on `path`; `sudo` routes also need the sudo capability.
    pub fn authorize(
        &self,
        path: &str,
        capability: Capability,
        data: &Map<String, Value>,
        sudo: bool,
    ) -> ApiResult<Decision> {
        let decision = self.acl.check(path, capability, data);
        if !decision.allowed || (sudo && !decision.sudo) {
            return Err(ApiError::denied());
        }
        Ok(decision)
    }
}

/// A route's answer with what the envelope needs to know.
pub(crate) struct Routed {
    pub reply: Reply,
    pub mount_type: &'static str,
    /// `sys/` answers copy `data` to the top level, as Vault does.
    pub flatten: bool,
}

pub struct Core {
    replica: Arc<dyn Replica>,
    backend: Arc<dyn Backend>,
    settings: Settings,
    state: RwLock<State>,
    progress: Mutex<seal::Progress>,
    transitions: tokio::sync::Mutex<()>,
    metrics: Metrics,
    /// Join challenges this node issued (as the leader).
    pub(crate) challenges: Challenges,
    reopen_requests: tokio::sync::mpsc::UnboundedSender<()>,
    reopen_requested: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<()>>>,
    /// Writes as this node applies them, for watchers; outlives seals.
    changes: crate::changes::Hub,
}

impl Core {
    /// A core over `cluster`'s replica, sealed (or uninitialized).
    pub fn new(replica: Arc<dyn Replica>, settings: Settings) -> Result<Core, seal::Error> {
        let backend: Arc<dyn Backend> = replica.clone();
        let state = match seal::read_config(backend.as_ref())? {
            Some(config) => State::Sealed(config),
            None => State::Uninitialized,
        };
        let (reopen_requests, reopen_requested) = tokio::sync::mpsc::unbounded_channel();
        Ok(Core {
            replica,
            backend,
            settings,
            state: RwLock::new(state),
            progress: Mutex::new(seal::Progress::default()),
            transitions: tokio::sync::Mutex::new(()),
            metrics: Metrics::new(),
            challenges: Challenges::default(),
            reopen_requests,
            reopen_requested: Mutex::new(Some(reopen_requested)),
            changes: crate::changes::Hub::default(),
        })
    }

    /// Runs the core's background duties until the process ends: token tidy and
    /// lease expiry on the leader, and reopening after a snapshot replaced the data.
    pub async fn run_background(self: Arc<Self>, tidy_interval: std::time::Duration) {
        let receiver = self
            .reopen_requested
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let Some(mut reopen_requested) = receiver else {
            return;
        };
        let mut tidy = tokio::time::interval(tidy_interval);
        tidy.tick().await;
        let mut leases = tokio::time::interval(LEASE_ROUND);
        leases.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tidy.tick() => self.tidy().await,
                _ = leases.tick() => self.lease_round().await,
                request = reopen_requested.recv() => match request {
                    Some(()) => self.reopen().await,
                    None => return,
                },
            }
        }
    }

    /// After a snapshot replaced the data: opens the new data with the root key
    /// this node holds, or seals when it does not open it (a snapshot of another
    /// cluster was restored: unseal with that cluster's key shares).
    async fn reopen(self: &Arc<Self>) {
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
    fn may_join(&self) -> bool {
        matches!(
            &*self.read_state(),
            State::Uninitialized | State::Joining(_)
        )
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_state(&self, state: State) {
        *self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
    }

    fn lock_progress(&self) -> std::sync::MutexGuard<'_, seal::Progress> {
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

    pub fn is_sealed(&self) -> bool {
        !matches!(&*self.read_state(), State::Unsealed(..))
    }

    pub fn status(&self) -> Status {
        let progress = self.lock_progress();
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
        Status {
            initialized,
            sealed,
            shares: config.as_ref().map_or(0, |config| config.secret_shares),
            threshold: config.as_ref().map_or(0, |config| config.secret_threshold),
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
    /// mount table and a root token, all in one atomic write. The server stays
    /// sealed, as Vault's does. `root_token` chooses the root token's value (the dev
    /// server's `--dev-root-token`).
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
        let initialized = seal::initialize(shares, threshold)?;
        self.replica.clone().bootstrap().await?;
        let result = self.write_initial_state(initialized, root_token).await;
        self.replica.stop().await;
        let (shares, token) = result?;
        let config = seal::read_config(self.backend.as_ref())?
            .ok_or_else(|| ApiError::internal(&"seal configuration missing after init"))?;
        self.set_state(State::Sealed(config));
        Ok(InitOutput {
            shares,
            root_token: token,
        })
    }

    /// Writes the whole initial state as one command: seal records, salt, the
    /// `default` policy, an empty mount table, the cluster CA and the root token.
    async fn write_initial_state(
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
        MountTable::add_empty(&mut batch)?;
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

    /// Adds one key share; unseals once the threshold is reached.
    pub async fn submit_unseal_share(&self, share: Zeroizing<Vec<u8>>) -> ApiResult<()> {
        let _transition = self.transitions.lock().await;
        let (config, joining) = match &*self.read_state() {
            State::Uninitialized => return Err(ApiError::invalid("coffer is not initialized")),
            State::Unsealed(..) => return Err(ApiError::invalid("coffer is already unsealed")),
            State::Sealed(config) => (config.clone(), None),
            State::Joining(joining) => (joining.config.clone(), Some(joining.clone())),
        };
        let submitted = self
            .lock_progress()
            .submit(&config, share)
            .map_err(|error| ApiError::invalid(error.to_string()))?;
        let Submitted::Complete(key) = submitted else {
            return Ok(());
        };
        match joining {
            None => self.unseal_member(config, &key).await,
            Some(joining) => self.complete_join(config, &joining, &key).await,
        }
    }

    /// Unseals a member from its own replica and starts its Raft with a fresh
    /// certificate from the cluster CA.
    async fn unseal_member(&self, config: SealConfig, key: &[u8]) -> ApiResult<()> {
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
    async fn complete_join(
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

    fn open(&self, keyring: Keyring) -> ApiResult<Unsealed> {
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
            mounts: MountTable::load(barrier.clone())?,
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
        };
        unsealed.reload_audit();
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
            self.replica.set_observer(None);
            self.set_state(State::Sealed(config));
            self.lock_progress().reset();
            self.replica.stop().await;
            tracing::info!("sealed");
        }
    }

    /// Revokes expired and used-up tokens: on the leader only (the leader owns
    /// time); a no-op while sealed.
    pub async fn tidy(&self) {
        let Ok(unsealed) = self.unsealed() else {
            return;
        };
        if !self.replica.is_leader() {
            return;
        }
        match unsealed.tidy_tokens().await {
            Ok(0) => {}
            Ok(revoked) => tracing::info!(revoked, "revoked expired tokens"),
            Err(error) => tracing::warn!(%error, "token tidy failed"),
        }
    }

    pub fn render_metrics(&self) -> String {
        let status = self.status();
        self.metrics.render(status.sealed, status.initialized)
    }

    async fn process(
        &self,
        request: &Request,
        token: Option<TokenEntry>,
        route: &mut Option<String>,
    ) -> ApiResult<Routed> {
        let path = validate_path(&request.path)?;
        // As in Vault, a listed path is a directory: policies see it with a
        // trailing slash, so `path "secret/metadata/app/*"` governs `LIST
        // secret/metadata/app`.
        let listed;
        let path = if request.operation == Operation::List && !path.ends_with('/') {
            listed = format!("{path}/");
            listed.as_str()
        } else {
            path
        };
        if request.wrap_ttl.is_some() {
            return Err(ApiError::invalid(
                "response wrapping (X-Vault-Wrap-TTL) is not supported by coffer",
            ));
        }
        // Rare paths run in futures of their own (`Box::pin`): the hot path's
        // future stays small, and is moved at every level that awaits it.
        let endpoint = sys::Endpoint::parse(path);
        if let Some(endpoint) = endpoint {
            *route = Some(endpoint.label().to_owned());
            if endpoint.access(self.settings.unauthenticated_metrics_access) == sys::Access::Open {
                return Box::pin(sys::unauthenticated(self, request, path, endpoint)).await;
            }
        }
        let unsealed = self.unsealed()?;
        let caller = match self.authenticate(&unsealed, request, path, token).await {
            Ok(caller) => caller,
            Err(error) => {
                if let Some(scope) = unsealed.audit.scope(None) {
                    // A refused token is audited too; the request runs nothing.
                    let message = error.messages.join("; ");
                    let mount = mount_of(&unsealed, path);
                    let entry = entry("request", request, path, &mount, None, None, Some(&message));
                    self.audit(&scope, &entry).await;
                }
                return Err(error);
            }
        };
        let scope = unsealed
            .audit
            .scope(audit_caller(request, &caller).as_ref());
        let mount = if scope.is_some() {
            mount_of(&unsealed, path)
        } else {
            None
        };
        if let Some(scope) = &scope {
            let entry = entry(
                "request",
                request,
                path,
                &mount,
                audit_caller(request, &caller),
                None,
                None,
            );
            if !self.audit(scope, &entry).await {
                return Err(ApiError::new(
                    ErrorCode::Unavailable,
                    "no audit device could record this request, so it was not run",
                ));
            }
        }
        let result = match request.operation {
            Operation::Write | Operation::Patch | Operation::Delete => {
                let change = crate::changes::Change {
                    path: path.to_owned(),
                    operation: match request.operation {
                        Operation::Patch => "patch",
                        Operation::Delete => "delete",
                        _ => "write",
                    }
                    .to_owned(),
                    version: 0,
                    time_ms: crate::changes::now_ms(),
                };
                Box::pin(crate::changes::scope(
                    change,
                    self.dispatch(&unsealed, request, path, endpoint, &caller, route),
                ))
                .await
            }
            Operation::Read | Operation::List => {
                self.dispatch(&unsealed, request, path, endpoint, &caller, route)
                    .await
            }
        };
        if let Some(scope) = &scope {
            let error = result.as_ref().err().map(|error| error.messages.join("; "));
            let entry = entry(
                "response",
                request,
                path,
                &mount,
                audit_caller(request, &caller),
                Some(audit_outcome(&result)),
                error.as_deref(),
            );
            // The response is answered whatever the devices do, so nothing waits
            // for its entry; the request's entry is what gates execution.
            if !scope.log_detached(&entry) {
                self.metrics.audit_failed("response");
            }
        }
        if caller.token.exhausted
            && let Err(error) = Box::pin(unsealed.revoke_token(&caller.token.hash, false)).await
        {
            tracing::warn!(%error, "revoking a used-up token failed; tidy will retry");
        }
        result
    }

    /// Writes `entry` to the audit devices; false when none wrote it (counted).
    async fn audit(&self, scope: &audit::Scope, entry: &audit::Entry<'_>) -> bool {
        let written = scope.log(entry).await;
        if !written {
            self.metrics.audit_failed(entry.kind);
            tracing::warn!(
                request_id = %entry.request.id,
                entry = entry.kind,
                "no audit device wrote an entry"
            );
        }
        written
    }

    /// SIGHUP: audit files are closed and opened again (for logrotate).
    pub fn reopen_audit_devices(&self) {
        if let Ok(unsealed) = self.unsealed() {
            unsealed.audit.reopen();
        }
    }

    /// The caller of `request`; `looked_up` is its token's entry when the
    /// placement decision already read it.
    async fn authenticate(
        &self,
        unsealed: &Unsealed,
        request: &Request,
        path: &str,
        looked_up: Option<TokenEntry>,
    ) -> ApiResult<Caller> {
        // A login is how a caller gets a token: it needs none, and a token
        // sent along is not used (nor a use of it spent).
        if request.operation == Operation::Write && unsealed.auth_methods.is_login(path) {
            return Ok(Caller::anonymous());
        }
        if request.token.is_none()
            && let Some(peer) = local_peer(request)
        {
            return authenticate_local(unsealed, peer);
        }
        let token = request.token.as_ref().ok_or_else(ApiError::denied)?;
        let mut entry = match looked_up {
            Some(entry) => entry,
            None => unsealed
                .tokens
                .lookup(token.expose())?
                .ok_or_else(ApiError::denied)?,
        };
        if entry.num_uses > 0 {
            entry = Box::pin(unsealed.tokens.take_use(&entry.hash))
                .await?
                .ok_or_else(ApiError::denied)?;
        }
        let acl = unsealed
            .policies
            .acl(&entry.policies)
            .map_err(|error| ApiError::internal(&error))?;
        Ok(Caller {
            token: entry,
            acl,
            local: None,
            anonymous: false,
        })
    }

    async fn dispatch(
        &self,
        unsealed: &Unsealed,
        request: &Request,
        path: &str,
        endpoint: Option<sys::Endpoint<'_>>,
        caller: &Caller,
        route: &mut Option<String>,
    ) -> ApiResult<Routed> {
        if let Some(endpoint) = endpoint {
            return Box::pin(sys::handle(self, unsealed, request, path, endpoint, caller)).await;
        }
        if path == "auth/token" || path.starts_with("auth/token/") {
            *route = Some("auth/token/".into());
            return Box::pin(token_api::handle(self, unsealed, request, path, caller)).await;
        }
        if let Some((mount, method, rest)) = unsealed.auth_methods.resolve(path) {
            *route = Some(format!("auth/{mount}"));
            return Box::pin(login::route(
                self, unsealed, request, path, method, rest, caller,
            ))
            .await;
        }
        let Some((mount, rest)) = unsealed.mounts.resolve(path) else {
            return Err(ApiError::no_route(path));
        };
        *route = Some(mount.path.clone());
        let engine = unsealed.engine_of(&mount)?;
        let mount = unsealed.mount(&mount);
        let exists = request.operation != Operation::Write || engine.exists(&mount, &rest)?;
        caller.authorize(
            path,
            capability_for(request.operation, exists),
            &request.data,
            false,
        )?;
        let requester = engine::Requester {
            display_name: &caller.token.display_name,
            token_hash: caller.local.is_none().then_some(caller.token.hash.as_str()),
        };
        let reply = engine
            .handle(&mount, request.operation, &rest, &request.data, &requester)
            .await?;
        Ok(Routed {
            reply,
            mount_type: engine.type_name(),
            flatten: false,
        })
    }

    /// Where `request` runs: on the leader for writes and for reads with a
    /// limited-use token (its use count is a write); here otherwise, and always
    /// for the endpoints about this node itself. A standby looks the token up to
    /// decide, and hands what it found on, so a read looks it up once.
    fn placement(&self, request: &Request) -> Placement {
        if request.forwarded
            || sys::Endpoint::parse(&request.path).is_some_and(sys::Endpoint::on_this_node)
            || !self.replica.is_running()
            || self.replica.is_leader()
        {
            return Placement::Here(None);
        }
        match request.operation {
            Operation::Write | Operation::Delete | Operation::Patch => Placement::Leader,
            // Reading dynamic credentials creates a user and a lease: the
            // leader does it (it owns leases), as in Vault.
            Operation::Read if self.issues_leases(&request.path) => Placement::Leader,
            Operation::Read | Operation::List => {
                let entry = (|| {
                    let token = request.token.as_ref()?;
                    self.unsealed().ok()?.tokens.lookup(token.expose()).ok()?
                })();
                match entry {
                    Some(entry) if entry.num_uses > 0 => Placement::Leader,
                    entry => Placement::Here(entry.map(Box::new)),
                }
            }
        }
    }

    /// Adds to a FUSE caller what the `auth/local` roles bind beyond uid and
    /// gid (supplementary groups, systemd unit) and, when an audit device will
    /// record it, its executable: read from `/proc` on the node the caller is
    /// on, before the request may be forwarded, and only when needed (each is
    /// a few system calls on every FUSE open). The caller is blocked in its
    /// system call meanwhile, so its pid is still its own. Socket callers come
    /// described already, read once when they connected; a pid of 0 is the
    /// filesystem's own work on behalf of a caller it described itself.
    fn describe_peer(&self, transport: Transport, peer: &mut LocalPeer) {
        if transport != Transport::Fuse || peer.pid == 0 {
            return;
        }
        let Ok(unsealed) = self.unsealed() else {
            return;
        };
        if peer.executable.is_none() && !unsealed.audit.devices().is_empty() {
            peer.executable = LocalPeer::read_executable(peer.pid);
        }
        let (groups, units) = unsealed.local_roles.needs();
        if groups && peer.groups.is_empty() {
            peer.groups = coffer_protocols::peer::supplementary_groups(peer.pid);
        }
        if units && peer.unit.is_none() {
            peer.unit = coffer_protocols::peer::systemd_unit(peer.pid);
        }
    }

    /// Whether a read of `path` goes to a mount whose reads issue leases.
    fn issues_leases(&self, path: &str) -> bool {
        self.unsealed().is_ok_and(|unsealed| {
            unsealed.mounts.resolve(path).is_some_and(|(mount, rest)| {
                unsealed
                    .engines
                    .get(&mount.kind)
                    .is_some_and(|engine| engine.issues_leases(&rest))
            })
        })
    }

    /// Runs `request` on the leader (or tells the client where the leader is).
    async fn forward(&self, request: &Request) -> Response {
        let route = Some("forwarded".to_owned());
        if request.no_forward {
            return match self.replica.leader() {
                Some((_, leader)) if !leader.api_addr.is_empty() => Response::new(
                    route,
                    ResponseBody::Redirect {
                        location: format!(
                            "{}/v1/{}",
                            leader.api_addr.trim_end_matches('/'),
                            request.path
                        ),
                    },
                ),
                _ => Response::error(ErrorCode::Unavailable, "there is no leader to redirect to"),
            };
        }
        let mut forwarded = request.clone();
        forwarded.forwarded = true;
        match self.replica.forward_request(&forwarded).await {
            Ok(Some(response)) => response,
            // This node leads now: run the request here.
            Ok(None) => self.run(&forwarded, None).await,
            Err(error) => Response::error(ErrorCode::Unavailable, error.to_string()),
        }
    }

    /// Runs `request` on this node; `token` is its token's entry when already
    /// looked up.
    async fn run(&self, request: &Request, token: Option<TokenEntry>) -> Response {
        let mut route = None;
        let body = match self.process(request, token, &mut route).await {
            Ok(routed) => Core::envelope(request, routed),
            Err(error) => {
                let data = error.data.map(|mut envelope| {
                    envelope.request_id = request.id.clone();
                    envelope
                });
                ResponseBody::Error {
                    code: error.code,
                    messages: error.messages,
                    data,
                }
            }
        };
        Response::new(route, body)
    }

    fn envelope(request: &Request, routed: Routed) -> ResponseBody {
        let logical = |mut response: LogicalResponse| {
            response.request_id = request.id.clone();
            response.mount_type = routed.mount_type.to_owned();
            response.flatten_data = routed.flatten;
            ResponseBody::Logical(Box::new(response))
        };
        match routed.reply {
            Reply::Data(data) => logical(LogicalResponse::with_data(data)),
            Reply::Envelope(envelope) => logical(*envelope),
            Reply::List(keys) if keys.is_empty() => ResponseBody::Error {
                code: ErrorCode::NotFound,
                messages: Vec::new(),
                data: None,
            },
            Reply::List(keys) => {
                let mut data = Map::new();
                data.insert("keys".into(), Value::from(keys));
                logical(LogicalResponse::with_data(data))
            }
            Reply::NoContent => ResponseBody::NoContent,
            Reply::Raw(status, body) => ResponseBody::Raw { status, body },
            Reply::Text(content_type, body) => ResponseBody::Text {
                content_type: content_type.to_owned(),
                body,
            },
            Reply::Binary(content_type, body) => ResponseBody::Binary {
                content_type: content_type.to_owned(),
                body,
            },
        }
    }
}

impl Handler for Core {
    /// Runs inside a span named by the request id, so every line logged for
    /// the request (an internal error's too) names it.
    async fn handle(&self, mut request: Request) -> Response {
        let span = tracing::info_span!("request", id = %request.id);
        async move {
            if !request.forwarded
                && let Some(peer) = request.peer.as_mut()
            {
                self.describe_peer(request.transport, peer);
            }
            match self.placement(&request) {
                Placement::Leader => Box::pin(self.forward(&request)).await,
                Placement::Here(token) => self.run(&request, token.map(|entry| *entry)).await,
            }
        }
        .instrument(span)
        .await
    }

    fn observe(&self, observation: Observation<'_>) {
        self.metrics.observe(&observation);
    }

    fn knows_token(&self, token: &ClientToken) -> bool {
        self.unsealed()
            .is_ok_and(|unsealed| matches!(unsealed.tokens.lookup(token.expose()), Ok(Some(_))))
    }

    /// A large body (a snapshot upload) is read only for a caller who may
    /// write the path with `sudo`: checked here without spending a token use
    /// (the request itself spends it once its body is in).
    async fn admit(&self, request: &Request) -> Result<(), Response> {
        let refuse = |error: ApiError| Err(Response::error(error.code, error.messages.join("; ")));
        let unsealed = match self.unsealed() {
            Ok(unsealed) => unsealed,
            Err(error) => return refuse(error),
        };
        let Some(token) = request.token.as_ref() else {
            return refuse(ApiError::denied());
        };
        let entry = match unsealed.tokens.lookup(token.expose()) {
            Ok(Some(entry)) => entry,
            Ok(None) => return refuse(ApiError::denied()),
            Err(error) => return refuse(error.into()),
        };
        let acl = match unsealed.policies.acl(&entry.policies) {
            Ok(acl) => acl,
            Err(error) => return refuse(ApiError::internal(&error)),
        };
        let decision = acl.check(&request.path, Capability::Update, &Map::new());
        if decision.allowed && decision.sudo {
            Ok(())
        } else {
            refuse(ApiError::denied())
        }
    }

    async fn watch(&self, mut request: Request) -> Result<WatchStream, Response> {
        if let Some(peer) = request.peer.as_mut() {
            self.describe_peer(request.transport, peer);
        }
        self.start_watch(&request).await.map_err(watch::ending)
    }
}

/// The capability an operation needs. A write is `update` when its target exists
/// and `create` otherwise (routes without an existence check pass `true`).
pub(crate) fn capability_for(operation: Operation, exists: bool) -> Capability {
    match operation {
        Operation::Read => Capability::Read,
        Operation::List => Capability::List,
        Operation::Write if exists => Capability::Update,
        Operation::Write => Capability::Create,
        Operation::Patch => Capability::Patch,
        Operation::Delete => Capability::Delete,
    }
}

impl ForwardHandler for Core {
    fn forward(&self, request: Request) -> crate::raft::transport::BoxFuture<'_, Response> {
        Box::pin(Handler::handle(self, request))
    }
}

/// The caller as audit entries show it: the token as presented, or none for a
/// local caller (its peer credentials are in the request section).
fn audit_caller<'a>(request: &'a Request, caller: &'a Caller) -> Option<audit::entry::Caller<'a>> {
    if caller.anonymous {
        return None;
    }
    if caller.local.is_some() {
        return Some(audit::entry::Caller {
            token: &caller.token,
            client_token: "",
        });
    }
    request.token.as_ref().map(|token| audit::entry::Caller {
        token: &caller.token,
        client_token: token.expose(),
    })
}

/// The caller on this host, for the doors that can name one.
fn local_peer(request: &Request) -> Option<&LocalPeer> {
    request.peer.as_ref().filter(|_| {
        matches!(
            request.transport,
            Transport::Fuse | Transport::Unix | Transport::Grpc
        )
    })
}

/// A local caller authenticated by the `auth/local` roles it matches; 403
/// when it matches none.
fn authenticate_local(unsealed: &Unsealed, peer: &LocalPeer) -> ApiResult<Caller> {
    let identity = unsealed
        .local_roles
        .identify(peer, None)?
        .ok_or_else(ApiError::denied)?;
    let acl = unsealed
        .policies
        .acl(&identity.policies)
        .map_err(|error| ApiError::internal(&error))?;
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("role".to_owned(), identity.roles.join(","));
    meta.insert("uid".to_owned(), peer.uid.to_string());
    let token = TokenEntry {
        hash: String::new(),
        accessor: String::new(),
        parent: None,
        policies: identity.policies.clone(),
        meta,
        display_name: format!("local-{}", identity.roles.join("-")),
        num_uses: 0,
        exhausted: false,
        creation_time: crate::tokens::now_seconds(),
        creation_ttl: 0,
        expire_time: None,
        explicit_max_ttl: 0,
        period: 0,
        renewable: false,
        path: crate::auth::local::LOGIN_PATH.to_owned(),
    };
    Ok(Caller {
        token,
        acl,
        local: Some(identity),
        anonymous: false,
    })
}

/// An audit entry for `request`.
fn entry<'a>(
    kind: &'static str,
    request: &'a Request,
    path: &'a str,
    mount: &'a Option<(String, String)>,
    caller: Option<audit::entry::Caller<'a>>,
    outcome: Option<audit::entry::Outcome<'a>>,
    error: Option<&'a str>,
) -> audit::Entry<'a> {
    audit::Entry {
        kind,
        time: crate::clock::now(),
        request,
        path,
        mount: mount
            .as_ref()
            .map(|(point, kind)| (point.as_str(), kind.as_str())),
        caller,
        outcome,
        error,
    }
}

/// The mount point and type of `path`, for audit entries.
fn mount_of(unsealed: &Unsealed, path: &str) -> Option<(String, String)> {
    if path == "sys" || path.starts_with("sys/") {
        return Some(("sys/".into(), "system".into()));
    }
    if path == "auth/token" || path.starts_with("auth/token/") {
        return Some(("auth/token/".into(), "token".into()));
    }
    if let Some((mount, method, _)) = unsealed.auth_methods.resolve(path) {
        return Some((format!("auth/{mount}"), method.type_name().into()));
    }
    unsealed.mounts.point_and_type(path)
}

/// What a route answered, as the audit sees it.
fn audit_outcome(result: &ApiResult<Routed>) -> audit::entry::Outcome<'_> {
    use audit::entry::{Data, Outcome};
    match result {
        Err(error) => Outcome {
            status: error.code.http_status(),
            data: Data::None,
            auth: None,
        },
        Ok(routed) => match &routed.reply {
            Reply::Data(map) => Outcome {
                status: 200,
                data: Data::Map(map),
                auth: None,
            },
            Reply::Envelope(envelope) => Outcome {
                status: 200,
                data: envelope.data.as_ref().map_or(Data::None, Data::Map),
                auth: envelope.auth.as_ref(),
            },
            Reply::List(keys) => Outcome {
                status: if keys.is_empty() { 404 } else { 200 },
                data: Data::Keys(keys),
                auth: None,
            },
            Reply::NoContent => Outcome {
                status: 204,
                data: Data::None,
                auth: None,
            },
            Reply::Raw(status, body) => Outcome {
                status: *status,
                data: Data::Value(body),
                auth: None,
            },
            Reply::Text(..) | Reply::Binary(..) => Outcome {
                status: 200,
                data: Data::None,
                auth: None,
            },
        },
    }
}

/// Refuses paths that could escape their mount or confuse storage keys.
fn validate_path(path: &str) -> ApiResult<&str> {
    if path.len() > MAX_PATH_LEN {
        return Err(ApiError::invalid(format!(
            "path is longer than {MAX_PATH_LEN} bytes"
        )));
    }
    if path.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "path contains a NUL or another control character",
        ));
    }
    if path.starts_with('/') || path.contains("//") {
        return Err(ApiError::invalid(
            "path must not start with '/' or contain empty segments",
        ));
    }
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(ApiError::invalid(
            "path must not contain '.' or '..' segments",
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_escape_are_refused() {
        for bad in [
            "secret/../sys/seal",
            "..",
            "secret/./x",
            "secret/x\0y",
            "/secret/x",
            "secret//x",
            "secret/\nx",
        ] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
        for good in ["secret/data/a.b", "secret/data/..a", "sys/health", ""] {
            assert!(validate_path(good).is_ok(), "{good:?}");
        }
        assert!(validate_path(&"a".repeat(MAX_PATH_LEN + 1)).is_err());
    }

    /// The size of the future an async `fn(&Core, Request)` returns.
    fn future_size<'a, F: Future>(_: fn(&'a Core, Request) -> F) -> usize {
        size_of::<F>()
    }

    #[test]
    fn a_request_future_stays_small() {
        // Every level that awaits a future moves it: with the rare paths
        // (sys, tokens, databases, forwarding) inline it was 16.5 KB, and the
        // copies cost about 5% of a KV read's CPU. Boxed, it is about 3 KB.
        let size = future_size(<Core as Handler>::handle);
        assert!(size <= 4096, "a request's future is {size} bytes");
    }
}
