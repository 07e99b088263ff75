//! The Shamir seal: what `sys/init` creates and `sys/unseal` opens.
//!
//! Three layers, as in Vault: the **unseal key** (never stored) is split into
//! Shamir shares for operators; it seals the **root key**, stored at
//! [`ROOT_KEY_PATH`]; the root key seals the **keyring** (see `barrier`), whose
//! terms seal everything else. The seal configuration at [`CONFIG_PATH`] is the
//! only plaintext record: share count and threshold.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::autoseal::{self, RECOVERY_KEY_PATH, UNSEAL_KEY_PATH, Wrapper};
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
    #[error(transparent)]
    AutoSeal(#[from] autoseal::Error),
    #[error("{0}")]
    Recovery(String),
    #[error("the recovery key shares do not match this server's recovery key")]
    InvalidRecoveryKey,
    #[error(
        "this server has no recovery key (it was initialized with recovery_shares 0): restart it to unseal"
    )]
    NoRecoveryKey,
}

/// How the unseal key is kept: split into shares (`shamir`) or wrapped by an
/// auto seal (its type: `static`, ...), with the recovery key split into
/// shares. Stored in plaintext: it holds no secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SealConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub secret_shares: u8,
    pub secret_threshold: u8,
    /// Under an auto seal: how the recovery key is split (0: no recovery key).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recovery_shares: u8,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recovery_threshold: u8,
}

fn is_zero(value: &u8) -> bool {
    *value == 0
}

pub const SHAMIR: &str = "shamir";

impl SealConfig {
    pub fn shamir(shares: u8, threshold: u8) -> SealConfig {
        SealConfig {
            kind: SHAMIR.into(),
            secret_shares: shares,
            secret_threshold: threshold,
            recovery_shares: 0,
            recovery_threshold: 0,
        }
    }

    /// Whether an auto seal keeps the unseal key (operators hold recovery keys).
    pub fn is_auto(&self) -> bool {
        self.kind != SHAMIR
    }

    /// The shares operators type (`t`, `n` in `sys/seal-status`): unseal key
    /// shares, or recovery key shares under an auto seal.
    pub fn key_shares(&self) -> (u8, u8) {
        if self.is_auto() {
            (self.recovery_shares, self.recovery_threshold)
        } else {
            (self.secret_shares, self.secret_threshold)
        }
    }
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
    /// The operators' shares: of the unseal key, or of the recovery key under
    /// an auto seal.
    pub shares: Vec<Zeroizing<Vec<u8>>>,
    pub keyring: Keyring,
    pub records: Vec<(String, Vec<u8>)>,
    pub unseal_key: Zeroizing<[u8; KEY_LEN]>,
}

/// Generates the unseal key, root key and keyring.
pub fn initialize(shares: u8, threshold: u8) -> Result<Initialized, Error> {
    shamir::validate(shares, threshold)?;
    let unseal_key = crypto::random_key::<KEY_LEN>()?;
    let root_key = crypto::random_key::<KEY_LEN>()?;
    let sealed_root =
        barrier::seal_with_key(unseal_key.as_ref(), 0, ROOT_KEY_PATH, root_key.as_ref())?;
    let keyring = Keyring::generate(root_key)?;
    let config = SealConfig::shamir(shares, threshold);
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
        unseal_key,
    })
}

/// Generates the keys under an auto seal: the unseal key, wrapped by
/// `wrapper`, and (with `recovery_shares` > 0) a recovery key, wrapped too and
/// split into the operators' shares. Two KMS calls (one per record).
pub async fn initialize_auto(
    wrapper: &dyn Wrapper,
    recovery_shares: u8,
    recovery_threshold: u8,
) -> Result<Initialized, Error> {
    if recovery_shares > 0 || recovery_threshold > 0 {
        shamir::validate(recovery_shares, recovery_threshold).map_err(recovery_wording)?;
    }
    let mut initialized = initialize(1, 1)?;
    let config = SealConfig {
        kind: wrapper.kind().into(),
        secret_shares: 1,
        secret_threshold: 1,
        recovery_shares,
        recovery_threshold,
    };
    let config_bytes = serde_json::to_vec(&config).map_err(|_| Error::MalformedConfig)?;
    let wrapped_unseal_key =
        autoseal::seal_record(wrapper, UNSEAL_KEY_PATH, initialized.unseal_key.as_ref()).await?;
    initialized.records.retain(|(path, _)| path != CONFIG_PATH);
    initialized
        .records
        .push((CONFIG_PATH.to_owned(), config_bytes));
    initialized
        .records
        .push((UNSEAL_KEY_PATH.to_owned(), wrapped_unseal_key));
    initialized.shares = Vec::new();
    if recovery_shares > 0 {
        let recovery_key = crypto::random_key::<KEY_LEN>()?;
        let wrapped =
            autoseal::seal_record(wrapper, RECOVERY_KEY_PATH, recovery_key.as_ref()).await?;
        initialized
            .records
            .push((RECOVERY_KEY_PATH.to_owned(), wrapped));
        initialized.shares =
            shamir::split(recovery_key.as_ref(), recovery_shares, recovery_threshold)?;
    }
    Ok(initialized)
}

/// What a seal migration writes, made on the node where the operators' keys
/// were checked and written by whichever node leads (see `core`).
pub struct Migration {
    pub config: SealConfig,
    pub records: Vec<(String, Vec<u8>)>,
    pub removed: Vec<&'static str>,
}

/// Prepares a migration of the data sealed as `from` to the seal `to` (`None`:
/// Shamir). `unseal_key` is the current unseal key; `operator_key` the key the
/// operators' shares combined to (the unseal key itself under Shamir, the
/// recovery key under an auto seal). As in Vault, unseal keys become
/// recovery keys and back: the operators keep the shares they have.
pub async fn migration(
    backend: &dyn Backend,
    from: &SealConfig,
    unseal_key: &[u8],
    operator_key: &[u8],
    to: Option<&dyn Wrapper>,
) -> Result<Migration, Error> {
    let sealed_root = backend.get(ROOT_KEY_PATH)?.ok_or(Error::MissingRootKey)?;
    let root = barrier::open_with_key(unseal_key, ROOT_KEY_PATH, &sealed_root)
        .map_err(|_| Error::InvalidKey)?;
    let (shares, threshold) = from.key_shares();
    match to {
        Some(wrapper) => {
            // A fresh unseal key only the new seal can give back; the
            // operators' key becomes (or stays) the recovery key.
            let new_key = crypto::random_key::<KEY_LEN>()?;
            let sealed_root = barrier::seal_with_key(new_key.as_ref(), 0, ROOT_KEY_PATH, &root)?;
            let wrapped_unseal_key =
                autoseal::seal_record(wrapper, UNSEAL_KEY_PATH, new_key.as_ref()).await?;
            let wrapped_recovery_key =
                autoseal::seal_record(wrapper, RECOVERY_KEY_PATH, operator_key).await?;
            Ok(Migration {
                config: SealConfig {
                    kind: wrapper.kind().into(),
                    secret_shares: 1,
                    secret_threshold: 1,
                    recovery_shares: shares,
                    recovery_threshold: threshold,
                },
                records: vec![
                    (ROOT_KEY_PATH.to_owned(), sealed_root),
                    (UNSEAL_KEY_PATH.to_owned(), wrapped_unseal_key),
                    (RECOVERY_KEY_PATH.to_owned(), wrapped_recovery_key),
                ],
                removed: Vec::new(),
            })
        }
        None => {
            // The recovery key becomes the unseal key.
            if operator_key.len() != KEY_LEN {
                return Err(Error::InvalidRecoveryKey);
            }
            let sealed_root = barrier::seal_with_key(operator_key, 0, ROOT_KEY_PATH, &root)?;
            Ok(Migration {
                config: SealConfig::shamir(shares, threshold),
                records: vec![(ROOT_KEY_PATH.to_owned(), sealed_root)],
                removed: vec![UNSEAL_KEY_PATH, RECOVERY_KEY_PATH],
            })
        }
    }
}

/// `secret_*` in shamir's texts become `recovery_*`.
fn recovery_wording(error: shamir::Error) -> Error {
    Error::Recovery(error.to_string().replace("secret_", "recovery_"))
}

/// Under an auto seal: the unseal key, read from storage and unwrapped by the
/// seal (one KMS call).
pub async fn unwrap_unseal_key(
    backend: &dyn Backend,
    wrapper: &dyn Wrapper,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    Ok(autoseal::read_record(backend, wrapper, UNSEAL_KEY_PATH).await?)
}

/// Under an auto seal: checks combined recovery key shares against the stored
/// recovery key (one KMS call), in constant time.
pub async fn check_recovery_key(
    backend: &dyn Backend,
    wrapper: &dyn Wrapper,
    candidate: &[u8],
) -> Result<(), Error> {
    if backend.get(RECOVERY_KEY_PATH)?.is_none() {
        return Err(Error::NoRecoveryKey);
    }
    let recovery_key = autoseal::read_record(backend, wrapper, RECOVERY_KEY_PATH).await?;
    if crypto::constant_time_eq(&recovery_key, candidate) {
        Ok(())
    } else {
        Err(Error::InvalidRecoveryKey)
    }
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
    let config = SealConfig::shamir(shares, threshold);
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
        let (shares, threshold) = config.key_shares();
        let expected_len = if shares == 1 { KEY_LEN } else { KEY_LEN + 1 };
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
        if self.shares.len() < usize::from(threshold) {
            return Ok(Submitted::Pending);
        }
        let combined = shamir::combine(&self.shares, threshold);
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
        SealConfig::shamir(shares, threshold)
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

    fn static_wrapper(dir: &tempfile::TempDir, byte: u8) -> autoseal::StaticWrapper {
        let path = dir.path().join(format!("key-{byte}"));
        std::fs::write(&path, [byte; 32]).unwrap();
        autoseal::StaticWrapper::new(("k".into(), format!("file://{}", path.display())), None)
    }

    async fn apply(backend: &Arc<dyn Backend>, migration: Migration) {
        let mut ops: Vec<Op> = migration
            .records
            .into_iter()
            .map(|(key, value)| Op::Put { key, value })
            .collect();
        ops.push(Op::Put {
            key: CONFIG_PATH.into(),
            value: serde_json::to_vec(&migration.config).unwrap(),
        });
        for key in migration.removed {
            ops.push(Op::Delete { key: key.into() });
        }
        backend
            .apply(Command {
                ops,
                ..Default::default()
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_auto_seal_opens_with_its_key_and_recovery_keys_only_authorize() {
        let dir = tempfile::tempdir().unwrap();
        let wrapper = static_wrapper(&dir, 1);
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        let initialized = store(&backend, initialize_auto(&wrapper, 3, 2).await.unwrap()).await;
        let config = read_config(backend.as_ref()).unwrap().unwrap();
        assert_eq!(
            (config.kind.as_str(), config.key_shares()),
            ("static", (3, 2))
        );
        let unseal_key = unwrap_unseal_key(backend.as_ref(), &wrapper).await.unwrap();
        assert_eq!(unseal_key.as_slice(), initialized.unseal_key.as_ref());
        let keyring = open(backend.as_ref(), &unseal_key).unwrap();
        assert_eq!(keyring.active_term(), initialized.keyring.active_term());

        let recovery_key = shamir::combine(&initialized.shares[1..], 2).unwrap();
        check_recovery_key(backend.as_ref(), &wrapper, &recovery_key)
            .await
            .unwrap();
        assert!(matches!(
            check_recovery_key(backend.as_ref(), &wrapper, &[0u8; 32]).await,
            Err(Error::InvalidRecoveryKey)
        ));
        // The recovery key opens nothing by itself.
        assert!(matches!(
            open(backend.as_ref(), &recovery_key),
            Err(Error::InvalidKey)
        ));
        // Another key: nothing opens.
        let other = static_wrapper(&dir, 2);
        assert!(unwrap_unseal_key(backend.as_ref(), &other).await.is_err());
        assert!(
            check_recovery_key(backend.as_ref(), &other, &recovery_key)
                .await
                .is_err()
        );
        // Without recovery shares there is no recovery key.
        let bare: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        store(&bare, initialize_auto(&wrapper, 0, 0).await.unwrap()).await;
        assert!(matches!(
            check_recovery_key(bare.as_ref(), &wrapper, &recovery_key).await,
            Err(Error::NoRecoveryKey)
        ));
        assert!(matches!(
            initialize_auto(&wrapper, 3, 1).await.err(),
            Some(Error::Recovery(text)) if text.contains("recovery_threshold")
        ));
    }

    #[tokio::test]
    async fn migration_to_a_seal_and_back_keeps_the_keyring_and_the_shares() {
        let dir = tempfile::tempdir().unwrap();
        let wrapper = static_wrapper(&dir, 3);
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        let initialized = store(&backend, initialize(3, 2).unwrap()).await;
        let term = initialized.keyring.active_term();
        let shamir_config = config(3, 2);
        let unseal_key = shamir::combine(&initialized.shares[..2], 2).unwrap();

        let to_auto = migration(
            backend.as_ref(),
            &shamir_config,
            &unseal_key,
            &unseal_key,
            Some(&wrapper),
        )
        .await
        .unwrap();
        apply(&backend, to_auto).await;
        let auto_config = read_config(backend.as_ref()).unwrap().unwrap();
        assert_eq!(
            (auto_config.kind.as_str(), auto_config.key_shares()),
            ("static", (3, 2))
        );
        // The old unseal key opens nothing now; it is the recovery key.
        assert!(open(backend.as_ref(), &unseal_key).is_err());
        check_recovery_key(backend.as_ref(), &wrapper, &unseal_key)
            .await
            .unwrap();
        let new_key = unwrap_unseal_key(backend.as_ref(), &wrapper).await.unwrap();
        assert_eq!(
            open(backend.as_ref(), &new_key).unwrap().active_term(),
            term
        );

        let recovery = shamir::combine(&initialized.shares[1..], 2).unwrap();
        let back = migration(backend.as_ref(), &auto_config, &new_key, &recovery, None)
            .await
            .unwrap();
        apply(&backend, back).await;
        assert_eq!(read_config(backend.as_ref()).unwrap(), Some(config(3, 2)));
        assert!(backend.get(UNSEAL_KEY_PATH).unwrap().is_none());
        assert!(backend.get(RECOVERY_KEY_PATH).unwrap().is_none());
        // The operators' original shares unseal again.
        assert_eq!(
            open(backend.as_ref(), &unseal_key).unwrap().active_term(),
            term
        );
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
