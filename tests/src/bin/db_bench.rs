//! The database engine's benchmark, two parts:
//!
//! 1. Credentials per second and p99 with 16 concurrent clients asking coffer
//!    for PostgreSQL credentials (`GET database/creds/app` over HTTP), beside the
//!    ceiling: the same creation statements run directly through sqlx by 16
//!    tasks against the same server. The two alternate in ABBA rounds (the
//!    machine is noisy); the ratio is coffer's rate over the ceiling's.
//! 2. Lease restore: 100,000 leases registered through the lease manager on a
//!    real one-node Raft store (RocksDB, fsync on), the store closed and opened
//!    again, and the schedule loaded as a new leader does; prints the load time
//!    and the schedule's memory per lease (live heap bytes, counted by this
//!    binary's allocator).
//!
//! Usage: db_bench [SECONDS_PER_WORKLOAD] [LEASES]

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use coffer_daemon::leases::{Lease, Manager};
use coffer_tests::Server;
use coffer_tests::databases::{Postgres, runtime};
use coffer_tests::load::{self, Call, MakeCall, Outcome};
use coffer_tests::store::open;
use serde_json::json;

/// Counts live heap bytes, to measure what the lease schedule holds.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator with the same layout;
// the counter is only bookkeeping. (The one unsafe code of the workspace: a
// benchmark's allocator counts what the lease schedule holds.)
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CLIENTS: usize = 16;
/// Rights come from a group role: PostgreSQL keeps a table's grantees in one
/// catalog row, which overflows its page after several hundred direct grants.
const CREATE: &str = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT app_reader TO "{{name}}";"#;

/// Numbers the ceiling's user names across rounds.
static SEQUENCE: AtomicUsize = AtomicUsize::new(0);

/// The ceiling: 16 tasks, each on its own connection, running the role's
/// creation statements in a transaction with fresh names, as coffer does.
fn ceiling(postgres: &Postgres, seconds: u64) -> Outcome {
    let url = postgres.admin_url();
    runtime().block_on(async move {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(CLIENTS as u32)
            .connect(&url)
            .await
            .expect("connect");
        let warm_up = Instant::now() + Duration::from_secs(1);
        let end = warm_up + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for task in 0..CLIENTS {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                loop {
                    let started = Instant::now();
                    if started >= end {
                        break;
                    }
                    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
                    let name = format!("v-ceiling-app-{task}-{sequence}-{}", std::process::id());
                    let statement = CREATE
                        .replace("{{name}}", &name)
                        .replace("{{password}}", "A1a-ceiling-password-x")
                        .replace("{{expiration}}", "2099-01-01 00:00:00+0000");
                    // One transaction, retried when it lost a race on the
                    // table's grants ("tuple concurrently updated"), as coffer does.
                    let mut attempt = 1;
                    let outcome = loop {
                        let outcome = async {
                            let mut transaction = pool.begin().await?;
                            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
                                .execute(&mut *transaction)
                                .await?;
                            transaction.commit().await
                        }
                        .await;
                        match outcome {
                            Err(sqlx::Error::Database(error))
                                if attempt < 8
                                    && error.message().contains("concurrently updated") =>
                            {
                                attempt += 1;
                                tokio::time::sleep(Duration::from_millis(2 * attempt)).await;
                            }
                            outcome => break outcome,
                        }
                    };
                    if started < warm_up {
                        continue;
                    }
                    match outcome {
                        Ok(()) => latencies.push(started.elapsed().as_micros() as u32),
                        Err(error) => {
                            if errors == 0 {
                                eprintln!("  ceiling task {task}: {error}");
                            }
                            errors += 1
                        }
                    }
                }
                (latencies, errors)
            }));
        }
        let mut outcome = Outcome {
            requests: 0,
            errors: 0,
            seconds: seconds as f64,
            latencies: Vec::new(),
        };
        for task in tasks {
            let (latencies, errors) = task.await.expect("task");
            outcome.requests += latencies.len();
            outcome.errors += errors;
            outcome.latencies.extend(latencies);
        }
        outcome.latencies.sort_unstable();
        pool.close().await;
        outcome
    })
}

fn coffer(server: &Server, token: &str, seconds: u64) -> Outcome {
    let token = token.to_owned();
    let make: MakeCall = Arc::new(move |_, _| Call {
        method: "GET",
        path: "/v1/database/creds/app".to_owned(),
        body: Bytes::new(),
        headers: vec![("X-Vault-Token", token.clone())],
    });
    load::run(&server.address, CLIENTS, seconds, make)
}

fn print(label: &str, outcome: &Outcome) {
    println!(
        "  {label:<34} {:>8.0} creds/s   p50 {:>6.1} ms   p99 {:>6.1} ms   errors {}",
        outcome.rate(),
        outcome.percentile(0.50),
        outcome.percentile(0.99),
        outcome.errors
    );
}

fn credentials(seconds: u64) {
    println!("== PostgreSQL credentials, {CLIENTS} concurrent clients ==");
    let postgres = Postgres::start();
    postgres.admin(
        "CREATE TABLE items (id int); CREATE ROLE app_reader; GRANT SELECT ON items TO app_reader;",
    );
    let server = Server::dev();
    let api = server.root();
    api.post("sys/mounts/database", json!({"type": "database"}))
        .expect(204);
    api.post(
        "database/config/pg",
        json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": postgres.template(),
            "username": "postgres",
            "password": postgres.password,
            "allowed_roles": ["app"],
            "max_open_connections": CLIENTS,
        }),
    )
    .expect(204);
    api.post(
        "database/roles/app",
        json!({"db_name": "pg", "creation_statements": [CREATE], "default_ttl": "1h", "max_ttl": "2h"}),
    )
    .expect(204);
    let token = server.root_token.clone().expect("root token");
    let round = seconds.div_ceil(2).max(1);
    let (mut ceilings, mut coffers) = (Vec::new(), Vec::new());
    // ABBA: ceiling, coffer, coffer, ceiling.
    ceilings.push(ceiling(&postgres, round));
    coffers.push(coffer(&server, &token, round));
    coffers.push(coffer(&server, &token, round));
    ceilings.push(ceiling(&postgres, round));
    let ceiling = Outcome::merge(ceilings);
    let coffer = Outcome::merge(coffers);
    print("sqlx directly (ceiling)", &ceiling);
    print("coffer GET database/creds/app", &coffer);
    println!(
        "  ratio coffer / ceiling: {:.2}x (target >= 0.70x)",
        coffer.rate() / ceiling.rate()
    );
    println!(
        "  p99 ratio coffer / ceiling: {:.2}x",
        coffer.percentile(0.99) / ceiling.percentile(0.99)
    );
    let leases = api.list("sys/leases/lookup/database/creds/app/").body["data"]["keys"]
        .as_array()
        .map_or(0, Vec::len);
    println!("  leases held after the run: {leases}");
}

fn restore(count: usize) {
    println!("== Lease restore: {count} leases on a one-node Raft store (RocksDB, fsync on) ==");
    let directory = tempfile::tempdir().expect("temp dir");
    let root = [7u8; 32];
    runtime().block_on(async {
        let (cluster, barrier, sealed) = open(directory.path(), &root, None).await;
        let manager = Arc::new(Manager::new(barrier));
        let started = Instant::now();
        let now = coffer_daemon::tokens::now_seconds();
        let next = Arc::new(AtomicUsize::new(0));
        let mut writers = Vec::new();
        for _ in 0..64 {
            let manager = manager.clone();
            let next = next.clone();
            writers.push(tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        break;
                    }
                    let lease = Lease::new(
                        "database/creds/app",
                        "database/",
                        now,
                        3600 + (index % 3600) as u64,
                        7200,
                        Some(format!("token-{}", index % 1000)),
                        json!({"db_name": "pg", "role": "app", "username": format!("v-token-app-{index:020}-{now}"), "revocation_statements": [], "renew_statements": []}),
                    )
                    .expect("lease");
                    manager.register(&lease).await.expect("register");
                }
            }));
        }
        for writer in writers {
            writer.await.expect("writer");
        }
        let written = started.elapsed();
        println!(
            "  registered {count} leases in {:.1} s ({:.0} leases/s through Raft)",
            written.as_secs_f64(),
            count as f64 / written.as_secs_f64()
        );
        drop(manager);
        cluster.stop().await;
        drop(cluster);
        tokio::time::sleep(Duration::from_millis(500)).await;

        // A restart: the store is opened again and the node leads again.
        let (cluster, barrier, _) = open(directory.path(), &root, Some(&sealed)).await;
        let manager = Manager::new(barrier);
        let before = LIVE.load(Ordering::Relaxed);
        let loaded = manager.load().expect("load");
        let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
        assert_eq!(loaded.leases, count, "every lease is scheduled");
        println!(
            "  loaded {} leases in {:.0} ms (target < 2000 ms): {:.2}x the target",
            loaded.leases,
            loaded.elapsed.as_secs_f64() * 1000.0,
            loaded.elapsed.as_secs_f64() / 2.0
        );
        println!(
            "  schedule memory: {:.1} MiB, {:.0} bytes per lease",
            held as f64 / (1024.0 * 1024.0),
            held as f64 / count as f64
        );
        let on_disk: u64 = walk_size(directory.path());
        println!(
            "  store on disk (log + state, with {count} leases): {:.0} MiB, {:.0} bytes per lease",
            on_disk as f64 / (1024.0 * 1024.0),
            on_disk as f64 / count as f64
        );
        drop(manager);
        cluster.stop().await;
    });
}

fn walk_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => walk_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|arg| arg.parse().ok()).unwrap_or(10);
    let leases: usize = args
        .next()
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(100_000);
    credentials(seconds);
    println!();
    restore(leases);
}
