//! `sys/audit` (list, enable, disable) and `sys/audit-hash`.

use std::collections::BTreeMap;

use coffer_protocols::{Operation, Request};
use serde_json::{Map, Value, json};

use super::super::{Routed, Unsealed};
use super::system;
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::audit::{self, DeviceConfig, TABLE_PATH};

/// OpenBao's answer to `sys/audit/<path>` when the API may not enable devices.
const API_CREATION_REFUSED: &str = "cannot enable audit device via API; use declarative, \
     config-based audit device management instead";

/// The `audit` and `audit-hash` routes under `sys/` (both need `sudo`).
/// `allow_creation`: the configuration lets the API enable devices.
pub(super) async fn route(
    unsealed: &Unsealed,
    request: &Request,
    rest: &str,
    allow_creation: bool,
) -> ApiResult<Routed> {
    let operation = request.operation;
    let data = &request.data;
    let unsupported = || ApiError::unsupported(&format!("sys/{rest}"), operation.as_str());
    if let Some(path) = rest.strip_prefix("audit-hash/") {
        return match operation {
            Operation::Write => hash(unsealed, path, data),
            _ => Err(unsupported()),
        };
    }
    match (rest.strip_prefix("audit/"), operation) {
        (None, Operation::Read) => Ok(system(list(unsealed))),
        (Some(_), Operation::Write) if !allow_creation => {
            Err(ApiError::invalid(API_CREATION_REFUSED))
        }
        (Some(path), Operation::Write) => enable(unsealed, path, data).await,
        (Some(path), Operation::Delete) => disable(unsealed, path).await,
        _ => Err(unsupported()),
    }
}

fn invalid(error: audit::Error) -> ApiError {
    ApiError::invalid(error.to_string())
}

fn table(unsealed: &Unsealed) -> ApiResult<Vec<DeviceConfig>> {
    Ok(unsealed
        .barrier
        .get_json::<Vec<DeviceConfig>>(TABLE_PATH)?
        .unwrap_or_default())
}

fn list(unsealed: &Unsealed) -> Reply {
    let mut answer = Map::new();
    for device in unsealed.audit.devices().iter() {
        let config = &device.config;
        answer.insert(
            config.path.clone(),
            json!({
                "path": config.path,
                "type": config.kind.as_str(),
                "description": config.description,
                "options": config.options,
                "local": config.local,
                "declared_in_config": device.from_config,
                "healthy": device.is_healthy(),
            }),
        );
    }
    Reply::Data(answer)
}

/// Device options as clients send them: strings, or numbers and booleans that
/// the device reads as text.
fn options(fields: &Fields<'_>) -> ApiResult<BTreeMap<String, String>> {
    let Some(object) = fields.object("options")? else {
        return Ok(BTreeMap::new());
    };
    object
        .iter()
        .map(|(key, value)| {
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Bool(flag) => flag.to_string(),
                Value::Number(number) => number.to_string(),
                _ => {
                    return Err(ApiError::invalid(format!(
                        "audit device option {key:?} must be a string"
                    )));
                }
            };
            Ok((key.clone(), text))
        })
        .collect()
}

async fn enable(unsealed: &Unsealed, path: &str, data: &Map<String, Value>) -> ApiResult<Routed> {
    let fields = Fields::new(data);
    let kind = fields
        .string("type")?
        .filter(|kind| !kind.is_empty())
        .ok_or_else(|| ApiError::invalid("type is required: file, syslog or socket"))?;
    let config = DeviceConfig {
        path: audit::normalize_path(path).map_err(invalid)?,
        kind: audit::Kind::parse(&kind).map_err(invalid)?,
        description: fields.string("description")?.unwrap_or_default(),
        options: options(&fields)?,
        local: fields.bool("local")?.unwrap_or(false),
    };
    let parsed = config.options().map_err(invalid)?;
    if unsealed.audit.is_configured(&config.path) {
        return Err(ApiError::invalid(format!(
            "an audit device at {:?} is declared in the configuration file",
            config.path
        )));
    }
    let _table_lock = unsealed.audit.table_lock.lock().await;
    let mut table = table(unsealed)?;
    if table.iter().any(|device| device.path == config.path) {
        return Err(ApiError::invalid(format!(
            "path {:?} is already in use by an audit device",
            config.path
        )));
    }
    // Try the destination now: a typo in a path or address is the operator's
    // answer, not a device that never writes.
    let target = parsed.target.clone();
    let opened = tokio::task::spawn_blocking(move || target.open(parsed.deadline).map(drop))
        .await
        .map_err(|error| ApiError::internal(&error))?;
    if let Err(error) = opened {
        return Err(invalid(audit::Error::Open {
            path: config.path.clone(),
            target: config.options()?.target.describe(),
            reason: error.to_string(),
        }));
    }
    table.push(config);
    unsealed.barrier.put_json(TABLE_PATH, &table).await?;
    Ok(system(Reply::NoContent))
}

async fn disable(unsealed: &Unsealed, path: &str) -> ApiResult<Routed> {
    let path = audit::normalize_path(path).map_err(invalid)?;
    if unsealed.audit.is_configured(&path) {
        return Err(ApiError::invalid(format!(
            "the audit device at {path:?} is declared in the configuration file; remove it there"
        )));
    }
    let _table_lock = unsealed.audit.table_lock.lock().await;
    let mut table = table(unsealed)?;
    let before = table.len();
    table.retain(|device| device.path != path);
    if table.len() != before {
        unsealed.barrier.put_json(TABLE_PATH, &table).await?;
    }
    Ok(system(Reply::NoContent))
}

fn hash(unsealed: &Unsealed, path: &str, data: &Map<String, Value>) -> ApiResult<Routed> {
    let path = audit::normalize_path(path).map_err(invalid)?;
    let input = Fields::new(data)
        .string("input")?
        .ok_or_else(|| ApiError::invalid("input is required"))?;
    let hash = unsealed
        .audit
        .hash(&path, &input)
        .ok_or_else(|| ApiError::invalid(format!("unknown audit backend {path:?}")))?;
    Ok(system(Reply::data(json!({ "hash": hash }))))
}

impl From<audit::Error> for ApiError {
    fn from(error: audit::Error) -> Self {
        invalid(error)
    }
}
