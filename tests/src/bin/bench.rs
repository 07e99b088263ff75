//! The HTTP benchmark: KV v2 read and durable-write throughput and latency over
//! HTTP/1.1 keep-alive with 32 connections, using a token whose policies hold 100
//! path rules, next to a ceiling measured in the same run: a no-op handler on the
//! same HTTP stack (axum adapter, `to_neutral`, `render`) under the same load
//! generator. Prints each figure and its ratio to the ceiling; then the reads again
//! with a file audit device, and their ratio to the reads without one.
//!
//! Usage: `coffer-bench [SECONDS]` (default 5 per workload, after 1 s of warm-up).
//! The server under test is the real `coffer` binary in dev mode, with its data on
//! disk under /var/tmp: every write is synced before it is acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use coffer_protocols::{
    Handler, LogicalResponse, Observation, Request, Response, ResponseBody, listener,
};
use coffer_tests::Server;
use coffer_tests::load::{self, Call, MakeCall, Outcome};
use serde_json::json;

const CONNECTIONS: usize = 32;
const READ_KEYS: usize = 1000;

/// The ceiling: answers every request at once with a small envelope.
struct NoopHandler;

impl Handler for NoopHandler {
    async fn handle(&self, request: Request) -> Response {
        let mut data = serde_json::Map::new();
        data.insert("value".into(), json!("x"));
        let mut logical = LogicalResponse::with_data(data);
        logical.request_id = request.id;
        Response::new(
            Some("noop/".into()),
            ResponseBody::Logical(Box::new(logical)),
        )
    }

    fn observe(&self, _observation: Observation<'_>) {}
}

fn run_noop_server() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("Api Address: http://{}", tcp.local_addr().unwrap());
        listener::serve(
            listener::Listener {
                socket: listener::Socket::Tcp(tcp),
                protocol: listener::Protocol::Http,
                tls: None,
                timeouts: listener::Timeouts::default(),
            },
            Arc::new(NoopHandler),
            std::future::pending(),
        )
        .await
        .unwrap();
    });
}

/// A policy of 100 path rules of every shape; one of them grants the benchmark's
/// paths, and it is neither the first nor the last.
fn hundred_rule_policy() -> String {
    let mut policy = String::new();
    for index in 0..99 {
        let rule = match index % 4 {
            0 => format!(
                "path \"team{index}/data/app/*\" {{\n  capabilities = [\"read\", \"list\"]\n}}\n"
            ),
            1 => format!(
                "path \"secret/data/team{index}/config\" {{\n  capabilities = [\"read\"]\n}}\n"
            ),
            2 => format!(
                "path \"secret/data/+/svc{index}/*\" {{\n  capabilities = [\"read\", \"update\"]\n}}\n"
            ),
            _ => format!("path \"kv{index}/+/shared\" {{\n  capabilities = [\"deny\"]\n}}\n"),
        };
        policy.push_str(&rule);
        if index == 49 {
            policy.push_str("path \"secret/data/bench/*\" {\n  capabilities = [\"create\", \"read\", \"update\"]\n}\n");
        }
    }
    assert_eq!(policy.matches("path \"").count(), 100);
    policy
}

#[derive(Clone, Copy)]
enum Workload {
    Ceiling,
    Read,
    Write,
}

fn run(address: &str, token: &str, workload: Workload, seconds: u64) -> Outcome {
    let token = token.to_owned();
    let make: MakeCall = Arc::new(move |id, counter| {
        let (method, path, body) = match workload {
            Workload::Ceiling => ("GET", "/v1/noop/x".to_owned(), Bytes::new()),
            Workload::Read => (
                "GET",
                format!(
                    "/v1/secret/data/bench/r{}",
                    (id * 7919 + counter) % READ_KEYS
                ),
                Bytes::new(),
            ),
            Workload::Write => (
                "POST",
                format!("/v1/secret/data/bench/w{id}-{}", counter % 100),
                Bytes::from(format!(
                    "{{\"data\":{{\"value\":\"v{counter}\",\"user\":\"svc\"}}}}"
                )),
            ),
        };
        Call {
            method,
            path,
            body,
            headers: vec![("x-vault-token", token.clone())],
        }
    });
    load::run(address, CONNECTIONS, seconds, make)
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("noop-server") {
        run_noop_server();
        return;
    }
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(5);

    let disk = std::path::Path::new("/var/tmp");
    let server = Server::dev_in(disk);
    let root = server.root();
    let token = root.token_with_policy("bench", &hundred_rule_policy());
    let user = server.client(Some(&token));
    for index in 0..READ_KEYS {
        user.post(
            &format!("secret/data/bench/r{index}"),
            json!({"data": {"value": format!("value-{index}"), "user": "svc"}}),
        )
        .expect(200);
    }
    user.get("secret/data/bench/r1").expect(200);
    root.get("secret/data/team1/config").expect(404);
    user.get("secret/data/other").expect(403);

    let mut noop = Command::new(std::env::current_exe().unwrap())
        .arg("noop-server")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(noop.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let noop_address = line.trim().trim_start_matches("Api Address: ").to_owned();

    println!(
        "coffer HTTP benchmark: {CONNECTIONS} keep-alive connections, {seconds} s per workload after 1 s warm-up"
    );
    println!(
        "token policies: 100 path rules; server data on disk under {}",
        disk.display()
    );
    let ceiling = run(&noop_address, &token, Workload::Ceiling, seconds);
    // Reads without and with a file audit device (two entries per read, one
    // written before the request runs), in six short rounds of each, in ABBA
    // order, so the drift of a noisy machine falls on both alike; before the
    // writes, which leave RocksDB busy.
    let audit_log = server.workspace().join("audit.log");
    let round_seconds = (seconds / 2).max(2);
    let mut plain_rounds = Vec::new();
    let mut audited_rounds = Vec::new();
    let set_audit = |on: bool| {
        if on {
            root.call(
                "PUT",
                "sys/audit/file",
                Some(json!({"type": "file", "options": {"file_path": audit_log}})),
            )
            .expect(204);
        } else {
            root.delete("sys/audit/file").expect(204);
        }
    };
    for round in 0..6 {
        let audited_first = round % 2 == 1;
        for audited in [audited_first, !audited_first] {
            set_audit(audited);
            let outcome = run(&server.address, &token, Workload::Read, round_seconds);
            set_audit(false);
            if audited {
                audited_rounds.push(outcome);
            } else {
                plain_rounds.push(outcome);
            }
        }
    }
    let audited_requests: usize = audited_rounds.iter().map(|round| round.requests).sum();
    let audit_lines = std::fs::read_to_string(&audit_log)
        .map(|text| text.lines().count())
        .unwrap_or(0);
    assert!(
        audit_lines >= audited_requests * 2,
        "the audit file has {audit_lines} lines for {audited_requests} reads"
    );
    let reads = Outcome::merge(plain_rounds);
    let audited_reads = Outcome::merge(audited_rounds);
    let writes = run(&server.address, &token, Workload::Write, seconds);
    let _ = noop.kill();
    let _ = noop.wait();

    println!();
    println!(
        "{:<32} {:>10} {:>9} {:>9} {:>8} {:>10}",
        "workload", "req/s", "p50 ms", "p99 ms", "errors", "x ceiling"
    );
    for (name, outcome) in [
        ("no-op handler (ceiling)", &ceiling),
        ("KV v2 read", &reads),
        ("KV v2 write (fsync'd)", &writes),
        ("KV v2 read, file audit device", &audited_reads),
    ] {
        println!(
            "{:<32} {:>10.0} {:>9.2} {:>9.2} {:>8} {:>10.2}",
            name,
            outcome.rate(),
            outcome.percentile(0.5),
            outcome.percentile(0.99),
            outcome.errors,
            outcome.rate() / ceiling.rate()
        );
    }
    println!();
    println!(
        "targets: reads >= 0.50x ceiling ({:.2}x: {}); durable writes >= 3000/s ({:.0}/s: {})",
        reads.rate() / ceiling.rate(),
        if reads.rate() / ceiling.rate() >= 0.5 {
            "met"
        } else {
            "NOT met"
        },
        writes.rate(),
        if writes.rate() >= 3000.0 {
            "met"
        } else {
            "NOT met"
        },
    );
    let audit_ratio = audited_reads.rate() / reads.rate();
    println!(
        "audit: reads with a file device {:.0}/s vs {:.0}/s without: {:.2}x, overhead {:.1}% (target <= 15%: {})",
        audited_reads.rate(),
        reads.rate(),
        audit_ratio,
        (1.0 - audit_ratio) * 100.0,
        if audit_ratio >= 0.85 {
            "met"
        } else {
            "NOT met"
        },
    );
    assert_eq!(
        reads.errors + writes.errors + ceiling.errors + audited_reads.errors,
        0,
        "requests failed"
    );
}
