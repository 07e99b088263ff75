//! The gRPC door (package `coffer.v1`, `proto/coffer/v1/coffer.proto`): each
//! RPC becomes one neutral request, answered by the same pipeline as HTTP.
//! Beside it: the standard health service (`grpc.health.v1`, NOT_SERVING while
//! sealed) and server reflection (v1 and v1alpha). Served by the doors'
//! accept loop over HTTP/2 (`listener::serve` with
//! [`crate::listener::Protocol::Grpc`]).

mod capped;
pub mod codec;
mod convert;
mod service;
pub mod wire;

use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;

pub use convert::{code, status};
pub use service::CofferService;

use crate::{Handler, Operation, Request, ResponseBody, Transport};

/// The code generated from `proto/coffer/v1/coffer.proto`.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic, unused_qualifications)]
    tonic::include_proto!("coffer.v1");

    pub use super::wire::Response;
}

/// The encoded descriptors of `coffer.v1` and its imports, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("coffer_descriptor");

/// Messages larger than this are refused (RESOURCE_EXHAUSTED... as tonic
/// reports it: OUT_OF_RANGE), as HTTP bodies over 32 MiB are.
pub const MAX_MESSAGE_BYTES: usize = crate::connection::MAX_BODY_BYTES;

/// How often the health service learns whether the server is unsealed.
const HEALTH_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
#[error("cannot build the gRPC reflection service: {0}")]
pub struct ReflectionError(#[from] tonic_reflection::server::Error);

/// The gRPC services: `coffer.v1.Coffer`, health and reflection.
pub struct Services<H: Handler> {
    /// Called directly: its calls are the hot path.
    coffer: pb::coffer_server::CofferServer<CofferService<H>>,
    /// Health and reflection, through tonic's router.
    others: axum::Router,
    /// To tell a caller it knows from a stranger before reading a body.
    handler: Arc<H>,
}

impl<H: Handler> Clone for Services<H> {
    fn clone(&self) -> Self {
        Services {
            coffer: self.coffer.clone(),
            others: self.others.clone(),
            handler: self.handler.clone(),
        }
    }
}

/// The path prefix of `coffer.v1.Coffer`'s methods.
const COFFER_PATH: &str = "/coffer.v1.Coffer/";

impl<H: Handler> Services<H> {
    /// Must be called inside a Tokio runtime (health follows the seal state from
    /// a task that ends when the handler is dropped).
    pub fn new(handler: Arc<H>) -> Result<Self, ReflectionError> {
        let coffer = pb::coffer_server::CofferServer::new(CofferService::new(handler.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (reporter, health) = tonic_health::server::health_reporter();
        tokio::spawn(follow_seal(Arc::downgrade(&handler), reporter));
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // Each version lists both reflection services.
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                )
                .include_reflection_service(false)
        };
        let others = tonic::service::Routes::new(health)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .prepare()
            .into_axum_router();
        Ok(Services {
            coffer,
            others,
            handler,
        })
    }

    /// Answers one gRPC call (an unknown method gets UNIMPLEMENTED).
    pub async fn call(
        self,
        request: http::Request<hyper::body::Incoming>,
    ) -> Result<axum::response::Response, Infallible> {
        use tower::ServiceExt;
        // A caller with neither a local identity nor a token the server knows
        // may send only a small first message (tonic reserves what a message
        // declares before it arrives); the token is looked up only for a
        // message over that.
        let request = if matches!(
            request.extensions().get::<crate::connection::Caller>(),
            Some(crate::connection::Caller::Local(_))
        ) {
            request.map(|body| capped::Capped::new(body, usize::MAX, None))
        } else {
            let known = self.known(request.headers());
            request.map(|body| capped::Capped::new(body, capped::STRANGER_MESSAGE_BYTES, known))
        };
        if request.uri().path().starts_with(COFFER_PATH) {
            let response = self.coffer.oneshot(request).await?;
            Ok(response.map(axum::body::Body::new))
        } else {
            self.others
                .oneshot(request.map(axum::body::Body::new))
                .await
        }
    }

    /// The check of the token `headers` carry, for [`capped::Capped`].
    fn known(&self, headers: &http::HeaderMap) -> Option<capped::Known> {
        let token = crate::connection::token_of(
            headers
                .get("x-vault-token")
                .map(http::HeaderValue::as_bytes),
            headers
                .get(http::header::AUTHORIZATION)
                .map(http::HeaderValue::as_bytes),
        )
        .ok()
        .flatten()?;
        let handler = self.handler.clone();
        Some(Box::new(move || handler.knows_token(&token)))
    }
}

/// Keeps the health service's answer true: SERVING while unsealed (for the
/// whole server, `""`, and for `coffer.v1.Coffer`), NOT_SERVING otherwise.
async fn follow_seal<H: Handler>(handler: Weak<H>, reporter: tonic_health::server::HealthReporter) {
    use tonic_health::ServingStatus;
    const SERVICE: &str = "coffer.v1.Coffer";
    let mut last = None;
    loop {
        let Some(strong) = handler.upgrade() else {
            return;
        };
        let response = strong
            .handle(Request::new(
                Operation::Read,
                "sys/seal-status",
                Transport::Grpc,
            ))
            .await;
        drop(strong);
        let unsealed = matches!(
            &response.body,
            ResponseBody::Raw { body, .. } if body["sealed"] == false
        );
        if last != Some(unsealed) {
            let status = if unsealed {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            reporter.set_service_status(SERVICE, status).await;
            last = Some(unsealed);
        }
        tokio::time::sleep(HEALTH_POLL).await;
    }
}
