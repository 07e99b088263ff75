//! The one entry point every door calls; the core implements it.

use std::future::Future;
use std::time::Duration;

use crate::{Request, Response, Transport};

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
}
