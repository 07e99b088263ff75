//! The `telemetry` block: who may read `sys/metrics`.

use super::{boolean, duration_value, unknown};
use crate::hcl;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Telemetry {
    /// `unauthenticated_metrics_access`: serve `sys/metrics` without a token.
    pub unauthenticated_metrics_access: bool,
    /// `disable_hostname`: accepted for Vault compatibility (metric names never
    /// carry the host name in coffer).
    pub disable_hostname: bool,
    /// `prometheus_retention_time`: accepted for Vault compatibility (coffer's
    /// metrics are always current).
    pub prometheus_retention_time: Option<u64>,
}

pub(super) fn parse_telemetry(block: &hcl::Block) -> Result<Telemetry, hcl::Error> {
    if !block.labels.is_empty() {
        return Err(hcl::Error::new(block.line, "telemetry takes no label"));
    }
    let mut telemetry = Telemetry::default();
    for attribute in &block.body.attributes {
        let value = &attribute.value;
        match attribute.key.as_str() {
            "unauthenticated_metrics_access" => {
                telemetry.unauthenticated_metrics_access =
                    boolean(value, "unauthenticated_metrics_access")?
            }
            "disable_hostname" => telemetry.disable_hostname = boolean(value, "disable_hostname")?,
            "prometheus_retention_time" => {
                telemetry.prometheus_retention_time =
                    Some(duration_value(value, "prometheus_retention_time")?)
            }
            other => return Err(unknown(attribute.line, other, "telemetry")),
        }
    }
    Ok(telemetry)
}
