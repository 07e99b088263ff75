//! `seal "static"`: a 32-byte key the operator keeps in a file or an
//! environment variable wraps the data keys, for sites without a cloud KMS.
//! The key is read again at every use, so fixing a wrong file lets the next
//! unseal attempt succeed without a restart.

use base64::Engine as _;
use zeroize::Zeroizing;

use super::{Error, WrappedKey, Wrapper};
use crate::barrier::{self, KEY_LEN};
use crate::leases::BoxFuture;

const KIND: &str = "static";
/// Associated data of a wrapped data key.
const WRAP_LABEL: &str = "coffer static seal data key";

#[derive(Debug)]
pub struct StaticWrapper {
    /// (key id, `file://PATH` or `env://VAR`).
    current: (String, String),
    previous: Option<(String, String)>,
}

impl StaticWrapper {
    pub fn new(current: (String, String), previous: Option<(String, String)>) -> StaticWrapper {
        StaticWrapper { current, previous }
    }

    fn source_of(&self, key_id: &str) -> Option<&str> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|(id, _)| id == key_id)
            .map(|(_, source)| source.as_str())
    }
}

/// Reads a key from `file://PATH` or `env://VAR`: 32 bytes raw, or hex or
/// base64 of 32 bytes. Errors name the source, never the content.
fn read_key(key_id: &str, source: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    let failed = |message: String| Error::Kms {
        seal: KIND,
        message: format!("key {key_id:?} from {source}: {message}"),
    };
    let content = if let Some(path) = source.strip_prefix("file://") {
        Zeroizing::new(
            std::fs::read(path).map_err(|error| failed(format!("cannot be read: {error}")))?,
        )
    } else if let Some(variable) = source.strip_prefix("env://") {
        Zeroizing::new(
            std::env::var_os(variable)
                .ok_or_else(|| failed("the variable is not set".into()))?
                .into_encoded_bytes(),
        )
    } else {
        return Err(failed("a key is file:///path or env://VARIABLE".into()));
    };
    if content.len() == KEY_LEN {
        return Ok(content);
    }
    let text = std::str::from_utf8(&content)
        .map(str::trim)
        .map_err(|_| failed("not 32 bytes, nor hex or base64 of 32 bytes".into()))?;
    let decoded = hex::decode(text)
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
        .map(Zeroizing::new);
    match decoded {
        Some(key) if key.len() == KEY_LEN => Ok(key),
        _ => Err(failed("not 32 bytes, nor hex or base64 of 32 bytes".into())),
    }
}

impl Wrapper for StaticWrapper {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn check(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            read_key(&self.current.0, &self.current.1)?;
            if let Some((id, source)) = &self.previous {
                read_key(id, source)?;
            }
            Ok(())
        })
    }

    fn wrap<'a>(&'a self, data_key: &'a [u8]) -> BoxFuture<'a, Result<WrappedKey, Error>> {
        Box::pin(async move {
            let (key_id, source) = &self.current;
            let key = read_key(key_id, source)?;
            let ciphertext =
                barrier::seal_with_key(&key, 0, WRAP_LABEL, data_key).map_err(|_| Error::Kms {
                    seal: KIND,
                    message: "encryption failed".into(),
                })?;
            Ok(WrappedKey {
                key_id: key_id.clone(),
                ciphertext,
            })
        })
    }

    fn unwrap<'a>(
        &'a self,
        key_id: &'a str,
        wrapped: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, Error>> {
        Box::pin(async move {
            let source = self.source_of(key_id).ok_or_else(|| Error::UnknownKey {
                seal: KIND,
                path: "the data key".into(),
                key_id: key_id.into(),
            })?;
            let key = read_key(key_id, source)?;
            barrier::open_with_key(&key, WRAP_LABEL, wrapped).map_err(|_| Error::Kms {
                seal: KIND,
                message: format!(
                    "key {key_id:?} from {source} does not decrypt the data key: message authentication failed"
                ),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_raw_hex_or_base64() {
        let dir = tempfile::tempdir().unwrap();
        let check = |content: &[u8], expected: Option<[u8; 32]>| {
            let path = dir.path().join("key");
            std::fs::write(&path, content).unwrap();
            let source = format!("file://{}", path.display());
            match (read_key("k", &source), expected) {
                (Ok(key), Some(expected)) => assert_eq!(key.as_slice(), expected),
                (Err(error), None) => {
                    let text = error.to_string();
                    assert!(text.contains(&source), "{text}");
                    assert!(!text.contains("zzzz"), "{text}");
                }
                (result, _) => panic!("{content:?}: {:?}", result.map(|_| ())),
            }
        };
        check(&[7u8; 32], Some([7; 32]));
        check(
            format!("{}\n", hex::encode([8u8; 32])).as_bytes(),
            Some([8; 32]),
        );
        let base64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        check(base64.as_bytes(), Some([9; 32]));
        check(b"zzzz", None);
        // Exactly 32 bytes are taken as they are; hex of another length is not a key.
        check(hex::encode([1u8; 20]).as_bytes(), None);
        let missing = read_key("k", "file:///nonexistent/key").unwrap_err();
        assert!(missing.to_string().contains("cannot be read"), "{missing}");
        let unset = read_key("k", "env://COFFER_TEST_UNSET_VARIABLE").unwrap_err();
        assert!(unset.to_string().contains("not set"), "{unset}");
    }

    #[tokio::test]
    async fn the_previous_key_still_unwraps_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let old_path = dir.path().join("old");
        let new_path = dir.path().join("new");
        std::fs::write(&old_path, [1u8; 32]).unwrap();
        std::fs::write(&new_path, [2u8; 32]).unwrap();
        let old_source = format!("file://{}", old_path.display());
        let new_source = format!("file://{}", new_path.display());
        let old = StaticWrapper::new(("k0".into(), old_source.clone()), None);
        let wrapped = old.wrap(&[5u8; 32]).await.unwrap();
        assert_eq!(wrapped.key_id, "k0");

        let rotated =
            StaticWrapper::new(("k1".into(), new_source), Some(("k0".into(), old_source)));
        let unwrapped = rotated.unwrap("k0", &wrapped.ciphertext).await.unwrap();
        assert_eq!(unwrapped.as_slice(), [5u8; 32]);
        assert_eq!(rotated.wrap(&[5u8; 32]).await.unwrap().key_id, "k1");
        assert!(matches!(
            rotated.unwrap("k9", &wrapped.ciphertext).await,
            Err(Error::UnknownKey { .. })
        ));
    }
}
