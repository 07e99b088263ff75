//! Audit entries in Vault's shape: one JSON line for a request before it runs and
//! one for its response, with every string of request and response data, every
//! client token and (unless `hmac_accessor = false`) every accessor replaced by
//! `hmac-sha256:<hex>` under the device's salt.

use std::time::SystemTime;

use aws_lc_rs::hmac;
use coffer_protocols::{LocalPeer, Request};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::tokens::TokenEntry;

/// Who made a request, as audited.
pub struct Caller<'a> {
    pub token: &'a TokenEntry,
    /// The token as presented (hashed before it is written).
    pub client_token: &'a str,
}

/// A response's body, as audited (borrowed from the reply).
pub enum Data<'a> {
    None,
    Map(&'a Map<String, Value>),
    Keys(&'a [String]),
    Value(&'a Value),
}

/// A response, as audited.
pub struct Outcome<'a> {
    /// The HTTP-style status the request ended with.
    pub status: u16,
    /// The response's `data` (and `auth` for logins and token creation).
    pub data: Data<'a>,
    pub auth: Option<&'a coffer_protocols::Auth>,
}

/// Everything one line is made of, before hashing.
pub struct Entry<'a> {
    /// `request` or `response`.
    pub kind: &'static str,
    pub time: SystemTime,
    pub request: &'a Request,
    /// The validated path (a listed path ends in `/`).
    pub path: &'a str,
    /// The mount the path is in: (mount point, engine type).
    pub mount: Option<(&'a str, &'a str)>,
    pub caller: Option<Caller<'a>>,
    pub outcome: Option<Outcome<'a>>,
    pub error: Option<&'a str>,
}

/// How one device hashes: its salt as an HMAC key and its options.
pub struct Hasher {
    key: hmac::Key,
    hmac_accessor: bool,
    log_raw: bool,
}

impl Hasher {
    pub fn new(salt: &[u8], hmac_accessor: bool, log_raw: bool) -> Hasher {
        Hasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, salt),
            hmac_accessor,
            log_raw,
        }
    }

    /// `hmac-sha256:<hex>` of `input`, as `sys/audit-hash` answers it.
    pub fn hash(&self, input: &str) -> String {
        format!(
            "hmac-sha256:{}",
            hex::encode(hmac::sign(&self.key, input.as_bytes()))
        )
    }

    fn secret(&self, input: &str) -> String {
        if self.log_raw || input.is_empty() {
            input.to_owned()
        } else {
            self.hash(input)
        }
    }

    fn accessor(&self, input: &str) -> String {
        if self.hmac_accessor {
            self.secret(input)
        } else {
            input.to_owned()
        }
    }

    /// `value` with every string (at any depth, map keys excepted) hashed.
    pub fn value(&self, value: &Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.secret(text)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|item| self.value(item)).collect())
            }
            Value::Object(map) => Value::Object(self.map(map)),
            other => other.clone(),
        }
    }

    fn map(&self, map: &Map<String, Value>) -> Map<String, Value> {
        map.iter()
            .map(|(key, value)| (key.clone(), self.value(value)))
            .collect()
    }
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<AuthSection<'a>>,
    request: RequestSection<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<ResponseSection>,
    error: &'a str,
}

#[derive(Serialize)]
struct AuthSection<'a> {
    client_token: String,
    accessor: String,
    display_name: &'a str,
    policies: &'a [String],
    token_policies: &'a [String],
    metadata: &'a std::collections::BTreeMap<String, String>,
    entity_id: &'a str,
    token_type: &'static str,
    token_ttl: u64,
    token_issue_time: String,
}

#[derive(Serialize)]
struct RequestSection<'a> {
    id: &'a str,
    operation: &'static str,
    path: &'a str,
    mount_point: &'a str,
    mount_type: &'a str,
    client_token: String,
    client_token_accessor: String,
    remote_address: &'a str,
    transport: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<&'a LocalPeer>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    data: Map<String, Value>,
}

#[derive(Serialize)]
struct ResponseSection {
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}

impl Entry<'_> {
    /// The entry as one JSON line for a device hashing with `hasher`.
    pub fn render(&self, hasher: &Hasher) -> Vec<u8> {
        let auth = self.caller.as_ref().map(|caller| AuthSection {
            client_token: hasher.secret(caller.client_token),
            accessor: hasher.accessor(&caller.token.accessor),
            display_name: &caller.token.display_name,
            policies: &caller.token.policies,
            token_policies: &caller.token.policies,
            metadata: &caller.token.meta,
            entity_id: "",
            token_type: "service",
            token_ttl: caller.token.creation_ttl,
            token_issue_time: rfc3339(
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(caller.token.creation_time),
            ),
        });
        let (mount_point, mount_type) = self.mount.unwrap_or(("", ""));
        let request = RequestSection {
            id: &self.request.id,
            operation: self.request.operation.as_str(),
            path: self.path,
            mount_point,
            mount_type,
            client_token: self
                .caller
                .as_ref()
                .map(|caller| hasher.secret(caller.client_token))
                .unwrap_or_default(),
            client_token_accessor: self
                .caller
                .as_ref()
                .map(|caller| hasher.accessor(&caller.token.accessor))
                .unwrap_or_default(),
            remote_address: self.request.remote_address.as_deref().unwrap_or(""),
            transport: self.request.transport.as_str(),
            peer: self.request.peer.as_ref(),
            data: hasher.map(&self.request.data),
        };
        let response = self.outcome.as_ref().map(|outcome| ResponseSection {
            status: outcome.status,
            auth: outcome.auth.map(|auth| {
                let mut value = serde_json::to_value(auth).unwrap_or(Value::Null);
                if let Value::Object(map) = &mut value {
                    for (key, hash) in [("client_token", true), ("accessor", false)] {
                        if let Some(Value::String(text)) = map.get_mut(key) {
                            *text = if hash {
                                hasher.secret(text)
                            } else {
                                hasher.accessor(text)
                            };
                        }
                    }
                }
                value
            }),
            data: match outcome.data {
                Data::None => None,
                Data::Map(map) => Some(Value::Object(hasher.map(map))),
                Data::Keys(keys) => Some(serde_json::json!({
                    "keys": keys.iter().map(|key| hasher.secret(key)).collect::<Vec<_>>()
                })),
                Data::Value(value) => Some(hasher.value(value)),
            },
        });
        let line = Line {
            time: rfc3339(self.time),
            kind: self.kind,
            auth,
            request,
            response,
            error: self.error.unwrap_or(""),
        };
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_protocols::{Operation, Transport};
    use serde_json::json;

    fn token() -> TokenEntry {
        TokenEntry {
            hash: "h".into(),
            accessor: "accessor-value".into(),
            parent: None,
            policies: vec!["default".into(), "app".into()],
            meta: Default::default(),
            display_name: "token-app".into(),
            num_uses: 0,
            exhausted: false,
            creation_time: 1_700_000_000,
            creation_ttl: 3600,
            expire_time: None,
            explicit_max_ttl: 0,
            period: 0,
            renewable: true,
            path: "auth/token/create".into(),
        }
    }

    #[test]
    fn strings_tokens_and_accessors_are_hashed_and_the_rest_is_kept() {
        let mut request = Request::new(Operation::Write, "secret/data/app", Transport::Http);
        request.data = json!({"data": {"password": "s3cret", "port": 5432, "tags": ["a"]}})
            .as_object()
            .cloned()
            .unwrap();
        request.remote_address = Some("127.0.0.1:4000".into());
        let token = token();
        let response_data = json!({"version": 3, "created_time": "2026-01-01T00:00:00Z"});
        let entry = Entry {
            kind: "response",
            time: SystemTime::UNIX_EPOCH,
            request: &request,
            path: "secret/data/app",
            mount: Some(("secret/", "kv")),
            caller: Some(Caller {
                token: &token,
                client_token: "hvs.TOKENVALUE",
            }),
            outcome: Some(Outcome {
                status: 200,
                data: Data::Value(&response_data),
                auth: None,
            }),
            error: None,
        };
        let hasher = Hasher::new(b"salt", true, false);
        let line = entry.render(&hasher);
        assert_eq!(line.last(), Some(&b'\n'));
        let text = String::from_utf8(line).unwrap();
        for secret in ["s3cret", "hvs.TOKENVALUE", "accessor-value", "2026-01-01"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["type"], "response");
        assert_eq!(parsed["request"]["path"], "secret/data/app");
        assert_eq!(parsed["request"]["operation"], "update");
        assert_eq!(parsed["request"]["transport"], "http");
        assert_eq!(parsed["request"]["mount_type"], "kv");
        assert_eq!(parsed["request"]["data"]["data"]["port"], 5432);
        assert_eq!(
            parsed["request"]["data"]["data"]["password"],
            hasher.hash("s3cret")
        );
        assert_eq!(
            parsed["auth"]["client_token"],
            hasher.hash("hvs.TOKENVALUE")
        );
        assert_eq!(parsed["auth"]["accessor"], hasher.hash("accessor-value"));
        assert_eq!(parsed["auth"]["policies"], json!(["default", "app"]));
        assert_eq!(parsed["response"]["status"], 200);
        assert_eq!(parsed["response"]["data"]["version"], 3);

        // Another salt, another hash; hmac_accessor = false keeps accessors.
        let other = Hasher::new(b"other", false, false);
        assert_ne!(other.hash("s3cret"), hasher.hash("s3cret"));
        let parsed: Value = serde_json::from_slice(&entry.render(&other)).unwrap();
        assert_eq!(parsed["auth"]["accessor"], "accessor-value");
        // log_raw writes everything as it is.
        let raw: Value =
            serde_json::from_slice(&entry.render(&Hasher::new(b"s", true, true))).unwrap();
        assert_eq!(raw["request"]["data"]["data"]["password"], "s3cret");
    }
}
