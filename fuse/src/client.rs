//! Requests to the core on behalf of a FUSE caller, and the one mapping from the
//! core's error codes to errno values.

use std::sync::Arc;
use std::time::Instant;

use coffer_protocols::{
    ErrorCode, Handler, LocalPeer, LogicalResponse, Observation, Operation, Request, ResponseBody,
    Transport,
};
use fuser::Errno;
use serde_json::{Map, Value};

/// Who asked, as the kernel reported it (the caller's fsuid, fsgid and thread id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Who {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

impl Who {
    pub fn of(request: &fuser::Request) -> Who {
        Who {
            uid: request.uid(),
            gid: request.gid(),
            pid: request.pid(),
        }
    }
}

/// The errno a FUSE caller sees for a failure. Sealed and unavailable answer
/// `EAGAIN` ("Resource temporarily unavailable"): the same open works once the
/// server is unsealed or has a leader again.
pub fn errno(code: ErrorCode) -> Errno {
    match code {
        ErrorCode::PermissionDenied => Errno::EACCES,
        ErrorCode::NotFound => Errno::ENOENT,
        ErrorCode::InvalidRequest | ErrorCode::UnsupportedOperation => Errno::EINVAL,
        ErrorCode::PayloadTooLarge => Errno::EFBIG,
        ErrorCode::Sealed
        | ErrorCode::Unavailable
        | ErrorCode::NotInitialized
        | ErrorCode::RateLimited
        | ErrorCode::RequestTimeout => Errno::EAGAIN,
        ErrorCode::Upstream | ErrorCode::Internal => Errno::EIO,
    }
}

/// The core, as the filesystem calls it.
pub struct Client<H> {
    handler: Arc<H>,
    runtime: tokio::runtime::Handle,
}

impl<H: Handler> Client<H> {
    pub fn new(handler: Arc<H>, runtime: tokio::runtime::Handle) -> Self {
        Client { handler, runtime }
    }

    /// Runs one request from a FUSE thread (not a runtime thread), waiting for it.
    /// Runs `future` from a FUSE thread (not a runtime thread), waiting for it.
    pub fn block_on<T>(&self, future: impl Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    pub fn call(
        &self,
        who: Who,
        operation: Operation,
        path: String,
        data: Map<String, Value>,
    ) -> Result<Box<LogicalResponse>, Errno> {
        self.runtime
            .block_on(self.call_async(who, operation, path, data))
    }

    pub async fn call_async(
        &self,
        who: Who,
        operation: Operation,
        path: String,
        data: Map<String, Value>,
    ) -> Result<Box<LogicalResponse>, Errno> {
        let peer = LocalPeer::from_kernel(who.uid, who.gid, who.pid);
        self.call_as(peer, operation, path, data).await
    }

    /// Runs one request as `peer`: a caller described already (the filesystem's
    /// own work on behalf of one, with pid 0, so the core reads nothing of it).
    pub async fn call_as(
        &self,
        peer: LocalPeer,
        operation: Operation,
        path: String,
        data: Map<String, Value>,
    ) -> Result<Box<LogicalResponse>, Errno> {
        let mut request = Request::new(operation, path, Transport::Fuse).with_data(data);
        request.peer = Some(peer);
        let started = Instant::now();
        let response = self.handler.handle(request).await;
        self.handler.observe(Observation {
            transport: Transport::Fuse,
            route: response.route.as_deref().unwrap_or("unmatched"),
            method: operation.as_str(),
            status: response.http_status(),
            elapsed: started.elapsed(),
        });
        match response.body {
            ResponseBody::Logical(logical) => Ok(logical),
            ResponseBody::NoContent => Ok(Box::default()),
            ResponseBody::Error { code, .. } => Err(errno(code)),
            _ => Err(Errno::EIO),
        }
    }

    /// The keys of a listing; a 404 (nothing there) is an empty list.
    pub fn list(&self, who: Who, path: String) -> Result<Vec<String>, Errno> {
        match self.call(who, Operation::List, path, Map::new()) {
            Ok(response) => Ok(response
                .data
                .as_ref()
                .and_then(|data| data.get("keys"))
                .and_then(Value::as_array)
                .map(|keys| {
                    keys.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()),
            Err(error) if error == Errno::ENOENT => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }
}
