//! The cluster listener: Raft RPCs and forwarded requests from other members, over
//! mutual TLS on `cluster_addr`, separate from the client API. Connection
//! slots, accept retries and the drain are the client doors'
//! (`coffer_protocols::listener::admission`).
//!
//! Every connection must present a certificate from the cluster CA (the TLS
//! handshake enforces it), and every request must name its sender in
//! `X-Coffer-Node`, which that certificate has to certify. What a verified member
//! may then do is the [`RpcHandler`]'s decision (it checks membership).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use coffer_protocols::listener::admission::{self, Admission, Admitted};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::network::NODE_HEADER;
use super::tls;

/// Raft RPC bodies, snapshots chunks and restores included, stay below this.
const MAX_BODY_BYTES: usize = 512 * 1024 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 256;
/// Raft RPCs in flight get this long to finish once the listener stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the cluster listener serves, for a sender whose certificate is verified.
pub trait RpcHandler: Send + Sync + 'static {
    /// Handles `path` from member `sender`: an HTTP status and a JSON body.
    fn handle(&self, path: String, sender: u64, body: Bytes) -> BoxFuture<'_, (u16, Vec<u8>)>;
}

fn answer(status: u16, body: Vec<u8>) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn error(status: u16, message: &str) -> hyper::Response<Full<Bytes>> {
    answer(
        status,
        serde_json::to_vec(&serde_json::json!({ "errors": [message] })).unwrap_or_default(),
    )
}

async fn serve_request(
    request: hyper::Request<Incoming>,
    peer_certificate: Option<CertificateDer<'static>>,
    handler: Arc<dyn RpcHandler>,
) -> hyper::Response<Full<Bytes>> {
    let Some(certificate) = peer_certificate else {
        return error(401, "a cluster certificate is required");
    };
    let sender = request
        .headers()
        .get(NODE_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let Some(sender) = sender.filter(|sender| tls::certifies(&certificate, *sender)) else {
        return error(
            403,
            "the client certificate does not certify the claimed node",
        );
    };
    if request.method() != hyper::Method::POST {
        return error(405, "cluster RPCs are POST");
    }
    let path = request.uri().path().to_owned();
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return error(413, "request body too large or unreadable"),
    };
    let (status, body) = handler.handle(path, sender, body).await;
    answer(status, body)
}

/// Serves the cluster listener until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    handler: Arc<dyn RpcHandler>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(config);
    let admission = Admission::new(MAX_CONNECTIONS);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let stopping = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stopping);
    loop {
        let (stream, permit) = match admission.admit(|| listener.accept(), &mut stopping).await {
            Admitted::Connection((stream, _), permit) => (stream, permit),
            Admitted::Shutdown => break,
            // The cluster listener keeps trying: without it the node drops
            // out of the cluster.
            Admitted::Failed(error) => {
                tracing::error!(%error, "the cluster listener cannot accept; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            else {
                tracing::debug!("cluster TLS handshake failed");
                return;
            };
            let certificate = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|certificate| certificate.clone().into_owned());
            let service = service_fn(move |request| {
                let handler = handler.clone();
                let certificate = certificate.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        serve_request(request, certificate, handler).await,
                    )
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            let _ = watcher.watch(connection).await;
        });
    }
    drop(listener);
    admission::drain(graceful, DRAIN_TIMEOUT).await;
}
