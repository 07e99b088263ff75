//! The core: the seal state and the one request pipeline every door calls.
//!
//! [`Core::handle`] (the doors' `Handler`) runs, for every request: the
//! rate-limit quota (`limits.rs`) -> validate the path -> answer the unauthenticated `sys/` endpoints (health, seal
//! status, init, unseal, leader) -> refuse with 503 while sealed -> authenticate
//! the token -> authorize with the token's ACL (inside each route, which knows
//! whether a write is a `create` or an `update`) -> route to `sys/`, `auth/token/`
//! or a mount -> wrap the reply in Vault's envelope. The audit issue inserts its
//! request and response records around the authorize-and-route step.

mod audited;
mod autounseal;
mod cubbyhole;
mod envelope;
mod fs;
mod leasing;
mod lifecycle;
mod limits;
mod login;
#[cfg(test)]
mod pipeline_tests;
mod placement;
mod sys;

/// Vault's floor for `sys/rotate/config`'s `max_operations`.
pub const MIN_ROTATION_OPERATIONS: u64 = sys::rotation::MIN_OPERATIONS;
mod token_api;
mod unsealed;
mod watch;
mod wrapping;

use std::sync::{Arc, Mutex, RwLock};

use coffer_protocols::{
    ClientToken, ErrorCode, Handler, LocalPeer, Observation, Operation, Request, Response,
    ResponseBody, Transport, WatchStream,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::api::error::{ApiError, ApiResult};
use crate::api::fields;
use crate::api::reply::Reply;
use crate::audit::{self};
use crate::engine;
use crate::metrics::Metrics;
use crate::policy::acl::Capability;
use crate::policy::{Acl, Decision};
use crate::raft::cluster::ForwardHandler;
use crate::raft::join::Challenges;
use crate::replica::Replica;
use crate::seal::{self};
use crate::storage::Backend;
use crate::tokens::TokenEntry;
use audited::{audit_caller, audit_outcome, entry, mount_of};
use lifecycle::State;
use placement::Placement;
pub(crate) use unsealed::Unsealed;

/// The longest logical path accepted.
const MAX_PATH_LEN: usize = 4096;
const CLUSTER_PATH: &str = "core/cluster";
/// How long Raft keeps running after a restored snapshot sealed the node.
const RESTORE_SEAL_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// How often the leader looks for due leases.
const LEASE_ROUND: std::time::Duration = std::time::Duration::from_millis(250);
/// How long a joining node waits for its replica to catch up before unsealing.
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
    /// The auth method types served under `auth/` ([`crate::auth::BUILT_IN`]).
    pub auth_methods: Vec<crate::auth::Factory>,
    /// The configured auto seal (the `seal` block that is not disabled), if any.
    pub seal: Option<Arc<dyn crate::autoseal::Wrapper>>,
    /// The seal being migrated away from (`disabled = "true"`), if any.
    pub disabled_seal: Option<Arc<dyn crate::autoseal::Wrapper>>,
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
            seal: None,
            disabled_seal: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub name: String,
    pub id: String,
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
    /// A caller on this host trusted to act for the unseal-key holders
    /// without a token (`sys/generate-root`, `sys/rekey`; see `sys/quorum.rs`).
    pub key_holder: bool,
}

impl Caller {
    /// The caller of a login: no token, no policies.
    fn anonymous() -> Caller {
        Caller {
            token: TokenEntry::unstored(
                Vec::new(),
                Default::default(),
                String::new(),
                String::new(),
            ),
            acl: Arc::new(Acl::default()),
            local: None,
            anonymous: true,
            key_holder: false,
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
    /// Since when (Unix ms) this node has led, as the lease round last saw;
    /// 0 while it does not (`sys/leader`'s `active_time`).
    active_since: std::sync::atomic::AtomicU64,
    /// Root generation and rekey attempts on this node.
    attempts: Mutex<sys::quorum::Attempts>,
    /// The quotas (loaded while unsealed) and their clients' state on this node.
    quotas: Arc<crate::quotas::Quotas>,
    /// A seal migration the operators' keys authorized on this node, written
    /// once this node leads (unless another node wrote one first).
    migration: Mutex<Option<seal::Migration>>,
}

impl Core {
    /// A core over `cluster`'s replica, sealed (or uninitialized).
    pub fn new(replica: Arc<dyn Replica>, mut settings: Settings) -> Result<Core, seal::Error> {
        let backend: Arc<dyn Backend> = replica.clone();
        let metrics = Metrics::new();
        let observed = |wrapper| {
            Arc::new(crate::autoseal::Observed::new(wrapper, metrics.seal()))
                as Arc<dyn crate::autoseal::Wrapper>
        };
        settings.seal = settings.seal.map(observed);
        settings.disabled_seal = settings.disabled_seal.map(observed);
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
            metrics,
            challenges: Challenges::default(),
            reopen_requests,
            reopen_requested: Mutex::new(Some(reopen_requested)),
            changes: crate::changes::Hub::default(),
            active_since: std::sync::atomic::AtomicU64::new(0),
            attempts: Mutex::new(Default::default()),
            quotas: Arc::new(crate::quotas::Quotas::default()),
            migration: Mutex::new(None),
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
        let wrap_ttl = wrapping::requested_ttl(request)?;
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
        let access =
            endpoint.map(|endpoint| endpoint.access(self.settings.unauthenticated_metrics_access));
        let caller = match self
            .authenticate(&unsealed, request, path, access, token)
            .await
        {
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
        // A wrap TTL outside the caller's policy bounds stops the request
        // before it runs.
        let out_of_bounds =
            wrap_ttl.and_then(|ttl| wrapping::within_bounds(&caller.acl, path, ttl).err());
        let result = match (out_of_bounds, request.operation) {
            (Some(error), _) => Err(error),
            (None, Operation::Write | Operation::Patch | Operation::Delete) => {
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
            (None, Operation::Read | Operation::List) => {
                self.dispatch(&unsealed, request, path, endpoint, &caller, route)
                    .await
            }
        };
        let result = match (result, wrap_ttl) {
            (Ok(routed), Some(ttl)) => {
                Box::pin(wrapping::wrap(&unsealed, request, path, routed, ttl)).await
            }
            (result, _) => result,
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

    /// The caller of `request`; `looked_up` is its token's entry when the
    /// placement decision already read it.
    /// `access` is what the `sys/` endpoint of `path` asks of its caller, if
    /// `path` is one.
    async fn authenticate(
        &self,
        unsealed: &Unsealed,
        request: &Request,
        path: &str,
        access: Option<sys::Access>,
        looked_up: Option<TokenEntry>,
    ) -> ApiResult<Caller> {
        // A login is how a caller gets a token: it needs none, and a token
        // sent along is not used (nor a use of it spent).
        if request.operation == Operation::Write && unsealed.auth_methods.is_login(path) {
            return Ok(Caller::anonymous());
        }
        // The wrapping endpoints take a wrapping token as their credential;
        // authenticating it here would spend its one use.
        if access == Some(sys::Access::Possession) {
            return Ok(Caller::anonymous());
        }
        // A CA's certificate and CRL are public, as in Vault.
        if request.token.is_none()
            && request.operation == Operation::Read
            && unsealed.is_public_read(path)
        {
            return Ok(Caller::anonymous());
        }
        if request.token.is_none()
            && let Some(peer) = local_peer(request)
        {
            if access == Some(sys::Access::KeyHolders) && sys::quorum::trusted_peer(peer) {
                let mut caller = Caller::anonymous();
                caller.anonymous = false;
                caller.key_holder = true;
                caller.token.display_name = format!("local-uid-{}", peer.uid);
                return Ok(caller);
            }
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
        // A CIDR-bound token, from anywhere else (or with no address: the
        // Unix socket, FUSE), is refused before a use of it is spent.
        if !entry.allows_address(request.remote_address.as_deref()) {
            return Err(ApiError::denied());
        }
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
            key_holder: false,
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
        if path == "cubbyhole" || path.starts_with("cubbyhole/") {
            *route = Some("cubbyhole/".into());
            return Box::pin(cubbyhole::route(unsealed, request, path, caller)).await;
        }
        if path == "auth/token" || path.starts_with("auth/token/") {
            *route = Some("auth/token/".into());
            return Box::pin(token_api::handle(self, unsealed, request, path, caller)).await;
        }
        if let Some((entry, method, rest)) = unsealed.auth_methods.resolve(path) {
            *route = Some(format!("auth/{}", entry.path));
            let routed = Box::pin(login::route(
                unsealed, request, path, &entry, method, rest, caller,
            ))
            .await;
            if let Err(error) = &routed
                && request.operation == Operation::Write
                && method.is_login(rest)
                && matches!(
                    error.code,
                    ErrorCode::InvalidRequest | ErrorCode::PermissionDenied
                )
            {
                let source = match (&request.peer, request.remote_address.as_deref()) {
                    (Some(_), _) | (None, None) => "local".to_owned(),
                    (None, Some(address)) => crate::auth::token_fields::ip_of(address)
                        .map_or_else(|| address.to_owned(), |ip| ip.to_string()),
                };
                self.metrics
                    .login_failed(method.type_name(), &entry.path, &source);
            }
            return routed;
        }
        let Some((mount, rest)) = unsealed.mounts.resolve(path) else {
            return Err(ApiError::no_route(path));
        };
        *route = Some(mount.path.clone());
        let engine = unsealed.engine_of(&mount)?;
        let mount = unsealed.mount(&mount);
        let exists = request.operation != Operation::Write || engine.exists(&mount, &rest)?;
        if !(request.operation == Operation::Read && engine.public(&rest)) {
            caller.authorize(
                path,
                capability_for(request.operation, exists),
                &request.data,
                false,
            )?;
        }
        // Held until the engine is done, so the lease it stores is counted.
        let _lease_reservation =
            if request.operation == Operation::Read && engine.issues_leases(&rest) {
                self.reserve_lease(unsealed, path)?
            } else {
                None
            };
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
            // The rate limit comes before anything else, the token's lookup
            // included: a client over it costs one map lookup.
            let verdict = self.rate_limit(&request);
            if let Some(verdict) = &verdict
                && !verdict.decision.allowed
            {
                return Box::pin(self.refuse_over_rate(&request, verdict)).await;
            }
            let mut response = match self.placement(&request) {
                Placement::Leader => Box::pin(self.forward(&request)).await,
                Placement::Here(token) => self.run(&request, token.map(|entry| *entry)).await,
            };
            if let Some(verdict) = verdict
                && verdict.headers
            {
                response
                    .headers
                    .extend(limits::rate_headers(&verdict.decision));
            }
            response
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
            Ok(Some(entry)) if entry.allows_address(request.remote_address.as_deref()) => entry,
            Ok(_) => return refuse(ApiError::denied()),
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
    let token = TokenEntry::unstored(
        identity.policies.clone(),
        meta,
        format!("local-{}", identity.roles.join("-")),
        crate::auth::local::LOGIN_PATH.to_owned(),
    );
    Ok(Caller {
        token,
        acl,
        local: Some(identity),
        anonymous: false,
        key_holder: false,
    })
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
