//! `sys/rotate/config`, and the leader's check that rotates the barrier key
//! before it has sealed too many values (random 96-bit nonces stay safe for
//! about 2^32 encryptions per key) or has been in use too long.

use coffer_protocols::Operation;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::super::{Routed, Unsealed};
use super::system;
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::barrier::Barrier;

/// Where the rotation settings live, behind the barrier.
const CONFIG_PATH: &str = "core/rotate-config";
/// Vault's ceiling: 90% of 2^32.
pub const MAX_OPERATIONS: u64 = 3_865_470_566;
/// Vault's floor for `max_operations`.
pub const MIN_OPERATIONS: u64 = 1_000_000;
/// The shortest `interval`, as in Vault.
const MIN_INTERVAL: u64 = 24 * 3600;

/// `sys/rotate/config` as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationConfig {
    pub enabled: bool,
    pub max_operations: u64,
    /// Seconds; 0: no time-based rotation.
    pub interval: u64,
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            enabled: true,
            max_operations: MAX_OPERATIONS,
            interval: 0,
        }
    }
}

fn read(barrier: &Barrier) -> ApiResult<RotationConfig> {
    Ok(barrier.get_json(CONFIG_PATH)?.unwrap_or_default())
}

/// GET and POST `sys/rotate/config`. `min_operations` is the floor for
/// `max_operations` (Vault's, unless lowered for tests).
pub(super) async fn route(
    unsealed: &Unsealed,
    operation: Operation,
    data: &Map<String, Value>,
    min_operations: u64,
) -> ApiResult<Routed> {
    match operation {
        Operation::Read => {
            let config = read(&unsealed.barrier)?;
            let interval = if config.interval == 0 {
                json!(0)
            } else {
                json!(crate::duration::format_go(config.interval))
            };
            Ok(system(Reply::data(json!({
                "enabled": config.enabled,
                "max_operations": config.max_operations,
                "interval": interval,
            }))))
        }
        Operation::Write => {
            let fields = Fields::new(data);
            let mut config = read(&unsealed.barrier)?;
            if let Some(enabled) = fields.bool("enabled")? {
                config.enabled = enabled;
            }
            if let Some(max) = fields.u64("max_operations")? {
                if !(min_operations..=MAX_OPERATIONS).contains(&max) {
                    return Err(ApiError::invalid(format!(
                        "max_operations must be in the range [{min_operations},{MAX_OPERATIONS}]"
                    )));
                }
                config.max_operations = max;
            }
            if let Some(interval) = fields.duration("interval")? {
                if interval != 0 && interval < MIN_INTERVAL {
                    return Err(ApiError::invalid(
                        "interval must be greater or equal to 24h0m0s",
                    ));
                }
                config.interval = interval;
            }
            unsealed.barrier.put_json(CONFIG_PATH, &config).await?;
            Ok(system(Reply::NoContent))
        }
        _ => Err(ApiError::unsupported(
            "sys/rotate/config",
            operation.as_str(),
        )),
    }
}

/// The leader's check, about once a second: adds this node's count of
/// encryptions to the stored one and rotates when the active key has sealed
/// `max_operations` values or is older than `interval`.
pub(crate) async fn key_round(unsealed: &Unsealed, now: u64) {
    let barrier = &unsealed.barrier;
    let encryptions = match barrier.flush_encryptions().await {
        Ok(encryptions) => encryptions,
        Err(error) => {
            tracing::warn!(%error, "cannot store the count of encryptions; retrying");
            return;
        }
    };
    let config = match read(barrier) {
        Ok(config) => config,
        Err(error) => {
            tracing::warn!(error = ?error.messages, "cannot read sys/rotate/config");
            return;
        }
    };
    if !config.enabled {
        return;
    }
    let (term, installed) = barrier.key_status();
    let installed = installed
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let too_old = config.interval > 0 && installed.saturating_add(config.interval) <= now;
    if encryptions < config.max_operations && !too_old {
        return;
    }
    match barrier.rotate().await {
        Ok(new_term) => tracing::info!(
            old_term = term,
            new_term,
            encryptions,
            "rotated the barrier key: it reached its limit"
        ),
        Err(error) => tracing::error!(%error, "cannot rotate the barrier key"),
    }
}
