//! `auth/<mount>/`: a mounted auth method's paths. A login needs no token; the
//! method says who the caller is and the core makes the token, so every
//! method's tokens get the same TTL limits, renewal and audit. Other paths
//! (roles, config) are authorized with the caller's ACL like any request.

use coffer_protocols::{Operation, Request};

use super::token_api::{auth_block, with_auth};
use super::{Caller, Core, Routed, Unsealed, capability_for, local_peer};
use crate::api::error::{ApiError, ApiResult};
use crate::api::reply::Reply;
use crate::auth::{AuthMethod, Login, LoginRequest};
use crate::policy::ROOT_POLICY;
use crate::tokens::NewToken;

pub(super) async fn route(
    core: &Core,
    unsealed: &Unsealed,
    request: &Request,
    path: &str,
    method: &dyn AuthMethod,
    rest: &str,
    caller: &Caller,
) -> ApiResult<Routed> {
    let operation = request.operation;
    let reply = if method.is_login(rest) {
        if operation != Operation::Write {
            return Err(ApiError::unsupported(path, operation.as_str()));
        }
        let login = method
            .login(&LoginRequest {
                path: rest,
                data: &request.data,
                peer: local_peer(request),
                remote_address: request.remote_address.as_deref(),
            })
            .await?;
        issue(core, unsealed, method, path, login).await?
    } else {
        let exists = operation != Operation::Write || method.exists(rest)?;
        caller.authorize(
            path,
            capability_for(operation, exists),
            &request.data,
            false,
        )?;
        method.handle(operation, rest, &request.data).await?
    };
    Ok(Routed {
        reply,
        mount_type: method.type_name(),
        flatten: false,
    })
}

/// The token for a login, within the system's TTLs.
async fn issue(
    core: &Core,
    unsealed: &Unsealed,
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
    let settings = core.settings();
    let max_ttl = match login.max_ttl {
        0 => settings.max_lease_ttl,
        ttl => ttl.min(settings.max_lease_ttl),
    };
    let ttl = match login.ttl {
        0 => settings.default_lease_ttl,
        ttl => ttl,
    }
    .min(max_ttl);
    let new = NewToken {
        policies: login.policies,
        meta: login.metadata,
        display_name: format!("{}-{}", method.type_name(), login.display_name),
        num_uses: login.num_uses,
        ttl,
        explicit_max_ttl: login.max_ttl.min(max_ttl),
        period: 0,
        renewable: login.renewable,
        parent: None,
        path: path.to_owned(),
    };
    let (token, entry) = unsealed.tokens.create(new).await?;
    Ok(with_auth(
        auth_block(&entry, &token, entry.creation_ttl),
        None,
    ))
}
