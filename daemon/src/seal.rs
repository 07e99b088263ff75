//! The Shamir seal: what `sys/init` creates and `sys/unseal` opens.
//!
//! Three layers, as in Vault: the **unseal key** (never stored) is split into
//! Shamir shares for operators; it seals the **root key**, stored at
//! [`ROOT_KEY_PATH`]; the root key seals the **keyring** (see `barrier`), whose
//! terms seal everything else. The seal configuration at [`CONFIG_PATH`] is the
//! only plaintext record: share count and threshold.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::barrier::{self, KEY_LEN, KEYRING_PATH, Keyring};
use crate::crypto;
use crate::shamir;
use crate::storage::Backend;

pub const CONFIG_PATH: &str = "core/seal-config";
pub const ROOT_KEY_PATH: &str = "core/root-key";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Shares(#[from] shamir::Error),
    #[error("unseal failed: the key shares do not open this server's root key")]
    InvalidKey,
    #[error("the stored seal configuration is malformed")]
    MalformedConfig,
    #[error("the server is initialized but its root key is missing from storage")]
    MissingRootKey,
    #[error(transparent)]
    Barrier(#[from] barrier::Error),
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
    #[error(transparent)]
    Random(#[from] crypto::RandomError),
}

/// How the unseal key is split. Stored in plaintext: it holds no secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SealConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub secret_shares: u8,
    pub secret_threshold: u8,
}

/// The seal configuration, or `None` when the server is not initialized.
pub fn read_config(backend: &dyn Backend) -> Result<Option<SealConfig>, Error> {
    match backend.get(CONFIG_PATH)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| Error::MalformedConfig),
        None => Ok(None),
    }
}

/// What initialization made: the shares for the operators, the open keyring, and
/// the seal's own records (stored below the barrier, in the same atomic command as
/// the rest of the initial state).
pub struct Initialized {
    pub shares: Vec<Zeroizing<Vec<u8>>>,
    pub keyring: Keyring,
    pub records: Vec<(String, Vec<u8>)>,
}

/// Generates the unseal key, root key and keyring.
pub fn initialize(shares: u8, threshold: u8) -> Result<Initialized, Error> {
    shamir::validate(shares, threshold)?;
    let unseal_key = crypto::random_key::<KEY_LEN>()?;
    let root_key = crypto::random_key::<KEY_LEN>()?;
    let sealed_root =
        barrier::seal_with_key(unseal_key.as_ref(), 0, ROOT_KEY_PATH, root_key.as_ref())?;
    let keyring = Keyring::generate(root_key)?;
    let config = SealConfig {
        kind: "shamir".into(),
        secret_shares: shares,
        secret_threshold: threshold,
    };
    let config_bytes = serde_json::to_vec(&config).map_err(|_| Error::MalformedConfig)?;
    let records = vec![
        (CONFIG_PATH.to_owned(), config_bytes),
        (ROOT_KEY_PATH.to_owned(), sealed_root),
        (KEYRING_PATH.to_owned(), keyring.seal()?),
    ];
    let shares = shamir::split(unseal_key.as_ref(), shares, threshold)?;
    Ok(Initialized {
        shares,
        keyring,
        records,
    })
}

/// A new unseal key for the same root key, split anew: what a rekey makes.
/// Nothing is stored until the caller commits `records`.
pub struct Rekeyed {
    pub config: SealConfig,
    pub shares: Vec<Zeroizing<Vec<u8>>>,
    pub unseal_key: Zeroizing<[u8; KEY_LEN]>,
    pub records: Vec<(String, Vec<u8>)>,
}

/// Rekeys: opens the root key with the current `unseal_key`, seals it with a
/// new random unseal key and splits that into `shares` with `threshold`.
pub fn rekey(
    backend: &dyn Backend,
    unseal_key: &[u8],
    shares: u8,
    threshold: u8,
) -> Result<Rekeyed, Error> {
    shamir::validate(shares, threshold)?;
    let sealed_root = backend.get(ROOT_KEY_PATH)?.ok_or(Error::MissingRootKey)?;
    let root = barrier::open_with_key(unseal_key, ROOT_KEY_PATH, &sealed_root)
        .map_err(|_| Error::InvalidKey)?;
    let new_key = crypto::random_key::<KEY_LEN>()?;
    let sealed_root = barrier::seal_with_key(new_key.as_ref(), 0, ROOT_KEY_PATH, &root)?;
    let config = SealConfig {
        kind: "shamir".into(),
        secret_shares: shares,
        secret_threshold: threshold,
    };
    let config_bytes = serde_json::to_vec(&config).map_err(|_| Error::MalformedConfig)?;
    Ok(Rekeyed {
        shares: shamir::split(new_key.as_ref(), shares, threshold)?,
        config,
        unseal_key: new_key,
        records: vec![
            (CONFIG_PATH.to_owned(), config_bytes),
            (ROOT_KEY_PATH.to_owned(), sealed_root),
        ],
    })
}

/// Opens the keyring with a combined unseal key.
pub fn open(backend: &dyn Backend, unseal_key: &[u8]) -> Result<Keyring, Error> {
    let sealed_root = backend.get(ROOT_KEY_PATH)?.ok_or(Error::MissingRootKey)?;
    let sealed_keyring = backend.get(KEYRING_PATH)?.ok_or(Error::MissingRootKey)?;
    open_records(&sealed_root, &sealed_keyring, unseal_key)
}

/// Opens the keyring from the sealed root key and keyring records themselves (a
/// joining node has them from the leader before it has a replica).
pub fn open_records(
    sealed_root: &[u8],
    sealed_keyring: &[u8],
    unseal_key: &[u8],
) -> Result<Keyring, Error> {
    let root = barrier::open_with_key(unseal_key, ROOT_KEY_PATH, sealed_root)
        .map_err(|_| Error::InvalidKey)?;
    if root.len() != KEY_LEN {
        return Err(Error::InvalidKey);
    }
    let mut root_key = Zeroizing::new([0u8; KEY_LEN]);
    root_key.copy_from_slice(&root);
    Ok(Keyring::open(root_key, sealed_keyring)?)
}

/// Key shares submitted so far towards one unseal.
#[derive(Default)]
pub struct Progress {
    shares: Vec<Zeroizing<Vec<u8>>>,
    nonce: String,
}

/// What one submitted share did.
pub enum Submitted {
    /// More shares are needed.
    Pending,
    /// The threshold is reached: here is the combined unseal key.
    Complete(Zeroizing<Vec<u8>>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("this key share was already provided for the current unseal attempt")]
    Duplicate,
    #[error("the key share has the wrong length for this server")]
    WrongLength,
}

impl Progress {
    pub fn count(&self) -> usize {
        self.shares.len()
    }

    /// A random id for the current attempt; empty when no share is pending.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    pub fn reset(&mut self) {
        self.shares.clear();
        self.nonce.clear();
    }

    /// Adds one share; combines them once `config`'s threshold is reached (and
    /// then forgets them, whatever the outcome).
    pub fn submit(
        &mut self,
        config: &SealConfig,
        share: Zeroizing<Vec<u8>>,
    ) -> Result<Submitted, SubmitError> {
        let expected_len = if config.secret_shares == 1 {
            KEY_LEN
        } else {
            KEY_LEN + 1
        };
        if share.len() != expected_len {
            return Err(SubmitError::WrongLength);
        }
        if self
            .shares
            .iter()
            .any(|existing| crypto::constant_time_eq(existing, &share))
        {
            return Err(SubmitError::Duplicate);
        }
        if self.shares.is_empty() {
            self.nonce = coffer_protocols::request::new_request_id();
        }
        self.shares.push(share);
        if self.shares.len() < usize::from(config.secret_threshold) {
            return Ok(Submitted::Pending);
        }
        let combined = shamir::combine(&self.shares, config.secret_threshold);
        self.reset();
        match combined {
            Ok(key) => Ok(Submitted::Complete(key)),
            // Inconsistent shares: report them as a key that does not open.
            Err(_) => Ok(Submitted::Complete(Zeroizing::new(Vec::new()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryBackend;
    use crate::storage::{Command, Op};
    use std::sync::Arc;

    async fn store(backend: &Arc<dyn Backend>, initialized: Initialized) -> Initialized {
        let ops = initialized
            .records
            .iter()
            .map(|(key, value)| Op::Put {
                key: key.clone(),
                value: value.clone(),
            })
            .collect();
        backend
            .apply(Command {
                ops,
                ..Default::default()
            })
            .await
            .unwrap();
        initialized
    }

    fn config(shares: u8, threshold: u8) -> SealConfig {
        SealConfig {
            kind: "shamir".into(),
            secret_shares: shares,
            secret_threshold: threshold,
        }
    }

    #[tokio::test]
    async fn initialize_then_open_with_threshold_shares() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        let initialized = store(&backend, initialize(5, 3).unwrap()).await;
        assert_eq!(read_config(backend.as_ref()).unwrap(), Some(config(5, 3)));

        let mut progress = Progress::default();
        let seal_config = config(5, 3);
        assert!(matches!(
            progress.submit(&seal_config, initialized.shares[4].clone()),
            Ok(Submitted::Pending)
        ));
        assert_eq!(
            progress
                .submit(&seal_config, initialized.shares[4].clone())
                .err(),
            Some(SubmitError::Duplicate)
        );
        assert!(!progress.nonce().is_empty());
        assert!(matches!(
            progress.submit(&seal_config, initialized.shares[1].clone()),
            Ok(Submitted::Pending)
        ));
        let Ok(Submitted::Complete(key)) =
            progress.submit(&seal_config, initialized.shares[2].clone())
        else {
            panic!("three shares should complete");
        };
        assert_eq!(progress.count(), 0);
        let keyring = open(backend.as_ref(), &key).unwrap();
        assert_eq!(keyring.active_term(), initialized.keyring.active_term());
    }

    #[tokio::test]
    async fn threshold_minus_one_shares_do_not_open() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        let initialized = store(&backend, initialize(3, 3).unwrap()).await;
        let guessed = shamir::combine(&initialized.shares[..2], 2).unwrap();
        assert!(matches!(
            open(backend.as_ref(), &guessed),
            Err(Error::InvalidKey)
        ));
        assert!(matches!(
            open(backend.as_ref(), &[7u8; 32]),
            Err(Error::InvalidKey)
        ));
    }

    #[test]
    fn wrong_length_share_is_refused_without_progress() {
        let mut progress = Progress::default();
        assert_eq!(
            progress
                .submit(&config(3, 2), Zeroizing::new(vec![1, 2, 3]))
                .err(),
            Some(SubmitError::WrongLength)
        );
        assert_eq!(progress.count(), 0);
    }
}
