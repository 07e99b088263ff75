//! The one accept loop of the client doors (HTTP/1.1 and HTTP/2 for the HTTP
//! API, HTTP/2 for gRPC): TCP (plain or TLS with rustls) or a Unix socket
//! whose callers the kernel names (`peer::identify`), an explicit connection
//! limit, header-read and idle timeouts, and a graceful drain on shutdown.

mod activity;
pub mod admission;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;

use self::activity::{Activity, Registry, Tracked};
use self::admission::{Admission, Admitted};
use crate::connection::{BodyDeadline, Caller};
use crate::grpc::Services;
use crate::http::dispatch;
use crate::{Handler, peer};

/// Connections served at once per listener; further ones wait in the kernel's
/// accept queue until one closes.
const MAX_CONNECTIONS: usize = 4096;
/// A TLS handshake must finish within this time.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// In-flight requests get this long to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS certificate file {path}: {source}")]
    Certificate {
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("cannot read TLS key file {path}: {source}")]
    Key {
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("TLS certificate file {0} holds no certificate")]
    NoCertificate(String),
    #[error("the TLS certificate and key do not form a valid server identity: {0}")]
    Config(#[from] rustls::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("accepting connections failed: {0}")]
    Accept(#[from] io::Error),
    #[error(transparent)]
    Grpc(#[from] crate::grpc::ReflectionError),
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Vault's HTTP API over HTTP/1.1.
    Http,
    /// The gRPC API over HTTP/2.
    Grpc,
    /// Both on one socket: HTTP/1.1 requests get the HTTP API; HTTP/2
    /// requests with a gRPC content type get the gRPC API (the Unix socket).
    Both,
}

/// How long a client may take, as Vault's listener options name them.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// `http_read_header_timeout`: to send request headers; also how long an idle
    /// keep-alive connection stays open.
    pub read_header: Duration,
    /// `http_read_timeout`: to send the whole request body.
    pub read_body: Duration,
    /// `http_idle_timeout`: how long an HTTP/2 connection (gRPC, and HTTP/2 on
    /// the Unix socket) with no request in flight stays open. A connection
    /// that sends no request at all gets `read_header`.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            read_header: Duration::from_secs(10),
            read_body: BodyDeadline::DEFAULT.0,
            idle: Duration::from_secs(300),
        }
    }
}

/// HTTP/2 streams one connection may have open at once.
const MAX_STREAMS: u32 = 128;
/// What an HTTP/2 peer may send before the server reads it: per stream and
/// per connection (flow-control windows), so a connection buffers at most
/// this much that no handler asked for.
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;

/// A bound listener of the HTTP door.
pub struct Listener {
    pub socket: Socket,
    pub protocol: Protocol,
    /// TLS on a TCP socket; a Unix socket is always plain (the kernel, not a
    /// certificate, says who is at the other end).
    pub tls: Option<TlsAcceptor>,
    pub timeouts: Timeouts,
}

/// Where a listener accepts connections.
pub enum Socket {
    Tcp(TcpListener),
    /// Every request on it carries the caller's uid, gid and pid as the kernel
    /// reported them when the caller connected.
    Unix(UnixListener),
}

/// One accepted connection. A Unix-socket caller is identified in the
/// connection's own task ([`peer::identify`]), not in the accept loop.
enum Accepted {
    Tcp(tokio::net::TcpStream, Caller),
    Unix(tokio::net::UnixStream),
}

impl Socket {
    async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Socket::Tcp(listener) => {
                let (stream, address) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok(Accepted::Tcp(stream, Caller::Remote(address.to_string())))
            }
            Socket::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                Ok(Accepted::Unix(stream))
            }
        }
    }
}

/// A TLS acceptor from PEM files, using the workspace's one crypto provider,
/// offering (ALPN) what `protocol` speaks.
pub fn tls_acceptor(
    cert_file: &Path,
    key_file: &Path,
    protocol: Protocol,
) -> Result<TlsAcceptor, TlsError> {
    let certificates = CertificateDer::pem_file_iter(cert_file)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certificate {
            path: cert_file.display().to_string(),
            source,
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate(cert_file.display().to_string()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|source| TlsError::Key {
        path: key_file.display().to_string(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certificates, key)?;
    config.alpn_protocols = match protocol {
        Protocol::Http => vec![b"http/1.1".to_vec()],
        Protocol::Grpc => vec![b"h2".to_vec()],
        Protocol::Both => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `handler` on `listener` until `shutdown` resolves, then stops accepting
/// and gives in-flight requests [`DRAIN_TIMEOUT`] to finish.
pub async fn serve<H: Handler>(
    listener: Listener,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let protocol = listener.protocol;
    let app = match protocol {
        Protocol::Http => App::Http(handler),
        Protocol::Grpc => App::Grpc(Services::new(handler)?),
        Protocol::Both => App::Both(handler.clone(), Services::new(handler)?),
    };
    let graceful = GracefulShutdown::new();
    let admission = Admission::new(MAX_CONNECTIONS);
    let registry = Arc::new(Registry::default());
    tokio::pin!(shutdown);
    loop {
        // Every slot taken: the connection idle the longest makes room, so
        // idle connections cannot keep a new client waiting.
        if admission.is_full() {
            registry.close_idlest();
        }
        let (accepted, permit) = match admission
            .admit(|| listener.socket.accept(), &mut shutdown)
            .await
        {
            Admitted::Connection(accepted, permit) => (accepted, permit),
            Admitted::Shutdown => break,
            Admitted::Failed(error) => return Err(ServeError::Accept(error)),
        };
        let app = app.clone();
        let timeouts = listener.timeouts;
        let activity = registry.open();
        let tracked = activity.clone();
        let service = move |caller: Caller| {
            tower::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(caller.clone());
                request
                    .extensions_mut()
                    .insert(BodyDeadline(timeouts.read_body));
                let in_flight = tracked.start();
                let response = app.clone().call(request);
                async move {
                    let response = response.await?;
                    Ok::<_, Infallible>(response.map(|body| {
                        axum::body::Body::new(Tracked {
                            body,
                            _in_flight: in_flight,
                        })
                    }))
                }
            })
        };
        let watcher = graceful.watcher();
        let tls = listener.tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (stream, caller) = match accepted {
                Accepted::Unix(stream) => {
                    // A caller that cannot be pinned down is dropped, not
                    // served with a guess.
                    let caller = match peer::identify(&stream) {
                        Ok(peer) => Caller::Local(peer),
                        Err(error) => {
                            tracing::info!(%error, "refused a Unix-socket connection");
                            return;
                        }
                    };
                    let service = service(caller);
                    let serving = serve_connection(stream, service, watcher, timeouts, protocol);
                    return until_idle(serving, &activity, timeouts).await;
                }
                Accepted::Tcp(stream, caller) => (stream, caller),
            };
            let service = service(caller);
            match tls {
                None => {
                    let serving = serve_connection(stream, service, watcher, timeouts, protocol);
                    until_idle(serving, &activity, timeouts).await;
                }
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => {
                            let serving =
                                serve_connection(stream, service, watcher, timeouts, protocol);
                            until_idle(serving, &activity, timeouts).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    admission::drain(graceful, DRAIN_TIMEOUT).await;
    Ok(())
}

/// Serves a connection until it ends, or until it has been idle past its
/// limit (or is asked to make room), when it is dropped: nothing is in flight
/// on it then.
async fn until_idle(serving: impl Future<Output = ()>, activity: &Activity, timeouts: Timeouts) {
    tokio::select! {
        () = serving => {}
        () = activity.until_idle(timeouts.read_header, timeouts.idle) => {
            tracing::debug!("closed an idle connection");
        }
    }
}

/// What a listener's connections are served by.
enum App<H: Handler> {
    Http(Arc<H>),
    Grpc(Services<H>),
    /// gRPC content types go to the gRPC services, the rest to HTTP.
    Both(Arc<H>, Services<H>),
}

impl<H: Handler> Clone for App<H> {
    fn clone(&self) -> Self {
        match self {
            App::Http(http) => App::Http(http.clone()),
            App::Grpc(grpc) => App::Grpc(grpc.clone()),
            App::Both(http, grpc) => App::Both(http.clone(), grpc.clone()),
        }
    }
}

impl<H: Handler> App<H> {
    async fn call(
        self,
        request: hyper::Request<Incoming>,
    ) -> Result<axum::response::Response, Infallible> {
        let is_grpc = |request: &hyper::Request<Incoming>| {
            request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
        };
        match self {
            App::Grpc(grpc) => grpc.call(request).await,
            App::Both(_, grpc) if is_grpc(&request) => grpc.call(request).await,
            // Boxed: inline, its 4.5 KB would be in every gRPC stream's task too.
            App::Http(handler) | App::Both(handler, _) => {
                Ok(Box::pin(dispatch(&*handler, request.map(axum::body::Body::new))).await)
            }
        }
    }
}

async fn serve_connection<S, T>(
    stream: S,
    service: T,
    watcher: Watcher,
    timeouts: Timeouts,
    protocol: Protocol,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: tower::Service<
            hyper::Request<Incoming>,
            Response = axum::response::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    T::Future: Send + 'static,
{
    let io = TokioIo::new(stream);
    let service = TowerToHyperService::new(service);
    let result = match protocol {
        Protocol::Http => {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.read_header)
                .keep_alive(true)
                .serve_connection(io, service);
            watcher
                .watch(connection)
                .await
                .map_err(|error| error.to_string())
        }
        Protocol::Grpc => {
            let connection = http2(hyper::server::conn::http2::Builder::new(
                TokioExecutor::new(),
            ))
            // gRPC has no use for a Date header.
            .auto_date_header(false)
            .serve_connection(io, service);
            AfterQueued::new(watcher.watch(connection))
                .await
                .map_err(|error| error.to_string())
        }
        Protocol::Both => {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.read_header)
                .keep_alive(true);
            http2(builder.http2());
            let connection = builder.serve_connection(io, service).into_owned();
            watcher
                .watch(connection)
                .await
                .map_err(|error| error.to_string())
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// An HTTP/2 server's limits: streams per connection and flow-control
/// windows (what a peer may send unread). No keep-alive pings: with them,
/// hyper takes a lock shared by all of a connection's streams for every frame
/// it reads; idle connections are closed by `until_idle` instead.
fn http2<B: Http2Limits>(builder: B) -> B {
    builder.limits()
}

/// The same settings on hyper's HTTP/2 builder and on hyper-util's (the
/// Unix socket's auto builder), which are distinct types with the same methods.
trait Http2Limits {
    fn limits(self) -> Self;
}

macro_rules! http2_limits {
    ($builder:ty) => {
        impl Http2Limits for $builder {
            fn limits(mut self) -> Self {
                self.timer(TokioTimer::new())
                    .max_concurrent_streams(MAX_STREAMS)
                    .initial_stream_window_size(STREAM_WINDOW)
                    .initial_connection_window_size(CONNECTION_WINDOW);
                self
            }
        }
    };
}

http2_limits!(hyper::server::conn::http2::Builder<TokioExecutor>);
http2_limits!(hyper_util::server::conn::auto::Http2Builder<'_, TokioExecutor>);

/// An HTTP/2 connection polled only after the tasks already queued on its
/// worker have run. Each of its streams runs as a task and wakes the
/// connection when its response is ready; polled at once, the connection would
/// write each response on its own. Polled after the queue, it writes the
/// responses of the streams that finished meanwhile together. A wake-up costs
/// one extra trip through the run queue.
pub struct AfterQueued<F> {
    future: Pin<Box<F>>,
    queued: bool,
}

impl<F: Future> AfterQueued<F> {
    pub fn new(future: F) -> Self {
        AfterQueued {
            future: Box::pin(future),
            queued: false,
        }
    }
}

impl<F: Future> Future for AfterQueued<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<F::Output> {
        if !self.queued {
            // Tokio puts a task that wakes itself behind the queued ones.
            self.queued = true;
            context.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.queued = false;
        self.future.as_mut().poll(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_connection_after_queued_runs_behind_the_tasks_queued_before_its_poll() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        runtime.block_on(async {
            let record = |name: &'static str| {
                let order = order.clone();
                async move { order.lock().unwrap().push(name) }
            };
            // Spawned first: polled plainly it would run first.
            let plain = tokio::spawn(record("plain"));
            let connection = tokio::spawn(AfterQueued::new(record("connection")));
            let streams: Vec<_> = (0..3).map(|_| tokio::spawn(record("stream"))).collect();
            plain.await.unwrap();
            connection.await.unwrap();
            for stream in streams {
                stream.await.unwrap();
            }
        });
        assert_eq!(
            *order.lock().unwrap(),
            ["plain", "stream", "stream", "stream", "connection"]
        );
    }
}
