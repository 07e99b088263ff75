//! gRPC `Watch` on a real three-node cluster, read by a grpcio client
//! (`tests/grpc/watch.py`): writes made over HTTP through one node arrive as
//! events on a watch held by another, quickly; a watcher that may list the
//! prefix but not read a path hears nothing of it; revoking the token ends the
//! stream, and so does sealing the node.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use coffer_tests::cluster::Cluster;
use serde_json::{Value, json};

/// The Python of the test environment `scripts/setup` made.
fn python() -> PathBuf {
    let venv = std::env::var("COFFER_VENV").unwrap_or_else(|_| "/var/tmp/coffer-venv".into());
    PathBuf::from(venv).join("bin/python")
}

/// A running `watch.py`; its lines arrive on `lines` with their arrival time.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
}

impl Watcher {
    fn start(address: &str, token: &str, prefix: &str) -> Watcher {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("grpc/watch.py");
        let mut child = Command::new(python())
            .arg(script)
            .args([address, token, prefix])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("start watch.py (scripts/setup installs grpcio)");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        let watcher = Watcher { child, lines };
        let (_, first) = watcher
            .next(Duration::from_secs(20))
            .expect("watch.py started");
        assert_eq!(first, "ready", "the watch was not accepted: {first}");
        watcher
    }

    fn next(&self, timeout: Duration) -> Option<(Instant, String)> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The next event as JSON, if one comes within `timeout`.
    fn event(&self, timeout: Duration) -> Option<(Instant, Value)> {
        self.next(timeout)
            .map(|(at, line)| (at, serde_json::from_str(&line).unwrap()))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token(cluster: &Cluster, policy: &str, name: &str) -> String {
    cluster
        .root(cluster.leader())
        .token_with_policy(name, policy)
}

#[test]
fn a_watch_on_one_node_sees_writes_made_through_another() {
    let cluster = Cluster::start(23, 3);
    cluster.mount_kv();
    let leader = cluster.leader();
    let followers = cluster.followers();
    let (watched_node, writing_node) = (followers[0], followers[1]);
    let grpc = cluster.nodes[watched_node]
        .server
        .grpc_address
        .clone()
        .expect("every node serves gRPC");

    let reader = token(
        &cluster,
        "path \"secret/data/watched/*\" {\n capabilities = [\"read\"]\n}",
        "watch-reader",
    );
    // May start a watch on all of secret/data/, reads only secret/data/other/*.
    let lister = token(
        &cluster,
        "path \"secret/data/*\" {\n capabilities = [\"list\"]\n}\npath \"secret/data/other/*\" {\n capabilities = [\"read\"]\n}",
        "watch-lister",
    );
    let watcher = Watcher::start(&grpc, &reader, "secret/data/watched/");
    let blind = Watcher::start(&grpc, &lister, "secret/data/");

    let writer = cluster.root(writing_node);
    let mut delays = Vec::new();
    for round in 1..=5u64 {
        let sent = Instant::now();
        writer.kv_put(
            "watched/app",
            json!({"password": format!("s3cret-{round}")}),
        );
        let acknowledged = Instant::now();
        let (arrived, event) = watcher
            .event(Duration::from_secs(5))
            .expect("an event for the write");
        let change = &event["change"];
        assert_eq!(change["path"], "secret/data/watched/app", "{event}");
        assert_eq!(change["operation"], "write");
        assert_eq!(change["version"], round.to_string(), "int64 as JSON text");
        assert!(change["time"].as_str().unwrap().ends_with('Z'));
        assert!(!event.to_string().contains("s3cret"), "a value in an event");
        delays.push((
            arrived.saturating_duration_since(acknowledged),
            arrived.saturating_duration_since(sent),
        ));
    }
    println!("watch delays (after acknowledgment, after send): {delays:?}");
    for (after_ack, after_send) in &delays {
        assert!(
            *after_ack < Duration::from_millis(200),
            "an event came {after_ack:?} after the write was acknowledged ({after_send:?} after it was sent); all: {delays:?}"
        );
    }
    // The lister may watch secret/data/ but not read watched/: it heard nothing.
    assert!(
        blind.next(Duration::from_millis(300)).is_none(),
        "a watcher without read rights heard of a write"
    );
    // It does hear of what it may read, written through the leader.
    cluster
        .root(leader)
        .kv_put("other/thing", json!({"k": "v"}));
    let (_, event) = blind
        .event(Duration::from_secs(5))
        .expect("the lister's event");
    assert_eq!(event["change"]["path"], "secret/data/other/thing");
    // ...and the reader, whose prefix excludes it, did not.
    writer.delete("secret/data/watched/app").expect(204);
    let (_, event) = watcher.event(Duration::from_secs(5)).expect("the delete");
    assert_eq!(event["change"]["operation"], "delete", "{event}");
    assert_eq!(event["change"]["path"], "secret/data/watched/app");

    // Revoking the reader's token ends its stream with PERMISSION_DENIED.
    cluster
        .root(leader)
        .post("auth/token/revoke", json!({"token": reader}))
        .expect(204);
    let (_, ending) = watcher
        .event(Duration::from_secs(5))
        .expect("the stream ends");
    assert_eq!(ending["error"], "PERMISSION_DENIED", "{ending}");

    // Sealing the watched node ends the other watch with UNAVAILABLE.
    cluster.nodes[watched_node]
        .api(Some(&cluster.keys.root_token))
        .call("PUT", "sys/seal", None)
        .expect(204);
    let (_, ending) = blind
        .event(Duration::from_secs(5))
        .expect("the stream ends at seal");
    assert_eq!(ending["error"], "UNAVAILABLE", "{ending}");
}
