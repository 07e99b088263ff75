//! Stable error codes: one per kind of failure, mapped once to an HTTP status here
//! (and to gRPC codes and errno values by their own doors, from the same enum).

use std::fmt;

/// What went wrong, independent of the door the request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ErrorCode {
    /// The request is malformed or its values are invalid (bad JSON, bad path,
    /// a check-and-set mismatch, a bad unseal key).
    InvalidRequest,
    /// No token, a bad or expired token, or a policy that does not allow this.
    PermissionDenied,
    /// No route for the path, or no secret at it.
    NotFound,
    /// The route exists but does not support this operation.
    UnsupportedOperation,
    /// The request body is larger than the limit.
    PayloadTooLarge,
    /// The client did not send its request in time.
    RequestTimeout,
    /// Too many requests.
    RateLimited,
    /// A fault inside coffer; never caused by the client's input.
    Internal,
    /// The server has not been initialized yet.
    NotInitialized,
    /// An upstream system (a database, a KMS) failed.
    Upstream,
    /// The server is sealed.
    Sealed,
    /// The server cannot serve the request right now (shutting down, no quorum).
    Unavailable,
}

impl ErrorCode {
    /// The HTTP status Vault clients expect for this failure.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 400,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::UnsupportedOperation => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::NotInitialized => 501,
            ErrorCode::Upstream => 502,
            ErrorCode::Sealed | ErrorCode::Unavailable => 503,
        }
    }

    /// A stable machine-readable name, used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UnsupportedOperation => "unsupported_operation",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
            ErrorCode::NotInitialized => "not_initialized",
            ErrorCode::Upstream => "upstream",
            ErrorCode::Sealed => "sealed",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}
