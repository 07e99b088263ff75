//! The server's configuration file: HCL shaped like Vault's. Each field's doc comment
//! is its reference. An unknown key or a bad value is an error that names the key
//! and its line.

use std::path::{Path, PathBuf};

use crate::duration;
use crate::hcl::{self, Kind};

mod audit;
mod fuse;
mod listener;
mod seal;
mod storage;
mod telemetry;

use audit::parse_audit;
pub use fuse::Fuse;
use fuse::parse_fuse;
pub use listener::{Listener, UnixListener};
use listener::{parse_listener, parse_unix_listener};
pub use seal::{AwsCredentials, AwsKms, GcpCkms, Seal, SealKind};
use storage::parse_storage;
pub use storage::{RetryJoin, Storage};
pub use telemetry::Telemetry;
use telemetry::parse_telemetry;

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
    /// `log_format`: `standard` (text, or the journal's fields under systemd)
    /// or `json` (one object per line with Vault's keys).
    pub log_format: Option<crate::logging::Format>,
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
    /// `seal "<type>" { ... }`: the auto seal this server unseals itself
    /// with; absent: Shamir key shares typed by operators. At most one block
    /// that is not `disabled`.
    pub seals: Vec<Seal>,
}

impl Config {
    /// The seal this server uses: the one block not `disabled`.
    pub fn active_seal(&self) -> Option<&Seal> {
        self.seals.iter().find(|seal| !seal.disabled)
    }
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
            log_format: None,
            disable_mlock: false,
            unsafe_allow_api_audit_creation: false,
            telemetry: Telemetry::default(),
            audit: Vec::new(),
            fuse: None,
            seals: Vec::new(),
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
                "log_format" => {
                    let format = string(value, "log_format")?;
                    config.log_format =
                        Some(crate::logging::Format::parse(&format).ok_or_else(|| {
                            hcl::Error::new(
                                value.line,
                                format!("log_format must be standard or json, not {format:?}"),
                            )
                        })?);
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
                "seal" => {
                    let seal = seal::parse_seal(block)?;
                    if !seal.disabled && config.active_seal().is_some() {
                        return Err(hcl::Error::new(
                            block.line,
                            "only one seal block may be active; mark the old one disabled = \"true\"",
                        ));
                    }
                    config.seals.push(seal);
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
            &format!("{VAULT_SHAPED}\nseal \"pkcs11\" {{}}\n"),
            13,
            "unsupported seal type \"pkcs11\"",
        );
        error(
            &format!("{VAULT_SHAPED}\nseal \"static\" {{\n current_key_id = \"k1\"\n}}\n"),
            13,
            "needs current_key",
        );
        error(
            &format!(
                "{VAULT_SHAPED}\nseal \"static\" {{\n current_key_id = \"k1\"\n current_key = \"/etc/k\"\n}}\n"
            ),
            13,
            "file:///path or env://VARIABLE",
        );
        let two = "seal \"static\" {\n current_key_id = \"a\"\n current_key = \"env://A\"\n}\n";
        error(
            &format!("{VAULT_SHAPED}\n{two}{two}"),
            17,
            "only one seal block may be active",
        );
        let parsed = Config::parse(&format!(
            "{VAULT_SHAPED}\n{two}seal \"static\" {{\n current_key_id = \"b\"\n current_key = \"file:///k\"\n disabled = \"true\"\n}}\n"
        ))
        .unwrap();
        assert_eq!(parsed.seals.len(), 2);
        assert_eq!(
            parsed.active_seal().map(|seal| seal.kind.clone()),
            Some(SealKind::Static {
                current_key_id: "a".into(),
                current_key: "env://A".into(),
                previous_key_id: None,
                previous_key: None,
            })
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
