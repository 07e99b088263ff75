//! Auto-unseal: a key management service (or a static key) protects the
//! unseal key, so a node unseals itself at start with no operator.
//!
//! Envelope encryption, as Vault's wrappers do it: each record the seal protects
//! is encrypted (AES-256-GCM, the record's path as associated data) under a
//! fresh random **data key**, and only the data key goes to the KMS. The KMS is
//! called when a record is written (init, migration) and once per start to
//! read the unseal key back, never per request.
//!
//! Two records live under a seal: the unseal key at [`UNSEAL_KEY_PATH`] (it
//! opens the root key, which opens the keyring, as with Shamir) and the
//! recovery key at [`RECOVERY_KEY_PATH`], which operators hold as shares and
//! which is only ever compared, never used to decrypt: without the KMS key,
//! recovery keys open nothing.

mod aws_kms;
mod gcp_kms;
mod static_key;

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::barrier::{self, KEY_LEN};
use crate::config::{Seal, SealKind};
use crate::crypto;
use crate::leases::BoxFuture;

pub use aws_kms::AwsKmsWrapper;
pub use gcp_kms::GcpKmsWrapper;
pub use static_key::StaticWrapper;

/// The unseal key, wrapped by the seal (plaintext-readable while sealed).
pub const UNSEAL_KEY_PATH: &str = "core/hsm/barrier-unseal-keys";
/// The recovery key, wrapped by the seal.
pub const RECOVERY_KEY_PATH: &str = "core/recovery-key";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The KMS (or the static key's source) refused or could not be reached.
    #[error("{seal} seal: {message}")]
    Kms { seal: &'static str, message: String },
    /// The record was wrapped by a key this seal does not hold.
    #[error("{seal} seal: {path} was encrypted by key {key_id:?}, which this seal does not hold")]
    UnknownKey {
        seal: &'static str,
        path: String,
        key_id: String,
    },
    /// The record is not an envelope this seal made, or the KMS's answer
    /// does not open it.
    #[error("{seal} seal: {path} does not decrypt with this seal's key ({reason})")]
    Undecryptable {
        seal: &'static str,
        path: String,
        reason: &'static str,
    },
    #[error("the {path} record is missing from storage")]
    Missing { path: String },
    #[error(transparent)]
    Random(#[from] crypto::RandomError),
}

/// A data key wrapped by the seal, with the id of the key that wrapped it.
pub struct WrappedKey {
    pub key_id: String,
    pub ciphertext: Vec<u8>,
}

/// What protects the unseal key: a KMS key, or a static key.
pub trait Wrapper: Send + Sync + std::fmt::Debug {
    /// The seal's type as `sys/seal-status` reports it (`static`, `awskms`).
    fn kind(&self) -> &'static str;

    /// Checks at start that the key is usable (AWS's `DescribeKey`), so a
    /// misconfigured seal fails with a clear error naming the key.
    fn check(&self) -> BoxFuture<'_, Result<(), Error>>;

    /// Wraps a data key with the current key.
    fn wrap<'a>(&'a self, data_key: &'a [u8]) -> BoxFuture<'a, Result<WrappedKey, Error>>;

    /// Unwraps a data key wrapped by the key `key_id`.
    fn unwrap<'a>(
        &'a self,
        key_id: &'a str,
        wrapped: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, Error>>;
}

/// The wrapper a configured `seal` block describes.
pub fn from_config(seal: &Seal) -> Arc<dyn Wrapper> {
    match &seal.kind {
        SealKind::Static {
            current_key_id,
            current_key,
            previous_key_id,
            previous_key,
        } => Arc::new(StaticWrapper::new(
            (current_key_id.clone(), current_key.clone()),
            previous_key_id.clone().zip(previous_key.clone()),
        )),
        SealKind::AwsKms(aws) => Arc::new(AwsKmsWrapper::new(aws.clone())),
        SealKind::GcpCkms(gcp) => Arc::new(GcpKmsWrapper::new(gcp.clone())),
    }
}

/// A wrapper that records each call in the metrics (count, latency, last
/// error).
pub struct Observed {
    inner: Arc<dyn Wrapper>,
    metrics: crate::metrics::SealMetrics,
}

impl Observed {
    pub fn new(inner: Arc<dyn Wrapper>, metrics: crate::metrics::SealMetrics) -> Observed {
        Observed { inner, metrics }
    }

    fn record<T>(
        &self,
        call: &'static str,
        started: std::time::Instant,
        result: &Result<T, Error>,
    ) {
        let error = result.as_ref().err().map(ToString::to_string);
        self.metrics
            .record(self.inner.kind(), call, started.elapsed(), error.as_deref());
    }
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(formatter)
    }
}

impl Wrapper for Observed {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let result = self.inner.check().await;
            self.record("check", started, &result);
            result
        })
    }

    fn wrap<'a>(&'a self, data_key: &'a [u8]) -> BoxFuture<'a, Result<WrappedKey, Error>> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let result = self.inner.wrap(data_key).await;
            self.record("wrap", started, &result);
            result
        })
    }

    fn unwrap<'a>(
        &'a self,
        key_id: &'a str,
        wrapped: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, Error>> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let result = self.inner.unwrap(key_id, wrapped).await;
            self.record("unwrap", started, &result);
            result
        })
    }
}

/// An envelope as stored: JSON, every binary field in base64.
#[derive(Serialize, Deserialize)]
struct Envelope {
    /// Always `envelope`: the KMS wrapped only the data key.
    mechanism: String,
    /// The seal type that wrapped the data key.
    seal: String,
    key_id: String,
    wrapped_key: String,
    /// The record, sealed by the data key (barrier format: nonce inside).
    ciphertext: String,
}

const MECHANISM: &str = "envelope";

/// Encrypts `plaintext` for storage at `path` under a fresh data key that
/// `wrapper` wraps: one KMS call.
pub async fn seal_record(
    wrapper: &dyn Wrapper,
    path: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    let data_key = crypto::random_key::<KEY_LEN>()?;
    let ciphertext =
        barrier::seal_with_key(data_key.as_ref(), 0, path, plaintext).map_err(|_| {
            Error::Undecryptable {
                seal: wrapper.kind(),
                path: path.into(),
                reason: "encryption failed",
            }
        })?;
    let wrapped = wrapper.wrap(data_key.as_ref()).await?;
    let base64 = base64::engine::general_purpose::STANDARD;
    let envelope = Envelope {
        mechanism: MECHANISM.into(),
        seal: wrapper.kind().into(),
        key_id: wrapped.key_id,
        wrapped_key: base64.encode(&wrapped.ciphertext),
        ciphertext: base64.encode(&ciphertext),
    };
    // Serializing strings into JSON cannot fail.
    Ok(serde_json::to_vec(&envelope).unwrap_or_default())
}

/// Opens a record [`seal_record`] stored at `path`: one KMS call.
pub async fn open_record(
    wrapper: &dyn Wrapper,
    path: &str,
    stored: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let undecryptable = |reason| Error::Undecryptable {
        seal: wrapper.kind(),
        path: path.into(),
        reason,
    };
    let envelope: Envelope =
        serde_json::from_slice(stored).map_err(|_| undecryptable("not an envelope"))?;
    if envelope.mechanism != MECHANISM {
        return Err(undecryptable("unknown mechanism"));
    }
    if envelope.seal != wrapper.kind() {
        return Err(undecryptable("written by another seal type"));
    }
    let base64 = base64::engine::general_purpose::STANDARD;
    let wrapped_key = base64
        .decode(&envelope.wrapped_key)
        .map_err(|_| undecryptable("malformed wrapped key"))?;
    let ciphertext = base64
        .decode(&envelope.ciphertext)
        .map_err(|_| undecryptable("malformed ciphertext"))?;
    let data_key = wrapper.unwrap(&envelope.key_id, &wrapped_key).await?;
    if data_key.len() != KEY_LEN {
        return Err(undecryptable(
            "the KMS returned a data key of the wrong size",
        ));
    }
    barrier::open_with_key(&data_key, path, &ciphertext)
        .map_err(|_| undecryptable("message authentication failed"))
}

/// Reads and opens the record at `path` from `backend`.
pub async fn read_record(
    backend: &dyn crate::storage::Backend,
    wrapper: &dyn Wrapper,
    path: &str,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let stored = backend
        .get(path)
        .map_err(|error| Error::Kms {
            seal: wrapper.kind(),
            message: format!("reading {path}: {error}"),
        })?
        .ok_or_else(|| Error::Missing { path: path.into() })?;
    open_record(wrapper, path, &stored).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapper(dir: &tempfile::TempDir, id: &str, byte: u8) -> StaticWrapper {
        let path = dir.path().join(id);
        std::fs::write(&path, [byte; 32]).unwrap();
        StaticWrapper::new((id.into(), format!("file://{}", path.display())), None)
    }

    #[tokio::test]
    async fn a_record_opens_with_its_seal_only() {
        let dir = tempfile::tempdir().unwrap();
        let seal = wrapper(&dir, "k1", 1);
        let stored = seal_record(&seal, UNSEAL_KEY_PATH, b"the unseal key")
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&stored);
        assert!(!text.contains("the unseal key"), "{text}");
        let opened = open_record(&seal, UNSEAL_KEY_PATH, &stored).await.unwrap();
        assert_eq!(opened.as_slice(), b"the unseal key");

        // Another path: the associated data differs.
        assert!(matches!(
            open_record(&seal, RECOVERY_KEY_PATH, &stored).await,
            Err(Error::Undecryptable { .. })
        ));
        // Another key under the same id: the data key does not unwrap.
        let other = wrapper(&dir, "k1", 2);
        let error = open_record(&other, UNSEAL_KEY_PATH, &stored)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("message authentication failed"),
            "{error}"
        );
        // Another key id: named in the error.
        let other = wrapper(&dir, "k2", 1);
        let error = open_record(&other, UNSEAL_KEY_PATH, &stored)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("\"k1\""), "{error}");
        // Garbage.
        assert!(matches!(
            open_record(&seal, UNSEAL_KEY_PATH, b"{\"mechanism\":1}").await,
            Err(Error::Undecryptable { .. })
        ));
    }

    #[tokio::test]
    async fn a_tampered_envelope_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let seal = wrapper(&dir, "k1", 1);
        let stored = seal_record(&seal, UNSEAL_KEY_PATH, &[9u8; 32])
            .await
            .unwrap();
        let mut envelope: Envelope = serde_json::from_slice(&stored).unwrap();
        let base64 = base64::engine::general_purpose::STANDARD;
        let mut ciphertext = base64.decode(&envelope.ciphertext).unwrap();
        let last = ciphertext.len() - 1;
        ciphertext[last] ^= 1;
        envelope.ciphertext = base64.encode(&ciphertext);
        let tampered = serde_json::to_vec(&envelope).unwrap();
        assert!(matches!(
            open_record(&seal, UNSEAL_KEY_PATH, &tampered).await,
            Err(Error::Undecryptable { .. })
        ));
    }
}
