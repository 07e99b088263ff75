//! Bad input: each is answered 4xx with an `{"errors": [...]}` body, the server keeps
//! serving, and nothing changes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_tests::{Server, curl};
use serde_json::{Value, json};

/// The state a bad request must not change.
fn snapshot(server: &Server) -> Value {
    let root = server.root();
    json!({
        "secret": root.get("secret/data/app").expect(200).body["data"],
        "policies": root.list("sys/policies/acl").expect(200).body["data"]["keys"],
        "mounts": root.get("sys/mounts").expect(200).body["data"].as_object().unwrap().keys().cloned().collect::<Vec<_>>(),
        "health": server.client(None).get("sys/health").expect(200).body["sealed"],
    })
}

#[track_caller]
fn refused(status: u16, body: &str, expected: u16, fragment: &str) {
    assert_eq!(status, expected, "body: {body}");
    let document: Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    let errors = document["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors: {body}"));
    let joined = errors
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    assert!(joined.contains(fragment), "{joined:?} lacks {fragment:?}");
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    let server = Server::dev();
    let root = server.root();
    root.kv_put("app", json!({"password": "p1"}));
    root.call(
        "PUT",
        "sys/policies/acl/reader",
        Some(json!({"policy": "path \"secret/*\" { capabilities = [\"read\"] }"})),
    )
    .expect(204);
    let before = snapshot(&server);
    let base = server.address.clone();
    let url = |path: &str| format!("{base}/v1/{path}");
    let token = ["-H", "X-Vault-Token: root"];

    // Malformed JSON.
    let (status, body) = curl(
        &[
            &token[..],
            &["-X", "POST", "-d", "{\"data\": {", &url("secret/data/app")],
        ]
        .concat(),
    );
    refused(status, &body, 400, "failed to parse JSON");
    // A JSON document that is not an object.
    let (status, body) = curl(
        &[
            &token[..],
            &["-X", "POST", "-d", "[1,2]", &url("secret/data/app")],
        ]
        .concat(),
    );
    refused(status, &body, 400, "must be a JSON object");
    // Wrong types.
    let (status, body) = curl(
        &[
            &token[..],
            &[
                "-X",
                "POST",
                "-d",
                "{\"data\": \"text\"}",
                &url("secret/data/app"),
            ],
        ]
        .concat(),
    );
    refused(status, &body, 400, "\"data\"");
    let (status, body) = curl(
        &[
            &token[..],
            &[
                "-X",
                "POST",
                "-d",
                "{\"data\": {}, \"options\": {\"cas\": \"x\"}}",
                &url("secret/data/app"),
            ],
        ]
        .concat(),
    );
    refused(status, &body, 400, "\"cas\"");
    let (status, body) = curl(
        &[
            &token[..],
            &[
                "-X",
                "POST",
                "-d",
                "{\"ttl\": [1]}",
                &url("auth/token/create"),
            ],
        ]
        .concat(),
    );
    refused(status, &body, 400, "\"ttl\"");
    let (status, body) = curl(
        &[
            &token[..],
            &[
                "-X",
                "POST",
                "-d",
                "{\"type\": {\"a\": 1}}",
                &url("sys/mounts/x"),
            ],
        ]
        .concat(),
    );
    refused(status, &body, 400, "\"type\"");
    // A 33 MiB body.
    let big = std::env::temp_dir().join(format!("coffer-33mib-{}", std::process::id()));
    let payload = format!(
        "{{\"data\": {{\"blob\": \"{}\"}}}}",
        "a".repeat(33 * 1024 * 1024)
    );
    std::fs::write(&big, payload).unwrap();
    let (status, body) = curl(
        &[
            &token[..],
            &[
                "-X",
                "POST",
                "--data-binary",
                &format!("@{}", big.display()),
                &url("secret/data/app"),
            ],
        ]
        .concat(),
    );
    std::fs::remove_file(&big).unwrap();
    refused(status, &body, 413, "larger than");
    // An unknown mount.
    let (status, body) = curl(&[&token[..], &[url("nowhere/foo").as_str()]].concat());
    refused(status, &body, 404, "no handler for route");
    // Escapes with `..`, literal and encoded, and a NUL byte.
    let (status, body) = curl(
        &[
            &token[..],
            &[
                "--path-as-is",
                &url("secret/data/../../sys/seal"),
                "-X",
                "PUT",
            ],
        ]
        .concat(),
    );
    refused(status, &body, 400, "'..'");
    let (status, body) = curl(
        &[
            &token[..],
            &[
                "--path-as-is",
                &url("secret/data/%2e%2e/%2E%2E/sys/seal"),
                "-X",
                "PUT",
            ],
        ]
        .concat(),
    );
    refused(status, &body, 400, "'..'");
    let (status, body) = curl(&[&token[..], &[url("secret/data/app%00x").as_str()]].concat());
    refused(status, &body, 400, "NUL");
    // Invalid policy HCL, with its line.
    let (status, body) = curl(
        &[
            &token[..],
            &[
                "-X",
                "PUT",
                "-d",
                "{\"policy\": \"path \\\"a\\\" {\\n capabilities = [\\\"reed\\\"]\\n}\"}",
                &url("sys/policies/acl/broken"),
            ],
        ]
        .concat(),
    );
    refused(status, &body, 400, "line 2");
    // Unsealing an unsealed server: a key that is not one is refused; a share
    // changes nothing and is answered with the status, as Vault does.
    let (status, body) = curl(&[
        "-X",
        "PUT",
        "-d",
        "{\"key\": \"not hex!\"}",
        &url("sys/unseal"),
    ]);
    refused(status, &body, 400, "valid hex or base64");
    let (status, body) = curl(&["-X", "PUT", "-d", "{\"key\": \"abcd\"}", &url("sys/unseal")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["sealed"],
        false
    );
    // A bad or missing token.
    let (status, body) = curl(&["-H", "X-Vault-Token: hvs.nonsense", &url("secret/data/app")]);
    refused(status, &body, 403, "permission denied");
    let (status, body) = curl(&[url("secret/data/app").as_str()]);
    refused(status, &body, 403, "permission denied");
    // A wrap TTL that is not a duration is refused, in Vault's words.
    let (status, body) = curl(
        &[
            &token[..],
            &["-H", "X-Vault-Wrap-TTL: soon", &url("secret/data/app")],
        ]
        .concat(),
    );
    refused(status, &body, 400, "error parsing X-Vault-Wrap-TTL header");
    // An unsupported operation on a known route.
    let (status, body) = curl(
        &[
            &token[..],
            &["-X", "PATCH", "-d", "{}", &url("secret/config")],
        ]
        .concat(),
    );
    refused(status, &body, 405, "unsupported operation");

    assert_eq!(snapshot(&server), before);
    assert_eq!(
        root.get("secret/metadata/app").expect(200).body["data"]["current_version"],
        1
    );
    assert!(root.get("sys/policies/acl/broken").status == 404);
}

#[test]
fn bad_unseal_keys_are_refused_and_leave_the_server_sealed() {
    let server = Server::with_config(
        r#"
storage "raft" {
  path = "{data_dir}"
}
listener "tcp" {
  address     = "127.0.0.1:0"
  tls_disable = true
}
"#,
    );
    let api = server.client(None);
    let init = api
        .call(
            "PUT",
            "sys/init",
            Some(json!({"secret_shares": 3, "secret_threshold": 2})),
        )
        .expect(200);
    let keys: Vec<String> = init.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key.as_str().unwrap().to_owned())
        .collect();
    let progress =
        |api: &coffer_tests::Api| api.get("sys/seal-status").expect(200).body["progress"].clone();

    let garbage = api.call("PUT", "sys/unseal", Some(json!({"key": "not a key!"})));
    assert_eq!(garbage.status, 400);
    assert!(garbage.errors()[0].contains("hex or base64"));
    let short = api.call("PUT", "sys/unseal", Some(json!({"key": "abcd"})));
    assert_eq!(short.status, 400);
    assert!(
        short.errors()[0].contains("wrong length"),
        "{:?}",
        short.body
    );
    assert_eq!(progress(&api), 0);
    let missing = api.call("PUT", "sys/unseal", Some(json!({})));
    assert_eq!(missing.status, 400);

    // A well-formed share twice: the second is refused, progress stays 1.
    api.call("PUT", "sys/unseal", Some(json!({"key": keys[0]})))
        .expect(200);
    let duplicate = api.call("PUT", "sys/unseal", Some(json!({"key": keys[0]})));
    assert_eq!(duplicate.status, 400);
    assert_eq!(progress(&api), 1);

    // A share of the right length that belongs to no one: 400 at the threshold,
    // progress reset, still sealed.
    let mut forged = hex_bytes(&keys[1]);
    forged[5] ^= 0xff;
    let wrong = api.call("PUT", "sys/unseal", Some(json!({"key": hex(&forged)})));
    assert_eq!(wrong.status, 400, "{:?}", wrong.body);
    assert!(wrong.errors()[0].contains("do not open"));
    let status = api.get("sys/seal-status").expect(200);
    assert_eq!(
        (
            status.body["sealed"].clone(),
            status.body["progress"].clone()
        ),
        (json!(true), json!(0))
    );

    // The real shares still work; a share past the threshold changes nothing.
    api.call("PUT", "sys/unseal", Some(json!({"key": keys[2]})))
        .expect(200);
    api.call("PUT", "sys/unseal", Some(json!({"key": keys[0]})))
        .expect(200);
    let past = api.call("PUT", "sys/unseal", Some(json!({"key": keys[1]})));
    assert_eq!(past.status, 200);
    assert_eq!(past.body["sealed"], false);
    assert_eq!(api.get("sys/seal-status").expect(200).body["sealed"], false);
    // Initializing twice is refused.
    let again = api.call(
        "PUT",
        "sys/init",
        Some(json!({"secret_shares": 1, "secret_threshold": 1})),
    );
    assert_eq!(again.status, 400);
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&text[index..index + 2], 16).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn a_stalled_request_body_is_cut_off_with_408() {
    use std::io::{Read, Write};
    let server = Server::with_config(
        r#"
storage "raft" {
  path = "{data_dir}"
}
listener "tcp" {
  address           = "127.0.0.1:0"
  tls_disable       = true
  http_read_timeout = "1s"
}
"#,
    );
    let address = server.address.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    stream
        .write_all(b"PUT /v1/sys/init HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"secret")
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let elapsed = started.elapsed();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(
        response.contains("\"errors\":[\"the request body did not arrive within 1 s\"]"),
        "{response}"
    );
    assert!(elapsed < std::time::Duration::from_secs(5), "{elapsed:?}");
    // Nothing happened, and the server still serves.
    let status = server.client(None).get("sys/seal-status").expect(200);
    assert_eq!(status.body["initialized"], false);
}

/// A snapshot upload may be 256 MiB: the server reads it only from a caller
/// who may restore, and answers anyone else before a byte of it arrives.
#[test]
fn a_snapshot_upload_is_refused_before_its_body_is_read() {
    use std::io::{Read, Write};
    let server = Server::dev();
    let reader = server.root().token_with_policy(
        "reader",
        r#"path "sys/*" { capabilities = ["read", "update"] }"#,
    );
    let address = server.address.trim_start_matches("http://").to_owned();
    for token in [None, Some("not-a-token"), Some(reader.as_str())] {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let header = token.map_or(String::new(), |token| format!("X-Vault-Token: {token}\r\n"));
        write!(
            stream,
            "POST /v1/sys/storage/raft/snapshot-force HTTP/1.1\r\nHost: x\r\n{header}\
             Content-Type: application/octet-stream\r\nContent-Length: 200000000\r\n\r\n"
        )
        .unwrap();
        stream.write_all(&[0u8; 4096]).unwrap();
        let started = std::time::Instant::now();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        while !answer.windows(4).any(|window| window == b"\r\n\r\n") {
            let read = stream
                .read(&mut buffer)
                .expect("an answer without the body");
            assert!(read > 0, "closed without an answer");
            answer.extend_from_slice(&buffer[..read]);
        }
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 403"), "{token:?}: {text}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
    // The root token may: its upload is read (and this one refused as a
    // snapshot, not as a caller).
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "X-Vault-Token: root",
        "--data-binary",
        "not a snapshot",
        &format!("{}/v1/sys/storage/raft/snapshot-force", server.address),
    ]);
    refused(status, &body, 400, "snapshot");
}
