//! The doors benchmark: KV v2 reads of 1,000 keys through one dev server, by
//! 32 concurrent callers each, over
//!
//! - HTTP/1.1 on TCP, 32 keep-alive connections (the baseline);
//! - HTTP/1.1 on the Unix socket, 32 connections;
//! - gRPC (`coffer.v1.Coffer/Read`), 32 concurrent streams on one HTTP/2
//!   connection, and on 4 connections (8 streams each).
//!
//! The same four doors then serve `sys/health` (`coffer.v1.Coffer/Health`):
//! no token, no storage, so what is left is each door's own cost per call.
//!
//! Workloads alternate in rounds, forwards then backwards (ABBA); each figure
//! merges its rounds, and each ratio is also given per round (door and
//! baseline run back to back, so a slow spell of the machine hits both): the
//! median of those is the steadier figure on a noisy machine. Targets: gRPC >= 1.0x HTTP/TCP; Unix socket >= 1.2x
//! HTTP/TCP. Every caller sends the same token; every answer is checked (a
//! failure is counted as an error). Load generator and server share the
//! machine, so a door that costs its client more scores lower too; the server's
//! CPU time per call is printed beside each figure.
//!
//! Usage: `grpc_bench [SECONDS_PER_ROUND]` (default 3, after 1 s of warm-up).
//! `GRPC_BENCH_PROFILE=<index> grpc_bench SECONDS` runs only that workload
//! (0-7, as listed) once and prints the server's pid first, for `perf`.

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

/// What every caller asks for.
#[derive(Clone, Copy, PartialEq)]
enum Ask {
    /// A KV v2 read, with a token.
    Read,
    /// `sys/health`: no token, no storage.
    Health,
}

fn http(address: &str, token: &str, ask: Ask, seconds: u64) -> Outcome {
    let token = token.to_owned();
    let make: MakeCall = Arc::new(move |id, counter| match ask {
        Ask::Read => Call {
            method: "GET",
            path: format!("/v1/secret/data/bench/r{}", key(id, counter)),
            body: Bytes::new(),
            headers: vec![("x-vault-token", token.clone())],
        },
        Ask::Health => Call {
            method: "GET",
            path: "/v1/sys/health".to_owned(),
            body: Bytes::new(),
            headers: Vec::new(),
        },
    });
    load::run(address, CALLERS, seconds, make)
}

fn grpc(address: &str, token: &str, ask: Ask, connections: usize, seconds: u64) -> Outcome {
    let token = token.to_owned();
    let make: MakeGrpcCall = Arc::new(move |id, counter| match ask {
        Ask::Read => GrpcCall {
            path: "/coffer.v1.Coffer/Read",
            message: Bytes::from(
                pb::ReadRequest {
                    path: format!("secret/data/bench/r{}", key(id, counter)),
                    params: Default::default(),
                }
                .encode_to_vec(),
            ),
            metadata: vec![("x-vault-token", token.clone())],
        },
        Ask::Health => GrpcCall {
            path: "/coffer.v1.Coffer/Health",
            message: Bytes::from(pb::HealthRequest {}.encode_to_vec()),
            metadata: Vec::new(),
        },
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

    let doors = [
        "HTTP/1.1 on TCP (baseline)",
        "HTTP/1.1 on the Unix socket",
        "gRPC, 1 connection",
        "gRPC, 4 connections",
    ];
    let asks = [Ask::Read, Ask::Health];
    let workload = |index: usize| {
        let ask = asks[index / doors.len()];
        match index % doors.len() {
            0 => http(&server.address, &token, ask, seconds),
            1 => http(&socket, &token, ask, seconds),
            2 => grpc(&grpc_address, &token, ask, 1, seconds),
            _ => grpc(&grpc_address, &token, ask, 4, seconds),
        }
    };
    let count = doors.len() * asks.len();
    if let Some(index) = std::env::var("GRPC_BENCH_PROFILE")
        .ok()
        .and_then(|text| text.parse::<usize>().ok())
    {
        let index = index.min(count - 1);
        println!("server pid {}", server.pid());
        let (server_before, load_before) =
            (cpu_seconds(server.pid()), cpu_seconds(std::process::id()));
        let outcome = workload(index);
        // Over the warm-up second too, as in the full run.
        let calls = outcome.rate() * (outcome.seconds + 1.0);
        println!(
            "{}: {:.0} calls/s, CPU per call: server {:.1} us, load generator {:.1} us",
            doors[index % doors.len()],
            outcome.rate(),
            (cpu_seconds(server.pid()) - server_before) / calls * 1e6,
            (cpu_seconds(std::process::id()) - load_before) / calls * 1e6,
        );
        return;
    }
    println!(
        "== doors: {CALLERS} concurrent callers ({ROUNDS} ABBA rounds of {seconds} s per workload)"
    );
    let mut rounds: Vec<Vec<Outcome>> = (0..count).map(|_| Vec::new()).collect();
    let mut server_cpu = vec![0.0f64; count];
    for round in 0..ROUNDS {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..count).collect()
        } else {
            (0..count).rev().collect()
        };
        for index in order {
            // Includes the one-second warm-up: CPU per call is counted over
            // warm-up calls too, so it is a slight underestimate for all alike.
            let before = cpu_seconds(server.pid());
            let outcome = workload(index);
            server_cpu[index] += cpu_seconds(server.pid()) - before;
            rounds[index].push(outcome);
        }
    }
    // Each round's rate, in the order the rounds ran: the spread shows the noise.
    let round_rates: Vec<Vec<f64>> = rounds
        .iter()
        .map(|runs| runs.iter().map(Outcome::rate).collect())
        .collect();
    let outcomes: Vec<Outcome> = rounds.into_iter().map(Outcome::merge).collect();
    let per_call: Vec<f64> = outcomes
        .iter()
        .zip(&server_cpu)
        .map(|(outcome, cpu)| {
            // The measured window plus the warm-up second of every round.
            let calls = outcome.rate() * (outcome.seconds + ROUNDS as f64);
            cpu / calls * 1e6
        })
        .collect();
    for (section, title) in [
        "KV v2 read of 1 of 1,000 keys, with a token",
        "sys/health: no token, no storage (each door's own cost)",
    ]
    .iter()
    .enumerate()
    {
        let base = section * doors.len();
        println!("-- {title}");
        println!(
            "   {:<30} {:>10} {:>8} {:>8} {:>7} {:>16}",
            "workload", "calls/s", "p50 ms", "p99 ms", "errors", "server CPU/call"
        );
        for (offset, name) in doors.iter().enumerate() {
            let outcome = &outcomes[base + offset];
            println!(
                "   {name:<30} {:>10.0} {:>8.2} {:>8.2} {:>7} {:>13.1} us",
                outcome.rate(),
                outcome.percentile(0.5),
                outcome.percentile(0.99),
                outcome.errors,
                per_call[base + offset]
            );
        }
        for (offset, name) in doors.iter().enumerate() {
            let rates: Vec<String> = round_rates[base + offset]
                .iter()
                .map(|rate| format!("{:.1}k", rate / 1000.0))
                .collect();
            println!("   rounds, {name:<30} {}", rates.join(" "));
        }
        let rate = |offset: usize| {
            // Door and baseline run back to back in every round, so their
            // ratio within a round is steadier than either rate: the median of
            // those ratios is printed beside the ratio of the merged rates.
            let mut ratios: Vec<f64> = round_rates[base + offset]
                .iter()
                .zip(&round_rates[base])
                .map(|(door, baseline)| door / baseline)
                .collect();
            ratios.sort_by(f64::total_cmp);
            let middle = ratios.len() / 2;
            let median = if ratios.len().is_multiple_of(2) {
                (ratios[middle - 1] + ratios[middle]) / 2.0
            } else {
                ratios[middle]
            };
            format!(
                "{:.2}x (per round: median {median:.2}x, {:.2}-{:.2}x)",
                outcomes[base + offset].rate() / outcomes[base].rate(),
                ratios[0],
                ratios[ratios.len() - 1]
            )
        };
        let cpu = |offset: usize| per_call[base + offset] / per_call[base];
        println!(
            "   server CPU per call vs HTTP on TCP: Unix socket {:.2}x, gRPC 1 / 4 connections {:.2}x / {:.2}x",
            cpu(1),
            cpu(2),
            cpu(3)
        );
        let target = |text: &str| {
            if section == 0 {
                text.to_owned()
            } else {
                String::new()
            }
        };
        println!(
            "   Unix socket / HTTP on TCP:        {}  {}",
            rate(1),
            target("(target >= 1.2x)")
        );
        println!(
            "   gRPC 1 connection / HTTP on TCP:  {}  {}",
            rate(2),
            target("(target >= 1.0x)")
        );
        println!(
            "   gRPC 4 connections / HTTP on TCP: {}  {}",
            rate(3),
            target("(target >= 1.0x)")
        );
    }
    let errors: usize = outcomes.iter().map(|outcome| outcome.errors).sum();
    assert_eq!(errors, 0, "some calls failed");
}
