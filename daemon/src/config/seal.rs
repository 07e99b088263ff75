//! `seal "<type>" { ... }` blocks: how the root key is protected when no
//! operator types key shares. `awskms` (AWS KMS, Vault's keys and
//! environment variables, which win over the file) and `static` (OpenBao's
//! shape: a 32-byte key from a file or an environment variable, with a
//! previous one for rotation); a block may say `disabled = "true"` (the seal
//! being migrated away from).

use super::{boolean, string, unknown};
use crate::hcl;

/// One `seal` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub kind: SealKind,
    /// `disabled`: the seal the data is migrated away from.
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealKind {
    /// `seal "static"`: keys named by id, each `file://PATH` or `env://VAR`
    /// holding 32 bytes raw, hex or base64.
    Static {
        current_key_id: String,
        current_key: String,
        previous_key_id: Option<String>,
        previous_key: Option<String>,
    },
    /// `seal "awskms"`, with the environment already applied.
    AwsKms(AwsKms),
    /// `seal "gcpckms"`, with the environment already applied.
    GcpCkms(GcpCkms),
}

/// `seal "gcpckms"`: which Cloud KMS key, and as whom.
#[derive(Clone, PartialEq, Eq)]
pub struct GcpCkms {
    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
    pub key_name: String,
    /// A service account's JSON key: a file's path, or the JSON itself (as
    /// `GOOGLE_CREDENTIALS` may hold it); `None`: the instance's account from
    /// the metadata server.
    pub credentials: Option<String>,
    /// Cloud KMS's address (`https://cloudkms.googleapis.com`); coffer's own
    /// key, for private endpoints and tests.
    pub endpoint: String,
}

// Inline credentials (a private key) never reach a log line through Debug.
impl std::fmt::Debug for GcpCkms {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let credentials = match &self.credentials {
            Some(text) if text.trim_start().starts_with('{') => "inline",
            Some(path) => path.as_str(),
            None => "metadata server",
        };
        formatter
            .debug_struct("GcpCkms")
            .field("key_name", &self.key_name)
            .field("credentials", &credentials)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// Vault's environment variables for `gcpckms`, in order of precedence.
const GCP_ENVIRONMENT: &[(&str, &[&str])] = &[
    (
        "credentials",
        &["GOOGLE_CREDENTIALS", "GOOGLE_APPLICATION_CREDENTIALS"],
    ),
    ("project", &["GOOGLE_PROJECT"]),
    ("region", &["GOOGLE_REGION"]),
    (
        "key_ring",
        &["VAULT_GCPCKMS_SEAL_KEY_RING", "GCPCKMS_WRAPPER_KEY_RING"],
    ),
    (
        "crypto_key",
        &[
            "VAULT_GCPCKMS_SEAL_CRYPTO_KEY",
            "GCPCKMS_WRAPPER_CRYPTO_KEY",
        ],
    ),
    ("endpoint", &[]),
];

/// A field's value: the first environment variable set in `table`, else the
/// block's, as Vault reads them.
fn setting(
    table: &[(&str, &[&str])],
    environment: &dyn Fn(&str) -> Option<String>,
    fields: &mut std::collections::BTreeMap<&str, String>,
    key: &'static str,
) -> Option<String> {
    let names = table
        .iter()
        .find(|(field, _)| *field == key)
        .map_or(&[][..], |(_, names)| *names);
    names
        .iter()
        .find_map(|name| environment(name))
        .or_else(|| fields.remove(key))
        .filter(|value| !value.is_empty())
}

/// `seal "awskms"`: which KMS key, where, and as whom.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsKms {
    pub region: String,
    /// A key id, an ARN, or `alias/<name>`.
    pub kms_key_id: String,
    /// Static credentials; `None`: the SDK's default chain (environment,
    /// profile, web identity, instance metadata).
    pub credentials: Option<AwsCredentials>,
    /// Another KMS address (a VPC endpoint; a local KMS in tests).
    pub endpoint: Option<String>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

// The secret key never reaches a log line through Debug.
impl std::fmt::Debug for AwsKms {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AwsKms")
            .field("region", &self.region)
            .field("kms_key_id", &self.kms_key_id)
            .field("static_credentials", &self.credentials.is_some())
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// Vault's environment variables for `awskms`, in order of precedence.
const AWS_ENVIRONMENT: &[(&str, &[&str])] = &[
    ("region", &["AWS_REGION", "AWS_DEFAULT_REGION"]),
    ("access_key", &["AWS_ACCESS_KEY_ID"]),
    ("secret_key", &["AWS_SECRET_ACCESS_KEY"]),
    ("session_token", &["AWS_SESSION_TOKEN"]),
    (
        "kms_key_id",
        &["VAULT_AWSKMS_SEAL_KEY_ID", "AWSKMS_WRAPPER_KEY_ID"],
    ),
    ("endpoint", &["AWS_KMS_ENDPOINT"]),
];

impl Seal {
    /// The type `sys/seal-status` reports.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            SealKind::Static { .. } => "static",
            SealKind::AwsKms(_) => "awskms",
            SealKind::GcpCkms(_) => "gcpckms",
        }
    }
}

pub(super) fn parse_seal(block: &hcl::Block) -> Result<Seal, hcl::Error> {
    parse_seal_with(block, &|name| std::env::var(name).ok())
}

/// Parses with `environment` as the process environment (tests pass a table).
pub(super) fn parse_seal_with(
    block: &hcl::Block,
    environment: &dyn Fn(&str) -> Option<String>,
) -> Result<Seal, hcl::Error> {
    let kind = match block.labels.as_slice() {
        [kind] => kind.as_str(),
        _ => {
            return Err(hcl::Error::new(
                block.line,
                "a seal block takes one label, its type: seal \"static\" { ... }",
            ));
        }
    };
    let mut disabled = false;
    let mut fields = std::collections::BTreeMap::new();
    for attribute in &block.body.attributes {
        let key = attribute.key.as_str();
        match key {
            "disabled" => disabled = boolean(&attribute.value, "disabled")?,
            "current_key_id" | "current_key" | "previous_key_id" | "previous_key"
                if kind == "static" =>
            {
                fields.insert(key, string(&attribute.value, key)?);
            }
            "region" | "access_key" | "secret_key" | "session_token" | "kms_key_id"
            | "endpoint"
                if kind == "awskms" =>
            {
                fields.insert(key, string(&attribute.value, key)?);
            }
            "credentials" | "project" | "region" | "key_ring" | "crypto_key" | "endpoint"
                if kind == "gcpckms" =>
            {
                fields.insert(key, string(&attribute.value, key)?);
            }
            other => return Err(unknown(attribute.line, other, &format!("seal \"{kind}\""))),
        }
    }
    if let Some(nested) = block.body.blocks.first() {
        return Err(hcl::Error::new(
            nested.line,
            format!("seal \"{kind}\" takes no blocks"),
        ));
    }
    let kind = match kind {
        "static" => {
            let required = |key: &str| {
                fields
                    .get(key)
                    .filter(|value| !value.is_empty())
                    .cloned()
                    .ok_or_else(|| {
                        hcl::Error::new(block.line, format!("seal \"static\" needs {key}"))
                    })
            };
            let current_key_id = required("current_key_id")?;
            let current_key = required("current_key")?;
            let previous_key_id = fields.get("previous_key_id").filter(|id| !id.is_empty());
            let previous_key = fields.get("previous_key").filter(|key| !key.is_empty());
            if previous_key_id.is_some() != previous_key.is_some() {
                return Err(hcl::Error::new(
                    block.line,
                    "seal \"static\": previous_key_id and previous_key go together",
                ));
            }
            if previous_key_id == Some(&current_key_id) {
                return Err(hcl::Error::new(
                    block.line,
                    "seal \"static\": previous_key_id must differ from current_key_id",
                ));
            }
            for source in std::iter::once(&current_key).chain(previous_key) {
                if !source.starts_with("file://") && !source.starts_with("env://") {
                    return Err(hcl::Error::new(
                        block.line,
                        "seal \"static\": a key is file:///path or env://VARIABLE",
                    ));
                }
            }
            SealKind::Static {
                current_key_id,
                current_key,
                previous_key_id: previous_key_id.cloned(),
                previous_key: previous_key.cloned(),
            }
        }
        "awskms" => {
            // As Vault: the environment wins over the file.
            let mut value =
                |key: &'static str| setting(AWS_ENVIRONMENT, environment, &mut fields, key);
            let region = value("region").unwrap_or_else(|| "us-east-1".into());
            let kms_key_id = value("kms_key_id").ok_or_else(|| {
                hcl::Error::new(
                    block.line,
                    "seal \"awskms\" needs kms_key_id (or VAULT_AWSKMS_SEAL_KEY_ID)",
                )
            })?;
            let access_key = value("access_key");
            let secret_key = value("secret_key");
            let session_token = value("session_token");
            let credentials = match (access_key, secret_key) {
                (Some(access_key), Some(secret_key)) => Some(AwsCredentials {
                    access_key,
                    secret_key,
                    session_token,
                }),
                (None, None) => None,
                _ => {
                    return Err(hcl::Error::new(
                        block.line,
                        "seal \"awskms\": access_key and secret_key go together",
                    ));
                }
            };
            let endpoint = value("endpoint");
            if let Some(endpoint) = &endpoint
                && !endpoint.starts_with("https://")
                && !endpoint.starts_with("http://")
            {
                return Err(hcl::Error::new(
                    block.line,
                    "seal \"awskms\": endpoint is an http:// or https:// URL",
                ));
            }
            SealKind::AwsKms(AwsKms {
                region,
                kms_key_id,
                credentials,
                endpoint,
            })
        }
        "gcpckms" => {
            let mut value =
                |key: &'static str| setting(GCP_ENVIRONMENT, environment, &mut fields, key);
            let mut required = |key: &'static str, variable: &str| {
                value(key).ok_or_else(|| {
                    hcl::Error::new(
                        block.line,
                        format!("seal \"gcpckms\" needs {key} (or {variable})"),
                    )
                })
            };
            let project = required("project", "GOOGLE_PROJECT")?;
            let key_ring = required("key_ring", "VAULT_GCPCKMS_SEAL_KEY_RING")?;
            let crypto_key = required("crypto_key", "VAULT_GCPCKMS_SEAL_CRYPTO_KEY")?;
            let region = value("region").unwrap_or_else(|| "global".into());
            let credentials = value("credentials");
            let endpoint = value("endpoint")
                .unwrap_or_else(|| "https://cloudkms.googleapis.com".into())
                .trim_end_matches('/')
                .to_owned();
            if !endpoint.starts_with("https://") && !endpoint.starts_with("http://") {
                return Err(hcl::Error::new(
                    block.line,
                    "seal \"gcpckms\": endpoint is an http:// or https:// URL",
                ));
            }
            for (key, part) in [
                ("project", &project),
                ("region", &region),
                ("key_ring", &key_ring),
                ("crypto_key", &crypto_key),
            ] {
                if part.contains('/') || part.contains('?') || part.contains('#') {
                    return Err(hcl::Error::new(
                        block.line,
                        format!("seal \"gcpckms\": {key} is a name, without '/'"),
                    ));
                }
            }
            SealKind::GcpCkms(GcpCkms {
                key_name: format!(
                    "projects/{project}/locations/{region}/keyRings/{key_ring}/cryptoKeys/{crypto_key}"
                ),
                credentials,
                endpoint,
            })
        }
        other => {
            return Err(hcl::Error::new(
                block.line,
                format!(
                    "unsupported seal type {other:?}: coffer builds \"awskms\", \"gcpckms\" and \"static\""
                ),
            ));
        }
    };
    Ok(Seal { kind, disabled })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, environment: &[(&str, &str)]) -> Result<Seal, String> {
        let body = hcl::parse(text).map_err(|error| error.to_string())?;
        let block = body.blocks.first().expect("a block");
        parse_seal_with(block, &|name| {
            environment
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
        .map_err(|error| error.to_string())
    }

    #[test]
    fn gcpckms_names_the_key_and_the_environment_wins() {
        let text = "seal \"gcpckms\" {\n project = \"p\"\n key_ring = \"ring\"\n crypto_key = \"key\"\n endpoint = \"http://127.0.0.1:9/\"\n credentials = \"/etc/coffer/sa.json\"\n}\n";
        let Seal {
            kind: SealKind::GcpCkms(gcp),
            ..
        } = parse(text, &[]).unwrap()
        else {
            panic!("not gcpckms");
        };
        assert_eq!(
            gcp.key_name,
            "projects/p/locations/global/keyRings/ring/cryptoKeys/key"
        );
        assert_eq!(gcp.endpoint, "http://127.0.0.1:9");
        assert_eq!(gcp.credentials.as_deref(), Some("/etc/coffer/sa.json"));
        let environment = [
            ("GOOGLE_REGION", "europe-west1"),
            ("VAULT_GCPCKMS_SEAL_CRYPTO_KEY", "env-key"),
        ];
        let Seal {
            kind: SealKind::GcpCkms(gcp),
            ..
        } = parse(text, &environment).unwrap()
        else {
            panic!("not gcpckms");
        };
        assert_eq!(
            gcp.key_name,
            "projects/p/locations/europe-west1/keyRings/ring/cryptoKeys/env-key"
        );
        let error = parse("seal \"gcpckms\" {\n project = \"p\"\n}\n", &[]).unwrap_err();
        assert!(error.contains("needs key_ring"), "{error}");
        let error = parse(
            "seal \"gcpckms\" {\n project = \"p/x\"\n key_ring = \"r\"\n crypto_key = \"k\"\n}\n",
            &[],
        )
        .unwrap_err();
        assert!(error.contains("without '/'"), "{error}");
    }

    #[test]
    fn awskms_takes_vaults_keys_and_the_environment_wins() {
        let text = "seal \"awskms\" {\n region = \"eu-west-1\"\n kms_key_id = \"alias/file\"\n access_key = \"AKIAFILE\"\n secret_key = \"file-secret\"\n endpoint = \"http://127.0.0.1:5000\"\n}\n";
        let Seal {
            kind: SealKind::AwsKms(aws),
            disabled,
        } = parse(text, &[]).unwrap()
        else {
            panic!("not awskms");
        };
        assert!(!disabled);
        assert_eq!(
            (
                aws.region.as_str(),
                aws.kms_key_id.as_str(),
                aws.endpoint.as_deref()
            ),
            ("eu-west-1", "alias/file", Some("http://127.0.0.1:5000"))
        );
        assert_eq!(aws.credentials.as_ref().unwrap().access_key, "AKIAFILE");
        assert!(!format!("{aws:?}").contains("file-secret"));

        let environment = [
            ("AWS_REGION", "us-west-2"),
            ("VAULT_AWSKMS_SEAL_KEY_ID", "alias/env"),
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ];
        let Seal {
            kind: SealKind::AwsKms(aws),
            ..
        } = parse(text, &environment).unwrap()
        else {
            panic!("not awskms");
        };
        assert_eq!(
            (aws.region.as_str(), aws.kms_key_id.as_str()),
            ("us-west-2", "alias/env")
        );
        let credentials = aws.credentials.unwrap();
        assert_eq!(
            (
                credentials.access_key.as_str(),
                credentials.secret_key.as_str()
            ),
            ("AKIAENV", "env-secret")
        );

        // No keys: the default chain; no key id: an error that says which.
        let Seal {
            kind: SealKind::AwsKms(aws),
            ..
        } = parse("seal \"awskms\" {\n kms_key_id = \"k\"\n}\n", &[]).unwrap()
        else {
            panic!("not awskms");
        };
        assert_eq!(aws.region, "us-east-1");
        assert!(aws.credentials.is_none());
        let error = parse("seal \"awskms\" {\n region = \"us-east-1\"\n}\n", &[]).unwrap_err();
        assert!(error.contains("needs kms_key_id"), "{error}");
        let error = parse(
            "seal \"awskms\" {\n kms_key_id = \"k\"\n access_key = \"a\"\n}\n",
            &[],
        )
        .unwrap_err();
        assert!(error.contains("go together"), "{error}");
        let error = parse(
            "seal \"awskms\" {\n kms_key_id = \"k\"\n current_key = \"a\"\n}\n",
            &[],
        )
        .unwrap_err();
        assert!(error.contains("current_key"), "{error}");
    }
}
