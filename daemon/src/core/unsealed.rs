//! What an unsealed node holds (`Unsealed`: the barrier, stores, engines,
//! auth methods, audit) and how it keeps its caches true to replicated writes
//! (the apply observer).

use std::sync::Arc;

use coffer_protocols::ErrorCode;

use super::ClusterInfo;
use crate::api::error::{ApiError, ApiResult};
use crate::audit::Broker;
use crate::barrier::Barrier;
use crate::engine::SecretEngine;
use crate::mounts::{MountEntry, MountTable};
use crate::policy_store::PolicyStore;
use crate::raft::store::{Applied, ApplyObserver};
use crate::tokens::TokenStore;
use crate::{audit, engine};

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
    pub(super) reopen_requests: tokio::sync::mpsc::UnboundedSender<()>,
    /// Where applied writes are announced to watchers (the core's hub).
    pub(super) changes: crate::changes::Hub,
    /// The core's quotas, which this node's copy of `sys/quotas/` fills.
    pub(super) quotas: Arc<crate::quotas::Quotas>,
}

impl Unsealed {
    /// Re-reads what this node caches from the store: the keyring, the mount
    /// table, parsed policies.
    pub(super) fn refresh(&self) {
        if let Err(error) = self.barrier.reload_keyring() {
            tracing::error!(%error, "cannot reload the keyring");
        }
        if let Err(error) = self.mounts.reload() {
            tracing::error!(%error, "cannot reload the mount table");
        }
        if let Err(error) = self.auth_methods.table().reload() {
            tracing::error!(%error, "cannot reload the auth table");
        }
        self.policies.invalidate();
        self.local_roles.invalidate();
        self.forget_engine_caches();
        self.reload_audit();
        self.reload_quotas();
    }

    /// Loads the quotas as stored now.
    pub(super) fn reload_quotas(&self) {
        use super::sys::quotas::{read_config, rules};
        use crate::quotas::Kind;
        let loaded = read_config(self).and_then(|config| {
            let mut all = rules(self, Kind::RateLimit)?;
            all.extend(rules(self, Kind::LeaseCount)?);
            Ok((config, all))
        });
        match loaded {
            Ok((config, rules)) => self.quotas.replace(config, rules),
            Err(error) => {
                tracing::error!(error = %error.messages.join("; "), "cannot read the quotas")
            }
        }
    }

    pub(super) fn forget_engine_caches(&self) {
        for engine in self.engines.iter() {
            engine.forget_all();
        }
    }

    /// Whether `path` is a read its engine serves without a token.
    pub(crate) fn is_public_read(&self, path: &str) -> bool {
        self.mounts.resolve(path).is_some_and(|(entry, rest)| {
            self.engines
                .get(&entry.kind)
                .is_some_and(|engine| engine.public(&rest))
        })
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
    pub(super) fn reload_audit(&self) {
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
/// under `core/`, policies, quotas, `auth/local` roles, tokens, leases, and the
/// engines' data (KV metadata).
const WATCHED: [&str; 8] = [
    "core/",
    "sys/policy/",
    crate::quotas::PREFIX,
    "sys/token/id/",
    "sys/expire/id/",
    crate::local_auth::PREFIX,
    crate::mounts::SECRETS.data_prefix,
    crate::mounts::AUTH.data_prefix,
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
            self.auth_methods.forget_all();
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
        if touched(&|key| key == crate::mounts::SECRETS.table_path || key == "core/")
            && let Err(error) = self.mounts.reload()
        {
            tracing::error!(%error, "cannot reload the mount table");
        }
        if touched(&|key| key == crate::mounts::AUTH.table_path || key == "core/")
            && let Err(error) = self.auth_methods.table().reload()
        {
            tracing::error!(%error, "cannot reload the auth table");
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
        if touched(&|key| key.starts_with(crate::quotas::PREFIX)) {
            self.reload_quotas();
        }
        for key in change.touched {
            self.leases.observe(key);
            self.tokens.forget(key);
            self.auth_methods.observe(key);
            for engine in self.engines.iter() {
                engine.observe(key);
            }
        }
        for (index, applied) in change.changes {
            self.changes.publish(*index, std::slice::from_ref(applied));
        }
    }
}
