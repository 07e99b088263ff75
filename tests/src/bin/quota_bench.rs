//! The quota benchmark, against the real `coffer` binary in dev mode:
//!
//! 1. What quotas cost a request they do not cover: KV v2 reads by 32
//!    connections with no quota, and with ten rate limits on other mounts and
//!    paths, in alternating short rounds (ABBA), so a noisy machine's drift
//!    falls on both alike. Target: >= 0.95x.
//! 2. What a client over its quota costs the others: a second client's KV
//!    reads (16 connections) alone, then while a first client (4 connections,
//!    retrying at once whatever the answer) reads a path whose quota it is far
//!    over. Target: the first gets 429s, the second keeps >= 0.9x.
//!
//! Usage: `quota_bench [SECONDS]` (default 5 per measurement, after 1 s of warm-up).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use coffer_tests::load::{self, Call, MakeCall, Outcome};
use coffer_tests::{Api, Server};
use serde_json::json;

const CONNECTIONS: usize = 32;
const SECOND_CLIENT_CONNECTIONS: usize = 16;
const NOISY_CONNECTIONS: usize = 4;
const READ_KEYS: usize = 1000;
/// Rate limits on other mounts and paths than the reads'.
const OTHER_QUOTAS: usize = 10;

fn reads(
    address: &str,
    token: &str,
    prefix: &'static str,
    connections: usize,
    seconds: u64,
) -> Outcome {
    let token = token.to_owned();
    let make: MakeCall = Arc::new(move |id, counter| Call {
        method: "GET",
        path: format!(
            "/v1/secret/data/{prefix}/r{}",
            (id * 7919 + counter) % READ_KEYS
        ),
        body: Bytes::new(),
        headers: vec![("x-vault-token", token.clone())],
    });
    load::run(address, connections, seconds, make)
}

/// The first client (noisy paths) and the second (bench paths) at once:
/// their outcomes, first then second.
fn side_by_side(address: &str, token: &str, seconds: u64) -> (Outcome, Outcome) {
    let (noisy_address, noisy_token) = (address.to_owned(), token.to_owned());
    let noisy = std::thread::spawn(move || {
        reads(
            &noisy_address,
            &noisy_token,
            "noisy",
            NOISY_CONNECTIONS,
            seconds,
        )
    });
    let beside = reads(address, token, "bench", SECOND_CLIENT_CONNECTIONS, seconds);
    (noisy.join().unwrap(), beside)
}

fn set_other_quotas(root: &Api, on: bool) {
    for index in 0..OTHER_QUOTAS {
        let name = format!("other{index}");
        if on {
            let path = if index % 2 == 0 {
                format!("other{index}/")
            } else {
                format!("secret/data/elsewhere{index}")
            };
            root.post(
                &format!("sys/quotas/rate-limit/{name}"),
                json!({"rate": 1, "path": path}),
            )
            .expect(204);
        } else {
            root.delete(&format!("sys/quotas/rate-limit/{name}"))
                .expect(204);
        }
    }
}

fn line(name: &str, outcome: &Outcome) {
    println!(
        "{:<44} {:>10.0} {:>9.2} {:>9.2} {:>10}",
        name,
        outcome.rate(),
        outcome.percentile(0.5),
        outcome.percentile(0.99),
        outcome.errors
    );
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(5);
    let server = Server::dev_in(std::path::Path::new("/var/tmp"));
    let root = server.root();
    let token = server.root_token.clone().unwrap();
    for prefix in ["bench", "noisy"] {
        for index in 0..READ_KEYS {
            root.post(
                &format!("secret/data/{prefix}/r{index}"),
                json!({"data": {"value": format!("value-{index}")}}),
            )
            .expect(200);
        }
    }
    for index in (0..OTHER_QUOTAS).step_by(2) {
        root.post(
            &format!("sys/mounts/other{index}"),
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .expect(204);
    }
    println!("coffer quota benchmark: {seconds} s per measurement after 1 s warm-up");

    // 1. Quotas that do not cover the request.
    let round_seconds = (seconds / 2).max(2);
    let mut plain_rounds = Vec::new();
    let mut quota_rounds = Vec::new();
    for round in 0..6 {
        let quotas_first = round % 2 == 1;
        for with_quotas in [quotas_first, !quotas_first] {
            set_other_quotas(&root, with_quotas);
            let outcome = reads(&server.address, &token, "bench", CONNECTIONS, round_seconds);
            set_other_quotas(&root, false);
            if with_quotas {
                quota_rounds.push(outcome);
            } else {
                plain_rounds.push(outcome);
            }
        }
    }
    let plain = Outcome::merge(plain_rounds);
    let with_quotas = Outcome::merge(quota_rounds);

    // 2. A client over its quota beside one that is not.
    root.post(
        "sys/quotas/rate-limit/noisy",
        json!({"rate": 50, "path": "secret/data/noisy*"}),
    )
    .expect(204);
    let alone = reads(
        &server.address,
        &token,
        "bench",
        SECOND_CLIENT_CONNECTIONS,
        seconds,
    );
    let (noisy, beside) = side_by_side(&server.address, &token, seconds);
    root.delete("sys/quotas/rate-limit/noisy").expect(204);
    let unthrottled_noisy = side_by_side(&server.address, &token, seconds);

    println!();
    println!(
        "{:<44} {:>10} {:>9} {:>9} {:>10}",
        "workload", "req/s", "p50 ms", "p99 ms", "non-2xx"
    );
    line("KV v2 read, no quota", &plain);
    line(
        &format!("KV v2 read, {OTHER_QUOTAS} quotas elsewhere"),
        &with_quotas,
    );
    line("second client alone", &alone);
    line("second client beside the throttled one", &beside);
    line("first client over its quota (50/s)", &noisy);
    line(
        "second client beside an unthrottled one",
        &unthrottled_noisy.1,
    );
    line("first client, no quota", &unthrottled_noisy.0);
    println!();
    let cost = with_quotas.rate() / plain.rate();
    println!(
        "quotas elsewhere: {:.0}/s vs {:.0}/s without: {cost:.3}x (target >= 0.95x: {})",
        with_quotas.rate(),
        plain.rate(),
        verdict(cost >= 0.95)
    );
    let kept = beside.rate() / alone.rate();
    let refused = noisy.errors as f64 / noisy.requests.max(1) as f64;
    println!(
        "throttled neighbour: second client {:.0}/s vs {:.0}/s alone: {kept:.3}x (target >= 0.9x: {}); \
         first client {:.0} answers/s, {:.1}% of them 429 (unthrottled it took {:.3}x of the second's rate away)",
        beside.rate(),
        alone.rate(),
        verdict(kept >= 0.9),
        noisy.rate(),
        refused * 100.0,
        1.0 - unthrottled_noisy.1.rate() / alone.rate(),
    );
    assert_eq!(
        plain.errors + with_quotas.errors + alone.errors + beside.errors,
        0
    );
    assert!(refused > 0.5, "the first client was not refused");
}
