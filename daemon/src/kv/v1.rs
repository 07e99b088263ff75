//! KV version 1: each path holds one JSON object; writes replace it.

use coffer_protocols::Operation;
use serde_json::{Map, Value};

use super::{list_prefix, secret_path};
use crate::api::error::{ApiError, ApiResult};
use crate::api::reply::Reply;
use crate::barrier::Barrier;
use crate::mounts::MountEntry;

pub struct KvV1<'a> {
    pub barrier: &'a Barrier,
    pub mount: &'a MountEntry,
}

impl KvV1<'_> {
    fn key(&self, path: &str) -> String {
        format!("{}{path}", self.mount.data_prefix())
    }

    /// Whether a write to `path` updates (true) or creates (false).
    pub fn exists(&self, path: &str) -> ApiResult<bool> {
        Ok(!path.is_empty() && self.barrier.get(&self.key(path))?.is_some())
    }

    pub async fn handle(
        &self,
        operation: Operation,
        path: &str,
        data: &Map<String, Value>,
    ) -> ApiResult<Reply> {
        match operation {
            Operation::List => Ok(Reply::List(self.barrier.list(&format!(
                "{}{}",
                self.mount.data_prefix(),
                list_prefix(path)
            ))?)),
            Operation::Read => {
                let path = secret_path(path)?;
                match self
                    .barrier
                    .get_json::<Map<String, Value>>(&self.key(path))?
                {
                    Some(stored) => Ok(Reply::Data(stored)),
                    None => Err(ApiError::not_found()),
                }
            }
            Operation::Write => {
                let path = secret_path(path)?;
                if data.is_empty() {
                    return Err(ApiError::invalid("missing data fields"));
                }
                self.barrier.put_json(&self.key(path), data).await?;
                Ok(Reply::NoContent)
            }
            Operation::Delete => {
                let path = secret_path(path)?;
                self.barrier.delete(&self.key(path)).await?;
                Ok(Reply::NoContent)
            }
            Operation::Patch => Err(ApiError::unsupported(path, "patch")),
        }
    }
}
