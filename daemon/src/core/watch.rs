//! Watches: a stream of the writes this node applies under a path prefix
//! (from the replicated log, so writes made through any node arrive), each
//! delivered only if the caller may read its path, and warnings about the
//! caller's leases nearing expiry. A watch re-checks its caller every second:
//! a revoked token or a deleted role ends it, a changed policy applies at once,
//! and sealing ends it.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use coffer_protocols::{ErrorCode, Request, Response, ResponseBody, WatchEvent, WatchStream};
use serde_json::Map;
use tokio::sync::{broadcast, mpsc};

use super::{ApiError, ApiResult, Core, Unsealed, audit_caller, entry, fields, mount_of};
use crate::changes::Applied;
use crate::policy::Acl;
use crate::policy::acl::Capability;

/// Events a client has not read yet; past this, changes are dropped and it is
/// told how many it missed.
const BUFFER: usize = 256;
/// How often a watch re-checks its caller and the caller's leases.
const RECHECK: Duration = Duration::from_secs(1);
/// Lease warnings come this long before expiry unless the caller asks otherwise.
const DEFAULT_LEASE_WARNING: u64 = 30;

/// Who is watching, as re-checked every second.
enum Watcher {
    Token(coffer_protocols::ClientToken),
    Local(coffer_protocols::LocalPeer),
}

struct Watch {
    unsealed: Weak<Unsealed>,
    watcher: Watcher,
    prefix: String,
    acl: Arc<Acl>,
    /// The token's hash, whose leases get warnings (none for a local caller).
    token_hash: Option<String>,
    lease_warning: u64,
    /// Leases already warned about, with the expiry they were warned for.
    warned: HashMap<String, u64>,
    missed: u64,
    sender: mpsc::Sender<Result<WatchEvent, Response>>,
}

impl Core {
    pub(crate) async fn start_watch(&self, request: &Request) -> ApiResult<WatchStream> {
        let prefix = super::validate_path(&request.path)?.to_owned();
        let lease_warning = fields::Fields::new(&request.data)
            .u64("lease_warning_seconds")?
            .filter(|seconds| *seconds > 0)
            .unwrap_or(DEFAULT_LEASE_WARNING);
        let unsealed = self.unsealed()?;
        let caller = self
            .authenticate(&unsealed, request, &prefix, None, None)
            .await?;
        let empty = Map::new();
        let allowed = [Capability::List, Capability::Read]
            .into_iter()
            .any(|capability| caller.acl.check(&prefix, capability, &empty).allowed);
        let scope = unsealed
            .audit
            .scope(audit_caller(request, &caller).as_ref());
        if let Some(scope) = &scope {
            let mount = mount_of(&unsealed, &prefix);
            let refused = (!allowed).then_some("permission denied");
            let audited = entry(
                "request",
                request,
                &prefix,
                &mount,
                audit_caller(request, &caller),
                None,
                refused,
            );
            if !self.audit(scope, &audited).await {
                return Err(ApiError::new(
                    ErrorCode::Unavailable,
                    "no audit device could record this request, so it was not run",
                ));
            }
        }
        if !allowed {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!("permission denied: watching {prefix:?} needs list or read on it"),
            ));
        }
        let watcher = match (&caller.local, &request.token, &request.peer) {
            (Some(_), _, Some(peer)) => Watcher::Local(peer.clone()),
            (None, Some(token), _) => Watcher::Token(token.clone()),
            _ => return Err(ApiError::denied()),
        };
        let (sender, receiver) = mpsc::channel(BUFFER);
        let watch = Watch {
            unsealed: Arc::downgrade(&unsealed),
            watcher,
            prefix,
            acl: caller.acl.clone(),
            token_hash: (!caller.token.hash.is_empty()).then(|| caller.token.hash.clone()),
            lease_warning,
            warned: HashMap::new(),
            missed: 0,
            sender,
        };
        tokio::spawn(watch.run(self.changes.subscribe()));
        Ok(receiver)
    }
}

/// The response that refuses or ends a watch with `error`.
pub(super) fn ending(error: ApiError) -> Response {
    Response::new(
        None,
        ResponseBody::Error {
            code: error.code,
            messages: error.messages,
            data: None,
        },
    )
}

impl Watch {
    async fn run(mut self, mut changes: broadcast::Receiver<Arc<Applied>>) {
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.sender.closed() => return,
                received = changes.recv() => match received {
                    Ok(applied) => {
                        if !self.deliver(&applied) {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => self.missed += missed,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = recheck.tick() => {
                    if let Err(error) = self.recheck() {
                        let _ = self.sender.send(Err(ending(error))).await;
                        return;
                    }
                }
            }
        }
    }

    /// Sends `applied` if it is under the prefix and readable; false when the
    /// client is gone.
    fn deliver(&mut self, applied: &Applied) -> bool {
        let change = &applied.change;
        if !change.path.starts_with(&self.prefix)
            || !self
                .acl
                .check(&change.path, Capability::Read, &Map::new())
                .allowed
        {
            return true;
        }
        self.send(WatchEvent::Change {
            path: change.path.clone(),
            operation: change.operation.clone(),
            version: change.version,
            time_ms: change.time_ms,
            index: applied.index,
        })
    }

    /// Queues `event` (after telling of any missed ones); false when the
    /// client is gone.
    fn send(&mut self, event: WatchEvent) -> bool {
        if self.missed > 0 {
            match self.sender.try_send(Ok(WatchEvent::Lagged {
                missed: self.missed,
            })) {
                Ok(()) => self.missed = 0,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.missed += 1;
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        match self.sender.try_send(Ok(event)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.missed += 1;
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Re-authenticates the caller, refreshes its ACL and warns of its leases.
    fn recheck(&mut self) -> ApiResult<()> {
        let unsealed = self.unsealed.upgrade().ok_or_else(ApiError::sealed)?;
        let policies = match &self.watcher {
            Watcher::Token(token) => {
                let entry = unsealed.tokens.lookup(token.expose())?.ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::PermissionDenied,
                        "the watch's token was revoked or expired",
                    )
                })?;
                entry.policies
            }
            Watcher::Local(peer) => {
                unsealed
                    .local_roles
                    .identify(peer, None)?
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::PermissionDenied,
                            "the watching caller no longer matches an auth/local role",
                        )
                    })?
                    .policies
            }
        };
        self.acl = unsealed
            .policies
            .acl(&policies)
            .map_err(|error| ApiError::internal(&error))?;
        if let Some(hash) = self.token_hash.clone() {
            self.warn_of_leases(&unsealed, &hash)?;
        }
        Ok(())
    }

    fn warn_of_leases(&mut self, unsealed: &Unsealed, hash: &str) -> ApiResult<()> {
        let now = crate::tokens::now_seconds();
        let ids = unsealed
            .leases
            .token_leases(hash)
            .map_err(|error| ApiError::internal(&error))?;
        self.warned.retain(|id, _| ids.contains(id));
        for id in ids {
            let Some(lease) = unsealed
                .leases
                .get(&id)
                .map_err(|error| ApiError::internal(&error))?
            else {
                continue;
            };
            let left = lease.expire_time.saturating_sub(now);
            if left > self.lease_warning || self.warned.get(&id) == Some(&lease.expire_time) {
                continue;
            }
            self.warned.insert(id.clone(), lease.expire_time);
            let renewable = lease.renewable && lease.expire_time < lease.max_expire_time;
            if !self.send(WatchEvent::LeaseExpiring {
                lease_id: id,
                expire_time: lease.expire_time,
                ttl: left,
                renewable,
            }) {
                break;
            }
        }
        Ok(())
    }
}
