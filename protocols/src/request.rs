//! The neutral request every door builds and the core handles.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What the caller wants to do with a path. Doors map their verbs here; the core
/// decides between Vault's `create` and `update` capabilities for [`Operation::Write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operation {
    Read,
    List,
    /// PUT or POST: `create` or `update`, decided by whether the target exists.
    Write,
    /// PATCH: a JSON merge-patch.
    Patch,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::List => "list",
            Operation::Write => "update",
            Operation::Patch => "patch",
            Operation::Delete => "delete",
        }
    }
}

/// Which door a request came through; recorded in audit entries and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Transport {
    Http,
    Grpc,
    Unix,
    Fuse,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Grpc => "grpc",
            Transport::Unix => "unix",
            Transport::Fuse => "fuse",
        }
    }
}

/// A client token as presented by the caller. Its `Debug` never shows the value,
/// and the memory is wiped when it is dropped. It serializes as itself: only to
/// forward a request to the leader, over the cluster's mutual TLS.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientToken(zeroize::Zeroizing<String>);

impl Serialize for ClientToken {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClientToken {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(ClientToken::new(String::deserialize(deserializer)?))
    }
}

impl ClientToken {
    pub fn new(token: String) -> Self {
        ClientToken(zeroize::Zeroizing::new(token))
    }

    /// The token itself, for hashing and lookups only: never log or echo it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ClientToken(<redacted>)")
    }
}

/// One operation on one logical path, as neutral as the doors can make it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// A fresh UUID, echoed as `request_id`.
    pub id: String,
    pub operation: Operation,
    /// The logical path without `/v1/` or a leading slash, percent-decoded. The core
    /// validates it (no `..`, no NUL) before anything else.
    pub path: String,
    /// The JSON body of a write, or the query parameters of a read.
    pub data: Map<String, Value>,
    pub token: Option<ClientToken>,
    pub transport: Transport,
    /// The peer address as the door saw it, for audit.
    pub remote_address: Option<String>,
    /// `X-Vault-Wrap-TTL`, if the client asked for response wrapping.
    pub wrap_ttl: Option<String>,
    /// `X-Vault-No-Request-Forwarding: true`: a standby answers with a redirect to
    /// the leader instead of forwarding.
    #[serde(default)]
    pub no_forward: bool,
    /// The body as bytes, for the few endpoints that take a file rather than JSON
    /// (a snapshot upload).
    #[serde(default, with = "option_base64")]
    pub raw_body: Option<Vec<u8>>,
    /// Set by a standby when it forwards the request to the leader, so the request
    /// is never forwarded twice.
    #[serde(default)]
    pub forwarded: bool,
    /// A local caller as the kernel reports it (Unix socket, FUSE), for
    /// authentication by `auth/local` and for audit.
    #[serde(default)]
    pub peer: Option<LocalPeer>,
}

/// A caller on this host, from the kernel's peer credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalPeer {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    /// `/proc/<pid>/exe`, when it could be read (filled in by the core when an
    /// audit device will record it).
    pub executable: Option<String>,
    /// Supplementary groups, filled in by the core only when a role binds groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<u32>,
    /// The systemd unit, filled in by the core only when a role binds units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl LocalPeer {
    /// A caller as the kernel reported it.
    pub fn from_kernel(uid: u32, gid: u32, pid: u32) -> Self {
        LocalPeer {
            uid,
            gid,
            pid,
            executable: None,
            groups: Vec::new(),
            unit: None,
        }
    }

    /// `/proc/<pid>/exe`, if the caller is still there to ask.
    pub fn read_executable(pid: u32) -> Option<String> {
        (pid != 0)
            .then(|| std::fs::read_link(format!("/proc/{pid}/exe")).ok())
            .flatten()
            .map(|path| path.to_string_lossy().into_owned())
    }
}

/// Serde for bytes as a base64 string in JSON (request bodies, snapshot
/// downloads, and the daemon's log entries), instead of serde's array of numbers.
/// Decoding borrows the string when it can.
pub mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// Serde for an optional byte body as base64.
mod option_base64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            None => serializer.serialize_none(),
            Some(bytes) => serializer.serialize_some(&STANDARD.encode(bytes)),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(None),
            Some(text) => STANDARD
                .decode(text)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Request {
    /// A request with no data, token or peer: the starting point for doors and tests.
    pub fn new(operation: Operation, path: impl Into<String>, transport: Transport) -> Self {
        Request {
            id: new_request_id(),
            operation,
            path: path.into(),
            data: Map::new(),
            token: None,
            transport,
            remote_address: None,
            wrap_ttl: None,
            no_forward: false,
            raw_body: None,
            forwarded: false,
            peer: None,
        }
    }

    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(ClientToken::new(token.to_owned()));
        self
    }

    pub fn with_data(mut self, data: Map<String, Value>) -> Self {
        self.data = data;
        self
    }
}

/// A random version-4 UUID string for request ids, from the thread's
/// cryptographically secure generator (no system call per request).
pub fn new_request_id() -> String {
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut buffer = uuid::Uuid::encode_buffer();
    uuid.hyphenated().encode_lower(&mut buffer).to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::new_request_id;

    #[test]
    fn request_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version(), Some(uuid::Version::Random));
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(id, &uuid.hyphenated().to_string());
        }
    }
}
