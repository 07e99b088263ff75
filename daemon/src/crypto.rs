//! Cryptographic primitives used across the core, all from the workspace's one
//! provider (aws-lc-rs): random bytes, HMAC-SHA256, SHA-256 and constant-time
//! comparison.

use aws_lc_rs::{constant_time, digest, hmac, rand};
use zeroize::Zeroizing;

/// The operating system's random generator failed. Nothing secret can be made
/// without it, so callers refuse the operation.
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

/// `N` fresh random bytes, wiped when dropped.
pub fn random_key<const N: usize>() -> Result<Zeroizing<[u8; N]>, RandomError> {
    let mut bytes = Zeroizing::new([0u8; N]);
    rand::fill(bytes.as_mut()).map_err(|_| RandomError)?;
    Ok(bytes)
}

/// Fills `buffer` with random bytes.
pub fn fill_random(buffer: &mut [u8]) -> Result<(), RandomError> {
    rand::fill(buffer).map_err(|_| RandomError)
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A random string of `length` characters from `[0-9A-Za-z]`, without modulo bias
/// (bytes >= 248 are drawn again).
pub fn random_base62(length: usize) -> Result<String, RandomError> {
    let mut output = String::with_capacity(length);
    let mut pool = [0u8; 64];
    while output.len() < length {
        fill_random(&mut pool)?;
        for &byte in &pool {
            if byte < 248 && output.len() < length {
                output.push(char::from(BASE62[usize::from(byte % 62)]));
            }
        }
    }
    pool.fill(0);
    Ok(output)
}

/// HMAC-SHA256 of `data` under `key`, as lowercase hex.
pub fn hmac_sha256_hex(key: &[u8], data: &[u8]) -> String {
    HmacKey::new(key).sign_hex(data)
}

/// An HMAC-SHA256 key prepared once, for a key that signs on every request.
pub struct HmacKey(hmac::Key);

impl HmacKey {
    pub fn new(key: &[u8]) -> Self {
        HmacKey(hmac::Key::new(hmac::HMAC_SHA256, key))
    }

    /// HMAC-SHA256 of `data`, as lowercase hex.
    pub fn sign_hex(&self, data: &[u8]) -> String {
        hex_32(hmac::sign(&self.0, data).as_ref())
    }
}

/// SHA-256 of `data`, as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex_32(digest::digest(&digest::SHA256, data).as_ref())
}

/// A 32-byte digest as lowercase hex, through a buffer: `hex::encode` builds
/// its string a char at a time, which showed in the profile of every read.
fn hex_32(digest: &[u8]) -> String {
    let mut text = [0u8; 64];
    match hex::encode_to_slice(digest, &mut text) {
        Ok(()) => String::from_utf8_lossy(&text).into_owned(),
        Err(_) => hex::encode(digest),
    }
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(left, right).is_ok()
}

/// Serde for a secret string kept in zeroizing memory (the deserialized string is
/// moved into the wrapper, not copied).
pub mod zeroizing_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub fn serialize<S: Serializer>(
        value: &Zeroizing<String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Zeroizing<String>, D::Error> {
        String::deserialize(deserializer).map(Zeroizing::new)
    }
}

/// The system random generator as a `rand_core` generator, for crates (vsss-rs) that
/// take one. A failing system RNG makes [`rand_core::UnwrapErr`] panic; there is no
/// safe way to go on making key shares without randomness.
pub struct SystemRandom;

impl rand_core::TryRng for SystemRandom {
    type Error = RandomError;

    fn try_next_u32(&mut self) -> Result<u32, RandomError> {
        let mut bytes = [0u8; 4];
        fill_random(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, RandomError> {
        let mut bytes = [0u8; 8];
        fill_random(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, destination: &mut [u8]) -> Result<(), RandomError> {
        fill_random(destination)
    }
}

impl rand_core::TryCryptoRng for SystemRandom {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base62_has_requested_length_and_alphabet() {
        let value = random_base62(100).unwrap();
        assert_eq!(value.len(), 100);
        assert!(value.bytes().all(|byte| byte.is_ascii_alphanumeric()));
        assert_ne!(value, random_base62(100).unwrap());
    }

    #[test]
    fn hmac_depends_on_key_and_data() {
        let first = hmac_sha256_hex(b"salt-a", b"token");
        assert_eq!(first.len(), 64);
        assert_eq!(first, hmac_sha256_hex(b"salt-a", b"token"));
        assert_ne!(first, hmac_sha256_hex(b"salt-b", b"token"));
        assert_ne!(first, hmac_sha256_hex(b"salt-a", b"token2"));
    }

    #[test]
    fn digests_match_the_published_test_vectors_in_lowercase_hex() {
        // FIPS 180-2, "abc".
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 4231, test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
