//! The `coffer` client commands against a real server, in the vault CLI's shapes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_tests::{Server, cli};
use serde_json::{Value, json};

#[track_caller]
fn ok(result: (i32, String, String)) -> String {
    let (code, stdout, stderr) = result;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    stdout
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

#[test]
fn kv_commands() {
    let server = Server::dev();
    let root = Some("root");
    let out = ok(cli(
        &server,
        root,
        &[
            "kv",
            "put",
            "secret/app/db",
            "user=admin",
            "password=s3cret",
        ],
    ));
    assert!(out.contains("version") && out.contains('1'), "{out}");
    assert_eq!(
        ok(cli(
            &server,
            root,
            &["kv", "get", "-field=password", "secret/app/db"]
        )),
        "s3cret"
    );
    let got = json_of(&ok(cli(
        &server,
        root,
        &["kv", "get", "-format=json", "secret/app/db"],
    )));
    assert_eq!(
        got["data"]["data"],
        json!({"user": "admin", "password": "s3cret"})
    );
    let table = ok(cli(&server, root, &["kv", "get", "secret/app/db"]));
    assert!(
        table.contains("== Data ==") && table.contains("s3cret"),
        "{table}"
    );
    // -mount form and check-and-set.
    ok(cli(
        &server,
        root,
        &[
            "kv",
            "put",
            "-mount=secret",
            "-cas=1",
            "app/db",
            "password=v2",
        ],
    ));
    let (code, _, stderr) = cli(
        &server,
        root,
        &["kv", "put", "-cas=1", "secret/app/db", "password=v3"],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("Code: 400") && stderr.contains("check-and-set"),
        "{stderr}"
    );
    ok(cli(
        &server,
        root,
        &["kv", "patch", "secret/app/db", "extra=yes"],
    ));
    let got = json_of(&ok(cli(
        &server,
        root,
        &["kv", "get", "-format=json", "secret/app/db"],
    )));
    // put replaces the whole secret; patch merges into it.
    assert_eq!(
        got["data"]["data"],
        json!({"password": "v2", "extra": "yes"})
    );
    assert_eq!(
        ok(cli(
            &server,
            root,
            &[
                "kv",
                "get",
                "-version=1",
                "-field=password",
                "secret/app/db"
            ]
        )),
        "s3cret"
    );

    let listing = ok(cli(&server, root, &["kv", "list", "secret/app"]));
    assert!(listing.contains("db"), "{listing}");
    ok(cli(&server, root, &["kv", "delete", "secret/app/db"]));
    let (code, _, _) = cli(&server, root, &["kv", "get", "secret/app/db"]);
    assert_eq!(code, 2);
    ok(cli(
        &server,
        root,
        &["kv", "undelete", "-versions=3", "secret/app/db"],
    ));
    assert_eq!(
        ok(cli(
            &server,
            root,
            &["kv", "get", "-field=extra", "secret/app/db"]
        )),
        "yes"
    );
    ok(cli(
        &server,
        root,
        &["kv", "destroy", "-versions=1", "secret/app/db"],
    ));
    let metadata = json_of(&ok(cli(
        &server,
        root,
        &["kv", "metadata", "get", "-format=json", "secret/app/db"],
    )));
    assert_eq!(metadata["data"]["versions"]["1"]["destroyed"], true);
    ok(cli(
        &server,
        root,
        &[
            "kv",
            "metadata",
            "put",
            "-max-versions=2",
            "-custom-metadata=owner=ops",
            "secret/app/db",
        ],
    ));
    let metadata = json_of(&ok(cli(
        &server,
        root,
        &["kv", "metadata", "get", "-format=json", "secret/app/db"],
    )));
    assert_eq!(metadata["data"]["max_versions"], 2);
    assert_eq!(metadata["data"]["custom_metadata"], json!({"owner": "ops"}));
    ok(cli(
        &server,
        root,
        &["kv", "metadata", "delete", "secret/app/db"],
    ));
    assert_eq!(
        cli(&server, root, &["kv", "metadata", "get", "secret/app/db"]).0,
        2
    );

    // A KV v1 mount through the same commands, and the generic path commands.
    ok(cli(
        &server,
        root,
        &["secrets", "enable", "-path=legacy", "kv"],
    ));
    ok(cli(&server, root, &["kv", "put", "legacy/app", "a=1"]));
    assert_eq!(
        ok(cli(&server, root, &["kv", "get", "-field=a", "legacy/app"])),
        "1"
    );
    ok(cli(&server, root, &["write", "legacy/other", "b=2"]));
    assert_eq!(
        ok(cli(&server, root, &["read", "-field=b", "legacy/other"])),
        "2"
    );
    let listing = ok(cli(&server, root, &["list", "legacy/"]));
    assert!(
        listing.contains("app") && listing.contains("other"),
        "{listing}"
    );
    ok(cli(&server, root, &["delete", "legacy/other"]));
    assert_eq!(cli(&server, root, &["read", "legacy/other"]).0, 2);
    let mounts = ok(cli(&server, root, &["secrets", "list"]));
    assert!(
        mounts.contains("legacy/") && mounts.contains("secret/"),
        "{mounts}"
    );
    ok(cli(&server, root, &["secrets", "disable", "legacy"]));
    assert!(!ok(cli(&server, root, &["secrets", "list"])).contains("legacy/"));
}

#[test]
fn token_policy_and_operator_commands() {
    let server = Server::dev();
    let root = Some("root");
    let directory = tempfile::tempdir().unwrap();
    let policy_file = directory.path().join("reader.hcl");
    std::fs::write(
        &policy_file,
        "path \"secret/data/shared/*\" {\n  capabilities = [\"read\"]\n}\n",
    )
    .unwrap();
    ok(cli(
        &server,
        root,
        &["policy", "write", "reader", policy_file.to_str().unwrap()],
    ));
    assert!(ok(cli(&server, root, &["policy", "list"])).contains("reader"));
    assert!(ok(cli(&server, root, &["policy", "read", "reader"])).contains("secret/data/shared/*"));

    let created = json_of(&ok(cli(
        &server,
        root,
        &[
            "token",
            "create",
            "-policy=reader",
            "-ttl=1h",
            "-format=json",
        ],
    )));
    let token = created["auth"]["client_token"].as_str().unwrap().to_owned();
    let accessor = created["auth"]["accessor"].as_str().unwrap().to_owned();
    assert_eq!(created["auth"]["policies"], json!(["default", "reader"]));
    ok(cli(&server, root, &["kv", "put", "secret/shared/x", "v=1"]));
    ok(cli(
        &server,
        root,
        &["kv", "put", "secret/private/x", "v=1"],
    ));

    let reader = Some(token.as_str());
    let lookup = json_of(&ok(cli(
        &server,
        reader,
        &["token", "lookup", "-format=json"],
    )));
    assert_eq!(lookup["data"]["accessor"], accessor);
    assert!(lookup["data"]["ttl"].as_u64().unwrap() <= 3600);
    ok(cli(&server, reader, &["token", "renew", "-increment=30m"]));
    let read = json_of(&ok(cli(
        &server,
        reader,
        &["read", "-format=json", "secret/data/shared/x"],
    )));
    assert_eq!(read["data"]["data"]["v"], "1");
    assert_eq!(
        ok(cli(
            &server,
            reader,
            &["kv", "get", "-field=v", "secret/shared/x"]
        )),
        "1"
    );
    let (code, _, stderr) = cli(&server, reader, &["read", "secret/data/private/x"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("Code: 403") && stderr.contains("permission denied"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    let by_accessor = json_of(&ok(cli(
        &server,
        root,
        &["token", "lookup", "-accessor", &accessor, "-format=json"],
    )));
    assert_eq!(by_accessor["data"]["id"], "");
    ok(cli(&server, root, &["token", "revoke", &token]));
    assert_eq!(cli(&server, reader, &["token", "lookup"]).0, 2);
    ok(cli(&server, root, &["policy", "delete", "reader"]));

    // VAULT_ADDR / VAULT_TOKEN work when COFFER_* are not set.
    let output = std::process::Command::new(coffer_tests::binary())
        .args(["kv", "get", "-field=v", "secret/shared/x"])
        .env_remove("COFFER_ADDR")
        .env_remove("COFFER_TOKEN")
        .env("VAULT_ADDR", &server.address)
        .env("VAULT_TOKEN", "root")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "1");

    let rotated = ok(cli(&server, root, &["operator", "rotate"]));
    assert!(
        rotated.contains("Key Term") && rotated.contains('2'),
        "{rotated}"
    );
    let status = ok(cli(&server, root, &["status"]));
    assert!(
        status.contains("Sealed") && status.contains("false"),
        "{status}"
    );
    ok(cli(&server, root, &["operator", "seal"]));
    let (code, status, _) = cli(&server, root, &["status"]);
    assert_eq!(code, 2, "{status}");
    let key = server.unseal_key.clone().unwrap();
    ok(cli(&server, None, &["operator", "unseal", &key]));
    assert_eq!(
        ok(cli(
            &server,
            root,
            &["kv", "get", "-field=v", "secret/shared/x"]
        )),
        "1"
    );
    // A server that cannot be reached is a clear local error, not a panic.
    let output = std::process::Command::new(coffer_tests::binary())
        .args(["status"])
        .env("COFFER_ADDR", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("cannot reach coffer"), "{stderr}");
}

#[test]
fn operator_init_json_has_the_vault_clis_keys() {
    let server = Server::with_config(
        "storage \"raft\" {\n  path = \"{data_dir}\"\n}\nlistener \"tcp\" {\n  address = \"127.0.0.1:0\"\n  tls_disable = true\n}\n",
    );
    let init: Value = serde_json::from_str(&ok(cli(
        &server,
        None,
        &[
            "operator",
            "init",
            "-key-shares=2",
            "-key-threshold=2",
            "-format=json",
        ],
    )))
    .unwrap();
    let keys = init["unseal_keys_b64"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{init}");
    assert_eq!(init["unseal_keys_hex"].as_array().unwrap().len(), 2);
    assert_eq!(init["unseal_shares"], 2);
    assert_eq!(init["unseal_threshold"], 2);
    assert_eq!(init["recovery_keys_b64"], Value::Null);
    assert_eq!(init["recovery_keys_shares"], 0);
    assert!(init["root_token"].as_str().unwrap().starts_with("hvs."));
    let (code, _, _) = cli(
        &server,
        None,
        &["operator", "unseal", keys[0].as_str().unwrap()],
    );
    assert_eq!(code, 2, "sealed after one key of two");
    ok(cli(
        &server,
        None,
        &["operator", "unseal", keys[1].as_str().unwrap()],
    ));
}

#[test]
fn operator_init_and_unseal_on_a_configured_server() {
    let server = Server::with_config(
        "storage \"raft\" {\n  path = \"{data_dir}\"\n}\nlistener \"tcp\" {\n  address = \"127.0.0.1:0\"\n  tls_disable = true\n}\n",
    );
    let init = ok(cli(
        &server,
        None,
        &["operator", "init", "-key-shares=3", "-key-threshold=2"],
    ));
    let keys: Vec<&str> = init
        .lines()
        .filter_map(|line| line.strip_prefix("Unseal Key "))
        .map(|rest| rest.split_once(": ").unwrap().1)
        .collect();
    assert_eq!(keys.len(), 3, "{init}");
    let token = init
        .lines()
        .find_map(|line| line.strip_prefix("Initial Root Token: "))
        .unwrap()
        .to_owned();
    let (code, out, _) = cli(&server, None, &["operator", "unseal", keys[0]]);
    assert_eq!(code, 2, "still sealed after one of two: {out}");
    assert!(out.contains("1/2"), "{out}");
    ok(cli(&server, None, &["operator", "unseal", keys[2]]));
    ok(cli(
        &server,
        Some(&token),
        &["secrets", "enable", "-version=2", "-path=secret", "kv"],
    ));
    ok(cli(
        &server,
        Some(&token),
        &["kv", "put", "secret/a", "b=c"],
    ));

    // A new root token from two of the three shares.
    let root = Some(token.as_str());
    let started = json_of(&ok(cli(
        &server,
        root,
        &["operator", "generate-root", "-init", "-format=json"],
    )));
    let otp = started["otp"].as_str().unwrap().to_owned();
    let nonce = started["nonce"].as_str().unwrap().to_owned();
    let nonce_flag = format!("-nonce={nonce}");
    let progress = ok(cli(
        &server,
        root,
        &["operator", "generate-root", &nonce_flag, keys[1]],
    ));
    assert!(
        progress.contains("Progress") && progress.contains('1'),
        "{progress}"
    );
    let done = json_of(&ok(cli(
        &server,
        root,
        &[
            "operator",
            "generate-root",
            "-format=json",
            &nonce_flag,
            keys[0],
        ],
    )));
    assert_eq!(done["complete"], true);
    let encoded = format!("-decode={}", done["encoded_token"].as_str().unwrap());
    let new_root = ok(cli(
        &server,
        None,
        &[
            "operator",
            "generate-root",
            &encoded,
            &format!("-otp={otp}"),
        ],
    ));
    let new_root = new_root.trim();
    assert!(
        new_root.starts_with("hvs.") && new_root != token,
        "{new_root}"
    );
    let looked_up = json_of(&ok(cli(
        &server,
        Some(new_root),
        &["token", "lookup", "-format=json"],
    )));
    assert_eq!(looked_up["data"]["policies"], json!(["root"]));

    // Rekey to one share: the old shares stop unsealing.
    ok(cli(
        &server,
        root,
        &[
            "operator",
            "rekey",
            "-init",
            "-key-shares=1",
            "-key-threshold=1",
        ],
    ));
    ok(cli(&server, root, &["operator", "rekey", keys[0]]));
    let rekeyed = ok(cli(&server, root, &["operator", "rekey", keys[2]]));
    let new_key = rekeyed
        .lines()
        .find_map(|line| line.strip_prefix("Key 1: "))
        .unwrap_or_else(|| panic!("{rekeyed}"))
        .to_owned();
    ok(cli(&server, root, &["operator", "seal"]));
    let (code, _, stderr) = cli(&server, None, &["operator", "unseal", keys[0]]);
    assert_ne!(code, 0, "an old share still counts: {stderr}");
    assert!(stderr.contains("Code: 400"), "{stderr}");
    let unsealed = ok(cli(&server, None, &["operator", "unseal", &new_key]));
    assert!(unsealed.contains("false"), "{unsealed}");
}

/// `coffer pki issue ROLE NAME`: printed as JSON, or written as the four
/// files `/secrets` shows, the key readable by its owner only; a name the
/// role refuses fails with the server's text.
#[test]
fn pki_issue_prints_or_writes_files() {
    use std::os::unix::fs::PermissionsExt as _;
    let server = Server::dev();
    let root = Some("root");
    let api = server.root();
    api.post("sys/mounts/pki", json!({"type": "pki"}))
        .expect(204);
    api.post(
        "pki/root/generate/internal",
        json!({"common_name": "cli root", "key_type": "ec"}),
    )
    .expect(200);
    let role = api.post(
        "pki/roles/web",
        json!({"allowed_domains": ["example.com"], "allow_subdomains": true, "key_type": "ec", "ttl": "2h"}),
    );
    assert!(role.status == 200 || role.status == 204, "{role:?}");

    let answer = json_of(&ok(cli(
        &server,
        root,
        &[
            "pki",
            "issue",
            "-format=json",
            "-ttl=1h",
            "-alt-names=api.example.com",
            "web",
            "www.example.com",
        ],
    )));
    let data = &answer["data"];
    assert!(
        data["certificate"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert!(
        data["private_key"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );
    let expiration = data["expiration"].as_u64().unwrap();
    let now = coffer_daemon::clock::now_seconds();
    assert!(
        expiration <= now + 3600 && expiration + 60 > now + 3600,
        "{data}"
    );

    let directory = tempfile::tempdir().unwrap();
    let out = directory.path().join("www");
    let printed = ok(cli(
        &server,
        root,
        &[
            "pki",
            "issue",
            &format!("-out={}", out.display()),
            "web",
            "www.example.com",
        ],
    ));
    assert!(printed.contains("www.example.com"), "{printed}");
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    let mode = |name: &str| {
        std::fs::metadata(out.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("key.pem"), 0o600);
    assert_eq!(mode("bundle.pem"), 0o600);
    assert_eq!(
        read("bundle.pem"),
        format!(
            "{}{}{}",
            read("key.pem"),
            read("cert.pem"),
            read("chain.pem")
        )
    );
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-CAfile", "chain.pem", "cert.pem"])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");

    let (code, _, stderr) = cli(&server, root, &["pki", "issue", "web", "www.example.org"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("common name www.example.org not allowed by this role"),
        "{stderr}"
    );
}

/// `coffer auth enable|list|disable` and `coffer login` with userpass and
/// approle: the token printed works, and disabling the method revokes it.
#[test]
fn auth_methods_and_login() {
    let server = Server::dev();
    let root = Some("root");
    let out = ok(cli(
        &server,
        root,
        &["auth", "enable", "-default-lease-ttl=1h", "userpass"],
    ));
    assert!(
        out.contains("Enabled userpass auth method at: userpass/"),
        "{out}"
    );
    ok(cli(&server, root, &["auth", "enable", "approle"]));
    let listed = json_of(&ok(cli(&server, root, &["auth", "list", "-format=json"])));
    assert_eq!(listed["userpass/"]["type"], "userpass");
    assert_eq!(listed["approle/"]["type"], "approle");
    assert!(ok(cli(&server, root, &["auth", "list"])).contains("approle/"));

    ok(cli(
        &server,
        root,
        &[
            "write",
            "auth/userpass/users/alice",
            "password=s3cret",
            "token_policies=default",
        ],
    ));
    let directory = tempfile::tempdir().unwrap();
    let password = directory.path().join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let table = ok(cli(
        &server,
        None,
        &[
            "login",
            "-method=userpass",
            "username=alice",
            &format!("password=@{}", password.display()),
        ],
    ));
    assert!(
        table.contains("token_meta_username") && table.contains("alice"),
        "{table}"
    );
    assert!(
        table.contains("token_duration") && table.contains("1h"),
        "{table}"
    );
    let token = table
        .lines()
        .find_map(|line| line.strip_prefix("token "))
        .unwrap()
        .trim()
        .to_owned();
    server
        .client(Some(&token))
        .get("auth/token/lookup-self")
        .expect(200);
    let (code, _, stderr) = cli(
        &server,
        None,
        &[
            "login",
            "-method=userpass",
            "username=alice",
            "password=wrong",
        ],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("invalid username or password"), "{stderr}");

    ok(cli(
        &server,
        root,
        &["write", "auth/approle/role/ci", "token_policies=default"],
    ));
    let role_id = ok(cli(
        &server,
        root,
        &["read", "-field=role_id", "auth/approle/role/ci/role-id"],
    ));
    let secret_id = ok(cli(
        &server,
        root,
        &["write", "-format=json", "auth/approle/role/ci/secret-id"],
    ));
    let secret_id = json_of(&secret_id)["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = json_of(&ok(cli(
        &server,
        None,
        &[
            "login",
            "-format=json",
            "-method=approle",
            &format!("role_id={role_id}"),
            &format!("secret_id={secret_id}"),
        ],
    )));
    assert_eq!(answer["auth"]["metadata"]["role_name"], "ci");

    let out = ok(cli(&server, root, &["auth", "disable", "userpass"]));
    assert!(out.contains("Disabled the auth method"), "{out}");
    assert_eq!(
        server
            .client(Some(&token))
            .get("auth/token/lookup-self")
            .status,
        403,
        "the method's tokens are revoked with it"
    );
}

/// A minimal host (no ca-certificates) has no system roots: the CLI still
/// reaches a plain-HTTP server, and says why an https:// one cannot work.
#[test]
fn a_host_without_ca_certificates_reaches_a_plain_http_server() {
    let server = Server::dev();
    let without_roots = |address: &str| {
        std::process::Command::new(coffer_tests::binary())
            .args(["status", "-address", address])
            .env("SSL_CERT_FILE", "/dev/null")
            .env("SSL_CERT_DIR", "/nonexistent")
            .env_remove("COFFER_CACERT")
            .env_remove("VAULT_CACERT")
            .output()
            .expect("run coffer")
    };
    let plain = without_roots(&server.address);
    assert_eq!(
        plain.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    assert!(String::from_utf8_lossy(&plain.stdout).contains("Sealed"));
    let tls = without_roots("https://127.0.0.1:1");
    assert!(
        String::from_utf8_lossy(&tls.stderr).contains("No CA certificates"),
        "{}",
        String::from_utf8_lossy(&tls.stderr)
    );
}
