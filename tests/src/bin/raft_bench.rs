//! The replication benchmark: durable write throughput and p99 latency with 32
//! concurrent writers of 1 KiB values, for coffer and for etcd 3.4 (Debian's
//! `etcd-server`), each as one node and as three nodes on loopback, with fsync on,
//! driven by the same load generator in one run; then coffer's failover time
//! (leader `kill -9` to the first successful write), three times.
//!
//! coffer takes KV v2 writes (`POST /v1/secret/data/...`, a version and its
//! metadata, encrypted, through Raft); etcd takes `POST /v3/kv/put` on its JSON
//! gateway. Both receive the writes on their leader; data directories are on disk
//! under /var/tmp.
//!
//! Usage: `raft_bench [SECONDS] [RUNS]` (default 5 s per run after 1 s of warm-up;
//! RUNS, default all, is a comma-separated subset of `etcd1,coffer1,etcd3,coffer3`,
//! for profiling one of them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use coffer_tests::cluster::{Cluster, free_port, wait_for};
use coffer_tests::load::{self, Call, MakeCall, Outcome};
use serde_json::{Value, json};

const WRITERS: usize = 32;
const VALUE_BYTES: usize = 1024;
const KEYS_PER_WRITER: usize = 100;
const FAILOVER_ROUNDS: usize = 5;

/// A 1 KiB value that differs per write (so no layer can dedupe it).
fn value(id: usize, counter: usize) -> String {
    let seed = format!("{id:04}-{counter:08}-");
    seed.repeat(VALUE_BYTES / seed.len() + 1)[..VALUE_BYTES].to_owned()
}

fn coffer_writes(address: &str, token: &str, seconds: u64) -> Outcome {
    let token = token.to_owned();
    let make: MakeCall = Arc::new(move |id, counter| Call {
        method: "POST",
        path: format!("/v1/secret/data/bench/w{id}-{}", counter % KEYS_PER_WRITER),
        body: Bytes::from(json!({"data": {"value": value(id, counter)}}).to_string()),
        headers: vec![("x-vault-token", token.clone())],
    });
    load::run(address, WRITERS, seconds, make)
}

fn etcd_writes(address: &str, seconds: u64) -> Outcome {
    let make: MakeCall = Arc::new(|id, counter| Call {
        method: "POST",
        path: "/v3/kv/put".into(),
        body: Bytes::from(
            json!({
                "key": STANDARD.encode(format!("bench/w{id}-{}", counter % KEYS_PER_WRITER)),
                "value": STANDARD.encode(value(id, counter)),
            })
            .to_string(),
        ),
        headers: Vec::new(),
    });
    load::run(address, WRITERS, seconds, make)
}

/// etcd members started here, ended by pid when dropped.
struct Etcd {
    members: Vec<Child>,
    clients: Vec<String>,
    _directory: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for member in &mut self.members {
            let _ = member.kill();
            let _ = member.wait();
        }
    }
}

impl Etcd {
    fn start(net: u8, size: usize, parent: &Path) -> Etcd {
        let directory = tempfile::tempdir_in(parent).unwrap();
        let hosts: Vec<String> = (1..=size)
            .map(|index| format!("127.0.{net}.{index}"))
            .collect();
        let peers: Vec<String> = hosts
            .iter()
            .map(|host| format!("http://{host}:{}", free_port(host)))
            .collect();
        let clients: Vec<String> = hosts
            .iter()
            .map(|host| format!("http://{host}:{}", free_port(host)))
            .collect();
        let initial: Vec<String> = peers
            .iter()
            .enumerate()
            .map(|(index, peer)| format!("e{}={peer}", index + 1))
            .collect();
        let members = (0..size)
            .map(|index| {
                let data: PathBuf = directory.path().join(format!("e{}", index + 1));
                let log =
                    std::fs::File::create(directory.path().join(format!("e{}.log", index + 1)))
                        .unwrap();
                Command::new("etcd")
                    .arg("--name")
                    .arg(format!("e{}", index + 1))
                    .arg("--data-dir")
                    .arg(&data)
                    .args(["--listen-client-urls", &clients[index]])
                    .args(["--advertise-client-urls", &clients[index]])
                    .args(["--listen-peer-urls", &peers[index]])
                    .args(["--initial-advertise-peer-urls", &peers[index]])
                    .args(["--initial-cluster", &initial.join(",")])
                    .args(["--initial-cluster-state", "new"])
                    .args(["--log-level", "error"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("start etcd (Debian's etcd-server; scripts/bench installs it)")
            })
            .collect();
        let etcd = Etcd {
            members,
            clients,
            _directory: directory,
        };
        let http = reqwest::blocking::Client::new();
        for client in &etcd.clients {
            wait_for(Duration::from_secs(30), "etcd to be healthy", || {
                let answer: Value = http
                    .get(format!("{client}/health"))
                    .send()
                    .ok()?
                    .json()
                    .ok()?;
                (answer["health"] == "true").then_some(())
            });
        }
        etcd
    }

    fn version() -> String {
        Command::new("etcd")
            .arg("--version")
            .output()
            .ok()
            .and_then(|output| {
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .next()
                    .map(|line| line.trim_start_matches("etcd Version: ").to_owned())
            })
            .unwrap_or_else(|| "?".into())
    }

    /// The client URL of the member that leads.
    fn leader(&self) -> String {
        let http = reqwest::blocking::Client::new();
        wait_for(Duration::from_secs(30), "an etcd leader", || {
            self.clients.iter().find_map(|client| {
                let status: Value = http
                    .post(format!("{client}/v3/maintenance/status"))
                    .body("{}")
                    .send()
                    .ok()?
                    .json()
                    .ok()?;
                let me = status["header"]["member_id"].as_str()?;
                (status["leader"].as_str() == Some(me)).then(|| client.clone())
            })
        })
    }
}

fn coffer_cluster(net: u8, size: usize, parent: &Path) -> (Cluster, String) {
    let cluster = Cluster::start_in(net, size, Some(parent));
    cluster.mount_kv();
    let leader = cluster.leader();
    let address = cluster.nodes[leader].api_addr.clone();
    (cluster, address)
}

/// Kills the leader of a three-node cluster under a write load and times how long
/// until a write succeeds again; restarts and unseals the killed node after.
fn failover(cluster: &mut Cluster) -> Duration {
    let token = cluster.keys.root_token.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let background: Vec<_> = (0..cluster.nodes.len())
        .map(|index| {
            let api = cluster.nodes[index].api_with_timeout(Some(&token), Duration::from_secs(10));
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut count = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    count += 1;
                    let _ = api.try_call(
                        "POST",
                        &format!("secret/data/failover/{index}-{}", count % 50),
                        Some(json!({"data": {"v": count}})),
                    );
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let leader = cluster.leader();
    let survivors: Vec<usize> = (0..cluster.nodes.len())
        .filter(|index| *index != leader)
        .collect();
    let probes: Vec<_> = survivors
        .iter()
        .map(|index| cluster.nodes[*index].api_with_timeout(Some(&token), Duration::from_secs(1)))
        .collect();
    let killed = Instant::now();
    cluster.nodes[leader].server.kill9();
    let elapsed = wait_for(Duration::from_secs(30), "a write after the kill", || {
        probes.iter().find_map(|probe| {
            let answer = probe
                .try_call(
                    "POST",
                    "secret/data/failover/probe",
                    Some(json!({"data": {"at": "failover"}})),
                )
                .ok()?;
            (answer.status == 200).then(|| killed.elapsed())
        })
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for thread in background {
        let _ = thread.join();
    }
    cluster.nodes[leader].server.restart();
    cluster.unseal(leader);
    cluster.wait_for_voters(cluster.nodes.len());
    elapsed
}

/// The outcome of the run of `system` (`coffer` or `etcd`) in `shape`.
fn result<'a>(results: &'a [(String, Outcome)], system: &str, shape: &str) -> Option<&'a Outcome> {
    results
        .iter()
        .find(|(label, _)| label.starts_with(system) && label.ends_with(shape))
        .map(|(_, outcome)| outcome)
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(5);
    let disk = Path::new("/var/tmp");
    let etcd_name = format!("etcd {}", Etcd::version());
    println!(
        "replication benchmark: {WRITERS} concurrent writers, {VALUE_BYTES}-byte values, fsync on, \
         {seconds} s per run after 1 s of warm-up; data under {}",
        disk.display()
    );

    let runs = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "etcd1,coffer1,etcd3,coffer3".into());
    let wanted = |name: &str| runs.split(',').any(|run| run == name);
    let mut results: Vec<(String, Outcome)> = Vec::new();
    if wanted("etcd1") {
        let etcd = Etcd::start(71, 1, disk);
        results.push((
            format!("{etcd_name}, 1 node"),
            etcd_writes(&etcd.leader(), seconds),
        ));
    }
    if wanted("coffer1") {
        let (cluster, address) = coffer_cluster(72, 1, disk);
        println!("coffer, 1 node: pid {}", cluster.nodes[0].server.pid());
        results.push((
            "coffer, 1 node".into(),
            coffer_writes(&address, &cluster.keys.root_token, seconds),
        ));
    }
    if wanted("etcd3") {
        let etcd = Etcd::start(73, 3, disk);
        results.push((
            format!("{etcd_name}, 3 nodes"),
            etcd_writes(&etcd.leader(), seconds),
        ));
    }
    let mut failovers = Vec::new();
    if wanted("coffer3") {
        let (mut cluster, address) = coffer_cluster(74, 3, disk);
        results.push((
            "coffer, 3 nodes".into(),
            coffer_writes(&address, &cluster.keys.root_token, seconds),
        ));
        for _ in 0..FAILOVER_ROUNDS {
            failovers.push(failover(&mut cluster));
        }
    }

    println!();
    println!(
        "{:<28} {:>10} {:>9} {:>9} {:>8}",
        "system", "writes/s", "p50 ms", "p99 ms", "errors"
    );
    for (name, outcome) in &results {
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
    for shape in ["1 node", "3 nodes"] {
        let (Some(etcd), Some(coffer)) = (
            result(&results, "etcd", shape),
            result(&results, "coffer", shape),
        ) else {
            continue;
        };
        let ratio = coffer.rate() / etcd.rate();
        println!(
            "coffer / etcd, {shape}: {ratio:.2}x writes/s (target >= 1.0x: {}), p99 {:.2} ms vs {:.2} ms",
            if ratio >= 1.0 { "met" } else { "NOT met" },
            coffer.percentile(0.99),
            etcd.percentile(0.99),
        );
    }
    let errors: usize = results.iter().map(|(_, outcome)| outcome.errors).sum();
    assert_eq!(errors, 0, "writes failed during the benchmark");
    if failovers.is_empty() {
        return;
    }
    let worst = failovers.iter().max().copied().unwrap_or_default();
    let shown: Vec<String> = failovers
        .iter()
        .map(|elapsed| format!("{:.2} s", elapsed.as_secs_f64()))
        .collect();
    println!(
        "coffer failover (leader kill -9 to first successful write): {} (worst {:.2} s; target < 3 s: {})",
        shown.join(", "),
        worst.as_secs_f64(),
        if worst < Duration::from_secs(3) {
            "met"
        } else {
            "NOT met"
        },
    );
}
