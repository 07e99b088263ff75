//! The pipeline's audit records: the request entry that gates execution,
//! the response entry, and what each shows of the caller, the mount and the
//! outcome.

use coffer_protocols::Request;

use super::{Caller, Core, Routed, Unsealed};
use crate::api::error::ApiResult;
use crate::api::reply::Reply;
use crate::audit;

impl Core {
    /// Writes `entry` to the audit devices; false when none wrote it (counted).
    pub(super) async fn audit(&self, scope: &audit::Scope, entry: &audit::Entry<'_>) -> bool {
        let written = scope.log(entry).await;
        if !written {
            self.metrics.audit_failed(entry.kind);
            tracing::warn!(
                request_id = %entry.request.id,
                entry = entry.kind,
                "no audit device wrote an entry"
            );
        }
        written
    }

    /// SIGHUP: audit files are closed and opened again (for logrotate).
    pub fn reopen_audit_devices(&self) {
        if let Ok(unsealed) = self.unsealed() {
            unsealed.audit.reopen();
        }
    }
}

/// The caller as audit entries show it: the token as presented, or none for a
/// local caller (its peer credentials are in the request section).
pub(super) fn audit_caller<'a>(
    request: &'a Request,
    caller: &'a Caller,
) -> Option<audit::entry::Caller<'a>> {
    if caller.anonymous {
        return None;
    }
    if caller.local.is_some() {
        return Some(audit::entry::Caller {
            token: &caller.token,
            client_token: "",
        });
    }
    request.token.as_ref().map(|token| audit::entry::Caller {
        token: &caller.token,
        client_token: token.expose(),
    })
}

/// An audit entry for `request`.
pub(super) fn entry<'a>(
    kind: &'static str,
    request: &'a Request,
    path: &'a str,
    mount: &'a Option<(String, String)>,
    caller: Option<audit::entry::Caller<'a>>,
    outcome: Option<audit::entry::Outcome<'a>>,
    error: Option<&'a str>,
) -> audit::Entry<'a> {
    audit::Entry {
        kind,
        time: crate::clock::now(),
        request,
        path,
        mount: mount
            .as_ref()
            .map(|(point, kind)| (point.as_str(), kind.as_str())),
        caller,
        outcome,
        error,
    }
}

/// The mount point and type of `path`, for audit entries.
pub(super) fn mount_of(unsealed: &Unsealed, path: &str) -> Option<(String, String)> {
    if path == "sys" || path.starts_with("sys/") {
        return Some(("sys/".into(), "system".into()));
    }
    if path == "auth/token" || path.starts_with("auth/token/") {
        return Some(("auth/token/".into(), "token".into()));
    }
    if let Some((entry, _, _)) = unsealed.auth_methods.resolve(path) {
        return Some((format!("auth/{}", entry.path), entry.kind));
    }
    unsealed.mounts.point_and_type(path)
}

/// What a route answered, as the audit sees it.
pub(super) fn audit_outcome(result: &ApiResult<Routed>) -> audit::entry::Outcome<'_> {
    use audit::entry::{Data, Outcome};
    match result {
        Err(error) => Outcome {
            status: error.code.http_status(),
            data: Data::None,
            auth: None,
            wrap_info: None,
        },
        Ok(routed) => match &routed.reply {
            Reply::Data(map) => Outcome {
                status: 200,
                data: Data::Map(map),
                auth: None,
                wrap_info: None,
            },
            Reply::Envelope(envelope) => Outcome {
                status: 200,
                data: envelope.data.as_ref().map_or(Data::None, Data::Map),
                auth: envelope.auth.as_ref(),
                wrap_info: envelope.wrap_info.as_ref(),
            },
            Reply::List(keys) => Outcome {
                status: if keys.is_empty() { 404 } else { 200 },
                data: Data::Keys(keys),
                auth: None,
                wrap_info: None,
            },
            Reply::NoContent => Outcome {
                status: 204,
                data: Data::None,
                auth: None,
                wrap_info: None,
            },
            Reply::Raw(status, body) => Outcome {
                status: *status,
                data: Data::Value(body),
                auth: None,
                wrap_info: None,
            },
            Reply::Text(..) | Reply::Binary(..) => Outcome {
                status: 200,
                data: Data::None,
                auth: None,
                wrap_info: None,
            },
        },
    }
}
