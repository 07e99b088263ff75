//! Durability and lifecycle against the real binary: restart with 1,000 secrets,
//! `kill -9` during a write loop, nothing secret at rest, and SIGTERM draining a
//! request that is still in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_tests::{Server, find_bytes};
use serde_json::json;

const CONFIG: &str = r#"
storage "raft" {
  path    = "{data_dir}"
  node_id = "n1"
}
listener "tcp" {
  address     = "127.0.0.1:0"
  tls_disable = true
}
api_addr     = "http://127.0.0.1:8200"
cluster_addr = "http://127.0.0.1:0"
"#;

fn init_and_unseal(server: &Server) -> (Vec<String>, String) {
    let api = server.client(None);
    let answer = api
        .call(
            "PUT",
            "sys/init",
            Some(json!({"secret_shares": 3, "secret_threshold": 2})),
        )
        .expect(200);
    let keys: Vec<String> = answer.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key.as_str().unwrap().to_owned())
        .collect();
    let root = answer.body["root_token"].as_str().unwrap().to_owned();
    unseal(server, &keys[..2]);
    (keys, root)
}

fn unseal(server: &Server, keys: &[String]) {
    let api = server.client(None);
    for key in keys {
        api.call("PUT", "sys/unseal", Some(json!({"key": key})))
            .expect(200);
    }
    let status = api.get("sys/seal-status").expect(200);
    assert_eq!(status.body["sealed"], false, "{:?}", status.body);
}

#[test]
fn a_restart_comes_up_sealed_and_unseals_to_the_same_1000_secrets() {
    let mut server = Server::with_config(CONFIG);
    let status = server.client(None).get("sys/seal-status").expect(200);
    assert_eq!(status.body["initialized"], false);
    let (keys, root) = init_and_unseal(&server);
    let api = server.client(Some(&root));
    for index in 0..1000 {
        api.kv_put_at("secret", index);
    }
    assert_eq!(
        server.terminate(),
        Some(0),
        "clean exit; log:\n{}",
        server.log()
    );

    server.restart();
    let status = server.client(None).get("sys/seal-status").expect(200);
    assert_eq!(status.body["sealed"], true);
    assert_eq!(status.body["initialized"], true);
    // Sealed: everything but the seal endpoints answers 503.
    server.client(Some(&root)).get("secret/data/k0").expect(503);
    unseal(&server, &keys[1..3]);
    let api = server.client(Some(&root));
    for index in 0..1000 {
        let answer = api.get(&format!("secret/data/k{index}")).expect(200);
        assert_eq!(
            answer.body["data"]["data"]["value"],
            format!("value-{index}")
        );
    }
}

trait KvAt {
    fn kv_put_at(&self, mount: &str, index: usize);
}

impl KvAt for coffer_tests::Api {
    fn kv_put_at(&self, mount: &str, index: usize) {
        if index == 0 {
            self.post(
                &format!("sys/mounts/{mount}"),
                json!({"type": "kv", "options": {"version": "2"}}),
            )
            .expect(204);
        }
        self.post(
            &format!("{mount}/data/k{index}"),
            json!({"data": {"value": format!("value-{index}")}}),
        )
        .expect(200);
    }
}

#[test]
fn every_write_acknowledged_before_kill_9_is_there_after_restart() {
    let mut server = Server::dev();
    let unseal_key = server.unseal_key.clone().unwrap();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let api = server.root();
            let acknowledged = acknowledged.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut index = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{writer}-{index}");
                    let result = api.try_call(
                        "POST",
                        &format!("secret/data/{key}"),
                        Some(json!({"data": {"n": index}})),
                    );
                    match result {
                        Ok(answer) if answer.status == 200 => {
                            acknowledged.lock().unwrap().push((key, index))
                        }
                        _ => break,
                    }
                    index += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        let _ = writer.join();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 100,
        "too few writes: {}",
        acknowledged.len()
    );

    server.restart();
    let api = server.client(None);
    api.call("PUT", "sys/unseal", Some(json!({"key": unseal_key})))
        .expect(200);
    let root = server.root();
    for (key, index) in &acknowledged {
        let answer = root.get(&format!("secret/data/{key}")).expect(200);
        assert_eq!(answer.body["data"]["data"]["n"], *index, "{key}");
    }
}

#[test]
fn no_secret_value_token_or_accessor_is_stored_in_plaintext() {
    let mut server = Server::dev();
    let root = server.root();
    let markers = [
        "kv2-plaintext-marker-7f3a9c",
        "kv1-plaintext-marker-0b21de",
        "policy-marker-5c8e",
    ];
    root.kv_put("app/db", json!({"password": markers[0]}));
    root.post("sys/mounts/legacy", json!({"type": "kv"}))
        .expect(204);
    root.call("PUT", "legacy/app", Some(json!({"password": markers[1]})))
        .expect(204);
    let policy = format!(
        "path \"secret/data/{}\" {{ capabilities = [\"read\"] }}",
        markers[2]
    );
    let token = root.token_with_policy("reader", &policy);
    let lookup = root
        .post("auth/token/lookup", json!({"token": token}))
        .expect(200);
    let accessor = lookup.body["data"]["accessor"].as_str().unwrap().to_owned();

    let data_dir = server.data_dir.clone();
    let check = |moment: &str| {
        for needle in [
            markers[0],
            markers[1],
            markers[2],
            token.as_str(),
            accessor.as_str(),
        ] {
            assert_eq!(
                find_bytes(&data_dir, needle.as_bytes()),
                None,
                "{needle:?} found in plaintext under the data dir ({moment})"
            );
        }
    };
    check("while running");
    server.kill9();
    check("after kill -9");
    server.restart();
    server
        .client(None)
        .call(
            "PUT",
            "sys/unseal",
            Some(json!({"key": server.unseal_key.clone().unwrap()})),
        )
        .expect(200);
    assert_eq!(server.terminate(), Some(0));
    check("after a clean shutdown");
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let mut server = Server::dev();
    let address = server.address.trim_start_matches("http://").to_owned();
    let body = json!({"data": {"drained": "yes"}}).to_string();
    let mut stream = TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST /v1/secret/data/inflight HTTP/1.1\r\nHost: {address}\r\nX-Vault-Token: root\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body.as_bytes()[..10]).unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let pid = server.pid();
    coffer_tests::send_signal(pid, "TERM");
    // New connections are refused once shutdown has begun...
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(&address).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting connections 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...but the request already under way completes.
    stream.write_all(&body.as_bytes()[10..]).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(server.terminate(), Some(0));

    server.restart();
    server
        .client(None)
        .call(
            "PUT",
            "sys/unseal",
            Some(json!({"key": server.unseal_key.clone().unwrap()})),
        )
        .expect(200);
    let answer = server.root().get("secret/data/inflight").expect(200);
    assert_eq!(answer.body["data"]["data"]["drained"], "yes");
}

#[test]
fn the_server_keeps_serving_after_its_stdout_is_closed() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let directory = tempfile::tempdir().unwrap();
    let mut child = Command::new(coffer_tests::binary())
        .args([
            "server",
            "--dev",
            "--dev-root-token",
            "root",
            "--dev-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(directory.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut address = String::new();
    {
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(value) = line.trim().strip_prefix("Api Address: ") {
                address = value.to_owned();
                break;
            }
        }
        // The read end closes here, before the server has printed its last lines.
    }
    std::thread::sleep(Duration::from_millis(500));
    let status = coffer_tests::curl(&[&format!("{address}/v1/sys/health")]).0;
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(alive, "the server exited when its stdout closed");
    assert_eq!(status, 200);
}

/// `/proc/<pid>/<file>`'s line starting with `key`, without the key.
fn proc_line(pid: u32, file: &str, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(key).map(|rest| rest.trim().to_owned()))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/{file}"))
}

#[test]
fn keys_stay_out_of_core_dumps_and_swap() {
    let server = Server::with_config(CONFIG);
    init_and_unseal(&server);
    let pid = server.pid();
    let core = proc_line(pid, "limits", "Max core file size");
    assert!(
        core.starts_with("0") && core.split_whitespace().nth(1) == Some("0"),
        "{core}"
    );
    let locked: u64 = proc_line(pid, "status", "VmLck:")
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    assert!(locked > 0, "VmLck is 0 kB");
    assert_eq!(proc_line(pid, "status", "Tgid:"), pid.to_string());

    // Opting out locks nothing, and still dumps no core.
    let unlocked = Server::with_config(&format!("{CONFIG}\ndisable_mlock = true\n"));
    let pid = unlocked.pid();
    assert_eq!(proc_line(pid, "status", "VmLck:"), "0 kB");
    let core = proc_line(pid, "limits", "Max core file size");
    assert!(core.starts_with("0"), "{core}");
}

#[test]
fn a_locked_memory_limit_is_refused_at_start_with_a_clear_error() {
    let workspace = tempfile::tempdir().unwrap();
    let config = workspace.path().join("coffer.hcl");
    std::fs::write(
        &config,
        CONFIG.replace(
            "{data_dir}",
            &workspace.path().join("data").display().to_string(),
        ),
    )
    .unwrap();
    // No CAP_IPC_LOCK, and 64 KiB of locked memory at most.
    let output = std::process::Command::new("prlimit")
        .args([
            "--memlock=65536:65536",
            "--",
            "setpriv",
            "--bounding-set=-ipc_lock",
            "--inh-caps=-ipc_lock",
            "--",
        ])
        .arg(coffer_tests::binary())
        .args(["server", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("RLIMIT_MEMLOCK") && stderr.contains("disable_mlock"),
        "{stderr}"
    );
}

/// A listener that accepts connections and never answers, for as long as the
/// returned guard lives.
fn black_hole() -> (String, std::thread::JoinHandle<()>, Arc<AtomicBool>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        while !stopping.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => held.push(stream),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (address, thread, stop)
}

/// `sys/storage/raft/join` needs no token: whatever it fetches must not hold
/// up the node. On a node with a cluster it fetches nothing; on a new node it
/// fetches without holding the lock that init, unseal and seal take.
#[test]
fn joins_to_a_silent_address_hold_up_nothing() {
    let (address, thread, stop) = black_hole();
    let join = |server: &Server| {
        let api = server.client(None);
        let address = address.clone();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let answer = api.try_call(
                "PUT",
                "sys/storage/raft/join",
                Some(json!({"leader_api_addr": address})),
            );
            (answer.map(|answer| answer.status).ok(), started.elapsed())
        })
    };

    // A new node: init answers at once while 20 joins wait on the silence.
    let new = Server::with_config(CONFIG);
    let waiting: Vec<_> = (0..20).map(|_| join(&new)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let (_, root) = init_and_unseal(&new);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "init waited for the joins"
    );

    // A member: joins are no-ops that fetch nothing, and seal answers at once.
    let joins: Vec<_> = (0..20).map(|_| join(&new)).collect();
    let started = std::time::Instant::now();
    new.client(Some(&root))
        .call("PUT", "sys/seal", None)
        .expect(204);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "seal waited for the joins"
    );
    for handle in joins {
        let (status, elapsed) = handle.join().unwrap();
        assert_eq!(status, Some(200));
        assert!(
            elapsed < Duration::from_secs(2),
            "a member's join fetched something"
        );
    }
    let status = new.client(None).get("sys/seal-status").expect(200);
    assert_eq!(status.body["sealed"], true);
    assert_eq!(status.body["initialized"], true, "a join changed nothing");
    drop(waiting);
    stop.store(true, Ordering::SeqCst);
    thread.join().unwrap();
}
