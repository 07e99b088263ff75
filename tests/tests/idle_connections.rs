//! Work before authentication is bounded on every door: connections that send
//! nothing cannot keep a new client out (the one idle the longest makes room
//! when every slot is taken), and a connection that never sends a request is
//! closed at the header deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use coffer_tests::Server;

/// The connections each listener serves at once (protocols' `MAX_CONNECTIONS`).
const SLOTS: usize = 4096;

/// An empty `grpc.health.v1.HealthCheckRequest`, framed (no compression, length 0).
const HEALTH_REQUEST: [u8; 5] = [0; 5];

/// `host:port` of the server's gRPC listener.
fn grpc_address(server: &Server) -> String {
    server
        .grpc_address
        .clone()
        .unwrap()
        .trim_start_matches("http://")
        .to_owned()
}

fn curl(args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let output = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        started.elapsed(),
    )
}

/// How long until the server closes `stream` (reading what it sends, such
/// as HTTP/2 settings, meanwhile); `None` if it is still open after `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 256];
    while started.elapsed() < limit {
        stream
            .set_read_timeout(Some(
                limit
                    .saturating_sub(started.elapsed())
                    .max(Duration::from_millis(10)),
            ))
            .unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(error)
                if error.kind() == std::io::ErrorKind::WouldBlock
                    || error.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn idle_connections_keep_no_new_client_out() {
    let server = Server::dev_with_all_doors();
    let grpc = grpc_address(&server);
    let socket = server.unix.clone().unwrap();
    let request = server.workspace().join("health.bin");
    std::fs::write(&request, HEALTH_REQUEST).unwrap();

    // Every slot of the gRPC port and of the socket taken by a connection
    // that sends nothing.
    let mut idle_tcp: Vec<TcpStream> = (0..SLOTS)
        .map(|_| TcpStream::connect(&grpc).unwrap())
        .collect();
    let idle_unix: Vec<UnixStream> = (0..SLOTS)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    // A new gRPC client is served at once.
    let (status, elapsed) = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "--data-binary",
        &format!("@{}", request.display()),
        &format!("http://{grpc}/grpc.health.v1.Health/Check"),
    ]);
    assert_eq!(status, "200", "gRPC health over {grpc}");
    assert!(elapsed < Duration::from_secs(1), "gRPC waited {elapsed:?}");

    // And so is a new client of the socket.
    let (status, elapsed) = curl(&[
        "--unix-socket",
        socket.to_str().unwrap(),
        "http://localhost/v1/sys/health",
    ]);
    assert_eq!(status, "200");
    assert!(
        elapsed < Duration::from_secs(1),
        "the socket waited {elapsed:?}"
    );

    // The room was made by closing the connection idle the longest: the first.
    assert!(
        closed_within(&mut idle_tcp[0], Duration::from_secs(2)).is_some(),
        "the idlest connection is still open"
    );

    // A connection that never sends a request is closed at the header
    // deadline (10 s by default).
    drop(idle_tcp.split_off(1));
    let mut late = TcpStream::connect(&grpc).unwrap();
    let waited = closed_within(&mut late, Duration::from_secs(15)).expect("closed");
    assert!(
        (Duration::from_secs(9)..Duration::from_secs(13)).contains(&waited),
        "closed after {waited:?}"
    );
    drop(idle_tcp);
    drop(idle_unix);
}

/// tonic reserves the length a gRPC message declares before it arrives: a
/// caller without a known token may declare only a small first message.
#[test]
fn a_stranger_cannot_make_the_grpc_door_reserve_a_large_message() {
    let server = Server::dev_with_all_doors();
    let grpc = grpc_address(&server);
    // A prefix declaring 1,000,000 bytes, and three of them.
    let request = server.workspace().join("large.bin");
    std::fs::write(&request, [0, 0, 0x0f, 0x42, 0x40, b'a', b'b', b'c']).unwrap();
    let grpc_status = |token: Option<&str>| {
        let mut args = vec![
            "-sS".to_owned(),
            "-D".to_owned(),
            "-".to_owned(),
            "-o".to_owned(),
            "/dev/null".to_owned(),
            "--http2-prior-knowledge".to_owned(),
            "-H".to_owned(),
            "content-type: application/grpc".to_owned(),
            "-H".to_owned(),
            "te: trailers".to_owned(),
            "--data-binary".to_owned(),
            format!("@{}", request.display()),
        ];
        if let Some(token) = token {
            args.push("-H".to_owned());
            args.push(format!("x-vault-token: {token}"));
        }
        args.push(format!("http://{grpc}/coffer.v1.Coffer/Read"));
        let output = std::process::Command::new("curl")
            .args(&args)
            .output()
            .unwrap();
        let headers = String::from_utf8_lossy(&output.stdout).into_owned();
        headers
            .lines()
            .find_map(|line| line.strip_prefix("grpc-status: "))
            .map(|status| status.trim().to_owned())
            .unwrap_or_else(|| panic!("no grpc-status in {headers}"))
    };
    // RESOURCE_EXHAUSTED at once for a stranger, whatever token it makes up.
    assert_eq!(grpc_status(None), "8");
    assert_eq!(grpc_status(Some("hvs.made-up")), "8");
    // A known token's message is read (and this one is cut short).
    assert_ne!(grpc_status(Some("root")), "8");
}
