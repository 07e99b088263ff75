//! Audit devices against real receivers: a file, syslog on a Unix datagram socket,
//! TCP, UDP and Unix stream sockets made by the test. Entries are well formed and
//! hold no secret, token or accessor; a device whose peer is gone refuses requests
//! when it is alone and is skipped when a file device works beside it; a peer that
//! never reads costs at most the write deadline; SIGHUP reopens a moved file; bad
//! input changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use coffer_tests::cluster::wait_for;
use coffer_tests::{Api, Server, cli, send_signal};
use serde_json::{Value, json};

const SECRET: &str = "correct-horse-battery-staple";

/// Lines a receiver thread got, as they arrive.
struct Received(mpsc::Receiver<String>);

impl Received {
    /// Every line received within `timeout` of the last one, after at least
    /// `count` lines (or `timeout` in all).
    fn collect(&self, count: usize, timeout: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        let deadline = Instant::now() + timeout;
        while lines.len() < count {
            let Ok(line) = self
                .0
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                break;
            };
            lines.push(line);
        }
        while let Ok(line) = self.0.recv_timeout(Duration::from_millis(200)) {
            lines.push(line);
        }
        lines
    }
}

fn stream_lines<S: Read + Send + 'static>(stream: S, sender: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
}

fn tcp_receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            stream_lines(stream, sender.clone());
        }
    });
    (address, Received(receiver))
}

fn unix_receiver(path: &Path) -> Received {
    let listener = UnixListener::bind(path).unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            stream_lines(stream, sender.clone());
        }
    });
    Received(receiver)
}

fn udp_receiver() -> (String, Received) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = socket.local_addr().unwrap().to_string();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 65536];
        while let Ok(size) = socket.recv(&mut buffer) {
            let text = String::from_utf8_lossy(&buffer[..size])
                .trim_end()
                .to_owned();
            if sender.send(text).is_err() {
                break;
            }
        }
    });
    (address, Received(receiver))
}

/// A syslog daemon's socket: datagrams of `<PRI>timestamp tag[pid]: message`.
fn syslog_receiver(path: &Path) -> Received {
    let socket = UnixDatagram::bind(path).unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 262144];
        while let Ok(size) = socket.recv(&mut buffer) {
            let text = String::from_utf8_lossy(&buffer[..size]).into_owned();
            if sender.send(text).is_err() {
                break;
            }
        }
    });
    Received(receiver)
}

fn enable(api: &Api, path: &str, kind: &str, options: Value) -> coffer_tests::Answer {
    api.call(
        "PUT",
        &format!("sys/audit/{path}"),
        Some(json!({"type": kind, "options": options})),
    )
}

/// The JSON documents in `lines` (a syslog line carries one after `: `).
fn documents(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|line| {
            let json = line.find('{').map(|start| &line[start..]).unwrap_or(line);
            serde_json::from_str(json).unwrap_or_else(|error| panic!("{error}: {line}"))
        })
        .collect()
}

/// Asserts the write and read of `secret/data/audited` are there, well formed.
fn assert_write_and_read(documents: &[Value], device: &str) {
    let find = |kind: &str, operation: &str| {
        documents
            .iter()
            .find(|entry| {
                entry["type"] == kind
                    && entry["request"]["path"] == "secret/data/audited"
                    && entry["request"]["operation"] == operation
            })
            .unwrap_or_else(|| panic!("{device}: no {kind} entry for {operation}: {documents:?}"))
    };
    for operation in ["update", "read"] {
        let request = find("request", operation);
        let response = find("response", operation);
        assert_eq!(
            request["request"]["id"], response["request"]["id"],
            "{device}"
        );
        assert_eq!(request["request"]["mount_type"], "kv", "{device}");
        assert_eq!(request["request"]["transport"], "http", "{device}");
        assert_eq!(request["auth"]["display_name"], "root", "{device}");
        assert!(
            request["auth"]["client_token"]
                .as_str()
                .unwrap()
                .starts_with("hmac-sha256:"),
            "{device}"
        );
        assert_eq!(response["response"]["status"], 200, "{device}");
        assert!(request["time"].as_str().unwrap().ends_with('Z'), "{device}");
    }
    let read = find("response", "read");
    assert!(
        read["response"]["data"]["data"]["password"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:"),
        "{device}: {read}"
    );
}

#[test]
fn every_kind_of_device_gets_well_formed_entries_with_no_secret_in_them() {
    let server = Server::dev();
    let root = server.root();
    let workspace = server.workspace().to_path_buf();
    let file = workspace.join("audit.log");
    let (tcp_address, tcp) = tcp_receiver();
    let (udp_address, udp) = udp_receiver();
    let unix = unix_receiver(&workspace.join("audit.sock"));
    let syslog = syslog_receiver(&workspace.join("syslog.sock"));
    enable(&root, "file", "file", json!({"file_path": file})).expect(204);
    enable(&root, "tcp", "socket", json!({"address": tcp_address})).expect(204);
    enable(
        &root,
        "udp",
        "socket",
        json!({"address": udp_address, "socket_type": "udp"}),
    )
    .expect(204);
    enable(
        &root,
        "unix",
        "socket",
        json!({"address": workspace.join("audit.sock"), "socket_type": "unix"}),
    )
    .expect(204);
    enable(
        &root,
        "syslog",
        "syslog",
        json!({
            "address": workspace.join("syslog.sock"),
            "socket_type": "unix",
            "tag": "coffer-audit",
            "facility": "LOCAL4",
        }),
    )
    .expect(204);
    let listed = root.get("sys/audit").expect(200);
    for path in ["file/", "tcp/", "udp/", "unix/", "syslog/"] {
        assert_eq!(listed.body["data"][path]["path"], path, "{listed:?}");
    }

    // A token of the test's own, so its value and accessor are known.
    let created = root
        .post("auth/token/create", json!({"policies": ["default"]}))
        .expect(200);
    let token = created.body["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let accessor = created.body["auth"]["accessor"]
        .as_str()
        .unwrap()
        .to_owned();
    root.kv_put("audited", json!({"password": SECRET}));
    root.get("secret/data/audited").expect(200);
    server
        .client(Some(&token))
        .get("auth/token/lookup-self")
        .expect(200);

    let file_lines: Vec<String> = wait_for(Duration::from_secs(5), "the audit file", || {
        let text = std::fs::read_to_string(&file).ok()?;
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        (lines.len() >= 8).then_some(lines)
    });
    let outputs = [
        ("file", file_lines),
        ("tcp", tcp.collect(8, Duration::from_secs(5))),
        ("udp", udp.collect(8, Duration::from_secs(5))),
        ("unix", unix.collect(8, Duration::from_secs(5))),
        ("syslog", syslog.collect(8, Duration::from_secs(5))),
    ];
    for (device, lines) in &outputs {
        assert_write_and_read(&documents(lines), device);
        let text = lines.join("\n");
        for secret in [SECRET, token.as_str(), accessor.as_str(), "root\""] {
            // "root" as a token value: the dev server's root token is `root`.
            if secret == "root\"" {
                assert!(
                    !text.contains("\"client_token\":\"root\""),
                    "{device} logged the root token"
                );
                continue;
            }
            assert!(!text.contains(secret), "{device} logged {secret:?}");
        }
    }
    let syslog_line = &outputs[4].1[0];
    // LOCAL4 (20) * 8 + info (6) = 166.
    assert!(syslog_line.starts_with("<166>"), "{syslog_line}");
    assert!(syslog_line.contains("coffer-audit["), "{syslog_line}");

    // sys/audit-hash gives the hash the file device logged for the secret.
    let hash = root
        .post("sys/audit-hash/file", json!({"input": SECRET}))
        .expect(200);
    let hash = hash.body["data"]["hash"].as_str().unwrap().to_owned();
    assert!(outputs[0].1.join("\n").contains(&hash));
    let other = root
        .post("sys/audit-hash/tcp", json!({"input": SECRET}))
        .expect(200);
    assert_ne!(other.body["data"]["hash"], hash, "devices share a salt");
    root.post("sys/audit-hash/none", json!({"input": "x"}))
        .expect(400);

    // The CLI lists them and disables one.
    let (code, stdout, stderr) = cli(&server, Some("root"), &["audit", "list"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("syslog/") && stdout.contains("socket"),
        "{stdout}"
    );
    let (code, _, stderr) = cli(&server, Some("root"), &["audit", "disable", "udp"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(root.get("sys/audit").body["data"].get("udp/").is_none());
}

/// A TCP receiver that can be stopped (its listener and connections closed) and
/// started again on the same address.
struct Peer {
    address: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    lines: Received,
}

impl Peer {
    fn start(address: &str) -> Peer {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind(address).unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (sender, receiver) = mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut readers = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_millis(50)))
                            .unwrap();
                        let sender = sender.clone();
                        let flag = flag.clone();
                        readers.push(std::thread::spawn(move || {
                            let mut reader = BufReader::new(stream);
                            let mut line = String::new();
                            while !flag.load(Ordering::Relaxed) {
                                match reader.read_line(&mut line) {
                                    Ok(0) => break,
                                    Ok(_) => {
                                        let _ = sender.send(line.trim_end().to_owned());
                                        line.clear();
                                    }
                                    Err(_) => {}
                                }
                            }
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            for reader in readers {
                let _ = reader.join();
            }
        });
        Peer {
            address,
            stop,
            thread: Some(thread),
            lines: Received(receiver),
        }
    }

    /// Closes the listener and every connection.
    fn stop(mut self) -> String {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.address.clone()
    }
}

#[test]
fn a_lone_device_without_its_peer_refuses_requests_until_the_peer_returns() {
    let server = Server::dev();
    let root = server.root();
    root.kv_put("before", json!({"v": "1"}));
    let peer = Peer::start("127.0.0.1:0");
    enable(
        &root,
        "lone",
        "socket",
        json!({"address": peer.address, "write_timeout": "500ms"}),
    )
    .expect(204);
    root.get("secret/data/before").expect(200);
    assert!(!peer.lines.collect(2, Duration::from_secs(5)).is_empty());

    // The peer goes away: requests are refused, and nothing runs.
    let address = peer.stop();
    let refused = wait_for(Duration::from_secs(10), "requests to be refused", || {
        let answer = root.try_call("GET", "secret/data/before", None).ok()?;
        (answer.status == 503).then_some(answer)
    });
    assert!(refused.errors()[0].contains("audit"), "{:?}", refused.body);
    let write = root.post("secret/data/while-refused", json!({"data": {"v": "x"}}));
    assert_eq!(write.status, 503, "{:?}", write.body);

    // It comes back on the same address: requests succeed again, audited there.
    let peer = Peer::start(&address);
    wait_for(Duration::from_secs(40), "requests to succeed again", || {
        let answer = root.try_call("GET", "secret/data/before", None).ok()?;
        (answer.status == 200).then_some(())
    });
    assert!(!peer.lines.collect(1, Duration::from_secs(5)).is_empty());
    root.get("secret/data/while-refused").expect(404);

    // With a working file device beside a dead socket, requests go on.
    let file = server.workspace().join("beside.log");
    enable(&root, "file", "file", json!({"file_path": file})).expect(204);
    peer.stop();
    for count in 0..20 {
        root.kv_put(&format!("beside-{count}"), json!({"v": count}));
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("secret/data/beside-19"), "{text}");
}

#[test]
fn a_peer_that_never_reads_costs_at_most_the_deadline_and_the_server_keeps_answering() {
    let server = Server::dev();
    let root = server.root();
    // Big entries fill the socket buffers quickly: map keys are not hashed.
    let mut wide = serde_json::Map::new();
    for index in 0..2000 {
        wide.insert(format!("{index:0>200}"), json!("v"));
    }
    root.kv_put("wide", Value::Object(wide));
    let file = server.workspace().join("audit.log");
    enable(&root, "file", "file", json!({"file_path": file})).expect(204);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    // Accept, and never read.
    let held = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(50) {
            held.push(stream);
        }
        held
    });
    let deadline = Duration::from_millis(1000);
    enable(
        &root,
        "stuck",
        "socket",
        json!({"address": address, "write_timeout": "1s"}),
    )
    .expect(204);
    let client = server.client_with_timeout(Some("root"), Duration::from_secs(30));
    let mut latencies = Vec::new();
    for _ in 0..150 {
        let started = Instant::now();
        let answer = client.get("secret/data/wide");
        latencies.push(started.elapsed());
        assert_eq!(answer.status, 200, "{:?}", answer.errors());
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let worst = *latencies.last().unwrap();
    println!("p99 {p99:?}, worst {worst:?} with a peer that never reads");
    assert!(
        p99 < deadline + Duration::from_millis(100),
        "p99 {p99:?} is past the deadline"
    );
    let devices = root.get("sys/audit").expect(200);
    assert_eq!(
        devices.body["data"]["stuck/"]["healthy"], false,
        "the stuck device was never marked failing"
    );
    // Still answering, and still auditing to the file.
    root.get("sys/health").expect(200);
    let before = std::fs::read_to_string(&file).unwrap().lines().count();
    root.get("secret/data/wide").expect(200);
    // Its request entry is written before it runs, its response entry after.
    wait_for(Duration::from_secs(5), "both entries of the read", || {
        let lines = std::fs::read_to_string(&file).ok()?.lines().count();
        (lines >= before + 2).then_some(())
    });
    drop(held);
}

#[test]
fn sighup_reopens_a_moved_file_at_its_configured_path() {
    let server = Server::dev();
    let root = server.root();
    let file = server.workspace().join("audit.log");
    enable(
        &root,
        "file",
        "file",
        json!({"file_path": file, "mode": "0640"}),
    )
    .expect(204);
    root.kv_put("one", json!({"v": "1"}));
    let rotated = server.workspace().join("audit.log.1");
    std::fs::rename(&file, &rotated).unwrap();
    // Until the signal, entries follow the moved file.
    root.kv_put("two", json!({"v": "2"}));
    assert!(
        std::fs::read_to_string(&rotated)
            .unwrap()
            .contains("secret/data/two")
    );
    assert!(send_signal(server.pid(), "HUP"));
    wait_for(Duration::from_secs(5), "the file to be reopened", || {
        file.exists().then_some(())
    });
    root.kv_put("three", json!({"v": "3"}));
    let fresh = std::fs::read_to_string(&file).unwrap();
    assert!(fresh.contains("secret/data/three"), "{fresh}");
    assert!(!fresh.contains("secret/data/one"));
    assert!(
        !std::fs::read_to_string(&rotated)
            .unwrap()
            .contains("secret/data/three")
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

#[test]
fn bad_devices_are_refused_with_clear_errors_and_change_nothing() {
    let server = Server::dev();
    let root = server.root();
    let file = server.workspace().join("audit.log");
    enable(&root, "file", "file", json!({"file_path": file})).expect(204);
    let before = root.get("sys/audit").expect(200).body["data"].clone();
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_address = dead.local_addr().unwrap().to_string();
    drop(dead);
    for (path, body, expected) in [
        ("x", json!({"type": "kafka"}), "unknown audit device type"),
        ("x", json!({}), "type is required"),
        (
            "x",
            json!({"type": "file", "options": {"file_path": "/proc/no/such/dir/audit.log"}}),
            "cannot open /proc/no/such/dir/audit.log",
        ),
        (
            "x",
            json!({"type": "file", "options": {"file_path": "audit.log"}}),
            "absolute path",
        ),
        (
            "x",
            json!({"type": "socket", "options": {"address": "nowhere"}}),
            "host:port",
        ),
        (
            "x",
            json!({"type": "socket", "options": {"address": dead_address}}),
            "cannot open",
        ),
        (
            "x",
            json!({"type": "socket", "options": {"address": "127.0.0.1:1", "socket_type": "sctp"}}),
            "tcp, udp or unix",
        ),
        (
            "x",
            json!({"type": "file", "options": {"file_path": "/tmp/a", "colour": "red"}}),
            "colour",
        ),
        (
            "file",
            json!({"type": "file", "options": {"file_path": file}}),
            "already in use",
        ),
        (
            "bad path",
            json!({"type": "file", "options": {"file_path": "/tmp/b"}}),
            "not valid",
        ),
    ] {
        let answer = root.call(
            "PUT",
            &format!("sys/audit/{}", path.replace(' ', "%20")),
            Some(body),
        );
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert!(
            answer.errors()[0].contains(expected),
            "{expected}: {:?}",
            answer.body
        );
        assert_eq!(root.get("sys/audit").body["data"], before, "state changed");
    }
    // Without sudo, no audit endpoint answers.
    let token = root.token_with_policy(
        "auditor",
        r#"path "sys/audit*" { capabilities = ["read", "update", "create"] }"#,
    );
    server.client(Some(&token)).get("sys/audit").expect(403);
}

#[test]
fn a_device_declared_in_the_config_file_runs_and_cannot_be_removed_through_the_api() {
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("config-audit.log");
    let server = Server::with_config(&format!(
        r#"storage "raft" {{
  path    = "{{data_dir}}"
  node_id = "n1"
}}
listener "tcp" {{
  address     = "127.0.0.1:0"
  tls_disable = true
}}
cluster_addr = "http://127.0.0.1:0"
audit "file" "from-config" {{
  file_path   = "{}"
  description = "declared"
  write_timeout = "1s"
}}
"#,
        file.display()
    ));
    let api = server.client(None);
    let init = api
        .call(
            "PUT",
            "sys/init",
            Some(json!({"secret_shares": 1, "secret_threshold": 1})),
        )
        .expect(200);
    let key = init.body["keys"][0].as_str().unwrap().to_owned();
    let token = init.body["root_token"].as_str().unwrap().to_owned();
    api.post("sys/unseal", json!({"key": key})).expect(200);
    let root = server.client(Some(&token));
    let listed = root.get("sys/audit").expect(200);
    assert_eq!(
        listed.body["data"]["from-config/"]["declared_in_config"],
        true
    );
    let answer = root.delete("sys/audit/from-config");
    assert_eq!(answer.status, 400);
    assert!(answer.errors()[0].contains("configuration file"));
    root.post("sys/mounts/kv", json!({"type": "kv"}))
        .expect(204);
    root.post("kv/x", json!({"v": SECRET})).expect(204);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\"path\":\"kv/x\""), "{text}");
    assert!(!text.contains(SECRET));
    assert!(!text.contains(&token));
}

/// An unwritable config device is an error at startup, naming its line.
#[test]
fn a_bad_audit_block_in_the_config_is_refused_at_startup() {
    let directory = tempfile::tempdir().unwrap();
    let config: PathBuf = directory.path().join("coffer.hcl");
    std::fs::write(
        &config,
        "storage \"raft\" {\n  path = \"/tmp/x\"\n}\nlistener \"tcp\" {\n  address = \"127.0.0.1:0\"\n  tls_disable = true\n}\naudit \"kafka\" \"k\" {\n}\n",
    )
    .unwrap();
    let output = std::process::Command::new(coffer_tests::binary())
        .arg("server")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 8"), "{stderr}");
    assert!(stderr.contains("unknown audit device type"), "{stderr}");
}

/// A file device on a full disk (`/dev/full` answers every write with ENOSPC):
/// beside a working device it is skipped; alone it refuses requests at once and
/// never makes them wait.
/// A 64 KiB tmpfs mounted for a test, unmounted when dropped.
struct FullDisk(PathBuf);

impl FullDisk {
    fn new(mount_point: &Path) -> FullDisk {
        std::fs::create_dir_all(mount_point).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(mount_point)
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs (tests run as root)");
        FullDisk(mount_point.to_owned())
    }

    fn log(&self) -> PathBuf {
        self.0.join("audit.log")
    }

    /// Takes every free block with a filler file.
    fn fill(&self) {
        let mut filler = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        while std::io::Write::write_all(&mut filler, &block).is_ok() {}
        while std::io::Write::write_all(&mut filler, &[0u8]).is_ok() {}
        // The log's own last page may still have room.
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.log())
            .unwrap();
        while std::io::Write::write_all(&mut log, b"{}\n").is_ok() {}
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l"])
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_is_skipped_beside_another_device_and_refuses_requests_when_alone() {
    let server = Server::dev();
    let root = server.root();
    root.kv_put("kept", json!({"v": "1"}));
    let file = server.workspace().join("working.log");
    enable(&root, "file", "file", json!({"file_path": file})).expect(204);
    // A full disk: a small tmpfs filled up once the log is there.
    let full = FullDisk::new(&server.workspace().join("full"));
    enable(&root, "full", "file", json!({"file_path": full.log()})).expect(204);
    full.fill();
    for count in 0..5 {
        root.kv_put(&format!("beside-full-{count}"), json!({"v": count}));
    }
    let devices = root.get("sys/audit").expect(200);
    assert_eq!(devices.body["data"]["full/"]["healthy"], false);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("beside-full-4")
    );

    // Alone, it refuses everything, at once.
    root.delete("sys/audit/file").expect(204);
    let started = Instant::now();
    let answer = root.get("secret/data/kept");
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a full disk made a request wait"
    );
    let write = root.post("secret/data/not-written", json!({"data": {"v": "x"}}));
    assert_eq!(write.status, 503);
    // Health is not audited and keeps answering.
    server.client(None).get("sys/health").expect(200);
}

#[test]
fn the_api_enables_no_device_unless_the_configuration_allows_it() {
    let server = Server::dev_without_api_audit();
    let root = server.root();
    let file = server.workspace().join("api-audit.log");
    let answer = enable(&root, "file", "file", json!({"file_path": file}));
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert_eq!(
        answer.errors(),
        [
            "cannot enable audit device via API; use declarative, config-based audit device management instead"
        ]
    );
    assert!(!file.exists(), "nothing was opened");
    assert_eq!(root.get("sys/audit").expect(200).body["data"], json!({}));
}

/// The class of CVE-2025-6000: a token that may enable a file device must not
/// get to append to, create through a link, or chmod files of its choosing.
#[test]
fn a_file_device_touches_no_file_that_is_not_its_own_log() {
    use std::os::unix::fs::PermissionsExt as _;
    let server = Server::dev();
    let root = server.root();
    let workspace = server.workspace();
    let passwd = workspace.join("passwd");
    let passwd_text = "root:x:0:0:root:/root:/bin/bash\n";
    std::fs::write(&passwd, passwd_text).unwrap();
    std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644)).unwrap();
    let victim = workspace.join("victim");
    let link = workspace.join("link.log");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let directory = workspace.join("logs");
    std::fs::create_dir(&directory).unwrap();
    let fresh = workspace.join("fresh.log");

    for (options, expected) in [
        (json!({"file_path": passwd}), "not an audit log"),
        (json!({"file_path": link}), "symbolic link"),
        (json!({"file_path": directory}), "directory"),
        (
            json!({"file_path": fresh, "mode": "0755"}),
            "without execute bits",
        ),
        (
            json!({"file_path": fresh, "mode": "4600"}),
            "without execute bits",
        ),
    ] {
        let answer = enable(&root, "file", "file", options.clone());
        assert_eq!(answer.status, 400, "{options}: {:?}", answer.body);
        assert!(
            answer.errors()[0].contains(expected),
            "{expected}: {:?}",
            answer.body
        );
    }
    assert_eq!(std::fs::read_to_string(&passwd).unwrap(), passwd_text);
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&passwd), 0o644, "never chmod'ed");
    assert!(!victim.exists(), "nothing made through the link");
    assert_eq!(std::fs::read_dir(&directory).unwrap().count(), 0);
    assert!(!fresh.exists());
    assert_eq!(root.get("sys/audit").expect(200).body["data"], json!({}));

    // A log it made itself is reopened after a restart of the device, and
    // an existing log keeps the mode its operator gave it.
    enable(
        &root,
        "file",
        "file",
        json!({"file_path": fresh, "mode": "0640"}),
    )
    .expect(204);
    assert_eq!(mode(&fresh), 0o640);
    root.call("DELETE", "sys/audit/file", None).expect(204);
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o600)).unwrap();
    enable(
        &root,
        "file",
        "file",
        json!({"file_path": fresh, "mode": "0644"}),
    )
    .expect(204);
    assert_eq!(mode(&fresh), 0o600, "an existing file is never chmod'ed");
}

#[test]
fn hmac_all_values_hashes_numbers_and_booleans_too() {
    let server = Server::dev();
    let root = server.root();
    let plain = server.workspace().join("plain.log");
    let all = server.workspace().join("all.log");
    enable(&root, "plain", "file", json!({"file_path": plain})).expect(204);
    enable(
        &root,
        "all",
        "file",
        json!({"file_path": all, "hmac_all_values": true}),
    )
    .expect(204);
    root.kv_put("numbers", json!({"port": 54321, "enabled": true}));
    let written = |path: &Path| -> Vec<Value> {
        wait_for(Duration::from_secs(5), "the write's response entry", || {
            let entries: Vec<Value> = std::fs::read_to_string(path)
                .ok()?
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
            entries
                .iter()
                .any(|entry| {
                    entry["type"] == "response" && entry["request"]["path"] == "secret/data/numbers"
                })
                .then_some(entries)
        })
    };
    let request = |entries: &[Value]| {
        entries
            .iter()
            .find(|entry| {
                entry["type"] == "request" && entry["request"]["path"] == "secret/data/numbers"
            })
            .unwrap()["request"]["data"]["data"]
            .clone()
    };
    let plain_data = request(&written(&plain));
    assert_eq!(
        plain_data,
        json!({"port": 54321, "enabled": true}),
        "Vault's default"
    );
    let hashed = request(&written(&all));
    let hash = |input: &str| {
        root.post("sys/audit-hash/all", json!({"input": input}))
            .expect(200)
            .body["data"]["hash"]
            .clone()
    };
    assert_eq!(hashed["port"], hash("54321"));
    assert_eq!(hashed["enabled"], hash("true"));
    assert!(!std::fs::read_to_string(&all).unwrap().contains("54321"));
}
