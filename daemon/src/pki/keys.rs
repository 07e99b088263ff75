//! Key types as Vault names them (`rsa` 2048/3072/4096, `ec` 256/384,
//! `ed25519`), their generation on aws-lc through rcgen, and their stored
//! form (PKCS#8 DER, behind the barrier).

use base64::Engine as _;
use rcgen::{KeyPair, RsaKeySize, SignatureAlgorithm};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::api::error::{ApiError, ApiResult};

/// A key type and size a role or a CA may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeySpec {
    Rsa(u32),
    Ec(u32),
    Ed25519,
}

impl KeySpec {
    /// Vault's `key_type` and `key_bits` (0 is the type's default), with its
    /// error texts.
    pub fn parse(key_type: &str, key_bits: u64) -> ApiResult<KeySpec> {
        match key_type {
            "rsa" => match key_bits {
                0 | 2048 => Ok(KeySpec::Rsa(2048)),
                3072 | 4096 => Ok(KeySpec::Rsa(key_bits as u32)),
                other => Err(ApiError::invalid(format!(
                    "unsupported bit length for RSA key: {other}"
                ))),
            },
            "ec" => match key_bits {
                0 | 256 => Ok(KeySpec::Ec(256)),
                384 => Ok(KeySpec::Ec(384)),
                other => Err(ApiError::invalid(format!(
                    "unsupported bit length for EC key: {other}"
                ))),
            },
            "ed25519" => Ok(KeySpec::Ed25519),
            other => Err(ApiError::invalid(format!(
                "unknown key type {}",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }

    pub fn type_name(self) -> &'static str {
        match self {
            KeySpec::Rsa(_) => "rsa",
            KeySpec::Ec(_) => "ec",
            KeySpec::Ed25519 => "ed25519",
        }
    }

    pub fn bits(self) -> u32 {
        match self {
            KeySpec::Rsa(bits) | KeySpec::Ec(bits) => bits,
            KeySpec::Ed25519 => 0,
        }
    }

    /// The algorithm certificates signed by such a key use.
    pub fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeySpec::Rsa(_) => &rcgen::PKCS_RSA_SHA256,
            KeySpec::Ec(384) => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeySpec::Ec(_) => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeySpec::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    /// A new key of this type.
    pub fn generate(self) -> ApiResult<KeyPair> {
        let generated = match self {
            KeySpec::Rsa(bits) => {
                let size = match bits {
                    4096 => RsaKeySize::_4096,
                    3072 => RsaKeySize::_3072,
                    _ => RsaKeySize::_2048,
                };
                KeyPair::generate_rsa_for(self.algorithm(), size)
            }
            _ => KeyPair::generate_for(self.algorithm()),
        };
        generated.map_err(|error| ApiError::internal(&error))
    }

    /// The spec of an imported key; `None` for a type coffer does not sign
    /// with.
    pub fn of(key: &KeyPair) -> Option<KeySpec> {
        let algorithm = key.algorithm();
        if algorithm == &rcgen::PKCS_ED25519 {
            Some(KeySpec::Ed25519)
        } else if algorithm == &rcgen::PKCS_ECDSA_P256_SHA256 {
            Some(KeySpec::Ec(256))
        } else if algorithm == &rcgen::PKCS_ECDSA_P384_SHA384 {
            Some(KeySpec::Ec(384))
        } else if algorithm == &rcgen::PKCS_RSA_SHA256 {
            // The raw public key is the PKCS#1 DER, whose length follows
            // the modulus: about 270, 398 and 526 bytes.
            Some(KeySpec::Rsa(match key.public_key_raw().len() {
                length if length > 450 => 4096,
                length if length > 320 => 3072,
                _ => 2048,
            }))
        } else {
            None
        }
    }
}

/// A CA's private key as stored (behind the barrier, never returned after
/// an `exported` generate).
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredKey {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub spec: KeySpec,
    /// PKCS#8 DER, base64.
    pkcs8: String,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("StoredKey")
            .field("id", &self.id)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl StoredKey {
    pub fn new(id: String, name: String, spec: KeySpec, key: &KeyPair) -> StoredKey {
        StoredKey {
            id,
            name,
            spec,
            pkcs8: base64::engine::general_purpose::STANDARD.encode(key.serialized_der()),
        }
    }

    /// The key pair, to sign with.
    pub fn load(&self) -> ApiResult<KeyPair> {
        let der = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(&self.pkcs8)
                .map_err(|error| ApiError::internal(&error))?,
        );
        KeyPair::try_from(der.as_slice()).map_err(|error| ApiError::internal(&error))
    }
}

/// A key as PKCS#8 DER, from PKCS#8, SEC1 (`EC PRIVATE KEY`, P-256 or
/// P-384) or PKCS#1 (`RSA PRIVATE KEY`) DER: what an imported bundle may
/// hold, and what Vault exports.
pub fn to_pkcs8(der: &[u8]) -> ApiResult<KeyPair> {
    use aws_lc_rs::encoding::AsDer as _;
    let unreadable = || ApiError::invalid("a private key of the bundle could not be read");
    if matches!(
        rustls::pki_types::PrivateKeyDer::try_from(der),
        Ok(rustls::pki_types::PrivateKeyDer::Pkcs8(_))
    ) {
        return KeyPair::try_from(der).map_err(|_| unreadable());
    }
    let pkcs8: Zeroizing<Vec<u8>> = if let Ok(rsa) = aws_lc_rs::rsa::KeyPair::from_der(der) {
        let document = rsa.as_der().map_err(|_| unreadable())?;
        Zeroizing::new(document.as_ref().to_vec())
    } else {
        let ec = [
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        ]
        .into_iter()
        .find_map(|algorithm| {
            aws_lc_rs::signature::EcdsaKeyPair::from_private_key_der(algorithm, der).ok()
        })
        .ok_or_else(unreadable)?;
        let document = ec.to_pkcs8v1().map_err(|_| unreadable())?;
        Zeroizing::new(document.as_ref().to_vec())
    };
    KeyPair::try_from(pkcs8.as_slice()).map_err(|_| unreadable())
}

/// The private key a PKCS#8 `PrivateKeyInfo { version, algorithm,
/// privateKey OCTET STRING }` holds: an RSAPrivateKey or an ECPrivateKey.
fn pkcs8_inner(pkcs8: &[u8]) -> ApiResult<&[u8]> {
    let failed = || ApiError::internal(&"a PKCS#8 key without its private key");
    let (_, info) = x509_parser::der_parser::parse_der(pkcs8).map_err(|_| failed())?;
    info.as_sequence()
        .ok()
        .and_then(|fields| fields.get(2))
        .and_then(|field| field.as_slice().ok())
        .ok_or_else(failed)
}

/// An element's header length and value length, for the definite-length,
/// single-byte-tag DER a PKCS#8 key is made of.
fn header(element: &[u8]) -> Option<(usize, usize)> {
    let first = *element.get(1)?;
    if first < 0x80 {
        return Some((2, usize::from(first)));
    }
    let count = usize::from(first & 0x7f);
    if count == 0 || count > 4 {
        return None;
    }
    let length = element
        .get(2..2 + count)?
        .iter()
        .fold(0usize, |sum, byte| (sum << 8) | usize::from(*byte));
    Some((2 + count, length))
}

/// The DER elements of `bytes`, each whole (tag, length and value).
fn elements(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut elements = Vec::new();
    while !bytes.is_empty() {
        let (head, length) = header(bytes)?;
        let end = head.checked_add(length)?;
        elements.push(bytes.get(..end)?);
        bytes = &bytes[end..];
    }
    Some(elements)
}

/// SEC1's `ECPrivateKey` with its curve (`[0] namedCurve`), from the one in
/// a PKCS#8 key, which leaves the curve to the algorithm identifier: no
/// arithmetic, only DER.
fn sec1_of(inner: &[u8], bits: u32) -> Option<Zeroizing<Vec<u8>>> {
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    let sequence = elements(inner)?;
    let [whole] = sequence.as_slice() else {
        return None;
    };
    let (head, _) = header(whole)?;
    let fields = elements(&whole[head..])?;
    // Sized once, so no copy of the key is left behind by a reallocation.
    let mut content = Zeroizing::new(Vec::with_capacity(inner.len() + 16));
    // `[0] namedCurve` goes after the version and the key, unless there.
    let curve = super::certs::der(0xa0, if bits == 384 { P384 } else { P256 });
    let has_curve = fields
        .get(2)
        .is_some_and(|field| field.first() == Some(&0xa0));
    for (index, field) in fields.iter().enumerate() {
        if index == 2 && !has_curve {
            content.extend_from_slice(&curve);
        }
        content.extend_from_slice(field);
    }
    if fields.len() == 2 {
        content.extend_from_slice(&curve);
    }
    Some(Zeroizing::new(super::certs::der(0x30, &content)))
}

/// A private key as Vault answers it: PKCS#1 (`RSA PRIVATE KEY`) or SEC1
/// (`EC PRIVATE KEY`, with its curve) unless `pkcs8` is asked for; ed25519
/// is PKCS#8 either way. PEM, or base64 DER when `der`.
pub fn private_key_text(
    key: &KeyPair,
    spec: KeySpec,
    der: bool,
    pkcs8: bool,
) -> ApiResult<Zeroizing<String>> {
    let failed = |error: &dyn std::fmt::Debug| ApiError::internal(&format!("{error:?}"));
    let pkcs8_der = key.serialized_der();
    let (label, bytes): (&str, Zeroizing<Vec<u8>>) = match spec {
        _ if pkcs8 => ("PRIVATE KEY", Zeroizing::new(pkcs8_der.to_vec())),
        KeySpec::Ed25519 => ("PRIVATE KEY", Zeroizing::new(pkcs8_der.to_vec())),
        KeySpec::Ec(bits) => (
            "EC PRIVATE KEY",
            sec1_of(pkcs8_inner(pkcs8_der)?, bits)
                .ok_or_else(|| failed(&"an EC key without its ECPrivateKey"))?,
        ),
        KeySpec::Rsa(_) => (
            "RSA PRIVATE KEY",
            Zeroizing::new(pkcs8_inner(pkcs8_der)?.to_vec()),
        ),
    };
    Ok(Zeroizing::new(if der {
        base64::engine::general_purpose::STANDARD.encode(bytes.as_slice())
    } else {
        super::revoke::pem_block(label, &bytes)
            .trim_end()
            .to_owned()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_types_and_bits_follow_vault() {
        assert_eq!(KeySpec::parse("rsa", 0).unwrap(), KeySpec::Rsa(2048));
        assert_eq!(KeySpec::parse("ec", 0).unwrap(), KeySpec::Ec(256));
        assert_eq!(KeySpec::parse("ec", 384).unwrap(), KeySpec::Ec(384));
        assert_eq!(KeySpec::parse("ed25519", 0).unwrap(), KeySpec::Ed25519);
        for (key_type, bits, error) in [
            ("ec", 2048, "unsupported bit length for EC key: 2048"),
            ("rsa", 1024, "unsupported bit length for RSA key: 1024"),
            ("dsa", 0, "unknown key type dsa"),
        ] {
            assert_eq!(
                KeySpec::parse(key_type, bits).unwrap_err().messages,
                [error]
            );
        }
    }

    #[test]
    fn private_keys_come_back_in_vaults_formats() {
        for (spec, label) in [
            (KeySpec::Rsa(2048), "RSA PRIVATE KEY"),
            (KeySpec::Ec(256), "EC PRIVATE KEY"),
            (KeySpec::Ec(384), "EC PRIVATE KEY"),
            (KeySpec::Ed25519, "PRIVATE KEY"),
        ] {
            let key = spec.generate().unwrap();
            let pem = private_key_text(&key, spec, false, false).unwrap();
            assert!(
                pem.starts_with(&format!("-----BEGIN {label}-----\n")),
                "{spec:?}"
            );
            assert!(pem.ends_with(&format!("-----END {label}-----")), "{spec:?}");
            let pkcs8 = private_key_text(&key, spec, false, true).unwrap();
            assert_eq!(pkcs8.as_str(), key.serialize_pem().trim_end());
            // Read back (as an imported bundle's key is) to the same key.
            let pem_der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
                .map(|der: rustls::pki_types::PrivateKeyDer<'static>| der.secret_der().to_vec())
                .unwrap();
            let back = to_pkcs8(&pem_der).unwrap();
            assert_eq!(back.public_key_raw(), key.public_key_raw(), "{spec:?}");
            assert_eq!(back.serialized_der(), key.serialized_der(), "{spec:?}");
            // The type-specific DER is the inner key of the PKCS#8 one.
            let der = private_key_text(&key, spec, true, false).unwrap();
            let der = base64::engine::general_purpose::STANDARD
                .decode(der.as_bytes())
                .unwrap();
            assert_eq!(der[0], 0x30, "a DER SEQUENCE");
            if let KeySpec::Rsa(_) = spec {
                let outer = key.serialized_der();
                assert!(
                    outer
                        .windows(der.len())
                        .any(|window| window == der.as_slice())
                );
            }
        }
    }

    #[test]
    fn stored_keys_load_back_with_their_type() {
        for spec in [
            KeySpec::Ec(256),
            KeySpec::Ec(384),
            KeySpec::Ed25519,
            KeySpec::Rsa(2048),
        ] {
            let key = spec.generate().unwrap();
            let stored = StoredKey::new("id".into(), String::new(), spec, &key);
            let loaded = stored.load().unwrap();
            assert_eq!(loaded.public_key_raw(), key.public_key_raw());
            assert_eq!(KeySpec::of(&loaded), Some(spec));
            assert!(!format!("{stored:?}").contains(&stored.pkcs8));
        }
    }
}
