//! `sys/policies/password/<name>` (Vault's password policies): write, read,
//! delete, list, and `<name>/generate`.

use coffer_protocols::Operation;
use serde_json::{Map, Value, json};

use super::super::{Routed, Unsealed};
use super::system;
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::database::names::validate_name;
use crate::password_policy::{self, PREFIX};

/// `rest` is past `sys/policies/password`.
pub(super) async fn route(
    unsealed: &Unsealed,
    rest: &str,
    operation: Operation,
    data: &Map<String, Value>,
) -> ApiResult<Routed> {
    let path = rest.trim_start_matches('/');
    if path.is_empty() || path == "/" {
        return match operation {
            Operation::List | Operation::Read => {
                Ok(system(Reply::List(unsealed.barrier.list(PREFIX)?)))
            }
            _ => Err(ApiError::unsupported(
                "sys/policies/password",
                operation.as_str(),
            )),
        };
    }
    let (name, generate) = match path.strip_suffix("/generate") {
        Some(name) => (name, true),
        None => (path.trim_end_matches('/'), false),
    };
    validate_name("password policy", name).map_err(ApiError::invalid)?;
    let key = format!("{PREFIX}{name}");
    match (operation, generate) {
        (Operation::Read, true) => {
            let policy = password_policy::load(&unsealed.barrier, name)?;
            let password = policy
                .generate()
                .map_err(|error| ApiError::internal(&error))?;
            Ok(system(Reply::data(json!({ "password": password }))))
        }
        (Operation::Write, false) => {
            let text = Fields::new(data)
                .string("policy")?
                .ok_or_else(|| ApiError::invalid("missing policy"))?;
            password_policy::parse(&text)
                .map_err(|error| ApiError::invalid(format!("invalid password policy: {error}")))?;
            unsealed.barrier.put_json(&key, &text).await?;
            Ok(system(Reply::NoContent))
        }
        (Operation::Read, false) => {
            let text: String = unsealed
                .barrier
                .get_json(&key)?
                .ok_or_else(ApiError::not_found)?;
            Ok(system(Reply::data(json!({ "policy": text }))))
        }
        (Operation::Delete, false) => {
            unsealed.barrier.delete(&key).await?;
            Ok(system(Reply::NoContent))
        }
        _ => Err(ApiError::unsupported(
            &format!("sys/policies/password/{path}"),
            operation.as_str(),
        )),
    }
}
