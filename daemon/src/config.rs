//! The server's configuration file: HCL shaped like Vault's. Each field's doc comment
//! is its reference. An unknown key or a bad value is an error that names the key
//! and its line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::duration;
use crate::hcl::{self, Kind};

/// Vault's default for `default_lease_ttl` and `max_lease_ttl`: 768 hours.
pub const DEFAULT_LEASE_TTL: u64 = 768 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Invalid { path: String, source: hcl::Error },
}

/// Everything `coffer server --config FILE` reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `storage "raft" { ... }`: where and as which node this server stores data.
    pub storage: Storage,
    /// `listener "tcp" { ... }` blocks: the client API's TCP addresses.
    pub listeners: Vec<Listener>,
    /// `listener "unix" { ... }` blocks: the client API on Unix sockets, where
    /// the kernel names each caller. A configuration needs at least one listener
    /// of some type.
    pub unix_listeners: Vec<UnixListener>,
    /// `listener "grpc" { address, tls_cert_file, tls_key_file, tls_disable }`
    /// blocks: the gRPC API (`coffer.v1`) over HTTP/2, TLS on by default.
    pub grpc_listeners: Vec<Listener>,
    /// `api_addr`: the address other nodes and clients are told to use for this
    /// node's API.
    pub api_addr: Option<String>,
    /// `cluster_addr`: the address of this node's cluster (Raft) listener.
    pub cluster_addr: Option<String>,
    /// `cluster_name`: a name shown by `sys/health`; generated at init if unset.
    pub cluster_name: Option<String>,
    /// `default_lease_ttl`: TTL of tokens and leases that ask for none (default 768h).
    pub default_lease_ttl: u64,
    /// `max_lease_ttl`: the longest any token or lease may live (default 768h).
    pub max_lease_ttl: u64,
    /// `log_level`: trace, debug, info, warn or error (default info).
    pub log_level: Option<String>,
    /// `disable_mlock` (default false): do not lock the process's memory. By
    /// default the server locks it (`mlockall`, see `memory.rs`) so keys never
    /// reach swap, and refuses to start when it cannot (it needs root or
    /// CAP_IPC_LOCK, or an unlimited `RLIMIT_MEMLOCK`).
    pub disable_mlock: bool,
    /// `unsafe_allow_api_audit_creation` (default false): let `sys/audit`
    /// enable devices. Off, only `audit` blocks here make devices, as in OpenBao
    /// since 2.4: a file device opens files as this process's user, so a token
    /// that may enable one could otherwise write JSON into files of its choosing.
    pub unsafe_allow_api_audit_creation: bool,
    /// `telemetry { ... }`.
    pub telemetry: Telemetry,
    /// `audit "<type>" "<path>" { <options> }` blocks: audit devices that run
    /// whenever the server is unsealed and that the API cannot disable. Options are
    /// the device's own (`file_path`, `mode`, `address`, `socket_type`, `facility`,
    /// `tag`, `write_timeout`, `hmac_accessor`, `log_raw`) plus `description`.
    pub audit: Vec<crate::audit::DeviceConfig>,
    /// `fuse { ... }`: serve secrets as files; absent: no filesystem.
    pub fuse: Option<Fuse>,
}

/// `fuse { mount_point = "/secrets" }`: the `/secrets` filesystem. It is mounted
/// once the server is unsealed and unmounted at shutdown; while the server is
/// sealed again, opens fail with `EAGAIN`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fuse {
    /// `mount_point`: an empty directory (created if missing). A coffer mount
    /// left there by a crash is detached first.
    pub mount_point: PathBuf,
    /// `threads`: threads serving FUSE requests (default 8). An open that
    /// creates a database user holds one for as long as that takes.
    pub threads: usize,
    /// `revoke_unused_leases`: revoke a dynamic credential's lease once nobody
    /// has opened its files for 2/3 of its TTL and none is open (default false:
    /// it is left to expire).
    pub revoke_unused_leases: bool,
}

impl Fuse {
    pub fn at(mount_point: PathBuf) -> Self {
        Fuse {
            mount_point,
            threads: 8,
            revoke_unused_leases: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Storage {
    /// `path`: the data directory (created with mode 0700 if missing).
    pub path: PathBuf,
    /// `node_id`: this node's name in the cluster (default: the host name).
    pub node_id: String,
    /// `retry_join { ... }` blocks: leaders to join through when this node has no
    /// cluster yet (tried in turn until one answers).
    pub retry_join: Vec<RetryJoin>,
}

/// One `retry_join` block.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryJoin {
    /// `leader_api_addr`: the client API address of a member, `http(s)://host:port`.
    pub leader_api_addr: String,
    /// `leader_ca_cert_file`: a PEM CA to trust for that API's TLS.
    pub leader_ca_cert_file: Option<PathBuf>,
}

/// `listener "unix" { address = "/run/coffer/coffer.sock" }`: the whole HTTP
/// API on a Unix socket. A request without a token is authenticated by the
/// `auth/local` roles from the caller's uid, gid and pid (SO_PEERCRED); one with
/// a token uses the token.
#[derive(Debug, Clone, PartialEq)]
pub struct UnixListener {
    /// `address`: the socket's path (default `/run/coffer/coffer.sock`); its
    /// directory is created (mode 0755) if missing.
    pub address: PathBuf,
    /// `mode` (or Vault's `socket_mode`): octal permission bits, default `"0666"`:
    /// any local user may connect, and gets only what a role or a token grants.
    pub mode: u32,
    /// `socket_user`: owner of the socket file (a name or a uid).
    pub socket_user: Option<u32>,
    /// `socket_group`: group of the socket file (a name or a gid).
    pub socket_group: Option<u32>,
    /// As for `listener "tcp"`.
    pub http_read_header_timeout: u64,
    pub http_read_timeout: u64,
    pub http_idle_timeout: u64,
}

impl UnixListener {
    pub fn at(address: PathBuf) -> Self {
        UnixListener {
            address,
            mode: 0o666,
            socket_user: None,
            socket_group: None,
            http_read_header_timeout: 10,
            http_read_timeout: 30,
            http_idle_timeout: 300,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// `address`: host:port to listen on (default `127.0.0.1:8200`).
    pub address: SocketAddr,
    /// `tls_disable`: serve plain HTTP. TLS is on by default, as in Vault.
    pub tls_disable: bool,
    /// `tls_cert_file`: PEM certificate chain, required unless `tls_disable`.
    pub tls_cert_file: Option<PathBuf>,
    /// `tls_key_file`: PEM private key, required unless `tls_disable`.
    pub tls_key_file: Option<PathBuf>,
    /// `http_read_header_timeout`: seconds a client has to send request headers;
    /// also how long an idle keep-alive connection stays open (default 10).
    pub http_read_header_timeout: u64,
    /// `http_read_timeout`: seconds a client has to send a request body (default 30).
    pub http_read_timeout: u64,
    /// `http_idle_timeout`: seconds an HTTP/2 connection (gRPC) with no request
    /// in flight stays open (default 300, as Vault's 5m).
    pub http_idle_timeout: u64,
    /// `cluster_address`: where the cluster (Raft) listener binds (default: the
    /// host:port of `cluster_addr`, or this listener's port + 1).
    pub cluster_address: Option<SocketAddr>,
}

impl Listener {
    /// A plain-HTTP listener with default timeouts (the dev server's).
    pub fn plain(address: SocketAddr) -> Self {
        Listener {
            address,
            tls_disable: true,
            tls_cert_file: None,
            tls_key_file: None,
            http_read_header_timeout: 10,
            http_read_timeout: 30,
            http_idle_timeout: 300,
            cluster_address: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Telemetry {
    /// `unauthenticated_metrics_access`: serve `sys/metrics` without a token.
    pub unauthenticated_metrics_access: bool,
    /// `disable_hostname`: accepted for Vault compatibility (metric names never
    /// carry the host name in coffer).
    pub disable_hostname: bool,
    /// `prometheus_retention_time`: accepted for Vault compatibility (coffer's
    /// metrics are always current).
    pub prometheus_retention_time: Option<u64>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text).map_err(|source| Error::Invalid {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn parse(text: &str) -> Result<Config, hcl::Error> {
        let body = hcl::parse(text)?;
        let mut storage = None;
        let mut listeners = Vec::new();
        let mut config = Config {
            storage: Storage {
                path: PathBuf::new(),
                node_id: String::new(),
                retry_join: Vec::new(),
            },
            listeners: Vec::new(),
            unix_listeners: Vec::new(),
            grpc_listeners: Vec::new(),
            api_addr: None,
            cluster_addr: None,
            cluster_name: None,
            default_lease_ttl: DEFAULT_LEASE_TTL,
            max_lease_ttl: DEFAULT_LEASE_TTL,
            log_level: None,
            disable_mlock: false,
            unsafe_allow_api_audit_creation: false,
            telemetry: Telemetry::default(),
            audit: Vec::new(),
            fuse: None,
        };
        for attribute in &body.attributes {
            let value = &attribute.value;
            match attribute.key.as_str() {
                "api_addr" => config.api_addr = Some(string(value, "api_addr")?),
                "cluster_addr" => config.cluster_addr = Some(string(value, "cluster_addr")?),
                "cluster_name" => config.cluster_name = Some(string(value, "cluster_name")?),
                "default_lease_ttl" => {
                    config.default_lease_ttl = duration_value(value, "default_lease_ttl")?
                }
                "max_lease_ttl" => config.max_lease_ttl = duration_value(value, "max_lease_ttl")?,
                "log_level" => {
                    let level = string(value, "log_level")?;
                    if !["trace", "debug", "info", "warn", "error"].contains(&level.as_str()) {
                        return Err(hcl::Error::new(
                            value.line,
                            format!(
                                "log_level must be trace, debug, info, warn or error, not {level:?}"
                            ),
                        ));
                    }
                    config.log_level = Some(level);
                }
                "disable_mlock" => config.disable_mlock = boolean(value, "disable_mlock")?,
                "unsafe_allow_api_audit_creation" => {
                    config.unsafe_allow_api_audit_creation =
                        boolean(value, "unsafe_allow_api_audit_creation")?;
                }
                "ui" => {
                    if boolean(value, "ui")? {
                        return Err(hcl::Error::new(
                            attribute.line,
                            "ui = true: coffer has no web UI; remove the key",
                        ));
                    }
                }
                other => return Err(unknown(attribute.line, other, "the top level")),
            }
        }
        for block in &body.blocks {
            match block.ident.as_str() {
                "storage" => {
                    if storage.is_some() {
                        return Err(hcl::Error::new(
                            block.line,
                            "only one storage block is allowed",
                        ));
                    }
                    storage = Some(parse_storage(block)?);
                }
                "listener" if block.labels.first().is_some_and(|kind| kind == "unix") => {
                    let unix = parse_unix_listener(block)?;
                    if config
                        .unix_listeners
                        .iter()
                        .any(|other| other.address == unix.address)
                    {
                        return Err(hcl::Error::new(
                            block.line,
                            format!("two unix listeners use {}", unix.address.display()),
                        ));
                    }
                    config.unix_listeners.push(unix);
                }
                "listener" if block.labels.first().is_some_and(|kind| kind == "grpc") => {
                    config.grpc_listeners.push(parse_listener(block)?)
                }
                "listener" => listeners.push(parse_listener(block)?),
                "telemetry" => config.telemetry = parse_telemetry(block)?,
                "fuse" => {
                    if config.fuse.is_some() {
                        return Err(hcl::Error::new(
                            block.line,
                            "only one fuse block is allowed",
                        ));
                    }
                    config.fuse = Some(parse_fuse(block)?);
                }
                "audit" => {
                    let device = parse_audit(block)?;
                    if config.audit.iter().any(|other| other.path == device.path) {
                        return Err(hcl::Error::new(
                            block.line,
                            format!("two audit blocks use the path {:?}", device.path),
                        ));
                    }
                    config.audit.push(device);
                }
                other => {
                    return Err(hcl::Error::new(
                        block.line,
                        format!("unknown block {other:?}"),
                    ));
                }
            }
        }
        config.storage = storage.ok_or_else(|| {
            hcl::Error::new(1, "a storage \"raft\" { path = \"...\" } block is required")
        })?;
        if listeners.is_empty()
            && config.unix_listeners.is_empty()
            && config.grpc_listeners.is_empty()
        {
            return Err(hcl::Error::new(
                1,
                "at least one listener block (\"tcp\", \"unix\" or \"grpc\") is required",
            ));
        }
        config.listeners = listeners;
        if config.default_lease_ttl > config.max_lease_ttl {
            return Err(hcl::Error::new(
                1,
                "default_lease_ttl must not be greater than max_lease_ttl",
            ));
        }
        Ok(config)
    }
}

fn parse_storage(block: &hcl::Block) -> Result<Storage, hcl::Error> {
    let kind = single_label(block, "storage")?;
    if kind != "raft" {
        return Err(hcl::Error::new(
            block.line,
            format!("unsupported storage type {kind:?}: coffer stores through \"raft\""),
        ));
    }
    let mut path = None;
    let mut node_id = None;
    for attribute in &block.body.attributes {
        match attribute.key.as_str() {
            "path" => path = Some(PathBuf::from(string(&attribute.value, "path")?)),
            "node_id" => node_id = Some(string(&attribute.value, "node_id")?),
            other => return Err(unknown(attribute.line, other, "storage \"raft\"")),
        }
    }
    let mut retry_join = Vec::new();
    for nested in &block.body.blocks {
        if nested.ident != "retry_join" || !nested.labels.is_empty() {
            return Err(hcl::Error::new(
                nested.line,
                format!("unknown block {:?} in storage \"raft\"", nested.ident),
            ));
        }
        let mut leader_api_addr = None;
        let mut leader_ca_cert_file = None;
        for attribute in &nested.body.attributes {
            match attribute.key.as_str() {
                "leader_api_addr" => {
                    let address = string(&attribute.value, "leader_api_addr")?;
                    if !address.starts_with("http://") && !address.starts_with("https://") {
                        return Err(hcl::Error::new(
                            attribute.line,
                            "leader_api_addr must start with http:// or https://",
                        ));
                    }
                    leader_api_addr = Some(address);
                }
                "leader_ca_cert_file" => {
                    leader_ca_cert_file = Some(PathBuf::from(string(
                        &attribute.value,
                        "leader_ca_cert_file",
                    )?))
                }
                other => return Err(unknown(attribute.line, other, "retry_join")),
            }
        }
        retry_join.push(RetryJoin {
            leader_api_addr: leader_api_addr.ok_or_else(|| {
                hcl::Error::new(nested.line, "retry_join needs a leader_api_addr")
            })?,
            leader_ca_cert_file,
        });
    }
    let path = path.ok_or_else(|| hcl::Error::new(block.line, "storage \"raft\" needs a path"))?;
    let node_id = match node_id {
        Some(node_id) if !node_id.is_empty() => node_id,
        Some(_) => return Err(hcl::Error::new(block.line, "node_id must not be empty")),
        None => default_node_id(),
    };
    Ok(Storage {
        path,
        node_id,
        retry_join,
    })
}

fn default_node_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "node1".to_owned())
}

fn parse_listener(block: &hcl::Block) -> Result<Listener, hcl::Error> {
    let kind = single_label(block, "listener")?;
    if kind != "tcp" && kind != "grpc" {
        return Err(hcl::Error::new(
            block.line,
            format!("unsupported listener type {kind:?}: use \"tcp\", \"unix\" or \"grpc\""),
        ));
    }
    let place = format!("listener \"{kind}\"");
    let port = if kind == "grpc" { 8300 } else { 8200 };
    let mut listener = Listener {
        tls_disable: false,
        ..Listener::plain(SocketAddr::from(([127, 0, 0, 1], port)))
    };
    for attribute in &block.body.attributes {
        let value = &attribute.value;
        match attribute.key.as_str() {
            "address" => {
                let text = string(value, "address")?;
                listener.address = text.parse().map_err(|_| {
                    hcl::Error::new(
                        value.line,
                        format!("address {text:?} is not a host:port such as 127.0.0.1:8200"),
                    )
                })?;
            }
            "tls_disable" => listener.tls_disable = boolean(value, "tls_disable")?,
            "tls_cert_file" => {
                listener.tls_cert_file = Some(PathBuf::from(string(value, "tls_cert_file")?))
            }
            "tls_key_file" => {
                listener.tls_key_file = Some(PathBuf::from(string(value, "tls_key_file")?))
            }
            "http_read_header_timeout" if kind == "tcp" => {
                listener.http_read_header_timeout =
                    positive_duration(value, "http_read_header_timeout")?
            }
            "http_read_timeout" if kind == "tcp" => {
                listener.http_read_timeout = positive_duration(value, "http_read_timeout")?
            }
            "http_idle_timeout" => {
                listener.http_idle_timeout = positive_duration(value, "http_idle_timeout")?
            }
            "cluster_address" if kind == "tcp" => {
                let text = string(value, "cluster_address")?;
                listener.cluster_address = Some(text.parse().map_err(|_| {
                    hcl::Error::new(
                        value.line,
                        format!(
                            "cluster_address {text:?} is not a host:port such as 127.0.0.1:8201"
                        ),
                    )
                })?);
            }
            other => return Err(unknown(attribute.line, other, &place)),
        }
    }
    if !listener.tls_disable
        && (listener.tls_cert_file.is_none() || listener.tls_key_file.is_none())
    {
        return Err(hcl::Error::new(
            block.line,
            format!(
                "{place}: tls_cert_file and tls_key_file are required unless tls_disable = true"
            ),
        ));
    }
    Ok(listener)
}

fn parse_unix_listener(block: &hcl::Block) -> Result<UnixListener, hcl::Error> {
    let mut listener = UnixListener::at(PathBuf::from("/run/coffer/coffer.sock"));
    for attribute in &block.body.attributes {
        let value = &attribute.value;
        match attribute.key.as_str() {
            "address" => {
                listener.address = PathBuf::from(string(value, "address")?);
                if !listener.address.is_absolute() {
                    return Err(hcl::Error::new(
                        value.line,
                        "listener \"unix\": address must be an absolute path",
                    ));
                }
            }
            "mode" | "socket_mode" => listener.mode = octal_mode(value, &attribute.key)?,
            "socket_user" => listener.socket_user = Some(account(value, "socket_user", false)?),
            "socket_group" => listener.socket_group = Some(account(value, "socket_group", true)?),
            "http_read_header_timeout" => {
                listener.http_read_header_timeout =
                    positive_duration(value, "http_read_header_timeout")?
            }
            "http_read_timeout" => {
                listener.http_read_timeout = positive_duration(value, "http_read_timeout")?
            }
            "http_idle_timeout" => {
                listener.http_idle_timeout = positive_duration(value, "http_idle_timeout")?
            }
            other => return Err(unknown(attribute.line, other, "listener \"unix\"")),
        }
    }
    Ok(listener)
}

/// Permission bits written in octal: `"0660"`, `"660"`, or the number `660`.
fn octal_mode(value: &hcl::Value, key: &str) -> Result<u32, hcl::Error> {
    let text = match &value.kind {
        Kind::String(text) => text.clone(),
        Kind::Number(number) => number.to_string(),
        _ => String::new(),
    };
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| {
            hcl::Error::new(
                value.line,
                format!("{key} must be octal permission bits such as \"0660\""),
            )
        })
}

/// A user or group given by name or number, resolved through the system's
/// account database now, so a typo fails at startup with its line.
fn account(value: &hcl::Value, key: &str, group: bool) -> Result<u32, hcl::Error> {
    let text = match &value.kind {
        Kind::String(text) => text.clone(),
        Kind::Number(number) => number.to_string(),
        _ => String::new(),
    };
    if let Ok(id) = text.parse::<u32>() {
        return Ok(id);
    }
    let found = if group {
        nix::unistd::Group::from_name(&text)
            .ok()
            .flatten()
            .map(|group| group.gid.as_raw())
    } else {
        nix::unistd::User::from_name(&text)
            .ok()
            .flatten()
            .map(|user| user.uid.as_raw())
    };
    found.ok_or_else(|| {
        let kind = if group { "group" } else { "user" };
        hcl::Error::new(value.line, format!("{key}: no {kind} named {text:?}"))
    })
}

fn parse_telemetry(block: &hcl::Block) -> Result<Telemetry, hcl::Error> {
    if !block.labels.is_empty() {
        return Err(hcl::Error::new(block.line, "telemetry takes no label"));
    }
    let mut telemetry = Telemetry::default();
    for attribute in &block.body.attributes {
        let value = &attribute.value;
        match attribute.key.as_str() {
            "unauthenticated_metrics_access" => {
                telemetry.unauthenticated_metrics_access =
                    boolean(value, "unauthenticated_metrics_access")?
            }
            "disable_hostname" => telemetry.disable_hostname = boolean(value, "disable_hostname")?,
            "prometheus_retention_time" => {
                telemetry.prometheus_retention_time =
                    Some(duration_value(value, "prometheus_retention_time")?)
            }
            other => return Err(unknown(attribute.line, other, "telemetry")),
        }
    }
    Ok(telemetry)
}

fn parse_fuse(block: &hcl::Block) -> Result<Fuse, hcl::Error> {
    if !block.labels.is_empty() {
        return Err(hcl::Error::new(block.line, "fuse takes no label"));
    }
    let mut mount_point = None;
    let mut fuse = Fuse::at(PathBuf::new());
    for attribute in &block.body.attributes {
        let value = &attribute.value;
        match attribute.key.as_str() {
            "mount_point" => mount_point = Some(PathBuf::from(string(value, "mount_point")?)),
            "threads" => {
                fuse.threads = value
                    .to_json()
                    .as_u64()
                    .filter(|threads| (1..=256).contains(threads))
                    .and_then(|threads| usize::try_from(threads).ok())
                    .ok_or_else(|| {
                        hcl::Error::new(value.line, "threads must be a number from 1 to 256")
                    })?;
            }
            "revoke_unused_leases" => {
                fuse.revoke_unused_leases = boolean(value, "revoke_unused_leases")?
            }
            other => return Err(unknown(attribute.line, other, "fuse")),
        }
    }
    fuse.mount_point = mount_point
        .filter(|path| path.is_absolute())
        .ok_or_else(|| hcl::Error::new(block.line, "fuse needs an absolute mount_point"))?;
    Ok(fuse)
}

fn parse_audit(block: &hcl::Block) -> Result<crate::audit::DeviceConfig, hcl::Error> {
    use crate::audit;
    let [kind, path] = block.labels.as_slice() else {
        return Err(hcl::Error::new(
            block.line,
            "audit takes a type and a path, as in audit \"file\" \"file\" { file_path = \"...\" }",
        ));
    };
    let invalid = |error: audit::Error| hcl::Error::new(block.line, error.to_string());
    let kind = audit::Kind::parse(kind).map_err(invalid)?;
    let path = audit::normalize_path(path).map_err(invalid)?;
    let mut description = String::new();
    let mut local = false;
    let mut options = std::collections::BTreeMap::new();
    for attribute in &block.body.attributes {
        let value = &attribute.value;
        match attribute.key.as_str() {
            "description" => description = string(value, "description")?,
            "local" => local = boolean(value, "local")?,
            key => {
                let text = match &value.kind {
                    Kind::String(text) => text.clone(),
                    Kind::Bool(flag) => flag.to_string(),
                    Kind::Number(number) => number.to_string(),
                    _ => {
                        return Err(hcl::Error::new(
                            value.line,
                            format!("{key} must be a string, number or bool"),
                        ));
                    }
                };
                options.insert(key.to_owned(), text);
            }
        }
    }
    if let Some(nested) = block.body.blocks.first() {
        return Err(hcl::Error::new(
            nested.line,
            format!("unknown block {:?} in audit", nested.ident),
        ));
    }
    let device = audit::DeviceConfig {
        path,
        kind,
        description,
        options,
        local,
    };
    device.options().map_err(invalid)?;
    Ok(device)
}

fn single_label<'a>(block: &'a hcl::Block, ident: &str) -> Result<&'a str, hcl::Error> {
    match block.labels.as_slice() {
        [label] => Ok(label),
        _ => Err(hcl::Error::new(
            block.line,
            format!("{ident} takes exactly one type label, as in {ident} \"raft\""),
        )),
    }
}

fn unknown(line: usize, key: &str, place: &str) -> hcl::Error {
    hcl::Error::new(line, format!("unknown key {key:?} in {place}"))
}

fn string(value: &hcl::Value, key: &str) -> Result<String, hcl::Error> {
    match &value.kind {
        Kind::String(text) => Ok(text.clone()),
        _ => Err(hcl::Error::new(
            value.line,
            format!("{key} must be a string, not {}", value.type_name()),
        )),
    }
}

/// Vault's HCL accepts `true`, `"true"`, `1` and `"1"` for booleans.
fn boolean(value: &hcl::Value, key: &str) -> Result<bool, hcl::Error> {
    let parsed = match &value.kind {
        Kind::Bool(flag) => Some(*flag),
        Kind::String(text) => match text.as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        Kind::Number(number) => match number.as_u64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        _ => None,
    };
    parsed.ok_or_else(|| hcl::Error::new(value.line, format!("{key} must be true or false")))
}

fn positive_duration(value: &hcl::Value, key: &str) -> Result<u64, hcl::Error> {
    match duration_value(value, key)? {
        0 => Err(hcl::Error::new(
            value.line,
            format!("{key} must be at least 1s"),
        )),
        seconds => Ok(seconds),
    }
}

fn duration_value(value: &hcl::Value, key: &str) -> Result<u64, hcl::Error> {
    duration::from_json(&value.to_json())
        .map_err(|error| hcl::Error::new(value.line, format!("{key}: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VAULT_SHAPED: &str = r#"
storage "raft" {
  path    = "/var/lib/coffer"
  node_id = "n1"
}
listener "tcp" {
  address     = "127.0.0.1:8200"
  tls_disable = true
}
api_addr     = "http://127.0.0.1:8200"
cluster_addr = "http://127.0.0.1:8201"
"#;

    #[test]
    fn the_issue_example_parses_unchanged() {
        let config = Config::parse(VAULT_SHAPED).unwrap();
        assert_eq!(config.storage.path, PathBuf::from("/var/lib/coffer"));
        assert_eq!(config.storage.node_id, "n1");
        assert_eq!(config.listeners.len(), 1);
        assert_eq!(
            config.listeners[0].address,
            "127.0.0.1:8200".parse().unwrap()
        );
        assert!(config.listeners[0].tls_disable);
        assert_eq!(config.api_addr.as_deref(), Some("http://127.0.0.1:8200"));
        assert_eq!(config.max_lease_ttl, DEFAULT_LEASE_TTL);
        assert!(config.storage.retry_join.is_empty());
    }

    #[test]
    fn retry_join_blocks_and_cluster_address() {
        let config = Config::parse(&VAULT_SHAPED.replace(
            "node_id = \"n1\"",
            "node_id = \"n1\"\n  retry_join {\n    leader_api_addr = \"http://127.0.0.1:8200\"\n  }\n  retry_join {\n    leader_api_addr = \"https://127.0.0.2:8200\"\n    leader_ca_cert_file = \"/ca.pem\"\n  }",
        ).replace("tls_disable = true", "tls_disable = true\n  cluster_address = \"127.0.0.1:8201\""))
        .unwrap();
        assert_eq!(config.storage.retry_join.len(), 2);
        assert_eq!(
            config.storage.retry_join[1].leader_ca_cert_file,
            Some(PathBuf::from("/ca.pem"))
        );
        assert_eq!(
            config.listeners[0].cluster_address,
            Some("127.0.0.1:8201".parse().unwrap())
        );
    }

    #[test]
    fn optional_settings() {
        let config = Config::parse(&format!(
            "{VAULT_SHAPED}\ndefault_lease_ttl = \"1h\"\nmax_lease_ttl = \"24h\"\ndisable_mlock = true\ntelemetry {{\n unauthenticated_metrics_access = true\n}}\nlistener \"tcp\" {{\n address = \"127.0.0.1:8300\"\n tls_cert_file = \"/c.pem\"\n tls_key_file = \"/k.pem\"\n}}\n"
        ))
        .unwrap();
        assert_eq!(config.default_lease_ttl, 3600);
        assert_eq!(config.max_lease_ttl, 86400);
        assert!(config.telemetry.unauthenticated_metrics_access);
        assert_eq!(config.listeners.len(), 2);
        assert!(!config.listeners[1].tls_disable);
        assert_eq!(config.listeners[0].http_read_timeout, 30);
        let timeouts = Config::parse(&VAULT_SHAPED.replace(
            "tls_disable = true",
            "tls_disable = true\n  http_read_timeout = \"5s\"\n  http_read_header_timeout = 2",
        ))
        .unwrap();
        assert_eq!(timeouts.listeners[0].http_read_timeout, 5);
        assert_eq!(timeouts.listeners[0].http_read_header_timeout, 2);
    }

    #[track_caller]
    fn error(text: &str, line: usize, fragment: &str) {
        let error = Config::parse(text).unwrap_err();
        assert_eq!(error.line, line, "{error}");
        assert!(error.message.contains(fragment), "{error}");
    }

    #[test]
    fn errors_name_the_key_and_line() {
        error(
            &VAULT_SHAPED.replace("address ", "adress "),
            7,
            "unknown key \"adress\" in listener",
        );
        error(
            &VAULT_SHAPED.replace("node_id = \"n1\"", "node_id = 1"),
            4,
            "node_id must be a string",
        );
        error(
            &VAULT_SHAPED.replace("tls_disable = true", "tls_disable = \"maybe\""),
            8,
            "tls_disable must be true or false",
        );
        error(
            &VAULT_SHAPED.replace("127.0.0.1:8200\"\n  tls", "localhost\"\n  tls"),
            7,
            "not a host:port",
        );
        error(
            &format!("{VAULT_SHAPED}\nfoo = 1\n"),
            13,
            "unknown key \"foo\"",
        );
        error(
            &format!("{VAULT_SHAPED}\nmax_lease_ttl = \"forever\"\n"),
            13,
            "max_lease_ttl",
        );
        error(
            &VAULT_SHAPED.replace("\"raft\"", "\"consul\""),
            2,
            "unsupported storage type",
        );
        error(
            &VAULT_SHAPED.replace("  tls_disable = true\n", ""),
            6,
            "tls_cert_file and tls_key_file are required",
        );
        error("listener \"tcp\" {\n tls_disable = true\n}\n", 1, "storage");
        error(
            &format!("{VAULT_SHAPED}\nseal \"awskms\" {{}}\n"),
            13,
            "unknown block \"seal\"",
        );
        error(
            &VAULT_SHAPED.replace(
                "node_id = \"n1\"",
                "node_id = \"n1\"\n  retry_join {\n    leader_api_addr = \"127.0.0.1:8200\"\n  }",
            ),
            6,
            "must start with http",
        );
        error(
            &VAULT_SHAPED.replace(
                "node_id = \"n1\"",
                "node_id = \"n1\"\n  retry_join {\n    leader = \"x\"\n  }",
            ),
            6,
            "unknown key \"leader\" in retry_join",
        );
        error(&format!("{VAULT_SHAPED}\nui = true\n"), 13, "no web UI");
        error("storage \"raft\" {\n path = \n}\n", 2, "syntax error");
        error(
            &VAULT_SHAPED.replace(
                "tls_disable = true",
                "tls_disable = true\n  http_read_timeout = \"0s\"",
            ),
            9,
            "at least 1s",
        );
    }

    #[test]
    fn the_fuse_block() {
        let config = Config::parse(&format!(
            "{VAULT_SHAPED}\nfuse {{\n mount_point = \"/secrets\"\n threads = 2\n revoke_unused_leases = true\n}}\n"
        ))
        .unwrap();
        assert_eq!(
            config.fuse,
            Some(Fuse {
                mount_point: "/secrets".into(),
                threads: 2,
                revoke_unused_leases: true,
            })
        );
        assert_eq!(Config::parse(VAULT_SHAPED).unwrap().fuse, None);
        let with = |body: &str| format!("{VAULT_SHAPED}fuse {{\n{body}\n}}\n");
        error(&with(" threads = 2"), 12, "absolute mount_point");
        error(
            &with(" mount_point = \"secrets\""),
            12,
            "absolute mount_point",
        );
        error(
            &with(" mount_point = \"/s\"\n threads = 0"),
            14,
            "threads must be a number from 1 to 256",
        );
        error(
            &with(" mount_point = \"/s\"\n dir = 1"),
            14,
            "unknown key \"dir\" in fuse",
        );
    }

    #[test]
    fn unix_listener_blocks() {
        let config = Config::parse(&format!(
            "{VAULT_SHAPED}listener \"unix\" {{\n address = \"/run/c/c.sock\"\n mode = \"0660\"\n socket_user = \"root\"\n socket_group = 0\n http_read_timeout = \"5s\"\n}}\nlistener \"unix\" {{\n address = \"/run/c/d.sock\"\n socket_mode = 600\n}}\n"
        ))
        .unwrap();
        assert_eq!(config.listeners.len(), 1, "tcp listeners stay apart");
        assert_eq!(
            config.unix_listeners,
            vec![
                UnixListener {
                    mode: 0o660,
                    socket_user: Some(0),
                    socket_group: Some(0),
                    http_read_timeout: 5,
                    ..UnixListener::at("/run/c/c.sock".into())
                },
                UnixListener {
                    mode: 0o600,
                    ..UnixListener::at("/run/c/d.sock".into())
                },
            ]
        );
        let only_unix = "storage \"raft\" {\n path = \"/d\"\n}\nlistener \"unix\" {}\n";
        let config = Config::parse(only_unix).unwrap();
        assert!(config.listeners.is_empty());
        assert_eq!(
            config.unix_listeners[0].address,
            PathBuf::from("/run/coffer/coffer.sock")
        );
        assert_eq!(config.unix_listeners[0].mode, 0o666);
        let with = |body: &str| format!("{VAULT_SHAPED}listener \"unix\" {{\n{body}\n}}\n");
        error(&with(" address = \"c.sock\""), 13, "absolute path");
        error(&with(" mode = \"0999\""), 13, "octal permission bits");
        error(&with(" mode = \"01777\""), 13, "octal permission bits");
        error(
            &with(" socket_user = \"no-such-user-here\""),
            13,
            "no user named \"no-such-user-here\"",
        );
        error(
            &with(" socket_group = \"no-such-group-here\""),
            13,
            "no group named",
        );
        error(
            &with(" tls_disable = true"),
            13,
            "unknown key \"tls_disable\"",
        );
        error(
            &format!("{VAULT_SHAPED}listener \"unix\" {{}}\nlistener \"unix\" {{}}\n"),
            13,
            "two unix listeners",
        );
        error(
            "storage \"raft\" {\n path = \"/d\"\n}\n",
            1,
            "at least one listener block",
        );
    }
}
