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
        Response { route, body }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Response {
            route: None,
            body: ResponseBody::Error {
                code,
                messages: vec![message.into()],
                data: None,
            },
        }
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
