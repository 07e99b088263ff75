//! Issuer management: `issuer/<ref>` read and update (name,
//! `leaf_not_after_behavior`, the issuer's own AIA and CRL URLs), `DELETE
//! issuer/<ref>` and `DELETE root`, with OpenBao 2.7.2's texts.

use serde_json::{Map, Value, json};

use super::certs::Urls;
use super::{
    DEFAULT_ISSUER, ISSUERS, IssuerConfig, KEYS, LeafNotAfter, PkiEngine, Store, envelope,
};
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;

/// A list, or null when it is empty (as Vault shows unset URLs).
fn or_null(list: &[String]) -> Value {
    if list.is_empty() {
        Value::Null
    } else {
        json!(list)
    }
}

/// An issuer as `issuer/<ref>` shows it.
pub(super) fn describe(issuer: &super::Issuer) -> Value {
    json!({
        "certificate": issuer.certificate,
        "ca_chain": issuer.ca_chain(),
        "issuer_id": issuer.id,
        "issuer_name": issuer.name,
        "key_id": issuer.key_id,
        "leaf_not_after_behavior": issuer.leaf_not_after_behavior,
        "manual_chain": Value::Null,
        "usage": "crl-signing,issuing-certificates,ocsp-signing,read-only",
        "revocation_signature_algorithm": "",
        "revoked": false,
        "enable_aia_url_templating": false,
        "issuing_certificates": or_null(&issuer.urls.issuing_certificates),
        "crl_distribution_points": or_null(&issuer.urls.crl_distribution_points),
        "delta_crl_distribution_points": Value::Null,
        "ocsp_servers": or_null(&issuer.urls.ocsp_servers),
    })
}

impl PkiEngine {
    /// `POST issuer/<ref>`: what is given changes, the rest stays.
    pub(super) async fn update_issuer(
        &self,
        store: &Store<'_>,
        reference: &str,
        data: &Map<String, Value>,
    ) -> ApiResult<Reply> {
        let mut issuer = store.issuer(reference)?.ok_or_else(|| {
            ApiError::new(
                coffer_protocols::ErrorCode::NotFound,
                format!(
                    "unable to find PKI issuer for reference: {}",
                    reference.chars().take(64).collect::<String>()
                ),
            )
        })?;
        let fields = Fields::new(data);
        if let Some(name) = fields.string("issuer_name")? {
            if !name.is_empty() && (name == "default" || !crate::policy::is_name(&name, "-_.")) {
                return Err(ApiError::invalid(
                    "issuer name contained invalid characters",
                ));
            }
            if !name.is_empty()
                && name != issuer.name
                && store
                    .issuer(&name)?
                    .is_some_and(|other| other.id != issuer.id)
            {
                return Err(ApiError::invalid(format!(
                    "issuer name already in use: {name}"
                )));
            }
            issuer.name = name;
        }
        if let Some(behavior) = fields.string("leaf_not_after_behavior")? {
            issuer.leaf_not_after_behavior = match behavior.as_str() {
                "err" => LeafNotAfter::Err,
                "truncate" => LeafNotAfter::Truncate,
                "permit" => LeafNotAfter::Permit,
                _ => {
                    return Err(ApiError::invalid(
                        "Unknown value for field `leaf_not_after_behavior`. Possible values are `err`, `truncate`, and `permit`.",
                    ));
                }
            };
        }
        let Urls {
            issuing_certificates,
            crl_distribution_points,
            ocsp_servers,
        } = &mut issuer.urls;
        for (key, list) in [
            ("issuing_certificates", issuing_certificates),
            ("crl_distribution_points", crl_distribution_points),
            ("ocsp_servers", ocsp_servers),
        ] {
            if let Some(urls) = fields.string_list(key)? {
                *list = super::certs::checked_urls(key, urls)?;
            }
        }
        store
            .put(&format!("{ISSUERS}{}", issuer.id), &issuer)
            .await?;
        Ok(Reply::data(describe(&issuer)))
    }

    /// `DELETE issuer/<ref>`: the issuer and its CRL go (its key and the
    /// certificates it signed stay). Deleting one that is gone succeeds.
    pub(super) async fn delete_issuer(
        &self,
        store: &Store<'_>,
        reference: &str,
    ) -> ApiResult<Reply> {
        let _serialized = self.revocations.lock().await;
        let Some(issuer) = store.issuer(reference)? else {
            return Ok(envelope(Value::Null, Vec::new()));
        };
        let mut warnings = Vec::new();
        let mut batch = store.barrier.batch();
        batch.delete(&store.key(&format!("{ISSUERS}{}", issuer.id)));
        batch.delete(&store.key(&format!("{}{}", super::revoke::CRLS, issuer.id)));
        let config: IssuerConfig = store.get(DEFAULT_ISSUER)?.unwrap_or_default();
        if config.default == issuer.id {
            batch.delete(&store.key(DEFAULT_ISSUER));
            warnings.push(format!(
                "Deleted issuer {} (via issuer_ref {}); this was configured as the default issuer. Operations without an explicit issuer will not work until a new default is configured.",
                issuer.id,
                reference.chars().take(64).collect::<String>()
            ));
        }
        store.barrier.commit(batch).await?;
        Ok(envelope(Value::Null, warnings))
    }

    /// `DELETE root`: every issuer, key and CRL of the mount (issued
    /// certificates and revocations stay).
    pub(super) async fn delete_root(&self, store: &Store<'_>) -> ApiResult<Reply> {
        let _serialized = self.revocations.lock().await;
        let mut batch = store.barrier.batch();
        batch.delete_prefix(&store.key(ISSUERS));
        batch.delete_prefix(&store.key(KEYS));
        batch.delete_prefix(&store.key(super::revoke::CRLS));
        batch.delete(&store.key(DEFAULT_ISSUER));
        store.barrier.commit(batch).await?;
        Ok(envelope(
            Value::Null,
            vec!["DELETE /root deletes all keys and issuers; prefer the new DELETE /key/:key_ref and DELETE /issuer/:issuer_ref for finer granularity, unless removal of all keys and issuers is desired.".to_owned()],
        ))
    }
}
