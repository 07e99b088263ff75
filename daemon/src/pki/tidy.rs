//! `tidy` and `tidy-status`: expired certificates (past a safety buffer)
//! leave the certificate store, and expired revocations leave the store and
//! the CRLs, which are rebuilt once at the end. Runs within the request
//! (serialized with revocations) and answers 202 as Vault does; the last
//! run's outcome is stored, so `tidy-status` shows it on every node.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::certs::CertRecord;
use super::revoke::{REVOKED, Revoked};
use super::{CERTS, PkiEngine, Store};
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;

const STATUS: &str = "tidy/status";
/// Vault's default `safety_buffer`: 72 hours.
const SAFETY_BUFFER: u64 = 72 * 3600;
/// Deletions per replicated write.
const PAGE: usize = 1000;

/// The flags Vault accepts; the ones this engine has nothing to do for
/// (ACME, legacy bundles, issuer associations) are accepted and do nothing.
const FLAGS: [&str; 7] = [
    "tidy_cert_store",
    "tidy_revoked_certs",
    "tidy_invalid_certs",
    "tidy_revoked_cert_issuer_associations",
    "tidy_expired_issuers",
    "tidy_move_legacy_ca_bundle",
    "tidy_acme",
];

/// The last tidy, as stored.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Status {
    state: String,
    tidy_cert_store: bool,
    tidy_revoked_certs: bool,
    safety_buffer: u64,
    time_started: u64,
    time_finished: u64,
    cert_store_deleted_count: u64,
    revoked_cert_deleted_count: u64,
    current_cert_store_count: u64,
    current_revoked_cert_count: u64,
    error: String,
}

fn accepted(warning: &str) -> Reply {
    Reply::Raw(
        202,
        json!({
            "request_id": "", "lease_id": "", "renewable": false, "lease_duration": 0,
            "data": null, "wrap_info": null, "warnings": [warning], "auth": null,
        }),
    )
}

impl PkiEngine {
    /// `tidy`.
    pub(super) async fn tidy(
        &self,
        store: &Store<'_>,
        data: &Map<String, Value>,
    ) -> ApiResult<Reply> {
        let fields = Fields::new(data);
        let mut set = Vec::new();
        for flag in FLAGS {
            if fields.bool(flag)?.unwrap_or(false) {
                set.push(flag);
            }
        }
        let buffer = fields.duration("safety_buffer")?.unwrap_or(SAFETY_BUFFER);
        if buffer == 0 {
            return Err(ApiError::invalid("safety_buffer must be greater than zero"));
        }
        if set.is_empty() {
            return Ok(accepted(&format!(
                "Manual tidy requested but no tidy operations were set. Enable at least one tidy operation to be run ({}).",
                FLAGS.join(" / ")
            )));
        }
        let _serialized = self.revocations.lock().await;
        let now = crate::clock::now_seconds();
        let mut status = Status {
            state: "Finished".into(),
            tidy_cert_store: set.contains(&"tidy_cert_store"),
            tidy_revoked_certs: set.contains(&"tidy_revoked_certs"),
            safety_buffer: buffer,
            time_started: now,
            ..Status::default()
        };
        let outcome = self.tidy_now(store, now, &mut status).await;
        status.time_finished = crate::clock::now_seconds();
        if let Err(error) = &outcome {
            status.state = "Error".into();
            status.error = error.messages.join("; ");
        }
        store.put(STATUS, &status).await?;
        outcome?;
        Ok(accepted(
            "Tidy operation successfully started. Any information from the operation will be printed to coffer's server logs.",
        ))
    }

    async fn tidy_now(&self, store: &Store<'_>, now: u64, status: &mut Status) -> ApiResult<()> {
        // Expired past the buffer; 0 is a record with no expiry known.
        let gone =
            |not_after: u64| not_after > 0 && not_after.saturating_add(status.safety_buffer) < now;
        let mut batch = store.barrier.batch();
        let mut pending = 0;
        let mut issuers = std::collections::BTreeSet::new();
        if status.tidy_revoked_certs {
            for key in store.list(REVOKED)? {
                let Some(revoked) = store.get::<Revoked>(&format!("{REVOKED}{key}"))? else {
                    continue;
                };
                if gone(revoked.not_after) {
                    batch.delete(&store.key(&format!("{REVOKED}{key}")));
                    batch.delete(&store.key(&format!("{CERTS}{key}")));
                    issuers.insert(revoked.issuer_id);
                    status.revoked_cert_deleted_count += 1;
                    pending += 1;
                } else {
                    status.current_revoked_cert_count += 1;
                }
                if pending >= PAGE {
                    store
                        .barrier
                        .commit(std::mem::replace(&mut batch, store.barrier.batch()))
                        .await?;
                    pending = 0;
                }
            }
        }
        if status.tidy_cert_store {
            for key in store.list(CERTS)? {
                let Some(record) = store.get::<CertRecord>(&format!("{CERTS}{key}"))? else {
                    continue;
                };
                // A revoked certificate stays while its revocation does.
                let revoked = record.revocation_time > 0
                    && store.get::<Revoked>(&format!("{REVOKED}{key}"))?.is_some();
                if gone(record.not_after) && !revoked {
                    batch.delete(&store.key(&format!("{CERTS}{key}")));
                    status.cert_store_deleted_count += 1;
                    pending += 1;
                } else {
                    status.current_cert_store_count += 1;
                }
                if pending >= PAGE {
                    store
                        .barrier
                        .commit(std::mem::replace(&mut batch, store.barrier.batch()))
                        .await?;
                    pending = 0;
                }
            }
        }
        if pending > 0 {
            store.barrier.commit(batch).await?;
        }
        for issuer_id in issuers {
            self.rebuild_crl(store, &issuer_id).await?;
        }
        Ok(())
    }

    /// `tidy-status`: Vault's fields, null before the first tidy.
    pub(super) fn tidy_status(&self, store: &Store<'_>) -> ApiResult<Reply> {
        let time = |seconds: u64| {
            if seconds == 0 {
                Value::Null
            } else {
                json!(crate::tokens::rfc3339(seconds))
            }
        };
        let mut data = json!({
            "state": "Inactive", "error": null, "message": null,
            "tidy_cert_store": null, "tidy_revoked_certs": null, "tidy_invalid_certs": null,
            "tidy_revoked_cert_issuer_associations": null, "tidy_expired_issuers": null,
            "tidy_move_legacy_ca_bundle": null, "tidy_acme": null,
            "safety_buffer": null, "issuer_safety_buffer": null, "revoked_safety_buffer": null,
            "pause_duration": null, "page_size": null,
            "time_started": null, "time_finished": null,
            "cert_store_deleted_count": null, "revoked_cert_deleted_count": null,
            "missing_issuer_cert_count": null, "current_cert_store_count": null,
            "current_revoked_cert_count": null,
        });
        if let Some(status) = store.get::<Status>(STATUS)? {
            data["state"] = json!(status.state);
            data["error"] = if status.error.is_empty() {
                Value::Null
            } else {
                json!(status.error)
            };
            data["tidy_cert_store"] = json!(status.tidy_cert_store);
            data["tidy_revoked_certs"] = json!(status.tidy_revoked_certs);
            for flag in &FLAGS[2..] {
                data[*flag] = json!(false);
            }
            data["safety_buffer"] = json!(status.safety_buffer);
            data["revoked_safety_buffer"] = json!(status.safety_buffer);
            data["pause_duration"] = json!("0s");
            data["page_size"] = json!(PAGE);
            data["time_started"] = time(status.time_started);
            data["time_finished"] = time(status.time_finished);
            data["cert_store_deleted_count"] = json!(status.cert_store_deleted_count);
            data["revoked_cert_deleted_count"] = json!(status.revoked_cert_deleted_count);
            data["missing_issuer_cert_count"] = json!(0);
            data["current_cert_store_count"] = json!(status.current_cert_store_count);
            data["current_revoked_cert_count"] = json!(status.current_revoked_cert_count);
        }
        Ok(Reply::data(data))
    }
}
