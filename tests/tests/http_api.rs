//! Vault's HTTP conventions, checked with curl: LIST and `?list=true`, Bearer
//! tokens, error bodies, HEAD health, TLS, Prometheus metrics, and config errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use coffer_tests::{Server, binary, curl, openssl};
use serde_json::{Value, json};

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"))
}

#[test]
fn list_verbs_bearer_tokens_and_error_bodies() {
    let server = Server::dev();
    let root = server.root();
    root.kv_put("team/a", json!({"x": "1"}));
    root.kv_put("team/b/c", json!({"x": "2"}));
    let url = |path: &str| server.url(path);

    let (status, body) = curl(&[
        "-X",
        "LIST",
        "-H",
        "X-Vault-Token: root",
        &url("secret/metadata/team"),
    ]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body)["data"]["keys"], json!(["a", "b/"]));
    let (status, body) = curl(&[
        "-H",
        "X-Vault-Token: root",
        &url("secret/metadata/team/?list=true"),
    ]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body)["data"]["keys"], json!(["a", "b/"]));
    // An empty listing is a 404 with an empty errors list.
    let (status, body) = curl(&[
        "-X",
        "LIST",
        "-H",
        "X-Vault-Token: root",
        &url("secret/metadata/nothing"),
    ]);
    assert_eq!((status, parse(&body)), (404, json!({"errors": []})));

    let (status, body) = curl(&[
        "-H",
        "Authorization: Bearer root",
        &url("secret/data/team/a"),
    ]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body)["data"]["data"]["x"], "1");
    let (status, body) = curl(&[
        "-H",
        "Authorization: Bearer wrong",
        &url("secret/data/team/a"),
    ]);
    assert_eq!(
        (status, parse(&body)),
        (403, json!({"errors": ["permission denied"]}))
    );

    // Error bodies are JSON with the right content type; responses are not cached.
    let output = Command::new("curl")
        .args([
            "-sS",
            "-i",
            "-H",
            "X-Vault-Token: root",
            &url("secret/data/missing"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 404"), "{text}");
    assert!(text.contains("content-type: application/json"), "{text}");
    assert!(text.contains("cache-control: no-store"), "{text}");
    assert!(text.trim_end().ends_with("{\"errors\":[]}"), "{text}");

    // The envelope and sys/ flattening.
    let (_, body) = curl(&["-H", "X-Vault-Token: root", &url("sys/mounts")]);
    let document = parse(&body);
    assert!(
        document["request_id"]
            .as_str()
            .is_some_and(|id| id.len() == 36)
    );
    assert_eq!(document["data"]["secret/"]["type"], "kv");
    assert_eq!(document["secret/"]["options"]["version"], "2");
    // X-Vault-Request is accepted and ignored.
    let (status, _) = curl(&[
        "-H",
        "X-Vault-Request: true",
        "-H",
        "X-Vault-Token: root",
        &url("secret/data/team/a"),
    ]);
    assert_eq!(status, 200);

    // HEAD health answers with the status only.
    let output = Command::new("curl")
        .args(["-sS", "-I", &url("sys/health")])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("HTTP/1.1 200"));
    // Health query overrides.
    let (status, _) = curl(&[&url("sys/health?activecode=299")]);
    assert_eq!(status, 299);
    // A 204 has no body.
    let (status, body) = curl(&[
        "-X",
        "DELETE",
        "-H",
        "X-Vault-Token: root",
        &url("secret/data/team/a"),
    ]);
    assert_eq!((status, body.as_str()), (204, ""));
}

#[test]
fn tls_listener_serves_https_with_the_configured_certificate() {
    let directory = tempfile::tempdir().unwrap();
    let file = |name: &str| directory.path().join(name).to_str().unwrap().to_owned();
    let (ca, ca_key, csr, cert, key, extensions) = (
        file("ca.pem"),
        file("ca-key.pem"),
        file("leaf.csr"),
        file("cert.pem"),
        file("key.pem"),
        file("leaf.ext"),
    );
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=coffer test CA",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &key,
        "-out",
        &csr,
    ]);
    std::fs::write(
        &extensions,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &extensions,
        "-out",
        &cert,
    ]);
    let server = Server::with_config(&format!(
        r#"
storage "raft" {{
  path = "{{data_dir}}"
}}
listener "tcp" {{
  address       = "127.0.0.1:0"
  tls_cert_file = "{}"
  tls_key_file  = "{}"
}}
"#,
        cert, key
    ));
    assert!(server.address.starts_with("https://"), "{}", server.address);
    let (status, body) = curl(&["--cacert", &ca, &server.url("sys/seal-status")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body)["initialized"], false);
    // Without the CA, the handshake fails: the listener really is TLS.
    let (status, _) = curl(&[&server.url("sys/seal-status")]);
    assert_eq!(status, 0);
    // The CLI trusts the CA given in COFFER_CACERT.
    let output = Command::new(binary())
        .args(["status", "-format=json"])
        .env("COFFER_ADDR", &server.address)
        .env("COFFER_CACERT", &ca)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "sealed exits 2: {output:?}");
    assert_eq!(
        parse(&String::from_utf8_lossy(&output.stdout))["initialized"],
        false
    );
}

#[test]
fn prometheus_metrics_count_requests_by_route_and_status() {
    let server = Server::dev();
    let root = server.root();
    root.kv_put("m", json!({"a": "b"}));
    root.get("secret/data/m").expect(200);
    root.get("secret/data/absent").expect(404);
    let (status, body) = curl(&[
        "-H",
        "X-Vault-Token: root",
        &server.url("sys/metrics?format=prometheus"),
    ]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("coffer_requests_total{transport=\"http\",method=\"GET\",route=\"secret/\",status=\"404\"} 1"), "{body}");
    assert!(body.contains("route=\"secret/\",status=\"200\"}"), "{body}");
    assert!(
        body.contains("coffer_request_duration_seconds_bucket{"),
        "{body}"
    );
    assert!(body.contains("coffer_sealed 0"), "{body}");
    // Metrics need a token by default...
    let (status, _) = curl(&[&server.url("sys/metrics?format=prometheus")]);
    assert_eq!(status, 403);
    // ...and another format is refused clearly.
    let (status, body) = curl(&["-H", "X-Vault-Token: root", &server.url("sys/metrics")]);
    assert_eq!(status, 400, "{body}");
}

#[test]
fn metrics_can_be_served_without_a_token_when_configured() {
    let server = Server::with_config(
        r#"
storage "raft" {
  path = "{data_dir}"
}
listener "tcp" {
  address     = "127.0.0.1:0"
  tls_disable = "true"
}
telemetry {
  unauthenticated_metrics_access = true
}
"#,
    );
    let (status, body) = curl(&[&server.url("sys/metrics?format=prometheus")]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("coffer_sealed 1"), "{body}");
    assert!(body.contains("coffer_initialized 0"), "{body}");
}

#[test]
fn a_bad_config_file_names_the_key_and_line() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("bad.hcl");
    std::fs::write(
        &path,
        "storage \"raft\" {\n  path = \"/tmp/x\"\n}\nlistener \"tcp\" {\n  adress = \"127.0.0.1:8200\"\n  tls_disable = true\n}\n",
    )
    .unwrap();
    let output = Command::new(binary())
        .args(["server", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 5") && stderr.contains("\"adress\""),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The barrier key is counted and rotated before it seals too many values.
#[test]
fn the_barrier_key_rotates_itself_at_its_encryption_limit() {
    let server = Server::dev_with_environment(&[("COFFER_MIN_ROTATION_OPERATIONS", "20")]);
    let root = server.root();
    let status = root.get("sys/key-status").expect(200);
    assert_eq!(status.body["data"]["term"], 1);
    let config = root.get("sys/rotate/config").expect(200);
    assert_eq!(
        config.body["data"],
        serde_json::json!({"enabled": true, "max_operations": 3865470566u64, "interval": 0})
    );
    for (body, error) in [
        (
            serde_json::json!({"max_operations": 5}),
            "must be in the range [20,3865470566]",
        ),
        (
            serde_json::json!({"interval": "1h"}),
            "greater or equal to 24h0m0s",
        ),
    ] {
        let answer = root.post("sys/rotate/config", body);
        assert_eq!(answer.status, 400);
        assert!(answer.errors()[0].contains(error), "{:?}", answer.body);
    }
    root.post(
        "sys/rotate/config",
        serde_json::json!({"max_operations": 40}),
    )
    .expect(204);
    for index in 0..10 {
        root.kv_put(&format!("counted/{index}"), serde_json::json!({"v": index}));
    }
    let counted = root.get("sys/key-status").expect(200).body["data"]["encryptions"]
        .as_u64()
        .unwrap();
    assert!(counted >= 10, "{counted} encryptions counted for 10 writes");
    for index in 10..30 {
        root.kv_put(&format!("counted/{index}"), serde_json::json!({"v": index}));
    }
    let status = coffer_tests::cluster::wait_for(
        std::time::Duration::from_secs(10),
        "an automatic rotation",
        || {
            let status = root.get("sys/key-status").expect(200);
            (status.body["data"]["term"].as_u64()? >= 2).then_some(status)
        },
    );
    assert!(status.body["data"]["encryptions"].as_u64().unwrap() < 40);
    for index in 0..30 {
        let answer = root
            .get(&format!("secret/data/counted/{index}"))
            .expect(200);
        assert_eq!(answer.body["data"]["data"]["v"], index);
    }
}

/// Made-up `sys/` paths all count under one route label: 10,000 of them add
/// no metrics series.
#[test]
fn made_up_sys_paths_add_no_metrics_series() {
    let server = Server::dev();
    let root = server.root();
    let series = || -> std::collections::BTreeSet<String> {
        let answer = root.get("sys/metrics?format=prometheus");
        assert_eq!(answer.status, 200);
        answer
            .body
            .as_str()
            .unwrap_or_default()
            .lines()
            .filter(|line| line.starts_with("coffer_requests_total{"))
            .filter_map(|line| line.rsplit_once(' ').map(|(series, _)| series.to_owned()))
            .collect()
    };
    for index in 0..2 {
        root.get(&format!("sys/warm-up-{index}"));
    }
    let before = series();
    for index in 0..10_000 {
        let answer = root.get(&format!("sys/made-up-{index}/x"));
        assert_eq!(answer.status, 404, "{:?}", answer.body);
    }
    let after = series();
    let new: Vec<&String> = after.difference(&before).collect();
    assert!(
        new.iter()
            .all(|series| series.contains("route=\"sys/metrics\"")),
        "new series: {new:?}"
    );
    assert!(
        before
            .iter()
            .any(|series| series.contains("route=\"sys/other\"")),
        "{before:?}"
    );
}
