//! Shamir secret sharing of the unseal key over GF(256), by vsss-rs.
//!
//! A share is the bytes vsss-rs produces (an identifier byte and one byte per
//! secret byte). With one share and a threshold of one, as in Vault, the share is
//! the key itself.

use zeroize::Zeroizing;

use crate::crypto::SystemRandom;

/// Shares above this count would repeat identifiers in GF(256).
pub const MAX_SHARES: u8 = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("secret_shares must be between 1 and {MAX_SHARES}")]
    ShareCount,
    #[error("secret_threshold must be between 1 and secret_shares")]
    Threshold,
    #[error("secret_threshold must be greater than one when there are several shares")]
    ThresholdOne,
    #[error("the key shares are malformed or inconsistent")]
    Malformed,
}

/// Splits `secret` into `shares` shares, any `threshold` of which recover it.
pub fn split(secret: &[u8], shares: u8, threshold: u8) -> Result<Vec<Zeroizing<Vec<u8>>>, Error> {
    validate(shares, threshold)?;
    if shares == 1 {
        return Ok(vec![Zeroizing::new(secret.to_vec())]);
    }
    let rng = rand_core::UnwrapErr(SystemRandom);
    vsss_rs::Gf256::split_bytes(usize::from(threshold), usize::from(shares), secret, rng)
        .map(|parts| parts.into_iter().map(Zeroizing::new).collect())
        .map_err(|_| Error::Malformed)
}

/// Recovers the secret from shares made by [`split`] with the given `threshold`.
/// Wrong shares give a wrong secret, not an error: the caller checks the result
/// by decrypting something with it.
pub fn combine(shares: &[Zeroizing<Vec<u8>>], threshold: u8) -> Result<Zeroizing<Vec<u8>>, Error> {
    if threshold == 1 {
        return shares
            .first()
            .map(|share| Zeroizing::new(share.to_vec()))
            .ok_or(Error::Malformed);
    }
    if shares.len() < usize::from(threshold) {
        return Err(Error::Malformed);
    }
    let length = shares[0].len();
    if length < 2 || shares.iter().any(|share| share.len() != length) {
        return Err(Error::Malformed);
    }
    let parts: Vec<Vec<u8>> = shares.iter().map(|share| share.to_vec()).collect();
    let secret = vsss_rs::Gf256::combine_bytes(&parts).map_err(|_| Error::Malformed);
    for mut part in parts {
        zeroize::Zeroize::zeroize(&mut part);
    }
    secret.map(Zeroizing::new)
}

/// Checks a (shares, threshold) pair as Vault does.
pub fn validate(shares: u8, threshold: u8) -> Result<(), Error> {
    if shares == 0 {
        return Err(Error::ShareCount);
    }
    if threshold == 0 || threshold > shares {
        return Err(Error::Threshold);
    }
    if threshold == 1 && shares > 1 {
        return Err(Error::ThresholdOne);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn any_threshold_subset_recovers_the_secret() {
        let shares = split(SECRET, 5, 3).unwrap();
        assert_eq!(shares.len(), 5);
        for subset in [[0, 1, 2], [0, 2, 4], [4, 3, 1], [2, 3, 4]] {
            let chosen: Vec<_> = subset.iter().map(|&index| shares[index].clone()).collect();
            assert_eq!(combine(&chosen, 3).unwrap().as_slice(), SECRET);
        }
    }

    #[test]
    fn fewer_than_threshold_shares_do_not_recover_the_secret() {
        let shares = split(SECRET, 5, 3).unwrap();
        // Two shares are refused outright when the threshold is known...
        assert_eq!(combine(&shares[..2], 3), Err(Error::Malformed));
        // ...and interpolating them anyway yields something else.
        let guessed = combine(&shares[..2], 2).unwrap();
        assert_ne!(guessed.as_slice(), SECRET);
    }

    #[test]
    fn shares_are_fresh_each_time() {
        assert_ne!(
            split(SECRET, 3, 2).unwrap()[0],
            split(SECRET, 3, 2).unwrap()[0]
        );
    }

    #[test]
    fn a_tampered_share_yields_a_different_secret() {
        let mut shares = split(SECRET, 3, 2).unwrap();
        shares[1][5] ^= 0x40;
        assert_ne!(combine(&shares[..2], 2).unwrap().as_slice(), SECRET);
    }

    #[test]
    fn single_share_is_the_key() {
        let shares = split(SECRET, 1, 1).unwrap();
        assert_eq!(shares[0].as_slice(), SECRET);
        assert_eq!(combine(&shares, 1).unwrap().as_slice(), SECRET);
    }

    #[test]
    fn parameters_are_checked() {
        assert_eq!(validate(0, 0), Err(Error::ShareCount));
        assert_eq!(validate(3, 4), Err(Error::Threshold));
        assert_eq!(validate(3, 0), Err(Error::Threshold));
        assert_eq!(validate(3, 1), Err(Error::ThresholdOne));
        assert_eq!(validate(255, 255), Ok(()));
        assert!(combine(&[Zeroizing::new(vec![1, 2]), Zeroizing::new(vec![1])], 2).is_err());
    }
}
