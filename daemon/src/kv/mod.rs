//! The key-value secrets engines: [`v1`] (one value per path) and [`v2`] (versioned,
//! with metadata, soft delete, check-and-set). Both keep their data under their
//! mount's storage prefix, behind the barrier.

pub mod v1;
pub mod v2;

use crate::core::error::{ApiError, ApiResult};

/// A secret's path inside a mount: not empty and not a directory.
fn secret_path(path: &str) -> ApiResult<&str> {
    if path.is_empty() {
        return Err(ApiError::invalid("missing secret path"));
    }
    if path.ends_with('/') {
        return Err(ApiError::invalid(
            "invalid secret path: a secret's path must not end in '/'",
        ));
    }
    Ok(path)
}

/// The directory to list: `""` or a path ending in `/`.
fn list_prefix(path: &str) -> String {
    if path.is_empty() || path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    }
}
