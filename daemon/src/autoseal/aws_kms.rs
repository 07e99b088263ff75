//! `seal "awskms"`: AWS KMS wraps the data keys, through `aws-sdk-kms`.
//! `DescribeKey` checks the key before init; `Encrypt` (without an
//! encryption context, as Vault) wraps; `Decrypt` (the ciphertext names its
//! key) unwraps. Calls give up after 10 s (the SDK retries inside that).

use std::time::Duration;

use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use zeroize::Zeroizing;

use super::{Error, WrappedKey, Wrapper};
use crate::config::AwsKms;
use crate::leases::BoxFuture;

const KIND: &str = "awskms";
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub struct AwsKmsWrapper {
    config: AwsKms,
    /// Made at the first call (loading the SDK's configuration is async).
    client: tokio::sync::OnceCell<aws_sdk_kms::Client>,
}

impl std::fmt::Debug for AwsKmsWrapper {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.config.fmt(formatter)
    }
}

impl AwsKmsWrapper {
    pub fn new(config: AwsKms) -> AwsKmsWrapper {
        AwsKmsWrapper {
            config,
            client: tokio::sync::OnceCell::new(),
        }
    }

    async fn client(&self) -> &aws_sdk_kms::Client {
        self.client
            .get_or_init(|| async {
                let timeouts = aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(OPERATION_TIMEOUT)
                    .connect_timeout(CONNECT_TIMEOUT)
                    .build();
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(self.config.region.clone()))
                    .timeout_config(timeouts);
                if let Some(credentials) = &self.config.credentials {
                    loader = loader.credentials_provider(aws_sdk_kms::config::Credentials::new(
                        credentials.access_key.clone(),
                        credentials.secret_key.clone(),
                        credentials.session_token.clone(),
                        None,
                        "coffer-seal-config",
                    ));
                }
                if let Some(endpoint) = &self.config.endpoint {
                    loader = loader.endpoint_url(endpoint.clone());
                }
                aws_sdk_kms::Client::new(&loader.load().await)
            })
            .await
    }

    /// An error naming the key, with the SDK's whole cause chain.
    fn failed(&self, call: &str, error: impl std::error::Error) -> Error {
        Error::Kms {
            seal: KIND,
            message: format!(
                "{call} with key {:?}: {}",
                self.config.kms_key_id,
                DisplayErrorContext(error)
            ),
        }
    }
}

impl Wrapper for AwsKmsWrapper {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn check(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let described = self
                .client()
                .await
                .describe_key()
                .key_id(&self.config.kms_key_id)
                .send()
                .await
                .map_err(|error| self.failed("DescribeKey", error))?;
            let usable = described
                .key_metadata()
                .is_some_and(|metadata| metadata.enabled());
            if !usable {
                return Err(Error::Kms {
                    seal: KIND,
                    message: format!("key {:?} is disabled", self.config.kms_key_id),
                });
            }
            Ok(())
        })
    }

    fn wrap<'a>(&'a self, data_key: &'a [u8]) -> BoxFuture<'a, Result<WrappedKey, Error>> {
        Box::pin(async move {
            let encrypted = self
                .client()
                .await
                .encrypt()
                .key_id(&self.config.kms_key_id)
                .plaintext(Blob::new(data_key.to_vec()))
                .send()
                .await
                .map_err(|error| self.failed("Encrypt", error))?;
            let ciphertext = encrypted.ciphertext_blob().ok_or_else(|| Error::Kms {
                seal: KIND,
                message: "Encrypt answered without a ciphertext".into(),
            })?;
            Ok(WrappedKey {
                key_id: encrypted
                    .key_id()
                    .unwrap_or(&self.config.kms_key_id)
                    .to_owned(),
                ciphertext: ciphertext.as_ref().to_vec(),
            })
        })
    }

    fn unwrap<'a>(
        &'a self,
        _key_id: &'a str,
        wrapped: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, Error>> {
        Box::pin(async move {
            let decrypted = self
                .client()
                .await
                .decrypt()
                .ciphertext_blob(Blob::new(wrapped.to_vec()))
                .send()
                .await
                .map_err(|error| self.failed("Decrypt", error))?;
            let plaintext = decrypted.plaintext().ok_or_else(|| Error::Kms {
                seal: KIND,
                message: "Decrypt answered without a plaintext".into(),
            })?;
            Ok(Zeroizing::new(plaintext.as_ref().to_vec()))
        })
    }
}
