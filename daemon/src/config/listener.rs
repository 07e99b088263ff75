//! The `listener` blocks: `tcp` (the HTTP API) and `grpc` on TCP, and `unix` sockets, with their timeouts.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{boolean, positive_duration, single_label, string, unknown};
use crate::hcl::{self, Kind};

/// `http_read_header_timeout`, seconds.
pub const DEFAULT_READ_HEADER_TIMEOUT: u64 = 10;
/// `http_read_timeout`, seconds.
pub const DEFAULT_READ_TIMEOUT: u64 = 30;
/// `http_idle_timeout`, seconds (Vault's 5m).
pub const DEFAULT_IDLE_TIMEOUT: u64 = 300;
/// The port of a `tcp` listener without an address.
pub const DEFAULT_API_PORT: u16 = 8200;
/// The port of a `grpc` listener without an address.
pub const DEFAULT_GRPC_PORT: u16 = 8300;
/// A `unix` listener's socket without an address.
pub const DEFAULT_SOCKET: &str = "/run/coffer/coffer.sock";
/// A `unix` listener's mode: anyone on the host may connect; what they get
/// is decided by `auth/local` roles and tokens.
pub const DEFAULT_SOCKET_MODE: u32 = 0o666;

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
            mode: DEFAULT_SOCKET_MODE,
            socket_user: None,
            socket_group: None,
            http_read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
            http_read_timeout: DEFAULT_READ_TIMEOUT,
            http_idle_timeout: DEFAULT_IDLE_TIMEOUT,
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
            http_read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
            http_read_timeout: DEFAULT_READ_TIMEOUT,
            http_idle_timeout: DEFAULT_IDLE_TIMEOUT,
            cluster_address: None,
        }
    }
}

pub(super) fn parse_listener(block: &hcl::Block) -> Result<Listener, hcl::Error> {
    let kind = single_label(block, "listener")?;
    if kind != "tcp" && kind != "grpc" {
        return Err(hcl::Error::new(
            block.line,
            format!("unsupported listener type {kind:?}: use \"tcp\", \"unix\" or \"grpc\""),
        ));
    }
    let place = format!("listener \"{kind}\"");
    let port = if kind == "grpc" {
        DEFAULT_GRPC_PORT
    } else {
        DEFAULT_API_PORT
    };
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

pub(super) fn parse_unix_listener(block: &hcl::Block) -> Result<UnixListener, hcl::Error> {
    let mut listener = UnixListener::at(PathBuf::from(DEFAULT_SOCKET));
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
pub(super) fn octal_mode(value: &hcl::Value, key: &str) -> Result<u32, hcl::Error> {
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
pub(super) fn account(value: &hcl::Value, key: &str, group: bool) -> Result<u32, hcl::Error> {
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
