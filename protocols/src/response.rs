//! The neutral response the core returns and every door renders.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ErrorCode;

/// What the core answered, plus the low-cardinality route label doors use in metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// A bounded label such as `secret/` or `sys/health`; `None` when no route matched.
    pub route: Option<String>,
    pub body: ResponseBody,
    /// Headers the response carries besides its body's (`Retry-After` and
    /// `X-Ratelimit-*` of a rate limit); gRPC sends them as metadata.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ResponseBody {
    /// Vault's standard envelope, status 200.
    Logical(Box<LogicalResponse>),
    /// A successful write that returns nothing: 204.
    NoContent,
    /// A raw JSON document with its own status (`sys/health`, `sys/seal-status`,
    /// `sys/init`, `sys/unseal`, `sys/leader` answer without the envelope).
    Raw { status: u16, body: Value },
    /// A non-JSON document (Prometheus metrics).
    Text { content_type: String, body: String },
    /// Bytes (a snapshot download).
    Binary {
        content_type: String,
        #[serde(with = "crate::request::base64_bytes")]
        body: Vec<u8>,
    },
    /// 307 to the same request on another node (the leader, for a client that asked
    /// not to be forwarded).
    Redirect { location: String },
    /// A failure: `{"errors":[...]}` with the code's status. When `data` is set, the
    /// envelope is rendered too (KV v2 answers a deleted version with a 404 that still
    /// carries `data.metadata`).
    Error {
        code: ErrorCode,
        messages: Vec<String>,
        data: Option<Box<LogicalResponse>>,
    },
}

impl Response {
    pub fn new(route: Option<String>, body: ResponseBody) -> Self {
        Response {
            route,
            body,
            headers: Vec::new(),
        }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Response::new(
            None,
            ResponseBody::Error {
                code,
                messages: vec![message.into()],
                data: None,
            },
        )
    }

    /// The status this response has on HTTP; also used as the metrics label.
    pub fn http_status(&self) -> u16 {
        match &self.body {
            ResponseBody::Logical(_) | ResponseBody::Text { .. } | ResponseBody::Binary { .. } => {
                200
            }
            ResponseBody::Redirect { .. } => 307,
            ResponseBody::NoContent => 204,
            ResponseBody::Raw { status, .. } => *status,
            ResponseBody::Error { code, .. } => code.http_status(),
        }
    }
}

/// Vault's response envelope.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogicalResponse {
    pub request_id: String,
    pub lease_id: String,
    pub renewable: bool,
    pub lease_duration: u64,
    pub data: Option<Map<String, Value>>,
    pub wrap_info: Option<Value>,
    pub warnings: Option<Vec<String>>,
    pub auth: Option<Auth>,
    pub mount_type: String,
    /// Vault copies the keys of `data` to the top level for `sys/` paths; some
    /// clients read them there. Not part of the rendered envelope.
    #[serde(default)]
    pub flatten_data: bool,
}

impl LogicalResponse {
    pub fn with_data(data: Map<String, Value>) -> Self {
        LogicalResponse {
            data: Some(data),
            ..LogicalResponse::default()
        }
    }

    /// The envelope as JSON, with `data` copied to the top level when asked.
    pub fn to_json(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(top) = &mut value {
            top.remove("flatten_data");
        }
        if self.flatten_data
            && let (Value::Object(top), Some(data)) = (&mut value, &self.data)
        {
            for (key, item) in data {
                top.entry(key.clone()).or_insert_with(|| item.clone());
            }
        }
        value
    }

    /// The rendered envelope: the bytes of `to_json()`, written directly for the
    /// common case (no flattening) instead of through a `Value` copy of `data`.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        if self.flatten_data {
            return serde_json::to_vec(&self.to_json()).unwrap_or_default();
        }
        serde_json::to_vec(&Envelope(self)).unwrap_or_default()
    }
}

/// A [`LogicalResponse`] rendered with its keys in the order a `Value` object
/// holds them (sorted), so both renderings give the same bytes.
struct Envelope<'a>(&'a LogicalResponse);

impl Serialize for Envelope<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let response = self.0;
        let mut map = serializer.serialize_map(Some(9))?;
        // Logins only: through a `Value`, whose keys are sorted.
        let auth = response
            .auth
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            .map_err(serde::ser::Error::custom)?;
        map.serialize_entry("auth", &auth)?;
        map.serialize_entry("data", &response.data)?;
        map.serialize_entry("lease_duration", &response.lease_duration)?;
        map.serialize_entry("lease_id", &response.lease_id)?;
        map.serialize_entry("mount_type", &response.mount_type)?;
        map.serialize_entry("renewable", &response.renewable)?;
        map.serialize_entry("request_id", &response.request_id)?;
        map.serialize_entry("warnings", &response.warnings)?;
        map.serialize_entry("wrap_info", &response.wrap_info)?;
        map.end()
    }
}

/// The `auth` block of logins and token creation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Auth {
    pub client_token: String,
    pub accessor: String,
    pub policies: Vec<String>,
    pub token_policies: Vec<String>,
    pub identity_policies: Option<Vec<String>>,
    pub metadata: Option<Map<String, Value>>,
    pub lease_duration: u64,
    pub renewable: bool,
    pub entity_id: String,
    pub token_type: String,
    pub orphan: bool,
    pub mfa_requirement: Option<Value>,
    pub num_uses: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn envelopes() -> Vec<LogicalResponse> {
        let data = json!({"data": {"b": 1, "a": [true, null, "x\"y"]}, "metadata": {"version": 3}});
        vec![
            LogicalResponse::default(),
            LogicalResponse {
                request_id: "r-1".into(),
                lease_id: "database/creds/app/abc".into(),
                renewable: true,
                lease_duration: 3600,
                data: data.as_object().cloned(),
                wrap_info: Some(json!({"token": "w"})),
                warnings: Some(vec!["careful".into()]),
                auth: Some(Auth {
                    client_token: "hvs.x".into(),
                    policies: vec!["default".into()],
                    metadata: Some(Map::new()),
                    lease_duration: 60,
                    ..Auth::default()
                }),
                mount_type: "kv".into(),
                flatten_data: false,
            },
            LogicalResponse {
                flatten_data: true,
                ..LogicalResponse::with_data(
                    json!({"keys": ["a"], "mount_type": "x"})
                        .as_object()
                        .cloned()
                        .unwrap(),
                )
            },
        ]
    }

    #[test]
    fn direct_rendering_matches_the_value_rendering_byte_for_byte() {
        for envelope in envelopes() {
            let expected = serde_json::to_vec(&envelope.to_json()).unwrap();
            assert_eq!(
                String::from_utf8(envelope.to_json_bytes()).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
