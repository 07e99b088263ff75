//! The `/secrets` filesystem on a real FUSE mount, read by real processes as
//! other uids (`setpriv`): per-uid rights from `auth/local` roles, KV fields and
//! their `.json`/`.env` files, leased database credentials shared by one
//! caller's files, audit entries naming the reader, read-only-ness, sealing, and
//! a daemon killed with `kill -9` and started again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use coffer_tests::cluster::wait_for;
use coffer_tests::databases::Postgres;
use coffer_tests::{Api, Server, mounts_at, run_as, wait_mounted};
use serde_json::{Value, json};

/// Readers with roles; `NOBODY` matches none.
const ALICE: u32 = 61001;
const BOB: u32 = 61002;
const NOBODY: u32 = 61003;
/// A group some role binds.
const OPS_GROUP: u32 = 61500;

/// The timing checks (lease renewal, drops on time) want the two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn policy(api: &Api, name: &str, text: &str) {
    api.call(
        "PUT",
        &format!("sys/policies/acl/{name}"),
        Some(json!({"policy": text})),
    )
    .expect(204);
}

/// Alice reads `secret/a/*`, Bob `secret/b/*`, the ops group `secret/ops/*`.
fn roles(api: &Api) {
    policy(
        api,
        "team-a",
        "path \"secret/data/a/*\" {\n capabilities = [\"read\"]\n}\npath \"secret/metadata/a/*\" {\n capabilities = [\"list\"]\n}",
    );
    policy(
        api,
        "team-b",
        "path \"secret/data/b/*\" {\n capabilities = [\"read\"]\n}",
    );
    policy(
        api,
        "ops",
        "path \"secret/data/ops/*\" {\n capabilities = [\"read\"]\n}",
    );
    api.post(
        "auth/local/role/alice",
        json!({"bound_uids": [ALICE], "policies": "team-a"}),
    )
    .expect(204);
    api.post(
        "auth/local/role/bob",
        json!({"bound_uids": [BOB], "policies": ["team-b"]}),
    )
    .expect(204);
    api.post(
        "auth/local/role/ops",
        json!({"bound_gids": [OPS_GROUP], "policies": ["ops"]}),
    )
    .expect(204);
}

fn cat(uid: u32, path: &Path) -> Result<String, String> {
    cat_with_groups(uid, &[], path)
}

fn cat_with_groups(uid: u32, groups: &[u32], path: &Path) -> Result<String, String> {
    let (code, stdout, stderr) = run_as(uid, uid, groups, "cat", &[path.to_str().unwrap()]);
    if code == 0 { Ok(stdout) } else { Err(stderr) }
}

fn ls(uid: u32, path: &Path) -> Result<Vec<String>, String> {
    let (code, stdout, stderr) = run_as(uid, uid, &[], "ls", &["-1", path.to_str().unwrap()]);
    if code == 0 {
        Ok(stdout.lines().map(str::to_owned).collect())
    } else {
        Err(stderr)
    }
}

/// A dev server with the roles, and `secret/a/db` holding `password = "p"`,
/// which Alice has just read: (server, root client, the password file).
fn alice_reads_p() -> (Server, Api, PathBuf) {
    let server = Server::dev_with_fuse();
    let api = server.root();
    roles(&api);
    api.kv_put("a/db", json!({"password": "p"}));
    let file = mount_point(&server).join("secret/a/db/password");
    assert_eq!(cat(ALICE, &file).unwrap(), "p");
    (server, api, file)
}

fn mount_point(server: &Server) -> PathBuf {
    server.fuse.clone().unwrap()
}

#[test]
fn kv_fields_json_and_env_files_show_each_write_at_the_next_open() {
    let _serial = serial();
    let server = Server::dev_with_fuse();
    let api = server.root();
    roles(&api);
    api.kv_put(
        "a/db",
        json!({"password": "it's s3cret $HOME", "user": "app", "port": 5432, "bad-name": "x"}),
    );
    let secrets = mount_point(&server);
    let db = secrets.join("secret/a/db");

    assert_eq!(
        cat(ALICE, &db.join("password")).unwrap(),
        "it's s3cret $HOME"
    );
    assert_eq!(cat(ALICE, &db.join("port")).unwrap(), "5432");
    let whole: Value = serde_json::from_str(&cat(ALICE, &db.join("db.json")).unwrap()).unwrap();
    assert_eq!(whole["user"], "app");
    assert_eq!(whole["port"], 5432);
    // The env file survives a real shell, quotes and dollars included.
    let (code, stdout, stderr) = run_as(
        ALICE,
        ALICE,
        &[],
        "sh",
        &[
            "-c",
            &format!(
                ". {} && printf '%s|%s|%s' \"$password\" \"$user\" \"$port\"",
                db.join("db.env").display()
            ),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "it's s3cret $HOME|app|5432");
    let env = cat(ALICE, &db.join("db.env")).unwrap();
    assert!(env.contains("# skipped \"bad-name\""), "{env}");

    let mut files = ls(ALICE, &db).unwrap();
    files.sort();
    assert_eq!(
        files,
        ["bad-name", "db.env", "db.json", "password", "port", "user"]
    );

    // A write over HTTP shows at the very next open: nothing is cached.
    for round in 0..5 {
        let value = format!("rotated-{round}");
        api.kv_put("a/db", json!({"password": value}));
        assert_eq!(cat(ALICE, &db.join("password")).unwrap(), value);
    }
    // The field that went away is gone.
    let missing = cat(ALICE, &db.join("port")).unwrap_err();
    assert!(missing.contains("No such file"), "{missing}");
    // A new secret appears at once too.
    api.kv_put("a/new", json!({"token": "t1"}));
    assert_eq!(
        cat(ALICE, &secrets.join("secret/a/new/token")).unwrap(),
        "t1"
    );
}

#[test]
fn each_uid_reads_and_lists_only_what_its_roles_allow() {
    let _serial = serial();
    let server = Server::dev_with_fuse();
    let api = server.root();
    roles(&api);
    api.kv_put("a/db", json!({"password": "alice-pass"}));
    api.kv_put("b/db", json!({"password": "bob-pass"}));
    api.kv_put("ops/key", json!({"value": "ops-key"}));
    let secrets = mount_point(&server);

    assert_eq!(
        cat(ALICE, &secrets.join("secret/a/db/password")).unwrap(),
        "alice-pass"
    );
    assert_eq!(
        cat(BOB, &secrets.join("secret/b/db/password")).unwrap(),
        "bob-pass"
    );
    for (uid, path) in [
        (ALICE, "secret/b/db/password"),
        (BOB, "secret/a/db/password"),
    ] {
        let error = cat(uid, &secrets.join(path)).unwrap_err();
        assert!(error.contains("Permission denied"), "{uid} {path}: {error}");
    }
    // Alice's lookups sit in the kernel's (shared) dentry cache for a second:
    // Bob still gets nothing from them.
    assert_eq!(
        cat(ALICE, &secrets.join("secret/a/db/password")).unwrap(),
        "alice-pass"
    );
    for program in ["stat", "cat", "ls"] {
        let target = secrets.join("secret/a/db/password");
        let (code, _, stderr) = run_as(BOB, BOB, &[], program, &[target.to_str().unwrap()]);
        assert_ne!(code, 0, "{program} as Bob succeeded");
        assert!(stderr.contains("Permission denied"), "{program}: {stderr}");
    }
    // A path that does not exist where the caller has no rights: 403, not 404.
    let error = cat(BOB, &secrets.join("secret/a/nothing/x")).unwrap_err();
    assert!(error.contains("Permission denied"), "{error}");

    // Above the mounts, each caller sees the mounts it may use; inside one,
    // a folder lists what LIST on its metadata path shows, so `list` is
    // needed there (Alice has it on `a/` only, Bob nowhere).
    assert_eq!(ls(ALICE, &secrets).unwrap(), ["secret"]);
    assert_eq!(ls(ALICE, &secrets.join("secret/a")).unwrap(), ["db"]);
    for (uid, folder) in [(ALICE, "secret"), (BOB, "secret"), (BOB, "secret/b")] {
        let error = ls(uid, &secrets.join(folder)).unwrap_err();
        assert!(
            error.contains("Permission denied"),
            "{uid} {folder}: {error}"
        );
    }

    // A role bound to a group matches a supplementary group.
    assert_eq!(
        cat_with_groups(NOBODY, &[OPS_GROUP], &secrets.join("secret/ops/key/value")).unwrap(),
        "ops-key"
    );
    // An unmapped uid sees nothing at all.
    let error = ls(NOBODY, &secrets).unwrap_err();
    assert!(error.contains("Permission denied"), "{error}");
    let error = cat(NOBODY, &secrets.join("secret/a/db/password")).unwrap_err();
    assert!(error.contains("Permission denied"), "{error}");

    // Deleting the role takes the rights away at the next open.
    api.delete("auth/local/role/bob").expect(204);
    let error = cat(BOB, &secrets.join("secret/b/db/password")).unwrap_err();
    assert!(error.contains("Permission denied"), "{error}");
}

#[test]
fn writes_and_deletes_fail_with_erofs_and_opens_are_audited() {
    let _serial = serial();
    let server = Server::dev_with_fuse();
    let api = server.root();
    roles(&api);
    api.kv_put("a/db", json!({"password": "p"}));
    let audit_log = server.workspace().join("audit.log");
    api.post(
        "sys/audit/file",
        json!({"type": "file", "options": {"file_path": audit_log}}),
    )
    .expect(204);
    let secrets = mount_point(&server);
    let file = secrets.join("secret/a/db/password");

    for script in [
        format!("echo x > {}", file.display()),
        format!("echo x >> {}", file.display()),
        format!("rm -f {}", file.display()),
        format!("mkdir {}", secrets.join("secret/a/new").display()),
        format!("touch {}", secrets.join("secret/a/db/new").display()),
        format!(
            "mv {} {}",
            file.display(),
            secrets.join("secret/a/db/moved").display()
        ),
    ] {
        let (code, _, stderr) = run_as(ALICE, ALICE, &[], "sh", &["-c", &script]);
        assert_ne!(code, 0, "{script} succeeded");
        assert!(
            stderr.contains("Read-only file system"),
            "{script}: {stderr}"
        );
    }
    assert_eq!(cat(ALICE, &file).unwrap(), "p", "nothing changed");

    let (code, _, _) = run_as(ALICE, ALICE, &[], "/usr/bin/cat", &[file.to_str().unwrap()]);
    assert_eq!(code, 0);
    let entries: Vec<Value> = std::fs::read_to_string(&audit_log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let read = entries
        .iter()
        .find(|entry| {
            entry["type"] == "request"
                && entry["request"]["path"] == "secret/data/a/db"
                && entry["request"]["transport"] == "fuse"
        })
        .expect("an audited read through FUSE");
    let peer = &read["request"]["peer"];
    assert_eq!(peer["uid"], ALICE);
    assert_eq!(peer["gid"], ALICE);
    assert!(peer["pid"].as_u64().unwrap() > 1, "{peer}");
    assert!(
        peer["executable"].as_str().unwrap().ends_with("/cat"),
        "{peer}"
    );
    assert_eq!(read["auth"]["display_name"], "local-alice");
    assert_eq!(
        read["auth"]["client_token"], "",
        "a local caller has no token"
    );
    // No value in the audit log in plaintext.
    let text = std::fs::read_to_string(&audit_log).unwrap();
    assert!(
        !text.contains("\"p\""),
        "a secret value reached the audit log"
    );
}

#[test]
fn sealed_opens_fail_with_eagain_and_sigterm_unmounts() {
    let _serial = serial();
    let (mut server, api, file) = alice_reads_p();
    let secrets = mount_point(&server);

    api.call("PUT", "sys/seal", None).expect(204);
    let error = cat(ALICE, &file).unwrap_err();
    assert!(
        error.contains("Resource temporarily unavailable"),
        "{error}"
    );
    let key = server.unseal_key.clone().unwrap();
    api.call("PUT", "sys/unseal", Some(json!({"key": key})))
        .expect(200);
    assert_eq!(cat(ALICE, &file).unwrap(), "p");

    assert_eq!(server.terminate(), Some(0));
    assert!(
        mounts_at(&secrets).is_empty(),
        "still mounted after SIGTERM"
    );
}

#[test]
fn a_killed_daemon_leaves_no_dead_mount_and_mounts_again() {
    let _serial = serial();
    let (mut server, _api, file) = alice_reads_p();
    let secrets = mount_point(&server);

    // kill -9: fusermount3's auto-unmount takes the mount down.
    let watcher = fusermount_of(server.pid());
    server.kill9();
    wait_for(Duration::from_secs(5), "the auto-unmount", || {
        mounts_at(&secrets).is_empty().then_some(())
    });
    restart_and_unseal(&mut server);
    assert_eq!(cat(ALICE, &file).unwrap(), "p");
    assert!(watcher.is_some(), "no fusermount3 watched the mount");

    // Worse: the watcher dies too, and a dead mount stays behind.
    let watcher = fusermount_of(server.pid()).expect("fusermount3 watcher");
    assert!(coffer_tests::send_signal(watcher, "KILL"));
    server.kill9();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(mounts_at(&secrets), ["fuse.coffer"], "a stale mount");
    let error = std::fs::metadata(&secrets).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(107), "ENOTCONN: {error}");
    // Starting again detaches it and mounts: no manual cleanup.
    restart_and_unseal(&mut server);
    assert_eq!(cat(ALICE, &file).unwrap(), "p");
    assert!(
        server
            .log()
            .contains("detached a coffer mount left by an earlier run")
    );
}

fn fusermount_of(pid: u32) -> Option<u32> {
    let output = std::process::Command::new("pgrep")
        .args(["-P", &pid.to_string(), "fusermount3"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn restart_and_unseal(server: &mut Server) {
    server.restart();
    let key = server.unseal_key.clone().unwrap();
    server
        .client(None)
        .call("PUT", "sys/unseal", Some(json!({"key": key})))
        .expect(200);
    wait_mounted(&server.fuse.clone().unwrap());
}

#[test]
fn a_non_empty_mount_point_is_refused_with_a_clear_message() {
    let workspace = tempfile::tempdir().unwrap();
    let mount_point = workspace.path().join("secrets");
    std::fs::create_dir(&mount_point).unwrap();
    std::fs::write(mount_point.join("keep.txt"), b"mine").unwrap();
    let output = std::process::Command::new(coffer_tests::binary())
        .args([
            "server",
            "--dev",
            "--dev-listen",
            "127.0.0.1:0",
            "--dev-fuse",
        ])
        .arg(&mount_point)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(
        std::fs::read(mount_point.join("keep.txt")).unwrap(),
        b"mine"
    );
}

#[test]
fn eight_concurrent_readers_never_see_mixed_content() {
    let _serial = serial();
    let server = Server::dev_with_fuse();
    let api = server.root();
    roles(&api);
    // The test process itself (uid 0) reads: a role maps it.
    policy(
        &api,
        "reader",
        "path \"secret/data/load/*\" {\n capabilities = [\"read\"]\n}",
    );
    api.post(
        "auth/local/role/root-reader",
        json!({"bound_uids": [0], "policies": ["reader"]}),
    )
    .expect(204);
    let value = |version: u64| format!("value-{version:04}-{}", "x".repeat(200));
    api.kv_put("load/item", json!({"a": value(0), "b": value(0)}));
    let dir = mount_point(&server).join("secret/load/item");

    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let api = api.clone();
        let writing = writing.clone();
        std::thread::spawn(move || {
            let mut version = 0;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                version += 1;
                api.kv_put(
                    "load/item",
                    json!({"a": value(version), "b": value(version)}),
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            version
        })
    };
    let readers: Vec<_> = (0..8)
        .map(|reader| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut errors = Vec::new();
                for round in 0..1000 {
                    let name = if (reader + round) % 2 == 0 {
                        "a"
                    } else {
                        "item.json"
                    };
                    match std::fs::read(dir.join(name)) {
                        Ok(bytes) if name == "a" => {
                            let text = String::from_utf8(bytes).unwrap();
                            if !(text.starts_with("value-") && text.len() == 211) {
                                errors.push(format!("torn field: {text:?}"));
                            }
                        }
                        Ok(bytes) => {
                            let whole: Value = serde_json::from_slice(&bytes).unwrap();
                            if whole["a"] != whole["b"] {
                                errors.push(format!("mixed versions: {whole}"));
                            }
                        }
                        Err(error) => errors.push(error.to_string()),
                    }
                }
                errors
            })
        })
        .collect();
    let started = Instant::now();
    let errors: Vec<String> = readers
        .into_iter()
        .flat_map(|reader| reader.join().unwrap())
        .collect();
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    let versions = writer.join().unwrap();
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
    assert!(versions > 5, "the writer ran ({versions} versions)");
    eprintln!(
        "8 x 1000 opens in {:?} with {versions} writes meanwhile",
        started.elapsed()
    );
}

const CREATE_PG: &str = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON items TO "{{name}}";"#;

#[test]
fn credential_files_share_one_lease_per_uid_renewed_then_replaced() {
    let _serial = serial();
    let postgres = Postgres::start();
    postgres.admin("CREATE TABLE items (id int); INSERT INTO items VALUES (7);");
    let server = Server::dev_with_fuse();
    let api = server.root();
    postgres.mount_connection(&api, &["app"]);
    api.post(
        "database/roles/app",
        json!({"db_name": "pg", "creation_statements": [CREATE_PG], "default_ttl": "3s", "max_ttl": "9s"}),
    )
    .expect(204);
    policy(
        &api,
        "app-db",
        "path \"database/creds/app\" {\n capabilities = [\"read\"]\n}",
    );
    api.post(
        "auth/local/role/app",
        json!({"bound_uids": [ALICE, BOB], "policies": ["app-db"]}),
    )
    .expect(204);
    let creds = mount_point(&server).join("database/creds/app");

    // Two separate processes read the two files: one user, and it logs in.
    let issued = Instant::now();
    let username = cat(ALICE, &creds.join("username")).unwrap();
    let password = cat(ALICE, &creds.join("password"))
        .unwrap_or_else(|error| panic!("{error}\n{}", server.log()));
    assert!(username.starts_with("v-local"), "{username}");
    assert_eq!(
        postgres
            .query_as(&username, &password, "SELECT id::text FROM items")
            .unwrap()
            .as_deref(),
        Some("7")
    );
    let lease: Value =
        serde_json::from_str(&cat(ALICE, &creds.join("lease.json")).unwrap()).unwrap();
    assert!(
        lease["lease_id"]
            .as_str()
            .unwrap()
            .starts_with("database/creds/app/"),
        "{lease}"
    );
    assert!(lease["ttl"].as_u64().unwrap() <= 3, "{lease}");
    let env = cat(ALICE, &creds.join("app.env")).unwrap();
    assert_eq!(
        env,
        format!("PASSWORD='{password}'\nUSERNAME='{username}'\n")
    );
    let mut files = ls(ALICE, &creds).unwrap();
    files.sort();
    assert_eq!(files, ["app.env", "lease.json", "password", "username"]);

    // Another uid gets its own user; the first uid keeps its own.
    let other = cat(BOB, &creds.join("username")).unwrap();
    assert_ne!(other, username);
    assert_eq!(cat(ALICE, &creds.join("username")).unwrap(), username);
    assert_eq!(postgres.roles_like("v-local").len(), 2);
    let error = cat(NOBODY, &creds.join("username")).unwrap_err();
    assert!(error.contains("Permission denied"), "{error}");

    // Read in use past its 3 s TTL: renewed, still the same working user.
    while issued.elapsed() < Duration::from_millis(4500) {
        let now = cat(ALICE, &creds.join("username")).unwrap();
        assert_eq!(now, username, "{}", server.log());
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(
        postgres
            .query_as(&username, &password, "SELECT 1::text")
            .is_ok()
    );

    // Near its 9 s max TTL the lease is replaced by a new user...
    let replaced = wait_for(Duration::from_secs(10), "a new user near max TTL", || {
        let now = cat(ALICE, &creds.join("username")).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        (now != username).then_some(now)
    });
    assert!(
        issued.elapsed() >= Duration::from_secs(6),
        "replaced too early"
    );
    let new_password = cat(ALICE, &creds.join("password")).unwrap();
    assert!(
        postgres
            .query_as(&replaced, &new_password, "SELECT 1::text")
            .is_ok()
    );
    // ...and the old one is dropped when its max TTL ends.
    wait_for(
        Duration::from_secs(14),
        "the old user to be dropped",
        || (!postgres.role_exists(&username)).then_some(()),
    );
    let late = issued.elapsed().as_secs_f64() - 9.0;
    assert!(late < 2.5, "dropped {late:.1} s after its max TTL");
}

/// A configured (not dev) server with `fuse { revoke_unused_leases = true }`:
/// mounted only once unsealed; a credential nobody opens any more is revoked
/// before its lease would have run out.
#[test]
fn a_configured_mount_revokes_unused_leases_before_they_expire() {
    let _serial = serial();
    let postgres = Postgres::start();
    let mut server = Server::with_config(
        r#"
storage "raft" {
  path    = "{data_dir}"
  node_id = "fuse-1"
}
listener "tcp" {
  address     = "127.0.0.1:0"
  tls_disable = true
}
cluster_addr = "http://127.0.0.1:0"
fuse {
  mount_point          = "{data_dir}-secrets"
  threads              = 4
  revoke_unused_leases = true
}
"#,
    );
    let mount_point = PathBuf::from(format!("{}-secrets", server.data_dir.display()));
    server.fuse = Some(mount_point.clone());
    std::thread::sleep(Duration::from_millis(500));
    assert!(mounts_at(&mount_point).is_empty(), "mounted while sealed");
    let init = server
        .client(None)
        .call(
            "PUT",
            "sys/init",
            Some(json!({"secret_shares": 1, "secret_threshold": 1})),
        )
        .expect(200);
    let key = init.body["keys"][0].as_str().unwrap().to_owned();
    let token = init.body["root_token"].as_str().unwrap().to_owned();
    server
        .client(None)
        .post("sys/unseal", json!({"key": key}))
        .expect(200);
    wait_mounted(&mount_point);
    let api = server.client(Some(&token));
    postgres.mount_connection(&api, &["app"]);
    api.post(
        "database/roles/app",
        json!({"db_name": "pg", "creation_statements": [r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"#], "default_ttl": "12s"}),
    )
    .expect(204);
    policy(
        &api,
        "app-db",
        "path \"database/creds/app\" {\n capabilities = [\"read\"]\n}",
    );
    api.post(
        "auth/local/role/app",
        json!({"bound_uids": [ALICE], "policies": ["app-db"]}),
    )
    .expect(204);

    let read = Instant::now();
    let username = cat(ALICE, &mount_point.join("database/creds/app/username")).unwrap();
    assert!(postgres.role_exists(&username));
    // Unused for 2/3 of its 12 s TTL (8 s): revoked then, not at 12 s.
    wait_for(
        Duration::from_secs(11),
        "the unused lease to be revoked",
        || (!postgres.role_exists(&username)).then_some(()),
    );
    let after = read.elapsed();
    assert!(
        after >= Duration::from_secs(7) && after < Duration::from_secs(11),
        "revoked after {after:?}"
    );
    // Reading again leases a new user.
    let again = cat(ALICE, &mount_point.join("database/creds/app/username")).unwrap();
    assert_ne!(again, username);
}

/// A deny below a broad grant hides the names it covers from every door, and
/// the filesystem's listings need `list` as LIST does.
#[test]
fn names_behind_a_deny_appear_through_no_door() {
    let _serial = serial();
    let server = Server::dev_with_fuse_and_unix();
    let api = server.root();
    let text = r#"
path "secret/*" { capabilities = ["read", "list"] }
path "secret/data/private/*" { capabilities = ["deny"] }
path "secret/metadata/private/*" { capabilities = ["deny"] }
"#;
    let token = api.token_with_policy("mostly", text);
    api.post(
        "auth/local/role/alice",
        json!({"bound_uids": [ALICE], "policies": ["mostly"]}),
    )
    .expect(204);
    api.kv_put("public/app", json!({"value": "public-value"}));
    api.kv_put("private/db-password", json!({"value": "hidden-value"}));
    api.kv_put("private/nested/api-key", json!({"value": "hidden-too"}));
    let hidden = [
        "db-password",
        "nested",
        "api-key",
        "hidden-value",
        "hidden-too",
    ];
    let assert_hidden = |door: &str, text: &str| {
        for name in hidden {
            assert!(!text.contains(name), "{door} shows {name:?}: {text}");
        }
    };

    // HTTP with a token, and the Unix socket as the role's uid.
    let client = server.client(Some(&token));
    let socket = server.unix.clone().unwrap();
    let socket_call = |method: &str, path: &str| {
        let (code, stdout, stderr) = run_as(
            ALICE,
            ALICE,
            &[],
            "curl",
            &[
                "-sS",
                "-X",
                method,
                "-w",
                "\n%{http_code}",
                "--unix-socket",
                socket.to_str().unwrap(),
                &format!("http://localhost/v1/{path}"),
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        let (body, status) = stdout.rsplit_once('\n').unwrap();
        (status.trim().parse::<u16>().unwrap(), body.to_owned())
    };
    for (method, path, allowed) in [
        ("LIST", "secret/metadata/", true),
        ("LIST", "secret/metadata/private/", false),
        ("LIST", "secret/metadata/private/nested/", false),
        ("GET", "secret/data/private/db-password", false),
        ("LIST", "sys/internal/fs/secret", true),
        ("LIST", "sys/internal/fs/secret/private", false),
        ("LIST", "sys/internal/fs/secret/private/nested", false),
        ("GET", "sys/internal/fs/secret/private", false),
        ("GET", "sys/internal/fs/secret/private/db-password", false),
        ("GET", "sys/internal/fs/secret/private/nested", false),
    ] {
        let answer = client.call(method, path, None);
        assert_eq!(
            answer.status == 200,
            allowed,
            "HTTP {method} {path}: {:?}",
            answer.body
        );
        assert_hidden(&format!("HTTP {method} {path}"), &answer.body.to_string());
        let (status, body) = socket_call(method, path);
        assert_eq!(status == 200, allowed, "socket {method} {path}: {body}");
        assert_hidden(&format!("socket {method} {path}"), &body);
    }

    // The filesystem: the whole tree as Alice sees it.
    let secrets = mount_point(&server);
    let (_, found, _) = run_as(ALICE, ALICE, &[], "find", &[secrets.to_str().unwrap()]);
    assert!(found.contains("public/app/value"), "{found}");
    assert_hidden("FUSE find", &found);
    for path in [
        "secret/private/db-password/value",
        "secret/private/nested/api-key/value",
    ] {
        // `secret/private` itself is a path the policy lets Alice read (the
        // deny covers what is under it): nothing there, so ENOENT, and
        // nothing below it is looked up.
        let error = cat(ALICE, &secrets.join(path)).unwrap_err();
        assert!(
            error.contains("Permission denied") || error.contains("No such file"),
            "{path}: {error}"
        );
    }
    let error = ls(ALICE, &secrets.join("secret/private")).unwrap_err();
    assert!(
        error.contains("Permission denied") || error.contains("No such file"),
        "{error}"
    );
    assert_eq!(
        cat(ALICE, &secrets.join("secret/public/app/value")).unwrap(),
        "public-value"
    );
}

/// A lease taken by a caller that only a group-bound role lets in is renewed
/// as that caller (groups included), not as a bare uid the role refuses.
#[test]
fn a_group_bound_callers_lease_is_renewed_as_that_caller() {
    let _serial = serial();
    let postgres = Postgres::start();
    postgres.admin("CREATE TABLE items (id int); INSERT INTO items VALUES (7);");
    let server = Server::dev_with_fuse();
    let api = server.root();
    postgres.mount_connection(&api, &["app"]);
    api.post(
        "database/roles/app",
        json!({"db_name": "pg", "creation_statements": [CREATE_PG], "default_ttl": "3s", "max_ttl": "1m"}),
    )
    .expect(204);
    policy(
        &api,
        "app-db",
        "path \"database/creds/app\" {\n capabilities = [\"read\"]\n}",
    );
    api.post(
        "auth/local/role/ops-db",
        json!({"bound_gids": [OPS_GROUP], "policies": ["app-db"]}),
    )
    .expect(204);
    let creds = mount_point(&server).join("database/creds/app");
    let username = cat_with_groups(NOBODY, &[OPS_GROUP], &creds.join("username")).unwrap();
    let password = cat_with_groups(NOBODY, &[OPS_GROUP], &creds.join("password")).unwrap();
    // Held open past the 3 s TTL: the filesystem renews it meanwhile.
    let holder = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            &format!("--groups={OPS_GROUP}"),
            "--",
            "sh",
            "-c",
            &format!("exec 3< {}; sleep 7", creds.join("username").display()),
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        postgres
            .query_as(&username, &password, "SELECT id::text FROM items")
            .is_ok(),
        "the user was dropped: its lease was not renewed\n{}",
        server.log()
    );
    let _ = holder.wait_with_output();
    assert!(
        !server.log().contains("could not renew a lease"),
        "{}",
        server.log()
    );
}

/// `openssl` with `args`, in `directory`; its stdout.
fn openssl(directory: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("openssl")
        .args(args)
        .current_dir(directory)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The serial of a PEM certificate, as the PKI engine lists it (`4a:3f:..`).
fn serial_of(directory: &Path, pem: &str) -> String {
    std::fs::write(directory.join("serial.pem"), pem).unwrap();
    let hex = openssl(
        directory,
        &["x509", "-in", "serial.pem", "-noout", "-serial"],
    );
    let hex = hex
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase();
    hex.as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

/// `/secrets/pki/issue/<role>/<name>/`: the first read by a uid issues a
/// certificate its four files share; another uid gets its own; a uid
/// without `update` on `pki/issue/<role>` gets EACCES; a name the role does
/// not allow is not there; the certificate is re-issued after 2/3 of its
/// TTL, and when its lease is revoked (which revokes the certificate).
#[test]
fn certificate_files_are_one_issuance_per_uid_and_name() {
    let _serial = serial();
    let server = Server::dev_with_fuse();
    let api = server.root();
    api.post(
        "sys/mounts/pki",
        json!({"type": "pki", "config": {"max_lease_ttl": "87600h"}}),
    )
    .expect(204);
    api.post(
        "pki/root/generate/internal",
        json!({"common_name": "fs root", "key_type": "ec", "ttl": "87600h"}),
    )
    .expect(200);
    let role = api.post(
        "pki/roles/web",
        json!({"allowed_domains": "example.com", "allow_subdomains": true, "key_type": "ec",
               "ttl": "6s", "generate_lease": true}),
    );
    assert!(role.status == 200 || role.status == 204, "{role:?}");
    policy(
        &api,
        "web-certs",
        "path \"pki/issue/web\" {\n capabilities = [\"update\"]\n}",
    );
    api.post(
        "auth/local/role/web",
        json!({"bound_uids": [ALICE, BOB], "policies": ["web-certs"]}),
    )
    .expect(204);
    let pki = mount_point(&server).join("pki");
    let directory = pki.join("issue/web/app.example.com");
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();

    let issued = Instant::now();
    let cert = cat(ALICE, &directory.join("cert.pem"))
        .unwrap_or_else(|error| panic!("{error}\n{}", server.log()));
    let key = cat(ALICE, &directory.join("key.pem")).unwrap();
    let chain = cat(ALICE, &directory.join("chain.pem")).unwrap();
    let bundle = cat(ALICE, &directory.join("bundle.pem")).unwrap();
    std::fs::write(work.join("cert.pem"), &cert).unwrap();
    std::fs::write(work.join("key.pem"), &key).unwrap();
    std::fs::write(work.join("chain.pem"), &chain).unwrap();
    // One issuance: the key is the certificate's, the chain verifies it.
    assert_eq!(
        openssl(work, &["x509", "-in", "cert.pem", "-noout", "-pubkey"]),
        openssl(work, &["pkey", "-in", "key.pem", "-pubout"])
    );
    assert!(
        openssl(work, &["verify", "-CAfile", "chain.pem", "cert.pem"]).contains("cert.pem: OK")
    );
    let subject = openssl(work, &["x509", "-in", "cert.pem", "-noout", "-subject"]);
    assert!(subject.contains("CN = app.example.com"), "{subject}");
    assert_eq!(bundle, format!("{key}{cert}{chain}"));
    let mut files = ls(ALICE, &directory).unwrap();
    files.sort();
    assert_eq!(files, ["bundle.pem", "cert.pem", "chain.pem", "key.pem"]);
    assert_eq!(ls(ALICE, &pki.join("issue")).unwrap(), ["web"]);
    let alice_serial = serial_of(work, &cert);

    // The same files again; another uid gets its own certificate.
    assert_eq!(cat(ALICE, &directory.join("cert.pem")).unwrap(), cert);
    let bob = cat(BOB, &directory.join("cert.pem")).unwrap();
    assert_ne!(serial_of(work, &bob), alice_serial);
    let error = cat(NOBODY, &directory.join("cert.pem")).unwrap_err();
    assert!(error.contains("Permission denied"), "{error}");
    let error = cat(ALICE, &pki.join("issue/web/example.org/cert.pem")).unwrap_err();
    assert!(error.contains("No such file"), "{error}");

    // Past 2/3 of its 6 s TTL: a new certificate.
    let renewed = wait_for(Duration::from_secs(8), "a new certificate", || {
        let now = cat(ALICE, &directory.join("cert.pem")).unwrap();
        std::thread::sleep(Duration::from_millis(250));
        (now != cert).then_some(now)
    });
    // 2/3 of 6 s, counted in whole seconds.
    let elapsed = issued.elapsed();
    assert!(
        elapsed >= Duration::from_secs(3),
        "re-issued after {elapsed:?}"
    );

    // Its lease revoked: the certificate is revoked, and the next read
    // issues another.
    let renewed_serial = serial_of(work, &renewed);
    let leases = api.list("sys/leases/lookup/pki/issue/web/").body["data"]["keys"]
        .as_array()
        .unwrap()
        .clone();
    assert!(leases.len() >= 3, "one lease per issuance: {leases:?}");
    for lease in &leases {
        api.post(
            "sys/leases/revoke",
            json!({"lease_id": format!("pki/issue/web/{}", lease.as_str().unwrap())}),
        );
    }
    wait_for(Duration::from_secs(10), "the certificate revoked", || {
        let revoked = api.list("pki/certs/revoked").body["data"]["keys"].clone();
        revoked
            .as_array()
            .is_some_and(|keys| keys.iter().any(|key| key == renewed_serial.as_str()))
            .then_some(())
    });
    let after = cat(ALICE, &directory.join("cert.pem")).unwrap();
    assert_ne!(serial_of(work, &after), renewed_serial);
}
