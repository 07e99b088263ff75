//! The HTTP API on a Unix socket: callers named by the kernel (SO_PEERCRED) and
//! authenticated by `auth/local` roles without a token, real `curl` processes as
//! other uids (`setpriv`), audit entries naming uid, pid and executable, the
//! CLI over `unix://`, and the socket file's lifecycle (mode, stale file after
//! `kill -9`, removal at shutdown, refusal to replace a regular file).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use coffer_tests::cluster::wait_for;
use coffer_tests::{Api, Server, binary, run_as};
use serde_json::{Value, json};

const ALICE: u32 = 62001;
const BOB: u32 = 62002;
/// Matches no role.
const NOBODY: u32 = 62003;

/// Alice reads and lists `secret/a/`, Bob reads `secret/b/`.
fn roles(api: &Api) {
    for (name, text) in [
        (
            "team-a",
            "path \"secret/data/a/*\" {\n capabilities = [\"read\"]\n}\npath \"secret/metadata/a/*\" {\n capabilities = [\"list\"]\n}",
        ),
        (
            "team-b",
            "path \"secret/data/b/*\" {\n capabilities = [\"read\"]\n}",
        ),
    ] {
        api.call(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(json!({"policy": text})),
        )
        .expect(204);
    }
    api.post(
        "auth/local/role/alice",
        json!({"bound_uids": [ALICE], "policies": ["team-a"], "token_ttl": "10m"}),
    )
    .expect(204);
    api.post(
        "auth/local/role/bob",
        json!({"bound_uids": [BOB], "policies": ["team-b"]}),
    )
    .expect(204);
    api.kv_put("a/x", json!({"value": "alpha-secret"}));
    api.kv_put("b/y", json!({"value": "beta-secret"}));
}

/// `curl --unix-socket` as `uid`; returns (status, JSON body).
fn curl_as(uid: u32, socket: &Path, args: &[&str]) -> (u16, Value) {
    let mut full = vec![
        "-sS",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "--unix-socket",
        socket.to_str().unwrap(),
    ];
    full.extend_from_slice(args);
    let (code, stdout, stderr) = run_as(uid, uid, &[], "curl", &full);
    assert_eq!(code, 0, "curl failed: {stderr}");
    let (body, status) = stdout.rsplit_once('\n').unwrap();
    let body = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"))
    };
    (status.trim().parse().unwrap(), body)
}

fn url(path: &str) -> String {
    format!("http://localhost/v1/{path}")
}

fn socket(server: &Server) -> &Path {
    server.unix.as_deref().unwrap()
}

#[test]
fn each_uid_gets_its_roles_rights_and_a_token_still_counts() {
    let server = Server::dev_with_unix();
    let api = server.root();
    roles(&api);
    let socket = socket(&server);

    let metadata = std::fs::metadata(socket).unwrap();
    assert!(metadata.file_type().is_socket());
    assert_eq!(metadata.permissions().mode() & 0o777, 0o666);

    let (status, body) = curl_as(ALICE, socket, &[&url("secret/data/a/x")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["data"]["value"], "alpha-secret");
    let (status, body) = curl_as(ALICE, socket, &[&url("secret/data/b/y")]);
    assert_eq!(status, 403, "{body}");
    assert!(!body["errors"].as_array().unwrap().is_empty(), "{body}");
    let (status, body) = curl_as(ALICE, socket, &["-X", "LIST", &url("secret/metadata/a")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["keys"], json!(["x"]));
    let (status, _) = curl_as(
        ALICE,
        socket,
        &[
            "-X",
            "POST",
            "-d",
            r#"{"data":{"value":"changed"}}"#,
            &url("secret/data/a/x"),
        ],
    );
    assert_eq!(status, 403, "read-only policy");

    let (status, body) = curl_as(BOB, socket, &[&url("secret/data/b/y")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["data"]["value"], "beta-secret");
    let (status, _) = curl_as(BOB, socket, &[&url("secret/data/a/x")]);
    assert_eq!(status, 403);

    for path in ["secret/data/a/x", "secret/data/b/y"] {
        let (status, body) = curl_as(NOBODY, socket, &[&url(path)]);
        assert_eq!(status, 403, "{path}: {body}");
    }
    // A token is used when one is sent, whoever connects.
    let (status, body) = curl_as(
        NOBODY,
        socket,
        &["-H", "X-Vault-Token: root", &url("secret/data/b/y")],
    );
    assert_eq!(status, 200, "{body}");
    // A bad token is refused, not replaced by the caller's roles.
    let (status, _) = curl_as(
        ALICE,
        socket,
        &["-H", "X-Vault-Token: hvs.bogus", &url("secret/data/a/x")],
    );
    assert_eq!(status, 403);
    // Over TCP there is no kernel-named caller: no token, no access.
    assert_eq!(server.client(None).get("secret/data/a/x").status, 403);
    // Unauthenticated endpoints answer as on TCP.
    let (status, body) = curl_as(NOBODY, socket, &[&url("sys/health")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sealed"], false);
}

#[test]
fn login_over_the_socket_gives_a_token_that_works_over_tcp() {
    let server = Server::dev_with_unix();
    let api = server.root();
    roles(&api);
    let socket = socket(&server);

    let (status, body) = curl_as(
        ALICE,
        socket,
        &["-X", "POST", "-d", "{}", &url("auth/local/login")],
    );
    assert_eq!(status, 200, "{body}");
    let auth = &body["auth"];
    assert_eq!(auth["lease_duration"], 600);
    assert!(
        auth["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("team-a")),
        "{auth}"
    );
    let token = auth["client_token"].as_str().unwrap();
    let over_tcp = server.client(Some(token));
    assert_eq!(
        over_tcp.get("secret/data/a/x").expect(200).body["data"]["data"]["value"],
        "alpha-secret"
    );
    assert_eq!(over_tcp.get("secret/data/b/y").status, 403);

    let (status, _) = curl_as(
        NOBODY,
        socket,
        &["-X", "POST", "-d", "{}", &url("auth/local/login")],
    );
    assert_eq!(status, 403, "an unmapped uid gets no token");
}

#[test]
fn audit_entries_name_the_socket_caller() {
    let server = Server::dev_with_unix();
    let api = server.root();
    roles(&api);
    let audit_log = server.workspace().join("audit.log");
    api.post(
        "sys/audit/file",
        json!({"type": "file", "options": {"file_path": audit_log}}),
    )
    .expect(204);

    let child = Command::new("setpriv")
        .args([
            &format!("--reuid={ALICE}"),
            &format!("--regid={ALICE}"),
            "--clear-groups",
            "--",
            "/usr/bin/curl",
            "-sS",
            "--unix-socket",
            socket(&server).to_str().unwrap(),
            &url("secret/data/a/x"),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("alpha-secret"));

    // The response's entry is written after the answer, without holding it up.
    let audited = |entry: &Value, kind: &str| {
        entry["type"] == kind
            && entry["request"]["path"] == "secret/data/a/x"
            && entry["request"]["transport"] == "unix"
    };
    let entries: Vec<Value> = wait_for(Duration::from_secs(5), "both audit entries", || {
        let entries: Vec<Value> = std::fs::read_to_string(&audit_log)
            .ok()?
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        entries
            .iter()
            .any(|entry| audited(entry, "response"))
            .then_some(entries)
    });
    for kind in ["request", "response"] {
        let entry = entries
            .iter()
            .find(|entry| audited(entry, kind))
            .unwrap_or_else(|| panic!("no audited {kind} from the socket"));
        let peer = &entry["request"]["peer"];
        assert_eq!(peer["uid"], ALICE, "{peer}");
        assert_eq!(peer["gid"], ALICE, "{peer}");
        assert_eq!(peer["pid"], pid, "the pid setpriv exec'd curl in");
        assert_eq!(peer["executable"], "/usr/bin/curl", "{peer}");
        assert_eq!(entry["auth"]["display_name"], "local-alice");
        assert_eq!(entry["auth"]["client_token"], "");
    }
    let text = std::fs::read_to_string(&audit_log).unwrap();
    assert!(
        !text.contains("alpha-secret"),
        "a value reached the audit log"
    );
}

#[test]
fn the_cli_talks_to_the_socket_as_its_uid() {
    let server = Server::dev_with_unix();
    let api = server.root();
    roles(&api);
    let address = format!("COFFER_ADDR=unix://{}", socket(&server).display());
    let coffer = binary();
    let coffer = coffer.to_str().unwrap();

    let (code, stdout, stderr) = run_as(
        ALICE,
        ALICE,
        &[],
        "env",
        &[
            "-u",
            "COFFER_TOKEN",
            "-u",
            "VAULT_TOKEN",
            "-u",
            "VAULT_ADDR",
            &address,
            coffer,
            "kv",
            "get",
            "-field=value",
            "secret/a/x",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "alpha-secret");

    let (code, _, stderr) = run_as(
        ALICE,
        ALICE,
        &[],
        "env",
        &[
            "-u",
            "COFFER_TOKEN",
            "-u",
            "VAULT_TOKEN",
            &address,
            coffer,
            "kv",
            "get",
            "secret/b/y",
        ],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("403"), "{stderr}");

    let (code, _, stderr) = run_as(
        ALICE,
        ALICE,
        &[],
        "env",
        &["COFFER_ADDR=unix://relative.sock", coffer, "status"],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("absolute path"), "{stderr}");
}

#[test]
fn a_stale_socket_is_replaced_and_the_file_goes_at_shutdown() {
    let mut server = Server::dev_with_unix();
    let socket = socket(&server).to_path_buf();
    server.kill9();
    assert!(socket.exists(), "kill -9 leaves the socket file");
    server.restart();
    // The restarted dev server is sealed; its seal status answers on the socket.
    let (status, body) = curl_as(0, &socket, &[&url("sys/seal-status")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["initialized"], true, "{body}");
    assert_eq!(server.terminate(), Some(0));
    assert!(!socket.exists(), "a clean shutdown removes the socket file");
}

#[test]
fn a_regular_file_at_the_socket_path_is_refused() {
    let workspace = tempfile::tempdir().unwrap();
    let path = workspace.path().join("coffer.sock");
    std::fs::write(&path, b"not a socket").unwrap();
    let output = Command::new(binary())
        .args([
            "server",
            "--dev",
            "--dev-listen",
            "127.0.0.1:0",
            "--dev-unix",
        ])
        .arg(&path)
        .arg("--data-dir")
        .arg(workspace.path().join("data"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a socket"), "{stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
}

/// A cgroup made for a test under the cgroup v2 hierarchy, removed (with the
/// cgroups made on the way to it) when dropped; the processes in it must be gone
/// by then.
struct TestCgroup {
    /// The directories made, innermost first.
    made: Vec<std::path::PathBuf>,
    procs: std::path::PathBuf,
}

impl TestCgroup {
    /// `path` is absolute in the hierarchy (`/system.slice/x.service`).
    fn new(path: &str) -> TestCgroup {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = mountinfo
            .lines()
            .find_map(|line| {
                let (fields, filesystem) = line.split_once(" - ")?;
                filesystem
                    .starts_with("cgroup2 ")
                    .then(|| fields.split(' ').nth(4).map(str::to_owned))?
            })
            .expect("a cgroup v2 hierarchy is mounted");
        let mut made = Vec::new();
        let mut directory = std::path::PathBuf::from(root);
        for part in path.split('/').filter(|part| !part.is_empty()) {
            directory.push(part);
            if !directory.exists() {
                std::fs::create_dir(&directory).unwrap();
                made.push(directory.clone());
            }
        }
        made.reverse();
        TestCgroup {
            procs: directory.join("cgroup.procs"),
            made,
        }
    }

    /// A shell line that moves the shell into this cgroup.
    fn enter(&self) -> String {
        format!("echo $$ > {}", self.procs.display())
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for directory in &self.made {
            for _ in 0..50 {
                if std::fs::remove_dir(directory).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A role bound to a unit of the system manager: `unit` in the secrets of team
/// a, whoever runs it (no uid or group binding).
fn unit_role(api: &Api, binding: &str) {
    roles(api);
    api.post(
        "auth/local/role/unit",
        json!({"bound_units": [binding], "policies": ["team-a"]}),
    )
    .expect(204);
}

#[test]
fn a_unit_binding_matches_the_system_unit_only() {
    let server = Server::dev_with_unix();
    let api = server.root();
    let unit = format!("coffer-test-{}.service", std::process::id());
    unit_role(&api, &unit);
    let socket = socket(&server).to_str().unwrap().to_owned();
    let read_in = |cgroup: &TestCgroup| {
        let script = format!(
            "{} && exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups -- \
             curl -sS -o - -w '\\n%{{http_code}}' --unix-socket {socket} {}",
            cgroup.enter(),
            url("secret/data/a/x")
        );
        let output = Command::new("sh").args(["-c", &script]).output().unwrap();
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, status) = stdout.rsplit_once('\n').unwrap();
        (status.trim().parse::<u16>().unwrap(), body.to_owned())
    };

    let system = TestCgroup::new(&format!("/system.slice/{unit}"));
    let (status, body) = read_in(&system);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("alpha-secret"));

    // The same name under a user's own manager, or under another unit's
    // delegated subtree, is not the system's unit.
    for path in [
        format!("/user.slice/user-{NOBODY}.slice/user@{NOBODY}.service/app.slice/{unit}"),
        format!(
            "/system.slice/other-{}.service/app.slice/{unit}",
            std::process::id()
        ),
    ] {
        let cgroup = TestCgroup::new(&path);
        let (status, body) = read_in(&cgroup);
        assert_eq!(status, 403, "{path}: {body}");
        assert!(!body.contains("alpha-secret"), "{path}");
    }

    // A whole cgroup path binds that path only.
    api.post(
        "auth/local/role/unit",
        json!({"bound_units": [format!("/system.slice/shop.slice/{unit}")], "policies": ["team-a"]}),
    )
    .expect(204);
    assert_eq!(read_in(&system).0, 403, "another slice");
    let shop = TestCgroup::new(&format!("/system.slice/shop.slice/{unit}"));
    assert_eq!(read_in(&shop).0, 200);
}

/// The caller's identity is fixed when it connects: a connection handed to
/// another process after its first owner exited keeps the first owner's
/// identity, even once a process of a bound unit has taken over that pid.
#[test]
fn a_reused_pid_lends_its_unit_to_no_connection() {
    use std::io::{BufRead, BufReader, Write};

    let server = Server::dev_with_unix();
    let api = server.root();
    let unit = format!("coffer-reuse-{}.service", std::process::id());
    unit_role(&api, &unit);
    let cgroup = TestCgroup::new(&format!("/system.slice/{unit}"));

    // The first owner connects, makes one request (so the server has accepted
    // it), forks a second owner that keeps the connection, and exits.
    let program = r#"
import http.client, os, socket, sys
class Connection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(sys.argv[1])
connection = Connection("localhost")
connection.request("GET", "/v1/sys/health")
connection.getresponse().read()
if os.fork():
    print(os.getpid(), flush=True)
    os._exit(0)
sys.stdin.readline()
connection.request("GET", "/v1/secret/data/a/x")
response = connection.getresponse()
print(response.status)
print(response.read().decode(), flush=True)
"#;
    let mut first = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
            // Debian's, which any uid may run (a pyenv shim may not be).
            "/usr/bin/python3",
            "-c",
            program,
            socket(&server).to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = first.stdin.take().unwrap();
    let mut stdout = BufReader::new(first.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let reused: u32 = line.trim().parse().unwrap();
    assert_eq!(reused, first.id());
    first.wait().unwrap(); // reaped: the pid is free

    // A process of the bound unit takes the pid over (the next pid is set
    // through ns_last_pid; another process may take it first, so try again).
    let mut impostor = None;
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (reused - 1).to_string()).unwrap();
        let mut child = Command::new("sh")
            .args(["-c", &format!("{} && exec sleep 30", cgroup.enter())])
            .spawn()
            .unwrap();
        if child.id() == reused {
            impostor = Some(child);
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mut impostor = impostor.expect("took over the pid");
    wait_for(Duration::from_secs(5), "the impostor in the unit", || {
        std::fs::read_to_string(format!("/proc/{reused}/cgroup"))
            .ok()
            .filter(|cgroups| cgroups.contains(&unit))
    });

    stdin.write_all(b"go\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    impostor.kill().unwrap();
    impostor.wait().unwrap();
    let status = rest.lines().next().unwrap_or_default();
    assert_eq!(status, "403", "{rest}");
    assert!(!rest.contains("alpha-secret"));
}

/// A token bound to CIDR blocks works from an address in them, and never on
/// the socket, where a caller has no address (README says so).
#[test]
fn a_cidr_bound_token_is_refused_on_the_socket() {
    let server = Server::dev_with_unix();
    let api = server.root();
    api.post("sys/auth/userpass", json!({"type": "userpass"}))
        .expect(204);
    api.post(
        "auth/userpass/users/ci",
        json!({"password": "pw", "token_bound_cidrs": ["127.0.0.0/8"]}),
    )
    .expect(204);
    let login = server
        .client(None)
        .post("auth/userpass/login/ci", json!({"password": "pw"}))
        .expect(200);
    let token = login.body["auth"]["client_token"].as_str().unwrap();
    server
        .client(Some(token))
        .get("auth/token/lookup-self")
        .expect(200);
    let (status, body) = curl_as(
        0,
        socket(&server),
        &[
            "-H",
            &format!("X-Vault-Token: {token}"),
            &url("auth/token/lookup-self"),
        ],
    );
    assert_eq!(status, 403, "{body}");
}
