//! The one entry point every door calls; the core implements it.

use std::future::Future;
use std::time::Duration;

use crate::{ClientToken, ErrorCode, Request, Response, Transport};

/// One event of a watch stream. Never carries a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A write this node applied from the replicated log.
    Change {
        path: String,
        /// `write`, `patch` or `delete`.
        operation: String,
        /// The KV v2 version made; 0 when the path has none.
        version: u64,
        /// When the write ran, milliseconds since the Unix epoch.
        time_ms: u64,
        /// The Raft log index that applied it.
        index: u64,
    },
    /// One of the caller's leases expires soon.
    LeaseExpiring {
        lease_id: String,
        /// Seconds since the Unix epoch.
        expire_time: u64,
        ttl: u64,
        renewable: bool,
    },
    /// The watcher fell behind and this many changes were dropped.
    Lagged { missed: u64 },
}

/// Events until the watch ends: `Err` ends it with that response's error
/// (the token was revoked, the server sealed).
pub type WatchStream = tokio::sync::mpsc::Receiver<Result<WatchEvent, Response>>;

/// One finished request, as a door saw it: fed to metrics.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub transport: Transport,
    /// The response's route label, or `"unmatched"` when no route was reached (the
    /// door refused the request, the path was invalid, or the server is sealed).
    pub route: &'a str,
    pub method: &'a str,
    pub status: u16,
    pub elapsed: Duration,
}

/// The core's request pipeline, seen from a door.
pub trait Handler: Send + Sync + 'static {
    /// Authenticate, authorize, route and answer one request.
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;

    /// Record a finished request (metrics). Must not block.
    fn observe(&self, observation: Observation<'_>);

    /// Whether `token` is one the server would accept now (cheap: a cached
    /// lookup). Doors use it to limit what strangers may make them buffer.
    fn knows_token(&self, token: &ClientToken) -> bool {
        let _ = token;
        false
    }

    /// Whether the caller of `request` (its body not read yet) may send a body
    /// larger than a JSON request's: the door reads such a body (a snapshot
    /// upload) only after this, so an unauthenticated caller cannot make the
    /// server buffer it. `Err` is the answer that refuses it.
    fn admit(&self, request: &Request) -> impl Future<Output = Result<(), Response>> + Send {
        let _ = request;
        async {
            Err(Response::error(
                ErrorCode::UnsupportedOperation,
                "this server takes no large uploads",
            ))
        }
    }

    /// Starts a watch of the changes under `request.path` (a prefix), as
    /// authenticated and authorized as any request; `request.data` may hold
    /// `lease_warning_seconds`.
    fn watch(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<WatchStream, Response>> + Send {
        let _ = request;
        async {
            Err(Response::error(
                ErrorCode::UnsupportedOperation,
                "this server does not support watches",
            ))
        }
    }
}
