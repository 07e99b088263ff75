//! Cluster TLS: a cluster CA made at init, and short certificates each node gets
//! for its own key pair every time it unseals.
//!
//! The CA (certificate and private key) lives in the replicated store behind the
//! barrier, so it is readable only by unsealed members. A node's private key is
//! made in memory and never stored or sent: at unseal a member issues itself a
//! certificate from the CA; a joining node sends only its public key and gets its
//! certificate from the leader. A certificate names its node as the DNS name
//! `node-<id in hex>.coffer`, which clients verify as the server name and servers
//! check against the id a client claims.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SignatureAlgorithm,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Where the cluster CA is stored (behind the barrier).
pub const CA_PATH: &str = "core/cluster/ca";
const CA_VALIDITY_DAYS: i64 = 3650;
const NODE_VALIDITY_DAYS: i64 = 365;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Config(#[from] rustls::Error),
    #[error("a public key must be an uncompressed P-256 point (65 bytes)")]
    PublicKey,
    #[error("a certificate or key is not valid PEM")]
    Pem,
}

/// The DNS name a node's certificate carries.
pub fn dns_name(node_id: u64) -> String {
    format!("node-{node_id:016x}.coffer")
}

/// The cluster CA, as stored behind the barrier.
#[derive(Clone, Serialize, Deserialize)]
pub struct ClusterCa {
    /// The CA's common name: with the key, all an issuer needs (the CA
    /// certificate itself is never parsed back).
    pub name: String,
    pub cert_pem: String,
    #[serde(with = "crate::crypto::zeroizing_string")]
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ClusterCa(<key redacted>)")
    }
}

/// A P-256 public key as raw uncompressed point bytes.
pub struct RawPublicKey(Vec<u8>);

impl RawPublicKey {
    pub fn new(bytes: Vec<u8>) -> Result<Self, Error> {
        if bytes.len() == 65 && bytes[0] == 0x04 {
            Ok(RawPublicKey(bytes))
        } else {
            Err(Error::PublicKey)
        }
    }
}

impl RawPublicKey {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl PublicKeyData for RawPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

fn days(count: i64) -> time::Duration {
    time::Duration::days(count)
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = time::OffsetDateTime::now_utc() - days(1);
    params.not_after = time::OffsetDateTime::now_utc() + days(CA_VALIDITY_DAYS);
    params
}

impl ClusterCa {
    /// A new CA for a new cluster.
    pub fn generate(cluster_id: &str) -> Result<ClusterCa, Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let name = format!("coffer cluster CA {cluster_id}");
        let certificate = ca_params(&name).self_signed(&key)?;
        Ok(ClusterCa {
            name,
            cert_pem: certificate.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }

    /// A node certificate for `public_key`, naming node `node_id` (`name` for
    /// people), valid for client and server authentication.
    pub fn issue(
        &self,
        node_id: u64,
        name: &str,
        public_key: &RawPublicKey,
    ) -> Result<String, Error> {
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::new(ca_params(&self.name), ca_key);
        let mut params = CertificateParams::new(vec![dns_name(node_id)])?;
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, format!("coffer node {name}"));
        params.distinguished_name = subject;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = time::OffsetDateTime::now_utc() - days(1);
        params.not_after = time::OffsetDateTime::now_utc() + days(NODE_VALIDITY_DAYS);
        Ok(params.signed_by(public_key, &issuer)?.pem())
    }
}

/// This node's TLS credentials for the cluster listener and its RPC clients.
pub struct Identity {
    pub node_id: u64,
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

/// A fresh key pair for a node; its public half as raw point bytes.
pub fn new_key_pair() -> Result<(KeyPair, RawPublicKey), Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let public = RawPublicKey::new(key.public_key_raw().to_vec())?;
    Ok((key, public))
}

fn pem_certificate(pem: &str) -> Result<CertificateDer<'static>, Error> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|_| Error::Pem)
}

impl Identity {
    pub fn new(
        node_id: u64,
        ca_pem: &str,
        cert_pem: &str,
        key: &KeyPair,
    ) -> Result<Identity, Error> {
        Ok(Identity {
            node_id,
            ca: pem_certificate(ca_pem)?,
            chain: vec![pem_certificate(cert_pem)?],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// An identity issued by `ca` for a new key pair: what a member does at unseal.
    pub fn issue_for_self(ca: &ClusterCa, node_id: u64, name: &str) -> Result<Identity, Error> {
        let (key, public) = new_key_pair()?;
        let cert_pem = ca.issue(node_id, name, &public)?;
        Identity::new(node_id, &ca.cert_pem, &cert_pem, &key)
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(Arc::new(roots))
    }

    /// The cluster listener's config: TLS 1.3 only, a client certificate from the
    /// cluster CA required.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            self.roots()?,
            Self::provider(),
        )
        .build()
        .map_err(|error| rustls::Error::General(error.to_string()))?;
        let config = rustls::ServerConfig::builder_with_provider(Self::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                self.chain.clone(),
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )?;
        Ok(Arc::new(config))
    }

    /// The RPC clients' config: trusts only the cluster CA, presents this node's
    /// certificate.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, Error> {
        Ok(
            rustls::ClientConfig::builder_with_provider(Self::provider())
                .with_protocol_versions(&[&rustls::version::TLS13])?
                .with_root_certificates(self.roots()?)
                .with_client_auth_cert(
                    self.chain.clone(),
                    PrivateKeyDer::Pkcs8(self.key.clone_key()),
                )?,
        )
    }
}

/// Whether `certificate` (already verified against the cluster CA by the TLS
/// handshake) names node `node_id`.
pub fn certifies(certificate: &CertificateDer<'_>, node_id: u64) -> bool {
    let Ok(name) = ServerName::try_from(dns_name(node_id)) else {
        return false;
    };
    let Ok(parsed) = rustls::server::ParsedCertificate::try_from(certificate) else {
        return false;
    };
    rustls::client::verify_server_name(&parsed, &name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_name_their_node() {
        let ca = ClusterCa::generate("test").unwrap();
        let identity = Identity::issue_for_self(&ca, 42, "n1").unwrap();
        assert!(certifies(&identity.chain[0], 42));
        assert!(!certifies(&identity.chain[0], 43));
        identity.server_config().unwrap();
        identity.client_config().unwrap();
    }

    #[test]
    fn a_public_key_must_be_a_p256_point() {
        assert!(RawPublicKey::new(vec![4; 65]).is_ok());
        assert!(RawPublicKey::new(vec![4; 64]).is_err());
        assert!(RawPublicKey::new(vec![2; 65]).is_err());
    }

    #[test]
    fn the_ca_debug_output_hides_the_key() {
        let ca = ClusterCa::generate("test").unwrap();
        assert!(!format!("{ca:?}").contains("PRIVATE"));
    }
}
