//! The key-value secrets engines: [`v1`] (one value per path) and [`v2`] (versioned,
//! with metadata, soft delete, check-and-set). Both keep their data under their
//! mount's storage prefix, behind the barrier.

mod engine;
pub mod v1;
pub mod v2;

pub use engine::{KvEngine, engine, version};

use coffer_protocols::Operation;
use serde_json::{Map, Value};

use crate::api::error::{ApiError, ApiResult};
use crate::api::reply::Reply;

/// The KV engine serving one mount, for one request.
pub enum Kv<'a> {
    V1(v1::KvV1<'a>),
    V2(v2::KvV2<'a>),
}

impl Kv<'_> {
    /// Whether a write to `path` updates (true) or creates (false).
    pub fn exists(&self, path: &str) -> ApiResult<bool> {
        match self {
            Kv::V1(engine) => engine.exists(path),
            Kv::V2(engine) => engine.exists(path),
        }
    }

    pub async fn handle(
        &self,
        operation: Operation,
        path: &str,
        data: &Map<String, Value>,
    ) -> ApiResult<Reply> {
        match self {
            Kv::V1(engine) => engine.handle(operation, path, data).await,
            Kv::V2(engine) => engine.handle(operation, path, data).await,
        }
    }
}

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
