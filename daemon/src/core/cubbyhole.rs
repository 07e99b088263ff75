//! `cubbyhole/`: each token's private key-value store, as Vault's. Only the
//! token that wrote a value reads it; the values go when the token goes
//! (`TokenStore` deletes the prefix with the token's records). A caller known
//! only by its `auth/local` roles has no stored token, so no cubbyhole.

use coffer_protocols::{Operation, Request};

use super::{Caller, Routed, Unsealed, capability_for};
use crate::api::error::{ApiError, ApiResult};
use crate::api::reply::Reply;
use crate::tokens::cubbyhole_key;

pub(super) async fn route(
    unsealed: &Unsealed,
    request: &Request,
    path: &str,
    caller: &Caller,
) -> ApiResult<Routed> {
    let inner = path
        .strip_prefix("cubbyhole")
        .unwrap_or("")
        .trim_start_matches('/');
    let operation = request.operation;
    let hash = caller.token.hash.as_str();
    if hash.is_empty() || caller.local.is_some() {
        return Err(ApiError::invalid(
            "the cubbyhole belongs to a token: this caller has none (log in for a token)",
        ));
    }
    let key = cubbyhole_key(hash, inner);
    let exists = operation != Operation::Write || unsealed.barrier.get(&key)?.is_some();
    caller.authorize(
        path,
        capability_for(operation, exists),
        &request.data,
        false,
    )?;
    let reply = match operation {
        Operation::List => {
            let directory = match inner {
                "" => String::new(),
                inner => format!("{}/", inner.trim_end_matches('/')),
            };
            Reply::List(unsealed.barrier.list(&cubbyhole_key(hash, &directory))?)
        }
        _ if inner.is_empty() || inner.ends_with('/') => {
            return Err(ApiError::invalid("missing secret path"));
        }
        Operation::Read => Reply::Data(
            unsealed
                .barrier
                .get_json(&key)?
                .ok_or_else(ApiError::not_found)?,
        ),
        Operation::Write => {
            if request.data.is_empty() {
                return Err(ApiError::invalid("missing data fields"));
            }
            unsealed.barrier.put_json(&key, &request.data).await?;
            Reply::NoContent
        }
        Operation::Delete => {
            unsealed.barrier.delete(&key).await?;
            Reply::NoContent
        }
        Operation::Patch => return Err(ApiError::unsupported(path, operation.as_str())),
    };
    Ok(Routed {
        reply,
        mount_type: "cubbyhole",
        flatten: false,
    })
}
