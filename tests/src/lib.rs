//! End-to-end test harness: starts the real `coffer` binary on free loopback ports
//! with its own data directory, reads the addresses and tokens it prints, and
//! talks to it over real HTTP. Processes are ended by pid when the handle drops.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub mod bao;
pub mod cluster;
pub mod databases;
pub mod kms;
pub mod load;
pub mod store;

/// The `coffer` binary under test: `$COFFER_BIN`, or the one next to this test's
/// own build directory.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("COFFER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut directory = exe.parent().expect("exe directory").to_path_buf();
    if directory.ends_with("deps") {
        directory.pop();
    }
    let candidate = directory.join("coffer");
    assert!(
        candidate.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        candidate.display()
    );
    candidate
}

/// A running `coffer server`.
pub struct Server {
    child: Option<Child>,
    pub address: String,
    pub root_token: Option<String>,
    pub unseal_key: Option<String>,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    config_path: Option<PathBuf>,
    dev: bool,
    /// The dev server's `--dev-fuse` mount point.
    pub fuse: Option<PathBuf>,
    /// The dev server's `--dev-unix` socket.
    pub unix: Option<PathBuf>,
    /// Whether the dev server serves gRPC (`--dev-grpc-listen`), and where it
    /// does once started (`http://127.0.0.1:PORT`; also from a config's
    /// `listener "grpc"`).
    dev_grpc: bool,
    /// Pass `--dev-unsafe-allow-api-audit-creation` (dev servers, by default).
    api_audit: bool,
    /// `RUST_LOG` for the server (default `info`).
    log_filter: &'static str,
    /// More environment for the server.
    environment: Vec<(&'static str, String)>,
    pub grpc_address: Option<String>,
    workspace: tempfile::TempDir,
}

/// What the server printed before it started serving.
struct Banner {
    address: String,
    grpc_address: Option<String>,
    root_token: Option<String>,
    unseal_key: Option<String>,
}

fn read_banner(child: &mut Child, dev: bool, log_path: &Path) -> Banner {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        // Drain stdout until the server exits, whether or not anyone listens.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = sender.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut address, mut root_token, mut unseal_key) = (None, None, None);
    let mut grpc_address = None;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let line = match receiver.recv_timeout(remaining) {
            Ok(line) => line,
            Err(error) => {
                let _ = child.kill();
                let status = child.wait().ok();
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!(
                    "the server did not print its banner ({error:?}, exit {status:?}); log tail:\n{tail}"
                )
            }
        };
        let line = line.trim();
        if let Some(value) = line.strip_prefix("Api Address: ") {
            address.get_or_insert_with(|| value.to_owned());
        } else if let Some(value) = line.strip_prefix("gRPC Address: ") {
            grpc_address.get_or_insert_with(|| value.to_owned());
        } else if let Some(value) = line.strip_prefix("Root Token: ") {
            root_token = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("Unseal Key: ") {
            unseal_key = Some(value.to_owned());
        }
        let done = if dev {
            address.is_some() && (root_token.is_some() || line.contains("already initialized"))
        } else {
            address.is_some()
                && (line.contains("operator init") || line.contains("operator unseal"))
        };
        if done {
            break;
        }
    }
    Banner {
        address: address.expect("address"),
        grpc_address,
        root_token,
        unseal_key,
    }
}

impl Server {
    /// A dev server (initialized, unsealed, KV v2 at `secret/`) with root token `root`.
    pub fn dev() -> Server {
        Server::start(None, true, None)
    }

    /// A dev server logging at `filter` (`RUST_LOG`), to read what it says.
    pub fn dev_logging(filter: &'static str) -> Server {
        let workspace = tempfile::tempdir().expect("temp dir");
        let mut server = Server::prepare(None, true, workspace);
        server.log_filter = filter;
        server.spawn();
        server
    }

    /// A dev server with `environment` set for it.
    pub fn dev_with_environment(environment: &[(&'static str, &str)]) -> Server {
        let workspace = tempfile::tempdir().expect("temp dir");
        let mut server = Server::prepare(None, true, workspace);
        server.environment = environment
            .iter()
            .map(|(key, value)| (*key, (*value).to_owned()))
            .collect();
        server.spawn();
        server
    }

    /// A dev server as `coffer server --dev` starts without options: its API
    /// may not enable audit devices.
    pub fn dev_without_api_audit() -> Server {
        let workspace = tempfile::tempdir().expect("temp dir");
        let mut server = Server::prepare(None, true, workspace);
        server.api_audit = false;
        server.spawn();
        server
    }

    /// A dev server with its `/secrets` filesystem mounted at `<workspace>/secrets`
    /// (returns once it is mounted).
    pub fn dev_with_fuse() -> Server {
        let workspace = tempfile::tempdir().expect("temp dir");
        let mount_point = workspace.path().join("secrets");
        let mut server = Server::prepare(None, true, workspace);
        server.fuse = Some(mount_point.clone());
        server.spawn();
        wait_mounted(&mount_point);
        server
    }

    /// A dev server with its `/secrets` filesystem at `<workspace>/secrets` and
    /// its API also on a Unix socket at `<workspace>/coffer.sock`.
    pub fn dev_with_fuse_and_unix() -> Server {
        let workspace = tempfile::tempdir().expect("temp dir");
        let mount_point = workspace.path().join("secrets");
        let mut server = Server::prepare(None, true, workspace);
        server.fuse = Some(mount_point.clone());
        server.unix = Some(server.workspace().join("coffer.sock"));
        server.spawn();
        wait_mounted(&mount_point);
        server
    }

    /// A dev server that also serves its API on a Unix socket at
    /// `<workspace>/coffer.sock`.
    pub fn dev_with_unix() -> Server {
        let workspace = tempfile::tempdir().expect("temp dir");
        let mut server = Server::prepare(None, true, workspace);
        server.unix = Some(server.workspace().join("coffer.sock"));
        server.spawn();
        server
    }

    /// A dev server with every door: HTTP on TCP, gRPC on TCP
    /// (`grpc_address`), and both on a Unix socket at `<workspace>/coffer.sock`.
    pub fn dev_with_all_doors() -> Server {
        let workspace = tempfile::tempdir().expect("temp dir");
        let mut server = Server::prepare(None, true, workspace);
        server.unix = Some(server.workspace().join("coffer.sock"));
        server.dev_grpc = true;
        server.spawn();
        server
    }

    /// A dev server whose data directory is created under `parent` (the benchmark
    /// puts it on a real disk, never a tmpfs).
    pub fn dev_in(parent: &Path) -> Server {
        Server::start(None, true, Some(parent))
    }

    /// A server from an HCL configuration; `{data_dir}` in the text is replaced by
    /// a fresh directory, and listeners should use port 0.
    pub fn with_config(config: &str) -> Server {
        Server::start(Some(config), false, None)
    }

    /// Like [`Server::with_config`], with the data directory under `parent`.
    pub fn with_config_in(config: &str, parent: Option<&Path>) -> Server {
        Server::start(Some(config), false, parent)
    }

    fn start(config: Option<&str>, dev: bool, parent: Option<&Path>) -> Server {
        let workspace = match parent {
            Some(parent) => tempfile::tempdir_in(parent),
            None => tempfile::tempdir(),
        }
        .expect("temp dir");
        let mut server = Server::prepare(config, dev, workspace);
        server.spawn();
        server
    }

    fn prepare(config: Option<&str>, dev: bool, workspace: tempfile::TempDir) -> Server {
        let data_dir = workspace.path().join("data");
        let config_path = config.map(|text| {
            let path = workspace.path().join("coffer.hcl");
            std::fs::write(
                &path,
                text.replace("{data_dir}", &data_dir.display().to_string()),
            )
            .expect("write config");
            path
        });
        Server {
            child: None,
            address: String::new(),
            root_token: None,
            unseal_key: None,
            log_path: workspace.path().join("server.log"),
            data_dir,
            config_path,
            dev,
            fuse: None,
            unix: None,
            dev_grpc: false,
            api_audit: dev,
            log_filter: "info",
            environment: Vec::new(),
            grpc_address: None,
            workspace,
        }
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let mut command = Command::new(binary());
        command.arg("server");
        if self.dev {
            command.args([
                "--dev",
                "--dev-root-token",
                "root",
                "--dev-listen",
                "127.0.0.1:0",
            ]);
            command.arg("--data-dir").arg(&self.data_dir);
            // Tests enable audit devices through the API as operators of a
            // configuration with `unsafe_allow_api_audit_creation` would.
            if self.api_audit {
                command.arg("--dev-unsafe-allow-api-audit-creation");
            }
            if let Some(mount_point) = &self.fuse {
                command.arg("--dev-fuse").arg(mount_point);
            }
            if let Some(socket) = &self.unix {
                command.arg("--dev-unix").arg(socket);
            }
            if self.dev_grpc {
                command.args(["--dev-grpc-listen", "127.0.0.1:0"]);
            }
        } else if let Some(config) = &self.config_path {
            command.arg("--config").arg(config);
        }
        command
            .env("RUST_LOG", self.log_filter)
            .envs(self.environment.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = command.spawn().expect("start coffer");
        let banner = read_banner(&mut child, self.dev, &self.log_path);
        self.address = banner.address;
        self.grpc_address = banner.grpc_address;
        if banner.root_token.is_some() {
            self.root_token = banner.root_token;
        }
        if banner.unseal_key.is_some() {
            self.unseal_key = banner.unseal_key;
        }
        self.child = Some(child);
    }

    /// Sets the extra environment for the next [`Server::restart`].
    pub fn set_environment(&mut self, environment: &[(&'static str, &str)]) {
        self.environment = environment
            .iter()
            .map(|(key, value)| (*key, (*value).to_owned()))
            .collect();
    }

    /// Replaces the configuration file (`{data_dir}` replaced as at start),
    /// for the next [`Server::restart`].
    pub fn set_config(&mut self, config: &str) {
        let path = self
            .config_path
            .as_ref()
            .expect("a server with a config file");
        std::fs::write(
            path,
            config.replace("{data_dir}", &self.data_dir.display().to_string()),
        )
        .expect("write config");
    }

    /// Drops the extra environment, for the next [`Server::restart`].
    pub fn clear_environment(&mut self) {
        self.environment.clear();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        send_signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the server did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same data directory (a new port).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn workspace(&self) -> &Path {
        self.workspace.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/v1/{}", self.address, path.trim_start_matches('/'))
    }

    /// A client that sends `token` (if any) as `X-Vault-Token`.
    pub fn client(&self, token: Option<&str>) -> Api {
        self.client_with_timeout(token, Duration::from_secs(60))
    }

    /// A client whose calls give up after `timeout`; it does not follow redirects.
    pub fn client_with_timeout(&self, token: Option<&str>, timeout: Duration) -> Api {
        Api {
            http: reqwest::blocking::Client::builder()
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: self.address.clone(),
            token: token.map(str::to_owned),
        }
    }

    /// SIGSTOP: the process stays, its sockets stay open, nothing answers.
    pub fn pause(&self) {
        assert!(send_signal(self.pid(), "STOP"), "SIGSTOP");
    }

    /// SIGCONT after [`Server::pause`].
    pub fn resume(&self) {
        assert!(send_signal(self.pid(), "CONT"), "SIGCONT");
    }

    pub fn root(&self) -> Api {
        self.client(self.root_token.as_deref())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        // fusermount3 takes the mount down after the kill; wait for it (and
        // detach it if a test left it stale) before the workspace is removed.
        if let Some(mount_point) = &self.fuse {
            let deadline = Instant::now() + Duration::from_secs(3);
            while !mounts_at(mount_point).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !mounts_at(mount_point).is_empty() {
                let _ = Command::new("umount").arg("-l").arg(mount_point).status();
            }
        }
    }
}

/// The filesystem types mounted at `path` (from `/proc/self/mountinfo`).
pub fn mounts_at(path: &Path) -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let separator = fields.iter().position(|field| *field == "-")?;
            (Path::new(fields.get(4)?) == path)
                .then(|| fields.get(separator + 1).map(|kind| (*kind).to_owned()))?
        })
        .collect()
}

/// Waits until coffer's filesystem is mounted at `path`.
pub fn wait_mounted(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !mounts_at(path).iter().any(|kind| kind == "fuse.coffer") {
        assert!(
            Instant::now() < deadline,
            "{} was not mounted within 30 s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `program args` as `uid`:`gid` with no supplementary groups (or with
/// `groups`), through `setpriv`; returns (exit code, stdout, stderr).
pub fn run_as(
    uid: u32,
    gid: u32,
    groups: &[u32],
    program: &str,
    args: &[&str],
) -> (i32, String, String) {
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"));
    if groups.is_empty() {
        command.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        command.arg(format!("--groups={}", list.join(",")));
    }
    let output = command
        .arg("--")
        .arg(program)
        .args(args)
        .output()
        .expect("run setpriv");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Sends `signal` (a name such as `TERM`) to `pid`; false if it is already gone.
pub fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// A small JSON client for the `/v1` API.
#[derive(Clone)]
pub struct Api {
    http: reqwest::blocking::Client,
    base: String,
    token: Option<String>,
}

/// Status and parsed body of one call.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn errors(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    #[track_caller]
    pub fn expect(self, status: u16) -> Answer {
        assert_eq!(self.status, status, "unexpected answer: {:?}", self.body);
        self
    }
}

impl Api {
    /// A client of the Vault-compatible server at `base` (`http://host:port`),
    /// coffer or a peer a benchmark compares it with.
    pub fn at(base: &str, token: Option<&str>) -> Api {
        Api {
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: base.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
        }
    }

    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.try_call(method, path, body).expect("request")
    }

    /// Like [`Api::call`], but a transport failure is an error, not a panic.
    pub fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, reqwest::Error> {
        let url = format!("{}/v1/{}", self.base, path.trim_start_matches('/'));
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send()?;
        let status = response.status().as_u16();
        let text = response.text()?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Answer { status, body })
    }

    pub fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None)
    }

    pub fn list(&self, path: &str) -> Answer {
        self.call("LIST", path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> Answer {
        self.call("POST", path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Answer {
        self.call("DELETE", path, None)
    }

    /// Writes a KV v2 secret and returns its version.
    pub fn kv_put(&self, path: &str, data: Value) -> u64 {
        let answer = self
            .post(&format!("secret/data/{path}"), json!({"data": data}))
            .expect(200);
        answer.body["data"]["version"].as_u64().expect("version")
    }

    /// Creates a policy and a token holding it (and `default`).
    pub fn token_with_policy(&self, name: &str, policy: &str) -> String {
        self.call(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(json!({"policy": policy})),
        )
        .expect(204);
        let answer = self
            .post("auth/token/create", json!({"policies": [name]}))
            .expect(200);
        answer.body["auth"]["client_token"]
            .as_str()
            .expect("client_token")
            .to_owned()
    }
}

/// Runs `curl` with `args` and returns (status, body).
pub fn curl(args: &[&str]) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// Runs `openssl` with `args` and asserts it succeeded (test certificates).
pub fn openssl(args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl {args:?}");
}

/// Every file under `root`, recursively.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Whether `needle` occurs in any file under `root`; returns the first file.
pub fn find_bytes(root: &Path, needle: &[u8]) -> Option<PathBuf> {
    files_under(root).into_iter().find(|file| {
        std::fs::read(file)
            .map(|content| content.windows(needle.len()).any(|window| window == needle))
            .unwrap_or(false)
    })
}

/// Runs the `coffer` CLI against `server` with `token`; returns (code, stdout, stderr).
pub fn cli(server: &Server, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .env("COFFER_ADDR", &server.address);
    match token {
        Some(token) => command.env("COFFER_TOKEN", token),
        None => command.env_remove("COFFER_TOKEN"),
    };
    let output = command.output().expect("run coffer");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
