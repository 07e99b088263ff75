//! A closed-loop load generator for the benchmarks: a fixed number of HTTP/1.1
//! keep-alive connections (TCP, or a Unix socket for `unix://` addresses), or
//! of gRPC streams over HTTP/2 connections, each sending its next request as
//! soon as the previous answer has arrived, timing every request after a
//! one-second warm-up. The same generator drives every server a benchmark
//! compares, so their figures differ only by the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coffer_protocols::http::AfterQueued;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// One request to send.
pub struct Call {
    pub method: &'static str,
    pub path: String,
    pub body: Bytes,
    pub headers: Vec<(&'static str, String)>,
}

/// Builds the request a connection sends next: (connection id, request count).
pub type MakeCall = Arc<dyn Fn(usize, usize) -> Call + Send + Sync>;

/// What one workload did in its measured window.
pub struct Outcome {
    pub requests: usize,
    pub errors: usize,
    pub seconds: f64,
    /// Microseconds, sorted.
    pub latencies: Vec<u32>,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// Several runs of one workload as one.
    pub fn merge(outcomes: Vec<Outcome>) -> Outcome {
        let mut merged = Outcome {
            requests: 0,
            errors: 0,
            seconds: 0.0,
            latencies: Vec::new(),
        };
        for outcome in outcomes {
            merged.requests += outcome.requests;
            merged.errors += outcome.errors;
            merged.seconds += outcome.seconds;
            merged.latencies.extend(outcome.latencies);
        }
        merged.latencies.sort_unstable();
        merged
    }

    /// The latency at `fraction` (0.99 for p99), in milliseconds.
    pub fn percentile(&self, fraction: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * fraction).round() as usize;
        f64::from(self.latencies[index]) / 1000.0
    }
}

/// What one connection or stream did in the measured window.
#[derive(Default)]
struct Tally {
    requests: usize,
    errors: usize,
    /// Microseconds.
    latencies: Vec<u32>,
}

impl Tally {
    /// Counts a request sent at `sent` that just finished, if it was sent after
    /// the warm-up ended at `start`.
    fn record(&mut self, sent: Instant, start: Instant, ok: bool) {
        if sent < start {
            return;
        }
        self.requests += 1;
        if !ok {
            self.errors += 1;
        }
        let micros = sent.elapsed().as_micros().min(u128::from(u32::MAX));
        self.latencies.push(micros as u32);
    }

    /// The tallies of `tasks` as one outcome over `seconds`.
    async fn outcome(tasks: Vec<tokio::task::JoinHandle<Tally>>, seconds: u64) -> Outcome {
        let mut outcome = Outcome {
            requests: 0,
            errors: 0,
            seconds: seconds as f64,
            latencies: Vec::new(),
        };
        for task in tasks {
            let tally = task.await.expect("load task");
            outcome.requests += tally.requests;
            outcome.errors += tally.errors;
            outcome.latencies.extend(tally.latencies);
        }
        outcome.latencies.sort_unstable();
        outcome
    }
}

/// The load runs on one thread: the server under test keeps the other core.
fn one_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `http://host:port/` -> `host:port`.
fn host_of(address: &str) -> String {
    address
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

async fn connect_tcp(host: &str) -> tokio::net::TcpStream {
    let stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("connect to the server under test");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
}

async fn connection(
    address: String,
    make: MakeCall,
    id: usize,
    start: Instant,
    end: Instant,
) -> Tally {
    let (host, mut sender) = match address.strip_prefix("unix://") {
        Some(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .expect("connect to the server's socket");
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("HTTP handshake");
            tokio::spawn(connection);
            ("localhost".to_owned(), sender)
        }
        None => {
            let host = host_of(&address);
            let stream = connect_tcp(&host).await;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("HTTP handshake");
            tokio::spawn(connection);
            (host, sender)
        }
    };
    let host = http::HeaderValue::from_str(&host).expect("host header");
    let mut tally = Tally::default();
    let mut counter = 0usize;
    while Instant::now() < end {
        counter += 1;
        let call = make(id, counter);
        let mut builder = hyper::Request::builder()
            .method(call.method)
            .uri(call.path)
            .header(http::header::HOST, host.clone())
            .header(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
        for (name, value) in &call.headers {
            builder = builder.header(*name, value);
        }
        let request = builder.body(Full::new(call.body)).expect("request");
        let sent = Instant::now();
        let ok = match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                response.into_body().collect().await.is_ok() && status.is_success()
            }
            Err(_) => false,
        };
        tally.record(sent, start, ok);
        if !ok && sender.ready().await.is_err() {
            break;
        }
    }
    tally
}

/// Runs `connections` connections against `address` for one second of warm-up and
/// then `seconds` measured, on a one-thread runtime (the server keeps the other
/// core).
pub fn run(address: &str, connections: usize, seconds: u64, make: MakeCall) -> Outcome {
    let runtime = one_thread_runtime();
    runtime.block_on(async {
        let start = Instant::now() + Duration::from_secs(1);
        let end = start + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..connections)
            .map(|id| tokio::spawn(connection(address.to_owned(), make.clone(), id, start, end)))
            .collect();
        Tally::outcome(tasks, seconds).await
    })
}

/// One unary gRPC call: the method's path (`/coffer.v1.Coffer/Read`), the
/// encoded request message, and metadata.
pub struct GrpcCall {
    pub path: &'static str,
    pub message: Bytes,
    pub metadata: Vec<(&'static str, String)>,
}

/// Builds the call a stream sends next: (stream id, request count).
pub type MakeGrpcCall = Arc<dyn Fn(usize, usize) -> GrpcCall + Send + Sync>;

/// The gRPC status of a finished call (from the trailers, or the headers of a
/// trailers-only answer); `None` if there was none.
fn grpc_status(
    early: Option<&http::HeaderValue>,
    trailers: Option<&http::HeaderMap>,
) -> Option<String> {
    trailers
        .and_then(|trailers| trailers.get("grpc-status"))
        .or(early)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

async fn grpc_stream(
    mut sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    host: String,
    make: MakeGrpcCall,
    id: usize,
    start: Instant,
    end: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut counter = 0usize;
    // The URI of the last method called, parsed once.
    let mut uri: Option<(&'static str, http::Uri)> = None;
    while Instant::now() < end {
        counter += 1;
        let call = make(id, counter);
        let target = match &uri {
            Some((path, target)) if *path == call.path => target.clone(),
            _ => {
                let target: http::Uri = format!("http://{host}{}", call.path)
                    .parse()
                    .expect("method URI");
                uri = Some((call.path, target.clone()));
                target
            }
        };
        // A gRPC message: no compression, a 4-byte big-endian length.
        let mut framed = Vec::with_capacity(call.message.len() + 5);
        framed.push(0);
        framed.extend_from_slice(&(call.message.len() as u32).to_be_bytes());
        framed.extend_from_slice(&call.message);
        let mut builder = hyper::Request::builder()
            .method("POST")
            .uri(target)
            .header(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            )
            .header(http::header::TE, http::HeaderValue::from_static("trailers"));
        for (name, value) in &call.metadata {
            builder = builder.header(*name, value);
        }
        let request = builder
            .body(Full::new(Bytes::from(framed)))
            .expect("request");
        let sent = Instant::now();
        let ok = match sender.send_request(request).await {
            Ok(response) => {
                // A trailers-only answer (an error) has its status here.
                let early = response.headers().get("grpc-status").cloned();
                match response.into_body().collect().await {
                    Ok(collected) => {
                        grpc_status(early.as_ref(), collected.trailers()).as_deref() == Some("0")
                    }
                    Err(_) => false,
                }
            }
            Err(_) => false,
        };
        tally.record(sent, start, ok);
        if !ok && sender.ready().await.is_err() {
            break;
        }
    }
    tally
}

/// Runs `streams` concurrent unary gRPC calls spread over `connections`
/// HTTP/2 connections to `address` (`http://host:port`), one second of
/// warm-up and then `seconds` measured, on a one-thread runtime.
pub fn run_grpc(
    address: &str,
    connections: usize,
    streams: usize,
    seconds: u64,
    make: MakeGrpcCall,
) -> Outcome {
    let runtime = one_thread_runtime();
    runtime.block_on(async {
        let host = host_of(address);
        let mut senders = Vec::new();
        for _ in 0..connections {
            let stream = connect_tcp(&host).await;
            let (sender, connection) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                TokioIo::new(stream),
            )
            .await
            .expect("HTTP/2 handshake");
            // Writes coalesced as a gRPC client's writer does (grpc-go's
            // loopy writer flushes once nothing more is ready).
            tokio::spawn(AfterQueued::new(connection));
            senders.push(sender);
        }
        let start = Instant::now() + Duration::from_secs(1);
        let end = start + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..streams)
            .map(|id| {
                let sender = senders[id % connections].clone();
                tokio::spawn(grpc_stream(
                    sender,
                    host.clone(),
                    make.clone(),
                    id,
                    start,
                    end,
                ))
            })
            .collect();
        Tally::outcome(tasks, seconds).await
    })
}
