//! The login benchmark, side by side with OpenBao 2.7.2 (dev mode on
//! loopback) in the same run: logins per second and p99 by 16 keep-alive
//! connections for AppRole (role ID + secret ID) and JWT (RS256, a
//! `jwt_validation_pubkeys` config), and the ratio coffer/OpenBao (target: at
//! least 2x on both). Every login makes a token: a durable write on coffer
//! (Raft, fsync), an in-memory one on OpenBao's dev server.
//!
//! userpass is slow on purpose: its rate is printed beside the cost of one
//! password check measured here in process (coffer's argon2id, OpenBao's
//! bcrypt at cost 10), which bounds it.
//!
//! Usage: `auth_bench [SECONDS]` (default 5 per workload, after 1 s of
//! warm-up).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use bytes::Bytes;
use coffer_tests::bao::Bao;
use coffer_tests::load::{self, Call, MakeCall, Outcome};
use coffer_tests::{Api, Server};
use serde_json::json;

const CONNECTIONS: usize = 16;

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An RS256 JWT for the `bench` role, valid for an hour, and the PEM of the
/// public key that verifies it.
fn signed_token() -> (String, String) {
    let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let now = coffer_daemon::clock::now_seconds();
    let header = b64url(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = json!({
        "iss": "https://token.actions.githubusercontent.com",
        "aud": "coffer",
        "sub": "repo:acme/app:ref:refs/heads/main",
        "repository": "acme/app",
        "ref": "refs/heads/main",
        "iat": now,
        "exp": now + 3600,
    });
    let message = format!("{header}.{}", b64url(claims.to_string().as_bytes()));
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        message.as_bytes(),
        &mut signature,
    )
    .unwrap();
    let spki = key.public_key().as_der().unwrap();
    let public = base64::engine::general_purpose::STANDARD.encode(spki.as_ref());
    let lines: Vec<&str> = public
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    );
    (format!("{message}.{}", b64url(&signature)), pem)
}

/// The three methods on one server: an AppRole secret ID with unlimited
/// uses, a JWT role, a userpass user. Returns the AppRole login body.
fn set_up(api: &Api, public_pem: &str) -> String {
    for (path, kind) in [
        ("approle", "approle"),
        ("jwt", "jwt"),
        ("userpass", "userpass"),
    ] {
        api.post(&format!("sys/auth/{path}"), json!({"type": kind}))
            .expect(204);
    }
    let ok = |answer: coffer_tests::Answer| {
        assert!(answer.status == 200 || answer.status == 204, "{answer:?}");
    };
    ok(api.post(
        "auth/approle/role/bench",
        json!({"token_policies": ["default"], "token_ttl": "1h"}),
    ));
    let role_id = api.get("auth/approle/role/bench/role-id").expect(200).body["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id = api
        .post("auth/approle/role/bench/secret-id", json!({}))
        .expect(200)
        .body["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(api.post(
        "auth/jwt/config",
        json!({"jwt_validation_pubkeys": [public_pem],
               "bound_issuer": "https://token.actions.githubusercontent.com"}),
    ));
    ok(api.post(
        "auth/jwt/role/bench",
        json!({"role_type": "jwt", "user_claim": "sub", "bound_audiences": ["coffer"],
               "bound_claims": {"repository": "acme/app"}, "token_ttl": "1h"}),
    ));
    ok(api.post(
        "auth/userpass/users/bench",
        json!({"password": "correct horse battery staple", "token_ttl": "1h"}),
    ));
    json!({"role_id": role_id, "secret_id": secret_id}).to_string()
}

fn logins(address: &str, path: &'static str, body: String, seconds: u64) -> Outcome {
    let body = Bytes::from(body);
    let make: MakeCall = Arc::new(move |_, _| Call {
        method: "POST",
        path: path.to_owned(),
        body: body.clone(),
        headers: Vec::new(),
    });
    load::run(address, CONNECTIONS, seconds, make)
}

/// Microseconds one check of `password` against `hash` takes, over `rounds`.
fn check_cost(rounds: u32, check: impl Fn() -> bool) -> f64 {
    assert!(check(), "the password must match");
    let started = Instant::now();
    for _ in 0..rounds {
        assert!(check());
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(5);
    let (token, public_pem) = signed_token();
    let server = Server::dev_in(std::path::Path::new("/var/tmp"));
    let bao = Bao::start();
    let coffer_approle = set_up(&server.root(), &public_pem);
    let bao_approle = set_up(&Api::at(&bao.address, Some("root")), &public_pem);
    let jwt_body = json!({"role": "bench", "jwt": token}).to_string();
    let userpass_body = json!({"password": "correct horse battery staple"}).to_string();
    println!(
        "Login benchmark: {CONNECTIONS} connections, {seconds} s per workload after 1 s warm-up"
    );

    let runs = [
        (
            "coffer, approle",
            logins(
                &server.address,
                "/v1/auth/approle/login",
                coffer_approle,
                seconds,
            ),
        ),
        (
            "OpenBao 2.7.2, approle",
            logins(&bao.address, "/v1/auth/approle/login", bao_approle, seconds),
        ),
        (
            "coffer, jwt RS256",
            logins(
                &server.address,
                "/v1/auth/jwt/login",
                jwt_body.clone(),
                seconds,
            ),
        ),
        (
            "OpenBao 2.7.2, jwt RS256",
            logins(&bao.address, "/v1/auth/jwt/login", jwt_body, seconds),
        ),
        (
            "coffer, userpass",
            logins(
                &server.address,
                "/v1/auth/userpass/login/bench",
                userpass_body.clone(),
                seconds,
            ),
        ),
        (
            "OpenBao 2.7.2, userpass",
            logins(
                &bao.address,
                "/v1/auth/userpass/login/bench",
                userpass_body,
                seconds,
            ),
        ),
    ];
    println!();
    println!(
        "{:<28} {:>10} {:>9} {:>9} {:>8}",
        "workload", "logins/s", "p50 ms", "p99 ms", "errors"
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
    println!();
    for (label, coffer, peer) in [
        ("approle", &runs[0].1, &runs[1].1),
        ("jwt", &runs[2].1, &runs[3].1),
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

    let password = b"correct horse battery staple";
    let argon = argon2::Argon2::default().hash_password(password).unwrap();
    let argon = argon.to_string();
    let argon_cost = check_cost(20, || {
        let parsed = argon2::password_hash::phc::PasswordHash::new(&argon).unwrap();
        argon2::Argon2::default()
            .verify_password(password, &parsed)
            .is_ok()
    });
    let bcrypt_hash = bcrypt::hash("correct horse battery staple", 10).unwrap();
    let bcrypt_cost = check_cost(20, || {
        bcrypt::verify("correct horse battery staple", &bcrypt_hash).unwrap()
    });
    println!(
        "userpass (slow on purpose): coffer {:.0}/s (argon2id m=19 MiB t=2: {:.1} ms a check, 4 at once), OpenBao {:.0}/s (bcrypt cost 10: {:.1} ms a check); ratio {:.2}x",
        runs[4].1.rate(),
        argon_cost / 1000.0,
        runs[5].1.rate(),
        bcrypt_cost / 1000.0,
        runs[4].1.rate() / runs[5].1.rate(),
    );
    for (name, outcome) in &runs {
        assert_eq!(outcome.errors, 0, "{name}: logins failed");
    }
}
