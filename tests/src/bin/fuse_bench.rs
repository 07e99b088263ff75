//! The `/secrets` filesystem's benchmark: open + read + close of a small file,
//! by 1 and 2 concurrent readers (threads of this process, which a local role
//! maps), in one run, on:
//!
//! - plain tmpfs: the limit (no FUSE at all);
//! - bindfs over that tmpfs: a peer FUSE filesystem from Debian;
//! - coffer: a KV v2 field file (`/secrets/secret/bench/item/field`);
//! - coffer: a cached dynamic-credential file (`.../database/creds/app/username`,
//!   one lease held; every open still checks it with the core);
//! - the same filesystem code over a handler that answers at once (no
//!   authentication, audit or storage): the FUSE layer's own ceiling, which
//!   separates what the core costs from what FUSE costs.
//!
//! Every open walks the whole path (absolute path each time), so coffer's
//! zero-TTL lookups are part of the figure. Workloads alternate in rounds,
//! forwards then backwards (ABBA), and each figure is the median round. Targets:
//! KV file >= 1.0x bindfs, cached credential >= 0.8x the KV file.
//!
//! Usage (as root): fuse_bench [SECONDS_PER_ROUND]

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coffer_protocols::{
    Handler, LogicalResponse, Observation, Operation, Request, Response, ResponseBody,
};
use coffer_tests::Server;
use coffer_tests::databases::Postgres;
use serde_json::json;

const ROUNDS: usize = 4;

/// Opens, reads and closes `path` from `readers` threads for `seconds`;
/// returns opens per second. Any failure aborts the benchmark.
fn measure(path: &Path, readers: usize, seconds: f64, expected: &[u8]) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..readers)
        .map(|_| {
            let (path, stop, count, expected) = (
                path.to_owned(),
                stop.clone(),
                count.clone(),
                expected.to_vec(),
            );
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                let mut done = 0;
                while !stop.load(Ordering::Relaxed) {
                    use std::io::Read;
                    let mut file = std::fs::File::open(&path)
                        .unwrap_or_else(|error| panic!("open {}: {error}", path.display()));
                    let read = file.read(&mut buffer).unwrap();
                    assert_eq!(&buffer[..read], &expected[..], "{}", path.display());
                    drop(file);
                    done += 1;
                }
                count.fetch_add(done, Ordering::Relaxed);
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?} failed");
}

/// tmpfs and bindfs over it, unmounted when dropped.
struct Peers {
    tmpfs: PathBuf,
    bindfs: PathBuf,
    _workspace: tempfile::TempDir,
}

impl Peers {
    fn mount(content: &[u8]) -> Peers {
        let workspace = tempfile::tempdir().unwrap();
        let tmpfs = workspace.path().join("tmpfs");
        let bindfs = workspace.path().join("bindfs");
        std::fs::create_dir(&tmpfs).unwrap();
        std::fs::create_dir(&bindfs).unwrap();
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                "size=1m",
                "tmpfs",
                tmpfs.to_str().unwrap(),
            ],
        );
        std::fs::write(tmpfs.join("field"), content).unwrap();
        run(
            "bindfs",
            &[tmpfs.to_str().unwrap(), bindfs.to_str().unwrap()],
        );
        Peers {
            tmpfs,
            bindfs,
            _workspace: workspace,
        }
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.bindfs).status();
        let _ = Command::new("umount").arg(&self.tmpfs).status();
    }
}

/// Answers the filesystem's requests for one KV field at once.
struct AtOnce;

impl Handler for AtOnce {
    async fn handle(&self, request: Request) -> Response {
        let data = match (request.operation, request.path.as_str()) {
            (Operation::Read, "secret/data/bench/item") => {
                json!({"data": {"field": "small-secret-value-0123456789"}})
            }
            (Operation::Read, "sys/internal/fs/secret/bench/item") => json!({
                "kind": "secret",
                "read_path": "secret/data/bench/item",
                "version": 2,
                "fields": ["field"],
            }),
            (Operation::Read, _) => json!({"kind": "folder"}),
            _ => json!({}),
        };
        let logical = LogicalResponse::with_data(data.as_object().cloned().unwrap_or_default());
        Response::new(None, ResponseBody::Logical(Box::new(logical)))
    }

    fn observe(&self, _observation: Observation<'_>) {}
}

/// The filesystem over [`AtOnce`], unmounted when dropped.
fn fuse_ceiling(runtime: &tokio::runtime::Runtime) -> (coffer_fuse::Mounted, tempfile::TempDir) {
    let workspace = tempfile::tempdir().unwrap();
    let mount_point = workspace.path().join("ceiling");
    coffer_fuse::mount_point::prepare(&mount_point).unwrap();
    let options = coffer_fuse::Options {
        mount_point: mount_point.clone(),
        threads: 8,
        revoke_unused_leases: false,
    };
    let mounted = coffer_fuse::mount(Arc::new(AtOnce), runtime.handle().clone(), &options).unwrap();
    coffer_tests::wait_mounted(&mount_point);
    (mounted, workspace)
}

const CREATE_PG: &str =
    r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"#;

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|text| text.parse().expect("SECONDS_PER_ROUND"))
        .unwrap_or(2.0);
    let content = b"small-secret-value-0123456789";
    let postgres = Postgres::start();
    let server = Server::dev_with_fuse();
    let api = server.root();
    api.call(
        "PUT",
        "sys/policies/acl/bench",
        Some(json!({"policy": "path \"secret/data/bench/*\" {\n capabilities = [\"read\"]\n}\npath \"database/creds/app\" {\n capabilities = [\"read\"]\n}"})),
    )
    .expect(204);
    api.post(
        "auth/local/role/bench",
        json!({"bound_uids": [0], "policies": ["bench"]}),
    )
    .expect(204);
    api.kv_put(
        "bench/item",
        json!({"field": String::from_utf8_lossy(content)}),
    );
    postgres.mount_connection(&api, &["app"]);
    api.post(
        "database/roles/app",
        json!({"db_name": "pg", "creation_statements": [CREATE_PG], "default_ttl": "1h", "max_ttl": "2h"}),
    )
    .expect(204);

    let secrets = server.fuse.clone().unwrap();
    let kv = secrets.join("secret/bench/item/field");
    let credential = secrets.join("database/creds/app/username");
    let username = std::fs::read(&credential).unwrap();
    let peers = Peers::mount(content);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (ceiling, ceiling_workspace) = fuse_ceiling(&runtime);
    let workloads: [(&str, PathBuf, Vec<u8>); 5] = [
        ("tmpfs (limit)", peers.tmpfs.join("field"), content.to_vec()),
        (
            "bindfs over tmpfs",
            peers.bindfs.join("field"),
            content.to_vec(),
        ),
        ("coffer KV field", kv, content.to_vec()),
        ("coffer cached credential", credential, username),
        (
            "FUSE layer, instant core",
            ceiling_workspace
                .path()
                .join("ceiling/secret/bench/item/field"),
            content.to_vec(),
        ),
    ];

    println!(
        "== FUSE: open + read + close of a small file ({ROUNDS} ABBA rounds of {seconds} s, median)"
    );
    for readers in [1, 2] {
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); workloads.len()];
        for round in 0..ROUNDS {
            let order: Vec<usize> = if round % 2 == 0 {
                (0..workloads.len()).collect()
            } else {
                (0..workloads.len()).rev().collect()
            };
            for index in order {
                let (_, path, expected) = &workloads[index];
                rates[index].push(measure(path, readers, seconds, expected));
            }
        }
        let medians: Vec<f64> = rates.into_iter().map(median).collect();
        println!("-- {readers} reader(s)");
        for ((name, _, _), rate) in workloads.iter().zip(&medians) {
            println!(
                "   {name:<26} {rate:>9.0} opens/s   {:>6.1} us/open",
                1e6 / rate * readers as f64
            );
        }
        println!(
            "   coffer KV / bindfs:               {:.2}x  (target >= 1.0x)",
            medians[2] / medians[1]
        );
        println!(
            "   coffer credential / coffer KV:    {:.2}x  (target >= 0.8x)",
            medians[3] / medians[2]
        );
        println!(
            "   coffer KV / tmpfs:                {:.3}x  (the limit)",
            medians[2] / medians[0]
        );
        println!(
            "   FUSE layer (instant core) / bindfs: {:.2}x; coffer KV / FUSE layer: {:.2}x",
            medians[4] / medians[1],
            medians[2] / medians[4]
        );
    }
    drop(ceiling);
    drop(peers);
    drop(server);
    drop(postgres);
}
