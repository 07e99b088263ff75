//! The doors benchmark: KV v2 reads of 1,000 keys through one dev server, by
//! 32 concurrent callers each, over
//!
//! - HTTP/1.1 on TCP, 32 keep-alive connections (the baseline);
//! - HTTP/1.1 on the Unix socket, 32 connections;
//! - gRPC (`coffer.v1.Coffer/Read`), 32 concurrent streams on one HTTP/2
//!   connection, and on 4 connections (8 streams each).
//!
//! Workloads alternate in rounds, forwards then backwards (ABBA); each figure
//! merges its rounds. Targets: gRPC >= 1.0x HTTP/TCP; Unix socket >= 1.2x
//! HTTP/TCP. Every caller sends the same token; every answer is checked (a
//! failure is counted as an error).
//!
//! Usage: `grpc_bench [SECONDS_PER_ROUND]` (default 3, after 1 s of warm-up).
//! `GRPC_BENCH_PROFILE=<index> grpc_bench SECONDS` runs only that workload
//! (0-3, as listed) once and prints the server's pid first, for `perf`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use coffer_protocols::grpc::pb;
use coffer_tests::Server;
use coffer_tests::load::{self, Call, GrpcCall, MakeCall, MakeGrpcCall, Outcome};
use prost::Message;
use serde_json::json;

const CALLERS: usize = 32;
const KEYS: usize = 1000;
const ROUNDS: usize = 4;

fn key(id: usize, counter: usize) -> usize {
    (id * 7919 + counter) % KEYS
}

fn http(address: &str, token: &str, seconds: u64) -> Outcome {
    let token = token.to_owned();
    let make: MakeCall = Arc::new(move |id, counter| Call {
        method: "GET",
        path: format!("/v1/secret/data/bench/r{}", key(id, counter)),
        body: Bytes::new(),
        headers: vec![("x-vault-token", token.clone())],
    });
    load::run(address, CALLERS, seconds, make)
}

fn grpc(address: &str, token: &str, connections: usize, seconds: u64) -> Outcome {
    let token = token.to_owned();
    let make: MakeGrpcCall = Arc::new(move |id, counter| GrpcCall {
        path: "/coffer.v1.Coffer/Read",
        message: Bytes::from(
            pb::ReadRequest {
                path: format!("secret/data/bench/r{}", key(id, counter)),
                params: Default::default(),
            }
            .encode_to_vec(),
        ),
        metadata: vec![("x-vault-token", token.clone())],
    });
    load::run_grpc(address, connections, CALLERS, seconds, make)
}

/// CPU time (user + system) the process `pid` has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at ")".
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(3);
    let server = Server::dev_with_all_doors();
    let root = server.root();
    let token = root.token_with_policy(
        "bench",
        "path \"secret/data/bench/*\" {\n capabilities = [\"read\", \"create\", \"update\"]\n}",
    );
    let user = server.client(Some(&token));
    for index in 0..KEYS {
        user.post(
            &format!("secret/data/bench/r{index}"),
            json!({"data": {"value": format!("value-{index}"), "user": "svc"}}),
        )
        .expect(200);
    }
    let socket = format!("unix://{}", server.unix.as_ref().unwrap().display());
    let grpc_address = server.grpc_address.clone().unwrap();

    let names = [
        "HTTP/1.1 on TCP (baseline)",
        "HTTP/1.1 on the Unix socket",
        "gRPC, 1 connection",
        "gRPC, 4 connections",
    ];
    let workload = |index: usize| match index {
        0 => http(&server.address, &token, seconds),
        1 => http(&socket, &token, seconds),
        2 => grpc(&grpc_address, &token, 1, seconds),
        _ => grpc(&grpc_address, &token, 4, seconds),
    };
    if let Some(index) = std::env::var("GRPC_BENCH_PROFILE")
        .ok()
        .and_then(|text| text.parse::<usize>().ok())
    {
        println!("server pid {}", server.pid());
        let outcome = workload(index.min(names.len() - 1));
        println!("{}: {:.0} reads/s", names[index.min(3)], outcome.rate());
        return;
    }
    println!(
        "== doors: KV v2 reads by {CALLERS} concurrent callers ({ROUNDS} ABBA rounds of {seconds} s)"
    );
    let mut rounds: Vec<Vec<Outcome>> = (0..names.len()).map(|_| Vec::new()).collect();
    let mut server_cpu = vec![0.0f64; names.len()];
    for round in 0..ROUNDS {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..names.len()).collect()
        } else {
            (0..names.len()).rev().collect()
        };
        for index in order {
            // Includes the one-second warm-up: CPU per read is counted over
            // warm-up reads too, so it is a slight underestimate for all alike.
            let before = cpu_seconds(server.pid());
            let outcome = workload(index);
            server_cpu[index] += cpu_seconds(server.pid()) - before;
            rounds[index].push(outcome);
        }
    }
    let outcomes: Vec<Outcome> = rounds.into_iter().map(Outcome::merge).collect();
    println!(
        "   {:<30} {:>10} {:>8} {:>8} {:>7} {:>16}",
        "workload", "reads/s", "p50 ms", "p99 ms", "errors", "server CPU/read"
    );
    let per_read: Vec<f64> = outcomes
        .iter()
        .zip(&server_cpu)
        .map(|(outcome, cpu)| {
            // The measured window plus the warm-up second of every round.
            let reads = outcome.rate() * (outcome.seconds + ROUNDS as f64);
            cpu / reads * 1e6
        })
        .collect();
    for ((name, outcome), cpu) in names.iter().zip(&outcomes).zip(&per_read) {
        println!(
            "   {name:<30} {:>10.0} {:>8.2} {:>8.2} {:>7} {:>13.1} us",
            outcome.rate(),
            outcome.percentile(0.5),
            outcome.percentile(0.99),
            outcome.errors,
            cpu
        );
    }
    println!(
        "   server CPU per read, gRPC 1 / 4 connections vs HTTP on TCP: {:.2}x / {:.2}x; Unix socket: {:.2}x",
        per_read[2] / per_read[0],
        per_read[3] / per_read[0],
        per_read[1] / per_read[0]
    );
    let baseline = outcomes[0].rate();
    println!(
        "   Unix socket / HTTP on TCP:        {:.2}x  (target >= 1.2x)",
        outcomes[1].rate() / baseline
    );
    println!(
        "   gRPC 1 connection / HTTP on TCP:  {:.2}x  (target >= 1.0x)",
        outcomes[2].rate() / baseline
    );
    println!(
        "   gRPC 4 connections / HTTP on TCP: {:.2}x  (target >= 1.0x)",
        outcomes[3].rate() / baseline
    );
    let errors: usize = outcomes.iter().map(|outcome| outcome.errors).sum();
    assert_eq!(errors, 0, "some reads failed");
}
