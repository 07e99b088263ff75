//! Vault's HCL policy language, unchanged: parsing here, evaluation in [`acl`].
//!
//! Policy is pure: nothing in this module does I/O, and malformed input gives an
//! error naming the line, never a panic.

pub mod acl;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value as Json;

pub use acl::{Acl, Decision};

use crate::hcl::{self, Kind};

/// The built-in policy that grants everything; it cannot be changed or deleted.
pub const ROOT_POLICY: &str = "root";
/// The built-in policy attached to every token unless asked otherwise.
pub const DEFAULT_POLICY: &str = "default";
/// The one policy of a response-wrapping token. It grants nothing through the
/// ACL: the wrapping endpoints take the token itself as the credential.
pub const WRAPPING_POLICY: &str = "response-wrapping";

/// The text of the built-in `default` policy: a token may look itself up, renew and
/// revoke itself, and ask for its own capabilities.
pub const DEFAULT_POLICY_TEXT: &str = r#"# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Allow a token to renew and look up leases it holds
path "sys/leases/renew" {
    capabilities = ["update"]
}

path "sys/leases/lookup" {
    capabilities = ["update"]
}

# Allow a token to keep private values in its own cubbyhole
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Allow a token to wrap arbitrary values in a response-wrapping token
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}
"#;

/// A set of capabilities. `deny` excludes every other bit.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Capabilities(u16);

impl Capabilities {
    pub const NONE: Capabilities = Capabilities(0);
    pub const DENY: Capabilities = Capabilities(1);
    pub const CREATE: Capabilities = Capabilities(1 << 1);
    pub const READ: Capabilities = Capabilities(1 << 2);
    pub const UPDATE: Capabilities = Capabilities(1 << 3);
    pub const DELETE: Capabilities = Capabilities(1 << 4);
    pub const LIST: Capabilities = Capabilities(1 << 5);
    pub const SUDO: Capabilities = Capabilities(1 << 6);
    pub const PATCH: Capabilities = Capabilities(1 << 7);

    const NAMED: [(&'static str, Capabilities); 8] = [
        ("create", Capabilities::CREATE),
        ("delete", Capabilities::DELETE),
        ("deny", Capabilities::DENY),
        ("list", Capabilities::LIST),
        ("patch", Capabilities::PATCH),
        ("read", Capabilities::READ),
        ("sudo", Capabilities::SUDO),
        ("update", Capabilities::UPDATE),
    ];

    pub fn from_name(name: &str) -> Option<Capabilities> {
        Self::NAMED
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, capability)| *capability)
    }

    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn is_deny(self) -> bool {
        self.0 & Capabilities::DENY.0 != 0
    }

    /// Union, where `deny` on either side wins and clears everything else.
    pub fn merge(self, other: Capabilities) -> Capabilities {
        if self.is_deny() || other.is_deny() {
            Capabilities::DENY
        } else {
            Capabilities(self.0 | other.0)
        }
    }

    /// Names in alphabetical order; `["deny"]` when denied or empty.
    pub fn names(self) -> Vec<&'static str> {
        if self.is_deny() || self.0 == 0 {
            return vec!["deny"];
        }
        Self::NAMED
            .iter()
            .filter(|(_, capability)| self.contains(*capability))
            .map(|(name, _)| *name)
            .collect()
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Capabilities;

    fn bitor(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 | other.0)
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?}", self.names())
    }
}

/// What one path rule grants, and the parameter constraints that come with it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Permissions {
    pub capabilities: Capabilities,
    /// Parameter name (lowercase) to the values allowed; an empty list allows any.
    pub allowed_parameters: BTreeMap<String, Vec<Json>>,
    /// Parameter name (lowercase) to the values denied; an empty list denies any.
    pub denied_parameters: BTreeMap<String, Vec<Json>>,
    pub required_parameters: Vec<String>,
    /// Bounds on `X-Vault-Wrap-TTL` for requests to the path (seconds; 0 for
    /// none).
    pub min_wrapping_ttl: u64,
    pub max_wrapping_ttl: u64,
}

impl Permissions {
    /// Combines two rules for the same path, as Vault does across policies.
    pub fn merge(&mut self, other: &Permissions) {
        self.capabilities = self.capabilities.merge(other.capabilities);
        merge_parameters(&mut self.allowed_parameters, &other.allowed_parameters);
        merge_parameters(&mut self.denied_parameters, &other.denied_parameters);
        for name in &other.required_parameters {
            if !self.required_parameters.contains(name) {
                self.required_parameters.push(name.clone());
            }
        }
        // As Vault merges them: the lower minimum, the higher maximum.
        if other.min_wrapping_ttl > 0
            && (self.min_wrapping_ttl == 0 || other.min_wrapping_ttl < self.min_wrapping_ttl)
        {
            self.min_wrapping_ttl = other.min_wrapping_ttl;
        }
        if other.max_wrapping_ttl > self.max_wrapping_ttl {
            self.max_wrapping_ttl = other.max_wrapping_ttl;
        }
    }
}

fn merge_parameters(into: &mut BTreeMap<String, Vec<Json>>, from: &BTreeMap<String, Vec<Json>>) {
    for (name, values) in from {
        match into.get_mut(name) {
            // An empty list means "any value" and absorbs the other side.
            Some(existing) if existing.is_empty() || values.is_empty() => existing.clear(),
            Some(existing) => existing.extend(values.iter().cloned()),
            None => {
                into.insert(name.clone(), values.clone());
            }
        }
    }
}

/// One `path "..." { ... }` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The pattern without a trailing `*`.
    pub path: String,
    /// The pattern ended in `*`: it matches every path that starts with `path`.
    pub is_prefix: bool,
    /// Some segment of the pattern is exactly `+`.
    pub has_segment_wildcard: bool,
    pub permissions: Permissions,
}

impl Rule {
    /// The pattern as written (with its `*`).
    pub fn pattern(&self) -> String {
        if self.is_prefix {
            format!("{}*", self.path)
        } else {
            self.path.clone()
        }
    }
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    /// The text as the operator wrote it, returned by reads.
    pub raw: String,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(
        "invalid policy name {0:?}: use 1 to 128 letters, digits and any of -_.@[]:+= (no '/', ',' or spaces)"
    )]
    Name(String),
    #[error("the {0:?} policy is built in and cannot be changed")]
    BuiltIn(String),
    #[error("failed to parse policy: {0}")]
    Syntax(#[from] hcl::Error),
    #[error("failed to parse policy: invalid JSON: {0}")]
    Json(String),
}

/// Checks and normalizes (lowercases) a policy name. Vault takes nearly any
/// name; coffer keeps out what would change a storage path (`/`), split a
/// policy list (`,`) or hide in a log line (spaces, control characters).
pub fn normalize_name(name: &str) -> Result<String, ParseError> {
    if is_name(name, "-_.@[]:+=") {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(ParseError::Name(name.chars().take(64).collect()))
    }
}

/// Whether `name` is 1 to 128 ASCII letters, digits and characters of
/// `punctuation`, and not `.` or `..` (names become storage path segments).
pub fn is_name(name: &str, punctuation: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || punctuation.contains(character))
}

/// Parses a policy written in HCL or in its JSON form.
pub fn parse(name: &str, text: &str) -> Result<Policy, ParseError> {
    let name = normalize_name(name)?;
    let body = if text.trim_start().starts_with('{') {
        json_body(text)?
    } else {
        hcl::parse(text)?
    };
    let mut rules = Vec::new();
    for attribute in &body.attributes {
        match attribute.key.as_str() {
            // Old policies carried their name; it has no effect.
            "name" => {}
            other => {
                return Err(hcl::Error::new(
                    attribute.line,
                    format!("unknown key {other:?}; a policy holds path blocks"),
                )
                .into());
            }
        }
    }
    for block in &body.blocks {
        if block.ident != "path" {
            return Err(hcl::Error::new(
                block.line,
                format!(
                    "unknown block {:?}; a policy holds path blocks",
                    block.ident
                ),
            )
            .into());
        }
        let [pattern] = block.labels.as_slice() else {
            return Err(hcl::Error::new(block.line, "a path block takes exactly one path").into());
        };
        rules.push(parse_rule(pattern, block)?);
    }
    Ok(Policy {
        name,
        raw: text.to_owned(),
        rules,
    })
}

fn parse_rule(pattern: &str, block: &hcl::Block) -> Result<Rule, hcl::Error> {
    let line = block.line;
    let trimmed = pattern.strip_prefix('/').unwrap_or(pattern);
    let (path, is_prefix) = match trimmed.strip_suffix('*') {
        Some(path) => (path, true),
        None => (trimmed, false),
    };
    if path.contains('*') {
        return Err(hcl::Error::new(
            line,
            format!("path {pattern:?}: '*' is only allowed at the end of a path"),
        ));
    }
    let has_segment_wildcard = path.split('/').any(|segment| segment == "+");
    let mut permissions = Permissions::default();
    if let Some(block) = block.body.blocks.first() {
        return Err(hcl::Error::new(
            block.line,
            format!(
                "path {pattern:?}: {:?} is not supported by coffer",
                block.ident
            ),
        ));
    }
    for attribute in &block.body.attributes {
        let at = attribute.line;
        match attribute.key.as_str() {
            "capabilities" => {
                for name in string_list(&attribute.value, "capabilities")? {
                    let capability = Capabilities::from_name(&name).ok_or_else(|| {
                        hcl::Error::new(
                            at,
                            format!("path {pattern:?}: invalid capability {name:?}"),
                        )
                    })?;
                    permissions.capabilities = permissions.capabilities | capability;
                }
            }
            "policy" => {
                let Kind::String(level) = &attribute.value.kind else {
                    return Err(hcl::Error::new(at, "policy must be a string"));
                };
                let granted = match level.as_str() {
                    "deny" => Capabilities::DENY,
                    "read" => Capabilities::READ | Capabilities::LIST,
                    "write" => write_capabilities(),
                    "sudo" => write_capabilities() | Capabilities::SUDO,
                    other => {
                        return Err(hcl::Error::new(
                            at,
                            format!("path {pattern:?}: invalid policy level {other:?}"),
                        ));
                    }
                };
                permissions.capabilities = permissions.capabilities | granted;
            }
            "allowed_parameters" => {
                permissions.allowed_parameters =
                    parameter_map(&attribute.value, "allowed_parameters")?
            }
            "denied_parameters" => {
                permissions.denied_parameters =
                    parameter_map(&attribute.value, "denied_parameters")?
            }
            "required_parameters" => {
                permissions.required_parameters =
                    string_list(&attribute.value, "required_parameters")?
                        .into_iter()
                        .map(|name| name.to_ascii_lowercase())
                        .collect();
            }
            "min_wrapping_ttl" => {
                permissions.min_wrapping_ttl =
                    duration_value(&attribute.value, "min_wrapping_ttl")?;
            }
            "max_wrapping_ttl" => {
                permissions.max_wrapping_ttl =
                    duration_value(&attribute.value, "max_wrapping_ttl")?;
            }
            // Comments are documentation.
            "comment" => {}
            "mfa_methods" | "control_group" | "subscribe_event_types" => {
                return Err(hcl::Error::new(
                    at,
                    format!(
                        "path {pattern:?}: {:?} is not supported by coffer",
                        attribute.key
                    ),
                ));
            }
            other => {
                return Err(hcl::Error::new(
                    at,
                    format!("path {pattern:?}: unknown key {other:?}"),
                ));
            }
        }
    }
    if permissions.capabilities.is_deny() {
        permissions.capabilities = Capabilities::DENY;
    }
    Ok(Rule {
        path: path.to_owned(),
        is_prefix,
        has_segment_wildcard,
        permissions,
    })
}

fn write_capabilities() -> Capabilities {
    Capabilities::CREATE
        | Capabilities::READ
        | Capabilities::UPDATE
        | Capabilities::DELETE
        | Capabilities::LIST
}

/// Seconds, from a number or a duration string (`"5m"`).
fn duration_value(value: &hcl::Value, key: &str) -> Result<u64, hcl::Error> {
    let seconds = match &value.kind {
        Kind::Number(number) => number.as_u64(),
        Kind::String(text) => crate::duration::parse_seconds(text).ok(),
        _ => None,
    };
    seconds.ok_or_else(|| {
        hcl::Error::new(
            value.line,
            format!("{key} must be a duration such as \"5m\" or a number of seconds"),
        )
    })
}

fn string_list(value: &hcl::Value, key: &str) -> Result<Vec<String>, hcl::Error> {
    let Kind::Array(items) = &value.kind else {
        return Err(hcl::Error::new(
            value.line,
            format!("{key} must be a list of strings, not {}", value.type_name()),
        ));
    };
    items
        .iter()
        .map(|item| match &item.kind {
            Kind::String(text) => Ok(text.clone()),
            _ => Err(hcl::Error::new(
                item.line,
                format!(
                    "{key} must be a list of strings, found {}",
                    item.type_name()
                ),
            )),
        })
        .collect()
}

fn parameter_map(value: &hcl::Value, key: &str) -> Result<BTreeMap<String, Vec<Json>>, hcl::Error> {
    let Kind::Object(entries) = &value.kind else {
        return Err(hcl::Error::new(
            value.line,
            format!(
                "{key} must be an object of lists, not {}",
                value.type_name()
            ),
        ));
    };
    let mut map = BTreeMap::new();
    for (name, values) in entries {
        let Kind::Array(items) = &values.kind else {
            return Err(hcl::Error::new(
                values.line,
                format!("{key}.{name} must be a list, not {}", values.type_name()),
            ));
        };
        map.insert(
            name.to_ascii_lowercase(),
            items.iter().map(hcl::Value::to_json).collect(),
        );
    }
    Ok(map)
}

/// The JSON form of a policy, `{"path": {"<pattern>": {...}}}`, as an HCL body.
fn json_body(text: &str) -> Result<hcl::Body, ParseError> {
    let document: Json = serde_json::from_str(text).map_err(|error| {
        ParseError::Json(format!(
            "{:?} error at line {}",
            error.classify(),
            error.line()
        ))
    })?;
    let Json::Object(top) = document else {
        return Err(ParseError::Json("the document must be an object".into()));
    };
    let mut body = hcl::Body::default();
    for (key, value) in top {
        let converted = json_to_value(&value);
        match (key.as_str(), converted.kind) {
            ("path", Kind::Object(paths)) => {
                for (pattern, rule) in paths {
                    let Kind::Object(attributes) = rule.kind else {
                        return Err(ParseError::Json(format!(
                            "path {pattern:?} must be an object"
                        )));
                    };
                    body.blocks.push(hcl::Block {
                        ident: "path".into(),
                        labels: vec![pattern],
                        line: 1,
                        body: hcl::Body {
                            attributes: attributes
                                .into_iter()
                                .map(|(key, value)| hcl::Attribute {
                                    key,
                                    line: 1,
                                    value,
                                })
                                .collect(),
                            blocks: Vec::new(),
                        },
                    });
                }
            }
            (_, kind) => body.attributes.push(hcl::Attribute {
                key,
                line: 1,
                value: hcl::Value { line: 1, kind },
            }),
        }
    }
    Ok(body)
}

fn json_to_value(value: &Json) -> hcl::Value {
    let kind = match value {
        Json::Null => Kind::Null,
        Json::Bool(value) => Kind::Bool(*value),
        Json::Number(value) => Kind::Number(value.clone()),
        Json::String(value) => Kind::String(value.clone()),
        Json::Array(items) => Kind::Array(items.iter().map(json_to_value).collect()),
        Json::Object(entries) => Kind::Object(
            entries
                .iter()
                .map(|(key, value)| (key.clone(), json_to_value(value)))
                .collect(),
        ),
    };
    hcl::Value { line: 1, kind }
}
