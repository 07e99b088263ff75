//! The core's error at its boundary with the doors: a stable [`ErrorCode`] and
//! messages safe to show a client. Faults from below (storage, barrier) are logged
//! with the request id and surface as a generic internal error: their text names
//! paths, and a client has no use for it.

use coffer_protocols::{ErrorCode, LogicalResponse};

use crate::{barrier, crypto, seal, storage};

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub messages: Vec<String>,
    /// An envelope to render along with the errors (KV v2's deleted versions).
    pub data: Option<Box<LogicalResponse>>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl std::fmt::Display for ApiError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.messages.join("; "))
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            messages: vec![message.into()],
            data: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidRequest, message)
    }

    pub fn denied() -> Self {
        ApiError::new(ErrorCode::PermissionDenied, "permission denied")
    }

    /// A 404 with an empty `errors` list, as Vault answers a missing secret.
    pub fn not_found() -> Self {
        ApiError {
            code: ErrorCode::NotFound,
            messages: Vec::new(),
            data: None,
        }
    }

    pub fn no_route(path: &str) -> Self {
        ApiError::new(
            ErrorCode::NotFound,
            format!("no handler for route {path:?}: route entry not found"),
        )
    }

    pub fn unsupported(path: &str, operation: &str) -> Self {
        ApiError::new(
            ErrorCode::UnsupportedOperation,
            format!("unsupported operation {operation} on {path:?}"),
        )
    }

    pub fn sealed() -> Self {
        ApiError::new(ErrorCode::Sealed, "Vault is sealed")
    }

    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            ErrorCode::Internal,
            "internal error; the server log has the details",
        )
    }
}

impl From<barrier::Error> for ApiError {
    fn from(error: barrier::Error) -> Self {
        match error {
            barrier::Error::Storage(inner) => inner.into(),
            other => ApiError::internal(&other),
        }
    }
}

impl From<storage::Error> for ApiError {
    fn from(error: storage::Error) -> Self {
        match error {
            storage::Error::Unavailable(message) => ApiError::new(ErrorCode::Unavailable, message),
            other => ApiError::internal(&other),
        }
    }
}

impl From<crypto::RandomError> for ApiError {
    fn from(error: crypto::RandomError) -> Self {
        ApiError::internal(&error)
    }
}

impl From<seal::Error> for ApiError {
    fn from(error: seal::Error) -> Self {
        match error {
            seal::Error::Shares(shares) => ApiError::invalid(shares.to_string()),
            seal::Error::InvalidKey
            | seal::Error::InvalidRecoveryKey
            | seal::Error::NoRecoveryKey
            | seal::Error::Recovery(_) => ApiError::invalid(error.to_string()),
            // The KMS's own words name the key and the failure, never a value.
            seal::Error::AutoSeal(inner) => ApiError::new(ErrorCode::Upstream, inner.to_string()),
            seal::Error::Storage(inner) => inner.into(),
            other => ApiError::internal(&other),
        }
    }
}
