//! A closed-loop load generator for the benchmarks: a fixed number of HTTP/1.1
//! keep-alive connections (TCP, or a Unix socket for `unix://` addresses), or
//! of gRPC streams over HTTP/2 connections, each sending its next request as
//! soon as the previous answer has arrived, timing every request after a
//! one-second warm-up. The same generator drives every server a benchmark
//! compares, so their figures differ only by the server. It shares the machine
//! with the server, so it is kept lean: HTTP/1.1 is written by hand and parsed
//! with httparse, gRPC uses the `h2` crate directly (the HTTP/2 layer hyper and
//! tonic are built on) and coalesces its writes as gRPC clients' writers do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coffer_protocols::listener::AfterQueued;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
    match address.strip_prefix("unix://") {
        Some(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .expect("connect to the server's socket");
            http1_calls(stream, "localhost", make, id, start, end).await
        }
        None => {
            let host = host_of(&address);
            let stream = connect_tcp(&host).await;
            http1_calls(stream, &host, make, id, start, end).await
        }
    }
}

/// The next request of an HTTP/1.1 connection, as bytes.
fn http1_request(call: &Call, host: &str) -> Vec<u8> {
    use std::io::Write as _;
    let mut request = Vec::with_capacity(256 + call.body.len());
    let _ = write!(
        request,
        "{} {} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        call.method,
        call.path,
        call.body.len()
    );
    for (name, value) in &call.headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(&call.body);
    request
}

/// Reads one response from `stream` into `buffer` (which may hold bytes of it
/// already); returns whether it was a success, or `None` when the connection
/// failed or spoke something else than a response with a length.
async fn http1_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
) -> Option<bool> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = response.parse(buffer).ok()? {
            let code = response.code?;
            let success = (200..300).contains(&code);
            let chunked = response.headers.iter().any(|header| {
                header.name.eq_ignore_ascii_case("transfer-encoding")
                    && header.value.eq_ignore_ascii_case(b"chunked")
            });
            if chunked {
                // Go's servers (OpenBao) chunk bodies larger than their buffer.
                read_chunked(stream, buffer, head).await?;
                return Some(success);
            }
            let length: usize = match response
                .headers
                .iter()
                .find(|header| header.name.eq_ignore_ascii_case("content-length"))
            {
                Some(header) => std::str::from_utf8(header.value).ok()?.parse().ok()?,
                // These never have a body.
                None if code == 204 || code == 304 => 0,
                None => return None,
            };
            while buffer.len() < head + length {
                if stream.read_buf(buffer).await.ok()? == 0 {
                    return None;
                }
            }
            buffer.drain(..head + length);
            return Some(success);
        }
        if stream.read_buf(buffer).await.ok()? == 0 {
            return None;
        }
    }
}

/// Consumes a chunked body that starts at `start` in `buffer` (no trailers).
async fn read_chunked<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
    start: usize,
) -> Option<()> {
    let mut position = start;
    loop {
        let line_end = loop {
            if let Some(offset) = buffer[position..]
                .windows(2)
                .position(|window| window == b"\r\n")
            {
                break position + offset;
            }
            if stream.read_buf(buffer).await.ok()? == 0 {
                return None;
            }
        };
        let line = std::str::from_utf8(&buffer[position..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        position = line_end + 2;
        // The chunk and its CRLF; the last chunk is followed by a CRLF alone.
        let needed = position + size + 2;
        while buffer.len() < needed {
            if stream.read_buf(buffer).await.ok()? == 0 {
                return None;
            }
        }
        position = needed;
        if size == 0 {
            buffer.drain(..position);
            return Some(());
        }
    }
}

/// Calls over one keep-alive HTTP/1.1 connection, written and parsed by hand
/// (httparse) so the load generator costs little beside the server.
async fn http1_calls<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    make: MakeCall,
    id: usize,
    start: Instant,
    end: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut counter = 0usize;
    let mut buffer = Vec::with_capacity(16 * 1024);
    while Instant::now() < end {
        counter += 1;
        let request = http1_request(&make(id, counter), host);
        let sent = Instant::now();
        let answer = match stream.write_all(&request).await {
            Ok(()) => http1_response(&mut stream, &mut buffer).await,
            Err(_) => None,
        };
        tally.record(sent, start, answer == Some(true));
        if answer.is_none() {
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

/// One unary call on an HTTP/2 connection (the `h2` crate, as hyper and
/// tonic use it, without their layers); whether it ended with status 0.
async fn grpc_call(
    sender: h2::client::SendRequest<Bytes>,
    uri: http::Uri,
    call: GrpcCall,
) -> Result<bool, h2::Error> {
    let mut sender = sender.ready().await?;
    let mut builder = http::Request::builder()
        .method(http::Method::POST)
        .uri(uri)
        .header(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        )
        .header(http::header::TE, http::HeaderValue::from_static("trailers"));
    for (name, value) in &call.metadata {
        builder = builder.header(*name, value);
    }
    let request = builder.body(()).expect("request");
    let (response, mut send) = sender.send_request(request, false)?;
    // A gRPC message: no compression, a 4-byte big-endian length.
    let mut framed = Vec::with_capacity(call.message.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(call.message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&call.message);
    send.send_data(Bytes::from(framed), true)?;
    let response = response.await?;
    // A trailers-only answer (an error) has its status in the headers.
    let early = response.headers().get("grpc-status").cloned();
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        body.flow_control().release_capacity(chunk.len())?;
    }
    let trailers = body.trailers().await?;
    Ok(grpc_status(early.as_ref(), trailers.as_ref()).as_deref() == Some("0"))
}

async fn grpc_stream(
    sender: h2::client::SendRequest<Bytes>,
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
        let sent = Instant::now();
        let outcome = grpc_call(sender.clone(), target, call).await;
        tally.record(sent, start, matches!(outcome, Ok(true)));
        if outcome.is_err() {
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
            let (sender, connection) = h2::client::handshake(stream)
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
