//! Certificates: serial numbers, validity, the extensions rcgen does not
//! write itself (Authority Information Access), the stored record of an
//! issued certificate, and the formats Vault answers in.

use base64::Engine as _;
use rcgen::{CustomExtension, SerialNumber};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::api::error::{ApiError, ApiResult};

/// `config/urls`: where clients find the CA and its CRL; written into every
/// certificate issued afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Urls {
    pub issuing_certificates: Vec<String>,
    pub crl_distribution_points: Vec<String>,
    pub ocsp_servers: Vec<String>,
}

impl Urls {
    pub fn is_empty(&self) -> bool {
        self.issuing_certificates.is_empty()
            && self.crl_distribution_points.is_empty()
            && self.ocsp_servers.is_empty()
    }

    /// The AIA and CRL distribution point extensions for `params`.
    pub fn apply(&self, params: &mut rcgen::CertificateParams) {
        if !self.crl_distribution_points.is_empty() {
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: self.crl_distribution_points.clone(),
            }];
        }
        if let Some(extension) = authority_information_access(self) {
            params.custom_extensions.push(extension);
        }
    }
}

/// `urls` for the AIA parameter `key`, each checked: `scheme://host...` in
/// printable ASCII (an IA5String in the certificate), or Vault's 400.
pub fn checked_urls(key: &str, urls: Vec<String>) -> ApiResult<Vec<String>> {
    for url in &urls {
        let valid = url.is_ascii()
            && !url
                .chars()
                .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
            && url.split_once("://").is_some_and(|(scheme, rest)| {
                scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                    && !rest.is_empty()
                    && !rest.starts_with('/')
            });
        if !valid {
            return Err(ApiError::invalid(format!(
                "invalid URL found in Authority Information Access (AIA) parameter {key}: {}",
                url.chars().take(256).collect::<String>()
            )));
        }
    }
    Ok(urls)
}

/// An issued certificate as stored under `certs/<serial>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertRecord {
    /// PEM.
    pub certificate: String,
    pub issuer_id: String,
    /// Unix seconds; 0 while not revoked.
    #[serde(default)]
    pub revocation_time: u64,
    /// Unix seconds.
    #[serde(default)]
    pub not_after: u64,
}

/// A new serial: 20 random bytes, positive, as Vault's.
pub fn new_serial() -> ApiResult<(SerialNumber, String)> {
    let mut bytes = [0u8; 20];
    crate::crypto::fill_random(&mut bytes).map_err(|error| ApiError::internal(&error))?;
    bytes[0] = (bytes[0] & 0x7f).max(1);
    Ok((SerialNumber::from_slice(&bytes), colon_hex(&bytes)))
}

/// `15:49:3a:...`, as Vault prints serials.
pub fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A serial as a storage key segment (`15-49-3a...`); accepts colons or
/// dashes, any case.
pub fn serial_key(serial: &str) -> Option<String> {
    let normalized = serial.trim().to_ascii_lowercase().replace(':', "-");
    let valid = !normalized.is_empty()
        && normalized.len() <= 128
        && normalized
            .split('-')
            .all(|pair| pair.len() == 2 && pair.chars().all(|c| c.is_ascii_hexdigit()));
    valid.then_some(normalized)
}

/// Unix seconds as the time rcgen wants.
pub fn at(unix: u64) -> ApiResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(i64::try_from(unix).unwrap_or(i64::MAX))
        .map_err(|error| ApiError::invalid(format!("invalid time: {error}")))
}

/// A PEM certificate as base64 DER (`format=der`).
pub fn pem_to_der_base64(pem: &str) -> ApiResult<String> {
    Ok(base64::engine::general_purpose::STANDARD.encode(pem_to_der(pem)?))
}

/// A PEM certificate's DER.
pub fn pem_to_der(pem: &str) -> ApiResult<Vec<u8>> {
    use rustls::pki_types::pem::PemObject as _;
    Ok(
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|error| ApiError::internal(&error))?
            .to_vec(),
    )
}

/// DER: a tag and its length-prefixed contents. Sized once, so a key
/// passing through leaves no copy behind in a reallocation.
pub(super) fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(tag);
    let length = contents.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes: Vec<u8> = length
            .to_be_bytes()
            .into_iter()
            .skip_while(|byte| *byte == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

/// id-ad-caIssuers and id-ad-ocsp, DER-encoded OIDs.
const CA_ISSUERS: [u8; 10] = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];
const OCSP: [u8; 10] = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
/// id-pe-authorityInfoAccess.
const AIA_OID: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 1, 1];

/// The Authority Information Access extension (RFC 5280 4.2.2.1) for the
/// URLs, if there are any.
fn authority_information_access(urls: &Urls) -> Option<CustomExtension> {
    let mut descriptions = Vec::new();
    for (method, list) in [
        (&OCSP, &urls.ocsp_servers),
        (&CA_ISSUERS, &urls.issuing_certificates),
    ] {
        for url in list {
            let mut description = method.to_vec();
            // accessLocation: GeneralName uniformResourceIdentifier, [6] IMPLICIT IA5String.
            description.extend(der(0x86, url.as_bytes()));
            descriptions.extend(der(0x30, &description));
        }
    }
    (!descriptions.is_empty())
        .then(|| CustomExtension::from_oid_content(&AIA_OID, der(0x30, &descriptions)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aia_urls_are_checked_as_vault_does() {
        assert!(checked_urls("ocsp_servers", vec!["http://ca.example.com/ocsp".into()]).is_ok());
        for bad in [
            "not a url",
            "ldap:foo",
            "http://",
            "http://é.example.com/",
            "http:///x",
        ] {
            let error = checked_urls("issuing_certificates", vec![bad.into()]).unwrap_err();
            assert_eq!(
                error.messages,
                [format!(
                    "invalid URL found in Authority Information Access (AIA) parameter issuing_certificates: {bad}"
                )]
            );
        }
    }

    #[test]
    fn serials_print_and_key_as_vault_does() {
        let (_, printed) = new_serial().unwrap();
        assert_eq!(printed.len(), 20 * 3 - 1);
        assert_eq!(
            serial_key("15:49:3A").as_deref(),
            Some("15-49-3a"),
            "colons or dashes, any case"
        );
        assert_eq!(serial_key("15-49-3a").as_deref(), Some("15-49-3a"));
        for bad in ["", "xyz", "1:2", "../x", "15:49:"] {
            assert_eq!(serial_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn der_lengths_use_the_long_form_past_127_bytes() {
        assert_eq!(der(0x04, &[1, 2]), [0x04, 2, 1, 2]);
        let long = der(0x04, &[0; 300]);
        assert_eq!(&long[..4], [0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
    }
}
