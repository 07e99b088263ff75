//! Real PostgreSQL and MariaDB servers for the database engine's tests: each
//! one is initialized from Debian's packages in a temp dir, listens on a private
//! port on 127.0.0.1 (PostgreSQL with `scram-sha-256`, since `VALID UNTIL` does
//! not apply to trust logins), and is ended by pid when its handle drops. The
//! checks log in with sqlx, as an application would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;

use crate::cluster::free_port;
use crate::send_signal;

/// The runtime the blocking tests use for sqlx.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// The newest PostgreSQL server binaries Debian installed.
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/setup installs it)")
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL server under /usr/lib/postgresql")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| output.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// `program` run as the `postgres` system user when we are root (PostgreSQL
/// refuses to run as root); `setpriv` execs, so the pid is the server's.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn wait_for_port(port: u16, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the database server exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the database server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop_child(child: &mut Option<Child>, signal: &str) {
    if let Some(mut running) = child.take() {
        send_signal(running.id(), signal);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = running.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = running.kill();
        let _ = running.wait();
    }
}

/// A private PostgreSQL server.
pub struct Postgres {
    child: Option<Child>,
    pub port: u16,
    /// The superuser's (`postgres`) password.
    pub password: String,
    data: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = postgres_bin();
        let dir = tempfile::Builder::new()
            .prefix("coffer-pg")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pwfile");
        let log = dir.path().join("postgres.log");
        let password = format!("admin-{}", std::process::id());
        std::fs::write(&pwfile, &password).expect("pwfile");
        std::fs::write(&log, "").expect("log");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the PostgreSQL temp dir");
        }
        let output = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("initdb");
        assert!(
            output.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut postgres = Postgres {
            child: None,
            port: free_port("127.0.0.1"),
            password,
            data,
            log,
            bin,
            _dir: dir,
        };
        postgres.spawn();
        postgres
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .expect("log");
        let mut child = as_postgres(&self.bin.join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.data.display()))
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres");
        wait_for_port(self.port, &mut child, &self.log);
        self.child = Some(child);
        // Listening comes a moment before accepting logins.
        let deadline = Instant::now() + Duration::from_secs(30);
        while login_postgres(&self.admin_url()).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL does not accept logins"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (fast shutdown); [`Postgres::start_again`] brings it back
    /// on the same port with the same data.
    pub fn stop(&mut self) {
        stop_child(&mut self.child, "INT");
    }

    pub fn start_again(&mut self) {
        self.spawn();
    }

    pub fn url(&self, username: &str, password: &str) -> String {
        format!(
            "postgresql://{username}:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    pub fn admin_url(&self) -> String {
        self.url("postgres", &self.password)
    }

    /// The connection URL template coffer is configured with.
    pub fn template(&self) -> String {
        format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// Runs `sql` as the superuser.
    pub fn admin(&self, sql: &str) {
        let url = self.admin_url();
        let sql = sql.to_owned();
        runtime()
            .block_on(async move {
                let mut connection = PgConnection::connect(&url).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut connection)
                    .await?;
                connection.close().await
            })
            .expect("admin SQL");
    }

    /// Whether a role named `name` exists.
    pub fn role_exists(&self, name: &str) -> bool {
        let url = self.admin_url();
        let name = name.to_owned();
        runtime()
            .block_on(async move {
                let mut connection = PgConnection::connect(&url).await?;
                let found: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM pg_roles WHERE rolname = $1")
                        .bind(name)
                        .fetch_optional(&mut connection)
                        .await?;
                Ok::<_, sqlx::Error>(found.is_some())
            })
            .expect("role lookup")
    }

    /// Roles whose name starts with `prefix`.
    pub fn roles_like(&self, prefix: &str) -> Vec<String> {
        let url = self.admin_url();
        let pattern = format!("{prefix}%");
        runtime()
            .block_on(async move {
                let mut connection = PgConnection::connect(&url).await?;
                sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname LIKE $1")
                    .bind(pattern)
                    .fetch_all(&mut connection)
                    .await
            })
            .expect("role listing")
    }

    /// Mounts `database/` on `api` and configures connection `pg` to this
    /// server for `allowed_roles`, as its superuser.
    pub fn mount_connection(&self, api: &crate::Api, allowed_roles: &[&str]) {
        api.post(
            "sys/mounts/database",
            serde_json::json!({"type": "database"}),
        )
        .expect(204);
        api.post(
            "database/config/pg",
            serde_json::json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": self.template(),
                "username": "postgres",
                "password": self.password,
                "allowed_roles": allowed_roles,
                "verify_connection": true,
            }),
        )
        .expect(204);
    }

    /// Logs in as `username` and runs `sql` (the first column of the first row
    /// as text, if any).
    pub fn query_as(
        &self,
        username: &str,
        password: &str,
        sql: &str,
    ) -> Result<Option<String>, String> {
        let url = self.url(username, &urlencode(password));
        let sql = sql.to_owned();
        runtime().block_on(async move {
            let mut connection = PgConnection::connect(&url)
                .await
                .map_err(|error| error.to_string())?;
            let row: Option<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_optional(&mut connection)
                .await
                .map_err(|error| error.to_string())?;
            Ok(row.flatten())
        })
    }

    /// An open session as `username`, to watch it being terminated.
    pub fn session(&self, username: &str, password: &str) -> PgConnection {
        let url = self.url(username, &urlencode(password));
        runtime()
            .block_on(PgConnection::connect(&url))
            .expect("open a session")
    }
}

fn login_postgres(url: &str) -> Result<(), sqlx::Error> {
    let url = url.to_owned();
    runtime().block_on(async move { PgConnection::connect(&url).await?.close().await })
}

impl Drop for Postgres {
    fn drop(&mut self) {
        stop_child(&mut self.child, "QUIT");
    }
}

/// Percent-encodes a password for a URL's userinfo.
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// A private MariaDB server.
pub struct MariaDb {
    child: Option<Child>,
    pub port: u16,
    /// The password of `admin`@`%`, which has every privilege.
    pub password: String,
    _dir: tempfile::TempDir,
}

impl MariaDb {
    pub fn start() -> MariaDb {
        let dir = tempfile::Builder::new()
            .prefix("coffer-mariadb")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        let socket = dir.path().join("mysqld.sock");
        let log = dir.path().join("mariadb.log");
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--skip-test-db", "--auth-root-authentication-method=socket"]);
        if is_root() {
            install.arg("--user=root");
        }
        let output = install
            .output()
            .expect("mariadb-install-db (scripts/setup installs it)");
        assert!(
            output.status.success(),
            "mariadb-install-db: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let port = free_port("127.0.0.1");
        let mut server = Command::new("mariadbd");
        server
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("mariadb.pid").display()
            ))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=2",
                "--max-connections=200",
            ]);
        if is_root() {
            server.arg("--user=root");
        }
        let mut child = server
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd");
        wait_for_port(port, &mut child, &log);
        let password = format!("admin-{}", std::process::id());
        let setup = format!(
            "CREATE USER 'admin'@'%' IDENTIFIED BY '{password}'; \
             GRANT ALL PRIVILEGES ON *.* TO 'admin'@'%' WITH GRANT OPTION; \
             CREATE DATABASE app; CREATE TABLE app.items (id INT PRIMARY KEY); \
             INSERT INTO app.items VALUES (1), (2);"
        );
        let output = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", socket.display()))
            .args(["-u", "root", "-e", &setup])
            .output()
            .expect("mariadb client");
        assert!(
            output.status.success(),
            "creating the admin user: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        MariaDb {
            child: Some(child),
            port,
            password,
            _dir: dir,
        }
    }

    pub fn url(&self, username: &str, password: &str) -> String {
        format!("mysql://{username}:{password}@127.0.0.1:{}/", self.port)
    }

    /// The connection URL template, in Vault's Go DSN form.
    pub fn template(&self) -> String {
        format!(
            "{{{{username}}}}:{{{{password}}}}@tcp(127.0.0.1:{})/",
            self.port
        )
    }

    /// How many accounts named `name` exist.
    pub fn user_count(&self, name: &str) -> i64 {
        let url = self.url("admin", &self.password);
        let name = name.to_owned();
        runtime()
            .block_on(async move {
                let mut connection = MySqlConnection::connect(&url).await?;
                sqlx::query_scalar("SELECT COUNT(*) FROM mysql.user WHERE user = ?")
                    .bind(name)
                    .fetch_one(&mut connection)
                    .await
            })
            .expect("user lookup")
    }

    /// Logs in as `username` and runs `sql` (the first column of the first row
    /// as text, if any).
    pub fn query_as(
        &self,
        username: &str,
        password: &str,
        sql: &str,
    ) -> Result<Option<String>, String> {
        let url = self.url(username, &urlencode(password));
        let sql = sql.to_owned();
        runtime().block_on(async move {
            let mut connection = MySqlConnection::connect(&url)
                .await
                .map_err(|error| error.to_string())?;
            let row: Option<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_optional(&mut connection)
                .await
                .map_err(|error| error.to_string())?;
            Ok(row.flatten())
        })
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        stop_child(&mut self.child, "TERM");
    }
}
