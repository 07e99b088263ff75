//! Response wrapping, as Vault's: with `X-Vault-Wrap-TTL` a response is not
//! returned but stored in the cubbyhole of a new single-use token, which is
//! returned instead (`wrap_info`); `sys/wrapping/unwrap` gives the response
//! back once. The wrapping token has the one policy `response-wrapping`, which
//! grants nothing through the ACL: the wrapping endpoints take the token
//! itself as the credential. Lookup does not spend it; unwrap and rewrap do,
//! through the token's use count, so two racing unwraps cannot both succeed.

use coffer_protocols::{ErrorCode, LogicalResponse, Operation, Request, ResponseBody};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{Core, Routed, Unsealed};
use crate::api::error::{ApiError, ApiResult};
use crate::api::reply::Reply;
use crate::policy::WRAPPING_POLICY;
use crate::tokens::{NewToken, TokenEntry, cubbyhole_key, rfc3339};

/// Where a wrapping token's cubbyhole keeps the response.
const RESPONSE: &str = "response";

/// The TTL `X-Vault-Wrap-TTL` asks for (seconds or a Go duration); `None`
/// for no wrapping (absent or 0).
pub(super) fn requested_ttl(request: &Request) -> ApiResult<Option<u64>> {
    let Some(header) = request.wrap_ttl.as_deref() else {
        return Ok(None);
    };
    let ttl = crate::duration::parse_seconds(header.trim()).map_err(|_| {
        ApiError::invalid(format!(
            "error parsing X-Vault-Wrap-TTL header: time: invalid duration {:?}",
            header.chars().take(32).collect::<String>()
        ))
    })?;
    Ok((ttl > 0).then_some(ttl))
}

/// Refuses a wrapping TTL outside the bounds the caller's policies set for
/// `path` (`min_wrapping_ttl`, `max_wrapping_ttl`), in Vault's words.
pub(super) fn within_bounds(acl: &crate::policy::Acl, path: &str, ttl: u64) -> ApiResult<()> {
    let (min, max) = acl.wrapping_bounds(path);
    if min > 0 && ttl < min {
        return Err(ApiError::invalid("wrapping ttl too low"));
    }
    if max > 0 && ttl > max {
        return Err(ApiError::invalid("wrapping ttl too high"));
    }
    Ok(())
}

/// Wraps a route's answer when it carries something (data, a secret, an
/// auth block); errors, 204s and raw answers go back as they are.
pub(super) async fn wrap(
    unsealed: &Unsealed,
    request: &Request,
    path: &str,
    routed: Routed,
    ttl: u64,
) -> ApiResult<Routed> {
    let wrappable = match &routed.reply {
        Reply::Data(_) | Reply::Envelope(_) => true,
        Reply::List(keys) => !keys.is_empty(),
        _ => false,
    };
    if !wrappable {
        return Ok(routed);
    }
    let mount_type = routed.mount_type;
    let ResponseBody::Logical(logical) = Core::envelope(request, routed) else {
        return Err(ApiError::internal(&"a wrappable reply had no envelope"));
    };
    let wrapped_accessor = logical.auth.as_ref().map(|auth| auth.accessor.clone());
    let (token, entry) = store(unsealed, &logical.to_json(), ttl, path).await?;
    Ok(wrapped(&token, &entry, wrapped_accessor, mount_type))
}

/// Makes a wrapping token holding `response`, in one command.
async fn store(
    unsealed: &Unsealed,
    response: &Value,
    ttl: u64,
    creation_path: &str,
) -> ApiResult<(Zeroizing<String>, TokenEntry)> {
    let mut batch = unsealed.barrier.batch();
    let (token, entry) = unsealed.tokens.prepare(
        NewToken {
            bound_cidrs: Vec::new(),
            policies: vec![WRAPPING_POLICY.into()],
            display_name: WRAPPING_POLICY.into(),
            num_uses: 1,
            ttl,
            explicit_max_ttl: ttl,
            renewable: false,
            parent: None,
            path: creation_path.to_owned(),
            ..NewToken::default()
        },
        None,
        &mut batch,
    )?;
    batch.put_json(&cubbyhole_key(&entry.hash, RESPONSE), response)?;
    unsealed.barrier.commit(batch).await?;
    Ok((token, entry))
}

/// The answer that stands for a wrapped response.
fn wrapped(
    token: &str,
    entry: &TokenEntry,
    wrapped_accessor: Option<String>,
    mount_type: &'static str,
) -> Routed {
    let mut info = json!({
        "token": token,
        "accessor": entry.accessor,
        "ttl": entry.creation_ttl,
        "creation_time": rfc3339(entry.creation_time),
        "creation_path": entry.path,
    });
    if let Some(accessor) = wrapped_accessor {
        info["wrapped_accessor"] = json!(accessor);
    }
    Routed {
        reply: Reply::Envelope(Box::new(LogicalResponse {
            wrap_info: Some(info),
            ..LogicalResponse::default()
        })),
        mount_type,
        flatten: false,
    }
}

fn not_valid() -> ApiError {
    ApiError::invalid("wrapping token is not valid or does not exist")
}

/// The wrapping token of a `sys/wrapping/*` request: `token` in the body, or
/// the request's own.
fn wrapping_token(request: &Request) -> ApiResult<String> {
    let from_body = crate::api::fields::Fields::new(&request.data)
        .string("token")?
        .filter(|token| !token.is_empty());
    from_body
        .or_else(|| {
            request
                .token
                .as_ref()
                .map(|token| token.expose().to_owned())
        })
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::PermissionDenied,
                "error validating wrapping token: token is empty",
            )
        })
}

/// A live wrapping token's entry.
fn find(unsealed: &Unsealed, token: &str) -> ApiResult<TokenEntry> {
    unsealed
        .tokens
        .lookup(token)?
        .filter(|entry| entry.policies == [WRAPPING_POLICY])
        .ok_or_else(not_valid)
}

/// Spends the token's one use and returns what it wraps; the token and its
/// cubbyhole are revoked.
async fn take(unsealed: &Unsealed, token: &str) -> ApiResult<(TokenEntry, Value)> {
    let entry = find(unsealed, token)?;
    let entry = unsealed
        .tokens
        .take_use(&entry.hash)
        .await?
        .ok_or_else(not_valid)?;
    let response = unsealed
        .barrier
        .get_json::<Value>(&cubbyhole_key(&entry.hash, RESPONSE))?;
    unsealed.revoke_token(&entry.hash, true).await?;
    Ok((entry, response.ok_or_else(not_valid)?))
}

/// `sys/wrapping/unwrap`, `lookup` and `rewrap` (`action`); `wrap` answers
/// the request's own data, which the pipeline then wraps.
pub(super) async fn route(
    unsealed: &Unsealed,
    request: &Request,
    action: &str,
    wrap_ttl: Option<u64>,
) -> ApiResult<Routed> {
    let system = |reply| Routed {
        reply,
        mount_type: "system",
        flatten: true,
    };
    match (action, request.operation) {
        ("unwrap", Operation::Write) => {
            let (_, response) = take(unsealed, &wrapping_token(request)?).await?;
            Ok(Routed {
                reply: Reply::Raw(200, response),
                mount_type: "system",
                flatten: false,
            })
        }
        ("lookup", Operation::Read | Operation::Write) => {
            let entry = find(unsealed, &wrapping_token(request)?)?;
            Ok(system(Reply::data(json!({
                "creation_path": entry.path,
                "creation_time": rfc3339(entry.creation_time),
                "creation_ttl": entry.creation_ttl,
            }))))
        }
        ("rewrap", Operation::Write) => {
            let (old, response) = take(unsealed, &wrapping_token(request)?).await?;
            let (token, entry) = store(unsealed, &response, old.creation_ttl, &old.path).await?;
            Ok(wrapped(&token, &entry, None, "system"))
        }
        ("wrap", Operation::Write) => {
            if wrap_ttl.is_none() {
                return Err(ApiError::invalid(
                    "endpoint requires response wrapping to be used",
                ));
            }
            Ok(Routed {
                reply: Reply::Data(request.data.clone()),
                mount_type: "system",
                flatten: false,
            })
        }
        ("unwrap" | "lookup" | "rewrap" | "wrap", _) => Err(ApiError::unsupported(
            &format!("sys/wrapping/{action}"),
            request.operation.as_str(),
        )),
        _ => Err(ApiError::no_route(&format!("sys/wrapping/{action}"))),
    }
}
