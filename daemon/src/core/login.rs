//! `auth/<mount>/`: a mounted auth method's paths. A login needs no token; the
//! method says who the caller is and the core makes the token, so every
//! method's tokens get the same TTL limits, renewal and audit. Other paths
//! (roles, config) are authorized with the caller's ACL like any request.

use coffer_protocols::{Operation, Request};

use super::token_api::{auth_block, with_auth};
use super::{Caller, Routed, Unsealed, capability_for, local_peer};
use crate::api::error::{ApiError, ApiResult};
use crate::api::reply::Reply;
use crate::auth::{AuthMethod, Login, LoginRequest};
use crate::engine::Mount;
use crate::mounts::MountEntry;
use crate::policy::ROOT_POLICY;
use crate::tokens::NewToken;

pub(super) async fn route(
    unsealed: &Unsealed,
    request: &Request,
    path: &str,
    entry: &MountEntry,
    method: &dyn AuthMethod,
    rest: &str,
    caller: &Caller,
) -> ApiResult<Routed> {
    let operation = request.operation;
    let mount = unsealed.mount(entry);
    let reply = if method.is_login(rest) {
        if operation != Operation::Write {
            return Err(ApiError::unsupported(path, operation.as_str()));
        }
        let login_request = LoginRequest {
            mount: &mount,
            path: rest,
            data: &request.data,
            peer: local_peer(request),
            remote_address: request.remote_address.as_deref(),
        };
        let lockouts = &unsealed.auth_methods.lockouts;
        let lockout = entry.config.user_lockout.unwrap_or_default();
        let user = method.lockout_user(&login_request);
        let now = crate::clock::now_seconds();
        if let Some(user) = &user
            && lockouts.locked(&entry.accessor, user, &lockout, now)
        {
            // As Vault: a locked-out user gets 403, whatever it sends.
            return Err(ApiError::denied());
        }
        let login = match method.login(&login_request).await {
            Ok(login) => login,
            Err(error) => {
                if let Some(user) = &user
                    && error.code == coffer_protocols::ErrorCode::InvalidRequest
                {
                    lockouts.failed(&entry.accessor, user, &lockout, now);
                }
                return Err(error);
            }
        };
        if let Some(user) = &user {
            lockouts.succeeded(&entry.accessor, user);
        }
        issue(unsealed, &mount, method, path, login).await?
    } else {
        let exists = operation != Operation::Write || method.exists(&mount, rest)?;
        caller.authorize(
            path,
            capability_for(operation, exists),
            &request.data,
            false,
        )?;
        method
            .handle(&mount, operation, rest, &request.data)
            .await?
    };
    Ok(Routed {
        reply,
        mount_type: method.type_name(),
        flatten: false,
    })
}

/// The token for a login, within the mount's TTLs (the system's unless tuned).
async fn issue(
    unsealed: &Unsealed,
    mount: &Mount<'_>,
    method: &dyn AuthMethod,
    path: &str,
    login: Login,
) -> ApiResult<Reply> {
    // No method may hand out root: only `sys/init` and root tokens make one.
    if login.policies.iter().any(|policy| policy == ROOT_POLICY) {
        return Err(ApiError::internal(&format!(
            "the {} auth method granted the root policy at login; refused",
            method.type_name()
        )));
    }
    let max_ttl = match login.max_ttl {
        0 => mount.max_ttl,
        ttl => ttl.min(mount.max_ttl),
    };
    let mut ttl = match login.ttl {
        0 => mount.default_ttl,
        ttl => ttl,
    }
    .min(max_ttl);
    // A tuned mount's maximum bounds renewals too, like the login's own.
    let mut explicit_max_ttl = if login.max_ttl == 0 && mount.entry.config.max_lease_ttl == 0 {
        0
    } else {
        max_ttl
    };
    if login.period > 0 {
        // A periodic token lives by its period, renewed without a maximum
        // (but an explicit one).
        ttl = login.period;
        explicit_max_ttl = 0;
    }
    if login.explicit_max_ttl > 0 {
        ttl = ttl.min(login.explicit_max_ttl);
        explicit_max_ttl = match explicit_max_ttl {
            0 => login.explicit_max_ttl,
            current => current.min(login.explicit_max_ttl),
        };
    }
    let new = NewToken {
        policies: login.policies,
        meta: login.metadata,
        display_name: format!("{}-{}", method.type_name(), login.display_name),
        num_uses: login.num_uses,
        ttl,
        explicit_max_ttl,
        period: login.period,
        renewable: login.renewable,
        parent: None,
        path: path.to_owned(),
        bound_cidrs: login.bound_cidrs,
    };
    let (token, entry) = unsealed.tokens.create(new).await?;
    Ok(with_auth(
        auth_block(&entry, &token, entry.creation_ttl),
        None,
    ))
}
