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
    /// A wrapped response's `wrap_info` (its token is hashed like any token).
    pub wrap_info: Option<&'a Value>,
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

/// `hmac-sha256:` and 64 hex digits, on the stack.
struct HashText([u8; 76]);

impl HashText {
    fn new(key: &hmac::Key, input: &str) -> HashText {
        let mut text = [0u8; 76];
        text[..12].copy_from_slice(b"hmac-sha256:");
        let tag = hmac::sign(key, input.as_bytes());
        // A 32-byte tag always fills the 64 digits.
        let _ = hex::encode_to_slice(tag.as_ref(), &mut text[12..]);
        HashText(text)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A secret as written: hashed, or raw for `log_raw` devices.
enum Secret<'a> {
    Raw(&'a str),
    Hashed(HashText),
}

impl Secret<'_> {
    fn as_str(&self) -> &str {
        match self {
            Secret::Raw(text) => text,
            Secret::Hashed(hash) => hash.as_str(),
        }
    }
}

/// A caller's token and accessor hashed for one device, and its token's issue
/// time: computed once for a request's two entries.
pub struct HashedCaller {
    client_token: String,
    accessor: String,
    issue_time: String,
}

/// How one device hashes: its salt as an HMAC key and its options.
pub struct Hasher {
    key: hmac::Key,
    hmac_accessor: bool,
    log_raw: bool,
    /// `hmac_all_values`: numbers and booleans are hashed too (of their JSON
    /// text), not only strings.
    all_values: bool,
}

impl Hasher {
    pub fn new(salt: &[u8], hmac_accessor: bool, log_raw: bool) -> Hasher {
        Hasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, salt),
            hmac_accessor,
            log_raw,
            all_values: false,
        }
    }

    /// Hashes numbers and booleans too (`hmac_all_values`).
    pub fn hashing_all_values(mut self, all_values: bool) -> Hasher {
        self.all_values = all_values;
        self
    }

    /// A number or boolean as written: itself, or with `hmac_all_values` the
    /// hash of its JSON text.
    fn scalar(&self, value: &Value) -> Option<String> {
        if !self.all_values || self.log_raw {
            return None;
        }
        match value {
            Value::Number(number) => Some(self.hash(&number.to_string())),
            Value::Bool(flag) => Some(self.hash(if *flag { "true" } else { "false" })),
            _ => None,
        }
    }

    /// `hmac-sha256:<hex>` of `input`, as `sys/audit-hash` answers it.
    pub fn hash(&self, input: &str) -> String {
        HashText::new(&self.key, input).as_str().to_owned()
    }

    /// `input` as it is written: hashed, unless the device logs raw values
    /// (empty strings stay empty, as in Vault).
    fn secret<'a>(&self, input: &'a str) -> Secret<'a> {
        if self.log_raw || input.is_empty() {
            Secret::Raw(input)
        } else {
            Secret::Hashed(HashText::new(&self.key, input))
        }
    }

    fn accessor<'a>(&self, input: &'a str) -> Secret<'a> {
        if self.hmac_accessor {
            self.secret(input)
        } else {
            Secret::Raw(input)
        }
    }

    /// What a request's entries show of its caller, hashed once for both.
    pub fn caller(&self, caller: &Caller<'_>) -> HashedCaller {
        // A local caller has no token: nothing to hash.
        let hashed = |text: &str, hash: &dyn Fn(&str) -> String| {
            if text.is_empty() {
                String::new()
            } else {
                hash(text)
            }
        };
        HashedCaller {
            client_token: hashed(caller.client_token, &|text| {
                self.secret(text).as_str().to_owned()
            }),
            accessor: hashed(&caller.token.accessor, &|text| {
                self.accessor(text).as_str().to_owned()
            }),
            issue_time: rfc3339(
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(caller.token.creation_time),
            ),
        }
    }

    /// `value` with every string (at any depth, map keys excepted) hashed.
    pub fn value(&self, value: &Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.secret(text).as_str().to_owned()),
            Value::Array(items) => {
                Value::Array(items.iter().map(|item| self.value(item)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(key, value)| (key.clone(), self.value(value)))
                    .collect(),
            ),
            other => self
                .scalar(other)
                .map_or_else(|| other.clone(), Value::String),
        }
    }
}

/// A JSON value serialized with its strings hashed, without building a copy.
struct Hashed<'a> {
    value: &'a Value,
    hasher: &'a Hasher,
}

impl Serialize for Hashed<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq as _;
        match self.value {
            Value::String(text) => serializer.serialize_str(self.hasher.secret(text).as_str()),
            Value::Array(items) => {
                let mut sequence = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    sequence.serialize_element(&Hashed {
                        value: item,
                        hasher: self.hasher,
                    })?;
                }
                sequence.end()
            }
            Value::Object(map) => HashedMap {
                map,
                hasher: self.hasher,
            }
            .serialize(serializer),
            other => match self.hasher.scalar(other) {
                Some(hash) => serializer.serialize_str(&hash),
                None => other.serialize(serializer),
            },
        }
    }
}

/// A JSON object serialized with its strings hashed.
struct HashedMap<'a> {
    map: &'a Map<String, Value>,
    hasher: &'a Hasher,
}

impl HashedMap<'_> {
    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Serialize for HashedMap<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(self.map.len()))?;
        for (key, value) in self.map {
            map.serialize_entry(
                key,
                &Hashed {
                    value,
                    hasher: self.hasher,
                },
            )?;
        }
        map.end()
    }
}

/// List keys, serialized hashed.
struct HashedKeys<'a> {
    keys: &'a [String],
    hasher: &'a Hasher,
}

impl Serialize for HashedKeys<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq as _;
        let mut sequence = serializer.serialize_seq(Some(self.keys.len()))?;
        for key in self.keys {
            sequence.serialize_element(self.hasher.secret(key).as_str())?;
        }
        sequence.end()
    }
}

/// A response's `data`, serialized hashed.
struct HashedData<'a> {
    data: &'a Data<'a>,
    hasher: &'a Hasher,
}

impl Serialize for HashedData<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        match self.data {
            Data::None => serializer.serialize_none(),
            Data::Map(map) => HashedMap {
                map,
                hasher: self.hasher,
            }
            .serialize(serializer),
            Data::Value(value) => Hashed {
                value,
                hasher: self.hasher,
            }
            .serialize(serializer),
            Data::Keys(keys) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(
                    "keys",
                    &HashedKeys {
                        keys,
                        hasher: self.hasher,
                    },
                )?;
                map.end()
            }
        }
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
    response: Option<ResponseSection<'a>>,
    error: &'a str,
}

#[derive(Serialize)]
struct AuthSection<'a> {
    client_token: &'a str,
    accessor: &'a str,
    display_name: &'a str,
    policies: &'a [String],
    token_policies: &'a [String],
    metadata: &'a std::collections::BTreeMap<String, String>,
    entity_id: &'a str,
    token_type: &'static str,
    token_ttl: u64,
    token_issue_time: &'a str,
}

#[derive(Serialize)]
struct RequestSection<'a> {
    id: &'a str,
    operation: &'static str,
    path: &'a str,
    mount_point: &'a str,
    mount_type: &'a str,
    client_token: &'a str,
    client_token_accessor: &'a str,
    remote_address: &'a str,
    transport: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<&'a LocalPeer>,
    #[serde(skip_serializing_if = "HashedMap::is_empty")]
    data: HashedMap<'a>,
}

#[derive(Serialize)]
struct ResponseSection<'a> {
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<HashedData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wrap_info: Option<Value>,
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}

impl Entry<'_> {
    /// The entry as one JSON line for a device hashing with `hasher`; `caller`
    /// is [`Hasher::caller`] of the entry's caller for that device.
    pub fn render(&self, hasher: &Hasher, caller: Option<&HashedCaller>) -> Vec<u8> {
        let hashed = caller.filter(|_| self.caller.is_some());
        let auth = self
            .caller
            .as_ref()
            .zip(hashed)
            .map(|(caller, hashed)| AuthSection {
                client_token: &hashed.client_token,
                accessor: &hashed.accessor,
                display_name: &caller.token.display_name,
                policies: &caller.token.policies,
                token_policies: &caller.token.policies,
                metadata: &caller.token.meta,
                entity_id: "",
                token_type: "service",
                token_ttl: caller.token.creation_ttl,
                token_issue_time: &hashed.issue_time,
            });
        let (mount_point, mount_type) = self.mount.unwrap_or(("", ""));
        let request = RequestSection {
            id: &self.request.id,
            operation: self.request.operation.as_str(),
            path: self.path,
            mount_point,
            mount_type,
            client_token: hashed.map_or("", |hashed| hashed.client_token.as_str()),
            client_token_accessor: hashed.map_or("", |hashed| hashed.accessor.as_str()),
            remote_address: self.request.remote_address.as_deref().unwrap_or(""),
            transport: self.request.transport.as_str(),
            peer: self.request.peer.as_ref(),
            data: HashedMap {
                map: &self.request.data,
                hasher,
            },
        };
        let response = self.outcome.as_ref().map(|outcome| ResponseSection {
            status: outcome.status,
            auth: outcome.auth.map(|auth| {
                let mut value = serde_json::to_value(auth).unwrap_or(Value::Null);
                if let Value::Object(map) = &mut value {
                    for (key, hash) in [("client_token", true), ("accessor", false)] {
                        if let Some(Value::String(text)) = map.get_mut(key) {
                            let written = if hash {
                                hasher.secret(text)
                            } else {
                                hasher.accessor(text)
                            };
                            *text = written.as_str().to_owned();
                        }
                    }
                }
                value
            }),
            data: match outcome.data {
                Data::None => None,
                ref data => Some(HashedData { data, hasher }),
            },
            wrap_info: outcome.wrap_info.map(|info| {
                let mut info = info.clone();
                if let Value::Object(map) = &mut info {
                    for (key, hash) in [
                        ("token", true),
                        ("accessor", false),
                        ("wrapped_accessor", false),
                    ] {
                        if let Some(Value::String(text)) = map.get_mut(key) {
                            let written = if hash {
                                hasher.secret(text)
                            } else {
                                hasher.accessor(text)
                            };
                            *text = written.as_str().to_owned();
                        }
                    }
                }
                info
            }),
        });
        let line = Line {
            time: rfc3339(self.time),
            kind: self.kind,
            auth,
            request,
            response,
            error: self.error.unwrap_or(""),
        };
        let mut bytes = Vec::with_capacity(2048);
        if serde_json::to_writer(&mut bytes, &line).is_err() {
            bytes.clear();
        }
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
            bound_cidrs: Vec::new(),
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
        request.peer = Some(LocalPeer {
            uid: 1000,
            gid: 100,
            pid: 4242,
            executable: Some("/usr/bin/app".into()),
            groups: Vec::new(),
            unit: None,
        });
        let token = token();
        let response_data = json!({"version": 3, "created_time": "2026-01-01T00:00:00Z"});
        let wrap_info = json!({"token": "hvs.WRAPPING", "accessor": "wrap-accessor", "ttl": 60});
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
                wrap_info: Some(&wrap_info),
            }),
            error: None,
        };
        let hasher = Hasher::new(b"salt", true, false);
        let render = |hasher: &Hasher| {
            let caller = entry.caller.as_ref().map(|caller| hasher.caller(caller));
            entry.render(hasher, caller.as_ref())
        };
        let line = render(&hasher);
        assert_eq!(line.last(), Some(&b'\n'));
        let text = String::from_utf8(line).unwrap();
        for secret in [
            "s3cret",
            "hvs.TOKENVALUE",
            "accessor-value",
            "2026-01-01",
            "hvs.WRAPPING",
            "wrap-accessor",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["type"], "response");
        assert_eq!(parsed["request"]["path"], "secret/data/app");
        assert_eq!(parsed["request"]["operation"], "update");
        assert_eq!(parsed["request"]["transport"], "http");
        assert_eq!(
            parsed["request"]["peer"],
            json!({"uid": 1000, "gid": 100, "pid": 4242, "executable": "/usr/bin/app"})
        );
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
        assert_eq!(
            parsed["response"]["wrap_info"]["token"],
            hasher.hash("hvs.WRAPPING")
        );
        assert_eq!(parsed["response"]["wrap_info"]["ttl"], 60);

        // Another salt, another hash; hmac_accessor = false keeps accessors.
        let other = Hasher::new(b"other", false, false);
        assert_ne!(other.hash("s3cret"), hasher.hash("s3cret"));
        let parsed: Value = serde_json::from_slice(&render(&other)).unwrap();
        assert_eq!(parsed["auth"]["accessor"], "accessor-value");
        // log_raw writes everything as it is.
        let raw: Value = serde_json::from_slice(&render(&Hasher::new(b"s", true, true))).unwrap();
        assert_eq!(raw["request"]["data"]["data"]["password"], "s3cret");
        // hmac_all_values hashes numbers too (by default they stay, as in Vault).
        let all = Hasher::new(b"salt", true, false).hashing_all_values(true);
        let parsed: Value = serde_json::from_slice(&render(&all)).unwrap();
        assert_eq!(parsed["request"]["data"]["data"]["port"], all.hash("5432"));
        assert_eq!(parsed["response"]["data"]["version"], all.hash("3"));
        assert_eq!(
            parsed["response"]["status"], 200,
            "the entry's own fields stay"
        );
        assert_eq!(
            all.value(&json!({"on": true, "n": 1.5, "none": null})),
            json!({"on": all.hash("true"), "n": all.hash("1.5"), "none": null})
        );
    }
}
