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
pub(super) const CRLS: &str = "crl/";
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

/// One line of a CRL: a serial's bytes and when it was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CrlEntry {
    serial: Vec<u8>,
    revocation_time: u64,
}

impl CrlEntry {
    fn of(revoked: &Revoked) -> CrlEntry {
        CrlEntry {
            serial: serial_bytes(&revoked.serial_number),
            revocation_time: revoked.revocation_time,
        }
    }
}

fn serial_bytes(serial: &str) -> Vec<u8> {
    certs::serial_key(serial)
        .unwrap_or_default()
        .split('-')
        .filter_map(|pair| u8::from_str_radix(pair, 16).ok())
        .collect()
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

/// Every revoked certificate of `issuer_id`, from the stored revocations:
/// the source of truth a CRL is rebuilt from on `crl/rotate` and `tidy`.
fn revoked_of(store: &Store<'_>, issuer_id: &str) -> ApiResult<Vec<CrlEntry>> {
    let mut revoked = Vec::new();
    for key in store.list(REVOKED)? {
        if let Some(entry) = store.get::<Revoked>(&format!("{REVOKED}{key}"))?
            && entry.issuer_id == issuer_id
        {
            revoked.push(CrlEntry::of(&entry));
        }
    }
    Ok(revoked)
}

/// The stored CRL of `issuer_id` (DER).
fn stored_crl(store: &Store<'_>, issuer_id: &str) -> ApiResult<Option<Vec<u8>>> {
    Ok(store
        .barrier
        .get(&store.key(&format!("{CRLS}{issuer_id}")))?
        .map(|der| der.to_vec()))
}

/// What a stored CRL lists: its number and its entries. A revocation
/// starts from these rather than from every stored revocation, which keeps
/// it one parse and one build however many certificates are revoked.
/// `None` when the stored CRL cannot be read (the caller then rebuilds it
/// from the revocations).
fn crl_contents(der: &[u8]) -> Option<(u64, Vec<CrlEntry>)> {
    let (_, crl) = x509_parser::parse_x509_crl(der).ok()?;
    let number = crl.crl_number().map_or(0, |number| {
        number
            .to_bytes_be()
            .iter()
            .fold(0u64, |sum, byte| (sum << 8) | u64::from(*byte))
    });
    let entries = crl
        .iter_revoked_certificates()
        .map(|revoked| CrlEntry {
            serial: revoked.raw_serial().to_vec(),
            revocation_time: u64::try_from(revoked.revocation_date.timestamp()).unwrap_or(0),
        })
        .collect();
    Some((number, entries))
}

/// The number of `issuer_id`'s stored CRL, 0 without one.
fn crl_number(store: &Store<'_>, issuer_id: &str) -> ApiResult<u64> {
    Ok(stored_crl(store, issuer_id)?
        .and_then(|der| crl_contents(&der))
        .map_or(0, |(number, _)| number))
}

/// Adds an empty first CRL of a new issuer to `batch`.
pub(super) fn first_crl(
    store: &Store<'_>,
    batch: &mut Batch,
    issuer: &Issuer,
    key: &rcgen::KeyPair,
) -> ApiResult<()> {
    let signer = rcgen::Issuer::from_ca_cert_pem(&issuer.certificate, key)
        .map_err(|error| ApiError::internal(&error))?;
    write_crl(store, batch, &issuer.id, &signer, 1, &[])
}

/// Adds `issuer_id`'s CRL number `number` listing `entries` to `batch`.
fn write_crl<S: rcgen::SigningKey>(
    store: &Store<'_>,
    batch: &mut Batch,
    issuer_id: &str,
    signer: &rcgen::Issuer<'_, S>,
    number: u64,
    entries: &[CrlEntry],
) -> ApiResult<()> {
    let now = crate::clock::now_seconds();
    let mut revoked_certs = Vec::with_capacity(entries.len());
    for entry in entries {
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&entry.serial),
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
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params
        .signed_by(signer)
        .map_err(|error| ApiError::internal(&error))?;
    batch.put(
        &store.key(&format!("{CRLS}{issuer_id}")),
        crl.der().as_ref(),
    )?;
    Ok(())
}

/// Adds `issuer`'s CRL rebuilt from the stored revocations to `batch`. An
/// issuer imported without its key (a parent) signs no CRL here.
fn rebuild_into(store: &Store<'_>, batch: &mut Batch, issuer: &Issuer) -> ApiResult<()> {
    if issuer.key_id.is_empty() {
        return Ok(());
    }
    let signing = store.signing_issuer(&issuer.id)?;
    write_crl(
        store,
        batch,
        &issuer.id,
        &signing.signer,
        crl_number(store, &issuer.id)? + 1,
        &revoked_of(store, &issuer.id)?,
    )
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
        let (number, mut entries) =
            match stored_crl(store, &issuer.id)?.and_then(|der| crl_contents(&der)) {
                Some(contents) => contents,
                None => (0, revoked_of(store, &issuer.id)?),
            };
        entries.push(CrlEntry::of(&entry));
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
        write_crl(
            store,
            &mut batch,
            &issuer.id,
            &signing.signer,
            number + 1,
            &entries,
        )?;
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
        for issuer in store.issuers()? {
            rebuild_into(store, &mut batch, &issuer)?;
        }
        store.barrier.commit(batch).await?;
        Ok(Reply::data(json!({"success": true})))
    }

    /// Rebuilds the CRL of `issuer_id` (if it still exists) from the stored
    /// revocations. The caller holds `revocations`.
    pub(super) async fn rebuild_crl(&self, store: &Store<'_>, issuer_id: &str) -> ApiResult<()> {
        let Some(issuer) = store.get::<Issuer>(&format!("{}{issuer_id}", super::ISSUERS))? else {
            return Ok(());
        };
        let mut batch = store.barrier.batch();
        rebuild_into(store, &mut batch, &issuer)?;
        if !batch.is_empty() {
            store.barrier.commit(batch).await?;
        }
        Ok(())
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
        let Some(der) = stored_crl(store, &issuer.id)? else {
            return Ok(Reply::NoContent);
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

/// For benchmarks: `count` revocations of made-up certificates of the
/// mount's default issuer, stored as `revoke` stores them (1,000 to a
/// write), without touching its CRL. Returns the issuer's id.
#[doc(hidden)]
pub async fn seed_revocations(
    barrier: &crate::barrier::Barrier,
    entry: &crate::mounts::MountEntry,
    count: usize,
) -> ApiResult<String> {
    let signers = super::Signers::default();
    let store = Store {
        barrier,
        prefix: entry.data_prefix(),
        signers: &signers,
        cached: &super::Cached::default(),
    };
    let issuer = store
        .issuer("default")?
        .ok_or_else(|| ApiError::invalid("the mount has no default issuer"))?;
    let now = crate::clock::now_seconds();
    let mut written = 0;
    while written < count {
        let mut batch = barrier.batch();
        for _ in 0..(count - written).min(1000) {
            let (_, serial_number) = certs::new_serial()?;
            let key = serial_number.replace(':', "-");
            batch.put_json(
                &store.key(&format!("{REVOKED}{key}")),
                &Revoked {
                    serial_number,
                    issuer_id: issuer.id.clone(),
                    revocation_time: now,
                    not_after: now + 86_400,
                },
            )?;
            written += 1;
        }
        barrier.commit(batch).await?;
    }
    Ok(issuer.id)
}
