//! Revocation and CRLs: `revoke` (by serial or PEM, idempotent), a v2 CRL
//! per issuer with its CRL number, rebuilt in the same write as each
//! revocation and on `crl/rotate`, and the CRL fetch paths.

use base64::Engine as _;
use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::certs::{self, CertRecord};
use super::{CERTS, Issuer, PkiEngine, Store, envelope};
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::barrier::Batch;

pub(super) const REVOKED: &str = "revoked/";
const CRLS: &str = "crl/";
/// How long a CRL is valid (`config/crl`'s `expiry`, Vault's default).
const CRL_EXPIRY: u64 = 72 * 3600;

/// A revoked certificate, kept until it expires.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Revoked {
    pub serial_number: String,
    pub issuer_id: String,
    pub revocation_time: u64,
    pub not_after: u64,
}

/// An issuer's current CRL.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredCrl {
    number: u64,
    /// DER, base64.
    der: String,
}

impl StoredCrl {
    fn der(&self) -> ApiResult<Vec<u8>> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.der)
            .map_err(|error| ApiError::internal(&error))
    }
}

/// DER as a PEM block labelled `label`.
pub(super) fn pem_block(label: &str, der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// Every revoked certificate of `issuer_id`.
fn revoked_of(store: &Store<'_>, issuer_id: &str) -> ApiResult<Vec<Revoked>> {
    let mut revoked = Vec::new();
    for key in store.list(REVOKED)? {
        if let Some(entry) = store.get::<Revoked>(&format!("{REVOKED}{key}"))?
            && entry.issuer_id == issuer_id
        {
            revoked.push(entry);
        }
    }
    Ok(revoked)
}

/// Adds `issuer`'s CRL listing `revoked` to `batch`, numbered one past the
/// stored one.
pub(super) fn write_crl(
    store: &Store<'_>,
    batch: &mut Batch,
    issuer: &Issuer,
    key: &rcgen::KeyPair,
    revoked: &[Revoked],
) -> ApiResult<()> {
    let path = format!("{CRLS}{}", issuer.id);
    let number = store
        .get::<StoredCrl>(&path)?
        .map_or(1, |stored| stored.number + 1);
    let now = crate::clock::now_seconds();
    let mut entries = Vec::with_capacity(revoked.len());
    for entry in revoked {
        let bytes: Vec<u8> = certs::serial_key(&entry.serial_number)
            .unwrap_or_default()
            .split('-')
            .filter_map(|pair| u8::from_str_radix(pair, 16).ok())
            .collect();
        entries.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&bytes),
            revocation_time: certs::at(entry.revocation_time)?,
            reason_code: None,
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update: certs::at(now)?,
        next_update: certs::at(now + CRL_EXPIRY)?,
        crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs: entries,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let signer = rcgen::Issuer::from_ca_cert_pem(&issuer.certificate, key)
        .map_err(|error| ApiError::internal(&error))?;
    let crl = params
        .signed_by(&signer)
        .map_err(|error| ApiError::internal(&error))?;
    batch.put_json(
        &store.key(&path),
        &StoredCrl {
            number,
            der: base64::engine::general_purpose::STANDARD.encode(crl.der().as_ref()),
        },
    )?;
    Ok(())
}

impl PkiEngine {
    /// `revoke`: by `serial_number`, or by `certificate` (which works for
    /// certificates the role did not store, as long as this mount signed
    /// them). Revoking again answers the first revocation.
    pub(super) async fn revoke(
        &self,
        store: &Store<'_>,
        data: &Map<String, Value>,
    ) -> ApiResult<Reply> {
        let fields = Fields::new(data);
        let serial = fields.string("serial_number")?.unwrap_or_default();
        let pem = fields.string("certificate")?.unwrap_or_default();
        let (key, record) = if !serial.trim().is_empty() {
            let missing = || {
                ApiError::invalid(format!(
                    "certificate with serial {} not found.",
                    serial.chars().take(128).collect::<String>()
                ))
            };
            let key = certs::serial_key(&serial).ok_or_else(missing)?;
            let record: CertRecord = store.get(&format!("{CERTS}{key}"))?.ok_or_else(missing)?;
            (key, record)
        } else if !pem.trim().is_empty() {
            self.record_of_pem(store, &pem)?
        } else {
            return Err(ApiError::invalid(
                "The serial number or certificate to revoke must be provided.",
            ));
        };
        let _serialized = self.revocations.lock().await;
        if let Some(done) = store.get::<Revoked>(&format!("{REVOKED}{key}"))? {
            return Ok(revocation_reply(done.revocation_time));
        }
        let serial_number = key.replace('-', ":");
        if let Some(issuer) = store
            .issuers()?
            .into_iter()
            .find(|issuer| issuer.serial_number == serial_number)
        {
            return Err(ApiError::invalid(format!(
                "certificate {serial_number} is an issuer of this mount: revoke it through issuer/{}/revoke",
                issuer.id
            )));
        }
        let signing = store.signing_issuer(&record.issuer_id)?;
        let issuer = &signing.issuer;
        let now = crate::clock::now_seconds();
        let entry = Revoked {
            serial_number,
            issuer_id: issuer.id.clone(),
            revocation_time: now,
            not_after: record.not_after,
        };
        let mut revoked = revoked_of(store, &issuer.id)?;
        revoked.push(entry.clone());
        let mut batch = store.barrier.batch();
        batch.put_json(&store.key(&format!("{REVOKED}{key}")), &entry)?;
        if store.get::<CertRecord>(&format!("{CERTS}{key}"))?.is_some() {
            batch.put_json(
                &store.key(&format!("{CERTS}{key}")),
                &CertRecord {
                    revocation_time: now,
                    ..record
                },
            )?;
        }
        write_crl(store, &mut batch, issuer, signing.signer.key(), &revoked)?;
        store.barrier.commit(batch).await?;
        Ok(revocation_reply(now))
    }

    /// The stored record of a PEM certificate, or (for one that was not
    /// stored) a record made from it once an issuer of this mount is shown
    /// to have signed it.
    fn record_of_pem(&self, store: &Store<'_>, pem: &str) -> ApiResult<(String, CertRecord)> {
        let der = CertificateDer::from_pem_slice(pem.trim().as_bytes())
            .map_err(|_| ApiError::invalid("the certificate to revoke is not valid PEM"))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|_| ApiError::invalid("the certificate to revoke could not be parsed"))?;
        let serial = certs::colon_hex(parsed.raw_serial());
        let key = certs::serial_key(&serial)
            .ok_or_else(|| ApiError::invalid("the certificate has no serial number"))?;
        if let Some(record) = store.get::<CertRecord>(&format!("{CERTS}{key}"))? {
            return Ok((key, record));
        }
        for issuer in store.issuers()? {
            let issuer_der = certs::pem_to_der(&issuer.certificate)?;
            let Ok((_, issuer_cert)) = x509_parser::parse_x509_certificate(&issuer_der) else {
                continue;
            };
            if parsed
                .verify_signature(Some(issuer_cert.public_key()))
                .is_ok()
            {
                let not_after = u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0);
                return Ok((
                    key,
                    CertRecord {
                        certificate: pem_block("CERTIFICATE", &der),
                        issuer_id: issuer.id,
                        revocation_time: 0,
                        not_after,
                    },
                ));
            }
        }
        Err(ApiError::invalid(
            "the certificate to revoke was not issued by this mount",
        ))
    }

    /// `crl/rotate`: every issuer's CRL rebuilt.
    pub(super) async fn rotate_crls(&self, store: &Store<'_>) -> ApiResult<Reply> {
        let _serialized = self.revocations.lock().await;
        let mut batch = store.barrier.batch();
        // An issuer imported without its key (a parent) signs no CRL here.
        for issuer in store
            .issuers()?
            .into_iter()
            .filter(|issuer| !issuer.key_id.is_empty())
        {
            let signing = store.signing_issuer(&issuer.id)?;
            write_crl(
                store,
                &mut batch,
                &issuer,
                signing.signer.key(),
                &revoked_of(store, &issuer.id)?,
            )?;
        }
        store.barrier.commit(batch).await?;
        Ok(Reply::data(json!({"success": true})))
    }

    /// The CRL of the issuer `reference` names, as DER, PEM or JSON.
    pub(super) fn read_crl(
        &self,
        store: &Store<'_>,
        reference: &str,
        view: &str,
    ) -> ApiResult<Reply> {
        let Some(issuer) = store.issuer(reference)? else {
            return if reference == "default" {
                Ok(Reply::NoContent)
            } else {
                Err(ApiError::not_found())
            };
        };
        let der = match store.get::<StoredCrl>(&format!("{CRLS}{}", issuer.id))? {
            Some(stored) => stored.der()?,
            None => return Ok(Reply::NoContent),
        };
        Ok(match view {
            "pem" => Reply::Text("application/x-pem-file", pem_block("X509 CRL", &der)),
            "json" => Reply::data(
                json!({"certificate": pem_block("X509 CRL", &der), "revocation_time": 0, "revocation_time_rfc3339": ""}),
            ),
            _ => Reply::Binary("application/pkix-crl", der),
        })
    }

    /// `LIST certs/revoked`.
    pub(super) fn list_revoked(&self, store: &Store<'_>) -> ApiResult<Reply> {
        Ok(Reply::List(
            store
                .list(REVOKED)?
                .into_iter()
                .map(|key| key.replace('-', ":"))
                .collect(),
        ))
    }
}

fn revocation_reply(time: u64) -> Reply {
    envelope(
        json!({
            "revocation_time": time,
            "revocation_time_rfc3339": crate::tokens::rfc3339(time),
            "state": "revoked",
        }),
        Vec::new(),
    )
}
